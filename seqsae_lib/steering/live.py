"""Steering one user's recommendations live: the engine behind the steering widget and its static fallback.

Introduced in chapter 5.

:class:`LiveSteering` holds what does not change while a reader moves sliders: the model, the SAE, the
latents chosen for each concept (:func:`seqsae_lib.steering.selection.select_latents`) and, per user, a
:class:`~seqsae_lib.steering.scoring.SteeringCache` of the state at the capture point. An update
(:meth:`LiveSteering.recommend`) builds one :class:`~seqsae_lib.steering.latent_steering.Steering` from the slider values,
applies it to the cached state and scores the catalogue: at ``"final"`` a few small matrix products, no
transformer pass. A ``"rerank:<concept>"`` slider adds a label bonus to the scores instead (the stronger
operator a calibrated slider falls back to, :mod:`seqsae_lib.steering.calibration`). The result, a
:class:`Recommendations`, carries the steered top-k with what changed, the concept shares and the overlap
with the unsteered list, and how long the update took.

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
from seqsae_lib.steering.edits import LatentEdit
from seqsae_lib.steering.latent_steering import Steering
from seqsae_lib.steering.scoring import SteeringCache, check_sae_fits
from seqsae_lib.utils.checks import check_float, check_int, latent_ids

__all__ = ["LiveSteering", "Recommendations", "before_after_grid"]

LATENT_PREFIX = "latent:"
"""Slider names of single latents: ``"latent:123"`` adds along latent 123's decoder direction."""
RERANK_PREFIX = "rerank:"
"""Slider names of label re-ranking: ``"rerank:Western"`` adds its value times the concept weight to the scores."""


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


