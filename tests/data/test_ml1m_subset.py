"""The data set "ml-1m-u2999", MovieLens-1M users 1–2,999 (487,650 ratings): its two sources agree, damage is refused.

The full ML-1M ``ratings.dat`` is not on the development machines; the "full" path is exercised on a stand-in
(the real prefix followed by generated users 3,000+, see ``ml1m_standin`` in conftest.py).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import seqsae_lib as sl
from seqsae_lib.data import resolve_subset_source

PREFIX_SHA256 = "1273c4edfe3c0ff9e3a0a0d55819faeb947da0ad7df3927333b51ebefbeedc3d"


@pytest.fixture(scope="module")
def prefix_text(ml1m_u2999, data_dir) -> bytes:
    """The uncompressed text of the real prefix file (users 1–2,999)."""
    return gzip.decompress((data_dir / "ml-1m-first2999users" / "ratings.dat.gz").read_bytes())


def _subset_layout(root: Path, data_dir: Path, text: bytes, fname: str = "ratings.dat") -> Path:
    """``root/ml-1m-first2999users/<fname>`` holding ``text`` (gzipped for ``.gz``) beside the real ``root/ml-1m/``."""
    own = root / "ml-1m-first2999users"
    own.mkdir(parents=True)
    (own / fname).write_bytes(gzip.compress(text, compresslevel=1) if fname.endswith(".gz") else text)
    (root / "ml-1m").mkdir()
    for f in ("movies.dat", "users.dat"):
        shutil.copy(data_dir / "ml-1m" / f, root / "ml-1m" / f)
        (root / "ml-1m" / f).chmod(0o644)
    return root


def test_spec_and_counts_are_the_published_facts():
    spec = sl.data.SUBSETS["ml-1m-u2999"]
    assert spec.title == "MovieLens-1M, users 1–2,999 (487,650 ratings)"
    assert spec.parent == "ml-1m" and spec.max_user_id == 2_999 and spec.ratings_sha256 == PREFIX_SHA256
    counts = sl.data.movielens_files.EXPECTED_COUNTS["ml-1m-u2999"]
    assert (counts["ratings"], counts["users"], counts["rated_items"]) == (487_650, 2_999, 3_615)


def test_prefix_gz_loads_with_published_counts(ml1m_u2999):
    data = ml1m_u2999
    s = data.summary()
    assert (s["ratings"], s["users"], s["items rated"], s["items in catalogue"]) == (487_650, 2_999, 3_615, 3_883)
    assert data.name == "ml-1m-u2999"
    assert data.description == "MovieLens-1M, users 1–2,999 (487,650 ratings)"
    assert data.interactions["user_id"].min() == 1 and data.interactions["user_id"].max() == 2_999
    # Metadata exactly as "ml-1m" carries it: titles, years, genres, demographics (of the subset's users).
    assert data.items.loc[1, "title"] == "Toy Story (1995)" and data.items.loc[1, "year"] == 1995
    assert data.genre_names == sl.data.movielens_files.ML1M_GENRES and data.item_genres.shape == (3_883, 18)
    assert list(data.users.index) == list(range(1, 3_000))
    assert list(data.users.columns) == ["age", "age_group", "gender", "occupation", "zip_code"]
    assert data.source.path.name == "ml-1m-first2999users" and not data.source.detail
    assert set(data.source.verified) == {"ratings.dat.gz", "movies.dat", "users.dat"}


def test_uncompressed_prefix_loads_the_same(ml1m_u2999, prefix_text, data_dir, tmp_path):
    root = _subset_layout(tmp_path, data_dir, prefix_text)
    data = sl.load_movielens("ml-1m-u2999", root)
    assert data.num_ratings == 487_650 and set(data.source.verified) == {"ratings.dat", "movies.dat", "users.dat"}
    pd.testing.assert_frame_equal(data.interactions, ml1m_u2999.interactions)
    pd.testing.assert_frame_equal(data.users, ml1m_u2999.users)
    # data_dir may also be the subset's folder itself; movies.dat and users.dat come from ml-1m/ beside it.
    assert resolve_subset_source("ml-1m-u2999", root / "ml-1m-first2999users").ratings.name == "ratings.dat"


def _assert_same_sequences(a: sl.data.SequenceData, b: sl.data.SequenceData) -> None:
    assert a.fingerprint() == b.fingerprint()
    assert len(a.sequences) == len(b.sequences)
    assert all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))
    assert all(np.array_equal(x, y) for x, y in zip(a.timestamps, b.timestamps))
    np.testing.assert_array_equal(a.user_ids, b.user_ids)
    np.testing.assert_array_equal(a.item_ids, b.item_ids)
    np.testing.assert_array_equal(a.item_genres, b.item_genres)
    pd.testing.assert_frame_equal(a.items, b.items)
    pd.testing.assert_frame_equal(a.users, b.users)


def test_full_ml1m_filtered_gives_identical_sequences(ml1m_u2999, ml1m_standin):
    """Full file filtered to users <= 2,999 and the subset's own file give the same SequenceData."""
    assert sl.data.movielens_files.EXPECTED_COUNTS["ml-1m-u2999"]["ratings"] == 487_650  # only ml-1m's counts are patched
    full = sl.load_movielens("ml-1m", ml1m_standin)  # the stand-in passes as "ml-1m" (patched counts)
    assert full.interactions["user_id"].max() == 6_040
    data = sl.load_movielens("ml-1m-u2999", ml1m_standin)
    assert data.source.path.name == "ml-1m" and data.source.detail == "filtered to users 1–2,999"
    assert set(data.source.verified) == {"ratings.dat", "movies.dat", "users.dat"}
    assert data.source.describe() == "ml-1m from the argument, filtered to users 1–2,999, 3 files checksum-verified"
    assert data.description == ml1m_u2999.description
    pd.testing.assert_frame_equal(data.interactions, ml1m_u2999.interactions)
    pd.testing.assert_frame_equal(data.items, ml1m_u2999.items)
    pd.testing.assert_frame_equal(data.users, ml1m_u2999.users)
    for kwargs in ({}, {"tie_break": "item", "min_rating": 4}):
        _assert_same_sequences(sl.make_sequences(data, **kwargs), sl.make_sequences(ml1m_u2999, **kwargs))


