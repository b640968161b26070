"""Concepts built from the catalogue's item metadata: genres, decades, year ranges, popularity, any attribute.

Introduced in chapter 5. Each function returns a
:class:`~seqsae_lib.steering.concepts.Concept`; :func:`get_concept` finds one by name (``"Comedy"``,
``"1970s"``, ``"popular"``, ``"long_tail"``) and :func:`known_concepts` lists the names a data set offers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd

from seqsae_lib.data import SequenceData
from seqsae_lib.steering.concepts import Concept, UnknownConceptError
from seqsae_lib.utils.checks import check_float, check_int

__all__ = [
    "genre_concept",
    "decade_concept",
    "year_range_concept",
    "popularity_concept",
    "attribute_concept",
    "known_concepts",
    "get_concept",
    "table_concepts",
]


def _check_seq_data(seq_data: Any) -> SequenceData:
    if not isinstance(seq_data, SequenceData):
        raise TypeError(f"seq_data must be a SequenceData, got {type(seq_data).__name__}")
    return seq_data


def _nonempty(concept: Concept, hint: str) -> Concept:
    if concept.n_items == 0:
        raise ValueError(f"concept {concept.name!r} contains no item{hint}")
    return concept


def genre_concept(seq_data: SequenceData, genre: str) -> Concept:
    """Items of one genre (on synthetic data: one planted topic).

    Introduced in chapter 5. The name is matched exactly, then
    case-insensitively (``"comedy"`` finds ``"Comedy"``).

    Raises
    ------
    UnknownConceptError
        The genre does not exist (the message lists the known genres).
    """
    seq_data = _check_seq_data(seq_data)
    names = list(seq_data.genre_names)
    if genre in names:
        g = names.index(genre)
    else:
        lower = [n.lower() for n in names]
        key = genre.lower() if isinstance(genre, str) else None
        if key is None or key not in lower:
            raise UnknownConceptError(f"unknown genre {genre!r}; known genres of {seq_data.name}: {names}")
        g = lower.index(key)
    mask = seq_data.item_genres[:, g].astype(np.float64).copy()
    mask[0] = 0.0
    return _nonempty(Concept(names[g], mask, "genre", f"genre {names[g]}"), f" of genre {names[g]!r}")


def _years(seq_data: SequenceData) -> np.ndarray:
    years = np.full(seq_data.num_items + 1, np.nan)
    years[1:] = pd.to_numeric(seq_data.items["year"], errors="coerce").astype("float64").to_numpy()
    return years


def _decades(seq_data: SequenceData) -> list[int]:
    y = _years(seq_data)
    y = y[~np.isnan(y)]
    return sorted({int(v) // 10 * 10 for v in y})


def decade_concept(seq_data: SequenceData, decade: int | str) -> Concept:
    """Items released in one decade: ``decade_concept(seq_data, 1970)`` or ``(seq_data, "1970s")``.

    Introduced in chapter 5. Items without a release year are not in it.

    Raises
    ------
    ValueError, UnknownConceptError
        Not a decade (a multiple of 10), no release years in the data (synthetic data), or a decade
        with no item (the message lists the decades present).
    """
    seq_data = _check_seq_data(seq_data)
    if isinstance(decade, str):
        m = re.fullmatch(r"\s*(\d{4})s?\s*", decade)
        if not m:
            raise ValueError(f"decade must be like 1970 or '1970s', got {decade!r}")
        decade = int(m.group(1))
    decade = check_int("decade", decade)
    if decade % 10:
        raise ValueError(f"decade must be a year that is a multiple of 10 (1970 for the 1970s), got {decade!r}")
    decades = _decades(seq_data)
    if not decades:
        raise ValueError(f"{seq_data.name} has no release years: decade concepts need MovieLens metadata")
    if int(decade) not in decades:
        raise UnknownConceptError(
            f"no item of {seq_data.name} was released in the {int(decade)}s; decades present: "
            f"{[f'{d}s' for d in decades]}"
        )
    y = _years(seq_data)
    with np.errstate(invalid="ignore"):
        mask = ((y >= decade) & (y < decade + 10)).astype(np.float64)
    mask[0] = 0.0
    return Concept(f"{int(decade)}s", mask, "decade", f"released {int(decade)}-{int(decade) + 9}")


def year_range_concept(seq_data: SequenceData, start: int | None = None, end: int | None = None) -> Concept:
    """Items released in ``[start, end)`` (either bound may be open), e.g. older classics: ``end=1970``.

    Introduced in chapter 5. Items without a release year are not in it.

    Raises
    ------
    ValueError
        Both bounds open, ``start >= end``, no release years, or no item in the range.
    """
    seq_data = _check_seq_data(seq_data)
    if start is None and end is None:
        raise ValueError("give start and/or end (a concept of every item is not a concept)")
    if start is not None and end is not None and start >= end:
        raise ValueError(f"need start < end, got start={start}, end={end}")
    if not _decades(seq_data):
        raise ValueError(f"{seq_data.name} has no release years: year concepts need MovieLens metadata")
    y = _years(seq_data)
    with np.errstate(invalid="ignore"):
        ok = ~np.isnan(y)
        if start is not None:
            ok &= y >= start
        if end is not None:
            ok &= y < end
    mask = ok.astype(np.float64)
    mask[0] = 0.0
    if start is None:
        name = f"before {end}"
    elif end is None:
        name = f"{start} or later"
    else:
        name = f"{start}-{end - 1}"
    return _nonempty(Concept(name, mask, "years", f"released {name}"), " in that year range")


_POPULARITY = {"popular": "popular", "long_tail": "long_tail", "long-tail": "long_tail", "long tail": "long_tail"}


def popularity_concept(
    seq_data: SequenceData, which: Literal["popular", "long_tail"] = "popular", quantile: float = 0.2
) -> Concept:
    """The popular head of the catalogue, or its long tail.

    Introduced in chapter 5. Items are ranked by popularity (number of
    interactions, ``seq_data.items["popularity"]``; ties by ascending id); the *head* is the
    ``ceil(quantile * num_items)`` most popular items. ``"popular"`` is the head, ``"long_tail"`` every
    other item (with the default 0.2: the top 20 % of items versus the remaining 80 %).

    Raises
    ------
    UnknownConceptError, ValueError
        ``which`` not one of ``"popular"``, ``"long_tail"``; ``quantile`` outside ``(0, 1)``.
    """
    seq_data = _check_seq_data(seq_data)
    key = _POPULARITY.get(which) if isinstance(which, str) else None
    if key is None:
        raise UnknownConceptError(f"unknown popularity concept {which!r}; known: ['popular', 'long_tail']")
    quantile = check_float("quantile", quantile, 0.0, 1.0, exclusive_minimum=True, exclusive_maximum=True)
    pop = seq_data.items["popularity"].to_numpy(dtype=np.float64)
    n = len(pop)
    order = np.argsort(-pop, kind="stable")
    head = np.zeros(n + 1)
    head[order[: max(1, math.ceil(quantile * n))] + 1] = 1.0
    if key == "popular":
        mask, name = head, "popular"
    else:
        mask = 1.0 - head
        mask[0] = 0.0
        name = "long_tail"
    desc = f"{'top' if key == 'popular' else 'outside the top'} {quantile:.0%} of items by popularity"
    return Concept(name, mask, "popularity", desc)


def attribute_concept(
    seq_data: SequenceData, column: str, predicate: Callable[[Any], bool | float], name: str | None = None
) -> Concept:
    """Any item attribute: weight ``predicate(value)`` of every item's ``seq_data.items[column]``.

    Introduced in chapter 5. Missing values (NA) get weight 0.

    Examples
    --------
    >>> attribute_concept(seq_data, "year", lambda y: y < 1960, name="before 1960")
    >>> attribute_concept(seq_data, "genres", lambda g: "Comedy" in g and "Romance" in g, name="rom-com")

    Raises
    ------
    UnknownConceptError
        ``column`` is not a column of ``seq_data.items`` (the message lists them).
    ValueError
        The predicate returns a value outside ``[0, 1]``, or selects no item.
    """
    seq_data = _check_seq_data(seq_data)
    cols = list(seq_data.items.columns)
    if column not in cols:
        raise UnknownConceptError(f"unknown item attribute {column!r}; columns of seq_data.items: {cols}")
    if not callable(predicate):
        raise TypeError(f"predicate must be callable, got {type(predicate).__name__}")
    values = seq_data.items[column].tolist()
    mask = np.zeros(seq_data.num_items + 1)
    for i, v in enumerate(values, start=1):
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            continue
        out = predicate(v)
        w = float(out)
        if not (0.0 <= w <= 1.0):
            raise ValueError(f"predicate returned {out!r} for item {i} ({column}={v!r}); expected a bool or a weight in [0, 1]")
        mask[i] = w
    label = name or f"{column}: {getattr(predicate, '__name__', 'predicate')}"
    return _nonempty(Concept(label, mask, "attribute", f"items whose {column} satisfies the predicate"), "")


def known_concepts(seq_data: SequenceData) -> list[str]:
    """Concept names :func:`get_concept` understands for this data: genres, decades, popularity buckets.

    Introduced in chapter 5.
    """
    seq_data = _check_seq_data(seq_data)
    names = [g for g in seq_data.genre_names if seq_data.item_genres[:, list(seq_data.genre_names).index(g)].any()]
    names += [f"{d}s" for d in _decades(seq_data)]
    names += ["popular", "long_tail"]
    return names


def get_concept(seq_data: SequenceData, name: str | Concept) -> Concept:
    """A concept by name: a genre (``"Comedy"``), a decade (``"1970s"``), ``"popular"`` or ``"long_tail"``.

    Introduced in chapter 5. A :class:`Concept` is returned unchanged.

    Raises
    ------
    UnknownConceptError
        The name is none of these (the message lists the known names).
    """
    if isinstance(name, Concept):
        return name
    seq_data = _check_seq_data(seq_data)
    if not isinstance(name, str):
        raise TypeError(f"concept name must be a str, got {type(name).__name__}")
    known = known_concepts(seq_data)
    key = name.strip()
    if key.lower() in _POPULARITY:
        return popularity_concept(seq_data, _POPULARITY[key.lower()])  # type: ignore[arg-type]
    if re.fullmatch(r"\d{4}s", key) and key in known:
        return decade_concept(seq_data, key)
    lower = {g.lower(): g for g in seq_data.genre_names}
    if key.lower() in lower and lower[key.lower()] in known:
        return genre_concept(seq_data, lower[key.lower()])
    raise UnknownConceptError(f"unknown concept {name!r}; known concepts of {seq_data.name}: {known}")


def table_concepts(seq_data: SequenceData, min_items: int = 20) -> list[str]:
    """Names of the genres, then the release decades, that have at least ``min_items`` items each.

    Introduced in chapter 5; the default concepts of
    :func:`~seqsae_lib.steering.concept_table.concept_steering_table`.
    """
    seq_data = _check_seq_data(seq_data)
    min_items = check_int("min_items", min_items, minimum=1)
    names = [g for j, g in enumerate(seq_data.genre_names) if seq_data.item_genres[1:, j].sum() >= min_items]
    names += [f"{d}s" for d in _decades(seq_data)]
    return [n for n in names if get_concept(seq_data, n).n_items >= min_items]
