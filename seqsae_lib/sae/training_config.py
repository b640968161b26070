"""The settings and the log of SAE training: :class:`SAETrainConfig`, :class:`SAEHistory` and the schedule.

Introduced in chapter 3. The training loop that reads them is
:func:`seqsae_lib.sae.training.train_sae`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Mapping

import pandas as pd
from torch import Tensor

from seqsae_lib.utils.checks import check_choice, check_float, check_int

__all__ = ["SAETrainConfig", "SAEHistory", "lr_factor", "UNIT_START_SAE", "UNIT_START_TRAIN"]

UNIT_START_SAE: Mapping[str, Any] = MappingProxyType({"aux_rescale": False, "aux_coefficient": 1 / 32})
"""The :class:`~seqsae_lib.sae.config.SAEConfig` settings the library had before the fitted encoder start became
the default: the plain AuxK of Gao et al. (2024) at 1/32. The shipped recipes, the planted experiment and the
benches' "before" rows were trained with them and pin them (``SAEConfig(..., **UNIT_START_SAE)``)."""

UNIT_START_TRAIN: Mapping[str, Any] = MappingProxyType({"fit_encoder_scale": False})
"""The :class:`SAETrainConfig` setting that goes with :data:`UNIT_START_SAE`: the encoder starts as the unit-norm
decoder's transpose (:attr:`SAETrainConfig.fit_encoder_scale` off)."""


