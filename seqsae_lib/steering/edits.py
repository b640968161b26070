"""Edits of SAE latents and what they do to a hidden state (the arithmetic behind every steering).

Introduced in chapter 5.

A *steering* says how to change the residual stream at one capture point of a
:class:`~seqsae_lib.model.sasrec.SASRec` before the rest of the network (and the tied scoring head) runs. A
:class:`~seqsae_lib.steering.latent_steering.Steering` is a list of :class:`LatentEdit` (one of :data:`OPS`
each); :func:`edit_delta` is what the list does to a batch of states.

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

Only where the latent fires (``active_only=True``)
--------------------------------------------------
A ``"set"``, ``"shift_z"``, ``"scale"`` or ``"ablate"`` edit with ``active_only=True`` changes a state only
if the latent fires in that state's own (unedited) code, ``z[latent] > 0``; elsewhere the latent stays
off. Such an edit depends on each user's state by construction: users whose latent is silent are not
touched, and a clamp moves each active user by a different amount. ``"scale"`` and ``"ablate"`` already
leave silent latents at 0, so for them the flag changes nothing; ``"add"`` ignores the code and refuses
it.

Positions: ``positions="last"`` edits only the most recent position (the one the model recommends
from); ``"all"`` edits every non-padding position, so at an inner capture point later layers also
attend to steered earlier positions. Padding states (exactly zero vectors) are never touched.

The objects that carry edits are :class:`~seqsae_lib.steering.latent_steering.Steering` (SAE latents) and
:class:`~seqsae_lib.steering.vector_steering.VectorSteering` (a plain vector); running them on a model is
:mod:`seqsae_lib.steering.scoring`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from seqsae_lib.sae import ActivationStore
from seqsae_lib.sae import SparseAutoencoder
from seqsae_lib.utils.checks import check_float, check_int
from seqsae_lib.utils.torchutils import eval_mode

__all__ = [
    "OPS",
    "POSITIONS",
    "LatentEdit",
    "add_vector",
    "edit_delta",
    "finite_number",
    "preactivation_std",
]

OPS: tuple[str, ...] = ("add", "set", "scale", "ablate", "shift_z")
"""The latent edit operations of :class:`LatentEdit` (see the module docstring)."""

POSITIONS: tuple[str, ...] = ("last", "all")
"""Which positions a steering edits: the most recent one, or every non-padding one."""

Op = Literal["add", "set", "scale", "ablate", "shift_z"]
Positions = Literal["last", "all"]


def finite_number(name: str, value: Any) -> float:
    """:func:`~seqsae_lib.utils.checks.check_float` that also accepts a one-element tensor (a strength, a value).

    Introduced in chapter 5.
    """
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    return check_float(name, value)


@dataclass(frozen=True)
class LatentEdit:
    """One edit of one SAE latent: ``op`` in :data:`OPS` with a ``value``.

    Introduced in chapter 5. The meaning of each operation is in the module
    docstring of :mod:`seqsae_lib.steering.edits`. The latent id is checked against an SAE when the edit is put
    into a :class:`~seqsae_lib.steering.latent_steering.Steering`.

    Raises
    ------
    ValueError
        Unknown ``op`` (the message lists :data:`OPS`), a negative latent id, a non-finite ``value``, a
        negative value for ``"set"`` or ``"scale"`` (codes are non-negative: push away with a negative
        ``"add"`` or ``"shift_z"`` instead), a non-zero value for ``"ablate"``, ``active_only=True`` on an
        ``"add"`` edit.
    TypeError
        ``active_only`` that is not a bool.
    """

    latent: int
    """Latent index ``0 .. d_sae - 1``."""
    op: str
    """One of :data:`OPS`."""
    value: float = 0.0
    """Amount (``"add"``: state units; ``"set"``: activation; ``"scale"``: factor; ``"shift_z"``: standard
    deviations of the pre-activation; ``"ablate"``: unused, 0)."""
    active_only: bool = False
    """Edit only states where the latent fires in their own code (see the module docstring); not for ``"add"``."""

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown steering op {self.op!r}; valid ops are {list(OPS)}")
        lat = self.latent
        if isinstance(lat, Tensor) and lat.numel() == 1:
            lat = lat.item()
        lat = check_int("latent", lat)
        if lat < 0:
            raise ValueError(f"latent id {lat} is negative; latent ids are 0 .. d_sae - 1")
        value = finite_number(f"value of the {self.op!r} edit of latent {lat}", self.value)
        if self.op in ("set", "scale") and value < 0:
            raise ValueError(
                f"{self.op!r} needs a value >= 0 (SAE activations are non-negative), got {value}; "
                "to push away from a latent use 'add' or 'shift_z' with a negative value"
            )
        if self.op == "ablate" and value != 0.0:
            raise ValueError(f"'ablate' takes no value (it sets the activation to 0), got value={value}")
        if not isinstance(self.active_only, (bool, np.bool_)):
            raise TypeError(f"active_only must be a bool, got {type(self.active_only).__name__} ({self.active_only!r})")
        if self.active_only and self.op == "add":
            raise ValueError(
                "'add' pushes along the decoder direction whatever the code, so active_only=True does not apply; "
                "use 'set', 'scale' or 'shift_z' with active_only=True to edit only where the latent fires"
            )
        object.__setattr__(self, "latent", int(lat))
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "active_only", bool(self.active_only))

    @property
    def is_noop(self) -> bool:
        """Whether the edit leaves every state unchanged by construction (zero add/shift, scale by 1)."""
        return (self.op in ("add", "shift_z") and self.value == 0.0) or (self.op == "scale" and self.value == 1.0)

    def __str__(self) -> str:
        only = ", active only" if self.active_only else ""
        if self.op == "ablate":
            return f"ablate({self.latent}{only})"
        return f"{self.op}({self.latent}, {self.value:+g}{only})"


def add_vector(sae: SparseAutoencoder, edits: Sequence[LatentEdit]) -> Tensor:
    """Sum of the ``"add"`` edits as one ``(d_in,)`` vector (zeros if there are none).

    Introduced in chapter 5.
    """
    adds = [e for e in edits if e.op == "add" and e.value != 0.0]
    if not adds:
        return torch.zeros(sae.d_in, dtype=sae.W_dec.dtype, device=sae.W_dec.device)
    idx = torch.tensor([e.latent for e in adds], device=sae.W_dec.device)
    vals = torch.tensor([e.value for e in adds], dtype=sae.W_dec.dtype, device=sae.W_dec.device)
    return (vals @ sae.W_dec.detach()[idx]) / sae.input_scale


def edit_delta(
    sae: SparseAutoencoder, x: Tensor, edits: Sequence[LatentEdit], latent_std: Tensor | None = None
) -> Tensor:
    """``(n, d)`` change of the states ``x`` (real rows, no padding) under ``edits``, in order.

    Introduced in chapter 5: the arithmetic of the module docstring (the SAE's
    error term is kept; ``"add"`` edits are summed and applied after the code edits). ``latent_std``
    (:func:`preactivation_std`) is needed by ``"shift_z"`` edits. The SAE is used in eval mode.
    """
    delta: Tensor | None = None
    code_edits = [e for e in edits if e.op != "add" and not e.is_noop]
    if code_edits:
        with eval_mode(sae if sae.training else None):  # eval() walks every submodule: skip it when possible
            z = sae.encode(x)
            pre = sae.encode_pre(x) if any(e.op == "shift_z" for e in code_edits) else None
        topk_vals = None
        if pre is not None and sae.config.kind == "topk":
            topk_vals = pre.topk(min(sae.config.k + 1, sae.d_sae), dim=-1).values  # sorted, descending
        latents = list(dict.fromkeys(e.latent for e in code_edits))
        cur = {lat: z[:, lat] for lat in latents}
        cur_pre = {lat: pre[:, lat] for lat in latents} if pre is not None else {}
        for e in code_edits:
            lat = e.latent
            if e.op == "set":
                new = torch.full_like(cur[lat], e.value)
            elif e.op == "scale":
                new = cur[lat] * e.value
            elif e.op == "ablate":
                new = torch.zeros_like(cur[lat])
            else:  # shift_z
                std = latent_std.to(pre.device, pre.dtype)  # type: ignore[union-attr]
                shifted = cur_pre[lat] + e.value * std[lat]
                if e.active_only:
                    shifted = torch.where(z[:, lat] > 0, shifted, cur_pre[lat])
                cur_pre[lat] = shifted
                new = _gate(sae, shifted, pre[:, lat], topk_vals)  # type: ignore[index]
            # active_only: states whose own code does not fire the latent keep their current value
            cur[lat] = torch.where(z[:, lat] > 0, new, cur[lat]) if e.active_only else new
        idx = torch.tensor(latents, device=z.device)
        dz = torch.stack([cur[lat] - z[:, lat] for lat in latents], dim=1)
        delta = (dz @ sae.W_dec[idx]) / sae.input_scale
    if any(e.op == "add" and e.value != 0.0 for e in edits):
        v = add_vector(sae, edits)
        delta = v.expand(len(x), -1) if delta is None else delta + v
    if delta is None:
        return torch.zeros_like(x)
    return delta.to(device=x.device, dtype=x.dtype)


def _gate(sae: SparseAutoencoder, shifted: Tensor, original_pre: Tensor, topk_vals: Tensor | None) -> Tensor:
    """The SAE's activation applied to one latent's shifted pre-activation, other latents fixed."""
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


@torch.no_grad()
def preactivation_std(
    sae: SparseAutoencoder, acts: ActivationStore | Tensor, batch_size: int = 4096
) -> Tensor:
    """Per-latent standard deviation of the SAE's pre-activations over stored states.

    Introduced in chapter 5; the unit of ``"shift_z"`` edits.

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
    batch_size = check_int("batch_size", batch_size, minimum=1)
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
