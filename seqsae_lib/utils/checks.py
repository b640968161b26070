"""Argument checks shared by the whole library: one message format for a bad int, number, choice or latent list.

Introduced in chapter 1.

Every public function checks its arguments on entry and raises ``TypeError`` for a value of the wrong kind
and ``ValueError`` for a value out of range, naming the argument, what was expected and what was given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

__all__ = ["check_choice", "check_float", "check_int", "latent_ids"]


def _bounds(minimum: Any, maximum: Any, exclusive_minimum: bool = False, exclusive_maximum: bool = False) -> str:
    """The allowed range in words: ``">= 1"``, ``"< 1.0"`` or, with both bounds, ``"in [0.0, 1.0)"``."""
    low, high = ">" if exclusive_minimum else ">=", "<" if exclusive_maximum else "<="
    if minimum is not None and maximum is not None:
        return f"in {'(' if exclusive_minimum else '['}{minimum}, {maximum}{')' if exclusive_maximum else ']'}"
    return f"{low} {minimum}" if minimum is not None else f"{high} {maximum}"


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an ``int`` if it is an integer in ``[minimum, maximum]``.

    Introduced in chapter 1.

    Raises
    ------
    TypeError
        If ``value`` is not an integer (booleans and floats are refused, even ``3.0``).
    ValueError
        If it lies outside the bounds (the message states the allowed range, e.g. ``k must be in [1, 10]``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {_bounds(minimum, maximum)}, got {value}")
    return value


def check_float(
    name: str, value: Any, minimum: float | None = None, maximum: float | None = None, *,
    exclusive_minimum: bool = False, exclusive_maximum: bool = False,
) -> float:
    """Return ``value`` as a finite ``float`` in ``[minimum, maximum]`` (open at an end marked exclusive).

    Introduced in chapter 1.

    Raises
    ------
    TypeError
        If ``value`` is not a real number (booleans are refused).
    ValueError
        If it is NaN, infinite or outside the bounds (the message states the allowed range, e.g.
        ``dropout must be in [0.0, 1.0)``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
    too_high = maximum is not None and (value >= maximum if exclusive_maximum else value > maximum)
    if too_low or too_high:
        raise ValueError(f"{name} must be {_bounds(minimum, maximum, exclusive_minimum, exclusive_maximum)}, "
                         f"got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``.

    Introduced in chapter 1.

    Raises
    ------
    ValueError
        Naming the valid choices.
    """
    options = tuple(choices)
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")
    return value


def latent_ids(latents: Any, d_sae: int | None = None, *, name: str = "latents") -> list[int]:
    """Normalise a latent argument to a list of latent ids.

    Introduced in chapter 5.

    Parameters
    ----------
    latents : int, sequence of ints, 1-d array or tensor, or a table with a ``latent`` column
        (e.g. the result of ``select_latents``).
    d_sae : int, optional
        Dictionary size: every id must lie in ``0 .. d_sae - 1``.

    Raises
    ------
    TypeError
        If ``latents`` is not an int or a sequence of ints (e.g. a float).
    ValueError
        If an id is out of range.
    """
    if hasattr(latents, "columns") and "latent" in getattr(latents, "columns", ()):
        latents = latents["latent"].to_numpy()
    if isinstance(latents, torch.Tensor):
        latents = latents.detach().cpu().numpy()
    if isinstance(latents, np.ndarray):
        if latents.ndim > 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {latents.shape}")
        latents = latents.tolist() if latents.ndim == 1 else [latents.item()]
    if isinstance(latents, (int, np.integer)) and not isinstance(latents, bool):
        latents = [latents]
    if isinstance(latents, (str, bytes)) or not isinstance(latents, Iterable):
        raise TypeError(f"{name} must be a latent id (an int) or a sequence of ints (e.g. [3, 17]), "
                        f"got {type(latents).__name__} ({latents!r})")
    out = []
    for i, latent in enumerate(latents):
        if isinstance(latent, bool) or not isinstance(latent, (int, np.integer)):
            raise TypeError(f"{name}[{i}] must be an int latent id, got {type(latent).__name__} ({latent!r})")
        latent = int(latent)
        if latent < 0 or (d_sae is not None and latent >= d_sae):
            upper = f"{d_sae - 1}" if d_sae is not None else "..."
            raise ValueError(f"{name}[{i}] = {latent} is not a latent id: expected 0..{upper}")
        out.append(latent)
    return out
