"""Train the shipped SASRec recipe with several seeds, report mean and spread, save one checkpoint.

The one documented command that produces ``seqsae_lib/pretrained/sasrec_ml100k.{pt,json}``:

    python scripts/train_sasrec.py --seeds 0 1 2 --save-seed 0 --threads 2

It prints one line per seed (best epoch, training time, validation and test NDCG@10 / HR@10), the mean and
standard deviation over seeds, the most-popular baseline on the same split, and writes the chosen seed's
weights with all these figures recorded in the JSON beside them. ``--tie-break item`` trains and reports
under the item-id tie-break instead (nothing is saved unless ``--save-seed`` is given and the tie-break is
the recipe's). ``--dataset ml-1m`` trains the same recipe on MovieLens-1M when its files are available.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import seqsae_lib as sl
from seqsae_lib.pretrained import SASREC_ML100K, pretrained_stem, train_from_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--save-seed", type=int, default=None, help="seed whose model is saved (default: none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dataset", default=SASREC_ML100K.dataset)
    parser.add_argument("--tie-break", default=SASREC_ML100K.sequences["tie_break"], choices=["file", "item", "random"])
    parser.add_argument("--max-epochs", type=int, default=None, help="override the recipe (smoke tests)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    recipe = replace(SASREC_ML100K, dataset=args.dataset,
                     sequences={**SASREC_ML100K.sequences, "tie_break": args.tie_break})
    data = sl.load_movielens(recipe.dataset)
    split = sl.leave_one_out(sl.make_sequences(data, **recipe.sequences))
    print(f"{recipe.dataset}, tie-break {args.tie_break}: {split.num_users} users, {split.num_items} items")
    popular = sl.MostPopularScorer(split.train, num_items=split.num_items)
    pop_test = sl.evaluate(popular, split.test_inputs, split.test_targets, num_items=split.num_items).metrics
    print(f"most popular: test NDCG@10 {pop_test['NDCG@10']:.4f}  HR@10 {pop_test['HR@10']:.4f}")

    overrides = {"progress": not args.no_progress}
    if args.max_epochs is not None:
        overrides["max_epochs"] = args.max_epochs
    runs, saved = [], None
    for seed in args.seeds:
        start = time.perf_counter()
        model, history = train_from_recipe(split, recipe, seed=seed, num_threads=args.threads, **overrides)
        seconds = time.perf_counter() - start
        valid = sl.evaluate(model, split.valid_inputs, split.valid_targets, num_items=split.num_items).metrics
        test = sl.evaluate(model, split.test_inputs, split.test_targets, num_items=split.num_items).metrics
        run = {"seed": seed, "best_epoch": history.best_epoch, "epochs_run": len(history.to_frame()),
               "train_seconds": round(seconds, 1), "valid": valid, "test": test}
        runs.append(run)
        print(f"seed {seed}: best epoch {history.best_epoch}, {seconds:.0f} s, "
              f"valid NDCG@10 {valid['NDCG@10']:.4f} HR@10 {valid['HR@10']:.4f}, "
              f"test NDCG@10 {test['NDCG@10']:.4f} HR@10 {test['HR@10']:.4f}", flush=True)
        if seed == args.save_seed:
            saved = (model, run)

    summary = {}
    for part in ("valid", "test"):
        for metric in ("NDCG@10", "HR@10", "MRR@10", "Coverage@10"):
            values = [r[part][metric] for r in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[f"{part} {metric}"] = {"mean": statistics.fmean(values), "std": spread}
            print(f"{part:5s} {metric:12s} mean {statistics.fmean(values):.4f}  std {spread:.4f}  "
                  f"over seeds {args.seeds}")
    if saved is not None:
        if args.tie_break != SASREC_ML100K.sequences["tie_break"] or args.dataset != SASREC_ML100K.dataset:
            print("not saving: only the recipe's data set and tie-break are shipped")
            return
        model, run = saved
        stem = pretrained_stem(recipe.name)
        sl.save_checkpoint(
            model, stem, fingerprint=split.fingerprint,
            metrics={"valid": run["valid"], "test": run["test"]},
            extra={"recipe": recipe.to_dict(), "seed": run["seed"], "best_epoch": run["best_epoch"],
                   "train_seconds": run["train_seconds"], "threads": args.threads,
                   "seed_runs": runs, "seed_summary": summary, "most_popular_test": pop_test,
                   "command": "python scripts/train_sasrec.py " + " ".join(
                       ["--seeds", *map(str, args.seeds), "--save-seed", str(args.save_seed),
                        "--threads", str(args.threads)])},
        )
        print(f"saved {stem.name}.pt and {stem.name}.json to {stem.parent}")
        print(json.dumps({"valid": run["valid"], "test": run["test"]}, indent=1))


if __name__ == "__main__":
    main()
