"""Summarising steering results: list diversity (Gini, Jaccard), Pareto fronts and equal-cost tables.

Introduced in chapter 5. :func:`gini` and :func:`jaccard_at_k` are list metrics
of :func:`~seqsae_lib.steering.evaluation.evaluate_steering`'s table; :func:`pareto_front` and
:func:`share_at_equal_cost` compare the tables of several methods at the same accuracy cost.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from seqsae_lib.utils.checks import check_choice

__all__ = ["gini", "jaccard_at_k", "pareto_front", "search_strengths", "share_at_equal_cost"]


def gini(counts: Any) -> float:
    """Gini index of non-negative counts (e.g. how often each item is recommended).

    Introduced in chapter 5. ``0`` when every entry is equal, ``(n-1)/n``
    when one entry holds everything; ``NaN`` for an all-zero or empty input.
    """
    x = np.sort(np.asarray(counts, dtype=np.float64).ravel())
    if x.size and ((x < 0).any() or not np.isfinite(x).all()):
        raise ValueError("gini needs finite, non-negative counts")
    n, total = len(x), x.sum()
    if n == 0 or total <= 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def jaccard_at_k(a: Any, b: Any, *, reduce: Literal["mean", "none"] = "mean") -> float | np.ndarray:
    """Per-row Jaccard overlap ``|A & B| / |A | B|`` of two ``(n, k)`` recommendation lists.

    Introduced in chapter 5. Duplicates within a row are counted once.
    """
    x, y = np.asarray(a), np.asarray(b)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"need two (n, k) arrays of the same shape, got {x.shape} and {y.shape}")
    out = np.empty(len(x))
    for r in range(len(x)):  # rows are short (k ~ 10); sets are clearest
        sa, sb = set(x[r].tolist()), set(y[r].tolist())
        union = len(sa | sb)
        out[r] = len(sa & sb) / union if union else 1.0
    if reduce == "none":
        return out
    return float(out.mean()) if len(out) else float("nan")


def _k_of(df: pd.DataFrame) -> int:
    for c in df.columns:
        m = re.fullmatch(r"NDCG@(\d+)_drop", str(c))
        if m:
            return int(m.group(1))
    raise ValueError("cannot find an 'NDCG@k_drop' column: pass a table from evaluate_steering")


def pareto_front(
    df: pd.DataFrame, *, cost: str | None = None, gain: str | None = None, maximize: bool = True
) -> pd.DataFrame:
    """Rows of a grid not dominated by another row (lower or equal cost and strictly better gain).

    Introduced in chapter 5. Defaults: ``cost = "NDCG@k_drop"``,
    ``gain = "share@k"``; ``maximize=False`` when steering *away* from a concept (lower share is better).
    Returned sorted by cost.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a DataFrame from evaluate_steering, got {type(df).__name__}")
    if cost is None or gain is None:
        k = _k_of(df)
        cost = cost or f"NDCG@{k}_drop"
        gain = gain or f"share@{k}"
    for c in (cost, gain):
        if c not in df.columns:
            raise ValueError(f"column {c!r} not in the table; columns: {list(df.columns)}")
    sign = 1.0 if maximize else -1.0
    order = df.assign(_g=sign * df[gain]).sort_values([cost, "_g"], ascending=[True, False], kind="stable")
    keep, best = [], -np.inf
    for idx, g in zip(order.index, order["_g"]):
        if np.isfinite(g) and g > best:
            keep.append(idx)
            best = g
    return df.loc[keep]


