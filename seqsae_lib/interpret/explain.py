"""Why this film? Exact per-feature explanations of a recommendation score.

Introduced in chapter 5, section "Why this film?".

At the final capture point SASRec scores item ``i`` as ``score_i = h . E_i`` (tied head: ``E`` is the item
embedding table). An SAE writes the state as a sum of feature contributions plus a bias and an error term,

    h = sum_j z_j W_dec[j] / s  +  b_dec / s  +  e,        e = h - decode(encode(h)),

so the score splits **exactly** into one part per active latent plus two remainders:

    score_i = sum_j z_j (W_dec[j] . E_i) / s  +  (b_dec . E_i) / s  +  e . E_i.

:func:`explain_final` returns these parts for any items of one user; they sum to the model's score up to
float rounding (computed in float64). A latent with ``z_j = 0`` contributes exactly 0. The error term is
what the SAE does not explain; it is reported, never hidden.

At an inner capture point the rest of the network is non-linear and there is no exact split.
:func:`explain_inner` measures each active latent's **ablation effect** (remove ``z_j W_dec[j] / s`` from
the state at the last position, run the remaining blocks, compare the item's score and rank) and the
cheaper **gradient x activation** estimate ``z_j (W_dec[j] / s) . d score / d h`` (one backward pass), and
:func:`rank_agreement` reports how well the estimate orders latents compared with ablation.

:func:`counterfactual_check` asks whether explanations point at features that matter: removing an item's
top supporting feature should lower that item's rank, more than removing a random active feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from seqsae_lib.data import check_history, check_sequences, left_pad, seen_mask, trim_left_padding
from seqsae_lib.data import SequenceData
from seqsae_lib.model import check_model, record
from seqsae_lib.sae import SparseAutoencoder, check_sae_matches_model
from seqsae_lib.utils.checks import check_int

__all__ = ["Explanation", "explain_final", "explain_top_k", "explain_inner", "rank_agreement",
           "counterfactual_check", "explanations_table"]


@dataclass
class Explanation:
    """One item's score for one user, split into feature contributions, bias and error.

    Introduced in chapter 5.
    """

    item: int
    """Internal item id."""
    title: str
    """Item title ("" without metadata)."""
    score: float
    """The model's score of the item (``h . E_i``)."""
    contributions: pd.DataFrame
    """One row per active latent: ``latent``, ``activation``, ``weight`` (``W_dec[j] . E_i / s``),
    ``contribution`` (their product) and ``label`` if labels were given; sorted by contribution."""
    bias: float
    """``b_dec . E_i / s``."""
    error: float
    """``e . E_i``: the part of the score the SAE does not explain."""

    @property
    def total(self) -> float:
        """Sum of all parts; equals ``score`` up to float rounding."""
        return float(self.contributions["contribution"].sum() + self.bias + self.error)

    def supporting(self, n: int = 3) -> pd.DataFrame:
        """The ``n`` largest positive contributions."""
        c = self.contributions
        return c[c["contribution"] > 0].head(n)

    def opposing(self, n: int = 3) -> pd.DataFrame:
        """The ``n`` most negative contributions."""
        c = self.contributions
        return c[c["contribution"] < 0].sort_values("contribution").head(n)

    def sentence(self, n: int = 3) -> str:
        """E.g. ``"Star Wars: supported by Sci-Fi, 1970s (+1.9), ...; held back by Drama (-0.4)"``."""
        def part(rows: pd.DataFrame) -> str:
            name = rows["label"] if "label" in rows else rows["latent"].map(lambda j: f"latent {j}")
            return ", ".join(f"{lab} [{int(j)}] ({c:+.2f})" for lab, j, c in zip(name, rows["latent"], rows["contribution"]))
        sup, opp = self.supporting(n), self.opposing(n)
        text = f"{self.title or f'item {self.item}'}: supported by {part(sup) or 'nothing'}"
        if len(opp):
            text += f"; held back by {part(opp)}"
        return text + f" (bias {self.bias:+.2f}, SAE error {self.error:+.2f}, score {self.score:.2f})"


def _check_sae(model: nn.Module, sae: SparseAutoencoder, capture_point: str | None) -> str:
    """Check the model and the SAE; return the capture point (the SAE's own, which ``capture_point`` must match)."""
    check_model(model, scores=True)
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
    point = sae.check_capture_point(capture_point)
    if sae.config.d_in != int(model.d_model):  # type: ignore[arg-type]
        raise ValueError(f"the SAE reads {sae.config.d_in}-dim states, the model's are {model.d_model}-dim")
    check_sae_matches_model(sae, model)  # same width, other weights: refused when the SAE records its SASRec
    return point


