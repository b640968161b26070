"""The geometry of steering: is an edit a fixed per-item bonus, or does it depend on the user?

Introduced in chapter 5.

At the capture point ``"final"`` the state ``h`` is the output of the final LayerNorm and the scores are
``h @ E.T`` (``E`` the tied item table, no bias). Adding a vector ``v`` there (an ``"add"`` steering along SAE
decoder rows, a :class:`~seqsae_lib.steering.vector_steering.VectorSteering`) changes every user's scores by
the same vector ``v @ E.T``: a fixed bonus per item, exactly what post-hoc re-ranking adds, only with
weights the model's geometry chose instead of the concept labels. A steering can differ from such a bonus
only if its effect depends on the user's own state: at an inner capture point (the later blocks and the
final LayerNorm react to the edited state) or with an edit that reads the user's code (``"scale"``,
``"set"`` / ``"shift_z"`` with ``active_only=True``).

* :func:`score_changes`: steered minus unsteered scores, per user;
* :func:`user_dependence`: how much those changes vary across users (0 spread / R² 1 for a fixed bonus);
* :func:`bonus_rerank_baseline`: re-ranking with the steering's own mean score change, a method for
  :class:`~seqsae_lib.steering.evaluation.SteeringEvaluator` like the baselines of
  :mod:`seqsae_lib.steering.baselines`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seqsae_lib.data import check_sequences, left_pad
from seqsae_lib.model import check_model
from seqsae_lib.steering.baselines import Rerank, _Baseline
from seqsae_lib.steering.edits import finite_number
from seqsae_lib.steering.evaluation import SteeringEvaluator
from seqsae_lib.steering.latent_steering import Steering
from seqsae_lib.steering.scoring import SteeringCache
from seqsae_lib.steering.vector_steering import StateSteering, VectorSteering
from seqsae_lib.utils.checks import check_int

__all__ = ["bonus_rerank_baseline", "score_changes", "user_dependence"]


def _check_steering(steering: Any) -> StateSteering:
    if not isinstance(steering, (Steering, VectorSteering)):
        hint = (" (a method strength -> steering: call it with a strength first)"
                if callable(steering) else "")
        raise TypeError(f"steering must be a Steering or VectorSteering, got {type(steering).__name__}{hint}")
    return steering


def _caches(
    model: nn.Module, inputs: Sequence[Any] | None, capture_point: str, batch_size: int,
    evaluator: SteeringEvaluator | None,
) -> Iterator[SteeringCache]:
    """The per-batch caches at ``capture_point``: the evaluator's (built once, reused), or new ones."""
    if evaluator is not None:
        if not isinstance(evaluator, SteeringEvaluator):
            raise TypeError(f"evaluator must be a SteeringEvaluator, got {type(evaluator).__name__}")
        if evaluator.model is not model:
            raise ValueError("the evaluator was built for another model")
        yield from evaluator.cache(capture_point)
        return
    if inputs is None:
        raise ValueError("give inputs (per-user histories) or evaluator=")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    num_items = int(model.num_items)  # type: ignore[arg-type]
    seqs = check_sequences(inputs, num_items=num_items, what="inputs", allow_empty=False)
    if not seqs:
        raise ValueError("inputs is empty; expected at least one user's history")
    model.hook_point(capture_point)  # UnknownCapturePointError before any work
    device = model.item_emb.weight.device  # type: ignore[union-attr]
    for start in range(0, len(seqs), batch_size):
        ids = left_pad(seqs[start : start + batch_size], int(model.max_len)).to(device)  # type: ignore[arg-type]
        yield SteeringCache(model, ids, capture_point)


