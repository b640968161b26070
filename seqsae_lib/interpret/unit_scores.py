"""Monosemanticity scores of any set of units (SAE latents, hidden dimensions, PCA, random directions) vs genres.

Introduced in chapter 4.

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
* Sign. A dense dimension can encode a genre by low values.
  :func:`~seqsae_lib.interpret.unit_types.hidden_dim_units`,
  :func:`~seqsae_lib.interpret.unit_types.pca_units` and
  :func:`~seqsae_lib.interpret.unit_types.random_rotation_units` therefore split every direction into two
  non-negative units, ``relu(x)`` and ``relu(-x)`` (after centring by default), so that a negative association is not lost.
* Best-of-G selection. Maximising over genres biases every score upward by the same mechanism for every
  unit type; genres with fewer than ``min_positives`` positive (or negative) positions are not candidates.
* Dictionary size. 2,048 latents contain more lucky units than 128 dimensions: compare medians (with
  :func:`~seqsae_lib.interpret.unit_types.bootstrap_median_ci`), not maxima.

Every score is finite for every unit: constant units (all positions equal, including never-firing latents)
get AUC 0.5, JS 0, purity equal to the base rate and ``ms`` near ``ms_chance``.

The unit types themselves and the summaries of a comparison are in :mod:`seqsae_lib.interpret.unit_types`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from seqsae_lib.data import SequenceData
from seqsae_lib.interpret.auc import UnitRanks, auc_from_ranks, check_labels, check_mask, unit_ranks
from seqsae_lib.interpret.codes import ColumnEntries, UnitActs, column_entries, dense_matrix, n_rows
from seqsae_lib.sae import ActivationStore
from seqsae_lib.utils.checks import check_int

__all__ = ["SCORE_COLUMNS", "genre_matrices", "js_divergence", "monosemanticity_scores"]

SCORE_COLUMNS: tuple[str, ...] = ("auc_next", "auc_input", "purity", "purity_lift", "js", "js_distance", "ms")
"""The scores :func:`~seqsae_lib.interpret.unit_types.compare_unit_types` summarises by default."""



def js_divergence(p: Any, q: Any) -> np.ndarray:
    """Jensen-Shannon divergence in bits between distributions along the last axis, in [0, 1].

    Introduced in chapter 4.

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

    Introduced in chapter 4. Rows of positions with an unknown next item
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

    Introduced in chapter 4.

    Parameters
    ----------
    unit_acts : LatentCodes or (n, m) matrix
        Activations of ``m`` units on ``n`` positions (from
        :func:`~seqsae_lib.interpret.unit_types.sae_units`, ``hidden_dim_units``...).
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
    n = n_rows(unit_acts)
    if n == 0:
        raise ValueError("unit_acts has no rows")
    top_n = check_int("top_n", top_n, minimum=2)
    bins = check_int("bins", bins, minimum=1)
    y_next = check_labels(genres_next, n, "genres_next")
    n_genres = y_next.shape[1]
    names = [f"g{g}" for g in range(n_genres)] if genre_names is None else [str(g) for g in genre_names]
    if len(names) != n_genres:
        raise ValueError(f"{len(names)} genre names for {n_genres} genre columns")
    full = column_entries(unit_acts)
    m = full.m
    if unit_names is not None and len(unit_names) != m:
        raise ValueError(f"{len(unit_names)} unit names for {m} units")

    # ---- next-item scores ----------------------------------------------------------------------------
    keep = check_mask(mask_next, n, "mask_next", y_next.sum(1) > 0)
    if not bool(keep.any()):
        raise ValueError("no position has a known next item (mask_next / genres_next rows are all empty)")
    cols = full.select_rows(keep)
    y = y_next[keep]
    nn_ = cols.n
    vectors = _ms_vectors(y_next, next_items, item_vectors, n)[keep]
    yv = torch.cat([y, vectors], dim=1)
    ranks = unit_ranks(cols, top_n)
    # per unit: sums over its entries (float32: exact for the 0/1 genre counts, ample for the vectors)
    c_yv = cols.matmul(torch.ones(cols.nnz), yv, dtype=torch.float32)
    f_yv = cols.matmul(ranks.frac, yv, sparse_weights=True)  # per unit: top-N weighted sums
    auc, cy, npos, nneg = auc_from_ranks(cols, ranks, y, c_yv[:, :n_genres])
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
        y_in = check_labels(genres_input, n, "genres_input")
        if y_in.shape[1] != n_genres:
            raise ValueError(f"genres_input has {y_in.shape[1]} genre columns, genres_next {n_genres}")
        keep_in = check_mask(mask_input, n, "mask_input", y_in.sum(1) > 0)
        cols_in = full.select_rows(keep_in)
        auc_in, _, npos_in, nneg_in = auc_from_ranks(cols_in, unit_ranks(cols_in), y_in[keep_in])
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
    return frame


def _js_best(cols: ColumnEntries, y: Tensor, best: Tensor, npos: Tensor, nneg: Tensor, bins: int) -> np.ndarray:
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
        table = dense_matrix(item_vectors, "item_vectors").double()
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


def _ms(cols: ColumnEntries, ranks: UnitRanks, vectors: Tensor, c_v: Tensor, f_v: Tensor) -> np.ndarray:
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
