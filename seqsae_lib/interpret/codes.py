"""Sparse latent codes and the column-sorted engine every statistic of :mod:`seqsae_lib.interpret` runs on.

Introduced in chapter 4.

Sparse codes, not a dense matrix
--------------------------------
The latent activations of every position form an ``(n, d_sae)`` matrix that is almost all zeros: a TopK
SAE with ``k = 32`` fills 32 of 2,048 columns per row. Dense float32, 84k x 2,048 is 690 MB; the
non-zeros alone are 2.7M values (about 33 MB with their indices).
:func:`~seqsae_lib.interpret.stats.latent_activations` therefore returns :class:`LatentCodes`, a
compressed-sparse-row matrix (per row: the active latents and their values). Every statistic, profile and
score of :mod:`seqsae_lib.interpret` accepts either :class:`LatentCodes` or a dense ``(n, m)``
tensor/array (:data:`UnitActs`), so raw hidden dimensions, PCA directions and SAE latents go through
exactly the same code: :func:`column_entries` turns either into :class:`ColumnEntries`, the non-zeros
sorted by (unit, value), from which ranks, quantiles and top-N selections are read without a loop.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqsae_lib.utils.checks import check_int

__all__ = ["ColumnEntries", "LatentCodes", "UnitActs", "check_latent", "column_entries", "dense_matrix",
           "latent_column", "n_rows"]

@dataclass(frozen=True, eq=False)
class LatentCodes:
    """Sparse ``(n, n_latents)`` matrix of latent activations in compressed-sparse-row form.

    Introduced in chapter 4.

    Row ``i`` (a stored position) has its non-zero activations ``values[indptr[i]:indptr[i+1]]`` at the
    latents ``indices[indptr[i]:indptr[i+1]]`` (ascending). Only non-zeros are stored; an SAE's codes are
    non-negative, so "stored" means "fires". A TopK SAE stores at most ``k`` entries per row.

    Raises
    ------
    TypeError, ValueError
        On construction, for arrays of the wrong dtype or shape, a decreasing ``indptr``, latent indices
        out of range or non-finite values.
    """

    indptr: Tensor
    """``(n + 1,)`` int64 row pointers, ``indptr[0] == 0``, ``indptr[-1] == nnz``."""
    indices: Tensor
    """``(nnz,)`` int64 latent index of each stored value."""
    values: Tensor
    """``(nnz,)`` float32 activations."""
    n_latents: int
    """Number of columns (``d_sae`` for an SAE)."""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, dtype in (("indptr", torch.int64), ("indices", torch.int64), ("values", torch.float32)):
            t = getattr(self, name)
            if not isinstance(t, Tensor) or t.ndim != 1 or t.dtype != dtype:
                desc = f"{t.dtype} tensor of shape {tuple(t.shape)}" if isinstance(t, Tensor) else type(t).__name__
                raise TypeError(f"LatentCodes.{name} must be a 1-D {dtype} tensor, got {desc}")
        object.__setattr__(self, "n_latents", check_int("n_latents", self.n_latents, minimum=1))
        ptr = self.indptr
        if len(ptr) == 0 or int(ptr[0]) != 0 or int(ptr[-1]) != len(self.indices):
            raise ValueError("indptr must start at 0 and end at nnz (len(indices))")
        if len(self.values) != len(self.indices):
            raise ValueError(f"values has {len(self.values)} entries but indices has {len(self.indices)}")
        if len(ptr) > 1 and bool((ptr[1:] < ptr[:-1]).any()):
            raise ValueError("indptr must be non-decreasing")
        if len(self.indices) and (int(self.indices.min()) < 0 or int(self.indices.max()) >= self.n_latents):
            raise ValueError(f"latent indices must lie in [0, {self.n_latents - 1}]")
        if not bool(torch.isfinite(self.values).all()):
            raise ValueError("LatentCodes.values contain NaN or inf")

    # ---- shape ---------------------------------------------------------------------------------------

    @property
    def n_rows(self) -> int:
        """Number of rows (positions). Introduced in chapter 4."""
        return len(self.indptr) - 1

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, n_latents)``. Introduced in chapter 4."""
        return (self.n_rows, self.n_latents)

    @property
    def nnz(self) -> int:
        """Number of stored (non-zero) values. Introduced in chapter 4."""
        return len(self.values)

    def __len__(self) -> int:
        return self.n_rows

    def __repr__(self) -> str:
        n = max(self.n_rows, 1)
        return (
            f"LatentCodes(n_rows={self.n_rows}, n_latents={self.n_latents}, nnz={self.nnz}, "
            f"mean_l0={self.nnz / n:.2f})"
        )

    # ---- construction and conversion ------------------------------------------------------------------

    @classmethod
    def from_dense(cls, z: Tensor | np.ndarray) -> LatentCodes:
        """Store the non-zeros of a dense ``(n, m)`` matrix.

        Introduced in chapter 4.

        Raises
        ------
        TypeError, ValueError
            ``z`` is not a 2-D float matrix with at least one column, or holds NaN/inf.
        """
        z = dense_matrix(z, "z")
        rows, cols = z.nonzero(as_tuple=True)
        indptr = torch.zeros(z.shape[0] + 1, dtype=torch.int64)
        if len(rows):
            indptr[1:] = torch.bincount(rows, minlength=z.shape[0]).cumsum(0)
        return cls(indptr, cols.to(torch.int64), z[rows, cols].to(torch.float32), int(z.shape[1]))

    def row_ids(self) -> Tensor:
        """``(nnz,)`` int64 row of each stored value. Introduced in chapter 4."""
        if "rows" not in self._cache:
            counts = self.indptr[1:] - self.indptr[:-1]
            self._cache["rows"] = torch.repeat_interleave(torch.arange(self.n_rows), counts)
        return self._cache["rows"]

    def to_dense(self, rows: Any = None) -> Tensor:
        """Dense float32 ``(len(rows), n_latents)`` for the given rows (all rows if ``None``: mind the memory).

        Introduced in chapter 4.
        """
        sub = self if rows is None else self.subset(rows)
        out = torch.zeros(sub.n_rows, sub.n_latents, dtype=torch.float32)
        if sub.nnz:
            out[sub.row_ids(), sub.indices] = sub.values
        return out

    def column(self, latent: int) -> Tensor:
        """Dense ``(n,)`` float32 activations of one latent. Introduced in chapter 4.

        Reads the column-major copy when :func:`column_entries` has built it for these codes (the
        latent's own entries, microseconds), else scans every stored value.

        Raises
        ------
        IndexError
            ``latent`` outside ``0..n_latents-1``.
        """
        latent = check_latent(latent, self.n_latents)
        out = torch.zeros(self.n_rows, dtype=torch.float32)
        cols = self._cache.get("columns")
        if cols is not None:
            lo, hi = int(cols.ptr[latent]), int(cols.ptr[latent + 1])
            out[cols.row[lo:hi]] = cols.val[lo:hi]
            return out
        hit = self.indices == latent
        out[self.row_ids()[hit]] = self.values[hit]
        return out

    def firing_counts(self) -> Tensor:
        """``(n_latents,)`` int64 number of rows where each latent is > 0.

        Introduced in chapter 4.
        """
        return torch.bincount(self.indices[self.values > 0], minlength=self.n_latents)

    def subset(self, rows: Any) -> LatentCodes:
        """The selected rows (boolean mask of length ``n`` or integer indices), in the given order.

        Introduced in chapter 4.

        Raises
        ------
        ValueError, IndexError
            A mask of the wrong length or indices out of range.
        """
        idx = _row_index(rows, self.n_rows)
        starts, ends = self.indptr[idx], self.indptr[idx + 1]
        counts = ends - starts
        indptr = torch.zeros(len(idx) + 1, dtype=torch.int64)
        indptr[1:] = counts.cumsum(0)
        total = int(indptr[-1])
        # position of every kept entry in the old arrays: start of its row + offset within the row
        owner = torch.repeat_interleave(torch.arange(len(idx)), counts)
        offset = torch.arange(total) - indptr[:-1][owner]
        src = starts[owner] + offset
        return LatentCodes(indptr, self.indices[src], self.values[src], self.n_latents)

    def to_torch_sparse(self) -> Tensor:
        """The same matrix as a ``torch.sparse_csr_tensor`` of shape ``(n, n_latents)``.

        Introduced in chapter 4.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(self.indptr, self.indices, self.values, size=self.shape)


UnitActs = LatentCodes | Tensor | np.ndarray
"""Activations of ``m`` units on ``n`` positions: :class:`LatentCodes` or a dense ``(n, m)`` tensor/array."""


def check_latent(latent: Any, n_latents: int) -> int:
    """Return ``latent`` as an ``int`` column index of a matrix with ``n_latents`` columns.

    Introduced in chapter 4.

    Raises
    ------
    TypeError
        ``latent`` is not an int.
    IndexError
        ``latent`` outside ``0..n_latents-1``.
    """
    latent = check_int("latent", latent)
    if not 0 <= latent < n_latents:
        raise IndexError(f"latent {latent} outside 0..{n_latents - 1}")
    return latent


def _row_index(rows: Any, n: int) -> Tensor:
    sel = rows.detach().cpu().numpy() if isinstance(rows, Tensor) else np.asarray(rows)
    if sel.dtype == bool:
        if sel.shape != (n,):
            raise ValueError(f"boolean mask must have shape ({n},), got {sel.shape}")
        return torch.from_numpy(np.flatnonzero(sel).astype(np.int64))
    if sel.size == 0:
        return torch.zeros(0, dtype=torch.int64)
    if not np.issubdtype(sel.dtype, np.integer) or sel.ndim > 1:
        raise TypeError(
            f"rows must be a boolean mask or 1-D integer indices, got dtype {sel.dtype}, shape {sel.shape}"
        )
    idx = np.atleast_1d(sel).astype(np.int64)
    if idx.min() < -n or idx.max() >= n:
        raise IndexError(f"row index out of range for {n} rows")
    return torch.from_numpy(np.where(idx < 0, idx + n, idx))


def dense_matrix(x: Any, what: str) -> Tensor:
    """``x`` as a finite, real, CPU ``(n, m)`` float tensor with ``m >= 1`` (integer input becomes float32).

    Introduced in chapter 4.

    Raises
    ------
    TypeError, ValueError
        Not a tensor/array, complex, of the wrong shape, or holding NaN/inf; the message names ``what``.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a (n, m) tensor, numpy array or LatentCodes, got {type(x).__name__}")
    if x.is_complex():
        raise TypeError(f"{what} must be a real-valued matrix, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"{what} must have shape (n, m) with m >= 1, got shape {tuple(x.shape)}")
    x = x.detach().cpu()
    if not x.is_floating_point():
        x = x.to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} contains NaN or inf")
    return x


