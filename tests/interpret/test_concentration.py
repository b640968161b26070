"""Fair monosemanticity measures (chapter 4): AUC ceiling, top-firing concentration, truncation, frequency matching."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from seqsae_lib.interpret import (
    LatentCodes, auc_ceiling, auc_matrix, by_fire_bin, category_labels, energy_share, fair_unit_scores, fire_counts,
    frequency_matched_scores, top_firing_concentration, truncate_to_top, weighted_summary,
)

SHARES = np.array([0.30, 0.25, 0.18, 0.12, 0.09, 0.06])  # unequal genre frequencies


def one_hot_genres(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed).choice(len(SHARES), n, p=SHARES)
    return g, np.eye(len(SHARES), dtype=np.float32)[g]


def sparse_unit(n: int, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a = np.zeros(n, dtype=np.float32)
    a[rows] = rng.random(len(rows)).astype(np.float32) + 0.1
    return a


@pytest.fixture(scope="module")
def planted():
    """20k positions; units 0-8 fire on 300 positions of one genre, 9-20 on 300 random ones, 21-22 are dense."""
    n = 20_000
    rng = np.random.default_rng(1)
    g, y = one_hot_genres(n)
    units = [sparse_unit(n, rng.choice(np.flatnonzero(g == k % 3), 300, replace=False), rng) for k in range(9)]
    units += [sparse_unit(n, rng.choice(n, 300, replace=False), rng) for _ in range(12)]
    z = rng.standard_normal((n, 2))
    units += [np.maximum(z[:, 0] + 0.5 * (g == 0), 0), np.maximum(z[:, 1], 0)]  # dense: genre-leaning, random
    x = np.stack(units, axis=1).astype(np.float32)
    return x, y, g


SPECIFIC, NOISE, DENSE = np.arange(9), np.arange(9, 21), np.arange(21, 23)


def test_concentration_separates_specific_units_where_naive_auc_does_not(planted):
    x, y, g = planted
    df = top_firing_concentration(LatentCodes.from_dense(x), y, list("ABCDEF"), top_n=100, min_fires=100)
    assert df["eligible"].all() and (df["fires"].iloc[:21] == 300).all()
    spec, noise = df.loc[SPECIFIC], df.loc[NOISE]
    # known answers: a unit whose top positions are all genre k has top_share 1, lift 1/base, kl = -log(base)
    base = y.mean(0)
    assert list(spec["top_label"]) == [("ABC")[k % 3] for k in range(9)]
    assert np.allclose(spec["top_share"], 1.0)
    assert np.allclose(spec["lift"], 1.0 / base[np.arange(9) % 3])
    assert np.allclose(spec["kl"], -np.log(base[np.arange(9) % 3]))
    # the fair scores separate (a) from (b) with a wide margin
    assert spec["kl_excess"].min() > 1.0 > 0.2 > noise["kl_excess"].max()
    assert spec["lift"].min() > 3.0 > 1.6 > noise["lift"].max()
    assert spec["z"].min() > 20 and noise["z"].abs().max() < 5
    # ... while the naive all-positions AUC barely does: both near 0.5, both at (or under) their ceiling
    auc, ceiling = auc_matrix(x, y), auc_ceiling(x, y)
    best = auc.argmax(1)
    naive = auc[np.arange(len(best)), best]
    cap = ceiling[np.arange(len(best)), best]
    assert naive[SPECIFIC].max() < 0.56 and naive[NOISE].max() < 0.52
    assert naive[SPECIFIC].mean() - naive[NOISE].mean() < 0.05
    assert np.allclose(naive[SPECIFIC], cap[SPECIFIC])  # fires only on positives: exactly the ceiling
    # the specific unit's AUC is set by its coverage: 0.5 + (share of the genre it fires on) / 2
    assert np.allclose(naive[SPECIFIC], 0.5 + 300 / y.sum(0)[np.arange(9) % 3] / 2)
    assert np.all(cap[NOISE] - naive[NOISE] < 0.01)
    # a dense genre-leaning unit beats every specific unit on naive AUC but not on concentration
    assert naive[21] > naive[SPECIFIC].max() + 0.05
    assert df.loc[21, "kl_excess"] < spec["kl_excess"].min() / 3
    assert abs(df.loc[22, "kl_excess"]) < 5 * df.attrs["kl_null_std"]


def test_null_calibration_of_kl_excess():
    n, m = 20_000, 300
    rng = np.random.default_rng(2)
    labels = (rng.random((n, 5)) < np.array([0.4, 0.3, 0.2, 0.1, 0.05])).astype(np.float32)  # multi-hot, some empty
    rows = np.concatenate([rng.choice(n, 2000, replace=False) for _ in range(m)])
    units = np.repeat(np.arange(m), 2000)
    order = np.lexsort((units, rows))
    rows, units = rows[order], units[order]
    indptr = np.zeros(n + 1, dtype=np.int64)
    indptr[1:] = np.bincount(rows, minlength=n).cumsum()
    codes = LatentCodes(torch.from_numpy(indptr), torch.from_numpy(units.astype(np.int64)),
                        torch.from_numpy(rng.random(len(rows)).astype(np.float32) + 0.01), m)
    df = top_firing_concentration(codes, labels, top_n=100, min_fires=100, n_null=400, seed=3)
    unlabelled = labels.sum(1) == 0
    assert df.attrs["n_labelled"] == n - unlabelled.sum()
    fired_unlabelled = fire_counts(LatentCodes.from_dense(codes.to_dense()[torch.from_numpy(unlabelled)]))
    assert np.array_equal(df["fires"] - df["fires_labelled"], fired_unlabelled)
    sd = df.attrs["kl_null_std"]
    # error of the mean over units plus error of the estimated null mean
    tol = 4 * sd * math.sqrt(1 / m + 1 / 400)
    assert abs(df["kl_excess"].mean()) < tol
    assert abs(df["z"].mean()) < 4 * math.sqrt(1 / m + 1 / 400)
    assert 0.7 < df["z"].std() < 1.3
    assert df.attrs["kl_null"] > 0  # a finite sample is never at KL 0: the correction matters


def test_ineligible_units_ties_and_determinism():
    n = 1000
    y = np.zeros((n, 2), dtype=np.float32)
    y[: n // 2, 0] = 1
    y[n // 2 :, 1] = 1
    x = np.zeros((n, 3), dtype=np.float32)
    x[:50, 0] = 1.0  # fires 50 times: ineligible
    x[:, 1] = 1.0  # constant: every position tied -> the lowest positions (all label 0) are its top-N
    x[::2, 2] = 2.0
    df = top_firing_concentration(x, y, ["a", "b"], top_n=100, min_fires=100)
    assert not df.loc[0, "eligible"] and df.loc[0, "fires"] == 50
    assert df.loc[0, ["top_share", "lift", "kl", "kl_excess", "z"]].isna().all() and pd.isna(df.loc[0, "top_label"])
    assert df.loc[1, "top_label"] == "a" and df.loc[1, "top_share"] == 1.0 and df.loc[1, "lift"] == pytest.approx(2.0)
    assert df.loc[2, "top_share"] == 1.0  # its 100 ties at 2.0 taken from position 0 upward: all "a"
    again = top_firing_concentration(LatentCodes.from_dense(x), y, ["a", "b"], top_n=100, min_fires=100)
    pd.testing.assert_frame_equal(df, again)


def test_auc_ceiling_is_the_oracle_auc_and_bounds_the_real_auc():
    rng = np.random.default_rng(3)
    n, m, c = 300, 6, 4
    y = (rng.random((n, c)) < 0.3).astype(np.float32)
    y[:, 3] = 0  # no positive: degenerate label
    x = np.where(rng.random((n, m)) < rng.uniform(0.02, 0.9, m), rng.integers(1, 4, (n, m)), 0).astype(np.float32)
    mask = rng.random(n) < 0.8
    for msk in (None, mask):
        ceiling = auc_ceiling(x, y, msk)
        assert np.all(ceiling >= auc_matrix(x, y, msk) - 1e-12)
        assert np.allclose(ceiling[:, 3], 0.5)
        for u in range(m):
            for k in range(c):
                # oracle: firing positives first (2), then firing negatives (1), silent positions tied at 0
                oracle = np.where(x[:, u] > 0, 1.0 + y[:, k], 0.0)[:, None]
                assert ceiling[u, k] == pytest.approx(auc_matrix(oracle, y[:, [k]], msk)[0, 0])
    assert np.allclose(auc_ceiling(LatentCodes.from_dense(x), y), auc_ceiling(x, y))


def test_truncate_keeps_the_largest_entries():
    rng = np.random.default_rng(4)
    x = np.where(rng.random((500, 5)) < 0.5, rng.integers(0, 6, (500, 5)), 0).astype(np.float32)  # many ties
    x[:, 4] = 0.0
    x[:10, 4] = 1.0  # fires 10 times only
    cut = truncate_to_top(x, 60)
    assert cut.shape == x.shape
    assert np.array_equal(fire_counts(cut), np.minimum(60, (x > 0).sum(0)))
    dense = cut.to_dense().numpy()
    for u in range(5):
        kept, dropped = dense[:, u] > 0, (x[:, u] > 0) & (dense[:, u] == 0)
        assert np.array_equal(dense[kept, u], x[kept, u])
        if dropped.any():
            assert x[kept, u].min() >= x[dropped, u].max()
            tie = x[kept, u].min()  # at the boundary value the lowest positions are kept
            assert np.flatnonzero(kept & (x[:, u] == tie)).max() < np.flatnonzero(dropped & (x[:, u] == tie)).min()
    assert np.array_equal(truncate_to_top(LatentCodes.from_dense(x), 60).to_dense().numpy(), dense)


def test_energy_share_and_weighted_summary():
    x = np.array([[1.0, 0.0, 2.0], [1.0, 3.0, 0.0]], dtype=np.float32)
    share = energy_share(x)
    assert share.sum() == pytest.approx(1.0) and np.allclose(share, [2 / 15, 9 / 15, 4 / 15])
    assert np.allclose(energy_share(LatentCodes.from_dense(x)), share)
    with pytest.raises(ValueError, match="all zero"):
        energy_share(np.zeros((3, 2)))
    v = np.random.default_rng(5).random(9)
    for vals in (v, v[:8]):
        s = weighted_summary(vals, np.ones(len(vals)))
        assert s["mean"] == pytest.approx(vals.mean()) and s["median"] == pytest.approx(np.median(vals))
    s = weighted_summary([1.0, 2.0, np.nan, 10.0], [1.0, 1.0, 50.0, 3.0])  # NaN dropped with its weight
    assert s["n"] == 3 and s["weight"] == 5.0 and s["median"] == 10.0 and s["mean"] == pytest.approx(33 / 5)
    assert math.isnan(weighted_summary([np.nan], [1.0])["median"])
    with pytest.raises(ValueError, match="non-negative"):
        weighted_summary([1.0, 2.0], [1.0, -1.0])


def test_category_labels():
    labels, names = category_labels(np.array([1990.0, 1980.0, np.nan, 1990.0]))
    assert names == ["1980", "1990"]
    assert labels.tolist() == [[0, 1], [1, 0], [0, 0], [0, 1]]
    labels, names = category_labels(["popular", None, "long-tail"])
    assert names == ["long-tail", "popular"] and labels.sum(1).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="one-dimensional"):
        category_labels(np.zeros((2, 2)))


def test_frequency_matching_truncates_dense_units_to_the_bin_median():
    n = 6000
    rng = np.random.default_rng(6)
    g, y = one_hot_genres(n, seed=6)
    counts = [150, 180, 200, 220, 260, 500, 700, 900]
    sparse = np.stack([sparse_unit(n, rng.choice(n, c, replace=False), rng) for c in counts], axis=1)
    sparse[:, 0] = sparse_unit(n, rng.choice(np.flatnonzero(g == 0), 150, replace=False), rng)  # one specific
    dense = np.maximum(rng.standard_normal((n, 4)), 0).astype(np.float32)
    fm = frequency_matched_scores(LatentCodes.from_dense(sparse), dense, y, list("ABCDEF"), bins=(100, 300, 1000, 3000),
                                  n_boot=200)
    assert list(fm["bin"]) == ["100-299", "300-999"] and list(fm["n_sparse"]) == [5, 3]
    assert list(fm["fires"]) == [200, 700] and np.array_equal(fm["dense_fires"], fm["fires"])
    assert (fm["n_dense"] == 4).all()
    assert (fm["diff_low"] <= fm["diff"]).all() and (fm["diff"] <= fm["diff_high"]).all()
    assert np.allclose(fm["diff"], fm["sparse_auc"] - fm["dense_auc"])
    assert ((fm[["sparse_auc", "dense_auc"]] > 0.49) & (fm[["sparse_auc", "dense_auc"]] < 0.6)).all().all()
    frame = pd.DataFrame({"fires": counts, "score": np.arange(8.0)})
    table = by_fire_bin(frame, "score", (100, 300, 1000, 3000), n_boot=100)
    assert list(table["n_units"]) == [5, 3, 0] and list(table["median"][:2]) == [2.0, 6.0]
    assert math.isnan(table["median"][2])


def test_fair_unit_scores_on_a_small_model():
    import seqsae_lib as sl

    data = sl.make_sequences(sl.make_synthetic(num_users=40, num_items=120, num_topics=4, min_length=8,
                                               max_length=25, seed=0))
    split = sl.leave_one_out(data)
    torch.manual_seed(0)
    model = sl.SASRec(num_items=data.num_items, max_len=20, d_model=16, n_layers=1, dropout=0.0)
    store = sl.collect_activations(model, split.train, "block_0", next_items=split.valid_targets, progress=False)
    sae = sl.SparseAutoencoder(sl.SAEConfig(d_in=16, d_sae=64, k=4, seed=0))
    res = fair_unit_scores(sae, store, data, side="next", top_n=20, min_fires=30, n_null=50, progress=False)
    assert list(res) == ["SAE", "hidden dims", "PCA", "random rotation", "untrained SAE"]
    assert len(res["SAE"]) == 64 and len(res["hidden dims"]) == 32 and res["hidden dims"]["eligible"].any()
    for frame in res.values():
        assert frame.attrs["top_n"] == 20
        assert (frame["eligible"] == (frame["fires_labelled"] >= 30)).all()
    topic = data.item_topic[store.input_item]
    res = fair_unit_scores(sae, store, data, labels=category_labels(np.where(topic >= 0, topic, np.nan)),
                           top_n=20, min_fires=30, n_null=50, progress=False)
    assert set(res["PCA"]["top_label"].dropna()) <= {"0", "1", "2", "3"}  # the topics, not genres
    with pytest.raises(ValueError, match="side"):
        fair_unit_scores(sae, store, data, side="previous", progress=False)


def test_bad_input():
    x = np.abs(np.random.default_rng(7).standard_normal((200, 3))).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(200) % 2]
    with pytest.raises(ValueError, match=r"labels must have shape \(200, G\)"):
        top_firing_concentration(x, y[:150])
    with pytest.raises(ValueError, match="top_n must be >= 1"):
        top_firing_concentration(x, y, top_n=0, min_fires=0)
    with pytest.raises(ValueError, match="min_fires must be >= top_n"):
        top_firing_concentration(x, y, top_n=50, min_fires=20)
    with pytest.raises(ValueError, match="label_names"):
        top_firing_concentration(x, y, ["a"], top_n=50, min_fires=50)
    with pytest.raises(ValueError, match="fewer than top_n"):
        top_firing_concentration(x, y, top_n=201, min_fires=201)
    with pytest.raises(ValueError, match="0/1"):
        auc_ceiling(x, y * 2)
    with pytest.raises(ValueError, match="non-negative"):
        auc_ceiling(-x, y)
    with pytest.raises(TypeError, match="n_keep must be an int"):
        truncate_to_top(x, 2.5)
    with pytest.raises(ValueError, match="rows"):
        frequency_matched_scores(x, x[:100], y)
    with pytest.raises(ValueError, match="strictly increasing"):
        frequency_matched_scores(x, x, y, bins=(300, 100))
