"""Where MovieLens files come from: an explicit folder, an environment variable, the cache, or a download.

Introduced in chapter 1.

Resolution order for a data set such as ``"ml-100k"``:

1. ``data_dir`` passed by the caller: either the data-set folder itself (holding ``u.data``) or a folder
   in GroupLens' layout holding ``ml-100k/``;
2. the folder named by the environment variable ``SEQSAE_DATA`` (GroupLens' layout: ``$SEQSAE_DATA/ml-100k/``);
3. the download cache (``SEQSAE_CACHE``, else ``pooch.os_cache("seqsae")``), if a previous download was
   extracted there;
4. a download of GroupLens' zip archive with :mod:`pooch`, verified against its published md5, then
   extracted into the cache.

A download goes to a temporary file that only replaces the cache entry once its checksum matches, and the
archive is extracted into a temporary folder that is renamed into place when complete, so an interrupted or
corrupt download never leaves a half-written data set behind. Download and extraction hold a lock file
(``<cache>/.<name>.lock``, :mod:`filelock`), so several processes filling an empty cache at once (parallel
notebook runs, test workers) wait for the first one and then read its copy instead of replacing the folder
another process is reading.

Subsets (:data:`SUBSETS`) are named parts of a release, not archives of their own. ``"ml-1m-u2999"``,
"MovieLens-1M, users 1–2,999 (487,650 ratings)", is every rating of ML-1M's users 1 to 2,999: the first
487,650 lines of ML-1M's ``ratings.dat``. :func:`resolve_subset_source` searches the same four places in the
same order; in each place it takes the first of

(a) the subset's own file, ``ml-1m-first2999users/ratings.dat.gz`` or ``ml-1m-first2999users/ratings.dat``,
    with ``movies.dat`` and ``users.dat`` from ``ml-1m/`` beside that folder;
(b) the complete ML-1M folder ``ml-1m/`` (``ratings.dat``, ``movies.dat``, ``users.dat``), whose ratings are
    filtered to users <= 2,999 when read.

The download step fetches and md5-checks the full ``ml-1m.zip``, exactly as for ``"ml-1m"``, and filters it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from seqsae_lib.data.cache import default_cache_dir, fetch_archive
from seqsae_lib.data.catalog import (
    DATA_ENV_VAR, DATASETS, SUBSETS, DataSourceError, DatasetSpec, SubsetSpec, dataset_folder,
    has_all_files, missing_files_message,
)

__all__ = ["DataSource", "SubsetSource", "resolve_source", "resolve_subset_source"]


@dataclass(frozen=True)
class DataSource:
    """Where a loaded data set came from.

    Introduced in chapter 1.
    """

    kind: str
    """How the folder was found: ``"argument"``, ``"environment"``, ``"cache"``, ``"download"`` or
    ``"synthetic"``."""
    path: Path | None
    """The data-set folder that was read (``None`` for synthetic data)."""
    verified: tuple[str, ...] = ()
    """Files whose sha256 matched GroupLens' release byte for byte."""
    detail: str = ""
    """What was done to the files on reading, e.g. ``"filtered to users 1–2,999"``; empty if nothing."""

    def describe(self) -> str:
        """One line for a reader: where the data came from, without machine-specific paths."""
        if self.kind == "synthetic":
            return "synthetic data generated in memory"
        where = self.path.name if self.path is not None else "?"
        detail = f", {self.detail}" if self.detail else ""
        ok = f", {len(self.verified)} files checksum-verified" if self.verified else ""
        return f"{where} from the {self.kind}{detail}{ok}"


def resolve_source(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    spec: DatasetSpec | None = None,
) -> DataSource:
    """Find (or download) the folder of data set ``name`` and say where it came from.

    Introduced in chapter 1.

    Parameters
    ----------
    name
        ``"ml-100k"`` or ``"ml-1m"``.
    data_dir
        An explicit folder: the data-set folder itself or a folder holding it. Takes precedence.
    cache_dir
        Download cache; defaults to :func:`default_cache_dir`.
    download
        If ``False``, never touch the network: raise if no local copy is found.
    spec
        Override the registry entry (tests use it to point at a local HTTP server).

    Raises
    ------
    DataSourceError
        Naming every place that was searched when nothing is found, what is missing in a folder
        the caller or the environment named explicitly, or a download cache that cannot be written.
    """
    if spec is None:
        if name not in DATASETS:
            raise DataSourceError(
                f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}"
                + (f" (and the subsets {', '.join(sorted(SUBSETS))}: see resolve_subset_source)" if SUBSETS else "")
            )
        spec = DATASETS[name]
    if data_dir is not None:
        folder = dataset_folder(Path(data_dir).expanduser(), spec)
        if not has_all_files(folder, spec):
            raise DataSourceError(missing_files_message(folder, spec, "data_dir"))
        return DataSource("argument", folder.resolve())
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        folder = dataset_folder(Path(env).expanduser(), spec)
        if not has_all_files(folder, spec):
            raise DataSourceError(missing_files_message(folder, spec, f"${DATA_ENV_VAR}"))
        return DataSource("environment", folder.resolve())
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if has_all_files(cache / spec.name, spec):
        return DataSource("cache", (cache / spec.name).resolve())
    if not download:
        raise DataSourceError(
            f"{spec.name}: no local copy found (no data_dir given, ${DATA_ENV_VAR} unset, nothing in the "
            f"cache {cache}) and download=False"
        )
    return DataSource("download", fetch_archive(spec, cache, progressbar=True).resolve())


