"""Small file helpers shared by every save/load in the library: atomic writes, JSON, versions.

Introduced in chapter 2 (``chapters/02_sasrec.ipynb``), where checkpoints are first saved.
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["atomic_write", "json_default", "to_jsonable", "library_version"]


def library_version() -> str:
    """Installed version of the ``seqsae`` distribution, or ``"unknown"`` when run from a bare checkout."""
    try:
        return metadata.version("seqsae")
    except metadata.PackageNotFoundError:
        return "unknown"


def json_default(obj: Any) -> Any:
    """``json.dumps`` fallback for NumPy scalars and arrays, one-element tensors and paths."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable: {obj!r}")


def to_jsonable(obj: Any, what: str) -> Any:
    """Round-trip ``obj`` through JSON, raising ``TypeError`` naming ``what`` if it cannot be stored."""
    try:
        return json.loads(json.dumps(obj, default=json_default, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serialisable: {exc}") from exc


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place.

    A crash or an exception leaves either the old file or the new one, never half of either.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
