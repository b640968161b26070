"""Profiles: which categories (genre, decade, popularity, user attributes) a latent's positions belong to.

Introduced in chapter 4.

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

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from seqsae_lib.data import SequenceData
from seqsae_lib.interpret.codes import LatentCodes, column_entries
from seqsae_lib.interpret.positions import Which, check_aligned, check_store_items, position_items
from seqsae_lib.sae import ActivationStore

__all__ = [
    "AGE_BUCKETS",
    "PROFILE_COLUMNS",
    "category_profile",
    "decade_profile",
    "genre_profile",
    "popularity_profile",
    "user_profile",
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

    Introduced in chapter 4. The building block of the other profiles; the
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
    cols = column_entries(codes, "codes")
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
    check_aligned(codes, store)
    items = position_items(store, which)
    check_store_items(seq_data, items, f"{which}_item")
    return items


def genre_profile(
    codes: LatentCodes | Tensor | np.ndarray, store: ActivationStore, seq_data: SequenceData, which: Which = "next"
) -> pd.DataFrame:
    """Genre lift of every latent: genres of the next item (default) or of the input item.

    Introduced in chapter 4.

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

    Introduced in chapter 4. Items without a year are left out; clusters are
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

    Introduced in chapter 4.

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
    cols = column_entries(codes, "codes")
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

    Introduced in chapter 4.

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
    check_aligned(codes, store)
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
