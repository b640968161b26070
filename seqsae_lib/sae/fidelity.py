"""Downstream fidelity: how much of the recommender survives when an SAE replaces its hidden state.

Introduced in chapter 3.

Reconstruction metrics (FVU, cosine) say how close ``x_hat`` is to ``x``; they do not say whether the
*recommendations* survive. Here the SAE is spliced into the model at its capture point: during the
forward pass the state there is replaced by the SAE's reconstruction and the model runs on from it.
We then measure the ranking quality (NDCG, HR, full-catalogue protocol of
:func:`seqsae_lib.model.evaluation.evaluate`) and the next-item cross-entropy, against four references:

* **original**: the unmodified model;
* **SAE + error term**: reconstruction plus the residual ``x - x_hat``, which is ``x`` again. It must
  reproduce the original up to float rounding: a check that the splicing itself is correct;
* **mean ablation**: every real position gets the dataset's mean state (no information about the user);
* **zero ablation**: every real position gets the zero vector (at ``"final"`` all scores become 0).

The headline number is the *fraction of cross-entropy recovered*, with mean ablation as the reference
(as in Anthropic's and OpenAI's SAE reports)::

    fraction recovered (CE) = (CE_mean_ablation - CE_SAE) / (CE_mean_ablation - CE_original)

1 means the SAE loses nothing, 0 means it is no better than knowing nothing about the user. Mean rather
than zero ablation is the reference because a zero vector is far outside the distribution of states
(the zero-ablation loss is ``log(num_items)`` at ``"final"``, an easy bar to beat).

The splicing itself is :func:`seqsae_lib.sae.splice.splice`. :func:`downstream_fidelity` returns a
:class:`FidelityResult`: the summary table (``result.table``) and the per-user ranks and cross-entropies
behind it (``result.per_user("NDCG")``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from seqsae_lib.data import check_sequences, iter_eval_batches
from seqsae_lib.model import check_model
from seqsae_lib.model import EvalResult, evaluate
from seqsae_lib.sae.autoencoder import SparseAutoencoder
from seqsae_lib.sae.splice import check_mean, check_sae_width, resolve_capture_point, splice
from seqsae_lib.utils.checks import check_choice, check_int
from seqsae_lib.utils.torchutils import eval_mode

__all__ = [
    "FIDELITY_CONDITIONS",
    "next_item_cross_entropy",
    "downstream_fidelity",
    "FidelityResult",
    "FidelityDetails",
    "fidelity_per_user",
]

FIDELITY_CONDITIONS: dict[str, str | None] = {
    "original": None,
    "SAE (no error term)": "sae",
    "SAE + error term": "sae+error",
    "mean ablation": "mean",
    "zero ablation": "zero",
}
"""Rows of :func:`downstream_fidelity`'s table and the :func:`splice` mode behind each."""


# --------------------------------------------------------------------------------------------------------
# cross-entropy
# --------------------------------------------------------------------------------------------------------


def _ce_rows(scores: Tensor, targets: Tensor) -> Tensor:
    """Per-row full-softmax CE of ``targets`` (ids >= 1) over columns ``1..num_items`` of ``scores``."""
    s = scores[:, 1:].to(torch.float64)
    return torch.logsumexp(s, dim=1) - s.gather(1, (targets - 1)[:, None]).squeeze(1)


