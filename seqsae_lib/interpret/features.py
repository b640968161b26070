"""What an SAE latent responds to: per-latent statistics, top contexts, driving and promoted items, profiles.

Introduced in chapter 4 (chapters/04_features.ipynb).

Everything here is computed over **all** stored positions at once (vectorised with torch), never by a
Python loop over positions or latents, so the statistics of a 2,048-latent SAE on the ~84k positions of
ML-100k take seconds on a 2-core CPU.

Sparse codes, not a dense matrix
--------------------------------
The latent activations of every position form an ``(n, d_sae)`` matrix that is almost all zeros: a TopK
SAE with ``k = 32`` fills 32 of 2,048 columns per row. Dense float32, 84k x 2,048 is 690 MB; the
non-zeros alone are 2.7M values (about 33 MB with their indices). :func:`latent_activations` therefore
returns :class:`LatentCodes`, a compressed-sparse-row matrix (per row: the active latents and their
values). Every function of this module and of :mod:`seqsae_lib.interpret.monosemanticity` accepts either
:class:`LatentCodes` or a dense ``(n, m)`` tensor/array, so raw hidden dimensions, PCA directions and
SAE latents go through exactly the same code.

Profiles
--------
A *profile* describes the positions where a latent fires by a categorical attribute: the genre of the next
(or of the input) item, its release decade, its popularity bucket, the user's age, gender or occupation.
For latent ``j`` and category ``c``::

    share[j, c] = sum_i a_ij * y_ic / sum_i a_ij        (activation-weighted, positions with a_ij > 0)
    base[c]     = mean_i y_ic                           (all valid positions)
    lift[j, c]  = share[j, c] / base[c]

Significance. Positions are not independent samples: a latent that fires on one film 200 times has seen
one film, not 200. The attribute is constant within a *cluster* (an item for item attributes, a user for
user attributes), so the activation weight is first summed per cluster, ``W_c``, and the effective sample
size is Kish's ``n_eff = (sum_c W_c)^2 / sum_c W_c^2``. Under the null hypothesis (clusters carry the
category independently with probability ``base``), the one-sided p-value of an enrichment is bounded by the
Chernoff-Hoeffding bound ``p <= exp(-n_eff * KL(share || base))`` (Bernoulli KL divergence, natural log).
The bound is conservative for large ``n_eff`` and exact for a single cluster (``p = base``), where a normal
approximation would be wildly anti-conservative. For unequal weights it is an approximation (exact bound
for equal weights). ``q_value`` is the Benjamini-Hochberg adjustment over every (latent, category) cell of
one profile. Remaining dependence (consecutive positions of a user share most of their history) still makes
these p-values optimistic: read them as a ranking device, not as a calibrated test.

Every profile function returns a *long* table with one row per (latent, category) and the columns
``latent, profile, category, share, base_rate, lift, z, p_value, q_value, n_fires, n_eff``
(:data:`PROFILE_COLUMNS`); ``pivot(index="latent", columns="category", values="lift")`` gives the matrix.
:func:`seqsae_lib.interpret.labels.auto_label` turns a concatenation of such tables into short labels.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from seqsae_lib.sae.activations import ActivationStore
from seqsae_lib.data.batching import left_pad, trim_left_padding
from seqsae_lib.model.capture import record
from seqsae_lib.sae.autoencoder import SparseAutoencoder
from seqsae_lib.data.sequences import SequenceData

__all__ = [
    "PROFILE_COLUMNS",
    "LatentCodes",
    "latent_activations",
    "feature_stats",
    "top_contexts",
    "driving_items",
    "promoted_items",
    "latent_item_effects",
    "rank_item_effects",
    "category_profile",
    "genre_profile",
    "decade_profile",
    "popularity_profile",
    "user_profile",
    "AGE_BUCKETS",
]

PROFILE_COLUMNS: tuple[str, ...] = (
    "latent", "profile", "category", "share", "base_rate", "lift", "z", "p_value", "q_value", "n_fires", "n_eff",
)
"""Columns of every profile table (see the module docstring)."""

AGE_BUCKETS: tuple[tuple[int, str], ...] = (
    (18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"), (56, "50-55"), (1_000, "56+"),
)
"""Age groups of :func:`user_profile`: ``(exclusive upper bound, name)``. They are MovieLens-1M's groups,
so ML-100k ages in years and ML-1M's group codes (1, 18, 25, ...) land in the same buckets."""

Which = Literal["next", "input"]


