"""A feature atlas: every statistic, profile and label of an SAE's latents, computed once, read per latent.

Introduced in chapter 4.

:func:`build_atlas` runs the vectorised statistics of :mod:`seqsae_lib.interpret` and the labels of
:mod:`seqsae_lib.interpret.labels` over all stored positions (seconds for a 2,048-latent SAE on ML-100k), and keeps
what a reader needs to look at one latent cheaply afterwards: :meth:`FeatureAtlas.card` gathers one
latent's top contexts, driving and promoted items and profile rows into a :class:`FeatureCard`
(milliseconds); :func:`seqsae_lib.viz.plots.plot_feature_card` draws it and
:func:`seqsae_lib.viz.widgets.feature_browser` wraps both in a widget. :meth:`FeatureAtlas.search` finds
latents by label text, :meth:`FeatureAtlas.by_category` by a genre, decade or user attribute, and
:meth:`FeatureAtlas.gallery` picks a diverse set of well-labelled latents for a static page, and
:meth:`FeatureAtlas.interpretability` condenses the whole dictionary into a few numbers that can be
compared across SAEs (chapter 6).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from torch import nn
from tqdm.auto import tqdm

from seqsae_lib.data import SequenceData
from seqsae_lib.interpret.codes import LatentCodes, column_entries
from seqsae_lib.interpret.contexts import driving_items, top_contexts
from seqsae_lib.interpret.effects import latent_item_effects, rank_item_effects
from seqsae_lib.interpret.labels import DEAD, NO_PROFILE, auto_label
from seqsae_lib.interpret.profiles import decade_profile, genre_profile, popularity_profile, user_profile
from seqsae_lib.interpret.stats import feature_stats, latent_activations
from seqsae_lib.interpret.unit_scores import genre_matrices, monosemanticity_scores
from seqsae_lib.model import check_model
from seqsae_lib.sae import ActivationStore
from seqsae_lib.sae import SparseAutoencoder
from seqsae_lib.utils.checks import check_float, check_int

__all__ = ["FeatureAtlas", "FeatureCard", "build_atlas"]


@dataclass
class FeatureCard:
    """What one latent responds to and what it does; drawn by :func:`seqsae_lib.viz.plots.plot_feature_card`.

    Introduced in chapter 4.
    """

    latent: int
    """Latent index (row of ``W_dec``)."""
    label: str
    """Automatic label (:func:`~seqsae_lib.interpret.labels.auto_label`)."""
    confidence: float
    """Purity of the label's leading term, in [0, 1] (see :mod:`seqsae_lib.interpret.labels`)."""
    evidence: str
    """The profile terms behind the label, human-readable."""
    stats: pd.Series
    """The latent's row of :func:`~seqsae_lib.interpret.stats.feature_stats` (``frequency``, ``mean_act``, quantiles...)."""
    activations: np.ndarray
    """The latent's non-zero activations over all stored positions (for a histogram)."""
    contexts: pd.DataFrame
    """Top-activating positions, one per user (:func:`~seqsae_lib.interpret.contexts.top_contexts`)."""
    driving: pd.DataFrame
    """Input items with the highest mean activation (:func:`seqsae_lib.interpret.contexts.driving_items`)."""
    promoted: pd.DataFrame
    """Items the decoder direction pushes up most (:func:`~seqsae_lib.interpret.effects.promoted_items`)."""
    suppressed: pd.DataFrame
    """Items the decoder direction pushes down most."""
    profiles: pd.DataFrame
    """The latent's rows of every profile table (genre, decade, popularity, user attributes)."""

    def profile(self, name: str) -> pd.DataFrame:
        """Rows of one profile (e.g. ``"genre:next"``) indexed by category, sorted by lift (descending)."""
        rows = self.profiles[self.profiles["profile"] == name]
        return rows.set_index("category").sort_values("lift", ascending=False)


