"""The activation store: hidden states at one capture point, one row per (user, position), with metadata.

Introduced in chapter 3.

:class:`ActivationStore` holds the vectors an SAE trains on with what is needed to interpret a row later:
whose sequence it came from, where in the sequence, which item the model had just read and which came
next. :func:`seqsae_lib.sae.activations.collect_activations` builds it from a model; here it is selected
(:meth:`ActivationStore.subset`), summarised and saved as a ``.npz`` + ``.json`` pair.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from seqsae_lib.utils.fileio import atomic_write, json_default, paired_paths

__all__ = ["ActivationStore", "ActivationFileError", "activation_paths", "META_ARRAYS"]

FORMAT = "seqsae-activations"
FORMAT_VERSION = 1
META_ARRAYS = ("user", "position", "input_item", "next_item")
"""The per-row metadata arrays of an :class:`ActivationStore`, beside ``acts``."""


class ActivationFileError(ValueError):
    """A saved activation store is missing, truncated, corrupt or inconsistent.

    Introduced in chapter 3.
    """


def activation_paths(path_stem: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Return ``(<stem>.npz, <stem>.json)``; a trailing ``.npz``/``.json`` on the stem is dropped.

    Introduced in chapter 3.
    """
    return paired_paths(path_stem, ".npz")


@dataclass(frozen=True)
class ActivationStore:
    """Activation vectors at one capture point, one row per (user, position), with aligned metadata.

    Introduced in chapter 3. Built by :func:`collect_activations`; rows are
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
        for name in META_ARRAYS:
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
        """Width of the stored vectors. Introduced in chapter 3."""
        return int(self.acts.shape[1])

    @property
    def is_last(self) -> np.ndarray:
        """``(n,)`` bool: the row is its user's last stored position (the state used to recommend).

        Introduced in chapter 3.
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

        Introduced in chapter 3.

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

        Introduced in chapter 3.

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

        Introduced in chapter 3.

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

        Introduced in chapter 3. The JSON records the SHA-256 of the ``.npz``,
        so :meth:`load` detects a truncated or mismatched pair. Parent folders are created.

        Returns
        -------
        (Path, Path)
            The ``.npz`` and ``.json`` paths.
        """
        npz_path, json_path = activation_paths(path_stem)
        buf = io.BytesIO()
        np.savez(buf, acts=self.acts.numpy(), **{k: getattr(self, k) for k in META_ARRAYS})
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
            text = json.dumps(meta, indent=2, default=json_default, allow_nan=True) + "\n"
        except TypeError as exc:
            raise TypeError(f"model_fingerprint and info must be JSON-serialisable: {exc}") from exc
        npz_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(npz_path, data)
        atomic_write(json_path, text.encode("utf-8"))
        return npz_path, json_path

    @classmethod
    def load(cls, path_stem: str | os.PathLike[str], *, capture_point: str | None = None) -> ActivationStore:
        """Read a store written by :meth:`save`.

        Introduced in chapter 3.

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
        names = ("acts", *META_ARRAYS)
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
                **{k: arrays[k].astype(np.int64, copy=False) for k in META_ARRAYS},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ActivationFileError(f"{npz_path} and {json_path} do not form an activation store: {exc}") from exc
