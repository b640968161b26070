"""Concept coverage, its size-matched subsets, and output-side concentration against known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqsae_lib.interpret import LatentCodes, concept_coverage, output_concentration, subset_coverage

NAMES = ["a", "b", "c", "d", "e"]


def planted(m: int = 10, n: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Five balanced one-hot labels; units 0-2 fire only on positions of labels 0-2, the rest at random.

    Unit 3 is pure for label 3 but fires on only 60 positions (below min_fires=100).
    """
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 5, n)
    acts = np.zeros((n, m), np.float32)
    for unit in range(3):
        idx = rng.choice(np.flatnonzero(lab == unit), 300, replace=False)
        acts[idx, unit] = rng.random(300) + 0.1
    acts[rng.choice(np.flatnonzero(lab == 3), 60, replace=False), 3] = 5.0
    for unit in range(4, m):
        idx = rng.choice(n, 300, replace=False)
        acts[idx, unit] = rng.random(300) + 0.1
    return acts, np.eye(5)[lab]


@pytest.mark.parametrize("sparse", [False, True])
def test_coverage_finds_the_planted_pure_units_only(sparse):
    acts, labels = planted()
    units = LatentCodes.from_dense(torch.from_numpy(acts)) if sparse else acts
    cov = concept_coverage(units, labels, NAMES)
    assert cov["covered"].tolist() == [True, True, True, False, False]
    assert cov["best_unit"].tolist()[:3] == [0, 1, 2]
    np.testing.assert_allclose(cov["best_purity"][:3], 1.0)
    # noise units see the base rate (0.2): 100 draws stay far below 0.5
    assert (cov["best_purity"][3:] < 0.4).all()
    # the pure unit 3 fires 60 times: not eligible, so label 3 is not covered, but its AUC still counts
    assert cov.loc[3, "best_unit"] != 3
    assert cov.loc[3, "best_auc_unit"] == 3
    np.testing.assert_allclose(cov["base_share"], labels.mean(0))
    assert cov.attrs["n_eligible"] == 9
    # AUC of a unit firing on 300 of ~1,000 positives and nothing else: 0.5 + 0.5 * 300 / n_positive
    np.testing.assert_allclose(cov["best_auc"][:3], 0.5 + 0.5 * 300 / cov["n_positive"][:3], rtol=1e-9)


def test_purity_uses_the_top_n_firing_positions_with_ties_broken_by_position():
    n = 400
    labels = np.zeros((n, 2))
    labels[:100, 0] = 1
    labels[100:, 1] = 1
    acts = np.zeros((n, 2), np.float32)
    acts[:200, 0] = 1.0  # 200 tied positions: the top 100 are rows 0..99, all label 0
    acts[:200, 1] = np.linspace(1, 2, 200)  # highest values on rows 100..199: label 1
    cov = concept_coverage(acts, labels, ["x", "y"], top_n=100, min_fires=150)
    assert cov["best_unit"].tolist() == [0, 1]
    np.testing.assert_allclose(cov["best_purity"], [1.0, 1.0])
    # unlabelled rows are ignored: blank out labels 0..49, unit 0's top 100 are now rows 50..149
    labels[:50] = 0
    cov = concept_coverage(acts, labels, ["x", "y"], top_n=100, min_fires=150)
    np.testing.assert_allclose(cov.loc[0, "best_purity"], 0.5)
    np.testing.assert_allclose(cov.loc[0, "base_share"], 50 / 350)


def test_subset_coverage_counts_match_the_known_expectations():
    acts, labels = planted(m=10)
    full = subset_coverage(acts, labels, NAMES, subset_size=10, n_subsets=20)
    assert (full["n_covered"] == 3).all() and (full["n_eligible"] == 9).all()
    # one unit per subset: it covers one label iff it is one of the 3 planted units, so E[n_covered] = 3/10
    single = subset_coverage(acts, labels, NAMES, subset_size=1, n_subsets=4000, seed=1)
    assert set(single["n_covered"]) <= {0, 1}
    se = np.sqrt(0.3 * 0.7 / 4000)
    assert abs(single["n_covered"].mean() - 0.3) < 4 * se
    # the ineligible unit 3 alone has no best purity
    assert single["mean_best_purity"].isna().mean() == pytest.approx(0.1, abs=4 * np.sqrt(0.09 / 4000))
    # subsets are distinct units: with subset_size 9 at most one unit is missing, at least 2 planted are in
    nine = subset_coverage(acts, labels, NAMES, subset_size=9, n_subsets=200)
    assert nine["n_covered"].between(2, 3).all()
    assert (nine["n_covered"] == 2).mean() == pytest.approx(0.3, abs=0.15)


