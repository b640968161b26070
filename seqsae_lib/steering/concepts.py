"""Concepts over the catalogue (genres, decades, popularity) and the SAE latents that steer towards them.

Introduced in chapter 5 (chapters/05_steering.ipynb).

A :class:`Concept` is a weight per item, ``item_mask`` of shape ``(num_items + 1,)`` (row 0 is padding and
always 0): 1 for items that have the concept, 0 for items that do not, or anything in between for a soft
concept. It is built from item metadata (:func:`genre_concept`, :func:`decade_concept`,
:func:`year_range_concept`, :func:`popularity_concept`, :func:`attribute_concept`) or by name
(:func:`get_concept`, names listed by :func:`known_concepts`). Its *share* in a recommendation list is the
mean weight of the recommended items.

Choosing latents to steer with (:func:`select_latents`)
-------------------------------------------------------
Steering a latent has two sides, and the rule uses both:

* **write side (causal, decides the order)**: what adding one unit of the latent's decoder direction
  ``d_j = W_dec[j] / s`` to the state at the last position does to the scores. With ``Delta_j`` the
  resulting change of every item's logit and ``w`` the concept weights::

      promotion_j   = sum_i w_i Delta_ij / sum_i w_i  -  sum_i (1 - w_i) Delta_ij / sum_i (1 - w_i)
      specificity_j = promotion_j / std_i(Delta_ij)

  ``promotion`` (logits per unit of activation) says how much concept items rise *relative to the other
  items*, which is what reorders a top-10 (a uniform rise of every logit changes nothing).
  ``specificity`` divides by how much the direction reshuffles the catalogue as a whole; the reshuffle of
  non-concept items is what costs accuracy, so the specificity is a proxy for "concept share gained per
  NDCG lost". At ``"final"`` the scores are linear in the state and ``Delta_j = d_j @ item_emb.T``
  exactly. At an inner capture point the rest of the network is non-linear: ``Delta_j`` is measured by
  finite differences (step ``alpha``) on ``n_states`` real states, as in
  :func:`seqsae_lib.interpret.features.promoted_items`. Measuring every latent that way costs one forward pass per
  latent, so latents are first *screened* with the mean Jacobian of the remaining network (``d_model``
  finite differences along the coordinate axes, then ``Delta_j ~ J d_j`` for every latent at once) and
  the best ``refine`` candidates are measured exactly.
* **read side (correlational, filters)**: where the latent fires. Given the SAE's codes on an
  :class:`~seqsae_lib.sae.activations.ActivationStore`, ``lift_j`` is the activation-weighted mean concept
  weight of the *next* item at the positions where latent ``j`` fires, divided by the same mean over all
  positions (the lift of :mod:`seqsae_lib.interpret.features` for a soft category). Latents that fire fewer than
  ``min_fires`` times (dead or too rare to trust) or whose lift is below ``min_lift`` (default 1: the
  latent must at least not be *anti*-associated with the concept) are not candidates.

``score = specificity``; :func:`select_latents` returns the ``n`` best candidates by score. Without codes
only the write side is used (lift is NaN). :func:`concept_steering` turns them into a
:class:`~seqsae_lib.steering.edits.Steering`: a positive strength steers towards the concept, a negative one
away from it ("fewer horror films" pushes the horror latents down).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from seqsae_lib.sae.activations import ActivationStore
from seqsae_lib.data.batching import left_pad, trim_left_padding
from seqsae_lib.model.capture import record
from seqsae_lib.interpret.features import LatentCodes
from seqsae_lib.sae.autoencoder import SparseAutoencoder
from seqsae_lib.data.sequences import SequenceData
from seqsae_lib.steering.edits import Steering

__all__ = [
    "Concept",
    "UnknownConceptError",
    "genre_concept",
    "decade_concept",
    "year_range_concept",
    "popularity_concept",
    "attribute_concept",
    "known_concepts",
    "get_concept",
    "concept_lift",
    "latent_promotion",
    "select_latents",
    "concept_steering",
    "combine",
    "CONCEPT_RULES",
    "SELECTION_COLUMNS",
]

CONCEPT_RULES: tuple[str, ...] = ("add", "shift_z", "scale")
"""How :func:`concept_steering` turns a strength into latent edits."""

SELECTION_COLUMNS: tuple[str, ...] = (
    "latent", "score", "promotion", "specificity", "lift", "share", "n_fires", "method",
)
"""Columns of :func:`select_latents`'s table."""


