"""Steering recommendations by editing the hidden state: SAE latent edits and plain vectors.

Introduced in chapter 5 (chapters/05_steering.ipynb).

A *steering* is a value object that says how to change the residual stream at one capture point of a
:class:`~seqsae_lib.model.sasrec.SASRec` before the rest of the network (and the tied scoring head) runs:

* :class:`Steering` edits **SAE latents** (:class:`LatentEdit`, one of :data:`OPS`);
* :class:`VectorSteering` adds a fixed vector (the baselines of :mod:`seqsae_lib.steering.evaluation`: raw
  hidden dimensions, mean-difference vectors).

Semantics of latent edits (the SAE's error term is kept)
--------------------------------------------------------
With ``z = sae.encode(x)`` the code of a state ``x`` and ``z'`` the edited code, the steered state is::

    x' = x + (decode(z') - decode(z)) = x + (z' - z) @ W_dec / s

(``s`` is the SAE's ``input_scale``, 1 for a folded SAE). Whatever the SAE fails to reconstruct (the
*error term* ``x - decode(z)``) passes through untouched, so a steering that changes nothing returns
exactly ``x``. The operations:

``"add"``
    ``x' = x + value * W_dec[latent] / s``: push along the latent's decoder direction, whatever the
    latent's current activation (this is the same as adding ``value`` to ``z[latent]`` without any
    gating). For a folded SAE with unit-norm decoder rows (the library's default after training and
    :meth:`~seqsae_lib.sae.autoencoder.SparseAutoencoder.fold_normalization`), ``value`` is a length in state units.
``"set"``
    clamp ``z[latent]`` to ``value`` (``>= 0``).
``"scale"``
    multiply ``z[latent]`` by ``value`` (``>= 0``); ``0`` is an ablation, ``1`` the identity.
``"ablate"``
    ``z[latent] = 0``.
``"shift_z"``
    PopSteer-style (Ahmadov et al., 2025): shift the latent's **pre-activation** by ``value`` standard
    deviations of that pre-activation (``latent_std``, see :func:`preactivation_std`) and re-apply the
    SAE's own gate to that latent alone, the other latents held fixed: ``relu`` for ``"relu"`` SAEs, the
    learned threshold for ``"batchtopk"``, and for ``"topk"`` the latent is (or stays) in the code when its
    shifted pre-activation reaches the ``k``-th largest pre-activation among the other latents (a latent
    that enters makes the code ``k + 1`` long). A negative shift can switch an active latent off.

Edits apply in order; every code edit sees the result of the previous ones on the same latent
(``"shift_z"`` recomputes the activation from the shifted pre-activation). ``"add"`` edits are summed
into one vector and applied after the code edits.

Positions: ``positions="last"`` edits only the most recent position (the one the model recommends
from); ``"all"`` edits every non-padding position, so at an inner capture point later layers also
attend to steered earlier positions. Padding states (exactly zero vectors) are never touched.

Running steered models
----------------------
* :func:`steer` (context manager, built on :func:`seqsae_lib.model.capture.intervene`) steers every forward
  pass inside the ``with`` block; :func:`steered_scores` is a one-liner around it;
* :class:`SteeringCache` (and the two functions :func:`cached_last_state` / :func:`scores_from_state`)
  is the fast path for widgets and strength grids: the state at the capture point is computed once, and
  each new steering costs, at ``"final"``, an edit of the ``(B, d)`` last states and one matrix product
  with the item table (no transformer re-run); at an inner point, the remaining blocks on the cached,
  left-trimmed window via :meth:`~seqsae_lib.model.sasrec.SASRec.forward_from`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Union

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from seqsae_lib.sae.activations import ActivationStore
from seqsae_lib.data.batching import trim_left_padding
from seqsae_lib.model.capture import intervene, record
from seqsae_lib.sae.autoencoder import SparseAutoencoder

__all__ = [
    "OPS",
    "POSITIONS",
    "LatentEdit",
    "Steering",
    "VectorSteering",
    "StateSteering",
    "preactivation_std",
    "steer",
    "steered_scores",
    "SteeringCache",
    "cached_last_state",
    "scores_from_state",
]

OPS: tuple[str, ...] = ("add", "set", "scale", "ablate", "shift_z")
"""The latent edit operations of :class:`LatentEdit` (see the module docstring)."""

POSITIONS: tuple[str, ...] = ("last", "all")
"""Which positions a steering edits: the most recent one, or every non-padding one."""

Op = Literal["add", "set", "scale", "ablate", "shift_z"]
Positions = Literal["last", "all"]


# --------------------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------------------


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        if isinstance(value, Tensor) and value.numel() == 1:
            value = value.item()
        else:
            raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def _check_positions(positions: Any) -> str:
    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
    return str(positions)


def _check_capture_point_name(capture_point: Any) -> str:
    if not isinstance(capture_point, str) or not capture_point:
        raise TypeError(
            f"capture_point must be a capture point name such as 'final' or 'block_0', got {capture_point!r}"
        )
    return capture_point


def _sae_capture_point(sae: SparseAutoencoder) -> str | None:
    """Where the SAE reads (its config's capture point), if recorded."""
    return sae.capture_point


def _check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module) or not callable(getattr(model, "hook_point", None)) or not hasattr(
        model, "item_emb"
    ):
        raise TypeError(f"model must be a SASRec (capture points and an item table), got {type(model).__name__}")
    return model


