"""Saving and loading SAEs, and checking that a saved SAE belongs to the model at hand.

Introduced in chapter 3.

An SAE is two files side by side, written and read by the same helpers as SASRec checkpoints
(:func:`seqsae_lib.utils.fileio.save_module` / :func:`~seqsae_lib.utils.fileio.load_module`):

* ``<stem>.pt``: weights and buffers (``state_dict``, loaded with ``weights_only=True``);
* ``<stem>.json``: the :class:`~seqsae_lib.sae.config.SAEConfig`, the caller's metadata (provenance), library
  and torch versions and the SHA-256 of the ``.pt`` file.

:meth:`SparseAutoencoder.save <seqsae_lib.sae.autoencoder.SparseAutoencoder.save>` and
:meth:`SparseAutoencoder.load <seqsae_lib.sae.autoencoder.SparseAutoencoder.load>` call :func:`save_sae` and
:func:`load_sae`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from seqsae_lib.sae.config import SAEConfig
from seqsae_lib.utils.fileio import (
    SavedFileError, check_expected, load_module, module_weights_sha256, paired_paths, save_module, to_jsonable,
)

if TYPE_CHECKING:
    from seqsae_lib.sae.autoencoder import SparseAutoencoder

__all__ = [
    "FORMAT", "FORMAT_VERSION", "SAEFileError", "SAEMetadataMismatchError", "save_sae", "load_sae", "sae_paths",
    "check_sae_matches_model",
]

FORMAT = "seqsae-sae"
FORMAT_VERSION = 1


class SAEFileError(SavedFileError):
    """A saved SAE is missing, truncated, corrupt or inconsistent.

    Introduced in chapter 3.
    """


class SAEMetadataMismatchError(SAEFileError):
    """A saved SAE's metadata differs from what the caller expected (e.g. another capture point).

    Introduced in chapter 3.
    """


def sae_paths(path_stem: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Return ``(<stem>.pt, <stem>.json)``; a trailing ``.pt``/``.json`` on the stem is dropped.

    Introduced in chapter 3.
    """
    return paired_paths(path_stem)


