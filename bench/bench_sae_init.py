"""The TopK SAE's initial encoder scale on real states: FVU and dead latents with and without fit_encoder_scale.

Run: SEQSAE_DATA=... python bench/bench_sae_init.py [--threads 1] [--epochs 2 10]

Trains the shipped ML-100k final-state SAE recipe (``SAE_ML100K_FINAL``: 2,048 latents, k = 16, batch 1,024,
lr 2e-3 with the library's warm-up and decay) on the shipped SASRec's training states, seed 0, with
``SAETrainConfig.fit_encoder_scale`` off and on, each with the library's default initialisation and with the
dead-latent fix (``decoder_init="data"``, ``aux_rescale=True``). Prints, per run, the FVU and dead fraction
(``evaluate_reconstruction`` on all training states), the first logged training FVU and the seconds. It is
the real-data check of the option ``bench/bench_speed.py`` measures on its synthetic workload.

``--encoder-scales 0.577 0.3 --lrs 2e-3 6e-4``: instead, the library's default start with ``W_enc`` multiplied
by each fixed factor (0.577 is the row norm of ``nn.Linear``'s default initialisation at d = 64, the peers'
start), trained at each learning rate for the first of ``--epochs``: does a smaller encoder alone, or with a
smaller Adam step, kill latents?
"""

from __future__ import annotations

import argparse
import time

import torch

import seqsae_lib as sl
from seqsae_lib.experiments.pretrained import SAE_ML100K_FINAL, SASREC_ML100K, training_activations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--encoder-scales", type=float, nargs="*", default=None,
                        help="fixed factors for W_enc at the start (with --lrs); replaces the default table")
    parser.add_argument("--lrs", type=float, nargs="*", default=None, help="learning rates for --encoder-scales")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = sl.load_movielens(SASREC_ML100K.dataset)
    split = sl.leave_one_out(sl.make_sequences(data, **SASREC_ML100K.sequences))
    model, _ = sl.load_pretrained_sasrec(split.fingerprint)
    store = training_activations(model, split, SAE_ML100K_FINAL.capture_point)
    print(f"{store.acts.shape[0]:,} final states of the shipped ML-100k SASRec; {args.threads} thread(s), seed 0")
    if args.encoder_scales:
        scaled_starts(store, args.encoder_scales, args.lrs or [SAE_ML100K_FINAL.train["lr"]], args.epochs[0])
        return
    print(f"{'initialisation':34s} {'epochs':>6s} {'fit scale':>9s} {'FVU':>7s} {'dead':>7s} {'first FVU':>9s} {'s':>5s}")
    for epochs in args.epochs:
        for label, sae_extra, train_extra in (("library default", {}, {}),
                                              ("dead-latent fix (data, rescale)", {"aux_rescale": True},
                                               {"decoder_init": "data"})):
            for fit in (False, True):
                start = time.perf_counter()
                config = sl.SAEConfig(d_in=store.d_model, seed=0, **SAE_ML100K_FINAL.sae, **sae_extra)
                train = sl.SAETrainConfig(seed=0, progress=False, **{**SAE_ML100K_FINAL.train, **train_extra,
                                                                     "num_epochs": epochs, "fit_encoder_scale": fit})
                sae, history = sl.train_sae(store, config, train)
                quality = sl.evaluate_reconstruction(sae, store.acts)
                print(f"{label:34s} {epochs:6d} {str(fit):>9s} {quality['fvu']:7.4f} {quality['dead_fraction']:7.4f} "
                      f"{history.fvu[0]:9.3f} {time.perf_counter() - start:5.0f}", flush=True)


def scaled_starts(store: sl.sae.ActivationStore, scales: list[float], lrs: list[float], epochs: int) -> None:
    """Train from the default start with ``W_enc`` scaled by each factor, at each learning rate."""
    print(f"{'encoder scale':>13s} {'lr':>8s} {'epochs':>6s} {'FVU':>7s} {'dead':>7s} {'first FVU':>9s}")
    for lr in lrs:
        for scale in [1.0, *scales]:
            config = sl.SAEConfig(d_in=store.d_model, seed=0, **SAE_ML100K_FINAL.sae)
            train = sl.SAETrainConfig(seed=0, progress=False, **{**SAE_ML100K_FINAL.train, "num_epochs": epochs,
                                                                 "lr": lr})
            start = sl.initial_sae(store, config, train)
            with torch.no_grad():
                start.W_enc.mul_(scale)
            sae, history = sl.train_sae(store, config, train, sae=start)
            quality = sl.evaluate_reconstruction(sae, store.acts)
            print(f"{scale:13.3f} {lr:8.1e} {epochs:6d} {quality['fvu']:7.4f} {quality['dead_fraction']:7.4f} "
                  f"{history.fvu[0]:9.3f}", flush=True)


if __name__ == "__main__":
    main()
