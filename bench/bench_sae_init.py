"""The TopK SAE's convergence fix on real states: FVU, dead latents and training curves against the peers' recipe.

Run: SEQSAE_DATA=... python bench/bench_sae_init.py [--threads 1] [--epochs 2 10] [--seeds 0 1 2]

Trains the shipped ML-100k final-state SAE recipe (``SAE_ML100K_FINAL``: 2,048 latents, k = 16, batch 1,024,
lr 2e-3 with the library's warm-up and decay) on the shipped SASRec's 83,857 training states, per seed and
number of epochs, three ways (and a fourth on request):

* ``unit-norm start``: the encoder starts as the unit-norm decoder's transpose, plain AuxK with weight 1/32
  (the shipped recipe's settings);
* ``fitted start + rescaled AuxK 1/4``: :attr:`~seqsae_lib.SAETrainConfig.fit_encoder_scale` (the encoder
  scaled so the first reconstructions fit the data in size), :attr:`~seqsae_lib.SAEConfig.aux_rescale` and
  ``aux_coefficient = 1/4``: the fix (the library's defaults since it was measured);
* ``plain reference (peers' recipe)``: ``bench/bench_speed.py``'s plain TopK SAE (``nn.Linear`` encoder, its
  weights copied and normalised for the decoder, geometric-median ``b_dec``, FVU loss, no AuxK, constant lr)
  at the same k, dictionary, batch and lr;
* ``the same fix from data rows`` (``--runs 3``): the fix with ``SAETrainConfig(decoder_init="data")``, the
  dictionary start under which the latents' genres are more concentrated
  (``bench/bench_sae_start_concentration.py``).

Prints, per run, the FVU and the dead fraction on all training states (``evaluate_reconstruction``'s
definition, for the plain reference computed the same way), and the training FVU at the end of each epoch
(mean of the last logged steps).

``--encoder-scales 0.577 0.3 --lrs 2e-3 6e-4``: instead, the unit-norm start with ``W_enc`` multiplied by each
fixed factor (0.577 is the row norm of ``nn.Linear``'s default initialisation at d = 64, the peers' start),
trained at each learning rate for the first of ``--epochs``: does a smaller encoder alone, or with a smaller
Adam step, kill latents?
"""

from __future__ import annotations

import argparse
import math

import torch

