"""Turning per-user item sequences into left-padded tensors and batches.

Introduced in chapter 2 (chapters/02_sasrec.ipynb).

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
    "check_sequences",
    "check_history",
]


class SplitLike(Protocol):
    """The fields of a leave-one-out split that the model layer relies on.

    Introduced in chapter 1 (chapters/01_data.ipynb); see
    ``seqsae_lib.data.sequences.LeaveOneOutSplit``.
    """

    num_items: int
    train: list[np.ndarray]
    valid_inputs: list[np.ndarray]
    valid_targets: np.ndarray
    test_inputs: list[np.ndarray]
    test_targets: np.ndarray
    fingerprint: dict


_KINDS = {"f": "float", "c": "complex", "U": "string", "S": "bytes", "b": "boolean", "O": "object", "M": "datetime",
          "m": "timedelta", "V": "void"}


def _non_integer_error(a: np.ndarray, label: str) -> TypeError:
    """A ``TypeError`` naming the first value of ``a`` that is not an integer item id, and where it is."""
    pos = 0
    if a.dtype.kind == "f":  # point at a fractional value if there is one (5.7), else at the first
        frac = np.flatnonzero(~np.isfinite(a) | (a != np.round(a)))
        pos = int(frac[0]) if len(frac) else 0
    elif a.dtype.kind == "O":
        pos = next(j for j, x in enumerate(a) if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)))
    value = a[pos].item() if isinstance(a[pos], np.generic) else a[pos]
    kind = _KINDS.get(a.dtype.kind, str(a.dtype))
    if a.dtype.kind == "O":
        kind = type(value).__name__
    return TypeError(
        f"{label} holds {kind} values ({value!r} at position {pos}); item ids must be integers "
        f"(floats, strings and booleans are not item ids)"
    )


def _as_ids(s: Any, label: str, allow_empty: bool) -> np.ndarray:
    """One sequence as a 1-D int64 array; ``TypeError``/``ValueError`` naming ``label`` otherwise."""
    if isinstance(s, (list, tuple)) and any(isinstance(x, (bool, np.bool_)) for x in s):
        a = np.asarray(s, dtype=object)  # numpy would turn [True, 2] into [1, 2]
        if a.ndim == 1:
            raise _non_integer_error(a, label)
    a = s.detach().cpu().numpy() if isinstance(s, Tensor) else np.asarray(s)
    if a.ndim != 1:
        raise ValueError(f"{label} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        if not allow_empty:
            raise ValueError(
                f"{label} is empty: a history needs at least one item to be scored or explained "
                "(expected a non-empty sequence of item ids; leave users without history out)"
            )
        return a.astype(np.int64)
    if a.dtype == np.int64:
        return a
    if a.dtype.kind == "O" and all(isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)) for x in a):
        try:  # Python ints, e.g. a list holding ids too large for int64
            return a.astype(np.int64)
        except OverflowError:
            big = next(j for j, x in enumerate(a) if not -(2**63) <= int(x) < 2**63)
            raise ValueError(f"{label}[{big}] = {a[big]} is not an item id (too large for int64)") from None
    if not np.issubdtype(a.dtype, np.integer):  # bool, float, str, object... (numpy's bool is not an integer)
        raise _non_integer_error(a, label)
    return a.astype(np.int64)


def _range_error(arrays: Sequence[np.ndarray], labels: Sequence[str], num_items: int | None) -> ValueError | None:
    """A ``ValueError`` naming the first id outside ``1..num_items`` (sequence, position, value), or ``None``."""
    expected = ">= 1" if num_items is None else f"in [1, {num_items}]"
    for a, label in zip(arrays, labels):
        bad = np.flatnonzero((a < 1) | (a > num_items)) if num_items is not None else np.flatnonzero(a < 1)
        if len(bad):
            j = int(bad[0])
            return ValueError(
                f"{label}[{j}] = {int(a[j])} is not an item id: expected item ids {expected} "
                "(0 is reserved for padding)"
            )
    return None


def check_sequences(
    seqs: Sequence[Any], *, num_items: int | None = None, what: str = "seqs", allow_empty: bool = True,
) -> list[np.ndarray]:
    """Validate and convert a list of item-id sequences (one history per user) to 1-D int64 arrays.

    Introduced in chapter 2 (chapters/02_sasrec.ipynb). This is the one validator of histories: scoring
    (:func:`left_pad`), evaluation, explanations and the live steering engine all go through it, so a bad
    history fails the same way everywhere, naming the user (``what[i]``), the position and the value.

    Parameters
    ----------
    seqs : sequence of array-like
        One 1-D sequence of item ids per user, chronological, without padding.
    num_items : int, optional
        If given, ids must lie in ``1..num_items``; otherwise they must be >= 1.
    what : str
        Name used in error messages.
    allow_empty : bool, default True
        Whether a user may have no items (training sequences may; a history to score may not).

    Returns
    -------
    list of numpy.ndarray

    Raises
    ------
    TypeError
        ``seqs`` is not a list of sequences, or a sequence holds values that are not integers (floats such
        as ``5.7``, numeric strings such as ``"5"``, booleans): they are never converted silently.
    ValueError
        A sequence is not 1-D, is empty (with ``allow_empty=False``), or holds an id outside
        ``1..num_items`` (``0`` is padding, not an item).
    """
    if isinstance(seqs, (np.ndarray, Tensor)) and getattr(seqs, "ndim", 0) == 2:
        raise TypeError(
            f"{what} must be a list of 1-D sequences (one per user), got a 2-D array; "
            "pass list(array) if every row is a full unpadded sequence"
        )
    if isinstance(seqs, (str, bytes)) or not isinstance(seqs, (Sequence, np.ndarray)):
        raise TypeError(f"{what} must be a list of 1-D integer arrays, got {type(seqs).__name__}")
    out = [_as_ids(s, f"{what}[{i}]", allow_empty) for i, s in enumerate(seqs)]
    # One range check over all ids (a per-sequence check cost a second per 80 evaluations of 943 users);
    # only when it fails are the sequences searched for the first offender, to name it.
    flat = np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
    if flat.size and (flat.min() < 1 or (num_items is not None and flat.max() > num_items)):
        err = _range_error(out, [f"{what}[{i}]" for i in range(len(out))], num_items)
        if err is not None:
            raise err
    return out


def check_history(sequence: Any, *, num_items: int | None = None, what: str = "sequence") -> np.ndarray:
    """Validate one user's history: a non-empty 1-D sequence of integer item ids in ``1..num_items``.

    Introduced in chapter 5 (chapters/05_steering.ipynb), for the one-user calls (explanations). The same
    checks as :func:`check_sequences` with ``allow_empty=False``; messages name ``what``, the position and
    the value (e.g. ``"sequence[3] = 0 is not an item id"``).

    Returns
    -------
    numpy.ndarray
        The history as int64.

    Raises
    ------
    TypeError, ValueError
        See :func:`check_sequences`.
    """
    a = _as_ids(sequence, what, allow_empty=False)
    err = _range_error([a], [what], num_items)
    if err is not None:
        raise err
    return a


def left_pad(seqs: Sequence[Any], max_len: int, *, pad_value: int = 0) -> Tensor:
    """Stack sequences into a left-padded ``(n, max_len)`` LongTensor.

    Introduced in chapter 2 (chapters/02_sasrec.ipynb).

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
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise ValueError(f"max_len must be an int >= 1, got {max_len!r}")
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

    Introduced in chapter 2 (chapters/02_sasrec.ipynb): the items a user has already seen are not
    recommended (``scores.masked_fill(seen_mask(...), -inf)``).
    """
    out = torch.zeros(len(sequences), int(num_items) + 1, dtype=torch.bool)
    for row, seq in enumerate(sequences):
        out[row, torch.as_tensor(np.asarray(seq, dtype=np.int64))] = True
    out[:, 0] = True
    return out


def trim_left_padding(ids: Tensor, *others: Tensor, pad_value: int = 0) -> tuple[Tensor, ...]:
    """Drop the leading columns that are padding in every row of ``ids``.

    Introduced in chapter 2 (chapters/02_sasrec.ipynb). Saves compute: the
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

    Introduced in chapter 2 (chapters/02_sasrec.ipynb).

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

        Introduced in chapter 2 (chapters/02_sasrec.ipynb).
        """
        return int((self.targets != 0).sum())


def collate_trim(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Stack ``(input, target)`` pairs and drop all-padding leading columns.

    Introduced in chapter 2 (chapters/02_sasrec.ipynb).
    """
    inputs = torch.stack([b[0] for b in batch])
    targets = torch.stack([b[1] for b in batch])
    return trim_left_padding(inputs, targets)  # type: ignore[return-value]


def collate_full(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Stack ``(input, target)`` pairs keeping the full ``max_len`` width (naive baseline).

    Introduced in chapter 2 (chapters/02_sasrec.ipynb).
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

    Introduced in chapter 2 (chapters/02_sasrec.ipynb).

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
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
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

    Introduced in chapter 2 (chapters/02_sasrec.ipynb).
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

    Introduced in chapter 2 (chapters/02_sasrec.ipynb).

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
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(seqs), batch_size):
        idx = np.arange(start, min(start + batch_size, len(seqs)))
        chunk = [seqs[i] for i in idx]
        (ids,) = trim_left_padding(left_pad(chunk, max_len))
        yield EvalBatch(users=idx, inputs=ids, targets=torch.from_numpy(tg[idx]), seen=chunk)
