"""The download cache: GroupLens' archives fetched with pooch, md5-checked, extracted under a file lock.

Introduced in chapter 1.

A download goes to a temporary file that only replaces the cache entry once its checksum matches, and the
archive is extracted into a temporary folder that is renamed into place when complete, so an interrupted or
corrupt download never leaves a half-written data set behind. Download and extraction hold a lock file
(``<cache>/.<name>.lock``, :mod:`filelock`), so several processes filling an empty cache at once wait for the
first one and then read its copy.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from seqsae_lib.data.catalog import (
    CACHE_ENV_VAR, DATA_ENV_VAR, DataSourceError, DatasetSpec, has_all_files, missing_files_message,
)

__all__ = ["default_cache_dir", "fetch_archive", "sha256_of"]


def default_cache_dir() -> Path:
    """The download cache: ``$SEQSAE_CACHE`` if set, else the user cache folder for ``seqsae``.

    Introduced in chapter 1.
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

    Introduced in chapter 1.

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
        if has_all_files(target, spec):  # another process filled the cache while this one waited
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
        if not has_all_files(extracted, spec):
            raise DataSourceError(missing_files_message(extracted, spec, f"the archive {archive}"))
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
