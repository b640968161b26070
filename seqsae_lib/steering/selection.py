"""Choosing the SAE latents that steer towards a concept, and turning them into a steering.

Introduced in chapter 5.

Choosing latents to steer with (:func:`select_latents`)
-------------------------------------------------------
Steering a latent has two sides, and the rule uses both:

* **write side (causal, decides the order)**: what adding one unit of the latent's decoder direction to
  the state at the last position does to the scores: ``promotion`` (how much concept items rise relative to
  the other items) and ``specificity`` (promotion divided by the spread of the logit changes), from
  :func:`~seqsae_lib.steering.promotion.latent_promotion` (definitions there).
* **read side (correlational, filters)**: where the latent fires. Given the SAE's codes on an
  :class:`~seqsae_lib.sae.activations.ActivationStore`, ``lift_j`` is the activation-weighted mean concept
  weight of the *next* item at the positions where latent ``j`` fires, divided by the same mean over all
  positions (the lift of :mod:`seqsae_lib.interpret.profiles` for a soft category). Latents that fire fewer than
  ``min_fires`` times (dead or too rare to trust) or whose lift is below ``min_lift`` (default 1: the
  latent must at least not be *anti*-associated with the concept) are not candidates.

``score = specificity``; :func:`select_latents` returns the ``n`` best candidates by score. Without codes
only the write side is used (lift is NaN).

The ``n`` individually most specific latents need not make the most specific *combination*: two latents
may promote the same off-concept items (their sum reshuffles the catalogue twice as much), or one may
cancel the other's stray promotions. ``order="greedy"`` builds the combination itself, one latent at a time,
each time adding the candidate that makes the *sum* of the chosen directions most specific (the
specificity of a sum is computed like a latent's, from the sum of their item effects) and stopping early
when no candidate raises it. The specificity is, up to a constant, the correlation over items between the
logit changes and the concept weights, so the greedy sum is the ``n``-latent steering whose score
changes look most like the concept's own labels. :func:`concept_steering` turns them into a
:class:`~seqsae_lib.steering.latent_steering.Steering`: a positive strength steers towards the concept, a negative one
away from it ("fewer horror films" pushes the horror latents down).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from torch import Tensor, nn

from seqsae_lib.interpret import LatentCodes, latent_item_effects
from seqsae_lib.sae import ActivationStore
from seqsae_lib.sae import SparseAutoencoder
from seqsae_lib.steering.concepts import Concept, check_concept
from seqsae_lib.steering.latent_steering import Steering
from seqsae_lib.steering.promotion import latent_promotion
from seqsae_lib.steering.scoring import check_sae_fits
from seqsae_lib.utils.checks import check_float, check_int, latent_ids

__all__ = ["CONCEPT_RULES", "SELECTION_COLUMNS", "concept_lift", "select_latents", "concept_steering", "combine"]

CONCEPT_RULES: tuple[str, ...] = ("add", "shift_z", "scale")
"""How :func:`concept_steering` turns a strength into latent edits."""

SELECTION_COLUMNS: tuple[str, ...] = (
    "latent", "score", "promotion", "specificity", "lift", "share", "n_fires", "method", "n_candidates",
)
"""Columns of :func:`select_latents`'s table."""


