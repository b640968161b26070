"""From ratings to chronological viewing sequences, contiguous item ids and the leave-one-out split.

Introduced in chapter 1.

* Implicit feedback: every rating is an interaction (``min_rating`` keeps only ratings >= it).
* Filtering: an iterative k-core keeps users and items with at least ``min_user_interactions`` and
  ``min_item_interactions`` interactions (repeated until nothing changes).
* Order: each user's interactions sorted by timestamp with a **stable** sort. Ratings that share a
  timestamp (every ML-100k user has some) are ordered by the tie-break:

  - ``"file"`` (default): GroupLens' file order, i.e. the order of the lines in ``u.data``;
  - ``"item"``: ascending MovieLens item id;
  - ``"random"``: a seeded random order.

  The tie-break is not neutral: it decides which item is the held-out target for hundreds of users.
* Ids: items are renumbered ``1..num_items`` in ascending MovieLens id; ``0`` is reserved for padding.
* Split: per user, the last item is the test target, the second-to-last the validation target, the rest
  is training. An evaluation input is everything before its target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

import numpy as np
import pandas as pd

from seqsae_lib.data.movielens import RatingsData
from seqsae_lib.utils.checks import check_choice, check_int

__all__ = ["TieBreak", "SequenceData", "LeaveOneOutSplit", "make_sequences", "leave_one_out"]

TieBreak = Literal["file", "item", "random"]
_TIE_BREAKS = ("file", "item", "random")


@dataclass(frozen=True)
class SequenceData:
    """Per-user chronological item sequences with contiguous ids and aligned metadata.

    Introduced in chapter 1.

    Item arrays are indexed by *internal* id, with row 0 the padding "item"; user arrays by internal user
    index ``0..num_users-1``.
    """

    name: str
    """Data-set name, e.g. ``"ml-100k"``."""
    sequences: list[np.ndarray]
    """Per user: int64 internal item ids in chronological order (after the tie-break)."""
    timestamps: list[np.ndarray]
    """Per user: the unix timestamps aligned with :attr:`sequences`."""
    user_ids: np.ndarray
    """``(num_users,)`` original user id of each internal user index."""
    item_ids: np.ndarray
    """``(num_items + 1,)`` original item id of each internal id; ``item_ids[0] == 0`` (padding)."""
    items: pd.DataFrame
    """Indexed by internal id ``1..num_items``: ``movielens_id``, ``title``, ``year``, ``genres``,
    ``popularity`` (number of interactions in :attr:`sequences`)."""
    genre_names: tuple[str, ...]
    """Genre names, the columns of :attr:`item_genres`."""
    item_genres: np.ndarray
    """``(num_items + 1, n_genres)`` float32 multi-hot; row 0 (padding) is all zeros."""
    users: pd.DataFrame
    """Indexed by internal user index: ``user_id`` and the demographics of :class:`RatingsData`."""
    params: dict[str, Any]
    """Preprocessing parameters (filters, tie-break, seed): part of the data fingerprint."""
    item_topic: np.ndarray | None = None
    """Synthetic data only: ``(num_items + 1,)`` planted topic per internal id (``-1`` for padding)."""
    _index: dict[int, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index.update({int(m): i for i, m in enumerate(self.item_ids) if i > 0})

    @property
    def num_items(self) -> int:
        """Number of items; internal ids run ``1..num_items``."""
        return len(self.item_ids) - 1

    @property
    def num_users(self) -> int:
        """Number of users (sequences)."""
        return len(self.sequences)

    @property
    def num_interactions(self) -> int:
        """Total length of all sequences."""
        return int(sum(len(s) for s in self.sequences))

    @property
    def lengths(self) -> np.ndarray:
        """``(num_users,)`` sequence lengths."""
        return np.array([len(s) for s in self.sequences])

    def to_internal(self, movielens_ids: Iterable[int] | int) -> np.ndarray:
        """Map original (MovieLens) item ids to internal ids; unknown ids raise ``KeyError`` naming them.

        Introduced in chapter 1.
        """
        ids = np.atleast_1d(np.asarray(movielens_ids, dtype=np.int64))
        out = np.empty(len(ids), dtype=np.int64)
        for j, m in enumerate(ids):
            try:
                out[j] = self._index[int(m)]
            except KeyError:
                raise KeyError(
                    f"item id {int(m)} is not in {self.name} after preprocessing ({self.num_items} items; "
                    f"MovieLens ids {int(self.item_ids[1])}..{int(self.item_ids.max())}, "
                    "items with too few interactions were filtered out)"
                ) from None
        return out

    def to_movielens(self, internal_ids: Iterable[int] | int) -> np.ndarray:
        """Map internal ids ``1..num_items`` back to original item ids; out-of-range ids raise ``KeyError``.

        Introduced in chapter 1.
        """
        ids = np.atleast_1d(np.asarray(internal_ids, dtype=np.int64))
        bad = (ids < 1) | (ids > self.num_items)
        if bad.any():
            raise KeyError(f"internal item id {int(ids[bad][0])} outside 1..{self.num_items} (0 is padding)")
        return self.item_ids[ids]

    def titles(self, internal_ids: Iterable[int] | int) -> list[str]:
        """Titles of internal item ids (validated like :meth:`to_movielens`)."""
        self.to_movielens(internal_ids)
        return self.items.loc[np.atleast_1d(np.asarray(internal_ids)), "title"].tolist()

    def user_index(self, user_id: int) -> int:
        """Internal index of an original user id; unknown ids raise ``KeyError``."""
        hits = np.flatnonzero(self.user_ids == user_id)
        if len(hits) == 0:
            raise KeyError(f"user id {user_id} is not in {self.name} after preprocessing ({self.num_users} users)")
        return int(hits[0])

    def history(self, user: int, last: int = 10) -> pd.DataFrame:
        """A user's most recent items as a table: date, title, year, genres (``user`` is the internal index).

        Introduced in chapter 1.
        """
        if not 0 <= user < self.num_users:
            raise IndexError(f"user index {user} outside 0..{self.num_users - 1}")
        seq, ts = self.sequences[user][-last:], self.timestamps[user][-last:]
        start = len(self.sequences[user]) - len(seq)
        frame = self.items.loc[seq, ["title", "year", "genres"]].reset_index(drop=True)
        frame.insert(0, "position", np.arange(start, start + len(seq)))
        frame.insert(1, "date", pd.to_datetime(ts, unit="s").strftime("%Y-%m-%d %H:%M"))
        frame["genres"] = frame["genres"].map(", ".join)
        return frame.set_index("position")

    def fingerprint(self) -> dict[str, Any]:
        """JSON-able identity of this preprocessing: checkpoints refuse to load against a different one."""
        return {
            "dataset": self.name,
            **{k: v for k, v in self.params.items()},
            "num_items": self.num_items,
            "num_users": self.num_users,
            "num_interactions": self.num_interactions,
        }


@dataclass(frozen=True)
class LeaveOneOutSplit:
    """Leave-one-out split of :class:`SequenceData`: last item for test, second-to-last for validation.

    Introduced in chapter 1.
    """

    num_items: int
    """Items have internal ids ``1..num_items``; ``0`` is padding."""
    train: list[np.ndarray]
    """Per user: ``seq[:-2]``, the training sequence."""
    valid_inputs: list[np.ndarray]
    """Per user: ``seq[:-2]``, the input that predicts the validation target."""
    valid_targets: np.ndarray
    """``(num_users,)`` int64: ``seq[-2]``."""
    test_inputs: list[np.ndarray]
    """Per user: ``seq[:-1]`` (the validation item is part of the test input)."""
    test_targets: np.ndarray
    """``(num_users,)`` int64: ``seq[-1]``."""
    fingerprint: dict[str, Any]
    """The :meth:`SequenceData.fingerprint` of the data it came from, plus ``"split": "leave-one-out"``."""

    @property
    def num_users(self) -> int:
        """Number of users, each with one validation and one test target."""
        return len(self.train)


def _k_core(frame: pd.DataFrame, min_user: int, min_item: int) -> pd.DataFrame:
    while True:
        item_counts = frame["item_id"].map(frame["item_id"].value_counts())
        user_counts = frame["user_id"].map(frame["user_id"].value_counts())
        keep = (item_counts >= min_item) & (user_counts >= min_user)
        if keep.all():
            return frame
        frame = frame[keep]


def make_sequences(
    data: RatingsData,
    *,
    min_rating: float | None = None,
    min_user_interactions: int = 5,
    min_item_interactions: int = 5,
    tie_break: TieBreak = "file",
    seed: int = 0,
) -> SequenceData:
    """Turn ratings into chronological per-user sequences with contiguous item ids.

    Introduced in chapter 1.

    Parameters
    ----------
    data
        Ratings from :func:`seqsae_lib.load_movielens` or :func:`seqsae_lib.make_synthetic`.
    min_rating
        Keep only ratings ``>= min_rating``; ``None`` keeps every rating (implicit feedback).
    min_user_interactions, min_item_interactions
        Iterative k-core filter thresholds (``1`` disables). Users need at least 3 interactions for the
        leave-one-out split, so ``min_user_interactions`` below 3 is raised to 3.
    tie_break
        Order of interactions sharing a timestamp: ``"file"``, ``"item"`` or ``"random"`` (seeded).
    seed
        Seed of the ``"random"`` tie-break.

    Raises
    ------
    ValueError
        For an unknown tie-break, negative thresholds, or filters that remove every interaction.
    """
    check_choice("tie_break", tie_break, _TIE_BREAKS)
    check_int("min_user_interactions", min_user_interactions, 1)
    check_int("min_item_interactions", min_item_interactions, 1)
    min_user = max(3, int(min_user_interactions))
    frame = data.interactions.reset_index(drop=True)
    frame = frame.assign(file_order=np.arange(len(frame)))
    if min_rating is not None:
        frame = frame[frame["rating"] >= min_rating]
    frame = _k_core(frame, min_user, int(min_item_interactions))
    if frame.empty:
        raise ValueError(f"{data.name}: the filters removed every interaction")

    if tie_break == "file":
        secondary = frame["file_order"].to_numpy()
    elif tie_break == "item":
        secondary = frame["item_id"].to_numpy()
    else:
        secondary = np.random.default_rng(seed).permutation(len(frame))
    # lexsort: last key is primary. Sort by user, then timestamp, then the tie-break key.
    order = np.lexsort((secondary, frame["timestamp"].to_numpy(), frame["user_id"].to_numpy()))
    frame = frame.iloc[order]

    item_ids = np.concatenate([[0], np.sort(frame["item_id"].unique())]).astype(np.int64)
    internal = np.searchsorted(item_ids, frame["item_id"].to_numpy())
    users_sorted = frame["user_id"].to_numpy()
    user_ids, starts = np.unique(users_sorted, return_index=True)
    bounds = np.append(starts, len(frame))
    stamps = frame["timestamp"].to_numpy()
    sequences = [internal[a:b].astype(np.int64) for a, b in zip(bounds[:-1], bounds[1:])]
    timestamps = [stamps[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    meta = data.items.loc[item_ids[1:]]
    rows = data.items.index.get_indexer(item_ids[1:])
    popularity = np.bincount(internal, minlength=len(item_ids))[1:]
    items = pd.DataFrame(
        {
            "movielens_id": item_ids[1:],
            "title": meta["title"].to_numpy(),
            "year": meta["year"].array,
            "genres": meta["genres"].to_numpy(),
            "popularity": popularity,
        },
        index=pd.RangeIndex(1, len(item_ids), name="item"),
    )
    item_genres = np.zeros((len(item_ids), len(data.genre_names)), dtype=np.float32)
    item_genres[1:] = data.item_genres[rows]
    users = data.users.reindex(user_ids).reset_index().rename(columns={"index": "user_id"})
    users.index.name = "user"
    item_topic = None
    if data.planted is not None:
        item_topic = np.full(len(item_ids), -1, dtype=np.int64)
        item_topic[1:] = data.planted.item_topic[rows]
    params = {
        "min_rating": min_rating,
        "min_user_interactions": min_user,
        "min_item_interactions": int(min_item_interactions),
        "tie_break": tie_break,
        "tie_break_seed": seed if tie_break == "random" else None,
    }
    if data.info:
        params["generator"] = dict(data.info)
    return SequenceData(
        name=data.name,
        sequences=sequences,
        timestamps=timestamps,
        user_ids=user_ids.astype(np.int64),
        item_ids=item_ids,
        items=items,
        genre_names=tuple(data.genre_names),
        item_genres=item_genres,
        users=users,
        params=params,
        item_topic=item_topic,
    )


def leave_one_out(data: SequenceData) -> LeaveOneOutSplit:
    """Split each user's sequence: last item = test target, second-to-last = validation target.

    Introduced in chapter 1.

    Raises
    ------
    ValueError
        If a user has fewer than 3 interactions (no training item would remain).
    """
    short = [u for u, s in enumerate(data.sequences) if len(s) < 3]
    if short:
        raise ValueError(
            f"leave-one-out needs >= 3 interactions per user; user index {short[0]} "
            f"(user id {int(data.user_ids[short[0]])}) has {len(data.sequences[short[0]])}"
        )
    train = [s[:-2] for s in data.sequences]
    return LeaveOneOutSplit(
        num_items=data.num_items,
        train=train,
        valid_inputs=train,
        valid_targets=np.array([s[-2] for s in data.sequences], dtype=np.int64),
        test_inputs=[s[:-1] for s in data.sequences],
        test_targets=np.array([s[-1] for s in data.sequences], dtype=np.int64),
        fingerprint={**data.fingerprint(), "split": "leave-one-out"},
    )
