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

import os
from pathlib import Path
from typing import Any

import torch

from seqsae_lib.model.sasrec import SASRec, SASRecConfig
from seqsae_lib.utils.fileio import (
    differences, load_meta, load_state, paired_paths, remember_weights_sha256, save_state_with_meta,
)
from seqsae_lib.utils.fileio import to_jsonable as _to_jsonable

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
    return paired_paths(path_stem)










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
        File stem, e.g. ``"seqsae_lib/experiments/pretrained/sasrec_ml100k"``; the parent
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
    CheckpointError
        If a weight tensor holds NaN or inf (the message names it; nothing is written).
    """
    if not isinstance(model, SASRec):
        raise TypeError(f"model must be a SASRec, got {type(model).__name__}")
    if not isinstance(fingerprint, dict):
        raise TypeError(f"fingerprint must be a dict, got {type(fingerprint).__name__}")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_class": "SASRec",
        "model_config": model.config.to_dict(),
        "fingerprint": _to_jsonable(fingerprint, "fingerprint"),
        "metrics": _to_jsonable(metrics, "metrics"),
        "extra": _to_jsonable(extra, "extra"),
    }
    return save_state_with_meta(model.state_dict(), path_stem, meta, error=CheckpointError, what="checkpoint")


def fingerprint_differences(stored: dict, expected: dict) -> list[str]:
    """Describe every key whose value differs between two fingerprints.

    Introduced in chapter 2 (chapters/02_sasrec.ipynb). Nested dicts are
    compared key by key (reported as ``outer.inner``); keys present on only
    one side count as differences.

    Returns
    -------
    list of str
        e.g. ``["num_items: checkpoint has 1349, expected 1682"]``; empty if equal.
    """
    return differences(stored, expected, strict=True, holder="checkpoint")


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
        A file is truncated/corrupt, the pair does not belong together
        (the message names the file), or a weight tensor holds NaN or inf
        (the message names it).
    FingerprintMismatchError
        The data fingerprint differs (the message lists the differing keys).
    """
    meta, pt_path, json_path = load_meta(
        path_stem, fmt=FORMAT, version=FORMAT_VERSION, required=("model_config", "fingerprint"),
        error=CheckpointError, what="checkpoint",
    )
    if expected_fingerprint is not None:
        diffs = fingerprint_differences(meta["fingerprint"], _to_jsonable(expected_fingerprint, "expected_fingerprint"))
        if diffs:
            raise FingerprintMismatchError(
                f"checkpoint {pt_path} was trained on different data: " + "; ".join(diffs)
            )
    state = load_state(pt_path, json_path, meta, error=CheckpointError, what="checkpoint", map_location=map_location)

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
    remember_weights_sha256(model, meta["weights_sha256"])  # what an SAE made for this checkpoint records
    return model, meta
