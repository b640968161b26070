"""Tests for seqsae_lib.interpret.auc, unit_scores and unit_types (chapter 4): scores with known answers, unit types, summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqsae_lib.interpret import (
    LatentCodes,
    auc_matrix,
    bootstrap_median_ci,
    compare_unit_types,
    hidden_dim_units,
    js_divergence,
    latent_activations,
    monosemanticity_scores,
    pca_directions,
    pca_units,
    planted_recovery,
    random_directions,
    random_rotation_units,
    sae_units,
    untrained_sae_units,
)
from seqsae_lib.sae import SAEConfig, SparseAutoencoder


def genres(n: int = 5000, g: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, g)) < 0.2).astype(np.float32)
    y[y.sum(1) == 0, 0] = 1.0  # every position has a next item with a genre
    return y


def brute_auc(a: np.ndarray, lab: np.ndarray) -> float:
    pos, neg = a[lab == 1], a[lab == 0]
    if len(pos) == 0 or len(neg) == 0:
        return 0.5
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / (len(pos) * len(neg)))


# ---- known answers ---------------------------------------------------------------------------------------


def test_indicator_unit_is_perfect_and_random_unit_is_chance():
    y = genres()
    rng = np.random.default_rng(1)
    units = np.stack([2.0 * y[:, 3], rng.random(len(y))], axis=1).astype(np.float32)
    df = monosemanticity_scores(units, y, y, genre_names=list("ABCDE"))
    ind = df.loc[0]
    assert ind["auc_next"] == pytest.approx(1.0) and ind["genre_next"] == "D"
    assert ind["auc_input"] == pytest.approx(1.0) and ind["genre_input"] == "D"
    assert ind["purity"] == pytest.approx(1.0)
    assert ind["purity_lift"] == pytest.approx(1.0 / y[:, 3].mean())
    assert ind["js"] == pytest.approx(1.0) and ind["js_distance"] == pytest.approx(1.0)
    assert ind["ms"] > df.loc[1, "ms"]
    assert abs(df.loc[1, "auc_next"] - 0.5) < 0.05
    assert abs(df.loc[1, "purity_lift"] - 1.0) < 0.6
    assert df.loc[1, "js"] < 0.05


def test_constant_and_dead_units_give_chance_scores_without_nan():
    y = genres(n=600)
    units = np.zeros((600, 3), dtype=np.float32)
    units[:, 1] = 1.7  # constant, non-zero
    units[::7, 2] = 1.0  # fires a bit, ties everywhere
    for acts in (units, LatentCodes.from_dense(torch.from_numpy(units))):
        df = monosemanticity_scores(acts, y, y, top_n=50)
        assert not df.isna().any().any()
        for u in (0, 1):
            assert df.loc[u, "auc_next"] == pytest.approx(0.5) and df.loc[u, "auc_input"] == pytest.approx(0.5)
            assert df.loc[u, "js"] == 0.0 and bool(df.loc[u, "constant"])
            assert df.loc[u, "purity"] == pytest.approx(df.loc[u, "base_rate"])  # ties shared: expected purity
            assert df.loc[u, "purity_lift"] == pytest.approx(1.0)
            assert df.loc[u, "ms"] == pytest.approx(df.loc[u, "ms_chance"])
        assert df.loc[0, "fire_rate"] == 0.0 and df.loc[1, "fire_rate"] == 1.0
        assert not bool(df.loc[2, "constant"])


def test_auc_matches_brute_force_with_ties_negatives_and_mask():
    rng = np.random.default_rng(0)
    n = 70
    y = (rng.random((n, 3)) < 0.3).astype(float)
    x = rng.integers(-2, 3, size=(n, 5)).astype(np.float32)  # many ties, zeros and negative values
    x[:, 4] = 0.0
    mask = rng.random(n) < 0.7
    expected = np.array([[brute_auc(x[:, u], y[:, g]) for g in range(3)] for u in range(5)])
    expected_m = np.array([[brute_auc(x[mask, u], y[mask, g]) for g in range(3)] for u in range(5)])
    assert np.allclose(auc_matrix(x, y), expected, atol=1e-12)
    assert np.allclose(auc_matrix(LatentCodes.from_dense(torch.from_numpy(x)), y), expected, atol=1e-12)
    assert np.allclose(auc_matrix(torch.from_numpy(x), y, mask=mask), expected_m, atol=1e-12)
    # a label with no positive: 0.5
    y0 = y.copy()
    y0[:, 1] = 0
    assert np.allclose(auc_matrix(x, y0)[:, 1], 0.5)


def test_js_divergence_hand_made():
    assert js_divergence([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == pytest.approx(0.0)
    assert js_divergence([1, 1, 0, 0], [0, 0, 3, 1]) == pytest.approx(1.0)  # disjoint supports
    # P = (1, 0), Q = (1/2, 1/2): H(3/4, 1/4) - (0 + 1) / 2
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert js_divergence([1, 0], [0.5, 0.5]) == pytest.approx(h - 0.5)
    rows = js_divergence(np.array([[1, 0], [1, 1]]), np.array([[0, 1], [1, 1]]))
    assert np.allclose(rows, [1.0, 0.0])
    assert js_divergence([0, 0], [1, 0]) == 0.0  # empty distribution
    with pytest.raises(ValueError):
        js_divergence([1, 0], [1, 0, 0])


def test_purity_lift_and_ms_hand_made():
    # 10 positions; genre A on positions 0, 1, 4; genre B elsewhere
    y = np.zeros((10, 2), dtype=np.float32)
    y[[0, 1, 4], 0] = 1
    y[:, 1] = 1 - y[:, 0]
    a = np.array([5, 4, 3, 3, 0, 0, 0, 0, 0, 0], dtype=np.float32)  # tie at the 3rd place
    df = monosemanticity_scores(a[:, None], y, top_n=3, min_positives=1, genre_names=["A", "B"])
    # top-3: positions 0, 1 fully, positions 2 and 3 half each -> A share = (1 + 1 + 0 + 0) / 3
    assert df.loc[0, "genre_next"] == "A"
    assert df.loc[0, "purity"] == pytest.approx(2 / 3)
    assert df.loc[0, "base_rate"] == pytest.approx(0.3)
    assert df.loc[0, "purity_lift"] == pytest.approx((2 / 3) / 0.3)
    # ms: weights 5, 4, 1.5, 1.5 on vectors A, A, B, B (orthogonal): only A-A and B-B pairs count
    w = np.array([5, 4, 1.5, 1.5])
    same = 2 * (5 * 4) + 2 * (1.5 * 1.5)
    all_pairs = w.sum() ** 2 - (w**2).sum()
    assert df.loc[0, "ms"] == pytest.approx(same / all_pairs)
    # chance: 3 A's and 7 B's -> (3*2 + 7*6) / (10*9)
    assert df.loc[0, "ms_chance"] == pytest.approx((6 + 42) / 90)


def test_ms_with_item_vectors():
    rng = np.random.default_rng(0)
    n, num_items = 400, 30
    next_items = rng.integers(1, num_items + 1, size=n)
    vectors = rng.normal(size=(num_items + 1, 6))
    y = genres(n=n, g=3)
    unit = (next_items == 7).astype(np.float32)[:, None]  # always the same film -> similarity 1
    df = monosemanticity_scores(unit, y, next_items=next_items, item_vectors=vectors, top_n=5, min_positives=1)
    assert df.loc[0, "ms"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="together"):
        monosemanticity_scores(unit, y, next_items=next_items)


def test_score_input_validation():
    y = genres(n=100)
    x = np.random.default_rng(0).random((100, 2)).astype(np.float32)
    with pytest.raises(ValueError, match="shape"):
        monosemanticity_scores(x, y[:50])
    with pytest.raises(ValueError, match="0/1"):
        monosemanticity_scores(x, y * 3)
    with pytest.raises(ValueError, match="top_n"):
        monosemanticity_scores(x, y, top_n=1)
    with pytest.raises(ValueError, match="min_positives"):
        monosemanticity_scores(x, y, min_positives=1000)
    with pytest.raises(ValueError, match="NaN"):
        monosemanticity_scores(np.full((100, 2), np.nan, dtype=np.float32), y)
    with pytest.raises(ValueError, match="names"):
        monosemanticity_scores(x, y, genre_names=["a"])


# ---- unit types ------------------------------------------------------------------------------------------


def test_hidden_dim_units_double_width_and_are_non_negative():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g) + 3.0
    units = hidden_dim_units(x)
    assert units.shape == (200, 12) and bool((units >= 0).all())
    centred = x - x.mean(0)
    assert torch.allclose(units[:, :6] - units[:, 6:], centred, atol=1e-5)
    raw = hidden_dim_units(x, center=False)
    assert torch.equal(raw[:, :6], torch.relu(x)) and torch.equal(raw[:, 6:], torch.relu(-x))


def test_pca_and_random_rotation_units():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 5, generator=g) * torch.tensor([5.0, 1.0, 0.5, 3.0, 0.1])
    p = pca_units(x)
    assert p.shape == (500, 10) and bool((p >= 0).all())
    proj = (p[:, :5] - p[:, 5:]).double()
    var = proj.var(0)
    assert bool((var[:-1] >= var[1:]).all())  # sorted by explained variance
    assert pca_units(x, 2, both_signs=False).shape == (500, 2)
    r = random_rotation_units(x, seed=3)
    assert r.shape == (500, 10) and bool((r >= 0).all())
    rot = (r[:, :5] - r[:, 5:]).double()
    centred = (x - x.mean(0)).double()
    assert torch.allclose(rot.norm(dim=1), centred.norm(dim=1), atol=1e-4)  # a rotation keeps norms
    assert not torch.allclose(random_rotation_units(x, seed=4), r)
    assert torch.equal(random_rotation_units(x, seed=3), r)
    with pytest.raises(ValueError, match="n_components"):
        pca_units(x, 6)


def test_pca_and_random_directions_are_the_axes_of_the_units():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 5, generator=g) * torch.tensor([5.0, 1.0, 0.5, 3.0, 0.1])
    centred = (x - x.double().mean(0).float()).double()
    d = pca_directions(x, 3)
    assert d.shape == (3, 5) and torch.allclose(d @ d.T, torch.eye(3, dtype=torch.float64), atol=1e-10)
    assert d[0].abs().argmax() == 0 and d[1].abs().argmax() == 3  # the largest variances, in order
    assert torch.allclose(torch.relu(centred @ d.T).float(), pca_units(x, 3, both_signs=False), atol=1e-5)
    r = random_directions(5, seed=3)
    assert torch.allclose(r @ r.T, torch.eye(5, dtype=torch.float64), atol=1e-10)
    assert torch.equal(random_directions(5, 2, seed=3), r[:2])
    assert torch.allclose(torch.relu(centred @ r.T).float(), random_rotation_units(x, seed=3, both_signs=False),
                          atol=1e-5)
    with pytest.raises(ValueError, match="n"):
        random_directions(5, 6)


def test_sae_and_untrained_sae_units():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 8, generator=g)
    sae = SparseAutoencoder(SAEConfig(d_in=8, d_sae=24, k=3, seed=0))
    codes = sae_units(sae, x)
    assert isinstance(codes, LatentCodes) and codes.shape == (300, 24)
    assert torch.allclose(codes.to_dense(), latent_activations(sae, x).to_dense())
    cfg = SAEConfig(d_in=8, d_sae=24, k=3)
    u1 = untrained_sae_units(cfg, x, seed=1)
    u2 = untrained_sae_units(cfg, x, seed=2)
    assert u1.shape == (300, 24) and int((u1.indptr[1:] - u1.indptr[:-1]).max()) <= 3
    assert not torch.equal(u1.to_dense(), u2.to_dense())
    assert torch.equal(untrained_sae_units(cfg, x, seed=1).to_dense(), u1.to_dense())
    bt = untrained_sae_units(SAEConfig(d_in=8, d_sae=24, k=3, kind="batchtopk"), x, seed=1)
    assert 0 < bt.nnz / 300 < 24


# ---- summaries -------------------------------------------------------------------------------------------


def test_bootstrap_median_ci():
    v = np.arange(101, dtype=float)
    med, lo, hi = bootstrap_median_ci(v, n_boot=500, seed=0)
    assert med == 50.0 and lo <= med <= hi and hi - lo < 30
    assert bootstrap_median_ci(v, n_boot=500, seed=0) == (med, lo, hi)
    m2 = bootstrap_median_ci(np.array([1.0, np.nan, 3.0]), n_boot=50)
    assert m2[0] == 2.0 and not any(math.isnan(t) for t in m2)
    assert all(math.isnan(t) for t in bootstrap_median_ci([], n_boot=10))
    assert bootstrap_median_ci([4.0] * 7, n_boot=20) == (4.0, 4.0, 4.0)


def test_compare_unit_types():
    y = genres(n=800)
    rng = np.random.default_rng(0)
    sae_like = np.stack([2.0 * y[:, g] for g in range(5)] + [np.zeros(800)], axis=1).astype(np.float32)
    dense = rng.random((800, 6)).astype(np.float32)
    results = {"planted": monosemanticity_scores(sae_like, y, y), "random": monosemanticity_scores(dense, y, y)}
    summary = compare_unit_types(results, n_boot=200)
    assert list(summary.columns) == ["unit_type", "score", "n_units", "median", "ci_low", "ci_high"]
    auc = summary[summary.score == "auc_next"].set_index("unit_type")
    assert auc.loc["planted", "median"] == pytest.approx(1.0)
    assert auc.loc["planted", "ci_low"] > auc.loc["random", "ci_high"]
    active = compare_unit_types(results, scores=["auc_next"], n_boot=50, only_active=True)
    assert active.set_index("unit_type").loc["planted", "n_units"] == 5
    with pytest.raises(ValueError):
        compare_unit_types({})


def test_planted_recovery_constructed_case():
    rng = np.random.default_rng(0)
    n = 2000
    topic = rng.integers(0, 4, size=n)
    topic[:50] = -1  # unknown next item
    units = np.zeros((n, 3), dtype=np.float32)
    units[:, 0] = (topic == 0) * 1.0  # detects topic 0 exactly
    units[:, 1] = (topic == 2) * 1.0 + 0.05 * rng.random(n)  # detects topic 2
    units[:, 2] = rng.random(n)  # noise
    out = planted_recovery(units, topic, threshold=0.9)
    assert out["n_topics"] == 4 and out["n_recovered"] == 2 and out["recovered"] == [0, 2]
    assert out["fraction"] == 0.5 and out["best_unit"][0] == 0 and out["best_unit"][2] == 1
    assert out["best_auc"][0] == pytest.approx(1.0) and out["n_distinct_units"] == 2
    codes = LatentCodes.from_dense(torch.from_numpy(units))
    assert planted_recovery(codes, torch.from_numpy(topic), threshold=0.9)["recovered"] == [0, 2]
    assert planted_recovery(units, topic, threshold=0.9, n_topics=5)["n_topics"] == 5
    with pytest.raises(ValueError, match="threshold"):
        planted_recovery(units, topic, threshold=0.4)
    with pytest.raises(ValueError):
        planted_recovery(units, topic[:10])
