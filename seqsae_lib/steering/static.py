"""Steering without a kernel: the data a web page needs to re-rank a user's top-k as sliders move.

Introduced in chapter 5.

At the ``"final"`` capture point, with the tied output head, an additive steering is an exact per-item
score bonus (chapter 5, section "The geometry"): adding ``s`` times a concept's summed decoder direction
``v`` to the final state changes every score by ``s * v @ E_i``, the same for every user. A re-ranking slider
(``"rerank:<concept>"`` of :class:`~seqsae_lib.steering.live.LiveSteering`) adds ``s`` times the concept's
weights. So a user's steered scores are

    ``scores = base + sum over sliders of strength * bonus``

with ``base`` the user's unsteered scores and one ``bonus`` vector per slider, shared by all users. A page can
therefore re-rank in the browser, exactly (up to float rounding), from a small payload:
:func:`export_static_steering` builds it (per user, the unsteered scores of the items that can reach the
top-k anywhere in the sliders' range; per slider, its bonus on those items and its strength at each slider
position), and :func:`static_top_k` is the reference of the arithmetic the page's script
(``seqsae_lib/viz/static_steering.js``, embedded by :func:`seqsae_lib.viz.widgets.static_steering_html`)
does, for tests.

**Pruning.** For one user, with every slider's strength within ``[lo, hi]``, an item that ``k`` other items beat
at every setting of the sliders can never be shown, and the payload leaves it out: first by each item's score
range alone (``base_i`` plus the smallest / largest bonus the box allows), then by pairs, since one slider moves
both items' scores (:data:`PRUNE_MARGIN` keeps float rounding on the safe side). The rest is exact.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from seqsae_lib.steering.calibration import SliderCalibration
from seqsae_lib.steering.live import RERANK_PREFIX, LiveSteering
from seqsae_lib.utils.checks import check_float, check_int

__all__ = ["PRUNE_MARGIN", "STATIC_FORMAT", "export_static_steering", "payload_size", "static_top_k"]

STATIC_FORMAT = "seqsae-static-steering/1"
"""Version tag of the payload (the page's script checks it)."""


def _b64(values: np.ndarray) -> str:
    """Little-endian float32 values as base64 (exact: the scores are float32 in the library too)."""
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")


def _unb64(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4")


def _number(w: float) -> int | float:
    """A concept weight as short JSON: 0 and 1 as integers."""
    return int(w) if float(w).is_integer() else round(float(w), 4)


def _grid(lo: float, hi: float, step: float) -> np.ndarray:
    n = int(round((hi - lo) / step))
    if n < 2 or abs(n * step - (hi - lo)) > 1e-9 * max(1.0, hi - lo):
        raise ValueError(f"step {step:g} must divide the slider range {lo:g} to {hi:g} into at least 2 steps")
    return np.round(lo + step * np.arange(n + 1), 10)


PRUNE_MARGIN = 1e-3
"""Score margin (logits) by which an item must be beaten at every setting to be left out of a user's candidates:
well above the float rounding between the library's float32 products and the page's float64 sums."""


def _candidates(scores: np.ndarray, B: np.ndarray, lo: np.ndarray, hi: np.ndarray, k: int,
                low_part: Any, high_part: Any) -> np.ndarray:
    """Item ids that can reach the top-k somewhere in the box of strengths ``[lo, hi]`` (see the module docstring).

    Two safe bounds: first each item's score range alone (drop ``i`` when ``k`` items score more at their lowest
    than ``i`` at its highest), then pairs (drop ``i`` when ``k`` items ``j`` beat it at every setting:
    ``base_j - base_i + sum_c min(lo_c (B_cj - B_ci), hi_c (B_cj - B_ci)) > 0``; one slider moves both items'
    scores, so this is tighter).
    """
    ok = np.isfinite(scores)
    lower = np.where(ok, scores + low_part, -np.inf)
    upper = np.where(ok, scores + high_part, -np.inf)
    kth = np.sort(lower)[::-1][k - 1]
    items = np.flatnonzero(ok & (upper >= kth - PRUNE_MARGIN))
    if len(items) <= k:
        return items
    base = scores[items].astype(np.float64)
    gap = base[None, :] - base[:, None]  # gap[i, j]: how much j beats i at strength 0
    for c in range(len(B)):
        diff = B[c, items][None, :] - B[c, items][:, None]
        gap += np.minimum(lo[c, 0] * diff, hi[c, 0] * diff)
    np.fill_diagonal(gap, -np.inf)
    always_beaten_by = (gap > PRUNE_MARGIN).sum(axis=1)
    return items[always_beaten_by < k]


def _bits(positions: np.ndarray, n: int) -> str:
    """Base64 of a little-endian bit mask of length ``n`` with ``positions`` set."""
    mask = np.zeros(n, dtype=bool)
    mask[positions] = True
    return base64.b64encode(np.packbits(mask, bitorder="little").tobytes()).decode("ascii")


def _unbits(text: str, n: int) -> np.ndarray:
    return np.flatnonzero(np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8), bitorder="little")[:n])


