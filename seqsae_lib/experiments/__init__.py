"""Recipes and experiments built from the layers below: the shipped checkpoints and how they were made
(:mod:`~seqsae_lib.experiments.pretrained`) and the planted-topic experiment
(:mod:`~seqsae_lib.experiments.planted`).

Introduced in chapter 2.
"""

from seqsae_lib.experiments.planted import PlantedExperiment, planted_topic_experiment
from seqsae_lib.experiments.pretrained import (
    SAE_ML100K_FINAL, SASREC_ML100K, load_pretrained_sae, load_pretrained_sasrec, pretrained_stem, shipped_pipeline,
    train_from_recipe, training_activations,
)

__all__ = [
    "PlantedExperiment", "SAE_ML100K_FINAL", "SASREC_ML100K", "load_pretrained_sae", "load_pretrained_sasrec",
    "planted_topic_experiment", "pretrained_stem", "shipped_pipeline", "train_from_recipe", "training_activations",
]
