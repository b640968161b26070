"""Monosemanticity scores for any set of units: SAE latents, raw hidden dimensions, PCA, random directions.

Introduced in chapter 4 (chapters/04_features.ipynb).

The claim under test is that SAE features are more monosemantic than the model's own hidden dimensions.
To test it, every kind of *unit* is turned into an ``(n, m)`` matrix of non-negative activations over the
same ``n`` stored positions, and :func:`monosemanticity_scores` scores each unit the same way:

``auc_next`` / ``auc_input``
    ROC-AUC of the unit's activation as a detector of "the next (input) item has genre g", computed over
    **all** positions (Mann-Whitney U with average ranks for ties), maximised over genres; ``genre_next``
    / ``genre_input`` is the argmax. 0.5 = no better than chance, 1 = perfect detector.
``purity``, ``purity_lift``
    Share of the unit's top-``N`` positions whose next item has ``genre_next``, and that share divided by
    the genre's base rate. Ties at the ``N``-th value are shared fractionally (each tied position counts
    ``remaining slots / tied positions``), which is the expected purity under random tie-breaking; a
    constant unit therefore gets exactly the base rate (lift 1).
``js``, ``js_distance``
    Jensen-Shannon divergence (log base 2, in [0, 1]) between the unit's activation histograms on
    positions with and without ``genre_next``, and its square root, the JS *distance* used as "concept
    separability" by Fereidouni et al. (arXiv 2508.15094). Bins: one bin for exact zeros (the "silent"
    state of a sparse unit or of a ReLU'd direction) plus ``bins`` (default 32) equal-width bins between
    the unit's smallest and largest non-zero activation. Identical distributions give 0, disjoint ones 1.
``ms``, ``ms_chance``
    Activation-weighted similarity of the unit's top-``N`` positions' next items, in the spirit of the MS
    score of Monosemanticity4Rec (Arviv et al., arXiv 2511.18024): with ``v_i`` the L2-normalised vector of
    position ``i``'s next item (its genre multi-hot by default, or rows of ``item_vectors``, e.g. item
    embeddings) and weights ``w_i`` = activation (times the fractional top-``N`` inclusion),
    ``ms = sum_{i != j} w_i w_j cos(v_i, v_j) / sum_{i != j} w_i w_j``. Positions, not distinct items,
    are counted: a unit that fires on one film again and again gets ``ms`` near 1. When the weights
    cannot define a pair (a unit that fires on fewer than two top positions), uniform weights over the
    top-``N`` (ties shared) are used instead, which gives roughly ``ms_chance``: the same similarity for
    uniform weights over all positions.

Fairness caveats (read before comparing unit types)
---------------------------------------------------
* Sparse latents vs dense dimensions. An SAE latent is silent on most positions; a raw dimension takes a
  value everywhere. AUC over all positions rewards a unit whose *whole* distribution separates a genre, so a
  latent firing on 0.5 % of positions can reach at most ``0.5 + 0.5 * (share of the genre's positions it
  fires on)``; a latent that never fires has AUC exactly 0.5. Purity and ``ms`` only look at the top
  positions and favour sparse, specific units. Report both kinds of score.
* Sign. A dense dimension can encode a genre by low values. :func:`hidden_dim_units`, :func:`pca_units`
  and :func:`random_rotation_units` therefore split every direction into two non-negative units,
  ``relu(x)`` and ``relu(-x)`` (after centring by default), so that a negative association is not lost.
* Best-of-G selection. Maximising over genres biases every score upward by the same mechanism for every
  unit type; genres with fewer than ``min_positives`` positive (or negative) positions are not candidates.
* Dictionary size. 2,048 latents contain more lucky units than 128 dimensions: compare medians (with
  :func:`bootstrap_median_ci`), not maxima.

Every score is finite for every unit: constant units (all positions equal, including never-firing latents)
get AUC 0.5, JS 0, purity equal to the base rate and ``ms`` near ``ms_chance``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from seqsae_lib.sae.activations import ActivationStore
from seqsae_lib.interpret.features import LatentCodes, _as_columns, _Columns, _dense_2d, _n_rows, latent_activations
from seqsae_lib.sae.autoencoder import SAEConfig, SparseAutoencoder
from seqsae_lib.data.sequences import SequenceData

__all__ = [
    "SCORE_COLUMNS",
    "auc_matrix",
    "js_divergence",
    "genre_matrices",
    "monosemanticity_scores",
    "sae_units",
    "hidden_dim_units",
    "pca_units",
    "random_rotation_units",
    "untrained_sae_units",
    "bootstrap_median_ci",
    "compare_unit_types",
    "score_unit_types",
    "planted_recovery",
]

SCORE_COLUMNS: tuple[str, ...] = ("auc_next", "auc_input", "purity", "purity_lift", "js", "js_distance", "ms")
"""The scores :func:`compare_unit_types` summarises by default."""

UnitActs = LatentCodes | Tensor | np.ndarray


# --------------------------------------------------------------------------------------------------------
# ranks: AUC, top-N inclusion
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ranks:
    rank: Tensor  # (E,) float64 average rank (1-based, over the n rows) of each entry, canonical order
    rank0: Tensor  # (m,) float64 average rank of the zero block (implicit zeros + explicit zero entries)
    n0: Tensor  # (m,) float64 number of implicit zeros (rows without an entry)
    frac: Tensor  # (E,) float64 top-N inclusion weight of each entry
    frac0: Tensor  # (m,) float64 top-N inclusion weight of each zero-block row
    n_top: int


def _rank_info(cols: _Columns, top_n: int = 0) -> _Ranks:
    """Average ranks with ties (implicit zeros included) and fractional top-N inclusion, vectorised.

    Works on tie *groups* (runs of equal values within a unit in (unit, value) order): a group's average
    rank is ``start + (size + 1) / 2`` where ``start`` counts the unit's positions below it (the implicit
    zeros count below every positive value) and ``size`` includes the implicit zeros for the value-0 group.
    """
    n, m, e = cols.n, cols.m, cols.nnz
    f64 = torch.float64
    n0 = (n - cols.counts).to(f64)
    val = cols.val
    neg = torch.bincount(cols.unit[val < 0], minlength=m).to(f64)
    zex = torch.bincount(cols.unit[val == 0], minlength=m).to(f64)
    zsize = n0 + zex
    rank0 = neg + (zsize + 1.0) / 2.0
    big_n = float(min(max(int(top_n), 0), n))
    rank = torch.zeros(e, dtype=f64)
    frac = torch.zeros(e, dtype=f64)
    if e:
        u, v = cols.unit, val  # sorted by (unit, value)
        new = torch.ones(e, dtype=torch.bool)
        new[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
        first = new.nonzero().squeeze(1)
        gid = torch.cumsum(new, 0) - 1
        del new
        gu, gv = u[first], v[first]
        gsize = torch.diff(first, append=torch.tensor([e])).to(f64) + n0[gu] * (gv == 0).to(f64)
        gstart = (first - cols.ptr[:-1][gu]).to(f64) + n0[gu] * (gv > 0).to(f64)
        rank = (gstart + (gsize + 1.0) / 2.0)[gid]
        if big_n > 0:
            above = n - (gstart + gsize)
            frac = ((big_n - above) / gsize).clamp(0.0, 1.0)[gid]
    frac0 = torch.zeros(m, dtype=f64)
    if big_n > 0:
        above0 = n - (neg + zsize)
        frac0 = torch.where(zsize > 0, ((big_n - above0) / zsize.clamp_min(1.0)).clamp(0.0, 1.0), frac0)
    return _Ranks(rank, rank0, n0, frac, frac0, int(big_n))


def _labels(y: Any, n: int, what: str) -> Tensor:
    arr = y.detach().cpu().numpy() if isinstance(y, Tensor) else np.asarray(y)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"{what} must have shape ({n}, G) (one row per position), got {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{what} must be 0/1 (multi-hot genre indicators)")
    return torch.from_numpy(arr.astype(np.float64))


def _mask(mask: Any, n: int, what: str, default: Tensor) -> Tensor:
    if mask is None:
        return default
    arr = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    if arr.dtype != bool or arr.shape != (n,):
        raise ValueError(f"{what} must be a boolean array of shape ({n},), got {arr.dtype} {arr.shape}")
    return torch.from_numpy(arr)


def _auc_from(
    cols: _Columns, ranks: _Ranks, y: Tensor, cy: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """AUC (m, G), the per-unit sums of y over the unit's entries C@Y (m, G), npos (G,), nneg (G,)."""
    n = cols.n
    if cy is None:
        cy = cols.matmul(torch.ones(cols.nnz), y, dtype=torch.float32)  # exact: counts < 2**24
    ry = cols.matmul(ranks.rank, y)
    npos = y.sum(0)
    nneg = n - npos
    s = ry + ranks.rank0[:, None] * (npos[None, :] - cy)
    u = s - npos * (npos + 1.0) / 2.0
    denom = npos * nneg
    auc = torch.where(denom > 0, u / denom.clamp_min(1.0), torch.full_like(u, 0.5))
    return auc, cy, npos, nneg


