"""Every concept in one table: SAE steering against the baselines within NDCG@10 budgets.

    python scripts/concept_table.py --threads 2                       # ML-100k -> recorded/concept_table_ml100k.csv
    python scripts/concept_table.py --dataset ml-1m-u2999 --threads 2 # -> recorded/concept_table_ml1m_u2999.csv

Loads the shipped SASRec and the shipped SAEs of the data set at ``final`` and ``block_0`` (``--capture-points``
picks others among the shipped ones; only the default set is recorded), runs
:func:`seqsae_lib.steering.concept_steering_table` on every genre and release decade with at least 20 items,
prints the table, the wins/ties/losses of the best SAE against each baseline and the time it took, and
records the table as CSV in ``seqsae_lib/experiments/recorded/concept_table_<data set>.csv`` (``ml100k``,
``ml1m_u2999``). A data set whose models are not shipped is skipped with a message (exit status 0).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

import seqsae_lib as sl
from seqsae_lib.experiments.pretrained import (
    SAE_RECIPES_BY_NAME, load_pretrained_sae, load_pretrained_sasrec, pretrained_stem, sasrec_recipe,
    training_activations,
)
from seqsae_lib.steering import concept_steering_table, wins_ties_losses

RECORDED = Path(sl.__file__).resolve().parent / "experiments" / "recorded"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--capture-points", nargs="*", default=["final", "block_0"],
                        help="SAEs to steer with, by capture point (default: final block_0; those shipped)")
    parser.add_argument("--concepts", nargs="*", default=None, help="default: every genre and decade with >= 20 items")
    parser.add_argument("--no-save", action="store_true", help="print only, do not write the CSV")
    args = parser.parse_args()

    sasrec = sasrec_recipe(args.dataset)
    if not pretrained_stem(sasrec.name).with_suffix(".pt").is_file():
        print(f"no shipped SASRec for {args.dataset!r} ({sasrec.name}.pt): skipped")
        return
    recipes = [r for r in SAE_RECIPES_BY_NAME.values()
               if r.sasrec == sasrec.name and pretrained_stem(r.name).with_suffix(".pt").is_file()
               and r.capture_point in args.capture_points]
    if not recipes:
        print(f"no shipped SAE for {args.dataset!r}: skipped")
        return
    recipes.sort(key=lambda r: (r.capture_point != "final", r.capture_point))
    sl.set_threads(args.threads)
    data = sl.make_sequences(sl.load_movielens(sasrec.dataset), **sasrec.sequences)
    split = sl.leave_one_out(data)
    model, _ = load_pretrained_sasrec(split.fingerprint, name=sasrec.name)
    saes = {r.capture_point: load_pretrained_sae(split.fingerprint, r) for r in recipes}
    stores = {cp: training_activations(model, split, cp) for cp in saes}
    start = time.perf_counter()
    table = concept_steering_table(model, saes, stores, split, data, concepts=args.concepts, seed=0)
    seconds = time.perf_counter() - start

    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 100)
    pd.set_option("display.max_colwidth", 120)
    costs = table.attrs["costs"]
    methods = [*table.attrs["sae_methods"], *table.attrs["baselines"]]
    shares = ["kind", "n_items", "unsteered share@10"] + [f"{m} @{c:g}" for m in methods for c in costs]
    print(f"{args.dataset}: share@10 within each NDCG@10 budget ({table.attrs['n_users']} test users)")
    print(table[shares].round(3).to_string())
    print()
    print(table[["best SAE", *[f"best SAE @{c:g}" for c in costs], "best SAE x", "doubles", "profile latents",
                 "max lift", "label corr",
                 *[c for c in table.columns if c.startswith("n latents")]]].round(3).to_string())
    print()
    print(table[[c for c in table.columns if c.startswith("vs ")]].to_string())
    print()
    print(wins_ties_losses(table).to_string())
    print()
    failed = table[~table["doubles"]]
    print(f"doubled within {costs[-1]:g}: {int(table['doubles'].sum())} of {len(table)} concepts")
    for concept, why in failed["why"].items():
        print(f"  {concept}: {why}")
    print(f"\ntable computed in {seconds:.1f} s with {args.threads} thread(s)")
    if not args.no_save and args.concepts is None and args.capture_points == parser.get_default("capture_points"):
        out = RECORDED / f"concept_table_{sasrec.name.removeprefix('sasrec_')}.csv"  # ml100k, ml1m_u2999
        table.round(6).to_csv(out)
        print(f"recorded {out.relative_to(RECORDED.parents[2])}")


if __name__ == "__main__":
    main()
