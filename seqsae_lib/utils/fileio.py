"""Small file helpers shared by every save/load in the library: atomic writes, JSON, versions.

Introduced in chapter 2, where checkpoints are first saved.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import weakref
from importlib import metadata
from collections.abc import Callable
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "SavedFileError", "atomic_write", "json_default", "to_jsonable", "library_version", "paired_paths", "differences",
    "save_state_with_meta", "load_meta", "load_state", "non_finite_tensors", "state_bytes", "module_weights_sha256",
    "remember_weights_sha256", "check_expected", "save_module", "load_module",
]


class SavedFileError(ValueError):
    """A saved weights + JSON pair is missing pieces, truncated, corrupt, inconsistent or incompatible.

    Introduced in chapter 2. The one base of :class:`~seqsae_lib.model.checkpoints.CheckpointError` and
    :class:`~seqsae_lib.sae.io.SAEFileError`: ``except SavedFileError`` catches a bad file of either kind.
    """


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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
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


def paired_paths(path_stem: "str | os.PathLike[str]", data_suffix: str = ".pt") -> tuple[Path, Path]:
    """``(<stem><data_suffix>, <stem>.json)``; a trailing data suffix or ``.json`` on the stem is dropped."""
    stem = str(os.fspath(path_stem))
    for suffix in (data_suffix, ".json"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    if not stem or stem.endswith(("/", os.sep)):
        raise ValueError(f"path_stem must name a file stem like 'models/sasrec', got {path_stem!r}")
    return Path(stem + data_suffix), Path(stem + ".json")


def differences(stored: dict, expected: dict, *, strict: bool = True, holder: str = "file", _prefix: str = "") -> list[str]:
    """Describe every key whose value differs between ``stored`` and ``expected`` (nested dicts key by key).

    With ``strict``, keys present only in ``stored`` count as differences too. Messages read like
    ``"num_items: file has 1349, expected 1682"`` (``holder`` names the stored side).
    """
    diffs: list[str] = []
    keys = set(stored) | set(expected) if strict else set(expected)
    for key in sorted(keys, key=str):
        name = f"{_prefix}{key}"
        if key not in stored:
            diffs.append(f"{name}: missing from the {holder}, expected {expected[key]!r}")
        elif key not in expected:
            diffs.append(f"{name}: {holder} has {stored[key]!r}, missing from what was expected")
        elif isinstance(stored[key], dict) and isinstance(expected[key], dict):
            diffs.extend(differences(stored[key], expected[key], strict=strict, holder=holder, _prefix=f"{name}."))
        elif stored[key] != expected[key]:
            diffs.append(f"{name}: {holder} has {stored[key]!r}, expected {expected[key]!r}")
    return diffs


def non_finite_tensors(state: dict) -> list[str]:
    """Describe every floating-point tensor of ``state`` holding NaN or inf, e.g. ``"'b_dec' (2 NaN, 0 inf of 64)"``."""
    out = []
    for name, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            finite = torch.isfinite(value)
            if not bool(finite.all()):
                n_nan = int(torch.isnan(value).sum())
                n_inf = int((~finite).sum()) - n_nan
                out.append(f"{name!r} ({n_nan} NaN, {n_inf} inf of {value.numel()})")
    return out


def state_bytes(state: dict) -> bytes:
    """The bytes of a weights file: ``torch.save`` of CPU copies of ``state`` (what :func:`save_state_with_meta` writes).

    Their SHA-256 is the ``weights_sha256`` recorded beside the file, and the SASRec hash an SAE records
    (:func:`module_weights_sha256` computes it for a model in memory).
    """
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().clone() for k, v in state.items()}, buf)
    return buf.getvalue()


_WEIGHTS_SHA256: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, str]]" = weakref.WeakKeyDictionary()
"""Per module: (the identity and version of each of its tensors, the weights hash computed or loaded for them)."""


def _weights_key(module: torch.nn.Module) -> tuple:
    # A tensor's version counter moves with every in-place change (optimiser steps, load_state_dict, no_grad
    # edits); a replaced tensor has another id. (Writes through ``tensor.data`` escape it.)
    return tuple((id(t), t.data_ptr(), t._version) for t in chain(module.parameters(), module.buffers()))


def module_weights_sha256(module: torch.nn.Module) -> str:
    """SHA-256 of the weights file :func:`save_state_with_meta` would write for ``module``, cached per object.

    Computed once per module and recomputed only after its weights change. A module loaded from a file
    (:func:`~seqsae_lib.model.checkpoints.load_checkpoint`) keeps the hash recorded for that file while its weights are
    untouched, so the answer does not depend on the torch version that wrote the file.
    """
    key = _weights_key(module)
    cached = _WEIGHTS_SHA256.get(module)
    if cached is not None and cached[0] == key:
        return cached[1]
    sha = hashlib.sha256(state_bytes(module.state_dict())).hexdigest()
    _WEIGHTS_SHA256[module] = (key, sha)
    return sha


def remember_weights_sha256(module: torch.nn.Module, sha256: str) -> None:
    """Record that ``module``'s current weights are those of a file whose recorded hash is ``sha256``."""
    _WEIGHTS_SHA256[module] = (_weights_key(module), str(sha256))


