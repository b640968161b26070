"""Tests for seqsae_lib.model.metrics (chapter 2), on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqsae_lib.model import coverage_at_k, hit_rate_at_k, hr_at_k, mrr_at_k, ndcg_at_k


def test_ndcg_hand_values():
    assert ndcg_at_k([0], 10) == 1.0
    assert ndcg_at_k([2], 10) == pytest.approx(0.5)  # 1/log2(4)
    assert ndcg_at_k([1], 10) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k([10], 10) == 0.0
    assert ndcg_at_k([9], 10) == pytest.approx(1 / math.log2(11))
    assert ndcg_at_k([0, 2, 10, 50], 10) == pytest.approx((1 + 0.5) / 4)


def test_hr_and_mrr_hand_values():
    ranks = np.array([0, 1, 4, 5, 100])
    assert hit_rate_at_k(ranks, 5) == pytest.approx(3 / 5)
    assert hr_at_k is hit_rate_at_k
    assert mrr_at_k(ranks, 5) == pytest.approx((1 + 1 / 2 + 1 / 5) / 5)
    assert mrr_at_k(ranks, 1) == pytest.approx(1 / 5)
    per_user = mrr_at_k(ranks, 5, reduce="none")
    np.testing.assert_allclose(per_user, [1, 0.5, 0.2, 0, 0])


def test_accepts_torch_and_ranges():
    r = torch.randint(0, 50, (100,))
    for f in (hit_rate_at_k, ndcg_at_k, mrr_at_k):
        v = f(r, 10)
        assert 0.0 <= v <= 1.0
        assert isinstance(v, float)
    assert ndcg_at_k(r, 10) <= hit_rate_at_k(r, 10)
    assert mrr_at_k(r, 10) <= ndcg_at_k(r, 10)


def test_metric_input_errors():
    with pytest.raises(ValueError, match=">= 0"):
        ndcg_at_k([-1], 10)
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k([1], 0)
    with pytest.raises(ValueError, match="1-D"):
        hit_rate_at_k([[1, 2]], 10)
    with pytest.raises(ValueError, match="empty"):
        mrr_at_k([], 10)
    with pytest.raises(ValueError, match="whole numbers"):
        mrr_at_k([np.nan], 10)
    with pytest.raises(ValueError, match="reduce"):
        mrr_at_k([1], 10, reduce="sum")  # type: ignore[arg-type]


def test_coverage():
    top = np.array([[1, 2], [2, 3], [1, 3]])
    assert coverage_at_k(top, 6) == pytest.approx(0.5)
    assert coverage_at_k(torch.tensor([[4]]), 4) == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"\[1, 6\]"):
        coverage_at_k(np.array([[0, 1]]), 6)
    with pytest.raises(ValueError, match="n_users, k"):
        coverage_at_k(np.array([1, 2]), 6)
