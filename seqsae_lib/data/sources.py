"""Where MovieLens files come from: an explicit folder, an environment variable, the cache, or a download.

Introduced in chapter 1 (``chapters/01_data.ipynb``).

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

import errno
import hashlib
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DATA_ENV_VAR",
    "CACHE_ENV_VAR",
    "DatasetSpec",
    "DataSource",
    "DataSourceError",
    "DATASETS",
    "SubsetSpec",
    "SubsetSource",
    "SUBSETS",
    "default_cache_dir",
    "fetch_archive",
    "resolve_source",
    "resolve_subset_source",
    "sha256_of",
]

DATA_ENV_VAR = "SEQSAE_DATA"
"""Environment variable naming a folder in GroupLens' layout (holding ``ml-100k/``, ``ml-1m/``)."""

CACHE_ENV_VAR = "SEQSAE_CACHE"
"""Environment variable overriding the download cache folder."""


class DataSourceError(RuntimeError):
    """A data file is missing, corrupt, incomplete or cannot be downloaded.

    Introduced in chapter 1 (``chapters/01_data.ipynb``).
    """


@dataclass(frozen=True)
class DatasetSpec:
    """Where GroupLens publishes one data set and what its files must look like.

    Introduced in chapter 1 (``chapters/01_data.ipynb``).
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

    Introduced in chapter 1 (``chapters/01_data.ipynb``).

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


@dataclass(frozen=True)
class DataSource:
    """Where a loaded data set came from.

    Introduced in chapter 1 (``chapters/01_data.ipynb``).
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


def default_cache_dir() -> Path:
    """The download cache: ``$SEQSAE_CACHE`` if set, else the user cache folder for ``seqsae``.

    Introduced in chapter 1 (``chapters/01_data.ipynb``).
    """
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("seqsae"))


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _has_all(folder: Path, spec: DatasetSpec) -> bool:
    return folder.is_dir() and all((folder / f).is_file() for f in spec.required_files)


def _candidate(folder: Path, spec: DatasetSpec) -> Path:
    """``folder`` itself if it is the data-set folder, else ``folder / spec.name``."""
    if folder.name == spec.name or any((folder / f).is_file() for f in spec.required_files):
        return folder
    return folder / spec.name


def _missing_message(folder: Path, spec: DatasetSpec, how: str) -> str:
    missing = [f for f in spec.required_files if not (folder / f).is_file()]
    return (
        f"{spec.name}: {how} points at {folder}, but it lacks {', '.join(missing)} "
        f"(expected GroupLens' layout: {spec.name}/{', '.join(spec.required_files)})"
    )


def _not_writable(spec: DatasetSpec, cache_dir: Path, err: BaseException | None = None) -> DataSourceError:
    detail = f" ({type(err).__name__}: {err})" if err is not None else ""
    return DataSourceError(
        f"{spec.name}: the download cache {cache_dir} is not a writable folder{detail}. Set the environment "
        f"variable {CACHE_ENV_VAR} to a folder you can write to, or point {DATA_ENV_VAR} at a folder that "
        f"already holds {spec.name}/ (no download needed)."
    )


def _is_permission_error(err: BaseException) -> bool:
    """A file-system refusal (not a network error: requests' errors are ``OSError`` too, without errno)."""
    return isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR)


