"""Tests for seqsae_lib.steering.concept_table and what it builds on: greedy latent selection, precomputed
screens, and the last-position fast path of SteeringCache at inner capture points (chapter 5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import seqsae_lib as sl
from seqsae_lib.interpret import latent_activations, latent_item_effects
from seqsae_lib.sae import SAEConfig, SAETrainConfig, collect_activations, train_sae
from seqsae_lib.steering import (
    BASELINES, Steering, SteeringCache, UnknownConceptError, VectorSteering, concept_steering_table, get_concept,
    select_latents, steered_scores, table_concepts, wins_ties_losses,
)

COSTS = (0.01, 0.03)
MIN_ITEMS = 5


@pytest.fixture(scope="module")
def model(tiny_split, train_tiny_sasrec):
    return train_tiny_sasrec(tiny_split, epochs=3)


@pytest.fixture(scope="module")
def parts(model, tiny_split):
    saes, stores = {}, {}
    for cp in ("final", "block_0"):
        store = collect_activations(model, tiny_split.train, cp, next_items=tiny_split.valid_targets)
        sae, _ = train_sae(store, SAEConfig(d_in=16, d_sae=64, kind="topk", k=4, seed=0),
                           SAETrainConfig(batch_size=64, num_epochs=3, progress=False, seed=0, num_threads=1))
        saes[cp], stores[cp] = sae.eval(), store
    return saes, stores


@pytest.fixture(scope="module")
def result(model, parts, tiny_split, tiny_seq):
    saes, stores = parts
    return concept_steering_table(model, saes, stores, tiny_split, tiny_seq, costs=COSTS, min_items=MIN_ITEMS,
                                  n_latents=(1, 3), min_fires=2, n_boot=200, progress=False, return_curves=True)


def test_one_row_per_concept_with_the_documented_columns(result, tiny_seq):
    table, _ = result
    expected = table_concepts(tiny_seq, MIN_ITEMS)
    assert expected and list(table.index) == expected  # the synthetic topics (no release years)
    methods = ["SAE final", "SAE block_0", *BASELINES]
    for m in methods:
        for c in COSTS:
            assert 0.0 <= table[f"{m} @{c:g}"].min() and table[f"{m} @{c:g}"].max() <= 1.0
    assert set(table["best SAE"]) <= {"SAE final", "SAE block_0"}
    assert table.attrs["costs"] == COSTS and table.attrs["sae_methods"] == ("SAE final", "SAE block_0")


def test_unsteered_share_is_the_share_of_the_plain_top10(result, model, tiny_split, tiny_seq):
    table, _ = result
    ids = sl.left_pad(tiny_split.test_inputs, model.max_len)
    with torch.no_grad():
        scores = model.scores(ids)
    for u, seq in enumerate(tiny_split.test_inputs):
        scores[u, torch.as_tensor(seq)] = float("-inf")  # seen items are not recommended
    scores[:, 0] = float("-inf")
    top = torch.topk(scores, 10, dim=1).indices.numpy()
    for name in table.index:
        direct = get_concept(tiny_seq, name).item_mask[top].mean()
        assert table.loc[name, "unsteered share@10"] == pytest.approx(direct, abs=1e-12)


def test_each_budget_column_is_the_best_measured_point_within_it(result):
    table, curves = result
    assert ((curves["strength"] == 0) & (curves["NDCG@10_drop"] == 0)).groupby(
        [curves["concept"], curves["method"]]).any().all()  # every curve starts at the unsteered model
    for (concept, method), curve in curves.groupby(["concept", "method"]):
        for c in COSTS:
            chosen = curve[curve[f"chosen@{c:g}"]]
            assert len(chosen) == 1
            assert chosen["NDCG@10_drop"].iloc[0] <= c  # the budget is respected by a measured point
            within = curve[curve["NDCG@10_drop"] <= c]
            assert chosen["share@10"].iloc[0] == within["share@10"].max()
            assert table.loc[concept, f"{method} @{c:g}"] == chosen["share@10"].iloc[0]
            assert table.loc[concept, f"{method} @{c:g}"] >= table.loc[concept, "unsteered share@10"]
    # a larger budget never reports less
    for m in ["SAE final", "SAE block_0", *BASELINES]:
        assert (table[f"{m} @{COSTS[1]:g}"] >= table[f"{m} @{COSTS[0]:g}"]).all()


def test_best_sae_doubles_and_verdicts_are_consistent(result):
    table, _ = result
    top = f"@{COSTS[-1]:g}"
    best = table.apply(lambda r: r[f"{r['best SAE']} {top}"], axis=1)
    assert (best == table[f"best SAE {top}"]).all()
    assert (best >= table[[f"SAE final {top}", f"SAE block_0 {top}"]].max(axis=1)).all()
    ref = table["unsteered share@10"]
    assert (table["doubles"] == ((best >= 2 * ref) & (best > ref))).all()
    assert (table.loc[table["doubles"], "why"] == "").all() and (table.loc[~table["doubles"], "why"] != "").all()
    counts = wins_ties_losses(table)
    assert list(counts.index) == [(b, c) for b in BASELINES for c in COSTS]
    assert (counts.sum(axis=1) == len(table)).all()
    assert set(np.unique(table[[c for c in table.columns if c.startswith("vs ")]].to_numpy())) <= {"win", "tie", "loss"}


def test_a_method_against_itself_ties(result):
    """The verdict's bootstrap interval of a zero difference contains 0."""
    from seqsae_lib.steering.concept_table import _verdict

    shares = np.random.default_rng(0).random(50)
    boot = np.random.default_rng(1).integers(0, 50, size=(200, 50))
    assert _verdict(shares, shares, boot) == "tie"
    assert _verdict(shares + 0.1, shares, boot) == "win" and _verdict(shares, shares + 0.1, boot) == "loss"


