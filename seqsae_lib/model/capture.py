"""Reading and replacing the residual stream at named capture points.

Introduced in chapter 3.

This is the library's one mechanism for looking inside :class:`SASRec`:

* :func:`record` stores the state flowing through capture points during
  forward passes run inside a ``with`` block;
* :func:`intervene` replaces that state with ``fn(state)`` and lets the
  forward pass continue from the replacement.

Both register PyTorch forward hooks on the model's identity
:class:`~seqsae_lib.model.sasrec.HookPoint` modules and always remove them when the
``with`` block exits, including on exceptions. Hooks only use objects bound
when the context was entered (no global state).

Order at one capture point: interventions always run before recordings,
whatever the nesting of the ``with`` blocks, so a recording shows the state
that actually flows downstream. Several interventions at the same point are
applied innermost (most recently entered) first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from seqsae_lib.utils.checks import check_choice

__all__ = ["HookableModel", "Recording", "check_model", "record", "intervene"]


@runtime_checkable
class HookableModel(Protocol):
    """Anything exposing named capture points (e.g. :class:`~seqsae_lib.model.sasrec.SASRec`).

    Introduced in chapter 3.
    """

    @property
    def capture_points(self) -> tuple[str, ...]:
        """Capture point names in forward order."""
        ...

    def hook_point(self, name: str) -> nn.Module:
        """The identity module at ``name``; raises ``KeyError`` listing valid names."""
        ...


def check_model(model: Any, *, scores: bool = False, what: str = "model") -> nn.Module:
    """Return ``model`` if it is a torch module with named capture points (a :class:`HookableModel`).

    Introduced in chapter 3. The library's one model check: everything that hooks
    into a recommender calls it instead of testing attributes one by one.

    Parameters
    ----------
    scores : bool, default False
        Also require a tied item table (``item_emb``) and a ``d_model`` width, as SASRec has: needed by
        anything that turns hidden states into item scores.

    Raises
    ------
    TypeError
        Naming what is missing.
    """
    if not isinstance(model, nn.Module) or not isinstance(model, HookableModel):
        raise TypeError(f"{what} must be a recommender with named capture points (e.g. a SASRec: a torch module "
                        f"with capture_points and hook_point), got {type(model).__name__}")
    if scores and (not isinstance(getattr(model, "item_emb", None), nn.Embedding)
                   or not isinstance(getattr(model, "d_model", None), int)):
        raise TypeError(f"{what} must score items from its hidden states (a SASRec: item_emb and d_model), "
                        f"got {type(model).__name__}")
    return model


class Recording(Mapping[str, Tensor]):
    """States recorded by :func:`record`, indexed by capture point name.

    Introduced in chapter 3.

    ``rec[name]`` is the ``(B, L, d)`` state of the most recent forward pass
    (``(B, d)`` with ``last_only=True``); with ``accumulate=True`` it is the
    concatenation over all forward passes along the batch dimension.

    Parameters
    ----------
    names : tuple of str
        Capture points being recorded.
    last_only : bool
        Whether only the last position was stored.
    accumulate : bool
        Whether successive forward passes are kept (else each overwrites).
    """

    def __init__(self, names: tuple[str, ...], *, last_only: bool, accumulate: bool) -> None:
        self.names = names
        self.last_only = last_only
        self.accumulate = accumulate
        self._store: dict[str, list[Tensor]] = {n: [] for n in names}

    def _add(self, name: str, value: Tensor) -> None:
        if self.accumulate:
            self._store[name].append(value)
        else:
            self._store[name] = [value]

    def __getitem__(self, name: str) -> Tensor:
        if name not in self._store:
            raise KeyError(
                f"capture point {name!r} was not recorded; this recording holds {list(self.names)}"
            )
        values = self._store[name]
        if not values:
            raise KeyError(
                f"nothing was recorded at {name!r}: run a forward pass through the model "
                "inside the `with record(...)` block (forward_from skips earlier capture points)"
            )
        if len(values) == 1:
            return values[0]
        return torch.cat(values, dim=0)

    def __iter__(self) -> Iterator[str]:
        return (n for n in self.names if self._store[n])

    def __len__(self) -> int:
        return sum(1 for n in self.names if self._store[n])

    def num_passes(self, name: str) -> int:
        """Number of forward passes stored for ``name``.

        Introduced in chapter 3.
        """
        if name not in self._store:
            raise KeyError(f"capture point {name!r} was not recorded; this recording holds {list(self.names)}")
        return len(self._store[name])

    def clear(self) -> None:
        """Forget everything recorded so far (hooks stay attached).

        Introduced in chapter 3.
        """
        self._store = {n: [] for n in self.names}

    def __repr__(self) -> str:
        shapes = {n: tuple(self[n].shape) for n in self}
        return f"Recording({shapes}, last_only={self.last_only}, accumulate={self.accumulate})"


def _resolve_names(model: HookableModel, names: str | Sequence[str] | None) -> tuple[str, ...]:
    if names is None:
        return tuple(model.capture_points)
    if isinstance(names, str):
        names = (names,)
    resolved = tuple(names)
    if not resolved:
        raise ValueError(f"names is empty; pass one or more of {list(model.capture_points)}")
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"duplicate capture point names in {list(resolved)}")
    for n in resolved:
        model.hook_point(n)  # raises a clear error listing the valid names
    return resolved


def _make_record_hook(
    rec: Recording, name: str, last_only: bool, detach: bool
) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        value = output[:, -1] if last_only else output
        if detach:
            value = value.detach()
        if last_only:
            value = value.clone()  # do not keep the whole (B, L, d) tensor alive
        rec._add(name, value)

    return hook


@contextmanager
def record(
    model: HookableModel,
    names: str | Sequence[str] | None = None,
    *,
    last_only: bool = False,
    detach: bool = True,
    accumulate: bool = False,
) -> Iterator[Recording]:
    """Record the states at capture points during forward passes.

    Introduced in chapter 3.

    Parameters
    ----------
    model : HookableModel
        Usually a :class:`~seqsae_lib.model.sasrec.SASRec`.
    names : str, sequence of str, or None
        Capture point(s) to record; ``None`` records all of them.
    last_only : bool, default False
        Store only the last (most recent, since inputs are left-padded)
        position: ``(B, d)`` instead of ``(B, L, d)``.
    detach : bool, default True
        Detach the stored tensors from the autograd graph.
    accumulate : bool, default False
        Keep every forward pass (``rec[name]`` concatenates them along the
        batch dimension); by default each pass overwrites the previous one.

    Yields
    ------
    Recording
        Filled in as forward passes run inside the ``with`` block.

    Raises
    ------
    UnknownCapturePointError
        If a name is not a capture point of ``model`` (message lists valid names).

    Examples
    --------
    >>> with record(model, ["block_1"]) as rec:
    ...     model(input_ids)
    >>> rec["block_1"].shape  # (B, L, d)
    """
    resolved = _resolve_names(model, names)
    rec = Recording(resolved, last_only=last_only, accumulate=accumulate)
    handles = []
    try:
        for n in resolved:
            hp = model.hook_point(n)
            handles.append(hp.register_forward_hook(_make_record_hook(rec, n, last_only, detach)))
        yield rec
    finally:
        for h in handles:
            h.remove()


def _make_intervene_hook(
    name: str, fn: Callable[[Tensor], Tensor], last: bool
) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], Tensor]:
    def check(new: object, old: Tensor) -> Tensor:
        if not isinstance(new, Tensor):
            raise TypeError(
                f"intervention fn at {name!r} must return a torch.Tensor, got {type(new).__name__}"
            )
        if new.shape != old.shape:
            raise ValueError(
                f"intervention fn at {name!r} must return shape {tuple(old.shape)} "
                f"(same as its input), got {tuple(new.shape)}"
            )
        if not torch.isfinite(new).all():
            raise ValueError(f"intervention fn at {name!r} returned NaN or infinite values")
        return new.to(old.dtype)

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
        if last:
            old_last = output[:, -1]
            new_last = check(fn(old_last), old_last)
            return torch.cat([output[:, :-1], new_last.unsqueeze(1)], dim=1)
        return check(fn(output), output)

    return hook


@contextmanager
def intervene(
    model: HookableModel,
    name: str,
    fn: Callable[[Tensor], Tensor],
    positions: Literal["all", "last"] = "all",
) -> Iterator[None]:
    """Replace the state at one capture point by ``fn(state)`` during forward passes.

    Introduced in chapter 5.

    Parameters
    ----------
    model : HookableModel
        Usually a :class:`~seqsae_lib.model.sasrec.SASRec`.
    name : str
        Capture point to intervene at.
    fn : callable
        ``fn(hidden) -> replacement`` of the same shape. With
        ``positions="all"`` it receives ``(B, L, d)`` (padding positions
        included; whatever it writes there is ignored by real positions);
        with ``positions="last"`` it receives ``(B, d)``, the most recent
        position, and every earlier position is left untouched.
    positions : {"all", "last"}, default "all"
        Which positions ``fn`` sees and replaces.

    Notes
    -----
    The intervention runs before any :func:`record` hook at the same point
    (a recording sees the replaced state). It also applies to
    :meth:`~seqsae_lib.model.sasrec.SASRec.forward_from` started at ``name``, so
    cached states can be steered the same way as live ones.

    Raises
    ------
    UnknownCapturePointError
        If ``name`` is not a capture point (message lists valid names).
    ValueError
        Bad ``positions``; or, during the forward pass, if ``fn`` returns a
        different shape or non-finite values.
    TypeError
        If ``fn`` is not callable or does not return a tensor.

    Examples
    --------
    >>> with intervene(model, "block_0", lambda h: h + 3.0 * direction, positions="last"):
    ...     steered = model.scores(input_ids)
    """
    check_choice("positions", positions, ("all", "last"))
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    hp = model.hook_point(name)
    # prepend=True: interventions run before any recording hook at the same
    # point, so `record` always shows the state that actually flows downstream.
    handle = hp.register_forward_hook(_make_intervene_hook(name, fn, positions == "last"), prepend=True)
    try:
        yield
    finally:
        handle.remove()
