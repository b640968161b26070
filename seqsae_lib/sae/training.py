"""Training sparse autoencoders on stored activation tensors.

Introduced in chapter 3 (chapters/03_sae.ipynb).

:func:`train_sae` follows the common recipe of SAE libraries (Gao et al. 2024; SAELens;
dictionary_learning): data-dependent initialisation of the input scale and of ``b_dec``; Adam with a linear
warm-up, a constant phase and a linear decay to zero; decoder rows kept at unit norm; per-latent "vectors
since last fired" counters that define dead latents (:func:`seqsae_lib.sae.autoencoder.is_dead`) and feed the AuxK
loss; for BatchTopK, the inference threshold calibrated on the training data at the end.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from seqsae_lib.utils.runtime import resolve_device, set_threads
from seqsae_lib.sae.activations import ActivationStore
from seqsae_lib.sae.autoencoder import SAEConfig, SparseAutoencoder, is_dead

__all__ = ["SAETrainConfig", "SAEHistory", "train_sae", "lr_factor"]


@dataclass
class SAETrainConfig:
    """Optimisation settings for :func:`train_sae`.

    Introduced in chapter 3 (chapters/03_sae.ipynb).

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
    """Number of (randomly chosen, seeded) vectors used to estimate the input scale and ``b_dec``."""

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
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
            setattr(self, name, int(value))
        if self.num_vectors is not None:
            if isinstance(self.num_vectors, bool) or not isinstance(self.num_vectors, (int, np.integer)) or self.num_vectors < 1:
                raise ValueError(f"num_vectors must be None or an int >= 1, got {self.num_vectors!r}")
            self.num_vectors = int(self.num_vectors)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        betas = tuple(self.adam_betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas!r}")
        self.adam_betas = (float(betas[0]), float(betas[1]))
        if not 0.0 <= self.decay_start <= 1.0:
            raise ValueError(f"decay_start must be a fraction in [0, 1], got {self.decay_start!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be None or > 0, got {self.max_grad_norm!r}")
        if self.b_dec_init not in ("geometric_median", "mean"):
            raise ValueError(f"b_dec_init must be 'geometric_median' or 'mean', got {self.b_dec_init!r}")
        if self.num_threads is not None and (
            isinstance(self.num_threads, bool) or not isinstance(self.num_threads, int) or self.num_threads < 1
        ):
            raise ValueError(f"num_threads must be None or an int >= 1, got {self.num_threads!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict. Introduced in chapter 3 (chapters/03_sae.ipynb)."""
        d = asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d


@dataclass
class SAEHistory:
    """Metrics logged by :func:`train_sae`, one entry per logged step.

    Introduced in chapter 3 (chapters/03_sae.ipynb).

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

        Introduced in chapter 3 (chapters/03_sae.ipynb).
        """
        cols = ["step", "vectors", "epoch", "loss", "mse", "aux_loss", "l1_loss", "fvu", "l0", "dead_fraction", "lr"]
        return pd.DataFrame({c: getattr(self, c) for c in cols}).set_index("step")


def lr_factor(step: int, total_steps: int, warmup_steps: int, decay_start: float) -> float:
    """Learning-rate multiplier at a (0-based) step: linear warm-up, constant, linear decay to zero.

    Introduced in chapter 3 (chapters/03_sae.ipynb).

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


def _check_activations(activations: Tensor, d_in: int) -> Tensor:
    if not isinstance(activations, Tensor):
        hint = " (use torch.from_numpy)" if isinstance(activations, np.ndarray) else ""
        raise TypeError(f"activations must be a torch.Tensor of shape (n, {d_in}), got {type(activations).__name__}{hint}")
    if not activations.is_floating_point():
        raise TypeError(f"activations must be a floating-point tensor of shape (n, {d_in}), got dtype {activations.dtype}")
    if activations.ndim != 2 or activations.shape[1] != d_in:
        raise ValueError(
            f"activations must have shape (n, {d_in}) (d_in={d_in} from the SAE config), got shape {tuple(activations.shape)}"
        )
    if activations.shape[0] < 2:
        raise ValueError(f"need at least 2 activation vectors to train, got {activations.shape[0]}")
    if not bool(torch.isfinite(activations).all()):
        bad = int((~torch.isfinite(activations)).sum())
        raise ValueError(f"activations contain NaN or inf ({bad} non-finite values in shape {tuple(activations.shape)})")
    return activations


def train_sae(
    activations: ActivationStore | Tensor,
    sae_config: SAEConfig,
    train_config: SAETrainConfig | None = None,
    *,
    sae: SparseAutoencoder | None = None,
) -> tuple[SparseAutoencoder, SAEHistory]:
    """Train a sparse autoencoder on a tensor of stored activation vectors.

    Introduced in chapter 3 (chapters/03_sae.ipynb).

    Steps: estimate the input scale (if ``sae_config.normalize_input``) and ``b_dec`` on a seeded sample;
    then, per step, compute the dead mask from the per-latent counters, run the SAE (AuxK receives the
    dead mask), back-propagate, remove the gradient component parallel to each decoder row, clip, take an
    Adam step and renormalise the decoder rows (if ``unit_norm_decoder``), and update the counters. The
    data are reshuffled every epoch with a seeded generator; on CPU the same configs give the same SAE.

    Parameters
    ----------
    activations : ActivationStore or Tensor of shape (n, d_in)
        Stored activation vectors (float; NaN/inf are rejected). Not modified. From an
        :class:`~seqsae_lib.sae.activations.ActivationStore` the SAE also learns where it reads: its
        ``config.capture_point`` is set to the store's (a config naming another capture point is an error).
    sae_config : SAEConfig
    train_config : SAETrainConfig, optional
        Defaults to ``SAETrainConfig()``.
    sae : SparseAutoencoder, optional
        Continue training this SAE (in place) instead of a freshly initialised one; its config must equal
        ``sae_config``. The data-dependent initialisation (input scale, ``b_dec``) is skipped, the dead
        counters start at zero.

    Returns
    -------
    (SparseAutoencoder, SAEHistory)
        The trained SAE, on CPU and in eval mode (input scale *not* folded: call
        :meth:`~seqsae_lib.sae.autoencoder.SparseAutoencoder.fold_normalization` before saving if the latents should be
        in raw units), and the logged metrics.

    Raises
    ------
    TypeError, ValueError
        Bad configs, or activations that are not a finite float tensor of shape ``(n, d_in)``.
    """
    if not isinstance(sae_config, SAEConfig):
        raise TypeError(f"sae_config must be an SAEConfig, got {type(sae_config).__name__}")
    cfg = SAETrainConfig() if train_config is None else train_config
    if not isinstance(cfg, SAETrainConfig):
        raise TypeError(f"train_config must be an SAETrainConfig, got {type(cfg).__name__}")
    if isinstance(activations, ActivationStore):
        point = activations.capture_point
        if sae_config.capture_point not in (None, point):
            raise ValueError(f"sae_config.capture_point is {sae_config.capture_point!r} but the activation store "
                             f"holds states from {point!r}")
        sae_config = replace(sae_config, capture_point=point)
        activations = activations.acts
    _check_activations(activations, sae_config.d_in)
    if sae is not None:
        if not isinstance(sae, SparseAutoencoder):
            raise TypeError(f"sae must be a SparseAutoencoder or None, got {type(sae).__name__}")
        if sae.config != sae_config:
            raise ValueError(f"sae.config {sae.config} differs from sae_config {sae_config}")

    device = resolve_device(cfg.device)
    previous_threads = torch.get_num_threads()
    set_threads(cfg.num_threads)
    try:
        return _train(activations, sae_config, cfg, device, sae)
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    activations: Tensor,
    sae_config: SAEConfig,
    cfg: SAETrainConfig,
    device: torch.device,
    sae: SparseAutoencoder | None,
) -> tuple[SparseAutoencoder, SAEHistory]:
    start_time = time.perf_counter()
    gen = torch.Generator().manual_seed(cfg.seed)
    data = activations.detach().to(device=device, dtype=torch.float32)
    n = data.shape[0]

    sample_idx = torch.randperm(n, generator=gen)[: cfg.init_sample_size].to(device)
    if sae is None:
        sae = SparseAutoencoder(sae_config).to(device)
        sample = data[sample_idx]
        if sae_config.normalize_input:
            sae.init_input_scale(sample)
        sae.init_b_dec(sample, method=cfg.b_dec_init)
    else:
        sae.to(device)
    sae.train()

    batches_per_epoch = math.ceil(n / cfg.batch_size)
    if cfg.num_vectors is not None:
        total_steps = max(1, math.ceil(cfg.num_vectors / (n / batches_per_epoch)))
    else:
        total_steps = batches_per_epoch * cfg.num_epochs

    optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=cfg.adam_betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(min(s, total_steps - 1), total_steps, cfg.warmup_steps, cfg.decay_start)
    )
    since_fired = torch.zeros(sae_config.d_sae, dtype=torch.long, device=device)
    history = SAEHistory()
    sums: dict[str, float] = {k: 0.0 for k in ("loss", "mse", "aux_loss", "l1_loss", "fvu", "l0")}
    sums_count = 0
    vectors_seen = 0

    bar = tqdm(total=total_steps, desc=f"train SAE ({sae_config.kind})", disable=not cfg.progress, unit="step")
    step = 0
    batches: list[Tensor] = []
    try:
        while step < total_steps:
            if not batches:
                perm = torch.randperm(n, generator=gen).to(device)
                batches = list(torch.tensor_split(perm, batches_per_epoch))
            x = data[batches.pop(0)]
            dead_mask = is_dead(since_fired, sae_config.dead_after)
            lr_now = optimizer.param_groups[0]["lr"]

            out = sae(x, dead_mask=dead_mask)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if sae_config.unit_norm_decoder:
                sae.remove_gradient_parallel_to_decoder_directions()
            if cfg.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            if sae_config.unit_norm_decoder:
                sae.set_decoder_norm_to_unit_norm()

            with torch.no_grad():
                fired = out.z > 0
                since_fired += len(x)
                since_fired[fired.any(dim=0)] = 0
                x_in = x * sae.input_scale
                x_hat_in = out.x_hat * sae.input_scale
                sse = float((x_hat_in - x_in).pow(2).sum())
                total_var = float((x_in - x_in.mean(dim=0)).pow(2).sum())
                batch_metrics = {
                    "loss": out.loss.item(),
                    "mse": out.mse.item(),
                    "aux_loss": out.aux_loss.item(),
                    "l1_loss": out.l1_loss.item(),
                    "fvu": sse / total_var if total_var > 0 else math.nan,
                    "l0": float(fired.sum()) / len(x),
                }
            if not math.isfinite(batch_metrics["loss"]):
                raise FloatingPointError(
                    f"SAE training diverged at step {step + 1} (loss {batch_metrics['loss']}); lower lr "
                    f"(now {cfg.lr}) or enable max_grad_norm"
                )
            for key, value in batch_metrics.items():
                sums[key] += value
            sums_count += 1
            vectors_seen += len(x)
            step += 1
            bar.update(1)

            if step % cfg.log_every == 0 or step == total_steps:
                dead_frac = float(is_dead(since_fired, sae_config.dead_after).float().mean())
                history.step.append(step)
                history.vectors.append(vectors_seen)
                history.epoch.append(vectors_seen / n)
                for key in sums:
                    getattr(history, key).append(sums[key] / sums_count)
                history.dead_fraction.append(dead_frac)
                history.lr.append(lr_now)
                bar.set_postfix(
                    loss=f"{history.loss[-1]:.4g}",
                    FVU=f"{history.fvu[-1]:.3f}",
                    L0=f"{history.l0[-1]:.1f}",
                    dead=f"{dead_frac:.1%}",
                    refresh=False,
                )
                sums = {k: 0.0 for k in sums}
                sums_count = 0
    finally:
        bar.close()

    sae.eval()
    if sae_config.kind == "batchtopk" and cfg.calibrate_threshold:
        sae.calibrate_threshold(data, batch_size=min(cfg.batch_size, math.ceil(n / batches_per_epoch)))
    sae.to("cpu")
    history.vectors_since_fired = since_fired.cpu()
    history.seconds = time.perf_counter() - start_time
    return sae, history


def train_sae_grid(
    activations: Tensor,
    sizes: Sequence[int],
    ks: Sequence[int],
    train_config: SAETrainConfig,
    *,
    kind: str = "topk",
    eval_activations: Tensor | None = None,
    progress: bool = True,
    return_saes: bool = False,
    **sae_kwargs: Any,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[tuple[int, int], SparseAutoencoder]]:
    """Train one SAE per (dictionary size, k) and tabulate the sparsity-fidelity frontier.

    Introduced in chapter 3 (chapters/03_sae.ipynb). Each SAE is trained with ``train_config`` (its own
    progress bar is switched off; one bar runs over the grid) and evaluated with
    :func:`~seqsae_lib.sae.metrics.evaluate_reconstruction` on ``eval_activations`` (default: the
    training activations).

    With ``return_saes=True`` the trained SAEs come back too, keyed by ``(d_sae, k)`` and in eval mode
    (chapter 6 inspects their features).

    Returns
    -------
    pandas.DataFrame, or (DataFrame, dict)
        One row per SAE: ``d_sae``, ``k``, ``fvu``, ``l0``, ``cosine``, ``dead_fraction``,
        ``dense_fraction``, ``seconds``.
    """
    from seqsae_lib.sae.metrics import evaluate_reconstruction

    evaluation = activations if eval_activations is None else eval_activations
    grid = [(int(s), int(k)) for s in sizes for k in ks]
    rows = []
    saes: dict[tuple[int, int], SparseAutoencoder] = {}
    quiet = replace(train_config, progress=False)
    for d_sae, k in tqdm(grid, desc="SAE grid", disable=not progress):
        config = SAEConfig(d_in=activations.shape[1], d_sae=d_sae, kind=kind, k=min(k, d_sae), **sae_kwargs)
        sae, history = train_sae(activations, config, quiet)
        metrics = evaluate_reconstruction(sae, evaluation)
        rows.append({"d_sae": d_sae, "k": k, **{m: float(metrics[m]) for m in
                     ("fvu", "l0", "cosine", "dead_fraction", "dense_fraction")}, "seconds": history.seconds})
        if return_saes:
            saes[(d_sae, k)] = sae.eval()
    table = pd.DataFrame(rows)
    return (table, saes) if return_saes else table
