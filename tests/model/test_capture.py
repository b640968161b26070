"""Tests for seqsae_lib.model.capture (chapters 3 and 7)."""

from __future__ import annotations

import pytest
import torch

from seqsae_lib.model import SASRec, intervene, record


@pytest.fixture()
def model() -> SASRec:
    torch.manual_seed(0)
    return SASRec(num_items=25, max_len=10, d_model=16, n_layers=2, n_heads=1, dropout=0.1).eval()


@pytest.fixture()
def ids() -> torch.Tensor:
    return torch.tensor([[1, 2, 3, 4, 5, 6], [0, 0, 7, 8, 9, 10], [0, 0, 0, 0, 0, 11]])


def _no_hooks(m: SASRec) -> bool:
    return all(not hp._forward_hooks for hp in m.hooks.values())


def test_record_equals_manual_computation(model, ids):
    with record(model, ["embed", "block_0", "block_1", "final"]) as rec:
        final = model(ids)
    keep = (ids != 0).unsqueeze(-1).float()
    _, attn_mask = model._masks(ids)
    emb = (model.item_emb(ids) + model.pos_emb.weight[-ids.shape[1]:]) * keep
    torch.testing.assert_close(rec["embed"], emb)
    b0 = model.blocks[0](emb, attn_mask) * keep
    torch.testing.assert_close(rec["block_0"], b0)
    b1 = model.blocks[1](b0, attn_mask) * keep
    torch.testing.assert_close(rec["block_1"], b1)
    torch.testing.assert_close(rec["final"], model.final_ln(b1) * keep)
    assert torch.equal(rec["final"], final)
    assert rec["block_1"].shape == (3, 6, 16)
    assert not rec["block_1"].requires_grad
    assert _no_hooks(model)


def test_record_last_only_and_accumulate(model, ids):
    with record(model, "block_1", last_only=True, accumulate=True) as rec:
        model(ids[:2])
        model(ids[2:])
    assert rec["block_1"].shape == (3, 16)
    assert rec.num_passes("block_1") == 2
    with record(model, "block_1") as full:
        model(ids)
    torch.testing.assert_close(rec["block_1"], full["block_1"][:, -1])
    with record(model, None) as every:
        model(ids)
    assert list(every) == list(model.capture_points)


def test_record_errors(model, ids):
    with pytest.raises(KeyError, match="valid names"):
        with record(model, ["block_9"]):
            pass
    assert _no_hooks(model)
    with record(model, "final") as rec:
        pass
    with pytest.raises(KeyError, match="nothing was recorded"):
        rec["final"]
    with pytest.raises(KeyError, match="not recorded"):
        rec["embed"]


def test_identity_intervention_is_bit_identical(model, ids):
    base = model.scores(ids)
    for name in model.capture_points:
        for pos in ("all", "last"):
            with intervene(model, name, lambda h: h, positions=pos):
                out = model.scores(ids)
            assert torch.equal(out, base), (name, pos)
    assert _no_hooks(model)


def test_intervention_at_final_changes_scores_exactly(model, ids):
    direction = torch.randn(16)
    base_h = model.last_hidden(ids)
    with intervene(model, "final", lambda h: h + 2.0 * direction, positions="last"):
        steered = model.scores(ids)
    expected = model.score(base_h + 2.0 * direction)
    torch.testing.assert_close(steered, expected)
    delta = steered[:, 1:] - model.scores(ids)[:, 1:]
    torch.testing.assert_close(delta, (2.0 * direction @ model.item_emb.weight[1:].T).expand(3, -1))


def test_intervention_at_block0_changes_downstream(model, ids):
    base = {}
    with record(model, ["embed", "block_0", "block_1"]) as rec:
        model(ids)
    base = dict(rec)
    with record(model, ["embed", "block_0", "block_1"]) as rec:
        with intervene(model, "block_0", lambda h: h * 0.0 + 1.0):
            model(ids)
    assert torch.equal(rec["embed"], base["embed"])
    assert torch.all(rec["block_0"] == 1.0)  # recordings see the replacement
    assert not torch.allclose(rec["block_1"], base["block_1"])
    # same result whatever the nesting order
    with intervene(model, "block_0", lambda h: h * 0.0 + 1.0):
        with record(model, ["block_0", "block_1"]) as rec2:
            model(ids)
    assert torch.equal(rec2["block_0"], rec["block_0"])
    assert torch.equal(rec2["block_1"], rec["block_1"])


def test_last_only_intervention_leaves_earlier_positions(model, ids):
    with record(model, "final") as base:
        model(ids)
    with record(model, "final") as rec:
        with intervene(model, "embed", lambda h: h + 5.0, positions="last"):
            model(ids)
    torch.testing.assert_close(rec["final"][:, :-1], base["final"][:, :-1], rtol=0, atol=0)
    assert not torch.allclose(rec["final"][:, -1], base["final"][:, -1])


def test_intervene_with_forward_from(model, ids):
    with record(model, "block_0") as rec:
        model(ids)
    cached = rec["block_0"]
    fn = lambda h: h + 1.0  # noqa: E731
    with intervene(model, "block_0", fn, positions="last"):
        live = model(ids)
        from_cache = model.forward_from("block_0", cached, ids)
    torch.testing.assert_close(live, from_cache)


def test_hooks_removed_after_exceptions(model, ids):
    with pytest.raises(RuntimeError, match="boom"):
        with record(model, "block_0"):
            raise RuntimeError("boom")
    assert _no_hooks(model)
    with pytest.raises(ValueError, match="shape"):
        with intervene(model, "block_1", lambda h: h[:, :1]):
            model(ids)
    assert _no_hooks(model)
    with pytest.raises(ValueError, match="NaN or infinite"):
        with intervene(model, "block_1", lambda h: h * float("nan"), positions="last"):
            model(ids)
    assert _no_hooks(model)
    with pytest.raises(TypeError, match="torch.Tensor"):
        with intervene(model, "final", lambda h: 3.0):
            model(ids)
    assert _no_hooks(model)


def test_intervene_argument_errors(model):
    with pytest.raises(KeyError, match="valid names"):
        with intervene(model, "block_5", lambda h: h):
            pass
    with pytest.raises(ValueError, match="positions"):
        with intervene(model, "final", lambda h: h, positions="first"):  # type: ignore[arg-type]
            pass
    with pytest.raises(TypeError, match="callable"):
        with intervene(model, "final", 3.0):  # type: ignore[arg-type]
            pass
    assert _no_hooks(model)