def auc_matrix(unit_acts: UnitActs, labels: Any, mask: Any = None) -> np.ndarray:
    """ROC-AUC of every unit as a detector of every label, over all (masked) positions.

    Introduced in chapter 4 (chapters/04_features.ipynb).

    Rank-based (Mann-Whitney U with average ranks for ties): ``AUC = P(a_pos > a_neg) + P(a_pos = a_neg) / 2``
    for a random positive and a random negative position. Vectorised: one sort of the units' non-zero
    entries and two sparse products, so sparse units cost only their non-zeros.

    Parameters
    ----------
    unit_acts : LatentCodes or (n, m) matrix
    labels : (n, G) array of 0/1
    mask : (n,) bool, optional
        Positions to use (default all).

    Returns
    -------
    numpy.ndarray of shape (m, G)
        0.5 for a label with no positive or no negative position, and for constant units.
    """
    n = _n_rows(unit_acts)
    y = _labels(labels, n, "labels")
    keep = _mask(mask, n, "mask", torch.ones(n, dtype=torch.bool))
    cols = _as_columns(unit_acts).select_rows(keep)
    auc, *_ = _auc_from(cols, _rank_info(cols), y[keep])
    return auc.numpy()


def js_divergence(p: Any, q: Any) -> np.ndarray:
    """Jensen-Shannon divergence in bits between distributions along the last axis, in [0, 1].

    Introduced in chapter 4 (chapters/04_features.ipynb).

    ``JS(P, Q) = H(M) - (H(P) + H(Q)) / 2`` with ``M = (P + Q) / 2`` and ``0 log 0 = 0``. Inputs are
    normalised to sum to 1 (an all-zero row gives 0).

    Raises
    ------
    ValueError
        Shapes differ or an entry is negative.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("distributions must be non-negative")

    def normalise(x: np.ndarray) -> np.ndarray:
        s = x.sum(axis=-1, keepdims=True)
        return np.divide(x, s, out=np.zeros_like(x), where=s > 0)

    def entropy(x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return -np.where(x > 0, x * np.log2(x), 0.0).sum(axis=-1)

    p, q = normalise(p), normalise(q)
    empty = (p.sum(axis=-1) == 0) | (q.sum(axis=-1) == 0)
    js = entropy((p + q) / 2) - (entropy(p) + entropy(q)) / 2
    return np.where(empty, 0.0, np.clip(js, 0.0, 1.0))


# --------------------------------------------------------------------------------------------------------
# the scores
# --------------------------------------------------------------------------------------------------------


def genre_matrices(store: ActivationStore, seq_data: SequenceData) -> tuple[np.ndarray, np.ndarray]:
    """``(genres_next, genres_input)``: the multi-hot genres of each position's next and input item.

    Introduced in chapter 4 (chapters/04_features.ipynb). Rows of positions with an unknown next item
    (``next_item == 0``) are all zero, which :func:`monosemanticity_scores` uses to leave them out.
    """
    if not isinstance(store, ActivationStore) or not isinstance(seq_data, SequenceData):
        raise TypeError("genre_matrices(store, seq_data) takes an ActivationStore and a SequenceData")
    top = max(int(store.next_item.max(initial=0)), int(store.input_item.max(initial=0)))
    if top > seq_data.num_items:
        raise ValueError(f"the store holds item ids up to {top} but {seq_data.name} has {seq_data.num_items} items")
    return seq_data.item_genres[store.next_item], seq_data.item_genres[store.input_item]


def monosemanticity_scores(
    unit_acts: UnitActs,
    genres_next: Any,
    genres_input: Any = None,
    *,
    genre_names: Sequence[str] | None = None,
    next_items: Any = None,
    item_vectors: Any = None,
    top_n: int = 100,
    bins: int = 32,
    min_positives: int = 20,
    mask_next: Any = None,
    mask_input: Any = None,
    unit_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Score every unit's monosemanticity with respect to genres (see the module docstring).

    Introduced in chapter 4 (chapters/04_features.ipynb).

    Parameters
    ----------
    unit_acts : LatentCodes or (n, m) matrix
        Activations of ``m`` units on ``n`` positions (from :func:`sae_units`, :func:`hidden_dim_units`...).
    genres_next : (n, G) array of 0/1
        Genres of each position's next item (:func:`genre_matrices`).
    genres_input : (n, G) array of 0/1, optional
        Genres of each position's input item; without it ``auc_input`` and ``genre_input`` are omitted.
    genre_names : sequence of G str, optional
        Default ``"g0", "g1", ...``.
    next_items : (n,) int, optional, with ``item_vectors`` : (num_items + 1, D)
        Vectors for ``ms`` (e.g. ``model.item_emb.weight``); default: the genre rows of ``genres_next``.
    top_n : int, default 100
        ``N`` of purity and ``ms`` (at least 2).
    bins : int, default 32
        Equal-width bins of the non-zero activations for ``js`` (plus one zero bin).
    min_positives : int, default 20
        A genre is a candidate best genre only with at least this many positive and negative positions.
    mask_next, mask_input : (n,) bool, optional
        Positions used for next-item scores (default: rows of ``genres_next`` with a genre, i.e. a known next
        item) and for ``auc_input`` (default: rows of ``genres_input`` with a genre).
    unit_names : sequence of m str, optional
        Added as a ``name`` column.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``unit``: ``fire_rate`` (share of positions where the unit is non-zero), ``constant``
        (a single value on every used position), ``auc_next``, ``genre_next``, ``auc_input``,
        ``genre_input``, ``purity``, ``base_rate`` (of ``genre_next``), ``purity_lift``, ``top_genre`` and
        ``top_purity`` (the most frequent genre among the top-``N`` and its share), ``js``, ``js_distance``,
        ``ms``, ``ms_chance``, ``n_top``. No NaN.

    Raises
    ------
    ValueError
        Shapes that do not match, non-0/1 genres, ``top_n < 2``, ``bins < 1``, or no genre with enough
        positive and negative positions.
    """
    n = _n_rows(unit_acts)
    if n == 0:
        raise ValueError("unit_acts has no rows")
    if isinstance(top_n, bool) or not isinstance(top_n, (int, np.integer)) or top_n < 2:
        raise ValueError(f"top_n must be an int >= 2, got {top_n!r}")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be an int >= 1, got {bins!r}")
    y_next = _labels(genres_next, n, "genres_next")
    n_genres = y_next.shape[1]
    names = [f"g{g}" for g in range(n_genres)] if genre_names is None else [str(g) for g in genre_names]
    if len(names) != n_genres:
        raise ValueError(f"{len(names)} genre names for {n_genres} genre columns")
    full = _as_columns(unit_acts)
    m = full.m
    if unit_names is not None and len(unit_names) != m:
        raise ValueError(f"{len(unit_names)} unit names for {m} units")

    # ---- next-item scores ----------------------------------------------------------------------------
    keep = _mask(mask_next, n, "mask_next", y_next.sum(1) > 0)
    if not bool(keep.any()):
        raise ValueError("no position has a known next item (mask_next / genres_next rows are all empty)")
    cols = full.select_rows(keep)
    y = y_next[keep]
    nn_ = cols.n
    vectors = _ms_vectors(y_next, next_items, item_vectors, n)[keep]
    yv = torch.cat([y, vectors], dim=1)
    ranks = _rank_info(cols, top_n)
    # per unit: sums over its entries (float32: exact for the 0/1 genre counts, ample for the vectors)
    c_yv = cols.matmul(torch.ones(cols.nnz), yv, dtype=torch.float32)
    f_yv = cols.matmul(ranks.frac, yv, sparse_weights=True)  # per unit: top-N weighted sums
    auc, cy, npos, nneg = _auc_from(cols, ranks, y, c_yv[:, :n_genres])
    candidate = (npos >= min_positives) & (nneg >= min_positives)
    if not bool(candidate.any()):
        raise ValueError(
            f"no genre has >= {min_positives} positive and negative positions among {nn_}; lower min_positives"
        )
    best = torch.where(candidate[None, :], auc, torch.full_like(auc, -1.0)).argmax(1)
    auc_next = auc.gather(1, best[:, None])[:, 0]

    # top-N genre shares (fractional ties)
    n_top = ranks.n_top
    top = (f_yv[:, :n_genres] + ranks.frac0[:, None] * (npos[None, :] - cy)) / n_top
    purity = top.gather(1, best[:, None])[:, 0]
    base = npos / nn_
    base_best = base[best]
    purity_lift = purity / base_best
    top_genre = top.argmax(1)
    top_purity = top.gather(1, top_genre[:, None])[:, 0]

    # JS separability for the best genre
    js = _js_best(cols, y, best, npos, nneg, int(bins))

    # MS: activation-weighted similarity of the top-N positions' next items
    ms = _ms(cols, ranks, vectors, c_yv[:, n_genres:], f_yv[:, n_genres:])
    vsum = vectors.sum(0)
    vnorm2 = (vectors * vectors).sum(1)
    ms_chance = float((vsum @ vsum - vnorm2.sum()) / (nn_ * nn_ - nn_)) if nn_ > 1 else 0.0

    # constant units (on the used rows) and fire rate (on all rows)
    counts = cols.counts
    constant = counts == 0
    if cols.nnz:
        # entries are sorted by value within a unit: its first and last entries are its min and max
        vmin = cols.val[cols.ptr[:-1].clamp_max(cols.nnz - 1)]
        vmax = cols.val[(cols.ptr[1:] - 1).clamp_min(0)]
        constant = constant | ((counts == nn_) & (vmin == vmax))
    fire_rate = (torch.bincount(full.unit[full.val != 0], minlength=m).to(torch.float64) / n).numpy()

    frame = pd.DataFrame(index=pd.RangeIndex(m, name="unit"))
    if unit_names is not None:
        frame["name"] = list(unit_names)
    frame["fire_rate"] = fire_rate
    frame["constant"] = constant.numpy()
    frame["auc_next"] = auc_next.numpy()
    frame["genre_next"] = np.array(names, dtype=object)[best.numpy()]
    if genres_input is not None:
        y_in = _labels(genres_input, n, "genres_input")
        if y_in.shape[1] != n_genres:
            raise ValueError(f"genres_input has {y_in.shape[1]} genre columns, genres_next {n_genres}")
        keep_in = _mask(mask_input, n, "mask_input", y_in.sum(1) > 0)
        cols_in = full.select_rows(keep_in)
        auc_in, _, npos_in, nneg_in = _auc_from(cols_in, _rank_info(cols_in), y_in[keep_in])
        cand_in = (npos_in >= min_positives) & (nneg_in >= min_positives)
        if bool(cand_in.any()):
            best_in = torch.where(cand_in[None, :], auc_in, torch.full_like(auc_in, -1.0)).argmax(1)
            frame["auc_input"] = auc_in.gather(1, best_in[:, None])[:, 0].numpy()
            frame["genre_input"] = np.array(names, dtype=object)[best_in.numpy()]
        else:
            frame["auc_input"] = 0.5
            frame["genre_input"] = ""
    frame["purity"] = purity.numpy()
    frame["base_rate"] = base_best.numpy()
    frame["purity_lift"] = purity_lift.numpy()
    frame["top_genre"] = np.array(names, dtype=object)[top_genre.numpy()]
    frame["top_purity"] = top_purity.numpy()
    frame["js"] = js
    frame["js_distance"] = np.sqrt(js)
    frame["ms"] = ms
    frame["ms_chance"] = ms_chance
    frame["n_top"] = n_top
    frame.attrs.update(
        {"top_n": int(top_n), "bins": int(bins), "n_positions": nn_, "min_positives": int(min_positives)}
    )
    return frame


