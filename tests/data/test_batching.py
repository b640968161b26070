"""Tests for seqsae_lib.data.batching (chapter 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqsae_lib.data import NextItemDataset, check_history, check_sequences, iter_eval_batches, left_pad, make_train_loader, trim_left_padding
from seqsae_lib.data.batching import collate_full, collate_trim


def random_sequences(n_users: int = 20, num_items: int = 30, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, num_items + 1, size=rng.integers(1, 15)).astype(np.int64) for _ in range(n_users)]


def test_left_pad_keeps_most_recent():
    out = left_pad([[1, 2, 3], [4], [], np.array([5, 6, 7, 8, 9])], 4)
    assert out.dtype == torch.int64
    assert out.tolist() == [[0, 1, 2, 3], [0, 0, 0, 4], [0, 0, 0, 0], [6, 7, 8, 9]]
    with pytest.raises(ValueError, match="max_len"):
        left_pad([[1]], 0)
    with pytest.raises(ValueError, match="1-D"):
        left_pad([[[1, 2]]], 3)


def test_trim_left_padding():
    ids = torch.tensor([[0, 0, 1, 2], [0, 0, 0, 3]])
    tg = torch.tensor([[0, 0, 2, 5], [0, 0, 0, 6]])
    a, b = trim_left_padding(ids, tg)
    assert a.tolist() == [[1, 2], [0, 3]] and b.tolist() == [[2, 5], [0, 6]]
    (c,) = trim_left_padding(torch.zeros(2, 5, dtype=torch.long))
    assert c.shape == (2, 1)  # at least one column kept


def test_dataset_pairs_shift_by_one_and_truncate():
    ds = NextItemDataset([np.arange(1, 11), np.array([4, 5]), np.array([7])], max_len=4)
    assert len(ds) == 2 and ds.n_skipped == 1
    x, y = ds[0]
    assert x.tolist() == [6, 7, 8, 9] and y.tolist() == [7, 8, 9, 10]
    x, y = ds[1]
    assert x.tolist() == [0, 0, 0, 4] and y.tolist() == [0, 0, 0, 5]
    assert ds.num_targets == 5
    with pytest.raises(ValueError, match="at least 2 items"):
        NextItemDataset([np.array([1])], 4)
    with pytest.raises(ValueError, match="0 is reserved"):
        NextItemDataset([np.array([0, 1, 2])], 4)
    with pytest.raises(ValueError, match=r"\[1, 5\]"):
        NextItemDataset([np.array([1, 9])], 4, num_items=5)
    with pytest.raises(TypeError, match="integer"):
        NextItemDataset([np.array([1.5, 2.0])], 4)


def test_collate_trims_all_padding_columns():
    ds = NextItemDataset([np.array([1, 2, 3]), np.array([4, 5])], max_len=6)
    x, y = collate_trim([ds[0], ds[1]])
    assert x.tolist() == [[1, 2], [0, 4]] and y.tolist() == [[2, 3], [0, 5]]
    xf, yf = collate_full([ds[0], ds[1]])
    assert xf.shape == (2, 6)


def test_loader_is_seeded_and_covers_everything():
    ds = NextItemDataset(random_sequences(), max_len=8)
    order = lambda seed: torch.cat([x for x, _ in make_train_loader(ds, 6, seed=seed, trim=False)])  # noqa: E731
    a, b, c = order(1), order(1), order(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert sorted(map(tuple, a.tolist())) == sorted(map(tuple, ds.inputs.tolist()))


def test_eval_batches():
    seqs = [np.arange(1, 12), np.array([3, 4]), np.array([], dtype=np.int64)]
    targets = np.array([5, 6, 7])
    batches = list(iter_eval_batches(seqs, targets, max_len=4, batch_size=2))
    assert len(batches) == 2
    b0 = batches[0]
    assert b0.users.tolist() == [0, 1]
    assert b0.inputs.tolist() == [[8, 9, 10, 11], [0, 0, 3, 4]]
    assert b0.targets.tolist() == [5, 6]
    assert b0.seen[0].tolist() == list(range(1, 12))  # full history, not only the window
    assert batches[1].inputs.tolist() == [[0]]
    with pytest.raises(ValueError, match="one id per user"):
        list(iter_eval_batches(seqs, targets[:2], max_len=4))
    with pytest.raises(ValueError, match="targets must be item ids"):
        list(iter_eval_batches(seqs, np.array([0, 1, 2]), max_len=4))
    with pytest.raises(TypeError, match="list of 1-D"):
        list(iter_eval_batches(np.ones((3, 2), dtype=np.int64), targets, max_len=4))


def test_histories_with_non_integer_ids_are_refused_not_converted():
    # Floats were truncated (5.7 -> 5), numeric strings parsed ("5" -> 5), booleans read as 0/1.
    with pytest.raises(TypeError, match=r"seqs\[1\] holds float values \(5.7 at position 0\).*must be integers"):
        left_pad([[1, 2], [5.7, 7.2]], 4)
    with pytest.raises(TypeError, match=r"seqs\[0\] holds float values \(7.5 at position 1\)"):
        left_pad([np.array([5.0, 7.5])], 4)  # names the fractional value, not the whole one before it
    with pytest.raises(TypeError, match=r"seqs\[0\] holds string values \('5' at position 0\)"):
        left_pad([["5", "7"]], 4)
    with pytest.raises(TypeError, match=r"seqs\[0\] holds bool values \(True at position 1\)"):
        left_pad([[3, True]], 4)
    with pytest.raises(TypeError, match=r"inputs\[0\] holds float values"):
        check_sequences([torch.tensor([1.0, 2.0])], what="inputs")
    with pytest.raises(TypeError, match=r"sequence holds NoneType values \(None at position 1\)"):
        check_history([4, None])


def test_history_ids_must_be_items_in_the_catalogue():
    # 0 inside a history is padding, not an item: it used to vanish silently.
    with pytest.raises(ValueError, match=r"seqs\[1\]\[2\] = 0 is not an item id: expected item ids >= 1 \(0 is reserved"):
        left_pad([[1, 2], [3, 4, 0, 5]], 4)
    with pytest.raises(ValueError, match=r"inputs\[2\]\[0\] = 31 is not an item id: expected item ids in \[1, 30\]"):
        check_sequences([[1], [2], [31, 1]], num_items=30, what="inputs")
    with pytest.raises(ValueError, match=r"sequence\[1\] = -3 is not an item id"):
        check_history(np.array([2, -3]), num_items=30)
    assert check_history([3, 4], num_items=30).dtype == np.int64


def test_empty_histories_are_refused_where_a_history_is_scored():
    assert [len(s) for s in check_sequences([[1], []])] == [1, 0]  # training data may hold empty sequences
    with pytest.raises(ValueError, match=r"inputs\[1\] is empty: a history needs at least one item"):
        check_sequences([[1], []], what="inputs", allow_empty=False)
    with pytest.raises(ValueError, match=r"sequence is empty.*non-empty"):
        check_history([])