def _check_against_model(model: nn.Module, steering: StateSteering) -> None:
    """Capture point exists in the model and the steering's width matches the model's."""
    if not isinstance(steering, (Steering, VectorSteering)):
        raise TypeError(f"expected a Steering or VectorSteering, got {type(steering).__name__}")
    model.hook_point(steering.capture_point)  # UnknownCapturePointError listing the valid names
    d_model = int(model.d_model)  # type: ignore[arg-type]
    if steering.d_in != d_model:
        what = "the SAE reads" if isinstance(steering, Steering) else "the steering vector has"
        raise ValueError(
            f"{what} width d_in={steering.d_in}, but capture point {steering.capture_point!r} of the model "
            f"has width d_model={d_model}; was it built for another model?"
        )


def _real_rows(flat: Tensor) -> Tensor:
    """Rows that are not padding (padding states are exactly zero)."""
    return (flat != 0).any(dim=-1)


# --------------------------------------------------------------------------------------------------------
# value objects
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatentEdit:
    """One edit of one SAE latent: ``op`` in :data:`OPS` with a ``value``.

    Introduced in chapter 5 (chapters/05_steering.ipynb). The meaning of each operation is in the module
    docstring of :mod:`seqsae_lib.steering.edits`. The latent id is checked against an SAE when the edit is put
    into a :class:`Steering`.

    Raises
    ------
    ValueError
        Unknown ``op`` (the message lists :data:`OPS`), a negative latent id, a non-finite ``value``, a
        negative value for ``"set"`` or ``"scale"`` (codes are non-negative: push away with a negative
        ``"add"`` or ``"shift_z"`` instead), a non-zero value for ``"ablate"``.
    """

    latent: int
    """Latent index ``0 .. d_sae - 1``."""
    op: str
    """One of :data:`OPS`."""
    value: float = 0.0
    """Amount (``"add"``: state units; ``"set"``: activation; ``"scale"``: factor; ``"shift_z"``: standard
    deviations of the pre-activation; ``"ablate"``: unused, 0)."""

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown steering op {self.op!r}; valid ops are {list(OPS)}")
        lat = self.latent
        if isinstance(lat, Tensor) and lat.numel() == 1:
            lat = lat.item()
        if isinstance(lat, bool) or not isinstance(lat, (int, np.integer)):
            raise TypeError(f"latent must be an int, got {type(lat).__name__} ({lat!r})")
        if lat < 0:
            raise ValueError(f"latent id {int(lat)} is negative; latent ids are 0 .. d_sae - 1")
        value = _finite(f"value of the {self.op!r} edit of latent {int(lat)}", self.value)
        if self.op in ("set", "scale") and value < 0:
            raise ValueError(
                f"{self.op!r} needs a value >= 0 (SAE activations are non-negative), got {value}; "
                "to push away from a latent use 'add' or 'shift_z' with a negative value"
            )
        if self.op == "ablate" and value != 0.0:
            raise ValueError(f"'ablate' takes no value (it sets the activation to 0), got value={value}")
        object.__setattr__(self, "latent", int(lat))
        object.__setattr__(self, "value", value)

    @property
    def is_noop(self) -> bool:
        """Whether the edit leaves every state unchanged by construction (zero add/shift, scale by 1)."""
        return (self.op in ("add", "shift_z") and self.value == 0.0) or (self.op == "scale" and self.value == 1.0)

    def __str__(self) -> str:
        if self.op == "ablate":
            return f"ablate({self.latent})"
        return f"{self.op}({self.latent}, {self.value:+g})"


