"""Where a latent fires: its strongest contexts (what the user watched, and watched next) and its driving items.

Introduced in chapter 4.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from torch import Tensor

from seqsae_lib.data import SequenceData
from seqsae_lib.interpret.codes import LatentCodes, latent_column
from seqsae_lib.interpret.positions import Which, check_aligned, check_store_items, item_titles, position_items
from seqsae_lib.sae import ActivationStore
from seqsae_lib.utils.checks import check_int

__all__ = ["driving_items", "top_contexts"]


def top_contexts(
    codes: LatentCodes | Tensor | np.ndarray,
    store: ActivationStore,
    seq_data: SequenceData,
    latent: int,
    n: int = 10,
    history: int = 4,
    *,
    one_per_user: bool = False,
) -> pd.DataFrame:
    """The positions where a latent fires most strongly, with what the user had watched and watched next.

    Introduced in chapter 4.

    ``store.user`` must index ``seq_data.sequences`` (true when the store was collected from
    ``split.train`` or ``[s[:-1] for s in split.train]`` of this ``seq_data``); this is checked by
    comparing ``store.input_item`` with the sequences.

    Parameters
    ----------
    codes : LatentCodes or (n, m) matrix aligned with ``store``
    store : ActivationStore
    seq_data : SequenceData
    latent : int
    n : int, default 10
        Number of contexts (fewer if the latent fires on fewer positions).
    history : int, default 4
        Number of items before the input item to show.
    one_per_user : bool, default False
        Keep only each user's strongest position (so one binge-watcher does not fill the table).

    Returns
    -------
    pandas.DataFrame
        Columns ``row`` (store row), ``user`` (internal index), ``user_id`` (original), ``position``,
        ``history`` (titles joined by `` | ``, oldest first), ``input`` (title of the item just read),
        ``next`` (title of the item that followed, ``(unknown)`` if not stored) and ``activation``,
        sorted by activation (descending).

    Raises
    ------
    ValueError
        Misaligned inputs, or a store that does not come from ``seq_data``.
    """
    check_aligned(codes, store)
    check_store_items(seq_data, store.input_item, "input_item")
    n = check_int("n", n, minimum=1)
    history = check_int("history", history, minimum=0)
    act = latent_column(codes, latent)
    rows = np.flatnonzero(act > 0)
    rows = rows[np.argsort(-act[rows], kind="stable")]
    if one_per_user and len(rows):
        _, first = np.unique(store.user[rows], return_index=True)
        rows = rows[np.sort(first)]
    rows = rows[:n]
    records = []
    for r in rows:
        u, pos = int(store.user[r]), int(store.position[r])
        known = 0 <= u < seq_data.num_users and pos < len(seq_data.sequences[u])
        if not known or seq_data.sequences[u][pos] != store.input_item[r]:
            raise ValueError(
                f"store row {r} (user {u}, position {pos}) does not match seq_data.sequences: collect the store "
                "from this data's split.train (user = internal user index)"
            )
        before = seq_data.sequences[u][max(0, pos - history) : pos]
        records.append(
            {
                "row": int(r),
                "user": u,
                "user_id": int(seq_data.user_ids[u]),
                "position": pos,
                "history": " | ".join(item_titles(seq_data, before)),
                "input": item_titles(seq_data, store.input_item[r : r + 1])[0],
                "next": item_titles(seq_data, store.next_item[r : r + 1])[0],
                "activation": float(act[r]),
            }
        )
    columns = ["row", "user", "user_id", "position", "history", "input", "next", "activation"]
    return pd.DataFrame.from_records(records, columns=columns)


def driving_items(
    codes: LatentCodes | Tensor | np.ndarray,
    store: ActivationStore,
    seq_data: SequenceData,
    latent: int,
    n: int = 10,
    *,
    min_count: int = 5,
    which: Which = "input",
) -> pd.DataFrame:
    """The items whose positions drive a latent most: mean activation grouped by item.

    Introduced in chapter 4.

    For every item, the mean of the latent's activation over **all** positions whose input item (or next
    item, ``which="next"``) is that item, zeros included, so an item that reliably switches the latent on
    beats one that does so once. Items with fewer than ``min_count`` positions are skipped (noisy means).

    Returns
    -------
    pandas.DataFrame
        Columns ``item`` (internal id), ``title``, ``count`` (positions), ``fire_rate`` (share of them
        where the latent fires), ``mean_activation``; the ``n`` items with the largest mean activation.

    Raises
    ------
    ValueError
        Misaligned inputs, a bad ``which`` or ``min_count``.
    """
    check_aligned(codes, store)
    items = position_items(store, which)
    check_store_items(seq_data, items, f"{which}_item")
    min_count = check_int("min_count", min_count, minimum=1)
    act = latent_column(codes, latent)
    size = seq_data.num_items + 1
    count = np.bincount(items, minlength=size)
    total = np.bincount(items, weights=act, minlength=size)
    fires = np.bincount(items, weights=(act > 0).astype(np.float64), minlength=size)
    ok = np.flatnonzero((count >= min_count) & (np.arange(size) > 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total[ok] / count[ok]
    order = np.lexsort((ok, -mean))[:n]
    pick = ok[order]
    return pd.DataFrame(
        {
            "item": pick,
            "title": item_titles(seq_data, pick),
            "count": count[pick],
            "fire_rate": fires[pick] / count[pick],
            "mean_activation": mean[order],
        }
    )
