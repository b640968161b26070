"""The write side of latent selection: how much a latent's decoder direction promotes a concept's items.

Introduced in chapter 5; used by
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
  :func:`seqsae_lib.interpret.effects.promoted_items`. Measuring every latent that way costs one forward pass per
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
from torch import nn

from seqsae_lib.sae import SparseAutoencoder
from seqsae_lib.interpret import latent_item_effects
from seqsae_lib.steering.concepts import Concept, check_concept
from seqsae_lib.steering.scoring import check_sae_fits
from seqsae_lib.utils.checks import latent_ids

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
    effects: np.ndarray | None = None,
) -> pd.DataFrame:
    """How much each latent's decoder direction promotes the concept's items over the others.

    Introduced in chapter 5; the write side of :func:`select_latents`
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
    effects : ndarray of shape (len(latents), num_items), optional
        The latents' item effects computed before by
        :func:`~seqsae_lib.interpret.effects.latent_item_effects` with this ``method`` (not ``"auto"``) and
        the same settings, e.g. once for every latent and reused across concepts (they do not depend on
        the concept); then nothing is measured here.

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
    ids_lat = np.arange(sae.d_sae) if latents is None else np.asarray(latent_ids(latents, sae.d_sae), dtype=np.int64)
    if effects is None:
        effects, method = latent_item_effects(model, sae, ids_lat, capture_point=capture_point, sequences=sequences,
                                              method=method, alpha=alpha, n_states=n_states, seed=seed)
    else:
        effects = np.asarray(effects, dtype=np.float64)
        if effects.shape != (len(ids_lat), int(model.num_items)):
            raise ValueError(f"effects must have shape (n_latents, num_items) = ({len(ids_lat)}, {int(model.num_items)}), "
                             f"got {effects.shape}")
        if method == "auto":
            raise ValueError("with precomputed effects, say how they were measured: method='exact', 'linearised' "
                             "or 'finite-difference'")
    delta = torch.from_numpy(effects).to(torch.float32)  # (n_latents, num_items): logit change per unit
    contrast = torch.from_numpy(concept.contrast()).to(torch.float32)
    promotion = (delta @ contrast[1:]).double().cpu().numpy()
    spread = delta.double().std(dim=1, unbiased=False).cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        specificity = np.where(spread > 0, promotion / spread, 0.0)
    return pd.DataFrame({"promotion": promotion, "specificity": specificity, "method": method},
                        index=pd.Index(ids_lat, name="latent"))