def _as_edit(edit: Any) -> LatentEdit:
    if isinstance(edit, LatentEdit):
        return edit
    if isinstance(edit, (tuple, list)) and len(edit) in (2, 3):
        return LatentEdit(*edit)
    raise TypeError(f"edits must be LatentEdit objects or (latent, op[, value]) tuples, got {edit!r}")


def _broadcast(latents: int | Sequence[int] | np.ndarray | Tensor, values: Any, what: str) -> list[tuple[int, Any]]:
    if isinstance(latents, (Tensor, np.ndarray)):
        latents = latents.tolist()
    if isinstance(latents, pd.DataFrame):
        if "latent" not in latents.columns:
            raise ValueError("a DataFrame of latents needs a 'latent' column (e.g. from select_latents)")
        latents = latents["latent"].tolist()
    if isinstance(latents, (int, np.integer)) and not isinstance(latents, (bool, np.bool_)):
        lat_list = [latents]
    elif isinstance(latents, (str, bytes, bool, np.bool_)) or not isinstance(latents, Iterable):
        call = f"Steering.{what}(sae, capture_point, latents{'' if what == 'ablate' else ', values'})"
        raise TypeError(
            f"Steering.{what}: latents must be a latent id (an int) or a sequence of ints (e.g. [3, 17] or a "
            f"select_latents table), got {type(latents).__name__} ({latents!r}); the call is {call}"
        )
    else:
        lat_list = list(latents)
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

    Introduced in chapter 5 (chapters/05_steering.ipynb). Immutable; build it with the class-method
    constructors (:meth:`add`, :meth:`set`, :meth:`scale`, :meth:`ablate`, :meth:`shift_z`,
    :meth:`identity`) and combine with ``a + b`` or :meth:`combine`. Apply it with :func:`steer`,
    :func:`steered_scores` or :class:`SteeringCache`, or directly to states with :meth:`apply`.

    Parameters
    ----------
    sae : SparseAutoencoder
        Trained on states at ``capture_point``.
    capture_point : str
        Where to steer (``"embed"``, ``"block_0"``, ..., ``"final"``); checked against the model when
        the steering is applied, and against the capture point recorded in a saved SAE's metadata now.
    edits : tuple of LatentEdit
        Applied in order (see the module docstring). Empty means the identity.
    positions : {"last", "all"}, default "last"
    latent_std : Tensor of shape (d_sae,), optional
        Per-latent pre-activation standard deviation (:func:`preactivation_std`); required by
        ``"shift_z"`` edits.
    label : str, optional
        A human-readable name (e.g. ``"more Comedy"``), shown in tables and widgets.

    Raises
    ------
    TypeError, ValueError
        Not an SAE; a latent id outside ``0 .. d_sae - 1`` (the message gives the range); an SAE saved
        for another capture point; bad ``positions``; ``"shift_z"`` without a valid ``latent_std``.
    """

    sae: SparseAutoencoder
    capture_point: str
    edits: tuple[LatentEdit, ...] = ()
    positions: str = "last"
    latent_std: Tensor | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.sae, SparseAutoencoder):
            raise TypeError(f"sae must be a SparseAutoencoder, got {type(self.sae).__name__}")
        _check_capture_point_name(self.capture_point)
        saved = _sae_capture_point(self.sae)
        if saved is not None and saved != self.capture_point:
            raise ValueError(
                f"this SAE was trained at capture point {saved!r} (its saved metadata says so) but the "
                f"steering is at {self.capture_point!r}"
            )
        object.__setattr__(self, "positions", _check_positions(self.positions))
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
        capture_point: str,
        latents: Any,
        values: Any,
        positions: str,
        latent_std: Tensor | None = None,
        label: str = "",
    ) -> Steering:
        edits = tuple(LatentEdit(lat, op, val) for lat, val in _broadcast(latents, values, op))
        return cls(sae, capture_point, edits, positions, latent_std, label)

    @classmethod
    def identity(cls, sae: SparseAutoencoder, capture_point: str, positions: Positions = "last") -> Steering:
        """The empty steering (changes nothing). Introduced in chapter 5 (chapters/05_steering.ipynb)."""
        return cls(sae, capture_point, (), positions)

    @classmethod
    def add(
        cls, sae: SparseAutoencoder, capture_point: str, latents: int | Sequence[int], values: float | Sequence[float],
        *, positions: Positions = "last", label: str = "",
    ) -> Steering:
        """Add ``value * W_dec[latent] / s`` for each latent. Introduced in chapter 5 (chapters/05_steering.ipynb).

        ``values`` is one number (used for every latent) or one per latent.
        """
        return cls._make("add", sae, capture_point, latents, values, positions, label=label)

    @classmethod
    def set(
        cls, sae: SparseAutoencoder, capture_point: str, latents: int | Sequence[int], values: float | Sequence[float],
        *, positions: Positions = "last", label: str = "",
    ) -> Steering:
        """Clamp each latent's activation to ``value``. Introduced in chapter 5 (chapters/05_steering.ipynb)."""
        return cls._make("set", sae, capture_point, latents, values, positions, label=label)

    @classmethod
    def scale(
        cls, sae: SparseAutoencoder, capture_point: str, latents: int | Sequence[int], values: float | Sequence[float],
        *, positions: Positions = "last", label: str = "",
    ) -> Steering:
        """Multiply each latent's activation by ``value``. Introduced in chapter 5 (chapters/05_steering.ipynb)."""
        return cls._make("scale", sae, capture_point, latents, values, positions, label=label)

    @classmethod
    def ablate(
        cls, sae: SparseAutoencoder, capture_point: str, latents: int | Sequence[int],
        *, positions: Positions = "last", label: str = "",
    ) -> Steering:
        """Set each latent's activation to 0. Introduced in chapter 5 (chapters/05_steering.ipynb)."""
        return cls._make("ablate", sae, capture_point, latents, 0.0, positions, label=label)

    @classmethod
    def shift_z(
        cls, sae: SparseAutoencoder, capture_point: str, latents: int | Sequence[int], values: float | Sequence[float],
        latent_std: Tensor, *, positions: Positions = "last", label: str = "",
    ) -> Steering:
        """Shift each latent's pre-activation by ``value`` standard deviations (PopSteer-style).

        Introduced in chapter 5 (chapters/05_steering.ipynb). ``latent_std`` comes from
        :func:`preactivation_std`.
        """
        return cls._make("shift_z", sae, capture_point, latents, values, positions, latent_std, label)

    # ---- combination -------------------------------------------------------------------------------

    @staticmethod
    def combine(*steerings: Steering, label: str | None = None) -> Steering:
        """Concatenate the edits of several steerings (same SAE, capture point and positions).

        Introduced in chapter 5 (chapters/05_steering.ipynb). ``Steering.combine(more_comedy, less_horror)``
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
        return Steering(first.sae, first.capture_point, edits, first.positions, std, label)

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
        """The edits as a table (``latent, op, value``). Introduced in chapter 5 (chapters/05_steering.ipynb)."""
        return pd.DataFrame(
            {"latent": [e.latent for e in self.edits], "op": [e.op for e in self.edits],
             "value": [e.value for e in self.edits]},
            columns=["latent", "op", "value"],
        )

    def __repr__(self) -> str:
        body = ", ".join(str(e) for e in self.edits) or "identity"
        lab = f", label={self.label!r}" if self.label else ""
        return f"Steering({self.capture_point!r}, positions={self.positions!r}, [{body}]{lab})"

    def add_vector(self) -> Tensor:
        """Sum of the ``"add"`` edits as one ``(d_in,)`` vector (zeros if there are none).

        Introduced in chapter 5 (chapters/05_steering.ipynb).
        """
        sae = self.sae
        adds = [e for e in self.edits if e.op == "add" and e.value != 0.0]
        if not adds:
            return torch.zeros(sae.d_in, dtype=sae.W_dec.dtype, device=sae.W_dec.device)
        idx = torch.tensor([e.latent for e in adds], device=sae.W_dec.device)
        vals = torch.tensor([e.value for e in adds], dtype=sae.W_dec.dtype, device=sae.W_dec.device)
        return (vals @ sae.W_dec.detach()[idx]) / sae.input_scale

    # ---- application -------------------------------------------------------------------------------

    def apply(self, states: Tensor) -> Tensor:
        """Steer every non-padding row of ``states`` (shape ``(..., d_in)``) and return the new tensor.

        Introduced in chapter 5 (chapters/05_steering.ipynb). Position selection is the caller's job
        (:func:`steer` and :class:`SteeringCache` pass only the last position for ``positions="last"``).
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
        real = _real_rows(flat)
        if bool(real.all()):  # the usual case (last positions): no gather/scatter
            return (flat + self._delta(flat)).reshape(states.shape)
        if not bool(real.any()):
            return states
        rows = flat[real]
        new_rows = rows + self._delta(rows)
        out = flat.clone()
        out[real] = new_rows
        return out.reshape(states.shape)

    def _delta(self, x: Tensor) -> Tensor:
        """``(n, d)`` change of the real rows ``x``."""
        sae = self.sae
        delta: Tensor | None = None
        code_edits = [e for e in self.edits if e.op != "add" and not e.is_noop]
        if code_edits:
            was_training = sae.training
            if was_training:  # eval() walks every submodule: skip it when already in eval mode
                sae.eval()
            try:
                z = sae.encode(x)
                pre = sae.encode_pre(x) if any(e.op == "shift_z" for e in code_edits) else None
            finally:
                if was_training:
                    sae.train()
            topk_vals = None
            if pre is not None and sae.config.kind == "topk":
                topk_vals = pre.topk(min(sae.config.k + 1, sae.d_sae), dim=-1).values  # sorted, descending
            latents = list(dict.fromkeys(e.latent for e in code_edits))
            cur = {lat: z[:, lat] for lat in latents}
            cur_pre = {lat: pre[:, lat] for lat in latents} if pre is not None else {}
            for e in code_edits:
                lat = e.latent
                if e.op == "set":
                    cur[lat] = torch.full_like(cur[lat], e.value)
                elif e.op == "scale":
                    cur[lat] = cur[lat] * e.value
                elif e.op == "ablate":
                    cur[lat] = torch.zeros_like(cur[lat])
                else:  # shift_z
                    std = self.latent_std.to(pre.device, pre.dtype)  # type: ignore[union-attr]
                    shifted = cur_pre[lat] + e.value * std[lat]
                    cur_pre[lat] = shifted
                    cur[lat] = self._gate(shifted, pre[:, lat], topk_vals)  # type: ignore[index]
            idx = torch.tensor(latents, device=z.device)
            dz = torch.stack([cur[lat] - z[:, lat] for lat in latents], dim=1)
            delta = (dz @ sae.W_dec[idx]) / sae.input_scale
        if any(e.op == "add" and e.value != 0.0 for e in self.edits):
            v = self.add_vector()
            delta = v.expand(len(x), -1) if delta is None else delta + v
        if delta is None:
            return torch.zeros_like(x)
        return delta.to(device=x.device, dtype=x.dtype)

    def _gate(self, shifted: Tensor, original_pre: Tensor, topk_vals: Tensor | None) -> Tensor:
        """The SAE's activation applied to one latent's shifted pre-activation, other latents fixed."""
        sae = self.sae
        kind = sae.config.kind
        if kind == "relu":
            return torch.relu(shifted)
        if kind == "batchtopk":
            thr = sae.threshold.to(shifted)
            return shifted * (shifted > thr)
        k = sae.config.k
        assert topk_vals is not None
        kth = topk_vals[:, k - 1]
        member = original_pre >= kth
        if topk_vals.shape[1] > k:
            nxt = topk_vals[:, k]
        else:  # d_sae == k: every latent is always in the code
            nxt = torch.full_like(kth, float("-inf"))
        threshold = torch.where(member, nxt, kth)
        return torch.where(shifted >= threshold, torch.relu(shifted), torch.zeros_like(shifted))


