"""Synthetic viewing sequences with planted topics: a controlled experiment with known ground truth.

Introduced in chapter 1.

The generator is deliberately simple so a reader can hold it in their head:

1. ``num_items`` items are split evenly over ``num_topics`` topics; within a topic, item popularity follows
   a Zipf law (a few hits, a long tail).
2. Each user has a sparse starting preference over topics (``topics_per_user`` topics, Dirichlet weights)
   and a second sparse preference it drifts towards: at step ``t`` of ``T`` the user mixes the two with
   weight ``t / T``.
3. Sessions: the user stays on the current topic with probability ``stickiness``, otherwise draws a new
   topic from the current (drifting) preference. The item is drawn from the topic's popularity law among
   items the user has not yet seen.

The result is a :class:`~seqsae_lib.data.movielens.RatingsData` like MovieLens: topics play the role of genres
(``item_genres`` is the one-hot topic matrix) and :attr:`RatingsData.planted` holds the ground truth.
Synthetic data is for unit tests and planted-ground-truth experiments, never a stand-in for MovieLens.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqsae_lib.data.movielens import PlantedTopics, RatingsData
from seqsae_lib.data.sources import DataSource
from seqsae_lib.utils.checks import check_float

__all__ = ["make_synthetic"]


def make_synthetic(
    *,
    num_users: int = 600,
    num_items: int = 400,
    num_topics: int = 8,
    topics_per_user: int = 2,
    min_length: int = 20,
    max_length: int = 80,
    stickiness: float = 0.8,
    zipf_exponent: float = 1.0,
    seed: int = 0,
) -> RatingsData:
    """Generate sequences from planted topics; same object type as :func:`seqsae_lib.load_movielens`.

    Introduced in chapter 1.

    Parameters
    ----------
    num_users, num_items, num_topics
        Sizes. ``num_items`` must be at least ``num_topics * max_length // topics_per_user`` so no user
        runs out of unseen items in its topics (checked).
    topics_per_user
        Number of topics with non-zero weight in each of the two preferences of a user.
    min_length, max_length
        Sequence lengths are uniform in this range (inclusive).
    stickiness
        Probability of staying on the current topic at the next step, in ``[0, 1)``.
    zipf_exponent
        Popularity of the ``r``-th item of a topic is proportional to ``r ** -zipf_exponent``.
    seed
        Everything is determined by this seed.

    Raises
    ------
    ValueError
        For sizes that cannot produce valid sequences.
    """
    if not (num_users > 0 and num_topics > 0 and 0 < topics_per_user <= num_topics):
        raise ValueError("need num_users > 0, num_topics > 0 and 0 < topics_per_user <= num_topics")
    if not (3 <= min_length <= max_length):
        raise ValueError("need 3 <= min_length <= max_length")
    check_float("stickiness", stickiness, 0.0, 1.0, exclusive_maximum=True)
    per_topic = num_items // num_topics
    if per_topic * 2 * topics_per_user < max_length or per_topic < 2:
        raise ValueError(
            f"{num_items} items over {num_topics} topics leave {per_topic} per topic: too few for sequences "
            f"of up to {max_length} items drawn from 2 x {topics_per_user} topics"
        )
    rng = np.random.default_rng(seed)
    num_items = per_topic * num_topics
    item_topic = np.repeat(np.arange(num_topics), per_topic)
    rng.shuffle(item_topic)
    members = [np.flatnonzero(item_topic == k) for k in range(num_topics)]
    weights = np.arange(1, per_topic + 1, dtype=float) ** -zipf_exponent
    weights /= weights.sum()

    def sparse_preference() -> np.ndarray:
        p = np.zeros(num_topics)
        chosen = rng.choice(num_topics, size=topics_per_user, replace=False)
        p[chosen] = rng.dirichlet(np.ones(topics_per_user))
        return p

    def draw(p: np.ndarray) -> int:
        """One draw from the (unnormalised) weights ``p``: faster than ``rng.choice`` for small arrays."""
        c = np.cumsum(p)
        return int(min(np.searchsorted(c, rng.random() * c[-1], side="right"), len(p) - 1))

    start = np.stack([sparse_preference() for _ in range(num_users)])
    end = np.stack([sparse_preference() for _ in range(num_users)])
    users, items, stamps = [], [], []
    t0 = 900_000_000
    for u in range(num_users):
        length = int(rng.integers(min_length, max_length + 1))
        seen = np.zeros(num_items, dtype=bool)
        topic = draw(start[u])
        clock = t0 + int(rng.integers(0, 10_000_000))
        for t in range(length):
            pref = (1 - t / length) * start[u] + (t / length) * end[u]
            if t > 0 and rng.random() >= stickiness:
                topic = draw(pref)
            pool = members[topic]
            free = ~seen[pool]
            if not free.any():  # topic exhausted for this user: fall back to any preferred topic
                candidates = [k for k in np.flatnonzero(start[u] + end[u]) if (~seen[members[k]]).any()]
                if not candidates:  # every preferred topic exhausted (few items per topic): any topic left
                    candidates = [k for k in range(num_topics) if (~seen[members[k]]).any()]
                topic = int(rng.choice(candidates))
                pool = members[topic]
                free = ~seen[pool]
            item = int(pool[free][draw(weights[free])])
            seen[item] = True
            clock += int(rng.integers(60, 86_400))
            users.append(u + 1)
            items.append(item + 1)
            stamps.append(clock)

    topic_names = tuple(f"topic {k}" for k in range(num_topics))
    interactions = pd.DataFrame(
        {
            "user_id": np.array(users, dtype=np.int64),
            "item_id": np.array(items, dtype=np.int64),
            "rating": np.full(len(users), 5, dtype=np.int64),
            "timestamp": np.array(stamps, dtype=np.int64),
        }
    )
    item_frame = pd.DataFrame(
        {
            "title": [f"item {i + 1} (topic {item_topic[i]})" for i in range(num_items)],
            "year": pd.array([pd.NA] * num_items, dtype="Int64"),
            "genres": [(topic_names[k],) for k in item_topic],
        },
        index=pd.Index(np.arange(1, num_items + 1), name="item_id"),
    )
    user_frame = pd.DataFrame(
        {"main_topic": [topic_names[k] for k in start.argmax(1)]},
        index=pd.Index(np.arange(1, num_users + 1), name="user_id"),
    )
    one_hot = np.zeros((num_items, num_topics), dtype=np.uint8)
    one_hot[np.arange(num_items), item_topic] = 1
    return RatingsData(
        name="synthetic",
        interactions=interactions,
        items=item_frame,
        genre_names=topic_names,
        item_genres=one_hot,
        users=user_frame,
        source=DataSource("synthetic", None),
        planted=PlantedTopics(
            item_topic=item_topic,
            user_preferences=start,
            user_end_preferences=end,
            topic_names=topic_names,
        ),
        info={
            "num_users": num_users, "num_items": num_items, "num_topics": num_topics,
            "topics_per_user": topics_per_user, "min_length": min_length, "max_length": max_length,
            "stickiness": stickiness, "zipf_exponent": zipf_exponent, "seed": seed,
        },
    )
