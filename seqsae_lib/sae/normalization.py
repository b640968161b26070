"""The input scale and the decoder geometry of an SAE: data-dependent initialisation, folding, hygiene.

Introduced in chapter 3.

Everything here changes an SAE's weights or buffers in place, without training:

* initialisation from data: :func:`init_input_scale` (the constant ``s`` that gives inputs mean squared
  norm ``d_in``) and :func:`init_b_dec` (geometric median or mean);
* initialisation of the dictionary from data: :func:`init_decoder_from_data` (decoder rows along centred
  training vectors, encoder the decoder's transpose) and :func:`fit_encoder_scale` (the encoder scaled so that
  the first reconstructions have the data's size);
* decoder hygiene during training: :func:`set_decoder_norm_to_unit_norm` and
  :func:`remove_gradient_parallel_to_decoder_directions`;
* output-preserving rewrites after training: :func:`fold_normalization` and :func:`fold_decoder_norms`;
* the BatchTopK inference threshold: :func:`calibrate_threshold`.

Each is also a method of :class:`~seqsae_lib.sae.autoencoder.SparseAutoencoder` (``sae.fold_normalization()``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

from seqsae_lib.sae.inputs import check_vectors
from seqsae_lib.utils.checks import check_choice, check_int

if TYPE_CHECKING:
    from seqsae_lib.sae.autoencoder import SparseAutoencoder

__all__ = [
    "init_input_scale", "init_b_dec", "set_decoder_norm_to_unit_norm", "remove_gradient_parallel_to_decoder_directions",
    "fold_normalization", "fold_decoder_norms", "calibrate_threshold", "init_decoder_from_data", "fit_encoder_scale",
]


@torch.no_grad()
def init_input_scale(sae: SparseAutoencoder, x_sample: Tensor) -> float:
    """Set ``input_scale`` so that ``input_scale * x`` has mean squared norm ``d_in`` on the sample.

    Introduced in chapter 3. Called by the trainer when
    ``config.normalize_input``; call before :func:`init_b_dec`.

    Parameters
    ----------
    x_sample : Tensor of shape (n, d_in)

    Returns
    -------
    float
        The new scale.
    """
    x = check_vectors(x_sample, sae.d_in, "activations", like=sae.W_dec).reshape(-1, sae.d_in)
    mean_sq = float(x.double().pow(2).sum(dim=1).mean()) if len(x) else 0.0
    if not mean_sq > 0.0:
        raise ValueError("cannot normalise inputs: the sample is empty or all zeros")
    scale = math.sqrt(sae.d_in / mean_sq)
    sae.input_scale.fill_(scale)
    return scale


@torch.no_grad()
def init_b_dec(
    sae: SparseAutoencoder, x_sample: Tensor, method: Literal["geometric_median", "mean"] = "geometric_median",
    max_iter: int = 100,
) -> Tensor:
    """Initialise ``b_dec`` to the geometric median (default) or the mean of a data sample.

    Introduced in chapter 3.

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
    check_choice("method", method, ("geometric_median", "mean"))
    x = check_vectors(x_sample, sae.d_in, "activations", like=sae.W_dec).reshape(-1, sae.d_in)
    if len(x) == 0:
        raise ValueError("cannot initialise b_dec from an empty sample")
    x = (x * sae.input_scale).double()
    center = x.mean(dim=0)
    if method == "geometric_median":
        for _ in range(max_iter):
            weights = 1.0 / (x - center).norm(dim=1).clamp_min(1e-8)
            new = (weights[:, None] * x).sum(dim=0) / weights.sum()
            moved = float((new - center).norm())
            center = new
            if moved <= 1e-6 * (float(center.norm()) + 1e-12):
                break
    sae.b_dec.copy_(center.to(sae.b_dec.dtype))
    return sae.b_dec.detach().clone()


@torch.no_grad()
def set_decoder_norm_to_unit_norm(sae: SparseAutoencoder) -> None:
    """Rescale every decoder row to unit Euclidean norm (in place).

    Introduced in chapter 3. The trainer calls it after each optimiser step
    when ``config.unit_norm_decoder``. This changes the model's outputs unless the rows already have
    unit norm; to rescale without changing outputs use :func:`fold_decoder_norms`.
    """
    sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))


