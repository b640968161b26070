"""Steering with SAE latents: :class:`Steering`, a set of latent edits at the SAE's capture point.

Introduced in chapter 5.

A :class:`Steering` is a value object: an SAE, a tuple of :class:`~seqsae_lib.steering.edits.LatentEdit`
(what each operation does is in :mod:`seqsae_lib.steering.edits`), the positions it edits and a label. It
steers where its SAE reads (``sae.capture_point``): the SAE knows, so no constructor asks for a capture
point (except for an SAE trained on plain vectors, which does not record one: pass ``capture_point=``).
Run it with :mod:`seqsae_lib.steering.scoring`.

Examples
--------
>>> more_horror = Steering.add(sae, [12, 40], 3.0)       # sae.capture_point, e.g. "final"
>>> less_comedy = Steering.ablate(sae, 7)
>>> both = more_horror + less_comedy
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from seqsae_lib.sae import SparseAutoencoder
from seqsae_lib.steering.edits import POSITIONS, LatentEdit, Positions, add_vector, edit_delta
from seqsae_lib.utils.checks import check_choice, latent_ids

__all__ = ["Steering"]


def _as_edit(edit: Any) -> LatentEdit:
    if isinstance(edit, LatentEdit):
        return edit
    if isinstance(edit, (tuple, list)) and len(edit) in (2, 3, 4):
        return LatentEdit(*edit)
    raise TypeError(f"edits must be LatentEdit objects or (latent, op[, value[, active_only]]) tuples, got {edit!r}")


def _pairs(latents: Any, values: Any, what: str) -> list[tuple[int, Any]]:
    """``(latent, value)`` pairs of a constructor call: one value for every latent, or one per latent."""
    try:
        lat_list = latent_ids(latents, name=f"Steering.{what}: latents")
    except TypeError as err:
        call = f"Steering.{what}(sae, latents{'' if what == 'ablate' else ', values'})"
        raise TypeError(f"{err} (e.g. a select_latents table); the call is {call}") from None
    if isinstance(values, Tensor):
        values = values.tolist()
    if isinstance(values, (list, tuple, np.ndarray)):
        vals = list(values)
        if len(vals) != len(lat_list):
            raise ValueError(f"{what}: got {len(lat_list)} latents but {len(vals)} values")
    else:
        vals = [values] * len(lat_list)
    return list(zip(lat_list, vals))


@dataclass(frozen=True, eq=False)
class Steering:
    """A set of SAE latent edits applied at one capture point.

    Introduced in chapter 5. Immutable; build it with the class-method
    constructors (:meth:`add`, :meth:`set`, :meth:`scale`, :meth:`ablate`, :meth:`shift_z`,
    :meth:`identity`) and combine with ``a + b`` or :meth:`combine`. Apply it with
    :func:`~seqsae_lib.steering.scoring.steer`, :func:`~seqsae_lib.steering.scoring.steered_scores` or
    :class:`~seqsae_lib.steering.scoring.SteeringCache`, or directly to states with :meth:`apply`.

    Parameters
    ----------
    sae : SparseAutoencoder
        It steers where it reads: at its own capture point (``sae.capture_point``).
    edits : tuple of LatentEdit
        Applied in order (see the module docstring). Empty means the identity.
    positions : {"last", "all"}, default "last"
    latent_std : Tensor of shape (d_sae,), optional
        Per-latent pre-activation standard deviation (:func:`preactivation_std`); required by
        ``"shift_z"`` edits.
    label : str, optional
        A human-readable name (e.g. ``"more Comedy"``), shown in tables and widgets.
    capture_point : str, optional (keyword)
        Only for an SAE that does not record where it reads (trained on plain vectors); otherwise it must
        equal ``sae.capture_point`` (:meth:`~seqsae_lib.sae.autoencoder.SparseAutoencoder.check_capture_point`).
        After construction it holds the capture point the steering edits.

    Raises
    ------
    TypeError, ValueError
        Not an SAE; a latent id outside ``0 .. d_sae - 1`` (the message gives the range); a
        ``capture_point`` other than the SAE's (or none known); bad ``positions``; ``"shift_z"`` without a
        valid ``latent_std``.
    """

    sae: SparseAutoencoder
    edits: tuple[LatentEdit, ...] = ()
    positions: str = "last"
    latent_std: Tensor | None = None
    label: str = ""
    capture_point: str = field(default=None, kw_only=True)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if not isinstance(self.sae, SparseAutoencoder):
            raise TypeError(f"sae must be a SparseAutoencoder, got {type(self.sae).__name__}")
        object.__setattr__(self, "capture_point", self.sae.check_capture_point(self.capture_point))
        object.__setattr__(self, "positions", check_choice("positions", self.positions, POSITIONS))
        if isinstance(self.edits, (LatentEdit, str)):
            raise TypeError("edits must be a sequence of LatentEdit, not a single edit")
        edits = tuple(_as_edit(e) for e in self.edits)
        d_sae = self.sae.d_sae
        for e in edits:
            if e.latent >= d_sae:
                raise ValueError(
                    f"latent id {e.latent} is out of range: this SAE has d_sae={d_sae} latents, "
                    f"valid ids are 0 .. {d_sae - 1}"
                )
        object.__setattr__(self, "edits", edits)
        std = self.latent_std
        if std is not None:
            if isinstance(std, np.ndarray):
                std = torch.from_numpy(std)
            if not isinstance(std, Tensor) or not std.is_floating_point() or tuple(std.shape) != (d_sae,):
                raise ValueError(
                    f"latent_std must be a float tensor of shape (d_sae,) = ({d_sae},) "
                    "(see preactivation_std), got "
                    + (f"shape {tuple(std.shape)}" if isinstance(std, Tensor) else type(std).__name__)
                )
            if not bool(torch.isfinite(std).all()) or bool((std < 0).any()):
                raise ValueError("latent_std must hold finite, non-negative standard deviations")
            object.__setattr__(self, "latent_std", std.detach())
        if any(e.op == "shift_z" for e in edits) and self.latent_std is None:
            raise ValueError(
                "'shift_z' edits need latent_std, the per-latent pre-activation standard deviation: "
                "latent_std = preactivation_std(sae, store)"
            )
        if not isinstance(self.label, str):
            raise TypeError(f"label must be a str, got {type(self.label).__name__}")

    # ---- constructors ------------------------------------------------------------------------------

    @classmethod
    def _make(
        cls,
        op: str,
        sae: SparseAutoencoder,
        latents: Any,
        values: Any,
        positions: str,
        latent_std: Tensor | None = None,
        label: str = "",
        capture_point: str | None = None,
        active_only: bool = False,
    ) -> Steering:
        edits = tuple(LatentEdit(lat, op, val, active_only) for lat, val in _pairs(latents, values, op))
        return cls(sae, edits, positions, latent_std, label, capture_point=capture_point)

    @classmethod
    def identity(
        cls, sae: SparseAutoencoder, positions: Positions = "last", *, capture_point: str | None = None
    ) -> Steering:
        """The empty steering (changes nothing). Introduced in chapter 5."""
        return cls(sae, (), positions, capture_point=capture_point)

    @classmethod
    def add(
        cls, sae: SparseAutoencoder, latents: int | Sequence[int], values: float | Sequence[float],
        *, positions: Positions = "last", label: str = "", capture_point: str | None = None,
    ) -> Steering:
        """Add ``value * W_dec[latent] / s`` for each latent. Introduced in chapter 5.

        ``values`` is one number (used for every latent) or one per latent.
        """
        return cls._make("add", sae, latents, values, positions, label=label, capture_point=capture_point)

    @classmethod
    def set(
        cls, sae: SparseAutoencoder, latents: int | Sequence[int], values: float | Sequence[float],
        *, positions: Positions = "last", label: str = "", capture_point: str | None = None,
        active_only: bool = False,
    ) -> Steering:
        """Clamp each latent's activation to ``value``. Introduced in chapter 5.

        With ``active_only=True`` only in states where the latent fires (the others keep it at 0), so the
        change depends on each user's own activation.
        """
        return cls._make("set", sae, latents, values, positions, label=label, capture_point=capture_point,
                         active_only=active_only)

    @classmethod
    def scale(
        cls, sae: SparseAutoencoder, latents: int | Sequence[int], values: float | Sequence[float],
        *, positions: Positions = "last", label: str = "", capture_point: str | None = None,
        active_only: bool = False,
    ) -> Steering:
        """Multiply each latent's activation by ``value``. Introduced in chapter 5.

        A scale only ever changes latents that fire (``0 * value = 0``): ``active_only`` is accepted for
        symmetry with :meth:`set` and :meth:`shift_z` and changes nothing.
        """
        return cls._make("scale", sae, latents, values, positions, label=label, capture_point=capture_point,
                         active_only=active_only)

    @classmethod
    def ablate(
        cls, sae: SparseAutoencoder, latents: int | Sequence[int],
        *, positions: Positions = "last", label: str = "", capture_point: str | None = None,
    ) -> Steering:
        """Set each latent's activation to 0. Introduced in chapter 5."""
        return cls._make("ablate", sae, latents, 0.0, positions, label=label, capture_point=capture_point)

    @classmethod
    def shift_z(
        cls, sae: SparseAutoencoder, latents: int | Sequence[int], values: float | Sequence[float],
        latent_std: Tensor, *, positions: Positions = "last", label: str = "", capture_point: str | None = None,
        active_only: bool = False,
    ) -> Steering:
        """Shift each latent's pre-activation by ``value`` standard deviations (PopSteer-style).

        Introduced in chapter 5. ``latent_std`` comes from
        :func:`~seqsae_lib.steering.edits.preactivation_std`. With ``active_only=True`` only states where
        the latent fires are shifted (a silent latent is never switched on).
        """
        return cls._make("shift_z", sae, latents, values, positions, latent_std, label, capture_point, active_only)

    # ---- combination -------------------------------------------------------------------------------

    @staticmethod
    def combine(*steerings: Steering, label: str | None = None) -> Steering:
        """Concatenate the edits of several steerings (same SAE, capture point and positions).

        Introduced in chapter 5. ``Steering.combine(more_comedy, less_horror)``
        is the same as ``more_comedy + less_horror``; edits keep their order.

        Raises
        ------
        ValueError
            No steering given, or steerings with different SAEs, capture points, positions or latent
            standard deviations.
        """
        if len(steerings) == 1 and isinstance(steerings[0], (list, tuple)):
            steerings = tuple(steerings[0])
        if not steerings:
            raise ValueError("combine needs at least one Steering")
        first = steerings[0]
        for s in steerings:
            if not isinstance(s, Steering):
                raise TypeError(f"can only combine Steering objects, got {type(s).__name__}")
            if s.sae is not first.sae:
                raise ValueError("cannot combine steerings that use different SAE objects")
            if s.capture_point != first.capture_point:
                raise ValueError(
                    f"cannot combine steerings at different capture points ({first.capture_point!r} and "
                    f"{s.capture_point!r})"
                )
            if s.positions != first.positions:
                raise ValueError(
                    f"cannot combine steerings with positions={first.positions!r} and positions={s.positions!r}"
                )
        stds = [s.latent_std for s in steerings if s.latent_std is not None]
        std = stds[0] if stds else None
        for other in stds[1:]:
            if other is not std and not torch.equal(other, std):  # type: ignore[arg-type]
                raise ValueError("cannot combine steerings that carry different latent_std tensors")
        edits = tuple(e for s in steerings for e in s.edits)
        if label is None:
            label = " + ".join(s.label for s in steerings if s.label)
        return Steering(first.sae, edits, first.positions, std, label, capture_point=first.capture_point)

    def __add__(self, other: Steering) -> Steering:
        if not isinstance(other, Steering):
            return NotImplemented
        return Steering.combine(self, other)

    def __eq__(self, other: object) -> bool:
        """Same intervention: same SAE object, capture point, positions, edits and ``latent_std`` (labels ignored)."""
        if not isinstance(other, Steering):
            return NotImplemented
        if (self.sae is not other.sae or self.capture_point != other.capture_point
                or self.positions != other.positions or self.edits != other.edits):
            return False
        a, b = self.latent_std, other.latent_std
        return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))

    def __hash__(self) -> int:
        return hash((id(self.sae), self.capture_point, self.positions, self.edits))

    # ---- inspection --------------------------------------------------------------------------------

    @property
    def d_in(self) -> int:
        """Width of the states this steering edits (the SAE's ``d_in``)."""
        return self.sae.d_in

    @property
    def is_identity(self) -> bool:
        """True when every edit is a no-op by construction (or there are none)."""
        return all(e.is_noop for e in self.edits)

    def to_frame(self) -> pd.DataFrame:
        """The edits as a table (``latent, op, value, active_only``). Introduced in chapter 5."""
        return pd.DataFrame(
            {"latent": [e.latent for e in self.edits], "op": [e.op for e in self.edits],
             "value": [e.value for e in self.edits], "active_only": [e.active_only for e in self.edits]},
            columns=["latent", "op", "value", "active_only"],
        )

    def __repr__(self) -> str:
        body = ", ".join(str(e) for e in self.edits) or "identity"
        lab = f", label={self.label!r}" if self.label else ""
        return f"Steering({self.capture_point!r}, positions={self.positions!r}, [{body}]{lab})"

    def add_vector(self) -> Tensor:
        """Sum of the ``"add"`` edits as one ``(d_in,)`` vector (zeros if there are none).

        Introduced in chapter 5.
        """
        return add_vector(self.sae, self.edits)

    # ---- application -------------------------------------------------------------------------------

    def apply(self, states: Tensor) -> Tensor:
        """Steer every non-padding row of ``states`` (shape ``(..., d_in)``) and return the new tensor.

        Introduced in chapter 5. Position selection is the caller's job
        (:func:`~seqsae_lib.steering.scoring.steer` and :class:`~seqsae_lib.steering.scoring.SteeringCache` pass only the last position for ``positions="last"``).
        An identity steering returns ``states`` itself. The SAE is used in eval mode (its mode is
        restored).

        Raises
        ------
        ValueError
            ``states`` of the wrong width.
        """
        if not isinstance(states, Tensor) or states.ndim == 0 or states.shape[-1] != self.d_in:
            shape = tuple(states.shape) if isinstance(states, Tensor) else type(states).__name__
            raise ValueError(f"states must have shape (..., d_in={self.d_in}), got {shape}")
        if self.is_identity:
            return states
        flat = states.reshape(-1, self.d_in)
        real = (flat != 0).any(dim=-1)  # padding states are exactly zero
        if bool(real.all()):  # the usual case (last positions): no gather/scatter
            return (flat + edit_delta(self.sae, flat, self.edits, self.latent_std)).reshape(states.shape)
        if not bool(real.any()):
            return states
        rows = flat[real]
        new_rows = rows + edit_delta(self.sae, rows, self.edits, self.latent_std)
        out = flat.clone()
        out[real] = new_rows
        return out.reshape(states.shape)
