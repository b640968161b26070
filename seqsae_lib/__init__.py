"""seqsae_lib: sparse autoencoders for transformer sequential recommenders.

The library behind the book *Sparse Autoencoders for Sequential Recommenders*. Its subpackages are its parts,
and data flows one way through them: :mod:`~seqsae_lib.data` -> :mod:`~seqsae_lib.model` ->
:mod:`~seqsae_lib.sae` -> :mod:`~seqsae_lib.interpret` -> :mod:`~seqsae_lib.steering` -> :mod:`~seqsae_lib.viz`
(and :mod:`~seqsae_lib.experiments`, the shipped recipes), with :mod:`~seqsae_lib.utils` below them all.

The top level is the curriculum: exactly the names the chapters use (``import seqsae_lib as sl``; ``sl.widgets``
is imported on first use). Everything else lives in the subpackages.
"""

from seqsae_lib import data, experiments, interpret, model, sae, steering, utils, viz

# utilities
from seqsae_lib.utils import (
    key_figures, resolve_device, set_seed, set_threads, wrap_text,
)

# data (chapter 1)
from seqsae_lib.data import (
    DATASETS, DataSourceError, EXPECTED_COUNTS, NextItemDataset, leave_one_out, left_pad, load_movielens,
    make_sequences, make_synthetic, make_train_loader,
)

# the model: SASRec, training, evaluation (chapter 2)
from seqsae_lib.model import (
    FingerprintMismatchError, MostPopularScorer, RandomScorer, SASRec, TrainConfig, TransformerBlock,
    UnknownCapturePointError, evaluate, fingerprint_differences, intervene, record, sequence_loss,
    train_sasrec,
)

# sparse autoencoders (chapter 3)
from seqsae_lib.sae import (
    SAEConfig, SAETrainConfig, SparseAutoencoder, atom_recovery, collect_activations, density_histogram,
    downstream_fidelity, evaluate_reconstruction, fidelity_per_user, initial_sae, sparse_dictionary_data, splice,
    train_sae, train_sae_grid,
)

# reading the features (chapters 4 and 5)
from seqsae_lib.interpret import (
    DEAD, NO_PROFILE, build_atlas, compare_unit_types, counterfactual_check, explain_final, explain_inner,
    explain_top_k, explanations_table, monosemanticity_scores, rank_agreement, score_unit_types,
)

# the fair monosemanticity test (chapter 4)
from seqsae_lib.interpret import (
    auc_ceiling, bootstrap_median_ci, by_fire_bin, compare_to_controls, concept_coverage, energy_share,
    fair_unit_scores, fire_counts, frequency_matched_scores, genre_labels, genre_matrices, hidden_dim_units,
    output_concentration, paired_comparison, random_rotation_units, subset_coverage, untrained_sae_units,
    verdict_sentence, weighted_summary,
)

# steering (chapter 5)
from seqsae_lib.steering import (
    concept_steering_table, wins_ties_losses,
    LiveSteering, Steering, SteeringCache, SteeringEvaluator, before_after_grid, bonus_rerank_baseline,
    calibrate_sliders, combine, concept_steering, evaluate_methods, evaluate_steering, get_concept,
    mean_difference_baseline, popularity_concept, preactivation_std, random_latent_baseline, rerank_baseline,
    sae_method, score_changes, select_latents, share_at_equal_cost, showcase_concepts, showcase_user, slider_ends,
    export_static_steering,
    steer, steered_scores, steering_methods, user_dependence,
    compare_unlabelled, unlabelled_latents, unlabelled_steering,
)

# figures
from seqsae_lib.viz import (
    plot_density_histogram, plot_explanation, plot_feature_card, plot_genre_counts, plot_planted_recovery,
    plot_sae_frontier, plot_sae_training, plot_sequence_lengths, plot_split, plot_steering_tradeoff,
    plot_topic_transitions, plot_unit_type_comparison, plot_auc_ceiling, plot_concept_coverage, plot_median_cis,
)

# shipped recipes and experiments
from seqsae_lib.experiments import (
    SASREC_ML100K, Condition, load_concept_table, load_conditions, load_pretrained_sae, load_pretrained_sasrec,
    planted_topic_experiment, pretrained_stem, run_condition, sae_recipe, sasrec_recipe, shipped_pipeline,
    train_from_recipe, training_activations,
)

__all__ = [
    "Condition", "DATASETS", "DataSourceError", "DEAD", "EXPECTED_COUNTS", "FingerprintMismatchError",
    "LiveSteering", "MostPopularScorer", "NextItemDataset", "NO_PROFILE", "RandomScorer", "SAEConfig",
    "SAETrainConfig", "SASRec", "SASREC_ML100K", "SparseAutoencoder", "Steering", "SteeringCache",
    "SteeringEvaluator", "TrainConfig", "TransformerBlock", "UnknownCapturePointError", "atom_recovery",
    "auc_ceiling", "before_after_grid", "concept_steering_table", "wins_ties_losses", "bonus_rerank_baseline", "bootstrap_median_ci", "build_atlas",
    "by_fire_bin", "calibrate_sliders", "collect_activations", "combine", "compare_to_controls",
    "compare_unit_types", "compare_unlabelled", "concept_coverage", "concept_steering", "counterfactual_check",
    "density_histogram",
    "downstream_fidelity", "energy_share", "evaluate", "evaluate_methods", "evaluate_reconstruction",
    "evaluate_steering", "export_static_steering", "explain_final", "explain_inner", "explain_top_k",
    "explanations_table", "fair_unit_scores", "fidelity_per_user", "fingerprint_differences", "fire_counts",
    "frequency_matched_scores", "initial_sae",
    "genre_labels", "genre_matrices", "get_concept", "hidden_dim_units", "intervene", "key_figures",
    "leave_one_out", "left_pad", "load_concept_table", "load_conditions", "load_movielens", "load_pretrained_sae",
    "load_pretrained_sasrec", "make_sequences", "make_synthetic", "make_train_loader", "mean_difference_baseline",
    "monosemanticity_scores", "output_concentration", "paired_comparison", "planted_topic_experiment",
    "plot_auc_ceiling", "plot_concept_coverage", "plot_density_histogram", "plot_explanation", "plot_feature_card",
    "plot_genre_counts", "plot_median_cis", "plot_planted_recovery", "plot_sae_frontier", "plot_sae_training",
    "plot_sequence_lengths", "plot_split", "plot_steering_tradeoff", "plot_topic_transitions",
    "plot_unit_type_comparison", "popularity_concept", "preactivation_std", "pretrained_stem",
    "random_latent_baseline", "random_rotation_units", "rank_agreement", "record", "rerank_baseline",
    "resolve_device", "run_condition", "sae_method", "sae_recipe", "sasrec_recipe", "score_changes",
    "score_unit_types", "select_latents", "sequence_loss", "set_seed", "set_threads", "share_at_equal_cost",
    "shipped_pipeline", "showcase_concepts", "showcase_user", "slider_ends", "sparse_dictionary_data", "splice",
    "steer", "steered_scores", "steering_methods", "subset_coverage", "train_from_recipe", "train_sae",
    "train_sae_grid", "train_sasrec", "training_activations", "unlabelled_latents", "unlabelled_steering",
    "untrained_sae_units", "user_dependence",
    "verdict_sentence", "weighted_summary", "widgets", "wrap_text",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # ``sl.widgets`` is imported on first use: the widgets (and ipywidgets) are optional.
    if name == "widgets":
        import importlib

        return importlib.import_module("seqsae_lib.viz.widgets")
    raise AttributeError(f"module 'seqsae_lib' has no attribute {name!r}")
