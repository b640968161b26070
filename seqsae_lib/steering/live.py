"""Steering one user's recommendations live: the engine behind the steering widget and its static fallback.

Introduced in chapter 5.

:class:`LiveSteering` holds what does not change while a reader moves sliders: the model, the SAE, the
latents chosen for each concept (:func:`seqsae_lib.steering.selection.select_latents`) and, per user, a
:class:`~seqsae_lib.steering.scoring.SteeringCache` of the state at the capture point. An update
(:meth:`LiveSteering.recommend`) builds one :class:`~seqsae_lib.steering.latent_steering.Steering` from the slider values,
applies it to the cached state and scores the catalogue: at ``"final"`` a few small matrix products, no
transformer pass. The result, a :class:`Recommendations`, carries the steered top-k with what changed, the
concept shares and the overlap with the unsteered list, and how long the update took.

:func:`before_after_grid` is the static fallback for readers without a kernel: the top-k of one user over a
grid of strengths, as a table.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from seqsae_lib.data import check_sequences, left_pad, seen_mask
from seqsae_lib.data import SequenceData
from seqsae_lib.interpret import Explanation, explain_final
from seqsae_lib.sae import SparseAutoencoder, check_sae_matches_model
from seqsae_lib.steering.catalogue_concepts import get_concept
from seqsae_lib.steering.concepts import Concept
from seqsae_lib.steering.latent_steering import Steering
from seqsae_lib.steering.scoring import SteeringCache, check_sae_fits
from seqsae_lib.steering.selection import concept_steering
from seqsae_lib.utils.checks import check_int, latent_ids

__all__ = ["LiveSteering", "Recommendations", "before_after_grid"]

LATENT_PREFIX = "latent:"
"""Slider names of single latents: ``"latent:123"`` adds along latent 123's decoder direction."""


@dataclass
class Recommendations:
    """One steered top-k list for one user, compared with the unsteered list.

    Introduced in chapter 5.
    """

    user: int
    """Internal user index."""
    table: pd.DataFrame
    """Steered top-k: ``rank``, ``item``, ``title``, ``year``, ``genres``, ``score``, ``was_rank`` (rank in
    the unsteered list, NaN if new), ``new`` (not in the unsteered top-k) and one 0/1 column per concept."""
    dropped: pd.DataFrame
    """Unsteered top-k items that left the list (``was_rank``, ``item``, ``title``)."""
    shares: pd.DataFrame
    """Per concept: share of the unsteered and of the steered list (columns ``before``, ``after``)."""
    jaccard: float
    """Overlap of the steered and unsteered top-k sets, in [0, 1] (1 = same items)."""
    strengths: dict[str, float]
    """The slider values that produced this list."""
    seconds: float
    """Wall-clock time of the update (steering, scoring, top-k, table)."""


