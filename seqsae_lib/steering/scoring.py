"""Running steered models: next-item scores under a steering, by hooks or from cached states.

Introduced in chapter 5.

* :func:`steer` (context manager, built on :func:`seqsae_lib.model.capture.intervene`) steers every forward
  pass inside the ``with`` block; :func:`steered_scores` is a one-liner around it;
* :class:`SteeringCache` (and the two functions :func:`cached_last_state` / :func:`scores_from_state`)
  is the fast path for widgets and strength grids: the state at the capture point is computed once, and
  each new steering costs, at ``"final"``, an edit of the ``(B, d)`` last states and one matrix product
  with the item table (no transformer re-run); at an inner point, the remaining blocks on the cached,
  left-trimmed window via :meth:`~seqsae_lib.model.sasrec.SASRec.forward_from`, or, for an edit of the last
  position only, just the last position's row of each remaining block (the others cannot change: the
  attention is causal), from the keys and values of the earlier positions, computed once.

A steering is a :class:`~seqsae_lib.steering.latent_steering.Steering` (SAE latents) or a
:class:`~seqsae_lib.steering.vector_steering.VectorSteering`; :func:`check_sae_fits` is the check that an SAE
can steer a model (its capture point exists there, with the SAE's width).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqsae_lib.data import trim_left_padding
from seqsae_lib.model import CausalSelfAttention, TransformerBlock, check_model, intervene, record
from seqsae_lib.sae import SparseAutoencoder
from seqsae_lib.steering.latent_steering import Steering
from seqsae_lib.steering.vector_steering import StateSteering, VectorSteering
from seqsae_lib.utils.torchutils import eval_mode

__all__ = ["check_sae_fits", "steer", "steered_scores", "SteeringCache", "cached_last_state", "scores_from_state"]


def check_sae_fits(model: Any, sae: Any, capture_point: str | None = None) -> str:
    """The capture point where ``sae`` reads ``model``, after checking that it can.

    Introduced in chapter 5. The capture point is the SAE's own
    (:meth:`~seqsae_lib.sae.autoencoder.SparseAutoencoder.check_capture_point`; ``capture_point`` is only
    needed for an SAE that does not record one, and must match otherwise).

    Raises
    ------
    TypeError
        Not an SAE, or not a SASRec (:func:`~seqsae_lib.model.capture.check_model`).
    ValueError, UnknownCapturePointError
        A capture point other than the SAE's, one the model does not have, or a width mismatch.
    """
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
    check_model(model, scores=True)
    point = sae.check_capture_point(capture_point)
    model.hook_point(point)  # UnknownCapturePointError listing the valid names
    if sae.d_in != model.d_model:
        raise ValueError(
            f"the SAE reads d_in={sae.d_in} but capture point {point!r} of the model has "
            f"d_model={model.d_model}; was the SAE trained on another model?"
        )
    return point


def _check_against_model(model: nn.Module, steering: StateSteering) -> None:
    """Capture point exists in the model and the steering's width matches the model's."""
    if not isinstance(steering, (Steering, VectorSteering)):
        raise TypeError(f"expected a Steering or VectorSteering, got {type(steering).__name__}")
    model.hook_point(steering.capture_point)  # UnknownCapturePointError listing the valid names
    d_model = int(model.d_model)  # type: ignore[arg-type]
    if steering.d_in != d_model:
        what = "the SAE reads" if isinstance(steering, Steering) else "the steering vector has"
        raise ValueError(
            f"{what} width d_in={steering.d_in}, but capture point {steering.capture_point!r} of the model "
            f"has width d_model={d_model}; was it built for another model?"
        )


@contextmanager
def steer(model: nn.Module, steering: StateSteering | None) -> Iterator[None]:
    """Steer every forward pass of ``model`` run inside the ``with`` block.

    Introduced in chapter 5. Built on :func:`seqsae_lib.model.capture.intervene`
    at ``steering.capture_point`` with ``steering.positions``; it also applies to
    :meth:`~seqsae_lib.model.sasrec.SASRec.forward_from` started at that capture point. The SAE is put in eval
    mode inside the block (its mode is restored). ``None`` steers nothing.

    Raises
    ------
    UnknownCapturePointError
        The capture point does not exist in the model (the message lists the valid ones).
    ValueError
        The SAE (or vector) width differs from the model's.

    Examples
    --------
    >>> more_comedy = Steering.add(sae, [12, 40], 3.0)
    >>> with steer(model, more_comedy):
    ...     scores = model.scores(input_ids)
    """
    if steering is None:
        yield
        return
    check_model(model, scores=True)
    _check_against_model(model, steering)
    sae = steering.sae if isinstance(steering, Steering) else None
    with eval_mode(sae if sae is not None and sae.training else None):
        with intervene(model, steering.capture_point, steering.apply, positions=steering.positions):  # type: ignore[arg-type]
            yield


@torch.no_grad()
def steered_scores(model: nn.Module, steering: StateSteering | None, input_ids: Tensor) -> Tensor:
    """Next-item scores ``(B, num_items + 1)`` of the steered model (the hook path).

    Introduced in chapter 5. The model runs in eval mode without gradients
    (its mode is restored). ``steering=None`` gives the unsteered scores.
    """
    check_model(model, scores=True)
    with eval_mode(model), steer(model, steering):
        return model.scores(input_ids)  # type: ignore[operator]


class SteeringCache:
    """The fast path: compute the state at a capture point once, then score many steerings cheaply.

    Introduced in chapter 5, for the interactive widget and for strength
    grids (:func:`seqsae_lib.steering.evaluation.evaluate_steering`).

    * At ``"final"`` only the ``(B, d)`` last states are kept; a steering costs an edit of those rows
      and one product with the item table: ``scores = model.score(steering.apply(h_last))``. Every
      position of the final state except the last is irrelevant to the scores, so ``positions="last"``
      and ``"all"`` give the same result here.
    * At an inner capture point the ``(B, L, d)`` states of the left-trimmed window are kept; a steering
      edits them (last position or all non-padding positions) and the remaining blocks run from there
      with :meth:`~seqsae_lib.model.sasrec.SASRec.forward_from`. An edit of the last position only
      (``positions="last"``) changes nothing at the earlier positions (causal attention), so only the
      last position's row of each remaining block is recomputed, attending to the earlier positions' keys
      and values, which are computed once (on first use) and kept: about ``L`` times less work for a
      window of ``L`` positions (for the blocks of :class:`~seqsae_lib.model.layers.TransformerBlock`, with
      no hook on the capture point or a later one; otherwise the full re-run).

    The results equal the hook path (:func:`steered_scores`) up to float rounding. Do not use a cache
    inside an active :func:`steer` block on the same model (the steering would apply twice at inner
    points).

    Parameters
    ----------
    model : SASRec
    input_ids : Tensor of shape (B, L)
        Left-padded ids; columns that are padding for every row are trimmed.
    capture_point : str

    Raises
    ------
    UnknownCapturePointError
        Unknown capture point (the message lists the valid ones).
    ValueError, TypeError
        Bad ``input_ids`` (see :class:`~seqsae_lib.model.sasrec.SASRec`).
    """

    @torch.no_grad()
    def __init__(self, model: nn.Module, input_ids: Tensor, capture_point: str) -> None:
        check_model(model, scores=True)
        model.hook_point(capture_point)  # validates the name
        if not isinstance(input_ids, Tensor) or input_ids.ndim != 2:
            raise ValueError(
                "input_ids must be a (batch, length) integer tensor, got "
                + (f"shape {tuple(input_ids.shape)}" if isinstance(input_ids, Tensor) else type(input_ids).__name__)
            )
        self.model = model
        self.capture_point = capture_point
        dev = model.item_emb.weight.device  # type: ignore[union-attr]
        (ids,) = trim_left_padding(input_ids.to(dev))
        self.input_ids = ids
        self.state = cached_last_state(model, ids, capture_point)
        self._base: Tensor | None = self.state if capture_point == "final" else None
        self._prefix: _LastPosition | None | bool = None  # built on first use; False: not applicable

    @property
    def d_model(self) -> int:
        """Width of the cached states."""
        return int(self.state.shape[-1])

    @torch.no_grad()
    def final_states(self, steering: StateSteering | None = None) -> Tensor:
        """``(B, d)`` final states at the last position under ``steering`` (``None``: unsteered).

        Introduced in chapter 5.
        """
        if steering is None or steering.is_identity:
            if steering is not None:
                _check_against_model(self.model, steering)
                self._check_point(steering)
            if self._base is None:
                self._base = _final_last(self.model, self.capture_point, self.state, self.input_ids)
            return self._base
        _check_against_model(self.model, steering)
        self._check_point(steering)
        if self.capture_point != "final" and steering.positions == "last":
            if self._prefix is None:
                self._prefix = _LastPosition.build(self.model, self.capture_point, self.state, self.input_ids)
            if self._prefix and not self._prefix.hooked():  # type: ignore[union-attr]
                with eval_mode(self.model if self.model.training else None):
                    return self._prefix(steering.apply(self.state[:, -1]))  # type: ignore[operator]
        return _final_last(self.model, self.capture_point, self.state, self.input_ids, steering)

    def scores(self, steering: StateSteering | None = None) -> Tensor:
        """``(B, num_items + 1)`` scores under ``steering``; column 0 is ``-inf``.

        Introduced in chapter 5.
        """
        with torch.no_grad():
            return self.model.score(self.final_states(steering))  # type: ignore[operator]

    def _check_point(self, steering: StateSteering) -> None:
        if steering.capture_point != self.capture_point:
            raise ValueError(
                f"this cache holds states at {self.capture_point!r} but the steering is at "
                f"{steering.capture_point!r}; build a SteeringCache at {steering.capture_point!r}"
            )

    def __repr__(self) -> str:
        return f"SteeringCache({self.capture_point!r}, batch={self.input_ids.shape[0]}, length={self.input_ids.shape[1]})"


class _LastPosition:
    """The remaining blocks at the last position only, when nothing else of the window changed."""

    def __init__(self, model: nn.Module, blocks: list[TransformerBlock], kv: list[tuple[Tensor, Tensor]],
                 mask: Tensor, names: list[str]) -> None:
        self.model, self.blocks, self.kv, self.mask, self.names = model, blocks, kv, mask, names

    @classmethod
    @torch.no_grad()
    def build(cls, model: nn.Module, capture_point: str, state: Tensor, input_ids: Tensor) -> _LastPosition | bool:
        """Keys and values of every remaining block on the unsteered window; ``False`` if not applicable."""
        names = list(model.capture_points)  # type: ignore[arg-type]
        stage = names.index(capture_point)
        blocks = list(model.blocks)[stage:]  # type: ignore[arg-type]
        later = names[stage + 1 :]
        plain = all(type(b) is TransformerBlock and type(b.attn) is CausalSelfAttention for b in blocks)
        if not plain:
            return False
        inner = later[: max(len(blocks) - 1, 0)]  # the inputs of the blocks after the first
        with eval_mode(model):
            inputs = [state]
            if inner:
                with record(model, inner) as rec:
                    model.forward_from(capture_point, state, input_ids)  # type: ignore[operator]
                inputs += [rec[n] for n in inner]
            kv = []
            for block, x in zip(blocks, inputs):
                b, length, d = x.shape
                att = block.attn
                qkv = att.qkv(block.ln_attn(x)).view(b, length, 3, att.n_heads, att.d_head).permute(2, 0, 3, 1, 4)
                kv.append((qkv[1].contiguous(), qkv[2].contiguous()))
        allowed = input_ids != 0
        allowed[:, -1] = True
        mask = torch.zeros(allowed.shape, dtype=state.dtype, device=state.device)
        mask.masked_fill_(~allowed, float("-inf"))
        return cls(model, blocks, kv, mask[:, None, None, :], names[stage:])

    def hooked(self) -> bool:
        """Whether a hook sits on the capture point or a later one (then the full re-run must be used)."""
        return any(self.model.hook_point(n)._forward_hooks or self.model.hook_point(n)._forward_pre_hooks
                   for n in self.names)

    def __call__(self, last: Tensor) -> Tensor:
        """``(B, d)`` final states from the ``(B, d)`` edited states at the capture point's last position."""
        x = last
        for block, (keys, values) in zip(self.blocks, self.kv):
            att = block.attn
            b, d = x.shape
            q, k, v = att.qkv(block.ln_attn(x)).view(b, 3, att.n_heads, att.d_head).unbind(1)
            keys, values = keys.clone(), values.clone()
            keys[:, :, -1], values[:, :, -1] = k, v
            y = F.scaled_dot_product_attention(q[:, :, None], keys, values, attn_mask=self.mask)
            x = x + att.out(y.reshape(b, d))
            x = x + block.ffn(block.ln_ffn(x))
        return self.model.final_ln(x)  # type: ignore[operator]