def _resolve_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def next_item_cross_entropy(
    model: nn.Module,
    inputs: Sequence[Any],
    targets: Any,
    *,
    batch_size: int = 256,
    reduction: Literal["mean", "none"] = "mean",
    max_len: int | None = None,
    device: str | torch.device | None = None,
) -> float | np.ndarray:
    """Full-softmax cross-entropy of each user's target given the state at the last position.

    Introduced in chapter 3. The softmax runs over all real items
    ``1..num_items`` (the padding column is excluded) and, unlike the ranking metrics, already-seen
    items are *not* filtered: this is the quantity the model was trained to minimise. Any
    :func:`splice` (or :func:`~seqsae_lib.model.capture.intervene`) active around the call applies.

    Parameters
    ----------
    model : SASRec
        Put in eval mode for the call, then restored.
    inputs : sequence of array-like
        Per-user input sequences (e.g. ``split.test_inputs``).
    targets : array-like
        ``(n_users,)`` target ids in ``1..num_items``.
    batch_size : int, default 256
    reduction : {"mean", "none"}, default "mean"
        Return the mean (float, nats) or the per-user values (``(n_users,)`` float64 array).
    max_len : int, optional
        Window; defaults to ``model.max_len``.
    device : str or torch.device, optional
        Defaults to the model's parameter device.

    Raises
    ------
    ValueError
        Bad inputs or targets (see :func:`~seqsae_lib.data.batching.iter_eval_batches`), or a bad reduction.
    """
    check_choice("reduction", reduction, ("mean", "none"))
    num_items = int(check_model(model, scores=True).num_items)
    seqs = check_sequences(inputs, num_items=num_items, what="inputs", allow_empty=False)
    if not seqs:
        raise ValueError("inputs is empty; expected at least one user")
    dev = _resolve_device(model, device)
    out = np.empty(len(seqs), dtype=np.float64)
    with eval_mode(model):
        for batch in iter_eval_batches(
            seqs, targets, max_len=int(max_len or model.max_len), batch_size=batch_size, num_items=num_items
        ):
            s = model.scores(batch.inputs.to(dev))
            out[batch.users] = _ce_rows(s, batch.targets.to(s.device)).cpu().numpy()
    return float(out.mean()) if reduction == "mean" else out


class _SplicedScorer:
    """A scorer for :func:`evaluate` that runs ``model`` inside a :func:`splice` and, in the same pass,
    records each user's cross-entropy (batches arrive in user order; checked)."""

    def __init__(
        self,
        model: nn.Module,
        sae: SparseAutoencoder | None,
        capture_point: str,
        mode: str | None,
        mean: Tensor | None,
        positions: str,
        seqs: list[np.ndarray],
        targets: np.ndarray,
    ) -> None:
        self.model = model
        self.num_items = int(model.num_items)
        self.max_len = int(model.max_len)
        self._splice_args = (sae, capture_point, mode, mean, positions)
        self._last_items = np.array([s[-1] if len(s) else 0 for s in seqs], dtype=np.int64)
        self._targets = torch.from_numpy(np.asarray(targets, dtype=np.int64))
        self.ce = np.full(len(seqs), np.nan)
        self.cursor = 0

    def scores(self, input_ids: Tensor) -> Tensor:
        sae, capture_point, mode, mean, positions = self._splice_args
        if mode is None:
            s = self.model.scores(input_ids)
        else:
            with splice(self.model, sae, capture_point, mode=mode, positions=positions,  # type: ignore[arg-type]
                        mean=mean if mode == "mean" else None):
                s = self.model.scores(input_ids)
        b = input_ids.shape[0]
        rows = slice(self.cursor, self.cursor + b)
        if self.cursor + b > len(self.ce) or not np.array_equal(
            input_ids[:, -1].cpu().numpy(), self._last_items[rows]
        ):
            raise RuntimeError("evaluate() did not visit users in input order; cannot align cross-entropies")
        self.ce[rows] = _ce_rows(s, self._targets[rows].to(s.device)).cpu().numpy()
        self.cursor += b
        return s


