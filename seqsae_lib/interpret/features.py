"""Old import path of the feature statistics, kept while callers move to the modules that now hold them.

Introduced in chapter 4 (chapters/04_features.ipynb). ``seqsae_lib.interpret.features`` was split by job:
:mod:`~seqsae_lib.interpret.codes` (sparse codes), :mod:`~seqsae_lib.interpret.stats` (encoding and
per-latent statistics), :mod:`~seqsae_lib.interpret.contexts` (top contexts, driving items),
:mod:`~seqsae_lib.interpret.effects` (decoder effects on item scores) and
:mod:`~seqsae_lib.interpret.profiles` (category profiles). Import from those modules or from
:mod:`seqsae_lib.interpret`; this module only re-exports their public names and will be removed.
"""

from seqsae_lib.interpret.codes import LatentCodes
from seqsae_lib.interpret.contexts import driving_items, top_contexts
from seqsae_lib.interpret.effects import latent_item_effects, promoted_items, rank_item_effects
from seqsae_lib.interpret.profiles import (
    AGE_BUCKETS, PROFILE_COLUMNS, category_profile, decade_profile, genre_profile, popularity_profile, user_profile,
)
from seqsae_lib.interpret.stats import feature_stats, latent_activations

__all__ = [
    "AGE_BUCKETS", "PROFILE_COLUMNS", "LatentCodes", "category_profile", "decade_profile", "driving_items",
    "feature_stats", "genre_profile", "latent_activations", "latent_item_effects", "popularity_profile",
    "promoted_items", "rank_item_effects", "top_contexts", "user_profile",
]
