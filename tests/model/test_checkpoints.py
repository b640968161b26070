"""Tests for seqsae_lib.model.checkpoints (chapter 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seqsae_lib.model import (
    CheckpointError,
    FingerprintMismatchError,
    SASRec,
    checkpoint_paths,
    load_checkpoint,
    save_checkpoint,
)

FP = {"dataset": "ml-100k", "min_rating": 0, "num_items": 1349, "n_users": 943, "params": {"k_core": 5}}


def model() -> SASRec:
    torch.manual_seed(0)
    return SASRec(num_items=30, max_len=8, d_model=8, n_layers=2, n_heads=2, activation="relu").eval()


def ids() -> torch.Tensor:
    return torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8]])


def test_round_trip_identical_scores(tmp_path: Path):
    m = model()
    pt, js = save_checkpoint(
        m, tmp_path / "sub" / "sasrec", fingerprint=FP,
        metrics={"NDCG@10": np.float32(0.25)}, extra={"epochs": np.int64(3)},
    )
    assert pt.name == "sasrec.pt" and js.name == "sasrec.json" and pt.parent == js.parent
    loaded, meta = load_checkpoint(tmp_path / "sub" / "sasrec", expected_fingerprint=dict(FP))
    assert torch.equal(loaded.scores(ids()), m.scores(ids()))
    assert loaded.config == m.config and not loaded.training
    assert meta["metrics"]["NDCG@10"] == pytest.approx(0.25)
    assert meta["extra"] == {"epochs": 3}
    assert meta["torch_version"] == torch.__version__ and "seqsae_version" in meta
    assert meta["model_config"]["activation"] == "relu"
    # a trailing suffix on the stem is accepted
    load_checkpoint(str(pt))
    assert not [p for p in pt.parent.iterdir() if p.name.endswith(".tmp")]


def test_missing_files_name_the_path(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_checkpoint(tmp_path / "nothing")
    save_checkpoint(model(), tmp_path / "m", fingerprint=FP)
    (tmp_path / "m.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"m\.json"):
        load_checkpoint(tmp_path / "m")


def test_truncated_pt_is_reported(tmp_path: Path):
    pt, _ = save_checkpoint(model(), tmp_path / "m", fingerprint=FP)
    pt.write_bytes(pt.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"m\.pt"):
        load_checkpoint(tmp_path / "m")


def test_corrupt_pt_with_matching_hash_is_reported(tmp_path: Path):
    pt, js = save_checkpoint(model(), tmp_path / "m", fingerprint=FP)
    pt.write_bytes(b"not a zip archive")
    meta = json.loads(js.read_text())
    import hashlib

    meta["weights_sha256"] = hashlib.sha256(b"not a zip archive").hexdigest()
    js.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"m\.pt could not be read"):
        load_checkpoint(tmp_path / "m")


def test_truncated_json_is_reported(tmp_path: Path):
    _, js = save_checkpoint(model(), tmp_path / "m", fingerprint=FP)
    js.write_text(js.read_text()[:40])
    with pytest.raises(CheckpointError, match=r"m\.json is corrupt or truncated"):
        load_checkpoint(tmp_path / "m")
    js.write_text("[]")
    with pytest.raises(CheckpointError, match="not a seqsae"):
        load_checkpoint(tmp_path / "m")


def test_fingerprint_mismatch_names_the_key(tmp_path: Path):
    save_checkpoint(model(), tmp_path / "m", fingerprint=FP)
    other = dict(FP, num_items=1682, params={"k_core": 10})
    with pytest.raises(FingerprintMismatchError, match="num_items: checkpoint has 1349, expected 1682") as info:
        load_checkpoint(tmp_path / "m", expected_fingerprint=other)
    assert "params.k_core" in str(info.value)
    with pytest.raises(FingerprintMismatchError, match="missing from the checkpoint"):
        load_checkpoint(tmp_path / "m", expected_fingerprint=dict(FP, seed=1))


def test_failed_save_leaves_nothing(tmp_path: Path):
    with pytest.raises(TypeError, match="fingerprint must be JSON"):
        save_checkpoint(model(), tmp_path / "m", fingerprint={"bad": object()})
    with pytest.raises(TypeError, match="metrics must be JSON"):
        save_checkpoint(model(), tmp_path / "m", fingerprint=FP, metrics={"x": {1, 2}})
    assert list(tmp_path.iterdir()) == []
    # an existing good checkpoint survives a failed overwrite
    save_checkpoint(model(), tmp_path / "m", fingerprint=FP)
    before = (tmp_path / "m.pt").read_bytes()
    with pytest.raises(TypeError):
        save_checkpoint(model(), tmp_path / "m", fingerprint={"bad": object()})
    assert (tmp_path / "m.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.pt"]


def test_weights_not_fitting_config(tmp_path: Path):
    _, js = save_checkpoint(model(), tmp_path / "m", fingerprint=FP)
    meta = json.loads(js.read_text())
    meta["model_config"]["d_model"] = 16
    js.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit the config"):
        load_checkpoint(tmp_path / "m")


def test_checkpoint_paths():
    assert checkpoint_paths("a/b.v1") == (Path("a/b.v1.pt"), Path("a/b.v1.json"))
    assert checkpoint_paths("a/b.json")[0] == Path("a/b.pt")
    with pytest.raises(ValueError, match="stem"):
        checkpoint_paths("dir/")


def _rewrite_weights(pt: Path, js: Path, state: dict) -> None:
    """Replace the weights of a saved pair (as an older library or another tool could have written them)."""
    import hashlib
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    pt.write_bytes(buf.getvalue())
    meta = json.loads(js.read_text())
    meta["weights_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    js.write_text(json.dumps(meta))


def test_non_finite_weights_are_refused_on_save_and_load(tmp_path: Path):
    m = model()
    with torch.no_grad():
        m.item_emb.weight[3, 0] = float("nan")
        m.blocks[0].ln_attn.weight[1] = float("inf")
    with pytest.raises(CheckpointError, match=r"refusing to save.*'item_emb.weight' \(1 NaN, 0 inf.*"
                                              r"'blocks.0.ln_attn.weight' \(0 NaN, 1 inf.*nothing was written"):
        save_checkpoint(m, tmp_path / "sasrec", fingerprint=FP)
    assert list(tmp_path.iterdir()) == []
    pt, js = save_checkpoint(model(), tmp_path / "sasrec", fingerprint=FP)
    _rewrite_weights(pt, js, {k: v.clone() for k, v in m.state_dict().items()})
    with pytest.raises(CheckpointError, match=r"sasrec.pt hold non-finite values in tensor\(s\) 'item_emb.weight'"):
        load_checkpoint(tmp_path / "sasrec")


def test_weights_hash_in_memory_is_the_one_a_checkpoint_records(tmp_path: Path):
    import copy

    from seqsae_lib.utils.fileio import module_weights_sha256

    m = model()
    _, js = save_checkpoint(m, tmp_path / "sasrec", fingerprint=FP)
    recorded = json.loads(js.read_text())["weights_sha256"]
    assert module_weights_sha256(m) == recorded  # the same bytes the file holds
    loaded, _ = load_checkpoint(tmp_path / "sasrec")
    assert module_weights_sha256(loaded) == recorded  # the loaded model keeps the file's hash
    assert module_weights_sha256(copy.deepcopy(loaded)) == recorded  # and recomputing gives it too
    with torch.no_grad():
        loaded.item_emb.weight[1, 0] += 1.0  # a changed model has another hash (the cache follows edits)
    assert module_weights_sha256(loaded) != recorded