@dataclass(frozen=True, eq=False)
class VectorSteering:
    """Add a fixed vector to the state at one capture point (no SAE involved).

    Introduced in chapter 5 (chapters/05_steering.ipynb) for the baselines of
    :mod:`seqsae_lib.steering.evaluation` (mean-difference vectors, raw hidden dimensions). Works everywhere a
    :class:`Steering` does (:func:`steer`, :func:`steered_scores`, :class:`SteeringCache`).

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
        _check_capture_point_name(self.capture_point)
        v = self.vector
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(v)
        if not isinstance(v, Tensor) or v.ndim != 1 or not v.is_floating_point():
            desc = f"shape {tuple(v.shape)}, dtype {v.dtype}" if isinstance(v, Tensor) else type(v).__name__
            raise TypeError(f"vector must be a 1-D float tensor of shape (d_model,), got {desc}")
        if not bool(torch.isfinite(v).all()):
            raise ValueError("vector contains NaN or inf")
        object.__setattr__(self, "vector", v.detach())
        object.__setattr__(self, "positions", _check_positions(self.positions))

    @classmethod
    def along(
        cls, capture_point: str, direction: Tensor, strength: float, *, positions: Positions = "last",
        normalize: bool = True, label: str = "",
    ) -> VectorSteering:
        """``strength`` times ``direction`` (divided by its norm when ``normalize``).

        Introduced in chapter 5 (chapters/05_steering.ipynb).

        Raises
        ------
        ValueError
            Non-finite strength, or a zero direction with ``normalize=True``.
        """
        s = _finite("strength", strength)
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

        Introduced in chapter 5 (chapters/05_steering.ipynb).
        """
        if not isinstance(states, Tensor) or states.ndim == 0 or states.shape[-1] != self.d_in:
            shape = tuple(states.shape) if isinstance(states, Tensor) else type(states).__name__
            raise ValueError(f"states must have shape (..., d_in={self.d_in}), got {shape}")
        if self.is_identity:
            return states
        real = _real_rows(states).unsqueeze(-1)
        v = self.vector.to(device=states.device, dtype=states.dtype)
        return torch.where(real, states + v, states)


