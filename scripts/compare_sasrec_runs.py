"""Compare two sets of SASRec training runs written by ``scripts/train_sasrec.py --out``.

    python scripts/compare_sasrec_runs.py --a before_0-2.json before_3-5.json --b fast_0-2.json fast_3-5.json \
        --targets 0.1168 0.11

Prints, for each set, the validation and test NDCG@10 per seed (mean and standard deviation), the best epoch
and the first epoch whose validation NDCG@10 reaches each target; then the difference of the mean validation
NDCG@10 (B - A) with a bootstrap 95% CI (the runs of the two sets are independent: different seeds or options
give different random draws, so seeds are not paired), and the mean validation curves of both sets over
blocks of epochs (every seed that ran that far). Numbers only; no training.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path


def load(paths: list[str]) -> list[dict]:
    runs: list[dict] = []
    for path in paths:
        file = Path(path)
        if not file.is_file():
            raise SystemExit(f"{file}: no such file (write one with scripts/train_sasrec.py --out {file})")
        found = json.loads(file.read_text()).get("runs")
        if not isinstance(found, list) or not all("curve" in r and "valid" in r for r in found):
            raise SystemExit(f"{file}: expected scripts/train_sasrec.py --out JSON (a 'runs' list whose entries "
                             f"have 'valid' and 'curve'), got something else")
        runs += found
    return runs


def first_epoch(curve: list[float | None], target: float) -> int | None:
    return next((i + 1 for i, x in enumerate(curve) if x is not None and x >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", nargs="+", required=True, help="JSON files of set A")
    parser.add_argument("--b", nargs="+", required=True, help="JSON files of set B")
    parser.add_argument("--names", nargs=2, default=["A", "B"])
    parser.add_argument("--targets", type=float, nargs="*", default=[])
    parser.add_argument("--block", type=int, default=5, help="epochs per block of the mean curves")
    args = parser.parse_args()
    sets = {args.names[0]: load(args.a), args.names[1]: load(args.b)}
    valid = {}
    for name, runs in sets.items():
        v = [r["valid"]["NDCG@10"] for r in runs]
        t = [r["test"]["NDCG@10"] for r in runs]
        valid[name] = v
        print(f"{name}: seeds {[r['seed'] for r in runs]}")
        print(f"  valid NDCG@10 per seed {[round(x, 4) for x in v]}: mean {statistics.fmean(v):.4f} "
              f"± {statistics.stdev(v):.4f}; test {statistics.fmean(t):.4f} ± {statistics.stdev(t):.4f}")
        print(f"  best epoch {[r['best_epoch'] for r in runs]} of {[r['epochs_run'] for r in runs]}")
        for target in args.targets:
            print(f"  first epoch with valid NDCG@10 >= {target}: "
                  f"{[first_epoch(r['curve']['valid_ndcg10'], target) for r in runs]}")
    a, b = valid.values()
    rng = random.Random(0)
    diffs = sorted(statistics.fmean(rng.choices(b, k=len(b))) - statistics.fmean(rng.choices(a, k=len(a)))
                   for _ in range(10_000))
    print(f"valid NDCG@10, {args.names[1]} - {args.names[0]}: {statistics.fmean(b) - statistics.fmean(a):+.4f}, "
          f"bootstrap 95% CI [{diffs[249]:+.4f}, {diffs[9749]:+.4f}]")
    curves = {name: [r["curve"]["valid_ndcg10"] for r in runs] for name, runs in sets.items()}
    longest = min(max(len(c) for c in cs) for cs in curves.values())
    for lo in range(0, longest, args.block):
        means = []
        for cs in curves.values():
            values = [x for c in cs for x in c[lo:lo + args.block] if x is not None]
            means.append(statistics.fmean(values) if values else float("nan"))
        print(f"epochs {lo + 1}-{min(lo + args.block, longest)}: mean valid NDCG@10 {args.names[0]} {means[0]:.4f}, "
              f"{args.names[1]} {means[1]:.4f} ({means[1] - means[0]:+.4f})")


if __name__ == "__main__":
    main()
