"""Tests for seqsae_lib.sae.activations (chapter 3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from seqsae_lib.sae import ActivationFileError, ActivationStore, collect_activations
from seqsae_lib.data import left_pad
from seqsae_lib.model import SASRec, UnknownCapturePointError, record

MAX_LEN = 12  # shorter than most synthetic sequences, so windows really cut


@pytest.fixture(scope="module")
def model(tiny_sasrec) -> SASRec:
    return tiny_sasrec  # d_model=16, max_len=MAX_LEN, shared by the session (split: conftest.py)


@pytest.fixture(scope="module")
def store(model, split) -> ActivationStore:
    return collect_activations(
        model, split.train, "block_1", next_items=split.valid_targets, batch_size=16, progress=False,
        fingerprint=split.fingerprint,
    )


def _no_hooks(m: SASRec) -> bool:
    return all(not hp._forward_hooks for hp in m.hooks.values())


def test_shape_and_metadata_alignment(store, split):
    lengths = np.array([len(s) for s in split.train])
    assert len(store) == int(np.minimum(lengths, MAX_LEN).sum())
    assert store.acts.shape == (len(store), 16) and store.acts.dtype == torch.float32
    assert store.model_fingerprint == split.fingerprint
    assert (lengths > MAX_LEN).any()  # some windows are cut
    for i in range(len(store)):
        u, p = int(store.user[i]), int(store.position[i])
        s = split.train[u]
        assert len(s) - MAX_LEN <= p < len(s)
        assert store.input_item[i] == s[p]
        expected_next = s[p + 1] if p + 1 < len(s) else split.valid_targets[u]
        assert store.next_item[i] == expected_next
    frame = store.to_frame()
    assert list(frame.columns) == ["user", "position", "input_item", "next_item", "is_last"]
    last = frame[frame["is_last"]]
    assert len(last) == len(split.train)
    np.testing.assert_array_equal(last["position"].to_numpy(), lengths - 1)
    np.testing.assert_array_equal(last["next_item"].to_numpy(), split.valid_targets)
    # rows are ordered by user, then chronologically
    assert (np.diff(store.user) >= 0).all()
    assert (np.diff(store.position)[np.diff(store.user) == 0] == 1).all()


def test_without_next_items_the_last_target_is_unknown(model, split):
    s = collect_activations(model, split.train[:5], "final", progress=False)
    assert (s.next_item[s.is_last] == 0).all()
    assert (s.next_item[~s.is_last] > 0).all()
    assert s.model_fingerprint == {}


def test_states_equal_the_models_forward_pass(model, split, store):
    for u in (0, 7, 33):
        ids = left_pad([split.train[u]], MAX_LEN)
        with record(model, "block_1") as rec:
            model(ids)
        expected = rec["block_1"][0][ids[0] != 0]
        torch.testing.assert_close(store.acts[store.user == u], expected, rtol=1e-5, atol=1e-6)
    final = collect_activations(model, split.train[:3], "final", progress=False)
    with torch.no_grad():
        last = model.last_hidden(left_pad(split.train[:3], MAX_LEN))
    torch.testing.assert_close(final.acts[final.is_last], last, rtol=1e-5, atol=1e-6)


def test_causality_state_at_t_ignores_later_items(model, split, store):
    """The row for position t equals a pass in which every later item of the window is padding."""
    u = 3
    seq = split.train[u]
    rows = np.flatnonzero(store.user == u)
    ids = left_pad([seq], MAX_LEN)
    for row in rows[[0, len(rows) // 2, -1]]:
        col = MAX_LEN - (len(seq) - int(store.position[row]))  # column of this position in the window
        masked = ids.clone()
        masked[0, col + 1 :] = 0
        with record(model, "block_1") as rec, torch.no_grad():
            model(masked)
        torch.testing.assert_close(store.acts[row], rec["block_1"][0, col], rtol=1e-5, atol=1e-6)
        assert masked[0, col] == store.input_item[row]


def test_batch_size_and_capture_points(model, split, store):
    other = collect_activations(model, split.train, "block_1", next_items=split.valid_targets,
                                batch_size=256, progress=False)
    torch.testing.assert_close(other.acts, store.acts, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(other.position, store.position)
    # "embed" stops the forward pass early; it must still equal a recording of a full pass
    emb = collect_activations(model, split.train[:4], "embed", progress=False)
    with record(model, "embed") as rec, torch.no_grad():
        ids = left_pad(split.train[:4], MAX_LEN)
        model(ids)
    torch.testing.assert_close(emb.acts, rec["embed"][ids != 0])
    assert _no_hooks(model)


def test_max_vectors_subsample(model, split, store):
    sub = collect_activations(model, split.train, "block_1", next_items=split.valid_targets,
                              batch_size=16, max_vectors=100, seed=1, progress=False)
    assert len(sub) == 100 and sub.info["subsampled"]
    full = store.to_frame().reset_index().set_index(["user", "position"])
    rows = np.array(full.loc[list(zip(sub.user, sub.position)), "row"])
    assert (np.diff(rows) > 0).all()  # kept in row order
    torch.testing.assert_close(sub.acts, store.acts[rows], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(sub.next_item, store.next_item[rows])
    again = collect_activations(model, split.train, "block_1", max_vectors=100, seed=1, progress=False)
    np.testing.assert_array_equal(again.position, sub.position)


def test_model_mode_restored_and_errors(model, split):
    model.train()
    try:
        collect_activations(model, split.train[:2], "final", progress=False)
        assert model.training
    finally:
        model.eval()
    with pytest.raises(UnknownCapturePointError, match="block_0"):
        collect_activations(model, split.train, "block_7", progress=False)
    with pytest.raises(ValueError, match="one item id per sequence"):
        collect_activations(model, split.train, next_items=split.valid_targets[:3], progress=False)
    with pytest.raises(ValueError, match="exceeds model.max_len"):
        collect_activations(model, split.train, max_len=MAX_LEN + 1, progress=False)
    with pytest.raises(ValueError, match="item ids"):
        collect_activations(model, [np.array([1, 2, 999])], progress=False)
    with pytest.raises(ValueError, match="max_vectors"):
        collect_activations(model, split.train, max_vectors=0, progress=False)
    assert _no_hooks(model)


def test_store_operations(store, tmp_path):
    mask = store.next_item % 2 == 0
    half = store.subset(mask)
    assert len(half) == int(mask.sum())
    torch.testing.assert_close(half.acts, store.acts[torch.from_numpy(mask)])
    np.testing.assert_array_equal(half.user, store.user[mask])
    assert len(store.subset(slice(0, 10))) == 10
    picked = store.subset(np.array([5, 2, -1]))
    np.testing.assert_array_equal(picked.position, store.position[[5, 2, len(store) - 1]])
    assert len(store.subset(pd.Series(mask))) == len(half)
    with pytest.raises(ValueError, match="boolean mask"):
        store.subset(mask[:-1])
    with pytest.raises(IndexError):
        store.subset([len(store)])
    torch.testing.assert_close(store.mean(), store.acts.mean(0), rtol=1e-5, atol=1e-6)
    assert store.mean().shape == (16,)

    npz, js = store.save(tmp_path / "acts")
    back = ActivationStore.load(tmp_path / "acts", capture_point="block_1")
    assert torch.equal(back.acts, store.acts)
    for name in ("user", "position", "input_item", "next_item"):
        np.testing.assert_array_equal(getattr(back, name), getattr(store, name))
    assert back.model_fingerprint == store.model_fingerprint and back.capture_point == "block_1"
    with pytest.raises(ActivationFileError, match="expected 'final'"):
        ActivationStore.load(tmp_path / "acts", capture_point="final")
    npz.write_bytes(npz.read_bytes()[:-10])
    with pytest.raises(ActivationFileError, match="checksum"):
        ActivationStore.load(tmp_path / "acts")
    assert not list(tmp_path.glob("*.tmp"))


def test_store_validation():
    meta = {k: np.zeros(3, dtype=np.int64) for k in ("user", "position", "input_item", "next_item")}
    with pytest.raises(TypeError, match="float32"):
        ActivationStore("final", torch.zeros(3, 4, dtype=torch.float64), **meta)
    with pytest.raises(ValueError, match="acts has 2 rows"):
        ActivationStore("final", torch.zeros(2, 4), **meta)
    with pytest.raises(ValueError, match="empty"):
        ActivationStore("final", torch.zeros(0, 4), **{k: v[:0] for k, v in meta.items()}).mean()


def _replace_arrays(npz, js, data: bytes) -> None:
    """Put other bytes in a saved store's .npz and record their checksum, as another tool could have."""
    import hashlib
    import json

    npz.write_bytes(data)
    meta = json.loads(js.read_text())
    meta["arrays_sha256"] = hashlib.sha256(data).hexdigest()
    js.write_text(json.dumps(meta))


