"""The sparsifying activations of an SAE: TopK, BatchTopK and ReLU, from pre-activations to latent codes.

Introduced in chapter 3.

Each function takes 2-D pre-activations ``(n, d_sae)`` and returns the dense codes ``z`` plus, where a
sparse decode applies, ``(indices, values, offsets)`` for :func:`torch.nn.functional.embedding_bag`
(``offsets`` is ``None`` when every row keeps the same number of latents).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["SparseCode", "topk_codes", "topk_encode", "topk_autoencode", "sparse_decode", "batchtopk_codes", "threshold_codes"]

SparseCode = tuple[Tensor, Tensor, "Tensor | None"]
"""``(indices, values, offsets)`` of the active latents, as :func:`torch.nn.functional.embedding_bag` reads them."""


def topk_codes(pre: Tensor, k: int, *, dense: bool = True) -> tuple[Tensor | None, SparseCode]:
    """TopK (Gao et al. 2024): the ``k`` largest pre-activations of each row, ReLU'd.

    Introduced in chapter 3. ``dense=False`` skips the dense codes (returned as ``None``; the sparse code
    holds the same values).
    """
    vals, idx = pre.topk(k, dim=-1, sorted=False)
    vals = F.relu(vals)
    z = torch.zeros_like(pre).scatter_(-1, idx, vals) if dense else None
    return z, (idx, vals, None)


def _latent_major(idx: Tensor, d_sae: int) -> tuple[Tensor, Tensor, Tensor]:
    """The ``(n, k)`` code's pattern as the CSR of its ``(d_sae, n)`` transpose: ``(order, crow, col)``, where
    ``order`` sorts the flattened entries by latent (stably, so the rows within a latent stay sorted)."""
    flat = idx.reshape(-1)
    order = torch.argsort(flat, stable=True)
    crow = torch.zeros(d_sae + 1, dtype=torch.long, device=idx.device)
    crow[1:] = torch.bincount(flat, minlength=d_sae).cumsum(0)
    col = torch.div(order, idx.shape[1], rounding_mode="floor")  # the row of each sorted entry
    return order, crow, col


def _transpose_times(pattern: tuple[Tensor, Tensor, Tensor], values: Tensor, dense: Tensor, d_sae: int) -> Tensor:
    """``G^T @ dense`` for the ``(n, d_sae)`` matrix ``G`` holding ``values`` at the code's pattern."""
    order, crow, col = pattern
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the product used here is a stable one
        warnings.simplefilter("ignore", UserWarning)
        g_t = torch.sparse_csr_tensor(crow, col, values.reshape(-1)[order], (d_sae, dense.shape[0]))
        return g_t @ dense


class _TopKCode(torch.autograd.Function):
    """``topk(relu(centered @ W_enc + b_enc))`` and, given ``W_dec``, its decode ``sum_j z_j W_dec[j]``, with a
    backward pass that only touches the kept entries (one latent-major sort shared by both weight gradients)."""

    @staticmethod
    def forward(ctx: Any, centered: Tensor, W_enc: Tensor, b_enc: Tensor, W_dec: Tensor | None,  # type: ignore[override]
                k: int, chunk_rows: int) -> tuple[Tensor, Tensor, Tensor]:
        parts = [torch.addmm(b_enc, rows, W_enc).topk(k, dim=-1, sorted=False) for rows in centered.split(chunk_rows)]
        vals = F.relu(torch.cat([p.values for p in parts]))
        idx = torch.cat([p.indices for p in parts])
        recon = (F.embedding_bag(idx, W_dec, mode="sum", per_sample_weights=vals) if W_dec is not None
                 else vals.new_zeros(0))
        ctx.save_for_backward(centered, W_enc, W_dec, idx, vals)
        ctx.mark_non_differentiable(idx)
        return vals, idx, recon

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_vals: Tensor | None, _grad_idx: Tensor | None,  # type: ignore[override]
                 grad_recon: Tensor | None) -> tuple[Tensor | None, ...]:
        centered, W_enc, W_dec, idx, vals = ctx.saved_tensors
        d_sae = W_enc.shape[1]
        pattern = _latent_major(idx, d_sae)
        grad_W_dec = None
        total = torch.zeros_like(vals) if grad_vals is None else grad_vals
        if W_dec is not None and grad_recon is not None:
            # the decode's gradient for the values: embedding_bag's own (no (n, k, d_in) gather)
            with torch.enable_grad():
                weights = vals.detach().requires_grad_(True)
                out = F.embedding_bag(idx, W_dec.detach(), mode="sum", per_sample_weights=weights)
                (from_recon,) = torch.autograd.grad(out, weights, grad_recon)
            total = total + from_recon
            if ctx.needs_input_grad[3]:
                grad_W_dec = _transpose_times(pattern, vals, grad_recon, d_sae)
        g = total * (vals > 0)  # ReLU's gradient, as F.relu's backward (0 where the kept value is 0)
        grad_centered = grad_W = grad_b = None
        if ctx.needs_input_grad[0]:  # sum_j g_rj W_enc[:, idx_rj], a weighted bag of encoder columns
            grad_centered = F.embedding_bag(idx, W_enc.t().contiguous(), mode="sum", per_sample_weights=g)
        if ctx.needs_input_grad[1]:
            grad_W = _transpose_times(pattern, g, centered, d_sae).t().contiguous()
        if ctx.needs_input_grad[2]:
            grad_b = torch.zeros(d_sae, dtype=g.dtype, device=g.device).index_add_(0, idx.reshape(-1), g.reshape(-1))
        return grad_centered, grad_W, grad_b, grad_W_dec, None, None


