"""The sparsifying activations of an SAE: TopK, BatchTopK and ReLU, from pre-activations to latent codes.

Introduced in chapter 3.

Each function takes 2-D pre-activations ``(n, d_sae)`` and returns the dense codes ``z`` plus, where a
sparse decode applies, ``(indices, values, offsets)`` for :func:`torch.nn.functional.embedding_bag`
(``offsets`` is ``None`` when every row keeps the same number of latents).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["SparseCode", "topk_codes", "topk_encode", "batchtopk_codes", "threshold_codes"]

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


class _TopKEncode(torch.autograd.Function):
    """``topk(relu(centered @ W_enc + b_enc))`` with a backward pass that only touches the kept entries."""

    @staticmethod
    def forward(ctx: Any, centered: Tensor, W_enc: Tensor, b_enc: Tensor, k: int,  # type: ignore[override]
                chunk_rows: int) -> tuple[Tensor, Tensor]:
        parts = [torch.addmm(b_enc, rows, W_enc).topk(k, dim=-1, sorted=False) for rows in centered.split(chunk_rows)]
        vals = F.relu(torch.cat([p.values for p in parts]))
        idx = torch.cat([p.indices for p in parts])
        ctx.save_for_backward(centered, W_enc, idx, vals)
        ctx.mark_non_differentiable(idx)
        return vals, idx

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_vals: Tensor, _grad_idx: Tensor | None,  # type: ignore[override]
                 ) -> tuple[Tensor | None, ...]:
        centered, W_enc, idx, vals = ctx.saved_tensors
        g = grad_vals * (vals > 0)  # ReLU's gradient, as F.relu's backward (0 where the kept value is 0)
        n, k = idx.shape
        d_sae = W_enc.shape[1]
        flat_idx, flat_g = idx.reshape(-1), g.reshape(-1)
        grad_centered = grad_W = grad_b = None
        if ctx.needs_input_grad[0]:  # sum_j g_rj W_enc[:, idx_rj], a weighted bag of encoder columns
            grad_centered = F.embedding_bag(idx, W_enc.t().contiguous(), mode="sum", per_sample_weights=g)
        if ctx.needs_input_grad[1]:  # G^T @ centered with G the (n, d_sae) gradient holding k entries per row
            rows = torch.arange(n, device=idx.device).repeat_interleave(k)
            g_t = torch.sparse_coo_tensor(torch.stack([flat_idx, rows]), flat_g, (d_sae, n), check_invariants=False)
            grad_W = torch.sparse.mm(g_t, centered).t().contiguous()
        if ctx.needs_input_grad[2]:
            grad_b = torch.zeros(d_sae, dtype=g.dtype, device=g.device).index_add_(0, flat_idx, flat_g)
        return grad_centered, grad_W, grad_b, None, None


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
    if centered.dim() != 2 or W_enc.dim() != 2 or centered.shape[1] != W_enc.shape[0]:
        raise ValueError(f"topk_encode expects centered (n, d_in) and W_enc (d_in, d_sae), got shapes "
                         f"{tuple(centered.shape)} and {tuple(W_enc.shape)}")
    if b_enc.shape != (W_enc.shape[1],):
        raise ValueError(f"b_enc must have shape ({W_enc.shape[1]},), got {tuple(b_enc.shape)}")
    if not 1 <= k <= W_enc.shape[1]:
        raise ValueError(f"k must be in [1, d_sae={W_enc.shape[1]}], got {k}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    vals, idx = _TopKEncode.apply(centered, W_enc, b_enc, int(k), int(chunk_rows))
    return vals, idx


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
