"""Per-feature explanations of recommendation scores (seqsae_lib.interpret.explain)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqsae_lib as sl
from seqsae_lib.interpret import (
    counterfactual_check, explain_final, explain_inner, explain_top_k, explanations_table, rank_agreement,
)


@pytest.fixture(scope="module")
def parts(tiny_seq, tiny_split, train_tiny_sasrec):
    model = train_tiny_sasrec(tiny_split, epochs=2)
    saes = {}
    for point in ("final", "block_0"):
        store = sl.collect_activations(model, tiny_split.train, point, progress=False)
        sae, _ = sl.train_sae(store.acts, sl.SAEConfig(d_in=store.d_model, d_sae=32, k=4, seed=0),
                              sl.SAETrainConfig(num_epochs=2, batch_size=128, progress=False, num_threads=1))
        saes[point] = sae.eval()
    return model, saes, tiny_split, tiny_seq


def test_parts_sum_to_the_score_for_every_users_top_k(parts):
    model, saes, split, seq = parts
    sae = saes["final"]
    worst = 0.0
    for u, inputs in enumerate(split.test_inputs):
        explanations = explain_top_k(model, sae, inputs, k=5, seq_data=seq)
        with torch.no_grad():
            scores = model.scores(sl.left_pad([inputs], model.max_len))[0]
        for e in explanations:
            assert e.score == pytest.approx(float(scores[e.item]), rel=1e-5, abs=1e-6)
            worst = max(worst, abs(e.total - e.score) / max(abs(e.score), 1e-6))
            # only active latents appear, so a latent with zero activation contributes nothing
            z = sae.encode(model.last_hidden(sl.left_pad([inputs], model.max_len)))[0]
            assert set(e.contributions["latent"]) == set(torch.nonzero(z > 0).flatten().tolist())
            assert (e.contributions["activation"] > 0).all()
        assert [e.score for e in explanations] == sorted((e.score for e in explanations), reverse=True)
    assert worst < 1e-6


def test_sentence_and_table(parts):
    model, saes, split, seq = parts
    labels = __import__("pandas").DataFrame({"label": [f"L{j}" for j in range(32)]})
    ex = explain_top_k(model, saes["final"], split.test_inputs[0], k=3, seq_data=seq, labels=labels)
    text = ex[0].sentence()
    assert text.startswith(ex[0].title) and "supported by" in text and "SAE error" in text
    assert (ex[0].supporting()["contribution"] > 0).all() and (ex[0].opposing()["contribution"] < 0).all()
    table = explanations_table(ex)
    assert list(table.index) == [1, 2, 3] and table["title"].iloc[0] == ex[0].title
    top = ex[0].supporting(1).iloc[0]
    assert table["supported by"].iloc[0].startswith(f"L{int(top['latent'])} [{int(top['latent'])}] ({top['contribution']:+.2f})")


def test_inner_ablation_matches_a_direct_forward_pass(parts):
    model, saes, split, _ = parts
    sae = saes["block_0"]
    inputs = split.test_inputs[1]
    item = int(explain_top_k(model, saes["final"], inputs, k=1)[0].item)
    frame = explain_inner(model, sae, inputs, item, capture_point="block_0")
    assert len(frame) > 0
    ids = sl.left_pad([inputs], model.max_len)
    base = sl.steered_scores(model, None, ids)[0, item]
    for _, row in frame.head(3).iterrows():
        ablated = sl.steered_scores(model, sl.Steering.ablate(sae, int(row["latent"]), capture_point="block_0"), ids)[0, item]
        # ablate() sets z_j to 0 keeping the error term: the same as removing z_j W_dec[j] / s
        assert float(base - ablated) == pytest.approx(row["ablation"], rel=1e-4, abs=1e-5)
    assert (frame["rank_change"] == frame["rank_after"] - frame["rank_before"]).all()
    r = rank_agreement(frame)
    assert np.isnan(r) or -1 <= r <= 1


def test_counterfactual_check(parts):
    model, saes, split, _ = parts
    frame = counterfactual_check(model, saes["final"], split.test_inputs[:20], k=5)
    assert len(frame) == 20 * 5 * 2
    # removing a latent removes exactly its part of the item's score (other items move too, so ranks can go
    # either way; the measured share that drops is reported by the chapter, not assumed here)
    np.testing.assert_allclose(frame["score_drop"], frame["contribution"], rtol=1e-4, atol=1e-5)
    top = frame[frame["removal"] == "top supporting"]
    assert (top["contribution"] >= frame[frame["removal"] == "random active"]["contribution"].to_numpy() - 1e-6).all()
    assert (frame["rank_change"] == frame["rank_after"] - frame["rank_before"]).all()


def test_bad_requests(parts):
    model, saes, split, _ = parts
    with pytest.raises(KeyError, match="not in the catalogue"):
        explain_final(model, saes["final"], split.test_inputs[0], [0])
    with pytest.raises(KeyError, match="not in the catalogue"):
        explain_final(model, saes["final"], split.test_inputs[0], [split.num_items + 1])
    with pytest.raises(ValueError, match="non-empty"):
        explain_final(model, saes["final"], [], [1])
    with pytest.raises(ValueError, match="dim"):
        explain_final(model, sl.SparseAutoencoder(sl.SAEConfig(d_in=8, d_sae=16, k=2)), split.test_inputs[0], [1])
    with pytest.raises(sl.UnknownCapturePointError):
        explain_inner(model, saes["block_0"], split.test_inputs[0], 1, capture_point="block_9")


def test_live_explain(parts):
    model, saes, split, seq = parts
    live = sl.LiveSteering(model, saes["final"], seq, split.test_inputs, {seq.genre_names[0]: [0, 1]}, k=5,
                           capture_point="final")  # an SAE trained on plain vectors records no point
    rec = live.recommend(2, {seq.genre_names[0]: 3.0})
    e = live.explain(2, int(rec.table["item"].iloc[0]), {seq.genre_names[0]: 3.0})
    assert e.score == pytest.approx(float(rec.table["score"].iloc[0]), rel=1e-5)
    assert e.total == pytest.approx(e.score, rel=1e-6)
    with pytest.raises(KeyError, match="unknown user"):
        live.explain(10_000, 1)
    with pytest.raises(KeyError, match="not in the catalogue"):
        live.explain(0, 10_000)


def test_waterfall_ends_at_the_score(parts):
    import matplotlib

    matplotlib.use("Agg")
    model, saes, split, seq = parts
    (e,) = explain_top_k(model, saes["final"], split.test_inputs[0], k=1, seq_data=seq)
    ax = sl.plot_explanation(e, n=3)
    bars = ax.patches
    assert len(bars) == min(3, len(e.contributions)) + 3
    last = bars[-1]
    assert last.get_x() + last.get_width() == pytest.approx(e.score, rel=1e-4, abs=1e-5)


def test_bad_histories_are_refused_naming_position_and_value(parts):
    model, saes, split, _ = parts
    sae, seq = saes["final"], np.asarray(split.test_inputs[0])
    with_padding = np.concatenate([seq[:2], [0], seq[2:]])  # 0 used to be dropped silently
    with pytest.raises(ValueError, match=r"sequence\[2\] = 0 is not an item id.*0 is reserved for padding"):
        explain_top_k(model, sae, with_padding, k=3)
    with pytest.raises(TypeError, match=r"sequence holds float values \(5.7 at position 0\)"):
        explain_top_k(model, sae, [5.7, 7.2], k=3)  # used to be read as [5, 7]
    with pytest.raises(TypeError, match=r"sequence holds string values \('5' at position 0\)"):
        explain_final(model, sae, ["5", "7"], [1])
    with pytest.raises(ValueError, match=r"sequence is empty"):
        explain_top_k(model, sae, [], k=3)
    with pytest.raises(ValueError, match=rf"sequence\[0\] = {split.num_items + 1} is not an item id"):
        explain_inner(model, saes["block_0"], [split.num_items + 1], 1, capture_point="block_0")
    with pytest.raises(ValueError, match=r"inputs\[1\] is empty"):
        counterfactual_check(model, sae, [seq, []], k=2)


def test_sae_made_for_another_sasrec_is_refused(parts, tmp_path):
    import copy

    from seqsae_lib.utils.fileio import module_weights_sha256

    model, saes, split, seq = parts
    # An SAE saved with the hash of the SASRec it was trained on (as the shipped SAE is) ...
    copy.deepcopy(saes["final"]).save(tmp_path / "sae", {"sasrec_weights_sha256": module_weights_sha256(model)})
    sae = sl.SparseAutoencoder.load(tmp_path / "sae")
    assert len(explain_final(model, sae, split.test_inputs[0], [1])) == 1
    # ... and another SASRec of the same width, in memory: it used to be accepted silently.
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.item_emb.weight.mul_(1.5)
    with pytest.raises(sl.sae.SAEMetadataMismatchError, match=r"trained on another SASRec.*Retrain the SAE"):
        explain_final(other, sae, split.test_inputs[0], [1])
    with pytest.raises(sl.sae.SAEMetadataMismatchError, match="another SASRec"):
        explain_top_k(other, sae, split.test_inputs[0], k=3)
    with pytest.raises(sl.sae.SAEMetadataMismatchError, match="another SASRec"):
        explain_inner(other, sae, split.test_inputs[0], 1, capture_point="final")
    # An SAE trained in memory records no SASRec: nothing to check, any same-width model is accepted.
    assert not saes["final"].metadata
    assert len(explain_final(other, saes["final"], split.test_inputs[0], [1])) == 1
