"""What scoring several fold models in one run could save: the share of one fold's time that is not the model.

A fold's ``dnalift score`` reads the windows, makes the dinucleotide shuffles and runs DeepLIFT. Scoring k
models in one run would make the shuffles once instead of k times; the engine's work (a forward pass of
the sequences and a differentiated pass of the references per model) is the same either way. This times,
for one BPNet-like model (``_models.build("bpnet")``) on random sequences, the shuffles and
``dnalift.attribute`` on them, best of a few repeats (process CPU time beside the wall clock, steadier on a
shared machine). Not part of the tests.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_folds.py [--sequences 16] [--length 2114] [--shuffles 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

import _common  # noqa: E402
import _models  # noqa: E402


def best(fn, repeats: int) -> tuple[float, float]:
    """Best wall-clock and best process-CPU seconds over ``repeats`` calls."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - start), min(cpu, time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--length", type=int, default=2114)
    parser.add_argument("--shuffles", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import dnalift

    model, length = _models.build("bpnet", length=args.length)
    X = _common.random_one_hot(args.sequences, length, seed=0)
    program = _models.export(model, X)
    R = _common.shuffled_references(X, args.shuffles, seed=1)
    dnalift.attribute(program, X[:2], R[:2], target=0)  # warm-up
    shuffle = best(lambda: dnalift.dinucleotide_shuffle(X, n=args.shuffles, seed=1), args.repeats)
    engine = best(lambda: dnalift.attribute(program, X, R, target=0), args.repeats)
    print(f"{args.sequences} sequences x {args.shuffles} shuffles, {length} bp, {args.threads} thread(s); "
          f"load {os.getloadavg()[0]:.2f}")
    for what, (wall, cpu) in (("shuffles", shuffle), ("attribute", engine)):
        print(f"  {what:<10} {wall:8.3f} s wall  {cpu:8.3f} s CPU")
    share = shuffle[1] / (shuffle[1] + engine[1])
    print(f"  shuffles are {100 * share:.2f}% of a fold's CPU time: k models in one run would save about "
          f"{100 * share:.2f}% of each fold after the first")


if __name__ == "__main__":
    main()