class UnknownConceptError(KeyError, ValueError):
    """A concept name (genre, decade, popularity bucket) that the data does not have.

    Introduced in chapter 5 (chapters/05_steering.ipynb). Subclasses ``KeyError`` and ``ValueError``.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------------------------------------
# the concept object
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Concept:
    """A weight in ``[0, 1]`` for every item: which items "have" the concept.

    Introduced in chapter 5 (chapters/05_steering.ipynb).

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

        Introduced in chapter 5 (chapters/05_steering.ipynb).
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

        Introduced in chapter 5 (chapters/05_steering.ipynb).

        Parameters
        ----------
        top_items : (n_users, k) integer ids in ``1..num_items``
        reduce : {"mean", "none"}
            Average over users, or one share per list.
        """
        t = top_items.detach().cpu().numpy() if isinstance(top_items, Tensor) else np.asarray(top_items)
        if t.ndim != 2 or not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"top_items must be an (n_users, k) integer array, got shape {t.shape}, dtype {t.dtype}")
        if t.size and (t.min() < 0 or t.max() > self.num_items):
            raise ValueError(f"top_items must be ids in [1, {self.num_items}], got [{int(t.min())}, {int(t.max())}]")
        per_list = self.item_mask[t].mean(axis=1) if t.shape[1] else np.zeros(len(t))
        if reduce == "none":
            return per_list
        if reduce != "mean":
            raise ValueError(f"reduce must be 'mean' or 'none', got {reduce!r}")
        return float(per_list.mean()) if len(per_list) else float("nan")

    def contrast(self) -> np.ndarray:
        """``(num_items + 1,)`` vector ``c`` with ``c @ logits`` = weighted mean over concept items minus over the rest.

        Introduced in chapter 5 (chapters/05_steering.ipynb); the promotion of :func:`latent_promotion`.
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