StateSteering = Union[Steering, VectorSteering]
"""Anything that edits the state at a capture point: :class:`Steering` or :class:`VectorSteering`."""


# --------------------------------------------------------------------------------------------------------
# statistics for shift_z
# --------------------------------------------------------------------------------------------------------


@torch.no_grad()
def preactivation_std(
    sae: SparseAutoencoder, acts: ActivationStore | Tensor, batch_size: int = 4096
) -> Tensor:
    """Per-latent standard deviation of the SAE's pre-activations over stored states.

    Introduced in chapter 5 (chapters/05_steering.ipynb); the unit of ``"shift_z"`` edits.

    Parameters
    ----------
    sae : SparseAutoencoder
    acts : ActivationStore or Tensor of shape (n, d_in)
        States at the SAE's capture point (e.g. the store the SAE was trained on).
    batch_size : int, default 4096

    Returns
    -------
    Tensor of shape (d_sae,)
        Population standard deviation (float32), computed in float64 in one streaming pass.

    Raises
    ------
    TypeError, ValueError
        Not an SAE; activations of the wrong width, empty, or non-finite.
    """
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
    x = acts.acts if isinstance(acts, ActivationStore) else acts
    if not isinstance(x, Tensor) or x.ndim != 2:
        raise TypeError("acts must be an ActivationStore or an (n, d_in) tensor")
    if x.shape[1] != sae.d_in:
        raise ValueError(f"activations have width {x.shape[1]} but the SAE reads d_in={sae.d_in}")
    if len(x) == 0:
        raise ValueError("cannot compute a standard deviation from zero activations")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    total = torch.zeros(sae.d_sae, dtype=torch.float64)
    total_sq = torch.zeros(sae.d_sae, dtype=torch.float64)
    # shift by the first batch's mean for numerical stability
    ref = sae.encode_pre(x[: min(len(x), batch_size)]).double().mean(0).cpu()
    for start in range(0, len(x), batch_size):
        pre = sae.encode_pre(x[start : start + batch_size]).double().cpu() - ref
        total += pre.sum(0)
        total_sq += pre.pow(2).sum(0)
    n = len(x)
    var = (total_sq / n - (total / n) ** 2).clamp_min(0.0)
    return var.sqrt().float()