@torch.no_grad()
def remove_gradient_parallel_to_decoder_directions(sae: SparseAutoencoder) -> None:
    """Project out of ``W_dec.grad`` the component parallel to each decoder row (in place).

    Introduced in chapter 3. Called by the trainer between ``backward`` and
    the optimiser step, so that the step moves rows along the unit sphere rather than lengthening
    them. Does nothing if there is no gradient.
    """
    grad = sae.W_dec.grad
    if grad is None:
        return
    unit = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
    grad.sub_((grad * unit).sum(dim=1, keepdim=True) * unit)


@torch.no_grad()
def fold_normalization(sae: SparseAutoencoder) -> None:
    """Fold ``input_scale`` into the weights, so the SAE reads raw activations with ``input_scale = 1``.

    Introduced in chapter 3.

    Reconstructions are unchanged (up to float rounding). Latent activations are divided by the old
    scale ``s`` (``b_enc``, ``b_dec`` and the BatchTopK threshold are divided by ``s``; ``W_enc`` and
    ``W_dec`` are untouched, so decoder rows keep unit norm): afterwards ``z_i`` is the length of latent
    ``i``'s contribution to ``x`` in raw units. Losses reported afterwards are in raw units too.
    """
    s = float(sae.input_scale)
    sae.b_enc.div_(s)
    sae.b_dec.div_(s)
    if sae.config.kind == "batchtopk" and float(sae.threshold) >= 0:
        sae.threshold.div_(s)
    sae.input_scale.fill_(1.0)


@torch.no_grad()
def fold_decoder_norms(sae: SparseAutoencoder) -> None:
    """Give every decoder row unit norm without changing the model's outputs (``kind="relu"`` only).

    Introduced in chapter 3.

    Row ``i`` is divided by its norm ``n_i`` while encoder column ``i`` and ``b_enc[i]`` are multiplied
    by ``n_i``, so ``z_i`` grows by ``n_i`` and ``z_i W_dec[i]`` stays the same. For ``"topk"`` and
    ``"batchtopk"`` a per-latent rescaling would change which latents win the top-k, so this raises.

    Raises
    ------
    ValueError
        For ``kind`` other than ``"relu"``.
    """
    if sae.config.kind != "relu":
        raise ValueError(
            f"fold_decoder_norms keeps outputs unchanged only for kind='relu' (got {sae.config.kind!r}): "
            "rescaling latents would change the top-k selection; keep unit_norm_decoder=True instead"
        )
    norms = sae.W_dec.norm(dim=1).clamp_min(1e-12)
    sae.W_dec.div_(norms[:, None])
    sae.W_enc.mul_(norms[None, :])
    sae.b_enc.mul_(norms)


