"""Fair per-unit monosemanticity: label concentration of each unit's top firing positions, chance-corrected.

Introduced in chapter 4.

Why the naive scores are unfair
-------------------------------
The scores of :mod:`seqsae_lib.interpret.unit_scores` are computed over **all** positions, and a unit is
silent (activation 0) on every position where it does not fire. A unit that fires on a share ``tpr`` of a
label's positions and ``fpr`` of the others can therefore reach at most

``AUC <= tpr + (1 - tpr) (1 - fpr) / 2``

(:func:`auc_ceiling`: every firing positive ranked first, the silent positions tied), however pure its
firing positions are. A latent firing on 0.05 % of positions is capped near 0.5 whatever it means, while a
dense dimension is not: the naive AUC mostly measures *how often* a unit fires.

The fair score
--------------
:func:`top_firing_concentration` looks only at each unit's ``top_n`` highest **firing** positions, only for
units with at least ``min_fires`` firing (labelled) positions, and measures how far the label distribution of
those positions is from the base distribution of all labelled positions: ``kl`` (Kullback-Leibler divergence,
nats), minus ``kl_null``, the mean ``kl`` of random sets of ``top_n`` labelled positions (the chance level:
``kl`` of a finite sample is positive even for a unit unrelated to the labels). ``kl_excess`` is ~0 for such a
unit and grows as its top positions concentrate on a few labels; ``lift`` is the share of its most frequent
label over that label's base share.

What it can and cannot show
    It ignores how often a unit fires, on purpose: a unit that fires rarely but only on one genre scores as
    high as a frequent one with the same top positions. It reads the *top* of each unit only (what the unit
    is most sure of), not the rest of its firing range. It says nothing about units with fewer than
    ``min_fires`` firing positions (NaN scores): compare unit types on the eligible units and report how
    many each type has. The null draws independent positions: a unit whose top positions repeat the same
    few items (a film watched by many users) has fewer independent labels than ``top_n`` and its ``kl``
    sits a little higher by chance. :func:`~seqsae_lib.interpret.fair_scores.frequency_matched_scores`
    complements it with an AUC comparison at matched firing frequency.

Ties at the top-``N`` boundary are broken deterministically: positions in the order of decreasing
activation, then increasing position. :func:`truncate_to_top` keeps each unit's highest activations (a
dense unit seen at a latent's sparsity); :func:`energy_share` and :func:`weighted_summary` give the
activation-energy-weighted view (units that carry more of the representation count more).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from seqsae_lib.interpret.auc import check_labels, check_mask
from seqsae_lib.interpret.codes import ColumnEntries, LatentCodes, UnitActs, column_entries, dense_matrix, n_rows
from seqsae_lib.utils.checks import check_int

__all__ = [
    "CONCENTRATION_COLUMNS", "auc_ceiling", "energy_share", "fire_counts",
    "top_firing_concentration", "truncate_to_top", "weighted_summary",
]

CONCENTRATION_COLUMNS: tuple[str, ...] = (
    "fires", "fires_labelled", "eligible", "top_label", "top_share", "base_share", "lift", "kl", "kl_null",
    "kl_excess", "z",
)
"""The columns of :func:`top_firing_concentration`, in order."""


def fire_counts(unit_acts: UnitActs) -> np.ndarray:
    """Number of positions where each unit fires (activation > 0).

    Introduced in chapter 4.

    Returns
    -------
    numpy.ndarray of shape (m,), int64, in ``0..n``
    """
    if isinstance(unit_acts, LatentCodes):
        return unit_acts.firing_counts().numpy().astype(np.int64)
    return (dense_matrix(unit_acts, "unit_acts") > 0).sum(0).numpy().astype(np.int64)


def _fired(unit_acts: UnitActs) -> ColumnEntries:
    cols = column_entries(unit_acts)
    return cols.keep(cols.val > 0)


def auc_ceiling(unit_acts: UnitActs, labels: Any, mask: Any = None) -> np.ndarray:
    """The highest ROC-AUC any re-ordering of a unit's firing positions can reach, per unit and label.

    Introduced in chapter 4.

    With ``tpr`` and ``fpr`` the shares of a label's positive and negative positions where the unit fires
    (activation > 0), the best ordering puts every firing positive first, and the silent positions (all
    0) tie: ``tpr + (1 - tpr) (1 - fpr) / 2``. The real AUC (:func:`~seqsae_lib.interpret.auc.auc_matrix`
    with the same ``mask``) never exceeds it. A unit that fires on few positions is capped near 0.5 however
    pure they are: the naive AUC is decided by coverage.

    Parameters
    ----------
    unit_acts : LatentCodes or (n, m) non-negative matrix
    labels : (n, C) array of 0/1
    mask : (n,) bool, optional
        Positions to use (default all, as :func:`~seqsae_lib.interpret.auc.auc_matrix`).

    Returns
    -------
    numpy.ndarray of shape (m, C), in [0.5 - fpr/2, 1]
        0.5 for a label with no positive or no negative position (as ``auc_matrix``).

    Raises
    ------
    ValueError
        Labels of another row count or not 0/1, a bad mask, or negative activations (the bound assumes the
        silent positions are the lowest).
    """
    n = n_rows(unit_acts)
    y = check_labels(labels, n, "labels")
    keep = check_mask(mask, n, "mask", torch.ones(n, dtype=torch.bool))
    cols = column_entries(unit_acts)
    if cols.nnz and float(cols.val.min()) < 0:
        raise ValueError("unit_acts must be non-negative for auc_ceiling (got negative activations)")
    fired = cols.keep(cols.val > 0).select_rows(keep)
    y = y[keep]
    tp = fired.matmul(torch.ones(fired.nnz), y, dtype=torch.float32)  # exact: counts < 2**24
    fires = fired.counts.to(torch.float64)[:, None]
    npos = y.sum(0)[None, :]
    nneg = fired.n - npos
    tpr = tp / npos.clamp_min(1.0)
    fpr = (fires - tp) / nneg.clamp_min(1.0)
    ceiling = tpr + (1.0 - tpr) * (1.0 - fpr) / 2.0
    degenerate = (npos == 0) | (nneg == 0)
    return torch.where(degenerate, torch.full_like(ceiling, 0.5), ceiling).numpy()


def check_top(top_n: Any, min_fires: Any) -> tuple[int, int]:
    """Validate the fair measures' ``top_n`` (>= 1) and ``min_fires`` (>= ``top_n``, so that every scored unit
    is judged on exactly ``top_n`` firing positions); shared by this module and :mod:`.coverage`."""
    top_n = check_int("top_n", top_n, minimum=1)
    min_fires = check_int("min_fires", min_fires, minimum=1)
    if min_fires < top_n:
        raise ValueError(f"min_fires must be >= top_n ({top_n}), so that every scored unit has top_n firing "
                         f"positions; got {min_fires}")
    return top_n, min_fires


def top_entries(cols: ColumnEntries, n_keep: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(unit, row, value) of each unit's ``n_keep[u]`` highest entries, sorted by (unit, -value, row).

    ``cols`` holds firing entries only (sorted by (unit, value)). Only entries at or above each unit's
    ``n_keep``-th largest value are sorted again, with the row as the deterministic tie-break.
    """
    k = torch.minimum(n_keep.to(torch.int64), cols.counts)
    has = k > 0
    if not bool(has.any()):
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty, torch.zeros(0, dtype=torch.float32)
    thr = torch.full((cols.m,), math.inf, dtype=torch.float32)
    thr[has] = cols.val[(cols.ptr[1:] - k)[has]]  # the k-th largest value (ascending order within a unit)
    cand = cols.val >= thr[cols.unit]
    unit, row, val = cols.unit[cand].numpy(), cols.row[cand].numpy(), cols.val[cand].numpy()
    order = np.lexsort((row, -val, unit))
    unit, row, val = unit[order], row[order], val[order]
    first = np.searchsorted(unit, unit, side="left")
    rank = np.arange(len(unit)) - first
    top = rank < k.numpy()[unit]
    return torch.from_numpy(unit[top]), torch.from_numpy(row[top]), torch.from_numpy(val[top])


