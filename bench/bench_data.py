"""Time to load, sequence and split MovieLens (ML-100k always; ML-1M when a full local copy exists;
"ml-1m-u2999", MovieLens-1M users 1–2,999, when its own file or a full ML-1M copy exists locally).

Run: python bench/bench_data.py   (uses $SEQSAE_DATA, the cache or a download like the library does)
Prints the median of 5 repetitions of each stage, in seconds.
"""

from __future__ import annotations

import statistics
import time

import seqsae_lib as sl


def timed(fn, repeat: int = 5):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def bench(name: str) -> None:
    data, t_load = timed(lambda: sl.load_movielens(name))
    _, t_load_unverified = timed(lambda: sl.load_movielens(name, verify=False))
    seq, t_seq = timed(lambda: sl.make_sequences(data))
    _, t_split = timed(lambda: sl.leave_one_out(seq))
    print(f"{name} ({data.description}): {data.num_ratings:,} ratings -> {seq.num_users:,} users, "
          f"{seq.num_items:,} items; read from {data.source.describe()}")
    print(f"  load + validate + sha256 : {t_load:7.3f} s")
    print(f"  load + validate          : {t_load_unverified:7.3f} s")
    print(f"  make_sequences           : {t_seq:7.3f} s")
    print(f"  leave_one_out            : {t_split:7.3f} s")
    print(f"  total                    : {t_load + t_seq + t_split:7.3f} s")


if __name__ == "__main__":
    bench("ml-100k")
    try:
        sl.data.resolve_source("ml-1m", download=False)
    except sl.DataSourceError as err:
        print(f"ml-1m: skipped ({err})")
    else:
        bench("ml-1m")
    try:
        sl.data.resolve_subset_source("ml-1m-u2999", download=False)
    except sl.DataSourceError as err:
        print(f"ml-1m-u2999: skipped ({err})")
    else:
        bench("ml-1m-u2999")
