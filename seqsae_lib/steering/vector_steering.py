"""Steering with a plain vector: :class:`VectorSteering` adds a fixed vector to the state at a capture point.

Introduced in chapter 5, for the baselines that do not use an SAE (raw hidden
dimensions, mean-difference vectors; :mod:`seqsae_lib.steering.baselines`). :data:`StateSteering` is
anything :mod:`seqsae_lib.steering.scoring` can run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
from torch import Tensor

from seqsae_lib.steering.edits import POSITIONS, Positions, finite_number
from seqsae_lib.steering.latent_steering import Steering
from seqsae_lib.utils.checks import check_choice

__all__ = ["VectorSteering", "StateSteering"]


@dataclass(frozen=True, eq=False)
class VectorSteering:
    """Add a fixed vector to the state at one capture point (no SAE involved).

    Introduced in chapter 5 for the baselines of
    :mod:`seqsae_lib.steering.baselines` (mean-difference vectors, raw hidden dimensions). Works everywhere a
    :class:`~seqsae_lib.steering.latent_steering.Steering` does (:mod:`seqsae_lib.steering.scoring`).

    Parameters
    ----------
    capture_point : str
    vector : Tensor of shape (d_model,)
        Added to every steered (non-padding) state.
    positions : {"last", "all"}, default "last"
    label : str, optional

    Raises
    ------
    TypeError, ValueError
        A vector that is not a finite 1-D float tensor; bad ``positions``.
    """

    capture_point: str
    vector: Tensor
    positions: str = "last"
    label: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.capture_point, str) or not self.capture_point:
            raise TypeError(f"capture_point must be a capture point name such as 'final' or 'block_0', "
                            f"got {self.capture_point!r}")
        v = self.vector
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(v)
        if not isinstance(v, Tensor) or v.ndim != 1 or not v.is_floating_point():
            desc = f"shape {tuple(v.shape)}, dtype {v.dtype}" if isinstance(v, Tensor) else type(v).__name__
            raise TypeError(f"vector must be a 1-D float tensor of shape (d_model,), got {desc}")
        if not bool(torch.isfinite(v).all()):
            raise ValueError("vector contains NaN or inf")
        object.__setattr__(self, "vector", v.detach())
        object.__setattr__(self, "positions", check_choice("positions", self.positions, POSITIONS))

    @classmethod
    def along(
        cls, capture_point: str, direction: Tensor, strength: float, *, positions: Positions = "last",
        normalize: bool = True, label: str = "",
    ) -> VectorSteering:
        """``strength`` times ``direction`` (divided by its norm when ``normalize``).

        Introduced in chapter 5.

        Raises
        ------
        ValueError
            Non-finite strength, or a zero direction with ``normalize=True``.
        """
        s = finite_number("strength", strength)
        d = torch.as_tensor(direction).detach().float() if not isinstance(direction, Tensor) else direction.detach()
        if normalize:
            norm = float(d.norm())
            if not norm > 0:
                raise ValueError("cannot normalise a zero direction")
            d = d / norm
        return cls(capture_point, s * d, positions, label)

    @property
    def d_in(self) -> int:
        """Width of the vector."""
        return int(self.vector.shape[0])

    @property
    def is_identity(self) -> bool:
        """True for the zero vector."""
        return not bool((self.vector != 0).any())

    def __eq__(self, other: object) -> bool:
        """Same capture point, positions and vector (labels ignored)."""
        if not isinstance(other, VectorSteering):
            return NotImplemented
        return (self.capture_point == other.capture_point and self.positions == other.positions
                and self.vector.shape == other.vector.shape and torch.equal(self.vector, other.vector.to(self.vector)))

    def __hash__(self) -> int:
        return hash((self.capture_point, self.positions, tuple(self.vector.tolist())))

    def __add__(self, other: VectorSteering) -> VectorSteering:
        if not isinstance(other, VectorSteering):
            return NotImplemented
        if other.capture_point != self.capture_point or other.positions != self.positions:
            raise ValueError("can only add vector steerings with the same capture point and positions")
        label = " + ".join(x for x in (self.label, other.label) if x)
        return VectorSteering(self.capture_point, self.vector + other.vector.to(self.vector), self.positions, label)

    def __repr__(self) -> str:
        lab = f", label={self.label!r}" if self.label else ""
        return (f"VectorSteering({self.capture_point!r}, positions={self.positions!r}, "
                f"norm={float(self.vector.norm()):.4g}{lab})")

    def apply(self, states: Tensor) -> Tensor:
        """Add the vector to every non-padding row of ``(..., d)`` states.

        Introduced in chapter 5.
        """
        if not isinstance(states, Tensor) or states.ndim == 0 or states.shape[-1] != self.d_in:
            shape = tuple(states.shape) if isinstance(states, Tensor) else type(states).__name__
            raise ValueError(f"states must have shape (..., d_in={self.d_in}), got {shape}")
        if self.is_identity:
            return states
        real = (states != 0).any(dim=-1).unsqueeze(-1)  # padding states are exactly zero
        v = self.vector.to(device=states.device, dtype=states.dtype)
        return torch.where(real, states + v, states)


StateSteering = Union[Steering, VectorSteering]
"""Anything that edits the state at a capture point: a :class:`~seqsae_lib.steering.latent_steering.Steering`
or a :class:`VectorSteering`."""
