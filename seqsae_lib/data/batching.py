"""Turning per-user item sequences into left-padded tensors and batches.

Introduced in chapter 2.

All tensors are left-padded with 0 (the padding id): the most recent item is
always in the last column. Only the fields of :class:`SplitLike` are used, so
any object with those attributes works (the data layer's
``LeaveOneOutSplit`` in particular).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from seqsae_lib.data.histories import check_sequences
from seqsae_lib.utils.checks import check_int

__all__ = [
    "SplitLike",
    "left_pad",
    "trim_left_padding",
    "seen_mask",
    "NextItemDataset",
    "collate_trim",
    "collate_full",
    "make_train_loader",
    "EvalBatch",
    "iter_eval_batches",
]


class SplitLike(Protocol):
    """The fields of a leave-one-out split that the model layer relies on.

    Introduced in chapter 1; see
    ``seqsae_lib.data.sequences.LeaveOneOutSplit``.
    """

    num_items: int
    train: list[np.ndarray]
    valid_inputs: list[np.ndarray]
    valid_targets: np.ndarray
    test_inputs: list[np.ndarray]
    test_targets: np.ndarray
    fingerprint: dict


def left_pad(seqs: Sequence[Any], max_len: int, *, pad_value: int = 0) -> Tensor:
    """Stack sequences into a left-padded ``(n, max_len)`` LongTensor.

    Introduced in chapter 2.

    Each sequence keeps only its **most recent** ``max_len`` items (its tail)
    and is padded with ``pad_value`` on the left, so the latest item is in the
    last column. Sequences are checked with :func:`check_sequences` first:
    float, string or boolean ids and ids < 1 are refused, never truncated or
    parsed silently. An empty sequence gives an all-padding row (which
    :meth:`seqsae_lib.SASRec.scores` refuses to score).

    Parameters
    ----------
    seqs : sequence of array-like
        1-D integer sequences (may be empty).
    max_len : int
        Width of the output (>= 1).
    pad_value : int, default 0

    Returns
    -------
    torch.LongTensor
        Shape ``(len(seqs), max_len)``.

    Raises
    ------
    TypeError, ValueError
        A bad ``max_len`` or a bad sequence (see :func:`check_sequences`).

    Examples
    --------
    >>> left_pad([[1, 2, 3], [4]], 2)
    tensor([[2, 3],
            [0, 4]])
    """
    max_len = check_int("max_len", max_len, 1)
    arrays = check_sequences(seqs)
    out = np.full((len(arrays), int(max_len)), pad_value, dtype=np.int64)
    for i, a in enumerate(arrays):
        if a.size == 0:
            continue
        tail = a[-max_len:]
        out[i, max_len - len(tail) :] = tail
    return torch.from_numpy(out)


def seen_mask(sequences: Sequence[Any], num_items: int) -> Tensor:
    """``(B, num_items + 1)`` boolean mask of the items in each sequence, padding column 0 included.

    Introduced in chapter 2: the items a user has already seen are not
    recommended (``scores.masked_fill(seen_mask(...), -inf)``).
    """
    out = torch.zeros(len(sequences), int(num_items) + 1, dtype=torch.bool)
    for row, seq in enumerate(sequences):
        out[row, torch.as_tensor(np.asarray(seq, dtype=np.int64))] = True
    out[:, 0] = True
    return out


def trim_left_padding(ids: Tensor, *others: Tensor, pad_value: int = 0) -> tuple[Tensor, ...]:
    """Drop the leading columns that are padding in every row of ``ids``.

    Introduced in chapter 2. Saves compute: the
    model's outputs at real positions do not depend on the batch width.
    At least one column is always kept.

    Parameters
    ----------
    ids : Tensor
        ``(B, L)`` left-padded ids deciding which columns to drop.
    *others : Tensor
        Further ``(B, L, ...)`` tensors trimmed the same way (e.g. targets).

    Returns
    -------
    tuple of Tensor
        ``(ids_trimmed, *others_trimmed)``.
    """
    if ids.dim() != 2:
        raise ValueError(f"ids must be (batch, length), got shape {tuple(ids.shape)}")
    used = (ids != pad_value).any(dim=0)
    nz = torch.nonzero(used)
    start = int(nz[0]) if len(nz) else ids.shape[1] - 1
    for o in others:
        if o.shape[:2] != ids.shape:
            raise ValueError(f"tensor of shape {tuple(o.shape)} does not match ids {tuple(ids.shape)}")
    return (ids[:, start:], *(o[:, start:] for o in others))


class NextItemDataset(Dataset):
    """Training pairs for next-item prediction with a target at every position.

    Introduced in chapter 2.

    For a user sequence ``s`` the pair is ``input = s[:-1]``,
    ``target = s[1:]``, both cut to their last ``max_len`` items and
    left-padded to ``max_len``; ``target[t]`` is the item following
    ``input[t]``, and target 0 marks padding (no loss). Sequences with fewer
    than 2 items give no pair and are skipped.

    Parameters
    ----------
    sequences : sequence of array-like
        Training sequences (e.g. ``split.train``).
    max_len : int
        Window length.
    num_items : int, optional
        If given, ids are checked to lie in ``1..num_items``.
    """

    def __init__(self, sequences: Sequence[Any], max_len: int, *, num_items: int | None = None) -> None:
        seqs = check_sequences(sequences, num_items=num_items, what="sequences")
        usable = [s for s in seqs if len(s) >= 2]
        if not usable:
            raise ValueError("no training sequence has at least 2 items; nothing to learn from")
        self.max_len = int(max_len)
        self.n_skipped = len(seqs) - len(usable)
        self.inputs = left_pad([s[:-1] for s in usable], max_len)
        self.targets = left_pad([s[1:] for s in usable], max_len)

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.inputs[index], self.targets[index]

    @property
    def num_targets(self) -> int:
        """Total number of (non-padding) training targets.

        Introduced in chapter 2.
        """
        return int((self.targets != 0).sum())


def collate_trim(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Stack ``(input, target)`` pairs and drop all-padding leading columns.

    Introduced in chapter 2.
    """
    inputs = torch.stack([b[0] for b in batch])
    targets = torch.stack([b[1] for b in batch])
    return trim_left_padding(inputs, targets)  # type: ignore[return-value]