# --------------------------------------------------------------------------------------------------------
# running steered models
# --------------------------------------------------------------------------------------------------------


@contextmanager
def steer(model: nn.Module, steering: StateSteering | None) -> Iterator[None]:
    """Steer every forward pass of ``model`` run inside the ``with`` block.

    Introduced in chapter 5 (chapters/05_steering.ipynb). Built on :func:`seqsae_lib.model.capture.intervene`
    at ``steering.capture_point`` with ``steering.positions``; it also applies to
    :meth:`~seqsae_lib.model.sasrec.SASRec.forward_from` started at that capture point. The SAE is put in eval
    mode inside the block (its mode is restored). ``None`` steers nothing.

    Raises
    ------
    UnknownCapturePointError
        The capture point does not exist in the model (the message lists the valid ones).
    ValueError
        The SAE (or vector) width differs from the model's.

    Examples
    --------
    >>> more_comedy = Steering.add(sae, "final", [12, 40], 3.0)
    >>> with steer(model, more_comedy):
    ...     scores = model.scores(input_ids)
    """
    if steering is None:
        yield
        return
    _check_model(model)
    _check_against_model(model, steering)
    sae = steering.sae if isinstance(steering, Steering) else None
    was_training = sae.training if sae is not None else False
    if was_training:
        sae.eval()  # type: ignore[union-attr]
    try:
        with intervene(model, steering.capture_point, steering.apply, positions=steering.positions):  # type: ignore[arg-type]
            yield
    finally:
        if was_training:
            sae.train()  # type: ignore[union-attr]


