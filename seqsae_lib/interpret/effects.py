"""What a latent *does*: the change of every item's score when its decoder direction is added to a state.

Introduced in chapter 4; used again in chapter 5
to choose latents to steer with.

A latent's decoder direction is ``d_j = W_dec[j] / input_scale``: what one unit of its activation adds to
the hidden state at the SAE's capture point, in raw units. Its *item effects* are the change of every
item's logit per unit of activation when ``d_j`` is added at the **last** position (the one the model
recommends from; causality means no other position changes). :func:`latent_item_effects` computes them for
any number of latents; :func:`promoted_items` ranks one latent's effects into a table of titles
(:func:`rank_item_effects` ranks effects computed once, at both ends).

Methods
-------
``"exact"`` (at ``"final"``)
    The scores are linear in the final state (``logits = h @ item_emb.T``), so the effect is exact and
    state-independent: ``effects_j = d_j @ item_emb.T``.
``"finite-difference"`` (at an inner capture point)
    The rest of the network (blocks, final LayerNorm) is non-linear, so the effect depends on the state.
    ``n_states`` sequences are drawn (``seed``) from ``sequences``, their states at the capture point are
    recorded, and ``effects_j = (mean over states of f(h + alpha d_j) - f(h)) / alpha) @ item_emb.T``,
    where ``f`` continues the forward pass to the final state (``model.forward_from``). Choose ``alpha``
    near the latent's typical activation when firing (e.g. ``feature_stats(codes)["q90"]``): the
    non-linearity (mostly the final LayerNorm's rescaling) makes the per-unit effect shrink for large
    ``alpha``.
``"linearised"`` (at an inner capture point)
    The same finite differences along the ``d_model`` coordinate axes give the mean Jacobian ``J`` of the
    rest of the network, and ``effects_j = (d_j @ J) @ item_emb.T`` for every latent at once: ``d_model``
    forward passes however many latents, a cheap screen before measuring the best candidates exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from seqsae_lib.data import left_pad, trim_left_padding
from seqsae_lib.data import SequenceData
from seqsae_lib.interpret.positions import item_titles
from seqsae_lib.model import check_model, record
from seqsae_lib.sae import SparseAutoencoder
from seqsae_lib.utils.checks import check_choice, check_float, check_int, latent_ids
from seqsae_lib.utils.torchutils import eval_mode

__all__ = ["EFFECT_METHODS", "latent_item_effects", "promoted_items", "rank_item_effects"]

EFFECT_METHODS: tuple[str, ...] = ("auto", "exact", "linearised", "finite-difference")
"""The ``method`` values of :func:`latent_item_effects` (``"auto"``: exact at ``"final"``, else finite differences)."""

Method = Literal["auto", "exact", "linearised", "finite-difference"]


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
        batch = chosen[start : start + batch_size]
        (ids,) = trim_left_padding(left_pad(batch, model.max_len))  # type: ignore[arg-type]
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


@torch.no_grad()
def latent_item_effects(
    model: nn.Module,
    sae: SparseAutoencoder,
    latents: Any,
    *,
    capture_point: str | None = None,
    sequences: Sequence[Any] | None = None,
    method: Method = "auto",
    alpha: float = 1.0,
    n_states: int = 256,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """Every item's score change per unit of each latent's activation (the methods are in the module docstring).

    Introduced in chapter 4. The one implementation of decoder effects on
    item scores: :func:`promoted_items` ranks one latent's effects, and
    :func:`seqsae_lib.steering.promotion.latent_promotion` turns many latents' effects into a concept's
    promotion and specificity. Compute once and rank both ends with :func:`rank_item_effects` (a feature
    card shows the top and the bottom).

    Parameters
    ----------
    model : SASRec
    sae : SparseAutoencoder
    latents : int, or sequence / 1-d array of int (or a table with a ``latent`` column)
        One latent (the result is one row of effects) or several (one row each, in the order given).
    capture_point : str, optional
        Where the SAE reads the model; default (``None``): the SAE's own (``sae.capture_point``). If given
        it must equal the SAE's own (:meth:`~seqsae_lib.sae.autoencoder.SparseAutoencoder.check_capture_point`).
    sequences : sequence of array-like, optional
        Required at inner capture points: the inputs whose states are perturbed (e.g. ``split.train``).
    method : {"auto", "exact", "linearised", "finite-difference"}, default "auto"
        ``"auto"``: exact at ``"final"``, finite differences at inner points. At ``"final"`` every method
        gives the exact effects (the scores are linear there) and reports ``"exact"``; ``"exact"`` at an
        inner point is refused.
    alpha : float, default 1.0
        Finite-difference step in units of activation (inner points).
    n_states : int, default 256
        Number of sequences sampled for the states (inner points).
    seed : int, default 0
        Seed of the sample of sequences (inner points).

    Returns
    -------
    (numpy.ndarray, str)
        float64 effects, item ``i`` at column ``i - 1``: shape ``(num_items,)`` for one latent (an int),
        ``(len(latents), num_items)`` for a sequence; and the method used, ``"exact"``,
        ``"finite-difference"`` or ``"linearised"``. The values are those of a float32 computation in the
        model's dtype.

    Raises
    ------
    TypeError
        Not an SAE, not a SASRec, a latent that is not an int.
    ValueError
        A capture point other than the SAE's, mismatched widths, a latent out of range, a bad ``method``
        or ``alpha``, missing ``sequences`` at an inner capture point.
    UnknownCapturePointError
        A capture point the model does not have.
    """
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
    check_model(model, scores=True)
    point = sae.check_capture_point(capture_point)
    model.hook_point(point)  # type: ignore[operator]  # UnknownCapturePointError listing the valid names
    if sae.d_in != model.d_model:
        raise ValueError(
            f"the SAE reads d_in={sae.d_in} but capture point {point!r} of the model has "
            f"d_model={model.d_model}; was the SAE trained on another model?"
        )
    single = isinstance(latents, (int, np.integer)) and not isinstance(latents, bool)
    ids = latent_ids(latents, sae.d_sae, name="latent" if single else "latents")
    method = check_choice("method", method, EFFECT_METHODS)  # type: ignore[assignment]
    alpha = check_float("alpha", alpha, 0.0, exclusive_minimum=True)
    n_states = check_int("n_states", n_states, minimum=1)
    emb = model.item_emb.weight.detach()  # type: ignore[union-attr]
    w_dec = sae.W_dec.detach()
    rows = torch.tensor(ids, dtype=torch.int64, device=w_dec.device)
    dirs = (w_dec[rows] / sae.input_scale).to(emb.device, emb.dtype)
    if method == "exact" and point != "final":
        raise ValueError(f"method='exact' applies at 'final' only (the scores are linear there), not {point!r}")
    if point == "final":
        shifts, method = dirs, "exact"  # linear: every method is exact
    else:
        if method == "auto":
            method = "finite-difference"
        if sequences is None or len(sequences) == 0:
            raise ValueError(
                f"measuring item effects at the inner capture point {point!r} needs sequences (e.g. split.train)"
            )
        with eval_mode(model):
            batches = _sample_states(model, point, sequences, n_states, seed)
            if method == "linearised":
                eye = torch.eye(emb.shape[1], dtype=emb.dtype, device=emb.device)
                shifts = dirs @ _mean_final_shift(model, point, batches, eye, alpha)  # row k of J = J e_k
            else:
                shifts = _mean_final_shift(model, point, batches, dirs, alpha)
    effects = (shifts @ emb[1:].T).double().cpu().numpy()  # (n_latents, num_items): logit change per unit
    return (effects[0] if single else effects), method


@torch.no_grad()
def promoted_items(
    model: nn.Module,
    sae: SparseAutoencoder,
    latent: int,
    n: int = 10,
    *,
    capture_point: str | None = None,
    seq_data: SequenceData | None = None,
    sequences: Sequence[Any] | None = None,
    alpha: float = 1.0,
    n_states: int = 256,
    seed: int = 0,
    bottom: bool = False,
) -> pd.DataFrame:
    """Which items a latent's decoder direction pushes up (or down) in the model's scores.

    Introduced in chapter 4. The effects are those of
    :func:`latent_item_effects` (exact at ``"final"``, finite differences at inner capture points; see the
    module docstring), ranked by :func:`rank_item_effects`.

    Parameters
    ----------
    model : SASRec
    sae : SparseAutoencoder
    latent : int
    n : int, default 10
    capture_point : str, optional
        Default: the SAE's own (``sae.capture_point``); if given, it must match it.
    seq_data : SequenceData, optional
        Adds titles.
    sequences : sequence of array-like, optional
        Required at inner capture points: the inputs whose states are perturbed (e.g. ``split.train``).
    alpha : float, default 1.0
        Finite-difference step (inner capture points only).
    n_states : int, default 256
    seed : int, default 0
    bottom : bool, default False
        Return the items pushed down most instead.

    Returns
    -------
    pandas.DataFrame
        Columns ``item``, ``title`` (if ``seq_data``), ``score`` (logit change per unit of the latent) and
        ``method``, how the effects were measured: ``"exact"`` (at ``"final"``) or ``"finite-difference"``
        (the same in every row).

    Raises
    ------
    ValueError
        Unknown or mismatched capture point, mismatched widths, missing ``sequences`` at an inner capture
        point, non-positive ``alpha``.
    """
    latent = check_int("latent", latent)
    scores, method = latent_item_effects(model, sae, latent, capture_point=capture_point, sequences=sequences,
                                         alpha=alpha, n_states=n_states, seed=seed)
    return rank_item_effects(scores, method, n, bottom=bottom, seq_data=seq_data, num_items=model.num_items)


def rank_item_effects(
    scores: np.ndarray,
    method: str,
    n: int = 10,
    *,
    bottom: bool = False,
    seq_data: SequenceData | None = None,
    num_items: int | None = None,
) -> pd.DataFrame:
    """The ``n`` items with the largest (or, with ``bottom``, smallest) effect, as :func:`promoted_items` returns them.

    Introduced in chapter 4; ``scores`` and ``method`` come from
    :func:`latent_item_effects` (one latent). Ties are broken by ascending item id.

    Returns
    -------
    pandas.DataFrame
        Columns ``item``, ``title`` (if ``seq_data``), ``score`` and ``method`` (``method`` in every row:
        a column, since ``DataFrame.attrs`` do not survive pandas operations).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if num_items is not None and len(scores) != num_items:
        raise ValueError(f"expected {num_items} item effects, got {len(scores)}")
    order = np.argsort(scores if bottom else -scores, kind="stable")[:n]
    items = order + 1
    frame = pd.DataFrame({"item": items, "score": scores[order]})
    if seq_data is not None:
        if not isinstance(seq_data, SequenceData) or seq_data.num_items != len(scores):
            raise ValueError("seq_data must be the SequenceData the model was trained on (same number of items)")
        frame.insert(1, "title", item_titles(seq_data, items))
    frame["method"] = method
    return frame
