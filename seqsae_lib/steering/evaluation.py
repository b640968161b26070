"""Measuring steering: concept share against accuracy cost, baselines, Pareto fronts, equal-cost tables.

Introduced in chapter 5 (chapters/05_steering.ipynb).

A *method* is a function ``strength -> intervention``; the intervention is a
:class:`~seqsae_lib.steering.edits.Steering` (SAE latents), a :class:`~seqsae_lib.steering.edits.VectorSteering`, a
:class:`Rerank` (post-hoc score bonus), any scorer (``scores(input_ids)``) or ``None`` (unsteered).
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

Speed. :class:`SteeringEvaluator` computes the state at each capture point once per user set
(:class:`~seqsae_lib.steering.edits.SteeringCache`, batch by batch) and reuses it across strengths and methods;
at ``"final"`` a strength then costs an edit of the ``(n_users, d)`` last states, one product with the
item table and the ranking itself.

Baselines, all evaluated the same way: :func:`rerank_baseline` (add ``strength`` to the scores of concept
items), :func:`hidden_dim_baseline` (push the raw hidden dimensions most associated with the concept),
:func:`mean_difference_baseline` (mean state before concept items minus mean state otherwise) and
:func:`random_latent_baseline` (a seeded random SAE latent). :func:`share_at_equal_cost` compares methods at
the same accuracy cost.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from seqsae_lib.sae.activations import ActivationStore
from seqsae_lib.data.batching import check_sequences, iter_eval_batches
from seqsae_lib.steering.concepts import Concept, concept_steering, get_concept
from seqsae_lib.model.evaluation import EvalResult, top_k_stable, evaluate
from seqsae_lib.interpret.features import LatentCodes
from seqsae_lib.model.metrics import ndcg_at_k
from seqsae_lib.sae.autoencoder import SparseAutoencoder
from seqsae_lib.data.sequences import SequenceData
from seqsae_lib.steering.edits import Steering, SteeringCache, VectorSteering

__all__ = [
    "GRID_COLUMNS",
    "Rerank",
    "gini",
    "jaccard_at_k",
    "SteeringDetails",
    "SteeringEvaluator",
    "evaluate_steering",
    "evaluate_methods",
    "rerank_baseline",
    "hidden_dim_baseline",
    "mean_difference_baseline",
    "random_latent_baseline",
    "sae_method",
    "steering_methods",
    "pareto_front",
    "share_at_equal_cost",
]

GRID_COLUMNS: tuple[str, ...] = (
    "strength", "share@{k}", "share_gain", "NDCG@{k}", "HR@{k}", "NDCG@{k}_drop", "NDCG@{k}_drop_lo",
    "NDCG@{k}_drop_hi", "NDCG@{k}_concept", "Jaccard@{k}", "Coverage@{k}", "popularity@{k}", "Gini@{k}",
)
"""Columns of :func:`evaluate_steering`'s table (``{k}`` is the cut-off)."""


# --------------------------------------------------------------------------------------------------------
# list metrics
# --------------------------------------------------------------------------------------------------------


