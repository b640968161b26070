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


def test_autoencode_and_sparse_decode_equal_embedding_bag_in_values_and_gradients():
    from seqsae_lib.sae.sparsity import sparse_decode, topk_autoencode

    gen = torch.Generator().manual_seed(1)
    n, d, m, k = 200, 12, 80, 6
    centered = torch.randn(n, d, generator=gen, dtype=torch.float64, requires_grad=True)
    W = torch.randn(d, m, generator=gen, dtype=torch.float64, requires_grad=True)
    b = (torch.randn(m, generator=gen, dtype=torch.float64) - 6.0).requires_grad_(True)
    W_dec = torch.randn(m, d, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.randn(n, d, generator=gen, dtype=torch.float64)
    weight = torch.randn(m, generator=gen, dtype=torch.float64)

    def loss(vals, idx, recon):  # a reconstruction term and a term on the code itself
        return (recon - target).pow(2).sum() + (vals * weight[idx]).sum()

    vals, idx = dense_reference(centered, W, b, k)
    want_recon = F.embedding_bag(idx, W_dec, mode="sum", per_sample_weights=vals)
    want = torch.autograd.grad(loss(vals, idx, want_recon), (centered, W, b, W_dec))
    got_vals, got_idx, got_recon = topk_autoencode(centered, W, b, W_dec, k, chunk_rows=64)
    got = torch.autograd.grad(loss(got_vals, got_idx, got_recon), (centered, W, b, W_dec))
    torch.testing.assert_close(as_dense(got_vals.detach(), got_idx, m), as_dense(vals.detach(), idx, m), rtol=0, atol=1e-12)
    torch.testing.assert_close(got_recon, want_recon, rtol=1e-10, atol=1e-12)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)

    # sparse_decode alone, with a ragged code (offsets), as BatchTopK's
    flat_idx = torch.tensor([3, 7, 7, 1, 0, 5, 2], dtype=torch.long)
    offsets = torch.tensor([0, 2, 2, 5], dtype=torch.long)  # row 1 is empty
    v = torch.rand(7, generator=gen, dtype=torch.float64, requires_grad=True)
    outs = [fn(flat_idx, v, W_dec, offsets) for fn in
            (sparse_decode, lambda i, w, W_, o: F.embedding_bag(i, W_, o, mode="sum", per_sample_weights=w))]
    torch.testing.assert_close(outs[0], outs[1])
    grads = [torch.autograd.grad((o * target[:4]).sum(), (v, W_dec)) for o in outs]
    for g, w in zip(*grads):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_autoencode_refuses_a_decoder_of_the_wrong_shape():
    from seqsae_lib.sae.sparsity import topk_autoencode

    with pytest.raises(ValueError, match=r"W_dec must have shape \(12, d_in\), got \(11, 4\)"):
        topk_autoencode(torch.zeros(5, 4), torch.zeros(4, 12), torch.zeros(12), torch.zeros(11, 4), 2)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inputs_are_refused_with_the_rows(bad):
    from seqsae_lib.sae.sparsity import topk_autoencode

    centered = torch.zeros(6, 4)
    centered[2, 1] = centered[5, 0] = bad
    with pytest.raises(ValueError, match=r"NaN or infinite values in 2 row\(s\), first \[2, 5\]"):
        topk_encode(centered, torch.zeros(4, 12), torch.zeros(12), 2)
    with pytest.raises(ValueError, match=r"NaN or infinite"):
        topk_autoencode(centered, torch.zeros(4, 12), torch.zeros(12), torch.zeros(12, 4), 2)