# --------------------------------------------------------------------------------------------------------
# constructors from metadata
# --------------------------------------------------------------------------------------------------------


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

    Introduced in chapter 5 (chapters/05_steering.ipynb). The name is matched exactly, then
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

    Introduced in chapter 5 (chapters/05_steering.ipynb). Items without a release year are not in it.

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
    if isinstance(decade, bool) or not isinstance(decade, (int, np.integer)) or decade % 10:
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

    Introduced in chapter 5 (chapters/05_steering.ipynb). Items without a release year are not in it.

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

    Introduced in chapter 5 (chapters/05_steering.ipynb). Items are ranked by popularity (number of
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
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be a number in (0, 1), got {quantile!r}")
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

    Introduced in chapter 5 (chapters/05_steering.ipynb). Missing values (NA) get weight 0.

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

    Introduced in chapter 5 (chapters/05_steering.ipynb).
    """
    seq_data = _check_seq_data(seq_data)
    names = [g for g in seq_data.genre_names if seq_data.item_genres[:, list(seq_data.genre_names).index(g)].any()]
    names += [f"{d}s" for d in _decades(seq_data)]
    names += ["popular", "long_tail"]
    return names


def get_concept(seq_data: SequenceData, name: str | Concept) -> Concept:
    """A concept by name: a genre (``"Comedy"``), a decade (``"1970s"``), ``"popular"`` or ``"long_tail"``.

    Introduced in chapter 5 (chapters/05_steering.ipynb). A :class:`Concept` is returned unchanged.

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


# --------------------------------------------------------------------------------------------------------
# read side: lift
# --------------------------------------------------------------------------------------------------------


def concept_lift(
    codes: LatentCodes | Tensor | np.ndarray, store: ActivationStore, concept: Concept
) -> pd.DataFrame:
    """Activation-weighted concept share of the next item where each latent fires, and its lift.

    Introduced in chapter 5 (chapters/05_steering.ipynb); the read side of :func:`select_latents`.
    Positions with an unknown next item (``next_item == 0``) are left out.

    Returns
    -------
    pandas.DataFrame
        Indexed by latent: ``share`` (NaN where the latent never fires), ``lift = share / base_rate``,
        ``n_fires``; ``attrs["base_rate"]`` is the mean concept weight over all valid positions.

    Raises
    ------
    ValueError
        Codes and store of different lengths; a concept for another catalogue.
    """
    if not isinstance(store, ActivationStore):
        raise TypeError(f"store must be an ActivationStore, got {type(store).__name__}")
    if not isinstance(codes, LatentCodes):
        codes = LatentCodes.from_dense(codes)
    if codes.n_rows != len(store):
        raise ValueError(f"codes has {codes.n_rows} rows but the store has {len(store)}: compute them from the same store")
    nxt = store.next_item
    if len(nxt) and nxt.max() > concept.num_items:
        raise ValueError(
            f"the store holds item ids up to {int(nxt.max())} but concept {concept.name!r} covers "
            f"{concept.num_items} items: was it built from other data?"
        )
    valid = nxt > 0
    w_next = concept.item_mask[nxt]
    rows = codes.row_ids().numpy()
    idx = codes.indices.numpy()
    vals = codes.values.numpy().astype(np.float64)
    keep = valid[rows] & (vals > 0)
    m = codes.n_latents
    den = np.bincount(idx[keep], weights=vals[keep], minlength=m)
    num = np.bincount(idx[keep], weights=vals[keep] * w_next[rows[keep]], minlength=m)
    n_fires = np.bincount(idx[keep], minlength=m)
    base = float(w_next[valid].mean()) if valid.any() else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(den > 0, num / den, np.nan)
        lift = share / base if base > 0 else np.full(m, np.nan)
    frame = pd.DataFrame({"share": share, "lift": lift, "n_fires": n_fires}, index=pd.RangeIndex(m, name="latent"))
    frame.attrs["base_rate"] = base
    return frame


# --------------------------------------------------------------------------------------------------------
# write side: promotion
# --------------------------------------------------------------------------------------------------------


def _check_model_sae(model: Any, sae: Any, capture_point: str) -> None:
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
    if not isinstance(model, nn.Module) or not callable(getattr(model, "hook_point", None)) or not hasattr(model, "item_emb"):
        raise TypeError(f"model must be a SASRec (capture points and an item table), got {type(model).__name__}")
    model.hook_point(capture_point)  # UnknownCapturePointError listing the valid names
    if sae.d_in != model.d_model:
        raise ValueError(
            f"the SAE reads d_in={sae.d_in} but capture point {capture_point!r} of the model has "
            f"d_model={model.d_model}; was the SAE trained on another model?"
        )


def _check_concept_items(concept: Concept, model: nn.Module) -> None:
    if not isinstance(concept, Concept):
        raise TypeError(f"concept must be a Concept (see get_concept), got {type(concept).__name__}")
    if concept.num_items != int(model.num_items):  # type: ignore[arg-type]
        raise ValueError(
            f"concept {concept.name!r} covers {concept.num_items} items but the model scores {model.num_items}"
        )


def _sample_states(
    model: nn.Module, capture_point: str, sequences: Sequence[Any], n_states: int, seed: int, batch_size: int = 128
) -> list[tuple[Tensor, Tensor]]:
    """``(ids, hidden)`` batches of recorded states at ``capture_point`` for a seeded sample of sequences."""
    rng = np.random.default_rng(seed)
    n = len(sequences)
    pick = np.sort(rng.choice(n, size=min(int(n_states), n), replace=False))
    chosen = [np.asarray(sequences[i], dtype=np.int64) for i in pick]
    chosen = [s for s in chosen if len(s)]
    if not chosen:
        raise ValueError("the sampled sequences are all empty")
    dev = model.item_emb.weight.device  # type: ignore[union-attr]
    out = []
    for start in range(0, len(chosen), batch_size):
        (ids,) = trim_left_padding(left_pad(chosen[start : start + batch_size], model.max_len))  # type: ignore[arg-type]
        ids = ids.to(dev)
        with record(model, capture_point) as rec:
            model(ids)
        out.append((ids, rec[capture_point]))
    return out


def _mean_final_shift(
    model: nn.Module, capture_point: str, batches: list[tuple[Tensor, Tensor]], directions: Tensor, alpha: float
) -> Tensor:
    """Mean over states of ``(f(h + alpha d) - f(h)) / alpha`` at the last position, per direction (rows)."""
    total = torch.zeros(directions.shape, dtype=torch.float64, device=directions.device)
    count = 0
    for ids, hidden in batches:
        base = model.forward_from(capture_point, hidden, ids)[:, -1]  # type: ignore[operator]
        for j in range(len(directions)):
            pushed = hidden.clone()
            pushed[:, -1] += alpha * directions[j]
            moved = model.forward_from(capture_point, pushed, ids)[:, -1]  # type: ignore[operator]
            total[j] += ((moved - base).double().sum(0)) / alpha
        count += len(ids)
    return (total / count).to(directions.dtype)


@torch.no_grad()
def latent_promotion(
    concept: Concept,
    sae: SparseAutoencoder,
    model: nn.Module,
    capture_point: str,
    *,
    latents: Sequence[int] | None = None,
    sequences: Sequence[Any] | None = None,
    method: Literal["auto", "exact", "linearised", "finite-difference"] = "auto",
    alpha: float = 1.0,
    n_states: int = 256,
    seed: int = 0,
) -> pd.DataFrame:
    """How much each latent's decoder direction promotes the concept's items over the others.

    Introduced in chapter 5 (chapters/05_steering.ipynb); the write side of :func:`select_latents`
    (definitions in the module docstring).

    Parameters
    ----------
    concept : Concept
    sae : SparseAutoencoder
    model : SASRec
    capture_point : str
    latents : sequence of int, optional
        Latents to measure (default: all).
    sequences : sequence of array-like, optional
        Needed at inner capture points: the inputs whose states are perturbed (e.g. ``split.train``).
    method : {"auto", "exact", "linearised", "finite-difference"}
        ``"auto"``: exact at ``"final"``, finite differences at inner points. ``"linearised"`` uses the
        mean Jacobian of the rest of the network (``d_model`` forward passes for any number of latents).
    alpha : float, default 1.0
        Finite-difference step in state units (inner points). Choose it near a typical activation.
    n_states, seed
        Sample of states (inner points).

    Returns
    -------
    pandas.DataFrame
        Indexed by latent: ``promotion``, ``specificity``; ``attrs["method"]``.

    Raises
    ------
    ValueError
        Mismatched widths or catalogue, unknown capture point, missing ``sequences`` at an inner point,
        a bad method or ``alpha``, a latent out of range.
    """
    _check_model_sae(model, sae, capture_point)
    _check_concept_items(concept, model)
    if method not in ("auto", "exact", "linearised", "finite-difference"):
        raise ValueError(f"method must be 'auto', 'exact', 'linearised' or 'finite-difference', got {method!r}")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    ids_lat = np.arange(sae.d_sae) if latents is None else np.asarray(list(latents), dtype=np.int64)
    if len(ids_lat) and (ids_lat.min() < 0 or ids_lat.max() >= sae.d_sae):
        bad = int(ids_lat[(ids_lat < 0) | (ids_lat >= sae.d_sae)][0])
        raise ValueError(f"latent id {bad} is out of range: valid ids are 0 .. {sae.d_sae - 1}")
    emb = model.item_emb.weight.detach()  # type: ignore[union-attr]
    contrast = torch.from_numpy(concept.contrast()).to(emb.device, emb.dtype)
    dirs = (sae.W_dec.detach()[torch.from_numpy(ids_lat).to(sae.W_dec.device)] / sae.input_scale).to(emb.device, emb.dtype)
    if method == "auto":
        method = "exact" if capture_point == "final" else "finite-difference"
    if method == "exact":
        if capture_point != "final":
            raise ValueError(f"method='exact' applies at 'final' only (the scores are linear there), not {capture_point!r}")
        shifts = dirs
    else:
        if capture_point == "final":
            shifts = dirs  # linear: the finite difference is exact
            method = "exact"
        else:
            if sequences is None or len(sequences) == 0:
                raise ValueError(
                    f"latent_promotion at the inner capture point {capture_point!r} needs sequences (e.g. split.train)"
                )
            was_training = model.training
            model.eval()
            try:
                batches = _sample_states(model, capture_point, sequences, n_states, seed)
                if method == "linearised":
                    eye = torch.eye(emb.shape[1], dtype=emb.dtype, device=emb.device)
                    jac = _mean_final_shift(model, capture_point, batches, eye, float(alpha))  # row k = J e_k
                    shifts = dirs @ jac
                else:
                    shifts = _mean_final_shift(model, capture_point, batches, dirs, float(alpha))
            finally:
                if was_training:
                    model.train()
    delta = shifts @ emb[1:].T  # (n_latents, num_items): logit change per unit
    promotion = (delta @ contrast[1:]).double().cpu().numpy()
    spread = delta.double().std(dim=1, unbiased=False).cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        specificity = np.where(spread > 0, promotion / spread, 0.0)
    frame = pd.DataFrame({"promotion": promotion, "specificity": specificity}, index=pd.Index(ids_lat, name="latent"))
    frame.attrs["method"] = method
    return frame


def select_latents(
    concept: Concept,
    sae: SparseAutoencoder,
    model: nn.Module,
    capture_point: str,
    *,
    codes: LatentCodes | Tensor | np.ndarray | None = None,
    store: ActivationStore | None = None,
    n: int = 5,
    min_lift: float = 1.0,
    min_fires: int = 10,
    sequences: Sequence[Any] | None = None,
    alpha: float = 1.0,
    n_states: int = 256,
    refine: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The ``n`` latents to steer with towards ``concept``, by the documented rule.

    Introduced in chapter 5 (chapters/05_steering.ipynb). The rule (see the module docstring): candidates
    are latents that fire at least ``min_fires`` times with a concept lift of at least ``min_lift`` (only
    when ``codes`` and ``store`` are given); they are ranked by ``score = specificity``, the promotion of
    concept items over the other items by the latent's decoder direction, divided by the spread of the
    logit changes it causes.

    Parameters
    ----------
    concept : Concept
    sae : SparseAutoencoder
        Trained at ``capture_point``.
    model : SASRec
    capture_point : str
    codes : LatentCodes or dense (n, d_sae), optional
        The SAE's codes on ``store`` (:func:`seqsae_lib.interpret.features.latent_activations`). With ``store``,
        enables the read-side filter and fills ``lift``, ``share``, ``n_fires``.
    store : ActivationStore, optional
        States at ``capture_point`` with their next items (e.g. collected with
        ``next_items=split.valid_targets``).
    n : int, default 5
    min_lift : float, default 1.0
    min_fires : int, default 10
    sequences : sequence of array-like, optional
        Required at inner capture points (see :func:`latent_promotion`).
    alpha, n_states, seed
        Finite-difference settings at inner points.
    refine : int, optional
        Inner points: how many screened candidates are measured by exact finite differences (default
        ``max(4 n, 32)``).

    Returns
    -------
    pandas.DataFrame
        :data:`SELECTION_COLUMNS`, best first (at most ``n`` rows; empty, with a warning, when no latent
        passes the filters). ``attrs`` hold the rule's settings.

    Raises
    ------
    ValueError
        Only one of ``codes`` / ``store``; a store from another capture point; bad ``n``; and the errors
        of :func:`latent_promotion`.
    """
    _check_model_sae(model, sae, capture_point)
    _check_concept_items(concept, model)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if (codes is None) != (store is None):
        raise ValueError("pass both codes and store (for the lift filter) or neither")
    m = sae.d_sae
    if store is not None:
        if not isinstance(store, ActivationStore):
            raise TypeError(f"store must be an ActivationStore, got {type(store).__name__}")
        if store.capture_point != capture_point:
            raise ValueError(f"the store holds states at {store.capture_point!r}, not at {capture_point!r}")
        lift = concept_lift(codes, store, concept)  # type: ignore[arg-type]
        if len(lift) != m:
            raise ValueError(f"codes have {len(lift)} latents but the SAE has d_sae={m}")
        candidate = (lift["n_fires"].to_numpy() >= min_fires) & (lift["lift"].fillna(0.0).to_numpy() >= min_lift)
    else:
        lift = pd.DataFrame({"share": np.nan, "lift": np.nan, "n_fires": -1}, index=pd.RangeIndex(m, name="latent"))
        candidate = np.ones(m, dtype=bool)
    cand_ids = np.flatnonzero(candidate)
    if len(cand_ids) == 0:
        warnings.warn(
            f"no latent fires >= {min_fires} times with lift >= {min_lift} for concept {concept.name!r}; "
            "lower min_lift / min_fires", stacklevel=2,
        )
        frame = pd.DataFrame(columns=list(SELECTION_COLUMNS))
    else:
        if capture_point == "final":
            prom = latent_promotion(concept, sae, model, capture_point, latents=cand_ids)
        else:
            k = int(refine) if refine is not None else max(4 * int(n), 32)
            screen = latent_promotion(
                concept, sae, model, capture_point, latents=cand_ids, sequences=sequences,
                method="linearised", alpha=alpha, n_states=n_states, seed=seed,
            )
            best = screen.sort_values("specificity", ascending=False, kind="stable").index[:k].to_numpy()
            prom = latent_promotion(
                concept, sae, model, capture_point, latents=best, sequences=sequences,
                method="finite-difference", alpha=alpha, n_states=n_states, seed=seed,
            )
        method = prom.attrs["method"]
        frame = prom.join(lift, how="left")
        frame["score"] = frame["specificity"]
        frame["method"] = method
        frame = frame.sort_values(["score", "promotion"], ascending=False, kind="stable").head(int(n))
        frame = frame.reset_index()[list(SELECTION_COLUMNS)]
        frame["latent"] = frame["latent"].astype(np.int64)
    frame.attrs.update({
        "concept": concept.name, "capture_point": capture_point, "rule": "score = specificity",
        "min_lift": float(min_lift), "min_fires": int(min_fires), "n_candidates": int(len(cand_ids)),
    })
    return frame


# --------------------------------------------------------------------------------------------------------
# from latents to a steering
# --------------------------------------------------------------------------------------------------------


def _latent_list(latents: Any) -> list[int]:
    if isinstance(latents, pd.DataFrame):
        if "latent" not in latents.columns:
            raise ValueError("a DataFrame of latents needs a 'latent' column (e.g. from select_latents)")
        latents = latents["latent"].tolist()
    if isinstance(latents, Tensor):
        latents = latents.tolist()
    if isinstance(latents, (int, np.integer)):
        latents = [latents]
    out = []
    for lat in latents:
        if isinstance(lat, bool) or not isinstance(lat, (int, np.integer)):
            raise TypeError(f"latents must be ints, got {lat!r}")
        out.append(int(lat))
    return out


def concept_steering(
    concept: Concept | str,
    strength: float,
    latents: Sequence[int] | pd.DataFrame | int,
    sae: SparseAutoencoder,
    capture_point: str,
    *,
    rule: Literal["add", "shift_z", "scale"] = "add",
    positions: Literal["last", "all"] = "last",
    latent_std: Tensor | None = None,
) -> Steering:
    """A :class:`~seqsae_lib.steering.edits.Steering` that pushes towards (``strength > 0``) or away from a concept.

    Introduced in chapter 5 (chapters/05_steering.ipynb). Every latent gets the same edit:

    * ``rule="add"``: ``add`` ``strength`` (state units along each unit-norm decoder direction);
    * ``rule="shift_z"``: shift each latent's pre-activation by ``strength`` standard deviations
      (needs ``latent_std``, see :func:`~seqsae_lib.steering.edits.preactivation_std`);
    * ``rule="scale"``: multiply each activation by ``max(0, 1 + strength)`` (-1 or below ablates).

    ``strength = 0`` is the identity for every rule. ``latents`` is usually :func:`select_latents`'s
    table; an empty list gives the identity.

    Raises
    ------
    ValueError
        Unknown rule (the message lists :data:`CONCEPT_RULES`), non-finite strength, latent ids out of
        range, ``shift_z`` without ``latent_std``.
    """
    name = concept.name if isinstance(concept, Concept) else str(concept)
    if rule not in CONCEPT_RULES:
        raise ValueError(f"unknown rule {rule!r}; valid rules are {list(CONCEPT_RULES)}")
    if isinstance(strength, bool) or not isinstance(strength, (int, float, np.integer, np.floating)):
        raise TypeError(f"strength must be a number, got {type(strength).__name__}")
    s = float(strength)
    if not math.isfinite(s):
        raise ValueError(f"strength must be a finite number, got {strength!r}")
    lats = _latent_list(latents)
    label = f"{'more' if s >= 0 else 'less'} {name} ({s:+g})"
    if rule == "add":
        return Steering.add(sae, capture_point, lats, s, positions=positions, label=label)  # type: ignore[arg-type]
    if rule == "shift_z":
        if latent_std is None:
            raise ValueError("rule='shift_z' needs latent_std (seqsae_lib.steering.edits.preactivation_std(sae, store))")
        return Steering.shift_z(sae, capture_point, lats, s, latent_std, positions=positions, label=label)  # type: ignore[arg-type]
    return Steering.scale(sae, capture_point, lats, max(0.0, 1.0 + s), positions=positions, label=label)  # type: ignore[arg-type]


def combine(*steerings: Steering) -> Steering:
    """Combine steerings, e.g. ``combine(more_comedy, less_horror, older)``: :meth:`Steering.combine`.

    Introduced in chapter 5 (chapters/05_steering.ipynb).
    """
    return Steering.combine(*steerings)