def gini(counts: Any) -> float:
    """Gini index of non-negative counts (e.g. how often each item is recommended).

    Introduced in chapter 5 (chapters/05_steering.ipynb). ``0`` when every entry is equal, ``(n-1)/n``
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

    Introduced in chapter 5 (chapters/05_steering.ipynb). Duplicates within a row are counted once.
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


# --------------------------------------------------------------------------------------------------------
# post-hoc re-ranking
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Rerank:
    """Post-hoc re-ranking: add ``bonus[i]`` to every user's score of item ``i``.

    Introduced in chapter 5 (chapters/05_steering.ipynb) as the simplest baseline: no model internals,
    just ``scores + strength * concept_weight``.
    """

    bonus: Tensor
    """``(num_items + 1,)`` additive bonus (column 0 is ignored: padding stays ``-inf``)."""
    label: str = ""

    def __post_init__(self) -> None:
        b = torch.as_tensor(self.bonus, dtype=torch.float32) if not isinstance(self.bonus, Tensor) else self.bonus
        if b.ndim != 1 or not bool(torch.isfinite(b).all()):
            raise ValueError("bonus must be a finite 1-D tensor of shape (num_items + 1,)")
        object.__setattr__(self, "bonus", b.detach())

    def apply_scores(self, scores: Tensor) -> Tensor:
        """``scores + bonus`` (padding column stays ``-inf``). Introduced in chapter 5 (chapters/05_steering.ipynb)."""
        if scores.shape[-1] != self.bonus.shape[0]:
            raise ValueError(f"scores have {scores.shape[-1]} columns but the bonus has {self.bonus.shape[0]}")
        return scores + self.bonus.to(scores)


# --------------------------------------------------------------------------------------------------------
# the evaluator
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SteeringDetails:
    """Per-user results of a grid, for paired comparisons and plots.

    Introduced in chapter 5 (chapters/05_steering.ipynb).
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


class _RecordingScorer:
    """Hands cached or live scores to :func:`evaluate` batch by batch and records the top-k lists."""

    def __init__(self, ev: SteeringEvaluator, score_batch: Callable[[int, Tensor], Tensor]) -> None:
        self.ev = ev
        self.score_batch = score_batch
        self.max_len = ev.max_len
        self.num_items = ev.num_items
        self.top = np.zeros((ev.n_users, ev.k), dtype=np.int64)
        self._next = 0

    def scores(self, input_ids: Tensor) -> Tensor:
        b = self._next
        ev = self.ev
        if b >= len(ev.batches) or not torch.equal(input_ids.cpu(), ev.batches[b].inputs):
            raise RuntimeError("evaluate() asked for batches in an unexpected order; the cached batches do not match")
        s = self.score_batch(b, input_ids)
        masked = s.detach().to(torch.float32).cpu().masked_fill(ev.excluded[b], float("-inf"))
        self.top[ev.batches[b].users] = top_k_stable(masked, ev.k).numpy()
        self._next += 1
        return s


