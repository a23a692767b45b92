"""Dinucleotide shuffles per second against worker processes (issue 23: the references must keep up with a GPU).

Shuffles random sequences (default 2,000 x 1,000 bp, 20 shuffles each, named) with dnalift's shuffle pool
(``dnalift.references.parallel.ShufflePool``) at each worker count, 0 meaning in this process as
``dnalift.dinucleotide_shuffle`` does, and prints shuffles (sequence-reference pairs) per second, best of a few
repeats after a warm-up that starts the workers, with the load average before and after each count. Every
count's result is checked bit for bit against the in-process one. Not part of the tests.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_shuffle_cores.py [--workers 0 1 2 4] [--sequences 2000]
        [--length 1000] [--shuffles 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sequences", type=int, default=2000)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--shuffles", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import _common as common
    from dnalift.references import dinucleotide_shuffle
    from dnalift.references.parallel import ShufflePool

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=(args.sequences, args.length))
    X = np.eye(4, dtype=np.int8)[codes].transpose(0, 2, 1).copy()
    names = [f"seq{i}" for i in range(args.sequences)]
    n = args.shuffles
    expected = dinucleotide_shuffle(X, n=n, names=names)
    pairs = args.sequences * n
    print(f"{args.sequences} sequences x {args.length} bp x {n} shuffles ({pairs:,} pairs); best of "
          f"{args.repeats}; {common.cpu_model()}, {os.cpu_count()} CPUs, numpy {np.__version__}")
    print(f"{'workers':>7} {'best s':>7} {'shuffles/s':>11} {'x 0':>5}  {'same bits':>9}  load before -> after")
    base = None
    for workers in args.workers:
        pool = ShufflePool(workers) if workers else None
        shuffle = pool if pool is not None else dinucleotide_shuffle
        try:
            shuffle(X[:16], n=2, names=names[:16])  # starts the workers
            load = os.getloadavg()
            best, same = float("inf"), True
            for _ in range(args.repeats):
                start = time.perf_counter()
                out = shuffle(X, n=n, names=names)
                best = min(best, time.perf_counter() - start)
                same = same and bool(np.array_equal(out, expected))
        finally:
            if pool is not None:
                pool.close()
        rate = pairs / best
        base = base or rate
        after = os.getloadavg()
        print(f"{workers:>7} {best:>7.2f} {rate:>11,.0f} {rate / base:>5.2f}  {str(same):>9}  "
              f"{load[0]:.2f} -> {after[0]:.2f}")
        if not same:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
