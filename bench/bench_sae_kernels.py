"""The encoder half of a TopK SAE training step, timed alone: dense autograd against ``topk_encode``.

Run: python bench/bench_sae_kernels.py [--threads 2] [--repeats 10]

One batch of ``bench/bench_speed.py``'s SAE workload (4,096 vectors, d = 64, 2,048 latents, k = 32): the
pre-activations ``centered @ W_enc + b_enc``, their TopK (ReLU'd) and the backward pass into ``W_enc``,
``b_enc`` and ``centered`` (``b_dec`` reaches the encoder through it).

* dense: what autograd does with ``(centered @ W_enc + b_enc).topk(k)``: the ``(n, d_sae)`` pre-activations are
  kept, and the backward pass scatters the gradient into an ``(n, d_sae)`` matrix and multiplies it twice;
* :func:`seqsae_lib.sae.sparsity.topk_encode` at several ``chunk_rows``: the pre-activations a chunk of rows
  at a time (never kept), the backward pass over the ``n * k`` kept entries only.

Median milliseconds of forward + backward over ``--repeats`` calls after one warm-up call, and the largest
gradient difference from the dense path (relative to the gradient's largest entry). Also times the parts: the forward matrix product alone and the TopK
alone.
"""

from __future__ import annotations

import argparse
from typing import Callable

import torch
import torch.nn.functional as F

from bench_sasrec_kernels import median_ms  # the same timer (bench/ is on sys.path when run as a script)
from seqsae_lib.sae.sparsity import topk_encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--d-sae", type=int, default=2048)
    parser.add_argument("--k", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, d, m, k = args.n, 64, args.d_sae, args.k
    gen = torch.Generator().manual_seed(0)
    centered = torch.randn(n, d, generator=gen).requires_grad_(True)
    W = (torch.randn(d, m, generator=gen) / d ** 0.5).requires_grad_(True)
    b = (0.1 * torch.randn(m, generator=gen)).requires_grad_(True)
    latent_weight = torch.randn(m, generator=gen)  # d loss / d value of a kept latent: fixed per latent

    def dense() -> list[torch.Tensor]:
        vals, idx = (centered @ W + b).topk(k, dim=-1, sorted=False)
        vals = F.relu(vals)
        return list(torch.autograd.grad((vals * latent_weight[idx]).sum(), (centered, W, b)))

    def sparse(chunk: int) -> Callable[[], list[torch.Tensor]]:
        def run() -> list[torch.Tensor]:
            vals, idx = topk_encode(centered, W, b, k, chunk_rows=chunk)
            return list(torch.autograd.grad((vals * latent_weight[idx]).sum(), (centered, W, b)))
        return run

    print(f"torch {torch.__version__}, {args.threads} threads; encoder of one TopK SAE batch: {n:,} x {d} -> "
          f"{m:,} latents, k = {k}")
    reference = dense()
    base = median_ms(dense, args.repeats)
    print(f"  dense autograd, forward + backward:          {base:7.1f} ms")
    for chunk in (256, 1024, 4096):
        grads = sparse(chunk)()
        diff = max(float((g - r).abs().max() / r.abs().max()) for g, r in zip(grads, reference))
        ms = median_ms(sparse(chunk), args.repeats)
        print(f"  topk_encode, chunk_rows {chunk:5d}:              {ms:7.1f} ms ({ms / base:.2f}x), "
              f"largest gradient difference {diff:.1e} (relative to the largest entry)")
    with torch.no_grad():
        pre = centered @ W + b
        print(f"  parts: forward matrix product {median_ms(lambda: torch.addmm(b, centered, W), args.repeats):.1f} ms, "
              f"TopK of the (n, d_sae) pre-activations {median_ms(lambda: pre.topk(k, dim=-1, sorted=False), args.repeats):.1f} ms")


if __name__ == "__main__":
    main()
