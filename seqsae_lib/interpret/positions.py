"""The stored positions behind latent codes: alignment with their store, their items and the items' titles.

Introduced in chapter 4.

Codes (:class:`~seqsae_lib.interpret.codes.LatentCodes` or a dense matrix) have one row per row of the
:class:`~seqsae_lib.sae.activations.ActivationStore` they were computed from; the store knows each
position's user, input item and next item, and the :class:`~seqsae_lib.data.sequences.SequenceData` it
was collected from knows the items' titles and metadata. The contexts, driving items and profiles of
:mod:`seqsae_lib.interpret` check and read these links through the helpers here.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from seqsae_lib.data import SequenceData
from seqsae_lib.interpret.codes import n_rows
from seqsae_lib.sae import ActivationStore
from seqsae_lib.utils.checks import check_choice

__all__ = ["Which", "check_aligned", "check_store_items", "item_titles", "position_items"]

Which = Literal["next", "input"]
"""Which item of a stored position: the one that followed (``"next"``) or the one just read (``"input"``)."""


def check_aligned(codes: Any, store: ActivationStore) -> None:
    """Check that ``codes`` has one row per row of ``store``.

    Introduced in chapter 4.

    Raises
    ------
    TypeError, ValueError
        ``store`` is not an ActivationStore, or the row counts differ.
    """
    if not isinstance(store, ActivationStore):
        raise TypeError(f"store must be an ActivationStore, got {type(store).__name__}")
    if n_rows(codes) != len(store):
        raise ValueError(
            f"codes has {n_rows(codes)} rows but the store has {len(store)}: compute them from the same store"
        )


def check_store_items(seq_data: SequenceData, items: np.ndarray, what: str) -> None:
    """Check that the item ids ``items`` (read from ``store.<what>``) belong to ``seq_data``'s catalogue.

    Introduced in chapter 4.

    Raises
    ------
    TypeError, ValueError
        ``seq_data`` is not a SequenceData, or an id exceeds its number of items.
    """
    if not isinstance(seq_data, SequenceData):
        raise TypeError(f"seq_data must be a SequenceData, got {type(seq_data).__name__}")
    if len(items) and (items.min() < 0 or items.max() > seq_data.num_items):
        raise ValueError(
            f"store.{what} holds ids up to {int(items.max())} but {seq_data.name} has {seq_data.num_items} items: "
            "the store was not collected from this data"
        )


def position_items(store: ActivationStore, which: str) -> np.ndarray:
    """The next (``which="next"``) or input (``"input"``) item id of every stored position.

    Introduced in chapter 4.

    Raises
    ------
    ValueError
        ``which`` is neither.
    """
    which = check_choice("which", which, ("next", "input"))
    return store.next_item if which == "next" else store.input_item


def item_titles(seq_data: SequenceData, items: np.ndarray) -> np.ndarray:
    """Titles of internal item ids (object array; id 0, the padding/unknown item, is ``"(unknown)"``).

    Introduced in chapter 4.
    """
    titles = np.empty(seq_data.num_items + 1, dtype=object)
    titles[0] = "(unknown)"
    titles[1:] = seq_data.items["title"].to_numpy()
    return titles[items]