import seqsae_lib as sl
from seqsae_lib.experiments.pretrained import SAE_ML100K_FINAL, SASREC_ML100K, training_activations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--encoder-scales", type=float, nargs="*", default=None,
                        help="fixed factors for W_enc at the start (with --lrs); replaces the default table")
    parser.add_argument("--lrs", type=float, nargs="*", default=None, help="learning rates for --encoder-scales")
    parser.add_argument("--runs", type=int, nargs="+", default=[0, 1, 2],
                        help="which runs of the table, by position (3: the fix from data rows, not in the default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = sl.load_movielens(SASREC_ML100K.dataset)
    split = sl.leave_one_out(sl.make_sequences(data, **SASREC_ML100K.sequences))
    model, _ = sl.load_pretrained_sasrec(split.fingerprint)
    store = training_activations(model, split, SAE_ML100K_FINAL.capture_point)
    print(f"{store.acts.shape[0]:,} final states of the shipped ML-100k SASRec; {args.threads} thread(s)")
    if args.encoder_scales:
        scaled_starts(store, args.encoder_scales, args.lrs or [SAE_ML100K_FINAL.train["lr"]], args.epochs[0])
        return
    print(f"{'start':36s} {'seed':>4s} {'epochs':>6s} {'FVU':>7s} {'dead':>7s}  training FVU at the end of each epoch")
    for seed in args.seeds:
        for epochs in args.epochs:
            for label in [RUNS[i] for i in args.runs]:
                fvu, dead, curve = run(label, store.acts, seed, epochs)
                print(f"{label:36s} {seed:4d} {epochs:6d} {fvu:7.4f} {dead:7.4f}  {' '.join(f'{v:.3f}' for v in curve)}",
                      flush=True)


RUNS = ("unit-norm start", "fitted start + rescaled AuxK 1/4", "plain reference (peers' recipe)",
        "the same fix from data rows")


def run(label: str, acts: torch.Tensor, seed: int, epochs: int) -> tuple[float, float, list[float]]:
    """(FVU, dead fraction, training FVU per epoch) of one run."""
    if label == RUNS[2]:
        return plain_run(acts, seed, epochs)
    fix = label in (RUNS[1], RUNS[3])
    config = sl.SAEConfig(d_in=acts.shape[1], seed=seed, **{**SAE_ML100K_FINAL.sae, "aux_rescale": fix,
                                                           "aux_coefficient": 0.25 if fix else 1 / 32})
    train = sl.SAETrainConfig(seed=seed, progress=False, **{**SAE_ML100K_FINAL.train, "num_epochs": epochs,
                                                            "fit_encoder_scale": fix,
                                                            "decoder_init": "data" if label == RUNS[3] else "random"})
    sae, history = sl.train_sae(acts, config, train)
    quality = sl.evaluate_reconstruction(sae, acts)
    frame = history.to_frame()
    curve = [float(frame.loc[(frame.epoch > e - 0.2) & (frame.epoch <= e + 1e-9), "fvu"].mean()) for e in range(1, epochs + 1)]
    return float(quality["fvu"]), float(quality["dead_fraction"]), curve


def plain_run(acts: torch.Tensor, seed: int, epochs: int) -> tuple[float, float, list[float]]:
    import bench_speed  # the plain reference lives there (bench/ is on sys.path when run as a script)

    batch = SAE_ML100K_FINAL.train["batch_size"]
    steps_per_epoch = math.ceil(len(acts) / batch)
    losses: list[float] = []
    sae, _ = bench_speed.train_plain_sae(acts, epochs, seed, batch_size=batch, lr=SAE_ML100K_FINAL.train["lr"],
                                         d_sae=SAE_ML100K_FINAL.sae["d_sae"], k=SAE_ML100K_FINAL.sae["k"],
                                         log=lambda step, value: losses.append(value))
    with torch.no_grad():
        x_hat = torch.cat([sae(rows) for rows in acts.split(8192)])
        fired = torch.zeros(SAE_ML100K_FINAL.sae["d_sae"], dtype=torch.long)
        for rows in acts.split(8192):
            vals, idx = torch.relu(sae.enc(rows - sae.b_dec)).topk(sae.k, sorted=False)
            fired += torch.bincount(idx[vals > 0], minlength=len(fired))
    fvu = float((x_hat - acts).pow(2).sum() / (acts - acts.mean(0)).pow(2).sum())
    dead = sl.sae.metrics.dead_fraction(fired, num_vectors=len(acts))  # the library's definition, default dead_after
    last = max(1, steps_per_epoch // 5)
    curve = [sum(losses[(e + 1) * steps_per_epoch - last:(e + 1) * steps_per_epoch]) / last for e in range(epochs)]
    return fvu, dead, curve


def scaled_starts(store: sl.sae.ActivationStore, scales: list[float], lrs: list[float], epochs: int) -> None:
    """Train from the default start with ``W_enc`` scaled by each factor, at each learning rate."""
    print(f"{'encoder scale':>13s} {'lr':>8s} {'epochs':>6s} {'FVU':>7s} {'dead':>7s} {'first FVU':>9s}")
    for lr in lrs:
        for scale in [1.0, *scales]:
            config = sl.SAEConfig(d_in=store.d_model, seed=0, **SAE_ML100K_FINAL.sae)
            train = sl.SAETrainConfig(seed=0, progress=False, **{**SAE_ML100K_FINAL.train, "num_epochs": epochs,
                                                                 "lr": lr, "fit_encoder_scale": False})
            start = sl.initial_sae(store, config, train)
            with torch.no_grad():
                start.W_enc.mul_(scale)
            sae, history = sl.train_sae(store, config, train, sae=start)
            quality = sl.evaluate_reconstruction(sae, store.acts)
            print(f"{scale:13.3f} {lr:8.1e} {epochs:6d} {quality['fvu']:7.4f} {quality['dead_fraction']:7.4f} "
                  f"{history.fvu[0]:9.3f}", flush=True)


if __name__ == "__main__":
    main()