def _final_last(
    model: nn.Module, capture_point: str, state: Tensor, input_ids: Tensor, steering: StateSteering | None = None
) -> Tensor:
    """Final states at the last position from a cached state, optionally steered."""
    with eval_mode(model if model.training else None):
        if capture_point == "final":
            return state if steering is None else steering.apply(state)
        hidden = state
        if steering is not None:
            if steering.positions == "last":
                hidden = state.clone()
                hidden[:, -1] = steering.apply(state[:, -1])
            else:
                hidden = steering.apply(state)
        return model.forward_from(capture_point, hidden, input_ids)[:, -1]  # type: ignore[operator]


@torch.no_grad()
def cached_last_state(model: nn.Module, input_ids: Tensor, capture_point: str) -> Tensor:
    """The state a steering needs, computed once: the function form of :class:`SteeringCache`.

    Introduced in chapter 5.

    Returns
    -------
    Tensor
        At ``"final"``: ``(B, d)``, the final state at the last position (all the scores need). At an inner
        capture point: ``(B, L, d)``, the state at every position of ``input_ids`` (``forward_from`` needs
        them all). Trim common left padding first (:func:`~seqsae_lib.data.batching.trim_left_padding`) to keep
        ``L`` small; pass the same ``input_ids`` to :func:`scores_from_state`.
    """
    check_model(model, scores=True)
    model.hook_point(capture_point)
    with eval_mode(model):
        if capture_point == "final":
            return model.last_hidden(input_ids)  # type: ignore[operator]
        with record(model, capture_point) as rec:
            model(input_ids)
        return rec[capture_point]