@torch.no_grad()
def score_changes(
    model: nn.Module, steering: StateSteering, inputs: Sequence[Any] | None = None, *, batch_size: int = 256,
    evaluator: SteeringEvaluator | None = None,
) -> Tensor:
    """Steered minus unsteered next-item scores, for each user's history.

    Introduced in chapter 5. The steering runs through the library's own path
    (:class:`~seqsae_lib.steering.scoring.SteeringCache` at ``steering.capture_point``, the same as
    :class:`~seqsae_lib.steering.evaluation.SteeringEvaluator` and the hook path
    :func:`~seqsae_lib.steering.scoring.steer`). Because scores are linear in the final state (``h @ E.T``),
    the change is computed as ``(h_steered - h) @ E.T`` at the last position, which equals the difference
    of the two score matrices without cancelling two large numbers.

    Parameters
    ----------
    model : SASRec
    steering : Steering or VectorSteering
        One intervention (for a method ``strength -> steering``, pass ``method(strength)``).
    inputs : sequence of array-like
        Non-empty per-user histories (e.g. ``split.test_inputs``); only the last ``model.max_len`` items
        of each are read.
    batch_size : int, default 256
    evaluator : SteeringEvaluator, optional
        Reuse the cached states of an evaluator of this model (then ``inputs`` and ``batch_size`` are
        ignored in favour of the evaluator's users, in their order): no transformer pass at ``"final"``.

    Returns
    -------
    Tensor of shape (n_users, num_items + 1), float32, on the CPU
        Row ``u``, column ``i``: how much the steering moves user ``u``'s score of item ``i`` (logits,
        any real number). Column 0 (padding, never recommended) is 0.

    Raises
    ------
    TypeError
        Not a SASRec, not a steering (a method must be called with a strength first), bad histories.
    ValueError, UnknownCapturePointError
        Empty ``inputs`` (and no evaluator) or an empty history, ``batch_size < 1``, a steering at a
        capture point the model lacks or of the wrong width, an evaluator of another model.
    """
    check_model(model, scores=True)
    steering = _check_steering(steering)
    table = model.item_emb.weight.detach()  # type: ignore[union-attr]
    out = []
    for cache in _caches(model, inputs, steering.capture_point, batch_size, evaluator):
        delta = cache.final_states(steering) - cache.final_states(None)
        change = delta.to(table.dtype) @ table.T
        change[:, 0] = 0.0
        out.append(change.float().cpu())
    return torch.cat(out)


def user_dependence(changes: Tensor | np.ndarray, *, padding_column: bool = True, center: bool = False) -> dict[str, float]:
    """How much a steering's score changes differ between users (a fixed bonus does not differ at all).

    Introduced in chapter 5. Computed in float64 over the item columns of
    ``changes`` (e.g. :func:`score_changes`); ``c[u, i]`` is user ``u``'s change of item ``i`` and ``m[i]``
    the mean change of item ``i`` over users (the *bonus* vector).

    Parameters
    ----------
    changes : Tensor or ndarray of shape (n_users, n_columns)
        Finite score changes, at least 2 users.
    padding_column : bool, default True
        Column 0 is the padding column of a score matrix (as in :func:`score_changes`) and is left out.
    center : bool, default False
        Subtract each user's mean change over items first: a constant added to all of one user's scores
        moves nothing in that user's ranking, so ``center=True`` measures only the ranking-relevant part.

    Returns
    -------
    dict with float values
        ``across_user_std``
            mean over items of the (population) standard deviation of ``c[:, i]`` across users; ``>= 0``,
            0 for a fixed bonus. In logits.
        ``mean_abs_change``
            mean of ``|c|`` over users and items; ``>= 0``, 0 only if nothing changes. In logits.
        ``relative_spread``
            ``across_user_std / mean_abs_change``; in ``[0, inf)``: 0 for a fixed bonus, around 1 or more when
            the changes vary across users as much as they are large. NaN when nothing changes.
        ``bonus_r2``
            share of the variance of all changes (around their grand mean) explained by the bonus vector
            ``m``: ``1 - sum (c - m)^2 / sum (c - mean c)^2``; in ``[0, 1]``: 1 for a fixed bonus, 0 when the
            items' mean changes are all equal and users differ. 1 when every change is the same non-zero
            number; NaN when nothing changes.

    Raises
    ------
    TypeError
        Not a 2-D float tensor or array, non-bool options.
    ValueError
        Fewer than 2 users, no item column, non-finite values.
    """
    for name, flag in (("padding_column", padding_column), ("center", center)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__} ({flag!r})")
    if isinstance(changes, Tensor):
        arr = changes.detach().cpu().double().numpy() if changes.is_floating_point() else None
    elif isinstance(changes, np.ndarray) and np.issubdtype(changes.dtype, np.floating):
        arr = changes.astype(np.float64)
    else:
        arr = None
    if arr is None or arr.ndim != 2:
        desc = (f"shape {tuple(changes.shape)}, dtype {changes.dtype}" if isinstance(changes, (Tensor, np.ndarray))
                else type(changes).__name__)
        raise TypeError(f"changes must be a 2-D float tensor or array (n_users, n_columns), got {desc}")
    c = arr[:, 1:] if padding_column else arr
    if c.shape[0] < 2 or c.shape[1] < 1:
        raise ValueError(f"changes need at least 2 users and 1 item column, got shape {arr.shape} "
                         f"(padding_column={bool(padding_column)})")
    if not np.isfinite(c).all():
        raise ValueError("changes contain NaN or inf (did you subtract two score matrices with -inf padding? "
                         "use score_changes)")
    if center:
        c = c - c.mean(axis=1, keepdims=True)
    bonus = c.mean(axis=0)
    spread = float(c.std(axis=0).mean())
    mean_abs = float(np.abs(c).mean())
    ss_res = float(((c - bonus) ** 2).sum())
    ss_tot = float(((c - c.mean()) ** 2).sum())
    if mean_abs == 0.0:
        relative, r2 = float("nan"), float("nan")
    else:
        relative = spread / mean_abs
        r2 = min(1.0, max(0.0, 1.0 - ss_res / ss_tot)) if ss_tot > 0 else 1.0  # clip float rounding
    return {"across_user_std": spread, "mean_abs_change": mean_abs, "relative_spread": relative, "bonus_r2": r2}


