"""Steering along SAE latents chosen without labels, judged on metadata the choice never saw.

Introduced in chapter 5.

Label re-ranking needs labels; an SAE latent is a direction without one. This module asks whether steering
along latents picked by a label-free rule surfaces *coherent* sets of films (in genre, release decade or
popularity, none of which the rule saw), and whether it does so more than steering along directions that
carry no SAE: the top principal directions of the same states, and random directions.

:func:`unlabelled_latents`
    The selection rule: among the latents whose firing frequency is within a factor of the typical
    frequency (no dead or rare latent, no dense one), the ``n`` that carry the most activation energy.
    It reads the codes only: no label, no profile, no metadata.
:func:`unlabelled_steering`
    Steers every user of a :class:`~seqsae_lib.steering.evaluation.SteeringEvaluator` along each chosen
    latent and along the controls, each at the strength that costs the same NDCG@k, and describes the
    films that enter the top-k lists: one row per direction.
:func:`compare_unlabelled`
    The chosen latents against each control: medians, bootstrap intervals and verdicts
    (:func:`~seqsae_lib.interpret.comparison.compare_to_controls`), and one sentence per control whose
    direction words come from the intervals.

How a row of :func:`unlabelled_steering` is made
------------------------------------------------
* **Directions.** ``"SAE latents"``: ``add`` along each chosen latent's decoder row
  (:meth:`~seqsae_lib.steering.latent_steering.Steering.add`, rescaled to unit length). ``"PCA directions"``:
  the ``n_pca`` top principal directions of the states (:func:`~seqsae_lib.interpret.unit_types.pca_directions`),
  each with both signs (a principal direction has no natural sign; both halves are units, as in chapter 4).
  ``"random directions"``: ``n_random`` orthonormal random directions (rows of a Haar rotation,
  :func:`~seqsae_lib.interpret.unit_types.random_directions`). All steer at the SAE's capture point.
* **Equal cost.** Each direction's strength (the length of the push, state units) is walked up
  ``max_strength / 64, ..., max_strength / 2, max_strength`` (doubling) until the NDCG@k drop on the
  evaluator's users exceeds ``cost``; the interval between the last strength within the cost and that one is
  then halved ``refine`` times. The row reports the largest tested strength whose drop is within ``cost``
  (``reached`` False and NaN measurements when even ``max_strength`` stays within it).
* **Surfaced films.** An *entry* is a (user, film) pair in the steered top-k that is not in the same user's
  unsteered top-k; ``new_per_user`` is the mean number of entries per user (0..k), ``distinct_new`` the
  number of distinct films among them. *Displaced* entries are the unsteered ones that left.
* **Concentration.** For each metadata family (genres: ``seq_data.item_genres``, each film's genres
  sharing a weight of 1; release decade; popularity fifth of the catalogue, by number of interactions, ties
  by id) the distribution of the entries (each film weighted by the number of users it entered for) is
  compared with the catalogue's (every labelled film once) by the KL divergence (nats, ``*_kl``).
  ``*_kl_null`` is the mean KL of ``n_null`` random sets of as many catalogue films with the same weights:
  what a set of that size and that skew of weights reaches by chance. ``*_excess = *_kl - *_kl_null`` is
  the headline: about 0 for films drawn at random, larger the more the surfaced films share a genre,
  decade or popularity band (in either direction: concentration, not a label). ``top_genre`` and
  ``top_decade`` name the category whose share exceeds its catalogue share the most, ``*_lift`` the ratio
  of the two shares.
* **Popularity shift.** Each film's popularity percentile in the catalogue (0 least, 1 most interactions,
  ties averaged); ``popularity_shift`` is the median percentile of the entries minus that of the displaced
  entries, in [-1, 1]: negative when steering brings in less popular films than those it pushes out.

What it cannot show: the random-set null corrects for the size of the surfaced set, not for what any
steering at ``"final"`` favours (films near the top of many lists, films whose embeddings cluster): that is
what the PCA and random directions are for, and why the verdicts compare with them, not with 0. Films
without a release year are left out of the decade family.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from seqsae_lib.interpret import (
    LatentCodes, category_labels, comparison_table, energy_share, fire_counts, pca_directions, random_directions,
)
from seqsae_lib.interpret.codes import dense_matrix, n_rows
from seqsae_lib.interpret.concentration import _kl
from seqsae_lib.sae import ActivationStore, SparseAutoencoder
from seqsae_lib.steering.evaluation import SteeringEvaluator
from seqsae_lib.steering.latent_steering import Steering
from seqsae_lib.steering.tradeoffs import search_strengths
from seqsae_lib.steering.vector_steering import VectorSteering
from seqsae_lib.utils.checks import check_float, check_int, latent_ids

__all__ = [
    "UNLABELLED_COLUMNS", "UNLABELLED_SCORES", "UNLABELLED_TYPES", "compare_unlabelled", "unlabelled_latents",
    "unlabelled_steering",
]

UNLABELLED_TYPES: tuple[str, ...] = ("SAE latents", "PCA directions", "random directions")
"""The ``type`` values of :func:`unlabelled_steering`'s rows, in row order."""