@dataclass
class LiveSteering:
    """Steer one user's top-k with concept and latent sliders, reusing the cached hidden state.

    Introduced in chapter 5.

    Parameters
    ----------
    model : SASRec
    sae : SparseAutoencoder
        Steers at its own capture point (``sae.capture_point``).
    seq_data : SequenceData
        Titles, years, genres.
    inputs : sequence of array-like
        Each user's input sequence (e.g. ``split.test_inputs``), indexed by internal user index; the
        items in it are never recommended. Checked once, on construction
        (:func:`~seqsae_lib.data.histories.check_sequences`): every history must be non-empty and hold integer
        item ids in ``1..num_items``.
    concept_latents : mapping concept name -> latents
        The latents each concept slider steers (a :func:`~seqsae_lib.steering.selection.select_latents` table or a
        list of ids). Names must be known to :func:`~seqsae_lib.steering.catalogue_concepts.get_concept` or be
        :class:`~seqsae_lib.steering.concepts.Concept` objects given in ``concepts``.
    capture_point : str, optional
        Only for an SAE that records no capture point; else it must equal the SAE's. After construction it
        holds the capture point the sliders steer.
    k : int, default 10
    labels : DataFrame, optional
        :func:`seqsae_lib.auto_label` output, to name the user's most active latents.
    concepts : mapping name -> Concept, optional
        Concepts not known by name (e.g. an attribute concept).

    Raises
    ------
    TypeError, ValueError
        On construction: a bad ``k``, one sequence per user missing, or a bad history (empty, non-integer
        ids, ids outside ``1..num_items``), naming the user index, the position and the value.
    SAEMetadataMismatchError
        On construction: the SAE's metadata records another SASRec's weights hash
        (:func:`~seqsae_lib.sae.autoencoder.check_sae_matches_model`; checked once, not on every update).
    """

    model: nn.Module
    sae: SparseAutoencoder
    seq_data: SequenceData
    inputs: Sequence[Any]
    concept_latents: Mapping[str, Any]
    capture_point: str | None = None
    k: int = 10
    labels: pd.DataFrame | None = None
    concepts: Mapping[str, Concept] = field(default_factory=dict)
    _cache: dict[int, tuple[SteeringCache, torch.Tensor, pd.DataFrame]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_sae_matches_model(self.sae, self.model)
        self.capture_point = check_sae_fits(self.model, self.sae, self.capture_point)
        self.k = check_int("k", self.k, minimum=1, maximum=self.seq_data.num_items)
        if len(self.inputs) != self.seq_data.num_users:
            raise ValueError(f"inputs has {len(self.inputs)} sequences, the data has {self.seq_data.num_users} users")
        self.inputs = check_sequences(self.inputs, num_items=self.seq_data.num_items, what="inputs", allow_empty=False)
        self.concepts = {**{name: get_concept(self.seq_data, name) for name in self.concept_latents
                            if name not in self.concepts}, **self.concepts}
        self._latents = {name: latent_ids(table, self.sae.d_sae, name=f"concept_latents[{name!r}]")
                         for name, table in self.concept_latents.items()}
        items = self.seq_data.items  # indexed by internal id 1..num_items
        n = self.seq_data.num_items + 1
        self._titles = np.array([""] + items["title"].reindex(range(1, n)).tolist(), dtype=object)
        self._years = np.array([np.nan] + items["year"].reindex(range(1, n)).astype(float).tolist())
        self._genres = np.array([""] + items["genres"].reindex(range(1, n)).map(", ".join).tolist(), dtype=object)
        self._mask_names = list(self.concepts)
        self._masks = np.stack([np.asarray(c.item_mask, dtype=float) for c in self.concepts.values()]) \
            if self.concepts else np.zeros((0, n))
        self._user_ids = {int(u): i for i, u in enumerate(self.seq_data.users["user_id"])}

    @property
    def slider_names(self) -> list[str]:
        """The concept sliders, in order."""
        return list(self.concept_latents)

    @property
    def user_ids(self) -> list[int]:
        """The original (MovieLens) user ids, in internal index order.

        Introduced in chapter 5; the steering widget's id box reads its range.
        """
        return list(self._user_ids)

    def user_index(self, user_id: Any) -> int:
        """Internal index of an original (MovieLens) user id.

        Raises
        ------
        KeyError
            An id that is not in the data (the message names it and the valid range).
        """
        lookup = self._user_ids
        try:
            return lookup[int(user_id)]
        except (KeyError, TypeError, ValueError):
            raise KeyError(f"unknown user id {user_id!r}; ids run from {min(lookup)} to {max(lookup)}") from None

    def _user(self, user: int) -> tuple[SteeringCache, torch.Tensor, pd.DataFrame]:
        if isinstance(user, bool) or not isinstance(user, (int, np.integer)) or not 0 <= user < len(self.inputs):
            raise KeyError(f"unknown user index {user!r}; expected an int in 0..{len(self.inputs) - 1}")
        user = int(user)
        if user not in self._cache:
            seq = self.inputs[user]  # checked on construction
            cache = SteeringCache(self.model, left_pad([seq], self.model.max_len), self.capture_point)
            seen = seen_mask([seq], self.seq_data.num_items)[0]
            base = self._top(cache.scores(), seen)
            if len(self._cache) > 64:  # bound the memory of a long browsing session
                self._cache.pop(next(iter(self._cache)))
            self._cache[user] = (cache, seen, base)
        return self._cache[user]

    def _top(self, scores: torch.Tensor, seen: torch.Tensor) -> pd.DataFrame:
        s = scores[0].masked_fill(seen, float("-inf"))
        values, items = torch.topk(s, self.k)
        return pd.DataFrame({"rank": np.arange(1, self.k + 1), "item": items.numpy(), "score": values.numpy()})

    def active_latents(self, user: int, n: int = 3) -> pd.DataFrame:
        """The user's ``n`` most active latents at the last position, with labels (for latent sliders).

        Introduced in chapter 5.
        """
        cache, _, _ = self._user(user)
        state = cache.state if cache.state.ndim == 2 else cache.state[:, -1]
        with torch.no_grad():
            z = self.sae.encode(state)[0]
        values, latents = torch.topk(z, n)
        out = pd.DataFrame({"latent": latents.numpy(), "activation": values.numpy()})
        out = out[out["activation"] > 0]
        if self.labels is not None:
            out["label"] = self.labels["label"].reindex(out["latent"]).to_numpy()
        return out.reset_index(drop=True)

    def steering(self, strengths: Mapping[str, float]) -> Steering:
        """One :class:`~seqsae_lib.steering.latent_steering.Steering` from slider values (concept names or ``"latent:<id>"``).

        Introduced in chapter 5. Concept sliders use
        :func:`~seqsae_lib.steering.selection.concept_steering` (rule ``"add"``); a latent slider adds its value along
        that latent's decoder direction.

        Raises
        ------
        ValueError, KeyError
            Unknown slider names (the known ones are listed), non-finite values, a latent slider name that
            is not ``"latent:<integer id>"``, latent ids out of range.
        """
        parts = [Steering.identity(self.sae, capture_point=self.capture_point)]
        for name, value in strengths.items():
            if isinstance(name, str) and name.startswith(LATENT_PREFIX):
                try:
                    latent = int(name[len(LATENT_PREFIX):])
                except ValueError:
                    raise ValueError(
                        f"slider {name!r}: a latent slider is named '{LATENT_PREFIX}<id>' with an integer latent id "
                        f"in 0..{self.sae.d_sae - 1}, e.g. '{LATENT_PREFIX}12'"
                    ) from None
                parts.append(Steering.add(self.sae, latent, float(value), capture_point=self.capture_point))
            elif name in self._latents:
                parts.append(concept_steering(self.concepts[name], float(value), self._latents[name], self.sae,
                                              capture_point=self.capture_point))
            else:
                raise KeyError(f"unknown slider {name!r}; expected one of {self.slider_names} or 'latent:<id>'")
        return Steering.combine(*parts)

    def recommend(self, user: int, strengths: Mapping[str, float] | None = None) -> Recommendations:
        """The user's steered top-k, what changed, concept shares and overlap.

        Introduced in chapter 5. Zero strengths give exactly the unsteered
        list (the SAE's error term is kept).

        Raises
        ------
        KeyError
            Unknown user index or slider name.
        """
        start = time.perf_counter()
        strengths = dict(strengths or {})
        cache, seen, base = self._user(user)
        steering = self.steering(strengths)
        top = self._top(cache.scores(steering), seen) if not steering.is_identity else base
        items, base_items = top["item"].to_numpy(), base["item"].to_numpy()
        # numpy throughout, one DataFrame at the end: pandas joins would cost more than the steering itself
        position = {int(i): r for r, i in enumerate(base_items, start=1)}
        was = np.array([position.get(int(i), np.nan) for i in items], dtype=float)
        columns = {"rank": np.arange(1, len(items) + 1), "item": items, "title": self._titles[items],
                   "year": self._years[items], "genres": self._genres[items], "score": top["score"].to_numpy(),
                   "was_rank": was, "new": np.isnan(was)}
        masks = self._masks[:, items]
        columns.update(zip(self._mask_names, masks))
        table = pd.DataFrame(columns)
        shares = pd.DataFrame({"before": self._masks[:, base_items].mean(axis=1), "after": masks.mean(axis=1)},
                              index=self._mask_names)
        left = ~np.isin(base_items, items)
        dropped = pd.DataFrame({"was_rank": np.flatnonzero(left) + 1, "item": base_items[left],
                                "title": self._titles[base_items[left]]})
        kept, before = set(items.tolist()), set(base_items.tolist())
        jaccard = len(kept & before) / len(kept | before)
        return Recommendations(user=int(user), table=table, dropped=dropped, shares=shares, jaccard=jaccard,
                               strengths=strengths, seconds=time.perf_counter() - start)

    def explain(self, user: int, item: int, strengths: Mapping[str, float] | None = None) -> Explanation:
        """Why ``item`` scores as it does for ``user`` under the given sliders: exact per-feature parts.

        Introduced in chapter 5. Only at the final capture point, where the
        decomposition is exact (:func:`seqsae_lib.interpret.explain.explain_final`); the steered state is explained,
        so a concept slider's latents show up among the contributions.

        Raises
        ------
        KeyError
            Unknown user index, slider or item id.
        ValueError
            A capture point other than ``"final"``.
        """
        if self.capture_point != "final":
            raise ValueError("explanations are exact only at the 'final' capture point; use explain_inner")
        cache, _, _ = self._user(user)
        steering = self.steering(dict(strengths or {}))
        state = cache.final_states(steering)[0]
        (explanation,) = explain_final(self.model, self.sae, self.inputs[user], [item], seq_data=self.seq_data,
                                       labels=self.labels, state=state)
        return explanation


def before_after_grid(live: LiveSteering, user: int, concept: str, strengths: Sequence[float]) -> pd.DataFrame:
    """The user's top-k for each strength of one concept slider: a static stand-in for the widget.

    Introduced in chapter 5.

    Returns
    -------
    pandas.DataFrame
        Rows are ranks 1..k, one column per strength (``"strength +2.0"``); cells are titles, marked
        ``"● "`` when the item has the concept and ``"+ "`` when it is new relative to strength 0. Two
        footer rows: the concept share and the Jaccard overlap with the unsteered list.
    """
    columns, footer_share, footer_jaccard = {}, {}, {}
    for s in strengths:
        rec = live.recommend(user, {concept: float(s)})
        name = f"strength {s:+.1f}"
        marks = np.where(rec.table[concept] > 0, "● ", "") if concept in rec.table else ""
        new = np.where(rec.table["new"], "+ ", "")
        columns[name] = [f"{n}{m}{t}" for n, m, t in zip(new, marks, rec.table["title"])]
        footer_share[name] = f"{rec.shares.loc[concept, 'after']:.0%}"
        footer_jaccard[name] = f"{rec.jaccard:.2f}"
    grid = pd.DataFrame(columns, index=pd.Index(range(1, live.k + 1), name="rank"))
    grid.loc[f"{concept} share"] = footer_share
    grid.loc["overlap (Jaccard)"] = footer_jaccard
    return grid