def _label_covers_decade(label: str, decade: int) -> bool:
    """Whether a label names ``decade`` or a decade range containing it (``1960s-70s``, ``1950s-1970s``)."""
    for lo, hi in re.findall(r"(\d{4})s(?:-(\d{2}|\d{4})s)?", label):
        start = int(lo)
        end = start if not hi else (int(hi) if len(hi) == 4 else start // 100 * 100 + int(hi))
        if end < start:  # "1990s-00s"
            end += 100
        if start <= decade <= end:
            return True
    return False


@dataclass
class FeatureAtlas:
    """Statistics, profiles and labels of every latent of one SAE on one activation store.

    Introduced in chapter 4. Build it with :func:`build_atlas`.
    """

    model: nn.Module
    """The SASRec whose states the SAE reads (for promoted items)."""
    sae: SparseAutoencoder
    """The SAE."""
    store: ActivationStore
    """Stored states with per-position metadata (user, position, input and next item)."""
    seq_data: SequenceData
    """Sequences and item/user metadata the store was collected from."""
    codes: LatentCodes
    """Sparse latent activations, row-aligned with ``store``."""
    stats: pd.DataFrame
    """:func:`~seqsae_lib.interpret.stats.feature_stats`, indexed by latent."""
    profiles: pd.DataFrame
    """All profile tables concatenated (long form, :data:`seqsae_lib.interpret.profiles.PROFILE_COLUMNS`)."""
    labels: pd.DataFrame
    """:func:`~seqsae_lib.interpret.labels.auto_label`, indexed by latent."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall-clock seconds of each step of :func:`build_atlas`."""
    card_options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of :meth:`card` fixed at build time (``n_states`` of promoted items...)."""

    @property
    def d_sae(self) -> int:
        """Number of latents."""
        return int(self.codes.shape[1])

    @property
    def capture_point(self) -> str:
        """Capture point the states (and the SAE) belong to."""
        return self.store.capture_point

    def _check(self, latent: Any) -> int:
        latent = check_int("latent", latent)
        if not 0 <= latent < self.d_sae:
            raise ValueError(f"latent {latent} out of range: this SAE has latents 0..{self.d_sae - 1}")
        return latent

    def card(self, latent: int, n: int = 8) -> FeatureCard:
        """Everything about one latent (milliseconds at ``"final"``; a few model passes at inner points).

        Introduced in chapter 4.

        Raises
        ------
        ValueError, TypeError
            A latent outside ``0..d_sae-1`` or not an int.
        """
        j = self._check(latent)
        lab = self.labels.loc[j]
        column_entries(self.codes)  # built once per codes (feature_stats already did): columns read in microseconds
        column = self.codes.column(j).numpy()
        fires = bool(self.stats.loc[j, "n_fires"] > 0)
        empty = pd.DataFrame()
        contexts = top_contexts(self.codes, self.store, self.seq_data, j, n=n, one_per_user=True) if fires else empty
        driving = driving_items(self.codes, self.store, self.seq_data, j, n=n) if fires else empty
        # One computation of the item effects (finite differences at inner points), ranked at both ends.
        effects, method = latent_item_effects(
            self.model, self.sae, j, capture_point=self.capture_point, sequences=self.card_options.get("sequences"),
            alpha=float(self.stats.loc[j, "q90"]) if fires else 1.0, n_states=self.card_options.get("n_states", 64))
        promoted = rank_item_effects(effects, method, n, seq_data=self.seq_data)
        suppressed = rank_item_effects(effects, method, n, bottom=True, seq_data=self.seq_data)
        return FeatureCard(
            latent=j, label=str(lab["label"]), confidence=float(lab["confidence"]), evidence=str(lab["evidence"]),
            stats=self.stats.loc[j], activations=column[column > 0], contexts=contexts, driving=driving,
            promoted=promoted, suppressed=suppressed, profiles=self.profiles[self.profiles["latent"] == j],
        )

    def summary(self, latents: Sequence[int] | None = None) -> pd.DataFrame:
        """One row per latent: label, confidence, firing frequency, evidence.

        Introduced in chapter 4.
        """
        table = self.labels[["label", "confidence", "evidence"]].join(self.stats[["frequency", "n_fires"]])
        if latents is not None:
            table = table.loc[[self._check(j) for j in latents]]
        return table

    def search(self, query: str, n: int = 20) -> pd.DataFrame:
        """Latents whose label or evidence contains ``query`` (case-insensitive), most confident first.

        Introduced in chapter 4. An empty query lists the most confident
        latents. A release decade (``"1970s"``, ``"1970"``, ``"70s"``, ``"'70s"``) also finds the latents whose
        label names a decade range covering it (``"1960s-70s"``) and, after those, the latents significantly
        enriched for it in the ``decade:next`` profile (highest lift first), which may have another label.
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        table = self.summary()
        table = table[~table["label"].isin([DEAD])]
        q = query.strip().lower()
        if not q:
            return table.sort_values(["confidence", "frequency"], ascending=False).head(n)
        decade = self._decade_query(q)
        terms = [q] if decade is None else [q, f"{decade}s"]
        hit = pd.Series(False, index=table.index)
        for term in terms:
            hit |= table["label"].str.lower().str.contains(term, regex=False) | \
                table["evidence"].str.lower().str.contains(term, regex=False)
        if decade is not None:
            hit |= table["label"].map(lambda label: _label_covers_decade(str(label), decade))
        first = table[hit].sort_values(["confidence", "frequency"], ascending=False)
        if decade is None:
            return first.head(n)
        rows = self.profiles[(self.profiles["profile"] == "decade:next") & (self.profiles["category"] == f"{decade}s")]
        rows = rows[(rows["lift"] > 1) & (rows["share"] >= 0.1) & (rows["q_value"] <= 0.05)]
        extra = [j for j in rows.sort_values("lift", ascending=False)["latent"] if j in table.index and not hit[j]]
        return pd.concat([first, table.loc[extra]]).head(n)

    def _decade_query(self, q: str) -> int | None:
        """The decade (e.g. 1970) a query names, or None: ``1970s``, ``1970``, ``70s``, ``'70s``, ``70's``."""
        match = re.fullmatch(r"'?(\d{2}|\d{4})'?s?", q)
        if match is None:
            return None
        digits = match.group(1)
        if len(digits) == 4:
            year = int(digits)
            return year if year % 10 == 0 or q.endswith("s") else None
        if not q.endswith("s") or int(digits) % 10:
            return None
        known = [int(c[:-1]) for c in self.profiles.loc[self.profiles["profile"] == "decade:next", "category"].unique()
                 if re.fullmatch(r"\d{4}s", str(c))]
        same = sorted(d for d in known if d % 100 == int(digits))
        if same:
            return same[-1]
        return (1900 if int(digits) >= 20 else 2000) + int(digits)

    def categories(self, profile: str = "genre:next") -> list[str]:
        """Categories of one profile (e.g. the genres), in the order of the data."""
        rows = self.profiles[self.profiles["profile"] == profile]
        if rows.empty:
            raise ValueError(f"unknown profile {profile!r}; available: {sorted(self.profiles['profile'].unique())}")
        return list(dict.fromkeys(rows["category"]))

    def by_category(self, category: str, profile: str = "genre:next", n: int = 10, *,
                    min_share: float = 0.1, alpha: float = 0.05) -> pd.DataFrame:
        """Latents most enriched for one category (lift), among those where it is a real, significant share.

        Introduced in chapter 4.

        Raises
        ------
        ValueError
            An unknown profile or category (the valid ones are listed).
        """
        valid = self.categories(profile)
        if category not in valid:
            raise ValueError(f"unknown category {category!r} of profile {profile!r}; expected one of {valid}")
        rows = self.profiles[(self.profiles["profile"] == profile) & (self.profiles["category"] == category)]
        rows = rows[(rows["share"] >= min_share) & (rows["q_value"] <= alpha)]
        rows = rows.sort_values("lift", ascending=False).head(n)
        out = rows.set_index("latent")[["share", "base_rate", "lift", "q_value", "n_eff"]]
        return out.join(self.labels[["label", "confidence"]])

    def gallery(self, n: int = 6, *, min_frequency: float = 1e-3) -> list[int]:
        """A diverse set of well-labelled latents for a static page: the most confident latent per leading term.

        Introduced in chapter 4. Latents firing on fewer than
        ``min_frequency`` of positions are skipped (a card of a handful of positions says little); at most
        one latent per distinct first label term (e.g. one "Horror ..."), taken in order of confidence.
        """
        table = self.summary()
        table = table[(table["frequency"] >= min_frequency) & ~table["label"].isin([DEAD, NO_PROFILE])]
        table = table.sort_values(["confidence", "frequency"], ascending=False)
        lead = table["label"].str.split(r"[,·]", regex=True).str[0].str.strip()
        return [int(j) for j in table[~lead.duplicated()].index[:n]]

    def interpretability(self, *, min_frequency: float = 0.01, **score_options: Any) -> pd.Series:
        """A few numbers that summarise how readable the whole dictionary is, for comparing SAEs.

        Introduced in chapter 6. The monosemanticity scores are those of
        :func:`seqsae_lib.monosemanticity_scores` on this atlas's codes (genres of the next item), so two
        atlases on the same positions are compared on the same footing.

        Parameters
        ----------
        min_frequency : float, default 0.01
            "Frequent" latents fire on at least this share of positions; their medians are reported
            separately because rare latents are capped near AUC 0.5 (chapter 4's caveat).
        **score_options
            Passed to :func:`seqsae_lib.monosemanticity_scores` (``top_n``, ``bins``...).

        Returns
        -------
        pandas.Series
            ``latents``; ``alive`` (share of latents that fire at least once, in [0, 1]); ``labelled``
            (share of the firing latents with an automatic label, in [0, 1]); ``frequent`` (number of latents
            firing on at least ``min_frequency`` of positions); ``median auc_next`` and
            ``median purity_lift`` over all latents; the same two medians over the frequent latents (NaN
            when there are none).
        """
        min_frequency = check_float("min_frequency", min_frequency, 0.0, 1.0)
        genres_next, _ = genre_matrices(self.store, self.seq_data)
        scores = monosemanticity_scores(self.codes, genres_next, genre_names=list(self.seq_data.genre_names),
                                        **score_options)
        fires = self.stats["n_fires"].to_numpy() > 0
        labelled = ~self.labels["label"].isin([DEAD, NO_PROFILE]).to_numpy()
        frequent = self.stats["frequency"].to_numpy() >= min_frequency
        out = {"latents": float(self.d_sae), "alive": float(fires.mean()),
               "labelled": float(labelled[fires].mean()) if fires.any() else 0.0,
               "frequent": float(frequent.sum())}
        for col in ("auc_next", "purity_lift"):
            values = scores[col].to_numpy(dtype=np.float64)
            out[f"median {col}"] = float(np.median(values))
            out[f"median {col} (frequent)"] = float(np.median(values[frequent])) if frequent.any() else float("nan")
        return pd.Series(out, name=f"{self.d_sae} latents")


def build_atlas(
    model: nn.Module,
    sae: SparseAutoencoder,
    store: ActivationStore,
    seq_data: SequenceData,
    *,
    sequences: Sequence[Any] | None = None,
    n_states: int = 64,
    progress: bool = True,
    **label_options: Any,
) -> FeatureAtlas:
    """Encode every stored state and compute statistics, profiles and labels of every latent.

    Introduced in chapter 4.

    Parameters
    ----------
    model : SASRec
    sae : SparseAutoencoder
        Trained on states at ``store.capture_point``.
    store : ActivationStore
        States with metadata, e.g. :func:`seqsae_lib.experiments.pretrained.training_activations`.
    seq_data : SequenceData
        The data the store was collected from (titles, genres, years, users).
    sequences : sequence of array-like, optional
        Needed for promoted items at an inner capture point (e.g. ``split.train``).
    n_states : int, default 64
        States used by the finite-difference promoted items at inner capture points.
    progress : bool, default True
        A tqdm bar over the steps.
    **label_options
        Passed to :func:`~seqsae_lib.interpret.labels.auto_label` (``min_lift``, ``alpha``...).

    Returns
    -------
    FeatureAtlas
        With ``seconds`` holding the time of each step.

    Raises
    ------
    TypeError
        A model that is not a SASRec, an SAE that is not a SparseAutoencoder.
    ValueError
        An SAE of another width or capture point than the store (its metadata names one), or a store that
        does not come from ``seq_data``.
    """
    check_model(model, scores=True)
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
    if sae.config.d_in != store.d_model:
        raise ValueError(f"the SAE reads {sae.config.d_in}-dim states, the store holds {store.d_model}-dim ones")
    sae.check_capture_point(store.capture_point)
    steps = ["encode", "stats", "genre profiles", "decade profile", "popularity profile", "user profile",
             "labels"]
    seconds: dict[str, float] = {}
    parts: list[pd.DataFrame] = []
    bar = tqdm(steps, desc="feature atlas", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        start = time.perf_counter()
        if name == "encode":
            codes = latent_activations(sae, store)
        elif name == "stats":
            stats = feature_stats(codes, store=store)
        elif name == "genre profiles":
            parts += [genre_profile(codes, store, seq_data, "next"), genre_profile(codes, store, seq_data, "input")]
        elif name == "decade profile":
            parts.append(decade_profile(codes, store, seq_data))
        elif name == "popularity profile":
            parts.append(popularity_profile(codes, store, seq_data))
        elif name == "user profile":
            parts.append(user_profile(codes, store, seq_data))
        else:
            profiles = pd.concat(parts, ignore_index=True)
            labels = auto_label(profiles, stats=stats, **label_options)
        seconds[name] = time.perf_counter() - start
    return FeatureAtlas(model=model, sae=sae, store=store, seq_data=seq_data, codes=codes, stats=stats,
                        profiles=profiles, labels=labels, seconds=seconds,
                        card_options={"sequences": sequences, "n_states": n_states})