def share_at_equal_cost(
    results: Mapping[str, pd.DataFrame],
    ndcg_costs: Sequence[float] = (0.005, 0.01, 0.02),
    *,
    value: str | None = None,
    cost: str | None = None,
    mode: Literal["crossing", "budget"] = "crossing",
    maximize: bool = True,
) -> pd.DataFrame:
    """The concept share each method reaches for a given NDCG@k drop.

    Introduced in chapter 5.

    Each method's curve is its grid ordered by ``|strength|``, starting from the unsteered point (cost 0,
    the unsteered share of the ``reference_share@k`` column) when the grid has no strength 0, and joined by
    straight lines.

    * ``mode="crossing"`` (default): the curve is followed to the first segment where the NDCG drop
      reaches ``c`` and the share is interpolated linearly in the drop on that segment. ``NaN`` when the
      drop never reaches ``c`` within the tested strengths: the method may be cheaper than ``c`` all along
      (a re-ranking that saturates, a method that even improves NDCG) or the grid stops too early; look
      at the curves before reading a NaN as "bad".
    * ``mode="budget"``: the best share (highest, or lowest with ``maximize=False``) anywhere on the
      curve where the drop is at most ``c``; ``NaN`` only if no point of the curve is that cheap.

    Parameters
    ----------
    results : dict
        ``method -> evaluate_steering table`` (e.g. :func:`~seqsae_lib.steering.evaluation.evaluate_methods`).
    ndcg_costs : sequence of float
        Absolute NDCG@k drops.
    value : str, optional
        Column to interpolate (default ``"share@k"``; ``"strength"`` tells the strength needed).
    cost : str, optional
        Cost column (default ``"NDCG@k_drop"``).

    Returns
    -------
    pandas.DataFrame
        One row per method, one column per cost (named like ``"share@10 at NDCG@10 drop 0.01"``).
    """
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty dict method -> table")
    check_choice("mode", mode, ("crossing", "budget"))
    costs = [float(c) for c in ndcg_costs]
    if not costs or not all(math.isfinite(c) for c in costs):
        raise ValueError(f"ndcg_costs must be finite numbers, got {ndcg_costs!r}")
    table: dict[str, dict[str, float]] = {}
    names: list[str] = []
    for method, df in results.items():
        k = _k_of(df)
        cost_col = cost or f"NDCG@{k}_drop"
        val_col = value or f"share@{k}"
        for c in (cost_col, val_col, "strength"):
            if c not in df.columns:
                raise ValueError(f"table of method {method!r} has no column {c!r}")
        curve = df.assign(_abs=df["strength"].abs()).sort_values("_abs", kind="stable")
        x = curve[cost_col].to_numpy(dtype=np.float64)
        y = curve[val_col].to_numpy(dtype=np.float64)
        if not (curve["_abs"] == 0).any():
            ref = f"reference_share@{k}"
            start = 0.0 if val_col == "strength" else (
                float(df[ref].iloc[0]) if val_col == f"share@{k}" and ref in df.columns and len(df) else np.nan
            )
            x = np.concatenate([[0.0], x])
            y = np.concatenate([[start], y])
        row = {}
        names = []
        for c in costs:
            name = f"{val_col} at {cost_col.replace('_', ' ')} {c:g}"
            names.append(name)
            if mode == "budget":
                row[name] = _budget_value(x, y, c, maximize)
                continue
            hit = np.flatnonzero(x >= c)
            if not len(hit):
                row[name] = float("nan")
                continue
            i = int(hit[0])
            if i == 0:
                row[name] = float(y[0])
                continue
            x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
            t = (c - x0) / (x1 - x0) if x1 != x0 else 1.0
            row[name] = float(y0 + t * (y1 - y0))
        table[method] = row
    out = pd.DataFrame.from_dict(table, orient="index")[names]
    out.index.name = "method"
    return out


def _budget_value(x: np.ndarray, y: np.ndarray, c: float, maximize: bool) -> float:
    """Best ``y`` on the piecewise-linear curve ``(x, y)`` where ``x <= c``."""
    vals = [float(v) for v in y[x <= c]]
    for i in range(1, len(x)):
        x0, x1 = x[i - 1], x[i]
        if (x0 - c) * (x1 - c) < 0:  # the segment crosses c
            t = (c - x0) / (x1 - x0)
            vals.append(float(y[i - 1] + t * (y[i] - y[i - 1])))
    vals = [v for v in vals if np.isfinite(v)]
    if not vals:
        return float("nan")
    return max(vals) if maximize else min(vals)


def search_strengths(
    drop_at: Callable[[float], float], grid: Sequence[float], budgets: Sequence[float], refine: int
) -> dict[float, float]:
    """The strengths a budgeted steering search tries, with the accuracy drop measured at each.

    Introduced in chapter 5. Strength 0 costs nothing (drop 0, not measured); then ``drop_at`` is measured up
    ``grid`` (increasing) until a drop exceeds the largest budget; then, for each budget, ``refine`` halvings of
    the interval between the largest strength within that budget and the next strength above it. The one
    search behind chapter 5's all-concepts table and its steering without labels: callers keep whatever
    else they measure at a strength (shares, top lists) in their own ``drop_at``.

    Returns
    -------
    dict
        strength -> drop, in the order measured (``0.0`` first).
    """
    if not budgets:
        raise ValueError("search_strengths needs at least one budget")
    drops: dict[float, float] = {0.0: 0.0}

    def at(strength: float) -> float:
        if strength not in drops:
            drop = float(drop_at(strength))
            if math.isnan(drop):
                raise ValueError(f"the accuracy drop measured at strength {strength:g} is NaN: check the steering "
                                 "method and the evaluator's users")
            drops[strength] = drop
        return drops[strength]

    for strength in grid:
        if at(float(strength)) > max(budgets):
            break
    for budget in budgets:
        for _ in range(refine):
            ok = max(s for s in drops if drops[s] <= budget)
            above = [s for s in drops if s > ok]
            if not above:
                break
            at((ok + min(above)) / 2)
    return drops
