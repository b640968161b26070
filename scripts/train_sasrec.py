"""Train a data set's SASRec recipe with several seeds, report mean and spread, save one checkpoint.

The one documented command that produces ``seqsae_lib/experiments/pretrained/sasrec_ml100k.{pt,json}``:

    python scripts/train_sasrec.py --seeds 0 1 2 --save-seed 0 --threads 2

It prints one line per seed (best epoch, training time, validation and test NDCG@10 / HR@10), the mean and
standard deviation over seeds, the most-popular baseline on the same split, and writes the chosen seed's
weights with all these figures recorded in the JSON beside them. ``--tie-break item`` trains and reports
under the item-id tie-break instead (nothing is saved unless ``--save-seed`` is given and the tie-break is
the recipe's).

``--dataset`` picks that data set's recipe from ``seqsae_lib.experiments.pretrained.SASREC_RECIPES`` (the checkpoint is
named after the recipe); a data set without a recipe (e.g. ``ml-1m``) is trained with the ML-100k recipe's
settings and nothing is saved. ``--max-epochs``, ``--patience`` and ``--time-budget`` override the recipe's
training settings (smoke tests, time-boxed runs); overrides are recorded in a saved checkpoint's JSON.
Recipes are chosen on validation NDCG@10 only, with ``scripts/search_sasrec.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import seqsae_lib as sl
from seqsae_lib.experiments.pretrained import SASREC_ML100K, SASREC_RECIPES, pretrained_stem, train_from_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--save-seed", type=int, default=None, help="seed whose model is saved (default: none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dataset", default=SASREC_ML100K.dataset,
                        help=f"data set; its recipe is used (recipes: {', '.join(SASREC_RECIPES)})")
    parser.add_argument("--tie-break", default=None, choices=["file", "item", "random"],
                        help="default: the recipe's")
    parser.add_argument("--max-epochs", type=int, default=None, help="override the recipe (smoke tests)")
    parser.add_argument("--patience", type=int, default=None, help="override the recipe's early-stopping patience")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds per seed: stop after the epoch that overruns it (TrainConfig.time_budget)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    base = SASREC_RECIPES.get(args.dataset)
    if base is None:
        print(f"no recipe for {args.dataset!r}: training with the {SASREC_ML100K.dataset} recipe's settings")
        base = replace(SASREC_ML100K, dataset=args.dataset)
    tie_break = args.tie_break or base.sequences["tie_break"]
    recipe = replace(base, sequences={**base.sequences, "tie_break": tie_break})
    data = sl.load_movielens(recipe.dataset)
    split = sl.leave_one_out(sl.make_sequences(data, **recipe.sequences))
    print(f"{recipe.dataset}, tie-break {tie_break}: {split.num_users} users, {split.num_items} items")
    popular = sl.MostPopularScorer(split.train, num_items=split.num_items)
    pop_valid = sl.evaluate(popular, split.valid_inputs, split.valid_targets, num_items=split.num_items).metrics
    pop_test = sl.evaluate(popular, split.test_inputs, split.test_targets, num_items=split.num_items).metrics
    print(f"most popular: valid NDCG@10 {pop_valid['NDCG@10']:.4f}  HR@10 {pop_valid['HR@10']:.4f}, "
          f"test NDCG@10 {pop_test['NDCG@10']:.4f}  HR@10 {pop_test['HR@10']:.4f}")

    overrides = {"progress": not args.no_progress}
    recorded_overrides = {}
    for flag, key in (("max_epochs", "max_epochs"), ("patience", "patience"), ("time_budget", "time_budget")):
        if getattr(args, flag) is not None:
            overrides[key] = recorded_overrides[key] = getattr(args, flag)
    runs, saved = [], None
    for seed in args.seeds:
        start = time.perf_counter()
        model, history = train_from_recipe(split, recipe, seed=seed, num_threads=args.threads, **overrides)
        seconds = time.perf_counter() - start
        valid = sl.evaluate(model, split.valid_inputs, split.valid_targets, num_items=split.num_items).metrics
        test = sl.evaluate(model, split.test_inputs, split.test_targets, num_items=split.num_items).metrics
        run = {"seed": seed, "best_epoch": history.best_epoch, "epochs_run": len(history.to_frame()),
               "train_seconds": round(seconds, 1), "valid": valid, "test": test}
        if history.out_of_time:
            run["out_of_time"] = True
        runs.append(run)
        print(f"seed {seed}: best epoch {history.best_epoch} of {run['epochs_run']}"
              f"{' (time budget ran out)' if history.out_of_time else ''}, {seconds:.0f} s, "
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
        if args.dataset not in SASREC_RECIPES or tie_break != base.sequences["tie_break"]:
            print("not saving: only a data set's recipe, with its tie-break, is saved")
            return
        model, run = saved
        stem = pretrained_stem(recipe.name)
        command = ["--seeds", *map(str, args.seeds), "--save-seed", str(args.save_seed), "--threads", str(args.threads)]
        if args.dataset != SASREC_ML100K.dataset:
            command = ["--dataset", args.dataset, *command]
        for key, value in recorded_overrides.items():
            command += ["--" + key.replace("_", "-"), str(value)]
        extra = {"overrides": recorded_overrides} if recorded_overrides else {}
        sl.model.save_checkpoint(
            model, stem, fingerprint=split.fingerprint,
            metrics={"valid": run["valid"], "test": run["test"]},
            extra={"recipe": recipe.to_dict(), "seed": run["seed"], "best_epoch": run["best_epoch"],
                   "train_seconds": run["train_seconds"], "threads": args.threads,
                   "seed_runs": runs, "seed_summary": summary, "most_popular_test": pop_test,
                   "most_popular_valid": pop_valid,
                   "command": "python scripts/train_sasrec.py " + " ".join(command), **extra},
        )
        print(f"saved {stem.name}.pt and {stem.name}.json to {stem.parent}")
        print(json.dumps({"valid": run["valid"], "test": run["test"]}, indent=1))


if __name__ == "__main__":
    main()
