"""The unit types compared for monosemanticity, and the summaries of the comparison.

Introduced in chapter 4.

Every kind of *unit* is an ``(n, m)`` matrix of non-negative activations over the same ``n`` stored
positions, scored by :func:`~seqsae_lib.interpret.unit_scores.monosemanticity_scores` (definitions and
fairness caveats there): the SAE's latents (:func:`sae_units`), raw hidden dimensions
(:func:`hidden_dim_units`), principal directions (:func:`pca_units`), a random rotation
(:func:`random_rotation_units`) and an untrained SAE (:func:`untrained_sae_units`).
:func:`score_unit_types` scores all five, :func:`compare_unit_types` summarises them by median with
bootstrap confidence intervals (:func:`bootstrap_median_ci`), and :func:`planted_recovery` counts the
planted topics of synthetic data some unit detects.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from seqsae_lib.data import SequenceData
from seqsae_lib.interpret.auc import auc_matrix
from seqsae_lib.interpret.codes import LatentCodes, UnitActs, dense_matrix, n_rows
from seqsae_lib.interpret.stats import latent_activations
from seqsae_lib.interpret.unit_scores import SCORE_COLUMNS, genre_matrices, monosemanticity_scores
from seqsae_lib.sae import ActivationStore
from seqsae_lib.sae import SAEConfig, SAETrainConfig, SparseAutoencoder, initial_sae
from seqsae_lib.utils.checks import check_float, check_int

__all__ = [
    "bootstrap_median_ci",
    "compare_unit_types",
    "hidden_dim_units",
    "initial_sae_units",
    "pca_directions",
    "pca_units",
    "planted_recovery",
    "random_directions",
    "random_rotation_units",
    "sae_units",
    "score_unit_types",
    "untrained_sae_units",
]


def _acts(acts: Any) -> Tensor:
    if isinstance(acts, ActivationStore):
        return acts.acts
    return dense_matrix(acts, "acts").to(torch.float32)


def sae_units(sae: SparseAutoencoder, acts: ActivationStore | Tensor, batch_size: int = 4096) -> LatentCodes:
    """The SAE's latents as units: its sparse codes on every position (``d_sae`` units).

    Introduced in chapter 4. Same as
    :func:`seqsae_lib.interpret.stats.latent_activations`.
    """
    return latent_activations(sae, acts, batch_size=batch_size)


def _both_signs(proj: Tensor, both_signs: bool) -> Tensor:
    if not both_signs:
        return proj.clamp_min(0.0)
    return torch.cat([proj.clamp_min(0.0), (-proj).clamp_min(0.0)], dim=1)


def hidden_dim_units(acts: ActivationStore | Tensor, *, center: bool = True) -> Tensor:
    """Each raw hidden dimension as two non-negative units: ``relu(x_i)`` and ``relu(-x_i)``.

    Introduced in chapter 4.

    Columns ``0..d-1`` are the positive halves, ``d..2d-1`` the negative halves of dimensions ``0..d-1``.
    With ``center=True`` (default) each dimension's mean is subtracted first, so the sign split sits at the
    dimension's typical value rather than at an arbitrary 0 (e.g. a LayerNorm bias can keep a dimension
    positive everywhere, making its ``relu(-x)`` half silent); ``center=False`` gives exactly
    ``relu(x)`` and ``relu(-x)``.

    Returns
    -------
    Tensor of shape (n, 2 d), float32, non-negative
    """
    x = _acts(acts)
    if center:
        x = x - x.double().mean(0).float()
    return _both_signs(x, True)


def _centred(acts: Any) -> Tensor:
    x = _acts(acts).double()
    return x - x.mean(0)


def pca_units(acts: ActivationStore | Tensor, n_components: int | None = None, *, both_signs: bool = True) -> Tensor:
    """Projections on the principal directions of the (centred) activations, split by sign.

    Introduced in chapter 4.

    Components are sorted by explained variance; each component's sign is fixed so that its largest
    loading is positive (deterministic). Columns: ``relu(p_0..p_{c-1})`` then ``relu(-p_0..-p_{c-1})``.

    Returns
    -------
    Tensor of shape (n, 2 c) (``(n, c)`` with ``both_signs=False``), float32
    """
    x = _centred(acts)
    comps = _principal_axes(x, n_components)
    return _both_signs((x @ comps).float(), both_signs)


def _principal_axes(x: Tensor, n_components: int | None) -> Tensor:
    """``(d, c)`` float64 principal axes of centred ``x`` (columns by explained variance, largest loading > 0)."""
    d = x.shape[1]
    c = d if n_components is None else check_int("n_components", n_components, minimum=1, maximum=d)
    cov = x.T @ x / max(len(x) - 1, 1)
    evals, evecs = torch.linalg.eigh(cov)
    comps = evecs[:, torch.argsort(evals, descending=True)[:c]]
    signs = torch.sign(comps.gather(0, comps.abs().argmax(0, keepdim=True)))
    return comps * torch.where(signs == 0, torch.ones_like(signs), signs)


def pca_directions(acts: ActivationStore | Tensor, n_components: int | None = None) -> Tensor:
    """The principal directions of the (centred) activations themselves, one per row.

    Introduced in chapter 4 (the axes of :func:`pca_units`); chapter 5 steers along them.

    Parameters
    ----------
    acts : ActivationStore or Tensor of shape (n, d)
    n_components : int, optional
        How many, ``1 .. d`` (default all ``d``).

    Returns
    -------
    Tensor of shape (c, d), float64
        Orthonormal rows sorted by explained variance (largest first); each row's sign is fixed so that its
        largest loading is positive, as in :func:`pca_units` (whose column ``j`` is ``relu(x_centred @ row_j)``).

    Raises
    ------
    ValueError
        ``n_components`` outside ``1 .. d``.
    """
    return _principal_axes(_centred(acts), n_components).T.contiguous()


def random_rotation_units(acts: ActivationStore | Tensor, seed: int = 0, *, both_signs: bool = True) -> Tensor:
    """Projections on a random orthonormal basis (Haar-distributed rotation) of the centred activations.

    Introduced in chapter 4. A control: directions with no relation to the
    data. Columns as in :func:`pca_units`.

    Returns
    -------
    Tensor of shape (n, 2 d) (``(n, d)`` with ``both_signs=False``), float32
    """
    x = _centred(acts)
    q = random_directions(x.shape[1], seed=seed).T
    return _both_signs((x @ q).float(), both_signs)


def random_directions(d: int, n: int | None = None, *, seed: int = 0) -> Tensor:
    """``n`` orthonormal random directions in R^d: rows of a uniformly (Haar) distributed rotation, seeded.

    Introduced in chapter 4 (the basis of :func:`random_rotation_units`); chapter 5 steers along them.

    Parameters
    ----------
    d : int
        Dimension, at least 1.
    n : int, optional
        How many, ``1 .. d`` (default ``d``): the first ``n`` rows of the same rotation, so a smaller ``n``
        gives a prefix of a larger one with the same seed.
    seed : int, default 0

    Returns
    -------
    Tensor of shape (n, d), float64
        Orthonormal rows; :func:`random_rotation_units` with the same ``seed`` projects on exactly these.

    Raises
    ------
    ValueError, TypeError
        ``d < 1`` or ``n`` outside ``1 .. d``; non-integers.
    """
    d = check_int("d", d, minimum=1)
    n = d if n is None else check_int("n", n, minimum=1, maximum=d)
    gen = torch.Generator().manual_seed(check_int("seed", seed))
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))[None, :]  # uniform (Haar) rotation
    return q.T[:n].contiguous()


def untrained_sae_units(
    config: SAEConfig,
    acts: ActivationStore | Tensor,
    seed: int = 0,
    *,
    data_init: bool = True,
    batch_size: int = 4096,
) -> LatentCodes:
    """Codes of a freshly initialised (untrained) SAE: a random sparse dictionary as a control.

    Introduced in chapter 4.

    The SAE is built from ``config`` with ``seed`` replacing ``config.seed`` (random unit decoder rows,
    encoder = decoder transpose). With ``data_init=True`` (default) it gets the data-dependent but
    training-free initialisation the trainer applies (input scale, ``b_dec`` = geometric median of up to
    4,096 rows; a BatchTopK threshold calibrated on the data) so that it reads the data in the same frame as
    a trained SAE; nothing is learned.

    Returns
    -------
    LatentCodes of shape (n, d_sae)
    """
    if not isinstance(config, SAEConfig):
        raise TypeError(f"config must be an SAEConfig, got {type(config).__name__}")
    x = _acts(acts)
    sae = SparseAutoencoder(SAEConfig.from_dict({**config.to_dict(), "seed": int(seed)}))
    if data_init:
        sample = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(int(seed)))[:4096]]
        if config.normalize_input:
            sae.init_input_scale(sample)
        sae.init_b_dec(sample)
        if config.kind == "batchtopk":
            sae.calibrate_threshold(x, batch_size=min(4096, len(x)))
    elif config.kind == "batchtopk":
        sae.calibrate_threshold(x, batch_size=min(4096, len(x)))
    sae.eval()
    return latent_activations(sae, x, batch_size=batch_size)


def initial_sae_units(
    config: SAEConfig, train_config: SAETrainConfig, acts: ActivationStore | Tensor, *, batch_size: int = 4096
) -> LatentCodes:
    """Codes of the SAE that training starts from (:func:`~seqsae_lib.sae.training.initial_sae`): learning's own control.

    Introduced in chapter 4.

    With ``SAETrainConfig.decoder_init="data"`` the trainer points every decoder row along a centred data
    vector before the first step, a dictionary that already reads the data; an untrained SAE with random rows
    (:func:`untrained_sae_units`) does not control for that. This is the trained SAE's exact starting point
    (same seeds and sample), so trained-minus-initial isolates what the training steps changed. A BatchTopK
    SAE gets its threshold calibrated on ``acts`` (as :func:`untrained_sae_units` does).

    Returns
    -------
    LatentCodes of shape (n, d_sae)
    """
    if not isinstance(config, SAEConfig):
        raise TypeError(f"config must be an SAEConfig, got {type(config).__name__}")
    if not isinstance(train_config, SAETrainConfig):
        raise TypeError(f"train_config must be an SAETrainConfig, got {type(train_config).__name__}")
    x = _acts(acts)
    sae = initial_sae(x, config, train_config)
    if config.kind == "batchtopk":
        sae.calibrate_threshold(x, batch_size=min(4096, len(x)))
    return latent_activations(sae, x, batch_size=batch_size)


# --------------------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------------------


def bootstrap_median_ci(
    values: Any, n_boot: int = 1000, seed: int = 0, ci: float = 0.95
) -> tuple[float, float, float]:
    """Median and percentile-bootstrap confidence interval of the median.

    Introduced in chapter 4.

    NaNs are dropped. Resamples ``n_boot`` times with replacement (seeded).

    Returns
    -------
    (median, low, high)
        ``(nan, nan, nan)`` for no values.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    check_float("ci", ci, 0.0, 1.0, exclusive_minimum=True, exclusive_maximum=True)
    n_boot = check_int("n_boot", n_boot, minimum=1)
    if len(v) == 0:
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    medians = np.empty(n_boot)
    chunk = max(1, 4_000_000 // len(v))
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        medians[start : start + k] = np.median(v[rng.integers(0, len(v), size=(k, len(v)))], axis=1)
    alpha = (1 - ci) / 2
    low, high = np.quantile(medians, [alpha, 1 - alpha])
    return (float(np.median(v)), float(low), float(high))


def compare_unit_types(
    results: Mapping[str, pd.DataFrame],
    scores: Sequence[str] = SCORE_COLUMNS,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    only_active: bool = False,
) -> pd.DataFrame:
    """Median and bootstrap CI of each score for each unit type.

    Introduced in chapter 4.

    Parameters
    ----------
    results : mapping name -> DataFrame
        Outputs of :func:`monosemanticity_scores`, e.g. ``{"SAE": ..., "hidden dims": ..., "PCA": ...}``.
    scores : sequence of str
        Columns to summarise (those missing from a frame, e.g. ``auc_input``, are skipped).
    only_active : bool, default False
        Drop constant units (e.g. dead latents) first. Off by default: dead latents are part of what a
        dictionary delivers.

    Returns
    -------
    pandas.DataFrame
        One row per (unit type, score): ``unit_type``, ``score``, ``n_units``, ``median``, ``ci_low``,
        ``ci_high``.
    """
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty mapping of unit type -> monosemanticity_scores frame")
    rows = []
    for name, frame in results.items():
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"results[{name!r}] must be a DataFrame, got {type(frame).__name__}")
        if only_active and "constant" in frame:
            frame = frame[~frame["constant"].astype(bool)]
        for score in scores:
            if score not in frame:
                continue
            values = frame[score].to_numpy(dtype=np.float64)
            med, lo, hi = bootstrap_median_ci(values, n_boot=n_boot, seed=seed, ci=ci)
            rows.append(
                {"unit_type": name, "score": score, "n_units": len(frame), "median": med, "ci_low": lo, "ci_high": hi}
            )
    return pd.DataFrame(rows, columns=["unit_type", "score", "n_units", "median", "ci_low", "ci_high"])