def save_state_with_meta(
    state: dict, path_stem: "str | os.PathLike[str]", meta: dict, *, error: type[Exception] = ValueError,
    what: str = "weights",
) -> tuple[Path, Path]:
    """Write a state dict to ``<stem>.pt`` and ``meta`` (plus versions and the weights' sha256) to ``<stem>.json``.

    Both files are written atomically; the JSON records the weights' SHA-256 so that
    :func:`load_state` detects a truncated or mismatched pair. Weights holding NaN or inf are
    refused with ``error`` naming the tensors, before anything is written.
    """
    from datetime import datetime, timezone

    pt_path, json_path = paired_paths(path_stem)
    bad = non_finite_tensors(state)
    if bad:
        raise error(
            f"refusing to save the {what} to {pt_path}: non-finite weights in tensor(s) {', '.join(bad)} "
            "(did training diverge?); nothing was written"
        )
    weights = state_bytes(state)
    full = {
        **meta,
        "seqsae_version": library_version(),
        "torch_version": torch.__version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "weights_file": pt_path.name,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    text = json.dumps(full, indent=2, allow_nan=True) + "\n"
    pt_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(pt_path, weights)
    atomic_write(json_path, text.encode("utf-8"))
    return pt_path, json_path


def load_meta(
    path_stem: "str | os.PathLike[str]", *, fmt: str, version: int, required: tuple[str, ...],
    error: type[Exception], what: str,
) -> tuple[dict, Path, Path]:
    """Read and check ``<stem>.json``: both files exist, the JSON parses, has format ``fmt``/``version`` and keys.

    Raises ``FileNotFoundError`` naming missing files and ``error`` (naming the file) for anything else.
    """
    pt_path, json_path = paired_paths(path_stem)
    missing = [str(p) for p in (pt_path, json_path) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{what} file(s) not found: {', '.join(missing)}")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} metadata {json_path} is corrupt or truncated: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise error(f"{json_path} is not a seqsae {what} file (no format={fmt!r})")
    if meta.get("format_version") != version:
        raise error(f"{json_path} has format_version {meta.get('format_version')!r}; this library reads {version}")
    for key in (*required, "weights_sha256"):
        if key not in meta:
            raise error(f"{what} metadata {json_path} lacks the {key!r} entry")
    return meta, pt_path, json_path


def load_state(pt_path: Path, json_path: Path, meta: dict, *, error: type[Exception], what: str,
               map_location: "str | torch.device" = "cpu") -> dict:
    """Read the weights of a pair checked by :func:`load_meta`, verifying the recorded SHA-256 and that they are finite."""

    weights = pt_path.read_bytes()
    if hashlib.sha256(weights).hexdigest() != meta["weights_sha256"]:
        raise error(
            f"{what} weights {pt_path} do not match the SHA-256 recorded in {json_path}: "
            "the file is truncated, corrupt, or from a different save"
        )
    try:
        state = torch.load(io.BytesIO(weights), map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several exception types for corrupt archives
        raise error(f"{what} weights {pt_path} could not be read: {exc}") from exc
    bad = non_finite_tensors(state) if isinstance(state, dict) else []
    if bad:
        raise error(f"{what} weights {pt_path} hold non-finite values in tensor(s) {', '.join(bad)}; refusing to load them")
    return state


def check_expected(
    stored: dict, expected: Any, *, name: str, error: type[Exception], message: str, strict: bool = True,
    holder: str = "file",
) -> None:
    """Raise ``error("<message>: <differences>")`` if ``stored`` differs from ``expected`` (see :func:`differences`).

    ``expected`` goes through a JSON round trip first (so tuples and lists compare equal); ``name`` names
    it in the ``TypeError`` raised when it cannot be stored as JSON.
    """
    diffs = differences(stored, to_jsonable(expected, name), strict=strict, holder=holder)
    if diffs:
        raise error(f"{message}: " + "; ".join(diffs))


def save_module(
    module: torch.nn.Module, path_stem: "str | os.PathLike[str]", meta: dict, *, fmt: str, version: int,
    error: type[Exception], what: str,
) -> tuple[Path, Path]:
    """Save a module's ``state_dict`` with ``meta`` under format ``fmt``/``version`` (:func:`save_state_with_meta`).

    The one writer behind :func:`~seqsae_lib.model.checkpoints.save_checkpoint` and :meth:`seqsae_lib.SparseAutoencoder.save`.
    """
    full = {"format": fmt, "format_version": version, **meta}
    return save_state_with_meta(module.state_dict(), path_stem, full, error=error, what=what)


def load_module(
    path_stem: "str | os.PathLike[str]", build: "Callable[[dict], torch.nn.Module]", *, fmt: str, version: int,
    required: tuple[str, ...], config_key: str, error: type[Exception], what: str,
    check: "Callable[[dict, Path, Path], None] | None" = None, map_location: "str | torch.device" = "cpu",
) -> tuple[torch.nn.Module, dict]:
    """Rebuild a module saved by :func:`save_module`: the one loader behind checkpoints and SAEs.

    Steps: :func:`load_meta` (both files, format, version, ``required`` keys); ``check(meta, pt_path,
    json_path)`` (e.g. an expected fingerprint) before the weights are read; :func:`load_state` (SHA-256,
    finite weights); ``build(meta)`` (a fresh module from the stored config; a ``TypeError`` or
    ``ValueError`` becomes ``error`` naming ``config_key``); ``load_state_dict``; move to ``map_location``;
    eval mode. The module keeps the file's weights hash (:func:`remember_weights_sha256`).

    Returns
    -------
    (module, dict)
        The module in eval mode and the parsed metadata.
    """
    meta, pt_path, json_path = load_meta(path_stem, fmt=fmt, version=version, required=required, error=error, what=what)
    if check is not None:
        check(meta, pt_path, json_path)
    state = load_state(pt_path, json_path, meta, error=error, what=what, map_location=map_location)
    try:
        module = build(meta)
    except (TypeError, ValueError) as exc:
        raise error(f"invalid {what} {config_key} in {json_path}: {exc}") from exc
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise error(f"weights in {pt_path} do not fit the config in {json_path}: {exc}") from exc
    module.to(map_location)
    module.eval()
    remember_weights_sha256(module, meta["weights_sha256"])
    return module, meta
