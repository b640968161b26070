"""ROC-AUC of units as detectors of labelled positions, from one sort of their non-zero entries.

Introduced in chapter 4.

The engine of the monosemanticity scores (:mod:`seqsae_lib.interpret.unit_scores`): average ranks with ties
(implicit zeros included) and fractional top-``N`` inclusion weights of every unit's entries
(:func:`unit_ranks`), and the Mann-Whitney AUC they give against 0/1 labels (:func:`auc_from_ranks`,
:func:`auc_matrix`). Everything is vectorised over units; sparse units cost only their non-zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqsae_lib.interpret.codes import ColumnEntries, UnitActs, column_entries, n_rows

__all__ = ["UnitRanks", "auc_from_ranks", "auc_matrix", "check_labels", "check_mask", "unit_ranks"]


@dataclass(frozen=True)
class UnitRanks:
    """Average ranks and top-``N`` inclusion weights of every entry of a :class:`ColumnEntries`.

    Introduced in chapter 4. Built by :func:`unit_ranks`.
    """

    rank: Tensor
    """``(E,)`` float64 average rank (1-based, over the n rows) of each entry, in the entries' order."""
    rank0: Tensor
    """``(m,)`` float64 average rank of each unit's zero block (implicit zeros + explicit zero entries)."""
    n0: Tensor
    """``(m,)`` float64 number of implicit zeros (rows without an entry) of each unit."""
    frac: Tensor
    """``(E,)`` float64 top-N inclusion weight of each entry."""
    frac0: Tensor
    """``(m,)`` float64 top-N inclusion weight of each zero-block row."""
    n_top: int
    """``N``, clipped to ``0..n``."""


def unit_ranks(cols: ColumnEntries, top_n: int = 0) -> UnitRanks:
    """Average ranks with ties (implicit zeros included) and fractional top-N inclusion, vectorised.

    Introduced in chapter 4.

    Works on tie *groups* (runs of equal values within a unit in (unit, value) order): a group's average
    rank is ``start + (size + 1) / 2`` where ``start`` counts the unit's positions below it (the implicit
    zeros count below every positive value) and ``size`` includes the implicit zeros for the value-0 group.
    Ties at the ``N``-th value share the remaining top-``N`` slots fractionally.
    """
    n, m, e = cols.n, cols.m, cols.nnz
    f64 = torch.float64
    n0 = (n - cols.counts).to(f64)
    val = cols.val
    neg = torch.bincount(cols.unit[val < 0], minlength=m).to(f64)
    zex = torch.bincount(cols.unit[val == 0], minlength=m).to(f64)
    zsize = n0 + zex
    rank0 = neg + (zsize + 1.0) / 2.0
    big_n = float(min(max(int(top_n), 0), n))
    rank = torch.zeros(e, dtype=f64)
    frac = torch.zeros(e, dtype=f64)
    if e:
        u, v = cols.unit, val  # sorted by (unit, value)
        new = torch.ones(e, dtype=torch.bool)
        new[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
        first = new.nonzero().squeeze(1)
        gid = torch.cumsum(new, 0) - 1
        del new
        gu, gv = u[first], v[first]
        gsize = torch.diff(first, append=torch.tensor([e])).to(f64) + n0[gu] * (gv == 0).to(f64)
        gstart = (first - cols.ptr[:-1][gu]).to(f64) + n0[gu] * (gv > 0).to(f64)
        rank = (gstart + (gsize + 1.0) / 2.0)[gid]
        if big_n > 0:
            above = n - (gstart + gsize)
            frac = ((big_n - above) / gsize).clamp(0.0, 1.0)[gid]
    frac0 = torch.zeros(m, dtype=f64)
    if big_n > 0:
        above0 = n - (neg + zsize)
        frac0 = torch.where(zsize > 0, ((big_n - above0) / zsize.clamp_min(1.0)).clamp(0.0, 1.0), frac0)
    return UnitRanks(rank, rank0, n0, frac, frac0, int(big_n))


def check_labels(y: Any, n: int, what: str) -> Tensor:
    """``y`` as a float64 ``(n, G)`` tensor of 0/1 labels (one row per position).

    Introduced in chapter 4.

    Raises
    ------
    ValueError
        Another shape, or values other than 0 and 1; the message names ``what``.
    """
    arr = y.detach().cpu().numpy() if isinstance(y, Tensor) else np.asarray(y)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"{what} must have shape ({n}, G) (one row per position), got {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{what} must be 0/1 (multi-hot genre indicators)")
    return torch.from_numpy(arr.astype(np.float64))



def check_mask(mask: Any, n: int, what: str, default: Tensor) -> Tensor:
    """``mask`` as a boolean ``(n,)`` tensor, or ``default`` if it is ``None``.

    Introduced in chapter 4.

    Raises
    ------
    ValueError
        Not a boolean array of shape ``(n,)``; the message names ``what``.
    """
    if mask is None:
        return default
    arr = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    if arr.dtype != bool or arr.shape != (n,):
        raise ValueError(f"{what} must be a boolean array of shape ({n},), got {arr.dtype} {arr.shape}")
    return torch.from_numpy(arr)



def auc_from_ranks(
    cols: ColumnEntries, ranks: UnitRanks, y: Tensor, cy: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """AUC ``(m, G)`` of every unit for every label column of ``y`` ``(n, G)``, from the units' ranks.

    Introduced in chapter 4.

    Returns
    -------
    (auc, cy, npos, nneg)
        The AUC (0.5 where a label has no positive or no negative row); the per-unit sums of ``y`` over
        the unit's entries ``C @ Y`` ``(m, G)`` (pass them as ``cy`` if already computed); the numbers of
        positive and negative rows per label ``(G,)``.
    """
    n = cols.n
    if cy is None:
        cy = cols.matmul(torch.ones(cols.nnz), y, dtype=torch.float32)  # exact: counts < 2**24
    ry = cols.matmul(ranks.rank, y)
    npos = y.sum(0)
    nneg = n - npos
    s = ry + ranks.rank0[:, None] * (npos[None, :] - cy)
    u = s - npos * (npos + 1.0) / 2.0
    denom = npos * nneg
    auc = torch.where(denom > 0, u / denom.clamp_min(1.0), torch.full_like(u, 0.5))
    return auc, cy, npos, nneg


def auc_matrix(unit_acts: UnitActs, labels: Any, mask: Any = None) -> np.ndarray:
    """ROC-AUC of every unit as a detector of every label, over all (masked) positions.

    Introduced in chapter 4.

    Rank-based (Mann-Whitney U with average ranks for ties): ``AUC = P(a_pos > a_neg) + P(a_pos = a_neg) / 2``
    for a random positive and a random negative position. Vectorised: one sort of the units' non-zero
    entries and two sparse products, so sparse units cost only their non-zeros.

    Parameters
    ----------
    unit_acts : LatentCodes or (n, m) matrix
    labels : (n, G) array of 0/1
    mask : (n,) bool, optional
        Positions to use (default all).

    Returns
    -------
    numpy.ndarray of shape (m, G)
        0.5 for a label with no positive or no negative position, and for constant units.
    """
    n = n_rows(unit_acts)
    y = check_labels(labels, n, "labels")
    keep = check_mask(mask, n, "mask", torch.ones(n, dtype=torch.bool))
    cols = column_entries(unit_acts).select_rows(keep)
    auc, *_ = auc_from_ranks(cols, unit_ranks(cols), y[keep])
    return auc.numpy()