def _js_best(cols: _Columns, y: Tensor, best: Tensor, npos: Tensor, nneg: Tensor, bins: int) -> np.ndarray:
    """JS divergence per unit between activation histograms with / without its best genre."""
    m = cols.m
    width = bins + 1
    nonzero = cols.val != 0
    nz = cols if bool(nonzero.all()) else cols.keep(nonzero)
    y_e = y[nz.row, best[nz.unit]] if nz.nnz else torch.zeros(0, dtype=torch.float64)
    hist_pos = torch.zeros(m * width, dtype=torch.float64)
    hist_all = torch.zeros(m * width, dtype=torch.float64)
    if nz.nnz:
        v = nz.val.double()
        # entries are sorted by value within a unit: first = smallest, last = largest non-zero value
        lo = v[nz.ptr[:-1].clamp_max(nz.nnz - 1)]
        hi = v[(nz.ptr[1:] - 1).clamp_min(0)]
        span = (hi - lo)[nz.unit]
        pos = torch.where(span > 0, (v - lo[nz.unit]) / span.clamp_min(1e-300), torch.zeros_like(v))
        b = (pos * bins).floor().to(torch.int64).clamp(0, bins - 1) + 1
        idx = nz.unit * width + b
        hist_pos.index_add_(0, idx, y_e)
        hist_all.index_add_(0, idx, torch.ones_like(y_e))
    hist_pos = hist_pos.view(m, width)
    hist_all = hist_all.view(m, width)
    nz_pos = torch.bincount(nz.unit, weights=y_e, minlength=m).double()
    hist_all[:, 0] = cols.n - nz.counts.to(torch.float64)
    hist_pos[:, 0] = npos[best] - nz_pos
    hist_neg = hist_all - hist_pos
    js = js_divergence(hist_pos.clamp_min(0).numpy(), hist_neg.clamp_min(0).numpy())
    degenerate = ((npos[best] == 0) | (nneg[best] == 0)).numpy()
    return np.where(degenerate, 0.0, js)