def truncate_to_top(unit_acts: UnitActs, n_keep: int) -> LatentCodes:
    """Keep each unit's ``n_keep`` highest activations (> 0) and zero the rest: a dense unit at a latent's sparsity.

    Introduced in chapter 4.

    Ties at the boundary keep the lower positions (order: decreasing activation, then increasing
    position), so every unit that fires on at least ``n_keep`` positions keeps exactly ``n_keep``; one that
    fires less keeps all its firing positions. Non-positive values are dropped.

    Returns
    -------
    LatentCodes of the same shape ``(n, m)``
    """
    n_keep = check_int("n_keep", n_keep, minimum=1)
    fired = _fired(unit_acts)
    unit, row, val = top_entries(fired, torch.full((fired.m,), n_keep, dtype=torch.int64))
    order = torch.from_numpy(np.lexsort((unit.numpy(), row.numpy())))
    row, unit, val = row[order], unit[order], val[order]
    indptr = torch.zeros(fired.n + 1, dtype=torch.int64)
    if len(row):
        indptr[1:] = torch.bincount(row, minlength=fired.n).cumsum(0)
    return LatentCodes(indptr, unit.contiguous(), val.to(torch.float32).contiguous(), fired.m)


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) in nats along the last axis (``0 log 0 = 0``; ``q > 0`` wherever ``p > 0``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log(p / q), 0.0).sum(-1)


