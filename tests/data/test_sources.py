"""Source resolution and the download path, against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import multiprocessing
import os
import threading
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest

import seqsae_lib as sl
from seqsae_lib.data import DatasetSpec, resolve_source, resolve_subset_source
from seqsae_lib.data.cache import fetch_archive


def _zip_ml100k(data_dir: Path, out: Path) -> bytes:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in ("u.data", "u.item", "u.user", "u.genre"):
            zf.write(data_dir / "ml-100k" / f, f"ml-100k/{f}")
    return out.read_bytes()


@contextmanager
def serve(payload: bytes, *, truncate: bool = False, fname: str = "ml-100k.zip", delay: float = 0.0,
          requests: list | None = None):
    """Serve ``payload`` at /``fname``; with ``truncate`` the connection dies half-way.

    ``delay`` seconds pass before each answer (so concurrent downloads overlap); each request's path is
    appended to ``requests``.
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if requests is not None:
                requests.append(self.path)
            time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2] if truncate else payload)
            if truncate:
                self.wfile.flush()
                self.connection.close()

        def log_message(self, *args):  # keep test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{fname}"
    finally:
        server.shutdown()
        server.server_close()


def _spec(url: str, md5: str) -> DatasetSpec:
    base = sl.DATASETS["ml-100k"]
    return DatasetSpec(name="ml-100k", url=url, md5=md5, required_files=base.required_files, sha256=base.sha256)


def _leftovers(cache: Path) -> list[str]:
    """What a download left in the cache, besides the lock file that serialises downloads (kept on purpose)."""
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) if cache.exists() else []


def test_download_with_good_md5_extracts_and_loads(data_dir, tmp_path, monkeypatch):
    monkeypatch.delenv(sl.data.sources.DATA_ENV_VAR, raising=False)
    payload = _zip_ml100k(data_dir, tmp_path / "src.zip")
    cache = tmp_path / "cache"
    with serve(payload) as url:
        source = resolve_source("ml-100k", cache_dir=cache, spec=_spec(url, hashlib.md5(payload).hexdigest()))
    assert source.kind == "download"
    assert (cache / "ml-100k" / "u.data").read_bytes() == (data_dir / "ml-100k" / "u.data").read_bytes()
    assert _leftovers(cache) == ["ml-100k", "ml-100k.zip"]  # no temporary folders left
    # The second time, the cache answers without any server.
    assert resolve_source("ml-100k", cache_dir=cache, download=False).kind == "cache"
    data = sl.load_movielens("ml-100k", cache_dir=cache, download=False)
    assert data.num_ratings == 100_000 and data.source.kind == "cache"


def test_download_with_bad_md5_raises_and_leaves_nothing(data_dir, tmp_path):
    payload = _zip_ml100k(data_dir, tmp_path / "src.zip")
    cache = tmp_path / "cache"
    with serve(payload) as url:
        with pytest.raises(sl.DataSourceError, match="failed its md5 check"):
            fetch_archive(_spec(url, "0" * 32), cache)
    assert _leftovers(cache) == []


def test_interrupted_download_leaves_nothing(data_dir, tmp_path):
    payload = _zip_ml100k(data_dir, tmp_path / "src.zip")
    cache = tmp_path / "cache"
    with serve(payload, truncate=True) as url:
        with pytest.raises(sl.DataSourceError):
            fetch_archive(_spec(url, hashlib.md5(payload).hexdigest()), cache)
    assert _leftovers(cache) == []


def test_resolution_order(data_dir, tmp_path, monkeypatch):
    # An explicit folder wins, as the data-set folder itself or as its parent.
    assert resolve_source("ml-100k", data_dir).kind == "argument"
    assert resolve_source("ml-100k", data_dir / "ml-100k").path == (data_dir / "ml-100k").resolve()
    # Then the environment variable.
    monkeypatch.setenv(sl.data.sources.DATA_ENV_VAR, str(data_dir))
    assert resolve_source("ml-100k", cache_dir=tmp_path).kind == "environment"
    # An environment variable pointing at the wrong place is an error, not a silent download.
    monkeypatch.setenv(sl.data.sources.DATA_ENV_VAR, str(tmp_path))
    with pytest.raises(sl.DataSourceError, match=r"\$SEQSAE_DATA points at .* lacks u\.data"):
        resolve_source("ml-100k", cache_dir=tmp_path)


def test_offline_without_copy_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv(sl.data.sources.DATA_ENV_VAR, raising=False)
    with pytest.raises(sl.DataSourceError, match=r"no local copy found .*download=False"):
        resolve_source("ml-100k", cache_dir=tmp_path / "empty", download=False)


