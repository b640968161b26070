"""A toy of superposition: vectors built from more sparse "atoms" than dimensions, with a known answer.

Introduced in chapter 3. Each vector is a positive combination of a few of
``n_atoms`` random unit atoms in ``d`` dimensions (``n_atoms > d``: the atoms cannot all be orthogonal,
they are in *superposition*), plus an offset and a little noise. A sparse autoencoder should find the
atoms as its decoder rows; :func:`atom_recovery` measures how well it did.
"""

from __future__ import annotations

import torch

__all__ = ["sparse_dictionary_data", "atom_recovery"]


def sparse_dictionary_data(
    n: int = 20_000, d: int = 32, n_atoms: int = 128, *, active: tuple[int, int] = (3, 4),
    offset: float = 0.3, noise: float = 0.01, seed: int = 1234,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(x, atoms)``: ``n`` vectors of width ``d`` and the ``(n_atoms, d)`` unit atoms behind them.

    Introduced in chapter 3. Every vector uses between ``active[0]`` and
    ``active[1]`` distinct atoms with magnitudes uniform in ``[0.5, 1.5)``.
    """
    lo, hi = active
    if not (1 <= lo <= hi <= n_atoms):
        raise ValueError(f"need 1 <= active[0] <= active[1] <= n_atoms, got active={active}, n_atoms={n_atoms}")
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(n_atoms, d, generator=g)
    atoms = atoms / atoms.norm(dim=1, keepdim=True)
    num_active = torch.randint(lo, hi + 1, (n,), generator=g)
    ranks = torch.rand(n, n_atoms, generator=g).argsort(dim=1).argsort(dim=1)
    mask = ranks < num_active[:, None]
    magnitudes = 0.5 + torch.rand(n, n_atoms, generator=g)
    x = (magnitudes * mask) @ atoms + offset + noise * torch.randn(n, d, generator=g)
    return x, atoms


def atom_recovery(atoms: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """For every true atom, the best cosine similarity with any of ``directions`` (rows), in ``[-1, 1]``.

    Introduced in chapter 3. Pass ``sae.W_dec`` to score an SAE.
    """
    if atoms.shape[1] != directions.shape[1]:
        raise ValueError(f"atoms have width {atoms.shape[1]}, directions {directions.shape[1]}")
    a = atoms / atoms.norm(dim=1, keepdim=True)
    w = directions.detach() / directions.detach().norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (a @ w.T).max(dim=1).values