def test_bad_input_is_refused(model, parts, tiny_split, tiny_seq):
    saes, stores = parts
    kw = {"progress": False, "min_items": MIN_ITEMS}
    with pytest.raises(UnknownConceptError, match="unknown concept 'Noir'"):
        concept_steering_table(model, saes, stores, tiny_split, tiny_seq, concepts=["Noir"], **kw)
    with pytest.raises(ValueError, match="costs must be finite NDCG@10 drops >= 0"):
        concept_steering_table(model, saes, stores, tiny_split, tiny_seq, costs=(0.01, -0.02), **kw)
    with pytest.raises(ValueError, match="missing for 'block_0'"):
        concept_steering_table(model, saes, {"final": stores["final"]}, tiny_split, tiny_seq, **kw)
    with pytest.raises(ValueError, match="is at 'block_0' but the SAE reads 'final'"):
        concept_steering_table(model, {"final": saes["final"]}, {"final": stores["block_0"]}, tiny_split, tiny_seq, **kw)
    with pytest.raises(ValueError, match="distinct"):
        concept_steering_table(model, saes, stores, tiny_split, tiny_seq, concepts=["topic 1", "topic 1"], **kw)
    with pytest.raises(ValueError, match="n_latents"):
        concept_steering_table(model, saes, stores, tiny_split, tiny_seq, n_latents=(0,), **kw)
    with pytest.raises(TypeError, match="table must be a DataFrame from concept_steering_table"):
        wins_ties_losses(pd.DataFrame())


def test_greedy_selection_builds_a_more_specific_sum(model, parts, tiny_seq):
    saes, stores = parts
    sae, store = saes["final"], stores["final"]
    concept = get_concept(tiny_seq, "topic 1")
    codes = latent_activations(sae, store)
    single = select_latents(concept, sae, model, codes=codes, store=store, n=2, min_fires=2)
    greedy = select_latents(concept, sae, model, codes=codes, store=store, n=2, min_fires=2, order="greedy")
    assert greedy["latent"].iloc[0] == single["latent"].iloc[0]  # the first pick is the most specific latent
    assert np.all(np.diff(greedy["score"]) > 0)
    effects, _ = latent_item_effects(model, sae, single["latent"].tolist())
    contrast = concept.contrast()[1:]
    both = effects.sum(axis=0)
    assert greedy["score"].iloc[-1] >= (both @ contrast) / both.std() - 1e-9  # no worse than the top-2 sum
    with pytest.raises(ValueError, match="order must be 'single' or 'greedy'"):
        select_latents(concept, sae, model, n=2, order="best")


def test_a_precomputed_screen_gives_the_same_selection(model, parts, tiny_split, tiny_seq):
    saes, stores = parts
    sae, store = saes["block_0"], stores["block_0"]
    concept = get_concept(tiny_seq, "topic 2")
    codes = latent_activations(sae, store)
    kw = {"codes": codes, "store": store, "n": 3, "min_fires": 2, "sequences": tiny_split.train, "refine": 6}
    screen, _ = latent_item_effects(model, sae, list(range(sae.d_sae)), method="linearised", sequences=tiny_split.train)
    plain = select_latents(concept, sae, model, **kw)
    reused = select_latents(concept, sae, model, screen=screen, **kw)
    pd.testing.assert_frame_equal(plain, reused)
    with pytest.raises(ValueError, match="screen must have shape"):
        select_latents(concept, sae, model, screen=screen[:5], **kw)


@pytest.mark.parametrize("capture_point", ["embed", "block_0", "block_1"])
def test_last_position_fast_path_equals_the_full_rerun(model, tiny_split, capture_point):
    ids = sl.left_pad(tiny_split.test_inputs[:20], model.max_len)
    cache = SteeringCache(model, ids, capture_point)
    direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    last = VectorSteering(capture_point, 3.0 * direction, "last")
    fast = cache.scores(last)
    assert cache._prefix  # the fast path was used
    hooked = steered_scores(model, last, ids)  # the hook path re-runs the whole model
    torch.testing.assert_close(fast[:, 1:], hooked[:, 1:], rtol=1e-5, atol=1e-5)
    sae = sl.SparseAutoencoder(SAEConfig(d_in=model.d_model, d_sae=32, kind="topk", k=4, capture_point=capture_point))
    edit = Steering.add(sae.eval(), [1, 5], 2.0)
    torch.testing.assert_close(cache.scores(edit)[:, 1:], steered_scores(model, edit, ids)[:, 1:], rtol=1e-5, atol=1e-5)
    with sl.model.record(model, capture_point):  # a hook on the capture point: the full re-run is used instead
        torch.testing.assert_close(cache.scores(last)[:, 1:], hooked[:, 1:], rtol=1e-5, atol=1e-5)


def test_table_concepts_of_movielens_100k(ml100k_seq):
    names = table_concepts(ml100k_seq)
    assert len(names) == 23 and names[-1] == "1990s"
    assert all(get_concept(ml100k_seq, n).n_items >= 20 for n in names)
    for left_out in ("Film-Noir", "Fantasy", "1920s"):  # 19, 19 and 1 items after the 5-core filter
        assert left_out not in names and get_concept(ml100k_seq, left_out).n_items < 20
    assert table_concepts(ml100k_seq, min_items=1)[:2] == ["unknown", "Action"]  # every genre with an item
    with pytest.raises(ValueError, match="min_items"):
        table_concepts(ml100k_seq, min_items=0)