# --------------------------------------------------------------------------------------------------------
# sparse codes
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LatentCodes:
    """Sparse ``(n, n_latents)`` matrix of latent activations in compressed-sparse-row form.

    Introduced in chapter 4 (chapters/04_features.ipynb).

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
        k = self.n_latents
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"n_latents must be an int >= 1, got {self.n_latents!r}")
        object.__setattr__(self, "n_latents", int(self.n_latents))
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
        """Number of rows (positions). Introduced in chapter 4 (chapters/04_features.ipynb)."""
        return len(self.indptr) - 1

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, n_latents)``. Introduced in chapter 4 (chapters/04_features.ipynb)."""
        return (self.n_rows, self.n_latents)

    @property
    def nnz(self) -> int:
        """Number of stored (non-zero) values. Introduced in chapter 4 (chapters/04_features.ipynb)."""
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

        Introduced in chapter 4 (chapters/04_features.ipynb).

        Raises
        ------
        TypeError, ValueError
            ``z`` is not a 2-D float matrix with at least one column, or holds NaN/inf.
        """
        z = _dense_2d(z, "z")
        rows, cols = z.nonzero(as_tuple=True)
        indptr = torch.zeros(z.shape[0] + 1, dtype=torch.int64)
        if len(rows):
            indptr[1:] = torch.bincount(rows, minlength=z.shape[0]).cumsum(0)
        return cls(indptr, cols.to(torch.int64), z[rows, cols].to(torch.float32), int(z.shape[1]))

    def row_ids(self) -> Tensor:
        """``(nnz,)`` int64 row of each stored value. Introduced in chapter 4 (chapters/04_features.ipynb)."""
        if "rows" not in self._cache:
            counts = self.indptr[1:] - self.indptr[:-1]
            self._cache["rows"] = torch.repeat_interleave(torch.arange(self.n_rows), counts)
        return self._cache["rows"]

    def to_dense(self, rows: Any = None) -> Tensor:
        """Dense float32 ``(len(rows), n_latents)`` for the given rows (all rows if ``None``: mind the memory).

        Introduced in chapter 4 (chapters/04_features.ipynb).
        """
        sub = self if rows is None else self.subset(rows)
        out = torch.zeros(sub.n_rows, sub.n_latents, dtype=torch.float32)
        if sub.nnz:
            out[sub.row_ids(), sub.indices] = sub.values
        return out

    def column(self, latent: int) -> Tensor:
        """Dense ``(n,)`` float32 activations of one latent. Introduced in chapter 4 (chapters/04_features.ipynb).

        Raises
        ------
        IndexError
            ``latent`` outside ``0..n_latents-1``.
        """
        latent = _check_latent(latent, self.n_latents)
        out = torch.zeros(self.n_rows, dtype=torch.float32)
        hit = self.indices == latent
        out[self.row_ids()[hit]] = self.values[hit]
        return out

    def firing_counts(self) -> Tensor:
        """``(n_latents,)`` int64 number of rows where each latent is > 0.

        Introduced in chapter 4 (chapters/04_features.ipynb).
        """
        return torch.bincount(self.indices[self.values > 0], minlength=self.n_latents)

    def subset(self, rows: Any) -> LatentCodes:
        """The selected rows (boolean mask of length ``n`` or integer indices), in the given order.

        Introduced in chapter 4 (chapters/04_features.ipynb).

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

        Introduced in chapter 4 (chapters/04_features.ipynb).
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(self.indptr, self.indices, self.values, size=self.shape)


def _check_latent(latent: Any, m: int) -> int:
    if isinstance(latent, bool) or not isinstance(latent, (int, np.integer)):
        raise TypeError(f"latent must be an int, got {type(latent).__name__} ({latent!r})")
    if not 0 <= int(latent) < m:
        raise IndexError(f"latent {int(latent)} outside 0..{m - 1}")
    return int(latent)


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


def _dense_2d(x: Any, what: str) -> Tensor:
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
class _Columns:
    """Non-zero entries of an ``(n, m)`` matrix sorted by (unit, value): grouped by column (unit), values
    ascending within a unit. Zeros are implicit. Entry selections keep the order, so the one sort done by
    :meth:`from_entries` serves every row subset (ranks, quantiles and top-N all read it directly)."""

    n: int
    m: int
    unit: Tensor  # (E,) int64, non-decreasing
    row: Tensor  # (E,) int64
    val: Tensor  # (E,) float32, non-decreasing within a unit
    ptr: Tensor  # (m + 1,) int64: the unit's entries are ptr[u]:ptr[u+1]

    @property
    def nnz(self) -> int:
        return len(self.val)

    @property
    def counts(self) -> Tensor:
        return self.ptr[1:] - self.ptr[:-1]

    @staticmethod
    def _sorted(n: int, m: int, unit: Tensor, row: Tensor, val: Tensor) -> _Columns:
        ptr = torch.zeros(m + 1, dtype=torch.int64)
        if len(unit):
            ptr[1:] = torch.bincount(unit, minlength=m).cumsum(0)
        return _Columns(n, m, unit, row, val, ptr)

    @staticmethod
    def from_entries(n: int, m: int, unit: Tensor, row: Tensor, val: Tensor) -> _Columns:
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
        return _Columns._sorted(n, m, unit, row, val)

    def keep(self, mask_e: Tensor) -> _Columns:
        """Keep the entries where ``mask_e``; rows keep their numbering."""
        return _Columns._sorted(self.n, self.m, self.unit[mask_e], self.row[mask_e], self.val[mask_e])

    def select_rows(self, row_mask: Tensor) -> _Columns:
        """Keep the rows where ``row_mask`` (length ``n``) and renumber them ``0..n'-1``."""
        if bool(row_mask.all()):
            return self
        new_index = torch.cumsum(row_mask.to(torch.int64), 0) - 1
        keep = row_mask[self.row]
        n_kept = int(row_mask.sum())
        return _Columns._sorted(n_kept, self.m, self.unit[keep], new_index[self.row[keep]], self.val[keep])

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