def _unit_type_makers(
    sae: SparseAutoencoder, store: ActivationStore, *, seed: int = 0, codes: LatentCodes | None = None
) -> dict[str, Callable[[], UnitActs]]:
    """The five unit types of the comparison, as functions that build each one's activations on demand.

    Shared by :func:`score_unit_types` and :func:`~seqsae_lib.interpret.fair_scores.fair_unit_scores`
    (same types, same order, same seeds).

    Returns
    -------
    dict
        ``"SAE"`` (``codes`` if given, else the SAE's codes on ``store``), ``"hidden dims"``, ``"PCA"``,
        ``"random rotation"`` and ``"untrained SAE"`` (both from ``seed``) -> a function of no argument
        returning the ``(n, m)`` unit activations.
    """
    return {
        "SAE": lambda: codes if codes is not None else sae_units(sae, store),
        "hidden dims": lambda: hidden_dim_units(store),
        "PCA": lambda: pca_units(store),
        "random rotation": lambda: random_rotation_units(store, seed=seed),
        "untrained SAE": lambda: untrained_sae_units(sae.config, store, seed=seed),
    }


def score_unit_types(
    sae: SparseAutoencoder,
    store: ActivationStore,
    seq_data: SequenceData,
    *,
    item_vectors: Any = None,
    seed: int = 0,
    codes: LatentCodes | None = None,
    progress: bool = True,
    **score_options: Any,
) -> dict[str, pd.DataFrame]:
    """:func:`monosemanticity_scores` for the five unit types of the comparison, on the same positions.

    Introduced in chapter 4.

    The types: ``"SAE"`` (the trained SAE's latents, or ``codes`` if given), ``"hidden dims"`` (each
    centred raw dimension split into its two signs), ``"PCA"`` (principal directions, both signs),
    ``"random rotation"`` (a random orthonormal basis, both signs; ``seed``) and ``"untrained SAE"`` (an SAE
    with the same config, initialised from ``seed`` and never trained).

    Parameters
    ----------
    item_vectors : (num_items + 1, D), optional
        Item vectors for ``ms`` (e.g. ``model.item_emb.weight``); default: genre multi-hots.
    **score_options
        Passed to :func:`monosemanticity_scores` (``top_n``, ``bins``...).

    Returns
    -------
    dict
        Unit type -> scores table, in the order above.
    """
    from tqdm.auto import tqdm

    genres_next, genres_input = genre_matrices(store, seq_data)
    common = dict(genres_input=genres_input, genre_names=list(seq_data.genre_names), **score_options)
    if item_vectors is not None:
        common.update(next_items=store.next_item, item_vectors=item_vectors)
    makers = _unit_type_makers(sae, store, seed=seed, codes=codes)
    results: dict[str, pd.DataFrame] = {}
    for name in tqdm(makers, desc="monosemanticity", disable=not progress):
        results[name] = monosemanticity_scores(makers[name](), genres_next, **common)
    return results