def _check_items(items: Any, num_items: int) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(items))
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"items must be integer item ids, got {items!r}")
    bad = arr[(arr < 1) | (arr > num_items)]
    if len(bad):
        raise KeyError(f"item id(s) {bad.tolist()} not in the catalogue: ids run from 1 to {num_items}")
    return arr.astype(np.int64)


def _history(sequence: Any, model: nn.Module) -> np.ndarray:
    """One user's history, checked (:func:`~seqsae_lib.data.histories.check_history`) against the model's catalogue."""
    return check_history(sequence, num_items=int(model.num_items), what="sequence")  # type: ignore[arg-type]


def _ids(seq: np.ndarray, model: nn.Module) -> Tensor:
    (ids,) = trim_left_padding(left_pad([seq], int(model.max_len)))  # type: ignore[arg-type]
    return ids


@torch.no_grad()
def explain_final(
    model: nn.Module,
    sae: SparseAutoencoder,
    sequence: Any,
    items: Sequence[int] | np.ndarray,
    *,
    seq_data: SequenceData | None = None,
    labels: pd.DataFrame | None = None,
    state: Tensor | None = None,
) -> list[Explanation]:
    """Exact decomposition of the scores of ``items`` for one user, at the final capture point.

    Introduced in chapter 5.

    Parameters
    ----------
    model : SASRec
    sae : SparseAutoencoder
        Trained at ``"final"`` (an SAE that records another capture point is refused).
    sequence : array-like of int
        The user's history (internal ids), e.g. ``split.test_inputs[u]``.
    items : sequence of int
        Internal item ids to explain.
    seq_data : SequenceData, optional
        For titles.
    labels : DataFrame, optional
        :func:`~seqsae_lib.interpret.labels.auto_label` output, adds a ``label`` column.
    state : Tensor of shape (d,), optional
        The user's final state at the last position, if already computed (skips the forward pass).

    Returns
    -------
    list of Explanation
        One per item, in the order given.

    Raises
    ------
    KeyError
        Item ids outside the catalogue.
    ValueError, TypeError
        An SAE of another width or capture point; a bad history: empty, non-integer ids (``5.7``, ``"5"``)
        or ids outside ``1..num_items`` (``0`` is padding), naming the position and the value.
    SAEMetadataMismatchError
        An SAE whose metadata records another SASRec's weights hash
        (:func:`~seqsae_lib.sae.io.check_sae_matches_model`).
    """
    _check_sae(model, sae, "final")
    seq = _history(sequence, model)
    item_ids = _check_items(items, int(model.num_items))  # type: ignore[arg-type]
    if state is None:
        state = model.last_hidden(_ids(seq, model))[0]  # type: ignore[operator]
    h = state.detach().to(torch.float64)
    z = sae.encode(state.detach().reshape(1, -1))[0].to(torch.float64)
    s = float(sae.input_scale)
    w_dec = sae.W_dec.detach().to(torch.float64) / s
    b_dec = sae.b_dec.detach().to(torch.float64) / s
    error = h - (z @ w_dec + b_dec)
    emb = model.item_emb.weight.detach()[torch.from_numpy(item_ids)].to(torch.float64)  # type: ignore[union-attr]
    active = torch.nonzero(z > 0).flatten()
    weights = w_dec[active] @ emb.T  # (n_active, n_items)
    contrib = z[active, None] * weights
    scores = (h @ emb.T).numpy()
    bias, err = (b_dec @ emb.T).numpy(), (error @ emb.T).numpy()
    out = []
    for col, item in enumerate(item_ids):
        frame = pd.DataFrame({"latent": active.numpy(), "activation": z[active].numpy(),
                              "weight": weights[:, col].numpy(), "contribution": contrib[:, col].numpy()})
        if labels is not None:
            frame["label"] = labels["label"].reindex(frame["latent"]).to_numpy()
        frame = frame.sort_values("contribution", ascending=False, kind="stable").reset_index(drop=True)
        title = str(seq_data.items.loc[int(item), "title"]) if seq_data is not None else ""
        out.append(Explanation(item=int(item), title=title, score=float(scores[col]), contributions=frame,
                               bias=float(bias[col]), error=float(err[col])))
    return out


def _top_k(model: nn.Module, seq: np.ndarray, k: int, state: Tensor | None = None) -> tuple[np.ndarray, Tensor]:
    if state is None:
        state = model.last_hidden(_ids(seq, model))[0]  # type: ignore[operator]
    scores = model.score(state.reshape(1, -1))[0]  # type: ignore[operator]
    scores = scores.masked_fill(seen_mask([seq], int(model.num_items))[0], float("-inf"))  # type: ignore[arg-type]
    return torch.topk(scores, k).indices.numpy(), state


