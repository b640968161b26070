"""Full-catalogue ranking evaluation and simple baselines.

Introduced in chapter 2.

Protocol (leave-one-out, one held-out target per user)
------------------------------------------------------
* Every real item ``1..num_items`` is ranked: no sampled negatives.
* Padding id 0 is never a candidate.
* With ``filter_seen=True`` (default) every item in the user's **full** input
  sequence is removed from the candidates, **except the target itself**,
  which always stays a candidate even if the user interacted with it
  before (re-consumption would otherwise be impossible to score).
* The target's 0-based rank is the number of candidates with a strictly
  greater score, plus the number of candidates with an **equal** score and a
  **smaller item id** (ties broken by item id, ascending). This is exactly
  the target's position in a stable descending sort of the candidates, the
  same order used for the top-k lists behind coverage. A constant scorer
  therefore does not get rank 0 for free.

A *scorer* is anything with ``scores(input_ids) -> (B, num_items + 1)``
tensor of next-item scores, where ``input_ids`` is a left-padded ``(B, L)``
LongTensor; :class:`~seqsae_lib.model.sasrec.SASRec`, :class:`MostPopularScorer`
and :class:`RandomScorer` all are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from seqsae_lib.data import EvalBatch, check_sequences, iter_eval_batches
from seqsae_lib.model.metrics import coverage_at_k, hit_rate_at_k, mrr_at_k, ndcg_at_k

from seqsae_lib.utils.checks import check_int
from seqsae_lib.utils.torchutils import eval_mode

__all__ = ["Scorer", "EvalResult", "evaluate", "evaluate_scored_batches", "top_k_stable", "MostPopularScorer",
           "RandomScorer"]


class Scorer(Protocol):
    """Anything that scores all items for a batch of left-padded sequences.

    Introduced in chapter 2.
    """

    def scores(self, input_ids: Tensor) -> Tensor:
        """``(B, num_items + 1)`` scores for left-padded ``(B, L)`` ids; column 0 is padding."""
        ...


_METRIC_FUNCS = {"NDCG": ndcg_at_k, "HR": hit_rate_at_k, "MRR": mrr_at_k}


@dataclass(frozen=True)
class EvalResult:
    """Outcome of :func:`evaluate`.

    Introduced in chapter 2.
    """

    metrics: dict[str, float]
    """Averages over users, e.g. ``{"NDCG@10": .., "HR@10": .., "MRR@10": .., "Coverage@10": ..}``."""
    ranks: np.ndarray
    """``(n_users,)`` int64 0-based rank of each user's target, in input order."""
    ks: tuple[int, ...]
    """The cut-offs evaluated."""
    num_items: int
    """Catalogue size used for coverage."""
    filter_seen: bool
    """Whether already-seen items were excluded from the candidates."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form information (e.g. number of users)."""
    top_items: np.ndarray | None = None
    """``(n_users, max(ks))`` recommended ids in input order (seen items filtered), when asked for with
    ``return_top=True`` (:func:`evaluate_scored_batches`); else ``None``."""

    def __getitem__(self, name: str) -> float:
        try:
            return self.metrics[name]
        except KeyError:
            raise KeyError(f"unknown metric {name!r}; available: {sorted(self.metrics)}") from None

    def per_user(self, metric: str, k: int) -> np.ndarray:
        """Per-user values of ``metric`` in ``{"NDCG", "HR", "MRR"}`` at cut-off ``k``.

        Introduced in chapter 2; used for paired
        comparisons (same users, two models).
        """
        name = metric.upper()
        if name not in _METRIC_FUNCS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {sorted(_METRIC_FUNCS)}")
        return _METRIC_FUNCS[name](self.ranks, k, reduce="none")  # type: ignore[return-value]