def test_unreadable_arrays_file_names_the_file(store, tmp_path):
    import io

    npz, js = store.subset(slice(0, 5)).save(tmp_path / "acts")
    # Object arrays: np.load used to raise a bare "Object arrays cannot be loaded when allow_pickle=False".
    buf = io.BytesIO()
    np.savez(buf, acts=np.zeros((5, 16), dtype=np.float32), user=np.array([1, "a", None, 2, 3], dtype=object),
             position=np.zeros(5, dtype=np.int64), input_item=np.zeros(5, dtype=np.int64),
             next_item=np.zeros(5, dtype=np.int64))
    _replace_arrays(npz, js, buf.getvalue())
    with pytest.raises(ActivationFileError, match=r"acts\.npz is not a readable activation store archive \(ValueError: Object arrays"):
        ActivationStore.load(tmp_path / "acts")
    # Not a zip archive at all (used to raise zipfile.BadZipFile).
    _replace_arrays(npz, js, b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(ActivationFileError, match=r"acts\.npz is not a readable activation store archive \(BadZipFile"):
        ActivationStore.load(tmp_path / "acts")
    # A valid archive without the expected arrays.
    buf = io.BytesIO()
    np.savez(buf, acts=np.zeros((5, 16), dtype=np.float32))
    _replace_arrays(npz, js, buf.getvalue())
    with pytest.raises(ActivationFileError, match=r"acts\.npz lacks the array\(s\) \['user'"):
        ActivationStore.load(tmp_path / "acts")
