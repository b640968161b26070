"""Train the shipped SAE on the shipped SASRec, measure it, and save it with its figures.

The one documented command that produces ``seqsae_lib/experiments/pretrained/sae_ml100k_final.{pt,json}``:

    python scripts/train_sae.py --save --threads 2
    python scripts/train_sae.py --dataset ml-1m-u2999 --save --threads 2   # MovieLens-1M, users 1-2,999
    python scripts/train_sae.py --recipe sae_ml100k_block_0 --save --threads 2   # another shipped recipe

It collects the SASRec's states at the recipe's capture point over every training window, trains the
recipe's SAE, prints reconstruction metrics (FVU, L0, cosine, dead and dense fractions) and downstream
fidelity on the test users (NDCG@10, HR@10 and cross-entropy with the SAE spliced in, with and without the
error term, against mean and zero ablation), and with ``--save`` writes the SAE (input normalisation
folded into the weights) with these figures recorded in its JSON. Options override the recipe for
experiments (``--d-sae``, ``--k``, ``--kind``, ``--epochs``, ``--capture-point``); ``--save`` refuses
overrides so the shipped file always matches the recipe. ``--recipe NAME`` picks any recipe of
``SAE_RECIPES_BY_NAME`` (e.g. the SAEs at inner capture points, ``sae_ml100k_block_0``) instead of the data
set's recipe at ``final``; its data set is the one of the SASRec it reads.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import seqsae_lib as sl
from seqsae_lib.experiments.pretrained import (
    SAE_RECIPES_BY_NAME, SASREC_ML100K, SASREC_RECIPES, load_pretrained_sasrec, pretrained_stem, sae_provenance, sae_recipe, sasrec_recipe,
)
from seqsae_lib.experiments.pretrained import training_activations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save", action="store_true")
    parser.add_argument("--capture-point", default=None)
    parser.add_argument("--d-sae", type=int, default=None)
    parser.add_argument("--k", type=int, default=None)
    parser.add_argument("--kind", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", default=None, help="data set whose shipped recipes are used (default ml-100k)")
    parser.add_argument("--recipe", default=None, choices=sorted(SAE_RECIPES_BY_NAME),
                        help="an SAE recipe by name (its data set is that of the SASRec it reads)")
    args = parser.parse_args()
    if args.recipe is not None:
        shipped = SAE_RECIPES_BY_NAME[args.recipe]
        dataset = next(d for d, r in SASREC_RECIPES.items() if r.name == shipped.sasrec)
        if args.dataset is not None and args.dataset != dataset:
            parser.error(f"--recipe {args.recipe} reads {shipped.sasrec}, a model of {dataset!r}, not {args.dataset!r}")
    else:
        dataset = args.dataset or SASREC_ML100K.dataset
        shipped = sae_recipe(dataset)
    sasrec = sasrec_recipe(dataset)

    sae_kwargs = dict(shipped.sae)
    train_kwargs = dict(shipped.train)
    overrides = {"d_sae": args.d_sae, "k": args.k, "kind": args.kind}
    sae_kwargs.update({k: v for k, v in overrides.items() if v is not None})
    if args.epochs is not None:
        train_kwargs["num_epochs"] = args.epochs
    if args.lr is not None:
        train_kwargs["lr"] = args.lr
    if args.batch_size is not None:
        train_kwargs["batch_size"] = args.batch_size
    recipe = replace(shipped, capture_point=args.capture_point or shipped.capture_point,
                     sae=sae_kwargs, train=train_kwargs)
    if args.save and (recipe != shipped or args.seed != 0):
        parser.error("--save ships the recipe as it is: drop the overrides (or change the recipe in "
                     "seqsae_lib/experiments/pretrained/__init__.py)")

    sl.set_threads(args.threads)
    split = sl.leave_one_out(sl.make_sequences(sl.load_movielens(sasrec.dataset), **sasrec.sequences))
    model, _ = load_pretrained_sasrec(split.fingerprint, name=sasrec.name)
    start = time.perf_counter()
    store = training_activations(model, split, recipe.capture_point, progress=True)
    t_collect = time.perf_counter() - start
    print(f"collected {len(store):,} states at {recipe.capture_point!r} in {t_collect:.1f} s")

    config = sl.SAEConfig(d_in=store.d_model, seed=args.seed, **recipe.sae)
    train_config = sl.SAETrainConfig(seed=args.seed, num_threads=args.threads, **recipe.train)
    start = time.perf_counter()
    sae, history = sl.train_sae(store, config, train_config)
    t_train = time.perf_counter() - start
    sae.fold_normalization()
    recon = sl.evaluate_reconstruction(sae, store.acts)
    print(f"trained {config.kind} SAE {config.d_in} -> {config.d_sae}, k={config.k} in {t_train:.1f} s")
    print("reconstruction on the training states:", json.dumps({k: round(float(v), 4) for k, v in recon.items()}))

    table = sl.downstream_fidelity(model, sae, split.test_inputs, split.test_targets, recipe.capture_point,
                                   mean=store.mean(), num_items=split.num_items).table
    print(table.round(4).to_string())
    original = table.loc["original", "NDCG@10"]
    spliced = table.loc["SAE (no error term)", "NDCG@10"]
    print(f"spliced NDCG@10 / original = {spliced / original:.3f}")
    if args.save:
        fidelity = {row: {col: float(v) for col, v in table.loc[row].items()} for row in table.index}
        sae.save(pretrained_stem(recipe.name), {
            **sae_provenance(recipe, split.fingerprint), "recipe": recipe.to_dict(), "seed": args.seed, "threads": args.threads,
            "train_seconds": round(t_train, 1), "collect_seconds": round(t_collect, 1),
            "num_vectors": len(store), "reconstruction": {k: float(v) for k, v in recon.items()},
            "fidelity_test": fidelity, "command": "python scripts/train_sae.py "
            + (f"--recipe {args.recipe} " if args.recipe is not None
               else "" if dataset == SASREC_ML100K.dataset else f"--dataset {dataset} ")
            + "--save --threads " + str(args.threads),
        })
        print(f"saved {recipe.name}.pt and {recipe.name}.json to {pretrained_stem(recipe.name).parent}")


if __name__ == "__main__":
    main()
