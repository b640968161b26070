"""Tests for seqsae_lib.sae.fidelity (chapter 3)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from seqsae_lib.sae import (
    FIDELITY_CONDITIONS,
    FidelityResult,
    SAEConfig,
    SparseAutoencoder,
    collect_activations,
    downstream_fidelity,
    fidelity_per_user,
    next_item_cross_entropy,
    splice,
)
from seqsae_lib.model import SASRec, UnknownCapturePointError, evaluate, record

D = 16
MAX_LEN = 12


@pytest.fixture(scope="module")
def model(split, train_tiny_sasrec) -> SASRec:
    return train_tiny_sasrec(split, epochs=8, d_model=D, max_len=MAX_LEN)


@pytest.fixture()
def short_ids() -> torch.Tensor:
    return torch.tensor([[0, 0, 0, 4, 5, 6], [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 9]])


def random_sae(d_in: int = D, capture_point: str | None = None) -> SparseAutoencoder:
    return SparseAutoencoder(SAEConfig(d_in=d_in, d_sae=4 * d_in, kind="topk", k=3, normalize_input=False,
                                       capture_point=capture_point))


def identity_sae(kind: str) -> SparseAutoencoder:
    """d_sae = 2 d, W_dec = [I; -I], W_enc = W_dec.T: z = [relu(x), relu(-x)] and x_hat = x exactly."""
    sae = SparseAutoencoder(SAEConfig(d_in=D, d_sae=2 * D, kind=kind, k=D, normalize_input=False))
    eye = torch.eye(D)
    with torch.no_grad():
        sae.W_dec.copy_(torch.cat([eye, -eye]))
        sae.W_enc.copy_(sae.W_dec.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def _no_hooks(m: SASRec) -> bool:
    return all(not hp._forward_hooks for hp in m.hooks.values())


@torch.no_grad()
def test_sae_plus_error_reproduces_the_original_scores(model, short_ids):
    sae = random_sae()
    base = model.scores(short_ids)
    for point in model.capture_points:
        for positions in ("all", "last"):
            with splice(model, sae, point, mode="sae+error", positions=positions):
                out = model.scores(short_ids)
            torch.testing.assert_close(out, base, rtol=1e-5, atol=1e-5)
            with splice(model, sae, point, mode="sae", positions=positions):
                lossy = model.scores(short_ids)
            assert not torch.allclose(lossy[:, 1:], base[:, 1:], atol=1e-3)  # a random SAE is lossy
    assert _no_hooks(model)


@torch.no_grad()
def test_zero_ablation_at_final_gives_all_zero_scores(model, short_ids):
    with splice(model, None, "final", mode="zero"):
        s = model.scores(short_ids)
    assert torch.equal(s[:, 1:], torch.zeros_like(s[:, 1:]))
    assert torch.isneginf(s[:, 0]).all()


@torch.no_grad()
def test_mean_ablation_uses_the_mean_and_padding_stays_zero(model, short_ids):
    mean = torch.randn(D)
    real = short_ids != 0
    for point in ("embed", "block_0", "final"):
        with splice(model, None, point, mode="mean", mean=mean), record(model, point) as rec:
            s = model.scores(short_ids)
        h = rec[point]
        torch.testing.assert_close(h[real], mean.expand(int(real.sum()), D))
        assert torch.equal(h[~real], torch.zeros_like(h[~real]))
    torch.testing.assert_close(s, model.score(mean.expand(3, D).clone()))  # last point was "final"
    # SAE splicing leaves padding at zero too, and "last" leaves earlier positions untouched
    with splice(model, random_sae(), "block_0", mode="sae"), record(model, "block_0") as rec:
        model(short_ids)
    assert torch.equal(rec["block_0"][~real], torch.zeros(int((~real).sum()), D))
    with record(model, "block_0") as plain:
        model(short_ids)
    with splice(model, random_sae(), "block_0", mode="sae", positions="last"), record(model, "block_0") as rec:
        model(short_ids)
    assert torch.equal(rec["block_0"][:, :-1], plain["block_0"][:, :-1])
    assert not torch.allclose(rec["block_0"][:, -1], plain["block_0"][:, -1])


@pytest.mark.parametrize("kind", ["relu", "topk"])
@torch.no_grad()
def test_perfect_sae_gives_the_original_scores(model, short_ids, kind):
    sae = identity_sae(kind)
    x = torch.randn(20, D)
    torch.testing.assert_close(sae.decode(sae.encode(x)), x)
    base = model.scores(short_ids)
    for point in model.capture_points:
        with splice(model, sae, point, mode="sae"):
            torch.testing.assert_close(model.scores(short_ids), base, rtol=1e-5, atol=1e-5)


def test_errors(model, short_ids):
    wide = random_sae(d_in=D + 8)
    with pytest.raises(ValueError, match=r"d_in=24.*d_model=16"):
        with splice(model, wide, "final"):
            pass
    with pytest.raises(UnknownCapturePointError, match="block_1"):
        with splice(model, random_sae(), "block_5"):
            pass
    with pytest.raises(ValueError, match="mode must be one of"):
        with splice(model, random_sae(), "final", mode="sae+noise"):  # type: ignore[arg-type]
            pass
    with pytest.raises(TypeError, match="needs an SAE"):
        with splice(model, None, "final", mode="sae"):
            pass
    with pytest.raises(ValueError, match=r"shape \(d_model,\)"):
        with splice(model, None, "final", mode="mean", mean=torch.zeros(D + 1)):
            pass
    with pytest.raises(ValueError, match="NaN"):
        with splice(model, None, "final", mode="mean", mean=torch.full((D,), float("nan"))):
            pass
    with pytest.raises(TypeError, match="mean must be a tensor"):
        with splice(model, None, "final", mode="mean"):
            pass
    assert _no_hooks(model)


def test_sae_mode_restored(model, short_ids):
    sae = random_sae().train()
    with splice(model, sae, "final"):
        assert not sae.training
        model(short_ids)
    assert sae.training


@pytest.fixture(scope="module")
def fidelity_table(model, split):
    store = collect_activations(model, split.train, "block_1", progress=False)
    return downstream_fidelity(
        model, identity_sae("relu"), split.test_inputs, split.test_targets, "block_1",
        mean=store.mean(), num_items=split.num_items, batch_size=16,
    )


def test_downstream_fidelity_table(model, split, fidelity_table):
    result = fidelity_table
    assert isinstance(result, FidelityResult) and result.capture_point == "block_1"
    df = result.table
    assert list(df.index) == list(FIDELITY_CONDITIONS)
    assert list(df.columns) == ["NDCG@10", "HR@10", "CE", "CE increase",
                                "fraction recovered (CE)", "fraction of original NDCG@10"]
    orig = evaluate(model, split.test_inputs, split.test_targets, num_items=split.num_items)
    assert df.loc["original", "NDCG@10"] == pytest.approx(orig["NDCG@10"])
    ce = next_item_cross_entropy(model, split.test_inputs, split.test_targets, batch_size=7)
    assert df.loc["original", "CE"] == pytest.approx(ce, rel=1e-9)
    # a perfect SAE and the error term reproduce the original
    for cond in ("SAE (no error term)", "SAE + error term"):
        assert df.loc[cond, "NDCG@10"] == pytest.approx(df.loc["original", "NDCG@10"], abs=1e-12)
        assert df.loc[cond, "CE"] == pytest.approx(ce, abs=1e-5)
        assert df.loc[cond, "fraction recovered (CE)"] == pytest.approx(1.0, abs=1e-3)
        np.testing.assert_array_equal(result.eval_results[cond].ranks, orig.ranks)
    assert df.loc["original", "fraction recovered (CE)"] == pytest.approx(1.0)
    assert df.loc["mean ablation", "fraction recovered (CE)"] == pytest.approx(0.0)
    assert df.loc["mean ablation", "CE"] > df.loc["original", "CE"]  # the trained model beats the mean state
    per_user = fidelity_per_user(result, "NDCG")
    assert per_user.shape == (len(split.test_inputs), len(FIDELITY_CONDITIONS))
    pd.testing.assert_frame_equal(result.per_user("NDCG"), per_user)
    assert fidelity_per_user(result, "ce")["original"].mean() == pytest.approx(ce)
    with pytest.raises(ValueError, match="unknown metric"):
        fidelity_per_user(result, "AUC")
    with pytest.raises(TypeError, match="no per-user data"):
        fidelity_per_user(df, "NDCG")  # type: ignore[arg-type]
    assert "NDCG@10" in result._repr_html_() and "block_1" in repr(result)


def test_zero_ablation_ce_at_final_is_log_num_items(model, split):
    with splice(model, None, "final", mode="zero"):
        ce = next_item_cross_entropy(model, split.test_inputs[:10], split.test_targets[:10])
    assert ce == pytest.approx(math.log(split.num_items))


def test_downstream_fidelity_errors(model, split):
    args = (split.test_inputs, split.test_targets)
    with pytest.raises(ValueError, match=r"d_in=24.*d_model=16"):
        downstream_fidelity(model, random_sae(D + 8), *args, "final", mean=torch.zeros(D), num_items=split.num_items)
    with pytest.raises(UnknownCapturePointError, match="embed"):
        downstream_fidelity(model, random_sae(), *args, "layer_1", mean=torch.zeros(D), num_items=split.num_items)
    with pytest.raises(ValueError, match="num_items"):
        downstream_fidelity(model, random_sae(), *args, "final", mean=torch.zeros(D), num_items=3)
    with pytest.raises(ValueError, match="one id per user"):
        downstream_fidelity(model, random_sae(), split.test_inputs, split.test_targets[:4], "final",
                            mean=torch.zeros(D), num_items=split.num_items)
    with pytest.raises(ValueError, match=r"targets must be item ids in \[1, 80\]"):
        downstream_fidelity(model, random_sae(), split.test_inputs, split.test_targets * 0, "final",
                            mean=torch.zeros(D), num_items=split.num_items)


def test_final_splices_only_what_reaches_the_scores(model, split):
    """At "final" the table splices the last position only; it must match a full splice + evaluate."""
    sae = random_sae()
    inputs, targets = split.test_inputs[:20], split.test_targets[:20]
    details = downstream_fidelity(model, sae, inputs, targets, "final", mean=torch.zeros(D),
                                  num_items=split.num_items, positions="all")
    with splice(model, sae, "final", mode="sae", positions="all"):
        ref = evaluate(model, inputs, targets, num_items=split.num_items)
        ce = next_item_cross_entropy(model, inputs, targets, reduction="none")
    np.testing.assert_array_equal(details.eval_results["SAE (no error term)"].ranks, ref.ranks)
    np.testing.assert_allclose(details.ce_per_user["SAE (no error term)"], ce, rtol=1e-6)
    assert details.table.loc["zero ablation", "CE"] == pytest.approx(math.log(split.num_items))


def test_capture_point_comes_from_the_sae(model, split):
    """An SAE that records where it reads needs no capture point; another one is refused."""
    sae = random_sae(capture_point="block_0")
    inputs, targets = split.test_inputs[:20], split.test_targets[:20]
    implicit = downstream_fidelity(model, sae, inputs, targets, mean=torch.zeros(D), num_items=split.num_items)
    explicit = downstream_fidelity(model, sae, inputs, targets, "block_0", mean=torch.zeros(D),
                                   num_items=split.num_items)
    assert implicit.capture_point == "block_0"
    pd.testing.assert_frame_equal(implicit.table, explicit.table)
    with pytest.raises(ValueError, match="reads SASRec at 'block_0', not 'final'"):
        downstream_fidelity(model, sae, inputs, targets, "final", mean=torch.zeros(D), num_items=split.num_items)
    with pytest.raises(ValueError, match="reads SASRec at 'block_0'"):
        with splice(model, sae, "final"):
            pass
    with pytest.raises(ValueError, match="does not record where it reads"):
        with splice(model, random_sae()):
            pass
    with pytest.raises(ValueError, match="capture_point is required"):
        with splice(model, None, mode="zero"):
            pass
    with splice(model, sae), record(model, "block_0") as rec:  # spliced at the SAE's point
        model(torch.tensor([[1, 2, 3]]))
    with record(model, "block_0") as plain:
        model(torch.tensor([[1, 2, 3]]))
    assert not torch.allclose(rec["block_0"], plain["block_0"])
    assert _no_hooks(model)
