"""The methods a steering is compared with, each a function ``strength -> intervention``.

Introduced in chapter 5.

Baselines, all evaluated the same way: :func:`rerank_baseline` (add ``strength`` to the scores of concept
items), :func:`hidden_dim_baseline` (push the raw hidden dimensions most associated with the concept),
:func:`mean_difference_baseline` (mean state before concept items minus mean state otherwise) and
:func:`random_latent_baseline` (a seeded random SAE latent). :func:`sae_method` is the SAE method
itself and :func:`steering_methods` all five, ready for :func:`~seqsae_lib.steering.evaluation.evaluate_methods`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from seqsae_lib.interpret import LatentCodes
from seqsae_lib.sae import ActivationStore
from seqsae_lib.sae import SparseAutoencoder
from seqsae_lib.steering.concepts import Concept, check_concept
from seqsae_lib.steering.latent_steering import Steering
from seqsae_lib.steering.selection import concept_steering
from seqsae_lib.steering.vector_steering import VectorSteering
from seqsae_lib.utils.checks import check_int, latent_ids

__all__ = [
    "Rerank",
    "rerank_baseline",
    "hidden_dim_baseline",
    "mean_difference_baseline",
    "random_latent_baseline",
    "sae_method",
    "steering_methods",
]


@dataclass(frozen=True, eq=False)
class Rerank:
    """Post-hoc re-ranking: add ``bonus[i]`` to every user's score of item ``i``.

    Introduced in chapter 5 as the simplest baseline: no model internals,
    just ``scores + strength * concept_weight``.
    """

    bonus: Tensor
    """``(num_items + 1,)`` additive bonus (column 0 is ignored: padding stays ``-inf``)."""
    label: str = ""

    def __post_init__(self) -> None:
        b = torch.as_tensor(self.bonus, dtype=torch.float32) if not isinstance(self.bonus, Tensor) else self.bonus
        if b.ndim != 1 or not bool(torch.isfinite(b).all()):
            raise ValueError("bonus must be a finite 1-D tensor of shape (num_items + 1,)")
        object.__setattr__(self, "bonus", b.detach())

    def apply_scores(self, scores: Tensor) -> Tensor:
        """``scores + bonus`` (padding column stays ``-inf``). Introduced in chapter 5."""
        if scores.shape[-1] != self.bonus.shape[0]:
            raise ValueError(f"scores have {scores.shape[-1]} columns but the bonus has {self.bonus.shape[0]}")
        return scores + self.bonus.to(scores)


def _check_store(store: Any, concept: Concept) -> tuple[Tensor, np.ndarray]:
    """Valid states and the concept weight of their next item."""
    if not isinstance(store, ActivationStore):
        raise TypeError(f"store must be an ActivationStore, got {type(store).__name__}")
    nxt = store.next_item
    if len(nxt) and nxt.max() > concept.num_items:
        raise ValueError(f"the store holds item ids up to {int(nxt.max())} but the concept covers {concept.num_items} items")
    valid = nxt > 0
    if not valid.any():
        raise ValueError("the store has no position with a known next item")
    w = concept.item_mask[nxt[valid]]
    if not (w.sum() > 0 and (1 - w).sum() > 0):
        raise ValueError(f"concept {concept.name!r} never (or always) follows a stored position: no contrast")
    return store.acts[torch.from_numpy(valid)].double(), w


def _weighted_means(x: Tensor, w: np.ndarray) -> tuple[Tensor, Tensor]:
    wt = torch.from_numpy(w).to(x)
    inside = (wt[:, None] * x).sum(0) / wt.sum()
    outside = ((1 - wt)[:, None] * x).sum(0) / (1 - wt).sum()
    return inside, outside


@dataclass(frozen=True, eq=False)
class _Baseline:
    """A method ``strength -> intervention`` that also remembers how it was built (``name``, ``info``)."""

    name: str
    make: Callable[[float], Any]
    info: dict
    """How it was built (e.g. the latents, dimensions or seed)."""

    def __call__(self, strength: float) -> Any:
        return self.make(float(strength))

    def __repr__(self) -> str:
        return f"<method {self.name!r} {self.info}>"


def rerank_baseline(concept: Concept) -> Callable[[float], Rerank]:
    """Post-hoc re-ranking: ``strength -> Rerank(strength * concept weights)``.

    Introduced in chapter 5. ``strength`` is a bonus in logit units added
    to every concept item's score.
    """
    concept = check_concept(concept)
    w = concept.as_tensor()
    return _Baseline("re-ranking", lambda s: Rerank(s * w, f"re-rank {concept.name} {s:+g}"), {"concept": concept.name})


def hidden_dim_baseline(
    store: ActivationStore, concept: Concept, *, n_dims: int = 4, positions: Literal["last", "all"] = "last"
) -> Callable[[float], VectorSteering]:
    """Push the ``n_dims`` raw hidden dimensions most associated with the concept.

    Introduced in chapter 5. Association of dimension ``j``: the
    standardised difference ``(mean_C x_j - mean_rest x_j) / std x_j`` between positions whose next item
    has the concept and the others (weighted by the concept weight), over the store's positions with a
    known next item. The ``n_dims`` dimensions with the largest ``|association|`` are pushed in the sign
    of their association, each by its own standard deviation; the vector is normalised to unit norm, so
    ``strength`` is the length of the push in state units (comparable with an SAE ``"add"`` on a
    unit-norm decoder row and with :func:`mean_difference_baseline`). Steers at ``store.capture_point``.

    ``info`` on the returned method: the dimensions, their association and sign.
    """
    concept = check_concept(concept)
    n_dims = check_int("n_dims", n_dims, minimum=1)
    x, w = _check_store(store, concept)
    if n_dims > x.shape[1]:
        raise ValueError(f"n_dims={n_dims} exceeds the state width {x.shape[1]}")
    inside, outside = _weighted_means(x, w)
    std = x.std(0, unbiased=False).clamp_min(1e-12)
    assoc = (inside - outside) / std
    dims = torch.argsort(assoc.abs(), descending=True, stable=True)[: int(n_dims)]
    vec = torch.zeros(x.shape[1], dtype=torch.float64)
    vec[dims] = torch.sign(assoc[dims]) * std[dims]
    vec = (vec / vec.norm()).float()
    cp = store.capture_point
    info = {"dims": dims.tolist(), "association": assoc[dims].tolist(), "capture_point": cp}
    return _Baseline(
        "hidden dims", lambda s: VectorSteering(cp, s * vec, positions, f"hidden dims {s:+g}"), info,
    )


def mean_difference_baseline(
    store: ActivationStore, concept: Concept, *, positions: Literal["last", "all"] = "last"
) -> Callable[[float], VectorSteering]:
    """A steering vector: mean state before concept items minus mean state before other items.

    Introduced in chapter 5. Over the store's positions with a known next
    item, weighted by the concept weight of that next item; normalised to unit norm, so ``strength`` is
    the length of the push in state units. Steers at ``store.capture_point``.
    """
    concept = check_concept(concept)
    x, w = _check_store(store, concept)
    inside, outside = _weighted_means(x, w)
    diff = inside - outside
    norm = float(diff.norm())
    if not norm > 0:
        raise ValueError("the mean states before concept and other items are identical: no direction")
    vec = (diff / norm).float()
    cp = store.capture_point
    return _Baseline(
        "mean difference", lambda s: VectorSteering(cp, s * vec, positions, f"mean difference {s:+g}"),
        {"capture_point": cp, "raw_norm": norm},
    )


def random_latent_baseline(
    sae: SparseAutoencoder,
    *,
    capture_point: str | None = None,
    seed: int = 0,
    codes: LatentCodes | None = None,
    min_fires: int = 1,
    positions: Literal["last", "all"] = "last",
) -> Callable[[float], Steering]:
    """``add`` along one random SAE latent (seeded): what steering with an arbitrary feature does.

    Introduced in chapter 5. With ``codes``, the latent is drawn among
    latents that fire at least ``min_fires`` times (a dead latent is a poor control). Steers at the SAE's
    capture point (``capture_point`` only for an SAE that records none).
    """
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
    capture_point = sae.check_capture_point(capture_point)
    pool = np.arange(sae.d_sae)
    if codes is not None:
        counts = codes.firing_counts().numpy() if isinstance(codes, LatentCodes) else None
        if counts is None or len(counts) != sae.d_sae:
            raise ValueError("codes must be the SAE's LatentCodes (d_sae columns)")
        pool = np.flatnonzero(counts >= min_fires)
        if not len(pool):
            raise ValueError(f"no latent fires >= {min_fires} times")
    latent = int(np.random.default_rng(seed).choice(pool))
    return _Baseline(
        "random latent",
        lambda s: Steering.add(sae, latent, s, positions=positions, label=f"random latent {latent} {s:+g}",
                               capture_point=capture_point),
        {"latent": latent, "seed": seed},
    )


def sae_method(
    concept: Concept,
    latents: Sequence[int] | pd.DataFrame,
    sae: SparseAutoencoder,
    *,
    capture_point: str | None = None,
    rule: Literal["add", "shift_z", "scale"] = "add",
    latent_std: Tensor | None = None,
    positions: Literal["last", "all"] = "last",
) -> Callable[[float], Steering]:
    """The SAE method: ``strength -> concept_steering(concept, strength, latents, sae, ...)``.

    Introduced in chapter 5. Steers at the SAE's capture point
    (``capture_point`` only for an SAE that records none).
    """
    concept = check_concept(concept)
    lat = latent_ids(latents)
    options = {"capture_point": capture_point, "rule": rule, "positions": positions, "latent_std": latent_std}
    concept_steering(concept, 0.0, lat, sae, **options)  # type: ignore[arg-type]  # validate now
    return _Baseline(
        f"SAE latents ({rule})",
        lambda s: concept_steering(concept, s, lat, sae, **options),  # type: ignore[arg-type]
        {"latents": lat, "rule": rule},
    )


def steering_methods(
    concept: Concept,
    sae: SparseAutoencoder,
    store: ActivationStore,
    latents: Sequence[int] | pd.DataFrame,
    *,
    rule: Literal["add", "shift_z", "scale"] = "add",
    latent_std: Tensor | None = None,
    n_dims: int = 4,
    codes: LatentCodes | None = None,
    seed: int = 0,
    positions: Literal["last", "all"] = "last",
) -> dict[str, Callable[[float], Any]]:
    """The SAE method and the four baselines at ``store.capture_point``, ready for
    :func:`~seqsae_lib.steering.evaluation.evaluate_methods`.

    Introduced in chapter 5. Keys: ``"SAE latents"``, ``"re-ranking"``,
    ``"hidden dims"``, ``"mean difference"``, ``"random latent"``.

    Raises
    ------
    ValueError
        The SAE reads another capture point than the store's.
    """
    cp = store.capture_point
    return {
        "SAE latents": sae_method(concept, latents, sae, capture_point=cp, rule=rule, latent_std=latent_std,
                                  positions=positions),
        "re-ranking": rerank_baseline(concept),
        "hidden dims": hidden_dim_baseline(store, concept, n_dims=n_dims, positions=positions),
        "mean difference": mean_difference_baseline(store, concept, positions=positions),
        "random latent": random_latent_baseline(sae, capture_point=cp, seed=seed, codes=codes, positions=positions),
    }