# --------------------------------------------------------------------------------------------------------
# the fidelity table
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FidelityResult:
    """What :func:`downstream_fidelity` returns: the summary table and the per-user data behind it.

    Introduced in chapter 3. Shown as its table in a notebook; compared by
    identity (``eq=False``).
    """

    table: pd.DataFrame
    """One row per condition (the keys of :data:`FIDELITY_CONDITIONS`, in that order, index ``condition``),
    columns ``NDCG@k``, ``HR@k``, ``CE`` (nats), ``CE increase`` (``CE - CE_original``),
    ``fraction recovered (CE)`` (mean ablation = 0, original = 1; NaN if the two coincide) and
    ``fraction of original NDCG@k`` (``NDCG_cond / NDCG_original``)."""
    eval_results: dict[str, EvalResult]
    """Condition -> :class:`~seqsae_lib.model.evaluation.EvalResult` (``ranks``: per-user 0-based ranks)."""
    ce_per_user: dict[str, np.ndarray]
    """Condition -> ``(n_users,)`` float64 cross-entropy (nats) of each user's target."""
    capture_point: str
    """Where the SAE was spliced."""
    positions: str
    """``"all"`` or ``"last"`` (see :func:`~seqsae_lib.sae.splice.splice`)."""
    k: int
    """Cut-off of the ranking metrics."""
    reference: str = "mean ablation"
    """The condition that defines 0 in ``fraction recovered (CE)``."""

    def per_user(self, metric: str = "NDCG") -> pd.DataFrame:
        """One row per user (input order), one column per condition.

        Introduced in chapter 3.

        Parameters
        ----------
        metric : {"NDCG", "HR", "MRR", "CE"}, default "NDCG"
            Ranking metrics use the cut-off :attr:`k`.

        Raises
        ------
        ValueError
            An unknown metric.
        """
        name = str(metric).upper()
        if name == "CE":
            data = {c: np.asarray(v) for c, v in self.ce_per_user.items()}
        elif name in ("NDCG", "HR", "MRR"):
            data = {c: r.per_user(name, self.k) for c, r in self.eval_results.items()}
        else:
            raise ValueError(f"unknown metric {metric!r}; expected one of ['CE', 'HR', 'MRR', 'NDCG']")
        frame = pd.DataFrame(data)
        frame.index.name = "user"
        return frame

    def _repr_html_(self) -> str | None:
        return self.table._repr_html_()

    def __repr__(self) -> str:
        n_users = len(next(iter(self.ce_per_user.values()), []))
        return (f"FidelityResult(capture_point={self.capture_point!r}, positions={self.positions!r}, k={self.k}, "
                f"n_users={n_users})\n{self.table!r}")


FidelityDetails = FidelityResult
"""The name :class:`FidelityResult` had when it travelled in ``table.attrs["fidelity"]``; kept for now."""


