"""Calibrated concept sliders (calibrate_sliders), the showcase rules and the end-of-slider table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqsae_lib as sl

K = 5


@pytest.fixture(scope="module")
def live(tiny_seq, tiny_split, model, final_sae):
    sae = final_sae
    topics = tiny_seq.genre_names[:2]
    latents = {t: sl.select_latents(sl.steering.get_concept(tiny_seq, t), sae, model, n=3) for t in topics}
    return sl.LiveSteering(model, sae, tiny_seq, tiny_split.test_inputs, latents, k=K)


@pytest.fixture(scope="module")
def calibration(live, tiny_split):
    return sl.steering.calibrate_sliders(live, tiny_split.test_targets)


@pytest.fixture(scope="module")
def evaluator(live, tiny_split):
    return sl.SteeringEvaluator(live.model, tiny_split.test_inputs, tiny_split.test_targets, live.seq_data, k=K,
                                n_boot=0)


def measured(evaluator, live, calibration, concept, position):
    """Average share@k and NDCG@k drop of the calibration users with one slider at ``position``."""
    strengths = calibration.strengths({concept: position})
    rest, bonus = live.rerank_bonus(strengths)
    steering = live.steering(rest)

    class Scorer:  # the live engine's scores (steering, then the re-ranking bonus) for a batch of inputs
        def scores(self, ids):
            scores = sl.SteeringCache(live.model, ids, live.capture_point).scores(steering)
            return scores if bonus is None else scores + bonus

    row = evaluator.run(lambda s: Scorer(), [1.0], live.concepts[concept]).iloc[0]
    return float(row[f"share@{K}"]), float(row[f"NDCG@{K}_drop"])


def test_positions_map_monotonically_and_zero_is_the_unsteered_list(live, calibration):
    assert list(calibration) == live.slider_names and len(calibration) == 2
    positions = np.linspace(-1, 1, 81)
    for concept, curve in calibration.items():
        strengths = [curve.strength(p) for p in positions]
        assert np.all(np.diff(strengths) >= 0), concept
        assert curve.strength(0.0) == 0.0 and curve.cost(0.0) == 0.0 and curve.share(0.0) == curve.unsteered
        assert curve.strength(-1.0) <= 0.0 <= curve.strength(1.0)
        assert 0.0 <= curve.low <= curve.unsteered <= curve.high <= 1.0
        assert np.all(curve.ndcg_drops <= calibration.budget + 1e-12)
        assert np.all(np.diff(curve.strengths) > 0) and 0.0 in curve.strengths
        # the ends are the extremes of the measured curve on each side (no target share given)
        assert curve.high == pytest.approx(curve.shares[curve.strengths >= 0].max())
        assert curve.low == pytest.approx(curve.shares[curve.strengths <= 0].min())
        # the promised share moves linearly with the position
        assert curve.share(0.5) == pytest.approx((curve.unsteered + curve.high) / 2)
    assert calibration.strengths({c: 0.0 for c in calibration}) == {}
    rec = live.recommend(0, calibration.strengths({c: 0.0 for c in calibration}))
    assert rec.jaccard == 1.0 and rec.table["item"].tolist() == live.recommend(0).table["item"].tolist()


def test_the_ends_reach_the_promised_share_on_the_calibration_users(live, calibration, evaluator):
    for concept, curve in calibration.items():
        for position in (-1.0, -0.5, 0.5, 1.0):
            share, drop = measured(evaluator, live, calibration, concept, position)
            # one user's list moves by 1/k = 0.2 per item; 60 users: 0.02 is a fraction of one item per 6 users
            assert share == pytest.approx(curve.share(position), abs=0.02), (concept, position)
            assert drop == pytest.approx(curve.cost(position), abs=0.01), (concept, position)
        assert curve.cost(1.0) <= calibration.budget + 1e-9 and curve.cost(-1.0) <= calibration.budget + 1e-9


def test_operators_the_fallback_and_its_note(live, calibration, tiny_split):
    table = calibration.table()
    assert list(table.columns) == ["operator", "unsteered", "left_end", "right_end", "strength_left",
                                   "strength_right", "ndcg_cost_left", "ndcg_cost_right", "note"]
    for concept, curve in calibration.items():
        gain = (curve.high - curve.unsteered) * K
        if curve.operator == "SAE latents":  # the SAE latents are kept only when they add >= 2 items on average
            assert gain >= 2 - 1e-9 and curve.slider == concept and curve.note == ""
        else:
            assert curve.operator == "label re-ranking" and curve.slider == f"rerank:{concept}"
            assert "re-ranks by the concept label" in curve.note
    # the tiny model's SAE moves one topic and not the other: both operators are exercised
    assert set(table["operator"]) == {"SAE latents", "label re-ranking"}
    weak = table.index[table["operator"] == "label re-ranking"][0]
    kept = sl.steering.calibrate_sliders(live, tiny_split.test_targets, fallback=None)
    assert kept[weak].operator == "SAE latents" and "add only" in kept[weak].note
    capped = sl.steering.calibrate_sliders(live, tiny_split.test_targets, target_share=0.3, fallback=None)
    for concept, curve in capped.items():
        assert curve.high == pytest.approx(max(min(0.3, kept[concept].high), curve.unsteered))
        assert ("not the target 30%" in curve.note) == (kept[concept].high < 0.3)


def test_a_rerank_slider_adds_the_label_bonus(live, tiny_split):
    concept = live.slider_names[1]
    user = 4
    rec = live.recommend(user, {f"rerank:{concept}": 2.5})
    ids = sl.left_pad([tiny_split.test_inputs[user]], live.model.max_len)
    with torch.no_grad():
        scores = live.model.scores(ids)[0] + 2.5 * live.concepts[concept].as_tensor()
    scores[torch.as_tensor(np.asarray(tiny_split.test_inputs[user]))] = float("-inf")
    scores[0] = float("-inf")
    assert rec.table["item"].tolist() == torch.topk(scores, K).indices.tolist()
    assert rec.shares.loc[concept, "after"] >= rec.shares.loc[concept, "before"]
    with pytest.raises(KeyError, match=r"unknown slider 'rerank:Westerns'; re-ranking sliders are \['rerank:topic 0'"):
        live.recommend(user, {"rerank:Westerns": 1.0})
    with pytest.raises(ValueError, match="is not a steering"):
        live.steering({f"rerank:{concept}": 1.0})


def test_invalid_requests_are_refused_clearly(live, calibration, tiny_split):
    concept = live.slider_names[0]
    with pytest.raises(KeyError, match=r"unknown concept slider 'Westerns'; calibrated sliders: \['topic 0', 'topic 1"):
        calibration.strengths({"Westerns": 0.5})
    with pytest.raises(ValueError, match=r"position of slider 'topic 0' must be in \[-1.0, 1.0\], got 1.5"):
        calibration.strengths({concept: 1.5})
    with pytest.raises(ValueError, match=r"position of slider 'topic 0' must be a finite number, got nan"):
        calibration[concept].strength(float("nan"))
    with pytest.raises(TypeError, match="position of slider 'topic 0' must be a number, got bool"):
        calibration[concept].cost(True)
    with pytest.raises(ValueError, match=r"budget must be > 0.0, got 0.0"):
        sl.steering.calibrate_sliders(live, tiny_split.test_targets, budget=0.0)
    with pytest.raises(ValueError, match=r"targets must hold one held-out item per user of live \(60\)"):
        sl.steering.calibrate_sliders(live, tiny_split.test_targets[:10])
    with pytest.raises(ValueError, match=r"users\[i\] must be in \[0, 59\], got 60"):
        sl.steering.calibrate_sliders(live, tiny_split.test_targets, users=[0, 60])
    with pytest.raises(ValueError, match="sae_grid must be positive, finite and strictly ascending"):
        sl.steering.calibrate_sliders(live, tiny_split.test_targets, sae_grid=[1.0, 0.5])
    with pytest.raises(ValueError, match="fallback must be one of"):
        sl.steering.calibrate_sliders(live, tiny_split.test_targets, fallback="scale")
    with pytest.raises(TypeError, match="live must be a LiveSteering"):
        sl.steering.calibrate_sliders("live", tiny_split.test_targets)


def test_showcase_concepts_follow_the_rule(tiny_seq):
    counts = np.bincount(np.concatenate(tiny_seq.sequences), minlength=tiny_seq.num_items + 1)
    watched = {g: float(counts[tiny_seq.item_genres[:, j] > 0].sum()) for j, g in enumerate(tiny_seq.genre_names)}
    ranked = sorted(watched, key=lambda g: (-watched[g], g))
    assert sl.steering.showcase_concepts(tiny_seq, n_common=2, n_rare=1, min_items=5) == ranked[:2] + ranked[-1:]
    assert sl.steering.showcase_concepts(tiny_seq, n_common=4, n_rare=0, min_items=20) == ranked
    with pytest.raises(ValueError, match="asked for 1 \\+ 1 genres but only 0 have at least 21 items"):
        sl.steering.showcase_concepts(tiny_seq, n_common=1, n_rare=1, min_items=21)


def test_showcase_user_picks_the_user_closest_to_the_average(live):
    data = live.seq_data
    n = data.num_users
    concept = live.concepts[live.slider_names[0]]
    inside = concept.items[:K]
    outside = np.flatnonzero(concept.item_mask == 0)[1:K + 1]  # item 0 is padding

    def lists(n_inside):  # a top-K list with n_inside items of the concept
        return np.concatenate([inside[:n_inside], outside[:K - n_inside]])

    # half the users have share 0, half 2/5; user 7 alone has 1/5, nearest the average (about 1/5)
    top = np.stack([lists(0 if u % 2 else 2) for u in range(n)])
    top[7] = lists(1)
    pick = sl.steering.showcase_user(live, [concept.name], top_items=top, min_interactions=0)
    assert pick == int(data.users["user_id"].iloc[7])
    # user 7 not eligible: every other user is 1/5 from the average; the tie goes to the smallest id
    lengths = np.asarray(data.lengths)
    eligible = lengths >= lengths[7] + 1
    ids = np.asarray(live.user_ids)
    if eligible.sum() >= 2:
        pick = sl.steering.showcase_user(live, [concept.name], top_items=top, min_interactions=int(lengths[7]) + 1)
        shares = np.where(np.arange(n) % 2, 0.0, 0.4)
        mean = shares[eligible].mean()
        d = np.abs(shares - mean)
        best = d[eligible].min()
        assert pick == int(ids[eligible & np.isclose(d, best)].min())
    # the default top-k is the engine's unsteered list; the pick is deterministic
    first = sl.steering.showcase_user(live)
    assert first == sl.steering.showcase_user(live) and first in live.user_ids
    from seqsae_lib.steering.showcase import _unsteered_top

    computed = _unsteered_top(live)
    for u in (0, 13, 59):
        assert computed[u].tolist() == live.recommend(u).table["item"].tolist()
    with pytest.raises(ValueError, match="no user has at least 1000 interactions"):
        sl.steering.showcase_user(live, min_interactions=1000)
    with pytest.raises(ValueError, match=r"top_items must be an \(60, k\) integer array"):
        sl.steering.showcase_user(live, top_items=top[:5])


def test_slider_ends_for_one_user(live, calibration):
    uid = int(live.user_ids[3])
    ends = sl.steering.slider_ends(live, calibration, uid)
    assert list(ends.index) == live.slider_names
    for concept, row in ends.iterrows():
        rec = live.recommend(3, calibration.strengths({concept: 1.0}))
        assert row["right_end"] == rec.shares.loc[concept, "after"]
        assert row["unsteered"] == rec.shares.loc[concept, "before"]
        assert row["films_added"] == pytest.approx((row["right_end"] - row["unsteered"]) * K)
        visible = row["films_added"] >= 2 - 1e-9 or (row["unsteered"] > 0 and row["right_end"] >= 2 * row["unsteered"])
        assert row["visible"] == visible
        assert row["avg_right_end"] == calibration[concept].high
        assert row["ndcg_cost_right"] == calibration[concept].cost(1.0)
    with pytest.raises(KeyError, match="unknown user id 99999"):
        sl.steering.slider_ends(live, calibration, 99_999)


def test_calibrated_widget(live, calibration):
    pytest.importorskip("ipywidgets")
    with pytest.raises(TypeError, match="calibration must be a SliderCalibration"):
        sl.widgets.steering_widget(live, calibration={"topic 0": 1})
    widget = sl.widgets.steering_widget(live, int(live.user_ids[2]), calibration=calibration)
    name = live.slider_names[0]
    slider = widget.sliders[name]
    assert (slider.min, slider.max, slider.value) == (-1.0, 1.0, 0.0)
    assert widget.last.jaccard == 1.0
    assert f"{calibration[name].unsteered:.0%} unsteered" in widget.meanings[name].value
    slider.value = 1.0
    assert widget.last.strengths == calibration.strengths({name: 1.0})
    assert f"here {calibration[name].high:.0%}" in widget.meanings[name].value


def test_before_after_grid_at_calibrated_slider_positions(live, calibration):
    concept = next(iter(calibration))
    grid = sl.before_after_grid(live, 0, concept, [-1.0, 0.0, 1.0], calibration=calibration)
    assert list(grid.columns) == ["slider -1.0", "slider +0.0", "slider +1.0"]
    assert not grid["slider +0.0"].iloc[:K].str.startswith("+ ").any()
    assert grid.loc["overlap (Jaccard)", "slider +0.0"] == "1.00"
    # the right end's column is the list the widget shows with that slider at its right end
    right = live.recommend(0, calibration.strengths({concept: 1.0}))
    assert [t.removeprefix("+ ").removeprefix("● ") for t in grid["slider +1.0"].iloc[:K]] == list(right.table["title"])
    assert grid.loc[f"{concept} share", "slider +1.0"] == f"{right.shares.loc[concept, 'after']:.0%}"
    with pytest.raises(ValueError):
        sl.before_after_grid(live, 0, concept, [2.0], calibration=calibration)