@torch.no_grad()
def steered_scores(model: nn.Module, steering: StateSteering | None, input_ids: Tensor) -> Tensor:
    """Next-item scores ``(B, num_items + 1)`` of the steered model (the hook path).

    Introduced in chapter 5 (chapters/05_steering.ipynb). The model runs in eval mode without gradients
    (its mode is restored). ``steering=None`` gives the unsteered scores.
    """
    _check_model(model)
    was_training = model.training
    if was_training:
        model.eval()
    try:
        with steer(model, steering):
            return model.scores(input_ids)  # type: ignore[operator]
    finally:
        if was_training:
            model.train()


class SteeringCache:
    """The fast path: compute the state at a capture point once, then score many steerings cheaply.

    Introduced in chapter 5 (chapters/05_steering.ipynb), for the interactive widget and for strength
    grids (:func:`seqsae_lib.steering.evaluation.evaluate_steering`).

    * At ``"final"`` only the ``(B, d)`` last states are kept; a steering costs an edit of those rows
      and one product with the item table: ``scores = model.score(steering.apply(h_last))``. Every
      position of the final state except the last is irrelevant to the scores, so ``positions="last"``
      and ``"all"`` give the same result here.
    * At an inner capture point the ``(B, L, d)`` states of the left-trimmed window are kept; a steering
      edits them (last position or all non-padding positions) and the remaining blocks run from there
      with :meth:`~seqsae_lib.model.sasrec.SASRec.forward_from`.

    The results equal the hook path (:func:`steered_scores`) up to float rounding. Do not use a cache
    inside an active :func:`steer` block on the same model (the steering would apply twice at inner
    points).

    Parameters
    ----------
    model : SASRec
    input_ids : Tensor of shape (B, L)
        Left-padded ids; columns that are padding for every row are trimmed.
    capture_point : str

    Raises
    ------
    UnknownCapturePointError
        Unknown capture point (the message lists the valid ones).
    ValueError, TypeError
        Bad ``input_ids`` (see :class:`~seqsae_lib.model.sasrec.SASRec`).
    """

    @torch.no_grad()
    def __init__(self, model: nn.Module, input_ids: Tensor, capture_point: str) -> None:
        _check_model(model)
        model.hook_point(capture_point)  # validates the name
        if not isinstance(input_ids, Tensor) or input_ids.ndim != 2:
            raise ValueError(
                "input_ids must be a (batch, length) integer tensor, got "
                + (f"shape {tuple(input_ids.shape)}" if isinstance(input_ids, Tensor) else type(input_ids).__name__)
            )
        self.model = model
        self.capture_point = capture_point
        dev = model.item_emb.weight.device  # type: ignore[union-attr]
        (ids,) = trim_left_padding(input_ids.to(dev))
        self.input_ids = ids
        self.state = cached_last_state(model, ids, capture_point)
        self._base: Tensor | None = self.state if capture_point == "final" else None

    @property
    def d_model(self) -> int:
        """Width of the cached states."""
        return int(self.state.shape[-1])

    @torch.no_grad()
    def final_states(self, steering: StateSteering | None = None) -> Tensor:
        """``(B, d)`` final states at the last position under ``steering`` (``None``: unsteered).

        Introduced in chapter 5 (chapters/05_steering.ipynb).
        """
        if steering is None or steering.is_identity:
            if steering is not None:
                _check_against_model(self.model, steering)
                self._check_point(steering)
            if self._base is None:
                self._base = _final_last(self.model, self.capture_point, self.state, self.input_ids)
            return self._base
        _check_against_model(self.model, steering)
        self._check_point(steering)
        return _final_last(self.model, self.capture_point, self.state, self.input_ids, steering)

    def scores(self, steering: StateSteering | None = None) -> Tensor:
        """``(B, num_items + 1)`` scores under ``steering``; column 0 is ``-inf``.

        Introduced in chapter 5 (chapters/05_steering.ipynb).
        """
        with torch.no_grad():
            return self.model.score(self.final_states(steering))  # type: ignore[operator]

    def _check_point(self, steering: StateSteering) -> None:
        if steering.capture_point != self.capture_point:
            raise ValueError(
                f"this cache holds states at {self.capture_point!r} but the steering is at "
                f"{steering.capture_point!r}; build a SteeringCache at {steering.capture_point!r}"
            )

    def __repr__(self) -> str:
        return f"SteeringCache({self.capture_point!r}, batch={self.input_ids.shape[0]}, length={self.input_ids.shape[1]})"


