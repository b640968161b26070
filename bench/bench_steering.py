"""Steering speed on ML-100k with the shipped SASRec and SAE.

Run: python bench/bench_steering.py [--threads 2] [--updates 300] [--users 30] [--concept Horror]

Prints:
  * calibrating the widget's concept sliders (``sl.steering.calibrate_sliders`` on all 943 test users, the
    concepts of ``sl.steering.showcase_concepts``) and picking the showcased user (``showcase_user``), once;
  * the live widget's update path (slider positions to strengths through the calibration, then
    ``LiveSteering.recommend``: build the steering, edit the cached state, score the catalogue (plus a
    re-ranking bonus for a slider that falls back to it), top-10, comparison table), median and p95 over
    ``--updates`` random slider positions, ``--updates / --users`` on each of ``--users`` random users, as
    a reader moves the sliders after picking a user (target: p95 <= 20 ms with 2 threads);
  * picking a user (one forward pass to the cached state, the unsteered top-10), median and p95;
  * the full evaluation grid for one concept: the SAE method and the four baselines over their
    strength grids on all 943 test users (target: under a minute);
  * one concept's row of the all-concepts table (``concept_steering_table``: SAEs at ``final`` and
    ``block_0``, four baselines, the number of latents chosen on validation users), setup included (the
    whole table of 23 concepts: ``scripts/concept_table.py``, target about 3 minutes with 2 threads);
  * explaining one user's top-10 (forward pass, top-10, exact per-feature decomposition of each score),
    median and p95 over 100 users (target: under 50 ms with 2 threads).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import seqsae_lib as sl
from seqsae_lib.experiments.pretrained import (
    SAE_ML100K_BLOCK_0, load_pretrained_sae, shipped_pipeline, training_activations,
)

SAE_STRENGTHS = (0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8)  # as in chapter 5
RERANK_STRENGTHS = (0.25, 0.5, 1, 1.5, 2, 3, 4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--concept", default="Horror")
    args = parser.parse_args()
    sl.set_threads(args.threads)
    data = sl.make_sequences(sl.load_movielens("ml-100k"))
    split = sl.leave_one_out(data)
    model, sae, store = shipped_pipeline(split)
    codes = sl.interpret.latent_activations(sae, store)
    concepts = sl.steering.showcase_concepts(data)
    start = time.perf_counter()
    chosen = {c: sl.select_latents(sl.steering.get_concept(data, c), sae, model, codes=codes, store=store)
              for c in concepts}
    print(f"threads={args.threads}; latents chosen for {len(concepts)} concepts ({', '.join(concepts)}) in "
          f"{time.perf_counter() - start:.2f} s")
    live = sl.LiveSteering(model, sae, data, split.test_inputs, chosen)
    start = time.perf_counter()
    calibration = sl.steering.calibrate_sliders(live, split.test_targets)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    showcased = sl.steering.showcase_user(live)
    print(f"calibrating {len(calibration)} sliders on {len(calibration.users)} users: {seconds:.1f} s "
          f"({sum(len(c.strengths) for c in calibration.values())} measured strengths); showcased user "
          f"{showcased} picked in {time.perf_counter() - start:.1f} s")

    rng = np.random.default_rng(0)
    # As in the widget: a reader picks a user (one forward pass, cached), then moves the sliders.
    users = rng.choice(data.num_users, size=args.users, replace=False)
    picks, times = [], []
    for u in users:
        start = time.perf_counter()
        live.recommend(int(u))
        picks.append(time.perf_counter() - start)
        for _ in range(args.updates // args.users):
            positions = {c: float(rng.uniform(-1, 1)) for c in concepts if rng.random() < 0.6}
            start = time.perf_counter()
            live.recommend(int(u), calibration.strengths(positions))
            times.append(time.perf_counter() - start)
    print(f"widget update ({len(times)} random calibrated slider positions, {args.users} users): "
          f"median {np.median(times) * 1e3:.1f} ms, p95 {np.percentile(times, 95) * 1e3:.1f} ms, "
          f"max {np.max(times) * 1e3:.1f} ms")
    print(f"picking a new user (one forward pass + unsteered top-10), {args.users} users: median "
          f"{np.median(picks) * 1e3:.1f} ms, p95 {np.percentile(picks, 95) * 1e3:.1f} ms")

    concept = sl.get_concept(data, args.concept)
    start = time.perf_counter()
    latents = sl.select_latents(concept, sae, model, codes=codes, store=store)
    methods = sl.steering_methods(concept, sae, store, latents, codes=codes)
    grids = {name: RERANK_STRENGTHS if name == "re-ranking" else SAE_STRENGTHS for name in methods}
    sl.evaluate_methods(model, methods, grids, split.test_inputs, split.test_targets, concept, data)
    n_points = sum(len(g) for g in grids.values())
    print(f"evaluation grid for {args.concept!r}: {len(methods)} methods, {n_points} strengths, "
          f"{data.num_users} users in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    saes = {"final": sae, "block_0": load_pretrained_sae(split.fingerprint, SAE_ML100K_BLOCK_0)}
    stores = {"final": store, "block_0": training_activations(model, split, "block_0")}
    sl.steering.concept_steering_table(model, saes, stores, split, data, concepts=[args.concept], progress=False)
    print(f"concept table row for {args.concept!r} (SAEs at final and block_0, 4 baselines, setup included): "
          f"{time.perf_counter() - start:.1f} s")

    labels = sl.build_atlas(model, sae, store, data, progress=False).labels
    times = []
    for u in rng.choice(data.num_users, size=100, replace=False):
        t0 = time.perf_counter()
        sl.explain_top_k(model, sae, split.test_inputs[int(u)], k=10, seq_data=data, labels=labels)
        times.append(time.perf_counter() - t0)
    print(f"explaining one user's top-10 (100 users): median {np.median(times) * 1e3:.1f} ms, "
          f"p95 {np.percentile(times, 95) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
