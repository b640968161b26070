"""Source resolution and the download path, against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest

import seqsae_lib as sl
from seqsae_lib.sources import DatasetSpec, fetch_archive, resolve_source


def _zip_ml100k(data_dir: Path, out: Path) -> bytes:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in ("u.data", "u.item", "u.user", "u.genre"):
            zf.write(data_dir / "ml-100k" / f, f"ml-100k/{f}")
    return out.read_bytes()


@contextmanager
def serve(payload: bytes, *, truncate: bool = False):
    """Serve ``payload`` at /ml-100k.zip; with ``truncate`` the connection dies half-way."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
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
        yield f"http://127.0.0.1:{server.server_address[1]}/ml-100k.zip"
    finally:
        server.shutdown()
        server.server_close()


def _spec(url: str, md5: str) -> DatasetSpec:
    base = sl.DATASETS["ml-100k"]
    return DatasetSpec(name="ml-100k", url=url, md5=md5, required_files=base.required_files, sha256=base.sha256)


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_download_with_good_md5_extracts_and_loads(data_dir, tmp_path, monkeypatch):
    monkeypatch.delenv(sl.sources.DATA_ENV_VAR, raising=False)
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
    monkeypatch.setenv(sl.sources.DATA_ENV_VAR, str(data_dir))
    assert resolve_source("ml-100k", cache_dir=tmp_path).kind == "environment"
    # An environment variable pointing at the wrong place is an error, not a silent download.
    monkeypatch.setenv(sl.sources.DATA_ENV_VAR, str(tmp_path))
    with pytest.raises(sl.DataSourceError, match=r"\$SEQSAE_DATA points at .* lacks u\.data"):
        resolve_source("ml-100k", cache_dir=tmp_path)


def test_offline_without_copy_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv(sl.sources.DATA_ENV_VAR, raising=False)
    with pytest.raises(sl.DataSourceError, match=r"no local copy found .*download=False"):
        resolve_source("ml-100k", cache_dir=tmp_path / "empty", download=False)