@torch.no_grad()
def explain_top_k(
    model: nn.Module,
    sae: SparseAutoencoder,
    sequence: Any,
    k: int = 10,
    *,
    seq_data: SequenceData | None = None,
    labels: pd.DataFrame | None = None,
) -> list[Explanation]:
    """Explanations of a user's top-``k`` (seen items filtered), best first.

    Introduced in chapter 5.

    Raises
    ------
    ValueError, TypeError
        As :func:`explain_final`: a bad history names the position and the value.
    """
    _check_sae(model, sae, "final")
    k = check_int("k", k, minimum=1)
    seq = _history(sequence, model)
    items, state = _top_k(model, seq, k)
    return explain_final(model, sae, seq, items, seq_data=seq_data, labels=labels, state=state)


def explanations_table(explanations: Sequence[Explanation], n: int = 3) -> pd.DataFrame:
    """A compact table of a list: per item, its score and its strongest supporting and opposing features.

    Introduced in chapter 5.
    """
    def names(rows: pd.DataFrame) -> str:
        lab = rows["label"] if "label" in rows else pd.Series("latent", index=rows.index)
        return "; ".join(f"{x} [{int(j)}] ({c:+.2f})" for x, j, c in zip(lab, rows["latent"], rows["contribution"]))

    return pd.DataFrame([{"rank": r + 1, "title": e.title or str(e.item), "score": e.score,
                          "supported by": names(e.supporting(n)), "held back by": names(e.opposing(n)),
                          "bias + error": e.bias + e.error} for r, e in enumerate(explanations)]).set_index("rank")


