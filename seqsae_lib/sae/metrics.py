"""Reconstruction-side metrics of sparse autoencoders: FVU, L0, cosine, feature density, dead/dense latents.

Introduced in chapter 3.

These metrics look only at activations and their reconstructions; how well the recommender still works
when its hidden states are replaced by SAE reconstructions (downstream fidelity) is measured elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqsae_lib.sae.autoencoder import SparseAutoencoder
from seqsae_lib.sae.config import DEFAULT_DEAD_AFTER
from seqsae_lib.utils.checks import check_float, check_int
from seqsae_lib.utils.torchutils import eval_mode

__all__ = [
    "DEFAULT_DENSE_THRESHOLD",
    "fvu",
    "l0",
    "cosine_similarity",
    "feature_density",
    "dead_fraction",
    "dense_fraction",
    "DensityHistogram",
    "density_histogram",
    "evaluate_reconstruction",
]

DEFAULT_DENSE_THRESHOLD: float = 0.1
"""A latent firing on more than this fraction of vectors counts as dense."""


def _as_2d(t: Tensor, what: str, width: int | None = None) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got dtype {t.dtype}")
    if t.ndim == 0:
        raise ValueError(f"{what} must have shape (n, d), got a scalar")
    t = t.reshape(-1, t.shape[-1])
    if width is not None and t.shape[-1] != width:
        raise ValueError(f"{what} must have last dimension {width}, got shape {tuple(t.shape)}")
    return t


def _codes(z: Tensor) -> Tensor:
    """``z`` as a non-empty 2-D ``(n, d_sae)`` code matrix (``TypeError``/``ValueError`` otherwise)."""
    z = _as_2d(z, "z")
    if len(z) == 0:
        raise ValueError("z is empty")
    return z


def _pair(x: Tensor, x_hat: Tensor) -> tuple[Tensor, Tensor]:
    x = _as_2d(x, "x")
    x_hat = _as_2d(x_hat, "x_hat")
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}")
    if len(x) == 0:
        raise ValueError("x is empty")
    if not bool(torch.isfinite(x).all()) or not bool(torch.isfinite(x_hat).all()):
        raise ValueError("x and x_hat must be finite (found NaN or inf)")
    return x.detach().double(), x_hat.detach().double().to(x.device)


def fvu(x: Tensor, x_hat: Tensor) -> float:
    """Fraction of variance unexplained: ``sum ||x - x_hat||^2 / sum ||x - mean(x)||^2``.

    Introduced in chapter 3.

    The denominator is the total variance of ``x`` around its per-dimension mean, i.e. the error of the
    best constant prediction. Range: 0 is a perfect reconstruction; 1 is as bad as always predicting the
    mean; values above 1 are worse than that. ``1 - fvu`` is the explained variance (R²).

    Parameters
    ----------
    x, x_hat : Tensor of shape (n, d)
        Activations and their reconstructions (any leading dimensions are flattened).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Shapes differ, the data are empty or non-finite, or ``x`` has zero variance (FVU undefined).
    """
    x, x_hat = _pair(x, x_hat)
    total = float((x - x.mean(dim=0)).pow(2).sum())
    if total <= 0.0:
        raise ValueError("x has zero variance (all rows equal): FVU is undefined")
    return float((x - x_hat).pow(2).sum()) / total


def l0(z: Tensor) -> float:
    """Mean number of active (non-zero) latents per vector.

    Introduced in chapter 3.

    Parameters
    ----------
    z : Tensor of shape (n, d_sae)

    Returns
    -------
    float
    """
    z = _codes(z)
    return float((z != 0).sum(dim=1, dtype=torch.float64).mean())


def cosine_similarity(x: Tensor, x_hat: Tensor, eps: float = 1e-8) -> float:
    """Mean over vectors of the cosine similarity between ``x`` and ``x_hat``.

    Introduced in chapter 3.

    Parameters
    ----------
    x, x_hat : Tensor of shape (n, d)
    eps : float, default 1e-8
        Lower bound on each norm (a zero vector has cosine 0 with anything).

    Returns
    -------
    float
        In [-1, 1]; 1 means every reconstruction points the right way (its length may still differ).
    """
    x, x_hat = _pair(x, x_hat)
    return float(torch.nn.functional.cosine_similarity(x, x_hat, dim=1, eps=eps).mean())


def feature_density(z: Tensor) -> Tensor:
    """Firing frequency of each latent: the fraction of vectors on which it is > 0.

    Introduced in chapter 3.

    Parameters
    ----------
    z : Tensor of shape (n, d_sae)

    Returns
    -------
    Tensor of float64, shape (d_sae,)
        Values in [0, 1]; they sum to the mean L0.
    """
    z = _codes(z)
    return (z > 0).sum(dim=0, dtype=torch.float64).cpu() / len(z)


def dead_fraction(
    density_or_counts: Tensor, dead_after: int = DEFAULT_DEAD_AFTER, num_vectors: int | None = None
) -> float:
    """Fraction of dead latents: those firing on fewer than one in ``dead_after`` vectors.

    Introduced in chapter 3.

    This is the library's single definition of a dead latent (the trainer's "not fired in the last
    ``dead_after`` training vectors", :func:`seqsae_lib.sae.config.is_dead`), applied to a fixed set of
    vectors: frequency ``< 1 / dead_after``. On a set of at most ``dead_after`` vectors that means
    "never fired on the set".

    Parameters
    ----------
    density_or_counts : Tensor of shape (d_sae,)
        Either firing frequencies (floating, from :func:`feature_density`) or firing counts (integer,
        then ``num_vectors`` is required and the comparison is exact).
    dead_after : int
        Use the SAE's ``config.dead_after``.
    num_vectors : int, optional
        Number of vectors the counts were taken over.

    Returns
    -------
    float
    """
    t = density_or_counts
    if not isinstance(t, Tensor) or t.ndim != 1 or t.numel() == 0:
        raise ValueError("density_or_counts must be a non-empty 1-D tensor of shape (d_sae,)")
    dead_after = check_int("dead_after", dead_after, 1)
    if t.is_floating_point():
        dead = t.double() * dead_after < 1.0
    else:
        if num_vectors is None or num_vectors < 1:
            raise ValueError("firing counts (an integer tensor) need num_vectors >= 1")
        dead = t.long() * int(dead_after) < int(num_vectors)
    return float(dead.double().mean())


def dense_fraction(density: Tensor, threshold: float = DEFAULT_DENSE_THRESHOLD) -> float:
    """Fraction of latents firing on more than ``threshold`` of the vectors (default 10 %).

    Introduced in chapter 3.

    Dense latents rarely mean one thing; many of them is a warning sign (too large ``k``, or a constant
    direction in the data the decoder bias did not absorb).

    Parameters
    ----------
    density : Tensor of shape (d_sae,)
        Firing frequencies from :func:`feature_density`.
    threshold : float, default 0.1

    Returns
    -------
    float
    """
    if not isinstance(density, Tensor) or density.ndim != 1 or density.numel() == 0:
        raise ValueError("density must be a non-empty 1-D tensor of shape (d_sae,)")
    check_float("threshold", threshold, 0.0, 1.0)
    return float((density.double() > threshold).double().mean())


@dataclass
class DensityHistogram:
    """Histogram of log10 firing frequencies, as returned by :func:`density_histogram`.

    Introduced in chapter 3.
    """

    log10_density: np.ndarray
    """``log10`` of the frequency of every latent that fired at least once."""

    counts: np.ndarray
    """Number of latents per bin (of the ones that fired)."""

    edges: np.ndarray
    """Bin edges in log10 units (``len(counts) + 1`` values)."""

    num_never_fired: int
    """Latents with frequency 0 (no logarithm; reported separately)."""

    num_latents: int
    """All latents."""


def density_histogram(density: Tensor, bins: int = 50, min_log10: float | None = None) -> DensityHistogram:
    """Data for the classic log-density histogram of SAE latents.

    Introduced in chapter 3.

    Parameters
    ----------
    density : Tensor of shape (d_sae,)
        Firing frequencies from :func:`feature_density`.
    bins : int, default 50
    min_log10 : float, optional
        Left edge; defaults to the smallest observed ``log10`` frequency. The right edge is 0 (fires on
        every vector).

    Returns
    -------
    DensityHistogram
        Latents that never fired are counted in ``num_never_fired`` rather than binned.
    """
    if not isinstance(density, Tensor) or density.ndim != 1:
        raise ValueError("density must be a 1-D tensor of shape (d_sae,)")
    bins = check_int("bins", bins, 1)
    d = density.detach().double().cpu().numpy()
    if np.any(d < 0) or np.any(d > 1) or not np.all(np.isfinite(d)):
        raise ValueError("density values must be frequencies in [0, 1]")
    fired = d[d > 0]
    logs = np.log10(fired)
    if min_log10 is not None:
        lo = float(min_log10)
    elif logs.size:
        lo = float(logs.min())
    else:
        lo = -6.0
    if lo >= 0.0:  # every latent that fired fires on every vector: keep a non-empty range
        lo = -1.0
    counts, edges = np.histogram(logs, bins=bins, range=(lo, 0.0))
    return DensityHistogram(
        log10_density=logs,
        counts=counts,
        edges=edges,
        num_never_fired=int((d == 0).sum()),
        num_latents=int(d.size),
    )


@torch.no_grad()
def evaluate_reconstruction(
    sae: SparseAutoencoder,
    activations: Tensor,
    batch_size: int = 1024,
    dead_after: int | None = None,
    dense_threshold: float = DEFAULT_DENSE_THRESHOLD,
    return_density: bool = False,
) -> dict[str, Any]:
    """Reconstruction metrics of an SAE over a set of activation vectors, in batches.

    Introduced in chapter 3.

    The SAE runs in eval mode (so a BatchTopK SAE uses its inference threshold); its previous mode is
    restored afterwards. Sums are accumulated in float64, so the result does not depend on
    ``batch_size`` beyond rounding.

    Parameters
    ----------
    sae : SparseAutoencoder
    activations : Tensor of shape (n, d_in)
    batch_size : int, default 1024
        Rows per SAE call (1024 measured faster than 4096 on a 2-core CPU: 1.8 s against 3.0 s for the
        shipped SAE on 83,857 states).
    dead_after : int, optional
        Defaults to ``sae.config.dead_after``.
    dense_threshold : float, default 0.1
    return_density : bool, default False
        Also return the per-latent firing frequencies under ``"density"`` (a float64 tensor).

    Returns
    -------
    dict
        ``fvu``, ``mse`` (per element, input units), ``cosine``, ``l0``, ``dead_fraction``,
        ``dense_fraction``, ``num_vectors`` (and ``density``).
    """
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
    x_all = _as_2d(activations, "activations", sae.d_in)
    n = len(x_all)
    if n < 2:
        raise ValueError(f"need at least 2 activation vectors, got {n}")
    batch_size = check_int("batch_size", batch_size, 1)
    dead_after = sae.config.dead_after if dead_after is None else dead_after

    with eval_mode(sae):
        d = sae.d_in
        sum_x = torch.zeros(d, dtype=torch.float64)
        sum_x2 = torch.zeros(d, dtype=torch.float64)
        sse = 0.0
        cos_sum = 0.0
        active = 0.0
        counts = torch.zeros(sae.d_sae, dtype=torch.long)
        for start in range(0, n, batch_size):
            x = x_all[start : start + batch_size]
            out = sae(x)
            xd = x.detach().double().cpu()
            xh = out.x_hat.double().cpu()
            sum_x += xd.sum(dim=0)
            sum_x2 += xd.pow(2).sum(dim=0)
            sse += float((xd - xh).pow(2).sum())
            cos_sum += float(torch.nn.functional.cosine_similarity(xd, xh, dim=1, eps=1e-8).sum())
            fired = out.z > 0
            active += float(fired.sum())
            counts += fired.sum(dim=0).cpu()
        total_var = float((sum_x2 - sum_x.pow(2) / n).sum())
        density = counts.double() / n
        result: dict[str, Any] = {
            "fvu": sse / total_var if total_var > 0 else math.nan,
            "mse": sse / (n * d),
            "cosine": cos_sum / n,
            "l0": active / n,
            "dead_fraction": dead_fraction(counts, dead_after, num_vectors=n),
            "dense_fraction": dense_fraction(density, dense_threshold),
            "num_vectors": n,
        }
        if return_density:
            result["density"] = density
        return result