@dataclass(frozen=True)
class _UserState:
    """What an update needs about one user and never changes while the sliders move."""

    cache: SteeringCache
    seen: torch.Tensor
    items: np.ndarray
    """Unsteered top-k item ids, best first."""
    scores: np.ndarray
    rank: dict[int, int]
    """Item id -> rank (1-based) in the unsteered top-k."""
    shares: np.ndarray
    """Concept shares of the unsteered top-k, one per concept."""


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
        :func:`~seqsae_lib.interpret.labels.auto_label` output, to name the user's most active latents.
    concepts : mapping name -> Concept, optional
        Concepts not known by name (e.g. an attribute concept).

    Raises
    ------
    TypeError, ValueError
        On construction: a bad ``k``, one sequence per user missing, or a bad history (empty, non-integer
        ids, ids outside ``1..num_items``), naming the user index, the position and the value.
    SAEMetadataMismatchError
        On construction: the SAE's metadata records another SASRec's weights hash
        (:func:`~seqsae_lib.sae.io.check_sae_matches_model`; checked once, not on every update).
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
    _cache: dict[int, _UserState] = field(default_factory=dict, repr=False)

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
        # Built once: an update only turns slider values into edits of these latents (validated above).
        self._mask_index = pd.Index(self._mask_names)
        self._identity = Steering.identity(self.sae, capture_point=self.capture_point)
        self._bonus_rows = torch.as_tensor(self._masks, dtype=torch.float32)

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

    def _user(self, user: int) -> _UserState:
        if isinstance(user, bool) or not isinstance(user, (int, np.integer)) or not 0 <= user < len(self.inputs):
            raise KeyError(f"unknown user index {user!r}; expected an int in 0..{len(self.inputs) - 1}")
        user = int(user)
        if user not in self._cache:
            seq = self.inputs[user]  # checked on construction
            cache = SteeringCache(self.model, left_pad([seq], self.model.max_len), self.capture_point)
            seen = seen_mask([seq], self.seq_data.num_items)[0]
            items, scores = self._top(cache.scores(), seen)
            if len(self._cache) > 64:  # bound the memory of a long browsing session
                self._cache.pop(next(iter(self._cache)))
            self._cache[user] = _UserState(
                cache=cache, seen=seen, items=items, scores=scores,
                rank={int(i): r for r, i in enumerate(items, start=1)}, shares=self._masks[:, items].mean(axis=1),
            )
        return self._cache[user]

    def base_scores(self, user: int) -> np.ndarray:
        """The user's unsteered scores over item ids ``0..num_items`` (float32), ``-inf`` where never recommended.

        Introduced in chapter 5 (the static widget's payload, :func:`~seqsae_lib.steering.static.export_static_steering`):
        ``-inf`` for the padding id and the items of the user's input sequence.

        Raises
        ------
        KeyError
            Unknown user index.
        """
        base = self._user(user)
        return base.cache.scores()[0].masked_fill(base.seen, float("-inf")).numpy().copy()

    def _top(self, scores: torch.Tensor, seen: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item ids and their scores, best first, seen items left out."""
        s = scores[0].masked_fill(seen, float("-inf"))
        values, items = torch.topk(s, self.k)
        return items.numpy(), values.numpy()

    def active_latents(self, user: int, n: int = 3) -> pd.DataFrame:
        """The user's ``n`` most active latents at the last position, with labels (for latent sliders).

        Introduced in chapter 5.
        """
        cache = self._user(user).cache
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

        Introduced in chapter 5. A concept slider is
        :func:`~seqsae_lib.steering.selection.concept_steering` with rule ``"add"`` (every latent chosen for
        the concept gets an ``"add"`` edit of the slider's value, labelled ``"more <concept> (+v)"``); a latent
        slider adds its value along that latent's decoder direction. The edits keep the order of
        ``strengths``; the concepts' latent lists were checked on construction, so an update builds one
        :class:`~seqsae_lib.steering.latent_steering.Steering` (the same as combining the per-slider ones).

        Raises
        ------
        ValueError, KeyError
            Unknown slider names (the known ones are listed), non-finite values, a latent slider name that
            is not ``"latent:<integer id>"``, latent ids out of range, a ``"rerank:"`` slider (not a steering:
            :meth:`recommend` applies it to the scores).
        """
        if not strengths:
            return self._identity
        edits: list[LatentEdit] = []
        labels: list[str] = []
        for name, value in strengths.items():
            if isinstance(name, str) and name.startswith(RERANK_PREFIX):
                raise ValueError(f"slider {name!r} re-ranks the scores and is not a steering; recommend() applies it")
            if isinstance(name, str) and name.startswith(LATENT_PREFIX):
                try:
                    latent = int(name[len(LATENT_PREFIX):])
                except ValueError:
                    raise ValueError(
                        f"slider {name!r}: a latent slider is named '{LATENT_PREFIX}<id>' with an integer latent id "
                        f"in 0..{self.sae.d_sae - 1}, e.g. '{LATENT_PREFIX}12'"
                    ) from None
                edits.append(LatentEdit(latent, "add", float(value)))  # the id's range is checked by Steering
            elif name in self._latents:
                s = check_float(f"slider {name!r}", float(value))
                edits.extend(LatentEdit(latent, "add", s) for latent in self._latents[name])
                labels.append(f"{'more' if s >= 0 else 'less'} {self.concepts[name].name} ({s:+g})")
            else:
                raise KeyError(f"unknown slider {name!r}; expected one of {self.slider_names} or 'latent:<id>'")
        return Steering(self.sae, tuple(edits), "last", label=" + ".join(labels), capture_point=self.capture_point)

    def rerank_bonus(self, strengths: Mapping[str, float]) -> tuple[dict[str, float], torch.Tensor | None]:
        """Split off the ``"rerank:<concept>"`` sliders: the other sliders, and their summed score bonus.

        Introduced in chapter 5. A re-ranking slider of value ``v`` adds ``v`` times the concept's weight to
        every item's score (:func:`~seqsae_lib.steering.baselines.rerank_baseline`); the bonus is ``None``
        when no re-ranking slider is non-zero.

        Raises
        ------
        KeyError, ValueError
            A re-ranking slider of a concept that has no slider (the known ones are listed); a non-finite value.
        """
        rest: dict[str, float] = {}
        bonus = None
        for name, value in strengths.items():
            if not (isinstance(name, str) and name.startswith(RERANK_PREFIX)):
                rest[name] = value
                continue
            concept = name[len(RERANK_PREFIX):]
            if concept not in self._mask_index:
                raise KeyError(f"unknown slider {name!r}; re-ranking sliders are "
                               f"{[RERANK_PREFIX + c for c in self._mask_names]}")
            v = check_float(f"slider {name!r}", value)
            if v != 0.0:
                row = v * self._bonus_rows[self._mask_index.get_loc(concept)]
                bonus = row if bonus is None else bonus + row
        return rest, bonus

    def recommend(self, user: int, strengths: Mapping[str, float] | None = None) -> Recommendations:
        """The user's steered top-k, what changed, concept shares and overlap.

        Introduced in chapter 5. Zero strengths give exactly the unsteered
        list (the SAE's error term is kept); ``"rerank:<concept>"`` sliders add their bonus
        (:meth:`rerank_bonus`) to the steered scores.

        Raises
        ------
        KeyError
            Unknown user index or slider name.
        """
        start = time.perf_counter()
        strengths = dict(strengths or {})
        base = self._user(user)
        rest, bonus = self.rerank_bonus(strengths)
        steering = self.steering(rest)
        if steering.is_identity and bonus is None:
            items, scores = base.items, base.scores
        else:
            scores = base.cache.scores(None if steering.is_identity else steering)
            items, scores = self._top(scores if bonus is None else scores + bonus, base.seen)
        base_items = base.items
        # numpy throughout, one DataFrame per result at the end: pandas would cost more than the steering itself
        was = np.array([base.rank.get(int(i), np.nan) for i in items], dtype=float)
        columns = {"rank": np.arange(1, len(items) + 1), "item": items, "title": self._titles[items],
                   "year": self._years[items], "genres": self._genres[items], "score": scores,
                   "was_rank": was, "new": np.isnan(was)}
        masks = self._masks[:, items]
        columns.update(zip(self._mask_names, masks))
        table = pd.DataFrame(columns)
        shares = pd.DataFrame(np.column_stack([base.shares, masks.mean(axis=1)]), index=self._mask_index,
                              columns=["before", "after"])
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
        so a concept slider's latents show up among the contributions. A ``"rerank:"`` slider's bonus is
        added after the state and is not part of the explanation.

        Raises
        ------
        KeyError
            Unknown user index, slider or item id.
        ValueError
            A capture point other than ``"final"``.
        """
        if self.capture_point != "final":
            raise ValueError("explanations are exact only at the 'final' capture point; use explain_inner")
        cache = self._user(user).cache
        steering = self.steering(self.rerank_bonus(dict(strengths or {}))[0])
        state = cache.final_states(steering)[0]
        (explanation,) = explain_final(self.model, self.sae, self.inputs[user], [item], seq_data=self.seq_data,
                                       labels=self.labels, state=state)
        return explanation


def before_after_grid(live: LiveSteering, user: int, concept: str, strengths: Sequence[float], *,
                      calibration: Any = None) -> pd.DataFrame:
    """The user's top-k for each strength of one concept slider: a static stand-in for the widget.

    Introduced in chapter 5.

    Parameters
    ----------
    live : LiveSteering
    user : int
        Internal user index.
    concept : str
        A concept slider of ``live`` (or, with ``calibration``, a calibrated concept).
    strengths : sequence of float
        Without ``calibration``: strengths of the slider (state units). With it: slider positions in
        ``[-1, 1]`` (``-1`` the left end, ``+1`` the right end), turned into strengths by
        ``calibration.strengths`` (a calibrated slider may re-rank by the label instead; the column then
        shows that).
    calibration : SliderCalibration, optional
        From :func:`~seqsae_lib.steering.calibration.calibrate_sliders` on the same ``live``.

    Returns
    -------
    pandas.DataFrame
        Rows are ranks 1..k, one column per strength (``"strength +2.0"``) or slider position (``"slider +1.0"``);
        cells are titles, marked ``"● "`` when the item has the concept and ``"+ "`` when it is new relative to
        the unsteered list. Two footer rows: the concept share and the Jaccard overlap with the unsteered list.

    Raises
    ------
    KeyError, ValueError
        An unknown concept or slider, or a strength/position out of range (from
        :meth:`LiveSteering.recommend` and ``calibration.strengths``).
    """
    columns, footer_share, footer_jaccard = {}, {}, {}
    for s in strengths:
        if calibration is None:
            name, setting = f"strength {float(s):+.1f}", {concept: float(s)}
        else:
            name, setting = f"slider {float(s):+.1f}", calibration.strengths({concept: s})
        rec = live.recommend(user, setting)
        marks = np.where(rec.table[concept] > 0, "● ", "") if concept in rec.table else ""
        new = np.where(rec.table["new"], "+ ", "")
        columns[name] = [f"{n}{m}{t}" for n, m, t in zip(new, marks, rec.table["title"])]
        footer_share[name] = f"{rec.shares.loc[concept, 'after']:.0%}"
        footer_jaccard[name] = f"{rec.jaccard:.2f}"
    grid = pd.DataFrame(columns, index=pd.Index(range(1, live.k + 1), name="rank"))
    grid.loc[f"{concept} share"] = footer_share
    grid.loc["overlap (Jaccard)"] = footer_jaccard
    return grid
