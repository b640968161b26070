"""topk_encode (chapter 3, the trainer's TopK step): the dense TopK's values and gradients, without the dense matrix."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqsae_lib.sae.sparsity import topk_encode


def dense_reference(centered, W, b, k):
    vals, idx = (centered @ W + b).topk(k, dim=-1, sorted=False)
    return F.relu(vals), idx


def as_dense(vals, idx, d_sae):
    return torch.zeros(len(vals), d_sae, dtype=vals.dtype).scatter(-1, idx, vals)


@pytest.mark.parametrize("chunk_rows", [1, 7, 256, 10_000])
def test_values_and_gradients_equal_the_dense_topk(chunk_rows):
    gen = torch.Generator().manual_seed(0)
    n, d, m, k = 300, 16, 96, 5
    centered = torch.randn(n, d, generator=gen, dtype=torch.float64, requires_grad=True)
    W = torch.randn(d, m, generator=gen, dtype=torch.float64, requires_grad=True)
    # a bias that makes some kept pre-activations negative, so ReLU zeros part of the code
    b = (torch.randn(m, generator=gen, dtype=torch.float64) - 8.0).requires_grad_(True)
    weight = torch.randn(m, generator=gen, dtype=torch.float64)  # d loss / d value, fixed per latent

    grads = []
    codes = []
    for fn in (lambda: dense_reference(centered, W, b, k), lambda: topk_encode(centered, W, b, k, chunk_rows=chunk_rows)):
        vals, idx = fn()
        codes.append(as_dense(vals.detach(), idx, m))
        grads.append(torch.autograd.grad((vals * weight[idx]).sum(), (centered, W, b)))
    kept = torch.count_nonzero(codes[0], dim=1)
    assert bool((kept < k).any()) and bool((kept > 0).any())
    torch.testing.assert_close(codes[1], codes[0], rtol=0, atol=1e-12)
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_backward_only_for_the_inputs_that_need_it():
    centered = torch.randn(20, 4)  # data: no gradient wanted
    W = torch.randn(4, 12, requires_grad=True)
    b = torch.zeros(12)
    vals, idx = topk_encode(centered, W, b, 3)
    (grad_W,) = torch.autograd.grad(vals.sum(), (W,))
    assert grad_W.shape == W.shape and idx.dtype == torch.long and not idx.requires_grad


@pytest.mark.parametrize("shapes, k, match", [
    (((5, 4), (3, 12), (12,)), 2, r"centered \(n, d_in\) and W_enc \(d_in, d_sae\).*\(5, 4\) and \(3, 12\)"),
    (((5, 4), (4, 12), (11,)), 2, r"b_enc must have shape \(12,\), got \(11,\)"),
    (((5, 4), (4, 12), (12,)), 13, r"k must be in \[1, d_sae=12\], got 13"),
])
def test_bad_shapes_and_k_are_refused_with_the_shapes(shapes, k, match):
    tensors = [torch.zeros(s) for s in shapes]
    with pytest.raises(ValueError, match=match):
        topk_encode(*tensors, k)
