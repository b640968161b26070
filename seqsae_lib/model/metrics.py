"""Ranking metrics for one held-out target per user.

Introduced in chapter 2.

Every metric takes the **0-based rank** ``r`` of each user's held-out item in
that user's ranked list (``r = 0`` means it was recommended first) and is
vectorised over users. With ``reduce="mean"`` (default) the per-user values
are averaged into a float; ``reduce="none"`` returns the per-user array, for
paired comparisons between models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch

from seqsae_lib.utils.checks import check_choice, check_int

__all__ = ["hit_rate_at_k", "hr_at_k", "ndcg_at_k", "mrr_at_k", "coverage_at_k"]

Reduce = Literal["mean", "none"]


def _ranks(ranks: Any) -> np.ndarray:
    if isinstance(ranks, torch.Tensor):
        ranks = ranks.detach().cpu().numpy()
    r = np.asarray(ranks)
    if r.ndim != 1:
        raise ValueError(f"ranks must be a 1-D array (one rank per user), got shape {r.shape}")
    if r.size == 0:
        raise ValueError("ranks is empty; expected at least one user")
    if not np.issubdtype(r.dtype, np.integer):
        if not np.issubdtype(r.dtype, np.floating) or not np.all(np.isfinite(r)) or np.any(r != np.round(r)):
            raise ValueError(f"ranks must be whole numbers (0-based ranks), got dtype {r.dtype}")
    r = r.astype(np.int64)
    if r.min() < 0:
        raise ValueError(f"ranks must be >= 0 (0-based), got minimum {int(r.min())}")
    return r


def _k(k: int) -> int:
    return check_int("k", k, 1)


def _reduce(values: np.ndarray, reduce: Reduce) -> float | np.ndarray:
    if check_choice("reduce", reduce, ("mean", "none")) == "mean":
        return float(values.mean())
    return values


def _truncated(ranks: Any, k: int, reduce: Reduce, gain: Callable[[np.ndarray], np.ndarray]) -> float | np.ndarray:
    """``gain(r)`` for the users whose 0-based rank ``r`` is below ``k``, 0 for the others; then reduced."""
    r, k = _ranks(ranks), _k(k)
    return _reduce(np.where(r < k, gain(r.astype(np.float64)), 0.0), reduce)


def hit_rate_at_k(ranks: Any, k: int, *, reduce: Reduce = "mean") -> float | np.ndarray:
    """Hit rate (HR@k, recall@k with one target): ``1[r < k]``.

    Introduced in chapter 2. Range ``[0, 1]``.

    Parameters
    ----------
    ranks : array-like of int
        ``(n_users,)`` 0-based ranks of the held-out items.
    k : int
        Cut-off (list length), ``k >= 1``.
    reduce : {"mean", "none"}
        Average over users, or return per-user values.
    """
    return _truncated(ranks, k, reduce, np.ones_like)


hr_at_k = hit_rate_at_k


def ndcg_at_k(ranks: Any, k: int, *, reduce: Reduce = "mean") -> float | np.ndarray:
    """Normalised discounted cumulative gain: ``1[r < k] / log2(r + 2)``.

    Introduced in chapter 2. Range ``[0, 1]``:
    rank 0 gives 1, rank 2 gives ``1/log2(4) = 0.5``, rank ``>= k`` gives 0.
    With a single relevant item the ideal DCG is 1, so DCG equals NDCG.

    Parameters
    ----------
    ranks : array-like of int
        ``(n_users,)`` 0-based ranks of the held-out items.
    k : int
        Cut-off, ``k >= 1``.
    reduce : {"mean", "none"}
    """
    return _truncated(ranks, k, reduce, lambda r: 1.0 / np.log2(r + 2.0))


def mrr_at_k(ranks: Any, k: int, *, reduce: Reduce = "mean") -> float | np.ndarray:
    """Mean reciprocal rank, truncated: ``1[r < k] / (r + 1)``.

    Introduced in chapter 2. Range ``[0, 1]``.

    Parameters
    ----------
    ranks : array-like of int
        ``(n_users,)`` 0-based ranks of the held-out items.
    k : int
        Cut-off, ``k >= 1``.
    reduce : {"mean", "none"}
    """
    return _truncated(ranks, k, reduce, lambda r: 1.0 / (r + 1.0))


def coverage_at_k(top_items: Any, num_items: int) -> float:
    """Catalogue coverage: fraction of items in at least one user's top-k list.

    Introduced in chapter 2. Range ``[0, 1]``:
    ``|union_u topk(u)| / num_items``. ``k`` is the width of ``top_items``.

    Parameters
    ----------
    top_items : array-like of int
        ``(n_users, k)`` recommended item ids in ``1..num_items``.
    num_items : int
        Catalogue size (number of real items).
    """
    if isinstance(top_items, torch.Tensor):
        top_items = top_items.detach().cpu().numpy()
    t = np.asarray(top_items)
    if t.ndim != 2:
        raise ValueError(f"top_items must be (n_users, k), got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"top_items must hold integer item ids, got dtype {t.dtype}")
    check_int("num_items", num_items, 1)
    if t.size == 0:
        return 0.0
    if t.min() < 1 or t.max() > num_items:
        raise ValueError(
            f"top_items must be ids in [1, {num_items}] (0 is padding), got [{int(t.min())}, {int(t.max())}]"
        )
    return float(len(np.unique(t)) / num_items)
