"""Tests for seqsae_lib.steering.evaluation, baselines and tradeoffs (chapter 5)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from seqsae_lib.sae import ActivationStore, SAEConfig, SparseAutoencoder, collect_activations
from seqsae_lib.steering import (
    GRID_COLUMNS,
    Concept,
    Rerank,
    Steering,
    SteeringEvaluator,
    UnknownConceptError,
    VectorSteering,
    evaluate_methods,
    evaluate_steering,
    genre_concept,
    gini,
    hidden_dim_baseline,
    jaccard_at_k,
    mean_difference_baseline,
    pareto_front,
    random_latent_baseline,
    rerank_baseline,
    sae_method,
    share_at_equal_cost,
    steered_scores,
    steering_methods,
)
from seqsae_lib.model import SASRec, UnknownCapturePointError, coverage_at_k, evaluate
from seqsae_lib.interpret import latent_activations

D = 16
MAX_LEN = 12


# seq_data, split, model (the shared tiny SASRec: d_model=D, max_len=MAX_LEN) and concept_direction: conftest.py


@pytest.fixture(scope="module")
def concept(seq_data) -> Concept:
    return genre_concept(seq_data, "topic 1")


@pytest.fixture(scope="module")
def evaluator(model, split, seq_data) -> SteeringEvaluator:
    return SteeringEvaluator(model, split.test_inputs, split.test_targets, seq_data, batch_size=16, n_boot=50)


def random_sae(seed: int = 0) -> SparseAutoencoder:
    return SparseAutoencoder(SAEConfig(d_in=D, d_sae=4 * D, kind="topk", k=4, normalize_input=False, seed=seed)).eval()


class HookScorer:
    """The slow path: a plain scorer running the steered model through hooks."""

    def __init__(self, model, steering):
        self.model, self.steering = model, steering

    def scores(self, input_ids):
        return steered_scores(self.model, self.steering, input_ids)


# --------------------------------------------------------------------------------------------------------
# list metrics: known answers
# --------------------------------------------------------------------------------------------------------


def test_gini_known_answers():
    assert gini([3, 3, 3, 3]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 4]) == pytest.approx(0.75)
    assert gini([1, 2, 3, 4]) == pytest.approx(0.25)
    assert gini([4, 1, 3, 2]) == pytest.approx(0.25)  # order does not matter
    assert math.isnan(gini([0, 0]))
    with pytest.raises(ValueError):
        gini([1, -1])


def test_jaccard_known_answers():
    a = np.array([[1, 2, 3], [1, 2, 3], [1, 2, 3]])
    b = np.array([[2, 3, 4], [3, 2, 1], [4, 5, 6]])
    np.testing.assert_allclose(jaccard_at_k(a, b, reduce="none"), [0.5, 1.0, 0.0])
    assert jaccard_at_k(a, b) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same shape"):
        jaccard_at_k(a, b[:, :2])


def test_fast_top_k_equals_the_stable_sort_of_evaluate():
    from seqsae_lib.model.evaluation import top_k_stable

    gen = torch.Generator().manual_seed(0)
    for scores in (
        torch.randn(50, 40, generator=gen),
        torch.randint(0, 4, (50, 40), generator=gen).float(),  # many ties, also at the k-th place
        torch.randn(50, 40, generator=gen).masked_fill(torch.rand(50, 40, generator=gen) < 0.9, float("-inf")),
    ):
        expected = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :10]
        assert torch.equal(top_k_stable(scores, 10), expected)


# --------------------------------------------------------------------------------------------------------
# the grid
# --------------------------------------------------------------------------------------------------------


def test_strength_zero_reproduces_evaluate(model, split, seq_data, concept, evaluator):
    ref = evaluate(model, split.test_inputs, split.test_targets, num_items=split.num_items, k=10)
    df, details = evaluate_steering(
        model, rerank_baseline(concept), [0.0], split.test_inputs, split.test_targets, concept, seq_data,
        return_details=True, evaluator=evaluator,
    )
    assert list(df.columns) == [c.format(k=10) for c in GRID_COLUMNS]
    row = df.iloc[0]
    assert row["NDCG@10"] == pytest.approx(ref["NDCG@10"]) and row["HR@10"] == pytest.approx(ref["HR@10"])
    assert row["Coverage@10"] == pytest.approx(ref["Coverage@10"])
    np.testing.assert_array_equal(details.ranks[0], ref.ranks)
    np.testing.assert_array_equal(details.reference_ranks, ref.ranks)
    assert row["NDCG@10_drop"] == 0 and row["Jaccard@10"] == 1.0 and row["share_gain"] == 0
    # the recorded top-10 lists are evaluate's: same coverage, seen items filtered
    top = details.top_items[0]
    assert row["Coverage@10"] == pytest.approx(coverage_at_k(top, split.num_items))
    for u in range(len(top)):
        seen = set(split.test_inputs[u].tolist()) - {int(split.test_targets[u])}
        assert not seen & set(top[u].tolist())
    assert row["share@10"] == pytest.approx(concept.share(top))
    assert row["popularity@10"] == pytest.approx(seq_data.items["popularity"].to_numpy()[top - 1].mean())
    counts = np.bincount(top.ravel(), minlength=split.num_items + 1)[1:]
    assert row["Gini@10"] == pytest.approx(gini(counts))
    w = concept.item_mask[split.test_targets]
    per_user = ref.per_user("NDCG", 10)
    assert row["NDCG@10_concept"] == pytest.approx((w * per_user).sum() / w.sum())
    assert (df["n_concept_users"] == int((w > 0).sum())).all()
    assert (df["reference_share@10"] == row["share@10"]).all() and (df["concept"] == concept.name).all()
    assert row["method"] == "re-ranking"  # the baseline's name


def test_share_rises_with_strength_for_reranking_and_a_constructed_direction(model, split, seq_data, concept, evaluator,
                                                                             concept_direction):
    strengths = [0.0, 0.05, 0.1, 0.2, 0.4]
    rerank = evaluate_steering(model, rerank_baseline(concept), strengths, split.test_inputs, split.test_targets,
                               concept, seq_data, evaluator=evaluator)
    share = rerank["share@10"].to_numpy()
    assert (np.diff(share) >= -1e-12).all() and share[-1] > share[0]
    direction = concept_direction(model, concept)
    vec = evaluate_steering(
        model, lambda s: VectorSteering.along("final", direction, s), [0.0, 0.5, 1.0, 2.0, 4.0],
        split.test_inputs, split.test_targets, concept, seq_data, evaluator=evaluator,
    )
    share = vec["share@10"].to_numpy()
    assert (np.diff(share) >= -1e-12).all() and share[-1] > share[0] + 0.05
    assert vec["Jaccard@10"].iloc[-1] < 1.0
    # the same direction planted as an SAE latent and pushed with "add": identical curve
    sae = random_sae()
    with torch.no_grad():
        sae.W_dec[5] = direction
    sae_curve = evaluate_steering(
        model, lambda s: Steering.add(sae, 5, s, capture_point="final"), [0.0, 0.5, 1.0, 2.0, 4.0],
        split.test_inputs, split.test_targets, concept, seq_data, evaluator=evaluator,
    )
    np.testing.assert_allclose(sae_curve["share@10"], vec["share@10"], atol=1e-12)


@pytest.mark.parametrize("point", ["final", "block_0"])
def test_cached_grid_equals_the_hook_path(model, split, seq_data, concept, evaluator, point):
    sae = random_sae(seed=3)
    strengths = [0.0, 1.0, 3.0]
    make = lambda s: Steering.add(sae, [1, 2], s, capture_point=point) + Steering.set(sae, 4, abs(s), capture_point=point)  # noqa: E731
    fast, fd = evaluator.run(make, strengths, concept, return_details=True)
    slow, sd = evaluator.run(lambda s: HookScorer(model, make(s)), strengths, concept, return_details=True)
    np.testing.assert_array_equal(fd.ranks, sd.ranks)
    np.testing.assert_array_equal(fd.top_items, sd.top_items)
    pd.testing.assert_frame_equal(fast, slow)


def test_methods_and_equal_cost_table(model, split, seq_data, concept, concept_direction):
    store = collect_activations(model, split.train, "final", next_items=split.valid_targets, progress=False)
    sae = random_sae()
    with torch.no_grad():
        sae.W_dec[5] = concept_direction(model, concept)
    codes = latent_activations(sae, store)
    methods = steering_methods(concept, sae, store, [5], codes=codes, n_dims=3)
    assert set(methods) == {"SAE latents", "re-ranking", "hidden dims", "mean difference", "random latent"}
    grids = {name: [0.0, 1.0, 3.0] for name in methods}
    grids["re-ranking"] = [0.0, 0.1, 0.3]
    results = evaluate_methods(model, methods, grids, split.test_inputs, split.test_targets, concept, seq_data,
                               batch_size=32, n_boot=0)
    assert set(results) == set(methods)
    for name, df in results.items():
        assert len(df) == 3 and (df["method"] == name).all()
        assert df["NDCG@10_drop"].iloc[0] == 0.0
        assert df["NDCG@10_drop_lo"].isna().all()  # n_boot=0
    table = share_at_equal_cost(results, (0.0, 0.01, 0.02))
    assert list(table.index) == list(results) and table.shape == (5, 3)
    assert table.iloc[:, 0].tolist() == pytest.approx([results["SAE latents"]["reference_share@10"].iloc[0]] * 5)


def test_baselines_are_built_from_the_store(concept):
    n = 200
    rng = np.random.default_rng(0)
    nxt = rng.integers(1, concept.num_items + 1, n)
    acts = torch.from_numpy(rng.normal(size=(n, D)).astype(np.float32))
    has = torch.from_numpy(concept.item_mask[nxt] > 0)
    acts[has, 3] += 4.0  # dimension 3 goes up before concept items
    acts[has, 8] -= 2.0  # dimension 8 goes down
    store = ActivationStore(capture_point="block_1", acts=acts, user=np.zeros(n, dtype=np.int64),
                            position=np.arange(n), input_item=np.ones(n, dtype=np.int64), next_item=nxt)
    dims = hidden_dim_baseline(store, concept, n_dims=2)
    assert dims.info["dims"] == [3, 8] and dims.info["association"][0] > 0 > dims.info["association"][1]
    v = dims(2.0)
    assert isinstance(v, VectorSteering) and v.capture_point == "block_1"
    assert float(v.vector.norm()) == pytest.approx(2.0) and v.vector[3] > 0 > v.vector[8]
    assert (v.vector[[i for i in range(D) if i not in (3, 8)]] == 0).all()
    md = mean_difference_baseline(store, concept)(1.0)
    expected = acts[has].double().mean(0) - acts[~has].double().mean(0)
    torch.testing.assert_close(md.vector, (expected / expected.norm()).float())
    rr = rerank_baseline(concept)(0.5)
    assert isinstance(rr, Rerank)
    torch.testing.assert_close(rr.bonus, 0.5 * concept.as_tensor())
    sae = random_sae()
    a, b = random_latent_baseline(sae, seed=4, capture_point="final"), random_latent_baseline(sae, seed=4, capture_point="final")
    assert a.info["latent"] == b.info["latent"] and a(1.0).edits[0].op == "add"
    with pytest.raises(ValueError, match="out of range"):
        sae_method(concept, [999], sae, capture_point="final")


def test_pareto_front_and_interpolation_known_answers():
    a = pd.DataFrame({"strength": [0.0, 1.0, 2.0, 3.0], "NDCG@10_drop": [0.0, 0.01, 0.03, 0.02],
                      "share@10": [0.2, 0.3, 0.5, 0.25], "reference_share@10": 0.2})
    front = pareto_front(a)
    assert front["strength"].tolist() == [0.0, 1.0, 2.0]  # strength 3 is dominated by strength 1
    assert pareto_front(a, maximize=False)["strength"].tolist() == [0.0]
    cheap = pd.DataFrame({"strength": [1.0, 2.0], "NDCG@10_drop": [0.001, 0.004], "share@10": [0.4, 0.6],
                          "reference_share@10": 0.2})
    table = share_at_equal_cost({"a": a, "cheap": cheap}, (0.005, 0.01, 0.02))
    np.testing.assert_allclose(table.loc["a"].to_numpy(), [0.25, 0.3, 0.4])
    assert table.loc["cheap"].isna().all()  # never costs 0.005 within the grid
    # the unsteered point is prepended when the grid has no strength 0
    np.testing.assert_allclose(share_at_equal_cost({"cheap": cheap}, (0.0005,)).to_numpy(), [[0.3]])
    budget = share_at_equal_cost({"a": a, "cheap": cheap}, (0.005, 0.02, 0.05), mode="budget")
    np.testing.assert_allclose(budget.loc["a"].to_numpy(), [0.25, 0.4, 0.5])
    np.testing.assert_allclose(budget.loc["cheap"].to_numpy(), [0.6, 0.6, 0.6])
    strength = share_at_equal_cost({"a": a}, (0.02,), value="strength")
    assert strength.iloc[0, 0] == pytest.approx(1.5)


def test_bad_requests_raise_clear_errors(model, split, seq_data, concept, evaluator):
    with pytest.raises(UnknownConceptError, match=r"unknown concept 'Horror'.*'topic 0'"):
        evaluator.run(rerank_baseline(concept), [0.0], "Horror")
    with pytest.raises(TypeError, match="must return a Steering"):
        evaluator.run(lambda s: "steer!", [1.0], concept)
    with pytest.raises(ValueError, match="finite"):
        evaluator.run(rerank_baseline(concept), [0.0, float("inf")], concept)
    with pytest.raises(ValueError, match="empty"):
        evaluator.run(rerank_baseline(concept), [], concept)
    with pytest.raises(UnknownCapturePointError, match="valid names"):
        evaluator.run(lambda s: Steering.add(random_sae(), 1, s, capture_point="block_5"), [1.0], concept)
    wide = SparseAutoencoder(SAEConfig(d_in=2 * D, d_sae=4 * D, kind="topk", k=4))
    with pytest.raises(ValueError, match="d_in=32"):
        evaluator.run(lambda s: Steering.add(wide, 1, s, capture_point="final"), [1.0], concept)
    with pytest.raises(ValueError, match="num_items"):
        evaluator.run(lambda s: Rerank(torch.zeros(5)), [1.0], concept)
    other = SASRec(num_items=split.num_items + 1, max_len=MAX_LEN, d_model=D)
    with pytest.raises(ValueError, match="items"):
        SteeringEvaluator(other, split.test_inputs, split.test_targets, seq_data)
    with pytest.raises(ValueError, match="another model"):
        evaluate_steering(other, rerank_baseline(concept), [0.0], split.test_inputs, split.test_targets, concept,
                          seq_data, evaluator=evaluator)
    with pytest.raises(ValueError, match="no strengths"):
        evaluate_methods(model, {"a": rerank_baseline(concept)}, {"b": [0.0]}, split.test_inputs,
                         split.test_targets, concept, seq_data)


def test_search_strengths_walks_the_grid_then_bisects_towards_each_budget():
    from seqsae_lib.steering.tradeoffs import search_strengths

    calls: list[float] = []

    def drop_at(s: float) -> float:  # a known monotone cost curve: drop = s^2
        calls.append(s)
        return s * s

    drops = search_strengths(drop_at, [1.0, 2.0, 3.0, 4.0], [2.0, 5.0], refine=8)
    assert 0.0 not in calls and 4.0 not in calls  # strength 0 is free; the walk stops at the first drop over 5
    assert calls[:3] == [1.0, 2.0, 3.0]
    for budget in (2.0, 5.0):
        within = max(s for s, d in drops.items() if d <= budget)
        assert within <= budget ** 0.5 < within + 2.0 / 2**8  # 8 halvings of a width-1 interval
    assert all(drops[s] == pytest.approx(s * s) for s in drops)
    # a search whose grid never exceeds the budget measures only the grid
    assert list(search_strengths(lambda s: 0.0, [1.0, 2.0], [0.5], refine=3)) == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="budget"):
        search_strengths(drop_at, [1.0], [], refine=1)
    with pytest.raises(ValueError, match="strength 1 is NaN"):
        search_strengths(lambda s: float("nan"), [1.0, 2.0], [0.5], refine=1)
