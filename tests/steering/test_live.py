"""The live-steering engine (LiveSteering), its static grid and the steering widget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqsae_lib as sl


@pytest.fixture(scope="module")
def live(tiny_seq, tiny_split, model, final_sae):
    sae = final_sae
    topic = tiny_seq.genre_names[0]
    assert sae.capture_point == "final"  # recorded by train_sae from the store: no capture point to pass below
    latents = sl.select_latents(sl.steering.get_concept(tiny_seq, topic), sae, model, n=3)
    return sl.LiveSteering(model, sae, tiny_seq, tiny_split.test_inputs, {topic: latents}, k=5)


def test_zero_strength_is_the_unsteered_model(live, tiny_split):
    user = 3
    rec = live.recommend(user, {live.slider_names[0]: 0.0})
    ids = sl.left_pad([tiny_split.test_inputs[user]], live.model.max_len)
    with torch.no_grad():
        scores = live.model.scores(ids)[0]
    scores[torch.from_numpy(np.asarray(tiny_split.test_inputs[user]))] = float("-inf")
    scores[0] = float("-inf")
    assert rec.table["item"].tolist() == torch.topk(scores, 5).indices.tolist()
    assert rec.jaccard == 1.0 and not rec.table["new"].any() and rec.dropped.empty
    assert (rec.table["was_rank"] == rec.table["rank"]).all()
    assert not set(rec.table["item"]) & set(np.asarray(tiny_split.test_inputs[user]).tolist())  # seen filtered


def test_concept_slider_moves_the_share(live):
    name = live.slider_names[0]
    users = range(20)
    before = np.mean([live.recommend(u).shares.loc[name, "before"] for u in users])
    up = np.mean([live.recommend(u, {name: 8.0}).shares.loc[name, "after"] for u in users])
    down = np.mean([live.recommend(u, {name: -8.0}).shares.loc[name, "after"] for u in users])
    assert up > before > down or (before == 0 and up > 0)
    rec = live.recommend(0, {name: 8.0})
    assert set(rec.table.loc[rec.table["new"], "item"]).isdisjoint(set(rec.dropped["item"]))
    assert len(rec.dropped) == int(rec.table["new"].sum())  # every new item replaced one that left
    assert 0 <= rec.jaccard <= 1 and rec.seconds > 0


def test_latent_slider_equals_a_manual_add(live):
    latent = int(live.active_latents(0, 1)["latent"].iloc[0])
    rec = live.recommend(0, {f"latent:{latent}": 3.0})
    steering = sl.Steering.add(live.sae, latent, 3.0)
    assert steering.capture_point == "final" == live.capture_point
    cache = sl.SteeringCache(live.model, sl.left_pad([live.inputs[0]], live.model.max_len), "final")
    scores = cache.scores(steering)[0]
    scores[torch.from_numpy(np.asarray(live.inputs[0]))] = float("-inf")
    scores[0] = float("-inf")
    assert rec.table["item"].tolist() == torch.topk(scores, 5).indices.tolist()


def test_slider_steering_is_the_combination_of_the_per_slider_steerings(live):
    # An update builds one Steering from the sliders; it must be the documented one: the concept's
    # concept_steering (rule "add") and a latent slider's Steering.add, combined in the sliders' order.
    name = live.slider_names[0]
    latent = int(live.active_latents(0, 1)["latent"].iloc[0])
    sliders = {f"latent:{latent}": -1.5, name: 2.5}
    built = live.steering(sliders)
    expected = sl.Steering.combine(
        sl.Steering.identity(live.sae), sl.Steering.add(live.sae, latent, -1.5),
        sl.concept_steering(live.concepts[name], 2.5, live.concept_latents[name], live.sae),
    )
    assert built == expected and built.label == expected.label == f"more {name} (+2.5)"
    assert live.steering({}).is_identity and live.steering({name: 0.0}).is_identity
    down = live.steering({name: -3.0})
    assert down.label == f"less {name} (-3)" and {e.value for e in down.edits} == {-3.0}
    with pytest.raises(ValueError, match=f"slider '{name}' must be a finite number"):
        live.steering({name: float("inf")})


def test_bad_requests(live, tiny_seq):
    with pytest.raises(KeyError, match="unknown slider"):
        live.recommend(0, {"Westerns": 1.0})
    with pytest.raises(KeyError, match="unknown user index"):
        live.recommend(10_000)
    with pytest.raises(KeyError, match="unknown user id 99999"):
        live.user_index(99_999)
    with pytest.raises(ValueError):
        live.recommend(0, {live.slider_names[0]: float("nan")})
    with pytest.raises(ValueError, match="latent"):
        live.recommend(0, {"latent:999": 1.0})
    assert live.user_index(int(tiny_seq.users["user_id"].iloc[4])) == 4


def test_before_after_grid(live):
    name = live.slider_names[0]
    grid = sl.before_after_grid(live, 0, name, [0.0, 4.0])
    assert grid.shape == (5 + 2, 2)
    assert not grid["strength +0.0"].iloc[:5].str.startswith("+ ").any()  # nothing is new at strength 0
    assert grid.loc["overlap (Jaccard)", "strength +0.0"] == "1.00"


def test_steering_widget(live):
    pytest.importorskip("ipywidgets")
    uid = int(live.seq_data.users["user_id"].iloc[2])
    widget = sl.widgets.steering_widget(live, uid)
    assert widget.last.user == 2 and widget.last.jaccard == 1.0
    widget.sliders[live.slider_names[0]].value = 5.0
    assert widget.last.strengths == {live.slider_names[0]: 5.0}
    why = widget.children[-1].value
    assert why.startswith("<b>Why ") and "SAE error" in why
    html = sl.widgets.recommendations_html(widget.last)
    assert "Concept share" in html and "<table>" in html
    plain = widget._repr_mimebundle_()["text/plain"]  # what a notebook shows before it runs
    assert plain.startswith(f"Steering widget for user {uid}") and "VBox" not in plain
    assert "application/vnd.jupyter.widget-view+json" in widget._repr_mimebundle_()


def test_bad_histories_are_refused_on_construction(live, tiny_split):
    def build(inputs):
        return sl.LiveSteering(live.model, live.sae, live.seq_data, inputs, {}, k=5)

    inputs = list(tiny_split.test_inputs)
    empty = inputs[:7] + [np.array([], dtype=np.int64)] + inputs[8:]
    with pytest.raises(ValueError, match=r"inputs\[7\] is empty"):  # used to recommend items 1..5
        build(empty)
    floats = inputs[:2] + [np.asarray(inputs[2], dtype=float) + 0.5] + inputs[3:]
    with pytest.raises(TypeError, match=r"inputs\[2\] holds float values"):
        build(floats)
    strings = inputs[:1] + [[str(i) for i in inputs[1]]] + inputs[2:]
    with pytest.raises(TypeError, match=r"inputs\[1\] holds string values"):
        build(strings)


def test_sae_made_for_another_sasrec_is_refused_on_construction(live, tiny_split, tmp_path):
    import copy

    from seqsae_lib.utils.fileio import module_weights_sha256

    copy.deepcopy(live.sae).save(tmp_path / "sae", {"sasrec_weights_sha256": module_weights_sha256(live.model)})
    sae = sl.SparseAutoencoder.load(tmp_path / "sae")
    other = copy.deepcopy(live.model)  # same width, other weights: used to be accepted silently
    with torch.no_grad():
        other.item_emb.weight.mul_(1.5)
    with pytest.raises(sl.sae.SAEMetadataMismatchError, match=r"trained on another SASRec.*load the SASRec checkpoint"):
        sl.LiveSteering(other, sae, live.seq_data, tiny_split.test_inputs, {}, k=5)
    matching = sl.LiveSteering(live.model, sae, live.seq_data, tiny_split.test_inputs, {}, k=5)
    assert matching.recommend(0).table["item"].tolist() == live.recommend(0).table["item"].tolist()


def test_malformed_latent_slider_names_the_expected_format(live):
    # Used to fail with "invalid literal for int() with base 10: 'abc'".
    with pytest.raises(ValueError, match=r"slider 'latent:abc': a latent slider is named 'latent:<id>' with an integer "
                                         r"latent id in 0\.\.31, e\.g\. 'latent:12'"):
        live.recommend(0, {"latent:abc": 1.0})
    with pytest.raises(ValueError, match=r"slider 'latent:': a latent slider is named"):
        live.steering({"latent:": 1.0})
    with pytest.raises(KeyError, match="unknown slider 7"):
        live.steering({7: 1.0})  # type: ignore[dict-item]
