"""Data: MovieLens files (catalog, cache, sources, readers), viewing sequences and splits, synthetic data, batches.

Introduced in chapter 1.
"""

from seqsae_lib.data.batching import (
    EvalBatch, NextItemDataset, iter_eval_batches, left_pad, make_train_loader, seen_mask, trim_left_padding,
)
from seqsae_lib.data.catalog import DATASETS, SUBSETS, DataSourceError, DatasetSpec, SubsetSpec
from seqsae_lib.data.histories import check_history, check_sequences
from seqsae_lib.data.movielens import PlantedTopics, RatingsData, load_movielens
from seqsae_lib.data.movielens_files import EXPECTED_COUNTS
from seqsae_lib.data.sequences import LeaveOneOutSplit, SequenceData, leave_one_out, make_sequences
from seqsae_lib.data.sources import DataSource, SubsetSource, resolve_source, resolve_subset_source
from seqsae_lib.data.synthetic import make_synthetic

__all__ = [
    "DATASETS", "EXPECTED_COUNTS", "SUBSETS", "DataSource", "DataSourceError", "DatasetSpec", "EvalBatch", "LeaveOneOutSplit",
    "NextItemDataset", "PlantedTopics", "RatingsData", "SequenceData", "SubsetSource", "SubsetSpec",
    "check_history", "check_sequences", "iter_eval_batches", "leave_one_out", "left_pad", "load_movielens",
    "make_sequences", "make_synthetic", "make_train_loader", "resolve_source", "resolve_subset_source", "seen_mask",
    "trim_left_padding",
]
