"""SASRec: a causal, pre-LayerNorm transformer for next-item recommendation.

Introduced in chapter 2.

Conventions used throughout the library
---------------------------------------
* Items have internal ids ``1..num_items``; id ``0`` is padding.
* Input sequences are **left-padded**: padding sits on the left, so the most
  recent item is always at position ``-1``.
* Positional embeddings are **right-aligned**: the last column of any batch
  gets position ``max_len - 1``, the one before it ``max_len - 2`` and so on.
  A sequence therefore gets exactly the same representation whether its batch
  is ``max_len`` wide or has been trimmed to fewer columns (see
  :func:`seqsae_lib.data.batching.trim_left_padding`).
* Every named capture point (``"embed"``, ``"block_0"``, ..., ``"final"``)
  holds exactly zero at padding positions in a plain forward pass. Padding
  positions never influence real positions (keys are masked in attention, all
  other operations act position by position).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from seqsae_lib.model.config import SASRecConfig
from seqsae_lib.model.layers import HookPoint, TransformerBlock, make_dropout

__all__ = [
    "SASRec",
    "UnknownCapturePointError",
]


class UnknownCapturePointError(KeyError, ValueError):
    """Raised when a capture point name does not exist in the model.

    Introduced in chapter 3. It subclasses
    both :class:`KeyError` and :class:`ValueError` so either can be caught.
    """

    def __str__(self) -> str:  # KeyError would otherwise repr-quote the message
        return str(self.args[0]) if self.args else ""


class SASRec(nn.Module):
    """Self-attentive sequential recommender (Kang & McAuley, 2018), pre-LN variant.

    Introduced in chapter 2.

    Architecture: item embedding (``num_items + 1`` rows, row 0 = padding,
    kept at zero) plus learned right-aligned positional embedding, optional
    ``sqrt(d)`` scaling of the item part (off by default), dropout, padding
    positions zeroed (capture point ``"embed"``); ``n_layers`` pre-LN blocks,
    each followed by zeroing of padding positions (``"block_i"``); a final
    LayerNorm, padding zeroed again (``"final"``). Scores are the final state
    times the item embedding table (tied head, no bias); the padding column 0
    is always ``-inf``.

    Design choices (measured on a 2-core CPU, ML-100k shape, batch 128):
    the feed-forward width defaults to ``d_model`` as in the original SASRec
    (``4 * d_model`` made a training step about 50 % slower); attention uses
    ``torch.nn.functional.scaled_dot_product_attention`` with one additive
    mask per forward pass (faster than ``nn.MultiheadAttention`` with key
    padding masks); attention-probability dropout is off by default (see
    :attr:`SASRecConfig.attn_dropout`); dropout masks are drawn from 16-bit
    random numbers (:attr:`SASRecConfig.fast_dropout`); item embeddings are not scaled by
    ``sqrt(d_model)`` (see :attr:`SASRecConfig.scale_embeddings`).

    Parameters
    ----------
    num_items, max_len, d_model, n_layers, n_heads, dropout, attn_dropout, fast_dropout, d_ff, \
