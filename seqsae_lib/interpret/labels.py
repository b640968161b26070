"""Short automatic labels for SAE latents from their profiles.

Introduced in chapter 4.

:func:`auto_label` reads the profile tables of :mod:`seqsae_lib.interpret.profiles` (genre, decade, popularity,
user attributes) and names each latent by its strongest *significant* enrichments, e.g.
``"Horror, 1970s-80s"`` or ``"Children's · popular"``; ``"no clear profile"`` when nothing passes the
filters. No language model is involved unless a ``labeller`` is passed explicitly.

Which entries count
-------------------
A (latent, category) cell is *evidence* when ``q_value <= alpha`` (Benjamini-Hochberg within its profile),
``lift >= min_lift`` and ``share >= min_share`` (the category covers a real part of the latent's
activation mass, not a sliver of a rare genre). Evidence is ranked by ``share * log2(lift)``, the cell's
contribution to the KL divergence between the latent's activation-weighted category distribution and the
base distribution: high when the category is both over-represented and a large part of what the latent
fires on.

Confidence
----------
``confidence = (share - base_rate) / (1 - base_rate)`` of the top-ranked evidence cell, clipped to [0, 1]:
0 means the category is no more common where the latent fires than anywhere (never the case for evidence,
which has ``lift >= min_lift``), 1 means every (activation-weighted) firing position has it. A latent
firing only on Horror films gets 1.0; "no clear profile" gets 0. Confidence measures how *pure* the
leading term is, not how many terms there are or how significant they are (significance is the filter).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
import numpy as np
import pandas as pd

from seqsae_lib.interpret.profiles import PROFILE_COLUMNS
from seqsae_lib.utils.checks import check_float, check_int

__all__ = ["NO_PROFILE", "DEAD", "auto_label", "evidence_table"]

NO_PROFILE = "no clear profile"
"""Label of a latent without significant evidence."""
DEAD = "dead (never fires)"
"""Label of a latent that never fires (needs ``stats``)."""

_FAMILY_ORDER = ("genre", "decade", "popularity", "user")
_GENDER = {"F": "women", "M": "men"}

Labeller = Callable[[int, pd.DataFrame], "str | None"]


def _as_table(profiles: pd.DataFrame | Iterable[pd.DataFrame]) -> pd.DataFrame:
    if isinstance(profiles, pd.DataFrame):
        table = profiles
    else:
        frames = list(profiles)
        if not frames or not all(isinstance(f, pd.DataFrame) for f in frames):
            raise TypeError(
                "profiles must be a DataFrame or a non-empty sequence of DataFrames from seqsae_lib.interpret.profiles"
            )
        non_empty = [f for f in frames if len(f)]
        table = pd.concat(non_empty, ignore_index=True) if non_empty else frames[0]
    missing = [c for c in PROFILE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"profiles lack the column(s) {missing}; pass the outputs of genre_profile, decade_profile, ..."
        )
    return table


def evidence_table(
    profiles: pd.DataFrame | Iterable[pd.DataFrame],
    *,
    min_lift: float = 1.5,
    alpha: float = 0.01,
    min_share: float = 0.1,
) -> pd.DataFrame:
    """The profile cells that count as evidence (see the module docstring), with their ``score``.

    Introduced in chapter 4.

    Returns
    -------
    pandas.DataFrame
        The passing rows of the profiles plus ``family`` (``genre``, ``decade``, ``popularity``, ``user``,
        or the profile name), ``attribute`` (the part after ``:``) and ``score = share * log2(lift)``,
        sorted by latent and descending score.
    """
    _check_thresholds(min_lift, alpha, min_share)
    table = _as_table(profiles)
    ok = (
        (table["q_value"].astype(float) <= alpha)
        & (table["lift"].astype(float) >= min_lift)
        & (table["share"].astype(float) >= min_share)
    )
    ev = table.loc[ok.fillna(False)].copy()
    split = ev["profile"].astype(str).str.split(":", n=1)
    ev["family"] = split.str[0]
    ev["attribute"] = split.str[1].fillna("")
    ev["score"] = ev["share"].astype(float) * np.log2(ev["lift"].astype(float))
    return ev.sort_values(["latent", "score"], ascending=[True, False]).reset_index(drop=True)


def _check_thresholds(min_lift: float, alpha: float, min_share: float) -> None:
    check_float("min_lift", min_lift, 1.0, exclusive_minimum=True)
    check_float("alpha", alpha, 0.0, 1.0, exclusive_minimum=True, exclusive_maximum=True)
    check_float("min_share", min_share, 0.0, 1.0)


def _decade_value(name: str) -> int | None:
    match = re.fullmatch(r"(\d{3,4})s", str(name))
    return int(match.group(1)) if match else None


def _decade_term(rows: list[dict]) -> str:
    """The contiguous run of significant decades containing the best one: ``1970s-80s``."""
    best = rows[0]["category"]
    years = sorted({y for y in (_decade_value(r["category"]) for r in rows) if y is not None})
    b = _decade_value(best)
    if b is None or not years:
        return str(best)
    lo = hi = b
    while lo - 10 in years:
        lo -= 10
    while hi + 10 in years:
        hi += 10
    if lo == hi:
        return f"{lo}s"
    tail = f"{hi % 100:02d}s" if lo // 100 == hi // 100 else f"{hi}s"
    return f"{lo}s-{tail}"


def _user_term(rows: list[dict], max_terms: int) -> str:
    best_per_attr: dict[str, dict] = {}
    for r in rows:  # rows are sorted by score
        best_per_attr.setdefault(r["attribute"], r)
    terms = []
    for r in list(best_per_attr.values())[:max_terms]:
        attr, cat = r["attribute"], str(r["category"])
        if attr == "gender" and cat in _GENDER:
            terms.append(_GENDER[cat])
        elif attr == "age":
            terms.append(f"age {cat}")
        else:
            terms.append(cat)
    return "users: " + ", ".join(terms)


def _compose(rows: list[dict], max_parts: int, max_genres: int) -> tuple[str, list[dict]]:
    """Label text and the evidence rows used, from one latent's evidence (sorted by score)."""
    families: dict[str, list[dict]] = {}
    for r in rows:
        families.setdefault(r["family"], []).append(r)
    ranked = sorted(families, key=lambda f: -families[f][0]["score"])[:max_parts]
    chosen = sorted(ranked, key=lambda f: _FAMILY_ORDER.index(f) if f in _FAMILY_ORDER else len(_FAMILY_ORDER))
    content, rest, used = [], [], []
    for fam in chosen:
        fam_rows = families[fam]
        if fam == "genre":
            seen: dict[str, dict] = {}
            for r in fam_rows:
                seen.setdefault(str(r["category"]), r)
            picked = list(seen.values())[:max_genres]
            content.append("/".join(str(r["category"]) for r in picked))
            used.extend(picked)
        elif fam == "decade":
            term = _decade_term(fam_rows)
            content.append(term)
            used.append(fam_rows[0])
        elif fam == "user":
            rest.append(_user_term(fam_rows, 2))
            used.append(fam_rows[0])
        else:
            rest.append(str(fam_rows[0]["category"]))
            used.append(fam_rows[0])
    parts = [", ".join(content)] if content else []
    parts.extend(rest)
    return " · ".join(parts), used


