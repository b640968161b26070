"""The write side of latent selection: how much a latent's decoder direction promotes a concept's items.

Introduced in chapter 5 (chapters/05_steering.ipynb); used by
:func:`seqsae_lib.steering.selection.select_latents`.

* **write side (causal, decides the order)**: what adding one unit of the latent's decoder direction
  ``d_j = W_dec[j] / s`` to the state at the last position does to the scores. With ``Delta_j`` the
  resulting change of every item's logit and ``w`` the concept weights::

      promotion_j   = sum_i w_i Delta_ij / sum_i w_i  -  sum_i (1 - w_i) Delta_ij / sum_i (1 - w_i)
      specificity_j = promotion_j / std_i(Delta_ij)

  ``promotion`` (logits per unit of activation) says how much concept items rise *relative to the other
  items*, which is what reorders a top-10 (a uniform rise of every logit changes nothing).
  ``specificity`` divides by how much the direction reshuffles the catalogue as a whole; the reshuffle of
  non-concept items is what costs accuracy, so the specificity is a proxy for "concept share gained per
  NDCG lost". At ``"final"`` the scores are linear in the state and ``Delta_j = d_j @ item_emb.T``
  exactly. At an inner capture point the rest of the network is non-linear: ``Delta_j`` is measured by
  finite differences (step ``alpha``) on ``n_states`` real states, as in
  :func:`seqsae_lib.interpret.features.promoted_items`. Measuring every latent that way costs one forward pass per
  latent, so latents are first *screened* with the mean Jacobian of the remaining network (``d_model``
  finite differences along the coordinate axes, then ``Delta_j ~ J d_j`` for every latent at once) and
  the best ``refine`` candidates are measured exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from seqsae_lib.data.batching import left_pad, trim_left_padding
from seqsae_lib.model.capture import record
from seqsae_lib.sae.autoencoder import SparseAutoencoder
from seqsae_lib.steering.concepts import Concept, check_concept
from seqsae_lib.steering.scoring import check_sae_fits
from seqsae_lib.utils.checks import check_choice, check_float, latent_ids
from seqsae_lib.utils.torchutils import eval_mode

__all__ = ["latent_promotion"]


@torch.no_grad()
def latent_promotion(
    concept: Concept,
    sae: SparseAutoencoder,
    model: nn.Module,
    *,
    capture_point: str | None = None,
    latents: Sequence[int] | None = None,
    sequences: Sequence[Any] | None = None,
    method: Literal["auto", "exact", "linearised", "finite-difference"] = "auto",
    alpha: float = 1.0,
    n_states: int = 256,
    seed: int = 0,
) -> pd.DataFrame:
    """How much each latent's decoder direction promotes the concept's items over the others.

    Introduced in chapter 5 (chapters/05_steering.ipynb); the write side of :func:`select_latents`
    (definitions in the module docstring).

    Parameters
    ----------
    concept : Concept
    sae : SparseAutoencoder
        Read at its own capture point (``sae.capture_point``).
    model : SASRec
    capture_point : str, optional
        Only for an SAE that records no capture point; else it must equal the SAE's.
    latents : int, sequence of int or a table with a ``latent`` column, optional
        Latents to measure (default: all).
    sequences : sequence of array-like, optional
        Needed at inner capture points: the inputs whose states are perturbed (e.g. ``split.train``).
    method : {"auto", "exact", "linearised", "finite-difference"}
        ``"auto"``: exact at ``"final"``, finite differences at inner points. ``"linearised"`` uses the
        mean Jacobian of the rest of the network (``d_model`` forward passes for any number of latents).
    alpha : float, default 1.0
        Finite-difference step in state units (inner points). Choose it near a typical activation.
    n_states, seed
        Sample of states (inner points).

    Returns
    -------
    pandas.DataFrame
        Indexed by latent: ``promotion``, ``specificity`` and ``method`` (the method used: ``"exact"``,
        ``"linearised"`` or ``"finite-difference"``).

    Raises
    ------
    ValueError
        Mismatched widths or catalogue, unknown capture point, missing ``sequences`` at an inner point,
        a bad method or ``alpha``, a latent out of range.
    """
    capture_point = check_sae_fits(model, sae, capture_point)
    check_concept(concept, model.num_items)
    check_choice("method", method, ("auto", "exact", "linearised", "finite-difference"))
    alpha = check_float("alpha", alpha, minimum=0.0, exclusive_minimum=True)
    ids_lat = np.arange(sae.d_sae) if latents is None else np.asarray(latent_ids(latents, sae.d_sae), dtype=np.int64)
    emb = model.item_emb.weight.detach()  # type: ignore[union-attr]
    contrast = torch.from_numpy(concept.contrast()).to(emb.device, emb.dtype)
    dirs = (sae.W_dec.detach()[torch.from_numpy(ids_lat).to(sae.W_dec.device)] / sae.input_scale).to(emb.device, emb.dtype)
    if method == "auto":
        method = "exact" if capture_point == "final" else "finite-difference"
    if method == "exact" and capture_point != "final":
        raise ValueError(f"method='exact' applies at 'final' only (the scores are linear there), not {capture_point!r}")
    if capture_point == "final":
        shifts, method = dirs, "exact"  # linear: the finite difference is exact
    else:
        if sequences is None or len(sequences) == 0:
            raise ValueError(
                f"latent_promotion at the inner capture point {capture_point!r} needs sequences (e.g. split.train)"
            )
        shifts = _final_shifts(model, capture_point, dirs, sequences, method=method, alpha=alpha,
                               n_states=n_states, seed=seed)
    delta = shifts @ emb[1:].T  # (n_latents, num_items): logit change per unit
    promotion = (delta @ contrast[1:]).double().cpu().numpy()
    spread = delta.double().std(dim=1, unbiased=False).cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        specificity = np.where(spread > 0, promotion / spread, 0.0)
    return pd.DataFrame({"promotion": promotion, "specificity": specificity, "method": method},
                        index=pd.Index(ids_lat, name="latent"))


def _final_shifts(
    model: nn.Module, capture_point: str, directions: Tensor, sequences: Sequence[Any], *, method: str,
    alpha: float, n_states: int, seed: int,
) -> Tensor:
    """Mean change of the final state at the last position per unit of each direction (rows), at an inner point.

    The one body to replace by the interpret package's decoder-effects function; :func:`_sample_states` and
    :func:`_mean_final_shift` serve only this function.
    """
    with eval_mode(model):
        batches = _sample_states(model, capture_point, sequences, n_states, seed)
        if method == "linearised":
            eye = torch.eye(directions.shape[1], dtype=directions.dtype, device=directions.device)
            jac = _mean_final_shift(model, capture_point, batches, eye, float(alpha))  # row k = J e_k
            return directions @ jac
        return _mean_final_shift(model, capture_point, batches, directions, float(alpha))


def _sample_states(
    model: nn.Module, capture_point: str, sequences: Sequence[Any], n_states: int, seed: int, batch_size: int = 128
) -> list[tuple[Tensor, Tensor]]:
    """``(ids, hidden)`` batches of recorded states at ``capture_point`` for a seeded sample of sequences."""
    rng = np.random.default_rng(seed)
    n = len(sequences)
    pick = np.sort(rng.choice(n, size=min(int(n_states), n), replace=False))
    chosen = [np.asarray(sequences[i], dtype=np.int64) for i in pick]
    chosen = [s for s in chosen if len(s)]
    if not chosen:
        raise ValueError("the sampled sequences are all empty")
    dev = model.item_emb.weight.device  # type: ignore[union-attr]
    out = []
    for start in range(0, len(chosen), batch_size):
        (ids,) = trim_left_padding(left_pad(chosen[start : start + batch_size], model.max_len))  # type: ignore[arg-type]
        ids = ids.to(dev)
        with record(model, capture_point) as rec:
            model(ids)
        out.append((ids, rec[capture_point]))
    return out


def _mean_final_shift(
    model: nn.Module, capture_point: str, batches: list[tuple[Tensor, Tensor]], directions: Tensor, alpha: float
) -> Tensor:
    """Mean over states of ``(f(h + alpha d) - f(h)) / alpha`` at the last position, per direction (rows)."""
    total = torch.zeros(directions.shape, dtype=torch.float64, device=directions.device)
    count = 0
    for ids, hidden in batches:
        base = model.forward_from(capture_point, hidden, ids)[:, -1]  # type: ignore[operator]
        for j in range(len(directions)):
            pushed = hidden.clone()
            pushed[:, -1] += alpha * directions[j]
            moved = model.forward_from(capture_point, pushed, ids)[:, -1]  # type: ignore[operator]
            total[j] += ((moved - base).double().sum(0)) / alpha
        count += len(ids)
    return (total / count).to(directions.dtype)
