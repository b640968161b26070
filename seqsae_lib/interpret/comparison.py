"""Comparisons of unit types with confidence intervals, tests and verdicts decided by the interval alone.

Introduced in chapter 4.

The chapter's claim "SAE features are more monosemantic than hidden dimensions" is a comparison of two
groups of per-unit scores (or of per-concept values). This module turns any per-unit score table
(one DataFrame per unit type, a numeric score column, optionally an ``eligible`` column) into:

:func:`compare_to_controls`
    The reference type (e.g. ``"SAE"``) against every other type: medians, their difference with a
    bootstrap confidence interval (each group resampled independently), a two-sided Mann-Whitney U test,
    and a verdict.
:func:`paired_comparison`
    Two types' values paired by concept (e.g. the best AUC per genre): wins, ties and losses, the median
    paired difference with a bootstrap interval, a Wilcoxon signed-rank test, and a verdict.
:func:`verdict_sentence`
    An English sentence built from one such result, whose direction words come from the verdict only.
:func:`comparison_table`
    :func:`compare_to_controls` for several scores at once.

The verdict is ``"higher"`` when the whole confidence interval of (reference - other) lies above 0,
``"lower"`` when it lies below 0, and ``"no clear difference"`` when it contains 0. The p-values are
reported beside it but never decide it. With many comparisons (types x scores) some intervals will exclude
0 by chance (about 5 % of true-null comparisons at ``ci=0.95``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from seqsae_lib.utils.checks import check_float, check_int

__all__ = ["VERDICTS", "compare_to_controls", "comparison_table", "paired_comparison", "verdict_sentence"]

VERDICTS: tuple[str, ...] = ("higher", "lower", "no clear difference")
"""The verdicts of :func:`compare_to_controls` and :func:`paired_comparison`, about (reference - other)."""

DEFAULT_NOUNS: dict[str, str] = {
    "SAE": "SAE latents", "untrained SAE": "untrained-SAE latents", "PCA": "PCA directions",
    "random rotation": "random-rotation directions", "hidden dims": "hidden dims",
}
"""Plural nouns :func:`verdict_sentence` uses for the unit type names of ``score_unit_types``."""

COMPARE_COLUMNS: tuple[str, ...] = (
    "reference", "other", "score", "n_reference", "n_other", "median_reference", "median_other", "diff",
    "ci_low", "ci_high", "ci_level", "p_value", "verdict",
)


def _verdict(low: float, high: float) -> str:
    if low > 0:
        return "higher"
    if high < 0:
        return "lower"
    return "no clear difference"


def _boot_medians(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` medians of resamples (with replacement) of ``values``, in memory-bounded chunks."""
    out = np.empty(n_boot)
    chunk = max(1, 4_000_000 // max(len(values), 1))
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        out[start : start + k] = np.median(values[rng.integers(0, len(values), size=(k, len(values)))], axis=1)
    return out


def _check_boot(n_boot: Any, ci: Any) -> tuple[int, float]:
    n_boot = check_int("n_boot", n_boot, minimum=100)
    ci = check_float("ci", ci, 0.0, 1.0, exclusive_minimum=True)
    if ci >= 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    return n_boot, ci


def _group_values(name: str, frame: Any, score: str, eligible_only: bool) -> np.ndarray:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frames[{name!r}] must be a pandas DataFrame of per-unit scores, got {type(frame).__name__}")
    if score not in frame.columns:
        raise ValueError(f"frames[{name!r}] has no column {score!r}; its columns are {list(frame.columns)}")
    column = frame[score]
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise TypeError(f"frames[{name!r}][{score!r}] must be numeric, got dtype {column.dtype}")
    values = column.to_numpy(dtype=np.float64)
    if eligible_only and "eligible" in frame.columns:
        values = values[frame["eligible"].fillna(False).to_numpy(dtype=bool)]
    values = values[np.isfinite(values)]
    if len(values) == 0:
        what = "eligible units with a finite" if eligible_only and "eligible" in frame.columns else "finite"
        raise ValueError(f"frames[{name!r}] has no {what} {score!r} value to compare")
    return values


def compare_to_controls(
    frames: Mapping[str, pd.DataFrame],
    score: str,
    reference: str = "SAE",
    *,
    eligible_only: bool = True,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Compare one unit type's per-unit ``score`` with every other type's: medians, CI, test, verdict.

    Introduced in chapter 4.

    Parameters
    ----------
    frames : mapping name -> DataFrame
        Per-unit score tables, one per unit type (e.g. the fair concentration scores, or
        :func:`~seqsae_lib.interpret.unit_scores.monosemanticity_scores`). Any numeric column can be
        compared; units with a NaN/inf score are left out.
    score : str
        The column to compare.
    reference : str, default "SAE"
        The unit type compared with all the others (a key of ``frames``).
    eligible_only : bool, default True
        Where a frame has an ``eligible`` column, keep only its eligible units.
    n_boot : int, default 2000
        Bootstrap resamples (at least 100).
    seed : int, default 0
    ci : float, default 0.95
        Level of the percentile-bootstrap interval, in (0, 1).

    Returns
    -------
    pandas.DataFrame
        One row per other unit type, in ``frames`` order: ``reference``, ``other``, ``score``,
        ``n_reference`` and ``n_other`` (units compared), ``median_reference``, ``median_other``, ``diff``
        (``median_reference - median_other``), ``ci_low`` and ``ci_high`` (percentile bootstrap of that
        difference, each group resampled independently, seeded), ``ci_level`` (``ci``), ``p_value``
        (two-sided Mann-Whitney U, in [0, 1]; it does not decide the verdict) and ``verdict``: ``"higher"`` (the reference's median is
        higher: ``ci_low > 0``), ``"lower"`` (``ci_high < 0``) or ``"no clear difference"`` (the interval
        contains 0).

    Raises
    ------
    TypeError, ValueError
        ``frames`` empty or not a mapping of DataFrames, ``reference`` not a key, no other type, ``score``
        missing or not numeric, a group without a finite (eligible) value.
    """
    from scipy.stats import mannwhitneyu

    if not isinstance(frames, Mapping):
        raise TypeError(f"frames must be a mapping of unit type -> DataFrame, got {type(frames).__name__}")
    if len(frames) < 2:
        raise ValueError(f"frames must hold the reference and at least one other unit type, got {list(frames)}")
    if not isinstance(score, str):
        raise TypeError(f"score must be a column name (str), got {type(score).__name__}")
    if reference not in frames:
        raise ValueError(f"reference must be one of {list(frames)}, got {reference!r}")
    n_boot, ci = _check_boot(n_boot, ci)
    seed = check_int("seed", seed)
    ref = _group_values(reference, frames[reference], score, eligible_only)
    alpha = (1.0 - ci) / 2.0
    rows = []
    for k, (name, frame) in enumerate(frames.items()):
        if name == reference:
            continue
        other = _group_values(name, frame, score, eligible_only)
        rng = np.random.default_rng([seed, k])
        boot = _boot_medians(ref, n_boot, rng) - _boot_medians(other, n_boot, rng)
        low, high = (float(q) for q in np.quantile(boot, [alpha, 1.0 - alpha]))
        p = float(mannwhitneyu(ref, other, alternative="two-sided").pvalue)
        med_ref, med_other = float(np.median(ref)), float(np.median(other))
        rows.append({
            "reference": reference, "other": name, "score": score, "n_reference": len(ref), "n_other": len(other),
            "median_reference": med_ref, "median_other": med_other, "diff": med_ref - med_other,
            "ci_low": low, "ci_high": high, "ci_level": ci, "p_value": p, "verdict": _verdict(low, high),
        })
    out = pd.DataFrame(rows, columns=list(COMPARE_COLUMNS))
    out.attrs.update({"n_boot": n_boot, "seed": seed, "ci": ci, "eligible_only": bool(eligible_only)})
    return out


def comparison_table(
    frames: Mapping[str, pd.DataFrame], scores: str | Sequence[str], reference: str = "SAE", **kw: Any
) -> pd.DataFrame:
    """:func:`compare_to_controls` for several score columns, stacked (one block of rows per score).

    Introduced in chapter 4.

    Parameters
    ----------
    scores : str or sequence of str
        Columns to compare; every frame must have each of them.
    **kw
        Passed to :func:`compare_to_controls` (``eligible_only``, ``n_boot``, ``seed``, ``ci``).

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`compare_to_controls`, ``len(scores) * (len(frames) - 1)`` rows, score-major.
    """
    if isinstance(scores, str):
        scores = [scores]
    scores = list(scores)
    if not scores:
        raise ValueError("scores must name at least one column")
    tables = [compare_to_controls(frames, s, reference, **kw) for s in scores]
    out = pd.concat(tables, ignore_index=True)
    out.attrs.update(tables[0].attrs)
    return out


def _paired_arrays(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        if set(a.index) != set(b.index) or not a.index.is_unique or not b.index.is_unique:
            raise ValueError("a and b are Series with different (or repeated) index labels; pairs are matched by "
                             f"label: got {list(a.index)[:5]}... and {list(b.index)[:5]}...")
        b = b.reindex(a.index)
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"a and b must be 1-D with the same length (paired by concept), got shapes {x.shape} and {y.shape}"
        )
    keep = np.isfinite(x) & np.isfinite(y)
    if not keep.any():
        raise ValueError(f"a and b have no pair of finite values (length {len(x)})")
    return x[keep], y[keep]


def paired_comparison(
    a: Any,
    b: Any,
    *,
    names: tuple[str, str] = ("SAE", "hidden dims"),
    score: str = "value",
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    tie_tol: float = 0.0,
) -> dict[str, Any]:
    """Compare two unit types on values paired by concept (e.g. each genre's best AUC under both).

    Introduced in chapter 4.

    Pairs with a NaN/inf on either side are dropped. Two Series are paired by index label; anything else by
    position. With few concepts (e.g. 19 genres) the bootstrap distribution of the median is coarse, and
    values on a grid (purities in steps of ``1 / top_n``) can put an interval end exactly at 0, which
    counts as "no clear difference": the verdict is conservative there.

    Parameters
    ----------
    a, b : 1-D array-like or Series of equal length
        Values of the first (reference) and second unit type for the same concepts.
    names : (str, str), default ("SAE", "hidden dims")
    score : str, default "value"
        Name of the compared quantity, for :func:`verdict_sentence`.
    n_boot, seed, ci
        Bootstrap of the median paired difference (pairs resampled with replacement).
    tie_tol : float, default 0.0
        ``|a - b| <= tie_tol`` counts as a tie (for the counts only).

    Returns
    -------
    dict
        ``reference``, ``other``, ``score``, ``n`` (pairs), ``wins`` / ``ties`` / ``losses`` (pairs where
        ``a`` is higher / within ``tie_tol`` / lower), ``median_reference``, ``median_other``,
        ``median_diff`` (median of ``a - b``), ``ci_low``, ``ci_high``, ``ci_level``, ``p_value`` (two-sided Wilcoxon
        signed-rank test on ``a - b``, zero differences dropped; exactly 1.0 when every difference is 0,
        where the test is undefined and there is no evidence of a difference) and ``verdict`` (as in
        :func:`compare_to_controls`, from the interval only).
    """
    from scipy.stats import wilcoxon

    if (not isinstance(names, (tuple, list)) or len(names) != 2
            or not all(isinstance(x, str) for x in names)):
        raise TypeError(f"names must be two strings (reference, other), got {names!r}")
    n_boot, ci = _check_boot(n_boot, ci)
    tie_tol = check_float("tie_tol", tie_tol, 0.0)
    seed = check_int("seed", seed)
    x, y = _paired_arrays(a, b)
    d = x - y
    rng = np.random.default_rng(seed)
    boot = _boot_medians(d, n_boot, rng)
    alpha = (1.0 - ci) / 2.0
    low, high = (float(q) for q in np.quantile(boot, [alpha, 1.0 - alpha]))
    if np.all(d == 0):
        p = 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
        p = 1.0 if math.isnan(p) else p
    return {
        "reference": names[0], "other": names[1], "score": str(score), "n": len(d),
        "wins": int((d > tie_tol).sum()), "ties": int((np.abs(d) <= tie_tol).sum()),
        "losses": int((d < -tie_tol).sum()),
        "median_reference": float(np.median(x)), "median_other": float(np.median(y)),
        "median_diff": float(np.median(d)), "ci_low": low, "ci_high": high, "ci_level": ci, "p_value": p,
        "verdict": _verdict(low, high),
    }


def verdict_sentence(
    row: Mapping[str, Any] | pd.Series,
    *,
    what: str,
    fmt: str = ".3f",
    context: str = "",
    nouns: Mapping[str, str] | None = None,
) -> str:
    """One English sentence stating a comparison's result, its direction taken from the verdict alone.

    Introduced in chapter 4.

    Parameters
    ----------
    row : a row of :func:`compare_to_controls` (Series or mapping) or the dict of :func:`paired_comparison`
    what : str
        Adjective for the score, e.g. ``"concentrated"`` (``"more concentrated"`` / ``"less concentrated"``).
    fmt : str, default ".3f"
        Format of the medians, the difference and the interval.
    context : str, optional
        Appended after the compared types, e.g. ``"by input genre"``.
    nouns : mapping, optional
        Plural noun for a unit type name, added to (and overriding) ``DEFAULT_NOUNS`` (``"SAE"`` ->
        ``"SAE latents"``, ...); a name found in neither is used as it is.

    Returns
    -------
    str
        E.g. ``"SAE latents are less concentrated than hidden dims by input genre (median kl_excess 0.216 vs
        0.299; difference -0.083, 95% CI -0.110 to -0.050; p = 0.0012)."``; for ``"no clear difference"``:
        ``"SAE latents are not clearly more or less concentrated than ... (...; 95% CI ... includes 0; ...)."``

    Raises
    ------
    ValueError
        A missing field, an unknown verdict, or a verdict that its interval contradicts (an edited row).
    """
    paired = "wins" in row
    need = ["reference", "other", "score", "median_reference", "median_other", "ci_low", "ci_high", "p_value",
            "verdict", "median_diff" if paired else "diff"] + (["n", "wins", "ties", "losses"] if paired else [])
    missing = [k for k in need if k not in row]
    if missing:
        raise ValueError(f"row lacks {missing}: pass a row of compare_to_controls or a paired_comparison dict")
    verdict = row["verdict"]
    if verdict not in VERDICTS:
        raise ValueError(f"row['verdict'] must be one of {list(VERDICTS)}, got {verdict!r}")
    low, high = float(row["ci_low"]), float(row["ci_high"])
    if _verdict(low, high) != verdict:
        raise ValueError(f"row['verdict'] is {verdict!r} but its interval [{low}, {high}] says {_verdict(low, high)!r}")
    nouns = {**DEFAULT_NOUNS, **dict(nouns or {})}
    ref = nouns.get(row["reference"], str(row["reference"]))
    other = nouns.get(row["other"], str(row["other"]))
    level = row["ci_level"] if "ci_level" in row else None
    level = f"{100 * float(level):g}% CI" if level is not None and np.isfinite(float(level)) else "CI"

    def f(v: Any) -> str:
        return format(float(v), fmt)

    head = {"higher": f"more {what} than", "lower": f"less {what} than",
            "no clear difference": f"not clearly more or less {what} than"}[verdict]
    where = f" {context}" if context else ""
    diff = row["median_diff"] if paired else row["diff"]
    median = f"median paired difference in {row['score']}" if paired else "difference"
    interval = f"{level} {f(low)} to {f(high)}" + (" includes 0" if verdict == "no clear difference" else "")
    values = f"median {row['score']} {f(row['median_reference'])} vs {f(row['median_other'])}"
    tail = f"; p = {float(row['p_value']):.2g}"
    if paired:
        tail += f"; {row['wins']} wins, {row['ties']} ties, {row['losses']} losses over {row['n']} concepts"
    return f"{ref} are {head} {other}{where} ({values}; {median} {f(diff)}, {interval}{tail})."