def collate_full(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Stack ``(input, target)`` pairs keeping the full ``max_len`` width (naive baseline).

    Introduced in chapter 2.
    """
    return torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])


def make_train_loader(
    dataset: NextItemDataset,
    batch_size: int,
    *,
    seed: int,
    trim: bool = True,
    shuffle: bool = True,
) -> DataLoader:
    """A plain single-process ``DataLoader`` over a :class:`NextItemDataset`.

    Introduced in chapter 2.

    Parameters
    ----------
    dataset : NextItemDataset
    batch_size : int
    seed : int
        Seeds the shuffling generator, so batch order is reproducible.
    trim : bool, default True
        Use :func:`collate_trim` (else :func:`collate_full`).
    shuffle : bool, default True
    """
    batch_size = check_int("batch_size", batch_size, 1)
    gen = torch.Generator().manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=gen,
        collate_fn=collate_trim if trim else collate_full,
        num_workers=0,
    )


@dataclass(frozen=True)
class EvalBatch:
    """One evaluation batch.

    Introduced in chapter 2.
    """

    users: np.ndarray
    """``(B,)`` positions of these users in the full input list."""
    inputs: Tensor
    """``(B, L)`` left-padded, column-trimmed model inputs (last ``max_len`` items)."""
    targets: Tensor
    """``(B,)`` held-out target ids."""
    seen: list[np.ndarray]
    """Per user, every item of the **full** input sequence (not only the
    last ``max_len``), used to filter already-seen items."""


def iter_eval_batches(
    inputs: Sequence[Any],
    targets: Any,
    *,
    max_len: int,
    batch_size: int = 256,
    num_items: int | None = None,
) -> Iterator[EvalBatch]:
    """Yield :class:`EvalBatch` objects over users in their original order.

    Introduced in chapter 2.

    Parameters
    ----------
    inputs : sequence of array-like
        Per-user input sequences (e.g. ``split.test_inputs``).
    targets : array-like
        ``(n_users,)`` held-out target ids.
    max_len : int
        Model window; longer inputs keep their most recent ``max_len`` items.
    batch_size : int, default 256
    num_items : int, optional
        If given, inputs and targets are checked to lie in ``1..num_items``.

    Raises
    ------
    ValueError
        If lengths differ or ids are out of range.
    """
    seqs = check_sequences(inputs, num_items=num_items, what="inputs")
    tg = np.asarray(targets.detach().cpu() if isinstance(targets, Tensor) else targets)
    if tg.ndim != 1 or len(tg) != len(seqs):
        raise ValueError(
            f"targets must be 1-D with one id per user ({len(seqs)} users), got shape {tg.shape}"
        )
    if tg.size and not np.issubdtype(tg.dtype, np.integer):
        raise TypeError(f"targets must be integer item ids, got dtype {tg.dtype}")
    tg = tg.astype(np.int64)
    if tg.size:
        lo, hi = int(tg.min()), int(tg.max())
        if lo < 1 or (num_items is not None and hi > num_items):
            raise ValueError(
                f"targets must be item ids in [1, {num_items if num_items is not None else 'num_items'}], "
                f"got values in [{lo}, {hi}]"
            )
    batch_size = check_int("batch_size", batch_size, 1)
    for start in range(0, len(seqs), batch_size):
        idx = np.arange(start, min(start + batch_size, len(seqs)))
        chunk = [seqs[i] for i in idx]
        (ids,) = trim_left_padding(left_pad(chunk, max_len))
        yield EvalBatch(users=idx, inputs=ids, targets=torch.from_numpy(tg[idx]), seen=chunk)
