"""seqsae_lib: sparse autoencoders for transformer sequential recommenders.

The library behind the book *Sparse Autoencoders for Sequential Recommenders*. Data flows one way:
data -> model -> activations -> SAE -> interpretation -> steering -> plots/widgets. Everything a chapter
uses is importable from the top level (``import seqsae_lib as sl``).
"""

from seqsae_lib.data import (
    DATASETS, SUBSETS, DataSource, DataSourceError, DatasetSpec, SubsetSource, SubsetSpec, resolve_source,
    resolve_subset_source,
)
from seqsae_lib.data import PlantedTopics, RatingsData, load_movielens
from seqsae_lib.data import LeaveOneOutSplit, SequenceData, leave_one_out, make_sequences
from seqsae_lib.data import make_synthetic
from seqsae_lib.utils.runtime import resolve_device, set_seed, set_threads
from seqsae_lib.utils.reporting import KeyFigureMismatchError, key_figures
from seqsae_lib.data import NextItemDataset, left_pad, make_train_loader
from seqsae_lib.model import SASRec, SASRecConfig, UnknownCapturePointError
from seqsae_lib.model import Recording, intervene, record
from seqsae_lib.model import coverage_at_k, hit_rate_at_k, mrr_at_k, ndcg_at_k
from seqsae_lib.model import EvalResult, MostPopularScorer, RandomScorer, evaluate
from seqsae_lib.model import History, TrainConfig, train_sasrec
from seqsae_lib.model import CheckpointError, FingerprintMismatchError, load_checkpoint, save_checkpoint
from seqsae_lib.sae import ActivationFileError, ActivationStore
from seqsae_lib.sae import collect_activations
from seqsae_lib.sae import SAEConfig, SAEFileError, SAEMetadataMismatchError, SAEOutput, SparseAutoencoder, is_dead
from seqsae_lib.sae import SAEHistory, SAETrainConfig, train_sae, train_sae_grid
from seqsae_lib.sae import (
    DensityHistogram, cosine_similarity, dead_fraction, dense_fraction, density_histogram, evaluate_reconstruction,
    feature_density, fvu, l0,
)
from seqsae_lib.sae import FidelityDetails, downstream_fidelity, fidelity_per_user, next_item_cross_entropy, splice
from seqsae_lib.interpret import LatentCodes
from seqsae_lib.interpret import top_contexts
from seqsae_lib.interpret import promoted_items
from seqsae_lib.interpret import feature_stats, latent_activations
from seqsae_lib.interpret import auto_label
from seqsae_lib.interpret import monosemanticity_scores
from seqsae_lib.interpret import compare_unit_types, planted_recovery, score_unit_types
from seqsae_lib.interpret import FeatureAtlas, FeatureCard, build_atlas
from seqsae_lib.experiments.planted import PlantedExperiment, planted_topic_experiment
from seqsae_lib.steering import LatentEdit, preactivation_std
from seqsae_lib.steering import Steering
from seqsae_lib.steering import VectorSteering
from seqsae_lib.steering import SteeringCache, steer, steered_scores
from seqsae_lib.steering import Concept
from seqsae_lib.steering import decade_concept, genre_concept, popularity_concept
from seqsae_lib.steering import concept_steering, select_latents
from seqsae_lib.steering import evaluate_steering
from seqsae_lib.steering import pareto_front, share_at_equal_cost
from seqsae_lib.interpret import Explanation, counterfactual_check, explain_final, explain_inner, explain_top_k
from seqsae_lib.steering import LiveSteering, Recommendations, before_after_grid
from seqsae_lib.sae import atom_recovery, sparse_dictionary_data
from seqsae_lib import data, experiments, interpret, model, sae, steering, utils, viz
from seqsae_lib.experiments import pretrained
from seqsae_lib.viz.plots import (
    plot_density_histogram, plot_explanation, plot_feature_card, plot_genre_counts, plot_planted_recovery, plot_sae_frontier,
    plot_sae_training, plot_sequence_lengths, plot_split, plot_steering_tradeoff, plot_topic_transitions,
    plot_unit_type_comparison,
)

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # ``sl.widgets`` is imported on first use: the widgets (and ipywidgets) are optional.
    if name == "widgets":
        import importlib

        return importlib.import_module("seqsae_lib.viz.widgets")
    raise AttributeError(f"module 'seqsae_lib' has no attribute {name!r}")