@dataclass(frozen=True)
class SubsetSource:
    """Where the files of a subset (see :class:`SubsetSpec`) were found.

    Introduced in chapter 1.
    """

    kind: str
    """How the files were found: ``"argument"``, ``"environment"``, ``"cache"`` or ``"download"``."""
    ratings: Path
    """The ratings file to read: the subset's own file, or the full release's ``ratings.dat``."""
    metadata: Path
    """The folder holding the release's ``movies.dat`` and ``users.dat``."""
    filtered: bool
    """``True`` when :attr:`ratings` is the full release's file, filtered by user id on reading."""

    def data_source(self, spec: SubsetSpec, verified: tuple[str, ...] = ()) -> DataSource:
        """The :class:`DataSource` a loaded data set reports: the ratings' folder and how it was read."""
        detail = f"filtered to users 1–{spec.max_user_id:,}" if self.filtered else ""
        return DataSource(self.kind, self.ratings.parent, verified, detail)


def _find_subset(base: Path, spec: SubsetSpec, parent: DatasetSpec, kind: str) -> SubsetSource | None:
    """The subset's files under ``base`` (option (a) of the module docstring, else (b)), or ``None``."""
    own = base if base.name == spec.folder else base / spec.folder
    metadata = own.parent / parent.name
    for fname in spec.ratings_files:
        if (own / fname).is_file() and all((metadata / f).is_file() for f in spec.metadata_files):
            return SubsetSource(kind, (own / fname).resolve(), metadata.resolve(), filtered=False)
    if base.name == spec.folder:
        return None
    full = dataset_folder(base, parent)
    if has_all_files(full, parent):
        return SubsetSource(kind, (full / "ratings.dat").resolve(), full.resolve(), filtered=True)
    return None


def _subsetmissing_files_message(base: Path, spec: SubsetSpec, parent: DatasetSpec, how: str) -> str:
    own = base if base.name == spec.folder else base / spec.folder
    metadata = own.parent / parent.name
    found = [own / f for f in spec.ratings_files if (own / f).is_file()]
    if found:
        missing = [f for f in spec.metadata_files if not (metadata / f).is_file()]
        return (
            f"{spec.name}: {how} points at {base}; it holds {found[0]}, but {metadata} lacks "
            f"{', '.join(missing)} (expected GroupLens' layout: {parent.name}/{', '.join(spec.metadata_files)} "
            f"beside {spec.folder}/)"
        )
    return (
        f"{spec.name}: {how} points at {base}, but it holds neither the subset's own file "
        f"({spec.folder}/{' or '.join(spec.ratings_files)}, with {parent.name}/{', '.join(spec.metadata_files)}) "
        f"nor the full release ({parent.name}/{', '.join(parent.required_files)})"
    )


def resolve_subset_source(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    parent_spec: DatasetSpec | None = None,
) -> SubsetSource:
    """Find the files of subset ``name`` (e.g. ``"ml-1m-u2999"``), downloading its full release if need be.

    Introduced in chapter 1.

    Resolution order, as for :func:`resolve_source`: ``data_dir``, then ``$SEQSAE_DATA``, then the cache,
    then a download. In each of the first three places, the subset's own file is preferred, else the full
    release is used and filtered:

    (a) ``ml-1m-first2999users/ratings.dat.gz``, else ``ml-1m-first2999users/ratings.dat``, with
        ``ml-1m/movies.dat`` and ``ml-1m/users.dat`` beside that folder;
    (b) ``ml-1m/ratings.dat``, ``movies.dat``, ``users.dat`` (the complete ML-1M), filtered to users <= 2,999.

    The download fetches the full ``ml-1m.zip`` with its md5 check (:func:`fetch_archive`), as
    ``"ml-1m"`` does, and the ratings are filtered when read.

    Parameters
    ----------
    name
        A key of :data:`SUBSETS`.
    data_dir
        An explicit folder: one in GroupLens' layout (holding ``ml-1m-first2999users/`` and ``ml-1m/``, or
        only a complete ``ml-1m/``), the ``ml-1m-first2999users`` folder itself, or a complete ``ml-1m``
        folder itself. Takes precedence.
    cache_dir
        Download cache; defaults to :func:`default_cache_dir`.
    download
        If ``False``, never touch the network: raise if no local copy is found.
    parent_spec
        Override the full release's registry entry (tests use it to point at a local HTTP server).

    Raises
    ------
    DataSourceError
        For an unknown name; naming every place that was searched when nothing is found; or saying what
        is missing in a folder the caller or the environment named explicitly.
    """
    if name not in SUBSETS:
        raise DataSourceError(f"unknown subset {name!r}; known: {', '.join(sorted(SUBSETS))}")
    spec = SUBSETS[name]
    parent = parent_spec if parent_spec is not None else DATASETS[spec.parent]
    if data_dir is not None:
        base = Path(data_dir).expanduser()
        found = _find_subset(base, spec, parent, "argument")
        if found is None:
            raise DataSourceError(_subsetmissing_files_message(base, spec, parent, "data_dir"))
        return found
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        base = Path(env).expanduser()
        found = _find_subset(base, spec, parent, "environment")
        if found is None:
            raise DataSourceError(_subsetmissing_files_message(base, spec, parent, f"${DATA_ENV_VAR}"))
        return found
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    found = _find_subset(cache, spec, parent, "cache")
    if found is not None:
        return found
    if not download:
        raise DataSourceError(
            f"{spec.name}: no local copy found (no data_dir given, ${DATA_ENV_VAR} unset, neither "
            f"{spec.folder}/ nor {parent.name}/ in the cache {cache}) and download=False"
        )
    folder = fetch_archive(parent, cache, progressbar=True).resolve()
    return SubsetSource("download", folder / "ratings.dat", folder, filtered=True)