def _writable_cache(spec: DatasetSpec, cache_dir: Path) -> Path:
    """Create ``cache_dir`` if needed and check it can be written, else raise naming the fix."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # e.g. a path under a regular file, a read-only parent
        raise _not_writable(spec, cache_dir, err) from err
    if not cache_dir.is_dir() or not os.access(cache_dir, os.W_OK | os.X_OK):
        raise _not_writable(spec, cache_dir)
    return cache_dir


def fetch_archive(spec: DatasetSpec, cache_dir: Path, *, progressbar: bool = False) -> Path:
    """Download ``spec``'s zip into ``cache_dir`` (md5-verified) and extract it; return the data-set folder.

    Introduced in chapter 1 (``chapters/01_data.ipynb``).

    The download and the extraction hold the lock file ``cache_dir/.<name>.lock``: a second process
    waits, then finds the data set complete and returns it without touching it. A complete data-set
    folder already in the cache is likewise returned as it is (delete it to force a fresh extraction).

    Raises
    ------
    DataSourceError
        If ``cache_dir`` is not a writable folder (the message names ``SEQSAE_CACHE`` and ``SEQSAE_DATA``),
        the download fails or the archive's md5 differs from ``spec.md5``. Nothing partial is left in
        ``cache_dir``: pooch downloads to a temporary file and only moves it into place after the checksum
        passes, and extraction happens in a temporary folder renamed into place when complete.
    """
    from filelock import FileLock

    cache_dir = _writable_cache(spec, Path(cache_dir))
    target = cache_dir / spec.name
    try:
        lock = FileLock(cache_dir / f".{spec.name}.lock")
        lock.acquire()
    except OSError as err:
        raise _not_writable(spec, cache_dir, err) from err
    try:
        if _has_all(target, spec):  # another process filled the cache while this one waited
            return target
        return _download_and_extract(spec, cache_dir, target, progressbar)
    finally:
        lock.release()


def _download_and_extract(spec: DatasetSpec, cache_dir: Path, target: Path, progressbar: bool) -> Path:
    """The body of :func:`fetch_archive`, run while holding the cache lock."""
    import pooch

    try:
        archive = pooch.retrieve(
            url=spec.url,
            known_hash=f"md5:{spec.md5}",
            fname=spec.archive_name,
            path=cache_dir,
            progressbar=progressbar,
        )
    except ValueError as err:  # pooch's checksum mismatch
        raise DataSourceError(
            f"{spec.name}: the archive downloaded from {spec.url} failed its md5 check "
            f"(expected {spec.md5}); nothing was kept. Details: {err}"
        ) from err
    except Exception as err:  # network errors of any kind, or a cache that cannot be written
        if _is_permission_error(err):
            raise _not_writable(spec, cache_dir, err) from err
        raise DataSourceError(
            f"{spec.name}: could not download {spec.url} ({type(err).__name__}: {err}). "
            f"Offline? Point the environment variable {DATA_ENV_VAR} at a folder holding {spec.name}/."
        ) from err
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-extract-", dir=cache_dir))
    except OSError as err:
        raise _not_writable(spec, cache_dir, err) from err
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        extracted = tmp / spec.name
        if not _has_all(extracted, spec):
            raise DataSourceError(_missing_message(extracted, spec, f"the archive {archive}"))
        if target.exists():  # an incomplete folder (the lock guarantees nobody is filling it)
            shutil.rmtree(target)
        os.replace(extracted, target)
    except zipfile.BadZipFile as err:
        Path(archive).unlink(missing_ok=True)
        raise DataSourceError(f"{spec.name}: {archive} is not a valid zip archive ({err}); removed it") from err
    except OSError as err:
        if _is_permission_error(err):
            raise _not_writable(spec, cache_dir, err) from err
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_source(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    spec: DatasetSpec | None = None,
) -> DataSource:
    """Find (or download) the folder of data set ``name`` and say where it came from.

    Introduced in chapter 1 (``chapters/01_data.ipynb``).

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
        folder = _candidate(Path(data_dir).expanduser(), spec)
        if not _has_all(folder, spec):
            raise DataSourceError(_missing_message(folder, spec, "data_dir"))
        return DataSource("argument", folder.resolve())
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        folder = _candidate(Path(env).expanduser(), spec)
        if not _has_all(folder, spec):
            raise DataSourceError(_missing_message(folder, spec, f"${DATA_ENV_VAR}"))
        return DataSource("environment", folder.resolve())
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if _has_all(cache / spec.name, spec):
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

    Introduced in chapter 1 (``chapters/01_data.ipynb``).
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
    full = _candidate(base, parent)
    if _has_all(full, parent):
        return SubsetSource(kind, (full / "ratings.dat").resolve(), full.resolve(), filtered=True)
    return None


def _subset_missing_message(base: Path, spec: SubsetSpec, parent: DatasetSpec, how: str) -> str:
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

    Introduced in chapter 1 (``chapters/01_data.ipynb``).

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
            raise DataSourceError(_subset_missing_message(base, spec, parent, "data_dir"))
        return found
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        base = Path(env).expanduser()
        found = _find_subset(base, spec, parent, "environment")
        if found is None:
            raise DataSourceError(_subset_missing_message(base, spec, parent, f"${DATA_ENV_VAR}"))
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
