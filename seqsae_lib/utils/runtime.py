"""Runtime helpers: seeding, CPU thread count and device selection.

Introduced in chapter 2, where the SASRec model is
trained reproducibly on a small CPU.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from seqsae_lib.utils.checks import check_int

__all__ = ["THREADS_ENV_VAR", "set_seed", "set_threads", "resolve_device"]

THREADS_ENV_VAR = "SEQSAE_THREADS"
"""Environment variable that, when set, overrides every thread count passed to :func:`set_threads`.

``make test THREADS=1`` sets it so that every chapter and test runs on one thread without editing them.
"""


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's random number generators.

    Introduced in chapter 2.

    Parameters
    ----------
    seed : int
        Non-negative integer seed. The same seed gives identical weights and
        batches on CPU (GPU kernels may still be non-deterministic).

    Raises
    ------
    TypeError
        If ``seed`` is not an integer.
    ValueError
        If ``seed`` is negative.
    """
    seed = check_int("seed", seed, minimum=0)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def set_threads(n: int | None) -> int:
    """Set the number of CPU threads PyTorch uses for intra-op parallelism.

    Introduced in chapter 2.

    Parameters
    ----------
    n : int or None
        Number of threads (>= 1). ``None`` leaves PyTorch's default unchanged. When the environment
        variable ``SEQSAE_THREADS`` is set, its value is used instead (every training routine of the
        library sets its threads through this function).

    Returns
    -------
    int
        The number of threads PyTorch uses after the call.

    Raises
    ------
    TypeError
        If ``n`` is neither ``None`` nor an int.
    ValueError
        If ``n`` is smaller than 1 (checked even when ``SEQSAE_THREADS`` is set), or ``SEQSAE_THREADS`` is not
        a positive integer.
    """
    if n is not None:  # a bad argument is refused even when the environment overrides it
        n = check_int("num_threads (None: PyTorch's default)", n, 1)
    override = os.environ.get(THREADS_ENV_VAR, "").strip()
    if override:
        if not override.isdigit() or int(override) < 1:
            raise ValueError(f"environment variable {THREADS_ENV_VAR}={override!r}: expected an integer >= 1")
        n = int(override)
    if n is not None:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a device specification into a :class:`torch.device`.

    Introduced in chapter 2.

    Parameters
    ----------
    device : str or torch.device, default "auto"
        ``"auto"`` picks ``cuda`` when a GPU is available, else ``cpu``. Any
        other string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) is passed
        to :class:`torch.device`.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If the string is not a valid device, or names CUDA when none is
        available.
    """
    if isinstance(device, torch.device):
        dev = device
    else:
        if not isinstance(device, str):
            raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
        spec = device.strip().lower()
        if spec == "auto":
            spec = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            dev = torch.device(spec)
        except RuntimeError as exc:
            raise ValueError(
                f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
            ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return dev
