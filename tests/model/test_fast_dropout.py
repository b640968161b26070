"""The fast dropout masks (SASRecConfig.fast_dropout): their statistics, gradients and the explicit attention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seqsae_lib.model import SASRec, SASRecConfig
from seqsae_lib.model.layers import FastDropout, explicit_attention, fast_dropout


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_keep_rate_and_scale_match_the_drop_probability(p):
    torch.manual_seed(0)
    n = 400_003  # not a multiple of 4: the last 64-bit draw is only partly used
    out = fast_dropout(torch.ones(n), p)
    kept = out != 0
    # binomial standard deviation of the kept share: sqrt(p (1 - p) / n) ~ 0.0008 at p = 0.5; allow 5 of them
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    scale = 65536 / round((1 - p) * 65536)
    torch.testing.assert_close(out[kept], torch.full((int(kept.sum()),), scale))
    assert abs(out.mean().item() - 1.0) < 5 * math.sqrt(p / (1 - p) / n)  # the expectation is kept


def test_masks_are_independent_between_calls_and_positions():
    torch.manual_seed(0)
    a = fast_dropout(torch.ones(200_000), 0.5) != 0
    b = fast_dropout(torch.ones(200_000), 0.5) != 0
    agree = (a == b).float().mean().item()  # independent masks agree half the time
    assert abs(agree - 0.5) < 0.005
    neighbours = (a[:-1] == a[1:]).float().mean().item()  # the four lanes of one draw are independent too
    assert abs(neighbours - 0.5) < 0.005


def test_gradient_is_the_mask_times_the_scale_and_eval_is_identity():
    torch.manual_seed(1)
    x = torch.randn(7, 13, requires_grad=True)
    y = fast_dropout(x, 0.3)
    (g,) = torch.autograd.grad((y * torch.arange(13.0)).sum(), x)
    kept = y.detach() != 0
    scale = 65536 / round(0.7 * 65536)
    torch.testing.assert_close(g, kept * torch.arange(13.0) * scale)
    layer = FastDropout(0.3).eval()
    assert layer(x) is x
    assert fast_dropout(x, 0.0) is x
    with pytest.raises(ValueError, match=r"FastDropout.p must be in \[0.0, 1.0\)"):
        FastDropout(1.0)
    with pytest.raises(ValueError, match=r"must be in \[0.0, 1.0\)"):
        fast_dropout(x, -0.1)
    with pytest.raises(ValueError, match="finite"):
        fast_dropout(x, float("nan"))


@pytest.mark.parametrize("boolean", [True, False])
def test_explicit_attention_without_dropout_is_scaled_dot_product_attention(boolean):
    torch.manual_seed(2)
    q, k, v = (torch.randn(3, 2, 9, 8) for _ in range(3))
    allowed = torch.ones(9, 9, dtype=torch.bool).tril() & (torch.rand(3, 1, 1, 9) > 0.3)
    allowed |= torch.eye(9, dtype=torch.bool)
    mask = allowed if boolean else torch.zeros(allowed.shape).masked_fill_(~allowed, float("-inf"))
    torch.testing.assert_close(explicit_attention(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_a_fast_dropout_model_scores_like_the_same_weights_without_it():
    """fast_dropout changes training draws only: in eval mode the same weights give the same scores."""
    torch.manual_seed(3)
    fast = SASRec(num_items=30, max_len=12, d_model=16, n_layers=2, dropout=0.2, attn_dropout=0.2)  # the default
    plain = SASRec(num_items=30, max_len=12, d_model=16, n_layers=2, dropout=0.2, attn_dropout=0.2, fast_dropout=False)
    assert fast.config.fast_dropout and not plain.config.fast_dropout
    assert not any(isinstance(m, torch.nn.Dropout) for m in fast.modules())
    assert not any(isinstance(m, FastDropout) for m in plain.modules())
    plain.load_state_dict(fast.state_dict())
    ids = torch.randint(0, 31, (5, 12))
    ids[:, -1] = 1
    torch.testing.assert_close(fast.eval()(ids), plain.eval()(ids))
    fast.train()
    torch.manual_seed(4)
    first = fast(ids)
    torch.manual_seed(4)
    torch.testing.assert_close(fast(ids), first)  # seeded: reproducible
    assert not torch.allclose(fast(ids), first)  # a new draw: other masks
    assert SASRecConfig.from_dict(fast.config.to_dict()).fast_dropout is True
    with pytest.raises(TypeError, match="fast_dropout"):
        SASRecConfig(num_items=3, fast_dropout=1)
