"""The layers SASRec is built from: capture points, causal self-attention and the pre-LN transformer block.

Introduced in chapter 2.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from seqsae_lib.model.config import SASRecConfig
from seqsae_lib.utils.checks import check_float

__all__ = ["HookPoint", "CausalSelfAttention", "TransformerBlock", "FastDropout", "fast_dropout",
           "explicit_attention"]


class _KeepAndScale(torch.autograd.Function):
    """``x * keep * scale`` with a boolean ``keep``; saves only the 1-byte mask for the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, keep: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.mul(keep).mul_(scale)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None, None


def fast_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Dropout whose mask comes from 16-bit random integers, four per 64-bit draw.

    Introduced with :attr:`SASRecConfig.fast_dropout` (chapter 2). An element is kept when its 16-bit number
    falls below ``round((1 - p) * 65536)`` of the 65,536 values, so the keep probability is ``1 - p`` to within
    ``1 / 131072``, and kept elements are scaled by the inverse of that exact probability (the expectation of
    the output equals ``x``, as with :func:`torch.nn.functional.dropout`). On a 2-core CPU the whole operation
    (mask and multiplication) takes about a fifth of the time of :func:`torch.nn.functional.dropout`, which
    draws one Bernoulli number per element (6.6 ms against 1.4 ms for 720,000 attention probabilities,
    ``bench/bench_sasrec_kernels.py``). The draws come from the default generator of ``x``'s device, so :func:`~seqsae_lib.set_seed`
    makes them reproducible, but they differ from those of ``nn.Dropout``.

    Parameters
    ----------
    x : Tensor
        Any shape.
    p : float
        Drop probability in ``[0, 1)``.
    training : bool, default True
        Identity when False (or when ``p == 0``).

    Returns
    -------
    Tensor
        Same shape and dtype as ``x``.
    """
    p = check_float("dropout probability p", p, 0.0, 1.0, exclusive_maximum=True)
    if not training or p == 0.0:
        return x
    kept_values = round((1.0 - p) * 65536)
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
    keep = words.view(torch.int16)[:n].view(x.shape) < kept_values - 32768
    return _KeepAndScale.apply(x, keep, 65536.0 / kept_values)


class FastDropout(nn.Module):
    """Drop-in for :class:`torch.nn.Dropout` that draws its mask with :func:`fast_dropout`.

    Introduced with :attr:`SASRecConfig.fast_dropout` (chapter 2).

    Parameters
    ----------
    p : float
        Drop probability in ``[0, 1)``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = check_float("FastDropout.p", p, 0.0, 1.0, exclusive_maximum=True)

    def forward(self, x: Tensor) -> Tensor:
        """Drop elements of ``x`` with probability ``p`` in training mode; identity in eval mode."""
        return fast_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def make_dropout(p: float, fast: bool) -> nn.Module:
    """``FastDropout(p)`` if ``fast`` else ``nn.Dropout(p)`` (the layers' one switch)."""
    return FastDropout(p) if fast else nn.Dropout(p)


class HookPoint(nn.Module):
    """Identity module marking a named place on the residual stream.

    Introduced in chapter 3. Forward hooks
    registered on it (see :mod:`seqsae_lib.model.capture`) can read or replace the
    state flowing through it, like TransformerLens' ``HookPoint``.

    Parameters
    ----------
    name : str
        The capture point's name (``"embed"``, ``"block_0"``, ..., ``"final"``).
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` unchanged (hooks may replace it)."""
        return x

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor, dropout_p: float = 0.0) -> Tensor:
    """``softmax(q k^T / sqrt(d) + mask)``, dropped out with :func:`fast_dropout`, times ``v``.

    Introduced with :attr:`SASRecConfig.fast_dropout` (chapter 2): what ``scaled_dot_product_attention``
    computes (its math path), written out so the dropout mask can be drawn the fast way.

    Parameters
    ----------
    q, k, v : Tensor
        ``(B, H, L, d_head)``.
    attn_mask : Tensor
        Broadcastable to ``(B, H, L, L)``: additive float (0 or ``-inf``) or boolean (``True`` = attend).
    dropout_p : float, default 0.0
        Dropout on the attention probabilities (always applied: call it only in training).

    Returns
    -------
    Tensor
        ``(B, H, L, d_head)``.
    """
    if attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill_(
            ~attn_mask, float("-inf"))
    scores = torch.matmul(q, k.transpose(-2, -1)).mul_(1.0 / math.sqrt(q.shape[-1])).add_(attn_mask)
    return torch.matmul(fast_dropout(torch.softmax(scores, dim=-1), dropout_p), v)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention built on ``scaled_dot_product_attention``.

    Introduced in chapter 2.

    Parameters
    ----------
    d_model : int
        Residual stream width.
    n_heads : int
        Number of heads (divides ``d_model``).
    dropout : float
        Dropout on the attention probabilities (training only).
    fast_dropout : bool, default True
        Draw that dropout's mask with :func:`fast_dropout`; the attention is then computed explicitly
        (scores, softmax, dropout, values) in training, where ``scaled_dot_product_attention`` would draw
        its own Bernoulli mask. Evaluation always uses ``scaled_dot_product_attention``.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float, fast_dropout: bool = True) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.dropout = dropout
        self.fast_dropout = fast_dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        """Attend causally.

        Parameters
        ----------
        x : Tensor
            ``(B, L, d_model)`` normalised residual stream.
        attn_mask : Tensor
            ``(B, 1, L, L)`` additive float mask: 0 where query ``i`` may
            attend to key ``j``, ``-inf`` elsewhere (a boolean mask, ``True`` =
            attend, also works). Every row must allow at least one key (the
            model always allows the diagonal) so no row is fully masked.

        Returns
        -------
        Tensor
            ``(B, L, d_model)``.
        """
        b, length, d = x.shape
        q, k, v = (
            self.qkv(x).view(b, length, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4).unbind(0)
        )
        if self.training and self.dropout > 0 and self.fast_dropout:
            y = explicit_attention(q, k, v, attn_mask, self.dropout)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
            )
        return self.out(y.transpose(1, 2).reshape(b, length, d))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm transformer block.

    Introduced in chapter 2.
    ``x + Dropout(Attn(LN(x)))`` then ``x + Dropout(FFN(LN(x)))`` where
    ``FFN = Linear(d, d_ff) -> act -> Dropout -> Linear(d_ff, d)``.

    Parameters
    ----------
    config : SASRecConfig
        Model hyper-parameters.
    """

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        d = config.d_model
        self.ln_attn = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.attn = CausalSelfAttention(d, config.n_heads, config.attn_dropout, config.fast_dropout)
        self.ln_ffn = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.ffn = nn.Sequential(
            nn.Linear(d, config.ff_width),
            nn.GELU() if config.activation == "gelu" else nn.ReLU(),
            make_dropout(config.dropout, config.fast_dropout),
            nn.Linear(config.ff_width, d),
        )
        self.drop = make_dropout(config.dropout, config.fast_dropout)

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        """Apply the block to ``(B, L, d)`` states with a ``(B, 1, L, L)`` mask."""
        x = x + self.drop(self.attn(self.ln_attn(x), attn_mask))
        return x + self.drop(self.ffn(self.ln_ffn(x)))
