"""The hyper-parameters of a SASRec model: :class:`SASRecConfig`.

Introduced in chapter 2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from seqsae_lib.utils.checks import check_choice, check_float, check_int

__all__ = ["SASRecConfig", "ACTIVATIONS"]

ACTIVATIONS: tuple[str, ...] = ("gelu", "relu")
"""Feed-forward non-linearities :attr:`SASRecConfig.activation` accepts."""


@dataclass(frozen=True)
class SASRecConfig:
    """Hyper-parameters of :class:`~seqsae_lib.model.sasrec.SASRec` (everything needed to rebuild it).

    Introduced in chapter 2.
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
    a random number for every ``L x L`` attention entry and PyTorch's slower
    (explicit) attention computation, while the other dropouts already
    regularise (with ``nn.Dropout`` masks it cost about a quarter of a training
    step; :attr:`fast_dropout` makes the masks cheap)."""

    fast_dropout: bool = True
    """Draw every dropout mask (attention probabilities included) with
    :func:`~seqsae_lib.model.layers.fast_dropout`: four 16-bit random numbers
    per 64-bit draw instead of one Bernoulli draw per element, a dropout in
    about a fifth of the time on CPU, with the keep probability ``1 - dropout`` to within ``1 / 131072``.
    The same distribution of masks as ``nn.Dropout`` but other draws, so a run
    is not bit-identical to one with ``nn.Dropout`` (``False``, which the
    shipped recipes pin: they were trained before this option existed). On
    ML-100k the recipe reached the same validation NDCG@10 with it (together
    with :attr:`~seqsae_lib.TrainConfig.fused_loss`) over 6 seeds. Training
    only; no effect on a trained model's outputs."""

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
            object.__setattr__(self, name, check_int(f"SASRecConfig.{name}", getattr(self, name), minimum))

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
            check_float(f"SASRecConfig.{name}", getattr(self, name), 0.0, 1.0, exclusive_maximum=True)
        if not isinstance(self.fast_dropout, bool):
            raise TypeError(f"SASRecConfig.fast_dropout must be a bool, got {self.fast_dropout!r}")
        check_choice("SASRecConfig.activation", self.activation, ACTIVATIONS)
        check_float("SASRecConfig.init_std", self.init_std, 0.0, exclusive_minimum=True)
        check_float("SASRecConfig.layer_norm_eps", self.layer_norm_eps, 0.0, exclusive_minimum=True)

    @property
    def ff_width(self) -> int:
        """Resolved feed-forward width (``d_ff`` or ``d_model`` when ``None``).

        Introduced in chapter 2.
        """
        return self.d_model if self.d_ff is None else self.d_ff

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict of the fields (used by checkpoints).

        Introduced in chapter 2.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SASRecConfig":
        """Build a config from :meth:`to_dict` output; unknown keys are an error.

        Introduced in chapter 2.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown SASRecConfig field(s) {unknown}; expected a subset of {sorted(known)}"
            )
        return cls(**data)
