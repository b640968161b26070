"""A small, time-boxed search for a data set's SASRec recipe, judged on validation NDCG@10 only.

    python scripts/search_sasrec.py --dataset ml-1m-u2999 --threads 1 --max-epochs 30 --patience 5 \\
        --vary d_model=128 dropout=0.1 lr=1e-3 --out _build/search/ml1m_u2999.jsonl

trains the base recipe and, one at a time, each variation of it (``--grid``: every combination instead),
with one seed, and prints per configuration the best validation NDCG@10 and HR@10, the best epoch, the
epochs run, why training stopped, seconds per epoch and total seconds. Test targets are never scored: the
split's test part is not touched, so nothing here can choose on test. The base is the data set's recipe
in ``seqsae_lib.experiments.pretrained.SASREC_RECIPES`` or, without one, ML-100k's (``--base`` picks another).

A variation ``key=value[,value...]`` sets a ``seqsae_lib.SASRec`` argument (``d_model``, ``n_layers``,
``n_heads``, ``dropout``, ``max_len``) or a ``TrainConfig`` field (``lr``, ``batch_size``,
``weight_decay``, ...). ``--max-epochs``, ``--patience`` and ``--time-budget`` (seconds per
configuration) bound each run. Each finished configuration is appended to ``--out`` as one JSON line
(with its validation curve); a rerun with the same ``--out`` skips configurations already there, so an
interrupted search can be resumed.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import seqsae_lib as sl
from seqsae_lib.experiments.pretrained import SASREC_ML100K, SASREC_RECIPES, SASRecRecipe, train_from_recipe
from seqsae_lib.model import TrainConfig

MODEL_KEYS = ("max_len", "d_model", "n_layers", "n_heads", "dropout")
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig)
                   if f.name not in ("seed", "num_threads", "progress", "device", "max_len"))


def parse_variation(text: str) -> tuple[str, list[Any]]:
    """``"lr=1e-3,2e-3"`` -> ``("lr", [0.001, 0.002])``."""
    key, sep, values = text.partition("=")
    if not sep or key not in MODEL_KEYS + TRAIN_KEYS:
        raise argparse.ArgumentTypeError(
            f"expected key=value[,value...] with key one of {', '.join(MODEL_KEYS + TRAIN_KEYS)}; got {text!r}")
    return key, [ast.literal_eval(v) for v in values.split(",")]


def apply(recipe: SASRecRecipe, settings: dict[str, Any]) -> SASRecRecipe:
    model = {**recipe.model, **{k: v for k, v in settings.items() if k in MODEL_KEYS}}
    train = replace(recipe.train, **{k: v for k, v in settings.items() if k in TRAIN_KEYS})
    return replace(recipe, model=model, train=train)


def configurations(variations: list[tuple[str, list[Any]]], grid: bool) -> list[dict[str, Any]]:
    """The base (``{}``) first, then each variation alone, or (``grid``) every combination."""
    if grid:
        keys = [k for k, _ in variations]
        return [dict(zip(keys, combo)) for combo in itertools.product(*(vals for _, vals in variations))]
    configs: list[dict[str, Any]] = [{}]
    for key, values in variations:
        configs += [{key: v} for v in values]
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--base", default=None, help="data set whose recipe is the base (default: --dataset's, "
                                                      f"else {SASREC_ML100K.dataset}'s)")
    parser.add_argument("--vary", type=parse_variation, nargs="*", default=[], metavar="KEY=V1[,V2]")
    parser.add_argument("--grid", action="store_true", help="every combination of --vary instead of one at a time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--time-budget", type=float, default=None, help="seconds per configuration")
    parser.add_argument("--out", type=Path, default=None, help="JSON lines, one per finished configuration")
    parser.add_argument("--dry-run", action="store_true", help="list the configurations and stop")
    args = parser.parse_args()

    base_name = args.base or (args.dataset if args.dataset in SASREC_RECIPES else SASREC_ML100K.dataset)
    base = replace(SASREC_RECIPES[base_name], dataset=args.dataset)
    bounds = {k: v for k, v in (("max_epochs", args.max_epochs), ("patience", args.patience),
                                ("time_budget", args.time_budget)) if v is not None}
    base = replace(base, train=replace(base.train, **bounds))
    configs = configurations(args.vary, args.grid)
    print(f"base: the {base_name} recipe, model {base.model}, lr {base.train.lr}, batch {base.train.batch_size}, "
          f"max epochs {base.train.max_epochs}, patience {base.train.patience}, "
          f"time budget {base.train.time_budget}; seed {args.seed}, {args.threads} thread(s)")
    print(f"{len(configs)} configurations: " + "; ".join(
        ", ".join(f"{k}={v}" for k, v in c.items()) or "base" for c in configs), flush=True)
    if args.dry_run:
        return

    done: dict[str, dict[str, Any]] = {}
    if args.out is not None and args.out.is_file():
        for line in args.out.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                done[json.dumps(record["recipe"], sort_keys=True) + f"|{record['seed']}"] = record

    data = sl.load_movielens(args.dataset)
    split = sl.leave_one_out(sl.make_sequences(data, **base.sequences))
    print(f"{args.dataset}: {split.num_users} users, {split.num_items} items")
    popular = sl.MostPopularScorer(split.train, num_items=split.num_items)
    pop = sl.evaluate(popular, split.valid_inputs, split.valid_targets, num_items=split.num_items).metrics
    print(f"most popular: valid NDCG@10 {pop['NDCG@10']:.4f}  HR@10 {pop['HR@10']:.4f}", flush=True)

    records = []
    for settings in configs:
        recipe = apply(base, settings)
        label = ", ".join(f"{k}={v}" for k, v in settings.items()) or "base"
        key = json.dumps(recipe.to_dict(), sort_keys=True) + f"|{args.seed}"
        if key in done:
            record = done[key]
            print(f"[{label}] already in {args.out}", flush=True)
        else:
            start = time.perf_counter()
            model, history = train_from_recipe(split, recipe, seed=args.seed, num_threads=args.threads,
                                               progress=False)
            total = time.perf_counter() - start
            frame = history.to_frame()
            best = history.val_metrics[history.epochs.index(history.best_epoch)]
            stop = ("patience" if history.stopped_early else "time budget" if history.out_of_time
                    else "max epochs")
            record = {"label": label, "settings": settings, "recipe": recipe.to_dict(), "seed": args.seed,
                      "threads": args.threads, "best_epoch": history.best_epoch, "epochs_run": len(frame),
                      "stopped_by": stop, "valid_best": best,
                      "seconds_per_epoch": float(frame["seconds"].mean()),
                      "train_seconds_per_epoch": float(frame["train_seconds"].mean()),
                      "total_seconds": total,
                      "curve": {"train_loss": [round(x, 5) for x in frame["train_loss"]],
                                "valid NDCG@10": [round(x, 5) for x in frame["val_NDCG@10"]]}}
            if args.out is not None:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with args.out.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
        records.append(record)
        print(f"[{label}] valid NDCG@10 {record['valid_best']['NDCG@10']:.4f}  HR@10 "
              f"{record['valid_best']['HR@10']:.4f}  best epoch {record['best_epoch']} of "
              f"{record['epochs_run']} (stopped by {record['stopped_by']}), "
              f"{record['seconds_per_epoch']:.1f} s/epoch, {record['total_seconds']:.0f} s", flush=True)

    print("\n| config | valid NDCG@10 | valid HR@10 | best epoch / run | stopped by | s/epoch | total s |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(records, key=lambda r: -r["valid_best"]["NDCG@10"]):
        print(f"| {r['label']} | {r['valid_best']['NDCG@10']:.4f} | {r['valid_best']['HR@10']:.4f} | "
              f"{r['best_epoch']} / {r['epochs_run']} | {r['stopped_by']} | {r['seconds_per_epoch']:.1f} | "
              f"{r['total_seconds']:.0f} |")


if __name__ == "__main__":
    main()
