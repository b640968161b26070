"""Measuring steering: concept share against accuracy cost over a grid of strengths, on fixed users.

Introduced in chapter 5.

A *method* is a function ``strength -> intervention``; the intervention is a
:class:`~seqsae_lib.steering.latent_steering.Steering` (SAE latents), a
:class:`~seqsae_lib.steering.vector_steering.VectorSteering`, a :class:`~seqsae_lib.steering.baselines.Rerank`
(post-hoc score bonus), any scorer (``scores(input_ids)``) or ``None`` (unsteered).
:func:`evaluate_steering` runs one method over a grid of strengths and reports, per strength
(:data:`GRID_COLUMNS` with ``k = 10``):

``share@10``
    concept share of the top-10 lists (mean concept weight of the recommended items);
``NDCG@10``, ``HR@10``
    held-out next-item accuracy through :func:`seqsae_lib.model.evaluation.evaluate` (full ranking, seen items
    filtered; the per-user ranks are kept for paired comparisons, see ``return_details``);
``NDCG@10_drop`` (with a paired bootstrap interval ``_lo``/``_hi``)
    unsteered NDCG@10 minus steered NDCG@10, on the same users: the accuracy cost;
``NDCG@10_concept``
    NDCG@10 on the users whose held-out item has the concept (weighted by its concept weight): steering
    towards a concept should cost these users less, or even help them;
``Jaccard@10``
    overlap of each steered top-10 with the unsteered one (1 = unchanged);
``Coverage@10``, ``popularity@10``, ``Gini@10``
    share of the catalogue recommended to anyone, mean number of interactions of the recommended
    items, Gini index of how often each catalogue item is recommended (0 = every item equally often).

followed by columns that are the same in every row: ``method``, ``concept``, ``reference_share@10`` and
``reference_NDCG@10`` (the unsteered model), ``n_users`` and ``n_concept_users`` (users whose held-out item
has the concept).

Speed. :class:`SteeringEvaluator` computes the state at each capture point once per user set
(:class:`~seqsae_lib.steering.scoring.SteeringCache`, batch by batch) and reuses it across strengths and methods;
at ``"final"`` a strength then costs an edit of the ``(n_users, d)`` last states, one product with the
item table and the ranking itself
(:func:`~seqsae_lib.model.evaluation.evaluate_scored_batches` on batches built once).

The methods to compare are built in :mod:`seqsae_lib.steering.baselines`; the resulting tables are summarised
in :mod:`seqsae_lib.steering.tradeoffs`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from seqsae_lib.data import check_sequences, iter_eval_batches
from seqsae_lib.data import SequenceData
from seqsae_lib.model import check_model
from seqsae_lib.model import EvalResult
from seqsae_lib.model.evaluation import evaluate_scored_batches
from seqsae_lib.model import ndcg_at_k
from seqsae_lib.steering.baselines import Rerank
from seqsae_lib.steering.catalogue_concepts import get_concept
from seqsae_lib.steering.concepts import Concept, check_concept
from seqsae_lib.steering.latent_steering import Steering
from seqsae_lib.steering.scoring import SteeringCache
from seqsae_lib.steering.tradeoffs import gini, jaccard_at_k
from seqsae_lib.steering.vector_steering import VectorSteering
from seqsae_lib.utils.checks import check_int
from seqsae_lib.utils.torchutils import eval_mode

__all__ = ["GRID_COLUMNS", "SteeringDetails", "SteeringEvaluator", "evaluate_steering", "evaluate_methods"]

GRID_COLUMNS: tuple[str, ...] = (
    "strength", "share@{k}", "share_gain", "NDCG@{k}", "HR@{k}", "NDCG@{k}_drop", "NDCG@{k}_drop_lo",
    "NDCG@{k}_drop_hi", "NDCG@{k}_concept", "Jaccard@{k}", "Coverage@{k}", "popularity@{k}", "Gini@{k}",
    "method", "concept", "reference_share@{k}", "reference_NDCG@{k}", "n_users", "n_concept_users",
)
"""Columns of :func:`evaluate_steering`'s table (``{k}`` is the cut-off)."""


@dataclass(frozen=True)
class SteeringDetails:
    """Per-user results of a grid, for paired comparisons and plots.

    Introduced in chapter 5.
    """

    strengths: np.ndarray
    """``(S,)`` the strengths, in grid order."""
    ranks: np.ndarray
    """``(S, n_users)`` 0-based rank of each user's held-out item under each strength."""
    top_items: np.ndarray
    """``(S, n_users, k)`` recommended ids (seen items filtered, as in :func:`~seqsae_lib.model.evaluation.evaluate`)."""
    reference_ranks: np.ndarray
    """``(n_users,)`` ranks of the unsteered model."""
    reference_top: np.ndarray
    """``(n_users, k)`` unsteered top-k lists."""
    target_weight: np.ndarray
    """``(n_users,)`` concept weight of each user's held-out item."""


