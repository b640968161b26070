"""Fair comparisons of unit types: AUC at matched firing frequency, scores by frequency bin, concentration per type.

Introduced in chapter 4.

The naive AUC of :mod:`seqsae_lib.interpret.unit_scores` is decided mostly by how often a unit fires
(:func:`~seqsae_lib.interpret.concentration.auc_ceiling`). Two ways around it, both here:

* compare at **matched frequency** (:func:`frequency_matched_scores`): group the sparse units (SAE latents)
  by their number of firing positions, and truncate every dense unit (hidden dimension, PCA direction) to
  its ``f`` highest activations, ``f`` the median fire count of the group, before computing its AUC; then
  both sides fire equally often and the AUC compares what they fire on;
* look only at each unit's top firing positions
  (:func:`~seqsae_lib.interpret.concentration.top_firing_concentration`), for the five unit types of the
  comparison at once (:func:`fair_unit_scores`), on genres or any categorical label
  (:func:`category_labels`: decade, popularity bucket...), and summarise any score by firing-frequency bin
  (:func:`by_fire_bin`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from seqsae_lib.data import SequenceData
from seqsae_lib.interpret.auc import auc_matrix, check_labels
from seqsae_lib.interpret.codes import LatentCodes, UnitActs, dense_matrix, n_rows
from seqsae_lib.interpret.concentration import fire_counts, top_firing_concentration, truncate_to_top
from seqsae_lib.interpret.unit_scores import genre_matrices
from seqsae_lib.interpret.unit_types import _unit_type_makers, bootstrap_median_ci
from seqsae_lib.sae import ActivationStore, SparseAutoencoder
from seqsae_lib.utils.checks import check_choice, check_int

__all__ = ["FIRE_BINS", "by_fire_bin", "category_labels", "genre_labels", "fair_unit_scores", "frequency_matched_scores"]

FIRE_BINS: tuple[int, ...] = (100, 300, 1000, 3000, 10000, 30000)
"""Default edges of the firing-count bins ``[b_i, b_{i+1})``."""


def _check_bins(bins: Sequence[int]) -> list[int]:
    edges = [check_int("bins[i]", b, minimum=1) for b in bins]
    if len(edges) < 2 or any(b >= c for b, c in zip(edges, edges[1:])):
        raise ValueError(f"bins must be at least two strictly increasing positive ints, got {list(bins)}")
    return edges


def _bin_label(lo: int, hi: int) -> str:
    return f"{lo}-{hi - 1}"


def _rows(units: UnitActs, keep: np.ndarray) -> UnitActs:
    if isinstance(units, LatentCodes):
        return units.subset(keep)
    return dense_matrix(units, "units")[torch.from_numpy(keep)]


def _best_auc(units: UnitActs, labels: np.ndarray) -> np.ndarray:
    auc = auc_matrix(units, labels)
    ok = (labels.sum(0) > 0) & (labels.sum(0) < len(labels))  # labels with positives and negatives
    return np.where(ok[None, :], auc, -np.inf).max(1) if ok.any() else np.full(len(auc), 0.5)


def _nanmedian(x: np.ndarray) -> float:
    return float(np.nanmedian(x)) if np.isfinite(x).any() else np.nan


def _median_diff_ci(a: np.ndarray, b: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of median(a) - median(b), each group resampled on its own."""
    if len(a) == 0 or len(b) == 0:
        return (np.nan, np.nan)
    ma = np.median(a[rng.integers(0, len(a), size=(n_boot, len(a)))], axis=1)
    mb = np.median(b[rng.integers(0, len(b), size=(n_boot, len(b)))], axis=1)
    low, high = np.quantile(ma - mb, [0.025, 0.975])
    return (float(low), float(high))


