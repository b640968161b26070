"""Tests for seqsae_lib.model.training (chapter 2). Small models, a few epochs each."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from seqsae_lib.data import left_pad
from seqsae_lib.model import History, SASRec, TrainConfig, evaluate, sequence_loss, train_sasrec
from seqsae_lib.model.training import full_softmax_cross_entropy, length_bucket_batches
from seqsae_lib.utils.runtime import set_seed


@dataclass(frozen=True)
class FakeSplit:
    num_items: int
    train: list[np.ndarray]
    valid_inputs: list[np.ndarray]
    valid_targets: np.ndarray
    test_inputs: list[np.ndarray]
    test_targets: np.ndarray
    fingerprint: dict = field(default_factory=dict)


def cyclic_split(n_users: int = 48, num_items: int = 20, seed: int = 0) -> FakeSplit:
    """Each user walks the catalogue in order (next = prev + 1, wrapping): easy to learn."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_users):
        start, length = rng.integers(1, num_items + 1), rng.integers(6, 14)
        seqs.append(((start - 1 + np.arange(length)) % num_items + 1).astype(np.int64))
    return FakeSplit(
        num_items=num_items,
        train=[s[:-2] for s in seqs],
        valid_inputs=[s[:-2] for s in seqs],
        valid_targets=np.array([s[-2] for s in seqs]),
        test_inputs=[s[:-1] for s in seqs],
        test_targets=np.array([s[-1] for s in seqs]),
        fingerprint={"name": "cyclic", "num_items": num_items, "n_users": n_users},
    )


def small_model(num_items: int = 20, seed: int = 0) -> SASRec:
    set_seed(seed)
    return SASRec(num_items=num_items, max_len=16, d_model=16, n_layers=1, n_heads=1, dropout=0.1)


FAST = dict(batch_size=16, progress=False, num_threads=1, device="cpu")


def test_learns_a_simple_pattern():
    split = cyclic_split()
    model = small_model()
    hist = train_sasrec(model, split, TrainConfig(max_epochs=12, lr=1e-2, patience=None, eval_every=4, **FAST))
    assert hist.train_loss[-1] < hist.train_loss[0]
    res = evaluate(model, split.test_inputs, split.test_targets, num_items=20, filter_seen=False)
    assert res.metrics["HR@10"] > 0.9 and res.metrics["NDCG@10"] > 0.6  # random: HR 0.5, NDCG ~0.2
    assert not model.training


def test_same_seed_gives_identical_weights():
    split = cyclic_split(n_users=20)
    states = []
    for _ in range(2):
        m = small_model()
        train_sasrec(m, split, TrainConfig(max_epochs=2, patience=None, seed=7, **FAST))
        states.append(m.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_naive_loss_equals_trimmed_loss():
    split = cyclic_split(n_users=10)
    model = small_model().eval()
    x = left_pad([s[:-1] for s in split.train], 16)
    y = left_pad([s[1:] for s in split.train], 16)
    fast, n_fast = sequence_loss(model, x[:, 4:], y[:, 4:])
    naive, n_naive = sequence_loss(model, x, y, naive=True)
    assert n_fast == n_naive == int((y != 0).sum())
    torch.testing.assert_close(fast, naive)
    hist = train_sasrec(small_model(), split, TrainConfig(max_epochs=1, naive=True, **FAST))
    assert np.isfinite(hist.train_loss[0])


def test_length_groups_give_the_full_batch_loss_and_gradient():
    split = cyclic_split(n_users=10)
    model = small_model().eval()  # eval: no dropout, so the two computations must agree
    x = left_pad([s[:-1] for s in split.train], 16)
    y = left_pad([s[1:] for s in split.train], 16)
    grads, losses = [], []
    for groups in (1, 3, 10, 50):  # 50 > batch size: one row per group
        model.zero_grad()
        loss, n = sequence_loss(model, x, y, length_groups=groups)
        loss.backward()
        assert n == int((y != 0).sum())
        losses.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    for loss, grad in zip(losses[1:], grads[1:]):
        torch.testing.assert_close(loss, losses[0])
        torch.testing.assert_close(grad, grads[0], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="length_groups"):
        sequence_loss(model, x, y, length_groups=0)
    with pytest.raises(ValueError, match="length_groups"):
        TrainConfig(length_groups=0)


def test_fused_loss_equals_the_plain_loss_and_gradient():
    split = cyclic_split(n_users=10)
    model = small_model().eval()
    x = left_pad([s[:-1] for s in split.train], 16)
    y = left_pad([s[1:] for s in split.train], 16)
    mask = y != 0
    results = []
    for fused in (False, True):
        model.zero_grad()
        hidden = model(x)[mask]
        if fused:
            loss = full_softmax_cross_entropy(hidden, model.item_emb.weight, y[mask])
        else:
            loss = torch.nn.functional.cross_entropy(model.score(hidden), y[mask])
        loss.backward()
        results.append((loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])))
    torch.testing.assert_close(results[1][0], results[0][0])
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-5, atol=1e-7)
    assert torch.count_nonzero(model.item_emb.weight.grad[0]) == 0  # padding row: no gradient
    h = torch.randn(3, 4, requires_grad=True)
    with pytest.raises(ValueError, match="targets must lie"):
        full_softmax_cross_entropy(h, torch.randn(5, 4), torch.tensor([1, 0, 2]))
    with pytest.raises(ValueError, match="share d"):
        full_softmax_cross_entropy(h, torch.randn(5, 3), torch.tensor([1, 1, 2]))
    w, t = torch.randn(5, 4, requires_grad=True), torch.tensor([1, 4, 2])
    reference = torch.nn.functional.cross_entropy(h @ w[1:].T, t - 1)
    expected = torch.autograd.grad(reference, (h, w))
    for chunk in (1, 2, 3, None):  # chunks of rows (the last one short) give the same loss and gradients
        loss = full_softmax_cross_entropy(h, w, t, chunk_rows=chunk)
        torch.testing.assert_close(loss, reference)
        for got, want in zip(torch.autograd.grad(2.5 * loss, (h, w)), expected):
            torch.testing.assert_close(got, 2.5 * want)  # the incoming gradient scales the stored ones
    with torch.no_grad():  # no gradient wanted: the loss alone
        torch.testing.assert_close(full_softmax_cross_entropy(h, w, t), reference.detach())
    with pytest.raises(ValueError, match="chunk_rows"):
        full_softmax_cross_entropy(h, w, t, chunk_rows=0)


