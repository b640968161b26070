"""Saving and loading SASRec checkpoints with their provenance.

Introduced in chapter 2.

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
    SavedFileError, check_expected, differences, load_module, paired_paths, save_module, to_jsonable,
)

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


class CheckpointError(SavedFileError):
    """A checkpoint file is corrupt, truncated, inconsistent or incompatible.

    Introduced in chapter 2.
    """


class FingerprintMismatchError(CheckpointError):
    """The checkpoint was trained on different data than expected.

    Introduced in chapter 2.
    """


def checkpoint_paths(path_stem: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Return ``(<stem>.pt, <stem>.json)``; a trailing ``.pt``/``.json`` on the stem is dropped.

    Introduced in chapter 2.
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

    Introduced in chapter 2.

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
        "model_class": "SASRec",
        "model_config": model.config.to_dict(),
        "fingerprint": to_jsonable(fingerprint, "fingerprint"),
        "metrics": to_jsonable(metrics, "metrics"),
        "extra": to_jsonable(extra, "extra"),
    }
    return save_module(model, path_stem, meta, fmt=FORMAT, version=FORMAT_VERSION, error=CheckpointError,
                       what="checkpoint")


def fingerprint_differences(stored: dict, expected: dict) -> list[str]:
    """Describe every key whose value differs between two fingerprints.

    Introduced in chapter 2. Nested dicts are
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

    Introduced in chapter 2.

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

    def check(meta: dict, pt_path: Path, json_path: Path) -> None:
        if expected_fingerprint is not None:
            check_expected(meta["fingerprint"], expected_fingerprint, name="expected_fingerprint", holder="checkpoint",
                           error=FingerprintMismatchError, message=f"checkpoint {pt_path} was trained on different data")

    model, meta = load_module(
        path_stem, lambda meta: SASRec.from_config(SASRecConfig.from_dict(meta["model_config"])), fmt=FORMAT,
        version=FORMAT_VERSION, required=("model_config", "fingerprint"), config_key="model_config",
        error=CheckpointError, what="checkpoint", check=check, map_location=map_location,
    )
    return model, meta  # type: ignore[return-value]
