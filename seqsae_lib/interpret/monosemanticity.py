"""Old import path of the monosemanticity comparison, kept while callers move to the modules that now hold it.

Introduced in chapter 4 (chapters/04_features.ipynb). ``seqsae_lib.interpret.monosemanticity`` was split
into :mod:`~seqsae_lib.interpret.unit_scores` (the scores: AUC, purity, JS, MS), :mod:`~seqsae_lib.interpret.auc`
(the rank engine behind them) and :mod:`~seqsae_lib.interpret.unit_types` (SAE latents, hidden dimensions,
PCA, random rotation, untrained SAE; summaries of the comparison). Import from those modules or from
:mod:`seqsae_lib.interpret`; this module only re-exports their public names and will be removed.
"""

from seqsae_lib.interpret.auc import auc_matrix
from seqsae_lib.interpret.unit_scores import SCORE_COLUMNS, genre_matrices, js_divergence, monosemanticity_scores
from seqsae_lib.interpret.unit_types import (
    bootstrap_median_ci, compare_unit_types, hidden_dim_units, pca_units, planted_recovery, random_rotation_units,
    sae_units, score_unit_types, untrained_sae_units,
)

__all__ = [
    "SCORE_COLUMNS", "auc_matrix", "bootstrap_median_ci", "compare_unit_types", "genre_matrices", "hidden_dim_units",
    "js_divergence", "monosemanticity_scores", "pca_units", "planted_recovery", "random_rotation_units", "sae_units",
    "score_unit_types", "untrained_sae_units",
]
