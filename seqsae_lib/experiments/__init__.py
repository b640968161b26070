"""Recipes and experiments built from the layers below: the shipped checkpoints and how they were made
(:mod:`~seqsae_lib.experiments.pretrained`), the planted-topic experiment
(:mod:`~seqsae_lib.experiments.planted`) and the conditions study of the fair monosemanticity test
(:mod:`~seqsae_lib.experiments.conditions`), and the recorded concept-steering tables
(:mod:`~seqsae_lib.experiments.concept_tables`).

Introduced in chapter 2.
"""

from seqsae_lib.experiments.concept_tables import concept_table_path, load_concept_table
from seqsae_lib.experiments.conditions import CONDITIONS, CONTROLS, Condition, load_conditions, run_condition
from seqsae_lib.experiments.planted import PlantedExperiment, planted_model, planted_topic_experiment
from seqsae_lib.experiments.pretrained import (
    SAE_ML100K_BLOCK_0, SAE_ML100K_FINAL, SAE_ML1M_U2999_FINAL, SASREC_ML100K, SASREC_ML1M_U2999, load_pretrained_sae, load_pretrained_sasrec, pretrained_stem, shipped_pipeline,
    sae_recipe, sasrec_recipe, train_from_recipe, training_activations,
)

__all__ = [
    "concept_table_path", "load_concept_table",
    "CONDITIONS", "CONTROLS", "Condition", "load_conditions", "planted_model", "run_condition",
    "SAE_ML1M_U2999_FINAL", "SASREC_ML1M_U2999", "sae_recipe", "sasrec_recipe",
    "PlantedExperiment", "SAE_ML100K_BLOCK_0", "SAE_ML100K_FINAL", "SASREC_ML100K", "load_pretrained_sae", "load_pretrained_sasrec",
    "planted_topic_experiment", "pretrained_stem", "shipped_pipeline", "train_from_recipe", "training_activations",
]