def save_sae(
    sae: SparseAutoencoder, path_stem: str | os.PathLike[str], extra_meta: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``<stem>.pt`` (weights and buffers) and ``<stem>.json`` (config + metadata) atomically.

    Introduced in chapter 3.

    Each file is written to a temporary file in the same directory and moved into place with
    ``os.replace``; the JSON records the SHA-256 of the weights, so a truncated or mismatched pair is
    detected by :func:`load_sae`. Afterwards ``sae.metadata`` holds the JSON written.

    Parameters
    ----------
    sae : SparseAutoencoder
    path_stem : str or path
        e.g. ``"models/sae_final"``; a trailing ``.pt``/``.json`` is dropped; parents are created.
    extra_meta : dict, optional
        JSON-able provenance, checked again by :func:`load_sae`'s ``expected``: e.g. the recommender's
        fingerprint, the capture point (``"final"``, ``"block_0"``), training settings, metrics.
        The key ``"config"`` is reserved.

    Returns
    -------
    (Path, Path)
        The ``.pt`` and ``.json`` paths.

    Raises
    ------
    TypeError
        ``extra_meta`` is not a JSON-able dict (nothing is written).
    ValueError
        ``extra_meta`` uses the reserved key ``"config"``.
    SAEFileError
        A weight tensor holds NaN or inf (the message names it; nothing is written).
    """
    if extra_meta is None:
        extra_meta = {}
    if not isinstance(extra_meta, dict):
        raise TypeError(f"extra_meta must be a dict, got {type(extra_meta).__name__}")
    if "config" in extra_meta:
        raise ValueError("extra_meta may not use the reserved key 'config' (the SAE config is stored there)")
    meta = {"config": sae.config.to_dict(), "metadata": to_jsonable(extra_meta, "extra_meta")}
    pt_path, json_path = save_module(sae, path_stem, meta, fmt=FORMAT, version=FORMAT_VERSION,
                                     error=SAEFileError, what="SAE")
    sae.metadata = json.loads(json_path.read_text(encoding="utf-8"))
    return pt_path, json_path


def load_sae(
    cls: type[SparseAutoencoder],
    path_stem: str | os.PathLike[str],
    expected: dict[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
) -> SparseAutoencoder:
    """Rebuild an SAE (of class ``cls``) written by :func:`save_sae`, checking it is the one expected.

    Introduced in chapter 3.

    Parameters
    ----------
    cls : type
        :class:`~seqsae_lib.sae.autoencoder.SparseAutoencoder` (or a subclass).
    path_stem : str or path
        The stem given to :func:`save_sae`.
    expected : dict, optional
        Values the saved metadata must have, e.g. ``{"capture_point": "final"}`` or
        ``{"fingerprint": {...}, "config": {"d_sae": 2048}}``. Keys are looked up in the saved
        ``extra_meta``; the key ``"config"`` refers to the SAE config. Nested dicts are compared key by
        key; saved keys absent from ``expected`` are not checked.
    map_location : str or torch.device, default "cpu"

    Returns
    -------
    SparseAutoencoder
        In eval mode; the parsed JSON is in its ``metadata`` attribute.

    Raises
    ------
    FileNotFoundError
        A file is missing (the message names it).
    SAEFileError
        A file is truncated or corrupt, the pair does not belong together, or a weight tensor holds
        NaN or inf (the message names it).
    SAEMetadataMismatchError
        The metadata differs from ``expected`` (the message names every differing key).
    """

    def check(meta: dict, pt_path: Path, json_path: Path) -> None:
        if expected is None:
            return
        if not isinstance(expected, dict):
            raise TypeError(f"expected must be a dict or None, got {type(expected).__name__}")
        check_expected({**meta["metadata"], "config": meta["config"]}, expected, name="expected", strict=False,
                       error=SAEMetadataMismatchError,
                       message=f"SAE file {json_path} does not match what was expected")

    def build(meta: dict) -> SparseAutoencoder:
        config_dict = dict(meta["config"])
        if config_dict.get("capture_point") is None and isinstance(meta["metadata"].get("capture_point"), str):
            # files written before the capture point was a config field record it in their metadata
            config_dict["capture_point"] = meta["metadata"]["capture_point"]
        return cls(SAEConfig.from_dict(config_dict))

    sae, meta = load_module(
        path_stem, build, fmt=FORMAT, version=FORMAT_VERSION, required=("config", "metadata"), config_key="config",
        error=SAEFileError, what="SAE", check=check, map_location=map_location,
    )
    sae.metadata = meta
    return sae  # type: ignore[return-value]


def _recorded_sasrec_sha256(sae: SparseAutoencoder) -> str | None:
    """The SASRec weights hash recorded in a saved SAE's metadata (``"sasrec_weights_sha256"``), if any."""
    meta = getattr(sae, "metadata", None) or {}
    inner = meta.get("metadata") if isinstance(meta.get("metadata"), dict) else meta
    sha = inner.get("sasrec_weights_sha256") if isinstance(inner, dict) else None
    return sha if isinstance(sha, str) and sha else None


def check_sae_matches_model(sae: SparseAutoencoder, model: nn.Module) -> None:
    """Refuse an SAE made for another SASRec than ``model``, when its metadata says which one.

    Introduced in chapter 5. A saved SAE records the weights hash of the
    SASRec it was trained on (``"sasrec_weights_sha256"``, see
    :func:`seqsae_lib.experiments.pretrained.sae_provenance`); :func:`seqsae_lib.experiments.pretrained.load_pretrained_sae`
    checks it against the checkpoint file. This is the same check for a model in memory: its hash is
    the one :func:`~seqsae_lib.model.checkpoints.save_checkpoint` would record (:func:`seqsae_lib.utils.fileio.module_weights_sha256`,
    computed once per model object). An SAE without a recorded hash (e.g. trained in memory) is not
    checked: there is nothing to compare.

    Raises
    ------
    SAEMetadataMismatchError
        The recorded hash differs from the model's: the SAE would read states of a model it never saw.
    """
    recorded = _recorded_sasrec_sha256(sae)
    if recorded is None:
        return
    actual = module_weights_sha256(model)
    if actual != recorded:
        raise SAEMetadataMismatchError(
            f"this SAE was trained on another SASRec: its metadata records SASRec weights sha256 {recorded[:12]}..., "
            f"the model given has {actual[:12]}... (same width, different weights). Retrain the SAE on this model, "
            "or load the SASRec checkpoint the SAE was made for (load_pretrained_sasrec / load_checkpoint)."
        )
