"""Sparse autoencoders on a recommender's hidden states: collect, train, measure, save.

Introduced in chapter 3.

Modules: :mod:`~seqsae_lib.sae.config` (SAEConfig, dead latents), :mod:`~seqsae_lib.sae.autoencoder` (the
module), :mod:`~seqsae_lib.sae.sparsity` (TopK, BatchTopK), :mod:`~seqsae_lib.sae.normalization` (input
scale, ``b_dec``, folding, decoder hygiene), :mod:`~seqsae_lib.sae.io` (save, load, provenance checks),
:mod:`~seqsae_lib.sae.store` (ActivationStore), :mod:`~seqsae_lib.sae.activations` (collect_activations),
:mod:`~seqsae_lib.sae.training_config` and :mod:`~seqsae_lib.sae.training` (train_sae),
:mod:`~seqsae_lib.sae.metrics` (reconstruction), :mod:`~seqsae_lib.sae.splice` and
:mod:`~seqsae_lib.sae.fidelity` (the SAE inside the model), :mod:`~seqsae_lib.sae.toy` (planted dictionaries).
"""

from seqsae_lib.sae.config import DEFAULT_DEAD_AFTER, SAE_KINDS, SAEConfig, SAEKind, is_dead
from seqsae_lib.sae.inputs import check_vectors
from seqsae_lib.sae.sparsity import batchtopk_codes, threshold_codes, topk_codes
from seqsae_lib.sae.io import (
    SAEFileError, SAEMetadataMismatchError, check_sae_matches_model, load_sae, sae_paths, save_sae,
)
from seqsae_lib.sae.autoencoder import SAEOutput, SparseAutoencoder
from seqsae_lib.sae.normalization import (
    calibrate_threshold, fold_decoder_norms, fold_normalization, init_b_dec, init_decoder_from_data, init_input_scale,
    remove_gradient_parallel_to_decoder_directions, set_decoder_norm_to_unit_norm,
)
from seqsae_lib.sae.store import ActivationFileError, ActivationStore, activation_paths
from seqsae_lib.sae.activations import collect_activations
from seqsae_lib.sae.training_config import UNIT_START_SAE, UNIT_START_TRAIN, SAEHistory, SAETrainConfig, lr_factor
from seqsae_lib.sae.training import initial_sae, train_sae, train_sae_grid
from seqsae_lib.sae.metrics import (
    DensityHistogram, cosine_similarity, dead_fraction, dense_fraction, density_histogram, evaluate_reconstruction,
    feature_density, fvu, l0,
)
from seqsae_lib.sae.splice import SPLICE_MODES, SpliceMode, check_mean, check_sae_width, resolve_capture_point, splice
from seqsae_lib.sae.fidelity import (
    FIDELITY_CONDITIONS, FidelityDetails, FidelityResult, downstream_fidelity, fidelity_per_user,
    next_item_cross_entropy,
)
from seqsae_lib.sae.toy import atom_recovery, sparse_dictionary_data

__all__ = [
    "DEFAULT_DEAD_AFTER", "SAE_KINDS", "SAEConfig", "SAEKind", "is_dead",
    "check_vectors",
    "batchtopk_codes", "threshold_codes", "topk_codes",
    "SAEFileError", "SAEMetadataMismatchError", "check_sae_matches_model", "load_sae", "sae_paths", "save_sae",
    "SAEOutput", "SparseAutoencoder",
    "calibrate_threshold", "fold_decoder_norms", "fold_normalization", "init_b_dec", "init_decoder_from_data",
    "init_input_scale", "remove_gradient_parallel_to_decoder_directions", "set_decoder_norm_to_unit_norm",
    "ActivationFileError", "ActivationStore", "activation_paths", "collect_activations",
    "SAEHistory", "SAETrainConfig", "UNIT_START_SAE", "UNIT_START_TRAIN", "initial_sae", "lr_factor", "train_sae", "train_sae_grid",
    "DensityHistogram", "cosine_similarity", "dead_fraction", "dense_fraction", "density_histogram",
    "evaluate_reconstruction", "feature_density", "fvu", "l0",
    "SPLICE_MODES", "SpliceMode", "check_mean", "check_sae_width", "resolve_capture_point", "splice",
    "FIDELITY_CONDITIONS", "FidelityDetails", "FidelityResult", "downstream_fidelity", "fidelity_per_user",
    "next_item_cross_entropy",
    "atom_recovery", "sparse_dictionary_data",
]