class SteeringEvaluator:
    """Evaluate interventions on one fixed set of users, reusing cached states across strengths and methods.

    Introduced in chapter 5. :func:`evaluate_steering` and
    :func:`evaluate_methods` are thin wrappers around it.

    Parameters
    ----------
    model : SASRec
    inputs : sequence of array-like
        Per-user inputs (e.g. ``split.test_inputs``).
    targets : array-like
        ``(n_users,)`` held-out items (e.g. ``split.test_targets``).
    seq_data : SequenceData
        Item metadata (popularity) and the concepts' catalogue; must match the model's catalogue.
    k : int, default 10
    batch_size : int, default 256
    n_boot : int, default 200
        Paired bootstrap resamples of users for the interval of the NDCG drop (0 disables it).
    seed : int, default 0
        Seed of the bootstrap.

    Raises
    ------
    ValueError, TypeError
        Bad inputs or targets, a catalogue mismatch, a bad ``k``.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: Sequence[Any],
        targets: Any,
        seq_data: SequenceData,
        *,
        k: int = 10,
        batch_size: int = 256,
        n_boot: int = 200,
        seed: int = 0,
    ) -> None:
        check_model(model, scores=True)
        if not isinstance(seq_data, SequenceData):
            raise TypeError(f"seq_data must be a SequenceData, got {type(seq_data).__name__}")
        if seq_data.num_items != int(model.num_items):  # type: ignore[arg-type]
            raise ValueError(
                f"seq_data has {seq_data.num_items} items but the model scores {model.num_items}: "
                "use the data the model was trained on"
            )
        self.model = model
        self.num_items = int(model.num_items)  # type: ignore[arg-type]
        self.max_len = int(model.max_len)  # type: ignore[arg-type]
        self.k = check_int("k", k, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.n_boot = check_int("n_boot", n_boot, minimum=0)
        self.seed = int(seed)
        self.seq_data = seq_data
        self.seqs = check_sequences(inputs, num_items=self.num_items, what="inputs", allow_empty=False)
        if not self.seqs:
            raise ValueError("inputs is empty; expected at least one user")
        self.batches = list(
            iter_eval_batches(self.seqs, targets, max_len=self.max_len, batch_size=self.batch_size, num_items=self.num_items)
        )
        self.targets = np.concatenate([b.targets.numpy() for b in self.batches])
        self.n_users = len(self.seqs)
        self.device = model.item_emb.weight.device  # type: ignore[union-attr]
        self.popularity = np.zeros(self.num_items + 1)
        self.popularity[1:] = seq_data.items["popularity"].to_numpy(dtype=np.float64)
        self._caches: dict[str, list[SteeringCache]] = {}
        self._reference: tuple[EvalResult, np.ndarray] | None = None

    # ---- caches ------------------------------------------------------------------------------------

    def cache(self, capture_point: str) -> list[SteeringCache]:
        """The per-batch :class:`~seqsae_lib.steering.scoring.SteeringCache` objects at ``capture_point`` (built once).

        Introduced in chapter 5.
        """
        if capture_point not in self._caches:
            self.model.hook_point(capture_point)  # UnknownCapturePointError listing the valid names
            self._caches[capture_point] = [
                SteeringCache(self.model, b.inputs.to(self.device), capture_point) for b in self.batches
            ]
        return self._caches[capture_point]

    def _score_fn(self, obj: Any) -> Callable[[int], Tensor]:
        """``batch index -> (B, num_items + 1)`` scores of the intervention ``obj``."""
        if obj is None:
            caches = self.cache("final")
            return lambda b: caches[b].scores(None)
        if isinstance(obj, (Steering, VectorSteering)):
            caches = self.cache(obj.capture_point)
            return lambda b: caches[b].scores(obj)
        if isinstance(obj, Rerank):
            if obj.bonus.shape[0] != self.num_items + 1:
                raise ValueError(f"Rerank bonus has {obj.bonus.shape[0]} entries; expected num_items + 1 = {self.num_items + 1}")
            caches = self.cache("final")
            return lambda b: obj.apply_scores(caches[b].scores(None))
        if callable(getattr(obj, "scores", None)):
            return lambda b: obj.scores(self.batches[b].inputs.to(self.device))
        raise TypeError(
            "a method must return a Steering, VectorSteering, Rerank, a scorer (with scores(input_ids)) or None; "
            f"got {type(obj).__name__}"
        )

    def _run(self, obj: Any) -> tuple[EvalResult, np.ndarray]:
        score = self._score_fn(obj)
        with eval_mode(self.model), torch.no_grad():
            result = evaluate_scored_batches(
                ((batch, score(b)) for b, batch in enumerate(self.batches)),
                num_items=self.num_items, k=(self.k,), filter_seen=True, device=self.device, return_top=True,
            )
        return result, result.top_items  # type: ignore[return-value]

    def recommend(self, intervention: Any) -> tuple[EvalResult, np.ndarray]:
        """``(EvalResult, top_items)`` of one intervention on the evaluator's users, no concept needed.

        Introduced in chapter 5. ``intervention`` is anything a method returns (see the module docstring;
        ``None`` is the unsteered model). ``top_items`` is ``(n_users, k)``, seen items filtered, as in
        :class:`SteeringDetails`; the result holds ``NDCG@k``, ``HR@k``, ``Coverage@k`` and the per-user ranks.

        Raises
        ------
        TypeError, ValueError, UnknownCapturePointError
            Not an intervention; a steering at an unknown capture point or of the wrong width.
        """
        return self._run(intervention)

    @property
    def reference(self) -> tuple[EvalResult, np.ndarray]:
        """``(EvalResult, top_items)`` of the unsteered model (computed once).

        Introduced in chapter 5.
        """
        if self._reference is None:
            self._reference = self._run(None)
        return self._reference

    # ---- grids -------------------------------------------------------------------------------------

    def run(
        self,
        steering_fn: Callable[[float], Any],
        strengths: Sequence[float],
        concept: Concept | str,
        *,
        return_details: bool = False,
        method: str | None = None,
    ) -> pd.DataFrame | tuple[pd.DataFrame, SteeringDetails]:
        """One method over a grid of strengths: see :func:`evaluate_steering`.

        Introduced in chapter 5. ``method`` names the method in the table's
        ``method`` column (default: the ``name`` of a method from :mod:`seqsae_lib.steering.baselines`, else ``""``).
        """
        if not callable(steering_fn):
            raise TypeError(f"steering_fn must be callable (strength -> intervention), got {type(steering_fn).__name__}")
        concept = check_concept(get_concept(self.seq_data, concept), self.num_items)
        method = getattr(steering_fn, "name", "") if method is None else method
        grid = [float(s) for s in np.atleast_1d(np.asarray(strengths, dtype=np.float64))]
        if not grid:
            raise ValueError("strengths is empty")
        if not all(math.isfinite(s) for s in grid):
            raise ValueError(f"strengths must be finite numbers, got {list(strengths)}")
        k = self.k
        ref_result, ref_top = self.reference
        ref_ndcg_u = ndcg_at_k(ref_result.ranks, k, reduce="none")
        ref_share = float(concept.share(ref_top))
        w_target = concept.item_mask[self.targets]
        rng = np.random.default_rng(self.seed)
        boot = rng.integers(0, self.n_users, size=(self.n_boot, self.n_users)) if self.n_boot else None

        rows, all_ranks, all_top = [], [], []
        for s in grid:
            obj = steering_fn(s)
            result, top = self._run(obj)
            ndcg_u = ndcg_at_k(result.ranks, k, reduce="none")
            diff = ref_ndcg_u - ndcg_u
            lo = hi = float("nan")
            if boot is not None:
                means = diff[boot].mean(axis=1)
                lo, hi = (float(v) for v in np.quantile(means, [0.025, 0.975]))
            share = float(concept.share(top))
            counts = np.bincount(top.ravel(), minlength=self.num_items + 1)[1:]
            concept_ndcg = float((w_target * ndcg_u).sum() / w_target.sum()) if w_target.sum() > 0 else float("nan")
            rows.append({
                "strength": s,
                f"share@{k}": share,
                "share_gain": share - ref_share,
                f"NDCG@{k}": result[f"NDCG@{k}"],
                f"HR@{k}": result[f"HR@{k}"],
                f"NDCG@{k}_drop": float(diff.mean()),
                f"NDCG@{k}_drop_lo": lo,
                f"NDCG@{k}_drop_hi": hi,
                f"NDCG@{k}_concept": concept_ndcg,
                f"Jaccard@{k}": float(jaccard_at_k(top, ref_top)),
                f"Coverage@{k}": result[f"Coverage@{k}"],
                f"popularity@{k}": float(self.popularity[top].mean()),
                f"Gini@{k}": gini(counts),
                "method": method,
                "concept": concept.name,
                f"reference_share@{k}": ref_share,
                f"reference_NDCG@{k}": float(ref_ndcg_u.mean()),
                "n_users": self.n_users,
                "n_concept_users": int((w_target > 0).sum()),
            })
            all_ranks.append(result.ranks)
            all_top.append(top)
        frame = pd.DataFrame(rows, columns=[c.format(k=k) for c in GRID_COLUMNS])
        if not return_details:
            return frame
        details = SteeringDetails(
            strengths=np.asarray(grid), ranks=np.stack(all_ranks), top_items=np.stack(all_top),
            reference_ranks=ref_result.ranks, reference_top=ref_top, target_weight=w_target,
        )
        return frame, details


def evaluate_steering(
    model: nn.Module,
    steering_fn: Callable[[float], Any],
    strengths: Sequence[float],
    inputs: Sequence[Any],
    targets: Any,
    concept: Concept | str,
    seq_data: SequenceData,
    *,
    k: int = 10,
    batch_size: int = 256,
    n_boot: int = 200,
    seed: int = 0,
    return_details: bool = False,
    evaluator: SteeringEvaluator | None = None,
    method: str | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, SteeringDetails]:
    """Concept share and accuracy cost of one steering method over a grid of strengths.

    Introduced in chapter 5. Columns: :data:`GRID_COLUMNS` (defined in the
    module docstring); one row per strength, in grid order.

    Parameters
    ----------
    model : SASRec
    steering_fn : callable
        ``strength -> Steering | VectorSteering | Rerank | scorer | None``. Steerings at a capture point
        reuse one cached state per user batch across strengths (at ``"final"``: no transformer re-run).
    strengths : sequence of float
    inputs, targets
        Users to evaluate (e.g. ``split.test_inputs``, ``split.test_targets``).
    concept : Concept or str
        A concept or a name known to :func:`~seqsae_lib.steering.catalogue_concepts.get_concept`.
    seq_data : SequenceData
    k : int, default 10
    batch_size : int, default 256
    n_boot : int, default 200
        Paired bootstrap resamples for ``NDCG@k_drop_lo`` / ``_hi`` (95 %); 0 disables them.
    seed : int, default 0
    return_details : bool, default False
        Also return :class:`SteeringDetails` (per-user ranks and top-k lists).
    evaluator : SteeringEvaluator, optional
        Reuse the caches of an evaluator on the same users (then ``inputs``, ``targets``, ``k``,
        ``batch_size`` are ignored in favour of the evaluator's).
    method : str, optional
        The ``method`` column (default: the method's ``name`` if it has one, else ``""``).

    Returns
    -------
    pandas.DataFrame, or (DataFrame, SteeringDetails)
        The last columns are the same in every row: the method and concept names, the unsteered share
        and NDCG (``reference_share@k``, ``reference_NDCG@k``) and the number of (concept) users.

    Raises
    ------
    UnknownConceptError
        An unknown concept name (the message lists the known ones).
    UnknownCapturePointError, ValueError, TypeError
        A steering at an unknown capture point or of the wrong width, bad strengths, a method returning
        something that is not an intervention.
    """
    ev = evaluator or SteeringEvaluator(model, inputs, targets, seq_data, k=k, batch_size=batch_size, n_boot=n_boot, seed=seed)
    if ev.model is not model:
        raise ValueError("the evaluator was built for another model")
    return ev.run(steering_fn, strengths, concept, return_details=return_details, method=method)


def evaluate_methods(
    model: nn.Module,
    methods: Mapping[str, Callable[[float], Any]],
    strengths: Sequence[float] | Mapping[str, Sequence[float]],
    inputs: Sequence[Any],
    targets: Any,
    concept: Concept | str,
    seq_data: SequenceData,
    *,
    k: int = 10,
    batch_size: int = 256,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """:func:`evaluate_steering` for several methods on the same users, sharing the cached states.

    Introduced in chapter 5. ``strengths`` is one grid for every method or
    a dict ``method -> grid`` (methods have different units: a re-ranking bonus is in logits, a steering
    vector in state units). Each table's ``method`` column holds its key. The result feeds
    :func:`~seqsae_lib.steering.tradeoffs.share_at_equal_cost`.
    """
    if not isinstance(methods, Mapping) or not methods:
        raise ValueError("methods must be a non-empty dict name -> (strength -> intervention)")
    if isinstance(strengths, Mapping):
        missing = [m for m in methods if m not in strengths]
        if missing:
            raise ValueError(f"no strengths given for method(s) {missing}")
    ev = SteeringEvaluator(model, inputs, targets, seq_data, k=k, batch_size=batch_size, n_boot=n_boot, seed=seed)
    out: dict[str, pd.DataFrame] = {}
    for name, fn in methods.items():
        grid = strengths[name] if isinstance(strengths, Mapping) else strengths
        out[name] = ev.run(fn, grid, concept, method=name)  # type: ignore[assignment]
    return out