def concept_lift(
    codes: LatentCodes | Tensor | np.ndarray, store: ActivationStore, concept: Concept
) -> pd.DataFrame:
    """Activation-weighted concept share of the next item where each latent fires, and its lift.

    Introduced in chapter 5; the read side of :func:`select_latents`.
    Positions with an unknown next item (``next_item == 0``) are left out.

    Returns
    -------
    pandas.DataFrame
        Indexed by latent: ``share`` (NaN where the latent never fires), ``lift = share / base_rate``,
        ``n_fires`` and ``base_rate``, the mean concept weight over all valid positions (the same in every
        row).

    Raises
    ------
    ValueError
        Codes and store of different lengths; a concept for another catalogue.
    """
    if not isinstance(store, ActivationStore):
        raise TypeError(f"store must be an ActivationStore, got {type(store).__name__}")
    if not isinstance(codes, LatentCodes):
        codes = LatentCodes.from_dense(codes)
    if codes.n_rows != len(store):
        raise ValueError(f"codes has {codes.n_rows} rows but the store has {len(store)}: compute them from the same store")
    nxt = store.next_item
    if len(nxt) and nxt.max() > concept.num_items:
        raise ValueError(
            f"the store holds item ids up to {int(nxt.max())} but concept {concept.name!r} covers "
            f"{concept.num_items} items: was it built from other data?"
        )
    valid = nxt > 0
    w_next = concept.item_mask[nxt]
    rows = codes.row_ids().numpy()
    idx = codes.indices.numpy()
    vals = codes.values.numpy().astype(np.float64)
    keep = valid[rows] & (vals > 0)
    m = codes.n_latents
    den = np.bincount(idx[keep], weights=vals[keep], minlength=m)
    num = np.bincount(idx[keep], weights=vals[keep] * w_next[rows[keep]], minlength=m)
    n_fires = np.bincount(idx[keep], minlength=m)
    base = float(w_next[valid].mean()) if valid.any() else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(den > 0, num / den, np.nan)
        lift = share / base if base > 0 else np.full(m, np.nan)
    return pd.DataFrame({"share": share, "lift": lift, "n_fires": n_fires, "base_rate": base},
                        index=pd.RangeIndex(m, name="latent"))


