"""Collecting hidden states of a recommender into an activation store.

Introduced in chapter 3.

A sparse autoencoder is trained on a table of activation vectors: one row per (user, position), taken
at one capture point of the model (``"embed"``, ``"block_0"``, ..., ``"final"``). This module produces
that table, :class:`ActivationStore`, together with the metadata needed to interpret a row later: whose
sequence it came from, where in the sequence, which item the model had just read and which item came
next.

What exactly is stored
----------------------
For every user, :func:`collect_activations` runs **one** forward pass over the *window* of the user's
sequence, the last ``max_len`` items, left-padded exactly as in training and evaluation, and keeps the
state at every non-padding position. Because SASRec is causal, the state at position ``t`` depends only
on the items up to ``t`` (tested: replacing later items by padding leaves it unchanged).

It is **not**, however, the state the model would compute if the sequence *ended* at ``t``: SASRec's
positional embeddings are right-aligned (the most recent item always gets the last position
embedding), so a position's embedding encodes its distance to the end of the window. Only the state at
the **last** position of each user is the one the model uses to recommend; earlier positions are the
states that training supervises (every position predicts its successor). ``to_frame()["is_last"]``
marks the last positions.

Typical use (the states of the pass that predicts the validation item)::

    store = collect_activations(model, split.train, "final", next_items=split.valid_targets)

Training itself reads ``input = s[:-1]`` (window of the last ``max_len`` items of ``s[:-1]``) for a
training sequence ``s``; to collect those exact states pass ``[s[:-1] for s in split.train]`` with
``next_items=[s[-1] for s in split.train]``. The two differ by a one-step shift of the position
embeddings (and, for sequences longer than ``max_len``, by one item at the start of the window).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from seqsae_lib.data import check_sequences, left_pad, trim_left_padding
from seqsae_lib.model import check_model, record
from seqsae_lib.sae.store import ActivationStore
from seqsae_lib.utils.checks import check_int
from seqsae_lib.utils.torchutils import eval_mode

__all__ = ["collect_activations"]

class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the wanted capture point has been recorded."""


def _check_next_items(next_items: Any, n: int, num_items: int | None) -> np.ndarray:
    arr = next_items.detach().cpu().numpy() if isinstance(next_items, Tensor) else np.asarray(next_items)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"next_items must be 1-D with one item id per sequence ({n}), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"next_items must hold integer item ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or (num_items is not None and hi > num_items):
            raise ValueError(
                f"next_items must be item ids in [1, {num_items}] (0 = unknown), got values in [{lo}, {hi}]"
            )
    return arr