def bonus_rerank_baseline(
    model: nn.Module,
    steering: StateSteering | Callable[[float], StateSteering],
    inputs: Sequence[Any] | None = None,
    *,
    unit: float = 1.0,
    batch_size: int = 256,
    evaluator: SteeringEvaluator | None = None,
) -> Callable[[float], Rerank]:
    """Re-ranking with the steering's own bonus: ``strength -> Rerank(strength / unit * mean score change)``.

    Introduced in chapter 5. The bonus is the mean over the users of
    ``inputs`` of :func:`score_changes` of the steering at strength ``unit`` (for a method
    ``strength -> steering`` such as :func:`~seqsae_lib.steering.baselines.sae_method`'s, the method is
    called with ``unit``). Evaluated like any method
    (:meth:`~seqsae_lib.steering.evaluation.SteeringEvaluator.run`, :func:`~seqsae_lib.steering.evaluation.evaluate_methods`)
    with the *same* strengths as the steering: for an ``"add"`` steering at ``"final"`` the change is
    linear in the strength and the same for every user, so this method ranks exactly like the steering
    (up to float rounding); wherever the two curves differ, the steering did something a per-item bonus
    cannot do.

    Parameters
    ----------
    model : SASRec
    steering : Steering, VectorSteering or callable ``strength -> steering``
    inputs : sequence of array-like
        The users whose mean change is the bonus (e.g. ``split.test_inputs``).
    unit : float, default 1.0
        The strength the bonus is measured at (finite, non-zero).
    batch_size : int, default 256
    evaluator : SteeringEvaluator, optional
        Measure on the evaluator's users with its cached states (``inputs`` is then ignored).

    Returns
    -------
    callable ``strength -> Rerank``
        Named ``"SAE bonus re-ranking"``; its ``info`` holds the capture point, ``unit`` and
        :func:`user_dependence` of the measured changes (how far the steering is from a fixed bonus).

    Raises
    ------
    TypeError, ValueError
        As :func:`score_changes`; a zero or non-finite ``unit``; a callable that does not return a steering.
    """
    unit = finite_number("unit", unit)
    if unit == 0.0:
        raise ValueError("unit must be non-zero: the bonus is measured at strength unit and rescaled by strength / unit")
    one = steering if isinstance(steering, (Steering, VectorSteering)) else None
    if one is None:
        if not callable(steering):
            _check_steering(steering)
        one = _check_steering(steering(unit))  # type: ignore[operator]
    changes = score_changes(model, one, inputs, batch_size=batch_size, evaluator=evaluator)
    bonus = changes.double().mean(0).float()
    info: dict[str, Any] = {"capture_point": one.capture_point, "unit": unit}
    if len(changes) >= 2:
        info.update(user_dependence(changes))
    return _Baseline(
        "SAE bonus re-ranking",
        lambda s: Rerank((s / unit) * bonus, f"bonus re-rank {one.label or 'steering'} {s:+g}"),
        info,
    )