def select_latents(
    concept: Concept,
    sae: SparseAutoencoder,
    model: nn.Module,
    *,
    capture_point: str | None = None,
    codes: LatentCodes | Tensor | np.ndarray | None = None,
    store: ActivationStore | None = None,
    n: int = 5,
    min_lift: float = 1.0,
    min_fires: int = 10,
    sequences: Sequence[Any] | None = None,
    alpha: float = 1.0,
    n_states: int = 256,
    refine: int | None = None,
    seed: int = 0,
    screen: np.ndarray | None = None,
    order: Literal["single", "greedy"] = "single",
) -> pd.DataFrame:
    """The ``n`` latents to steer with towards ``concept``, by the documented rule.

    Introduced in chapter 5. The rule (see the module docstring): candidates
    are latents that fire at least ``min_fires`` times with a concept lift of at least ``min_lift`` (only
    when ``codes`` and ``store`` are given); they are ranked by ``score = specificity``, the promotion of
    concept items over the other items by the latent's decoder direction, divided by the spread of the
    logit changes it causes.

    Parameters
    ----------
    concept : Concept
    sae : SparseAutoencoder
        Read at its own capture point (``sae.capture_point``).
    model : SASRec
    capture_point : str, optional
        Only for an SAE that records no capture point; else it must equal the SAE's.
    codes : LatentCodes or dense (n, d_sae), optional
        The SAE's codes on ``store`` (:func:`seqsae_lib.interpret.stats.latent_activations`). With ``store``,
        enables the read-side filter and fills ``lift``, ``share``, ``n_fires``.
    store : ActivationStore, optional
        States at the SAE's capture point with their next items (e.g. collected with
        ``next_items=split.valid_targets``).
    n : int, default 5
    min_lift : float, default 1.0
    min_fires : int, default 10
    sequences : sequence of array-like, optional
        Required at inner capture points (see :func:`~seqsae_lib.steering.promotion.latent_promotion`).
    alpha, n_states, seed
        Finite-difference settings at inner points.
    refine : int, optional
        Inner points: how many screened candidates are measured by exact finite differences (default
        ``max(4 n, 32)``).
    screen : ndarray of shape (d_sae, num_items), optional
        Inner points: the linearised item effects of every latent,
        ``latent_item_effects(model, sae, range(sae.d_sae), method="linearised", sequences=..., alpha=...,
        n_states=..., seed=...)[0]``. They do not depend on the concept: compute them once to select
        latents for many concepts (the screen then costs nothing; only the ``refine`` candidates are
        measured).
    order : {"single", "greedy"}, default "single"
        ``"single"``: the ``n`` candidates with the highest specificity each. ``"greedy"``: the combination
        built one latent at a time (module docstring); at inner points it is built from the linearised
        effects (``screen``), without finite-difference refinement.

    Returns
    -------
    pandas.DataFrame
        :data:`SELECTION_COLUMNS`, best first (at most ``n`` rows; empty, with a warning, when no latent
        passes the filters). ``n_candidates`` (the same in every row) is how many latents passed the
        read-side filter. With ``order="greedy"`` the rows are in the order the latents were added, ``score``
        is the specificity of the sum of the latents up to that row (it increases down the table), and
        ``promotion`` / ``specificity`` are each latent's own.

    Raises
    ------
    ValueError
        Only one of ``codes`` / ``store``; a store from another capture point; bad ``n``; and the errors
        of :func:`~seqsae_lib.steering.promotion.latent_promotion`.
    """
    capture_point = check_sae_fits(model, sae, capture_point)
    check_concept(concept, model.num_items)
    n = check_int("n", n, minimum=1)
    if order not in ("single", "greedy"):
        raise ValueError(f"order must be 'single' or 'greedy', got {order!r}")
    if (codes is None) != (store is None):
        raise ValueError("pass both codes and store (for the lift filter) or neither")
    m = sae.d_sae
    if store is not None:
        if not isinstance(store, ActivationStore):
            raise TypeError(f"store must be an ActivationStore, got {type(store).__name__}")
        if store.capture_point != capture_point:
            raise ValueError(f"the store holds states at {store.capture_point!r}, not at {capture_point!r}")
        lift = concept_lift(codes, store, concept)[["share", "lift", "n_fires"]]  # type: ignore[arg-type]
        if len(lift) != m:
            raise ValueError(f"codes have {len(lift)} latents but the SAE has d_sae={m}")
        candidate = (lift["n_fires"].to_numpy() >= min_fires) & (lift["lift"].fillna(0.0).to_numpy() >= min_lift)
    else:
        lift = pd.DataFrame({"share": np.nan, "lift": np.nan, "n_fires": -1}, index=pd.RangeIndex(m, name="latent"))
        candidate = np.ones(m, dtype=bool)
    cand_ids = np.flatnonzero(candidate)
    if screen is not None and np.shape(screen) != (m, int(model.num_items)):
        raise ValueError(f"screen must have shape (d_sae, num_items) = ({m}, {int(model.num_items)}), "
                         f"got {np.shape(screen)}")
    if len(cand_ids) == 0:
        warnings.warn(
            f"no latent fires >= {min_fires} times with lift >= {min_lift} for concept {concept.name!r}; "
            "lower min_lift / min_fires", stacklevel=2,
        )
        frame = pd.DataFrame(columns=list(SELECTION_COLUMNS))
    elif order == "greedy":
        if capture_point == "final":
            effects, how = latent_item_effects(model, sae, cand_ids, capture_point=capture_point)
        elif screen is not None:
            effects, how = np.asarray(screen)[cand_ids], "linearised"
        else:
            effects, how = latent_item_effects(model, sae, cand_ids, capture_point=capture_point, sequences=sequences,
                                               method="linearised", alpha=alpha, n_states=n_states, seed=seed)
        prom = latent_promotion(concept, sae, model, capture_point=capture_point, latents=cand_ids, effects=effects,
                                method=how)  # type: ignore[arg-type]
        picked, scores = _greedy(effects, concept.contrast()[1:], int(n))
        frame = prom.iloc[picked].join(lift, how="left")
        frame["score"] = scores
        frame["n_candidates"] = len(cand_ids)
        frame = frame.reset_index()[list(SELECTION_COLUMNS)]
        frame["latent"] = frame["latent"].astype(np.int64)
    else:
        if capture_point == "final":
            prom = latent_promotion(concept, sae, model, capture_point=capture_point, latents=cand_ids)
        else:
            k = int(refine) if refine is not None else max(4 * int(n), 32)
            screened = latent_promotion(
                concept, sae, model, capture_point=capture_point, latents=cand_ids, sequences=sequences,
                method="linearised", alpha=alpha, n_states=n_states, seed=seed,
                effects=None if screen is None else np.asarray(screen)[cand_ids],
            )
            best = screened.sort_values("specificity", ascending=False, kind="stable").index[:k].to_numpy()
            prom = latent_promotion(
                concept, sae, model, capture_point=capture_point, latents=best, sequences=sequences,
                method="finite-difference", alpha=alpha, n_states=n_states, seed=seed,
            )
        frame = prom.join(lift, how="left")
        frame["score"] = frame["specificity"]
        frame["n_candidates"] = len(cand_ids)
        frame = frame.sort_values(["score", "promotion"], ascending=False, kind="stable").head(int(n))
        frame = frame.reset_index()[list(SELECTION_COLUMNS)]
        frame["latent"] = frame["latent"].astype(np.int64)
    return frame