def top_firing_concentration(
    unit_acts: UnitActs,
    labels: Any,
    label_names: Sequence[str] | None = None,
    *,
    top_n: int = 100,
    min_fires: int = 100,
    n_null: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """Label concentration of each unit's ``top_n`` highest firing positions, corrected for chance.

    Introduced in chapter 4. What it can and cannot show: see the module docstring.

    Only labelled positions (a label row with at least one 1) take part: a position's label row is
    normalised to sum 1 (a film with two genres gives each half), the *base distribution* is the mean of
    the rows over all labelled positions, and a unit's *top distribution* is their mean over its ``top_n``
    highest labelled firing positions (ties: decreasing activation, then increasing position). Units with
    fewer than ``min_fires`` labelled firing positions are not scored (NaN). ``kl_null`` is the mean KL of
    ``n_null`` random sets of ``top_n`` labelled positions (drawn without replacement, seeded): the same
    for every eligible unit.

    Parameters
    ----------
    unit_acts : LatentCodes or (n, m) matrix
    labels : (n, C) array of 0/1
        E.g. genres of each position's next or input item
        (:func:`~seqsae_lib.interpret.unit_scores.genre_matrices`), or
        :func:`~seqsae_lib.interpret.fair_scores.category_labels`.
    label_names : sequence of C str, optional
        Default ``"l0", "l1", ...``.
    top_n : int, default 100
    min_fires : int, default 100
        Must be >= ``top_n``, so that every eligible unit has ``top_n`` firing positions: a unit's top set
        never reaches into its silent positions.
    n_null : int, default 200
        Random position sets of the null (at least 2).
    seed : int, default 0

    Returns
    -------
    pandas.DataFrame
        Indexed by ``unit``, the columns :data:`CONCENTRATION_COLUMNS`: ``fires`` (firing positions, all
        rows), ``fires_labelled`` (among labelled rows), ``eligible`` (``fires_labelled >= min_fires``),
        ``top_label`` (the most frequent label among the top-``N``, not the AUC's best label),
        ``top_share`` (its share of the top-``N`` label mass, in (0, 1]), ``base_share`` (its share over all
        labelled positions), ``lift`` (``top_share / base_share``, in (0, ``1 / base_share``]; > 1 when the top
        label is over-represented), ``kl`` (>= 0, nats), ``kl_null`` (>= 0), ``kl_excess`` (``kl - kl_null``:
        ~0 for a unit unrelated to the labels, the headline score) and ``z`` (``kl_excess`` over the null's
        standard deviation). Scores are NaN (``top_label`` missing) for ineligible units. ``attrs`` holds
        ``top_n``, ``min_fires``, ``n_null``, ``kl_null``, ``kl_null_std``, ``n_labelled``.

    Raises
    ------
    ValueError
        Labels of another row count or not 0/1, no labelled position, fewer labelled positions than
        ``top_n``, ``top_n < 1``, ``min_fires < top_n``, ``n_null < 2``, or names of the wrong length.
    """
    n = n_rows(unit_acts)
    y = check_labels(labels, n, "labels")
    n_labels = y.shape[1]
    names = [f"l{c}" for c in range(n_labels)] if label_names is None else [str(c) for c in label_names]
    if len(names) != n_labels:
        raise ValueError(f"label_names has {len(names)} names for {n_labels} label columns")
    top_n, min_fires = check_top(top_n, min_fires)
    n_null = check_int("n_null", n_null, minimum=2)
    seed = check_int("seed", seed)
    row_sum = y.sum(1)
    labelled = row_sum > 0
    n_lab = int(labelled.sum())
    if n_lab < top_n:
        raise ValueError(f"labels have {n_lab} labelled positions (rows with a 1), fewer than top_n={top_n}")
    y_lab = (y[labelled] / row_sum[labelled, None]).numpy()
    base = y_lab.mean(0)

    fired = _fired(unit_acts)
    fires = fired.counts.numpy()
    lab = fired.select_rows(labelled)
    fires_lab = lab.counts
    eligible = fires_lab >= min_fires
    unit, row, _ = top_entries(lab, torch.where(eligible, top_n, 0))
    top = torch.zeros(lab.m, n_labels, dtype=torch.float64)
    top.index_add_(0, unit, torch.from_numpy(y_lab)[row])
    top = (top / top_n).numpy()

    rng = np.random.default_rng(seed)
    null = np.array([_kl(y_lab[rng.choice(n_lab, top_n, replace=False)].mean(0), base) for _ in range(n_null)])
    kl_null, kl_sd = float(null.mean()), float(null.std(ddof=1))

    elig = eligible.numpy()
    best = top.argmax(1)
    top_share = top[np.arange(lab.m), best]
    base_share = base[best]
    kl = _kl(top, base[None, :])
    nan = np.full(lab.m, np.nan)
    excess = kl - kl_null
    frame = pd.DataFrame(index=pd.RangeIndex(lab.m, name="unit"))
    frame["fires"] = fires.astype(np.int64)
    frame["fires_labelled"] = fires_lab.numpy().astype(np.int64)
    frame["eligible"] = elig
    frame["top_label"] = np.where(elig, np.array(names, dtype=object)[best], None)
    frame["top_share"] = np.where(elig, top_share, nan)
    frame["base_share"] = np.where(elig, base_share, nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["lift"] = np.where(elig, top_share / base_share, nan)
        frame["kl"] = np.where(elig, kl, nan)
        frame["kl_null"] = np.where(elig, kl_null, nan)
        frame["kl_excess"] = np.where(elig, excess, nan)
        frame["z"] = np.where(elig & (kl_sd > 0), excess / kl_sd, nan)
    frame.attrs.update({"top_n": top_n, "min_fires": min_fires, "n_null": n_null, "kl_null": kl_null,
                        "kl_null_std": kl_sd, "n_labelled": n_lab})
    return frame


def energy_share(unit_acts: UnitActs) -> np.ndarray:
    """Each unit's share of the total squared activation over all positions.

    Introduced in chapter 4. Weights for :func:`weighted_summary`: units that carry more of the
    representation's energy count more.

    Returns
    -------
    numpy.ndarray of shape (m,), float64, in [0, 1], summing to 1

    Raises
    ------
    ValueError
        Every activation is 0 (no energy to share).
    """
    cols = column_entries(unit_acts)
    energy = cols.per_unit(cols.val.double() ** 2).numpy()
    total = energy.sum()
    if not total > 0:
        raise ValueError("unit_acts is all zero: no activation energy to share")
    return energy / total


def weighted_summary(values: Any, weights: Any) -> dict[str, float]:
    """Weighted mean and weighted median of ``values`` (NaN values dropped with their weights).

    Introduced in chapter 4.

    The weighted median is the value where the cumulative weight (values ascending) first reaches half
    the total; when it lands exactly on half, the mean of that value and the next (so equal weights give
    ``numpy.median``).

    Returns
    -------
    dict
        ``mean``, ``median`` (NaN when no value with positive weight remains), ``n`` (values kept),
        ``weight`` (their total weight).

    Raises
    ------
    ValueError
        Shapes differ, or a weight is negative or not finite.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    w = np.asarray(weights, dtype=np.float64).ravel()
    if v.shape != w.shape:
        raise ValueError(f"values and weights must have the same length, got {v.shape} and {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and non-negative")
    keep = ~np.isnan(v)
    v, w = v[keep], w[keep]
    total = float(w.sum())
    out = {"mean": math.nan, "median": math.nan, "n": int(len(v)), "weight": total}
    if not total > 0:
        return out
    v, w = v[w > 0], w[w > 0]  # a value without weight is never the median
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
    cum = np.cumsum(w)
    half = total / 2.0
    i = min(int(np.searchsorted(cum, half * (1 - 1e-12), side="left")), len(v) - 1)
    median = v[i]
    if math.isclose(cum[i], half, rel_tol=1e-9) and i + 1 < len(v):
        median = (v[i] + v[i + 1]) / 2.0
    out["mean"] = float((v * w).sum() / total)
    out["median"] = float(median)
    return out
