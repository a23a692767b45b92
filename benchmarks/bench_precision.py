"""Accuracy of the faster precisions (issue 23), on the CPU: ``--precision bfloat16`` as it runs, and ``tf32``
emulated, against float32 and float64.

For each model (the paper CNN, the BPNet-like model, a small ChromBPNet-like model scored on counts and profile in
one pass) the same sequences and dinucleotide shuffles are scored in float64, float32, bfloat16 (dnalift's
autocast, on the CPU) and emulated TF32, and the table gives

- **max rel delta**: the largest |summation-to-delta error| / max(1, |f(x) - mean f(ref)|) over the sequences,
  the quantity dnalift's ConservationWarning checks (tolerances: 1e-3 float32, 1e-2 tf32, 5e-2 bfloat16);
- **max |delta|**: the largest |summation-to-delta error| itself;
- **vs float32**, **vs float64**: the largest absolute difference of the contributions from those of float32 and
  of float64, divided by the largest absolute float64 contribution;
- **seconds**: the wall time of the call (bfloat16 is slower on CPUs without bfloat16 units; the GPU's figures
  are in gpu_check.sh's part d).

TF32 cannot run on a CPU; it is emulated here by a ``TorchDispatchMode`` that rounds the float32 operands of every
convolution and matrix product (forward and backward) to TF32's 10-bit mantissa (round to nearest even) and
computes in float32, as tensor cores do (their float32 sums may add in another order). Not part of the tests.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_precision.py [--sequences 16] [--refs 10]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import _common as common  # noqa: E402
from _models import build  # noqa: E402

#: the ops whose float32 operands tensor cores round to TF32
_LINEAR_OPS = {"convolution", "convolution_backward", "mm", "addmm", "bmm", "baddbmm", "matmul", "linear"}


def tf32_round(x: torch.Tensor) -> torch.Tensor:
    """float32 values rounded to TF32 (10-bit mantissa; round to nearest, ties to even), still float32."""
    bits = x.contiguous().view(torch.int32)
    bits = (bits + 0xFFF + ((bits >> 13) & 1)) & -0x2000
    return bits.view(torch.float32)


class EmulatedTF32(TorchDispatchMode):
    """Round the float32 tensor operands of convolutions and matrix products to TF32 before they run."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket.__name__ in _LINEAR_OPS:
            def rounded(a):
                return tf32_round(a) if isinstance(a, torch.Tensor) and a.dtype == torch.float32 else a
            args = tuple(rounded(a) for a in args)
            args = tuple([rounded(b) for b in a] if isinstance(a, (list, tuple)) else a for a in args)
            kwargs = {k: rounded(v) for k, v in kwargs.items()}
        return func(*args, **kwargs)


def score(model, X, R, target, precision: str):
    import dnalift

    emulate = precision == "tf32 (emulated)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with EmulatedTF32() if emulate else contextlib.nullcontext():
            start = time.perf_counter()
            result = dnalift.attribute(model, X, R, target=target, device="cpu",
                                       precision="float32" if emulate else precision)
    return result, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--refs", type=int, default=10)
    args = parser.parse_args(argv)
    cases = [("paper", {}, 0), ("bpnet", {"length": 1000}, 0),
             ("chrombpnet", {"filters": 64, "layers": 4, "out_length": 500}, ["counts", "profile"])]
    print(f"benchmarks/bench_precision.py {' '.join(sys.argv[1:] if argv is None else argv)}; "
          f"{args.sequences} sequences x {args.refs} shuffles; {common.cpu_model()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load {os.getloadavg()[0]:.2f}")
    header = ["model", "precision", "max rel delta", "max |delta|", "vs float32", "vs float64", "seconds"]
    rows = []
    for name, shape, target in cases:
        module, length = build(name, **shape)
        X = common.random_one_hot(args.sequences, length, seed=5)
        R = common.shuffled_references(X, args.refs, seed=5)
        loaded = common.DnaliftModel(module, X)
        try:
            results = {p: score(loaded.model, X, R, target, p)
                       for p in ("float64", "float32", "bfloat16", "tf32 (emulated)")}
        finally:
            loaded.close()
        exact, single = results["float64"][0], results["float32"][0]
        scale = float(exact.contributions.abs().max())
        for precision, (res, seconds) in results.items():
            change = (res.predictions - res.reference_predictions).double().abs().clamp(min=1.0)
            relative = float((res.deltas.double().abs() / change).max())
            vs32 = float((res.contributions.double() - single.contributions.double()).abs().max()) / scale
            vs64 = float((res.contributions.double() - exact.contributions).abs().max()) / scale
            label = f"{name} L={length}" + (" counts+profile" if isinstance(target, list) else "")
            rows.append([label, precision, f"{relative:.1e}", f"{float(res.deltas.abs().max()):.1e}",
                         f"{vs32:.1e}", f"{vs64:.1e}", f"{seconds:.2f}"])
        print(f"{name} done; load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    print(common.format_table(header, rows, markdown=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