def downstream_fidelity(
    model: nn.Module,
    sae: SparseAutoencoder,
    inputs: Sequence[Any],
    targets: Any,
    capture_point: str | None = None,
    *,
    mean: Tensor,
    num_items: int,
    k: int = 10,
    batch_size: int = 256,
    positions: Literal["all", "last"] = "all",
    device: str | torch.device | None = None,
    progress: bool = False,
) -> FidelityResult:
    """Ranking quality and cross-entropy with the SAE spliced in, next to the four references.

    Introduced in chapter 3. See the module docstring for the conditions and
    the fraction-recovered formula. One model pass per condition gives both the ranks (through
    :func:`~seqsae_lib.model.evaluation.evaluate`: full catalogue, seen items filtered, ties by item id) and
    the cross-entropy (full softmax, seen items not filtered).

    Parameters
    ----------
    model : SASRec
        Put in eval mode for the call, then restored.
    sae : SparseAutoencoder
        Trained on activations at ``capture_point`` of ``model`` (``d_in == model.d_model``).
    inputs, targets
        Evaluation users, e.g. ``split.test_inputs`` and ``split.test_targets``.
    capture_point : str, optional
        Defaults to where the SAE reads (``sae.capture_point``); if given, it must be that one. Required
        only for an SAE that records no capture point.
    mean : Tensor of shape (d_model,)
        Mean state at ``capture_point`` for mean ablation, e.g. ``store.mean()`` of the training
        activations (:class:`~seqsae_lib.sae.activations.ActivationStore`).
    num_items : int
        Catalogue size (must equal ``model.num_items``).
    k : int, default 10
        Cut-off of NDCG and HR.
    batch_size : int, default 256
    positions : {"all", "last"}, default "all"
        Passed to :func:`splice`. At ``"final"`` (the last capture point) both give the same scores,
        and only the last position is spliced.
    device : str or torch.device, optional
        Defaults to the model's parameter device.
    progress : bool, default False
        Show a tqdm bar over the five conditions.

    Returns
    -------
    FidelityResult
        ``result.table``: one row per condition with ``NDCG@k``, ``HR@k``, ``CE``, ``CE increase``,
        ``fraction recovered (CE)`` and ``fraction of original NDCG@k`` (see :attr:`FidelityResult.table`);
        ``result.per_user(metric)``: per-user values of every condition, for paired comparisons.

    Raises
    ------
    UnknownCapturePointError
        Unknown capture point (the valid ones are listed).
    ValueError, TypeError
        An SAE of the wrong width (both widths named), a ``capture_point`` other than the SAE's, a
        malformed ``mean``, ``num_items`` different from the model's, or bad inputs.
    """
    capture_point = resolve_capture_point(model, sae, capture_point)
    check_sae_width(model, sae, capture_point)
    mean_vec = check_mean(model, mean)
    if int(num_items) != int(model.num_items):
        raise ValueError(f"num_items={num_items} does not match model.num_items={model.num_items}")
    k = check_int("k", k, 1)
    seqs = check_sequences(inputs, num_items=int(num_items), what="inputs", allow_empty=False)
    if not seqs:
        raise ValueError("inputs is empty; expected at least one user")
    tg = np.asarray(targets.detach().cpu() if isinstance(targets, Tensor) else targets)
    if tg.ndim != 1 or len(tg) != len(seqs):
        raise ValueError(f"targets must be 1-D with one id per user ({len(seqs)} users), got shape {tg.shape}")
    if not np.issubdtype(tg.dtype, np.integer):
        raise TypeError(f"targets must be integer item ids, got dtype {tg.dtype}")
    tg = tg.astype(np.int64)
    if tg.min() < 1 or tg.max() > int(num_items):
        raise ValueError(f"targets must be item ids in [1, {num_items}], got values in [{tg.min()}, {tg.max()}]")
    check_choice("positions", positions, ("all", "last"))
    dev = _resolve_device(model, device)
    # At the last capture point only the most recent position reaches the scores: splicing the others
    # would change nothing but cost an SAE pass per position.
    run_positions = "last" if capture_point == tuple(model.capture_points)[-1] else positions

    results: dict[str, EvalResult] = {}
    ce: dict[str, np.ndarray] = {}
    with eval_mode(model):
        for name, mode in tqdm(FIDELITY_CONDITIONS.items(), desc="fidelity", disable=not progress, leave=False):
            scorer = _SplicedScorer(model, sae, capture_point, mode, mean_vec, run_positions, seqs, tg)
            results[name] = evaluate(
                scorer, seqs, tg, num_items=int(num_items), k=(k,), filter_seen=True,
                batch_size=batch_size, device=dev, max_len=int(model.max_len),
            )
            if scorer.cursor != len(seqs):
                raise RuntimeError(f"scored {scorer.cursor} users, expected {len(seqs)}")
            ce[name] = scorer.ce

    ndcg, hr = f"NDCG@{k}", f"HR@{k}"
    rows = []
    ce_orig, ce_ref = float(ce["original"].mean()), float(ce["mean ablation"].mean())
    ndcg_orig = results["original"][ndcg]
    for name in FIDELITY_CONDITIONS:
        c = float(ce[name].mean())
        rows.append(
            {
                "condition": name,
                ndcg: results[name][ndcg],
                hr: results[name][hr],
                "CE": c,
                "CE increase": c - ce_orig,
                "fraction recovered (CE)": (ce_ref - c) / (ce_ref - ce_orig) if ce_ref != ce_orig else float("nan"),
                f"fraction of original {ndcg}": results[name][ndcg] / ndcg_orig if ndcg_orig > 0 else float("nan"),
            }
        )
    return FidelityResult(
        table=pd.DataFrame(rows).set_index("condition"), eval_results=results, ce_per_user=ce,
        capture_point=capture_point, positions=positions, k=k,
    )


def fidelity_per_user(result: FidelityResult, metric: str = "NDCG") -> pd.DataFrame:
    """Per-user values behind a :func:`downstream_fidelity` result, for paired comparisons.

    Introduced in chapter 3. The same as ``result.per_user(metric)``.

    Parameters
    ----------
    result : FidelityResult
        The output of :func:`downstream_fidelity`.
    metric : {"NDCG", "HR", "MRR", "CE"}, default "NDCG"
        Ranking metrics use the result's cut-off ``k``.

    Returns
    -------
    pandas.DataFrame
        One row per user (input order), one column per condition.

    Raises
    ------
    TypeError
        ``result`` is not a :class:`FidelityResult` (e.g. only its table).
    ValueError
        An unknown metric.
    """
    if not isinstance(result, FidelityResult):
        raise TypeError(
            f"no per-user data in a {type(result).__name__}: pass the FidelityResult returned by "
            "downstream_fidelity (its .table holds only the summary)"
        )
    return result.per_user(metric)