def _ms_vectors(y_next: Tensor, next_items: Any, item_vectors: Any, n: int) -> Tensor:
    if (next_items is None) != (item_vectors is None):
        raise ValueError("pass next_items and item_vectors together (or neither, to use genre vectors)")
    if item_vectors is None:
        vec = y_next.clone()
    else:
        items = next_items.detach().cpu().numpy() if isinstance(next_items, Tensor) else np.asarray(next_items)
        if items.shape != (n,) or not np.issubdtype(items.dtype, np.integer):
            raise ValueError(f"next_items must be ({n},) integer item ids, got {items.dtype} {items.shape}")
        table = _dense_2d(item_vectors, "item_vectors").double()
        if len(items) and (items.min() < 0 or items.max() >= len(table)):
            raise ValueError(f"next_items must index item_vectors' {len(table)} rows")
        vec = table[torch.from_numpy(items.astype(np.int64))]
    norm = vec.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, vec / norm.clamp_min(1e-300), torch.zeros_like(vec))


def _pair_similarity(s: Tensor, sw: Tensor, sw2: Tensor, sv: Tensor) -> tuple[Tensor, Tensor]:
    """(similarity, denominator) of sum_{i!=j} w_i w_j cos / sum_{i!=j} w_i w_j."""
    den = sw * sw - sw2
    num = (s * s).sum(1) - sv
    return num / torch.where(den > 0, den, torch.ones_like(den)), den


