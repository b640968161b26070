"""Downstream fidelity: how much of the recommender survives when an SAE replaces its hidden state.

Introduced in chapter 3 (chapters/03_sae.ipynb).

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

Padding positions (all-zero states, see :mod:`seqsae_lib.model.sasrec`) are never touched by a splice: a state
vector that is exactly zero in every coordinate is treated as padding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from seqsae_lib.data.batching import check_sequences, iter_eval_batches
from seqsae_lib.model.capture import intervene
from seqsae_lib.model.evaluation import EvalResult, evaluate
from seqsae_lib.sae.autoencoder import SparseAutoencoder

__all__ = [
    "SPLICE_MODES",
    "FIDELITY_CONDITIONS",
    "splice",
    "next_item_cross_entropy",
    "downstream_fidelity",
    "FidelityDetails",
    "fidelity_per_user",
]

SpliceMode = Literal["sae", "sae+error", "zero", "mean"]
SPLICE_MODES: tuple[str, ...] = ("sae", "sae+error", "zero", "mean")
"""What :func:`splice` can put in place of the hidden state."""

FIDELITY_CONDITIONS: dict[str, str | None] = {
    "original": None,
    "SAE (no error term)": "sae",
    "SAE + error term": "sae+error",
    "mean ablation": "mean",
    "zero ablation": "zero",
}
"""Rows of :func:`downstream_fidelity`'s table and the :func:`splice` mode behind each."""


# --------------------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------------------


def _model_width(model: nn.Module) -> int:
    d = getattr(model, "d_model", None)
    if d is None:
        raise TypeError(f"model must have a d_model attribute (e.g. a SASRec), got {type(model).__name__}")
    return int(d)


def _check_capture_point(model: nn.Module, capture_point: str) -> None:
    if not callable(getattr(model, "hook_point", None)):
        raise TypeError(f"model must expose capture points (e.g. a SASRec), got {type(model).__name__}")
    model.hook_point(capture_point)  # UnknownCapturePointError listing the valid names


def _check_sae(model: nn.Module, sae: Any, capture_point: str) -> SparseAutoencoder:
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
    d_model = _model_width(model)
    if sae.d_in != d_model:
        raise ValueError(
            f"the SAE reads vectors of width d_in={sae.d_in}, but capture point {capture_point!r} of the "
            f"model has width d_model={d_model}; was the SAE trained on another model?"
        )
    return sae


def _check_mean(model: nn.Module, mean: Any) -> Tensor:
    d_model = _model_width(model)
    if isinstance(mean, np.ndarray):
        mean = torch.from_numpy(mean)
    if not isinstance(mean, Tensor):
        raise TypeError(
            f"mean must be a tensor of shape ({d_model},) (e.g. ActivationStore.mean()), got {type(mean).__name__}"
        )
    if not mean.is_floating_point():
        raise TypeError(f"mean must be a floating-point tensor, got dtype {mean.dtype}")
    if tuple(mean.shape) != (d_model,):
        raise ValueError(f"mean must have shape (d_model,) = ({d_model},), got shape {tuple(mean.shape)}")
    if not bool(torch.isfinite(mean).all()):
        raise ValueError("mean contains NaN or inf")
    return mean.detach()


# --------------------------------------------------------------------------------------------------------
# splicing
# --------------------------------------------------------------------------------------------------------


