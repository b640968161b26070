"""Validating viewing histories: one check, used by scoring, evaluation, explanations and live steering.

Introduced in chapter 2. A history is a non-empty sequence of integer item ids in
``1..num_items`` (0 is padding, never an item); floats, strings and booleans are refused rather than truncated
or parsed, and every error names the user (or position) and the bad value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["check_history", "check_sequences"]


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

    Introduced in chapter 2. This is the one validator of histories: scoring
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

    Introduced in chapter 5, for the one-user calls (explanations). The same
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