def _ms(cols: _Columns, ranks: _Ranks, vectors: Tensor, c_v: Tensor, f_v: Tensor) -> np.ndarray:
    """Activation-weighted pairwise cosine similarity of the top-N positions' vectors (uniform fallback).

    ``c_v`` and ``f_v`` are the per-unit sums of ``vectors`` over the unit's entries, unweighted and
    weighted by the top-N inclusion ``frac``.
    """
    vnorm2 = (vectors * vectors).sum(1)
    top = ranks.frac > 0
    frac = ranks.frac[top]
    unit = cols.unit[top]
    row = cols.row[top]
    m = cols.m

    def per_unit(w: Tensor) -> Tensor:
        return torch.bincount(unit, weights=w, minlength=m).to(torch.float64)

    # activation-weighted (the zero block has activation 0 and contributes nothing)
    w = frac * cols.val[top].double().clamp_min(0.0)
    s_w = torch.zeros(m, vectors.shape[1], dtype=torch.float64).index_add_(0, unit, w[:, None] * vectors[row])
    sw = per_unit(w)
    ms_w, den_w = _pair_similarity(s_w, sw, per_unit(w * w), per_unit(w * w * vnorm2[row]))
    # uniform over the top-N (ties shared), implicit zero rows included
    c_n2 = cols.per_unit(vnorm2[cols.row])
    s_f = f_v + ranks.frac0[:, None] * (vectors.sum(0)[None, :] - c_v)
    sf = per_unit(frac) + ranks.frac0 * ranks.n0
    sf2 = per_unit(frac * frac) + ranks.frac0**2 * ranks.n0
    sfv = per_unit(frac * frac * vnorm2[row]) + ranks.frac0**2 * (vnorm2.sum() - c_n2)
    ms_f, den_f = _pair_similarity(s_f, sf, sf2, sfv)
    use_w = den_w > 1e-9 * (sw * sw).clamp_min(1e-300)
    out = torch.where(use_w, ms_w, torch.where(den_f > 0, ms_f, torch.zeros_like(ms_f)))
    return out.clamp(-1.0, 1.0).numpy()


