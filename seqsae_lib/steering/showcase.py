"""The book's showcase for the steering widget: which concepts get sliders, which user is followed, what the ends do.

Introduced in chapter 5.

Chosen by documented rules, never by hand, so they follow the data and the model when either changes:

* :func:`showcase_concepts`: among the genres with at least ``min_items`` items in the catalogue, the
  ``n_common`` most watched (by share of all interactions) and the ``n_rare`` least watched;
* :func:`showcase_user`: the user whose unsteered top-k is closest to the average user's on those
  concepts (sum over the concepts of the absolute share differences), among users with at least
  ``min_interactions`` interactions, ties going to the smallest MovieLens id;
* :func:`slider_ends`: for that user, what each calibrated slider's right (and left) end does to the
  concept's share of the top-k, next to the average user's and the implied NDCG cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from seqsae_lib.data import SequenceData, left_pad, seen_mask
from seqsae_lib.steering.calibration import SliderCalibration
from seqsae_lib.steering.catalogue_concepts import get_concept
from seqsae_lib.steering.live import LiveSteering
from seqsae_lib.steering.scoring import SteeringCache
from seqsae_lib.utils.checks import check_float, check_int

__all__ = ["showcase_concepts", "showcase_user", "slider_ends"]


def showcase_concepts(seq_data: SequenceData, *, n_common: int = 5, n_rare: int = 1, min_items: int = 20) -> list[str]:
    """The genres the widget showcases: the most watched ones and the least watched ones, by a fixed rule.

    Introduced in chapter 5. Eligible genres have at least ``min_items`` items in the catalogue (so a slider
    has enough films to bring in); they are ranked by their share of all interactions (a film counts once per
    genre it has), ties by name. On MovieLens-100k the rule picks the five most watched genres and the least
    watched one with 20 films or more.

    Returns
    -------
    list of str
        ``n_common`` genre names, most watched first, then ``n_rare``, least watched last.

    Raises
    ------
    TypeError, ValueError
        Not a SequenceData; bad counts; fewer than ``n_common + n_rare`` eligible genres (the message says
        how many there are).
    """
    if not isinstance(seq_data, SequenceData):
        raise TypeError(f"seq_data must be a SequenceData, got {type(seq_data).__name__}")
    n_common = check_int("n_common", n_common, minimum=0)
    n_rare = check_int("n_rare", n_rare, minimum=0)
    min_items = check_int("min_items", min_items, minimum=1)
    genres = np.asarray(seq_data.item_genres, dtype=np.float64)
    counts = np.bincount(np.concatenate([np.asarray(s, dtype=np.int64) for s in seq_data.sequences]),
                         minlength=seq_data.num_items + 1)
    watched = counts[1:] @ genres[1:]
    n_items = (genres[1:] > 0).sum(axis=0)
    eligible = [(-float(watched[g]), name) for g, name in enumerate(seq_data.genre_names) if n_items[g] >= min_items]
    if n_common + n_rare > len(eligible):
        raise ValueError(f"asked for {n_common} + {n_rare} genres but only {len(eligible)} have at least "
                         f"{min_items} items")
    ranked = [name for _, name in sorted(eligible)]
    return ranked[:n_common] + (ranked[len(ranked) - n_rare:] if n_rare else [])


def _unsteered_top(live: LiveSteering, batch_size: int = 256) -> np.ndarray:
    """``(n_users, k)`` unsteered top-k of every user of ``live`` (seen items left out), batch by batch."""
    out = []
    for start in range(0, len(live.inputs), batch_size):
        seqs = live.inputs[start:start + batch_size]
        cache = SteeringCache(live.model, left_pad(seqs, live.model.max_len), live.capture_point)
        scores = cache.scores(None).masked_fill(seen_mask(seqs, live.seq_data.num_items), float("-inf"))
        out.append(torch.topk(scores, live.k, dim=1).indices.numpy())
    return np.concatenate(out)


def showcase_user(
    live: LiveSteering,
    concepts: Sequence[str] | None = None,
    *,
    min_interactions: int = 20,
    top_items: Any = None,
) -> int:
    """The MovieLens id of the user closest to the average user on the showcased concepts.

    Introduced in chapter 5. For each user of ``live``, the concept shares of the unsteered top-k; the
    average of those shares over the eligible users (at least ``min_interactions`` interactions in the
    data); the distance of a user to it is the sum over concepts of the absolute differences. The eligible
    user at the smallest distance is chosen, ties going to the smallest MovieLens id.

    Parameters
    ----------
    live : LiveSteering
    concepts : sequence of str, optional
        Concept names (default: ``live``'s concept sliders).
    min_interactions : int, default 20
        Fewest interactions (the user's whole history in ``live.seq_data``) for a user to be eligible.
    top_items : array-like, optional
        ``(n_users, k)`` unsteered top-k of every user, internal order; computed when not given.

    Returns
    -------
    int
        A MovieLens user id (``live.user_index`` turns it into the internal index).

    Raises
    ------
    TypeError, ValueError, UnknownConceptError
        Not a LiveSteering; no concept; an unknown concept; no eligible user; a ``top_items`` of the wrong shape.
    """
    if not isinstance(live, LiveSteering):
        raise TypeError(f"live must be a LiveSteering, got {type(live).__name__}")
    names = list(live.slider_names if concepts is None else concepts)
    if not names:
        raise ValueError("no concept to compare users on: give concepts or a LiveSteering with concept sliders")
    min_interactions = check_int("min_interactions", min_interactions, minimum=0)
    n = len(live.inputs)
    top = _unsteered_top(live) if top_items is None else np.asarray(top_items)
    if top.ndim != 2 or len(top) != n or not np.issubdtype(top.dtype, np.integer):
        raise ValueError(f"top_items must be an ({n}, k) integer array, got shape {top.shape}, dtype {top.dtype}")
    masks = [live.concepts[c] if c in live.concepts else get_concept(live.seq_data, c) for c in names]
    shares = np.column_stack([m.share(top, reduce="none") for m in masks])
    eligible = np.asarray(live.seq_data.lengths) >= min_interactions
    if not eligible.any():
        raise ValueError(f"no user has at least {min_interactions} interactions")
    distance = np.abs(shares - shares[eligible].mean(axis=0)).sum(axis=1)
    ids = np.asarray(live.user_ids)
    candidates = np.flatnonzero(eligible)
    best = candidates[np.lexsort((ids[candidates], distance[candidates]))[0]]
    return int(ids[best])


def slider_ends(live: LiveSteering, calibration: SliderCalibration, user_id: Any, *,
                min_films: float = 2.0) -> pd.DataFrame:
    """What each calibrated slider's ends do to one user's top-k, next to the average user's.

    Introduced in chapter 5. Each slider is moved alone.

    Parameters
    ----------
    live : LiveSteering
    calibration : SliderCalibration
        From :func:`~seqsae_lib.steering.calibration.calibrate_sliders` for ``live``.
    user_id : int
        MovieLens user id.
    min_films : float, default 2.0
        A right end is a *visible* change when it adds at least ``min_films`` items of the concept to the
        user's top-k, or at least doubles a non-zero share.

    Returns
    -------
    pandas.DataFrame
        One row per slider (index ``concept``): ``operator``; the user's ``unsteered``, ``right_end`` and
        ``left_end`` shares (in [0, 1]); ``films_added`` at the right end (``(right_end - unsteered) * k``);
        ``visible`` (bool); the average user's ``avg_unsteered``, ``avg_right_end``, ``avg_left_end``; and
        the implied average NDCG@k drops ``ndcg_cost_right``, ``ndcg_cost_left``.

    Raises
    ------
    TypeError, KeyError, ValueError
        Not a LiveSteering or SliderCalibration; an unknown user id; a calibration of other sliders.
    """
    if not isinstance(live, LiveSteering):
        raise TypeError(f"live must be a LiveSteering, got {type(live).__name__}")
    if not isinstance(calibration, SliderCalibration):
        raise TypeError(f"calibration must be a SliderCalibration, got {type(calibration).__name__}")
    min_films = check_float("min_films", min_films, 0.0)
    unknown = [c for c in calibration if c not in live.slider_names]
    if unknown:
        raise ValueError(f"the calibration has sliders {unknown} that live does not have ({live.slider_names})")
    user = live.user_index(user_id)
    k = live.k
    rows = {}
    for concept, curve in calibration.items():
        right = live.recommend(user, calibration.strengths({concept: 1.0})).shares.loc[concept]
        left = live.recommend(user, calibration.strengths({concept: -1.0})).shares.loc[concept, "after"]
        before, after = float(right["before"]), float(right["after"])
        added = (after - before) * k
        visible = added >= min_films - 1e-9 or (before > 0 and after >= 2 * before)
        rows[concept] = {"operator": curve.operator, "unsteered": before, "right_end": after, "left_end": float(left),
                         "films_added": added, "visible": bool(visible), "avg_unsteered": curve.unsteered,
                         "avg_right_end": curve.high, "avg_left_end": curve.low,
                         "ndcg_cost_right": curve.cost(1.0), "ndcg_cost_left": curve.cost(-1.0)}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "concept"
    return out