def _check_code_args(centered: Tensor, W_enc: Tensor, b_enc: Tensor, k: int, chunk_rows: int) -> None:
    if centered.dim() != 2 or W_enc.dim() != 2 or centered.shape[1] != W_enc.shape[0]:
        raise ValueError(f"topk_encode expects centered (n, d_in) and W_enc (d_in, d_sae), got shapes "
                         f"{tuple(centered.shape)} and {tuple(W_enc.shape)}")
    if b_enc.shape != (W_enc.shape[1],):
        raise ValueError(f"b_enc must have shape ({W_enc.shape[1]},), got {tuple(b_enc.shape)}")
    if not 1 <= k <= W_enc.shape[1]:
        raise ValueError(f"k must be in [1, d_sae={W_enc.shape[1]}], got {k}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    finite = torch.isfinite(centered).all(dim=1)
    if not bool(finite.all()):  # a NaN would silently win or lose every comparison of the TopK
        rows = (~finite).nonzero().flatten()
        raise ValueError(f"topk_encode: centered has NaN or infinite values in {rows.numel()} row(s), first "
                         f"{rows[:5].tolist()}")


def topk_encode(centered: Tensor, W_enc: Tensor, b_enc: Tensor, k: int, *, chunk_rows: int = 256,
                ) -> tuple[Tensor, Tensor]:
    """The TopK code of ``centered @ W_enc + b_enc`` as ``(values, indices)``, each ``(n, k)``, ReLU'd.

    Introduced in chapter 3 (the trainer's TopK step).

    Equal to ``topk_codes(centered @ W_enc + b_enc, k, dense=False)`` and differentiable in ``centered``,
    ``W_enc`` and ``b_enc`` with the same gradients (to rounding), but the ``(n, d_sae)`` pre-activations are
    computed ``chunk_rows`` rows at a time and never kept, and the backward pass works on the ``n * k`` kept
    entries only: the encoder's gradient is a sparse-times-dense product instead of two dense
    ``(n, d_sae)``-sized matrix products. ``bench/bench_sae_kernels.py`` measures it.
    """
    _check_code_args(centered, W_enc, b_enc, k, chunk_rows)
    vals, idx, _ = _TopKCode.apply(centered, W_enc, b_enc, None, int(k), int(chunk_rows))
    return vals, idx


def topk_autoencode(centered: Tensor, W_enc: Tensor, b_enc: Tensor, W_dec: Tensor, k: int, *,
                    chunk_rows: int = 256) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`topk_encode` and the decode of its code, ``(values, indices, sum_j values_j W_dec[indices_j])``.

    Introduced in chapter 3 (the trainer's TopK step). The decode (no bias) equals :func:`sparse_decode`; doing
    both in one function lets the backward pass sort the code by latent once for both weight gradients.
    """
    _check_code_args(centered, W_enc, b_enc, k, chunk_rows)
    if W_dec.dim() != 2 or W_dec.shape[0] != W_enc.shape[1]:
        raise ValueError(f"W_dec must have shape ({W_enc.shape[1]}, d_in), got {tuple(W_dec.shape)}")
    vals, idx, recon = _TopKCode.apply(centered, W_enc, b_enc, W_dec, int(k), int(chunk_rows))
    return vals, idx, recon


def _code_rows(idx: Tensor, offsets: Tensor | None) -> Tensor:
    """The row of every entry of a sparse code (``idx`` 2-D with one row per vector, or 1-D with ``offsets``)."""
    if offsets is None:
        return torch.arange(idx.shape[0], device=idx.device).repeat_interleave(idx.shape[1])
    counts = torch.diff(offsets, append=offsets.new_tensor([idx.numel()]))
    return torch.repeat_interleave(torch.arange(len(offsets), device=idx.device), counts)


class _SparseDecode(torch.autograd.Function):
    """``embedding_bag`` decode whose weight gradient is a sparse-times-dense product."""

    @staticmethod
    def forward(ctx: Any, idx: Tensor, vals: Tensor, W_dec: Tensor,  # type: ignore[override]
                offsets: Tensor | None) -> Tensor:
        ctx.save_for_backward(idx, vals, W_dec, offsets)
        return F.embedding_bag(idx, W_dec, offsets, mode="sum", per_sample_weights=vals)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        idx, vals, W_dec, offsets = ctx.saved_tensors
        grad_vals = grad_W = None
        if ctx.needs_input_grad[1]:  # embedding_bag's own per-sample-weight gradient (no (n, k, d_in) gather)
            with torch.enable_grad():
                weights = vals.detach().requires_grad_(True)
                out = F.embedding_bag(idx, W_dec.detach(), offsets, mode="sum", per_sample_weights=weights)
                (grad_vals,) = torch.autograd.grad(out, weights, grad_out)
        if ctx.needs_input_grad[2]:  # G^T @ grad_out with G the (n, d_sae) code
            rows = _code_rows(idx, offsets)
            g_t = torch.sparse_coo_tensor(torch.stack([idx.reshape(-1), rows]), vals.reshape(-1),
                                          (W_dec.shape[0], grad_out.shape[0]), check_invariants=False)
            grad_W = torch.sparse.mm(g_t, grad_out)
        return None, grad_vals, grad_W, None


def sparse_decode(idx: Tensor, vals: Tensor, W_dec: Tensor, offsets: Tensor | None = None) -> Tensor:
    """``sum_j vals_j * W_dec[idx_j]`` per row (no bias), as ``F.embedding_bag(idx, W_dec, offsets, mode="sum",
    per_sample_weights=vals)``.

    Introduced in chapter 3 (the SAE's sparse decode).

    Same values and gradients (to rounding) as ``embedding_bag``, but the decoder's gradient is computed as
    a sparse-times-dense product over the kept entries, which on CPU is faster than ``embedding_bag``'s dense
    backward (part of the SAE step ``bench/bench_speed.py`` times). The SAE uses it for ragged codes
    (BatchTopK) and AuxK; the TopK step decodes inside :func:`topk_autoencode`.
    """
    return _SparseDecode.apply(idx, vals, W_dec, offsets)


def threshold_codes(pre: Tensor, threshold: Tensor) -> Tensor:
    """BatchTopK at inference: each latent fires where its pre-activation exceeds ``threshold``.

    Introduced in chapter 3.
    """
    return pre * (pre > threshold)


def batchtopk_codes(pre: Tensor, k: int, threshold: Tensor, momentum: float, *, dense: bool = True,
                    ) -> tuple[Tensor | None, SparseCode]:
    """BatchTopK in training (Bussmann et al. 2024): the ``k * n`` largest pre-activations of the batch, ReLU'd.

    Introduced in chapter 3. Rows share the budget. The running inference
    ``threshold`` (a scalar buffer, negative until set) is updated in place with the smallest kept positive
    activation (exponential average with ``momentum``). ``dense=False`` skips the dense codes (``None``).
    """
    n, d_sae = pre.shape
    flat = pre.reshape(-1)
    m = min(k * n, flat.numel())
    vals, flat_idx = flat.topk(m, sorted=False)
    vals = F.relu(vals)
    z = torch.zeros_like(flat).scatter_(0, flat_idx, vals).view(n, d_sae) if dense else None
    with torch.no_grad():
        positive = vals[vals > 0]
        if positive.numel():
            smallest = positive.min()
            if float(threshold) < 0:
                threshold.copy_(smallest)
            else:
                threshold.mul_(momentum).add_((1.0 - momentum) * smallest)
    rows = torch.div(flat_idx, d_sae, rounding_mode="floor")
    order = torch.argsort(rows, stable=True)
    counts = torch.bincount(rows, minlength=n)
    offsets = torch.zeros(n, dtype=torch.long, device=pre.device)
    offsets[1:] = counts.cumsum(0)[:-1]
    return z, ((flat_idx % d_sae)[order], vals[order], offsets)
