"""Read and validate MovieLens-100k and MovieLens-1M into one typed object, :class:`RatingsData`.

Introduced in chapter 1.

Every file is parsed with pandas (fast path); when pandas fails or produces missing values, a slow
line-by-line scan finds the first bad line so the error can name the file and the line number.
Counts are checked against GroupLens' releases (an incomplete ratings file is an error), the files'
encoding is checked (GroupLens' titles are latin-1), and where the sha256 of a file is known it is
checked last, so a modified copy never passes silently.

``"ml-1m-u2999"``, "MovieLens-1M, users 1–2,999 (487,650 ratings)", is read by :func:`read_ml1m_subset`
either from its own file (the first 487,650 lines of ML-1M's ``ratings.dat``) or from the full ML-1M
filtered to users <= 2,999; both are checked against the subset's own counts and the sha256 of its text.
Its results are never ML-1M results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from seqsae_lib.data.movielens_files import (
    DESCRIPTIONS, read_ml100k, read_ml1m, read_ml1m_subset,
)
from seqsae_lib.data.catalog import SUBSETS
from seqsae_lib.data.sources import DataSource, resolve_source, resolve_subset_source

__all__ = ["RatingsData", "PlantedTopics", "load_movielens"]



@dataclass(frozen=True)
class PlantedTopics:
    """Ground truth of a synthetic data set (see :func:`seqsae_lib.make_synthetic`).

    Introduced in chapter 1.
    """

    item_topic: np.ndarray
    """``(n_items,)`` int: the topic each item (row of ``RatingsData.items``) belongs to."""
    user_preferences: np.ndarray
    """``(n_users, n_topics)`` float: each user's sparse starting topic preference."""
    user_end_preferences: np.ndarray
    """``(n_users, n_topics)`` float: the preference each user drifts towards by the end."""
    topic_names: tuple[str, ...]
    """Names of the planted topics (also the data set's "genres")."""


@dataclass(frozen=True)
class RatingsData:
    """Explicit ratings of one MovieLens release (or a synthetic stand-in) with item and user metadata.

    Introduced in chapter 1.
    """

    name: str
    """Data-set name: ``"ml-100k"``, ``"ml-1m"``, ``"ml-1m-u2999"`` or ``"synthetic"``."""
    interactions: pd.DataFrame
    """One row per rating in file order: ``user_id``, ``item_id`` (original ids), ``rating``, ``timestamp``
    (unix seconds)."""
    items: pd.DataFrame
    """Indexed by original ``item_id``: ``title`` (str), ``year`` (nullable Int64), ``genres`` (tuple of
    names)."""
    genre_names: tuple[str, ...]
    """Genre names, in the column order of :attr:`item_genres`."""
    item_genres: np.ndarray
    """``(len(items), len(genre_names))`` uint8 multi-hot matrix, rows aligned with :attr:`items`."""
    users: pd.DataFrame
    """Indexed by original ``user_id``: ``age`` (years, or the lower bound of ML-1M's age group),
    ``gender``, ``occupation`` (name), ``zip_code``."""
    source: DataSource
    """Where the files came from."""
    planted: PlantedTopics | None = None
    """Ground truth for synthetic data; ``None`` for MovieLens."""
    info: dict[str, Any] = field(default_factory=dict)
    """Free-form facts (e.g. generator parameters)."""
    description: str = ""
    """What the data set is called wherever it is shown, e.g. ``"MovieLens-1M, users 1–2,999 (487,650
    ratings)"`` (see :data:`DESCRIPTIONS`); empty for synthetic data."""

    @property
    def num_ratings(self) -> int:
        """Number of rating rows."""
        return len(self.interactions)

    def summary(self) -> pd.Series:
        """Counts a reader checks first: ratings, users, items, rated items, genres, density."""
        n_users = self.interactions["user_id"].nunique()
        n_rated = self.interactions["item_id"].nunique()
        return pd.Series(
            {
                "ratings": self.num_ratings,
                "users": n_users,
                "items in catalogue": len(self.items),
                "items rated": n_rated,
                "genres": len(self.genre_names),
                "density": round(self.num_ratings / (n_users * n_rated), 4),
            },
            dtype=object,
            name=self.name,
        )


def load_movielens(
    name: str = "ml-100k",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    verify: bool = True,
) -> RatingsData:
    """Load a MovieLens release, validated, as :class:`RatingsData`.

    Introduced in chapter 1.

    Parameters
    ----------
    name
        ``"ml-100k"`` (what the book executes), ``"ml-1m"``, or ``"ml-1m-u2999"``: "MovieLens-1M, users
        1–2,999 (487,650 ratings)", every rating of ML-1M's users 1 to 2,999, a data set in its own right
        whose results are never ML-1M results.
    data_dir, cache_dir, download
        Where to look; see :func:`seqsae_lib.data.sources.resolve_source` for the resolution order:
        ``data_dir``, then ``$SEQSAE_DATA``, then the cache, then a download. For ``"ml-1m-u2999"`` see
        :func:`seqsae_lib.data.sources.resolve_subset_source`: in each place its own file
        (``ml-1m-first2999users/ratings.dat.gz`` or ``ratings.dat``, with ``ml-1m/movies.dat``,
        ``users.dat``) is preferred, else the full ML-1M is read and filtered to users <= 2,999; a download
        fetches the full ``ml-1m.zip``.
    verify
        Check each file's sha256 against GroupLens' release where it is known (for ``"ml-1m-u2999"``,
        also the sha256 of its ratings text).

    Raises
    ------
    DataSourceError
        Naming the file and what was expected: missing files, wrong checksums, incomplete files,
        unparseable lines (with their number), wrong encoding, ids missing from the metadata files.
    """
    if name in SUBSETS:
        subset = resolve_subset_source(name, data_dir, cache_dir=cache_dir, download=download)
        ratings, items, genre_names, multi_hot, users, verified = read_ml1m_subset(subset, name, verify=verify)
        data_source = subset.data_source(SUBSETS[name], verified)
    else:
        source = resolve_source(name, data_dir, cache_dir=cache_dir, download=download)
        reader = read_ml100k if name == "ml-100k" else read_ml1m
        ratings, items, genre_names, multi_hot, users, verified = reader(source.path, verify=verify)
        data_source = DataSource(source.kind, source.path, verified)
    return RatingsData(
        name=name,
        interactions=ratings,
        items=items,
        genre_names=genre_names,
        item_genres=multi_hot,
        users=users,
        source=data_source,
        description=DESCRIPTIONS.get(name, name),
    )
