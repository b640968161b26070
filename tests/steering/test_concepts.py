"""Tests for seqsae_lib.steering.concepts, catalogue_concepts, promotion and selection (chapter 5)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from seqsae_lib.sae import ActivationStore, SAEConfig, SparseAutoencoder, collect_activations
from seqsae_lib.steering import (
    SELECTION_COLUMNS,
    Concept,
    UnknownConceptError,
    attribute_concept,
    combine,
    concept_lift,
    concept_steering,
    decade_concept,
    genre_concept,
    get_concept,
    known_concepts,
    latent_promotion,
    popularity_concept,
    select_latents,
    steered_scores,
    year_range_concept,
)
from seqsae_lib.interpret import LatentCodes, latent_activations
from seqsae_lib.model import UnknownCapturePointError

D = 16


@pytest.fixture(scope="module")
def dated(seq_data):
    """The synthetic data with made-up release years 1950..1999 (synthetic items have none)."""
    years = 1950 + (np.arange(seq_data.num_items) * 7) % 50
    items = seq_data.items.assign(year=pd.array(years, dtype="Int64"))
    items.loc[3, "year"] = pd.NA
    return dataclasses.replace(seq_data, items=items)


# seq_data, split, model (the shared tiny SASRec: d_model=D, max_len=12) and concept_direction: conftest.py


def planted_sae(direction: torch.Tensor, latent: int = 7) -> SparseAutoencoder:
    """A random SAE whose ``latent`` reads and writes ``direction`` (e.g. a concept direction)."""
    sae = SparseAutoencoder(SAEConfig(d_in=D, d_sae=4 * D, kind="topk", k=4, normalize_input=False, seed=1))
    with torch.no_grad():
        sae.W_dec[latent] = direction
        sae.W_enc[:, latent] = sae.W_dec[latent]
    return sae.eval()


# --------------------------------------------------------------------------------------------------------
# concepts from metadata
# --------------------------------------------------------------------------------------------------------


def test_genre_concept_is_the_genre_column(seq_data):
    c = genre_concept(seq_data, "topic 2")
    np.testing.assert_array_equal(c.item_mask, seq_data.item_genres[:, 2])
    assert c.item_mask[0] == 0 and c.kind == "genre" and c.name == "topic 2"
    assert genre_concept(seq_data, "TOPIC 2").name == "topic 2"
    assert c.n_items == int(seq_data.item_genres[:, 2].sum())
    assert math.isclose(c.base_rate, c.n_items / seq_data.num_items)
    with pytest.raises(UnknownConceptError, match=r"unknown genre 'Comedy'.*\['topic 0', 'topic 1', 'topic 2', 'topic 3'\]"):
        genre_concept(seq_data, "Comedy")


def test_decade_and_year_concepts(dated, seq_data):
    years = pd.to_numeric(dated.items["year"]).to_numpy(dtype=float, na_value=np.nan)
    c = decade_concept(dated, 1970)
    expected = np.concatenate([[0.0], ((years >= 1970) & (years < 1980)).astype(float)])
    np.testing.assert_array_equal(c.item_mask, expected)
    assert c.name == "1970s"
    assert decade_concept(dated, "1970s").n_items == c.n_items
    assert c.item_mask[3] == 0  # no year: not in any decade
    old = year_range_concept(dated, end=1970)
    np.testing.assert_array_equal(old.item_mask[1:], np.nan_to_num(years, nan=3000) < 1970)
    assert old.name == "before 1970"
    assert year_range_concept(dated, 1960, 1980).name == "1960-1979"
    with pytest.raises(UnknownConceptError, match=r"1930s.*decades present: \['1950s', '1960s', '1970s', '1980s', '1990s'\]"):
        decade_concept(dated, 1930)
    with pytest.raises(ValueError, match="multiple of 10"):
        decade_concept(dated, 1975)
    with pytest.raises(ValueError, match="no release years"):
        decade_concept(seq_data, 1970)
    with pytest.raises(ValueError, match="start < end"):
        year_range_concept(dated, 1980, 1970)


def test_popularity_concepts_split_the_catalogue(seq_data):
    pop = np.concatenate([[0], seq_data.items["popularity"].to_numpy()])
    head = popularity_concept(seq_data, "popular", 0.25)
    tail = popularity_concept(seq_data, "long_tail", 0.25)
    assert head.n_items == math.ceil(0.25 * seq_data.num_items)
    np.testing.assert_array_equal(head.item_mask[1:] + tail.item_mask[1:], np.ones(seq_data.num_items))
    assert pop[head.items].min() >= pop[tail.items].max()
    assert popularity_concept(seq_data, "long-tail", 0.25).n_items == tail.n_items
    with pytest.raises(UnknownConceptError, match="popular.*long_tail"):
        popularity_concept(seq_data, "niche")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"quantile must be in \(0\.0, 1\.0\), got 1\.5"):
        popularity_concept(seq_data, "popular", 1.5)


def test_attribute_concept(dated):
    c = attribute_concept(dated, "year", lambda y: y < 1960, name="before 1960")
    np.testing.assert_array_equal(c.item_mask, year_range_concept(dated, end=1960).item_mask)
    soft = attribute_concept(dated, "popularity", lambda p: min(1.0, p / 100))
    assert 0 < soft.item_mask.max() <= 1 and soft.kind == "attribute"
    topics = attribute_concept(dated, "genres", lambda g: "topic 1" in g)
    np.testing.assert_array_equal(topics.item_mask, genre_concept(dated, "topic 1").item_mask)
    with pytest.raises(UnknownConceptError, match=r"'rating'.*columns of seq_data.items: \['movielens_id', 'title'"):
        attribute_concept(dated, "rating", lambda r: r > 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attribute_concept(dated, "popularity", lambda p: p)


def test_concept_names_and_lookup(dated, seq_data):
    names = known_concepts(dated)
    assert names[:4] == ["topic 0", "topic 1", "topic 2", "topic 3"]
    assert "1970s" in names and "popular" in names and "long_tail" in names
    assert get_concept(dated, "topic 1").kind == "genre"
    assert get_concept(dated, "1980s").kind == "decade"
    assert get_concept(dated, "Popular").kind == "popularity"
    c = get_concept(dated, "topic 3")
    assert get_concept(dated, c) is c
    with pytest.raises(UnknownConceptError, match=r"unknown concept 'Horror'.*\['topic 0'.*'long_tail'\]"):
        get_concept(seq_data, "Horror")
    with pytest.raises(KeyError):  # also a KeyError
        get_concept(seq_data, "1970s")


def test_concept_validation_share_and_contrast():
    w = np.array([0, 1, 0, 0.5, 1.0])
    c = Concept("x", w)
    assert c.share(np.array([[1, 2], [3, 4]])) == pytest.approx((0.5 + 0.75) / 2)
    np.testing.assert_allclose(c.share(np.array([[1, 2], [3, 4]]), reduce="none"), [0.5, 0.75])
    contrast = c.contrast()
    logits = np.array([0, 5.0, 1.0, 3.0, 2.0])
    inside = (1 * 5 + 0.5 * 3 + 1 * 2) / 2.5
    outside = (0 * 5 + 1 * 1 + 0.5 * 3 + 0 * 2) / 1.5
    assert contrast @ logits == pytest.approx(inside - outside)
    assert (~c).name == "not x" and (~c).item_mask[0] == 0
    with pytest.raises(ValueError, match="padding"):
        Concept("x", np.array([1, 1, 0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Concept("x", np.array([0, 2.0, 0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Concept("x", np.array([0, np.nan, 0]))
    with pytest.raises(ValueError, match="every item"):
        Concept("all", np.array([0, 1, 1])).contrast()


# --------------------------------------------------------------------------------------------------------
# latent selection
# --------------------------------------------------------------------------------------------------------


def test_concept_lift_known_answer():
    # 4 positions, next items 1, 2, 3, 0 (unknown); concept = {1, 3}
    store = ActivationStore(
        capture_point="final", acts=torch.zeros(4, 2), user=np.zeros(4, dtype=np.int64),
        position=np.arange(4), input_item=np.ones(4, dtype=np.int64), next_item=np.array([1, 2, 3, 0]),
    )
    concept = Concept("c", np.array([0, 1, 0, 1.0]))
    codes = LatentCodes.from_dense(torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 0.0], [5.0, 3.0]]))
    lift = concept_lift(codes, store, concept)
    base = 2 / 3  # valid positions: next items 1, 2, 3
    assert lift["base_rate"].tolist() == pytest.approx([base, base])
    assert lift.loc[0, "share"] == pytest.approx(2 / 3)  # weights 2 (item 1) and 1 (item 2); position 3 is invalid
    assert lift.loc[0, "lift"] == pytest.approx(1.0)
    assert lift.loc[1, "share"] == pytest.approx(0.0) and lift.loc[1, "n_fires"] == 1
    assert list(lift["n_fires"]) == [2, 1]


def test_promotion_at_final_is_exact(model, seq_data, concept_direction):
    concept = genre_concept(seq_data, "topic 1")
    sae = planted_sae(concept_direction(model, concept))
    prom = latent_promotion(concept, sae, model, capture_point="final")
    assert (prom["method"] == "exact").all() and len(prom) == sae.d_sae
    emb = model.item_emb.weight.detach().double()
    delta = sae.W_dec.detach().double() @ emb[1:].T
    c = torch.from_numpy(concept.contrast()[1:])
    np.testing.assert_allclose(prom["promotion"].to_numpy(), (delta @ c).numpy(), rtol=1e-4, atol=1e-6)
    spread = delta.std(1, unbiased=False).numpy()
    np.testing.assert_allclose(prom["specificity"].to_numpy(), (delta @ c).numpy() / spread, rtol=1e-4, atol=1e-5)


def test_select_latents_finds_a_planted_concept_direction(model, split, seq_data, concept_direction):
    concept = genre_concept(seq_data, "topic 1")
    sae = planted_sae(concept_direction(model, concept), latent=7)
    sel = select_latents(concept, sae, model, n=3, capture_point="final")
    assert list(sel.columns) == list(SELECTION_COLUMNS)
    assert len(sel) == 3 and int(sel.iloc[0]["latent"]) == 7
    assert sel["score"].is_monotonic_decreasing and (sel["n_candidates"] == sae.d_sae).all()
    # with codes: the read-side filter keeps only latents that fire often enough with lift >= min_lift
    store = collect_activations(model, split.train, "final", next_items=split.valid_targets, progress=False)
    codes = latent_activations(sae, store)
    sel2 = select_latents(concept, sae, model, codes=codes, store=store, n=4, min_fires=3, min_lift=1.0, capture_point="final")
    assert (sel2["lift"] >= 1.0).all() and (sel2["n_fires"] >= 3).all()
    lift = concept_lift(codes, store, concept)
    ok = (lift["n_fires"] >= 3) & (lift["lift"] >= 1.0)
    assert set(sel2["latent"]) <= set(np.flatnonzero(ok.to_numpy()))
    with pytest.warns(UserWarning, match="no latent"):
        empty = select_latents(concept, sae, model, codes=codes, store=store, min_lift=1e6, capture_point="final")
    assert len(empty) == 0
    assert concept_steering(concept, 2.0, empty, sae, capture_point="final").is_identity


def test_select_latents_at_an_inner_point_uses_finite_differences(model, split, seq_data):
    concept = genre_concept(seq_data, "topic 0")
    sae = SparseAutoencoder(SAEConfig(d_in=D, d_sae=2 * D, kind="topk", k=4, normalize_input=False, seed=2)).eval()
    sel = select_latents(concept, sae, model, n=3, sequences=split.train, n_states=24, refine=6, alpha=0.5, capture_point="block_1")
    assert len(sel) == 3 and (sel["method"] == "finite-difference").all()
    # the finite difference of the best latent, by hand
    lat = int(sel.iloc[0]["latent"])
    fd = latent_promotion(concept, sae, model, latents=[lat], sequences=split.train, n_states=24, alpha=0.5, capture_point="block_1")
    assert fd.loc[lat, "promotion"] == pytest.approx(sel.iloc[0]["promotion"], rel=1e-5)
    lin = latent_promotion(concept, sae, model, latents=[lat], sequences=split.train, n_states=24,
                           alpha=0.5, method="linearised", capture_point="block_1")
    assert np.sign(lin.loc[lat, "promotion"]) == np.sign(fd.loc[lat, "promotion"])
    with pytest.raises(ValueError, match="needs sequences"):
        latent_promotion(concept, sae, model, capture_point="block_1")


def test_concept_steering_rules_and_signs(model, seq_data, concept_direction):
    concept = genre_concept(seq_data, "topic 1")
    sae = planted_sae(concept_direction(model, concept), latent=7)
    towards = concept_steering(concept, 2.0, [7, 9], sae, capture_point="final")
    assert [(e.latent, e.op, e.value) for e in towards.edits] == [(7, "add", 2.0), (9, "add", 2.0)]
    assert towards.label.startswith("more topic 1")
    away = concept_steering(concept, -2.0, [7], sae, capture_point="final")
    assert away.edits[0].value == -2.0 and away.label.startswith("less topic 1")
    assert concept_steering(concept, 0.0, [7], sae, capture_point="final").is_identity
    assert concept_steering(concept, -1.5, [7], sae, rule="scale", capture_point="final").edits[0].value == 0.0
    assert concept_steering(concept, 0.5, [7], sae, rule="scale", capture_point="final").edits[0].value == 1.5
    std = torch.ones(sae.d_sae)
    assert concept_steering(concept, 1.0, [7], sae, rule="shift_z", latent_std=std, capture_point="final").edits[0].op == "shift_z"
    # towards raises the concept items' scores relative to the rest, away lowers them
    ids = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    base = steered_scores(model, None, ids)[:, 1:]
    c = torch.from_numpy(concept.contrast()[1:]).float()
    up = (steered_scores(model, towards, ids)[:, 1:] - base) @ c
    down = (steered_scores(model, away, ids)[:, 1:] - base) @ c
    assert (up > 0).all() and (down < 0).all()
    other = genre_concept(seq_data, "topic 2")
    mix = combine(towards, concept_steering(other, -1.0, [3], sae, capture_point="final"))
    assert len(mix.edits) == 3 and "less topic 2" in mix.label
    with pytest.raises(ValueError, match=r"unknown rule 'clamp'.*\['add', 'shift_z', 'scale'\]"):
        concept_steering(concept, 1.0, [7], sae, rule="clamp", capture_point="final")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        concept_steering(concept, float("nan"), [7], sae, capture_point="final")
    with pytest.raises(ValueError, match="latent_std"):
        concept_steering(concept, 1.0, [7], sae, rule="shift_z", capture_point="final")
    with pytest.raises(ValueError, match="out of range"):
        concept_steering(concept, 1.0, [640], sae, capture_point="final")


def test_selection_errors(model, seq_data, split, concept_direction):
    concept = genre_concept(seq_data, "topic 1")
    sae = planted_sae(concept_direction(model, concept))
    with pytest.raises(UnknownCapturePointError, match="valid names"):
        select_latents(concept, sae, model, capture_point="block_9")
    wide = SparseAutoencoder(SAEConfig(d_in=2 * D, d_sae=4 * D, kind="topk", k=4))
    with pytest.raises(ValueError, match=r"d_in=32.*d_model=16"):
        select_latents(concept, wide, model, capture_point="final")
    with pytest.raises(ValueError, match="both codes and store"):
        select_latents(concept, sae, model, codes=torch.zeros(3, sae.d_sae), capture_point="final")
    store = collect_activations(model, split.train[:5], "block_0", progress=False)
    with pytest.raises(ValueError, match="'block_0', not at 'final'"):
        select_latents(concept, sae, model, codes=latent_activations(sae, store), store=store, capture_point="final")
    small = Concept("small", np.array([0, 1.0, 0]))
    with pytest.raises(ValueError, match="covers 2 items"):
        latent_promotion(small, sae, model, capture_point="final")
