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
from pathlib import Path

import seqsae_lib as sl
from seqsae_lib.experiments.pretrained import SASREC_ML100K, SASREC_RECIPES, pretrained_stem, train_from_recipe


def recorded_valid_ndcg(name: str) -> float | None:
    """The mean validation NDCG@10 over seeds recorded beside the shipped checkpoint ``name`` (None if absent)."""
    path = pretrained_stem(name).with_suffix(".json")
    if not path.exists():
        return None
    summary = json.loads(path.read_text()).get("extra", {}).get("seed_summary", {})
    return summary.get("valid NDCG@10", {}).get("mean")


def time_to_target(history: sl.History, target: float | None) -> tuple[float, int] | None:
    """Seconds (training and validation, summed over epochs) until validation NDCG@10 first reached
    ``target``, and that epoch; None if it never did."""
    if target is None:
        return None
    elapsed = 0.0
    for epoch, seconds, metrics in zip(history.epochs, history.seconds, history.val_metrics):
        elapsed += seconds
        if metrics is not None and metrics["NDCG@10"] >= target:
            return elapsed, epoch
    return None


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
    parser.add_argument("--fast", action="store_true",
                        help="train with the speed options the recipes pin off: SASRecConfig.fast_dropout and "
                             "TrainConfig.fused_loss (recorded in a saved checkpoint's JSON)")
    parser.add_argument("--target", type=float, default=None,
                        help="report each seed's seconds to a validation NDCG@10 of at least this; default: the "
                             "recipe's recorded mean over seeds (from the shipped checkpoint's JSON, if any)")
    parser.add_argument("--out", default=None,
                        help="write every seed's figures and per-epoch curve (seconds, validation NDCG@10) as JSON")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    base = SASREC_RECIPES.get(args.dataset)
    if base is None:
        print(f"no recipe for {args.dataset!r}: training with the {SASREC_ML100K.dataset} recipe's settings")
        base = replace(SASREC_ML100K, dataset=args.dataset)
    tie_break = args.tie_break or base.sequences["tie_break"]
    recipe = replace(base, sequences={**base.sequences, "tie_break": tie_break})
    if args.fast:
        recipe = replace(recipe, model={**recipe.model, "fast_dropout": True},
                         train=replace(recipe.train, fused_loss=True))
    target = args.target if args.target is not None else recorded_valid_ndcg(base.name)
    out = Path(args.out) if args.out else None
    if out is not None and not out.parent.is_dir():  # say so now, not after hours of training
        parser.error(f"--out {out}: the folder {out.parent} does not exist")
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
        frame = history.to_frame()
        run["curve"] = {"seconds": [round(x, 2) for x in frame["seconds"]],
                        "train_seconds": [round(x, 2) for x in frame["train_seconds"]],
                        "valid_ndcg10": [None if x != x else round(x, 5) for x in frame["val_NDCG@10"]]}
        reached = time_to_target(history, target)
        if reached is not None:
            run["seconds_to_target"], run["epoch_of_target"] = reached
        runs.append(run)
        if target is not None:
            print(f"seed {seed}: validation NDCG@10 >= {target:.4f} "
                  + (f"after {reached[0]:.0f} s (epoch {reached[1]})" if reached else "not reached"))
        print(f"seed {seed}: best epoch {history.best_epoch} of {run['epochs_run']}"
              f"{' (time budget ran out)' if history.out_of_time else ''}, {seconds:.0f} s, "
              f"valid NDCG@10 {valid['NDCG@10']:.4f} HR@10 {valid['HR@10']:.4f}, "
              f"test NDCG@10 {test['NDCG@10']:.4f} HR@10 {test['HR@10']:.4f}", flush=True)
        if seed == args.save_seed:
            saved = (model, run)

    if out is not None:  # written whole or not at all: a temporary file renamed into place
        partial = out.with_name(out.name + ".partial")
        partial.write_text(json.dumps({"recipe": recipe.to_dict(), "target": target, "threads": args.threads,
                                       "runs": runs}, indent=1))
        partial.replace(out)
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