def explain_inner(
    model: nn.Module,
    sae: SparseAutoencoder,
    sequence: Any,
    item: int,
    *,
    capture_point: str | None = None,
    labels: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Effect of each active latent at an inner capture point on one item's score and rank.

    Introduced in chapter 5.

    For every latent active at the last position: ``ablation`` = score minus the score with the latent's
    reconstruction ``z_j W_dec[j] / s`` removed from the state (remaining blocks re-run), ``rank_change``
    = the item's rank after removal minus before (positive: it fell), and ``grad_x_act`` =
    ``z_j (W_dec[j] / s) . d score / d h``, the first-order estimate of ``ablation``.

    Parameters
    ----------
    model : SASRec
    sae : SparseAutoencoder
    sequence : array-like of int
        The user's history (internal ids).
    item : int
        Internal item id to explain.
    capture_point : str, optional
        Where the SAE reads the model; default: the SAE's own (``sae.capture_point``). If given, it must
        match the SAE's own (an SAE that records none uses it as given).
    labels : DataFrame, optional
        :func:`~seqsae_lib.interpret.labels.auto_label` output, adds a ``label`` column.

    Returns
    -------
    pandas.DataFrame
        Columns ``latent``, ``activation``, ``ablation``, ``grad_x_act``, ``rank_before``, ``rank_after``,
        ``rank_change`` (and ``label``), sorted by ``ablation`` (descending).

    Raises
    ------
    KeyError
        An item outside the catalogue. :class:`~seqsae_lib.model.sasrec.UnknownCapturePointError` for an unknown
        capture point.
    ValueError, TypeError
        A capture point other than the SAE's; as :func:`explain_final`: a bad history names the position
        and the value.
    """
    capture_point = _check_sae(model, sae, capture_point)
    seq = _history(sequence, model)
    (item,) = _check_items([item], int(model.num_items))  # type: ignore[arg-type]
    model.hook_point(capture_point)  # type: ignore[operator]
    ids = _ids(seq, model)
    seen = seen_mask([seq], int(model.num_items))  # type: ignore[arg-type]
    with torch.no_grad(), record(model, capture_point) as rec:
        model(ids)
    states = rec[capture_point]  # (1, L, d)
    last = states[0, -1]
    with torch.no_grad():
        z = sae.encode(last.reshape(1, -1))[0]
    active = torch.nonzero(z > 0).flatten()
    directions = sae.W_dec.detach()[active] * z[active, None] / float(sae.input_scale)  # (n_active, d)

    h = last.clone().requires_grad_(True)
    full = torch.cat([states[0, :-1], h[None]], dim=0)[None]
    score = model.score(model.forward_from(capture_point, full, ids)[:, -1])[0, item]  # type: ignore[operator]
    (grad,) = torch.autograd.grad(score, h)
    with torch.no_grad():
        batch = states.repeat(len(active) + 1, 1, 1)
        batch[1:, -1] -= directions
        out = model.score(model.forward_from(capture_point, batch, ids.repeat(len(active) + 1, 1))[:, -1])  # type: ignore[operator]
        out = out.masked_fill(seen, float("-inf"))
        ranks = (out > out[:, item : item + 1]).sum(dim=1) + 1
    frame = pd.DataFrame({
        "latent": active.numpy(), "activation": z[active].numpy(),
        "ablation": (out[0, item] - out[1:, item]).numpy(),
        "grad_x_act": (directions @ grad).numpy(),
        "rank_before": int(ranks[0]), "rank_after": ranks[1:].numpy(),
    })
    frame["rank_change"] = frame["rank_after"] - frame["rank_before"]
    if labels is not None:
        frame["label"] = labels["label"].reindex(frame["latent"]).to_numpy()
    return frame.sort_values("ablation", ascending=False).reset_index(drop=True)


def rank_agreement(frame: pd.DataFrame) -> float:
    """Spearman correlation between ``grad_x_act`` and ``ablation`` in an :func:`explain_inner` table.

    Introduced in chapter 5. 1 means the cheap estimate orders the latents
    exactly as the true ablation does; NaN with fewer than 2 latents.
    """
    if len(frame) < 2:
        return float("nan")
    return float(frame["grad_x_act"].rank().corr(frame["ablation"].rank()))


@torch.no_grad()
def counterfactual_check(
    model: nn.Module,
    sae: SparseAutoencoder,
    inputs: Sequence[Any],
    k: int = 10,
    *,
    seed: int = 0,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Remove an item's top supporting feature (or a random active one): does the item's rank drop?

    Introduced in chapter 5. For every user in ``inputs`` and each of their
    top-``k`` items (final capture point, seen items filtered): the item's rank after removing
    ``z_j W_dec[j] / s`` from the final state for ``j`` = the latent with the largest contribution to
    that item's score (``"top supporting"``) and for ``j`` = a uniformly drawn active latent
    (``"random active"``, ``seed``).

    Returns
    -------
    pandas.DataFrame
        One row per (user, item, removal): ``user``, ``rank_before``, ``removal``, ``latent``,
        ``contribution`` (of that latent to the item's score), ``score_drop`` (equal to it: removing a
        latent removes exactly its part of the score), ``rank_after``, ``rank_change`` (positive: the item
        fell; other items' scores move too, so a removed positive part does not always cost rank) and
        ``dropped`` (``rank_change > 0``).
    """
    _check_sae(model, sae, "final")
    k = check_int("k", k, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seqs = check_sequences(inputs, num_items=int(model.num_items), what="inputs", allow_empty=False)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(int(seed))
    s = float(sae.input_scale)
    emb = model.item_emb.weight.detach()  # type: ignore[union-attr]
    rows = []
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start : start + batch_size]
        (ids,) = trim_left_padding(left_pad(chunk, int(model.max_len)))  # type: ignore[arg-type]
        h = model.last_hidden(ids)  # type: ignore[operator]
        seen = seen_mask(chunk, int(model.num_items))  # type: ignore[arg-type]
        scores = model.score(h).masked_fill(seen, float("-inf"))  # type: ignore[operator]
        top = torch.topk(scores, k).indices  # (B, k)
        z = sae.encode(h)  # (B, m)
        # contribution of latent j to item i: z_j * W_dec[j] . E_i / s, for every user's top items
        contrib = z[:, None, :] * ((emb[top] @ sae.W_dec.detach().T) / s)  # (B, k, m)
        best = contrib.argmax(dim=-1)  # (B, k)
        rand = torch.empty_like(best)
        for b in range(len(chunk)):
            act = torch.nonzero(z[b] > 0).flatten()
            rand[b] = act[torch.randint(len(act), (k,), generator=gen)]
        own_before = scores.gather(1, top)  # (B, k)
        for name, latent in (("top supporting", best), ("random active", rand)):
            removed = h[:, None, :] - z.gather(1, latent)[..., None] * sae.W_dec.detach()[latent] / s  # (B, k, d)
            new = model.score(removed).masked_fill(seen[:, None, :], float("-inf"))  # type: ignore[operator]
            own = new.gather(2, top[..., None])  # (B, k, 1)
            rank_after = (new > own).sum(dim=-1) + 1
            part = contrib.gather(2, latent[..., None])[..., 0]
            drop = own_before - own[..., 0]
            for b in range(len(chunk)):
                for r in range(k):
                    rows.append((start + b, r + 1, name, int(latent[b, r]), float(part[b, r]), float(drop[b, r]),
                                 int(rank_after[b, r])))
    frame = pd.DataFrame(rows, columns=["user", "rank_before", "removal", "latent", "contribution", "score_drop",
                                       "rank_after"])
    frame["rank_change"] = frame["rank_after"] - frame["rank_before"]
    frame["dropped"] = frame["rank_change"] > 0
    return frame
