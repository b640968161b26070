"""Concept sliders in a reader's unit: the concept share of an average user's top-k, with its accuracy cost.

Introduced in chapter 5.

A raw concept slider of :class:`~seqsae_lib.steering.live.LiveSteering` is a strength in state units along
unit-norm decoder directions, which means nothing to a reader, and the same strength moves a common genre
and a rare one very differently. :func:`calibrate_sliders` measures once, on a set of evaluation users
(e.g. every test user), each slider's average concept share@k and NDCG@k drop over a grid of strengths, in
both directions, from strength 0 outwards until the NDCG@k drop exceeds a budget (default 0.05). The
slider then moves a *position* in ``[-1, 1]``:

* position 0 is strength 0: exactly the unsteered list;
* the right end (+1) is the **highest** average share measured on the curve within the budget (or a stated
  ``target_share``, if lower); the left end (-1) the **lowest**;
* position ``p`` is the smallest strength (in size) at which the average share reaches
  ``unsteered + |p| * (end - unsteered)``, read off the measured curve (points joined by straight lines,
  first crossing), so the share an average user sees moves linearly with the slider and the strength moves
  monotonically with it.

The implied cost of a position is the measured NDCG@k drop at its strength (:meth:`SliderCurve.cost`).

**Operator.** A slider steers with the concept's SAE latents (``"add"``). If that cannot move an average
top-k by ``min_films`` items of the concept within the budget, the slider falls back to label re-ranking
(``fallback="rerank"``: the ``"rerank:<concept>"`` slider of ``LiveSteering``, a bonus on the concept's
items) and its :attr:`SliderCurve.note` says why; with ``fallback=None`` it keeps the SAE latents and the
note says the change stays small.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import pandas as pd

from seqsae_lib.steering.baselines import Rerank
from seqsae_lib.steering.evaluation import SteeringEvaluator
from seqsae_lib.steering.live import RERANK_PREFIX, LiveSteering
from seqsae_lib.utils.checks import check_choice, check_float, check_int

__all__ = ["SAE_GRID", "RERANK_GRID", "SliderCalibration", "SliderCurve", "calibrate_sliders"]

SAE_GRID: tuple[float, ...] = (0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 8, 10, 12, 16, 24, 32)
"""Strength sizes tried for an SAE slider, in each direction (state units), until the budget is exceeded."""
RERANK_GRID: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 2.5, 3, 4, 6, 8, 12, 16)
"""Bonus sizes tried for a re-ranking slider, in each direction (logits), until the budget is exceeded."""


@dataclass(frozen=True, eq=False)
class SliderCurve:
    """One calibrated concept slider: the measured average share and cost against strength.

    Introduced in chapter 5. Built by :func:`calibrate_sliders`.
    """

    concept: str
    operator: str
    """``"SAE latents"`` or ``"label re-ranking"``."""
    slider: str
    """The :class:`~seqsae_lib.steering.live.LiveSteering` slider it drives (the concept, or ``"rerank:<concept>"``)."""
    strengths: np.ndarray
    """Measured strengths, ascending, 0 included, from the left end's side to the right end's."""
    shares: np.ndarray
    """Average concept share@k of the calibration users at each strength, in [0, 1]."""
    ndcg_drops: np.ndarray
    """Average NDCG@k drop (unsteered minus steered) at each strength; at most ``budget``."""
    unsteered: float
    """Average share at strength 0, in [0, 1]."""
    low: float
    """Average share at position -1 (the lowest on the curve), in [0, unsteered]."""
    high: float
    """Average share at position +1 (the highest on the curve, capped at a target), in [unsteered, 1]."""
    budget: float
    k: int
    note: str = ""
    """Empty, or why the slider uses re-ranking or stays below the target share (the flag of a short slider)."""

    def _side(self, position: float) -> tuple[np.ndarray, np.ndarray, float]:
        right = position > 0
        keep = self.strengths >= 0 if right else self.strengths <= 0
        x, y = np.abs(self.strengths[keep]), self.shares[keep]
        order = np.argsort(x, kind="stable")
        return x[order], y[order], self.high if right else self.low

    def strength(self, position: float) -> float:
        """The strength (in the operator's unit) of a slider position in ``[-1, 1]``; 0 at position 0.

        Introduced in chapter 5. Non-decreasing in the position.

        Raises
        ------
        TypeError, ValueError
            A position that is not a finite number in ``[-1, 1]`` (the message names the slider).
        """
        p = check_float(f"position of slider {self.concept!r}", position, -1.0, 1.0)
        if p == 0.0:
            return 0.0
        x, y, end = self._side(p)
        level = self.unsteered + abs(p) * (end - self.unsteered)
        sign = 1.0 if p > 0 else -1.0
        reached = sign * (y - level) >= -1e-12
        i = int(np.argmax(reached))
        if i == 0 or not reached[i]:
            return sign * float(x[i] if reached[i] else x[-1])
        y0, y1 = y[i - 1], y[i]
        t = (level - y0) / (y1 - y0) if y1 != y0 else 1.0
        return sign * float(x[i - 1] + t * (x[i] - x[i - 1]))

    def share(self, position: float) -> float:
        """The average share the calibration promises at a position: ``unsteered + |p| * (end - unsteered)``.

        Introduced in chapter 5. In [0, 1].
        """
        p = check_float(f"position of slider {self.concept!r}", position, -1.0, 1.0)
        end = self.high if p > 0 else self.low
        return float(self.unsteered + abs(p) * (end - self.unsteered))

    def cost(self, position: float) -> float:
        """Implied average NDCG@k drop at a position (the measured curve at its strength); 0 at position 0.

        Introduced in chapter 5. At most ``budget``; slightly negative where steering helps accuracy.
        """
        return float(np.interp(self.strength(position), self.strengths, self.ndcg_drops))

    def label(self) -> str:
        """What the slider means, in words: the average share at each end and the cost at the right end.

        Introduced in chapter 5.
        """
        text = (f"{self.concept}: share of an average user's top-{self.k} {self.unsteered:.0%} → {self.high:.0%} "
                f"at the right end (NDCG@{self.k} −{max(self.cost(1.0), 0.0):.3f}), {self.low:.0%} at the left end")
        if self.operator != "SAE latents":
            text += f" [{self.operator}]"
        return text


@dataclass(frozen=True, eq=False)
class SliderCalibration(Mapping[str, SliderCurve]):
    """The calibrated concept sliders of one :class:`~seqsae_lib.steering.live.LiveSteering`: concept -> curve.

    Introduced in chapter 5. Built by :func:`calibrate_sliders`.
    """

    curves: dict[str, SliderCurve]
    budget: float
    """The NDCG@k drop allowed at either end."""
    k: int
    users: np.ndarray
    """Internal indices of the calibration users."""
    reference_ndcg: float
    """Unsteered NDCG@k of the calibration users, to read the budget against."""

    def __getitem__(self, concept: str) -> SliderCurve:
        try:
            return self.curves[concept]
        except (KeyError, TypeError):
            raise KeyError(f"unknown concept slider {concept!r}; calibrated sliders: {list(self.curves)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.curves)

    def __len__(self) -> int:
        return len(self.curves)

    def strengths(self, positions: Mapping[str, float]) -> dict[str, float]:
        """Slider positions (concept -> position in ``[-1, 1]``) as :meth:`LiveSteering.recommend` strengths.

        Introduced in chapter 5. Keys are the sliders the curves drive (the concept, or
        ``"rerank:<concept>"``); positions 0 are left out, so all-zero positions give the unsteered list.

        Raises
        ------
        KeyError
            An unknown concept (the calibrated ones are listed).
        TypeError, ValueError
            A position that is not a finite number in ``[-1, 1]``.
        """
        out: dict[str, float] = {}
        for concept, position in positions.items():
            curve = self[concept]
            s = curve.strength(position)
            if s != 0.0:
                out[curve.slider] = s
        return out

    def table(self) -> pd.DataFrame:
        """One row per slider: operator, average share at each end, strengths and implied NDCG@k costs, note.

        Introduced in chapter 5. Shares in [0, 1]; costs are average NDCG@k drops (at most ``budget``).
        """
        rows = {c: {"operator": v.operator, "unsteered": v.unsteered, "left_end": v.low, "right_end": v.high,
                    "strength_left": v.strength(-1.0), "strength_right": v.strength(1.0),
                    "ndcg_cost_left": v.cost(-1.0), "ndcg_cost_right": v.cost(1.0), "note": v.note}
                for c, v in self.curves.items()}
        out = pd.DataFrame.from_dict(rows, orient="index")
        out.index.name = "concept"
        return out


def _walk(run: Callable[[float], tuple[float, float]], grid: Sequence[float], sign: float,
          budget: float) -> list[tuple[float, float, float]]:
    """``(strength, share, drop)`` from strength 0 outwards in direction ``sign`` until the drop exceeds ``budget``.

    The last point is where the drop reaches the budget: measured at the strength where the straight line
    to the first point over budget crosses it, or, if that point is itself over budget, interpolated.
    """
    share0, _ = run(0.0)
    points = [(0.0, share0, 0.0)]
    for size in grid:
        share, drop = run(sign * size)
        if drop <= budget:
            points.append((sign * size, share, drop))
            continue
        s0, y0, c0 = points[-1]
        t = (budget - c0) / (drop - c0)
        s_mid = s0 + t * (sign * size - s0)
        y_mid, c_mid = run(s_mid)
        if c_mid <= budget:
            points.append((s_mid, y_mid, c_mid))
        else:  # the curve bends between the points: interpolate between the last one in budget and s_mid
            t = (budget - c0) / (c_mid - c0)
            points.append((s0 + t * (s_mid - s0), y0 + t * (y_mid - y0), budget))
        break
    return points


def _refine(run: Callable[[float], tuple[float, float]], points: list[tuple[float, float, float]], budget: float,
            max_step: float, max_extra: int) -> list[tuple[float, float, float]]:
    """Halve the segments of ``points`` (outwards from 0) whose share changes by more than ``max_step``.

    At most ``max_extra`` extra measurements; a midpoint over the budget ends the curve before it.
    """
    points = list(points)
    i = extra = 0
    while i < len(points) - 1 and extra < max_extra:
        (s0, y0, c0), (s1, y1, _) = points[i], points[i + 1]
        if abs(y1 - y0) <= max_step or abs(s1 - s0) < 1e-3:
            i += 1
            continue
        mid = (s0 + s1) / 2
        ym, cm = run(mid)
        extra += 1
        if cm <= budget:
            points.insert(i + 1, (mid, ym, cm))
        else:  # the curve crosses the budget before the midpoint: end it there
            t = (budget - c0) / (cm - c0)
            points[i + 1:] = [(s0 + t * (mid - s0), y0 + t * (ym - y0), budget)]
    return points


def _curve(concept: str, operator: str, slider: str, run: Callable[[float], tuple[float, float]],
           grid: Sequence[float], budget: float, k: int, target_share: float | None,
           max_step: float) -> SliderCurve:
    right, left = (_refine(run, _walk(run, grid, sign, budget), budget, max_step, 2 * len(grid))
                   for sign in (1.0, -1.0))
    points = sorted({p[0]: p for p in left + right}.values())
    x = np.array([p[0] for p in points])
    y = np.array([p[1] for p in points])
    c = np.array([p[2] for p in points])
    unsteered = float(right[0][1])
    high = max(p[1] for p in right)
    if target_share is not None:
        high = min(high, max(target_share, unsteered))
    low = min(p[1] for p in left)
    return SliderCurve(concept, operator, slider, x, y, c, unsteered, float(low), float(high), budget, k)


def calibrate_sliders(
    live: LiveSteering,
    targets: Any,
    *,
    users: Sequence[int] | None = None,
    budget: float = 0.05,
    target_share: float | None = None,
    min_films: float = 2.0,
    fallback: str | None = "rerank",
    max_step: float = 0.05,
    sae_grid: Sequence[float] = SAE_GRID,
    rerank_grid: Sequence[float] = RERANK_GRID,
    batch_size: int = 256,
) -> SliderCalibration:
    """Calibrate every concept slider of ``live`` on evaluation users (see the module docstring).

    Introduced in chapter 5. Runs once (at ``"final"`` one score product and ranking per measured strength,
    about 10 to 30 per slider and direction); moving a calibrated slider afterwards costs an interpolation.

    Parameters
    ----------
    live : LiveSteering
        Its concept sliders are calibrated, on its inputs.
    targets : array-like
        Held-out next item of every user of ``live`` (e.g. ``split.test_targets``), for NDCG@k.
    users : sequence of int, optional
        Internal indices of the calibration users (default: all).
    budget : float, default 0.05
        Largest average NDCG@k drop at either end of a slider (> 0).
    target_share : float, optional
        Cap of the right end's average share, in (0, 1]; default: as high as the budget allows.
    min_films : float, default 2.0
        Items of the concept the right end must add to an average top-k for the SAE latents to be used;
        below that, ``fallback`` decides.
    fallback : {"rerank", None}, default "rerank"
        ``"rerank"``: such a slider re-ranks by the concept label instead; ``None``: it keeps the SAE latents.
    max_step : float, default 0.05
        Resolution of the curve: a segment whose average share changes by more than this is halved (a few
        extra measurements), so reading a position off straight lines stays close to the measured share.
    sae_grid, rerank_grid : sequence of float
        Positive strength sizes tried in each direction, ascending.
    batch_size : int, default 256

    Returns
    -------
    SliderCalibration
        Concept -> :class:`SliderCurve`, in ``live.slider_names`` order.

    Raises
    ------
    TypeError, ValueError
        Not a LiveSteering; targets of the wrong length; a bad budget, target share, grid or fallback;
        user indices out of range.
    """
    if not isinstance(live, LiveSteering):
        raise TypeError(f"live must be a LiveSteering, got {type(live).__name__}")
    budget = check_float("budget", budget, 0.0, exclusive_minimum=True)
    if target_share is not None:
        target_share = check_float("target_share", target_share, 0.0, 1.0, exclusive_minimum=True)
    min_films = check_float("min_films", min_films, 0.0)
    max_step = check_float("max_step", max_step, 0.0, exclusive_minimum=True)
    if fallback is not None:
        check_choice("fallback", fallback, ("rerank",))
    grids = {}
    for name, grid in (("sae_grid", sae_grid), ("rerank_grid", rerank_grid)):
        g = np.asarray(grid, dtype=np.float64)
        if g.ndim != 1 or not len(g) or not np.isfinite(g).all() or (g <= 0).any() or (np.diff(g) <= 0).any():
            raise ValueError(f"{name} must be positive, finite and strictly ascending, got {list(grid)}")
        grids[name] = [float(v) for v in g]
    n = len(live.inputs)
    t = np.asarray(targets)
    if t.ndim != 1 or len(t) != n:
        raise ValueError(f"targets must hold one held-out item per user of live ({n}), got shape {t.shape}")
    idx = np.arange(n) if users is None else np.asarray([check_int("users[i]", u, 0, n - 1) for u in users])
    if not len(idx):
        raise ValueError("users is empty; expected at least one calibration user")
    evaluator = SteeringEvaluator(live.model, [live.inputs[i] for i in idx], t[idx], live.seq_data, k=live.k,
                                  batch_size=batch_size, n_boot=0)
    k = live.k
    curves: dict[str, SliderCurve] = {}
    for concept in live.slider_names:
        mask = live.concepts[concept].as_tensor()

        def measure(fn: Callable[[float], Any], concept: str = concept) -> Callable[[float], tuple[float, float]]:
            seen: dict[float, tuple[float, float]] = {}

            def run(s: float) -> tuple[float, float]:
                if s not in seen:
                    row = evaluator.run(fn, [s], live.concepts[concept], method="").iloc[0]
                    seen[s] = (float(row[f"share@{k}"]), float(row[f"NDCG@{k}_drop"]))
                return seen[s]
            return run

        sae = measure(lambda s, c=concept: live.steering({c: s}))
        curve = _curve(concept, "SAE latents", concept, sae, grids["sae_grid"], budget, k, target_share, max_step)
        gain = (curve.high - curve.unsteered) * k
        if gain < min_films - 1e-9:
            why = (f"the SAE latents add only {gain:.1f} {concept} items to an average top-{k} within an NDCG@{k} "
                   f"drop of {budget:g}")
            if fallback == "rerank":
                rerank = measure(lambda s, m=mask: Rerank(s * m))
                curve = _curve(concept, "label re-ranking", RERANK_PREFIX + concept, rerank, grids["rerank_grid"],
                               budget, k, target_share, max_step)
                still = (curve.high - curve.unsteered) * k
                why += "; this slider re-ranks by the concept label instead" + (
                    f", which adds only {still:.1f} within the budget" if still < min_films - 1e-9 else "")
                curve = replace(curve, note=why)
            else:
                curve = replace(curve, note=why)
        if target_share is not None and curve.high < target_share - 1e-9:
            short = f"reaches {curve.high:.0%}, not the target {target_share:.0%}, within the budget"
            curve = replace(curve, note=f"{curve.note}; {short}" if curve.note else short)
        curves[concept] = curve
    reference = float(evaluator.reference[0][f"NDCG@{k}"])
    return SliderCalibration(curves, budget, k, idx, reference)
