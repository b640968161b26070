"""Sequences, tie-breaks, id mapping and the leave-one-out split on real ML-100k."""

from __future__ import annotations

import numpy as np
import pytest

import seqsae_lib as sl


def test_kcore_filter_and_ids(ml100k_seq):
    s = ml100k_seq
    assert s.num_users == 943
    assert s.num_items == len(s.items) == s.item_genres.shape[0] - 1
    assert s.item_ids[0] == 0 and np.all(np.diff(s.item_ids) > 0)
    all_items = np.concatenate(s.sequences)
    assert all_items.min() == 1 and all_items.max() == s.num_items  # 0 (padding) is never an item
    counts = np.bincount(all_items, minlength=s.num_items + 1)[1:]
    assert counts.min() >= 5 and s.lengths.min() >= 5
    np.testing.assert_array_equal(counts, s.items["popularity"].to_numpy())
    assert s.item_genres[0].sum() == 0


def test_id_mapping_round_trips(ml100k_seq):
    s = ml100k_seq
    internal = np.arange(1, s.num_items + 1)
    np.testing.assert_array_equal(s.to_internal(s.to_movielens(internal)), internal)
    assert s.titles(s.to_internal(50)) == ["Star Wars (1977)"]
    with pytest.raises(KeyError, match="item id 99999 is not in ml-100k"):
        s.to_internal([1, 99999])
    with pytest.raises(KeyError, match="outside 1.."):
        s.to_movielens(0)
    assert s.user_ids[s.user_index(196)] == 196
    with pytest.raises(KeyError, match="user id 5000"):
        s.user_index(5000)


def test_chronological_with_file_order_ties(ml100k, ml100k_seq):
    s = ml100k_seq
    assert all(np.all(np.diff(t) >= 0) for t in s.timestamps)
    # Within a tie, file order: the lines of u.data for that user and timestamp, in order.
    frame = ml100k.interactions
    u = 0
    uid = int(s.user_ids[u])
    rows = frame[frame["user_id"] == uid]
    ts = s.timestamps[u]
    tied = ts[np.flatnonzero(np.diff(ts) == 0)[0]]
    expected = rows[rows["timestamp"] == tied]["item_id"].to_numpy()
    expected = expected[np.isin(expected, s.item_ids[1:])]
    got = s.to_movielens(s.sequences[u][ts == tied])
    np.testing.assert_array_equal(got, expected)


def test_tie_break_facts_of_ml100k(ml100k):
    """The numbers quoted in chapter 1: ties at the end of sequences move the held-out targets."""
    file_order = sl.make_sequences(ml100k, min_item_interactions=1)
    item_order = sl.make_sequences(ml100k, min_item_interactions=1, tie_break="item")
    tied_last_two = sum(int(t[-1] == t[-2]) for t in file_order.timestamps)
    assert tied_last_two == 415
    a, b = sl.leave_one_out(file_order), sl.leave_one_out(item_order)
    changed = (a.test_targets != b.test_targets) | (a.valid_targets != b.valid_targets)
    assert changed.sum() == 431
    for seq, ts in zip(item_order.sequences, item_order.timestamps):
        for t in np.unique(ts[np.r_[False, np.diff(ts) == 0]]):
            assert np.all(np.diff(item_order.item_ids[seq[ts == t]]) > 0)


def test_random_tie_break_is_seeded(ml100k):
    a = sl.make_sequences(ml100k, tie_break="random", seed=1)
    b = sl.make_sequences(ml100k, tie_break="random", seed=1)
    c = sl.make_sequences(ml100k, tie_break="random", seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))
    assert not all(np.array_equal(x, y) for x, y in zip(a.sequences, c.sequences))
    assert a.fingerprint() != c.fingerprint()
    with pytest.raises(ValueError, match="tie_break must be one of"):
        sl.make_sequences(ml100k, tie_break="alphabetical")


def test_min_rating_keeps_only_high_ratings(ml100k):
    s = sl.make_sequences(ml100k, min_rating=4)
    assert s.num_interactions < 60_000
    assert s.fingerprint()["min_rating"] == 4


def test_leave_one_out_invariants(ml100k_seq):
    s = ml100k_seq
    split = sl.leave_one_out(s)
    assert split.num_users == s.num_users and split.num_items == s.num_items
    for u, seq in enumerate(s.sequences):
        assert split.test_targets[u] == seq[-1]  # the test target is the user's last interaction
        assert split.valid_targets[u] == seq[-2]
        np.testing.assert_array_equal(split.test_inputs[u], seq[:-1])
        np.testing.assert_array_equal(split.valid_inputs[u], seq[:-2])
        np.testing.assert_array_equal(split.train[u], seq[:-2])
        assert split.test_targets[u] not in split.test_inputs[u]  # no target in its own input
        assert split.valid_targets[u] not in split.valid_inputs[u]
    assert split.fingerprint["split"] == "leave-one-out"
    assert split.fingerprint["num_items"] == s.num_items


def test_same_inputs_same_split(ml100k):
    a = sl.leave_one_out(sl.make_sequences(ml100k))
    b = sl.leave_one_out(sl.make_sequences(ml100k))
    np.testing.assert_array_equal(a.test_targets, b.test_targets)
    assert a.fingerprint == b.fingerprint


def test_synthetic_runs_through_the_same_pipeline():
    data = sl.make_synthetic(num_users=80, num_items=160, num_topics=4, max_length=30, seed=0)
    s = sl.make_sequences(data)
    split = sl.leave_one_out(s)
    assert split.num_users == 80
    assert s.item_topic is not None and s.item_topic[0] == -1
    np.testing.assert_array_equal(s.item_genres[1:].argmax(1), s.item_topic[1:])
    assert s.fingerprint()["generator"]["seed"] == 0