# --------------------------------------------------------------------------------------------------------
# unit types
# --------------------------------------------------------------------------------------------------------


def _acts(acts: Any) -> Tensor:
    if isinstance(acts, ActivationStore):
        return acts.acts
    return _dense_2d(acts, "acts").to(torch.float32)


def sae_units(sae: SparseAutoencoder, acts: ActivationStore | Tensor, batch_size: int = 4096) -> LatentCodes:
    """The SAE's latents as units: its sparse codes on every position (``d_sae`` units).

    Introduced in chapter 4 (chapters/04_features.ipynb). Same as
    :func:`seqsae_lib.interpret.features.latent_activations`.
    """
    return latent_activations(sae, acts, batch_size=batch_size)


def _both_signs(proj: Tensor, both_signs: bool) -> Tensor:
    if not both_signs:
        return proj.clamp_min(0.0)
    return torch.cat([proj.clamp_min(0.0), (-proj).clamp_min(0.0)], dim=1)


def hidden_dim_units(acts: ActivationStore | Tensor, *, center: bool = True) -> Tensor:
    """Each raw hidden dimension as two non-negative units: ``relu(x_i)`` and ``relu(-x_i)``.

    Introduced in chapter 4 (chapters/04_features.ipynb).

    Columns ``0..d-1`` are the positive halves, ``d..2d-1`` the negative halves of dimensions ``0..d-1``.
    With ``center=True`` (default) each dimension's mean is subtracted first, so the sign split sits at the
    dimension's typical value rather than at an arbitrary 0 (e.g. a LayerNorm bias can keep a dimension
    positive everywhere, making its ``relu(-x)`` half silent); ``center=False`` gives exactly
    ``relu(x)`` and ``relu(-x)``.

    Returns
    -------
    Tensor of shape (n, 2 d), float32, non-negative
    """
    x = _acts(acts)
    if center:
        x = x - x.double().mean(0).float()
    return _both_signs(x, True)


def _centred(acts: Any) -> Tensor:
    x = _acts(acts).double()
    return x - x.mean(0)


def pca_units(acts: ActivationStore | Tensor, n_components: int | None = None, *, both_signs: bool = True) -> Tensor:
    """Projections on the principal directions of the (centred) activations, split by sign.

    Introduced in chapter 4 (chapters/04_features.ipynb).

    Components are sorted by explained variance; each component's sign is fixed so that its largest
    loading is positive (deterministic). Columns: ``relu(p_0..p_{c-1})`` then ``relu(-p_0..-p_{c-1})``.

    Returns
    -------
    Tensor of shape (n, 2 c) (``(n, c)`` with ``both_signs=False``), float32
    """
    x = _centred(acts)
    d = x.shape[1]
    c = d if n_components is None else int(n_components)
    if not 1 <= c <= d:
        raise ValueError(f"n_components must be in 1..{d}, got {n_components}")
    cov = x.T @ x / max(len(x) - 1, 1)
    evals, evecs = torch.linalg.eigh(cov)
    comps = evecs[:, torch.argsort(evals, descending=True)[:c]]
    signs = torch.sign(comps.gather(0, comps.abs().argmax(0, keepdim=True)))
    comps = comps * torch.where(signs == 0, torch.ones_like(signs), signs)
    return _both_signs((x @ comps).float(), both_signs)


