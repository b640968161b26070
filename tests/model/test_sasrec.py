"""Tests for seqsae_lib.model.sasrec (chapter 2)."""

from __future__ import annotations

import math

import pytest
import torch

from seqsae_lib.model import SASRec, SASRecConfig, UnknownCapturePointError

NUM_ITEMS = 30


def small_model(**kw) -> SASRec:
    torch.manual_seed(0)
    args = dict(num_items=NUM_ITEMS, max_len=12, d_model=16, n_layers=2, n_heads=2, dropout=0.2)
    args.update(kw)
    return SASRec(**args).eval()


def batch() -> torch.Tensor:
    # left-padded: row 0 full, row 1 short, row 2 a single item, row 3 all padding
    return torch.tensor(
        [
            [3, 4, 5, 6, 7, 8, 9, 10],
            [0, 0, 0, 0, 11, 12, 13, 14],
            [0, 0, 0, 0, 0, 0, 0, 15],
            [0, 0, 0, 0, 0, 0, 0, 0],
        ]
    )


def test_shapes_and_padding_zeroed_and_finite():
    m = small_model()
    ids = batch()
    h = m(ids)
    assert h.shape == (4, 8, 16)
    assert torch.isfinite(h).all()
    assert torch.all(h[ids == 0] == 0)
    s = m.scores(ids[:3])
    assert s.shape == (3, NUM_ITEMS + 1)
    assert torch.all(torch.isneginf(s[:, 0]))
    assert torch.isfinite(s[:, 1:]).all()
    assert torch.equal(m.last_hidden(ids[:3]), h[:3, -1])


def test_an_empty_history_is_not_scored():
    # Row 3 is all padding: its final state is exactly zero, so every score would be 0 and the "top-10"
    # would be items 1..10. It is refused, naming the row.
    m = small_model()
    with pytest.raises(ValueError, match="row 3 ends in padding.*empty history"):
        m.scores(batch())
    with pytest.raises(ValueError, match="row 0 ends in padding"):
        m.last_hidden(torch.tensor([[5, 6, 0]]))  # right-padded


def test_training_mode_padding_is_finite_and_zero():
    m = small_model().train()
    ids = batch()
    h = m(ids)
    assert torch.isfinite(h).all()
    assert torch.all(h[ids == 0] == 0)
    loss = m.score(h[ids != 0]).logsumexp(-1).mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    assert torch.all(m.item_emb.weight.grad[0] == 0)


def test_output_independent_of_extra_left_padding():
    m = small_model()
    ids = batch()[:3]
    wide = torch.cat([torch.zeros(3, 4, dtype=torch.long), ids], dim=1)
    torch.testing.assert_close(m(wide)[:, 4:], m(ids), rtol=1e-5, atol=1e-6)


def test_causality_future_items_do_not_change_past():
    m = small_model()
    a = torch.tensor([[0, 0, 1, 2, 3, 4]])
    b = torch.tensor([[0, 0, 1, 2, 3, 9]])
    torch.testing.assert_close(m(a)[:, :5], m(b)[:, :5])
    assert not torch.allclose(m(a)[:, 5], m(b)[:, 5])


def test_score_is_tied_head():
    m = small_model()
    h = m.last_hidden(batch()[:3])  # row 3 (all padding) has no last state
    expected = h @ m.item_emb.weight.T
    s = m.score(h)
    torch.testing.assert_close(s[:, 1:], expected[:, 1:])


def test_capture_points_and_hook_point_errors():
    m = small_model(n_layers=3)
    assert m.capture_points == ("embed", "block_0", "block_1", "block_2", "final")
    assert m.hook_point("block_1") is m.hooks["block_1"]
    with pytest.raises(KeyError, match="valid names are"):
        m.hook_point("block_3")
    with pytest.raises(ValueError, match="embed"):
        m.hook_point("resid")
    assert isinstance(UnknownCapturePointError("x"), ValueError)


def test_forward_from_matches_full_forward():
    m = small_model()
    ids = batch()
    states = {}
    handles = [
        m.hook_point(n).register_forward_hook(lambda mod, i, o, n=n: states.__setitem__(n, o))
        for n in m.capture_points
    ]
    try:
        final = m(ids)
    finally:
        for h in handles:
            h.remove()
    for name in m.capture_points:
        torch.testing.assert_close(m.forward_from(name, states[name], ids), final)
    with pytest.raises(ValueError, match="shape"):
        m.forward_from("block_0", states["block_0"][:, 1:], ids)
    with pytest.raises(KeyError, match="valid names"):
        m.forward_from("nope", states["block_0"], ids)


def test_bad_inputs_raise_clear_errors():
    m = small_model()
    with pytest.raises(ValueError, match="max_len"):
        m(torch.ones(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 30\]"):
        m(torch.tensor([[1, 31]]))
    with pytest.raises(ValueError, match="batch, length"):
        m(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="integer"):
        m(torch.tensor([[1.0, 2.0]]))


def test_config_roundtrip_and_validation():
    m = small_model(activation="relu", d_ff=40, scale_embeddings=True)
    cfg = m.config
    assert isinstance(cfg, SASRecConfig) and cfg.ff_width == 40
    m2 = SASRec.from_config(SASRecConfig.from_dict(cfg.to_dict()))
    assert m2.config == cfg
    m2.load_state_dict(m.state_dict())
    m2.eval()
    torch.testing.assert_close(m2.scores(batch()[:3]), m.scores(batch()[:3]))
    assert SASRecConfig(num_items=5).ff_width == 64
    with pytest.raises(ValueError, match="n_heads"):
        SASRecConfig(num_items=5, d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="dropout"):
        SASRecConfig(num_items=5, dropout=1.5)
    with pytest.raises(ValueError, match="activation"):
        SASRecConfig(num_items=5, activation="tanh")
    with pytest.raises(ValueError, match="unknown SASRecConfig"):
        SASRecConfig.from_dict({"num_items": 5, "hidden": 3})
    with pytest.raises(TypeError):
        SASRec(5)  # keyword-only


def test_embedding_scale_option():
    m = small_model(scale_embeddings=True, dropout=0.0)
    ids = torch.tensor([[0, 2]])
    from seqsae_lib.model import record

    with record(m, "embed") as rec:
        m(ids)
    expected = m.item_emb.weight[2] * math.sqrt(16) + m.pos_emb.weight[-1]
    torch.testing.assert_close(rec["embed"][0, 1], expected)
    assert torch.all(rec["embed"][0, 0] == 0)
