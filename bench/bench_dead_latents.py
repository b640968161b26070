"""Dead latents of TopK / BatchTopK SAEs on the shipped SASRec's states, before and after the fix.

Run: python bench/bench_dead_latents.py --epochs 10 --threads 1
     python bench/bench_dead_latents.py --epochs 10 --only k=4 k=8 "4,096 latents"

The grid of the conditions study (ML-100k, the shipped SASRec's training windows, 83,857 states; batch 1,024,
lr 2e-3, seed 0): TopK with k in {4, 8, 16, 32} at 2,048 latents, 512 and 4,096 latents at k = 16, BatchTopK
at k = 16, and the shipped recipe at "block_0" and "embed". Each point is trained twice:

* ``before``: random unit decoder rows, plain AuxK at 1/32, unit-norm encoder start (the library's defaults
  when this bench was written);
* ``after``: ``SAETrainConfig(decoder_init="data")`` and ``SAEConfig(aux_rescale=True)`` (what
  :func:`seqsae_lib.experiments.run_condition` uses, with AuxK at 1/32 and the unit-norm start).

Prints one line per run as it finishes and the table at the end: the dead fraction on the training states as
``evaluate_reconstruction(sae, store.acts)["dead_fraction"]`` defines it (firing on fewer than one in
``dead_after`` = 20,000 states, i.e. on at most 4 of the 83,857), the FVU on the same states and the training
seconds.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

import seqsae_lib as sl
from seqsae_lib.experiments.pretrained import SASREC_ML100K, load_pretrained_sasrec, training_activations

GRID: dict[str, dict] = {
    "k=4": {"k": 4},
    "k=8": {"k": 8},
    "k=16 (shipped)": {},
    "k=32": {"k": 32},
    "512 latents": {"d_sae": 512},
    "4,096 latents": {"d_sae": 4096},
    "BatchTopK": {"kind": "batchtopk"},
    "block_0": {"capture_point": "block_0"},
    "embed": {"capture_point": "embed"},
}
"""Grid points: changes to the shipped recipe (final state, TopK, 2,048 latents, k = 16)."""

VARIANTS: dict[str, tuple[dict, dict]] = {
    "before": (dict(sl.sae.UNIT_START_SAE), dict(sl.sae.UNIT_START_TRAIN)),
    "after": ({**sl.sae.UNIT_START_SAE, "aux_rescale": True}, {"decoder_init": "data", **sl.sae.UNIT_START_TRAIN}),
}
"""(SAEConfig options, SAETrainConfig options) of each variant."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="+", default=None, choices=list(GRID), help="grid points to run")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    sl.set_threads(args.threads)
    split = sl.leave_one_out(sl.make_sequences(sl.load_movielens("ml-100k"), **SASREC_ML100K.sequences))
    model, _ = load_pretrained_sasrec(split.fingerprint)
    stores: dict[str, sl.ActivationStore] = {}
    rows = []
    for name in args.only or list(GRID):
        point = dict(GRID[name])
        capture_point = point.pop("capture_point", "final")
        if capture_point not in stores:
            stores[capture_point] = training_activations(model, split, capture_point)
        store = stores[capture_point]
        settings = {"d_sae": 2048, "kind": "topk", "k": 16, **point}
        for variant in args.variants:
            sae_options, train_options = VARIANTS[variant]
            config = sl.SAEConfig(d_in=store.d_model, seed=0, **settings, **sae_options)
            train = sl.SAETrainConfig(batch_size=1024, lr=2e-3, num_epochs=args.epochs, seed=0,
                                      num_threads=args.threads, progress=False, **train_options)
            start = time.perf_counter()
            sae, _ = sl.train_sae(store, config, train)
            seconds = time.perf_counter() - start
            recon = sl.evaluate_reconstruction(sae, store.acts)
            rows.append({"point": name, "capture": capture_point, "variant": variant,
                         "dead": round(float(recon["dead_fraction"]), 4), "FVU": round(float(recon["fvu"]), 4),
                         "seconds": round(seconds, 1)})
            print(" | ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    table = pd.DataFrame(rows).pivot(index=["point", "capture"], columns="variant", values=["dead", "FVU", "seconds"])
    table = table.reindex([(n, GRID[n].get("capture_point", "final")) for n in args.only or list(GRID)])
    print(f"\n{args.epochs} epochs, {args.threads} thread(s), seed 0, {len(next(iter(stores.values()))):,} states; "
          "dead = evaluate_reconstruction(sae, store.acts)['dead_fraction']")
    print(table.to_string())


if __name__ == "__main__":
    main()
