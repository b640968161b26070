"""The two pieces of a SASRec training step that ``fused_loss`` and ``fast_dropout`` replace, timed alone.

Run: python bench/bench_sasrec_kernels.py [--threads 2] [--repeats 10]

* Output layer: mean full-softmax cross-entropy and its backward pass for 15,000 targets against 3,416 items,
  d = 64 (one batch of 128 users of the MovieLens-1M-shaped bench), ``F.cross_entropy`` on the logits against
  :func:`seqsae_lib.model.training.full_softmax_cross_entropy` at several chunk sizes; the largest gradient
  difference is printed too.
* Dropout masks: ``nn.functional.dropout`` (one Bernoulli draw per element) against
  :func:`seqsae_lib.model.layers.fast_dropout` (16-bit numbers, four per 64-bit draw) on a ``32 x 150 x 150``
  attention-probability tensor (a length group of 32 users at width 150).

Median milliseconds over ``--repeats`` calls after one warm-up call.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from seqsae_lib.model.layers import fast_dropout
from seqsae_lib.model.training import full_softmax_cross_entropy


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, d, items = 15_000, 64, 3_416
    hidden = (0.5 * torch.randn(n, d)).requires_grad_()
    weight = (0.5 * torch.randn(items + 1, d)).requires_grad_()
    targets = torch.randint(1, items + 1, (n,))
    print(f"torch {torch.__version__}, {args.threads} threads; output layer: {n:,} targets x {items:,} items, d = {d}")

    def reference() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(F.cross_entropy(hidden @ weight[1:].T, targets - 1), (hidden, weight))

    def fused(chunk: int | None) -> Callable[[], tuple[torch.Tensor, ...]]:
        return lambda: torch.autograd.grad(full_softmax_cross_entropy(hidden, weight, targets, chunk), (hidden, weight))

    want = reference()
    base = median_ms(reference, args.repeats)
    print(f"  F.cross_entropy on the logits, loss + backward: {base:7.1f} ms")
    for chunk in (64, 256, 1024, 4096, n, None):
        got = fused(chunk)()
        err = max(float((g - w).abs().max()) for g, w in zip(got, want))
        label = "default (2**20 // items)" if chunk is None else str(chunk)
        ms = median_ms(fused(chunk), args.repeats)
        print(f"  full_softmax_cross_entropy, chunk_rows {label:>24s}: {ms:7.1f} ms ({ms / base:.2f}x), "
              f"largest gradient difference {err:.1e}")

    probs = torch.rand(32, 1, 150, 150)
    base = median_ms(lambda: F.dropout(probs, 0.2, True), 10 * args.repeats)
    fast = median_ms(lambda: fast_dropout(probs, 0.2), 10 * args.repeats)
    print(f"dropout p = 0.2 on {probs.numel():,} attention probabilities: F.dropout {base:.2f} ms, "
          f"fast_dropout {fast:.2f} ms ({fast / base:.2f}x)")


if __name__ == "__main__":
    main()
