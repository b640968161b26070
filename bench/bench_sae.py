"""SAE speed on the shipped SASRec's states: collection time, training throughput, dense vs sparse decode.

Run: python bench/bench_sae.py

Prints
  * the time to collect the hidden states at "final" and "block_0" (all training windows of ML-100k);
  * TopK 64 -> 2048, k = 32, batch 4,096 training throughput (vectors/s) with 1 and 2 threads, with the
    sparse (embedding_bag) decode the library uses and with the dense scatter + matmul decode;
  * the wall time of training the shipped SAE recipe (10 epochs) with 2 threads.
"""

from __future__ import annotations

import time

import seqsae_lib as sl
from seqsae_lib.experiments.pretrained import SAE_ML100K_FINAL, SASREC_ML100K, load_pretrained_sasrec, training_activations


def main() -> None:
    split = sl.leave_one_out(sl.make_sequences(sl.load_movielens("ml-100k"), **SASREC_ML100K.sequences))
    model, _ = load_pretrained_sasrec(split.fingerprint)
    sl.set_threads(2)
    for point in ("final", "block_0"):
        start = time.perf_counter()
        store = training_activations(model, split, point)
        print(f"collect {len(store):,} states at {point!r} (2 threads): {time.perf_counter() - start:.2f} s")
    store = training_activations(model, split, "final")

    for threads in (1, 2):
        for sparse in (True, False):
            config = sl.SAEConfig(d_in=64, d_sae=2048, kind="topk", k=32, sparse_decode=sparse, seed=0)
            train = sl.SAETrainConfig(batch_size=4096, num_epochs=2, num_threads=threads, progress=False)
            _, history = sl.train_sae(store.acts, config, train)
            rate = 2 * len(store) / history.seconds
            print(f"TopK 64->2048 k=32 batch 4096, {threads} thread(s), "
                  f"{'sparse' if sparse else 'dense '} decode: {rate:9,.0f} vectors/s")

    config = sl.SAEConfig(d_in=64, seed=0, **SAE_ML100K_FINAL.sae)
    train = sl.SAETrainConfig(seed=0, num_threads=2, progress=False, **SAE_ML100K_FINAL.train)
    start = time.perf_counter()
    sl.train_sae(store.acts, config, train)
    print(f"shipped SAE recipe {SAE_ML100K_FINAL.sae} {SAE_ML100K_FINAL.train}, 2 threads: "
          f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
