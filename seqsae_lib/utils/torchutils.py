"""Small torch helpers shared by the library.

Introduced in chapter 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["eval_mode"]


@contextmanager
def eval_mode(*modules: nn.Module | None) -> Iterator[None]:
    """Put modules in eval mode for the block and restore each one's own mode afterwards.

    Introduced in chapter 2.

    ``None`` entries are skipped, so optional modules (an SAE that may be absent) can be passed as they are.
    The previous mode is restored even if the block raises.
    """
    present = [m for m in modules if m is not None]
    previous = [m.training for m in present]
    for m in present:
        m.eval()
    try:
        yield
    finally:
        for m, was_training in zip(present, previous):
            m.train(was_training)