@contextmanager
def splice(
    model: nn.Module,
    sae: SparseAutoencoder | None,
    capture_point: str,
    *,
    mode: SpliceMode = "sae",
    positions: Literal["all", "last"] = "all",
    mean: Tensor | None = None,
) -> Iterator[None]:
    """Replace the state at ``capture_point`` during forward passes run inside the ``with`` block.

    Introduced in chapter 3 (chapters/03_sae.ipynb). Built on :func:`seqsae_lib.model.capture.intervene`.

    Parameters
    ----------
    model : SASRec
    sae : SparseAutoencoder or None
        Needed for ``"sae"`` and ``"sae+error"`` (its ``d_in`` must equal ``model.d_model``); ignored
        (may be None) for the ablations. It is put in eval mode inside the block (BatchTopK then uses
        its per-vector threshold) and its mode is restored afterwards.
    capture_point : str
        Where to splice (``"embed"``, ``"block_0"``, ..., ``"final"``).
    mode : {"sae", "sae+error", "zero", "mean"}, default "sae"
        ``"sae"``: the SAE reconstruction ``x_hat`` (no error term); ``"sae+error"``:
        ``x_hat + (x - x_hat)``, equal to ``x`` up to float rounding; ``"zero"``: the zero vector;
        ``"mean"``: the vector ``mean``.
    positions : {"all", "last"}, default "all"
        Replace every real position, or only the most recent one. With ``"all"`` at an inner capture
        point the later layers also attend to replaced states of earlier positions.
    mean : Tensor of shape (d_model,), optional
        Required for ``mode="mean"`` (e.g. :meth:`~seqsae_lib.sae.activations.ActivationStore.mean`).

    Notes
    -----
    Padding positions, recognised as state vectors that are exactly zero, are left untouched (zero),
    whatever the mode. Gradients flow through the replacement (no ``no_grad`` is imposed).

    Raises
    ------
    UnknownCapturePointError
        ``capture_point`` is not a capture point of ``model`` (the message lists the valid ones).
    ValueError
        Unknown mode or positions; an SAE whose width differs from the model's (both named); a
        missing or malformed ``mean``.
    TypeError
        ``sae`` is missing or not a :class:`~seqsae_lib.sae.autoencoder.SparseAutoencoder` where one is needed.

    Examples
    --------
    >>> with splice(model, sae, "final"):
    ...     spliced_scores = model.scores(input_ids)
    """
    _check_capture_point(model, capture_point)
    if mode not in SPLICE_MODES:
        raise ValueError(f"mode must be one of {SPLICE_MODES}, got {mode!r}")
    if positions not in ("all", "last"):
        raise ValueError(f"positions must be 'all' or 'last', got {positions!r}")
    uses_sae = mode in ("sae", "sae+error")
    if uses_sae:
        if sae is None:
            raise TypeError(f"mode={mode!r} needs an SAE, got sae=None")
        _check_sae(model, sae, capture_point)
    mean_vec = _check_mean(model, mean) if mode == "mean" else None
    if mode != "mean" and mean is not None:
        raise ValueError(f"mean is only used with mode='mean', got mode={mode!r}")

    def replace_rows(x: Tensor) -> Tensor:
        """``(n, d)`` real (non-padding) states -> their replacement."""
        if mode == "zero":
            return torch.zeros_like(x)
        if mode == "mean":
            return mean_vec.to(device=x.device, dtype=x.dtype).expand_as(x).clone()
        # forward() decodes TopK codes sparsely: about twice as fast as decode(encode(x)) on CPU
        x_hat = sae(x).x_hat.to(device=x.device, dtype=x.dtype)  # type: ignore[misc]
        if mode == "sae":
            return x_hat
        return x_hat + (x - x_hat)

    def fn(h: Tensor) -> Tensor:
        real = (h != 0).any(dim=-1)  # padding states are exactly zero
        if not bool(real.any()):
            return h
        out = h.clone()
        out[real] = replace_rows(h[real])
        return out

    was_training = sae.training if uses_sae else None
    if uses_sae:
        sae.eval()  # type: ignore[union-attr]
    try:
        with intervene(model, capture_point, fn, positions=positions):
            yield
    finally:
        if was_training:
            sae.train()  # type: ignore[union-attr]


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

    Introduced in chapter 3 (chapters/03_sae.ipynb). The softmax runs over all real items
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
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    num_items = int(model.num_items)
    seqs = check_sequences(inputs, num_items=num_items, what="inputs", allow_empty=False)
    if not seqs:
        raise ValueError("inputs is empty; expected at least one user")
    dev = _resolve_device(model, device)
    out = np.empty(len(seqs), dtype=np.float64)
    was_training = model.training
    model.eval()
    try:
        for batch in iter_eval_batches(
            seqs, targets, max_len=int(max_len or model.max_len), batch_size=batch_size, num_items=num_items
        ):
            s = model.scores(batch.inputs.to(dev))
            out[batch.users] = _ce_rows(s, batch.targets.to(s.device)).cpu().numpy()
    finally:
        if was_training:
            model.train()
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
class FidelityDetails:
    """Per-user data behind a :func:`downstream_fidelity` table (kept in ``table.attrs["fidelity"]``).

    Introduced in chapter 3 (chapters/03_sae.ipynb). Compared by identity (``eq=False``), so pandas
    can compare and propagate ``attrs`` (e.g. in ``pd.concat``) without comparing arrays.
    """

    eval_results: dict[str, EvalResult]
    """Condition -> :class:`~seqsae_lib.model.evaluation.EvalResult` (``ranks``: per-user 0-based ranks)."""
    ce_per_user: dict[str, np.ndarray]
    """Condition -> ``(n_users,)`` float64 cross-entropy (nats) of each user's target."""
    capture_point: str
    """Where the SAE was spliced."""
    positions: str
    """``"all"`` or ``"last"`` (see :func:`splice`)."""
    k: int
    """Cut-off of the ranking metrics."""
    reference: str = "mean ablation"
    """The condition that defines 0 in ``fraction recovered (CE)``."""

    def per_user(self, metric: str = "NDCG") -> pd.DataFrame:
        """One row per user (input order), one column per condition.

        Introduced in chapter 3 (chapters/03_sae.ipynb).

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

    def __repr__(self) -> str:
        return (
            f"FidelityDetails(capture_point={self.capture_point!r}, positions={self.positions!r}, k={self.k}, "
            f"conditions={list(self.eval_results)}, n_users={len(next(iter(self.ce_per_user.values()), []))})"
        )


def downstream_fidelity(
    model: nn.Module,
    sae: SparseAutoencoder,
    inputs: Sequence[Any],
    targets: Any,
    capture_point: str,
    *,
    mean: Tensor,
    num_items: int,
    k: int = 10,
    batch_size: int = 256,
    positions: Literal["all", "last"] = "all",
    device: str | torch.device | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Ranking quality and cross-entropy with the SAE spliced in, next to the four references.

    Introduced in chapter 3 (chapters/03_sae.ipynb). See the module docstring for the conditions and
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
    capture_point : str
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
    pandas.DataFrame
        Indexed by ``condition`` (the keys of :data:`FIDELITY_CONDITIONS`, in that order), columns
        ``NDCG@k``, ``HR@k``, ``CE`` (nats), ``CE increase`` (``CE - CE_original``),
        ``fraction recovered (CE)`` (mean ablation = 0, original = 1; NaN if the two coincide) and
        ``fraction of original NDCG@k`` (``NDCG_cond / NDCG_original``). For paired per-user
        comparisons ``df.attrs["fidelity"]`` is a :class:`FidelityDetails` (per-user ranks and
        cross-entropies of every condition); see :func:`fidelity_per_user`.

    Raises
    ------
    UnknownCapturePointError
        Unknown capture point (the valid ones are listed).
    ValueError, TypeError
        An SAE of the wrong width (both widths named), a malformed ``mean``, ``num_items`` different
        from the model's, or bad inputs.
    """
    _check_capture_point(model, capture_point)
    _check_sae(model, sae, capture_point)
    mean_vec = _check_mean(model, mean)
    if int(num_items) != int(model.num_items):
        raise ValueError(f"num_items={num_items} does not match model.num_items={model.num_items}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    k = int(k)
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
    if positions not in ("all", "last"):
        raise ValueError(f"positions must be 'all' or 'last', got {positions!r}")
    dev = _resolve_device(model, device)
    # At the last capture point only the most recent position reaches the scores: splicing the others
    # would change nothing but cost an SAE pass per position.
    run_positions = "last" if capture_point == tuple(model.capture_points)[-1] else positions

    results: dict[str, EvalResult] = {}
    ce: dict[str, np.ndarray] = {}
    was_training = model.training
    model.eval()
    try:
        for name, mode in tqdm(FIDELITY_CONDITIONS.items(), desc="fidelity", disable=not progress, leave=False):
            scorer = _SplicedScorer(model, sae, capture_point, mode, mean_vec, run_positions, seqs, tg)
            results[name] = evaluate(
                scorer, seqs, tg, num_items=int(num_items), k=(k,), filter_seen=True,
                batch_size=batch_size, device=dev, max_len=int(model.max_len),
            )
            if scorer.cursor != len(seqs):
                raise RuntimeError(f"scored {scorer.cursor} users, expected {len(seqs)}")
            ce[name] = scorer.ce
    finally:
        if was_training:
            model.train()

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
    table = pd.DataFrame(rows).set_index("condition")
    table.attrs["fidelity"] = FidelityDetails(
        eval_results=results, ce_per_user=ce, capture_point=capture_point, positions=positions, k=k,
    )
    return table


def fidelity_per_user(table: pd.DataFrame | FidelityDetails, metric: str = "NDCG") -> pd.DataFrame:
    """Per-user values behind a :func:`downstream_fidelity` table, for paired comparisons.

    Introduced in chapter 3 (chapters/03_sae.ipynb).

    Parameters
    ----------
    table : pandas.DataFrame or FidelityDetails
        The output of :func:`downstream_fidelity` (with ``attrs["fidelity"]`` intact), or its details.
    metric : {"NDCG", "HR", "MRR", "CE"}, default "NDCG"
        Ranking metrics use the table's cut-off ``k``.

    Returns
    -------
    pandas.DataFrame
        One row per user (input order), one column per condition.

    Raises
    ------
    ValueError
        The table has no per-user data in ``attrs``, or an unknown metric.
    """
    details = table if isinstance(table, FidelityDetails) else getattr(table, "attrs", {}).get("fidelity")
    if not isinstance(details, FidelityDetails):
        raise ValueError(
            "no per-user data: pass the DataFrame returned by downstream_fidelity (attrs['fidelity'] "
            "is lost by some pandas operations) or its FidelityDetails"
        )
    return details.per_user(metric)
