"""The sparsifying activations of an SAE: TopK, BatchTopK and ReLU, from pre-activations to latent codes.

Introduced in chapter 3.

Each function takes 2-D pre-activations ``(n, d_sae)`` and returns the dense codes ``z`` plus, where a
sparse decode applies, ``(indices, values, offsets)`` for :func:`torch.nn.functional.embedding_bag`
(``offsets`` is ``None`` when every row keeps the same number of latents).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["SparseCode", "topk_codes", "batchtopk_codes", "threshold_codes"]

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