@dataclass
class SAETrainConfig:
    """Optimisation settings for :func:`train_sae`.

    Introduced in chapter 3.

    Raises
    ------
    TypeError, ValueError
        On construction, if a field has the wrong type or an invalid value (the message names the field).
    """

    batch_size: int = 4096
    """Activation vectors per step. Each epoch is split into ``ceil(n / batch_size)`` batches of nearly
    equal size (no vector is dropped)."""

    lr: float = 1e-3
    """Peak Adam learning rate."""

    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam's ``(beta1, beta2)``."""

    warmup_steps: int = 20
    """Steps of linear warm-up from 0 to ``lr``."""

    decay_start: float = 0.8
    """Fraction of the total steps after which the learning rate decays linearly to zero at the last step
    (1.0: no decay)."""

    num_epochs: int = 10
    """Passes over the activations (ignored when ``num_vectors`` is set)."""

    num_vectors: int | None = None
    """Total training vectors ("tokens"); overrides ``num_epochs``. Rounded up to whole batches."""

    max_grad_norm: float | None = 1.0
    """Clip the gradient's global norm to this value (``None``: no clipping)."""

    b_dec_init: Literal["geometric_median", "mean"] = "geometric_median"
    """How :meth:`~seqsae_lib.sae.autoencoder.SparseAutoencoder.init_b_dec` initialises the decoder bias."""

    init_sample_size: int = 16384
    """Number of (randomly chosen, seeded) vectors used to estimate the input scale and ``b_dec`` (and to
    draw the decoder rows with ``decoder_init="data"``)."""

    decoder_init: Literal["random", "data"] = "random"
    """How a fresh SAE's dictionary starts: ``"random"`` keeps the random unit rows of
    :class:`~seqsae_lib.sae.autoencoder.SparseAutoencoder` (seeded by ``SAEConfig.seed``); ``"data"`` points the
    rows along centred, normalised training vectors
    (:meth:`~seqsae_lib.sae.autoencoder.SparseAutoencoder.init_decoder_from_data`). In both cases the
    encoder starts as the decoder's transpose; an SAE passed to ``train_sae(..., sae=...)`` keeps its weights.
    ``"data"`` with ``SAEConfig.aux_rescale`` keeps TopK latents alive where random rows leave many dead
    (``bench/bench_dead_latents.py``), but needs on the order of 100 steps before its reconstruction catches
    up (the ``k`` latents that win on a vector at first all point close to it and add up to about ``k`` times
    it). It also decides how concentrated the trained latents' genres are, more than the encoder start or
    AuxK do: on the ML-100k shipped-recipe condition of the conditions study (``scripts/conditions_study.py``), the
    median chance-corrected genre concentration of the latents' top positions (input item) was 0.149 with
    ``"data"`` (the recorded study's settings) and 0.126 with the defaults (3 seeds each), and 0.146-0.152 with
    ``"data"`` against 0.110-0.133 with ``"random"`` over seven combinations of the two starts and AuxK (seed 0,
    ``bench/bench_sae_start_concentration.py``); the verdicts against the untrained SAE and the hidden dimensions
    ("lower") were the same in all of them. With the fitted encoder start (the default) data rows leave more
    latents dead than random rows, not fewer: 3.2% against 1.1% after 10 epochs and 24% against 7.0% after 2 on the
    ML-100k recipe, at the same FVU (3 seeds, ``bench/bench_sae_init.py --runs 1 3``); the default stays
    ``"random"``. Introduced in chapter 3."""

    fit_encoder_scale: bool = True
    """After the data-dependent initialisation, scale the encoder by the least-squares factor that makes the
    first reconstructions of the initialisation sample match it in size
    (:meth:`~seqsae_lib.sae.autoencoder.SparseAutoencoder.fit_encoder_scale`; the latents chosen do not
    change). With unit-norm encoder columns the ``k`` winning latents add up to several times each vector (first
    training FVU about 9 on ``bench/bench_speed.py``'s TopK workload, 2 on the ML-100k final states), and Adam
    at a small constant learning rate needs hundreds of steps to shrink them: this is why the unit-norm start
    converges slowly (FVU after 2 epochs at lr 4e-4: 0.29-0.31 against the plain reference's 0.17).

    Use it together with ``SAEConfig(aux_rescale=True, aux_coefficient=0.25)``. The early overshoot of the
    unit-norm start is also what spreads the firing over many latents (each step pushes the winners down); a
    fitted start removes that push, and on real states the first winners keep winning: alone it leaves most
    latents dead (0.60 after 2 epochs on the ML-100k recipe; the peers' own start, ``bench_speed.py``'s plain
    reference, 0.23 after 2 and about half after 10), and the plain AuxK at 1/32 does not bring them back. With
    the rescaled AuxK at 1/4 it reaches a lower FVU than the unit-norm start with as few dead latents
    (``bench/bench_sae_init.py``); both are the defaults. The shipped recipes were trained without them and pin
    ``False`` / ``aux_rescale=False, aux_coefficient=1/32``. Ignored for an SAE passed to
    ``train_sae(..., sae=...)``. Introduced with ``bench/bench_speed.py``."""

    calibrate_threshold: bool = True
    """BatchTopK only: at the end, set the inference threshold from the training data with
    :meth:`~seqsae_lib.sae.autoencoder.SparseAutoencoder.calibrate_threshold` (otherwise the running average
    collected during training is kept)."""

    seed: int = 0
    """Seed of the per-epoch shuffling and of the initialisation sample (the SAE's weights are seeded by
    ``SAEConfig.seed``)."""

    num_threads: int | None = None
    """CPU threads for PyTorch during training (restored afterwards); ``None`` keeps the current setting."""

    device: str = "auto"
    """``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ... The SAE is returned on CPU."""

    log_every: int = 10
    """Record averaged metrics in the history every this many steps (and at the last step)."""

    progress: bool = True
    """Show a tqdm progress bar with loss, FVU, L0 and dead fraction."""

    def __post_init__(self) -> None:
        for name, minimum in (("batch_size", 1), ("warmup_steps", 0), ("num_epochs", 1), ("log_every", 1),
                              ("init_sample_size", 1), ("seed", 0)):
            setattr(self, name, check_int(name, getattr(self, name), minimum))
        if self.num_vectors is not None:
            self.num_vectors = check_int("num_vectors", self.num_vectors, 1)
        check_float("lr", self.lr, 0.0, exclusive_minimum=True)
        betas = tuple(self.adam_betas)
        if len(betas) != 2:
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas!r}")
        self.adam_betas = (check_float("adam_betas[0]", betas[0], 0.0, 1.0, exclusive_maximum=True),
                           check_float("adam_betas[1]", betas[1], 0.0, 1.0, exclusive_maximum=True))
        check_float("decay_start", self.decay_start, 0.0, 1.0)
        if self.max_grad_norm is not None:
            check_float("max_grad_norm", self.max_grad_norm, 0.0, exclusive_minimum=True)
        check_choice("b_dec_init", self.b_dec_init, ("geometric_median", "mean"))
        check_choice("decoder_init", self.decoder_init, ("random", "data"))
        if not isinstance(self.fit_encoder_scale, bool):
            raise TypeError(f"fit_encoder_scale must be a bool, got {self.fit_encoder_scale!r}")
        if self.num_threads is not None:
            check_int("num_threads", self.num_threads, 1)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict. Introduced in chapter 3."""
        d = asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d


@dataclass
class SAEHistory:
    """Metrics logged by :func:`train_sae`, one entry per logged step.

    Introduced in chapter 3.

    ``loss``, ``mse``, ``aux_loss``, ``l1_loss``, ``fvu`` and ``l0`` are averages over the training batches
    since the previous entry; ``dead_fraction`` and ``lr`` are the values at the logged step.
    """

    step: list[int] = field(default_factory=list)
    """Optimiser steps done."""

    vectors: list[int] = field(default_factory=list)
    """Training vectors seen."""

    epoch: list[float] = field(default_factory=list)
    """Passes over the data done (fractional)."""

    loss: list[float] = field(default_factory=list)
    """Total training loss."""

    mse: list[float] = field(default_factory=list)
    """Per-element reconstruction MSE (internal, normalised units)."""

    aux_loss: list[float] = field(default_factory=list)
    """AuxK loss (0 while no latent is dead)."""

    l1_loss: list[float] = field(default_factory=list)
    """L1 penalty (``kind="relu"``; 0 otherwise)."""

    fvu: list[float] = field(default_factory=list)
    """Fraction of variance unexplained on the training batches."""

    l0: list[float] = field(default_factory=list)
    """Mean active latents per vector on the training batches."""

    dead_fraction: list[float] = field(default_factory=list)
    """Fraction of latents that have not fired in the last ``dead_after`` training vectors."""

    lr: list[float] = field(default_factory=list)
    """Learning rate used at the logged step."""

    seconds: float = 0.0
    """Wall-clock training time."""

    vectors_since_fired: Tensor | None = None
    """Final per-latent counters (shape ``(d_sae,)``): training vectors since each latent last fired."""

    def to_frame(self) -> pd.DataFrame:
        """The per-step metrics as a DataFrame indexed by ``step``.

        Introduced in chapter 3.
        """
        cols = ["step", "vectors", "epoch", "loss", "mse", "aux_loss", "l1_loss", "fvu", "l0", "dead_fraction", "lr"]
        return pd.DataFrame({c: getattr(self, c) for c in cols}).set_index("step")


def lr_factor(step: int, total_steps: int, warmup_steps: int, decay_start: float) -> float:
    """Learning-rate multiplier at a (0-based) step: linear warm-up, constant, linear decay to zero.

    Introduced in chapter 3.

    Parameters
    ----------
    step : int
        The step about to be taken, ``0 <= step < total_steps``.
    total_steps : int
    warmup_steps : int
        The factor rises as ``(step + 1) / (warmup_steps + 1)`` during the first ``warmup_steps`` steps.
    decay_start : float
        After ``decay_start * total_steps`` steps the factor falls linearly, reaching
        ``1 / (decay_steps + 1)`` at the last step (never exactly 0, so every step trains).

    Returns
    -------
    float
        In (0, 1].
    """
    factor = 1.0
    if step < warmup_steps:
        factor = (step + 1) / (warmup_steps + 1)
    start = int(decay_start * total_steps)
    if step >= start and decay_start < 1.0:
        decay_steps = total_steps - start
        factor = min(factor, (total_steps - step) / (decay_steps + 1))
    return factor
