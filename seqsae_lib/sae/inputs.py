"""Checking the tensors an SAE reads: activation vectors and latent codes.

Introduced in chapter 3.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["check_vectors"]


def check_vectors(x: object, width: int, what: str, *, like: Tensor, check_finite: bool = True) -> Tensor:
    """Return ``x`` on ``like``'s device and dtype if it is a floating tensor ``(..., width)`` (finite by default).

    Introduced in chapter 3. ``what`` names the argument in messages:
    ``"activations"`` (last dimension ``d_in``) or ``"latents"`` (last dimension ``d_sae``).

    Raises
    ------
    TypeError
        Not a floating-point tensor (a NumPy array gets a hint).
    ValueError
        The last dimension is not ``width``, or (with ``check_finite``) the tensor holds NaN or inf.
    """
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{what} must be a torch.Tensor of shape (n, {width}), got {type(x).__name__}"
            + (" (use torch.from_numpy)" if isinstance(x, np.ndarray) else "")
        )
    if not (x.is_floating_point()):
        raise TypeError(f"{what} must be a floating-point tensor of shape (n, {width}), got dtype {x.dtype}")
    if x.ndim == 0 or x.shape[-1] != width:
        name = "d_in" if what == "activations" else "d_sae"
        raise ValueError(
            f"{what} must have shape (n, {width}) (last dimension {name}={width}), got shape {tuple(x.shape)}"
        )
    x = x.to(device=like.device, dtype=like.dtype)
    if check_finite and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{what} contain NaN or inf ({bad} non-finite values in a tensor of shape {tuple(x.shape)})")
    return x