@torch.no_grad()
def collect_activations(
    model: nn.Module,
    sequences: Sequence[Any],
    capture_point: str = "final",
    *,
    next_items: Any | None = None,
    batch_size: int = 256,
    max_len: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    max_vectors: int | None = None,
    seed: int = 0,
    fingerprint: dict | None = None,
) -> ActivationStore:
    """Run the model over every sequence and store the state at each non-padding position.

    Introduced in chapter 3. See the module docstring for what a row means.

    The model runs in eval mode without gradients (its previous mode is restored); the forward pass is
    cut short right after ``capture_point``. The output is preallocated (positions are counted first)
    and filled chunk by chunk, so peak memory is the store plus one chunk's states.

    Parameters
    ----------
    model : SASRec
        Any module with ``capture_points``, ``hook_point(name)``, ``max_len`` and ``num_items`` whose
        forward takes left-padded ``(B, L)`` ids.
    sequences : sequence of array-like
        One chronological sequence of item ids per user (e.g. ``split.train``).
    capture_point : str, default "final"
        Where to read the residual stream.
    next_items : array-like, optional
        ``(len(sequences),)`` the item that follows each sequence (e.g. ``split.valid_targets`` when
        ``sequences`` is ``split.train``), so the last position also has a known ``next_item``;
        0 marks an unknown one. Without it every last position has ``next_item == 0``.
    batch_size : int, default 256
        Users per forward pass.
    max_len : int, optional
        Window length; defaults to (and may not exceed) ``model.max_len``. Each sequence contributes its
        last ``max_len`` items.
    device : str or torch.device, optional
        Where to run; defaults to the model's parameter device. The store is always on the CPU.
    progress : bool, default True
        Show a tqdm bar over chunks.
    max_vectors : int, optional
        Keep at most this many rows: when there are more positions, a uniformly random (``seed``)
        subset of positions is kept, in the usual row order, and users without a kept position are not
        run at all.
    seed : int, default 0
        Seed of that subsample.
    fingerprint : dict, optional
        The data fingerprint the model was trained on (``meta["fingerprint"]`` from
        :func:`~seqsae_lib.model.checkpoints.load_checkpoint`, or ``split.fingerprint``); stored as
        ``model_fingerprint``.

    Returns
    -------
    ActivationStore

    Raises
    ------
    UnknownCapturePointError
        ``capture_point`` is not a capture point of ``model`` (the message lists the valid ones).
    TypeError, ValueError
        Bad sequences or ``next_items`` (ids out of range, wrong length), bad ``batch_size``,
        ``max_len`` or ``max_vectors``, or non-finite states.

    Examples
    --------
    >>> store = collect_activations(model, split.train, "block_1", next_items=split.valid_targets)
    >>> store.acts.shape, store.to_frame().head()
    """
    check_model(model)
    hp = model.hook_point(capture_point)  # UnknownCapturePointError listing valid names
    num_items = getattr(model, "num_items", None)
    seqs = check_sequences(sequences, num_items=num_items, what="sequences")
    n_users = len(seqs)
    nxt = None if next_items is None else _check_next_items(next_items, n_users, num_items)
    batch_size = check_int("batch_size", batch_size, 1)
    model_max = getattr(model, "max_len", None)
    if max_len is None:
        if model_max is None:
            raise ValueError("max_len is required for a model without a max_len attribute")
        max_len = int(model_max)
    max_len = check_int("max_len", max_len, 1)
    if model_max is not None and max_len > model_max:
        raise ValueError(f"max_len={max_len} exceeds model.max_len={model_max}")
    if fingerprint is not None and not isinstance(fingerprint, dict):
        raise TypeError(f"fingerprint must be a dict or None, got {type(fingerprint).__name__}")
    if max_vectors is not None:
        max_vectors = check_int("max_vectors", max_vectors, 1)

    # ---- count positions, build metadata up front -------------------------------------------------
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    window = np.minimum(lengths, max_len)
    total = int(window.sum())
    user = np.repeat(np.arange(n_users, dtype=np.int64), window)
    starts = np.cumsum(window) - window  # first row of each user
    offset = np.arange(total, dtype=np.int64) - np.repeat(starts, window)  # 0..w-1 within the window
    position = np.repeat(lengths - window, window) + offset
    input_item = np.empty(total, dtype=np.int64)
    next_item = np.zeros(total, dtype=np.int64)
    for u, s in enumerate(seqs):
        w = int(window[u])
        if w == 0:
            continue
        a = int(starts[u])
        input_item[a : a + w] = s[-w:]
        next_item[a : a + w - 1] = s[len(s) - w + 1 :]
        if nxt is not None:
            next_item[a + w - 1] = nxt[u]

    keep_rows: np.ndarray | None = None  # sorted global rows to keep (None = all)
    if max_vectors is not None and total > max_vectors:
        rng = np.random.default_rng(seed)
        keep_rows = np.sort(rng.choice(total, size=int(max_vectors), replace=False))
    n_out = total if keep_rows is None else len(keep_rows)
    users_to_run = np.flatnonzero(window > 0) if keep_rows is None else np.unique(user[keep_rows])

    if device is None:
        param = next(model.parameters(), None)
        dev = param.device if param is not None else torch.device("cpu")
    else:
        dev = torch.device(device)
    d_model = getattr(model, "d_model", None)
    acts: Tensor | None = torch.empty(n_out, int(d_model), dtype=torch.float32) if d_model else None

    def stop(module: nn.Module, inputs: Any, output: Tensor) -> None:
        raise _StopForward

    filled = 0
    chunks = [users_to_run[i : i + batch_size] for i in range(0, len(users_to_run), batch_size)]
    with eval_mode(model), record(model, capture_point) as rec:
        handle = hp.register_forward_hook(stop)  # after record's hook: record first, then stop
        try:
            for chunk in tqdm(chunks, desc=f"collect {capture_point}", disable=not progress, leave=False):
                (ids,) = trim_left_padding(left_pad([seqs[u] for u in chunk], max_len))
                ids = ids.to(dev)
                try:
                    model(ids)
                except _StopForward:
                    pass
                states = rec[capture_point][ids != 0].to("cpu", torch.float32)
                expected = int(window[chunk].sum())
                if states.shape[0] != expected:
                    raise RuntimeError(f"recorded {states.shape[0]} non-padding states for {expected} positions")
                if keep_rows is not None:
                    # rows of this chunk in the full (un-subsampled) table, in order
                    rows = np.concatenate([np.arange(starts[u], starts[u] + window[u]) for u in chunk])
                    states = states[torch.from_numpy(np.isin(rows, keep_rows))]
                if not bool(torch.isfinite(states).all()):
                    raise ValueError(
                        f"non-finite hidden states at {capture_point!r} for users {int(chunk[0])}.."
                        f"{int(chunk[-1])}; check the model's weights"
                    )
                if acts is None:
                    acts = torch.empty(n_out, states.shape[1], dtype=torch.float32)
                acts[filled : filled + states.shape[0]] = states
                filled += states.shape[0]
                rec.clear()
        finally:
            handle.remove()
    if filled != n_out:
        raise RuntimeError(f"filled {filled} rows, expected {n_out}")
    if acts is None:
        acts = torch.empty(0, int(d_model or 0), dtype=torch.float32)

    meta = (user, position, input_item, next_item)
    if keep_rows is not None:
        meta = tuple(m[keep_rows] for m in meta)
    info = {
        "max_len": max_len,
        "d_model": int(acts.shape[1]),
        "num_sequences": n_users,
        "total_positions": total,
        "subsampled": keep_rows is not None,
        "next_items_given": nxt is not None,
    }
    if keep_rows is not None:
        info["subsample_seed"] = int(seed)
    return ActivationStore(
        capture_point=capture_point,
        acts=acts,
        user=meta[0],
        position=meta[1],
        input_item=meta[2],
        next_item=meta[3],
        model_fingerprint=dict(fingerprint) if fingerprint else {},
        info=info,
    )
