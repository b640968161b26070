"""Concept coverage of a whole dictionary, its size-matched control, and label concentration on the output side.

Introduced in chapter 4.

Per-unit scores ask "how monosemantic is the typical unit?". Coverage asks the dictionary-level question
"does *some* unit of this set stand for concept ``c``?":

:func:`concept_coverage`
    For each label, the eligible unit (at least ``min_fires`` firing positions) whose ``top_n``
    highest-activation firing positions carry the label most often (its *purity*), whether that purity
    reaches ``threshold`` (the label is *covered*), and the best ROC-AUC any unit reaches for the label.
:func:`subset_coverage`
    The same count for random subsets of ``subset_size`` units: a dictionary of 2,048 latents has 16 times
    more chances to hold a pure unit than 128 hidden-dimension units, so compare it with 128-unit subsets
    of itself, not with its full size.
:func:`output_concentration`
    The output side: the items a unit's write direction promotes most, and how concentrated their labels
    are, corrected by the same statistic for random directions (see its docstring for why directions and
    not random item sets make the null).

Shares on the input side count *positions*: a position whose item is "Comedy|Romance" counts fully for
both labels, so purities of different labels can add up to more than 1. On the output side the label
distribution of the promoted items is compared with the base distribution as a KL divergence, with each
item's label row normalised to sum 1 (the same definition as the per-unit input-side concentration).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from seqsae_lib.interpret.auc import auc_matrix, check_labels
from seqsae_lib.interpret.codes import UnitActs, column_entries, dense_matrix, n_rows
from seqsae_lib.interpret.concentration import check_top, top_entries
from seqsae_lib.utils.checks import check_float, check_int

__all__ = ["concept_coverage", "output_concentration", "subset_coverage"]


def _names(label_names: Sequence[str], n_labels: int) -> list[str]:
    if isinstance(label_names, str) or not isinstance(label_names, (Sequence, np.ndarray, pd.Index)):
        raise TypeError(f"label_names must be a sequence of {n_labels} str, got {type(label_names).__name__}")
    names = [str(x) for x in label_names]
    if len(names) != n_labels:
        raise ValueError(f"label_names has {len(names)} names but the labels have {n_labels} columns")
    return names


def _unit_purities(
    unit_acts: UnitActs, labels: Any, top_n: int, min_fires: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Tensor, Tensor]:
    """``(purity (m, C), fires (m,), eligible (m,), y (n, C), labelled (n,))`` on the labelled positions.

    ``purity[u, c]`` is the share of unit ``u``'s ``top_n`` highest-activation firing (> 0) labelled
    positions that carry label ``c`` (ties at the boundary: lower position first); NaN for ineligible units.
    """
    n = n_rows(unit_acts)
    if n == 0:
        raise ValueError("unit_acts has no rows (positions)")
    y = check_labels(labels, n, "labels")
    if y.shape[1] == 0:
        raise ValueError("labels must have at least one column")
    labelled = y.sum(1) > 0
    if not bool(labelled.any()):
        raise ValueError("no position has a label (every row of labels is all zero)")
    cols = column_entries(unit_acts).select_rows(labelled)
    cols = cols.keep(cols.val > 0)
    y = y[labelled]
    m = cols.m
    fires = cols.counts.numpy().astype(np.int64)
    eligible = fires >= min_fires
    purity = np.full((m, y.shape[1]), np.nan)
    if cols.nnz:
        unit, row, _ = top_entries(cols, torch.where(torch.from_numpy(eligible), top_n, 0))
        counts = torch.zeros(m, y.shape[1], dtype=torch.float64).index_add_(0, unit, y[row].to(torch.float64))
        purity[eligible] = (counts / top_n).numpy()[eligible]
    return purity, fires, eligible, y, labelled


def concept_coverage(
    unit_acts: UnitActs,
    labels: Any,
    label_names: Sequence[str],
    *,
    top_n: int = 100,
    min_fires: int = 100,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """Does the set of units as a whole hold a pure unit for each concept?

    Introduced in chapter 4.

    Only labelled positions (rows of ``labels`` with at least one 1) are used. A unit is *eligible* when it
    fires (activation > 0) on at least ``min_fires`` of them; its *purity* for label ``c`` is the share of
    its ``top_n`` highest-activation firing positions that carry ``c`` (ties at the boundary: lower
    position first). A label is *covered* when its best eligible unit reaches ``threshold``.

    Parameters
    ----------
    unit_acts : LatentCodes or (n, m) matrix
        Non-negative activations of ``m`` units (e.g. :func:`~seqsae_lib.interpret.unit_types.sae_units`).
    labels : (n, C) array of 0/1
        E.g. the multi-hot genres of :func:`~seqsae_lib.interpret.unit_scores.genre_matrices`.
    label_names : sequence of C str
    top_n : int, default 100
    min_fires : int, default 100
        Must be ``>= top_n``, so every eligible unit is judged on exactly ``top_n`` positions.
    threshold : float, default 0.5
        Purity in (0, 1] that counts as covering a label. The same purity is a larger lift for a rare label
        than for a common one: read ``best_purity`` next to ``base_share``.

    Returns
    -------
    pandas.DataFrame
        One row per label, in label order: ``label``, ``n_positive`` (labelled positions with it),
        ``base_share`` (their share of the labelled positions, in [0, 1]), ``best_unit`` (the eligible unit
        with the highest purity, lowest id on ties; -1 when no unit is eligible), ``best_purity`` (in [0, 1];
        NaN without an eligible unit), ``covered`` (bool), ``best_auc_unit`` and ``best_auc`` (the highest
        :func:`~seqsae_lib.interpret.auc.auc_matrix` ROC-AUC over **all** units, in [0, 1], 0.5 = chance).
        ``attrs`` hold ``top_n``, ``min_fires``, ``threshold``, ``n_units``, ``n_eligible``.

    Raises
    ------
    TypeError, ValueError
        Labels of the wrong shape or not 0/1, no labelled position, names that do not match the columns,
        ``min_fires < top_n``, or ``threshold`` outside (0, 1].
    """
    top_n, min_fires = check_top(top_n, min_fires)
    threshold = check_float("threshold", threshold, 0.0, 1.0, exclusive_minimum=True)
    purity, fires, eligible, y, labelled = _unit_purities(unit_acts, labels, top_n, min_fires)
    names = _names(label_names, y.shape[1])
    m, n_labels = purity.shape
    masked = np.where(eligible[:, None], purity, -np.inf)
    best_unit = masked.argmax(0) if m else np.zeros(n_labels, dtype=np.int64)
    any_eligible = bool(eligible.any())
    best_purity = masked[best_unit, np.arange(n_labels)] if any_eligible else np.full(n_labels, np.nan)
    auc = auc_matrix(unit_acts, check_labels(labels, len(labelled), "labels").numpy(), mask=labelled)
    n_pos = y.sum(0).numpy()
    frame = pd.DataFrame(
        {
            "label": names,
            "n_positive": n_pos.astype(np.int64),
            "base_share": n_pos / len(y),
            "best_unit": np.where(any_eligible, best_unit, -1).astype(np.int64),
            "best_purity": best_purity,
            "covered": np.nan_to_num(best_purity, nan=-1.0) >= threshold,
            "best_auc_unit": auc.argmax(0).astype(np.int64),
            "best_auc": auc.max(0),
        }
    )
    frame.attrs.update(
        {"top_n": top_n, "min_fires": min_fires, "threshold": threshold, "n_units": int(m),
         "n_eligible": int(eligible.sum())}
    )
    return frame


def subset_coverage(
    unit_acts: UnitActs,
    labels: Any,
    label_names: Sequence[str],
    *,
    subset_size: int = 128,
    n_subsets: int = 200,
    seed: int = 0,
    top_n: int = 100,
    min_fires: int = 100,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """Concept coverage of random size-matched subsets of the units: a fair control for dictionary size.

    Introduced in chapter 4.

    Each of ``n_subsets`` subsets draws ``subset_size`` distinct units uniformly (seeded) from **all**
    units, dead and rare ones included (they are part of what a dictionary delivers; they just cannot cover
    anything). Purities are those of :func:`concept_coverage`, computed once; a subset covers label ``c``
    when one of its eligible units reaches ``threshold`` for ``c``. Compare, e.g., 128-unit subsets of a
    2,048-latent SAE with the 128 hidden-dimension units.

    Returns
    -------
    pandas.DataFrame
        One row per subset: ``subset`` (0..n_subsets-1), ``n_eligible`` (eligible units drawn),
        ``n_covered`` (labels covered, 0..C), ``mean_best_purity`` (mean over labels of the subset's best
        purity, in [0, 1]; NaN for a subset without an eligible unit). ``attrs`` hold the options and
        ``n_units``.

    Raises
    ------
    TypeError, ValueError
        As :func:`concept_coverage`, or ``subset_size`` outside ``1..m``.
    """
    top_n, min_fires = check_top(top_n, min_fires)
    threshold = check_float("threshold", threshold, 0.0, 1.0, exclusive_minimum=True)
    n_subsets = check_int("n_subsets", n_subsets, minimum=1)
    purity, _, eligible, y, _ = _unit_purities(unit_acts, labels, top_n, min_fires)
    _names(label_names, y.shape[1])
    m = purity.shape[0]
    subset_size = check_int("subset_size", subset_size, minimum=1, maximum=m)
    rng = np.random.default_rng(check_int("seed", seed))
    picks = np.argsort(rng.random((n_subsets, m)), axis=1)[:, :subset_size]  # uniform subsets, no repeats
    masked = np.where(eligible[:, None], purity, -np.inf)
    best = masked[picks].max(axis=1)  # (n_subsets, C)
    n_eligible = eligible[picks].sum(1)
    best = np.where(n_eligible[:, None] > 0, best, np.nan)
    frame = pd.DataFrame(
        {
            "subset": np.arange(n_subsets),
            "n_eligible": n_eligible.astype(np.int64),
            "n_covered": (np.nan_to_num(best, nan=-1.0) >= threshold).sum(1).astype(np.int64),
            "mean_best_purity": best.mean(1),
        }
    )
    frame.attrs.update(
        {"subset_size": subset_size, "n_subsets": n_subsets, "seed": int(seed), "top_n": top_n,
         "min_fires": min_fires, "threshold": threshold, "n_units": int(m)}
    )
    return frame


# --------------------------------------------------------------------------------------------------------
# output side
# --------------------------------------------------------------------------------------------------------


def _top_label_kl(effects: Tensor, dist: Tensor, base: Tensor, top_n: int) -> tuple[Tensor, Tensor]:
    """Per row of ``effects`` (k, I): the label mass of its ``top_n`` items (k, C) and KL from ``base``."""
    # stable order by (-effect, item id): argsort of the negated effects, stable, keeps lower ids first
    top = torch.argsort(-effects, dim=1, stable=True)[:, :top_n]
    mass = dist[top].sum(1)  # (k, C)
    p = mass / mass.sum(1, keepdim=True)
    ratio = torch.where(p > 0, p / base[None, :], torch.ones_like(p))
    return mass, (p * torch.log(ratio)).sum(1)


def output_concentration(
    directions: Any,
    item_matrix: Any,
    item_labels: Any,
    label_names: Sequence[str],
    *,
    top_n: int = 50,
    n_random: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Label concentration of the items each unit's write direction promotes, chance-corrected.

    Introduced in chapter 4.

    A direction ``d`` changes item ``i``'s score by ``d @ item_matrix[i]`` (exact when the direction is
    written to the final hidden state, whose logits are ``h @ item_emb.T``; for an inner capture point pass
    linearised directions, e.g. ``d @ J`` as in :mod:`~seqsae_lib.interpret.effects`). Its ``top_n``
    promoted items (highest change; ties: lower item id first) are taken among the labelled items (rows
    ``1..`` of ``item_labels`` with at least one 1; row 0 is padding and skipped). Each item's label row is
    normalised to sum 1; ``top_label`` is the label with the most mass among the promoted items,
    ``top_share`` its share of that mass, ``base_share`` its share over all labelled items, ``lift`` their
    ratio and ``kl`` the KL divergence (natural log) of the promoted items' label distribution from the base
    one.

    Why the null is random *directions*, not random item sets: item embeddings cluster (by genre, by
    popularity), so the top items of *any* direction, even one unrelated to the labels, form a coherent
    group whose labels are more concentrated than those of ``top_n`` items drawn at random. Random item sets
    would therefore make every direction look concentrated. ``kl_null`` is instead the mean ``kl`` of
    ``n_random`` isotropic Gaussian directions in R^D (seeded; the same for every unit) through the same
    item matrix, so a direction unrelated to the labels has ``kl_excess`` near 0 on average whatever the
    geometry of the items. The null is isotropic: a direction type that favours the item matrix's dominant
    axes (e.g. popularity) can score above it without being about a label.

    Parameters
    ----------
    directions : (m, D) tensor or array
        One write direction per unit: an SAE's ``W_dec`` rows; a basis vector ``e_i`` for a hidden
        dimension and ``-e_i`` for its negative half (the order of
        :func:`~seqsae_lib.interpret.unit_types.hidden_dim_units`: ``torch.cat([eye, -eye])``). Scale does
        not matter; an all-zero direction gets NaN scores and ``eligible`` False.
    item_matrix : (num_items + 1, D)
        Item output embeddings (e.g. ``model.item_emb.weight``).
    item_labels : (num_items + 1, C) array of 0/1
        E.g. ``seq_data.item_genres``.
    label_names : sequence of C str
    top_n : int, default 50
    n_random : int, default 1000
        Random directions of the null (at least 2).
    seed : int, default 0

    Returns
    -------
    pandas.DataFrame
        Indexed by ``unit`` (row of ``directions``): ``eligible`` (non-zero direction), ``top_label``,
        ``top_share`` and ``base_share`` (in [0, 1]), ``lift`` (>= 0, 1 = base rate), ``kl`` (>= 0),
        ``kl_null`` (>= 0, one value for all units), ``kl_excess`` (``kl - kl_null``; ~0 for an unrelated
        direction), ``z`` (``kl_excess`` over the null's standard deviation), ``pct_vs_random`` (share of
        random directions with a lower ``kl``, ties counted half, in [0, 1]; 0.5 = typical of chance).

    Raises
    ------
    TypeError, ValueError
        Shapes that do not agree, labels not 0/1, fewer labelled items than ``top_n``, ``n_random < 2``.
    """
    top_n = check_int("top_n", top_n, minimum=1)
    n_random = check_int("n_random", n_random, minimum=2)
    dirs = dense_matrix(directions, "directions").double()
    items = dense_matrix(item_matrix, "item_matrix").double()
    if dirs.shape[1] != items.shape[1]:
        raise ValueError(
            f"directions have D={dirs.shape[1]} columns but item_matrix has D={items.shape[1]}; they must match"
        )
    y = check_labels(item_labels, items.shape[0], "item_labels")
    names = _names(label_names, y.shape[1])
    if y.shape[1] == 0:
        raise ValueError("item_labels must have at least one column")
    keep = y.sum(1) > 0
    keep[0] = False  # padding row
    n_items = int(keep.sum())
    if n_items < top_n:
        raise ValueError(f"only {n_items} labelled items (rows 1.. of item_labels), fewer than top_n={top_n}")
    items, y = items[keep], y[keep]
    dist = y / y.sum(1, keepdim=True)
    base = dist.sum(0) / n_items

    gen = torch.Generator().manual_seed(check_int("seed", seed))
    null_kl = torch.cat([
        _top_label_kl(torch.randn(min(256, n_random - s), items.shape[1], generator=gen, dtype=torch.float64)
                      @ items.T, dist, base, top_n)[1]
        for s in range(0, n_random, 256)
    ])
    kl_null, null_std = float(null_kl.mean()), float(null_kl.std())

    m = dirs.shape[0]
    mass = torch.zeros(m, y.shape[1], dtype=torch.float64)
    kl = torch.zeros(m, dtype=torch.float64)
    for s in range(0, m, 512):
        mass[s : s + 512], kl[s : s + 512] = _top_label_kl(dirs[s : s + 512] @ items.T, dist, base, top_n)
    eligible = (dirs != 0).any(1).numpy()
    top = mass.argmax(1)
    top_share = (mass.gather(1, top[:, None])[:, 0] / mass.sum(1)).numpy()
    base_top = base[top].numpy()
    kl_np = kl.numpy()
    null_sorted = np.sort(null_kl.numpy())
    lower = np.searchsorted(null_sorted, kl_np, side="left")
    equal = np.searchsorted(null_sorted, kl_np, side="right") - lower
    nan = np.where(eligible, 1.0, np.nan)
    frame = pd.DataFrame(index=pd.RangeIndex(m, name="unit"))
    frame["eligible"] = eligible
    frame["top_label"] = np.where(eligible, np.array(names, dtype=object)[top.numpy()], None)
    frame["top_share"] = top_share * nan
    frame["base_share"] = base_top * nan
    frame["lift"] = top_share / base_top * nan
    frame["kl"] = kl_np * nan
    frame["kl_null"] = kl_null
    frame["kl_excess"] = (kl_np - kl_null) * nan
    frame["z"] = (kl_np - kl_null) / null_std * nan if null_std > 0 else math.nan
    frame["pct_vs_random"] = (lower + 0.5 * equal) / n_random * nan
    frame.attrs.update(
        {"top_n": top_n, "n_random": n_random, "seed": int(seed), "kl_null_std": null_std, "n_items": n_items}
    )
    return frame