@torch.no_grad()
def scores_from_state(
    model: nn.Module, capture_point: str, state: Tensor, input_ids: Tensor, steering: StateSteering | None = None
) -> Tensor:
    """Scores ``(B, num_items + 1)`` from a :func:`cached_last_state` result, optionally steered.

    Introduced in chapter 5. At ``"final"`` this is
    ``model.score(steering.apply(state))``: a few small matrix products, no transformer pass.

    Raises
    ------
    UnknownCapturePointError, ValueError
        Unknown capture point; a steering at another capture point or of another width; a ``state`` of
        the wrong shape.
    """
    check_model(model, scores=True)
    model.hook_point(capture_point)
    d = int(model.d_model)  # type: ignore[arg-type]
    expected = (input_ids.shape[0], d) if capture_point == "final" else (*input_ids.shape, d)
    if not isinstance(state, Tensor) or tuple(state.shape) != tuple(expected):
        shape = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
        raise ValueError(f"state at {capture_point!r} must have shape {tuple(expected)} for these input_ids, got {shape}")
    if steering is not None:
        _check_against_model(model, steering)
        if steering.capture_point != capture_point:
            raise ValueError(
                f"the state is at {capture_point!r} but the steering is at {steering.capture_point!r}"
            )
    return model.score(_final_last(model, capture_point, state, input_ids, steering))  # type: ignore[operator]
