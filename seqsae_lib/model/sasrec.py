"""SASRec: a causal, pre-LayerNorm transformer for next-item recommendation.

Introduced in chapter 2 (chapters/02_sasrec.ipynb).

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
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "SASRecConfig",
    "SASRec",
    "HookPoint",
    "UnknownCapturePointError",
]

_ACTIVATIONS = ("gelu", "relu")


class UnknownCapturePointError(KeyError, ValueError):
    """Raised when a capture point name does not exist in the model.

    Introduced in chapter 3 (chapters/03_sae.ipynb). It subclasses
    both :class:`KeyError` and :class:`ValueError` so either can be caught.
    """

    def __str__(self) -> str:  # KeyError would otherwise repr-quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class SASRecConfig:
    """Hyper-parameters of :class:`SASRec` (everything needed to rebuild it).

    Introduced in chapter 2 (chapters/02_sasrec.ipynb).
    """

    num_items: int
    """Number of real items; ids run ``1..num_items`` and ``0`` is padding."""

    max_len: int = 200
    """Longest input window in positions (number of positional embeddings)."""

    d_model: int = 64
    """Width of the residual stream (embedding dimension)."""

    n_layers: int = 2
    """Number of transformer blocks (capture points ``block_0 .. block_{n-1}``)."""

    n_heads: int = 1
    """Number of attention heads; must divide ``d_model``."""

    dropout: float = 0.2
    """Dropout rate on the embedding sum and on each sub-layer output (attention
    and feed-forward, before the residual add) and inside the feed-forward."""

    attn_dropout: float = 0.0
    """Dropout on the attention probabilities. Off by default: on CPU it costs
    about a quarter of a training step (random numbers for every ``L x L``
    attention entry, and it forces PyTorch's slower attention kernel) while
    the other dropouts already regularise."""

    d_ff: int | None = None
    """Hidden width of the feed-forward sub-layer; ``None`` means ``d_model``
    (the original SASRec's point-wise feed-forward network is ``d_model`` wide)."""

    activation: str = "gelu"
    """Feed-forward non-linearity: ``"gelu"`` or ``"relu"``."""

    scale_embeddings: bool = False
    """Multiply item embeddings by ``sqrt(d_model)`` before adding positions.
    Off by default: the same table is the (tied) output layer, the final
    LayerNorm fixes the scale the head reads, and unscaled item and position
    embeddings start on an equal footing."""

    init_std: float = 0.02
    """Standard deviation of the normal initialisation of both embedding tables."""

    layer_norm_eps: float = 1e-6
    """Epsilon of every LayerNorm."""

    def __post_init__(self) -> None:
        def _int(name: str, minimum: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"SASRecConfig.{name} must be an int >= {minimum}, got {value!r}")

        _int("num_items", 1)
        _int("max_len", 1)
        _int("d_model", 1)
        _int("n_layers", 0)
        _int("n_heads", 1)
        if self.d_ff is not None:
            _int("d_ff", 1)
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"SASRecConfig.n_heads={self.n_heads} must divide d_model={self.d_model}"
            )
        for name in ("dropout", "attn_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value < 1.0):
                raise ValueError(f"SASRecConfig.{name} must be a number in [0, 1), got {value!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"SASRecConfig.activation must be one of {_ACTIVATIONS}, got {self.activation!r}"
            )
        if not (self.init_std > 0 and math.isfinite(self.init_std)):
            raise ValueError(f"SASRecConfig.init_std must be a positive number, got {self.init_std!r}")
        if not (self.layer_norm_eps > 0):
            raise ValueError(f"SASRecConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")

    @property
    def ff_width(self) -> int:
        """Resolved feed-forward width (``d_ff`` or ``d_model`` when ``None``).

        Introduced in chapter 2 (chapters/02_sasrec.ipynb).
        """
        return self.d_model if self.d_ff is None else self.d_ff

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict of the fields (used by checkpoints).

        Introduced in chapter 2 (chapters/02_sasrec.ipynb).
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SASRecConfig":
        """Build a config from :meth:`to_dict` output; unknown keys are an error.

        Introduced in chapter 2 (chapters/02_sasrec.ipynb).
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown SASRecConfig field(s) {unknown}; expected a subset of {sorted(known)}"
            )
        return cls(**data)


class HookPoint(nn.Module):
    """Identity module marking a named place on the residual stream.

    Introduced in chapter 3 (chapters/03_sae.ipynb). Forward hooks
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

    Introduced in chapter 2 (chapters/02_sasrec.ipynb).

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

    Introduced in chapter 2 (chapters/02_sasrec.ipynb).
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


class SASRec(nn.Module):
    """Self-attentive sequential recommender (Kang & McAuley, 2018), pre-LN variant.

    Introduced in chapter 2 (chapters/02_sasrec.ipynb).

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
    :attr:`SASRecConfig.attn_dropout`); item embeddings are not scaled by
    ``sqrt(d_model)`` (see :attr:`SASRecConfig.scale_embeddings`).

    Parameters
    ----------
    num_items, max_len, d_model, n_layers, n_heads, dropout, attn_dropout, d_ff, \
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
        self.emb_drop = nn.Dropout(cfg.dropout)
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

        Introduced in chapter 2 (chapters/02_sasrec.ipynb).
        """
        if not isinstance(config, SASRecConfig):
            raise TypeError(f"expected a SASRecConfig, got {type(config).__name__}")
        return cls(**config.to_dict())

    @property
    def config(self) -> SASRecConfig:
        """The :class:`SASRecConfig` this model was built with.

        Introduced in chapter 2 (chapters/02_sasrec.ipynb).
        """
        return self._config

    # ---------------------------------------------------------- capture points
    @property
    def capture_points(self) -> tuple[str, ...]:
        """Names of the capture points in forward order.

        Introduced in chapter 3 (chapters/03_sae.ipynb):
        ``("embed", "block_0", ..., "block_{n_layers-1}", "final")``.
        """
        return self._capture_points

    def hook_point(self, name: str) -> HookPoint:
        """Return the identity :class:`HookPoint` module for capture point ``name``.

        Introduced in chapter 3 (chapters/03_sae.ipynb).

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

        Introduced in chapter 2 (chapters/02_sasrec.ipynb).

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

        Introduced in chapter 5 (chapters/05_steering.ipynb), to steer at an
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

        Introduced in chapter 2 (chapters/02_sasrec.ipynb).

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

        Introduced in chapter 2 (chapters/02_sasrec.ipynb).

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

        Introduced in chapter 2 (chapters/02_sasrec.ipynb); this is what
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
