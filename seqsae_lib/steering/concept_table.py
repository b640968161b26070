"""Every concept in one table: can SAE steering double a concept's share at a small accuracy cost?

Introduced in chapter 5.

:func:`concept_steering_table` runs the SAE methods (one per SAE, each at its own capture point) and the
baselines of :mod:`seqsae_lib.steering.baselines` on every genre and release decade with at least 20 items
(:func:`~seqsae_lib.steering.catalogue_concepts.table_concepts`) and reports, per concept, the concept share
of the test users' top-10 lists that each method reaches within each NDCG@10 budget.

How a number in the table is made
---------------------------------
* **Share within a budget.** A method's strengths are walked upwards on a coarse grid until the NDCG@10
  drop (unsteered minus steered, on the same test users) exceeds the largest budget; then, for each budget,
  the interval between the largest strength within it and the next tested one is halved ``refine`` times.
  The reported share is the *highest share among the tested strengths whose measured drop is within the
  budget* (the unsteered model, strength 0 with drop 0, included): a point that was measured, never an
  interpolation, so it is never NaN and never below the unsteered share. The tested points are returned
  by ``return_curves=True``.
* **SAE methods** add the same strength along the unit-norm decoder rows of the latents chosen by
  :func:`~seqsae_lib.steering.selection.select_latents` with ``order="greedy"`` (the most concept-specific
  combination, built one latent at a time). How many of them (a prefix of the greedy order, among
  ``n_latents``) is chosen per concept and SAE on the *validation* users (the same walk on
  ``split.valid_inputs``), so the test users judge a method that was not tuned on them.
* **Best SAE** is the SAE method with the highest share at the largest budget; ``doubles`` says whether it
  reaches at least twice the unsteered share there (and more than it: a concept absent from the unsteered
  lists is doubled by any share above 0).
* **Wins, ties, losses** of the best SAE against each baseline, at each budget: the two chosen steerings
  are compared user by user (the share of each user's list), and a paired bootstrap over users gives a
  95% interval for the mean difference: ``"win"`` if it lies above 0, ``"loss"`` below, ``"tie"`` if it
  contains 0. (Each method's strength was picked as its best within the budget on these users, which
  favours neither side.)
* **Why not**: for a concept that is not doubled, the first that applies of: the unsteered share is above
  0.5 (doubling is impossible); no latent passes the read-side filter; even label re-ranking does not
  double it within the budget (the budget, not the SAE, is the limit); no latent's next-item profile is
  enriched for the concept (``profile latents`` is 0: the SAE learned no feature for it; the criterion of
  the atlas, :meth:`~seqsae_lib.interpret.atlas.FeatureAtlas.by_category`: Benjamini-Hochberg q <= 0.05 and
  an activation-weighted share >= 0.1); the enriched latents' lift is below 2; else the latents exist but
  the chosen directions also promote other items (``label corr``, the correlation over items between the
  chosen latents' summed score changes and the concept's labels, is well below the 1 of label re-ranking).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from torch import nn
from tqdm.auto import tqdm

from seqsae_lib.data import SequenceData
from seqsae_lib.interpret import category_profile, latent_activations, latent_item_effects
from seqsae_lib.sae import ActivationStore, SparseAutoencoder
from seqsae_lib.steering.baselines import (
    hidden_dim_baseline, mean_difference_baseline, random_latent_baseline, rerank_baseline, sae_method,
)
from seqsae_lib.steering.catalogue_concepts import get_concept, table_concepts
from seqsae_lib.steering.concepts import Concept
from seqsae_lib.steering.evaluation import SteeringEvaluator
from seqsae_lib.steering.selection import select_latents
from seqsae_lib.steering.tradeoffs import search_strengths
from seqsae_lib.utils.checks import check_int

__all__ = ["TABLE_STRENGTHS", "BASELINES", "concept_steering_table", "wins_ties_losses"]

TABLE_STRENGTHS: dict[str, tuple[float, ...]] = {
    "state": (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
    "re-ranking": (0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
}
"""Coarse grids of :func:`concept_steering_table`: ``"state"`` (state units, SAE latents and the vector
baselines) and ``"re-ranking"`` (logits added to concept items); refined by halving near each budget."""

BASELINES: tuple[str, ...] = ("re-ranking", "mean difference", "hidden dims", "random latent")
"""The baselines of the table, in column order (built as in :func:`~seqsae_lib.steering.baselines.steering_methods`)."""

Points = dict[float, tuple[float, float, np.ndarray]]  # strength -> (share, NDCG drop, per-user share)


def _walk(ev: SteeringEvaluator, fn: Callable[[float], Any], concept: Concept, grid: Sequence[float],
          costs: Sequence[float], refine: int) -> Points:
    """Measure ``fn`` at strength 0, up the grid until the largest budget is exceeded, then near each budget."""
    ref_top = ev.reference[1]
    points: Points = {0.0: (float(concept.share(ref_top)), 0.0, concept.item_mask[ref_top].mean(axis=1))}

    def drop_at(s: float) -> float:
        frame, details = ev.run(fn, [s], concept, return_details=True)
        points[s] = (float(frame["share@10"].iloc[0]), float(frame["NDCG@10_drop"].iloc[0]),
                     concept.item_mask[details.top_items[0]].mean(axis=1))
        return points[s][1]

    order = search_strengths(drop_at, grid, costs, refine)
    return {s: points[s] for s in order}


def _within(points: Points, cost: float) -> float:
    """The strength with the highest share among those whose drop is within ``cost`` (smallest on ties)."""
    return max((s for s in points if points[s][1] <= cost), key=lambda s: (points[s][0], -s))


def _profile_evidence(codes: Any, store: ActivationStore, concept: Concept, min_fires: int) -> tuple[int, float]:
    """Latents whose next-item profile is enriched for the concept (the atlas's criterion) and their best lift."""
    nxt = store.next_item
    prof = category_profile(codes, (concept.item_mask[nxt] > 0)[:, None].astype(np.float64), [concept.name],
                            valid=nxt > 0, clusters=nxt)
    hit = prof[(prof["q_value"] <= 0.05) & (prof["share"] >= 0.1) & (prof["n_fires"] >= min_fires)]
    return len(hit), float(hit["lift"].max()) if len(hit) else float("nan")


def _label_corr(model: nn.Module, sae: SparseAutoencoder, latents: list[int], screen: np.ndarray | None,
                concept: Concept) -> float:
    """Correlation over items between the chosen latents' summed score changes and the concept weights."""
    if not latents:
        return float("nan")
    effects = screen[latents] if screen is not None else latent_item_effects(model, sae, latents)[0]
    total = np.asarray(effects).sum(axis=0)
    w = concept.item_mask[1:]
    return float(np.corrcoef(total, w)[0, 1]) if total.std() > 0 and w.std() > 0 else float("nan")


def _verdict(a: np.ndarray, b: np.ndarray, boot: np.ndarray) -> str:
    means = (a - b)[boot].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return "win" if lo > 0 else "loss" if hi < 0 else "tie"


def _why(row: dict[str, Any], best: str, cost: float, n_chosen: int) -> str:
    ref, c = row["unsteered share@10"], f"@{cost:g}"
    if row["doubles"]:
        return ""
    if 2 * ref > 1:
        return f"cannot double: the unsteered share {ref:.2f} is above 0.5"
    if n_chosen == 0:
        return "no latent passes the read-side filter (fires >= min_fires times with lift >= 1)"
    rerank = row[f"re-ranking {c}"]
    if rerank < 2 * ref:
        return (f"even label re-ranking reaches only {rerank:.3f} ({rerank / ref:.1f}x) within {cost:g}: "
                "the budget limits")
    if row["profile latents"] == 0:
        return ("the SAE learned no latent for it: no latent's next-item profile is enriched for it "
                "(q <= 0.05, share >= 0.1)")
    if row["max lift"] < 2:
        return f"no latent is specific to it: the best lift of an enriched latent is {row['max lift']:.1f}"
    return (f"{row['profile latents']} latents are enriched for it (best lift {row['max lift']:.1f}), but the "
            f"chosen ones also promote other items: the score changes of "
            f"{best} correlate {row['label corr']:.2f} with the labels (re-ranking: 1); it reaches "
            f"{row[f'best SAE {c}']:.3f} ({row[f'best SAE {c}'] / ref:.1f}x), label re-ranking {rerank:.3f}")


def concept_steering_table(
    model: nn.Module,
    saes: Mapping[str, SparseAutoencoder],
    stores: Mapping[str, ActivationStore],
    split: Any,
    seq_data: SequenceData,
    *,
    concepts: Sequence[str | Concept] | None = None,
    costs: Sequence[float] = (0.01, 0.02),
    strengths: Mapping[str, Sequence[float]] | None = None,
    n_latents: Sequence[int] = (1, 3, 10),
    refine: int = 2,
    baseline_sae: str | None = None,
    min_items: int = 20,
    min_fires: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
    return_curves: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """One row per concept: the share@10 each steering method reaches within each NDCG@10 budget.

    Introduced in chapter 5. How each number is made is in the module docstring.

    Parameters
    ----------
    model : SASRec
    saes : dict
        ``name -> SAE``; each gives the method ``"SAE <name>"``, steering at the SAE's own capture point
        (e.g. ``{"final": sae, "block_0": sae_block_0}``).
    stores : dict
        ``name -> ActivationStore`` at that SAE's capture point with next items (e.g.
        :func:`~seqsae_lib.experiments.pretrained.training_activations`), for each name of ``saes``.
    split : LeaveOneOutSplit
        Test users judge the methods; validation users choose each SAE method's number of latents;
        ``split.train`` gives the states that measure effects at inner capture points.
    seq_data : SequenceData
    concepts : sequence of names or Concepts, optional
        Default :func:`~seqsae_lib.steering.catalogue_concepts.table_concepts` (``min_items``).
    costs : sequence of float, default (0.01, 0.02)
        NDCG@10 budgets (absolute drops, ``>= 0``).
    strengths : dict, optional
        Coarse grids, keys as :data:`TABLE_STRENGTHS` (missing keys fall back to it); positive numbers.
    n_latents : sequence of int, default (1, 3, 10)
        Candidate numbers of latents (prefixes of the greedy order), chosen on the validation users.
    refine : int, default 2
        Halvings near each budget (on the validation users: one, near the largest budget).
    baseline_sae : str, optional
        The SAE (and store) of the mean-difference, hidden-dims and random-latent baselines; default the
        one that reads ``"final"``, else the first.
    min_items, min_fires : int
        Concepts with fewer items are left out by default; latents firing fewer times are not candidates.
    n_boot, seed : int
        Bootstrap resamples of the verdicts and their seed (also the random latent's).
    progress : bool, default True
    return_curves : bool, default False
        Also return every measured point: columns ``concept, method, strength, share@10, NDCG@10_drop``
        and ``chosen@<cost>`` (the point reported for that budget).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``concept``: ``kind``, ``n_items``, ``unsteered share@10`` (in [0, 1]); for each method
        (``"SAE <name>"``, then :data:`BASELINES`) and budget ``c`` the column ``"<method> @<c>"`` (share@10
        in [0, 1], at least the unsteered share); ``"n latents SAE <name>"``; ``best SAE``,
        ``"best SAE @<c>"``, ``"best SAE x"`` (its share at the largest budget over the unsteered share),
        ``doubles`` (bool); ``profile latents`` (how many latents of the best SAE firing at least
        ``min_fires`` times have a next-item profile enriched for the concept) and ``max lift`` (their best
        lift, NaN if none); ``label corr`` (in [-1, 1]: correlation over items between the score changes of
        the best SAE's latents, summed, per unit of strength, and the concept weights; linearised at inner
        capture points); ``"vs <baseline> @<c>"`` in ``{"win", "tie", "loss"}``; ``why`` (empty when it
        doubles). ``attrs`` holds the costs, grids and the methods' names.

    Raises
    ------
    ValueError, TypeError, UnknownConceptError
        No SAE, a store missing or at another capture point, an unknown concept or a repeated one, a
        negative or non-finite cost, empty or non-positive strengths or ``n_latents``.
    """
    if not isinstance(saes, Mapping) or not saes:
        raise ValueError("saes must be a non-empty dict name -> SparseAutoencoder")
    for name, sae in saes.items():
        if not isinstance(sae, SparseAutoencoder):
            raise TypeError(f"saes[{name!r}] must be a SparseAutoencoder, got {type(sae).__name__}")
        store = stores.get(name) if isinstance(stores, Mapping) else None
        if not isinstance(store, ActivationStore):
            raise ValueError(f"stores must hold an ActivationStore for every SAE; missing for {name!r}")
        if store.capture_point != sae.capture_point:
            raise ValueError(f"stores[{name!r}] is at {store.capture_point!r} but the SAE reads {sae.capture_point!r}")
    try:
        costs = sorted({float(c) for c in costs})
    except (TypeError, ValueError):
        raise TypeError(f"costs must be a sequence of numbers, got {costs!r}") from None
    if not costs or not all(math.isfinite(c) and c >= 0 for c in costs):
        raise ValueError(f"costs must be finite NDCG@10 drops >= 0, got {costs}")
    grids = {**TABLE_STRENGTHS, **{k: tuple(float(s) for s in v) for k, v in (strengths or {}).items()}}
    if set(grids) != set(TABLE_STRENGTHS) or not all(g and min(g) > 0 for g in grids.values()):
        raise ValueError(f"strengths must map {list(TABLE_STRENGTHS)} to non-empty positive grids, got {strengths!r}")
    sizes = sorted({check_int("n_latents", n, minimum=1) for n in n_latents})
    if not sizes:
        raise ValueError("n_latents is empty")
    refine = check_int("refine", refine, minimum=0)
    names = list(concepts) if concepts is not None else table_concepts(seq_data, min_items)
    chosen_concepts = [get_concept(seq_data, c) for c in names]
    if len({c.name for c in chosen_concepts}) != len(chosen_concepts):
        raise ValueError(f"concepts must be distinct, got {[c.name for c in chosen_concepts]}")
    if baseline_sae is None:
        finals = [n for n, s in saes.items() if s.capture_point == "final"]
        baseline_sae = finals[0] if finals else next(iter(saes))
    if baseline_sae not in saes:
        raise ValueError(f"baseline_sae must be one of {list(saes)}, got {baseline_sae!r}")

    test = SteeringEvaluator(model, split.test_inputs, split.test_targets, seq_data, n_boot=0, seed=seed)
    valid = SteeringEvaluator(model, split.valid_inputs, split.valid_targets, seq_data, n_boot=0, seed=seed)
    codes = {n: latent_activations(s, stores[n]) for n, s in saes.items()}
    screens = {n: latent_item_effects(model, s, list(range(s.d_sae)), method="linearised", sequences=split.train,
                                      seed=seed)[0]
               for n, s in saes.items() if s.capture_point != "final"}
    boot = np.random.default_rng(seed).integers(0, test.n_users, size=(n_boot, test.n_users))
    sae_names = [f"SAE {n}" for n in saes]
    rows, curves = [], []
    for concept in tqdm(chosen_concepts, desc="concepts", disable=not progress):
        methods: dict[str, tuple[Callable[[float], Any], tuple[float, ...]]] = {}
        n_chosen, corrs = {}, {}
        for name, sae in saes.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "no latent passes": recorded as 0 latents
                table = select_latents(concept, sae, model, codes=codes[name], store=stores[name], n=max(sizes),
                                       min_fires=min_fires, sequences=split.train, screen=screens.get(name),
                                       order="greedy", seed=seed)
            options = {n: sae_method(concept, table["latent"].head(n).tolist(), sae)
                       for n in sorted({min(n, len(table)) for n in sizes})}  # greedy may stop before n
            best_n = max(options, key=lambda n: (_share_at(valid, options[n], concept, grids["state"], costs[-1]), -n))
            n_chosen[name] = best_n
            methods[f"SAE {name}"] = (options[best_n], grids["state"])
            corrs[name] = _label_corr(model, sae, table["latent"].head(best_n).tolist(), screens.get(name), concept)
        store, sae = stores[baseline_sae], saes[baseline_sae]
        methods["re-ranking"] = (rerank_baseline(concept), grids["re-ranking"])
        methods["mean difference"] = (mean_difference_baseline(store, concept), grids["state"])
        methods["hidden dims"] = (hidden_dim_baseline(store, concept), grids["state"])
        methods["random latent"] = (random_latent_baseline(sae, seed=seed, codes=codes[baseline_sae]), grids["state"])

        ref_share = float(concept.share(test.reference[1]))
        row: dict[str, Any] = {"concept": concept.name, "kind": concept.kind, "n_items": concept.n_items,
                               "unsteered share@10": ref_share}
        picks: dict[tuple[str, float], np.ndarray] = {}
        for method, (fn, grid) in methods.items():
            points = _walk(test, fn, concept, grid, costs, refine)
            for cost in costs:
                s = _within(points, cost)
                row[f"{method} @{cost:g}"] = points[s][0]
                picks[(method, cost)] = points[s][2]
            for s, (share, drop, _) in sorted(points.items()):
                curves.append({"concept": concept.name, "method": method, "strength": s, "share@10": share,
                               "NDCG@10_drop": drop, **{f"chosen@{c:g}": s == _within(points, c) for c in costs}})
        for name in saes:
            row[f"n latents SAE {name}"] = n_chosen[name]
        top = costs[-1]
        best = max(sae_names, key=lambda m: row[f"{m} @{top:g}"])  # first on ties
        for cost in costs:
            row[f"best SAE @{cost:g}"] = row[f"{best} @{cost:g}"]
        row["best SAE"] = best
        row["best SAE x"] = row[f"best SAE @{top:g}"] / ref_share if ref_share > 0 else float("inf")
        row["doubles"] = bool(row[f"best SAE @{top:g}"] >= 2 * ref_share and row[f"best SAE @{top:g}"] > ref_share)
        key = best[len("SAE "):]
        row["profile latents"], row["max lift"] = _profile_evidence(codes[key], stores[key], concept, min_fires)
        row["label corr"] = corrs[key]
        for baseline in BASELINES:
            for cost in costs:
                row[f"vs {baseline} @{cost:g}"] = _verdict(picks[(best, cost)], picks[(baseline, cost)], boot)
        row["why"] = _why(row, best, top, n_chosen[key])
        rows.append(row)
    out = pd.DataFrame(rows).set_index("concept")
    out.attrs.update({"costs": tuple(costs), "strengths": grids, "sae_methods": tuple(sae_names),
                      "baselines": BASELINES, "n_users": test.n_users})
    return (out, pd.DataFrame(curves)) if return_curves else out


def _share_at(ev: SteeringEvaluator, fn: Callable[[float], Any], concept: Concept, grid: Sequence[float],
              cost: float) -> float:
    """Share within ``cost`` on the evaluator's users, one halving (the validation choice of a method)."""
    points = _walk(ev, fn, concept, grid, [cost], 1)
    return points[_within(points, cost)][0]


def wins_ties_losses(table: pd.DataFrame) -> pd.DataFrame:
    """Count the best SAE's verdicts against each baseline at each budget.

    Introduced in chapter 5.

    Parameters
    ----------
    table : DataFrame
        From :func:`concept_steering_table`, or the same table read back from CSV (the baselines and budgets
        are read from its ``"vs <baseline> @<cost>"`` columns).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``(baseline, cost)`` in the table's column order; columns ``wins``, ``ties``, ``losses``
        (counts of concepts; each row sums to the number of concepts).

    Raises
    ------
    TypeError
        ``table`` is not a DataFrame with at least one ``"vs <baseline> @<cost>"`` column.
    """
    columns = [c for c in table.columns if isinstance(c, str) and c.startswith("vs ") and " @" in c] \
        if isinstance(table, pd.DataFrame) else []
    if not columns:
        raise TypeError("table must be a DataFrame from concept_steering_table (no 'vs <baseline> @<cost>' columns)")
    rows = {}
    for column in columns:
        baseline, cost = column.removeprefix("vs ").rsplit(" @", 1)
        v = table[column]
        rows[(baseline, float(cost))] = {"wins": int((v == "win").sum()), "ties": int((v == "tie").sum()),
                                         "losses": int((v == "loss").sum())}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["baseline", "cost"])
    return out
