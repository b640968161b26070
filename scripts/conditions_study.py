"""Record the conditions study of chapter 4: the fair monosemanticity verdict in every condition of the grid.

    python scripts/conditions_study.py --threads 2            # the whole grid (seqsae_lib.experiments.CONDITIONS)
    python scripts/conditions_study.py --only k=4 block_0     # some rows (added to / replacing recorded rows)
    python scripts/conditions_study.py --only "shipped recipe" --library-defaults --out /tmp/defaults
                                                              # the library's current SAE defaults instead

For each condition it trains the SAE on the shipped SASRec's states (ML-100k; MovieLens-1M users 1-2,999 with its
shipped SASRec; the planted-topic SASRec trained here), compares the latents with the untrained SAE, a random
rotation, the hidden dimensions and PCA (chance-corrected genre concentration among each unit's top firing
positions, input and next item, bootstrap CIs) and counts the genres some unit covers purely. It writes
``conditions.csv`` (one row per condition), ``condition_verdicts.csv`` (one row per condition, side and
control) and ``conditions.json`` (every run that wrote rows: command, threads, seconds); rows are written after each condition, so an
interrupted run keeps what it finished to ``seqsae_lib/experiments/recorded/``
(``--out`` for another folder). Chapter 4 reads them with ``sl.load_conditions()``.

``--library-defaults`` trains every SAE with the library's current defaults for the start and AuxK (random rows,
the fitted encoder scale, the rescaled AuxK at 1/4) instead of the settings the recorded study ran with (data-vector
rows, the unit-norm start, the rescaled AuxK at 1/32); its tables go to ``--out``, never to the recorded folder.

The number of SAE epochs is chosen per data set so that every SAE sees about the same number of training
vectors as the shipped recipe (10 epochs of ML-100k's 83,857 states).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import pandas as pd

import seqsae_lib as sl
from seqsae_lib.experiments.conditions import CONDITIONS, RECORDED_DIR, run_condition
from seqsae_lib.experiments.planted import planted_model
from seqsae_lib.experiments.pretrained import load_pretrained_sasrec, sasrec_recipe, training_activations

TARGET_VECTORS = 10 * 83_857
RUN_STARTED = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", default=None, help="names of conditions to (re)run")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RECORDED_DIR)
    parser.add_argument("--fresh", action="store_true", help="drop the recorded rows first (default: add/replace rows)")
    parser.add_argument("--library-defaults", action="store_true",
                        help="train with the library's current SAE start and AuxK defaults (needs --out elsewhere)")
    args = parser.parse_args()
    options: dict = {}
    if args.library_defaults:
        if args.out.resolve() == RECORDED_DIR.resolve():
            sys.exit("--library-defaults writes tables the chapters do not read: give --out another folder")
        options = library_default_options()
    sl.set_threads(args.threads)
    by_name = {c.name: c for c in CONDITIONS}
    unknown = set(args.only or ()) - set(by_name)
    if unknown:
        sys.exit(f"unknown conditions {sorted(unknown)}; the grid has {[c.name for c in CONDITIONS]}")
    chosen = [by_name[name] for name in args.only] if args.only else list(CONDITIONS)  # run in the order asked

    started = time.perf_counter()
    cache: dict[str, tuple] = {}

    def model_for(dataset: str) -> tuple:
        if dataset not in cache:
            if dataset == "planted":
                data, split, model, _ = planted_model(seed=args.seed, num_threads=args.threads, progress=False)
            else:
                recipe = sasrec_recipe(dataset)
                data = sl.make_sequences(sl.load_movielens(dataset), **recipe.sequences)
                split = sl.leave_one_out(data)
                model, _ = load_pretrained_sasrec(split.fingerprint, name=recipe.name)
            cache[dataset] = (data, split, model)
        return cache[dataset]

    args.out.mkdir(parents=True, exist_ok=True)
    paths = {"summary": args.out / "conditions.csv", "verdicts": args.out / "condition_verdicts.csv"}
    if args.fresh:
        for path in (*paths.values(), args.out / "conditions.json"):
            path.unlink(missing_ok=True)
    order = {c.name: i for i, c in enumerate(CONDITIONS)}
    for condition in chosen:
        data, split, model = model_for(condition.dataset)
        store = training_activations(model, split, condition.capture_point)
        epochs = max(1, round(TARGET_VECTORS / len(store)))
        summary, table = run_condition(condition, store, data, num_epochs=epochs, seed=args.seed,
                                       num_threads=args.threads, n_boot=args.n_boot, **options)
        sae_input = table[(table["side"] == "input")].set_index("other")
        print(f"{condition.name:22s} dead {summary['dead']:.3f}  FVU {summary['fvu']:.3f}  "
              f"{summary['train_seconds'] + summary['score_seconds']:.0f} s  input-genre verdict vs "
              + ", ".join(f"{o}: {sae_input.loc[o, 'verdict']}" for o in sae_input.index), flush=True)
        record(paths, pd.DataFrame([summary]), table, order)  # after every condition: an interrupted run keeps its rows
        write_meta(args, time.perf_counter() - started, paths)
    print(f"recorded {len(chosen)} conditions in {args.out} ({(time.perf_counter() - started) / 60:.1f} min this run)")


def library_default_options() -> dict:
    """The library's defaults for the settings the recorded study pins (SAE start, AuxK): run_condition's options."""
    sae_defaults = {f.name: f.default for f in dataclasses.fields(sl.SAEConfig)}
    train_defaults = sl.SAETrainConfig()
    return {"sae_options": {name: sae_defaults[name] for name in ("aux_rescale", "aux_coefficient")},
            "train_options": {name: getattr(train_defaults, name) for name in ("decoder_init", "fit_encoder_scale")}}


def write_meta(args: argparse.Namespace, seconds: float, paths: dict) -> None:
    """Record this run (command, threads, seconds, conditions) beside the earlier runs that made the tables."""
    import torch

    path = args.out / "conditions.json"
    runs = json.loads(path.read_text()).get("runs", []) if path.is_file() else []
    this = {"command": "python scripts/conditions_study.py " + " ".join(sys.argv[1:]), "threads": args.threads,
            "seed": args.seed, "seconds": round(seconds, 1), "started": RUN_STARTED}
    runs = [run for run in runs if run.get("started") != RUN_STARTED] + [this]
    meta = {"runs": runs, "conditions": pd.read_csv(paths["summary"])["name"].tolist(), "torch": torch.__version__,
            "seqsae": sl.__version__}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    tmp.replace(path)


def record(paths: dict, summary: pd.DataFrame, verdict: pd.DataFrame, order: dict) -> None:
    """Add (or replace) these conditions' rows in the recorded tables, in the grid's order, atomically."""
    names = set(summary["name"])
    if paths["summary"].is_file():
        old_summary, old_verdict = pd.read_csv(paths["summary"]), pd.read_csv(paths["verdicts"])
        summary = pd.concat([old_summary[~old_summary["name"].isin(names)], summary], ignore_index=True)
        verdict = pd.concat([old_verdict[~old_verdict["condition"].isin(names)], verdict], ignore_index=True)
    summary = summary.sort_values("name", key=lambda s: s.map(order), kind="stable")
    verdict = verdict.sort_values("condition", key=lambda s: s.map(order), kind="stable")
    for key, frame in (("summary", summary), ("verdicts", verdict)):
        tmp = paths[key].with_suffix(".tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(paths[key])


if __name__ == "__main__":
    main()