def planted_recovery(
    unit_acts: UnitActs, item_topic_of_next: Any, threshold: float = 0.9, *, n_topics: int | None = None
) -> dict[str, Any]:
    """How many planted topics some unit detects with AUC >= ``threshold`` (synthetic data).

    Introduced in chapter 4.

    Parameters
    ----------
    unit_acts : LatentCodes or (n, m) matrix
    item_topic_of_next : (n,) int
        Planted topic of each position's next item, ``seq_data.item_topic[store.next_item]``; ``-1``
        (unknown next item) rows are left out.
    threshold : float, default 0.9
    n_topics : int, optional
        Number of topics (default: max topic + 1).

    Returns
    -------
    dict
        ``n_topics``, ``n_recovered``, ``fraction``, ``threshold``, ``recovered`` (sorted list of topics),
        ``best_unit`` and ``best_auc`` (lists indexed by topic), ``n_distinct_units`` (distinct best units
        among recovered topics).

    Raises
    ------
    ValueError
        Wrong length, no known topic, or a threshold outside (0.5, 1].
    """
    n = n_rows(unit_acts)
    topics = item_topic_of_next
    topics = topics.detach().cpu().numpy() if isinstance(topics, Tensor) else np.asarray(topics)
    if topics.shape != (n,) or (topics.size and not np.issubdtype(topics.dtype, np.integer)):
        raise ValueError(f"item_topic_of_next must be ({n},) integers, got {topics.dtype} {topics.shape}")
    check_float("threshold", threshold, 0.5, 1.0, exclusive_minimum=True)
    valid = topics >= 0
    if not valid.any():
        raise ValueError("no position has a known planted topic")
    k = int(topics.max()) + 1 if n_topics is None else int(n_topics)
    onehot = (topics[:, None] == np.arange(k)[None, :]).astype(np.float64)
    auc = auc_matrix(unit_acts, onehot, mask=valid)
    best_unit = auc.argmax(0)
    best_auc = auc.max(0)
    recovered = np.flatnonzero(best_auc >= threshold)
    return {
        "n_topics": k,
        "n_recovered": int(len(recovered)),
        "fraction": float(len(recovered) / k) if k else 0.0,
        "threshold": float(threshold),
        "recovered": recovered.tolist(),
        "best_unit": best_unit.tolist(),
        "best_auc": best_auc.tolist(),
        "n_distinct_units": int(len(np.unique(best_unit[recovered]))),
    }
