"""The layers SASRec is built from: capture points, causal self-attention and the pre-LN transformer block.

Introduced in chapter 2.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from seqsae_lib.model.config import SASRecConfig

__all__ = ["HookPoint", "CausalSelfAttention", "TransformerBlock"]


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
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.dropout = dropout
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
        self.attn = CausalSelfAttention(d, config.n_heads, config.attn_dropout)
        self.ln_ffn = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.ffn = nn.Sequential(
            nn.Linear(d, config.ff_width),
            nn.GELU() if config.activation == "gelu" else nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.ff_width, d),
        )
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        """Apply the block to ``(B, L, d)`` states with a ``(B, 1, L, L)`` mask."""
        x = x + self.drop(self.attn(self.ln_attn(x), attn_mask))
        return x + self.drop(self.ffn(self.ln_ffn(x)))