activation, scale_embeddings, init_std, layer_norm_eps
        See :class:`SASRecConfig` (keyword-only).
    """

    def __init__(
        self,
        *,
        num_items: int,
        max_len: int = 200,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 1,
        dropout: float = 0.2,
        attn_dropout: float = 0.0,
        fast_dropout: bool = True,
        d_ff: int | None = None,
        activation: str = "gelu",
        scale_embeddings: bool = False,
        init_std: float = 0.02,
        layer_norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        cfg = SASRecConfig(
            num_items=num_items,
            max_len=max_len,
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            dropout=dropout,
            attn_dropout=attn_dropout,
            fast_dropout=fast_dropout,
            d_ff=d_ff,
            activation=activation,
            scale_embeddings=scale_embeddings,
            init_std=init_std,
            layer_norm_eps=layer_norm_eps,
        )
        self._config = cfg
        self.num_items = cfg.num_items
        self.max_len = cfg.max_len
        self.d_model = cfg.d_model
        self.n_layers = cfg.n_layers
        self._embed_scale = math.sqrt(cfg.d_model) if cfg.scale_embeddings else 1.0

        self.item_emb = nn.Embedding(cfg.num_items + 1, cfg.d_model, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.emb_drop = make_dropout(cfg.dropout, cfg.fast_dropout)
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.final_ln = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)

        names = ("embed", *(f"block_{i}" for i in range(cfg.n_layers)), "final")
        self._capture_points: tuple[str, ...] = names
        self.hooks = nn.ModuleDict({n: HookPoint(n) for n in names})

        nn.init.normal_(self.item_emb.weight, std=cfg.init_std)
        nn.init.normal_(self.pos_emb.weight, std=cfg.init_std)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    # ------------------------------------------------------------------ config
    @classmethod
    def from_config(cls, config: SASRecConfig) -> "SASRec":
        """Build a freshly initialised model from a :class:`SASRecConfig`.

        Introduced in chapter 2.
        """
        if not isinstance(config, SASRecConfig):
            raise TypeError(f"expected a SASRecConfig, got {type(config).__name__}")
        return cls(**config.to_dict())

    @property
    def config(self) -> SASRecConfig:
        """The :class:`SASRecConfig` this model was built with.

        Introduced in chapter 2.
        """
        return self._config

    # ---------------------------------------------------------- capture points
    @property
    def capture_points(self) -> tuple[str, ...]:
        """Names of the capture points in forward order.

        Introduced in chapter 3:
        ``("embed", "block_0", ..., "block_{n_layers-1}", "final")``.
        """
        return self._capture_points

    def hook_point(self, name: str) -> HookPoint:
        """Return the identity :class:`HookPoint` module for capture point ``name``.

        Introduced in chapter 3.

        Raises
        ------
        UnknownCapturePointError
            (a ``KeyError`` and ``ValueError``) if ``name`` is not one of
            :attr:`capture_points`; the message lists the valid names.
        """
        if not isinstance(name, str) or name not in self.hooks:
            raise UnknownCapturePointError(
                f"unknown capture point {name!r}; valid names are {list(self._capture_points)}"
            )
        return self.hooks[name]  # type: ignore[return-value]

    # ----------------------------------------------------------------- forward
    def _check_input_ids(self, input_ids: Tensor) -> None:
        if not isinstance(input_ids, Tensor):
            raise TypeError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}")
        if input_ids.dim() != 2:
            raise ValueError(
                f"input_ids must have shape (batch, length), got shape {tuple(input_ids.shape)}"
            )
        if input_ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise TypeError(f"input_ids must be an integer tensor, got dtype {input_ids.dtype}")
        if input_ids.shape[1] == 0:
            raise ValueError("input_ids has zero positions; expected at least one column")
        if input_ids.shape[1] > self.max_len:
            raise ValueError(
                f"input_ids has {input_ids.shape[1]} positions but max_len is {self.max_len}; "
                "left-pad/truncate with seqsae_lib.data.batching.left_pad(seqs, max_len)"
            )
        if input_ids.numel():
            lo, hi = int(input_ids.min()), int(input_ids.max())
            if lo < 0 or hi > self.num_items:
                raise ValueError(
                    f"input_ids must lie in [0, {self.num_items}] (0 = padding), "
                    f"got values in [{lo}, {hi}]"
                )

    def _masks(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        """Return the ``(B, L, 1)`` float validity mask and ``(B, 1, L, L)`` additive attention mask."""
        valid = input_ids != 0
        length = input_ids.shape[1]
        dtype = self.item_emb.weight.dtype
        causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril_()
        # Query i may attend key j if j <= i and j is a real item; the diagonal
        # is always allowed so that padding queries (whose row would otherwise be
        # fully masked and give NaN) produce finite values, which are discarded.
        allowed = causal & valid[:, None, None, :]
        allowed |= torch.eye(length, dtype=torch.bool, device=input_ids.device)
        # An additive float mask built once per forward pass: passing the boolean
        # mask makes scaled_dot_product_attention convert it in every layer.
        additive = torch.zeros(allowed.shape, dtype=dtype, device=input_ids.device)
        additive.masked_fill_(~allowed, float("-inf"))
        return valid.unsqueeze(-1).to(dtype), additive

    def _embed(self, input_ids: Tensor, keep: Tensor) -> Tensor:
        length = input_ids.shape[1]
        positions = torch.arange(self.max_len - length, self.max_len, device=input_ids.device)
        x = self.item_emb(input_ids)
        if self._embed_scale != 1.0:
            x = x * self._embed_scale
        x = x + self.pos_emb(positions)
        return self.emb_drop(x) * keep

    def _run_from(self, stage: int, x: Tensor, keep: Tensor, attn_mask: Tensor) -> Tensor:
        """Run from capture point number ``stage`` (its hook included) to ``final``."""
        names = self._capture_points
        x = self.hooks[names[stage]](x)
        for i in range(stage, self.n_layers):
            x = self.blocks[i](x, attn_mask) * keep
            x = self.hooks[names[i + 1]](x)
        if stage <= self.n_layers:
            x = self.final_ln(x) * keep
            x = self.hooks["final"](x)
        return x

    def forward(self, input_ids: Tensor) -> Tensor:
        """Final hidden states for left-padded item ids.

        Introduced in chapter 2.

        Parameters
        ----------
        input_ids : Tensor
            ``(B, L)`` integer ids in ``[0, num_items]``, left-padded with 0,
            ``L <= max_len``.

        Returns
        -------
        Tensor
            ``(B, L, d_model)`` states after the final LayerNorm (capture point
            ``"final"``); exactly zero at padding positions. The state at
            position ``t`` predicts the item at ``t + 1``.
        """
        self._check_input_ids(input_ids)
        keep, attn_mask = self._masks(input_ids)
        return self._run_from(0, self._embed(input_ids, keep), keep, attn_mask)

    def forward_from(self, name: str, hidden: Tensor, input_ids: Tensor) -> Tensor:
        """Continue the forward pass from a state at capture point ``name``.

        Introduced in chapter 5, to steer at an
        inner layer from cached states.

        ``hidden`` is treated exactly as if the forward pass had produced it at
        ``name``: the hook point ``name`` and every later hook point still run
        (so :func:`seqsae_lib.model.capture.record` / ``intervene`` work), then the
        remaining blocks and the final LayerNorm.

        Parameters
        ----------
        name : str
            A capture point (see :attr:`capture_points`).
        hidden : Tensor
            ``(B, L, d_model)`` state at ``name``.
        input_ids : Tensor
            ``(B, L)`` the ids that produced ``hidden`` (needed for the padding
            and attention masks).

        Returns
        -------
        Tensor
            ``(B, L, d_model)`` final hidden states (zero at padding positions).
        """
        self.hook_point(name)  # validates the name
        self._check_input_ids(input_ids)
        if not isinstance(hidden, Tensor) or hidden.dim() != 3:
            raise ValueError(
                f"hidden must be a (batch, length, d_model) tensor, got "
                f"{tuple(hidden.shape) if isinstance(hidden, Tensor) else type(hidden).__name__}"
            )
        expected = (*input_ids.shape, self.d_model)
        if tuple(hidden.shape) != expected:
            raise ValueError(
                f"hidden has shape {tuple(hidden.shape)} but input_ids {tuple(input_ids.shape)} "
                f"needs hidden of shape {expected}"
            )
        keep, attn_mask = self._masks(input_ids)
        stage = self._capture_points.index(name)
        return self._run_from(stage, hidden.to(keep.dtype), keep, attn_mask)

    # ----------------------------------------------------------------- scoring
    def score(self, final_hidden: Tensor) -> Tensor:
        """Tied-head logits over all item ids.

        Introduced in chapter 2.

        Parameters
        ----------
        final_hidden : Tensor
            ``(..., d_model)`` states at capture point ``"final"``.

        Returns
        -------
        Tensor
            ``(..., num_items + 1)`` logits ``final_hidden @ item_emb.T``;
            column 0 (padding) is ``-inf`` so it is never recommended.
        """
        if final_hidden.shape[-1] != self.d_model:
            raise ValueError(
                f"final_hidden must end in d_model={self.d_model}, got shape {tuple(final_hidden.shape)}"
            )
        logits = final_hidden @ self.item_emb.weight.T
        logits[..., 0] = float("-inf")
        return logits

    def last_hidden(self, input_ids: Tensor) -> Tensor:
        """Final hidden state at the last (most recent) position.

        Introduced in chapter 2.

        Returns
        -------
        Tensor
            ``(B, d_model)``.

        Raises
        ------
        ValueError
            A row whose last column is padding: an empty history (its state would be exactly zero, and so
            would every score) or a right-padded one. The message names the row.
        """
        final = self.forward(input_ids)  # validates input_ids
        ends_in_padding = input_ids[:, -1] == 0
        if bool(ends_in_padding.any()):
            row = int(torch.nonzero(ends_in_padding)[0])
            raise ValueError(
                f"input_ids row {row} ends in padding (0): an empty history, or a right-padded one. "
                "The most recent item must be in the last column; build inputs from non-empty histories "
                "with seqsae_lib.data.batching.left_pad(seqs, max_len)"
            )
        return final[:, -1]

    def scores(self, input_ids: Tensor) -> Tensor:
        """Next-item scores for each sequence (the *scorer* protocol).

        Introduced in chapter 2; this is what
        :func:`seqsae_lib.model.evaluation.evaluate` calls.

        Returns
        -------
        Tensor
            ``(B, num_items + 1)``; column 0 is ``-inf``.

        Raises
        ------
        ValueError
            A row that ends in padding (an empty history), see :meth:`last_hidden`.
        """
        return self.score(self.last_hidden(input_ids))
