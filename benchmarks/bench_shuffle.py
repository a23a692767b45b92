"""Dinucleotide-shuffle throughput: dnalift against tangermeme (when installed).

Shuffles random sequences (default 2,000 x 1,000 bp, 20 shuffles each) and prints sequences per second,
best of a few repeats, one thread: wall clock, and process CPU time, which is steadier on a shared
machine. tangermeme's ``dinucleotide_shuffle`` (numba) is timed on the same data as a torch tensor, after
a warm-up call that compiles it. Both return (m, n, 4, L) int8. Not part of the tests.

    .venv/bin/python benchmarks/bench_shuffle.py [--sequences 2000] [--length 1000] [--shuffles 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402


def best_time(fn, repeats: int) -> tuple[float, float]:
    """Best wall-clock and best CPU (process) seconds over ``repeats`` calls."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=2000)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--shuffles", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from dnalift.references.make import dinucleotide_shuffle

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=(args.sequences, args.length))
    X = np.eye(4, dtype=np.int8)[codes].transpose(0, 2, 1).copy()  # (m, 4, L)
    names = [f"seq{i}" for i in range(args.sequences)]
    n = args.shuffles

    rows = []
    dinucleotide_shuffle(X[:2], n=2, names=names[:2])
    timing = best_time(lambda: dinucleotide_shuffle(X, n=n, names=names), args.repeats)
    rows.append(("dnalift (numpy, exact uniform)", *timing))

    try:
        from tangermeme.ersatz import dinucleotide_shuffle as tm_shuffle
    except ImportError as exc:
        rows.append((f"tangermeme: not installed ({exc.name})", None, None))
    else:
        import tangermeme

        Xt = torch.from_numpy(X)
        tm_shuffle(Xt[:2], n=2, random_state=0)  # numba compilation
        label = f"tangermeme {tangermeme.__version__} (numba, n_jobs=1)"
        rows.append((label, *best_time(lambda: tm_shuffle(Xt, n=n, random_state=0), args.repeats)))

    print(
        f"{args.sequences} sequences x {args.length} bp x {n} shuffles; best of {args.repeats}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}"
    )
    print(f"{'implementation':<44} {'wall s':>7} {'seq/s':>7} {'CPU s':>7} {'seq/CPU s':>10}")
    for label, wall, cpu in rows:
        if wall is None:
            print(f"{label:<44} {'-':>7} {'-':>7} {'-':>7} {'-':>10}")
        else:
            m = args.sequences
            print(f"{label:<44} {wall:>7.2f} {m / wall:>7.0f} {cpu:>7.2f} {m / cpu:>10.0f}")


if __name__ == "__main__":
    main()