def _greedy(effects: np.ndarray, contrast: np.ndarray, n: int) -> tuple[list[int], list[float]]:
    """Rows of ``effects`` whose sum is most specific for ``contrast``, added one at a time (at most ``n``)."""
    total = np.zeros(effects.shape[1])
    picked: list[int] = []
    scores: list[float] = []
    best = -np.inf
    for _ in range(min(n, len(effects))):
        trial = total[None, :] + effects
        spread = trial.std(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            spec = np.where(spread > 0, (trial @ contrast) / spread, -np.inf)
        spec[picked] = -np.inf
        j = int(np.argmax(spec))
        if not spec[j] > best:
            break
        best = float(spec[j])
        picked.append(j)
        scores.append(best)
        total = total + effects[j]
    return picked, scores


def concept_steering(
    concept: Concept | str,
    strength: float,
    latents: Sequence[int] | pd.DataFrame | int,
    sae: SparseAutoencoder,
    *,
    capture_point: str | None = None,
    rule: Literal["add", "shift_z", "scale"] = "add",
    positions: Literal["last", "all"] = "last",
    latent_std: Tensor | None = None,
) -> Steering:
    """A :class:`~seqsae_lib.steering.latent_steering.Steering` that pushes towards (``strength > 0``) or away from a concept.

    Introduced in chapter 5. Every latent gets the same edit:

    * ``rule="add"``: ``add`` ``strength`` (state units along each unit-norm decoder direction);
    * ``rule="shift_z"``: shift each latent's pre-activation by ``strength`` standard deviations
      (needs ``latent_std``, see :func:`~seqsae_lib.steering.edits.preactivation_std`);
    * ``rule="scale"``: multiply each activation by ``max(0, 1 + strength)`` (-1 or below ablates).

    ``strength = 0`` is the identity for every rule. ``latents`` is usually :func:`select_latents`'s
    table; an empty list gives the identity. The steering is at the SAE's capture point (``capture_point``
    only for an SAE that records none).

    Raises
    ------
    ValueError
        Unknown rule (the message lists :data:`CONCEPT_RULES`), non-finite strength, latent ids out of
        range, ``shift_z`` without ``latent_std``.
    """
    name = concept.name if isinstance(concept, Concept) else str(concept)
    if rule not in CONCEPT_RULES:
        raise ValueError(f"unknown rule {rule!r}; valid rules are {list(CONCEPT_RULES)}")
    s = check_float("strength", strength)
    lats = latent_ids(latents)
    label = f"{'more' if s >= 0 else 'less'} {name} ({s:+g})"
    where = {"positions": positions, "label": label, "capture_point": capture_point}
    if rule == "add":
        return Steering.add(sae, lats, s, **where)  # type: ignore[arg-type]
    if rule == "shift_z":
        if latent_std is None:
            raise ValueError("rule='shift_z' needs latent_std (seqsae_lib.steering.edits.preactivation_std(sae, store))")
        return Steering.shift_z(sae, lats, s, latent_std, **where)  # type: ignore[arg-type]
    return Steering.scale(sae, lats, max(0.0, 1.0 + s), **where)  # type: ignore[arg-type]


def combine(*steerings: Steering) -> Steering:
    """Combine steerings, e.g. ``combine(more_comedy, less_horror, older)``: :meth:`Steering.combine`.

    Introduced in chapter 5.
    """
    return Steering.combine(*steerings)
