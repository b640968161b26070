"""What an SAE is: its configuration, the sparsifying activations it offers and the definition of a dead latent.

Introduced in chapter 3.

Dead latents have one definition everywhere in the library (:func:`is_dead`): a latent is *dead* if it
fires on fewer than one in ``dead_after`` vectors. During training this is "has not fired in the last
``dead_after`` training vectors"; on a fixed evaluation set of ``n`` vectors it is "firing frequency below
``1 / dead_after``", which for ``n <= dead_after`` means "never fired on the set".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from torch import Tensor

from seqsae_lib.utils.checks import check_choice, check_float, check_int

__all__ = ["SAE_KINDS", "DEFAULT_DEAD_AFTER", "FIELDS_ADDED_LATER", "SAEKind", "SAEConfig", "is_dead"]

SAE_KINDS: tuple[str, ...] = ("topk", "batchtopk", "relu")
"""The sparsifying activations :class:`~seqsae_lib.sae.autoencoder.SparseAutoencoder` implements."""

DEFAULT_DEAD_AFTER: int = 20_000
"""Default of :attr:`SAEConfig.dead_after`: a latent silent for this many vectors counts as dead."""

SAEKind = Literal["topk", "batchtopk", "relu"]

FIELDS_ADDED_LATER: dict[str, Any] = {"aux_rescale": False}
"""Fields of :class:`SAEConfig` that older saved configs lack, with the value those files were trained with
(:meth:`SAEConfig.from_dict` fills them in; a new default would misdescribe them)."""


@dataclass
class SAEConfig:
    """Architecture and loss settings of a :class:`~seqsae_lib.sae.autoencoder.SparseAutoencoder`.

    Introduced in chapter 3.

    Raises
    ------
    TypeError, ValueError
        On construction, if a field has the wrong type or an invalid value (the message names the field).
    """

    d_in: int
    """Width of the activation vectors the SAE reads (the recommender's hidden size)."""

    d_sae: int
    """Dictionary size: the number of latents (decoder rows). Usually a multiple of ``d_in``."""

    kind: SAEKind = "topk"
    """Sparsifying activation: ``"topk"`` (k per row), ``"batchtopk"`` (k per row on average over a
    batch, a learned threshold at inference) or ``"relu"`` (ReLU with an L1 penalty)."""

    k: int = 32
    """Active latents per vector for ``"topk"`` and (on average) for ``"batchtopk"``; unused by ``"relu"``."""

    l1_coefficient: float = 1e-2
    """Weight of the L1 penalty ``mean_n sum_i z_i * ||W_dec[i]||`` for ``"relu"``; ignored otherwise. Its
    scale is relative to the per-element MSE of (normalised) inputs."""

    aux_k: int | None = None
    """Number of dead latents the AuxK loss (Gao et al. 2024) may use to reconstruct the residual error.
    ``None`` resolves to ``min(2 * d_in, d_sae)``."""

    aux_coefficient: float = 0.25
    """Weight of the AuxK loss; 0 disables it. Gao et al. (2024) use 1/32 with the plain AuxK; with the rescaled
    AuxK (``aux_rescale``, the default) and the fitted encoder start
    (:attr:`~seqsae_lib.sae.training_config.SAETrainConfig.fit_encoder_scale`, the default) 1/4 kept the fewest
    latents dead at the best FVU of the weights tried (1/32 to 1) on the ML-100k recipe
    (``bench/bench_sae_init.py``). The shipped recipes were trained with 1/32 and say so."""

    aux_rescale: bool = True
    """Rescale the AuxK reconstruction ``e_hat`` by the least-squares factor ``a`` in ``[0, 1]`` (one per batch,
    no gradient through it) before comparing it with the residual ``e``. The AuxK loss is then at most that of
    predicting zero (the residual's mean square over its variance, about 1), and a dead latent is never pushed
    to *lower* its activations because the ``aux_k`` of them together overshoot the small residual, which is
    what keeps them dead without it. ``False``: the plain AuxK of Gao et al. 2024 (the shipped recipes' setting).
    A config read from a file written before this field existed gets ``False`` (:meth:`from_dict`). Introduced in
    chapter 3."""

    dead_after: int = DEFAULT_DEAD_AFTER
    """A latent is dead if it fires on fewer than one in ``dead_after`` vectors: in training, if it has not
    fired in the last ``dead_after`` training vectors (see :func:`is_dead`)."""

    normalize_input: bool = True
    """Scale inputs by a constant ``s`` so that their mean squared norm is ``d_in`` (``s`` is estimated
    from data by :meth:`~seqsae_lib.sae.autoencoder.SparseAutoencoder.init_input_scale`). Makes learning rates and L1 coefficients
    transferable between models; :meth:`~seqsae_lib.sae.autoencoder.SparseAutoencoder.fold_normalization` folds ``s`` into the
    weights afterwards."""

    unit_norm_decoder: bool = True
    """Keep decoder rows at unit norm during training (the trainer renormalises after every step and
    removes the gradient component parallel to each row)."""

    sparse_decode: bool = True
    """Decode ``"topk"`` codes (and ``"batchtopk"`` codes in training) from the indices of the active
    latents with ``torch.nn.functional.embedding_bag`` instead of a dense ``z @ W_dec``. Same result;
    faster when ``k << d_sae`` (measured on CPU in chapter 3)."""

    threshold_momentum: float = 0.99
    """``"batchtopk"`` only: momentum of the running average of the smallest kept activation per training
    batch, which becomes the inference threshold."""

    seed: int = 0
    """Seed of the weight initialisation (a private generator: the global RNG is not touched)."""

    capture_point: str | None = None
    """Where in the recommender the SAE reads its ``d_in``-wide states (a capture point name such as
    ``"final"`` or ``"block_0"``). :func:`~seqsae_lib.sae.training.train_sae` sets it from the activation
    store it trains on; it is saved and loaded with the weights, and steering, explanations, the atlas and
    fidelity read it from the SAE (a different capture point is an error). ``None`` for an SAE trained on
    other vectors (toy data)."""

    def __post_init__(self) -> None:
        check_int("d_in", self.d_in, 1)
        check_int("d_sae", self.d_sae, 1)
        check_choice("kind", self.kind, SAE_KINDS)
        check_int("k", self.k, 1)
        if self.kind in ("topk", "batchtopk") and self.k > self.d_sae:
            raise ValueError(f"k must be <= d_sae for kind={self.kind!r}, got k={self.k} > d_sae={self.d_sae}")
        check_float("l1_coefficient", self.l1_coefficient, 0.0)
        if self.aux_k is None:
            self.aux_k = min(2 * int(self.d_in), int(self.d_sae))
        check_int("aux_k", self.aux_k, 1)
        if self.aux_k > self.d_sae:
            raise ValueError(f"aux_k must be <= d_sae, got aux_k={self.aux_k} > d_sae={self.d_sae}")
        check_float("aux_coefficient", self.aux_coefficient, 0.0)
        if not isinstance(self.aux_rescale, bool):
            raise TypeError(f"aux_rescale must be a bool, got {self.aux_rescale!r}")
        check_int("dead_after", self.dead_after, 1)
        for name in ("normalize_input", "unit_norm_decoder", "sparse_decode"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        check_float("threshold_momentum", self.threshold_momentum, 0.0, 1.0, exclusive_maximum=True)
        check_int("seed", self.seed, 0)
        if self.capture_point is not None and (not isinstance(self.capture_point, str) or not self.capture_point):
            raise TypeError(f"capture_point must be None or a capture point name, got {self.capture_point!r}")
        # plain Python types, so the config is JSON-able
        for name in ("d_in", "d_sae", "k", "aux_k", "dead_after", "seed"):
            setattr(self, name, int(getattr(self, name)))
        for name in ("l1_coefficient", "aux_coefficient", "threshold_momentum"):
            setattr(self, name, float(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict.

        Introduced in chapter 3.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        """Rebuild a config from :meth:`to_dict`'s output.

        Introduced in chapter 3.

        A field missing from ``data`` takes its default, except fields added after files were first written,
        which take the value that reproduces how those files were trained (:data:`FIELDS_ADDED_LATER`:
        ``aux_rescale=False``): the shipped SAEs' JSON files predate it.

        Raises
        ------
        ValueError
            If ``data`` has keys that are not fields of :class:`SAEConfig`.
        """
        if not isinstance(data, dict):
            raise TypeError(f"SAEConfig.from_dict expects a dict, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown SAEConfig field(s) {unknown}; expected a subset of {sorted(names)}")
        return cls(**{**FIELDS_ADDED_LATER, **data})


def is_dead(vectors_since_fired: Tensor, dead_after: int) -> Tensor:
    """The library's single definition of a dead latent, for training-time counters.

    Introduced in chapter 3.

    Parameters
    ----------
    vectors_since_fired : Tensor of shape (d_sae,)
        Per latent, the number of training vectors seen since it last fired (was > 0).
    dead_after : int
        A latent that has not fired in the last ``dead_after`` vectors is dead.

    Returns
    -------
    Tensor of bool, shape (d_sae,)
        ``vectors_since_fired >= dead_after``. On a fixed set of vectors the same rule reads "firing
        frequency below ``1 / dead_after``" (:func:`seqsae_lib.sae.metrics.dead_fraction`).
    """
    check_int("dead_after", dead_after, 1)
    return vectors_since_fired >= dead_after
