"""What a recurrent layer costs: a DanQ-style model against a convolutional model of the same size (not part of the
tests).

Both models read ``(n, 4, L)``: ``Conv1d(4, C, 20)`` -> ReLU -> ``MaxPool1d(10)`` -> a middle layer ->
flatten -> ``Linear(·, 1)``. The middle layer is

- **recurrent**: a bidirectional LSTM with H units per direction (DanQ's shape: 2·4·(C·H + H·H + 2·H)
  parameters), which dnalift writes out as one cell per position and direction (:mod:`dnalift.models.recurrent`);
- **conv**: ``Conv1d(C, 2H, k, padding="same")`` -> ReLU, with ``k`` chosen so that it has about as many
  parameters as the LSTM, and the same output shape ``(n, 2H, positions)``.

For each model it reports: the number of parameters and of graph ops dnalift runs; the time to load the saved
``.pt2`` (export, and for the LSTM writing it out as cells); the first ``dnalift.attribute`` call (compiling the
plan) and the median over ``--repeats`` further calls of the time per sequence-reference pair, at dnalift's
automatic batch size; and the plain forward time per row of the model itself. A recurrence runs position after
position: per pair it costs what its ``positions × directions`` cells cost, each a few small ops, where a
convolution is one op over all positions.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_recurrent.py
    PYTHONPATH=. .venv/bin/python benchmarks/bench_recurrent.py --length 1000 --n 32 --refs 10 --markdown
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402


class Front(nn.Module):
    """Conv1d(4, C, 20) -> ReLU -> MaxPool1d(10)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv1d(4, channels, 20)
        self.pool = nn.MaxPool1d(10)

    def forward(self, x):
        return self.pool(torch.relu(self.conv(x)))


class Recurrent(nn.Module):
    def __init__(self, length: int, channels: int, hidden: int):
        super().__init__()
        self.front = Front(channels)
        self.lstm = nn.LSTM(channels, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden * positions(length), 1)

    def forward(self, x):
        h, _ = self.lstm(self.front(x).transpose(1, 2))
        return self.out(h.flatten(1))


class Convolutional(nn.Module):
    def __init__(self, length: int, channels: int, hidden: int):
        super().__init__()
        self.front = Front(channels)
        width = max(1, round(lstm_parameters(channels, hidden) / (channels * 2 * hidden)))
        self.conv = nn.Conv1d(channels, 2 * hidden, width, padding="same")
        self.out = nn.Linear(2 * hidden * positions(length), 1)

    def forward(self, x):
        return self.out(torch.relu(self.conv(self.front(x))).flatten(1))


def positions(length: int) -> int:
    return (length - 19) // 10


def lstm_parameters(channels: int, hidden: int) -> int:
    return 2 * 4 * (channels * hidden + hidden * hidden + 2 * hidden)


def bench_model(name: str, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    cls = Recurrent if name == "recurrent" else Convolutional
    module = cls(args.length, args.channels, args.hidden).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    X = common.random_one_hot(args.n, args.length, seed=1)
    R = common.shuffled_references(X, args.refs, seed=2)
    start = time.perf_counter()
    loaded = common.DnaliftModel(module, X)
    load_s = time.perf_counter() - start
    model = loaded.model
    ops = sum(1 for n in model.program.graph.nodes if n.op == "call_function")
    pairs = args.n * args.refs
    first = common.timed(lambda: common.dnalift_attribute(model, X, R, rule=args.rule, device=device), device)
    walls = [common.timed(lambda: common.dnalift_attribute(model, X, R, rule=args.rule, device=device),
                          device)["wall"] for _ in range(args.repeats)]
    rows = torch.cat([X, R.flatten(0, 1)]).to(device)
    with torch.no_grad():
        forward = [common.timed(lambda: module.to(device)(rows), device)["wall"] for _ in range(args.repeats)]
    result = first["value"]
    delta = float((result.contributions.flatten(1).sum(1) - (result.predictions - result.reference_predictions))
                  .abs().max())
    loaded.close()
    return {"model": name, "parameters": sum(p.numel() for p in module.parameters()), "ops": ops,
            "load_s": load_s, "first_call_s": first["wall"], "per_pair_ms": 1e3 * common.median(walls) / pairs,
            "forward_per_row_ms": 1e3 * common.median(forward) / len(rows),
            "batch": common.dnalift_auto_batch(model, device=device), "max_delta": delta}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", nargs="+", default=["recurrent", "conv"], choices=["recurrent", "conv"])
    parser.add_argument("--length", type=int, default=500)
    parser.add_argument("--channels", type=int, default=64, help="filters of the first convolution (C)")
    parser.add_argument("--hidden", type=int, default=64, help="LSTM units per direction (H)")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--refs", type=int, default=10)
    parser.add_argument("--rule", default="rescale")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    shared = common.run_models("bench_recurrent.py", args, argv, bench_model)
    if shared is None:
        sys.exit(1)
    _, info, results, command = shared
    header = ["model", "parameters", "graph ops", "load (s)", "first call (s)", "ms per pair", "batch",
              "forward ms per row", "max Δ"]
    rows = [[r["model"], f"{r['parameters']:,}", str(r["ops"]), f"{r['load_s']:.1f}", f"{r['first_call_s']:.1f}",
             f"{r['per_pair_ms']:.3f}", str(r["batch"]), f"{r['forward_per_row_ms']:.3f}", f"{r['max_delta']:.1e}"]
            for r in results]
    print(command)
    print(common.describe_machine(info))
    print(f"length {args.length}, {positions(args.length)} positions after pooling, n = {args.n}, {args.refs} "
          f"references each, rule {args.rule}\n")
    print(common.format_table(header, rows, markdown=args.markdown))
    if args.json:
        common.write_json(args.json, info, results)


if __name__ == "__main__":
    main()