def test_subset_file_is_preferred_over_the_full_release(ml1m_standin, data_dir, tmp_path):
    shutil.copytree(ml1m_standin / "ml-1m", tmp_path / "ml-1m")
    (tmp_path / "ml-1m-first2999users").mkdir()
    shutil.copy(data_dir / "ml-1m-first2999users" / "ratings.dat.gz", tmp_path / "ml-1m-first2999users")
    found = resolve_subset_source("ml-1m-u2999", tmp_path)
    assert not found.filtered and found.ratings.name == "ratings.dat.gz"
    (tmp_path / "ml-1m-first2999users" / "ratings.dat.gz").unlink()
    found = resolve_subset_source("ml-1m-u2999", tmp_path)
    assert found.filtered and found.ratings == (tmp_path / "ml-1m" / "ratings.dat").resolve()
    # The complete ml-1m folder itself works as data_dir too.
    assert resolve_subset_source("ml-1m-u2999", tmp_path / "ml-1m").filtered


def test_resolution_order_and_missing_files(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(sl.data.sources.DATA_ENV_VAR, str(tmp_path / "nowhere"))
    assert resolve_subset_source("ml-1m-u2999", data_dir).kind == "argument"  # data_dir wins
    monkeypatch.setenv(sl.data.sources.DATA_ENV_VAR, str(data_dir))
    found = resolve_subset_source("ml-1m-u2999", cache_dir=tmp_path)
    assert found.kind == "environment" and not found.filtered
    # Pointing at the wrong place is an error naming what is missing, not a silent download.
    monkeypatch.setenv(sl.data.sources.DATA_ENV_VAR, str(tmp_path))
    with pytest.raises(sl.DataSourceError, match=r"\$SEQSAE_DATA points at .* holds neither .*ml-1m-first2999users"):
        resolve_subset_source("ml-1m-u2999", cache_dir=tmp_path)
    (tmp_path / "ml-1m-first2999users").mkdir()
    shutil.copy(data_dir / "ml-1m-first2999users" / "ratings.dat.gz", tmp_path / "ml-1m-first2999users")
    with pytest.raises(sl.DataSourceError, match=r"ratings\.dat\.gz, but .*ml-1m lacks movies\.dat, users\.dat"):
        sl.load_movielens("ml-1m-u2999", tmp_path)
    # Without data_dir and environment: the cache, else (download=False) an error saying where it looked.
    monkeypatch.delenv(sl.data.sources.DATA_ENV_VAR)
    with pytest.raises(sl.DataSourceError, match=r"ml-1m-u2999: no local copy found .*download=False"):
        resolve_subset_source("ml-1m-u2999", cache_dir=tmp_path / "empty", download=False)
    shutil.copytree(data_dir / "ml-1m", tmp_path / "ml-1m")
    assert resolve_subset_source("ml-1m-u2999", cache_dir=tmp_path, download=False).kind == "cache"


def test_truncated_prefix_is_refused(prefix_text, data_dir, tmp_path):
    lines = prefix_text.splitlines(keepends=True)
    root = _subset_layout(tmp_path, data_dir, b"".join(lines[:487_000]))
    expected = r"ratings\.dat: found 487,000 ratings, expected 487,650 \(incomplete"
    with pytest.raises(sl.DataSourceError, match=expected) as err:
        sl.load_movielens("ml-1m-u2999", root)
    assert str(root / "ml-1m-first2999users" / "ratings.dat") in str(err.value)


def test_cut_gzip_is_refused(data_dir, tmp_path):
    root = _subset_layout(tmp_path, data_dir, b"")
    (root / "ml-1m-first2999users" / "ratings.dat").unlink()
    raw = (data_dir / "ml-1m-first2999users" / "ratings.dat.gz").read_bytes()
    (root / "ml-1m-first2999users" / "ratings.dat.gz").write_bytes(raw[: len(raw) // 2])  # an interrupted copy
    with pytest.raises(sl.DataSourceError, match=r"ratings\.dat\.gz: cannot be read .*truncated"):
        sl.load_movielens("ml-1m-u2999", root)


def test_modified_prefix_fails_its_sha256_unless_unverified(prefix_text, data_dir, tmp_path):
    modified = prefix_text.replace(b"\n1::661::3::", b"\n1::661::4::", 1)  # line 2: one rating changed
    assert modified != prefix_text and modified.count(b"\n") == prefix_text.count(b"\n")
    root = _subset_layout(tmp_path, data_dir, modified, "ratings.dat.gz")
    with pytest.raises(
        sl.DataSourceError,
        match=r"ratings\.dat\.gz: sha256 of the uncompressed text is [0-9a-f]{16}…, expected 1273c4edfe3c0ff9…",
    ) as err:
        sl.load_movielens("ml-1m-u2999", root)
    assert str(root / "ml-1m-first2999users") in str(err.value)
    data = sl.load_movielens("ml-1m-u2999", root, verify=False)
    assert data.num_ratings == 487_650 and data.interactions["rating"].iloc[1] == 4 and not data.source.verified


def test_prefix_with_a_foreign_user_is_refused(prefix_text, data_dir, tmp_path):
    lines = prefix_text.splitlines(keepends=True)
    lines[-1] = b"3000" + lines[-1][len(b"2999"):]  # same line count, but a user outside 1..2,999
    root = _subset_layout(tmp_path, data_dir, b"".join(lines))
    with pytest.raises(sl.DataSourceError, match=r"ratings\.dat, line 487650: user id 3000 is above 2,999"):
        sl.load_movielens("ml-1m-u2999", root)


def test_modified_full_release_fails_the_subset_sha256(ml1m_standin, tmp_path):
    shutil.copytree(ml1m_standin / "ml-1m", tmp_path / "ml-1m")
    path = tmp_path / "ml-1m" / "ratings.dat"
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"\n1::661::3::", b"\n1::661::4::", 1))
    with pytest.raises(
        sl.DataSourceError,
        match=r"ml-1m/ratings\.dat: sha256 of the first 487,650 lines \(users 1–2,999\) is [0-9a-f]{16}…, "
        r"expected 1273c4edfe3c0ff9…",
    ):
        sl.load_movielens("ml-1m-u2999", tmp_path)


def test_full_release_out_of_user_order_is_refused(ml1m_standin, tmp_path):
    """The subset's ratings must be the full file's first lines, as in GroupLens' release (sorted by user)."""
    shutil.copytree(ml1m_standin / "ml-1m", tmp_path / "ml-1m")
    path = tmp_path / "ml-1m" / "ratings.dat"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([lines[-1], *lines[:-1]]))  # a user 6,040 line moved to the top
    with pytest.raises(sl.DataSourceError, match=r"ratings of users 1–2,999 are not the file's first 487,650 lines"):
        sl.load_movielens("ml-1m-u2999", tmp_path)
    assert sl.load_movielens("ml-1m-u2999", tmp_path, verify=False).num_ratings == 487_650