def export_static_steering(
    live: LiveSteering,
    user_ids: Sequence[int],
    *,
    calibration: SliderCalibration | None = None,
    step: float | None = None,
    max_strength: float = 6.0,
    history: int = 5,
) -> dict[str, Any]:
    """The payload of the kernel-free steering widget: everything a page needs to re-rank ``user_ids``' top-k.

    Introduced in chapter 5. Exact where the sliders are score bonuses: SAE concept sliders at the ``"final"``
    capture point (``add`` edits along decoder directions, tied output head) and label re-ranking sliders.

    Parameters
    ----------
    live : LiveSteering
        Its concept sliders (in ``live.slider_names`` order) and ``k``; its capture point must be ``"final"``.
    user_ids : sequence of int
        Original (MovieLens) user ids offered by the page, in that order (the first is shown first).
    calibration : SliderCalibration, optional
        From :func:`~seqsae_lib.steering.calibration.calibrate_sliders` on ``live``: every slider then moves
        a position in ``[-1, 1]`` (as in the kernel widget), and the payload holds each position's strength,
        average share and NDCG@k cost. It must calibrate every slider of ``live``.
    step : float, optional
        Slider step: default 0.05 (positions) with ``calibration``, else 0.25 (strengths). The page offers
        exactly these grid values, so every setting it shows is one :func:`static_top_k` can check.
    max_strength : float, default 6.0
        Range ``[-max_strength, max_strength]`` of the sliders without ``calibration`` (state units).
    history : int, default 5
        Recently watched titles stored per user.

    Returns
    -------
    dict
        JSON-serialisable: ``format``, ``k``, ``sliders`` (per concept slider: ``name``, ``operator``,
        ``slider`` (the :class:`LiveSteering` key), ``values`` (the slider's grid), ``strengths`` (at each
        grid value), ``bonus`` (base64 little-endian float32 over ``items``) and, when calibrated,
        ``share``/``cost`` at each grid value and ``low``/``unsteered``/``high``/``note``), ``items`` (``id``,
        ``title``, ``genres``, and ``weights``: per slider, the concept weight of each item), ``users`` (per
        user: ``id``, ``history``, ``items`` (base64 little-endian bit mask over ``items``: the user's candidates),
        ``base`` (base64 float32 unsteered scores of the candidates, in ``items`` order)), and ``reference_ndcg``/``budget`` when calibrated.

    Raises
    ------
    TypeError
        ``live`` not a LiveSteering, ``calibration`` not a SliderCalibration.
    ValueError
        A capture point other than ``"final"`` (steering is then not a score bonus), a calibration of other
        sliders, no users, a step that does not divide the slider range, a bad history.
    KeyError
        An unknown user id (the message names the valid range).
    """
    if not isinstance(live, LiveSteering):
        raise TypeError(f"live must be a LiveSteering, got {type(live).__name__}")
    if live.capture_point != "final":
        raise ValueError(f"static steering is exact only at the 'final' capture point (a score bonus); live steers "
                         f"at {live.capture_point!r}")
    if calibration is not None:
        if not isinstance(calibration, SliderCalibration):
            raise TypeError(f"calibration must be a SliderCalibration, got {type(calibration).__name__}")
        if list(calibration) != live.slider_names:
            raise ValueError(f"calibration has sliders {list(calibration)}, live has {live.slider_names}")
    if isinstance(user_ids, (str, bytes)) or not len(user_ids):
        raise ValueError("user_ids must be a non-empty sequence of MovieLens user ids")
    history = check_int("history", history, minimum=0)
    max_strength = check_float("max_strength", max_strength, 0.0, exclusive_minimum=True)
    step = check_float("step", (0.05 if calibration is not None else 0.25) if step is None else step, 0.0,
                       exclusive_minimum=True)
    users = [live.user_index(u) for u in user_ids]
    if len(set(users)) != len(users):
        raise ValueError(f"user_ids has duplicates: {list(user_ids)}")

    model, k = live.model, live.k
    emb = model.item_emb.weight.detach()  # (num_items + 1, d): the tied output head
    sliders: list[dict[str, Any]] = []
    bonuses: list[np.ndarray] = []  # float32 over item ids 0..num_items
    for name in live.slider_names:
        if calibration is None:
            values = _grid(-max_strength, max_strength, step)
            key, strengths, entry = name, values, {"operator": "SAE latents"}
        else:
            curve = calibration[name]
            values = _grid(-1.0, 1.0, step)
            key, strengths = curve.slider, np.array([curve.strength(p) for p in values])
            entry = {"operator": curve.operator, "share": [round(curve.share(p), 5) for p in values],
                     "cost": [round(curve.cost(p), 5) for p in values], "low": curve.low,
                     "unsteered": curve.unsteered, "high": curve.high, "note": curve.note}
        if key.startswith(RERANK_PREFIX):
            bonus = np.asarray(live.concepts[name].item_mask, dtype=np.float32)
        else:
            with torch.no_grad():
                vector = live.steering({key: 1.0}).add_vector()
                bonus = (vector @ emb.T).numpy().astype(np.float32)
        bonuses.append(bonus)
        sliders.append({"name": name, "slider": key, "values": [float(v) for v in values],
                        "strengths": [float(s) for s in strengths], **entry})
    B = np.stack(bonuses).astype(np.float64) if bonuses else np.zeros((0, emb.shape[0]))
    lo = np.array([min(s["strengths"]) for s in sliders])[:, None]
    hi = np.array([max(s["strengths"]) for s in sliders])[:, None]
    low_part = np.minimum(lo * B, hi * B).sum(axis=0) if len(sliders) else 0.0
    high_part = np.maximum(lo * B, hi * B).sum(axis=0) if len(sliders) else 0.0

    keep: dict[int, np.ndarray] = {}
    base_scores: dict[int, np.ndarray] = {}
    for u in users:
        scores = live.base_scores(u)  # float32, -inf on seen items and the padding id
        keep[u], base_scores[u] = _candidates(scores, B, lo, hi, k, low_part, high_part), scores
    all_items = np.unique(np.concatenate(list(keep.values())))
    position = {int(i): j for j, i in enumerate(all_items)}
    titles, genres = live._titles, live._genres
    masks = live._masks
    payload: dict[str, Any] = {
        "format": STATIC_FORMAT,
        "k": k,
        "step": step,
        "calibrated": calibration is not None,
        "sliders": [{**s, "bonus": _b64(b[all_items])} for s, b in zip(sliders, bonuses)],
        "items": {"id": [int(i) for i in all_items], "title": [str(titles[i]) for i in all_items],
                  "genres": [str(genres[i]) for i in all_items],
                  "weights": [[_number(w) for w in masks[live._mask_index.get_loc(s["name"]), all_items]]
                              for s in sliders]},
        "users": [],
    }
    if calibration is not None:
        payload.update(reference_ndcg=float(calibration.reference_ndcg), budget=float(calibration.budget))
    for uid, u in zip(user_ids, users):
        recent = live.seq_data.history(u, last=history)["title"].tolist() if history else []
        payload["users"].append({"id": int(uid), "history": [str(t) for t in recent],
                                 "items": _bits(np.array([position[int(i)] for i in keep[u]], dtype=np.int64),
                                                len(all_items)),
                                 "base": _b64(base_scores[u][keep[u]])})
    return payload