def random_rotation_units(acts: ActivationStore | Tensor, seed: int = 0, *, both_signs: bool = True) -> Tensor:
    """Projections on a random orthonormal basis (Haar-distributed rotation) of the centred activations.

    Introduced in chapter 4 (chapters/04_features.ipynb). A control: directions with no relation to the
    data. Columns as in :func:`pca_units`.

    Returns
    -------
    Tensor of shape (n, 2 d) (``(n, d)`` with ``both_signs=False``), float32
    """
    x = _centred(acts)
    d = x.shape[1]
    gen = torch.Generator().manual_seed(int(seed))
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))[None, :]  # uniform (Haar) rotation
    return _both_signs((x @ q).float(), both_signs)


def untrained_sae_units(
    config: SAEConfig,
    acts: ActivationStore | Tensor,
    seed: int = 0,
    *,
    data_init: bool = True,
    batch_size: int = 4096,
) -> LatentCodes:
    """Codes of a freshly initialised (untrained) SAE: a random sparse dictionary as a control.

    Introduced in chapter 4 (chapters/04_features.ipynb).

    The SAE is built from ``config`` with ``seed`` replacing ``config.seed`` (random unit decoder rows,
    encoder = decoder transpose). With ``data_init=True`` (default) it gets the data-dependent but
    training-free initialisation the trainer applies (input scale, ``b_dec`` = geometric median of up to
    4,096 rows; a BatchTopK threshold calibrated on the data) so that it reads the data in the same frame as
    a trained SAE; nothing is learned.

    Returns
    -------
    LatentCodes of shape (n, d_sae)
    """
    if not isinstance(config, SAEConfig):
        raise TypeError(f"config must be an SAEConfig, got {type(config).__name__}")
    x = _acts(acts)
    sae = SparseAutoencoder(SAEConfig.from_dict({**config.to_dict(), "seed": int(seed)}))
    if data_init:
        sample = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(int(seed)))[:4096]]
        if config.normalize_input:
            sae.init_input_scale(sample)
        sae.init_b_dec(sample)
        if config.kind == "batchtopk":
            sae.calibrate_threshold(x, batch_size=min(4096, len(x)))
    elif config.kind == "batchtopk":
        sae.calibrate_threshold(x, batch_size=min(4096, len(x)))
    sae.eval()
    return latent_activations(sae, x, batch_size=batch_size)


# --------------------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------------------


