"""Interpreting SAE latents: what they respond to, what they do, how monosemantic they are, why a film is recommended.

Introduced in chapter 4; explanations in chapter 5.

Modules, by job: :mod:`~seqsae_lib.interpret.codes` (sparse latent codes), :mod:`~seqsae_lib.interpret.stats`
(encoding and firing statistics), :mod:`~seqsae_lib.interpret.positions` (codes <-> store <-> data),
:mod:`~seqsae_lib.interpret.contexts` (top contexts, driving items), :mod:`~seqsae_lib.interpret.effects`
(decoder effects on item scores), :mod:`~seqsae_lib.interpret.profiles` (category profiles),
:mod:`~seqsae_lib.interpret.labels` (automatic labels), :mod:`~seqsae_lib.interpret.atlas` (the feature atlas),
:mod:`~seqsae_lib.interpret.auc`, :mod:`~seqsae_lib.interpret.unit_scores` and
:mod:`~seqsae_lib.interpret.unit_types` (the monosemanticity comparison),
:mod:`~seqsae_lib.interpret.concentration` and :mod:`~seqsae_lib.interpret.fair_scores` (fair, frequency-aware
monosemanticity measures), :mod:`~seqsae_lib.interpret.coverage` (concept coverage, output-side concentration),
:mod:`~seqsae_lib.interpret.comparison` (comparisons of unit types with intervals and verdicts),
:mod:`~seqsae_lib.interpret.explain` (per-feature explanations of a score).
"""

from seqsae_lib.interpret.atlas import FeatureAtlas, FeatureCard, build_atlas
from seqsae_lib.interpret.auc import auc_matrix
from seqsae_lib.interpret.codes import LatentCodes, UnitActs
from seqsae_lib.interpret.comparison import (
    VERDICTS, compare_to_controls, comparison_table, paired_comparison, verdict_sentence,
)
from seqsae_lib.interpret.concentration import (
    CONCENTRATION_COLUMNS, auc_ceiling, energy_share, fire_counts, top_firing_concentration,
    truncate_to_top, weighted_summary,
)
from seqsae_lib.interpret.contexts import driving_items, top_contexts
from seqsae_lib.interpret.coverage import concept_coverage, output_concentration, subset_coverage
from seqsae_lib.interpret.effects import EFFECT_METHODS, latent_item_effects, promoted_items, rank_item_effects
from seqsae_lib.interpret.explain import (
    Explanation, counterfactual_check, explain_final, explain_inner, explain_top_k, explanations_table, rank_agreement,
)
from seqsae_lib.interpret.fair_scores import (
    FIRE_BINS, by_fire_bin, category_labels, fair_unit_scores, frequency_matched_scores, genre_labels,
)
from seqsae_lib.interpret.labels import DEAD, NO_PROFILE, auto_label, evidence_table
from seqsae_lib.interpret.profiles import (
    AGE_BUCKETS, PROFILE_COLUMNS, category_profile, decade_profile, genre_profile, popularity_profile, user_profile,
)
from seqsae_lib.interpret.stats import feature_stats, latent_activations
from seqsae_lib.interpret.unit_scores import SCORE_COLUMNS, genre_matrices, js_divergence, monosemanticity_scores
from seqsae_lib.interpret.unit_types import (
    bootstrap_median_ci, compare_unit_types, hidden_dim_units, pca_directions, pca_units, planted_recovery,
    random_directions, random_rotation_units, sae_units, score_unit_types, untrained_sae_units, initial_sae_units,
)

__all__ = [
    "AGE_BUCKETS", "CONCENTRATION_COLUMNS", "DEAD", "EFFECT_METHODS", "FIRE_BINS", "NO_PROFILE", "PROFILE_COLUMNS",
    "SCORE_COLUMNS", "VERDICTS", "Explanation", "FeatureAtlas", "FeatureCard", "LatentCodes", "UnitActs",
    "auc_ceiling", "auc_matrix", "auto_label", "bootstrap_median_ci", "build_atlas", "by_fire_bin",
    "category_labels", "category_profile", "compare_to_controls", "compare_unit_types", "comparison_table",
    "concept_coverage", "counterfactual_check", "decade_profile", "driving_items", "energy_share", "evidence_table",
    "explain_final", "explain_inner", "explain_top_k", "explanations_table", "fair_unit_scores", "feature_stats",
    "fire_counts", "frequency_matched_scores", "genre_labels", "genre_matrices", "genre_profile", "hidden_dim_units",
    "js_divergence", "latent_activations", "latent_item_effects", "monosemanticity_scores", "output_concentration",
    "paired_comparison", "pca_directions", "pca_units", "planted_recovery", "popularity_profile", "promoted_items",
    "random_directions", "random_rotation_units", "rank_agreement", "rank_item_effects", "sae_units", "score_unit_types",
    "subset_coverage", "top_contexts", "top_firing_concentration", "truncate_to_top", "untrained_sae_units", "initial_sae_units",
    "user_profile", "verdict_sentence", "weighted_summary",
]
