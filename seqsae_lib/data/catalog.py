"""What GroupLens publishes: the MovieLens releases and named subsets the library knows, and their layout.

Introduced in chapter 1. :mod:`seqsae_lib.data.sources` decides where the files
come from; :mod:`seqsae_lib.data.cache` downloads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CACHE_ENV_VAR", "DATA_ENV_VAR", "DATASETS", "SUBSETS", "DataSourceError", "DatasetSpec", "SubsetSpec",
    "dataset_folder", "has_all_files", "missing_files_message",
]

DATA_ENV_VAR = "SEQSAE_DATA"
"""Environment variable naming a folder in GroupLens' layout (holding ``ml-100k/``, ``ml-1m/``)."""

CACHE_ENV_VAR = "SEQSAE_CACHE"
"""Environment variable overriding the download cache folder."""


class DataSourceError(RuntimeError):
    """A data file is missing, corrupt, incomplete or cannot be downloaded.

    Introduced in chapter 1.
    """


@dataclass(frozen=True)
class DatasetSpec:
    """Where GroupLens publishes one data set and what its files must look like.

    Introduced in chapter 1.
    """

    name: str
    """Data-set name and the folder name inside GroupLens' archive, e.g. ``"ml-100k"``."""
    url: str
    """Address of the zip archive."""
    md5: str
    """md5 of the zip archive as published by GroupLens."""
    required_files: tuple[str, ...]
    """Files the loader needs inside the data-set folder."""
    sha256: tuple[tuple[str, str], ...] = ()
    """Known sha256 of individual files (file name, hex digest), checked when the files are read."""

    @property
    def archive_name(self) -> str:
        """File name of the archive in the cache."""
        return self.url.rsplit("/", 1)[-1]


DATASETS: dict[str, DatasetSpec] = {
    "ml-100k": DatasetSpec(
        name="ml-100k",
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        md5="0e33842e24a9c977be4e0107933c0723",
        required_files=("u.data", "u.item", "u.user", "u.genre"),
        sha256=(
            ("u.data", "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"),
            ("u.item", "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701"),
            ("u.user", "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c"),
            ("u.genre", "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb"),
        ),
    ),
    "ml-1m": DatasetSpec(
        name="ml-1m",
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        md5="c4d9eecfca2ab87c1945afe126590906",
        required_files=("ratings.dat", "movies.dat", "users.dat"),
        sha256=(
            ("movies.dat", "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9"),
            ("users.dat", "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3"),
        ),
    ),
}
"""The MovieLens releases the library knows, keyed by name."""


@dataclass(frozen=True)
class SubsetSpec:
    """A named part of a GroupLens release: the ratings of users ``1..max_user_id``, a prefix of its file.

    Introduced in chapter 1.

    GroupLens' ``ratings.dat`` is sorted by user id, so the ratings of users ``1..max_user_id`` are its
    first lines: the subset can be read from a file holding exactly those lines, or from the full release
    filtered by user id. Both give the same ratings, checked against :attr:`ratings_sha256`.
    """

    name: str
    """Data-set key, e.g. ``"ml-1m-u2999"``."""
    title: str
    """What the data set is called wherever it is shown, e.g. ``"MovieLens-1M, users 1–2,999 (487,650 ratings)"``.
    Its results are never results of the full release."""
    parent: str
    """Key of the full release in :data:`DATASETS`, e.g. ``"ml-1m"``."""
    folder: str
    """Folder name of the subset's own ratings file in GroupLens' layout, e.g. ``"ml-1m-first2999users"``."""
    max_user_id: int
    """The subset keeps the ratings of users ``1..max_user_id``."""
    ratings_sha256: str
    """sha256 of the subset's uncompressed ratings text (the full file's first lines, byte for byte)."""
    ratings_files: tuple[str, ...] = ("ratings.dat.gz", "ratings.dat")
    """Accepted names of the subset's own ratings file inside :attr:`folder`, in order of preference."""
    metadata_files: tuple[str, ...] = ("movies.dat", "users.dat")
    """Files read from the parent's folder (``ml-1m/``) beside :attr:`folder`."""


SUBSETS: dict[str, SubsetSpec] = {
    "ml-1m-u2999": SubsetSpec(
        name="ml-1m-u2999",
        title="MovieLens-1M, users 1–2,999 (487,650 ratings)",
        parent="ml-1m",
        folder="ml-1m-first2999users",
        max_user_id=2_999,
        ratings_sha256="1273c4edfe3c0ff9e3a0a0d55819faeb947da0ad7df3927333b51ebefbeedc3d",
    ),
}
"""Named subsets of the releases in :data:`DATASETS`, keyed by name."""



def has_all_files(folder: Path, spec: DatasetSpec) -> bool:
    return folder.is_dir() and all((folder / f).is_file() for f in spec.required_files)


def dataset_folder(folder: Path, spec: DatasetSpec) -> Path:
    """``folder`` itself if it is the data-set folder, else ``folder / spec.name``."""
    if folder.name == spec.name or any((folder / f).is_file() for f in spec.required_files):
        return folder
    return folder / spec.name


def missing_files_message(folder: Path, spec: DatasetSpec, how: str) -> str:
    missing = [f for f in spec.required_files if not (folder / f).is_file()]
    return (
        f"{spec.name}: {how} points at {folder}, but it lacks {', '.join(missing)} "
        f"(expected GroupLens' layout: {spec.name}/{', '.join(spec.required_files)})"
    )


