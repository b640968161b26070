"""Saving and loading SASRec checkpoints with their provenance.

Introduced in chapter 2 (chapters/02_sasrec.ipynb).

A checkpoint is two files side by side:

* ``<stem>.pt``: the model's ``state_dict`` (loaded with ``weights_only=True``);
* ``<stem>.json``: model config, data fingerprint, metrics, library and torch
  versions, and the SHA-256 of the ``.pt`` file (so a truncated, replaced or
  mismatched weights file is detected).

Both are written atomically: to a temporary file in the same directory, then
``os.replace``; an error never leaves a half-written file behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from seqsae_lib.sasrec import SASRec, SASRecConfig
from seqsae_lib.fileio import library_version as _library_version, to_jsonable as _to_jsonable, atomic_write as _atomic_write

__all__ = [
    "CheckpointError",
    "FingerprintMismatchError",
    "checkpoint_paths",
    "save_checkpoint",
    "load_checkpoint",
    "fingerprint_differences",
]

FORMAT = "seqsae-sasrec-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, truncated, inconsistent or incompatible.

    Introduced in chapter 2 (chapters/02_sasrec.ipynb).
    """


class FingerprintMismatchError(CheckpointError):
    """The checkpoint was trained on different data than expected.

    Introduced in chapter 2 (chapters/02_sasrec.ipynb).
    """


