"""SASRec speed on ML-100k: training throughput, the naive comparison, time to quality, scoring latency.

Run: python bench/bench_sasrec.py [--epochs 3] [--skip-time-to-quality]

Prints, for 1 and 2 CPU threads:
  * seconds per training epoch and training tokens (targets) per second, for the library's trainer
    (padding columns trimmed, logits only at real positions) and for the naive variant (full 200-wide
    windows, logits at every position), and the speed-up;
  * the time the shipped recipe needs to reach the shipped checkpoint's validation NDCG@10 (2 threads);
  * scoring latency for one user (median over 200 calls).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np
import torch

import seqsae_lib as sl
from seqsae_lib.experiments.pretrained import SASREC_ML100K, load_pretrained_sasrec


def epoch_seconds(split, threads: int, naive: bool, epochs: int) -> tuple[float, int]:
    sl.set_seed(0)
    model = sl.SASRec(num_items=split.num_items, **SASREC_ML100K.model)
    config = replace(SASREC_ML100K.train, max_epochs=epochs, patience=None, num_threads=threads, naive=naive,
                     progress=False)
    history = sl.train_sasrec(model, split, config)
    targets = sum(min(len(s) - 1, model.max_len) for s in split.train)
    # The first epoch includes warm-up (allocations, kernel selection): report the median of the rest.
    secs = history.train_seconds[1:] or history.train_seconds
    return statistics.median(secs), targets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--skip-time-to-quality", action="store_true")
    args = parser.parse_args()
    split = sl.leave_one_out(sl.make_sequences(sl.load_movielens("ml-100k"), **SASREC_ML100K.sequences))
    print(f"ML-100k: {split.num_users} users, {split.num_items} items; model {SASREC_ML100K.model}")
    for threads in (1, 2):
        fast, targets = epoch_seconds(split, threads, naive=False, epochs=args.epochs)
        slow, _ = epoch_seconds(split, threads, naive=True, epochs=args.epochs)
        print(f"threads={threads}: library {fast:6.2f} s/epoch ({targets / fast:8,.0f} targets/s) | "
              f"naive {slow:6.2f} s/epoch ({targets / slow:8,.0f} targets/s) | speed-up x{slow / fast:.2f}")

    model, meta = load_pretrained_sasrec(split.fingerprint)
    if not args.skip_time_to_quality:
        goal = meta["metrics"]["valid"]["NDCG@10"]
        sl.set_seed(0)
        fresh = sl.SASRec(num_items=split.num_items, **SASREC_ML100K.model)
        config = replace(SASREC_ML100K.train, num_threads=2, progress=False, seed=meta["extra"]["seed"])
        start = time.perf_counter()
        history = sl.train_sasrec(fresh, split, config)
        total = time.perf_counter() - start
        frame = history.to_frame()
        reached = frame.index[frame["val_NDCG@10"] >= goal - 1e-9]
        if len(reached):
            t_goal = frame.loc[: reached[0], "seconds"].sum()
            print(f"time to the shipped validation NDCG@10 {goal:.4f} (2 threads): {t_goal:.0f} s "
                  f"(epoch {reached[0]}); full run with early stopping: {total:.0f} s, {len(frame)} epochs")
        else:
            print(f"the recipe did not reach {goal:.4f} in {len(frame)} epochs ({total:.0f} s)")

    torch.set_num_threads(1)
    user = sl.left_pad([split.test_inputs[0]], model.max_len)
    times = []
    with torch.no_grad():
        for _ in range(200):
            start = time.perf_counter()
            model.scores(user)
            times.append(time.perf_counter() - start)
    print(f"scoring one user (1 thread): median {np.median(times) * 1e3:.2f} ms, "
          f"p95 {np.percentile(times, 95) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
