"""Collecting hidden states of a recommender into an activation store.

Introduced in chapter 3 (chapters/03_sae.ipynb).

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

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from seqsae_lib.data.batching import check_sequences, left_pad, trim_left_padding
from seqsae_lib.utils.fileio import paired_paths, json_default as _json_default, atomic_write as _atomic_write
from seqsae_lib.model.capture import record

__all__ = ["ActivationStore", "collect_activations", "activation_paths", "ActivationFileError"]

FORMAT = "seqsae-activations"
FORMAT_VERSION = 1
_META_ARRAYS = ("user", "position", "input_item", "next_item")


class ActivationFileError(ValueError):
    """A saved activation store is missing, truncated, corrupt or inconsistent.

    Introduced in chapter 3 (chapters/03_sae.ipynb).
    """


def activation_paths(path_stem: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Return ``(<stem>.npz, <stem>.json)``; a trailing ``.npz``/``.json`` on the stem is dropped.

    Introduced in chapter 3 (chapters/03_sae.ipynb).
    """
    return paired_paths(path_stem, ".npz")






@dataclass(frozen=True)
class ActivationStore:
    """Activation vectors at one capture point, one row per (user, position), with aligned metadata.

    Introduced in chapter 3 (chapters/03_sae.ipynb). Built by :func:`collect_activations`; rows are
    ordered by user, then by position (chronologically).

    Raises
    ------
    TypeError, ValueError
        On construction, if ``acts`` is not a finite 2-D float32 CPU tensor or a metadata array does
        not have one int64 entry per row.
    """

    capture_point: str
    """The capture point the states were read at (``"embed"``, ``"block_0"``, ..., ``"final"``)."""
    acts: Tensor
    """``(n, d_model)`` float32 CPU tensor of hidden states."""
    user: np.ndarray
    """``(n,)`` int64 index of the user's sequence in the list given to :func:`collect_activations`
    (the internal user index when that list is ``split.train``)."""
    position: np.ndarray
    """``(n,)`` int64 0-based position in the user's **full** sequence (not in the window)."""
    input_item: np.ndarray
    """``(n,)`` int64 item at that position: the most recent item the model has read."""
    next_item: np.ndarray
    """``(n,)`` int64 item that follows (the training target of the position); 0 if unknown."""
    model_fingerprint: dict = field(default_factory=dict)
    """The data fingerprint the model was trained on, if known, else ``{}``."""
    info: dict = field(default_factory=dict)
    """Provenance: ``max_len``, ``d_model``, ``num_sequences``, ``total_positions``, ``subsampled``..."""

    def __post_init__(self) -> None:
        acts = self.acts
        if not isinstance(acts, Tensor):
            raise TypeError(f"acts must be a torch.Tensor of shape (n, d_model), got {type(acts).__name__}")
        if acts.ndim != 2:
            raise ValueError(f"acts must have shape (n, d_model), got shape {tuple(acts.shape)}")
        if acts.dtype != torch.float32 or acts.device.type != "cpu":
            raise TypeError(f"acts must be a float32 CPU tensor, got {acts.dtype} on {acts.device}")
        if not isinstance(self.capture_point, str):
            raise TypeError(f"capture_point must be a str, got {type(self.capture_point).__name__}")
        n = acts.shape[0]
        for name in _META_ARRAYS:
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype != np.int64:
                desc = f"{arr.dtype} array of shape {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
                raise TypeError(f"{name} must be a 1-D int64 numpy array, got {desc}")
            if len(arr) != n:
                raise ValueError(f"{name} has {len(arr)} entries but acts has {n} rows")
        if not isinstance(self.model_fingerprint, dict) or not isinstance(self.info, dict):
            raise TypeError("model_fingerprint and info must be dicts")

    # ---- basic access -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.acts.shape[0])

    @property
    def d_model(self) -> int:
        """Width of the stored vectors. Introduced in chapter 3 (chapters/03_sae.ipynb)."""
        return int(self.acts.shape[1])

    @property
    def is_last(self) -> np.ndarray:
        """``(n,)`` bool: the row is its user's last stored position (the state used to recommend).

        Introduced in chapter 3 (chapters/03_sae.ipynb).
        """
        out = np.ones(len(self), dtype=bool)
        if len(self) > 1:
            out[:-1] = self.user[1:] != self.user[:-1]
        return out

    def __repr__(self) -> str:
        return (
            f"ActivationStore(capture_point={self.capture_point!r}, n={len(self)}, d_model={self.d_model}, "
            f"users={len(np.unique(self.user))})"
        )

    def to_frame(self) -> pd.DataFrame:
        """The metadata as a table (no activations), one row per stored vector, in row order.

        Introduced in chapter 3 (chapters/03_sae.ipynb).

        Returns
        -------
        pandas.DataFrame
            Columns ``user``, ``position``, ``input_item``, ``next_item`` and ``is_last``; the index
            (``row``) is the row of :attr:`acts`.
        """
        frame = pd.DataFrame(
            {
                "user": self.user,
                "position": self.position,
                "input_item": self.input_item,
                "next_item": self.next_item,
                "is_last": self.is_last,
            }
        )
        frame.index.name = "row"
        return frame

    def subset(self, mask_or_index: Any) -> ActivationStore:
        """A new store with the selected rows (metadata kept aligned).

        Introduced in chapter 3 (chapters/03_sae.ipynb).

        Parameters
        ----------
        mask_or_index : array-like of bool (length n), array-like of int, or slice
            e.g. ``store.subset(store.to_frame().eval("next_item > 0"))`` or ``store.subset(rows)``.

        Raises
        ------
        ValueError, IndexError
            A boolean mask of the wrong length, or indices out of range.
        """
        if isinstance(mask_or_index, slice):
            idx = np.arange(len(self))[mask_or_index]
        else:
            sel = mask_or_index
            if isinstance(sel, Tensor):
                sel = sel.detach().cpu().numpy()
            elif isinstance(sel, (pd.Series, pd.Index)):
                sel = sel.to_numpy()
            sel = np.asarray(sel)
            if sel.dtype == bool:
                if sel.shape != (len(self),):
                    raise ValueError(f"boolean mask must have shape ({len(self)},), got {sel.shape}")
                idx = np.flatnonzero(sel)
            elif sel.size == 0:
                idx = np.zeros(0, dtype=np.int64)
            elif np.issubdtype(sel.dtype, np.integer) and sel.ndim <= 1:
                idx = np.atleast_1d(sel).astype(np.int64)
                if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
                    raise IndexError(f"row index out of range for a store of {len(self)} rows")
                idx = np.where(idx < 0, idx + len(self), idx)
            else:
                raise TypeError(
                    f"mask_or_index must be a boolean mask, integer indices or a slice, got dtype {sel.dtype}"
                )
        t_idx = torch.from_numpy(idx)
        return replace(
            self,
            acts=self.acts.index_select(0, t_idx),
            user=self.user[idx],
            position=self.position[idx],
            input_item=self.input_item[idx],
            next_item=self.next_item[idx],
            info={**self.info, "subset_of": len(self)},
        )

    def mean(self) -> Tensor:
        """``(d_model,)`` mean activation (accumulated in float64), e.g. for mean ablation.

        Introduced in chapter 3 (chapters/03_sae.ipynb).

        Raises
        ------
        ValueError
            If the store is empty.
        """
        if len(self) == 0:
            raise ValueError("cannot take the mean of an empty activation store")
        return self.acts.double().mean(dim=0).float()

    # ---- persistence ----------------------------------------------------------------------------------

    def save(self, path_stem: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``<stem>.npz`` (arrays) and ``<stem>.json`` (capture point, fingerprint, info) atomically.

        Introduced in chapter 3 (chapters/03_sae.ipynb). The JSON records the SHA-256 of the ``.npz``,
        so :meth:`load` detects a truncated or mismatched pair. Parent folders are created.

        Returns
        -------
        (Path, Path)
            The ``.npz`` and ``.json`` paths.
        """
        npz_path, json_path = activation_paths(path_stem)
        buf = io.BytesIO()
        np.savez(buf, acts=self.acts.numpy(), **{k: getattr(self, k) for k in _META_ARRAYS})
        data = buf.getvalue()
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "capture_point": self.capture_point,
            "n": len(self),
            "d_model": self.d_model,
            "model_fingerprint": self.model_fingerprint,
            "info": self.info,
            "arrays_file": npz_path.name,
            "arrays_sha256": hashlib.sha256(data).hexdigest(),
        }
        try:
            text = json.dumps(meta, indent=2, default=_json_default, allow_nan=True) + "\n"
        except TypeError as exc:
            raise TypeError(f"model_fingerprint and info must be JSON-serialisable: {exc}") from exc
        npz_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(npz_path, data)
        _atomic_write(json_path, text.encode("utf-8"))
        return npz_path, json_path

    @classmethod
    def load(cls, path_stem: str | os.PathLike[str], *, capture_point: str | None = None) -> ActivationStore:
        """Read a store written by :meth:`save`.

        Introduced in chapter 3 (chapters/03_sae.ipynb).

        Parameters
        ----------
        path_stem : str or path
        capture_point : str, optional
            If given, the saved store must be from this capture point.

        Raises
        ------
        ActivationFileError
            Missing files, a checksum mismatch, an unknown format or another capture point, or an arrays
            file that is not a readable archive of the expected arrays (the message names the file).
        """
        npz_path, json_path = activation_paths(path_stem)
        for p in (npz_path, json_path):
            if not p.is_file():
                raise ActivationFileError(f"activation store file {p} does not exist")
        try:
            meta = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ActivationFileError(f"{json_path} is not valid JSON: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ActivationFileError(f"{json_path} is not a seqsae activation store (format {FORMAT!r})")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ActivationFileError(
                f"{json_path} has format_version {meta.get('format_version')!r}; this library reads {FORMAT_VERSION}"
            )
        if capture_point is not None and meta.get("capture_point") != capture_point:
            raise ActivationFileError(
                f"{json_path} holds activations at {meta.get('capture_point')!r}, expected {capture_point!r}"
            )
        data = npz_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta.get("arrays_sha256"):
            raise ActivationFileError(
                f"{npz_path} does not match the checksum recorded in {json_path} (truncated or replaced file)"
            )
        names = ("acts", *_META_ARRAYS)
        try:  # np.load raises ValueError (object or pickled arrays), BadZipFile, OSError, EOFError...
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                files = getattr(z, "files", None)
                missing = [k for k in names if files is None or k not in files]
                if missing:
                    raise ActivationFileError(
                        f"{npz_path} lacks the array(s) {missing}; a seqsae activation store holds {list(names)}"
                    )
                arrays = {k: z[k] for k in names}
        except ActivationFileError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ActivationFileError(
                f"{npz_path} is not a readable activation store archive ({type(exc).__name__}: {exc}); "
                "re-create it with collect_activations(...).save()"
            ) from exc
        try:
            return cls(
                capture_point=meta["capture_point"],
                acts=torch.from_numpy(np.ascontiguousarray(arrays["acts"], dtype=np.float32)),
                model_fingerprint=dict(meta.get("model_fingerprint") or {}),
                info=dict(meta.get("info") or {}),
                **{k: arrays[k].astype(np.int64, copy=False) for k in _META_ARRAYS},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ActivationFileError(f"{npz_path} and {json_path} do not form an activation store: {exc}") from exc


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

    Introduced in chapter 3 (chapters/03_sae.ipynb). See the module docstring for what a row means.

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
    if not callable(getattr(model, "hook_point", None)):
        raise TypeError(f"model must expose capture points (e.g. a SASRec), got {type(model).__name__}")
    hp = model.hook_point(capture_point)  # UnknownCapturePointError listing valid names
    num_items = getattr(model, "num_items", None)
    seqs = check_sequences(sequences, num_items=num_items, what="sequences")
    n_users = len(seqs)
    nxt = None if next_items is None else _check_next_items(next_items, n_users, num_items)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    model_max = getattr(model, "max_len", None)
    if max_len is None:
        if model_max is None:
            raise ValueError("max_len is required for a model without a max_len attribute")
        max_len = int(model_max)
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise ValueError(f"max_len must be an int >= 1, got {max_len!r}")
    if model_max is not None and max_len > model_max:
        raise ValueError(f"max_len={max_len} exceeds model.max_len={model_max}")
    if fingerprint is not None and not isinstance(fingerprint, dict):
        raise TypeError(f"fingerprint must be a dict or None, got {type(fingerprint).__name__}")
    if max_vectors is not None and (
        isinstance(max_vectors, bool) or not isinstance(max_vectors, (int, np.integer)) or max_vectors < 1
    ):
        raise ValueError(f"max_vectors must be None or an int >= 1, got {max_vectors!r}")
    max_len = int(max_len)

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

    was_training = model.training
    model.eval()
    filled = 0
    chunks = [users_to_run[i : i + batch_size] for i in range(0, len(users_to_run), batch_size)]
    try:
        with record(model, capture_point) as rec:
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
    finally:
        if was_training:
            model.train()
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