# --------------------------------------------------------------------------------------------------------
# column-major entries: the shared engine of features.py and monosemanticity.py
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnEntries:
    """Non-zero entries of an ``(n, m)`` matrix sorted by (unit, value): grouped by column (unit), values
    ascending within a unit.

    Introduced in chapter 4. Zeros are implicit. Entry selections keep the
    order, so the one sort done by :meth:`from_entries` serves every row subset (ranks, quantiles and top-N
    all read it directly). Build it with :func:`column_entries`.
    """

    n: int
    """Number of rows (positions)."""
    m: int
    """Number of columns (units)."""
    unit: Tensor
    """``(E,)`` int64 column of each entry, non-decreasing."""
    row: Tensor
    """``(E,)`` int64 row of each entry."""
    val: Tensor
    """``(E,)`` float32 value of each entry, non-decreasing within a unit."""
    ptr: Tensor
    """``(m + 1,)`` int64: the entries of unit ``u`` are ``ptr[u]:ptr[u+1]``."""

    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return len(self.val)

    @property
    def counts(self) -> Tensor:
        """``(m,)`` int64 number of entries per unit."""
        return self.ptr[1:] - self.ptr[:-1]

    @staticmethod
    def _sorted(n: int, m: int, unit: Tensor, row: Tensor, val: Tensor) -> ColumnEntries:
        ptr = torch.zeros(m + 1, dtype=torch.int64)
        if len(unit):
            ptr[1:] = torch.bincount(unit, minlength=m).cumsum(0)
        return ColumnEntries(n, m, unit, row, val, ptr)

    @staticmethod
    def from_entries(n: int, m: int, unit: Tensor, row: Tensor, val: Tensor) -> ColumnEntries:
        """Sort ``(unit, row, val)`` entries by (unit, value) with one sort of a composite int64 key.

        The float32 values are mapped to order-preserving integers (IEEE sign-magnitude to two's
        complement: negative floats get their 31 low bits flipped) in the low 32 bits, the unit above.
        """
        val = val.to(torch.float32) + 0.0  # + 0.0 turns -0.0 into +0.0 (one tie group for zero)
        if len(val):
            bits = val.view(torch.int32).to(torch.int64)
            bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
            order = torch.sort(unit * (1 << 32) + (bits + (1 << 31))).indices
            unit, row, val = unit[order], row[order], val[order]
        return ColumnEntries._sorted(n, m, unit, row, val)

    def keep(self, mask_e: Tensor) -> ColumnEntries:
        """Keep the entries where ``mask_e``; rows keep their numbering."""
        return ColumnEntries._sorted(self.n, self.m, self.unit[mask_e], self.row[mask_e], self.val[mask_e])

    def select_rows(self, row_mask: Tensor) -> ColumnEntries:
        """Keep the rows where ``row_mask`` (length ``n``) and renumber them ``0..n'-1``."""
        if bool(row_mask.all()):
            return self
        new_index = torch.cumsum(row_mask.to(torch.int64), 0) - 1
        keep = row_mask[self.row]
        n_kept = int(row_mask.sum())
        return ColumnEntries._sorted(n_kept, self.m, self.unit[keep], new_index[self.row[keep]], self.val[keep])

    def matmul(
        self, weights: Tensor, y: Tensor, *, sparse_weights: bool = False, dtype: torch.dtype = torch.float64
    ) -> Tensor:
        """``A @ y`` where ``A`` is ``(m, n)`` with ``weights`` at the entries; ``y`` is ``(n, G)``.

        With ``sparse_weights=True`` only the entries with a non-zero weight are visited (fast when few
        are, e.g. top-N inclusion weights). ``dtype`` is the precision of the product (float32 is about
        twice as fast and exact for integer counts below 2**24); the result is float64.
        """
        out = torch.zeros(self.m, y.shape[1], dtype=torch.float64)
        if self.nnz == 0:
            return out
        if sparse_weights:
            w = weights.to(torch.float64)
            y = y.to(torch.float64)
            idx = w.nonzero().squeeze(1)
            for start in range(0, len(idx), 1 << 20):
                part = idx[start : start + (1 << 20)]
                out.index_add_(0, self.unit[part], w[part, None] * y[self.row[part]])
            return out
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # sparse CSR is "beta" in torch
            # CSR rows = units; column indices (rows of y) need not be sorted within a unit
            a = torch.sparse_csr_tensor(self.ptr, self.row, weights.to(dtype), size=(self.m, self.n))
            return (a @ y.to(dtype).contiguous()).to_dense().reshape(out.shape).to(torch.float64)

    def per_unit(self, weights: Tensor) -> Tensor:
        """``(m,)`` float64 sum of ``weights`` over each unit's entries."""
        return torch.bincount(self.unit, weights=weights.to(torch.float64), minlength=self.m).to(torch.float64)