def checkpoint_paths(path_stem: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Return ``(<stem>.pt, <stem>.json)``; a trailing ``.pt``/``.json`` on the stem is dropped.

    Introduced in chapter 2 (chapters/02_sasrec.ipynb).
    """
    stem = str(os.fspath(path_stem))
    for suffix in (".pt", ".json"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    if not stem or stem.endswith(("/", os.sep)):
        raise ValueError(f"path_stem must name a file stem like 'models/sasrec', got {path_stem!r}")
    return Path(stem + ".pt"), Path(stem + ".json")










def save_checkpoint(
    model: SASRec,
    path_stem: str | os.PathLike[str],
    *,
    fingerprint: dict,
    metrics: dict | None = None,
    extra: dict | None = None,
) -> tuple[Path, Path]:
    """Write ``<stem>.pt`` (weights) and ``<stem>.json`` (metadata) atomically.

    Introduced in chapter 2 (chapters/02_sasrec.ipynb).

    Parameters
    ----------
    model : SASRec
    path_stem : str or path
        File stem, e.g. ``"seqsae_lib/pretrained/sasrec_ml100k"``; the parent
        directory is created if needed.
    fingerprint : dict
        JSON-able description of the training data (the split's
        ``fingerprint``); checked again by :func:`load_checkpoint`.
    metrics : dict, optional
        e.g. test metrics, stored for reference.
    extra : dict, optional
        Anything else JSON-able (training config, history summary, ...).

    Returns
    -------
    (Path, Path)
        The ``.pt`` and ``.json`` paths.

    Raises
    ------
    TypeError
        If ``model`` is not a SASRec or the metadata is not JSON-serialisable
        (nothing is written in that case).
    """
    if not isinstance(model, SASRec):
        raise TypeError(f"model must be a SASRec, got {type(model).__name__}")
    if not isinstance(fingerprint, dict):
        raise TypeError(f"fingerprint must be a dict, got {type(fingerprint).__name__}")
    pt_path, json_path = checkpoint_paths(path_stem)

    buf = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, buf)
    weights = buf.getvalue()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_class": "SASRec",
        "model_config": model.config.to_dict(),
        "fingerprint": _to_jsonable(fingerprint, "fingerprint"),
        "metrics": _to_jsonable(metrics, "metrics"),
        "extra": _to_jsonable(extra, "extra"),
        "seqsae_version": _library_version(),
        "torch_version": torch.__version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "weights_file": pt_path.name,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    text = json.dumps(meta, indent=2, sort_keys=False, allow_nan=True) + "\n"

    pt_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(pt_path, weights)
    _atomic_write(json_path, text.encode("utf-8"))
    return pt_path, json_path


def fingerprint_differences(stored: dict, expected: dict, _prefix: str = "") -> list[str]:
    """Describe every key whose value differs between two fingerprints.

    Introduced in chapter 2 (chapters/02_sasrec.ipynb). Nested dicts are
    compared key by key (reported as ``outer.inner``); keys present on only
    one side count as differences.

    Returns
    -------
    list of str
        e.g. ``["num_items: checkpoint has 1349, expected 1682"]``; empty if equal.
    """
    diffs: list[str] = []
    for key in sorted(set(stored) | set(expected), key=str):
        name = f"{_prefix}{key}"
        if key not in stored:
            diffs.append(f"{name}: missing from checkpoint, expected {expected[key]!r}")
        elif key not in expected:
            diffs.append(f"{name}: checkpoint has {stored[key]!r}, missing from expected fingerprint")
        elif isinstance(stored[key], dict) and isinstance(expected[key], dict):
            diffs.extend(fingerprint_differences(stored[key], expected[key], f"{name}."))
        elif stored[key] != expected[key]:
            diffs.append(f"{name}: checkpoint has {stored[key]!r}, expected {expected[key]!r}")
    return diffs


def load_checkpoint(
    path_stem: str | os.PathLike[str],
    *,
    expected_fingerprint: dict | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[SASRec, dict[str, Any]]:
    """Rebuild a :class:`SASRec` from ``<stem>.pt`` + ``<stem>.json``.

    Introduced in chapter 2 (chapters/02_sasrec.ipynb).

    Parameters
    ----------
    path_stem : str or path
        The stem passed to :func:`save_checkpoint`.
    expected_fingerprint : dict, optional
        If given, must equal the stored data fingerprint (after a JSON round
        trip, so tuples and lists compare equal).
    map_location : str or torch.device, default "cpu"

    Returns
    -------
    (SASRec, dict)
        The model in eval mode, and the parsed metadata.

    Raises
    ------
    FileNotFoundError
        A file is missing (the message names it).
    CheckpointError
        A file is truncated/corrupt or the pair does not belong together
        (the message names the file).
    FingerprintMismatchError
        The data fingerprint differs (the message lists the differing keys).
    """
    pt_path, json_path = checkpoint_paths(path_stem)
    missing = [str(p) for p in (pt_path, json_path) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint file(s) not found: {', '.join(missing)}")

    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint metadata {json_path} is corrupt or truncated: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{json_path} is not a seqsae SASRec checkpoint (no format={FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{json_path} has format_version {meta.get('format_version')!r}; this library reads {FORMAT_VERSION}"
        )
    for key in ("model_config", "fingerprint", "weights_sha256"):
        if key not in meta:
            raise CheckpointError(f"checkpoint metadata {json_path} lacks the {key!r} entry")

    if expected_fingerprint is not None:
        diffs = fingerprint_differences(meta["fingerprint"], _to_jsonable(expected_fingerprint, "expected_fingerprint"))
        if diffs:
            raise FingerprintMismatchError(
                f"checkpoint {pt_path} was trained on different data: " + "; ".join(diffs)
            )

    weights = pt_path.read_bytes()
    if hashlib.sha256(weights).hexdigest() != meta["weights_sha256"]:
        raise CheckpointError(
            f"checkpoint weights {pt_path} do not match the SHA-256 recorded in {json_path}: "
            "the file is truncated, corrupt, or from a different save"
        )
    try:
        state = torch.load(io.BytesIO(weights), map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt archives
        raise CheckpointError(f"checkpoint weights {pt_path} could not be read: {exc}") from exc

    try:
        config = SASRecConfig.from_dict(meta["model_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid model_config in {json_path}: {exc}") from exc
    model = SASRec.from_config(config)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"weights in {pt_path} do not fit the config in {json_path}: {exc}") from exc
    model.to(map_location)
    model.eval()
    return model, meta
