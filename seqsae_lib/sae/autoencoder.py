"""Sparse autoencoders (SAEs) on stored activation vectors.

Introduced in chapter 3.

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
produced them. This file holds the module itself (encode, decode, forward and losses). Its configuration
and the definition of a dead latent live in :mod:`seqsae_lib.sae.config`, the data-dependent
initialisation, folding and decoder hygiene in :mod:`seqsae_lib.sae.normalization`, saving and loading in
:mod:`seqsae_lib.sae.io`, the training loop in :mod:`seqsae_lib.sae.training` and the reconstruction
metrics in :mod:`seqsae_lib.sae.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqsae_lib.sae import normalization
from seqsae_lib.sae.config import SAEConfig
from seqsae_lib.sae.inputs import check_vectors
from seqsae_lib.sae.io import load_sae, save_sae
from seqsae_lib.sae.sparsity import SparseCode, batchtopk_codes, sparse_decode, threshold_codes, topk_autoencode, topk_codes


__all__ = ["SAEOutput", "SparseAutoencoder"]


# --------------------------------------------------------------------------------------------------------
# the module
# --------------------------------------------------------------------------------------------------------


@dataclass
class SAEOutput:
    """What :meth:`SparseAutoencoder.forward` returns.

    Introduced in chapter 3.

    Losses are computed in the SAE's internal units (inputs multiplied by ``input_scale``), so that they
    are comparable between models; ``x_hat`` is in the units of the input.
    """

    x_hat: Tensor
    """Reconstruction, same shape and units as the input."""

    z: Tensor | None
    """Latent activations, shape ``(..., d_sae)``, non-negative and sparse. ``None`` only when
    :meth:`SparseAutoencoder.forward` was called with ``dense_codes=False`` and ``code`` holds them."""

    pre: Tensor | None
    """Pre-activations ``(s x - b_dec) W_enc + b_enc``, shape ``(..., d_sae)``. ``None`` for a TopK SAE
    called with ``dense_codes=False`` (the trainer's step computes them a chunk at a time and keeps only the
    code, :func:`~seqsae_lib.sae.sparsity.topk_autoencode`)."""

    loss: Tensor
    """Total training loss: ``mse + aux_coefficient * aux_loss + l1_coefficient * l1_loss``."""

    mse: Tensor
    """Mean squared reconstruction error per element (mean over vectors and dimensions)."""

    aux_loss: Tensor
    """AuxK loss (0 when no dead mask was given, no latent is dead, or ``aux_coefficient == 0``)."""

    l1_loss: Tensor
    """``mean_n sum_i z_i ||W_dec[i]||`` for ``kind="relu"``, else 0."""

    code: SparseCode | None = None
    """The active latents of the flattened batch as ``(indices, values, offsets)`` (see
    :mod:`seqsae_lib.sae.sparsity`), for ``"topk"`` and training-mode ``"batchtopk"``; ``None`` otherwise."""


class SparseAutoencoder(nn.Module):
    """A sparse autoencoder with TopK, BatchTopK or ReLU+L1 latents.

    Introduced in chapter 3.

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
        """Input width (``config.d_in``). Introduced in chapter 3."""
        return self.config.d_in

    @property
    def capture_point(self) -> str | None:
        """Where in the recommender this SAE reads (``config.capture_point``); ``None`` if not recorded.

        Introduced in chapter 3.
        """
        return self.config.capture_point

    def check_capture_point(self, capture_point: str | None) -> str:
        """The capture point to use with this SAE: its own, which ``capture_point`` (if given) must equal.

        Introduced in chapter 3.

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
        """Number of latents (``config.d_sae``). Introduced in chapter 3."""
        return self.config.d_sae

    @property
    def device(self) -> torch.device:
        """Device of the parameters. Introduced in chapter 3."""
        return self.W_dec.device

    def extra_repr(self) -> str:
        """Shown by ``repr(sae)``. Introduced in chapter 3."""
        c = self.config
        extra = f", k={c.k}" if c.kind != "relu" else f", l1_coefficient={c.l1_coefficient}"
        return f"kind={c.kind!r}, d_in={c.d_in}, d_sae={c.d_sae}{extra}"

    def _check(self, x: Tensor, width: int, what: str, check_finite: bool = True) -> Tensor:
        return check_vectors(x, width, what, like=self.W_dec, check_finite=check_finite)

    # ---- encoder -------------------------------------------------------------------------------------

    def _pre(self, x: Tensor) -> Tensor:
        return (x * self.input_scale - self.b_dec) @ self.W_enc + self.b_enc

    def _activate(self, pre: Tensor, dense: bool = True) -> tuple[Tensor | None, SparseCode | None]:
        """Latents from 2-D pre-activations, plus (indices, values, offsets) when a sparse decode applies.

        With ``dense=False`` the dense latents are not built where the sparse code holds them (``None``)."""
        kind = self.config.kind
        if kind == "relu":
            return F.relu(pre), None
        if kind == "topk":
            return topk_codes(pre, self.config.k, dense=dense)
        if self.training:
            return batchtopk_codes(pre, self.config.k, self.threshold, self.config.threshold_momentum, dense=dense)
        if float(self.threshold) < 0:
            raise RuntimeError(
                "BatchTopK inference threshold has not been estimated yet: train the SAE "
                "(seqsae_lib.sae.training.train_sae) or call calibrate_threshold(activations) first"
            )
        return threshold_codes(pre, self.threshold), None

    def encode_pre(self, x: Tensor) -> Tensor:
        """Pre-activations ``(s x - b_dec) W_enc + b_enc``.

        Introduced in chapter 3.

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

        Introduced in chapter 3.

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
        assert z is not None  # dense codes were asked for
        return z.reshape(*lead, self.d_sae)

    def encode_sparse(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The non-zero latents of 2-D ``x`` as ``(rows, latents, values)``, without a dense code matrix.

        Introduced in chapter 4, where every stored state is encoded once.

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
        """``sum_j vals_j * W_dec[idx_j]`` per row (no bias), via embedding_bag (:func:`~seqsae_lib.sae.sparsity.sparse_decode`)."""
        return sparse_decode(idx, vals, self.W_dec, offsets)

    def decode(self, z: Tensor) -> Tensor:
        """Reconstruction ``(z W_dec + b_dec) / s`` from latent activations, in input units.

        Introduced in chapter 3.

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

    def forward(self, x: Tensor, dead_mask: Tensor | None = None, *, dense_codes: bool = True) -> SAEOutput:
        """Encode, decode and compute the training losses.

        Introduced in chapter 3.

        Parameters
        ----------
        x : Tensor of shape (..., d_in)
            A batch of activation vectors (at least one).
        dead_mask : Tensor of bool, shape (d_sae,), optional
            Latents currently dead (from the trainer's counters, :func:`~seqsae_lib.sae.config.is_dead`).
            When given, the AuxK loss asks the ``aux_k`` dead latents with the largest pre-activations to
            reconstruct the residual ``x - x_hat`` (gradient stopped on the residual), normalised by the
            residual's variance (with ``config.aux_rescale``, after scaling their sum by its least-squares factor
            in [0, 1]).
        dense_codes : bool, default True
            ``False``: where the latents come as a sparse code (``"topk"``, training-mode ``"batchtopk"``),
            skip building the dense ``(n, d_sae)`` matrix; ``z`` is then ``None`` and ``code`` holds them. The
            trainer does this: the losses and gradients are the same (to rounding). A TopK SAE then also skips
            the dense pre-activations (``pre`` is ``None``) and back-propagates through the kept entries only.

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
        pre: Tensor | None
        if cfg.kind == "topk" and cfg.sparse_decode and not dense_codes:  # the trainer's step: no (n, d_sae) tensor
            vals, idx, recon = topk_autoencode(centered, self.W_enc, self.b_enc, self.W_dec, cfg.k)
            pre, z, code = None, None, (idx, vals, None)
            x_hat_in = recon + self.b_dec
        else:
            pre = centered @ self.W_enc + self.b_enc
            z, code = self._activate(pre, dense=dense_codes or not cfg.sparse_decode)
            if code is not None and cfg.sparse_decode:
                x_hat_in = self._decode_sparse(*code) + self.b_dec
            else:
                assert z is not None
                x_hat_in = z @ self.W_dec + self.b_dec
        mse = (x_hat_in - x_in).pow(2).mean()
        zero = mse.new_zeros(())

        l1_loss = zero
        if cfg.kind == "relu":
            assert z is not None
            l1_loss = (z * self.W_dec.norm(dim=1)).sum(dim=1).mean()

        aux_loss = zero
        if dead_mask is not None and cfg.aux_coefficient > 0:
            if not isinstance(dead_mask, Tensor) or dead_mask.shape != (self.d_sae,) or dead_mask.dtype != torch.bool:
                raise ValueError(
                    f"dead_mask must be a bool tensor of shape ({self.d_sae},) (d_sae), got "
                    f"{getattr(dead_mask, 'dtype', type(dead_mask).__name__)} {tuple(getattr(dead_mask, 'shape', ()))}"
                )
            aux_loss = self._aux_loss(centered, x_in - x_hat_in.detach(), dead_mask.to(x_in.device))

        loss = mse + cfg.aux_coefficient * aux_loss + cfg.l1_coefficient * l1_loss
        return SAEOutput(
            x_hat=(x_hat_in / self.input_scale).reshape(*lead, self.d_in),
            z=None if z is None else z.reshape(*lead, self.d_sae),
            pre=None if pre is None else pre.reshape(*lead, self.d_sae),
            loss=loss,
            mse=mse,
            aux_loss=aux_loss,
            l1_loss=l1_loss,
            code=code,
        )

    def _aux_loss(self, centered: Tensor, residual: Tensor, dead_mask: Tensor) -> Tensor:
        """AuxK: the top-``aux_k`` dead latents (ReLU'd) reconstruct ``residual``; normalised MSE.

        With ``config.aux_rescale`` the reconstruction is first scaled by its least-squares factor in [0, 1]."""
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
        if self.config.aux_rescale:  # the best factor in [0, 1]: overshooting is forgiven, undershooting is not
            scale = ((e_hat * residual).sum() / e_hat.pow(2).sum().clamp_min(1e-12)).clamp(0.0, 1.0).detach()
            e_hat = scale * e_hat
        variance = (residual - residual.mean(dim=0)).pow(2).sum(dim=1).mean()
        return ((e_hat - residual).pow(2).sum(dim=1).mean() / variance.clamp_min(1e-12)).nan_to_num(0.0)

    # ---- data-dependent initialisation, decoder hygiene and folding: functions of
    # seqsae_lib.sae.normalization, attached as methods (``sae.fold_normalization()``), docstrings included.

    init_input_scale = normalization.init_input_scale
    init_b_dec = normalization.init_b_dec
    set_decoder_norm_to_unit_norm = normalization.set_decoder_norm_to_unit_norm
    remove_gradient_parallel_to_decoder_directions = normalization.remove_gradient_parallel_to_decoder_directions
    fold_normalization = normalization.fold_normalization
    fold_decoder_norms = normalization.fold_decoder_norms
    calibrate_threshold = normalization.calibrate_threshold
    init_decoder_from_data = normalization.init_decoder_from_data
    fit_encoder_scale = normalization.fit_encoder_scale

    # ---- persistence: seqsae_lib.sae.io (``sae.save(stem)``, ``SparseAutoencoder.load(stem)``) ---------------

    save = save_sae
    load = classmethod(load_sae)