def column_entries(x: Any, what: str = "unit_acts") -> ColumnEntries:
    """Column-major, value-sorted entries of :class:`LatentCodes` or a dense ``(n, m)`` matrix.

    Introduced in chapter 4. Cached on :class:`LatentCodes` (one sort per
    codes object); ``what`` names the argument in errors about a dense matrix.
    """
    if isinstance(x, LatentCodes):
        if "columns" not in x._cache:
            x._cache["columns"] = ColumnEntries.from_entries(x.n_rows, x.n_latents, x.indices, x.row_ids(), x.values)
        return x._cache["columns"]
    dense = dense_matrix(x, what).to(torch.float32)
    n = dense.shape[0]
    flat = dense.T.contiguous().view(-1)
    idx = flat.nonzero().squeeze(1)
    return ColumnEntries.from_entries(n, dense.shape[1], idx // n, idx % n, flat[idx])


def n_rows(x: Any) -> int:
    """Number of rows (positions) of :class:`LatentCodes` or a dense ``(n, m)`` matrix.

    Introduced in chapter 4.
    """
    if isinstance(x, LatentCodes):
        return x.n_rows
    if isinstance(x, (Tensor, np.ndarray)) and x.ndim == 2:
        return int(x.shape[0])
    raise TypeError(f"expected LatentCodes or a (n, m) matrix, got {type(x).__name__}")


def latent_column(codes: UnitActs, latent: int) -> np.ndarray:
    """Dense ``(n,)`` activations of one latent (column) of :class:`LatentCodes` or a dense matrix.

    Introduced in chapter 4.

    Raises
    ------
    TypeError, IndexError
        ``latent`` not an int or outside the columns.
    """
    if isinstance(codes, LatentCodes):
        return codes.column(latent).numpy()
    dense = dense_matrix(codes, "codes")
    return dense[:, check_latent(latent, dense.shape[1])].double().numpy()
