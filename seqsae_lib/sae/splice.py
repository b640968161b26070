"""Splicing: putting an SAE's reconstruction (or an ablation) in place of the model's hidden state.

Introduced in chapter 3.

:func:`splice` replaces the state at a capture point during forward passes run inside a ``with`` block:
by the SAE's reconstruction (with or without the error term), by the zero vector or by a mean state.
:mod:`seqsae_lib.sae.fidelity` measures what the recommendations lose.

Padding positions (all-zero states, see :mod:`seqsae_lib.model.sasrec`) are never touched by a splice: a state
vector that is exactly zero in every coordinate is treated as padding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from seqsae_lib.model import check_model, intervene
from seqsae_lib.sae.autoencoder import SparseAutoencoder
from seqsae_lib.utils.checks import check_choice
from seqsae_lib.utils.torchutils import eval_mode

__all__ = ["SPLICE_MODES", "SpliceMode", "splice", "resolve_capture_point", "check_sae_width", "check_mean"]

SpliceMode = Literal["sae", "sae+error", "zero", "mean"]
SPLICE_MODES: tuple[str, ...] = ("sae", "sae+error", "zero", "mean")
"""What :func:`splice` can put in place of the hidden state."""


def resolve_capture_point(model: nn.Module, sae: Any, capture_point: str | None) -> str:
    """Where to splice: the SAE's own capture point (``capture_point``, if given, must equal it), else ``capture_point``.

    Introduced in chapter 3.

    Raises
    ------
    TypeError
        ``model`` has no named capture points (see :func:`~seqsae_lib.model.capture.check_model`).
    ValueError
        ``capture_point`` differs from the SAE's (see
        :meth:`~seqsae_lib.sae.autoencoder.SparseAutoencoder.check_capture_point`), or neither is known.
    UnknownCapturePointError
        The point is not one of ``model``'s (the message lists the valid ones).
    """
    check_model(model)
    if isinstance(sae, SparseAutoencoder):
        capture_point = sae.check_capture_point(capture_point)
    elif capture_point is None:
        raise ValueError("capture_point is required without an SAE that records where it reads: "
                         "pass capture_point=... (e.g. 'final')")
    model.hook_point(capture_point)  # UnknownCapturePointError listing the valid names
    return capture_point


def check_sae_width(model: nn.Module, sae: Any, capture_point: str) -> SparseAutoencoder:
    """Return ``sae`` if it is an SAE that reads vectors as wide as ``model``'s states.

    Introduced in chapter 3.

    Raises
    ------
    TypeError
        ``sae`` is not a :class:`~seqsae_lib.sae.autoencoder.SparseAutoencoder`.
    ValueError
        The widths differ (both named).
    """
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
    d_model = check_model(model, scores=True).d_model
    if sae.d_in != d_model:
        raise ValueError(
            f"the SAE reads vectors of width d_in={sae.d_in}, but capture point {capture_point!r} of the "
            f"model has width d_model={d_model}; was the SAE trained on another model?"
        )
    return sae


def check_mean(model: nn.Module, mean: Any) -> Tensor:
    """Return ``mean`` as a detached tensor if it is a finite float vector of width ``model.d_model``.

    Introduced in chapter 3.

    Raises
    ------
    TypeError, ValueError
        Naming the expected shape ``(d_model,)``.
    """
    d_model = check_model(model, scores=True).d_model
    if isinstance(mean, np.ndarray):
        mean = torch.from_numpy(mean)
    if not isinstance(mean, Tensor):
        raise TypeError(
            f"mean must be a tensor of shape ({d_model},) (e.g. ActivationStore.mean()), got {type(mean).__name__}"
        )
    if not mean.is_floating_point():
        raise TypeError(f"mean must be a floating-point tensor, got dtype {mean.dtype}")
    if tuple(mean.shape) != (d_model,):
        raise ValueError(f"mean must have shape (d_model,) = ({d_model},), got shape {tuple(mean.shape)}")
    if not bool(torch.isfinite(mean).all()):
        raise ValueError("mean contains NaN or inf")
    return mean.detach()


@contextmanager
def splice(
    model: nn.Module,
    sae: SparseAutoencoder | None,
    capture_point: str | None = None,
    *,
    mode: SpliceMode = "sae",
    positions: Literal["all", "last"] = "all",
    mean: Tensor | None = None,
) -> Iterator[None]:
    """Replace the state at ``capture_point`` during forward passes run inside the ``with`` block.

    Introduced in chapter 3. Built on :func:`seqsae_lib.model.capture.intervene`.

    Parameters
    ----------
    model : SASRec
    sae : SparseAutoencoder or None
        Needed for ``"sae"`` and ``"sae+error"`` (its ``d_in`` must equal ``model.d_model``); ignored
        (may be None) for the ablations. It is put in eval mode inside the block (BatchTopK then uses
        its per-vector threshold) and its mode is restored afterwards.
    capture_point : str, optional
        Where to splice (``"embed"``, ``"block_0"``, ..., ``"final"``). Defaults to where the SAE reads
        (:attr:`~seqsae_lib.sae.autoencoder.SparseAutoencoder.capture_point`); if given, it must be that one.
        Required for the ablations without an SAE, and for an SAE that records no capture point.
    mode : {"sae", "sae+error", "zero", "mean"}, default "sae"
        ``"sae"``: the SAE reconstruction ``x_hat`` (no error term); ``"sae+error"``:
        ``x_hat + (x - x_hat)``, equal to ``x`` up to float rounding; ``"zero"``: the zero vector;
        ``"mean"``: the vector ``mean``.
    positions : {"all", "last"}, default "all"
        Replace every real position, or only the most recent one. With ``"all"`` at an inner capture
        point the later layers also attend to replaced states of earlier positions.
    mean : Tensor of shape (d_model,), optional
        Required for ``mode="mean"`` (e.g. :meth:`~seqsae_lib.sae.activations.ActivationStore.mean`).

    Notes
    -----
    Padding positions, recognised as state vectors that are exactly zero, are left untouched (zero),
    whatever the mode. Gradients flow through the replacement (no ``no_grad`` is imposed).

    Raises
    ------
    UnknownCapturePointError
        ``capture_point`` is not a capture point of ``model`` (the message lists the valid ones).
    ValueError
        Unknown mode or positions; an SAE whose width differs from the model's (both named); a
        ``capture_point`` other than the SAE's, or none known; a missing or malformed ``mean``.
    TypeError
        ``sae`` is missing or not a :class:`~seqsae_lib.sae.autoencoder.SparseAutoencoder` where one is needed.

    Examples
    --------
    >>> with splice(model, sae):  # at sae.capture_point
    ...     spliced_scores = model.scores(input_ids)
    """
    capture_point = resolve_capture_point(model, sae, capture_point)
    check_choice("mode", mode, SPLICE_MODES)
    check_choice("positions", positions, ("all", "last"))
    uses_sae = mode in ("sae", "sae+error")
    if uses_sae:
        if sae is None:
            raise TypeError(f"mode={mode!r} needs an SAE, got sae=None")
        check_sae_width(model, sae, capture_point)
    mean_vec = check_mean(model, mean) if mode == "mean" else None
    if mode != "mean" and mean is not None:
        raise ValueError(f"mean is only used with mode='mean', got mode={mode!r}")

    def replace_rows(x: Tensor) -> Tensor:
        """``(n, d)`` real (non-padding) states -> their replacement."""
        if mode == "zero":
            return torch.zeros_like(x)
        if mode == "mean":
            return mean_vec.to(device=x.device, dtype=x.dtype).expand_as(x).clone()
        # forward() decodes TopK codes sparsely: about twice as fast as decode(encode(x)) on CPU
        x_hat = sae(x).x_hat.to(device=x.device, dtype=x.dtype)  # type: ignore[misc]
        if mode == "sae":
            return x_hat
        return x_hat + (x - x_hat)

    def fn(h: Tensor) -> Tensor:
        real = (h != 0).any(dim=-1)  # padding states are exactly zero
        if not bool(real.any()):
            return h
        out = h.clone()
        out[real] = replace_rows(h[real])
        return out

    with eval_mode(sae if uses_sae else None), intervene(model, capture_point, fn, positions=positions):
        yield
