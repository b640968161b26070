"""Concepts over the catalogue (genres, decades, popularity): which items "have" a concept.

Introduced in chapter 5.

A :class:`Concept` is a weight per item, ``item_mask`` of shape ``(num_items + 1,)`` (row 0 is padding and
always 0): 1 for items that have the concept, 0 for items that do not, or anything in between for a soft
concept. It is built from item metadata (:mod:`seqsae_lib.steering.catalogue_concepts`: genres, decades,
year ranges, popularity, any attribute) or by name
(:func:`~seqsae_lib.steering.catalogue_concepts.get_concept`, names listed by
:func:`~seqsae_lib.steering.catalogue_concepts.known_concepts`). Its *share* in a recommendation list is the
mean weight of the recommended items. The latents that steer towards a concept are chosen in
:mod:`seqsae_lib.steering.selection`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from seqsae_lib.utils.checks import check_choice

__all__ = ["Concept", "UnknownConceptError", "check_concept"]


class UnknownConceptError(KeyError, ValueError):
    """A concept name (genre, decade, popularity bucket) that the data does not have.

    Introduced in chapter 5. Subclasses ``KeyError`` and ``ValueError``.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------------------------------------
# the concept object
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Concept:
    """A weight in ``[0, 1]`` for every item: which items "have" the concept.

    Introduced in chapter 5.

    Parameters
    ----------
    name : str
        Shown in tables, e.g. ``"Comedy"`` or ``"1970s"``.
    item_mask : array of shape (num_items + 1,)
        Boolean or float weights in ``[0, 1]`` indexed by internal item id; row 0 (padding) must be 0.
        Stored as float64.
    kind : str, default "custom"
        ``"genre"``, ``"decade"``, ``"years"``, ``"popularity"``, ``"attribute"`` or ``"custom"``.
    description : str, optional

    Raises
    ------
    TypeError, ValueError
        A mask that is not 1-D, has fewer than 2 rows, holds values outside ``[0, 1]`` or NaN, or a
        non-zero padding row.
    """

    name: str
    item_mask: np.ndarray
    kind: str = "custom"
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, got {self.name!r}")
        m = self.item_mask
        if isinstance(m, Tensor):
            m = m.detach().cpu().numpy()
        m = np.asarray(m)
        if m.ndim != 1 or len(m) < 2:
            raise ValueError(f"item_mask must be 1-D of length num_items + 1 (>= 2), got shape {m.shape}")
        if not (m.dtype == bool or np.issubdtype(m.dtype, np.number)):
            raise TypeError(f"item_mask must be boolean or numeric, got dtype {m.dtype}")
        w = m.astype(np.float64)
        if not np.isfinite(w).all() or (w < 0).any() or (w > 1).any():
            raise ValueError("item_mask weights must be finite and lie in [0, 1]")
        if w[0] != 0:
            raise ValueError("item_mask[0] is the padding id and must be 0")
        w.setflags(write=False)
        object.__setattr__(self, "item_mask", w)

    @property
    def num_items(self) -> int:
        """Catalogue size (``len(item_mask) - 1``)."""
        return len(self.item_mask) - 1

    @property
    def weights(self) -> np.ndarray:
        """The ``(num_items + 1,)`` float64 weights (read-only)."""
        return self.item_mask

    def as_tensor(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The weights as a new ``(num_items + 1,)`` tensor (``item_mask`` itself is read-only).

        Introduced in chapter 5.
        """
        return torch.tensor(self.item_mask, dtype=dtype)

    @property
    def items(self) -> np.ndarray:
        """Internal ids of the items with a positive weight."""
        return np.flatnonzero(self.item_mask > 0)

    @property
    def n_items(self) -> int:
        """Number of items with a positive weight."""
        return int((self.item_mask > 0).sum())

    @property
    def base_rate(self) -> float:
        """Mean weight over the catalogue: the share of a uniformly random recommendation list."""
        return float(self.item_mask[1:].mean())

    def share(self, top_items: Any, *, reduce: Literal["mean", "none"] = "mean") -> float | np.ndarray:
        """Concept share of recommendation lists: mean weight of the recommended items.

        Introduced in chapter 5.

        Parameters
        ----------
        top_items : (n_users, k) integer ids in ``1..num_items``
        reduce : {"mean", "none"}
            Average over users, or one share per list.
        """
        check_choice("reduce", reduce, ("mean", "none"))
        t = top_items.detach().cpu().numpy() if isinstance(top_items, Tensor) else np.asarray(top_items)
        if t.ndim != 2 or not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"top_items must be an (n_users, k) integer array, got shape {t.shape}, dtype {t.dtype}")
        if t.size and (t.min() < 0 or t.max() > self.num_items):
            raise ValueError(f"top_items must be ids in [1, {self.num_items}], got [{int(t.min())}, {int(t.max())}]")
        per_list = self.item_mask[t].mean(axis=1) if t.shape[1] else np.zeros(len(t))
        if reduce == "none":
            return per_list
        return float(per_list.mean()) if len(per_list) else float("nan")

    def contrast(self) -> np.ndarray:
        """``(num_items + 1,)`` vector ``c`` with ``c @ logits`` = weighted mean over concept items minus over the rest.

        Introduced in chapter 5; the promotion of :func:`~seqsae_lib.steering.promotion.latent_promotion`.
        Row 0 is 0.

        Raises
        ------
        ValueError
            The concept covers no item or every item (there is nothing to contrast).
        """
        w = self.item_mask.copy()
        w[0] = 0.0
        inside = w[1:].sum()
        outside = (1.0 - w[1:]).sum()
        if not inside > 0 or not outside > 0:
            raise ValueError(
                f"concept {self.name!r} covers {'no' if not inside > 0 else 'every'} item: nothing to contrast"
            )
        c = np.zeros_like(w)
        c[1:] = w[1:] / inside - (1.0 - w[1:]) / outside
        return c

    def __invert__(self) -> Concept:
        w = 1.0 - self.item_mask
        w[0] = 0.0
        return Concept(f"not {self.name}", w, self.kind, f"complement of {self.name}")

    def __repr__(self) -> str:
        return (f"Concept({self.name!r}, kind={self.kind!r}, items={self.n_items}/{self.num_items}, "
                f"base_rate={self.base_rate:.3f})")


def check_concept(concept: Any, num_items: int | None = None) -> Concept:
    """Return ``concept`` if it is a :class:`Concept` (for a catalogue of ``num_items`` items, if given).

    Introduced in chapter 5; the one concept check of the steering code.

    Raises
    ------
    TypeError
        Not a :class:`Concept` (names go through :func:`get_concept` first).
    ValueError
        A concept over another catalogue than the model's.
    """
    if not isinstance(concept, Concept):
        raise TypeError(
            f"concept must be a Concept (see seqsae_lib.steering.get_concept), got {type(concept).__name__}"
        )
    if num_items is not None and concept.num_items != int(num_items):
        raise ValueError(f"concept {concept.name!r} covers {concept.num_items} items but the model scores {num_items}")
    return concept
