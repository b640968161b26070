"""Seconds per training epoch of the shipped SASRec recipes, as recorded and with the speed options.

Run: SEQSAE_DATA=... python bench/bench_recipe_epochs.py [--threads 2] [--rounds 3] [--epochs 2]
     [--datasets ml-100k ml-1m-u2999]

For each data set's recipe (``seqsae_lib.experiments.pretrained.SASREC_RECIPES``), alternating rounds of
``--epochs`` training epochs (no validation) as recorded (``nn.Dropout``, ``F.cross_entropy``) and with the
speed options (``SASRecConfig.fast_dropout`` and ``TrainConfig.fused_loss``), same seed; prints the median
seconds per epoch of each and their ratio. Time to quality on real data is epochs to the target (from
``scripts/train_sasrec.py --out``, which does not depend on the machine's load) times these seconds.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

import torch

import seqsae_lib as sl
from seqsae_lib.experiments.pretrained import SASREC_RECIPES, SASRecRecipe, train_from_recipe


def epoch_seconds(split: object, recipe: SASRecRecipe, epochs: int, threads: int, fast: bool, seed: int) -> list[float]:
    """Training seconds per epoch of ``recipe`` (validated once, at the end), with or without the speed options."""
    options = replace(recipe, model={**recipe.model, "fast_dropout": fast})
    _, history = train_from_recipe(split, options, seed=seed, num_threads=threads, max_epochs=epochs,
                                   eval_every=epochs, patience=None, progress=False, fused_loss=fast)
    return history.train_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--datasets", nargs="+", default=list(SASREC_RECIPES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds x {args.epochs} epochs")
    for dataset in args.datasets:
        recipe = SASREC_RECIPES[dataset]
        split = sl.leave_one_out(sl.make_sequences(sl.load_movielens(dataset), **recipe.sequences))
        times: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.rounds):
            for fast in (False, True):
                times[fast] += epoch_seconds(split, recipe, args.epochs, args.threads, fast, seed=r)
        before, after = statistics.median(times[False]), statistics.median(times[True])
        print(f"{dataset} (batch {recipe.train.batch_size}, dropout {recipe.model['dropout']}): seconds per epoch, "
              f"median of {len(times[False])}: as recorded {before:.2f}, fast_dropout + fused_loss {after:.2f} "
              f"({after / before:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