def test_subset_download_fetches_the_full_release_and_filters_it(ml1m_standin, tmp_path, monkeypatch):
    """"ml-1m-u2999" with no local copy downloads ml-1m.zip (md5-checked) and filters it to users <= 2,999.

    The archive served is a stand-in for GroupLens' ml-1m.zip (the real prefix plus generated users 3,000+).
    """
    monkeypatch.delenv(sl.data.sources.DATA_ENV_VAR, raising=False)
    out = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for f in ("ratings.dat", "movies.dat", "users.dat"):
            zf.write(ml1m_standin / "ml-1m" / f, f"ml-1m/{f}")
    payload = out.read_bytes()
    cache = tmp_path / "cache"
    base = sl.DATASETS["ml-1m"]
    with serve(payload, fname="ml-1m.zip") as url:
        spec = DatasetSpec(name="ml-1m", url=url, md5=hashlib.md5(payload).hexdigest(),
                           required_files=base.required_files, sha256=base.sha256)
        found = resolve_subset_source("ml-1m-u2999", cache_dir=cache, parent_spec=spec)
    assert found.kind == "download" and found.filtered and found.ratings == (cache / "ml-1m" / "ratings.dat").resolve()
    assert _leftovers(cache) == ["ml-1m", "ml-1m.zip"]
    data = sl.load_movielens("ml-1m-u2999", cache_dir=cache, download=False)
    assert data.source.kind == "cache" and data.source.detail == "filtered to users 1–2,999"
    assert data.num_ratings == 487_650 and data.interactions["user_id"].max() == 2_999


def _load_into_cache(cache: Path, barrier, results) -> None:
    """One process of the concurrent-fill test: load ML-100k through the (empty) cache, report file hashes."""
    try:
        barrier.wait(timeout=60)
        data = sl.load_movielens("ml-100k", cache_dir=cache)
        folder = data.source.path
        digests = {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in sl.DATASETS["ml-100k"].required_files}
        results.put(("ok", data.source.kind, data.num_ratings, digests))
    except BaseException as err:  # noqa: BLE001 (reported to the parent, which fails the test)
        results.put(("error", f"{type(err).__name__}: {err}", None, None))


def test_concurrent_processes_filling_an_empty_cache_all_succeed(data_dir, tmp_path, monkeypatch):
    # Four processes load the same data set into an empty cache at the same moment. Without the cache
    # lock each downloaded and extracted, and the later finishers deleted the folder the first one was
    # reading ("missing file .../ml-100k/u.data").
    monkeypatch.delenv(sl.data.sources.DATA_ENV_VAR, raising=False)
    payload = _zip_ml100k(data_dir, tmp_path / "src.zip")
    cache = tmp_path / "cache"
    requests: list[str] = []
    ctx = multiprocessing.get_context("fork")  # the children inherit the patched registry below
    with serve(payload, delay=0.3, requests=requests) as url:
        monkeypatch.setitem(sl.data.sources.DATASETS, "ml-100k", _spec(url, hashlib.md5(payload).hexdigest()))
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_load_into_cache, args=(cache, barrier, results)) for _ in range(4)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=30)
    errors = [o[1] for o in outcomes if o[0] != "ok"]
    assert not errors, errors
    assert all(o[2] == 100_000 for o in outcomes)
    assert len({tuple(sorted(o[3].items())) for o in outcomes}) == 1  # identical files for everyone
    assert {o[1] for o in outcomes} <= {"download", "cache"}
    assert len(requests) == 1  # one download, the other three waited and read its copy
    assert _leftovers(cache) == ["ml-100k", "ml-100k.zip"]


def test_unwritable_cache_says_so_not_offline(tmp_path, monkeypatch):
    monkeypatch.delenv(sl.data.sources.DATA_ENV_VAR, raising=False)
    spec = _spec("http://127.0.0.1:9/ml-100k.zip", "0" * 32)  # never contacted
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(sl.DataSourceError, match=r"cache .*a-file/cache is not a writable folder") as info:
        resolve_source("ml-100k", cache_dir=blocker / "cache", spec=spec)
    assert "SEQSAE_CACHE" in str(info.value) and "SEQSAE_DATA" in str(info.value)
    assert "Offline" not in str(info.value)
    # A folder that exists but may not be written (simulated: the tests run as root).
    cache = tmp_path / "read-only"
    cache.mkdir()
    real_access = os.access
    monkeypatch.setattr(sl.data.sources.os, "access",
                        lambda path, mode, **kw: False if Path(path) == cache else real_access(path, mode, **kw))
    with pytest.raises(sl.DataSourceError, match=r"read-only is not a writable folder.*SEQSAE_CACHE.*SEQSAE_DATA"):
        fetch_archive(spec, cache)
    assert _leftovers(cache) == [] and not any(cache.iterdir())
