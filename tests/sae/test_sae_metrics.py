"""Tests for seqsae_lib.sae.metrics (chapter 3): reconstruction metrics with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqsae_lib.sae import (
    SAEConfig,
    SparseAutoencoder,
    cosine_similarity,
    dead_fraction,
    dense_fraction,
    density_histogram,
    evaluate_reconstruction,
    feature_density,
    fvu,
    is_dead,
    l0,
)


def data(n: int = 400, d: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 3.0 * torch.randn(n, d, generator=g) + 5.0


def test_fvu_known_answers():
    x = data()
    assert fvu(x, x) == 0.0
    assert fvu(x, x.mean(dim=0).expand_as(x)) == pytest.approx(1.0)
    # predicting zero (not the mean) is worse than the mean when x has an offset
    assert fvu(x, torch.zeros_like(x)) > 1.0
    # half the deviation from the mean left unexplained -> 1/4 of the variance
    mu = x.mean(dim=0)
    assert fvu(x, mu + 0.5 * (x - mu)) == pytest.approx(0.25)
    # scale invariant
    assert fvu(10 * x, 10 * (mu + 0.5 * (x - mu))) == pytest.approx(0.25)


def test_fvu_errors():
    x = data(10)
    with pytest.raises(ValueError, match="same shape"):
        fvu(x, x[:, :3])
    with pytest.raises(ValueError, match="zero variance"):
        fvu(torch.ones(5, 3), torch.ones(5, 3))
    bad = x.clone()
    bad[0, 0] = math.nan
    with pytest.raises(ValueError, match="finite"):
        fvu(x, bad)


def test_l0_and_cosine_known_answers():
    z = torch.tensor([[0.0, 1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0], [3.0, 3.0, 3.0, 3.0]])
    assert l0(z) == pytest.approx((2 + 0 + 4) / 3)
    x = data(50)
    assert cosine_similarity(x, 2.5 * x) == pytest.approx(1.0)
    assert cosine_similarity(x, -x) == pytest.approx(-1.0)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert cosine_similarity(a, b) == pytest.approx(0.5)


def test_feature_density_dead_and_dense_fractions():
    z = torch.zeros(10, 4)
    z[:, 0] = 1.0  # fires always
    z[:3, 1] = 0.5  # 30 %
    z[0, 2] = 2.0  # 10 %
    density = feature_density(z)
    assert density.tolist() == pytest.approx([1.0, 0.3, 0.1, 0.0])
    assert density.sum() == pytest.approx(l0(z))
    # dead: fewer than one firing per dead_after vectors
    assert dead_fraction(density, dead_after=5) == pytest.approx(0.5)  # 0.1 < 1/5 and 0.0
    assert dead_fraction(density, dead_after=10) == pytest.approx(0.25)  # 0.1 == 1/10 is alive
    assert dense_fraction(density) == pytest.approx(0.5)  # > 10 %: latents 0 and 1
    assert dense_fraction(density, threshold=0.5) == pytest.approx(0.25)


def test_dead_definition_is_shared_between_counts_density_and_training():
    counts = torch.tensor([0, 1, 2, 7, 100])
    n = 1000
    dead_after = 200  # dead: fewer than 1000 / 200 = 5 firings
    expected = [True, True, True, False, False]
    assert dead_fraction(counts, dead_after, num_vectors=n) == pytest.approx(np.mean(expected))
    assert dead_fraction(counts.double() / n, dead_after) == pytest.approx(np.mean(expected))
    # on a set no longer than dead_after, "dead" means "never fired", exactly like the training counter
    # of a latent that has not fired during the last dead_after vectors
    assert dead_fraction(torch.tensor([0, 1, 3]), dead_after=500, num_vectors=500) == pytest.approx(1 / 3)
    assert is_dead(torch.tensor([500, 499]), 500).tolist() == [True, False]
    with pytest.raises(ValueError, match="num_vectors"):
        dead_fraction(counts, dead_after)


def test_density_histogram_handles_never_firing_latents():
    density = torch.tensor([0.0, 0.0, 1e-4, 1e-3, 1e-2, 0.5, 1.0])
    h = density_histogram(density, bins=4)
    assert h.num_never_fired == 2 and h.num_latents == 7
    assert h.counts.sum() == 5
    assert len(h.edges) == 5 and h.edges[0] == pytest.approx(-4.0) and h.edges[-1] == 0.0
    assert np.allclose(sorted(h.log10_density), np.log10([1e-4, 1e-3, 1e-2, 0.5, 1.0]))
    empty = density_histogram(torch.zeros(3))
    assert empty.num_never_fired == 3 and empty.counts.sum() == 0
    with pytest.raises(ValueError, match="frequencies"):
        density_histogram(torch.tensor([0.5, 2.0]))


@pytest.mark.parametrize("kind", ["topk", "relu"])
def test_evaluate_reconstruction_matches_direct_computation(kind):
    x = data(1000)
    sae = SparseAutoencoder(SAEConfig(8, 32, kind=kind, k=3, dead_after=100))
    sae.init_input_scale(x)
    sae.init_b_dec(x)
    sae.train()
    with torch.no_grad():
        out = sae.eval()(x)
    sae.train()
    small = evaluate_reconstruction(sae, x, batch_size=77, return_density=True)
    big = evaluate_reconstruction(sae, x, batch_size=5000)
    assert sae.training  # mode restored
    assert small["fvu"] == pytest.approx(fvu(x, out.x_hat), rel=1e-5)
    assert small["cosine"] == pytest.approx(cosine_similarity(x, out.x_hat), rel=1e-5)
    assert small["l0"] == pytest.approx(l0(out.z))
    density = feature_density(out.z)
    assert torch.allclose(small["density"], density)
    assert small["dead_fraction"] == pytest.approx(dead_fraction(density, 100))
    assert small["dense_fraction"] == pytest.approx(dense_fraction(density))
    assert small["num_vectors"] == 1000
    for key in ("fvu", "mse", "cosine", "l0", "dead_fraction", "dense_fraction"):
        assert small[key] == pytest.approx(big[key], rel=1e-6, abs=1e-9), key
    if kind == "topk":
        assert small["l0"] <= 3


def test_evaluate_reconstruction_validates_width():
    sae = SparseAutoencoder(SAEConfig(8, 32, k=3))
    with pytest.raises(ValueError, match="last dimension 8"):
        evaluate_reconstruction(sae, torch.zeros(10, 5))
