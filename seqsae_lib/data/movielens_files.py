"""Parse and validate GroupLens' MovieLens files: the readers behind :func:`~seqsae_lib.data.movielens.load_movielens`.

Introduced in chapter 1.

Every file is parsed with pandas (fast path); when pandas fails or produces missing values, a slow
line-by-line scan finds the first bad line so the error can name the file and the line number.
Counts are checked against GroupLens' releases (an incomplete ratings file is an error), the files'
encoding is checked (GroupLens' titles are latin-1), and where the sha256 of a file is known it is
checked last, so a modified copy never passes silently.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from seqsae_lib.data.cache import sha256_of
from seqsae_lib.data.catalog import DATASETS, SUBSETS, DataSourceError, SubsetSpec
from seqsae_lib.data.sources import SubsetSource

__all__ = [
    "EXPECTED_COUNTS",
    "DESCRIPTIONS",
    "parse_ml100k_ratings",
    "parse_ml100k_genres",
    "parse_ml1m_ratings",
    "read_ml100k",
    "read_ml1m",
    "read_ml1m_movies",
    "read_ml1m_users",
    "read_ml1m_subset",
]

EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "ml-100k": {"ratings": 100_000, "users": 943, "items": 1_682, "genres": 19},
    "ml-1m": {"ratings": 1_000_209, "users": 6_040, "items": 3_883, "rated_items": 3_706, "genres": 18},
    "ml-1m-u2999": {"ratings": 487_650, "users": 2_999, "items": 3_883, "rated_items": 3_615, "genres": 18},
}
"""Known facts of GroupLens' releases (and of the subsets in :data:`seqsae_lib.data.catalog.SUBSETS`), used to
validate a local copy. ``"items"`` counts the catalogue (``movies.dat``), ``"rated_items"`` the movies rated."""

DESCRIPTIONS: dict[str, str] = {
    "ml-100k": "MovieLens-100K (100,000 ratings)",
    "ml-1m": "MovieLens-1M (1,000,209 ratings)",
    **{name: spec.title for name, spec in SUBSETS.items()},
}
"""What each data set is called wherever it is shown (:attr:`~seqsae_lib.data.movielens.RatingsData.description`)."""

ML1M_GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
    "Western",
)
ML1M_AGE_GROUPS: dict[int, str] = {
    1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+",
}
ML1M_OCCUPATIONS: tuple[str, ...] = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)

# --------------------------------------------------------------------------------------------- reading


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataSourceError(f"missing file {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as err:
        raise DataSourceError(f"{path}: cannot be read ({err}); corrupt or truncated?") from err


def _decode_latin1(raw: bytes, path: Path) -> str:
    """Decode GroupLens' latin-1 text, rejecting a copy that was re-encoded as UTF-8."""
    if re.search(rb"[\x80-\xff]", raw):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            raise DataSourceError(
                f"{path}: the file is UTF-8 encoded, but GroupLens' release is latin-1 (ISO-8859-1); "
                "re-encoded copies garble titles such as 'Café'. Use the original file."
            )
    return raw.decode("latin-1")


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _first_bad_line(text: str, path: Path, n_fields: int, sep: str, int_fields: tuple[int, ...]) -> str:
    """Line-by-line scan describing the first malformed line (1-based), or '' if none is found."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(sep)
        if len(parts) != n_fields:
            return f"{path}, line {number}: expected {n_fields} {sep!r}-separated fields, found {len(parts)}: {line[:80]!r}"
        for j in int_fields:
            field = parts[j].strip()
            if not field.lstrip("-").isdigit():
                return f"{path}, line {number}: field {j + 1} should be an integer, found {parts[j][:30]!r}"
            if not _INT64_MIN <= int(field) <= _INT64_MAX:
                return (f"{path}, line {number}: field {j + 1} is {field[:30]}, too large for a 64-bit integer "
                        "(ids, ratings and timestamps are small integers)")
    return ""


def _parse_table(
    text: str,
    path: Path,
    names: list[str],
    sep: str,
    int_fields: tuple[int, ...],
) -> pd.DataFrame:
    """Parse a separator-delimited table; on any problem, report the first bad line number."""
    dtype = {names[j]: "int64" for j in int_fields}
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=sep, header=None, names=names, dtype=dtype, engine="c",
            keep_default_na=False, na_filter=False, quoting=3,
        )
        if len(frame.columns) != len(names):
            raise ValueError("column count")
    except (ValueError, OverflowError, pd.errors.ParserError) as err:  # OverflowError: a 20-digit "integer"
        detail = _first_bad_line(text, path, len(names), sep, int_fields)
        raise DataSourceError(detail or f"{path}: cannot be parsed ({err})") from err
    # Short lines leave empty strings in text columns instead of failing: scan such (small) files fully.
    if len(int_fields) < len(names):
        detail = _first_bad_line(text, path, len(names), sep, int_fields)
        if detail:
            raise DataSourceError(detail)
    return frame


def _check_count(path: Path, what: str, found: int, expected: int) -> None:
    if found != expected:
        hint = " (incomplete or truncated file?)" if found < expected else ""
        raise DataSourceError(f"{path}: found {found:,} {what}, expected {expected:,}{hint}")


def _check_sha256(folder: Path, name: str) -> tuple[str, ...]:
    verified = []
    for fname, digest in DATASETS[name].sha256:
        path = folder / fname
        if path.is_file():
            got = sha256_of(path)
            if got != digest:
                raise DataSourceError(
                    f"{path}: sha256 {got[:16]}… differs from GroupLens' release ({digest[:16]}…); "
                    "the file was modified. Re-download it, or pass verify=False to read it anyway."
                )
            verified.append(fname)
    return tuple(verified)


_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


def _years(titles: pd.Series, fallback: pd.Series | None = None) -> pd.Series:
    year = titles.str.extract(_YEAR_IN_TITLE, expand=False)
    if fallback is not None:
        year = year.fillna(fallback.str.extract(r"(\d{4})$", expand=False))
    return pd.to_numeric(year, errors="coerce").astype("Int64")


def parse_ml100k_ratings(path: Path) -> pd.DataFrame:
    """Parse ML-100k ``u.data`` (tab-separated user, item, rating, unix time), in file order.

    Introduced in chapter 1.
    """
    text = _decode_latin1(_read_bytes(path), path)
    cols = ["user_id", "item_id", "rating", "timestamp"]
    return _parse_table(text, path, cols, "\t", (0, 1, 2, 3))


def parse_ml1m_ratings(path: Path) -> pd.DataFrame:
    """Parse ML-1M ``ratings.dat`` (``::``-separated user, movie, rating, unix time), in file order.

    A ``.gz`` path is decompressed on the fly. No count check happens here: :func:`read_ml1m` checks
    that the file is complete.

    Introduced in chapter 1.
    """
    text = _decode_latin1(_read_bytes(path), path).replace("::", "\t")
    cols = ["user_id", "item_id", "rating", "timestamp"]
    return _parse_table(text, path, cols, "\t", (0, 1, 2, 3))


def parse_ml100k_genres(path: Path) -> tuple[str, ...]:
    """Parse ML-100k ``u.genre`` (``name|index`` lines) into the genre names in index order.

    Introduced in chapter 1.

    Raises
    ------
    DataSourceError
        Naming the file and the line: a line without ``|``, an index that is not an integer, an index used
        twice.
    """
    text = _decode_latin1(_read_bytes(path), path)
    rows: dict[int, tuple[str, int]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, index = line.partition("|")
        if not sep:
            raise DataSourceError(f"{path}, line {number}: expected 'name|index' (e.g. 'Action|1'), found {line[:80]!r}")
        if not index.strip().isdigit():
            raise DataSourceError(
                f"{path}, line {number}: the genre index should be a non-negative integer, found {index[:30]!r}"
            )
        i = int(index)
        if i in rows:
            raise DataSourceError(f"{path}, line {number}: genre index {i} is already used on line {rows[i][1]}")
        rows[i] = (name, number)
    return tuple(rows[i][0] for i in sorted(rows))


def read_ml100k(folder: Path, *, verify: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...], np.ndarray, pd.DataFrame, tuple[str, ...]]:
    """Read and validate the ML-100k files in ``folder``; return interactions, items, genres, users.

    Introduced in chapter 1.
    """
    folder = Path(folder)
    expected = EXPECTED_COUNTS["ml-100k"]
    ratings = parse_ml100k_ratings(folder / "u.data")
    _check_count(folder / "u.data", "ratings", len(ratings), expected["ratings"])

    genre_path = folder / "u.genre"
    genre_names = parse_ml100k_genres(genre_path)
    _check_count(genre_path, "genres", len(genre_names), expected["genres"])

    item_path = folder / "u.item"
    item_text = _decode_latin1(_read_bytes(item_path), item_path)
    cols = ["item_id", "title", "release_date", "video_date", "url", *genre_names]
    items = _parse_table(item_text, item_path, cols, "|", (0, *range(5, 5 + len(genre_names))))
    _check_count(item_path, "movies", len(items), expected["items"])
    multi_hot = items[list(genre_names)].to_numpy(dtype=np.uint8)
    if multi_hot.max() > 1 or multi_hot.min() < 0:
        raise DataSourceError(f"{item_path}: genre flags must be 0 or 1")
    items = items.set_index("item_id")
    items["year"] = _years(items["title"], items["release_date"])
    items["genres"] = [tuple(g for g, f in zip(genre_names, row) if f) for row in multi_hot]
    items = items[["title", "year", "genres"]]

    user_path = folder / "u.user"
    users = _parse_table(
        _decode_latin1(_read_bytes(user_path), user_path), user_path,
        ["user_id", "age", "gender", "occupation", "zip_code"], "|", (0, 1),
    ).set_index("user_id")
    _check_count(user_path, "users", len(users), expected["users"])
    _check_ids(ratings, items.index, users.index, folder / "u.data")
    verified = _check_sha256(folder, "ml-100k") if verify else ()
    return ratings, items, genre_names, multi_hot, users, verified


def read_ml1m(folder: Path, *, verify: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...], np.ndarray, pd.DataFrame, tuple[str, ...]]:
    """Read and validate the ML-1M files in ``folder``; return interactions, items, genres, users.

    Introduced in chapter 1.
    """
    folder = Path(folder)
    expected = EXPECTED_COUNTS["ml-1m"]
    ratings_path = folder / "ratings.dat"
    ratings = parse_ml1m_ratings(ratings_path)
    _check_count(ratings_path, "ratings", len(ratings), expected["ratings"])
    items = read_ml1m_movies(folder / "movies.dat")
    users = read_ml1m_users(folder / "users.dat")
    _check_ids(ratings, items.index, users.index, ratings_path)
    n_rated = ratings["item_id"].nunique()
    _check_count(ratings_path, "rated movies", n_rated, expected["rated_items"])
    genre_names = ML1M_GENRES
    multi_hot = np.array([[g in row for g in genre_names] for row in items["genres"]], dtype=np.uint8)
    verified = _check_sha256(folder, "ml-1m") if verify else ()
    return ratings, items, genre_names, multi_hot, users, verified


def read_ml1m_movies(path: Path) -> pd.DataFrame:
    """Parse and validate ML-1M ``movies.dat`` (3,883 movies); index ``item_id``.

    Introduced in chapter 1.
    """
    text = _decode_latin1(_read_bytes(path), path).replace("::", "\t")
    items = _parse_table(text, path, ["item_id", "title", "genre_string"], "\t", (0,))
    _check_count(path, "movies", len(items), EXPECTED_COUNTS["ml-1m"]["items"])
    genres = items["genre_string"].str.split("|")
    unknown = sorted({g for row in genres for g in row} - set(ML1M_GENRES))
    if unknown:
        raise DataSourceError(f"{path}: unknown genre names {unknown}; expected only {list(ML1M_GENRES)}")
    items["genres"] = [tuple(g for g in ML1M_GENRES if g in row) for row in genres]
    items["year"] = _years(items["title"])
    return items.set_index("item_id")[["title", "year", "genres"]]


def read_ml1m_users(path: Path) -> pd.DataFrame:
    """Parse and validate ML-1M ``users.dat`` (6,040 users); index ``user_id``; codes mapped to names.

    Introduced in chapter 1.
    """
    text = _decode_latin1(_read_bytes(path), path).replace("::", "\t")
    users = _parse_table(text, path, ["user_id", "gender", "age", "occupation", "zip_code"], "\t", (0, 2, 3))
    _check_count(path, "users", len(users), EXPECTED_COUNTS["ml-1m"]["users"])
    bad_age = ~users["age"].isin(list(ML1M_AGE_GROUPS))
    if bad_age.any():
        row = int(np.flatnonzero(bad_age.to_numpy())[0])
        raise DataSourceError(f"{path}, line {row + 1}: unknown age code {users['age'].iloc[row]}")
    bad_occ = ~users["occupation"].between(0, len(ML1M_OCCUPATIONS) - 1)
    if bad_occ.any():
        row = int(np.flatnonzero(bad_occ.to_numpy())[0])
        raise DataSourceError(f"{path}, line {row + 1}: unknown occupation code {users['occupation'].iloc[row]}")
    users["age_group"] = users["age"].map(ML1M_AGE_GROUPS)
    users["occupation"] = [ML1M_OCCUPATIONS[c] for c in users["occupation"]]
    return users.set_index("user_id")[["age", "age_group", "gender", "occupation", "zip_code"]]


def read_ml1m_subset(
    source: SubsetSource, name: str = "ml-1m-u2999", *, verify: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...], np.ndarray, pd.DataFrame, tuple[str, ...]]:
    """Read and validate an ML-1M subset (e.g. users 1–2,999); return interactions, items, genres, users.

    Introduced in chapter 1.

    Parameters
    ----------
    source
        From :func:`seqsae_lib.data.sources.resolve_subset_source`: either the subset's own ratings file
        (``ratings.dat.gz`` or ``ratings.dat``), or the full ML-1M ``ratings.dat`` (``source.filtered``),
        which is first validated as ML-1M (:func:`read_ml1m`) and then filtered to the subset's users.
    name
        A key of :data:`seqsae_lib.data.catalog.SUBSETS`; its counts are ``EXPECTED_COUNTS[name]``.
    verify
        Check the sha256 of ``movies.dat``, ``users.dat`` and of the subset's ratings text (the uncompressed
        file, or the full file's first lines, which must then be exactly the subset's ratings).

    Returns
    -------
    tuple
        As :func:`read_ml1m`: ratings in file order, the full catalogue of 3,883 movies, the 18 genre
        names, the movies' multi-hot genres, the subset's users with their demographics, verified files.

    Raises
    ------
    DataSourceError
        Naming the file and what was expected: counts (ratings, users, rated movies), user ids above the
        subset's, the sha256 of the ratings text, and everything :func:`read_ml1m` checks.
    """
    spec = SUBSETS[name]
    expected = EXPECTED_COUNTS[name]
    path = source.ratings
    in_subset: np.ndarray | None = None
    if source.filtered:
        full, items, genre_names, multi_hot, users, verified = read_ml1m(source.metadata, verify=verify)
        in_subset = full["user_id"].to_numpy() <= spec.max_user_id
        ratings = full[in_subset].reset_index(drop=True)
        _check_count(path, f"ratings of users 1–{spec.max_user_id:,}", len(ratings), expected["ratings"])
    else:
        ratings = parse_ml1m_ratings(path)
        _check_count(path, "ratings", len(ratings), expected["ratings"])
        items = read_ml1m_movies(source.metadata / "movies.dat")
        users = read_ml1m_users(source.metadata / "users.dat")
        _check_ids(ratings, items.index, users.index, path)
        above = ratings["user_id"].to_numpy() > spec.max_user_id
        if above.any():
            row = int(np.flatnonzero(above)[0])
            raise DataSourceError(
                f"{path}, line {row + 1}: user id {ratings['user_id'].iloc[row]} is above {spec.max_user_id:,}; "
                f"expected only the ratings of users 1–{spec.max_user_id:,} ({spec.title})"
            )
        genre_names = ML1M_GENRES
        multi_hot = np.array([[g in row for g in genre_names] for row in items["genres"]], dtype=np.uint8)
        verified = ()
    _check_count(path, "users", int(ratings["user_id"].nunique()), expected["users"])
    _check_count(path, "rated movies", int(ratings["item_id"].nunique()), expected["rated_items"])
    users = users[users.index <= spec.max_user_id]
    if verify:
        if not source.filtered:
            verified = _check_sha256(source.metadata, spec.parent)
        verified = (*verified, _check_subset_sha256(path, spec, len(ratings), in_subset))
    return ratings, items, genre_names, multi_hot, users, verified


def _check_subset_sha256(path: Path, spec: SubsetSpec, n_lines: int, in_subset: np.ndarray | None) -> str:
    """Check the sha256 of the subset's ratings text: the whole (uncompressed) file, or the first
    ``n_lines`` lines of the full file, which must be exactly the rows ``in_subset``. Returns the file name."""
    raw = _read_bytes(path)
    if in_subset is None:
        text, which = raw, ("the uncompressed text" if path.suffix == ".gz" else "the text")
    else:
        if not in_subset[:n_lines].all():
            raise DataSourceError(
                f"{path}: the ratings of users 1–{spec.max_user_id:,} are not the file's first {n_lines:,} lines; "
                "expected GroupLens' order (sorted by user id). The file was modified."
            )
        newlines = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 0x0A)
        end = int(newlines[n_lines - 1]) + 1 if len(newlines) >= n_lines else len(raw)
        text, which = memoryview(raw)[:end], f"the first {n_lines:,} lines (users 1–{spec.max_user_id:,})"
    got = hashlib.sha256(text).hexdigest()
    if got != spec.ratings_sha256:
        raise DataSourceError(
            f"{path}: sha256 of {which} is {got[:16]}…, expected {spec.ratings_sha256[:16]}… "
            f"({spec.title}); the file was modified. Use an unmodified copy, or pass verify=False to read it anyway."
        )
    return path.name


def _check_ids(ratings: pd.DataFrame, item_ids: pd.Index, user_ids: pd.Index, path: Path) -> None:
    for col, known, what in (("item_id", item_ids, "movie"), ("user_id", user_ids, "user")):
        unknown = ~ratings[col].isin(known)
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0])
            raise DataSourceError(
                f"{path}, line {row + 1}: {what} id {ratings[col].iloc[row]} is not in the {what} file"
            )
    bad = ~ratings["rating"].between(1, 5)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataSourceError(f"{path}, line {row + 1}: rating {ratings['rating'].iloc[row]} outside 1..5")
