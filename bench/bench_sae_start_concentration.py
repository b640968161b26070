"""Which SAE start makes the latents' genres concentrated? Dictionary start x encoder start x AuxK, judged fairly.

Run: SEQSAE_DATA=... python bench/bench_sae_start_concentration.py [--threads 2] [--seeds 0] [--only A C]

The conditions study's ML-100k "shipped recipe" condition (final state, 2,048 latents, k = 16, 10 epochs, batch
1,024, lr 2e-3) trained with each combination below through
:func:`seqsae_lib.experiments.conditions.run_condition` (its ``sae_options`` / ``train_options``), scored exactly
as the study scores it. Prints, per combination and seed, the FVU, the dead fraction, how many latents fire often
enough to be scored, the median chance-corrected genre concentration (``kl_excess``) of the latents' top firing
positions (input item and next item), and the SAE-minus-control difference of that median against the untrained
SAE and the random rotation (input item) with the verdict.

The question it answers: the library's defaults (random rows, fitted encoder start, rescaled AuxK 1/4) were chosen
on FVU and dead latents (``bench/bench_sae_init.py``); does the choice move the monosemanticity measure?
"""

from __future__ import annotations

import argparse

import seqsae_lib as sl
from seqsae_lib.experiments.conditions import CONDITIONS, run_condition
from seqsae_lib.experiments.pretrained import load_pretrained_sasrec, sasrec_recipe, training_activations

COMBINATIONS: dict[str, tuple[dict, dict]] = {
    "A random rows, unit start, plain AuxK 1/32 (the shipped recipe)":
        ({"aux_rescale": False, "aux_coefficient": 1 / 32}, {"decoder_init": "random", "fit_encoder_scale": False}),
    "B random rows, fitted start, rescaled AuxK 1/4 (the library's defaults)":
        ({"aux_rescale": True, "aux_coefficient": 0.25}, {"decoder_init": "random", "fit_encoder_scale": True}),
    "C data rows, fitted start, rescaled AuxK 1/4":
        ({"aux_rescale": True, "aux_coefficient": 0.25}, {"decoder_init": "data", "fit_encoder_scale": True}),
    "D random rows, unit start, rescaled AuxK 1/4":
        ({"aux_rescale": True, "aux_coefficient": 0.25}, {"decoder_init": "random", "fit_encoder_scale": False}),
    "E random rows, fitted start, rescaled AuxK 1/32":
        ({"aux_rescale": True, "aux_coefficient": 1 / 32}, {"decoder_init": "random", "fit_encoder_scale": True}),
    "F data rows, unit start, rescaled AuxK 1/4":
        ({"aux_rescale": True, "aux_coefficient": 0.25}, {"decoder_init": "data", "fit_encoder_scale": False}),
    "G data rows, unit start, rescaled AuxK 1/32 (the conditions study)":
        ({"aux_rescale": True, "aux_coefficient": 1 / 32}, {"decoder_init": "data", "fit_encoder_scale": False}),
}
"""Label -> (SAEConfig options, SAETrainConfig options); the first letter is what ``--only`` takes."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="+", default=None, help="letters of the combinations to run (default: all)")
    args = parser.parse_args()
    chosen = {name: options for name, options in COMBINATIONS.items() if args.only is None or name[0] in args.only}
    if not chosen:
        parser.error(f"--only takes letters among {[name[0] for name in COMBINATIONS]}")
    sl.set_threads(args.threads)
    recipe = sasrec_recipe("ml-100k")
    data = sl.make_sequences(sl.load_movielens("ml-100k"), **recipe.sequences)
    split = sl.leave_one_out(data)
    model, _ = load_pretrained_sasrec(split.fingerprint, name=recipe.name)
    store = training_activations(model, split, "final")
    print(f"{len(store):,} final states of the shipped ML-100k SASRec; {args.threads} thread(s)")
    for name, (sae_options, train_options) in chosen.items():
        for seed in args.seeds:
            summary, table = run_condition(CONDITIONS[0], store, data, num_epochs=10, seed=seed,
                                           num_threads=args.threads, sae_options=sae_options,
                                           train_options=train_options)
            t = table.set_index(["side", "other"])
            print(f"{name:72s} seed {seed}  FVU {summary['fvu']:.4f}  dead {summary['dead']:.4f}  "
                  f"scored {summary['sae_scored']}  median kl_excess input "
                  f"{t.loc[('input', 'PCA'), 'median_reference']:.4f} next {t.loc[('next', 'PCA'), 'median_reference']:.4f}  input, SAE minus untrained SAE "
                  f"{t.loc[('input', 'untrained SAE'), 'diff']:+.3f} ({t.loc[('input', 'untrained SAE'), 'verdict']}), "
                  f"minus random rotation {t.loc[('input', 'random rotation'), 'diff']:+.3f} "
                  f"({t.loc[('input', 'random rotation'), 'verdict']})", flush=True)


if __name__ == "__main__":
    main()