def _as_columns(x: Any, what: str = "unit_acts") -> _Columns:
    """Column-major, value-sorted entries of :class:`LatentCodes` or a dense ``(n, m)`` matrix."""
    if isinstance(x, LatentCodes):
        if "columns" not in x._cache:
            x._cache["columns"] = _Columns.from_entries(x.n_rows, x.n_latents, x.indices, x.row_ids(), x.values)
        return x._cache["columns"]
    dense = _dense_2d(x, what).to(torch.float32)
    n = dense.shape[0]
    flat = dense.T.contiguous().view(-1)
    idx = flat.nonzero().squeeze(1)
    return _Columns.from_entries(n, dense.shape[1], idx // n, idx % n, flat[idx])


def _n_rows(x: Any) -> int:
    if isinstance(x, LatentCodes):
        return x.n_rows
    if isinstance(x, (Tensor, np.ndarray)) and x.ndim == 2:
        return int(x.shape[0])
    raise TypeError(f"expected LatentCodes or a (n, m) matrix, got {type(x).__name__}")


# --------------------------------------------------------------------------------------------------------
# encoding and statistics
# --------------------------------------------------------------------------------------------------------


def _acts_tensor(acts: Any) -> Tensor:
    if isinstance(acts, ActivationStore):
        return acts.acts
    return _dense_2d(acts, "acts")


@torch.no_grad()
def latent_activations(
    sae: SparseAutoencoder, store: ActivationStore | Tensor, batch_size: int = 1024
) -> LatentCodes:
    """Encode every stored position with the SAE, keeping only the non-zero codes.

    Introduced in chapter 4 (chapters/04_features.ipynb).

    The SAE runs in eval mode (its mode is restored), without gradients, ``batch_size`` rows at a time;
    a TopK SAE never builds a dense code matrix (:meth:`~seqsae_lib.sae.autoencoder.SparseAutoencoder.encode_sparse`),
    other kinds only one batch at a time (``batch_size x d_sae`` floats). See the module docstring for why
    the result is sparse.

    Parameters
    ----------
    sae : SparseAutoencoder
    store : ActivationStore or Tensor of shape (n, d_in)
    batch_size : int, default 1024
        Rows per encoder call (1024 measured fastest on a 2-core CPU for 2,048 latents).

    Returns
    -------
    LatentCodes
        ``(n, d_sae)``; row ``i`` is aligned with row ``i`` of the store.

    Raises
    ------
    TypeError, ValueError
        Not an SAE, inputs of the wrong width, a bad ``batch_size``.
    """
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    x = _acts_tensor(store)
    if x.shape[1] != sae.d_in:
        raise ValueError(f"activations have width {x.shape[1]} but the SAE reads d_in={sae.d_in}")
    was_training = sae.training
    sae.eval()
    rows_l, cols_l, vals_l = [], [], []
    try:
        with torch.no_grad():
            for start in range(0, len(x), int(batch_size)):
                r, c, v = sae.encode_sparse(x[start : start + batch_size])
                rows_l.append(r.cpu() + start)
                cols_l.append(c.cpu())
                vals_l.append(v.float().cpu())
    finally:
        if was_training:
            sae.train()
    rows = torch.cat(rows_l) if rows_l else torch.zeros(0, dtype=torch.int64)
    indptr = torch.zeros(len(x) + 1, dtype=torch.int64)
    if len(rows):
        indptr[1:] = torch.bincount(rows, minlength=len(x)).cumsum(0)
    indices = torch.cat(cols_l) if cols_l else torch.zeros(0, dtype=torch.int64)
    values = torch.cat(vals_l) if vals_l else torch.zeros(0, dtype=torch.float32)
    return LatentCodes(indptr, indices.to(torch.int64), values.contiguous(), sae.d_sae)


def feature_stats(
    codes: LatentCodes | Tensor | np.ndarray,
    *,
    quantiles: Sequence[float] = (0.5, 0.9, 0.99),
    store: ActivationStore | None = None,
) -> pd.DataFrame:
    """Per-latent firing statistics.

    Introduced in chapter 4 (chapters/04_features.ipynb).

    A latent *fires* on a position when its activation is > 0.

    Parameters
    ----------
    codes : LatentCodes or (n, m) matrix
    quantiles : sequence of float in [0, 1]
        Quantiles of the activation **when firing** (linear interpolation), one column ``q50``, ``q90``...
    store : ActivationStore, optional
        If given (aligned with ``codes``), adds ``frequency_last``: the firing frequency on users' last
        positions, the states the model recommends from.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``latent``: ``n_fires``, ``frequency`` (fraction of positions), ``mean_act`` and
        ``max_act`` (when firing), the quantile columns, and optionally ``frequency_last``. Statistics
        "when firing" are NaN for latents that never fire.

    Raises
    ------
    ValueError
        Quantiles outside [0, 1], an empty matrix, or a store of another length.
    """
    qs = [float(q) for q in quantiles]
    if any(not 0.0 <= q <= 1.0 for q in qs):
        raise ValueError(f"quantiles must lie in [0, 1], got {list(quantiles)}")
    cols = _as_columns(codes, "codes")
    if cols.n == 0:
        raise ValueError("codes has no rows")
    fired = cols.keep(cols.val > 0)
    m = fired.m
    count = fired.counts
    total = fired.per_unit(fired.val)
    cnt_f = count.to(torch.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (total / cnt_f).numpy()
    vmax = torch.full((m,), float("nan"), dtype=torch.float64)
    if fired.nnz:
        vmax = vmax.scatter_reduce(0, fired.unit, fired.val.double(), "amax", include_self=False)
    frame = pd.DataFrame(
        {
            "n_fires": count.numpy(),
            "frequency": (cnt_f / cols.n).numpy(),
            "mean_act": mean,
            "max_act": vmax.numpy(),
        },
        index=pd.RangeIndex(m, name="latent"),
    )
    if qs:
        sorted_vals = fired.val.double()  # entries are sorted by value within each latent
        start = fired.ptr[:-1]
        has = count > 0
        last = (count - 1).clamp_min(0).to(torch.float64)
        for q in qs:
            pos = q * last
            lo = pos.floor().to(torch.int64)
            hi = pos.ceil().to(torch.int64)
            frac = pos - lo.to(torch.float64)
            val = torch.full((m,), float("nan"), dtype=torch.float64)
            if fired.nnz:
                a = sorted_vals[(start + lo)[has]]
                b = sorted_vals[(start + hi)[has]]
                val[has] = a + (b - a) * frac[has]
            name = f"q{100 * q:g}".replace(".", "_")
            frame[name] = val.numpy()
    if store is not None:
        if not isinstance(store, ActivationStore) or len(store) != cols.n:
            raise ValueError("store must be the ActivationStore the codes were computed from (same number of rows)")
        last_rows = torch.from_numpy(store.is_last)
        n_last = int(last_rows.sum())
        hits = fired.keep(last_rows[fired.row]).counts.to(torch.float64)
        frame["frequency_last"] = (hits / max(n_last, 1)).numpy()
    return frame


# --------------------------------------------------------------------------------------------------------
# contexts and items
# --------------------------------------------------------------------------------------------------------


def _check_aligned(codes: Any, store: ActivationStore) -> None:
    if not isinstance(store, ActivationStore):
        raise TypeError(f"store must be an ActivationStore, got {type(store).__name__}")
    if _n_rows(codes) != len(store):
        raise ValueError(
            f"codes has {_n_rows(codes)} rows but the store has {len(store)}: compute them from the same store"
        )


def _check_items(seq_data: SequenceData, items: np.ndarray, what: str) -> None:
    if not isinstance(seq_data, SequenceData):
        raise TypeError(f"seq_data must be a SequenceData, got {type(seq_data).__name__}")
    if len(items) and (items.min() < 0 or items.max() > seq_data.num_items):
        raise ValueError(
            f"store.{what} holds ids up to {int(items.max())} but {seq_data.name} has {seq_data.num_items} items: "
            "the store was not collected from this data"
        )


def _titles(seq_data: SequenceData, items: np.ndarray) -> np.ndarray:
    titles = np.empty(seq_data.num_items + 1, dtype=object)
    titles[0] = "(unknown)"
    titles[1:] = seq_data.items["title"].to_numpy()
    return titles[items]


def _latent_column(codes: Any, latent: int) -> np.ndarray:
    if isinstance(codes, LatentCodes):
        return codes.column(latent).numpy()
    dense = _dense_2d(codes, "codes")
    return dense[:, _check_latent(latent, dense.shape[1])].double().numpy()


def top_contexts(
    codes: LatentCodes | Tensor | np.ndarray,
    store: ActivationStore,
    seq_data: SequenceData,
    latent: int,
    n: int = 10,
    history: int = 4,
    *,
    one_per_user: bool = False,
) -> pd.DataFrame:
    """The positions where a latent fires most strongly, with what the user had watched and watched next.

    Introduced in chapter 4 (chapters/04_features.ipynb).

    ``store.user`` must index ``seq_data.sequences`` (true when the store was collected from
    ``split.train`` or ``[s[:-1] for s in split.train]`` of this ``seq_data``); this is checked by
    comparing ``store.input_item`` with the sequences.

    Parameters
    ----------
    codes : LatentCodes or (n, m) matrix aligned with ``store``
    store : ActivationStore
    seq_data : SequenceData
    latent : int
    n : int, default 10
        Number of contexts (fewer if the latent fires on fewer positions).
    history : int, default 4
        Number of items before the input item to show.
    one_per_user : bool, default False
        Keep only each user's strongest position (so one binge-watcher does not fill the table).

    Returns
    -------
    pandas.DataFrame
        Columns ``row`` (store row), ``user`` (internal index), ``user_id`` (original), ``position``,
        ``history`` (titles joined by `` | ``, oldest first), ``input`` (title of the item just read),
        ``next`` (title of the item that followed, ``(unknown)`` if not stored) and ``activation``,
        sorted by activation (descending).

    Raises
    ------
    ValueError
        Misaligned inputs, or a store that does not come from ``seq_data``.
    """
    _check_aligned(codes, store)
    _check_items(seq_data, store.input_item, "input_item")
    if n < 1 or history < 0:
        raise ValueError(f"need n >= 1 and history >= 0, got n={n}, history={history}")
    act = _latent_column(codes, latent)
    rows = np.flatnonzero(act > 0)
    rows = rows[np.argsort(-act[rows], kind="stable")]
    if one_per_user and len(rows):
        _, first = np.unique(store.user[rows], return_index=True)
        rows = rows[np.sort(first)]
    rows = rows[:n]
    records = []
    for r in rows:
        u, pos = int(store.user[r]), int(store.position[r])
        known = 0 <= u < seq_data.num_users and pos < len(seq_data.sequences[u])
        if not known or seq_data.sequences[u][pos] != store.input_item[r]:
            raise ValueError(
                f"store row {r} (user {u}, position {pos}) does not match seq_data.sequences: collect the store "
                "from this data's split.train (user = internal user index)"
            )
        before = seq_data.sequences[u][max(0, pos - history) : pos]
        records.append(
            {
                "row": int(r),
                "user": u,
                "user_id": int(seq_data.user_ids[u]),
                "position": pos,
                "history": " | ".join(_titles(seq_data, before)),
                "input": _titles(seq_data, store.input_item[r : r + 1])[0],
                "next": _titles(seq_data, store.next_item[r : r + 1])[0],
                "activation": float(act[r]),
            }
        )
    columns = ["row", "user", "user_id", "position", "history", "input", "next", "activation"]
    return pd.DataFrame.from_records(records, columns=columns)


def driving_items(
    codes: LatentCodes | Tensor | np.ndarray,
    store: ActivationStore,
    seq_data: SequenceData,
    latent: int,
    n: int = 10,
    *,
    min_count: int = 5,
    which: Which = "input",
) -> pd.DataFrame:
    """The items whose positions drive a latent most: mean activation grouped by item.

    Introduced in chapter 4 (chapters/04_features.ipynb).

    For every item, the mean of the latent's activation over **all** positions whose input item (or next
    item, ``which="next"``) is that item, zeros included, so an item that reliably switches the latent on
    beats one that does so once. Items with fewer than ``min_count`` positions are skipped (noisy means).

    Returns
    -------
    pandas.DataFrame
        Columns ``item`` (internal id), ``title``, ``count`` (positions), ``fire_rate`` (share of them
        where the latent fires), ``mean_activation``; the ``n`` items with the largest mean activation.

    Raises
    ------
    ValueError
        Misaligned inputs, a bad ``which`` or ``min_count``.
    """
    _check_aligned(codes, store)
    items = _store_items(store, which)
    _check_items(seq_data, items, f"{which}_item")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    act = _latent_column(codes, latent)
    size = seq_data.num_items + 1
    count = np.bincount(items, minlength=size)
    total = np.bincount(items, weights=act, minlength=size)
    fires = np.bincount(items, weights=(act > 0).astype(np.float64), minlength=size)
    ok = np.flatnonzero((count >= min_count) & (np.arange(size) > 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total[ok] / count[ok]
    order = np.lexsort((ok, -mean))[:n]
    pick = ok[order]
    return pd.DataFrame(
        {
            "item": pick,
            "title": _titles(seq_data, pick),
            "count": count[pick],
            "fire_rate": fires[pick] / count[pick],
            "mean_activation": mean[order],
        }
    )


def _store_items(store: ActivationStore, which: str) -> np.ndarray:
    if which == "next":
        return store.next_item
    if which == "input":
        return store.input_item
    raise ValueError(f"which must be 'next' or 'input', got {which!r}")


@torch.no_grad()
def promoted_items(
    model: nn.Module,
    sae: SparseAutoencoder,
    capture_point: str,
    latent: int,
    n: int = 10,
    *,
    seq_data: SequenceData | None = None,
    sequences: Sequence[Any] | None = None,
    alpha: float = 1.0,
    n_states: int = 256,
    seed: int = 0,
    bottom: bool = False,
) -> pd.DataFrame:
    """Which items a latent's decoder direction pushes up (or down) in the model's scores.

    Introduced in chapter 4 (chapters/04_features.ipynb).

    The direction is ``d = W_dec[latent] / input_scale``: what one unit of the latent's activation adds
    to the hidden state, in raw units.

    * At ``"final"`` the scores are linear in the state (``logits = h @ item_emb.T``), so the effect is
      exact and state-independent: ``score = d @ item_emb.T``, the logit change per unit of activation.
    * At an inner capture point the rest of the network (blocks, final LayerNorm) is non-linear, so the
      effect depends on the state. It is measured by a finite difference on real states: ``n_states``
      sequences are drawn (``seed``) from ``sequences``, their states at ``capture_point`` are recorded,
      ``alpha * d`` is added at the **last** position (the one the model recommends from; causality means
      no other position changes), the pass is continued with ``model.forward_from`` and
      ``score = mean over states of (logits(h + alpha d) - logits(h)) / alpha``. Choose ``alpha`` near the
      latent's typical activation when firing (e.g. ``feature_stats(codes)["q90"]``): the non-linearity
      (mostly the final LayerNorm's rescaling) makes the per-unit effect shrink for large ``alpha``.

    Parameters
    ----------
    model : SASRec
    sae : SparseAutoencoder
        Trained on states at ``capture_point``.
    capture_point : str
    latent : int
    n : int, default 10
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
        Columns ``item``, ``title`` (if ``seq_data``), ``score``; ``attrs["method"]`` is ``"exact"`` or
        ``"finite-difference"``.

    Raises
    ------
    ValueError
        Unknown capture point, mismatched widths, missing ``sequences`` at an inner capture point,
        non-positive ``alpha``.
    """
    scores, method = latent_item_effects(model, sae, capture_point, latent, sequences=sequences, alpha=alpha,
                                         n_states=n_states, seed=seed)
    return rank_item_effects(scores, method, n, bottom=bottom, seq_data=seq_data, num_items=model.num_items)


@torch.no_grad()
def latent_item_effects(
    model: nn.Module,
    sae: SparseAutoencoder,
    capture_point: str,
    latent: int,
    *,
    sequences: Sequence[Any] | None = None,
    alpha: float = 1.0,
    n_states: int = 256,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """Every item's score change per unit of a latent's activation: the numbers :func:`promoted_items` ranks.

    Introduced in chapter 4 (chapters/04_features.ipynb). See :func:`promoted_items` for the exact
    (``"final"``) and finite-difference (inner capture points) methods and the parameters. Compute once
    and rank both ends with :func:`rank_item_effects` (a feature card shows the top and the bottom).

    Returns
    -------
    (numpy.ndarray, str)
        ``(num_items,)`` float64 effects (item ``i`` at index ``i - 1``) and ``"exact"`` or
        ``"finite-difference"``.
    """
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder, got {type(sae).__name__}")
    if not callable(getattr(model, "hook_point", None)) or not hasattr(model, "item_emb"):
        raise TypeError(f"model must be a SASRec (capture points and item_emb), got {type(model).__name__}")
    model.hook_point(capture_point)  # UnknownCapturePointError listing the valid names
    if sae.d_in != model.d_model:
        raise ValueError(f"the SAE reads d_in={sae.d_in} but the model has d_model={model.d_model}")
    latent = _check_latent(latent, sae.d_sae)
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    emb = model.item_emb.weight.detach()
    direction = (sae.W_dec[latent].detach() / sae.input_scale).to(emb.device, emb.dtype)
    if capture_point == "final":
        scores = direction @ emb.T
        method = "exact"
    else:
        if sequences is None or len(sequences) == 0:
            raise ValueError(
                f"promoted_items at the inner capture point {capture_point!r} needs sequences (e.g. split.train)"
            )
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(sequences), size=min(int(n_states), len(sequences)), replace=False)
        chosen = [np.asarray(sequences[i]) for i in np.sort(pick)]
        chosen = [s for s in chosen if len(s)]
        if not chosen:
            raise ValueError("the sampled sequences are all empty")
        was_training = model.training
        model.eval()
        total = torch.zeros(emb.shape[0], dtype=torch.float64, device=emb.device)
        try:
            for start in range(0, len(chosen), 128):
                (ids,) = trim_left_padding(left_pad(chosen[start : start + 128], model.max_len))
                ids = ids.to(emb.device)
                with record(model, capture_point) as rec:
                    model(ids)
                hidden = rec[capture_point]
                base = model.forward_from(capture_point, hidden, ids)[:, -1]
                pushed = hidden.clone()
                pushed[:, -1] += alpha * direction
                moved = model.forward_from(capture_point, pushed, ids)[:, -1]
                total += ((moved - base) @ emb.T).double().sum(0) / alpha
        finally:
            if was_training:
                model.train()
        scores = total / len(chosen)
        method = "finite-difference"
    return scores.double().cpu().numpy()[1:], method  # drop the padding column


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

    Introduced in chapter 4 (chapters/04_features.ipynb); ``scores`` and ``method`` come from
    :func:`latent_item_effects`. Ties are broken by ascending item id.
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
        frame.insert(1, "title", _titles(seq_data, items))
    frame.attrs["method"] = method
    return frame


# --------------------------------------------------------------------------------------------------------
# profiles
# --------------------------------------------------------------------------------------------------------


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN treated as 1)."""
    p = np.where(np.isnan(p), 1.0, p)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out


def _bernoulli_kl(s: np.ndarray, b: np.ndarray) -> np.ndarray:
    """KL(Bernoulli(s) || Bernoulli(b)) in nats, with 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.where(s > 0, s * np.log(s / b), 0.0)
        t2 = np.where(s < 1, (1 - s) * np.log((1 - s) / (1 - b)), 0.0)
    return t1 + t2


def category_profile(
    codes: LatentCodes | Tensor | np.ndarray,
    categories: np.ndarray | Tensor,
    category_names: Sequence[str],
    *,
    valid: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
    profile: str = "category",
) -> pd.DataFrame:
    """Activation-weighted share, lift and significance of each category for each latent.

    Introduced in chapter 4 (chapters/04_features.ipynb). The building block of the other profiles; the
    statistics are defined in the module docstring.

    Parameters
    ----------
    codes : LatentCodes or (n, m) matrix
        Activations; negative values are ignored (weights are ``max(a, 0)``).
    categories : (n, C) array of 0/1
        One-hot or multi-hot category membership of every position.
    category_names : sequence of C str
    valid : (n,) bool, optional
        Positions to use (e.g. those with a known next item). Default: all.
    clusters : (n,) int, optional
        Cluster of each position (item or user id) for the effective sample size; default: every position
        its own cluster.
    profile : str
        Name put in the ``profile`` column (e.g. ``"genre:next"``).

    Returns
    -------
    pandas.DataFrame
        One row per (latent, category) with :data:`PROFILE_COLUMNS`. Latents that never fire on a valid
        position have NaN share, lift and z, ``p_value = q_value = 1`` and ``n_fires = 0``.

    Raises
    ------
    ValueError
        Shapes that do not match, categories not 0/1, negative cluster ids.
    """
    cols = _as_columns(codes, "codes")
    n, m = cols.n, cols.m
    y = categories.detach().cpu().numpy() if isinstance(categories, Tensor) else np.asarray(categories)
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"categories must have shape ({n}, C), got {y.shape}")
    names = [str(c) for c in category_names]
    if len(names) != y.shape[1]:
        raise ValueError(f"{len(names)} category names for {y.shape[1]} category columns")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("categories must be 0/1 indicators")
    ok = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if ok.shape != (n,):
        raise ValueError(f"valid must have shape ({n},), got {ok.shape}")
    y_t = torch.from_numpy(y.astype(np.float64))
    ok_t = torch.from_numpy(ok)
    fired = cols.keep(ok_t[cols.row] & (cols.val > 0))
    w = fired.val.double()
    weight = fired.per_unit(w)
    n_fires = fired.counts
    num = fired.matmul(w, y_t)
    base = y[ok].mean(axis=0) if ok.any() else np.zeros(y.shape[1])
    if clusters is None:
        sumsq = fired.per_unit(w * w)
    else:
        cl = np.asarray(clusters)
        if cl.shape != (n,) or not np.issubdtype(cl.dtype, np.integer) or (len(cl) and cl.min() < 0):
            raise ValueError(f"clusters must be ({n},) non-negative integers")
        k = int(cl.max()) + 1 if len(cl) else 1
        key = fired.unit * k + torch.from_numpy(cl.astype(np.int64))[fired.row]
        uniq, inv = torch.unique(key, return_inverse=True)
        per_cluster = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, w)
        sumsq = torch.bincount(uniq // k, weights=per_cluster**2, minlength=m).double()
    weight_np, sumsq_np = weight.numpy(), sumsq.numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        n_eff = np.where(weight_np > 0, weight_np**2 / sumsq_np, 0.0)
        share = num.numpy() / weight_np[:, None]
        lift = np.where(base[None, :] > 0, share / base[None, :], np.nan)
        se = np.sqrt(base * (1 - base))[None, :] / np.sqrt(n_eff)[:, None]
        z = np.where(se > 0, (share - base[None, :]) / se, 0.0)
        z = np.where(weight_np[:, None] > 0, z, np.nan)
        bb = np.broadcast_to(base[None, :], share.shape)
        kl = _bernoulli_kl(np.clip(share, 0.0, 1.0), bb)
        p = np.where((share > bb) & (bb > 0) & (bb < 1), np.exp(-n_eff[:, None] * kl), 1.0)
    p = np.where(np.isnan(p), 1.0, np.minimum(p, 1.0))
    frame = pd.DataFrame(
        {
            "latent": np.repeat(np.arange(m), len(names)),
            "profile": profile,
            "category": np.tile(np.array(names, dtype=object), m),
            "share": share.reshape(-1),
            "base_rate": np.tile(base, m),
            "lift": lift.reshape(-1),
            "z": z.reshape(-1),
            "p_value": p.reshape(-1),
            "q_value": _bh(p.reshape(-1)),
            "n_fires": np.repeat(n_fires.numpy(), len(names)),
            "n_eff": np.repeat(n_eff, len(names)),
        },
        columns=list(PROFILE_COLUMNS),
    )
    return frame


def _profile_inputs(codes: Any, store: ActivationStore, seq_data: SequenceData, which: str) -> np.ndarray:
    _check_aligned(codes, store)
    items = _store_items(store, which)
    _check_items(seq_data, items, f"{which}_item")
    return items


def genre_profile(
    codes: LatentCodes | Tensor | np.ndarray, store: ActivationStore, seq_data: SequenceData, which: Which = "next"
) -> pd.DataFrame:
    """Genre lift of every latent: genres of the next item (default) or of the input item.

    Introduced in chapter 4 (chapters/04_features.ipynb).

    Positions whose item is unknown (``next_item == 0``) are left out; clusters are items (a genre is a
    property of the item). On synthetic data the "genres" are the planted topics.

    Returns
    -------
    pandas.DataFrame
        :data:`PROFILE_COLUMNS`, ``profile == "genre:next"`` or ``"genre:input"``.
    """
    items = _profile_inputs(codes, store, seq_data, which)
    return category_profile(
        codes, seq_data.item_genres[items], seq_data.genre_names,
        valid=items > 0, clusters=items, profile=f"genre:{which}",
    )


def _item_years(seq_data: SequenceData) -> np.ndarray:
    years = np.full(seq_data.num_items + 1, np.nan)
    col = pd.to_numeric(seq_data.items["year"], errors="coerce").astype("float64").to_numpy()
    years[1:] = col
    return years


def decade_profile(
    codes: LatentCodes | Tensor | np.ndarray, store: ActivationStore, seq_data: SequenceData, which: Which = "next"
) -> pd.DataFrame:
    """Release-decade lift of every latent (decade of the next or input item, e.g. ``"1970s"``).

    Introduced in chapter 4 (chapters/04_features.ipynb). Items without a year are left out; clusters are
    items. Returns an empty table (with the usual columns) if no item has a year (synthetic data).
    """
    items = _profile_inputs(codes, store, seq_data, which)
    years = _item_years(seq_data)[items]
    valid = (items > 0) & ~np.isnan(years)
    if not valid.any():
        return pd.DataFrame(columns=list(PROFILE_COLUMNS))
    decade = np.where(valid, (np.floor(np.nan_to_num(years) / 10) * 10).astype(np.int64), -1)
    decades = np.unique(decade[valid])
    onehot = (decade[:, None] == decades[None, :]).astype(np.float64)
    names = [f"{d}s" for d in decades]
    return category_profile(codes, onehot, names, valid=valid, clusters=items, profile=f"decade:{which}")


def popularity_profile(
    codes: LatentCodes | Tensor | np.ndarray,
    store: ActivationStore,
    seq_data: SequenceData,
    which: Which = "next",
    *,
    quantiles: tuple[float, float] = (0.25, 0.75),
) -> pd.DataFrame:
    """Popularity lift of every latent, plus its activation-weighted mean popularity percentile.

    Introduced in chapter 4 (chapters/04_features.ipynb).

    An item's popularity is its number of interactions (``seq_data.items["popularity"]``). Positions are
    bucketed by the popularity of their (next or input) item at the ``quantiles`` of that popularity over
    positions: ``"long-tail"`` (at most the lower quantile), ``"popular"`` (above the upper one),
    ``"mid-popularity"`` in between; the base rates are therefore about 25 / 50 / 25 %.

    Returns
    -------
    pandas.DataFrame
        :data:`PROFILE_COLUMNS` (``profile == "popularity:next"``/``"popularity:input"``) plus
        ``mean_percentile``: the activation-weighted mean of the item's popularity percentile among items
        (0 = least, 1 = most popular item) and ``base_percentile``, the same mean over all valid positions.
    """
    lo_q, hi_q = quantiles
    if not 0.0 < lo_q < hi_q < 1.0:
        raise ValueError(f"quantiles must satisfy 0 < low < high < 1, got {quantiles}")
    items = _profile_inputs(codes, store, seq_data, which)
    pop = np.zeros(seq_data.num_items + 1)
    pop[1:] = seq_data.items["popularity"].to_numpy(dtype=np.float64)
    valid = items > 0
    if not valid.any():
        return pd.DataFrame(columns=[*PROFILE_COLUMNS, "mean_percentile", "base_percentile"])
    ranks = pd.Series(pop[1:]).rank(method="average").to_numpy()
    pct = np.zeros(seq_data.num_items + 1)
    pct[1:] = ranks / seq_data.num_items
    p_rows = pop[items]
    lo, hi = np.quantile(p_rows[valid], [lo_q, hi_q])
    bucket = np.where(p_rows <= lo, 0, np.where(p_rows > hi, 2, 1))
    onehot = np.zeros((len(items), 3))
    onehot[np.arange(len(items)), bucket] = 1.0
    frame = category_profile(
        codes, onehot, ["long-tail", "mid-popularity", "popular"],
        valid=valid, clusters=items, profile=f"popularity:{which}",
    )
    cols = _as_columns(codes, "codes")
    fired = cols.keep(torch.from_numpy(valid)[cols.row] & (cols.val > 0))
    w = fired.val.double()
    weight = fired.per_unit(w).numpy()
    num = fired.matmul(w, torch.from_numpy(pct[items])[:, None]).numpy()[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pct = np.where(weight > 0, num / weight, np.nan)
    frame["mean_percentile"] = np.repeat(mean_pct, 3)
    frame["base_percentile"] = float(pct[items][valid].mean())
    return frame


def _age_bucket(age: pd.Series) -> pd.Series:
    values = pd.to_numeric(age, errors="coerce").to_numpy(dtype=np.float64)
    out = np.full(len(values), None, dtype=object)
    lower = -np.inf
    for upper, name in AGE_BUCKETS:
        hit = (values >= lower) & (values < upper)
        out[hit] = name
        lower = upper
    return pd.Series(out, index=age.index)


def user_profile(
    codes: LatentCodes | Tensor | np.ndarray,
    store: ActivationStore,
    seq_data: SequenceData,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Lift of user attributes (age bucket, gender, occupation) among the positions where a latent fires.

    Introduced in chapter 4 (chapters/04_features.ipynb).

    ``store.user`` must be the internal user index (store collected from ``split.train``). Clusters are
    users: an attribute is constant over a user's positions, so a latent that fires only for one prolific
    user has ``n_eff`` near 1 and is not significant. Numeric ``age`` is bucketed with
    :data:`AGE_BUCKETS`.

    Parameters
    ----------
    columns : sequence of str, optional
        Columns of ``seq_data.users``; default ``age``, ``gender``, ``occupation`` where present, else
        every other column with at most 50 distinct values (e.g. ``main_topic`` on synthetic data).

    Returns
    -------
    pandas.DataFrame
        :data:`PROFILE_COLUMNS`, one profile ``"user:<column>"`` per column (BH within each).

    Raises
    ------
    ValueError
        Misaligned inputs, unknown columns or user indices outside the users table.
    """
    _check_aligned(codes, store)
    if not isinstance(seq_data, SequenceData):
        raise TypeError(f"seq_data must be a SequenceData, got {type(seq_data).__name__}")
    users = seq_data.users
    if len(store) and (store.user.min() < 0 or store.user.max() >= len(users)):
        raise ValueError(
            f"store.user holds indices up to {int(store.user.max())} but seq_data has {len(users)} users"
        )
    if columns is None:
        columns = [c for c in ("age", "gender", "occupation") if c in users.columns]
        if not columns:
            columns = [
                c for c in users.columns
                if c not in ("user_id", "zip_code") and users[c].nunique(dropna=True) <= 50
            ]
    missing = [c for c in columns if c not in users.columns]
    if missing:
        raise ValueError(f"unknown user column(s) {missing}; seq_data.users has {list(users.columns)}")
    frames = []
    for col in columns:
        values = _age_bucket(users[col]) if col == "age" and pd.api.types.is_numeric_dtype(users[col]) else users[col]
        per_user = values.to_numpy(dtype=object)[store.user]
        valid = pd.notna(per_user)
        if not valid.any():
            continue
        if col == "age" and pd.api.types.is_numeric_dtype(users[col]):
            order = [name for _, name in AGE_BUCKETS]
            cats = [c for c in order if c in set(per_user[valid])]
        else:
            cats = sorted({str(v) for v in per_user[valid]})
        labels = np.array([str(v) if ok else "" for v, ok in zip(per_user, valid)], dtype=object)
        onehot = (labels[:, None] == np.array(cats, dtype=object)[None, :]).astype(np.float64)
        frames.append(
            category_profile(codes, onehot, cats, valid=valid, clusters=store.user, profile=f"user:{col}")
        )
    if not frames:
        return pd.DataFrame(columns=list(PROFILE_COLUMNS))
    return pd.concat(frames, ignore_index=True)
