"""Tests for seqsae_lib.model.evaluation (chapter 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqsae_lib.model import EvalResult, MostPopularScorer, RandomScorer, SASRec, evaluate


class TableScorer:
    """Returns a fixed score row per user (users are identified by their last item)."""

    def __init__(self, rows: dict[int, list[float]]):
        self.rows = rows

    def scores(self, input_ids: torch.Tensor) -> torch.Tensor:
        return torch.tensor([self.rows[int(i)] for i in input_ids[:, -1]], dtype=torch.float32)


# 6 items; scores indexed by item id (column 0 = padding)
ROWS = {
    1: [9.0, 0.1, 0.9, 0.5, 0.7, 0.3, 0.2],  # user A, last item 1
    2: [9.0, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4],  # user B, constant scores
}


def test_ranks_without_filtering():
    scorer = TableScorer(ROWS)
    # user A target 5 (score .3): greater: items 2 (.9), 4 (.7), 3 (.5) -> rank 3
    # user B target 4: ties with items 1, 2, 3 (smaller ids) -> rank 3
    res = evaluate(scorer, [[1], [2]], [5, 4], num_items=6, k=(1, 5), filter_seen=False)
    assert isinstance(res, EvalResult)
    assert res.ranks.tolist() == [3, 3]
    assert res.metrics["HR@5"] == 1.0 and res.metrics["HR@1"] == 0.0
    assert res.metrics["NDCG@5"] == pytest.approx(1 / np.log2(5))
    assert res.metrics["MRR@5"] == pytest.approx(0.25)
    # top-1: A -> item 2, B -> item 1 ; top-5: A -> {2,4,3,5,6}, B -> {1..5}
    assert res.metrics["Coverage@1"] == pytest.approx(2 / 6)
    assert res.metrics["Coverage@5"] == pytest.approx(6 / 6)
    assert res["HR@5"] == 1.0
    np.testing.assert_allclose(res.per_user("ndcg", 5), [1 / np.log2(5)] * 2)


def test_seen_items_filtered_but_target_kept():
    scorer = TableScorer(ROWS)
    # user A saw items 2, 4 and 1 (its inputs) -> only item 3 (.5) beats target 5
    # user B saw 3 and 2; target 2 was seen but stays; ties with smaller id: item 1 only
    res = evaluate(scorer, [[2, 4, 1], [3, 2]], [5, 2], num_items=6, k=(1, 2))
    assert res.ranks.tolist() == [1, 1]
    # top-1: A -> 3 ; B -> 1
    assert res.metrics["Coverage@1"] == pytest.approx(2 / 6)
    # top-2: A -> 3, 5 ; B -> 1, 2 (target kept as candidate; 3 is excluded)
    assert res.metrics["Coverage@2"] == pytest.approx(4 / 6)
    unfiltered = evaluate(scorer, [[2, 4, 1], [3, 2]], [5, 2], num_items=6, filter_seen=False)
    assert unfiltered.ranks.tolist() == [3, 1]


def test_most_popular_and_batch_size_invariance():
    train = [np.array([1, 2, 2, 3]), np.array([2, 3, 3, 3])]  # counts: 1:1, 2:3, 3:4
    pop = MostPopularScorer(train, num_items=5)
    inputs = [np.array([4]), np.array([5]), np.array([1])]
    res = evaluate(pop, inputs, [2, 1, 4], num_items=5, k=(10,))
    # user0: 3 > 2 -> rank 1; user1: target 1 beaten by 3, 2 -> 2;
    # user2 (saw 1): target 4 (count 0) beaten by 3, 2; tie with none smaller (1 excluded) -> 2
    assert res.ranks.tolist() == [1, 2, 2]
    res1 = evaluate(pop, inputs, [2, 1, 4], num_items=5, batch_size=1)
    assert res1.ranks.tolist() == res.ranks.tolist() and res1.metrics == res.metrics


def test_random_scorer_is_seeded_and_near_chance():
    rng = np.random.default_rng(0)
    n, num_items = 400, 50
    inputs = [rng.integers(1, num_items + 1, size=3) for _ in range(n)]
    targets = rng.integers(1, num_items + 1, size=n)
    a = evaluate(RandomScorer(num_items, seed=3), inputs, targets, num_items=num_items, k=10)
    b = evaluate(RandomScorer(num_items, seed=3), inputs, targets, num_items=num_items, k=10)
    assert np.array_equal(a.ranks, b.ranks)
    assert 0.1 < a.metrics["HR@10"] < 0.35  # about 10 / 48


def test_model_path_matches_manual_and_restores_mode():
    torch.manual_seed(0)
    m = SASRec(num_items=20, max_len=6, d_model=8, n_layers=1).train()
    inputs = [np.array([1, 2, 3]), np.arange(1, 10), np.array([7])]
    targets = np.array([4, 3, 8])
    res = evaluate(m, inputs, targets, num_items=20, k=(5,))
    assert m.training  # restored
    m.eval()
    from seqsae_lib.data import left_pad

    with torch.no_grad():
        s = m.scores(left_pad(inputs, 6))
    expected = []
    for u, seq in enumerate(inputs):
        cand = np.ones(21, dtype=bool)
        cand[0] = False
        cand[seq] = False
        cand[targets[u]] = True
        row = s[u].numpy()
        t = targets[u]
        ahead = (row > row[t]) | ((row == row[t]) & (np.arange(21) < t))
        expected.append(int((ahead & cand).sum()))
    assert res.ranks.tolist() == expected


def test_errors():
    scorer = TableScorer(ROWS)
    with pytest.raises(TypeError, match="not a scorer"):
        evaluate(object(), [[1]], [2], num_items=6)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(1, 6\)"):
        evaluate(scorer, [[1]], [2], num_items=5)
    with pytest.raises(ValueError, match="NaN"):
        evaluate(TableScorer({1: [0.0] + [float("nan")] * 6}), [[1]], [2], num_items=6)
    with pytest.raises(ValueError, match="targets must be item ids"):
        evaluate(scorer, [[1]], [0], num_items=6)
    with pytest.raises(ValueError, match="one id per user"):
        evaluate(scorer, [[1], [2]], [3], num_items=6)
    with pytest.raises(ValueError, match="k must be"):
        evaluate(scorer, [[1]], [2], num_items=6, k=0)


def test_scorers_with_parameters_run_without_autograd():
    """evaluate() runs under no_grad: a scorer whose scores would carry gradients (a spliced model in
    chapter 3) is scored and ranked the same way, and no graph is kept."""

    class Learned(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.arange(6, dtype=torch.float32))

        def scores(self, ids):
            assert not torch.is_grad_enabled()
            return self.w.expand(ids.shape[0], 6) * 1.0

    result = evaluate(Learned(), [[1], [2]], [5, 4], num_items=5, k=(1,))
    assert result.ranks.tolist() == [0, 1]  # item 5 scores highest; user 2 has 5 ahead of 4


def test_bad_histories_are_refused_naming_the_user():
    scorer = TableScorer(ROWS)
    # An empty history used to be scored (all-padding input: every score 0) and counted as a hit.
    with pytest.raises(ValueError, match=r"inputs\[1\] is empty"):
        evaluate(scorer, [[1], []], [2, 3], num_items=6)
    with pytest.raises(TypeError, match=r"inputs\[0\] holds float values \(1.5 at position 0\)"):
        evaluate(scorer, [[1.5]], [2], num_items=6)
    with pytest.raises(TypeError, match=r"inputs\[0\] holds string values"):
        evaluate(scorer, [["1"]], [2], num_items=6)
    with pytest.raises(ValueError, match=r"inputs\[1\]\[0\] = 0 is not an item id"):
        evaluate(scorer, [[1], [0, 1]], [2, 3], num_items=6)
    with pytest.raises(ValueError, match=r"inputs\[0\]\[1\] = 7 is not an item id: expected item ids in \[1, 6\]"):
        evaluate(scorer, [[1, 7]], [2], num_items=6)
