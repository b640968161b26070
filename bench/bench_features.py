"""Interpretation speed on ML-100k with the shipped SASRec and SAE (2,048 latents).

Run: python bench/bench_features.py [--threads 2] [--cards 30]

Prints:
  * the time of every step of ``sl.build_atlas`` (encode, statistics, profiles, labels) and their total
    (target: all statistics in under 60 s with 2 threads);
  * monosemanticity scores for the five unit types (``sl.score_unit_types``);
  * the feature browser's update: building one latent's card and its HTML (median and p95 over
    ``--cards`` latents drawn at random among those that fire; target: under 200 ms), and, for
    comparison, drawing the matplotlib card of the same latents.
"""

from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import seqsae_lib as sl
from seqsae_lib.experiments.pretrained import SAE_ML100K_FINAL, load_pretrained_sae, load_pretrained_sasrec, training_activations


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cards", type=int, default=30)
    args = parser.parse_args()
    sl.set_threads(args.threads)
    data = sl.make_sequences(sl.load_movielens("ml-100k"))
    split = sl.leave_one_out(data)
    model, _ = load_pretrained_sasrec(split.fingerprint)
    sae = load_pretrained_sae(split.fingerprint)
    start = time.perf_counter()
    store = training_activations(model, split, SAE_ML100K_FINAL.capture_point)
    print(f"threads={args.threads}; {len(store):,} states collected in {time.perf_counter() - start:.2f} s; "
          f"SAE {sae.config.d_sae} latents, k={sae.config.k}")

    start = time.perf_counter()
    atlas = sl.build_atlas(model, sae, store, data, progress=False)
    total = time.perf_counter() - start
    steps = ", ".join(f"{k} {v:.2f} s" for k, v in atlas.seconds.items())
    print(f"feature atlas (all statistics, profiles, labels): {total:.1f} s  [{steps}]")

    start = time.perf_counter()
    sl.score_unit_types(sae, store, data, item_vectors=model.item_emb.weight.detach(), codes=atlas.codes,
                        progress=False)
    print(f"monosemanticity scores, 5 unit types: {time.perf_counter() - start:.1f} s")

    rng = np.random.default_rng(0)
    firing = atlas.stats.index[atlas.stats["n_fires"] > 0].to_numpy()
    picks = rng.choice(firing, size=min(args.cards, len(firing)), replace=False)
    browser = sl.widgets.feature_browser(atlas, latent=int(picks[0]))
    html_t = [browser.show(int(j)) for j in picks]
    draw_t = []
    for j in picks:
        t0 = time.perf_counter()
        fig = sl.plot_feature_card(atlas.card(int(j)))
        fig.canvas.draw()  # render, as a notebook does
        plt.close(fig)
        draw_t.append(time.perf_counter() - t0)
    print(f"feature browser update (card + HTML) over {len(picks)} latents: median {np.median(html_t) * 1e3:.0f} ms, "
          f"p95 {np.percentile(html_t, 95) * 1e3:.0f} ms")
    print(f"matplotlib card (plot_feature_card + render), same latents: median {np.median(draw_t) * 1e3:.0f} ms, "
          f"p95 {np.percentile(draw_t, 95) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
