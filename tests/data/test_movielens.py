"""The loaders against GroupLens' published facts, and their errors on damaged copies."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

import seqsae_lib as sl
from seqsae_lib.data.movielens_files import parse_ml1m_ratings, read_ml1m_movies, read_ml1m_users


def test_ml100k_known_facts(ml100k):
    s = ml100k.summary()
    assert s["ratings"] == 100_000
    assert s["users"] == 943
    assert s["items in catalogue"] == 1_682
    assert len(ml100k.genre_names) == 19 and ml100k.genre_names[0] == "unknown"
    assert ml100k.item_genres.shape == (1_682, 19)
    assert ml100k.item_genres[:, 0].sum() == 2  # "unknown" is set on 2 movies
    assert ml100k.interactions.groupby("user_id").size().min() >= 20
    assert ml100k.users.shape[0] == 943 and set(ml100k.users["gender"]) == {"F", "M"}
    assert set(ml100k.source.verified) == {"u.data", "u.item", "u.user", "u.genre"}
    assert ml100k.items.loc[1, "title"] == "Toy Story (1995)" and ml100k.items.loc[1, "year"] == 1995
    assert ml100k.items.loc[1, "genres"] == ("Animation", "Children's", "Comedy")


def test_latin1_titles_decoded(ml100k):
    titles = ml100k.items["title"]
    assert titles.str.contains("é").any()  # e.g. accented titles decode from latin-1
    assert not titles.str.contains("Ã").any()  # no mojibake


def test_ml1m_movies_and_users(data_dir):
    movies = read_ml1m_movies(data_dir / "ml-1m" / "movies.dat")
    users = read_ml1m_users(data_dir / "ml-1m" / "users.dat")
    assert len(movies) == 3_883
    assert len({g for row in movies["genres"] for g in row}) == 18
    assert len(users) == 6_040
    assert set(users["age_group"]) == {"Under 18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"}
    assert movies.loc[1, "title"] == "Toy Story (1995)"


def test_ml1m_partial_ratings_parse_and_are_rejected(data_dir, tmp_path):
    partial = data_dir / "ml-1m-first2999users" / "ratings.dat.gz"
    if not partial.is_file():
        pytest.skip("partial ML-1M ratings not available")
    ratings = parse_ml1m_ratings(partial)
    assert len(ratings) == 487_650
    assert ratings["user_id"].min() == 1 and ratings["user_id"].max() == 2_999
    assert ratings["rating"].between(1, 5).all()
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    for f in ("movies.dat", "users.dat"):
        shutil.copy(data_dir / "ml-1m" / f, folder / f)
    with gzip.open(partial, "rb") as src, open(folder / "ratings.dat", "wb") as dst:
        shutil.copyfileobj(src, dst)
    with pytest.raises(sl.DataSourceError, match=r"ratings\.dat: found 487,650 ratings, expected 1,000,209"):
        sl.load_movielens("ml-1m", tmp_path)


@pytest.fixture
def ml100k_copy(data_dir, tmp_path) -> Path:
    folder = tmp_path / "ml-100k"
    shutil.copytree(data_dir / "ml-100k", folder)
    for f in folder.iterdir():
        f.chmod(0o644)
    return folder


def test_missing_file_names_file_and_place(ml100k_copy):
    (ml100k_copy / "u.item").unlink()
    with pytest.raises(sl.DataSourceError, match=r"lacks u\.item") as err:
        sl.load_movielens("ml-100k", ml100k_copy)
    assert str(ml100k_copy) in str(err.value)


def test_truncated_ratings_are_incomplete(ml100k_copy):
    lines = (ml100k_copy / "u.data").read_bytes().splitlines(keepends=True)
    (ml100k_copy / "u.data").write_bytes(b"".join(lines[:99_000]))
    with pytest.raises(sl.DataSourceError, match=r"u\.data: found 99,000 ratings, expected 100,000 \(incomplete"):
        sl.load_movielens("ml-100k", ml100k_copy)


@pytest.mark.parametrize("bad", [b"196\t242\tthree\t881250949\n", b"196\t242\t3\n", b"196\t242\t3\t1\t9\n"])
def test_unparseable_line_is_named(ml100k_copy, bad):
    lines = (ml100k_copy / "u.data").read_bytes().splitlines(keepends=True)
    lines[4] = bad
    (ml100k_copy / "u.data").write_bytes(b"".join(lines))
    with pytest.raises(sl.DataSourceError, match=r"u\.data, line 5"):
        sl.load_movielens("ml-100k", ml100k_copy)


@pytest.mark.parametrize("bad", [b"196\t12345678901234567890\t3\t881250949\n",
                                 b"196\t242\t3\t99999999999999999999\n"])
def test_huge_integer_is_named_with_its_line(ml100k_copy, bad):
    # A 20-digit id made pandas raise a bare OverflowError ("Overflow") or a ValueError without a line.
    lines = (ml100k_copy / "u.data").read_bytes().splitlines(keepends=True)
    lines[6] = bad
    (ml100k_copy / "u.data").write_bytes(b"".join(lines))
    with pytest.raises(sl.DataSourceError, match=r"u\.data, line 7: field \d is \d{20}, too large for a 64-bit integer"):
        sl.load_movielens("ml-100k", ml100k_copy)


@pytest.mark.parametrize("bad, message", [
    (b"Action 1\n", r"u\.genre, line 2: expected 'name\|index' \(e\.g\. 'Action\|1'\), found 'Action 1'"),
    (b"Action|one\n", r"u\.genre, line 2: the genre index should be a non-negative integer, found 'one'"),
    (b"Action|0\n", r"u\.genre, line 2: genre index 0 is already used on line 1"),
])
def test_malformed_genre_line_is_named(ml100k_copy, bad, message):
    # Used to raise a bare IndexError (no "|") or "invalid literal for int()".
    lines = (ml100k_copy / "u.genre").read_bytes().splitlines(keepends=True)
    lines[1] = bad
    (ml100k_copy / "u.genre").write_bytes(b"".join(lines))
    with pytest.raises(sl.DataSourceError, match=message):
        sl.load_movielens("ml-100k", ml100k_copy)


def test_utf8_reencoded_titles_rejected(ml100k_copy):
    path = ml100k_copy / "u.item"
    path.write_bytes(path.read_bytes().decode("latin-1").encode("utf-8"))
    with pytest.raises(sl.DataSourceError, match=r"u\.item.*UTF-8.*latin-1"):
        sl.load_movielens("ml-100k", ml100k_copy)


def test_modified_file_fails_checksum_unless_unverified(ml100k_copy):
    path = ml100k_copy / "u.data"
    raw = bytearray(path.read_bytes())
    first_tab = raw.index(b"\t", raw.index(b"\n") + 1)  # change a rating digit on line 2: still parseable
    raw[first_tab + 5] = ord("1") if raw[first_tab + 5] != ord("1") else ord("2")
    path.write_bytes(bytes(raw))
    with pytest.raises(sl.DataSourceError, match=r"u\.data: sha256"):
        sl.load_movielens("ml-100k", ml100k_copy)
    data = sl.load_movielens("ml-100k", ml100k_copy, verify=False)
    assert data.num_ratings == 100_000 and "u.data" not in data.source.verified


def test_unknown_item_in_ratings_is_named(ml100k_copy):
    lines = (ml100k_copy / "u.data").read_bytes().splitlines(keepends=True)
    lines[9] = b"196\t99999\t3\t881250949\n"
    (ml100k_copy / "u.data").write_bytes(b"".join(lines))
    with pytest.raises(sl.DataSourceError, match=r"line 10: movie id 99999 is not in the movie file"):
        sl.load_movielens("ml-100k", ml100k_copy, verify=False)


def test_unknown_dataset_name():
    with pytest.raises(sl.DataSourceError, match="unknown data set 'ml-25m'"):
        sl.load_movielens("ml-25m", "/nonexistent")


def test_synthetic_is_deterministic_and_planted():
    a = sl.make_synthetic(num_users=50, num_items=160, num_topics=4, max_length=30, seed=3)
    b = sl.make_synthetic(num_users=50, num_items=160, num_topics=4, max_length=30, seed=3)
    c = sl.make_synthetic(num_users=50, num_items=160, num_topics=4, max_length=30, seed=4)
    assert a.interactions.equals(b.interactions)
    assert not a.interactions.equals(c.interactions)
    assert a.planted is not None
    np.testing.assert_array_equal(a.item_genres.argmax(1), a.planted.item_topic)
    # Users watch mostly inside their preferred topics (start or end preference).
    topic = a.planted.item_topic[a.interactions["item_id"].to_numpy() - 1]
    users = a.interactions["user_id"].to_numpy() - 1
    liked = (a.planted.user_preferences + a.planted.user_end_preferences)[users, topic] > 0
    assert liked.mean() > 0.95
    # No user sees an item twice.
    assert not a.interactions.duplicated(["user_id", "item_id"]).any()


def test_synthetic_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="too few"):
        sl.make_synthetic(num_items=20, num_topics=10, max_length=80)


def test_ml1m_u2999_pipeline(ml1m_u2999):
    """"MovieLens-1M, users 1–2,999" runs through parsing, id checks, genres, sequencing and the split."""
    data = ml1m_u2999
    assert data.num_ratings == 487_650
    assert data.item_genres.shape == (3_883, 18)
    assert set(data.source.verified) == {"movies.dat", "users.dat", "ratings.dat.gz"}
    seq = sl.make_sequences(data)
    assert seq.num_users == 2_999 and seq.name == "ml-1m-u2999"
    split = sl.leave_one_out(seq)
    assert all(t == s[-1] for t, s in zip(split.test_targets, seq.sequences))
    assert split.fingerprint["dataset"] == "ml-1m-u2999"