def test_length_buckets_cover_every_row_once_with_similar_lengths():
    lengths = torch.randint(1, 200, (1000,))
    batches = length_bucket_batches(lengths, 32, 8, torch.Generator().manual_seed(0))
    rows = torch.cat(batches)
    assert torch.equal(rows.sort().values, torch.arange(1000))
    assert max(len(b) for b in batches) == 32
    spread = sum(int(lengths[b].max() - lengths[b].min()) for b in batches) / len(batches)
    random_spread = sum(int(lengths[b].max() - lengths[b].min()) for b in torch.arange(1000).split(32)) / 32
    assert spread < 0.25 * random_spread  # sorted pools: batches of similar lengths


def test_bucketed_fused_training_learns_and_is_reproducible():
    split = cyclic_split()
    states = []
    for _ in range(2):
        model = small_model()
        config = TrainConfig(max_epochs=12, lr=1e-2, patience=None, eval_every=4, length_buckets=2,
                             fused_loss=True, length_groups=1, **FAST)
        hist = train_sasrec(model, split, config)
        states.append(model.state_dict())
    assert hist.train_loss[-1] < hist.train_loss[0]
    res = evaluate(model, split.test_inputs, split.test_targets, num_items=20, filter_seen=False)
    assert res.metrics["HR@10"] > 0.9 and res.metrics["NDCG@10"] > 0.6
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    with pytest.raises(ValueError, match="length_buckets"):
        TrainConfig(length_buckets=0)
    with pytest.raises(TypeError, match="fused_loss"):
        TrainConfig(fused_loss=1)


def test_early_stopping_restores_best_weights():
    split = cyclic_split(n_users=20)
    model = small_model()
    hist = train_sasrec(model, split, TrainConfig(max_epochs=10, lr=1e-9, patience=2, **FAST))
    assert hist.stopped_early and hist.best_epoch == 1 and len(hist.epochs) == 3
    res = evaluate(model, split.valid_inputs, split.valid_targets, num_items=20)
    assert res.metrics["NDCG@10"] == pytest.approx(hist.best_value)


def test_time_budget_stops_after_the_epoch_that_overruns():
    split = cyclic_split(n_users=20)
    model = small_model()
    # A tiny budget: the first epoch overruns it, is validated, and training stops there.
    hist = train_sasrec(model, split, TrainConfig(max_epochs=10, eval_every=5, patience=None,
                                                  time_budget=1e-9, **FAST))
    assert hist.out_of_time and not hist.stopped_early and hist.epochs == [1]
    assert hist.val_metrics[0] is not None and hist.best_epoch == 1
    roomy = train_sasrec(small_model(), split, TrainConfig(max_epochs=2, patience=None, time_budget=1e6, **FAST))
    assert not roomy.out_of_time and roomy.epochs == [1, 2]
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="time_budget"):
            TrainConfig(time_budget=bad)


def test_history_frame():
    split = cyclic_split(n_users=20)
    hist = train_sasrec(small_model(), split, TrainConfig(max_epochs=3, eval_every=2, patience=None, **FAST))
    assert isinstance(hist, History)
    df = hist.to_frame()
    assert list(df.index) == [1, 2, 3]
    assert {"train_loss", "seconds", "train_seconds", "val_NDCG@10", "val_HR@10"} <= set(df.columns)
    assert np.isnan(df.loc[1, "val_NDCG@10"]) and not np.isnan(df.loc[2, "val_NDCG@10"])
    assert hist.config["max_epochs"] == 3


def test_errors():
    split = cyclic_split(n_users=10)
    with pytest.raises(ValueError, match="num_items"):
        train_sasrec(small_model(num_items=25), split, TrainConfig(max_epochs=1, **FAST))
    with pytest.raises(ValueError, match="max_len"):
        train_sasrec(small_model(), split, TrainConfig(max_epochs=1, max_len=50, **FAST))
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=float("nan"))
    with pytest.raises(ValueError, match="monitor"):
        TrainConfig(monitor="AUC")


def test_runtime_helpers():
    from seqsae_lib.utils.runtime import resolve_device, set_threads

    set_seed(3)
    a = torch.rand(3)
    set_seed(3)
    assert torch.equal(a, torch.rand(3))
    with pytest.raises(ValueError, match=">= 0"):
        set_seed(-1)
    n = torch.get_num_threads()
    assert set_threads(None) == n
    assert set_threads(1) == 1
    set_threads(n)
    with pytest.raises(ValueError, match="num_threads"):
        set_threads(0)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