def payload_size(payload: Mapping[str, Any]) -> int:
    """Size in bytes of the payload as compact JSON (what the page embeds).

    Introduced in chapter 5.
    """
    return len(json.dumps(payload, separators=(",", ":")).encode("utf-8"))


def static_top_k(payload: Mapping[str, Any], user_id: int,
                 values: Mapping[str, float] | None = None) -> tuple[list[int], np.ndarray]:
    """The top-k the page shows for one user and slider values: item ids and scores, best first.

    Introduced in chapter 5. The same arithmetic as the page's script (float64 sums of the float32 payload,
    sliders in order, ties to the smaller item id), so tests can check the payload against
    :meth:`LiveSteering.recommend`.

    Parameters
    ----------
    payload : dict
        From :func:`export_static_steering`.
    user_id : int
        One of the payload's users (original id).
    values : mapping concept -> slider value, optional
        Values on each slider's grid (a position with a calibration, else a strength); missing sliders are 0.

    Raises
    ------
    KeyError
        A user or slider the payload does not have.
    ValueError
        A value that is not on the slider's grid.
    """
    values = dict(values or {})
    users = {u["id"]: u for u in payload["users"]}
    if int(user_id) not in users:
        raise KeyError(f"user {user_id!r} is not in the payload; it has {sorted(users)}")
    user = users[int(user_id)]
    sliders = {s["name"]: s for s in payload["sliders"]}
    unknown = set(values) - set(sliders)
    if unknown:
        raise KeyError(f"unknown sliders {sorted(unknown)}; the payload has {list(sliders)}")
    idx = _unbits(user["items"], len(payload["items"]["id"]))
    scores = _unb64(user["base"]).astype(np.float64)
    for s in payload["sliders"]:
        v = float(values.get(s["name"], 0.0))
        grid = np.asarray(s["values"])
        j = int(np.argmin(np.abs(grid - v)))
        if abs(grid[j] - v) > 1e-9:
            raise ValueError(f"slider {s['name']!r}: {v} is not on its grid (step {payload['step']}, "
                             f"{grid[0]:g} to {grid[-1]:g})")
        strength = s["strengths"][j]
        if strength != 0.0:
            scores = scores + strength * _unb64(s["bonus"])[idx].astype(np.float64)
    ids = np.asarray(payload["items"]["id"], dtype=np.int64)[idx]
    order = np.lexsort((ids, -scores))[: payload["k"]]
    return [int(i) for i in ids[order]], scores[order]
