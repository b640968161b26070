"""Sparse autoencoders (SAEs) on stored activation vectors.

Introduced in chapter 3 (chapters/03_sae.ipynb).

An SAE rewrites an activation vector ``x`` (width ``d_in``) as a sparse, non-negative combination of
``d_sae`` learned directions (the rows of the decoder):

.. math::

    \\text{pre} = (s\\,x - b_\\text{dec})\\,W_\\text{enc} + b_\\text{enc}, \\qquad
    z = \\sigma(\\text{pre}), \\qquad
    \\hat x = (z\\,W_\\text{dec} + b_\\text{dec}) / s

where ``s`` is the input scale (1 unless ``normalize_input``) and ``sigma`` is one of three sparsifying
activations (``SAEConfig.kind``):

* ``"topk"`` (Gao et al. 2024): keep the ``k`` largest pre-activations of each row, ReLU them;
* ``"batchtopk"`` (Bussmann et al. 2024): during training keep the ``k * batch`` largest pre-activations
  of the whole batch (rows share the budget); at inference a learned threshold replaces the batch;
* ``"relu"``: ReLU plus an L1 penalty weighted by the decoder row norms (Anthropic's recipe).

The module works on plain float tensors ``(n, d_in)`` and knows nothing about the recommender that
produced them. The training loop lives in :mod:`seqsae_lib.sae.training`, the reconstruction metrics in
:mod:`seqsae_lib.sae.metrics`.

Dead latents have one definition everywhere in the library (:func:`is_dead`): a latent is *dead* if it
fires on fewer than one in ``dead_after`` vectors. During training this is "has not fired in the last
``dead_after`` training vectors"; on a fixed evaluation set of ``n`` vectors it is "firing frequency below
``1 / dead_after``", which for ``n <= dead_after`` means "never fired on the set".
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from seqsae_lib.utils.fileio import (
    differences, load_meta, load_state, module_weights_sha256, paired_paths, save_state_with_meta,
)
from seqsae_lib.utils.fileio import to_jsonable as _to_jsonable
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "SAE_KINDS",
    "DEFAULT_DEAD_AFTER",
    "SAEConfig",
    "SAEOutput",
    "SparseAutoencoder",
    "SAEFileError",
    "SAEMetadataMismatchError",
    "is_dead",
    "sae_paths",
    "check_sae_matches_model",
]

SAE_KINDS: tuple[str, ...] = ("topk", "batchtopk", "relu")
"""The sparsifying activations :class:`SparseAutoencoder` implements."""

DEFAULT_DEAD_AFTER: int = 20_000
"""Default of :attr:`SAEConfig.dead_after`: a latent silent for this many vectors counts as dead."""

FORMAT = "seqsae-sae"
FORMAT_VERSION = 1

SAEKind = Literal["topk", "batchtopk", "relu"]


# --------------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_float(name: str, value: Any, minimum: float = 0.0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    if not math.isfinite(float(value)) or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum}, got {value!r}")


@dataclass
class SAEConfig:
    """Architecture and loss settings of a :class:`SparseAutoencoder`.

    Introduced in chapter 3 (chapters/03_sae.ipynb).

    Raises
    ------
    TypeError, ValueError
        On construction, if a field has the wrong type or an invalid value (the message names the field).
    """

    d_in: int
    """Width of the activation vectors the SAE reads (the recommender's hidden size)."""

    d_sae: int
    """Dictionary size: the number of latents (decoder rows). Usually a multiple of ``d_in``."""

    kind: SAEKind = "topk"
    """Sparsifying activation: ``"topk"`` (k per row), ``"batchtopk"`` (k per row on average over a
    batch, a learned threshold at inference) or ``"relu"`` (ReLU with an L1 penalty)."""

    k: int = 32
    """Active latents per vector for ``"topk"`` and (on average) for ``"batchtopk"``; unused by ``"relu"``."""

    l1_coefficient: float = 1e-2
    """Weight of the L1 penalty ``mean_n sum_i z_i * ||W_dec[i]||`` for ``"relu"``; ignored otherwise. Its
    scale is relative to the per-element MSE of (normalised) inputs."""

    aux_k: int | None = None
    """Number of dead latents the AuxK loss (Gao et al. 2024) may use to reconstruct the residual error.
    ``None`` resolves to ``min(2 * d_in, d_sae)``."""

    aux_coefficient: float = 1.0 / 32.0
    """Weight of the AuxK loss (1/32 as in Gao et al. 2024); 0 disables it."""

    dead_after: int = DEFAULT_DEAD_AFTER
    """A latent is dead if it fires on fewer than one in ``dead_after`` vectors: in training, if it has not
    fired in the last ``dead_after`` training vectors (see :func:`is_dead`)."""

    normalize_input: bool = True
    """Scale inputs by a constant ``s`` so that their mean squared norm is ``d_in`` (``s`` is estimated
    from data by :meth:`SparseAutoencoder.init_input_scale`). Makes learning rates and L1 coefficients
    transferable between models; :meth:`SparseAutoencoder.fold_normalization` folds ``s`` into the
    weights afterwards."""

    unit_norm_decoder: bool = True
    """Keep decoder rows at unit norm during training (the trainer renormalises after every step and
    removes the gradient component parallel to each row)."""

    sparse_decode: bool = True
    """Decode ``"topk"`` codes (and ``"batchtopk"`` codes in training) from the indices of the active
    latents with ``torch.nn.functional.embedding_bag`` instead of a dense ``z @ W_dec``. Same result;
    faster when ``k << d_sae`` (measured on CPU in chapter 3)."""

    threshold_momentum: float = 0.99
    """``"batchtopk"`` only: momentum of the running average of the smallest kept activation per training
    batch, which becomes the inference threshold."""

    seed: int = 0
    """Seed of the weight initialisation (a private generator: the global RNG is not touched)."""

    capture_point: str | None = None
    """Where in the recommender the SAE reads its ``d_in``-wide states (a capture point name such as
    ``"final"`` or ``"block_0"``). :func:`~seqsae_lib.sae.training.train_sae` sets it from the activation
    store it trains on; it is saved and loaded with the weights, and steering, explanations, the atlas and
    fidelity read it from the SAE (a different capture point is an error). ``None`` for an SAE trained on
    other vectors (toy data)."""

    def __post_init__(self) -> None:
        _check_int("d_in", self.d_in, 1)
        _check_int("d_sae", self.d_sae, 1)
        if self.kind not in SAE_KINDS:
            raise ValueError(f"kind must be one of {SAE_KINDS}, got {self.kind!r}")
        _check_int("k", self.k, 1)
        if self.kind in ("topk", "batchtopk") and self.k > self.d_sae:
            raise ValueError(f"k must be <= d_sae for kind={self.kind!r}, got k={self.k} > d_sae={self.d_sae}")
        _check_float("l1_coefficient", self.l1_coefficient)
        if self.aux_k is None:
            self.aux_k = min(2 * int(self.d_in), int(self.d_sae))
        _check_int("aux_k", self.aux_k, 1)
        if self.aux_k > self.d_sae:
            raise ValueError(f"aux_k must be <= d_sae, got aux_k={self.aux_k} > d_sae={self.d_sae}")
        _check_float("aux_coefficient", self.aux_coefficient)
        _check_int("dead_after", self.dead_after, 1)
        for name in ("normalize_input", "unit_norm_decoder", "sparse_decode"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        _check_float("threshold_momentum", self.threshold_momentum)
        if not 0.0 <= self.threshold_momentum < 1.0:
            raise ValueError(f"threshold_momentum must be in [0, 1), got {self.threshold_momentum}")
        _check_int("seed", self.seed, 0)
        if self.capture_point is not None and (not isinstance(self.capture_point, str) or not self.capture_point):
            raise TypeError(f"capture_point must be None or a capture point name, got {self.capture_point!r}")
        # plain Python types, so the config is JSON-able
        for name in ("d_in", "d_sae", "k", "aux_k", "dead_after", "seed"):
            setattr(self, name, int(getattr(self, name)))
        for name in ("l1_coefficient", "aux_coefficient", "threshold_momentum"):
            setattr(self, name, float(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict.

        Introduced in chapter 3 (chapters/03_sae.ipynb).
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        """Rebuild a config from :meth:`to_dict`'s output.

        Introduced in chapter 3 (chapters/03_sae.ipynb).

        Raises
        ------
        ValueError
            If ``data`` has keys that are not fields of :class:`SAEConfig`.
        """
        if not isinstance(data, dict):
            raise TypeError(f"SAEConfig.from_dict expects a dict, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown SAEConfig field(s) {unknown}; expected a subset of {sorted(names)}")
        return cls(**data)


def is_dead(vectors_since_fired: Tensor, dead_after: int) -> Tensor:
    """The library's single definition of a dead latent, for training-time counters.

    Introduced in chapter 3 (chapters/03_sae.ipynb).

    Parameters
    ----------
    vectors_since_fired : Tensor of shape (d_sae,)
        Per latent, the number of training vectors seen since it last fired (was > 0).
    dead_after : int
        A latent that has not fired in the last ``dead_after`` vectors is dead.

    Returns
    -------
    Tensor of bool, shape (d_sae,)
        ``vectors_since_fired >= dead_after``. On a fixed set of vectors the same rule reads "firing
        frequency below ``1 / dead_after``" (:func:`seqsae_lib.sae.metrics.dead_fraction`).
    """
    _check_int("dead_after", dead_after, 1)
    return vectors_since_fired >= dead_after


# --------------------------------------------------------------------------------------------------------
# the module
# --------------------------------------------------------------------------------------------------------


@dataclass
class SAEOutput:
    """What :meth:`SparseAutoencoder.forward` returns.

    Introduced in chapter 3 (chapters/03_sae.ipynb).

    Losses are computed in the SAE's internal units (inputs multiplied by ``input_scale``), so that they
    are comparable between models; ``x_hat`` is in the units of the input.
    """

    x_hat: Tensor
    """Reconstruction, same shape and units as the input."""

    z: Tensor
    """Latent activations, shape ``(..., d_sae)``, non-negative and sparse."""

    pre: Tensor
    """Pre-activations ``(s x - b_dec) W_enc + b_enc``, shape ``(..., d_sae)``."""

    loss: Tensor
    """Total training loss: ``mse + aux_coefficient * aux_loss + l1_coefficient * l1_loss``."""

    mse: Tensor
    """Mean squared reconstruction error per element (mean over vectors and dimensions)."""

    aux_loss: Tensor
    """AuxK loss (0 when no dead mask was given, no latent is dead, or ``aux_coefficient == 0``)."""

    l1_loss: Tensor
    """``mean_n sum_i z_i ||W_dec[i]||`` for ``kind="relu"``, else 0."""


class SAEFileError(ValueError):
    """A saved SAE is missing, truncated, corrupt or inconsistent.

    Introduced in chapter 3 (chapters/03_sae.ipynb).
    """


class SAEMetadataMismatchError(SAEFileError):
    """A saved SAE's metadata differs from what the caller expected (e.g. another capture point).

    Introduced in chapter 3 (chapters/03_sae.ipynb).
    """


class SparseAutoencoder(nn.Module):
    """A sparse autoencoder with TopK, BatchTopK or ReLU+L1 latents.

    Introduced in chapter 3 (chapters/03_sae.ipynb).

    Parameters
    ----------
    config : SAEConfig

    Attributes
    ----------
    W_enc : Parameter, shape (d_in, d_sae)
        Encoder; initialised as ``W_dec.T``.
    b_enc : Parameter, shape (d_sae,)
        Encoder bias; initialised to zeros.
    W_dec : Parameter, shape (d_sae, d_in)
        Decoder; row ``i`` is latent ``i``'s direction. Random unit rows at initialisation.
    b_dec : Parameter, shape (d_in,)
        Decoder bias, subtracted before encoding; set from data by :meth:`init_b_dec`.
    input_scale : buffer, scalar
        The constant ``s`` multiplying inputs (1 unless ``config.normalize_input``).
    threshold : buffer, scalar (``"batchtopk"`` only)
        Inference threshold; negative until estimated.
    metadata : dict
        The metadata of the last :meth:`save` or :meth:`load` (empty otherwise).

    Notes
    -----
    Inputs may have any number of leading dimensions, ``(..., d_in)``; ``"batchtopk"`` treats all of them
    as one batch. Inputs are moved to the SAE's device and floating dtype.
    """

    W_enc: nn.Parameter
    b_enc: nn.Parameter
    W_dec: nn.Parameter
    b_dec: nn.Parameter
    input_scale: Tensor
    threshold: Tensor

    def __init__(self, config: SAEConfig) -> None:
        super().__init__()
        if not isinstance(config, SAEConfig):
            raise TypeError(f"config must be an SAEConfig, got {type(config).__name__}")
        self.config = config
        d_in, d_sae = config.d_in, config.d_sae
        gen = torch.Generator().manual_seed(config.seed)
        w_dec = torch.randn(d_sae, d_in, generator=gen)
        w_dec = w_dec / w_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.T.clone().contiguous())
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("input_scale", torch.tensor(1.0))
        if config.kind == "batchtopk":
            self.register_buffer("threshold", torch.tensor(-1.0))
        self.metadata: dict[str, Any] = {}

    # ---- small helpers -------------------------------------------------------------------------------

    @property
    def d_in(self) -> int:
        """Input width (``config.d_in``). Introduced in chapter 3 (chapters/03_sae.ipynb)."""
        return self.config.d_in

    @property
    def capture_point(self) -> str | None:
        """Where in the recommender this SAE reads (``config.capture_point``); ``None`` if not recorded.

        Introduced in chapter 3 (chapters/03_sae.ipynb).
        """
        return self.config.capture_point

    def check_capture_point(self, capture_point: str | None) -> str:
        """The capture point to use with this SAE: its own, which ``capture_point`` (if given) must equal.

        Introduced in chapter 3 (chapters/03_sae.ipynb).

        Raises
        ------
        ValueError
            If ``capture_point`` differs from the SAE's own, or neither is known.
        """
        own = self.config.capture_point
        if capture_point is not None and not isinstance(capture_point, str):
            raise TypeError(f"capture_point must be a capture point name, got {capture_point!r}")
        if own is not None and capture_point is not None and capture_point != own:
            raise ValueError(f"this SAE reads SASRec at {own!r}, not {capture_point!r}: its weights mean nothing "
                             f"there. Use capture point {own!r}, or train an SAE on states collected at "
                             f"{capture_point!r}")
        point = own if own is not None else capture_point
        if point is None:
            raise ValueError("this SAE does not record where it reads SASRec (it was trained on plain vectors); "
                             "pass capture_point=..., or train it on an ActivationStore")
        return point

    @property
    def d_sae(self) -> int:
        """Number of latents (``config.d_sae``). Introduced in chapter 3 (chapters/03_sae.ipynb)."""
        return self.config.d_sae

    @property
    def device(self) -> torch.device:
        """Device of the parameters. Introduced in chapter 3 (chapters/03_sae.ipynb)."""
        return self.W_dec.device

    def extra_repr(self) -> str:
        """Shown by ``repr(sae)``. Introduced in chapter 3 (chapters/03_sae.ipynb)."""
        c = self.config
        extra = f", k={c.k}" if c.kind != "relu" else f", l1_coefficient={c.l1_coefficient}"
        return f"kind={c.kind!r}, d_in={c.d_in}, d_sae={c.d_sae}{extra}"

    def _check(self, x: Tensor, width: int, what: str, check_finite: bool = True) -> Tensor:
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
        x = x.to(device=self.W_dec.device, dtype=self.W_dec.dtype)
        if check_finite and not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"{what} contain NaN or inf ({bad} non-finite values in a tensor of shape {tuple(x.shape)})")
        return x

    # ---- data-dependent initialisation -------------------------------------------------------------------

    @torch.no_grad()
    def init_input_scale(self, x_sample: Tensor) -> float:
        """Set ``input_scale`` so that ``input_scale * x`` has mean squared norm ``d_in`` on the sample.

        Introduced in chapter 3 (chapters/03_sae.ipynb). Called by the trainer when
        ``config.normalize_input``; call before :meth:`init_b_dec`.

        Parameters
        ----------
        x_sample : Tensor of shape (n, d_in)

        Returns
        -------
        float
            The new scale.
        """
        x = self._check(x_sample, self.d_in, "activations").reshape(-1, self.d_in)
        mean_sq = float(x.double().pow(2).sum(dim=1).mean()) if len(x) else 0.0
        if not mean_sq > 0.0:
            raise ValueError("cannot normalise inputs: the sample is empty or all zeros")
        scale = math.sqrt(self.d_in / mean_sq)
        self.input_scale.fill_(scale)
        return scale

    @torch.no_grad()
    def init_b_dec(
        self, x_sample: Tensor, method: Literal["geometric_median", "mean"] = "geometric_median", max_iter: int = 100
    ) -> Tensor:
        """Initialise ``b_dec`` to the geometric median (default) or the mean of a data sample.

        Introduced in chapter 3 (chapters/03_sae.ipynb).

        The geometric median (the point minimising the summed Euclidean distance to the sample) is the
        choice of Gao et al. (2024) and Anthropic; it is computed in the SAE's internal units (after
        ``input_scale``) with Weiszfeld's iteration, started at the mean.

        Parameters
        ----------
        x_sample : Tensor of shape (n, d_in)
            A few thousand activation vectors are plenty.
        method : {"geometric_median", "mean"}
        max_iter : int, default 100
            Weiszfeld iterations (stops earlier once the estimate moves by < 1e-6 relative).

        Returns
        -------
        Tensor of shape (d_in,)
            The new ``b_dec`` (a copy).
        """
        if method not in ("geometric_median", "mean"):
            raise ValueError(f"method must be 'geometric_median' or 'mean', got {method!r}")
        x = self._check(x_sample, self.d_in, "activations").reshape(-1, self.d_in)
        if len(x) == 0:
            raise ValueError("cannot initialise b_dec from an empty sample")
        x = (x * self.input_scale).double()
        center = x.mean(dim=0)
        if method == "geometric_median":
            for _ in range(max_iter):
                weights = 1.0 / (x - center).norm(dim=1).clamp_min(1e-8)
                new = (weights[:, None] * x).sum(dim=0) / weights.sum()
                moved = float((new - center).norm())
                center = new
                if moved <= 1e-6 * (float(center.norm()) + 1e-12):
                    break
        self.b_dec.copy_(center.to(self.b_dec.dtype))
        return self.b_dec.detach().clone()

    # ---- encoder -------------------------------------------------------------------------------------

    def _pre(self, x: Tensor) -> Tensor:
        return (x * self.input_scale - self.b_dec) @ self.W_enc + self.b_enc

    def _activate(self, pre: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor | None] | None]:
        """Latents from 2-D pre-activations, plus (indices, values, offsets) when a sparse decode applies."""
        kind = self.config.kind
        if kind == "relu":
            return F.relu(pre), None
        if kind == "topk":
            vals, idx = pre.topk(self.config.k, dim=-1, sorted=False)
            vals = F.relu(vals)
            z = torch.zeros_like(pre).scatter_(-1, idx, vals)
            return z, (idx, vals, None)
        # batchtopk
        if not self.training:
            if float(self.threshold) < 0:
                raise RuntimeError(
                    "BatchTopK inference threshold has not been estimated yet: train the SAE "
                    "(seqsae_lib.sae.training.train_sae) or call calibrate_threshold(activations) first"
                )
            return pre * (pre > self.threshold), None
        n, d_sae = pre.shape
        flat = pre.reshape(-1)
        m = min(self.config.k * n, flat.numel())
        vals, flat_idx = flat.topk(m, sorted=False)
        vals = F.relu(vals)
        z = torch.zeros_like(flat).scatter_(0, flat_idx, vals).view(n, d_sae)
        with torch.no_grad():
            positive = vals[vals > 0]
            if positive.numel():
                smallest = positive.min()
                if float(self.threshold) < 0:
                    self.threshold.copy_(smallest)
                else:
                    mom = self.config.threshold_momentum
                    self.threshold.mul_(mom).add_((1.0 - mom) * smallest)
        rows = torch.div(flat_idx, d_sae, rounding_mode="floor")
        order = torch.argsort(rows, stable=True)
        counts = torch.bincount(rows, minlength=n)
        offsets = torch.zeros(n, dtype=torch.long, device=pre.device)
        offsets[1:] = counts.cumsum(0)[:-1]
        return z, ((flat_idx % d_sae)[order], vals[order], offsets)

    def encode_pre(self, x: Tensor) -> Tensor:
        """Pre-activations ``(s x - b_dec) W_enc + b_enc``.

        Introduced in chapter 3 (chapters/03_sae.ipynb).

        Parameters
        ----------
        x : Tensor of shape (..., d_in)

        Returns
        -------
        Tensor of shape (..., d_sae)

        Raises
        ------
        TypeError
            ``x`` is not a floating-point tensor.
        ValueError
            The last dimension is not ``d_in``, or ``x`` holds NaN/inf.
        """
        x = self._check(x, self.d_in, "activations")
        return self._pre(x)

    def encode(self, x: Tensor) -> Tensor:
        """Latent activations ``z`` (non-negative, sparse).

        Introduced in chapter 3 (chapters/03_sae.ipynb).

        For ``"batchtopk"`` the result depends on the mode: in training mode the rows of ``x`` share a
        budget of ``k * n`` active latents (and the running ``threshold`` estimate is updated); in eval
        mode each latent fires where its pre-activation exceeds the learned ``threshold``.

        Parameters
        ----------
        x : Tensor of shape (..., d_in)

        Returns
        -------
        Tensor of shape (..., d_sae)

        Raises
        ------
        TypeError, ValueError
            As :meth:`encode_pre`.
        """
        x = self._check(x, self.d_in, "activations")
        lead = x.shape[:-1]
        z, _ = self._activate(self._pre(x.reshape(-1, self.d_in)))
        return z.reshape(*lead, self.d_sae)

    def encode_sparse(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The non-zero latents of 2-D ``x`` as ``(rows, latents, values)``, without a dense code matrix.

        Introduced in chapter 4 (chapters/04_features.ipynb), where every stored state is encoded once.

        Equal to ``z = encode(x); rows, latents = z.nonzero(as_tuple=True); values = z[rows, latents]``
        (same order: by row, then latent), but for a TopK SAE it never builds the ``(n, d_sae)`` matrix:
        a fraction of the time and memory when ``k`` is much smaller than ``d_sae``.

        Raises
        ------
        TypeError, ValueError
            As :meth:`encode_pre`; ``x`` not 2-D.
        """
        x = self._check(x, self.d_in, "activations")
        if x.dim() != 2:
            raise ValueError(f"encode_sparse expects a 2-D (n, {self.d_in}) tensor, got shape {tuple(x.shape)}")
        if self.config.kind != "topk":
            z = self.encode(x)
            rows, latents = z.nonzero(as_tuple=True)
            return rows, latents, z[rows, latents]
        pre = self._pre(x)
        vals, idx = pre.topk(min(self.config.k, self.d_sae), dim=-1, sorted=False)
        idx, order = idx.sort(dim=-1)
        vals = F.relu(vals.gather(-1, order))
        rows = torch.arange(len(x), device=x.device).unsqueeze(1).expand_as(idx)
        keep = vals > 0
        return rows[keep], idx[keep], vals[keep]

    # ---- decoder -------------------------------------------------------------------------------------

    def _decode_sparse(self, idx: Tensor, vals: Tensor, offsets: Tensor | None) -> Tensor:
        """``sum_j vals_j * W_dec[idx_j]`` per row (no bias), via embedding_bag."""
        return F.embedding_bag(idx, self.W_dec, offsets, mode="sum", per_sample_weights=vals)

    def decode(self, z: Tensor) -> Tensor:
        """Reconstruction ``(z W_dec + b_dec) / s`` from latent activations, in input units.

        Introduced in chapter 3 (chapters/03_sae.ipynb).

        Parameters
        ----------
        z : Tensor of shape (..., d_sae)

        Returns
        -------
        Tensor of shape (..., d_in)

        Raises
        ------
        TypeError, ValueError
            ``z`` is not a floating tensor with last dimension ``d_sae``, or holds NaN/inf.
        """
        z = self._check(z, self.d_sae, "latents")
        return (z @ self.W_dec + self.b_dec) / self.input_scale

    # ---- forward and losses -------------------------------------------------------------------------

    def forward(self, x: Tensor, dead_mask: Tensor | None = None) -> SAEOutput:
        """Encode, decode and compute the training losses.

        Introduced in chapter 3 (chapters/03_sae.ipynb).

        Parameters
        ----------
        x : Tensor of shape (..., d_in)
            A batch of activation vectors (at least one).
        dead_mask : Tensor of bool, shape (d_sae,), optional
            Latents currently dead (from the trainer's counters, :func:`is_dead`). When given, the AuxK
            loss asks the ``aux_k`` dead latents with the largest pre-activations to reconstruct the
            residual ``x - x_hat`` (gradient stopped on the residual), normalised by the residual's
            variance.

        Returns
        -------
        SAEOutput

        Raises
        ------
        TypeError, ValueError
            For a bad input (see :meth:`encode_pre`) or a dead mask of the wrong shape.
        """
        x = self._check(x, self.d_in, "activations")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.d_in)
        if x2.shape[0] == 0:
            raise ValueError("forward needs at least one activation vector, got an empty batch")
        cfg = self.config
        x_in = x2 * self.input_scale
        centered = x_in - self.b_dec
        pre = centered @ self.W_enc + self.b_enc
        z, code = self._activate(pre)
        if code is not None and cfg.sparse_decode:
            x_hat_in = self._decode_sparse(*code) + self.b_dec
        else:
            x_hat_in = z @ self.W_dec + self.b_dec
        mse = (x_hat_in - x_in).pow(2).mean()
        zero = mse.new_zeros(())

        l1_loss = zero
        if cfg.kind == "relu":
            l1_loss = (z * self.W_dec.norm(dim=1)).sum(dim=1).mean()

        aux_loss = zero
        if dead_mask is not None and cfg.aux_coefficient > 0:
            if not isinstance(dead_mask, Tensor) or dead_mask.shape != (self.d_sae,) or dead_mask.dtype != torch.bool:
                raise ValueError(
                    f"dead_mask must be a bool tensor of shape ({self.d_sae},) (d_sae), got "
                    f"{getattr(dead_mask, 'dtype', type(dead_mask).__name__)} {tuple(getattr(dead_mask, 'shape', ()))}"
                )
            aux_loss = self._aux_loss(centered, x_in - x_hat_in.detach(), dead_mask.to(pre.device))

        loss = mse + cfg.aux_coefficient * aux_loss + cfg.l1_coefficient * l1_loss
        return SAEOutput(
            x_hat=(x_hat_in / self.input_scale).reshape(*lead, self.d_in),
            z=z.reshape(*lead, self.d_sae),
            pre=pre.reshape(*lead, self.d_sae),
            loss=loss,
            mse=mse,
            aux_loss=aux_loss,
            l1_loss=l1_loss,
        )

    def _aux_loss(self, centered: Tensor, residual: Tensor, dead_mask: Tensor) -> Tensor:
        """AuxK: the top-``aux_k`` dead latents (ReLU'd) reconstruct ``residual``; normalised MSE."""
        dead = dead_mask.nonzero().squeeze(1)
        if dead.numel() == 0:
            return residual.new_zeros(())
        # pre-activations of the dead latents only (a smaller matmul than masking the full (n, d_sae) matrix)
        pre_dead = centered @ self.W_enc[:, dead] + self.b_enc[dead]
        vals, pos = pre_dead.topk(min(self.config.aux_k, dead.numel()), dim=-1, sorted=False)
        vals, idx = F.relu(vals), dead[pos]
        if self.config.sparse_decode:
            e_hat = self._decode_sparse(idx, vals, None)
        else:
            e_hat = torch.zeros(len(vals), self.d_sae, dtype=vals.dtype, device=vals.device).scatter_(-1, idx, vals) @ self.W_dec
        variance = (residual - residual.mean(dim=0)).pow(2).sum(dim=1).mean()
        return ((e_hat - residual).pow(2).sum(dim=1).mean() / variance.clamp_min(1e-12)).nan_to_num(0.0)

    # ---- decoder hygiene and folding ---------------------------------------------------------------------

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        """Rescale every decoder row to unit Euclidean norm (in place).

        Introduced in chapter 3 (chapters/03_sae.ipynb). The trainer calls it after each optimiser step
        when ``config.unit_norm_decoder``. This changes the model's outputs unless the rows already have
        unit norm; to rescale without changing outputs use :meth:`fold_decoder_norms`.
        """
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        """Project out of ``W_dec.grad`` the component parallel to each decoder row (in place).

        Introduced in chapter 3 (chapters/03_sae.ipynb). Called by the trainer between ``backward`` and
        the optimiser step, so that the step moves rows along the unit sphere rather than lengthening
        them. Does nothing if there is no gradient.
        """
        grad = self.W_dec.grad
        if grad is None:
            return
        unit = self.W_dec / self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
        grad.sub_((grad * unit).sum(dim=1, keepdim=True) * unit)

    @torch.no_grad()
    def fold_normalization(self) -> None:
        """Fold ``input_scale`` into the weights, so the SAE reads raw activations with ``input_scale = 1``.

        Introduced in chapter 3 (chapters/03_sae.ipynb).

        Reconstructions are unchanged (up to float rounding). Latent activations are divided by the old
        scale ``s`` (``b_enc``, ``b_dec`` and the BatchTopK threshold are divided by ``s``; ``W_enc`` and
        ``W_dec`` are untouched, so decoder rows keep unit norm): afterwards ``z_i`` is the length of latent
        ``i``'s contribution to ``x`` in raw units. Losses reported afterwards are in raw units too.
        """
        s = float(self.input_scale)
        self.b_enc.div_(s)
        self.b_dec.div_(s)
        if self.config.kind == "batchtopk" and float(self.threshold) >= 0:
            self.threshold.div_(s)
        self.input_scale.fill_(1.0)

    @torch.no_grad()
    def fold_decoder_norms(self) -> None:
        """Give every decoder row unit norm without changing the model's outputs (``kind="relu"`` only).

        Introduced in chapter 3 (chapters/03_sae.ipynb).

        Row ``i`` is divided by its norm ``n_i`` while encoder column ``i`` and ``b_enc[i]`` are multiplied
        by ``n_i``, so ``z_i`` grows by ``n_i`` and ``z_i W_dec[i]`` stays the same. For ``"topk"`` and
        ``"batchtopk"`` a per-latent rescaling would change which latents win the top-k, so this raises.

        Raises
        ------
        ValueError
            For ``kind`` other than ``"relu"``.
        """
        if self.config.kind != "relu":
            raise ValueError(
                f"fold_decoder_norms keeps outputs unchanged only for kind='relu' (got {self.config.kind!r}): "
                "rescaling latents would change the top-k selection; keep unit_norm_decoder=True instead"
            )
        norms = self.W_dec.norm(dim=1).clamp_min(1e-12)
        self.W_dec.div_(norms[:, None])
        self.W_enc.mul_(norms[None, :])
        self.b_enc.mul_(norms)

    @torch.no_grad()
    def calibrate_threshold(self, activations: Tensor, batch_size: int = 4096) -> float:
        """Set the BatchTopK inference threshold from data (Bussmann et al. 2024).

        Introduced in chapter 3 (chapters/03_sae.ipynb).

        Splits ``activations`` into batches of ``batch_size`` (a shorter last batch is skipped when there
        are full ones), applies the training-time BatchTopK selection to each and sets ``threshold`` to
        the mean over batches of the smallest kept positive activation. In eval mode about ``k`` latents
        per vector then exceed it on average.

        Parameters
        ----------
        activations : Tensor of shape (n, d_in)
        batch_size : int, default 4096
            Use the training batch size: the threshold depends on it.

        Returns
        -------
        float
            The new threshold.

        Raises
        ------
        ValueError
            If the SAE is not ``"batchtopk"``, or no activation is positive.
        """
        if self.config.kind != "batchtopk":
            raise ValueError(f"calibrate_threshold applies to kind='batchtopk' only, got {self.config.kind!r}")
        _check_int("batch_size", batch_size, 1)
        x = self._check(activations, self.d_in, "activations").reshape(-1, self.d_in)
        n = len(x)
        starts = list(range(0, n, batch_size))
        if len(starts) > 1 and n % batch_size:
            starts = starts[:-1]
        minima: list[float] = []
        for s in starts:
            pre = self._pre(x[s : s + batch_size])
            flat = pre.reshape(-1)
            vals = flat.topk(min(self.config.k * len(pre), flat.numel()), sorted=False).values
            vals = vals[vals > 0]
            if vals.numel():
                minima.append(float(vals.min()))
        if not minima:
            raise ValueError("cannot calibrate the BatchTopK threshold: no positive pre-activation in the data")
        value = float(np.mean(minima))
        self.threshold.fill_(value)
        return value

    # ---- persistence -------------------------------------------------------------------------------------

    def save(self, path_stem: str | os.PathLike[str], extra_meta: dict[str, Any] | None = None) -> tuple[Path, Path]:
        """Write ``<stem>.pt`` (weights and buffers) and ``<stem>.json`` (config + metadata) atomically.

        Introduced in chapter 3 (chapters/03_sae.ipynb).

        Each file is written to a temporary file in the same directory and moved into place with
        ``os.replace``; the JSON records the SHA-256 of the weights, so a truncated or mismatched pair is
        detected by :meth:`load`.

        Parameters
        ----------
        path_stem : str or path
            e.g. ``"models/sae_final"``; a trailing ``.pt``/``.json`` is dropped; parents are created.
        extra_meta : dict, optional
            JSON-able provenance, checked again by :meth:`load`'s ``expected``: e.g. the recommender's
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
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "metadata": _to_jsonable(extra_meta, "extra_meta"),
        }
        pt_path, json_path = save_state_with_meta(self.state_dict(), path_stem, meta, error=SAEFileError, what="SAE")
        self.metadata = json.loads(json_path.read_text(encoding="utf-8"))
        return pt_path, json_path

    @classmethod
    def load(
        cls,
        path_stem: str | os.PathLike[str],
        expected: dict[str, Any] | None = None,
        map_location: str | torch.device = "cpu",
    ) -> SparseAutoencoder:
        """Rebuild an SAE written by :meth:`save`, checking it is the one expected.

        Introduced in chapter 3 (chapters/03_sae.ipynb).

        Parameters
        ----------
        path_stem : str or path
            The stem given to :meth:`save`.
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
        meta, pt_path, json_path = load_meta(
            path_stem, fmt=FORMAT, version=FORMAT_VERSION, required=("config", "metadata"),
            error=SAEFileError, what="SAE",
        )
        if expected is not None:
            if not isinstance(expected, dict):
                raise TypeError(f"expected must be a dict or None, got {type(expected).__name__}")
            stored = {**meta["metadata"], "config": meta["config"]}
            diffs = differences(stored, _to_jsonable(expected, "expected"), strict=False)
            if diffs:
                raise SAEMetadataMismatchError(
                    f"SAE file {json_path} does not match what was expected: " + "; ".join(diffs)
                )
        state = load_state(pt_path, json_path, meta, error=SAEFileError, what="SAE", map_location=map_location)
        config_dict = dict(meta["config"])
        if config_dict.get("capture_point") is None and isinstance(meta["metadata"].get("capture_point"), str):
            # files written before the capture point was a config field record it in their metadata
            config_dict["capture_point"] = meta["metadata"]["capture_point"]
        try:
            config = SAEConfig.from_dict(config_dict)
        except (TypeError, ValueError) as exc:
            raise SAEFileError(f"invalid SAE config in {json_path}: {exc}") from exc
        sae = cls(config)
        try:
            sae.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise SAEFileError(f"weights in {pt_path} do not fit the config in {json_path}: {exc}") from exc
        sae.to(map_location)
        sae.eval()
        sae.metadata = meta
        return sae


# --------------------------------------------------------------------------------------------------------
# file helpers
# --------------------------------------------------------------------------------------------------------


def _recorded_sasrec_sha256(sae: SparseAutoencoder) -> str | None:
    """The SASRec weights hash recorded in a saved SAE's metadata (``"sasrec_weights_sha256"``), if any."""
    meta = getattr(sae, "metadata", None) or {}
    inner = meta.get("metadata") if isinstance(meta.get("metadata"), dict) else meta
    sha = inner.get("sasrec_weights_sha256") if isinstance(inner, dict) else None
    return sha if isinstance(sha, str) and sha else None


def check_sae_matches_model(sae: SparseAutoencoder, model: nn.Module) -> None:
    """Refuse an SAE made for another SASRec than ``model``, when its metadata says which one.

    Introduced in chapter 5 (chapters/05_steering.ipynb). A saved SAE records the weights hash of the
    SASRec it was trained on (``"sasrec_weights_sha256"``, see
    :func:`seqsae_lib.experiments.pretrained.sae_provenance`); :func:`seqsae_lib.experiments.pretrained.load_pretrained_sae`
    checks it against the checkpoint file. This is the same check for a model in memory: its hash is
    the one :func:`seqsae_lib.save_checkpoint` would record (:func:`seqsae_lib.utils.fileio.module_weights_sha256`,
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


def sae_paths(path_stem: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Return ``(<stem>.pt, <stem>.json)``; a trailing ``.pt``/``.json`` on the stem is dropped.

    Introduced in chapter 3 (chapters/03_sae.ipynb).
    """
    return paired_paths(path_stem)










