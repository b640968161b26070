"""Tests for seqsae_lib.interpret.labels (chapter 4): automatic labels from profiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqsae_lib.interpret import DEAD, NO_PROFILE, PROFILE_COLUMNS, auto_label, category_profile, evidence_table

GENRES = ["Action", "Comedy", "Drama", "Horror", "Children's"]


def planted_profile(n: int = 6000, n_items: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Genre profiles of latent 0 (fires only on Horror next items) and latent 1 (random), on items with
    random genres; and an input-genre profile where nothing is planted."""
    rng = np.random.default_rng(seed)
    item_genres = (rng.random((n_items, len(GENRES))) < 0.2).astype(float)
    item_genres[item_genres.sum(1) == 0, 2] = 1.0
    next_item = rng.integers(0, n_items, size=n)
    input_item = rng.integers(0, n_items, size=n)
    y_next, y_in = item_genres[next_item], item_genres[input_item]
    acts = np.zeros((n, 2))
    horror = y_next[:, 3] == 1
    only_horror = horror & (y_next.sum(1) == 1)
    acts[only_horror, 0] = 1.0 + rng.random(only_horror.sum())
    fire = rng.random(n) < 0.1
    acts[fire, 1] = rng.random(fire.sum())
    nxt = category_profile(acts, y_next, GENRES, clusters=next_item, profile="genre:next")
    inp = category_profile(acts, y_in, GENRES, clusters=input_item, profile="genre:input")
    return nxt, inp


def row(latent, profile, category, share, base, q=1e-6):
    return {
        "latent": latent, "profile": profile, "category": category, "share": share, "base_rate": base,
        "lift": share / base, "z": 10.0, "p_value": q, "q_value": q, "n_fires": 100, "n_eff": 50.0,
    }


def test_planted_horror_latent_gets_horror_and_random_latent_gets_nothing():
    nxt, inp = planted_profile()
    labels = auto_label([nxt, inp])
    assert list(labels.columns) == ["label", "confidence", "n_evidence", "evidence", "source"]
    assert "Horror" in labels.loc[0, "label"]
    assert labels.loc[0, "confidence"] >= 0.9 and labels.loc[0, "source"] == "auto"
    assert "Horror" in labels.loc[0, "evidence"]
    assert labels.loc[1, "label"] == NO_PROFILE and labels.loc[1, "confidence"] == 0.0
    assert labels.loc[1, "source"] == "none"
    assert labels["confidence"].between(0, 1).all()


def test_label_composition_decades_popularity_users():
    table = pd.DataFrame(
        [
            row(0, "genre:next", "Horror", 0.7, 0.05),
            row(0, "decade:next", "1970s", 0.4, 0.1),
            row(0, "decade:next", "1980s", 0.35, 0.15),
            row(0, "decade:next", "1990s", 0.05, 0.5),  # depleted, not evidence
            row(1, "genre:next", "Children's", 0.6, 0.07),
            row(1, "popularity:next", "popular", 0.8, 0.25),
            row(2, "user:gender", "F", 0.9, 0.3),
            row(2, "user:age", "18-24", 0.6, 0.2),
            row(3, "genre:next", "Drama", 0.5, 0.4, q=1e-9),  # lift 1.25 < min_lift
            row(4, "genre:next", "Western", 0.9, 0.02, q=0.2),  # not significant
            row(5, "genre:next", "Documentary", 0.05, 0.005),  # share below min_share
            row(6, "decade:next", "1990s", 0.5, 0.2),
            row(6, "decade:next", "2000s", 0.4, 0.1),
        ],
        columns=list(PROFILE_COLUMNS),
    )
    labels = auto_label(table)
    assert labels.loc[0, "label"] == "Horror, 1970s-80s"
    assert labels.loc[1, "label"] == "Children's · popular"
    assert labels.loc[2, "label"] == "users: women, age 18-24"
    for lat in (3, 4, 5):
        assert labels.loc[lat, "label"] == NO_PROFILE
    assert labels.loc[6, "label"] == "1990s-2000s"
    assert labels.loc[0, "confidence"] == pytest.approx((0.7 - 0.05) / 0.95)
    assert labels.loc[1, "confidence"] == pytest.approx((0.6 - 0.07) / 0.93)
    # stricter filters remove the evidence
    assert auto_label(table, min_lift=50)["label"].eq(NO_PROFILE).all()
    ev = evidence_table(table)
    assert set(ev["latent"]) == {0, 1, 2, 6} and (ev.groupby("latent")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
    assert auto_label(table, max_parts=1).loc[0, "label"] == "Horror"


def test_dead_latents_and_latent_selection():
    table = pd.DataFrame([row(0, "genre:next", "Horror", 0.7, 0.05)], columns=list(PROFILE_COLUMNS))
    stats = pd.DataFrame({"n_fires": [10, 0, 5]}, index=pd.RangeIndex(3, name="latent"))
    labels = auto_label(table, stats=stats)
    assert list(labels.index) == [0, 1, 2]
    assert labels.loc[1, "label"] == DEAD and labels.loc[1, "source"] == "dead"
    assert labels.loc[2, "label"] == NO_PROFILE
    assert list(auto_label(table, latents=[0]).index) == [0]


def test_external_labeller_hook():
    nxt, inp = planted_profile(n=3000)
    seen = {}

    def labeller(latent, evidence):
        seen[latent] = evidence
        return "spooky films" if latent == 0 else None

    labels = auto_label([nxt, inp], labeller=labeller)
    assert labels.loc[0, "label"] == "spooky films" and labels.loc[0, "source"] == "labeller"
    assert labels.loc[1, "label"] == NO_PROFILE  # None keeps the automatic label
    assert set(seen) == {0, 1} and "Horror" in set(seen[0]["category"]) and seen[1].empty
    with pytest.raises(TypeError, match="str"):
        auto_label(nxt, labeller=lambda latent, ev: 3)
    with pytest.raises(TypeError, match="callable"):
        auto_label(nxt, labeller="gpt")


def test_bad_inputs():
    nxt, _ = planted_profile(n=500)
    with pytest.raises(ValueError, match="min_lift"):
        auto_label(nxt, min_lift=0.5)
    with pytest.raises(ValueError, match="alpha"):
        auto_label(nxt, alpha=0)
    with pytest.raises(ValueError, match="column"):
        auto_label(nxt.drop(columns=["q_value"]))
    with pytest.raises(TypeError):
        auto_label([])