def _ks(k: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(k, (int, np.integer)):  # booleans too: check_int refuses them
        return (check_int("k", k, 1),)
    if isinstance(k, (str, bytes)) or not isinstance(k, Iterable):
        raise TypeError(f"k must be a positive int or a non-empty sequence of them, got {k!r}")
    ks = [check_int(f"k[{i}]", x, 1) for i, x in enumerate(k)]
    if not ks:
        raise ValueError("k must be a positive int or a non-empty sequence of them, got an empty sequence")
    return tuple(sorted(set(ks)))


def _right_pad(seqs: list[np.ndarray]) -> Tensor:
    width = max(1, max((len(s) for s in seqs), default=1))
    out = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return torch.from_numpy(out)


def top_k_stable(scores: Tensor, k: int) -> Tensor:
    """The first ``k`` columns of a stable descending sort (ties by ascending id), via ``topk``.

    Introduced in chapter 2: the order of every top-k list of the library
    (:func:`evaluate`, the steering evaluation of chapter 5).

    Parameters
    ----------
    scores : Tensor of shape (B, n_items)
    k : int
        Number of columns to keep.

    Returns
    -------
    Tensor of shape (B, k)
        Column ids, best first.

    Same result as ``torch.sort(scores, descending=True, stable=True).indices[:, :k]`` (the order of
    :func:`evaluate`'s top-k lists) at a fraction of the cost: ``topk`` picks ``k + 1`` columns;
    rows where the ``k``-th and ``(k+1)``-th values tie (rare) fall back to the full stable sort, the
    others are put in stable order among their ``k`` columns.
    """
    n_cols = scores.shape[1]
    if k + 1 >= n_cols:
        return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    vals, idx = scores.topk(k + 1, dim=1, sorted=True)
    # stable order inside the selection: ascending id first, then a stable sort by descending value
    by_id = torch.sort(idx[:, :k], dim=1).indices
    idx_k = idx[:, :k].gather(1, by_id)
    vals_k = vals[:, :k].gather(1, by_id)
    order = torch.sort(vals_k, dim=1, descending=True, stable=True).indices
    out = idx_k.gather(1, order)
    tie = vals[:, k - 1] == vals[:, k]
    if bool(tie.any()):
        out[tie] = torch.sort(scores[tie], dim=1, descending=True, stable=True).indices[:, :k]
    return out


@torch.no_grad()
def evaluate(
    model_or_scorer: Scorer,
    inputs: Sequence[Any],
    targets: Any,
    *,
    num_items: int,
    k: int | Sequence[int] = (10,),
    filter_seen: bool = True,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    max_len: int | None = None,
    progress: bool = False,
) -> EvalResult:
    """Rank the full catalogue for every user and compute HR/NDCG/MRR/coverage.

    Introduced in chapter 2. See the module
    docstring for the exact protocol (candidates, seen-item filtering, ties).

    Parameters
    ----------
    model_or_scorer : Scorer
        A :class:`~seqsae_lib.model.sasrec.SASRec` (put in eval mode for the call,
        then restored) or any object with ``scores(input_ids)``.
    inputs : sequence of array-like
        Per-user input sequences (e.g. ``split.test_inputs``).
    targets : array-like
        ``(n_users,)`` held-out item ids in ``1..num_items``.
    num_items : int
        Catalogue size; scores must have ``num_items + 1`` columns.
    k : int or sequence of int, default (10,)
        Cut-offs.
    filter_seen : bool, default True
        Exclude items of the user's input sequence (never the target).
    batch_size : int, default 256
    device : str, torch.device or None
        Where to score; ``None`` uses the model's parameter device (CPU for
        scorers without parameters).
    max_len : int, optional
        Input window; defaults to ``model_or_scorer.max_len`` if it exists,
        else the longest input.
    progress : bool, default False
        Show a tqdm bar over batches.

    Returns
    -------
    EvalResult
        ``metrics`` has keys ``"NDCG@k"``, ``"HR@k"``, ``"MRR@k"``,
        ``"Coverage@k"`` for each ``k``; ``ranks`` the per-user ranks.

    Raises
    ------
    TypeError
        If the scorer has no ``scores`` method.
    TypeError, ValueError
        Bad inputs (:func:`~seqsae_lib.data.histories.check_sequences`: an empty history, a non-integer id or an
        id outside ``1..num_items``, naming the user, position and value), a wrong score shape, or NaN
        scores.
    """
    scorer = model_or_scorer
    if not callable(getattr(scorer, "scores", None)):
        raise TypeError(
            f"{type(scorer).__name__} is not a scorer: expected a `scores(input_ids)` method "
            "returning a (batch, num_items + 1) tensor"
        )
    num_items = check_int("num_items", num_items, 1)
    ks = _ks(k)
    seqs = check_sequences(inputs, num_items=num_items, what="inputs", allow_empty=False)
    if not seqs:
        raise ValueError("inputs is empty; expected at least one user")
    if max_len is None:
        max_len = getattr(scorer, "max_len", None) or max(1, max(len(s) for s in seqs))
    if device is None:
        param = next(scorer.parameters(), None) if isinstance(scorer, nn.Module) else None
        dev = param.device if param is not None else torch.device("cpu")
    else:
        dev = torch.device(device)

    with eval_mode(scorer if isinstance(scorer, nn.Module) else None):
        batches = iter_eval_batches(seqs, targets, max_len=int(max_len), batch_size=batch_size, num_items=num_items)
        n_batches = (len(seqs) + batch_size - 1) // batch_size
        batches = tqdm(batches, total=n_batches, desc="evaluate", disable=not progress, leave=False)
        result = evaluate_scored_batches(
            ((batch, scorer.scores(batch.inputs.to(dev))) for batch in batches),
            num_items=num_items, k=ks, filter_seen=filter_seen, device=dev,
        )
    return replace(result, extra={**result.extra, "max_len": int(max_len)})


@torch.no_grad()
def evaluate_scored_batches(
    scored_batches: Iterable[tuple[EvalBatch, Tensor]],
    *,
    num_items: int,
    k: int | Sequence[int] = (10,),
    filter_seen: bool = True,
    device: str | torch.device | None = None,
    return_top: bool = False,
) -> EvalResult:
    """Rank pre-built, already scored batches: the core of :func:`evaluate`.

    Introduced in chapter 2; the steering evaluation of chapter 5 uses it
    directly to rank scores it computes from cached states, batch by batch, on batches it built once
    (:func:`~seqsae_lib.data.batching.iter_eval_batches`). Same protocol as :func:`evaluate` (module
    docstring).

    Parameters
    ----------
    scored_batches : iterable of (EvalBatch, Tensor)
        Each batch with its ``(B, num_items + 1)`` scores (a generator keeps one batch of scores alive at
        a time). Together the batches must hold every user ``0 .. n_users - 1`` once.
    num_items : int
    k : int or sequence of int, default (10,)
    filter_seen : bool, default True
    device : str, torch.device or None
        Where to rank; ``None``: where each batch's scores are.
    return_top : bool, default False
        Also return the ``(n_users, max(k))`` top lists in ``EvalResult.top_items``.

    Raises
    ------
    ValueError
        A wrong score shape, NaN scores, or batches that do not cover every user exactly once.
    """
    num_items = check_int("num_items", num_items, minimum=1)
    ks = _ks(k)
    kmax = max(ks)
    users: list[np.ndarray] = []
    batch_ranks: list[np.ndarray] = []
    batch_top: list[np.ndarray] = []
    covered: dict[int, Tensor] | None = None
    for batch, s in scored_batches:
        b = len(batch.users)
        if not isinstance(s, Tensor) or tuple(s.shape) != (b, num_items + 1):
            shape = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
            raise ValueError(
                f"scorer returned {shape}; expected a tensor of shape ({b}, {num_items + 1}) "
                "= (batch, num_items + 1) with column 0 for padding"
            )
        dev = torch.device(device) if device is not None else s.device
        if covered is None:
            covered = {kk: torch.zeros(num_items + 1, dtype=torch.bool, device=dev) for kk in ks}
        item_ids = torch.arange(num_items + 1, device=dev)
        s = s.to(dev, torch.float32)
        if torch.isnan(s).any():
            raise ValueError("scorer returned NaN scores")
        tgt = batch.targets.to(dev)
        excluded = torch.zeros(b, num_items + 1, dtype=torch.bool, device=dev)
        excluded[:, 0] = True
        if filter_seen:
            excluded.scatter_(1, _right_pad(batch.seen).to(dev), True)
            excluded[torch.arange(b, device=dev), tgt] = False  # the target stays a candidate
        t_score = s.gather(1, tgt[:, None])
        ahead = (s > t_score) | ((s == t_score) & (item_ids[None, :] < tgt[:, None]))
        users.append(np.asarray(batch.users))
        batch_ranks.append((ahead & ~excluded).sum(dim=1).cpu().numpy())

        masked = s.masked_fill(excluded, float("-inf"))
        top = top_k_stable(masked, kmax)
        if return_top:
            batch_top.append(top.cpu().numpy())
        top_ok = ~excluded.gather(1, top)
        for kk in ks:
            covered[kk][top[:, :kk][top_ok[:, :kk]]] = True
    order = np.concatenate(users) if users else np.zeros(0, dtype=np.int64)
    if covered is None or not np.array_equal(np.sort(order), np.arange(len(order))):
        raise ValueError("the batches must hold every user 0 .. n_users - 1 exactly once (iter_eval_batches)")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.concatenate(batch_ranks)
    top_items = None
    if return_top:
        top_items = np.empty((len(order), kmax), dtype=np.int64)
        top_items[order] = np.concatenate(batch_top)

    metrics: dict[str, float] = {}
    for kk in ks:
        metrics[f"NDCG@{kk}"] = float(ndcg_at_k(ranks, kk))
        metrics[f"HR@{kk}"] = float(hit_rate_at_k(ranks, kk))
        metrics[f"MRR@{kk}"] = float(mrr_at_k(ranks, kk))
        ids_covered = torch.nonzero(covered[kk][1:]).flatten().cpu().numpy() + 1
        metrics[f"Coverage@{kk}"] = coverage_at_k(ids_covered[None, :], num_items) if len(ids_covered) else 0.0
    return EvalResult(
        metrics=metrics,
        ranks=ranks,
        ks=ks,
        num_items=num_items,
        filter_seen=filter_seen,
        extra={"n_users": len(order)},
        top_items=top_items,
    )


class MostPopularScorer:
    """Recommend items by their number of occurrences in the training sequences.

    Introduced in chapter 2 as a baseline. Ignores
    the input sequence; ties are broken by item id like every other scorer.

    Parameters
    ----------
    sequences : sequence of array-like
        Training sequences (e.g. ``split.train``).
    num_items : int
        Catalogue size.
    """

    def __init__(self, sequences: Sequence[Any], num_items: int) -> None:
        seqs = check_sequences(sequences, num_items=num_items, what="sequences")
        flat = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
        counts = np.bincount(flat, minlength=num_items + 1).astype(np.float32)
        self.num_items = int(num_items)
        self.counts = torch.from_numpy(counts)
        self.counts[0] = float("-inf")

    @classmethod
    def from_split(cls, split: Any) -> "MostPopularScorer":
        """Count over ``split.train`` with ``split.num_items`` items.

        Introduced in chapter 2.
        """
        return cls(split.train, split.num_items)

    def scores(self, input_ids: Tensor) -> Tensor:
        """``(B, num_items + 1)`` popularity counts (column 0 is ``-inf``).

        Introduced in chapter 2.
        """
        return self.counts.to(input_ids.device).expand(input_ids.shape[0], -1)


class RandomScorer:
    """Uniformly random scores: the chance-level baseline.

    Introduced in chapter 2. Reproducible: two
    scorers with the same ``seed`` produce the same sequence of scores.

    Parameters
    ----------
    num_items : int
        Catalogue size.
    seed : int, default 0
    """

    def __init__(self, num_items: int, seed: int = 0) -> None:
        self.num_items = int(num_items)
        self.generator = torch.Generator().manual_seed(int(seed))

    def scores(self, input_ids: Tensor) -> Tensor:
        """``(B, num_items + 1)`` uniform scores in ``[0, 1)`` (column 0 is ``-inf``).

        Introduced in chapter 2.
        """
        s = torch.rand(input_ids.shape[0], self.num_items + 1, generator=self.generator)
        s[:, 0] = float("-inf")
        return s.to(input_ids.device)