@torch.no_grad()
def calibrate_threshold(sae: SparseAutoencoder, activations: Tensor, batch_size: int = 4096) -> float:
    """Set the BatchTopK inference threshold from data (Bussmann et al. 2024).

    Introduced in chapter 3.

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
    if sae.config.kind != "batchtopk":
        raise ValueError(f"calibrate_threshold applies to kind='batchtopk' only, got {sae.config.kind!r}")
    check_int("batch_size", batch_size, 1)
    x = check_vectors(activations, sae.d_in, "activations", like=sae.W_dec).reshape(-1, sae.d_in)
    n = len(x)
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n % batch_size:
        starts = starts[:-1]
    minima: list[float] = []
    for s in starts:
        pre = sae.encode_pre(x[s : s + batch_size])
        flat = pre.reshape(-1)
        vals = flat.topk(min(sae.config.k * len(pre), flat.numel()), sorted=False).values
        vals = vals[vals > 0]
        if vals.numel():
            minima.append(float(vals.min()))
    if not minima:
        raise ValueError("cannot calibrate the BatchTopK threshold: no positive pre-activation in the data")
    value = float(np.mean(minima))
    sae.threshold.fill_(value)
    return value


def _unit_rows(x: Tensor) -> Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def init_decoder_from_data(sae: SparseAutoencoder, x_sample: Tensor, generator: torch.Generator | None = None) -> int:
    """Point the decoder rows along centred data vectors; the encoder becomes the decoder's transpose.

    Introduced in chapter 3. Called by the trainer when ``SAETrainConfig.decoder_init == "data"``, after
    :func:`init_input_scale` and :func:`init_b_dec`. Row ``i`` becomes the unit vector along
    ``s x_j - b_dec`` for a distinct, randomly chosen sample vector ``x_j``; ``W_enc = W_dec.T`` and ``b_enc = 0``.
    If the sample holds fewer than ``d_sae`` vectors (or some are at ``b_dec``), the remaining rows keep their
    random directions.

    Parameters
    ----------
    x_sample : Tensor of shape (n, d_in)
    generator : torch.Generator, optional
        Chooses the sample vectors (seeded by the trainer).

    Returns
    -------
    int
        The number of rows set from data.
    """
    x = check_vectors(x_sample, sae.d_in, "activations", like=sae.W_dec).reshape(-1, sae.d_in)
    order = torch.randperm(len(x), generator=generator)[: sae.d_sae].to(x.device)
    centred = x[order] * sae.input_scale - sae.b_dec
    keep = centred.norm(dim=1) > 1e-6
    rows = _unit_rows(centred[keep])
    m = len(rows)
    sae.W_dec[:m] = rows
    sae.W_enc.copy_(sae.W_dec.T)
    sae.b_enc.zero_()
    return m


@torch.no_grad()
def fit_encoder_scale(sae: SparseAutoencoder, x_sample: Tensor) -> float:
    """Scale the encoder so that the initial reconstructions of a sample fit it in size (least squares).

    Introduced in chapter 3 (an option of the trainer, off in the chapters' recipes). Called by the trainer when ``SAETrainConfig.fit_encoder_scale``, after the other initialisations. With
    ``b_enc = 0`` multiplying ``W_enc`` by ``c > 0`` multiplies every pre-activation by ``c``: the TopK and
    BatchTopK selections do not change and the latents (ReLU'd) scale by ``c``, so the reconstruction of a
    centred vector becomes ``c * e`` with ``e = z W_dec`` at ``c = 1``. ``c`` is set to the least-squares
    factor ``<e, s x - b_dec> / <e, e>`` over the sample. Without it, the ``k`` unit-norm encoder columns that
    win on a vector add up to several times the vector (initial FVU around 8 on ``bench/bench_speed.py``'s
    workload), and Adam needs hundreds of steps to shrink them.

    Parameters
    ----------
    x_sample : Tensor of shape (n, d_in)

    Returns
    -------
    float
        The factor applied to ``W_enc`` and ``b_enc`` (1.0 if the sample gives no active latent).
    """
    from seqsae_lib.sae.sparsity import batchtopk_codes, topk_codes

    x = check_vectors(x_sample, sae.d_in, "activations", like=sae.W_dec).reshape(-1, sae.d_in)
    kind = sae.config.kind
    energy, overlap = 0.0, 0.0
    # in chunks of 4,096 vectors (a BatchTopK chunk shares its budget, as a training batch of that size would)
    for centred in (x * sae.input_scale - sae.b_dec).split(4096):
        pre = centred @ sae.W_enc + sae.b_enc
        if kind == "topk":
            z, _ = topk_codes(pre, sae.config.k)
        elif kind == "batchtopk":  # the training selection, with a throw-away threshold (the SAE's is left alone)
            z, _ = batchtopk_codes(pre, sae.config.k, torch.tensor(-1.0, device=pre.device), 0.0)
        else:
            z = torch.relu(pre)
        assert z is not None
        e = (z @ sae.W_dec).double()
        energy += float(e.pow(2).sum())
        overlap += float((e * centred.double()).sum())
    if not energy > 0.0:
        return 1.0
    scale = overlap / energy
    if not scale > 0.0:
        return 1.0
    sae.W_enc.mul_(scale)
    sae.b_enc.mul_(scale)
    return scale
