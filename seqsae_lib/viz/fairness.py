"""Figures of the fair monosemanticity test: the coverage cap on naive scores, medians with CIs, concept coverage.

Introduced in chapter 4.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_auc_ceiling", "plot_median_cis", "plot_concept_coverage"]

_SCORE_NAMES = {
    "kl_excess": "genre concentration (KL above chance)",
    "lift": "top-genre lift among top positions",
    "top_share": "top-genre share among top positions",
    "auc_next": "best-genre ROC-AUC (next item)",
    "auc_input": "best-genre ROC-AUC (input item)",
    "purity_lift": "top-N genre purity lift",
    "js": "Jensen-Shannon separability",
    "ms": "MS: top-item similarity",
    "best_purity": "share of the genre among the best unit's 100 top positions",
    "best_auc": "best single unit's ROC-AUC for the genre",
}


def _axis(ax: "Axes | None", size: tuple[float, float]) -> "Axes":
    if ax is None:
        _, ax = plt.subplots(figsize=size, layout="constrained")
    return ax


def plot_auc_ceiling(
    fire_rate: Sequence[float] | np.ndarray,
    auc: Sequence[float] | np.ndarray,
    ceiling: Sequence[float] | np.ndarray,
    *,
    reference: float | None = None,
    reference_label: str = "median of hidden dims",
    ax: "Axes | None" = None,
) -> "Axes":
    """Each unit's naive ROC-AUC and the highest AUC its firing coverage allows, against its fire rate.

    Introduced in chapter 4. ``fire_rate`` (share of positions where the unit is > 0, in (0, 1]), ``auc``
    (its best-genre AUC over all positions) and ``ceiling`` (the best AUC any ordering of its firing
    positions could reach for that genre) are per-unit arrays of the same length; units with a zero fire
    rate are left out (log axis). ``reference`` draws a horizontal line, e.g. the hidden dimensions' median
    AUC, which a unit under it cannot reach however well it orders what it fires on.
    """
    rate = np.asarray(fire_rate, dtype=float)
    a = np.asarray(auc, dtype=float)
    c = np.asarray(ceiling, dtype=float)
    if not (rate.shape == a.shape == c.shape) or rate.ndim != 1:
        raise ValueError(f"fire_rate, auc and ceiling must be 1-D of one length, got {rate.shape}, {a.shape}, {c.shape}")
    keep = (rate > 0) & np.isfinite(a) & np.isfinite(c)
    ax = _axis(ax, (6.4, 3.8))
    ax.scatter(rate[keep], c[keep], s=6, color="#BBBBBB", label="ceiling (perfect order of its firing positions)",
               rasterized=True)
    ax.scatter(rate[keep], a[keep], s=6, color="#4C72B0", alpha=0.6, label="measured AUC", rasterized=True)
    if reference is not None:
        ax.axhline(reference, color="#C44E52", linestyle="--", linewidth=1.2, label=reference_label)
    ax.set_xscale("log")
    ax.set_xlabel("fire rate (share of positions where the unit is active, log scale)")
    ax.set_ylabel("best-genre ROC-AUC (next item)")
    ax.set_title("A rarely firing unit cannot reach a high AUC over all positions")
    ax.legend(frameon=False, fontsize=9, loc="upper left")
    return ax


def plot_median_cis(
    summary: pd.DataFrame,
    scores: Sequence[str] | None = None,
    *,
    order: Sequence[str] | None = None,
    highlight: str = "SAE",
    axes: "np.ndarray | None" = None,
) -> np.ndarray:
    """Median and confidence interval of each score for each unit type (a forest plot, one panel per score).

    Introduced in chapter 4. ``summary`` has the columns ``unit_type``, ``score``, ``median``, ``ci_low`` and
    ``ci_high`` (the output of :func:`seqsae_lib.interpret.compare_unit_types`); ``order`` fixes the unit
    types' order top to bottom; ``highlight`` is drawn in colour, the controls in grey. Non-overlapping
    intervals mean a clear difference of medians; overlapping ones do not by themselves mean a tie.
    """
    need = {"unit_type", "score", "median", "ci_low", "ci_high"}
    if not isinstance(summary, pd.DataFrame) or not need <= set(summary.columns):
        raise ValueError(f"summary must be a DataFrame with columns {sorted(need)}")
    scores = list(dict.fromkeys(summary["score"])) if scores is None else list(scores)
    unknown = [s for s in scores if s not in set(summary["score"])]
    if unknown:
        raise ValueError(f"scores {unknown} are not in summary (it has {sorted(set(summary['score']))})")
    names = list(dict.fromkeys(summary["unit_type"])) if order is None else list(order)
    if axes is None:
        _, axes = plt.subplots(1, len(scores), figsize=(min(max(3.7 * len(scores), 6.0), 7.6), 0.45 * len(names) + 1.4),
                               layout="constrained", squeeze=False)
    axes = np.atleast_1d(axes).ravel()
    for ax, score in zip(axes, scores):
        rows = summary[summary["score"] == score].set_index("unit_type")
        for y, name in enumerate(names):
            if name not in rows.index:
                continue
            med, low, high = (float(rows.loc[name, c]) for c in ("median", "ci_low", "ci_high"))
            colour = "#C44E52" if name == highlight else "#555555"
            ax.errorbar(med, y, xerr=[[med - low], [high - med]], fmt="o", color=colour, capsize=3)
        ax.set_yticks(np.arange(len(names)), names if ax is axes[0] else [""] * len(names))
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.set_xlabel(f"median {_SCORE_NAMES.get(score, score)}")
        ax.grid(axis="x", alpha=0.3)
    return axes


def plot_concept_coverage(
    coverage: Mapping[str, pd.DataFrame],
    *,
    value: str = "best_purity",
    threshold: float | None = 0.5,
    ax: "Axes | None" = None,
) -> "Axes":
    """For each concept (genre), the best single unit's score in each unit type (a dot plot).

    Introduced in chapter 4. ``coverage`` maps a unit type to a table with one row per concept and the
    columns ``label`` and ``value`` (e.g. ``best_purity``: the best unit's share of that genre among its
    top positions, in [0, 1]; or ``best_auc``). ``threshold`` draws the line a unit must reach to count as
    covering the concept.
    """
    if not isinstance(coverage, Mapping) or not coverage:
        raise ValueError("coverage must be a non-empty mapping of unit type -> concept_coverage table")
    first = next(iter(coverage.values()))
    for name, table in coverage.items():
        if not {"label", value} <= set(table.columns):
            raise ValueError(f"coverage[{name!r}] needs the columns 'label' and {value!r}")
    labels = list(first["label"])
    ax = _axis(ax, (7.2, 0.32 * len(labels) + 1.6))
    markers = ["o", "s", "^", "D", "v", "P"]
    for i, (name, table) in enumerate(coverage.items()):
        values = table.set_index("label")[value].reindex(labels).to_numpy(dtype=float)
        ax.scatter(values, np.arange(len(labels)), marker=markers[i % len(markers)], s=30, label=name,
                   alpha=0.85, zorder=3)
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_yticks(np.arange(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlabel(_SCORE_NAMES.get(value, value.replace("_", " ")))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(frameon=False, fontsize=9, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return ax
