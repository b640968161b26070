"""seqsae_lib: sparse autoencoders for transformer sequential recommenders.

The library behind the book *Sparse Autoencoders for Sequential Recommenders*. Data flows one way:
data -> model -> activations -> SAE -> interpretation -> steering -> plots/widgets.
"""
from seqsae_lib.sources import DataSource, DataSourceError, DatasetSpec, DATASETS, resolve_source
from seqsae_lib.movielens import RatingsData, PlantedTopics, load_movielens

__version__ = "0.1.0"
from seqsae_lib.sequences import LeaveOneOutSplit, SequenceData, leave_one_out, make_sequences
from seqsae_lib.synthetic import make_synthetic
