"""The recommender: SASRec, its capture points, training, evaluation and checkpoints.

Introduced in chapter 2.

Modules: :mod:`~seqsae_lib.model.config` (SASRecConfig), :mod:`~seqsae_lib.model.layers` (HookPoint,
attention, transformer block), :mod:`~seqsae_lib.model.sasrec` (the model), :mod:`~seqsae_lib.model.capture`
(record, intervene, check_model), :mod:`~seqsae_lib.model.metrics` and :mod:`~seqsae_lib.model.evaluation`
(ranking metrics, full-catalogue evaluation), :mod:`~seqsae_lib.model.training` (train_sasrec),
:mod:`~seqsae_lib.model.checkpoints` (save and load with provenance).
"""

from seqsae_lib.model.config import ACTIVATIONS, SASRecConfig
from seqsae_lib.model.layers import CausalSelfAttention, HookPoint, TransformerBlock
from seqsae_lib.model.sasrec import SASRec, UnknownCapturePointError
from seqsae_lib.model.capture import HookableModel, Recording, check_model, intervene, record
from seqsae_lib.model.metrics import coverage_at_k, hit_rate_at_k, hr_at_k, mrr_at_k, ndcg_at_k
from seqsae_lib.model.evaluation import EvalResult, MostPopularScorer, RandomScorer, Scorer, evaluate
from seqsae_lib.model.training import History, TrainConfig, sequence_loss, train_sasrec
from seqsae_lib.model.checkpoints import (
    CheckpointError, FingerprintMismatchError, checkpoint_paths, fingerprint_differences, load_checkpoint,
    save_checkpoint,
)

__all__ = [
    "ACTIVATIONS", "SASRecConfig",
    "CausalSelfAttention", "HookPoint", "TransformerBlock",
    "SASRec", "UnknownCapturePointError",
    "HookableModel", "Recording", "check_model", "intervene", "record",
    "coverage_at_k", "hit_rate_at_k", "hr_at_k", "mrr_at_k", "ndcg_at_k",
    "EvalResult", "MostPopularScorer", "RandomScorer", "Scorer", "evaluate",
    "History", "TrainConfig", "sequence_loss", "train_sasrec",
    "CheckpointError", "FingerprintMismatchError", "checkpoint_paths", "fingerprint_differences", "load_checkpoint",
    "save_checkpoint",
]