def frequency_matched_scores(
    sparse_units: UnitActs,
    dense_units: UnitActs,
    labels: Any,
    label_names: Sequence[str] | None = None,
    *,
    bins: Sequence[int] = FIRE_BINS,
    top_n: int = 100,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Best-label AUC of sparse vs dense units at matched firing frequency, per firing-count bin.

    Introduced in chapter 4.

    Everything is computed on the labelled positions (label rows with a 1). For each bin
    ``[b_i, b_{i+1})`` holding sparse units (by their firing count), ``f`` is the median firing count of
    those units; every dense unit is cut to its ``f`` highest activations
    (:func:`~seqsae_lib.interpret.concentration.truncate_to_top`), so both groups fire on about ``f``
    positions, and each unit's AUC is its best over labels (:func:`~seqsae_lib.interpret.auc.auc_matrix`).
    Alongside, the median ``kl_excess`` of
    :func:`~seqsae_lib.interpret.concentration.top_firing_concentration` (``top_n``, ``min_fires = top_n``)
    of the bin's sparse units and of the truncated dense units (NaN when ``f < top_n``).

    Parameters
    ----------
    sparse_units, dense_units : LatentCodes or (n, m) matrices over the same n positions
    labels : (n, C) array of 0/1
    label_names : sequence of C str, optional
    bins : increasing ints, default :data:`FIRE_BINS`
    top_n : int, default 100
    n_boot : int, default 1000
        Bootstrap resamples (units of each group resampled independently, seeded).
    seed : int, default 0

    Returns
    -------
    pandas.DataFrame
        One row per bin with sparse units: ``bin`` (e.g. ``"100-299"``), ``n_sparse``, ``n_dense``,
        ``fires`` (``f``), ``dense_fires`` (median firing count of the truncated dense units: ``f`` unless
        a dense unit fires less), ``sparse_auc`` and ``dense_auc`` (medians, in [0, 1]), ``diff``
        (``sparse_auc - dense_auc``) with its 95 % bootstrap interval ``diff_low``, ``diff_high``,
        ``sparse_kl_excess`` and ``dense_kl_excess`` (medians, nats).

    Raises
    ------
    ValueError
        Unit matrices over different positions, bad labels, bins or counts.
    """
    n = n_rows(sparse_units)
    if n_rows(dense_units) != n:
        raise ValueError(f"sparse_units has {n} rows but dense_units has {n_rows(dense_units)}")
    y = check_labels(labels, n, "labels").numpy()
    edges = _check_bins(bins)
    top_n = check_int("top_n", top_n, minimum=1)
    n_boot = check_int("n_boot", n_boot, minimum=1)
    rng = np.random.default_rng(check_int("seed", seed))
    keep = y.sum(1) > 0
    if not keep.any():
        raise ValueError("labels have no labelled position (every row is all zeros)")
    y = y[keep]
    sparse, dense = _rows(sparse_units, keep), _rows(dense_units, keep)
    fires = fire_counts(sparse)
    sparse_auc = _best_auc(sparse, y)
    n_lab = int(keep.sum())
    can_score = n_lab >= top_n
    if can_score:
        sparse_kl = top_firing_concentration(sparse, y, label_names, top_n=top_n, min_fires=top_n,
                                             seed=seed)["kl_excess"].to_numpy()
    rows = []
    for lo, hi in zip(edges, edges[1:]):
        in_bin = (fires >= lo) & (fires < hi)
        if not in_bin.any():
            continue
        f = int(round(float(np.median(fires[in_bin]))))
        cut = truncate_to_top(dense, f)
        dense_auc = _best_auc(cut, y)
        a = sparse_auc[in_bin]
        low, high = _median_diff_ci(a, dense_auc, n_boot, rng)
        kl_s = _nanmedian(sparse_kl[in_bin]) if can_score else np.nan
        kl_d = np.nan
        if can_score and f >= top_n:
            kl_d = _nanmedian(top_firing_concentration(cut, y, label_names, top_n=top_n, min_fires=top_n,
                                                       seed=seed)["kl_excess"].to_numpy())
        rows.append({
            "bin": _bin_label(lo, hi), "n_sparse": int(in_bin.sum()), "n_dense": len(dense_auc), "fires": f,
            "dense_fires": float(np.median(fire_counts(cut))), "sparse_auc": float(np.median(a)),
            "dense_auc": float(np.median(dense_auc)), "diff": float(np.median(a) - np.median(dense_auc)),
            "diff_low": low, "diff_high": high, "sparse_kl_excess": kl_s, "dense_kl_excess": kl_d,
        })
    columns = ["bin", "n_sparse", "n_dense", "fires", "dense_fires", "sparse_auc", "dense_auc", "diff",
               "diff_low", "diff_high", "sparse_kl_excess", "dense_kl_excess"]
    return pd.DataFrame(rows, columns=columns)


def by_fire_bin(
    frame: pd.DataFrame, score: str, bins: Sequence[int] = FIRE_BINS, *, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Median and bootstrap interval of ``frame[score]`` per bin of ``frame["fires"]``.

    Introduced in chapter 4. E.g. ``by_fire_bin(fair["SAE"], "kl_excess")``: does the fair score depend on
    how often a latent fires?

    Returns
    -------
    pandas.DataFrame
        One row per bin ``[b_i, b_{i+1})``, empty bins included: ``bin``, ``n_units`` (units in the bin
        with a non-NaN score), ``fires`` (their median firing count), ``median``, ``ci_low``, ``ci_high``
        (:func:`~seqsae_lib.interpret.unit_types.bootstrap_median_ci`, 95 %; NaN for an empty bin).

    Raises
    ------
    ValueError
        ``frame`` lacks ``fires`` or ``score``, or bad bins.
    """
    if not isinstance(frame, pd.DataFrame) or "fires" not in frame or score not in frame:
        raise ValueError(f"frame must be a DataFrame with columns 'fires' and {score!r}")
    edges = _check_bins(bins)
    fires = frame["fires"].to_numpy(dtype=np.float64)
    values = frame[score].to_numpy(dtype=np.float64)
    rows = []
    for lo, hi in zip(edges, edges[1:]):
        sel = (fires >= lo) & (fires < hi) & ~np.isnan(values)
        med, low, high = bootstrap_median_ci(values[sel], n_boot=n_boot, seed=seed)
        rows.append({"bin": _bin_label(lo, hi), "n_units": int(sel.sum()),
                     "fires": float(np.median(fires[sel])) if sel.any() else np.nan,
                     "median": med, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["bin", "n_units", "fires", "median", "ci_low", "ci_high"])


def fair_unit_scores(
    sae: SparseAutoencoder,
    store: ActivationStore,
    seq_data: SequenceData,
    *,
    side: str = "input",
    top_n: int = 100,
    min_fires: int = 100,
    seed: int = 0,
    codes: LatentCodes | None = None,
    labels: tuple[Any, Sequence[str]] | None = None,
    n_null: int = 200,
    progress: bool = True,
) -> dict[str, pd.DataFrame]:
    """:func:`~seqsae_lib.interpret.concentration.top_firing_concentration` for the five unit types.

    Introduced in chapter 4.

    The unit types and their order are those of
    :func:`~seqsae_lib.interpret.unit_types.score_unit_types`: ``"SAE"`` (the trained latents, or
    ``codes``), ``"hidden dims"``, ``"PCA"``, ``"random rotation"``, ``"untrained SAE"`` (``seed``).

    Parameters
    ----------
    side : {"input", "next"}, default "input"
        Genres of each position's input item (what the model has just read) or of its next item.
    labels : (labels, names), optional
        Other labels instead of genres, e.g.
        :func:`category_labels` of each position's release decade;
        ``side`` is then only checked.
    top_n, min_fires, n_null, seed
        As in :func:`~seqsae_lib.interpret.concentration.top_firing_concentration` (``seed`` also seeds
        the random rotation and the untrained SAE).

    Returns
    -------
    dict
        Unit type -> concentration table (one row per unit); each table's ``attrs`` also records ``side``.

    Raises
    ------
    ValueError
        An unknown ``side``, or the errors of ``top_firing_concentration``.
    """
    from tqdm.auto import tqdm

    side = check_choice("side", side, ("input", "next"))
    if labels is None:
        y, names = genre_labels(store, seq_data, side)
    else:
        if not isinstance(labels, tuple) or len(labels) != 2:
            raise TypeError("labels must be a (labels, names) tuple, e.g. category_labels(values)")
        y, names = labels
    makers = _unit_type_makers(sae, store, seed=seed, codes=codes)
    results: dict[str, pd.DataFrame] = {}
    for name in tqdm(makers, desc="concentration", disable=not progress):
        frame = top_firing_concentration(makers[name](), y, names, top_n=top_n, min_fires=min_fires,
                                         n_null=n_null, seed=seed)
        results[name] = frame
    return results


def genre_labels(
    store: ActivationStore, seq_data: SequenceData, side: str = "input", *, min_positions: int = 100
) -> tuple[np.ndarray, list[str]]:
    """The genres of each position's input or next item, as labels for the fair measures.

    Introduced in chapter 4. Genres carried by fewer than ``min_positions`` positions are left out (on
    MovieLens-100k only "unknown", 2 films): the best of 2,048 units on a handful of positives says nothing.

    Returns
    -------
    (labels, names)
        ``(n, G)`` 0/1 matrix (rows of unknown items all zero) and the kept genre names.
    """
    side = check_choice("side", side, ("input", "next"))
    min_positions = check_int("min_positions", min_positions, minimum=1)
    genres_next, genres_input = genre_matrices(store, seq_data)
    y = genres_input if side == "input" else genres_next
    keep = np.asarray(y.sum(axis=0)).ravel() >= min_positions
    return np.ascontiguousarray(y[:, keep]), [g for g, k in zip(seq_data.genre_names, keep) if k]


def category_labels(values: Any) -> tuple[np.ndarray, list[str]]:
    """One-hot labels of a categorical value per position (e.g. the decade of each position's item).

    Introduced in chapter 4. Input for
    :func:`~seqsae_lib.interpret.concentration.top_firing_concentration` beyond genres (decades,
    popularity buckets...).

    Parameters
    ----------
    values : (n,) array-like
        Missing values (NaN, None; ``pandas.isna``) give an all-zero row: unlabelled, left out.

    Returns
    -------
    (labels, names)
        ``(n, K)`` float32 0/1 matrix with one 1 per non-missing row, and the ``K`` category names
        (``str`` of the sorted distinct values).

    Raises
    ------
    ValueError
        ``values`` is not one-dimensional or has no non-missing value.
    """
    arr = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"values must be one-dimensional (one category per position), got shape {arr.shape}")
    missing = pd.isna(pd.Series(arr, dtype=object)).to_numpy()
    if missing.all():
        raise ValueError("values has no non-missing category")
    cats, codes = np.unique(arr[~missing].astype(arr.dtype), return_inverse=True)
    out = np.zeros((len(arr), len(cats)), dtype=np.float32)
    out[np.flatnonzero(~missing), codes.ravel()] = 1.0
    return out, [_category_name(c) for c in cats]


def _category_name(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # 1990.0 (a year column with NaN is float) -> "1990"
    return str(value)