def bootstrap_median_ci(
    values: Any, n_boot: int = 1000, seed: int = 0, ci: float = 0.95
) -> tuple[float, float, float]:
    """Median and percentile-bootstrap confidence interval of the median.

    Introduced in chapter 4 (chapters/04_features.ipynb).

    NaNs are dropped. Resamples ``n_boot`` times with replacement (seeded).

    Returns
    -------
    (median, low, high)
        ``(nan, nan, nan)`` for no values.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if len(v) == 0:
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    medians = np.empty(n_boot)
    chunk = max(1, 4_000_000 // len(v))
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        medians[start : start + k] = np.median(v[rng.integers(0, len(v), size=(k, len(v)))], axis=1)
    alpha = (1 - ci) / 2
    low, high = np.quantile(medians, [alpha, 1 - alpha])
    return (float(np.median(v)), float(low), float(high))


def compare_unit_types(
    results: Mapping[str, pd.DataFrame],
    scores: Sequence[str] = SCORE_COLUMNS,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    only_active: bool = False,
) -> pd.DataFrame:
    """Median and bootstrap CI of each score for each unit type.

    Introduced in chapter 4 (chapters/04_features.ipynb).

    Parameters
    ----------
    results : mapping name -> DataFrame
        Outputs of :func:`monosemanticity_scores`, e.g. ``{"SAE": ..., "hidden dims": ..., "PCA": ...}``.
    scores : sequence of str
        Columns to summarise (those missing from a frame, e.g. ``auc_input``, are skipped).
    only_active : bool, default False
        Drop constant units (e.g. dead latents) first. Off by default: dead latents are part of what a
        dictionary delivers.

    Returns
    -------
    pandas.DataFrame
        One row per (unit type, score): ``unit_type``, ``score``, ``n_units``, ``median``, ``ci_low``,
        ``ci_high``.
    """
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty mapping of unit type -> monosemanticity_scores frame")
    rows = []
    for name, frame in results.items():
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"results[{name!r}] must be a DataFrame, got {type(frame).__name__}")
        if only_active and "constant" in frame:
            frame = frame[~frame["constant"].astype(bool)]
        for score in scores:
            if score not in frame:
                continue
            values = frame[score].to_numpy(dtype=np.float64)
            med, lo, hi = bootstrap_median_ci(values, n_boot=n_boot, seed=seed, ci=ci)
            rows.append(
                {"unit_type": name, "score": score, "n_units": len(frame), "median": med, "ci_low": lo, "ci_high": hi}
            )
    return pd.DataFrame(rows, columns=["unit_type", "score", "n_units", "median", "ci_low", "ci_high"])


def score_unit_types(
    sae: SparseAutoencoder,
    store: ActivationStore,
    seq_data: SequenceData,
    *,
    item_vectors: Any = None,
    seed: int = 0,
    codes: LatentCodes | None = None,
    progress: bool = True,
    **score_options: Any,
) -> dict[str, pd.DataFrame]:
    """:func:`monosemanticity_scores` for the five unit types of the comparison, on the same positions.

    Introduced in chapter 4 (chapters/04_features.ipynb).

    The types: ``"SAE"`` (the trained SAE's latents, or ``codes`` if given), ``"hidden dims"`` (each
    centred raw dimension split into its two signs), ``"PCA"`` (principal directions, both signs),
    ``"random rotation"`` (a random orthonormal basis, both signs; ``seed``) and ``"untrained SAE"`` (an SAE
    with the same config, initialised from ``seed`` and never trained).

    Parameters
    ----------
    item_vectors : (num_items + 1, D), optional
        Item vectors for ``ms`` (e.g. ``model.item_emb.weight``); default: genre multi-hots.
    **score_options
        Passed to :func:`monosemanticity_scores` (``top_n``, ``bins``...).

    Returns
    -------
    dict
        Unit type -> scores table, in the order above.
    """
    from tqdm.auto import tqdm

    genres_next, genres_input = genre_matrices(store, seq_data)
    common = dict(genres_input=genres_input, genre_names=list(seq_data.genre_names), **score_options)
    if item_vectors is not None:
        common.update(next_items=store.next_item, item_vectors=item_vectors)
    makers = {
        "SAE": lambda: codes if codes is not None else sae_units(sae, store),
        "hidden dims": lambda: hidden_dim_units(store),
        "PCA": lambda: pca_units(store),
        "random rotation": lambda: random_rotation_units(store, seed=seed),
        "untrained SAE": lambda: untrained_sae_units(sae.config, store, seed=seed),
    }
    results: dict[str, pd.DataFrame] = {}
    for name in tqdm(makers, desc="monosemanticity", disable=not progress):
        results[name] = monosemanticity_scores(makers[name](), genres_next, **common)
    return results


def planted_recovery(
    unit_acts: UnitActs, item_topic_of_next: Any, threshold: float = 0.9, *, n_topics: int | None = None
) -> dict[str, Any]:
    """How many planted topics some unit detects with AUC >= ``threshold`` (synthetic data).

    Introduced in chapter 4 (chapters/04_features.ipynb).

    Parameters
    ----------
    unit_acts : LatentCodes or (n, m) matrix
    item_topic_of_next : (n,) int
        Planted topic of each position's next item, ``seq_data.item_topic[store.next_item]``; ``-1``
        (unknown next item) rows are left out.
    threshold : float, default 0.9
    n_topics : int, optional
        Number of topics (default: max topic + 1).

    Returns
    -------
    dict
        ``n_topics``, ``n_recovered``, ``fraction``, ``threshold``, ``recovered`` (sorted list of topics),
        ``best_unit`` and ``best_auc`` (lists indexed by topic), ``n_distinct_units`` (distinct best units
        among recovered topics).

    Raises
    ------
    ValueError
        Wrong length, no known topic, or a threshold outside (0.5, 1].
    """
    n = _n_rows(unit_acts)
    topics = item_topic_of_next
    topics = topics.detach().cpu().numpy() if isinstance(topics, Tensor) else np.asarray(topics)
    if topics.shape != (n,) or (topics.size and not np.issubdtype(topics.dtype, np.integer)):
        raise ValueError(f"item_topic_of_next must be ({n},) integers, got {topics.dtype} {topics.shape}")
    if not 0.5 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0.5, 1], got {threshold}")
    valid = topics >= 0
    if not valid.any():
        raise ValueError("no position has a known planted topic")
    k = int(topics.max()) + 1 if n_topics is None else int(n_topics)
    onehot = (topics[:, None] == np.arange(k)[None, :]).astype(np.float64)
    auc = auc_matrix(unit_acts, onehot, mask=valid)
    best_unit = auc.argmax(0)
    best_auc = auc.max(0)
    recovered = np.flatnonzero(best_auc >= threshold)
    return {
        "n_topics": k,
        "n_recovered": int(len(recovered)),
        "fraction": float(len(recovered) / k) if k else 0.0,
        "threshold": float(threshold),
        "recovered": recovered.tolist(),
        "best_unit": best_unit.tolist(),
        "best_auc": best_auc.tolist(),
        "n_distinct_units": int(len(np.unique(best_unit[recovered]))),
    }