def _final_last(
    model: nn.Module, capture_point: str, state: Tensor, input_ids: Tensor, steering: StateSteering | None = None
) -> Tensor:
    """Final states at the last position from a cached state, optionally steered."""
    was_model = model.training
    if was_model:
        model.eval()
    try:
        if capture_point == "final":
            return state if steering is None else steering.apply(state)
        hidden = state
        if steering is not None:
            if steering.positions == "last":
                hidden = state.clone()
                hidden[:, -1] = steering.apply(state[:, -1])
            else:
                hidden = steering.apply(state)
        return model.forward_from(capture_point, hidden, input_ids)[:, -1]  # type: ignore[operator]
    finally:
        if was_model:
            model.train()


@torch.no_grad()
def cached_last_state(model: nn.Module, input_ids: Tensor, capture_point: str) -> Tensor:
    """The state a steering needs, computed once: the function form of :class:`SteeringCache`.

    Introduced in chapter 5 (chapters/05_steering.ipynb).

    Returns
    -------
    Tensor
        At ``"final"``: ``(B, d)``, the final state at the last position (all the scores need). At an inner
        capture point: ``(B, L, d)``, the state at every position of ``input_ids`` (``forward_from`` needs
        them all). Trim common left padding first (:func:`~seqsae_lib.data.batching.trim_left_padding`) to keep
        ``L`` small; pass the same ``input_ids`` to :func:`scores_from_state`.
    """
    _check_model(model)
    model.hook_point(capture_point)
    was_training = model.training
    if was_training:
        model.eval()
    try:
        if capture_point == "final":
            return model.last_hidden(input_ids)  # type: ignore[operator]
        with record(model, capture_point) as rec:
            model(input_ids)
        return rec[capture_point]
    finally:
        if was_training:
            model.train()


@torch.no_grad()
def scores_from_state(
    model: nn.Module, capture_point: str, state: Tensor, input_ids: Tensor, steering: StateSteering | None = None
) -> Tensor:
    """Scores ``(B, num_items + 1)`` from a :func:`cached_last_state` result, optionally steered.

    Introduced in chapter 5 (chapters/05_steering.ipynb). At ``"final"`` this is
    ``model.score(steering.apply(state))``: a few small matrix products, no transformer pass.

    Raises
    ------
    UnknownCapturePointError, ValueError
        Unknown capture point; a steering at another capture point or of another width; a ``state`` of
        the wrong shape.
    """
    _check_model(model)
    model.hook_point(capture_point)
    d = int(model.d_model)  # type: ignore[arg-type]
    expected = (input_ids.shape[0], d) if capture_point == "final" else (*input_ids.shape, d)
    if not isinstance(state, Tensor) or tuple(state.shape) != tuple(expected):
        shape = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
        raise ValueError(f"state at {capture_point!r} must have shape {tuple(expected)} for these input_ids, got {shape}")
    if steering is not None:
        _check_against_model(model, steering)
        if steering.capture_point != capture_point:
            raise ValueError(
                f"the state is at {capture_point!r} but the steering is at {steering.capture_point!r}"
            )
    return model.score(_final_last(model, capture_point, state, input_ids, steering))  # type: ignore[operator]