def _describe(r: dict) -> str:
    q = r["q_value"]
    return (
        f"{r['profile']} {r['category']}: {r['share']:.0%} vs {r['base_rate']:.0%} "
        f"(x{r['lift']:.1f}, q={q:.1g})"
    )


def auto_label(
    profiles: pd.DataFrame | Iterable[pd.DataFrame],
    *,
    min_lift: float = 1.5,
    alpha: float = 0.01,
    min_share: float = 0.1,
    max_parts: int = 3,
    max_genres: int = 2,
    latents: Sequence[int] | None = None,
    stats: pd.DataFrame | None = None,
    labeller: Labeller | None = None,
) -> pd.DataFrame:
    """A short label and a confidence for every latent, from its significant profile entries.

    Introduced in chapter 4.

    Parameters
    ----------
    profiles : DataFrame or sequence of DataFrames
        Outputs of :func:`~seqsae_lib.interpret.profiles.genre_profile`, ``decade_profile``,
        ``popularity_profile``, ``user_profile`` (any subset; concatenated).
    min_lift, alpha, min_share : float
        Evidence filters (module docstring).
    max_parts : int, default 3
        At most this many families (genre, decade, popularity, user) in a label, the strongest ones.
    max_genres : int, default 2
        At most this many genres, joined by ``/`` (``"Horror/Thriller"``).
    latents : sequence of int, optional
        Latents to label (default: every latent in the profiles and in ``stats``).
    stats : DataFrame, optional
        :func:`~seqsae_lib.interpret.stats.feature_stats`; latents with ``n_fires == 0`` are labelled
        :data:`DEAD`.
    labeller : callable, optional
        ``labeller(latent, evidence) -> str | None``, called for every latent that is not dead with its
        evidence rows (:func:`evidence_table` rows of that latent, possibly empty). A returned string
        replaces the automatic label (``source == "labeller"``); ``None`` keeps it. Never used by
        default: plug in an LLM or a human here.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``latent``: ``label``, ``confidence`` (module docstring), ``n_evidence`` (evidence
        cells), ``evidence`` (the terms used, human-readable) and ``source`` (``"auto"``, ``"none"``,
        ``"dead"`` or ``"labeller"``).

    Raises
    ------
    ValueError, TypeError
        Bad thresholds, tables without the profile columns, a labeller that is not callable or returns a
        non-string.
    """
    _check_thresholds(min_lift, alpha, min_share)
    check_int("max_parts", max_parts, 1)
    check_int("max_genres", max_genres, 1)
    if labeller is not None and not callable(labeller):
        raise TypeError(f"labeller must be callable or None, got {type(labeller).__name__}")
    table = _as_table(profiles)
    ev = evidence_table(table, min_lift=min_lift, alpha=alpha, min_share=min_share)
    if latents is None:
        universe = set(int(x) for x in table["latent"].unique())
        if stats is not None:
            universe |= set(int(x) for x in stats.index)
        ids = sorted(universe)
    else:
        ids = [int(x) for x in latents]
    dead: set[int] = set()
    if stats is not None:
        if "n_fires" not in stats:
            raise ValueError("stats must be a feature_stats() table (with n_fires)")
        dead = set(int(x) for x in stats.index[stats["n_fires"].to_numpy() == 0])
    by_latent: dict[int, list[dict]] = {}
    for rec in ev.to_dict("records"):
        by_latent.setdefault(int(rec["latent"]), []).append(rec)
    out = []
    for lat in ids:
        rows = by_latent.get(lat, [])
        if lat in dead:
            label, conf, used, source = DEAD, 0.0, [], "dead"
        elif rows:
            label, used = _compose(rows, int(max_parts), int(max_genres))
            top = rows[0]
            base = float(top["base_rate"])
            conf = float(np.clip((float(top["share"]) - base) / (1.0 - base), 0.0, 1.0)) if base < 1 else 0.0
            source = "auto"
        else:
            label, conf, used, source = NO_PROFILE, 0.0, [], "none"
        if labeller is not None and lat not in dead:
            custom = labeller(lat, pd.DataFrame(rows, columns=ev.columns))
            if custom is not None:
                if not isinstance(custom, str):
                    raise TypeError(
                        f"labeller returned {type(custom).__name__} for latent {lat}; expected str or None"
                    )
                label, source = custom, "labeller"
        out.append(
            {
                "latent": lat,
                "label": label,
                "confidence": conf if math.isfinite(conf) else 0.0,
                "n_evidence": len(rows),
                "evidence": "; ".join(_describe(r) for r in used),
                "source": source,
            }
        )
    frame = pd.DataFrame(out, columns=["latent", "label", "confidence", "n_evidence", "evidence", "source"])
    return frame.set_index("latent")
