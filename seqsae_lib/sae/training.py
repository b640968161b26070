"""Training sparse autoencoders on stored activation tensors.

Introduced in chapter 3.

:func:`train_sae` follows the common recipe of SAE libraries (Gao et al. 2024; SAELens;
dictionary_learning): data-dependent initialisation of the input scale and of ``b_dec``; Adam with a linear
warm-up, a constant phase and a linear decay to zero; decoder rows kept at unit norm; per-latent "vectors
since last fired" counters that define dead latents (:func:`seqsae_lib.sae.config.is_dead`) and feed the AuxK
loss; for BatchTopK, the inference threshold calibrated on the training data at the end.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from seqsae_lib.utils.runtime import resolve_device, set_threads
from seqsae_lib.sae.autoencoder import SparseAutoencoder
from seqsae_lib.sae.config import SAEConfig, is_dead
from seqsae_lib.sae.store import ActivationStore
from seqsae_lib.sae.training_config import SAEHistory, SAETrainConfig, lr_factor

__all__ = [
    "initial_sae", "train_sae", "train_sae_grid",
]


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

    Introduced in chapter 3.

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
    activations, sae_config, cfg = _checked_inputs(activations, sae_config, train_config)
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


def _checked_inputs(
    activations: ActivationStore | Tensor, sae_config: SAEConfig, train_config: SAETrainConfig | None
) -> tuple[Tensor, SAEConfig, SAETrainConfig]:
    """The checks :func:`train_sae` and :func:`initial_sae` share: config types, the store's capture point
    (taken into the config), a finite float ``(n, d_in)`` tensor."""
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
    return activations, sae_config, cfg


def initial_sae(
    activations: ActivationStore | Tensor,
    sae_config: SAEConfig,
    train_config: SAETrainConfig | None = None,
) -> SparseAutoencoder:
    """The SAE that :func:`train_sae` starts from with these configs, before any step: training's own baseline.

    Introduced in chapter 4 (the conditions study compares each trained SAE with its own starting point).

    The same seeded sample, input scale, ``b_dec`` and decoder initialisation as the trainer's (with
    ``decoder_init="data"`` the rows point along data vectors, which is already a data-dependent dictionary);
    nothing is learned. Returned on CPU in eval mode.

    Raises
    ------
    TypeError, ValueError
        As :func:`train_sae`.
    """
    activations, sae_config, cfg = _checked_inputs(activations, sae_config, train_config)
    data = activations.detach().to(dtype=torch.float32)
    gen = torch.Generator().manual_seed(cfg.seed)  # consumed exactly as in _train's first draw
    sample_idx = torch.randperm(data.shape[0], generator=gen)[: cfg.init_sample_size]
    sae = _initialise(data[sample_idx], sae_config, cfg, torch.device("cpu"))
    return sae.eval()


def _initialise(sample: Tensor, sae_config: SAEConfig, cfg: SAETrainConfig, device: torch.device) -> SparseAutoencoder:
    sae = SparseAutoencoder(sae_config).to(device)
    if sae_config.normalize_input:
        sae.init_input_scale(sample)
    sae.init_b_dec(sample, method=cfg.b_dec_init)
    if cfg.decoder_init == "data":
        sae.init_decoder_from_data(sample, generator=torch.Generator().manual_seed(cfg.seed + 1))
    if cfg.fit_encoder_scale:
        sae.fit_encoder_scale(sample)
    return sae


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
        sae = _initialise(data[sample_idx], sae_config, cfg, device)
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

            out = sae(x, dead_mask=dead_mask, dense_codes=False)
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
                since_fired += len(x)
                if out.z is None:  # the sparse code: (indices, values) of the kept latents
                    assert out.code is not None
                    active = out.code[1] > 0
                    since_fired[out.code[0][active]] = 0
                    active_count = float(active.sum())
                else:
                    fired = out.z > 0
                    since_fired[fired.any(dim=0)] = 0
                    active_count = float(fired.sum())
                sse = out.mse.item() * x.numel()  # mse is the mean squared error in internal units
                total_var = float((x - x.mean(dim=0)).pow(2).sum()) * float(sae.input_scale) ** 2
                batch_metrics = {
                    "loss": out.loss.item(),
                    "mse": out.mse.item(),
                    "aux_loss": out.aux_loss.item(),
                    "l1_loss": out.l1_loss.item(),
                    "fvu": sse / total_var if total_var > 0 else math.nan,
                    "l0": active_count / len(x),
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

    Introduced in chapter 3. Each SAE is trained with ``train_config`` (its own
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