UNLABELLED_SCORES: tuple[str, ...] = ("genre_excess", "decade_excess", "popularity_excess")
"""The chance-corrected concentrations :func:`compare_unlabelled` compares by default."""

UNLABELLED_COLUMNS: tuple[str, ...] = (
    "type", "direction", "latent", "reached", "strength", "ndcg_drop", "new_per_user", "distinct_new",
    "genre_excess", "decade_excess", "popularity_excess", "popularity_shift", "top_genre", "top_genre_lift",
    "top_decade", "top_decade_lift", "genre_kl", "genre_kl_null", "decade_kl", "decade_kl_null", "popularity_kl",
    "popularity_kl_null",
)
"""The columns of :func:`unlabelled_steering`, in order (defined in the module docstring)."""

ITEM_COLUMNS: tuple[str, ...] = ("type", "direction", "item", "title", "year", "genres", "popularity", "users")
"""The columns of the surfaced-films table of :func:`unlabelled_steering` (``return_items=True``)."""

_FAMILIES = ("genre", "decade", "popularity")
_WORDS = {"genre_excess": "genre", "decade_excess": "release decade", "popularity_excess": "popularity"}


# --------------------------------------------------------------------------------------------------------
# the selection rule
# --------------------------------------------------------------------------------------------------------


def unlabelled_latents(codes: Any, n: int = 16, *, band: tuple[float, float] = (0.1, 10.0)) -> pd.DataFrame:
    """Choose ``n`` latents without any label: the highest-energy latents of typical firing frequency.

    Introduced in chapter 5.

    The rule reads the codes only. A latent's *frequency* is the share of positions where it fires; the
    *typical* frequency is the mean over all latents (the mean number of active latents per position over
    ``d_sae``: ``k / d_sae`` for a TopK SAE). Latents whose frequency lies within ``band`` times the typical
    one are eligible (this drops dead and rare latents, whose few positions make a direction of a handful of
    films, and dense ones, which fire on a large share of all positions like a component of the average
    state). The eligible latents are ranked by their share of the total squared activation
    (:func:`~seqsae_lib.interpret.concentration.energy_share`: how much of the representation they carry),
    ties by latent id, and the first ``n`` are returned.

    Parameters
    ----------
    codes : LatentCodes or (n_positions, d_sae) non-negative matrix
        The SAE's codes on stored states (e.g. ``atlas.codes``).
    n : int, default 16
        How many latents, at least 1 (16: as many as the rows of each control in :func:`unlabelled_steering`'s
        defaults).
    band : (float, float), default (0.1, 10.0)
        Lowest and highest frequency, as multiples of the typical frequency; ``0 < low < high``.

    Returns
    -------
    pandas.DataFrame
        ``n`` rows in rank order: ``latent`` (id), ``frequency`` (in (0, 1]), ``relative_frequency``
        (frequency over the typical frequency, within ``band``), ``energy_share`` (in (0, 1]) and
        ``energy_rank`` (1 = the most energetic eligible latent).

    Raises
    ------
    TypeError
        ``codes`` neither LatentCodes nor a matrix; non-numeric ``n`` or ``band``.
    ValueError
        NaN or infinite activations, no activation at all, a bad ``band`` or ``n``, or fewer than ``n``
        eligible latents (the message says how many there are).
    """
    n = check_int("n", n, minimum=1)
    if not isinstance(band, (tuple, list)) or len(band) != 2:
        raise TypeError(f"band must be a pair (low, high) of multiples of the typical frequency, got {band!r}")
    low = check_float("band[0]", band[0], 0.0, exclusive_minimum=True)
    high = check_float("band[1]", band[1], low, exclusive_minimum=True)
    if not isinstance(codes, LatentCodes):
        codes = dense_matrix(codes, "codes")  # refuses NaN / inf with a clear message
    elif not bool(torch.isfinite(codes.values).all()):
        raise ValueError("codes contain NaN or inf activations")
    counts = fire_counts(codes)
    positions = n_rows(codes)
    if positions == 0 or counts.sum() == 0:
        raise ValueError("codes hold no firing activation: nothing to choose from")
    energy = energy_share(codes)
    freq = counts / positions
    typical = float(freq.mean())
    rel = freq / typical
    eligible = np.flatnonzero((counts > 0) & (rel >= low) & (rel <= high))
    if len(eligible) < n:
        raise ValueError(
            f"only {len(eligible)} latents fire within {low:g}x to {high:g}x the typical frequency "
            f"({typical:.2e}); ask for fewer (n={n}) or widen band"
        )
    order = eligible[np.lexsort((eligible, -energy[eligible]))][:n]
    return pd.DataFrame({
        "latent": order.astype(np.int64), "frequency": freq[order], "relative_frequency": rel[order],
        "energy_share": energy[order], "energy_rank": np.arange(1, n + 1, dtype=np.int64),
    })