def clustered_items(n_items: int = 600, d: int = 32, c: int = 5, sep: float = 2.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    lab = rng.integers(0, c, n_items + 1)
    items = rng.normal(size=(n_items + 1, d)) + sep * centres[lab]
    item_labels = np.eye(c)[lab]
    item_labels[0] = 0  # padding row
    return items, item_labels, centres, rng


def test_a_direction_along_a_cluster_promotes_its_label_and_beats_random_directions():
    items, item_labels, centres, rng = clustered_items()
    dirs = np.vstack([centres[2], np.zeros(32), rng.normal(size=(3, 32))])
    out = output_concentration(dirs, items, item_labels, NAMES, top_n=50, n_random=500)
    aligned = out.loc[0]
    assert aligned["top_label"] == "c" and aligned["top_share"] > 0.8
    assert aligned["lift"] > 3 and aligned["kl_excess"] > 0.5 and aligned["z"] > 5
    assert aligned["pct_vs_random"] == 1.0
    # the zero direction promotes nothing
    assert not out.loc[1, "eligible"] and np.isnan(out.loc[1, "kl_excess"])
    assert (out["kl_null"] == out["kl_null"].iloc[0]).all()
    # why random directions and not random item sets: items cluster, so any direction's top items are
    # more concentrated than a random set of 50 items
    dist = item_labels[1:] / item_labels[1:].sum(1, keepdims=True)
    base = dist.mean(0)
    kls = []
    for _ in range(300):
        p = dist[rng.choice(len(dist), 50, replace=False)].mean(0)
        kls.append(float(np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / base), 0))))
    assert np.mean(kls) < 0.5 * out["kl_null"].iloc[0]


def test_random_directions_are_calibrated_against_the_null():
    items, item_labels, _, rng = clustered_items(sep=1.5, seed=1)
    dirs = torch.from_numpy(rng.normal(size=(400, 32)))
    out = output_concentration(dirs, items, item_labels, NAMES, top_n=50, n_random=1000, seed=7)
    # 400 draws from (almost) the null distribution: the mean excess is 0 within its standard error
    se = out.attrs["kl_null_std"] / np.sqrt(400)
    assert abs(out["kl_excess"].mean()) < 4 * se
    assert abs(out["z"].mean()) < 4 / np.sqrt(400)
    assert abs(out["pct_vs_random"].mean() - 0.5) < 4 * np.sqrt(1 / 12 / 400)
    # scale of a direction does not matter
    scaled = output_concentration(dirs[:5] * 7.0, items, item_labels, NAMES, top_n=50, n_random=1000, seed=7)
    np.testing.assert_allclose(scaled["kl"], out["kl"][:5])


def test_bad_input_is_refused_with_clear_messages():
    acts, labels = planted()
    with pytest.raises(ValueError, match="labels must have shape"):
        concept_coverage(acts, labels[:-1], NAMES)
    with pytest.raises(ValueError, match="label_names has 4 names"):
        concept_coverage(acts, labels, NAMES[:4])
    with pytest.raises(ValueError, match="min_fires must be >= top_n"):
        concept_coverage(acts, labels, NAMES, top_n=100, min_fires=50)
    with pytest.raises(ValueError, match="threshold"):
        concept_coverage(acts, labels, NAMES, threshold=1.5)
    with pytest.raises(ValueError, match="no position has a label"):
        concept_coverage(acts, np.zeros_like(labels), NAMES)
    with pytest.raises(ValueError, match=r"subset_size must be in \[1, 10\], got 11"):
        subset_coverage(acts, labels, NAMES, subset_size=11)
    items, item_labels, _, _ = clustered_items(n_items=100)
    with pytest.raises(ValueError, match="D=31"):
        output_concentration(np.ones((2, 31)), items, item_labels, NAMES)
    with pytest.raises(ValueError, match="item_labels must have shape"):
        output_concentration(np.ones((2, 32)), items, item_labels[:-1], NAMES)
    with pytest.raises(ValueError, match="fewer than top_n=500"):
        output_concentration(np.ones((2, 32)), items, item_labels, NAMES, top_n=500)
    with pytest.raises(TypeError, match="label_names"):
        output_concentration(np.ones((2, 32)), items, item_labels, "abcde")