class SteeringEvaluator:
    """Evaluate interventions on one fixed set of users, reusing cached states across strengths and methods.

    Introduced in chapter 5 (chapters/05_steering.ipynb). :func:`evaluate_steering` and
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
        if not isinstance(model, nn.Module) or not callable(getattr(model, "hook_point", None)):
            raise TypeError(f"model must be a SASRec, got {type(model).__name__}")
        if not isinstance(seq_data, SequenceData):
            raise TypeError(f"seq_data must be a SequenceData, got {type(seq_data).__name__}")
        if seq_data.num_items != int(model.num_items):  # type: ignore[arg-type]
            raise ValueError(
                f"seq_data has {seq_data.num_items} items but the model scores {model.num_items}: "
                "use the data the model was trained on"
            )
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
            raise ValueError(f"n_boot must be an int >= 0, got {n_boot!r}")
        self.model = model
        self.num_items = int(model.num_items)  # type: ignore[arg-type]
        self.max_len = int(model.max_len)  # type: ignore[arg-type]
        self.k = int(k)
        self.batch_size = int(batch_size)
        self.n_boot = int(n_boot)
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
        self.excluded: list[Tensor] = []
        for batch in self.batches:
            ex = torch.zeros(len(batch.users), self.num_items + 1, dtype=torch.bool)
            ex[:, 0] = True
            for r, seen in enumerate(batch.seen):
                ex[r, torch.from_numpy(np.asarray(seen, dtype=np.int64))] = True
            ex[torch.arange(len(batch.users)), batch.targets] = False  # the target stays a candidate
            self.excluded.append(ex)
        self.popularity = np.zeros(self.num_items + 1)
        self.popularity[1:] = seq_data.items["popularity"].to_numpy(dtype=np.float64)
        self._caches: dict[str, list[SteeringCache]] = {}
        self._reference: tuple[EvalResult, np.ndarray] | None = None

    # ---- caches ------------------------------------------------------------------------------------

    def cache(self, capture_point: str) -> list[SteeringCache]:
        """The per-batch :class:`~seqsae_lib.steering.edits.SteeringCache` objects at ``capture_point`` (built once).

        Introduced in chapter 5 (chapters/05_steering.ipynb).
        """
        if capture_point not in self._caches:
            self.model.hook_point(capture_point)  # UnknownCapturePointError listing the valid names
            self._caches[capture_point] = [
                SteeringCache(self.model, b.inputs.to(self.device), capture_point) for b in self.batches
            ]
        return self._caches[capture_point]

    def _score_fn(self, obj: Any) -> Callable[[int, Tensor], Tensor]:
        if obj is None:
            caches = self.cache("final")
            return lambda b, ids: caches[b].scores(None)
        if isinstance(obj, (Steering, VectorSteering)):
            caches = self.cache(obj.capture_point)
            return lambda b, ids: caches[b].scores(obj)
        if isinstance(obj, Rerank):
            if obj.bonus.shape[0] != self.num_items + 1:
                raise ValueError(f"Rerank bonus has {obj.bonus.shape[0]} entries; expected num_items + 1 = {self.num_items + 1}")
            caches = self.cache("final")
            return lambda b, ids: obj.apply_scores(caches[b].scores(None))
        if callable(getattr(obj, "scores", None)):
            return lambda b, ids: obj.scores(ids)
        raise TypeError(
            "a method must return a Steering, VectorSteering, Rerank, a scorer (with scores(input_ids)) or None; "
            f"got {type(obj).__name__}"
        )

    def _run(self, obj: Any) -> tuple[EvalResult, np.ndarray]:
        rec = _RecordingScorer(self, self._score_fn(obj))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                result = evaluate(
                    rec, self.seqs, self.targets, num_items=self.num_items, k=(self.k,), filter_seen=True,
                    batch_size=self.batch_size, device=self.device, max_len=self.max_len,
                )
        finally:
            if was_training:
                self.model.train()
        if rec._next != len(self.batches):
            raise RuntimeError("evaluate() did not score every cached batch")
        return result, rec.top

    @property
    def reference(self) -> tuple[EvalResult, np.ndarray]:
        """``(EvalResult, top_items)`` of the unsteered model (computed once).

        Introduced in chapter 5 (chapters/05_steering.ipynb).
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
    ) -> pd.DataFrame | tuple[pd.DataFrame, SteeringDetails]:
        """One method over a grid of strengths: see :func:`evaluate_steering`.

        Introduced in chapter 5 (chapters/05_steering.ipynb).
        """
        if not callable(steering_fn):
            raise TypeError(f"steering_fn must be callable (strength -> intervention), got {type(steering_fn).__name__}")
        concept = get_concept(self.seq_data, concept)
        if concept.num_items != self.num_items:
            raise ValueError(f"concept {concept.name!r} covers {concept.num_items} items but the model scores {self.num_items}")
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
            })
            all_ranks.append(result.ranks)
            all_top.append(top)
        frame = pd.DataFrame(rows, columns=[c.format(k=k) for c in GRID_COLUMNS])
        frame.attrs.update({
            "concept": concept.name, "k": k, "n_users": self.n_users,
            "n_concept_users": int((w_target > 0).sum()),
            "reference_share": ref_share, "reference_NDCG": float(ref_ndcg_u.mean()),
            "concept_base_rate": concept.base_rate,
        })
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
) -> pd.DataFrame | tuple[pd.DataFrame, SteeringDetails]:
    """Concept share and accuracy cost of one steering method over a grid of strengths.

    Introduced in chapter 5 (chapters/05_steering.ipynb). Columns: :data:`GRID_COLUMNS` (defined in the
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
        A concept or a name known to :func:`~seqsae_lib.steering.concepts.get_concept`.
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

    Returns
    -------
    pandas.DataFrame, or (DataFrame, SteeringDetails)
        ``attrs`` hold the concept name, ``k``, the number of (concept) users, the unsteered share and
        NDCG.

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
    return ev.run(steering_fn, strengths, concept, return_details=return_details)


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

    Introduced in chapter 5 (chapters/05_steering.ipynb). ``strengths`` is one grid for every method or
    a dict ``method -> grid`` (methods have different units: a re-ranking bonus is in logits, a steering
    vector in state units). The result feeds :func:`share_at_equal_cost`.
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
        frame = ev.run(fn, grid, concept)
        frame.attrs["method"] = name
        out[name] = frame  # type: ignore[assignment]
    return out


# --------------------------------------------------------------------------------------------------------
# baselines and methods
# --------------------------------------------------------------------------------------------------------


def _check_concept(concept: Any) -> Concept:
    if not isinstance(concept, Concept):
        raise TypeError(f"concept must be a Concept (see seqsae_lib.steering.concepts.get_concept), got {type(concept).__name__}")
    return concept


def _check_store(store: Any, concept: Concept) -> tuple[Tensor, np.ndarray]:
    """Valid states and the concept weight of their next item."""
    if not isinstance(store, ActivationStore):
        raise TypeError(f"store must be an ActivationStore, got {type(store).__name__}")
    nxt = store.next_item
    if len(nxt) and nxt.max() > concept.num_items:
        raise ValueError(f"the store holds item ids up to {int(nxt.max())} but the concept covers {concept.num_items} items")
    valid = nxt > 0
    if not valid.any():
        raise ValueError("the store has no position with a known next item")
    w = concept.item_mask[nxt[valid]]
    if not (w.sum() > 0 and (1 - w).sum() > 0):
        raise ValueError(f"concept {concept.name!r} never (or always) follows a stored position: no contrast")
    return store.acts[torch.from_numpy(valid)].double(), w


def _weighted_means(x: Tensor, w: np.ndarray) -> tuple[Tensor, Tensor]:
    wt = torch.from_numpy(w).to(x)
    inside = (wt[:, None] * x).sum(0) / wt.sum()
    outside = ((1 - wt)[:, None] * x).sum(0) / (1 - wt).sum()
    return inside, outside


@dataclass(frozen=True, eq=False)
class _Baseline:
    """A method ``strength -> intervention`` that also remembers how it was built."""

    name: str
    make: Callable[[float], Any]
    info: dict

    def __call__(self, strength: float) -> Any:
        return self.make(float(strength))

    def __repr__(self) -> str:
        return f"<method {self.name!r} {self.info}>"


def rerank_baseline(concept: Concept) -> Callable[[float], Rerank]:
    """Post-hoc re-ranking: ``strength -> Rerank(strength * concept weights)``.

    Introduced in chapter 5 (chapters/05_steering.ipynb). ``strength`` is a bonus in logit units added
    to every concept item's score.
    """
    concept = _check_concept(concept)
    w = concept.as_tensor()
    return _Baseline("re-ranking", lambda s: Rerank(s * w, f"re-rank {concept.name} {s:+g}"), {"concept": concept.name})


def hidden_dim_baseline(
    store: ActivationStore, concept: Concept, *, n_dims: int = 4, positions: Literal["last", "all"] = "last"
) -> Callable[[float], VectorSteering]:
    """Push the ``n_dims`` raw hidden dimensions most associated with the concept.

    Introduced in chapter 5 (chapters/05_steering.ipynb). Association of dimension ``j``: the
    standardised difference ``(mean_C x_j - mean_rest x_j) / std x_j`` between positions whose next item
    has the concept and the others (weighted by the concept weight), over the store's positions with a
    known next item. The ``n_dims`` dimensions with the largest ``|association|`` are pushed in the sign
    of their association, each by its own standard deviation; the vector is normalised to unit norm, so
    ``strength`` is the length of the push in state units (comparable with an SAE ``"add"`` on a
    unit-norm decoder row and with :func:`mean_difference_baseline`). Steers at ``store.capture_point``.

    ``info`` on the returned method: the dimensions, their association and sign.
    """
    concept = _check_concept(concept)
    if isinstance(n_dims, bool) or not isinstance(n_dims, (int, np.integer)) or n_dims < 1:
        raise ValueError(f"n_dims must be an int >= 1, got {n_dims!r}")
    x, w = _check_store(store, concept)
    if n_dims > x.shape[1]:
        raise ValueError(f"n_dims={n_dims} exceeds the state width {x.shape[1]}")
    inside, outside = _weighted_means(x, w)
    std = x.std(0, unbiased=False).clamp_min(1e-12)
    assoc = (inside - outside) / std
    dims = torch.argsort(assoc.abs(), descending=True, stable=True)[: int(n_dims)]
    vec = torch.zeros(x.shape[1], dtype=torch.float64)
    vec[dims] = torch.sign(assoc[dims]) * std[dims]
    vec = (vec / vec.norm()).float()
    cp = store.capture_point
    info = {"dims": dims.tolist(), "association": assoc[dims].tolist(), "capture_point": cp}
    return _Baseline(
        "hidden dims", lambda s: VectorSteering(cp, s * vec, positions, f"hidden dims {s:+g}"), info,
    )


def mean_difference_baseline(
    store: ActivationStore, concept: Concept, *, positions: Literal["last", "all"] = "last"
) -> Callable[[float], VectorSteering]:
    """A steering vector: mean state before concept items minus mean state before other items.

    Introduced in chapter 5 (chapters/05_steering.ipynb). Over the store's positions with a known next
    item, weighted by the concept weight of that next item; normalised to unit norm, so ``strength`` is
    the length of the push in state units. Steers at ``store.capture_point``.
    """
    concept = _check_concept(concept)
    x, w = _check_store(store, concept)
    inside, outside = _weighted_means(x, w)
    diff = inside - outside
    norm = float(diff.norm())
    if not norm > 0:
        raise ValueError("the mean states before concept and other items are identical: no direction")
    vec = (diff / norm).float()
    cp = store.capture_point
    return _Baseline(
        "mean difference", lambda s: VectorSteering(cp, s * vec, positions, f"mean difference {s:+g}"),
        {"capture_point": cp, "raw_norm": norm},
    )


def random_latent_baseline(
    sae: SparseAutoencoder,
    capture_point: str,
    *,
    seed: int = 0,
    codes: LatentCodes | None = None,
    min_fires: int = 1,
    positions: Literal["last", "all"] = "last",
) -> Callable[[float], Steering]:
    """``add`` along one random SAE latent (seeded): what steering with an arbitrary feature does.

    Introduced in chapter 5 (chapters/05_steering.ipynb). With ``codes``, the latent is drawn among
    latents that fire at least ``min_fires`` times (a dead latent is a poor control).
    """
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
    pool = np.arange(sae.d_sae)
    if codes is not None:
        counts = codes.firing_counts().numpy() if isinstance(codes, LatentCodes) else None
        if counts is None or len(counts) != sae.d_sae:
            raise ValueError("codes must be the SAE's LatentCodes (d_sae columns)")
        pool = np.flatnonzero(counts >= min_fires)
        if not len(pool):
            raise ValueError(f"no latent fires >= {min_fires} times")
    latent = int(np.random.default_rng(seed).choice(pool))
    return _Baseline(
        "random latent",
        lambda s: Steering.add(sae, capture_point, latent, s, positions=positions, label=f"random latent {latent} {s:+g}"),
        {"latent": latent, "seed": seed},
    )


def sae_method(
    concept: Concept,
    latents: Sequence[int] | pd.DataFrame,
    sae: SparseAutoencoder,
    capture_point: str,
    *,
    rule: Literal["add", "shift_z", "scale"] = "add",
    latent_std: Tensor | None = None,
    positions: Literal["last", "all"] = "last",
) -> Callable[[float], Steering]:
    """The SAE method: ``strength -> concept_steering(concept, strength, latents, ...)``.

    Introduced in chapter 5 (chapters/05_steering.ipynb).
    """
    concept = _check_concept(concept)
    lat = latents["latent"].tolist() if isinstance(latents, pd.DataFrame) else list(latents)
    concept_steering(concept, 0.0, lat, sae, capture_point, rule=rule, positions=positions, latent_std=latent_std)  # validate now
    return _Baseline(
        f"SAE latents ({rule})",
        lambda s: concept_steering(concept, s, lat, sae, capture_point, rule=rule, positions=positions, latent_std=latent_std),
        {"latents": lat, "rule": rule},
    )


def steering_methods(
    concept: Concept,
    sae: SparseAutoencoder,
    store: ActivationStore,
    latents: Sequence[int] | pd.DataFrame,
    *,
    rule: Literal["add", "shift_z", "scale"] = "add",
    latent_std: Tensor | None = None,
    n_dims: int = 4,
    codes: LatentCodes | None = None,
    seed: int = 0,
    positions: Literal["last", "all"] = "last",
) -> dict[str, Callable[[float], Any]]:
    """The SAE method and the four baselines at ``store.capture_point``, ready for :func:`evaluate_methods`.

    Introduced in chapter 5 (chapters/05_steering.ipynb). Keys: ``"SAE latents"``, ``"re-ranking"``,
    ``"hidden dims"``, ``"mean difference"``, ``"random latent"``.
    """
    cp = store.capture_point
    return {
        "SAE latents": sae_method(concept, latents, sae, cp, rule=rule, latent_std=latent_std, positions=positions),
        "re-ranking": rerank_baseline(concept),
        "hidden dims": hidden_dim_baseline(store, concept, n_dims=n_dims, positions=positions),
        "mean difference": mean_difference_baseline(store, concept, positions=positions),
        "random latent": random_latent_baseline(sae, cp, seed=seed, codes=codes, positions=positions),
    }


# --------------------------------------------------------------------------------------------------------
# comparing methods
# --------------------------------------------------------------------------------------------------------


def _k_of(df: pd.DataFrame) -> int:
    if "k" in df.attrs:
        return int(df.attrs["k"])
    for c in df.columns:
        m = re.fullmatch(r"NDCG@(\d+)_drop", str(c))
        if m:
            return int(m.group(1))
    raise ValueError("cannot find an 'NDCG@k_drop' column: pass a table from evaluate_steering")


def pareto_front(
    df: pd.DataFrame, *, cost: str | None = None, gain: str | None = None, maximize: bool = True
) -> pd.DataFrame:
    """Rows of a grid not dominated by another row (lower or equal cost and strictly better gain).

    Introduced in chapter 5 (chapters/05_steering.ipynb). Defaults: ``cost = "NDCG@k_drop"``,
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

    Introduced in chapter 5 (chapters/05_steering.ipynb).

    Each method's curve is its grid ordered by ``|strength|``, starting from the unsteered point (cost 0,
    the unsteered share) when the grid has no strength 0, and joined by straight lines.

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
        ``method -> evaluate_steering table`` (e.g. :func:`evaluate_methods`).
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
    if mode not in ("crossing", "budget"):
        raise ValueError(f"mode must be 'crossing' or 'budget', got {mode!r}")
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
            start = 0.0 if val_col == "strength" else df.attrs.get("reference_share", np.nan)
            if val_col != "strength" and val_col != f"share@{k}":
                start = np.nan
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