# --------------------------------------------------------------------------------------------------------
# metadata of the catalogue (used to judge, never to choose)
# --------------------------------------------------------------------------------------------------------


def _with_padding(labels: np.ndarray) -> np.ndarray:
    return np.vstack([np.zeros((1, labels.shape[1]), dtype=np.float64), labels.astype(np.float64)])


def _families(seq_data: Any) -> dict[str, tuple[np.ndarray, list[str]]]:
    """``family -> ((num_items + 1, C) label matrix, names)``; a family without labels has ``C = 0``."""
    items = seq_data.items
    num = seq_data.num_items
    out: dict[str, tuple[np.ndarray, list[str]]] = {
        "genre": (np.asarray(seq_data.item_genres, dtype=np.float64), list(seq_data.genre_names)),
    }
    years = pd.to_numeric(items["year"], errors="coerce").astype("float64").to_numpy()
    if np.isnan(years).all():
        out["decade"] = (np.zeros((num + 1, 0)), [])
    else:
        decades = np.array([None if math.isnan(y) else f"{int(y) // 10 * 10}s" for y in years], dtype=object)
        labels, names = category_labels(decades)
        out["decade"] = (_with_padding(labels), names)
    pop = items["popularity"].to_numpy(dtype=np.float64)
    rank = np.empty(num, dtype=np.int64)
    rank[np.lexsort((np.arange(num), pop))] = np.arange(num)  # ascending popularity, ties by id
    fifth = np.minimum(rank * 5 // num, 4)
    names = ["0-20%", "20-40%", "40-60%", "60-80%", "80-100%"]
    out["popularity"] = (_with_padding((fifth[:, None] == np.arange(5)[None, :]).astype(np.float64)), names)
    return out


def _percentiles(seq_data: Any) -> np.ndarray:
    """``(num_items + 1,)`` popularity percentile of each film in [0, 1] (ties averaged); NaN for padding."""
    pop = pd.Series(seq_data.items["popularity"].to_numpy(dtype=np.float64))
    pct = np.full(seq_data.num_items + 1, np.nan)
    pct[1:] = (pop.rank(method="average").to_numpy() - 1) / max(len(pop) - 1, 1)
    return pct


def _concentration(
    weights: np.ndarray, labels: np.ndarray, names: list[str], n_null: int, rng: np.random.Generator
) -> dict[str, Any]:
    """KL of the weighted label distribution of the surfaced films from the catalogue's, and its null."""
    nan = {"kl": math.nan, "kl_null": math.nan, "excess": math.nan, "top": None, "lift": math.nan}
    if labels.shape[1] == 0:
        return nan
    rows = labels.sum(1)
    labelled = rows > 0
    labelled[0] = False
    dist = np.zeros_like(labels)
    dist[labelled] = labels[labelled] / rows[labelled, None]
    base = dist[labelled].mean(0)
    films = np.flatnonzero((weights > 0) & labelled)
    if not len(films):
        return nan
    w = weights[films].astype(np.float64)
    p = w @ dist[films] / w.sum()

    pool = np.flatnonzero(labelled)
    draws = rng.permuted(np.broadcast_to(pool, (n_null, len(pool))), axis=1)[:, : len(films)]
    null = np.einsum("rm,rmc->rc", np.broadcast_to(w, draws.shape), dist[draws]) / w.sum()
    value, chance = float(_kl(p, base)), float(_kl(null, base).mean())  # the fair measures' KL
    gain = p - base
    top = int(np.argmax(gain))
    return {"kl": value, "kl_null": chance, "excess": value - chance, "top": names[top],
            "lift": float(p[top] / base[top])}


# --------------------------------------------------------------------------------------------------------
# steering at equal cost
# --------------------------------------------------------------------------------------------------------


def _check_states(states: Any, sae: SparseAutoencoder) -> Tensor:
    if isinstance(states, ActivationStore):
        if states.capture_point != sae.capture_point:
            raise ValueError(
                f"the states are at {states.capture_point!r} but the SAE steers at {sae.capture_point!r}: the "
                "control directions must come from the states the SAE reads"
            )
        x = states.acts
        if not bool(torch.isfinite(x).all()):
            raise ValueError("the store's states contain NaN or inf")
    else:
        x = dense_matrix(states, "states")
    if x.shape[1] != sae.d_in:
        raise ValueError(f"states have width {x.shape[1]} but the SAE reads d_in={sae.d_in}")
    if x.shape[0] < 2:
        raise ValueError(f"states need at least 2 rows for principal directions, got {x.shape[0]}")
    return x


def _walk(
    ev: SteeringEvaluator, make: Any, cost: float, max_strength: float, refine: int
) -> tuple[float, float, np.ndarray] | None:
    """The largest tested strength whose NDCG drop is within ``cost``, its drop and top lists (None: never exceeded)."""
    k = ev.k
    ref_result, ref_top = ev.reference
    ref_ndcg = float(ref_result[f"NDCG@{k}"])
    tops: dict[float, np.ndarray] = {0.0: ref_top}

    def drop_at(s: float) -> float:
        result, tops[s] = ev.recommend(make(s))
        return ref_ndcg - float(result[f"NDCG@{k}"])

    grid = [max_strength / 2**step for step in range(6, -1, -1)]
    drops = search_strengths(drop_at, grid, [cost], refine)
    if max(drops.values()) <= cost:
        return None
    within = max(s for s in drops if drops[s] <= cost)
    return within, drops[within], tops[within]


def unlabelled_steering(
    evaluator: SteeringEvaluator,
    sae: SparseAutoencoder,
    latents: Sequence[int] | pd.DataFrame,
    states: ActivationStore | Tensor,
    *,
    cost: float = 0.01,
    n_pca: int = 8,
    n_random: int = 16,
    seed: int = 0,
    n_null: int = 200,
    max_strength: float = 64.0,
    refine: int = 6,
    return_items: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Steer along label-free latents and control directions at equal NDCG cost; describe what surfaces.

    Introduced in chapter 5. How each number is made is in the module docstring; the metadata (genres,
    release years, popularity of ``evaluator.seq_data``) only judges the result.

    Parameters
    ----------
    evaluator : SteeringEvaluator
        The users steered and their held-out items (e.g. all test users); its ``k`` is the list length.
    sae : SparseAutoencoder
        Steers at its own capture point.
    latents : sequence of int or DataFrame with a ``latent`` column
        The chosen latents (e.g. :func:`unlabelled_latents`), distinct ids in ``0 .. d_sae - 1``.
    states : ActivationStore or Tensor of shape (n, d_in)
        States at the SAE's capture point (e.g. the store the SAE was trained on): their principal
        directions are the PCA control.
    cost : float, default 0.01
        The NDCG@k drop every direction is pushed to, in (0, 1).
    n_pca : int, default 8
        Principal directions, ``0 .. d_in``; each gives two rows (``"PC1+"``, ``"PC1-"``...).
    n_random : int, default 16
        Random orthonormal directions, ``0 .. d_in``.
    seed : int, default 0
        Seeds the random directions and the null draws.
    n_null : int, default 200
        Random film sets of each null, at least 2.
    max_strength : float, default 64.0
        The largest strength tried (state units), > 0.
    refine : int, default 6
        Halvings of the strength interval around the cost, ``>= 0``.
    return_items : bool, default False
        Also return the surfaced films, one row per (direction, film).

    Returns
    -------
    pandas.DataFrame, or (DataFrame, DataFrame)
        One row per direction, SAE latents first (in the given order), then PCA directions, then random
        ones, with the columns :data:`UNLABELLED_COLUMNS`: ``type`` (one of :data:`UNLABELLED_TYPES`),
        ``direction`` (a name), ``latent`` (the id; -1 for a control), ``reached`` (the cost was reached
        within ``max_strength``), ``strength`` (> 0, state units), ``ndcg_drop`` (<= ``cost``),
        ``new_per_user`` (0..k), ``distinct_new`` (>= 0), the ``*_excess`` concentrations (~0 by chance,
        larger = more concentrated; NaN for a family without labels, e.g. decades of synthetic data),
        ``popularity_shift`` (in [-1, 1]), ``top_genre`` / ``top_decade`` with their ``*_lift`` (> 0), and
        the ``*_kl`` (>= 0) and ``*_kl_null`` (>= 0) behind each excess. With ``return_items``, also the
        surfaced films: :data:`ITEM_COLUMNS`, ``users`` being the number of users a film entered for
        (most first within each direction).

    Raises
    ------
    TypeError
        Not an evaluator or an SAE; non-numeric options.
    ValueError
        Unknown or repeated latent ids (the message gives the valid range), no latent, states at another
        capture point or of another width, NaN or infinite states, an SAE of another width than the model,
        options out of range.
    """
    if not isinstance(evaluator, SteeringEvaluator):
        raise TypeError(f"evaluator must be a SteeringEvaluator, got {type(evaluator).__name__}")
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
    lat = latent_ids(latents, sae.d_sae)
    if not lat:
        raise ValueError("latents is empty: choose at least one latent (e.g. unlabelled_latents(codes))")
    if len(set(lat)) != len(lat):
        raise ValueError(f"latents repeat an id: {lat}")
    cost = check_float("cost", cost, 0.0, 1.0, exclusive_minimum=True, exclusive_maximum=True)
    n_pca = check_int("n_pca", n_pca, minimum=0, maximum=sae.d_in)
    n_random = check_int("n_random", n_random, minimum=0, maximum=sae.d_in)
    seed = check_int("seed", seed)
    n_null = check_int("n_null", n_null, minimum=2)
    max_strength = check_float("max_strength", max_strength, 0.0, exclusive_minimum=True)
    refine = check_int("refine", refine, minimum=0)
    if not isinstance(return_items, (bool, np.bool_)):
        raise TypeError(f"return_items must be a bool, got {type(return_items).__name__}")
    x = _check_states(states, sae)
    point = sae.capture_point
    Steering.identity(sae)  # an SAE that records no capture point fails here, with the library's message

    unit = sae.W_dec.detach().double().norm(dim=1) / float(sae.input_scale)
    directions: list[tuple[str, str, int, Any]] = []
    for j in lat:
        if not float(unit[j]) > 0:
            raise ValueError(f"latent {j} has a zero decoder row: no direction to steer along")
        directions.append(("SAE latents", f"latent {j}", j,
                           lambda s, j=j: Steering.add(sae, j, s / float(unit[j]), label=f"latent {j}")))
    if n_pca:
        for c, row in enumerate(pca_directions(x, n_pca).float()):
            for sign, mark in ((1.0, "+"), (-1.0, "-")):
                directions.append(("PCA directions", f"PC{c + 1}{mark}", -1,
                                   lambda s, v=sign * row: VectorSteering(point, s * v)))
    if n_random:
        for c, row in enumerate(random_directions(sae.d_in, n_random, seed=seed).float()):
            directions.append(("random directions", f"random {c + 1}", -1,
                               lambda s, v=row: VectorSteering(point, s * v)))

    seq_data = evaluator.seq_data
    families = _families(seq_data)
    pct = _percentiles(seq_data)
    ref_top = evaluator.reference[1]
    num = evaluator.num_items
    rows, items = [], []
    for d, (kind, name, latent, make) in enumerate(directions):
        row: dict[str, Any] = {"type": kind, "direction": name, "latent": latent}
        found = _walk(evaluator, make, cost, max_strength, refine)
        if found is None:
            row.update({"reached": False, "strength": math.nan, "ndcg_drop": math.nan})
            rows.append(row)
            continue
        strength, drop, top = found
        new = ~(top[:, :, None] == ref_top[:, None, :]).any(-1)
        gone = ~(ref_top[:, :, None] == top[:, None, :]).any(-1)
        counts = np.bincount(top[new], minlength=num + 1).astype(np.float64)
        counts[0] = 0.0
        row.update({"reached": True, "strength": strength, "ndcg_drop": drop,
                    "new_per_user": float(new.sum(1).mean()), "distinct_new": int((counts > 0).sum())})
        for f, family in enumerate(_FAMILIES):
            labels, names = families[family]
            got = _concentration(counts, labels, names, n_null, np.random.default_rng([seed, d, f]))
            row.update({f"{family}_excess": got["excess"], f"{family}_kl": got["kl"],
                        f"{family}_kl_null": got["kl_null"]})
            if family != "popularity":
                row.update({f"top_{family}": got["top"], f"top_{family}_lift": got["lift"]})
        row["popularity_shift"] = (float(np.median(pct[top[new]]) - np.median(pct[ref_top[gone]]))
                                   if new.any() else math.nan)
        rows.append(row)
        if return_items:
            films = np.flatnonzero(counts)
            films = films[np.lexsort((films, -counts[films]))]
            meta = seq_data.items.loc[films]
            items.append(pd.DataFrame({
                "type": kind, "direction": name, "item": films.astype(np.int64),
                "title": meta["title"].to_numpy(), "year": meta["year"].to_numpy(),
                "genres": [", ".join(g) for g in meta["genres"]],
                "popularity": meta["popularity"].to_numpy(), "users": counts[films].astype(np.int64),
            }))
    table = pd.DataFrame(rows).reindex(columns=list(UNLABELLED_COLUMNS))
    table["latent"] = table["latent"].astype(np.int64)
    table["reached"] = table["reached"].astype(bool)
    table["distinct_new"] = table["distinct_new"].astype("Int64")
    if not return_items:
        return table
    surfaced = pd.concat(items, ignore_index=True) if items else pd.DataFrame(columns=list(ITEM_COLUMNS))
    return table, surfaced.reindex(columns=list(ITEM_COLUMNS))


# --------------------------------------------------------------------------------------------------------
# latents against the controls
# --------------------------------------------------------------------------------------------------------


def compare_unlabelled(
    table: pd.DataFrame,
    *,
    scores: Sequence[str] = UNLABELLED_SCORES,
    reference: str = "SAE latents",
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """The chosen latents against each control, per score: medians, bootstrap interval, verdict, one sentence.

    Introduced in chapter 5. Built on :func:`~seqsae_lib.interpret.comparison.compare_to_controls`
    (each group resampled independently; the verdict is ``"higher"`` when the whole interval of the
    difference of medians, reference minus control, lies above 0, ``"lower"`` below 0, else ``"no clear
    difference"``). Directions that did not reach the cost, and NaN scores, are left out.

    Parameters
    ----------
    table : DataFrame
        :func:`unlabelled_steering`'s per-direction table.
    scores : sequence of str, default :data:`UNLABELLED_SCORES`
        Columns among :data:`UNLABELLED_SCORES`.
    reference : str, default "SAE latents"
        The ``type`` compared with every other type in the table.
    n_boot : int, default 2000
        Bootstrap resamples, at least 100.
    seed : int, default 0
    ci : float, default 0.95
        Level of the intervals, in (0, 1).

    Returns
    -------
    pandas.DataFrame
        One row per other type, in table order: ``control``, ``n_reference`` and ``n_control`` (directions
        compared), for each score ``<score>_reference`` and ``<score>_control`` (medians),
        ``<score>_diff``, ``<score>_ci_low``, ``<score>_ci_high`` and ``<score>_verdict`` (one of
        :data:`~seqsae_lib.interpret.comparison.VERDICTS`), and ``sentence``: an English sentence whose
        direction words ("more", "less", "not clearly more or less") come from the verdicts.

    Raises
    ------
    TypeError
        ``table`` not a DataFrame.
    ValueError
        Missing columns, an unknown score, ``reference`` not a type of the table or no other type, a group
        without a finite value of a score; bad ``n_boot`` or ``ci``.
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be unlabelled_steering's DataFrame, got {type(table).__name__}")
    if isinstance(scores, str):
        scores = [scores]
    scores = list(scores)
    unknown = [s for s in scores if s not in UNLABELLED_SCORES]
    if not scores or unknown:
        raise ValueError(f"scores must be among {list(UNLABELLED_SCORES)}, got {scores}")
    missing = [c for c in ("type", "reached", *scores) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks the columns {missing}: pass unlabelled_steering's table")
    kept = table[table["reached"].astype(bool)]
    types = list(dict.fromkeys(kept["type"]))
    if reference not in types:
        raise ValueError(f"reference {reference!r} is not a type with a reached direction; types: {types}")
    if len(types) < 2:
        raise ValueError(f"the table holds no control type besides {reference!r}")
    frames = {t: kept[kept["type"] == t] for t in types}
    long = comparison_table(frames, scores, reference, eligible_only=False, n_boot=n_boot, seed=seed, ci=ci)
    rows = []
    for other in types:
        if other == reference:
            continue
        part = long[long["other"] == other].set_index("score")
        row: dict[str, Any] = {"control": other, "n_reference": int(part["n_reference"].min()),
                               "n_control": int(part["n_other"].min())}
        phrases = []
        for s in scores:
            r = part.loc[s]
            row.update({f"{s}_reference": r["median_reference"], f"{s}_control": r["median_other"],
                        f"{s}_diff": r["diff"], f"{s}_ci_low": r["ci_low"], f"{s}_ci_high": r["ci_high"],
                        f"{s}_verdict": r["verdict"]})
            head = {"higher": "more", "lower": "less", "no clear difference": "not clearly more or less"}[r["verdict"]]
            inc = " includes 0" if r["verdict"] == "no clear difference" else ""
            phrases.append(f"{head} concentrated in {_WORDS[s]} (median excess {r['median_reference']:.3f} vs "
                           f"{r['median_other']:.3f}; {100 * ci:g}% CI of the difference {r['ci_low']:.3f} to "
                           f"{r['ci_high']:.3f}{inc})")
        listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        row["sentence"] = (f"Against {row['n_control']} {other}, the {row['n_reference']} {reference} surface "
                           f"films that are {listed}.")
        rows.append(row)
    return pd.DataFrame(rows)
