"""The kernel-free steering widget's payload: the page's ranking equals the library's at every setting tried."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import seqsae_lib as sl
from seqsae_lib.steering.static import _unbits, export_static_steering, payload_size, static_top_k

K = 5
TIE = 1e-4  # scores closer than this may swap places (float32 matrix product vs float64 sum of bonuses)


@pytest.fixture(scope="module")
def live(tiny_seq, tiny_split, model, final_sae):
    topics = tiny_seq.genre_names[:3]
    latents = {t: sl.select_latents(sl.steering.get_concept(tiny_seq, t), final_sae, model, n=3) for t in topics}
    return sl.LiveSteering(model, final_sae, tiny_seq, tiny_split.test_inputs, latents, k=K)


@pytest.fixture(scope="module")
def calibrations(live, tiny_split):
    """The default calibration, and one where every slider falls back to label re-ranking."""
    return {"default": sl.steering.calibrate_sliders(live, tiny_split.test_targets),
            "rerank": sl.steering.calibrate_sliders(live, tiny_split.test_targets, min_films=K + 1)}


def assert_same_ranking(payload, live, calibration, user_id, values):
    items, scores = static_top_k(payload, user_id, values)
    strengths = (calibration.strengths(values) if calibration is not None
                 else {name: v for name, v in values.items() if v != 0.0})
    rec = live.recommend(live.user_index(user_id), strengths)
    lib_items, lib_scores = rec.table["item"].tolist(), rec.table["score"].to_numpy(dtype=float)
    np.testing.assert_allclose(scores, lib_scores, rtol=0, atol=TIE)
    for rank, (a, b) in enumerate(zip(items, lib_items)):
        if a != b:  # only a near-tie may swap two items
            assert abs(scores[rank] - lib_scores[rank]) < TIE, (user_id, values, rank, a, b)
    if np.all(np.abs(np.diff(lib_scores)) > TIE):
        assert items == lib_items, (user_id, values)


@pytest.mark.parametrize("which", ["default", "rerank", None])
def test_the_payload_ranks_like_the_library(live, calibrations, tiny_seq, which):
    calibration = calibrations[which] if which else None
    if which == "rerank":
        assert {c.operator for c in calibration.values()} == {"label re-ranking"}
    user_ids = [int(u) for u in tiny_seq.users["user_id"].iloc[:8]]
    payload = export_static_steering(live, user_ids, calibration=calibration)
    assert json.loads(json.dumps(payload)) == payload  # JSON as it is
    assert [u["id"] for u in payload["users"]] == user_ids
    names = live.slider_names
    rng = np.random.default_rng(0)
    settings = [{}, {names[0]: payload["sliders"][0]["values"][-1]}, {names[1]: payload["sliders"][1]["values"][0]}]
    for _ in range(12):  # several sliders at once, anywhere on their grids (ends included)
        settings.append({s["name"]: s["values"][int(rng.integers(len(s["values"])))] for s in payload["sliders"]})
    for uid in user_ids:
        for values in settings:
            assert_same_ranking(payload, live, calibration, uid, values)


def test_pruning_keeps_every_item_that_can_reach_the_top_k(live, calibrations, tiny_seq):
    """Every item the library ranks at an end of every slider is in the user's candidate list."""
    calibration = calibrations["default"]
    uid = int(tiny_seq.users["user_id"].iloc[0])
    payload = export_static_steering(live, [uid], calibration=calibration)
    ids = payload["items"]["id"]
    candidates = {ids[j] for j in _unbits(payload["users"][0]["items"], len(ids))}
    assert len(candidates) < tiny_seq.num_items  # something was pruned...
    for signs in np.array(np.meshgrid(*[[-1, 0, 1]] * len(live.slider_names))).T.reshape(-1, len(live.slider_names)):
        rec = live.recommend(live.user_index(uid), calibration.strengths(dict(zip(live.slider_names, signs))))
        assert set(rec.table["item"].tolist()) <= candidates  # ...but nothing that can be shown


def test_the_html_embeds_payload_and_script_inline(live, calibrations, tiny_seq):
    payload = export_static_steering(live, [int(tiny_seq.users["user_id"].iloc[0])], calibration=calibrations["default"])
    widget = sl.widgets.static_steering_html(payload)
    assert widget.payload_bytes == payload_size(payload)
    assert "window.seqsaeStaticSteering" in widget.html and 'type="application/json"' in widget.html
    assert "fetch(" not in widget.html and "http" not in widget.html.split("<script>")[1]
    assert "VBox" not in repr(widget) and "browser" in repr(widget)
    assert widget._repr_html_() == widget.html


def test_bad_inputs(live, calibrations, tiny_seq):
    uid = int(tiny_seq.users["user_id"].iloc[0])
    with pytest.raises(KeyError, match="unknown user id"):
        export_static_steering(live, [10 ** 6])
    with pytest.raises(ValueError, match="non-empty"):
        export_static_steering(live, [])
    with pytest.raises(ValueError, match="duplicates"):
        export_static_steering(live, [uid, uid])
    with pytest.raises(TypeError, match="LiveSteering"):
        export_static_steering(object(), [uid])
    inner = copy.copy(live)
    inner.capture_point = "block_0"  # steering there is not a score bonus: no exact static version
    with pytest.raises(ValueError, match="only at the 'final' capture point"):
        export_static_steering(inner, [uid])
    with pytest.raises(ValueError, match="must divide"):
        export_static_steering(live, [uid], calibration=calibrations["default"], step=0.3)
    payload = export_static_steering(live, [uid], calibration=calibrations["default"])
    with pytest.raises(ValueError, match="not on its grid"):
        static_top_k(payload, uid, {live.slider_names[0]: 0.0123})
    with pytest.raises(KeyError, match="not in the payload"):
        static_top_k(payload, uid + 1000, {})
    with pytest.raises(KeyError, match="unknown sliders"):
        static_top_k(payload, uid, {"nope": 0.0})
    with pytest.raises(ValueError, match="format"):
        sl.widgets.static_steering_html({"format": "other"})
