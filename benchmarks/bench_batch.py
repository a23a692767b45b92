"""Throughput against batch size: dnalift and the floor, pairs per second (not part of the tests).

For each model and batch size B (sequence-reference pairs per batch), the same P pairs (P = max(B,
``--pairs``): the floor and dnalift each run several batches where B is small) are scored by

- the **floor**: a plain forward and input-gradient backward of the model over the P reference rows, B at a
  time (float32, parameters frozen);
- **dnalift**: ``dnalift.attribute(model, X, R, target=0, rule=..., batch_size=B, device=...)``;

and once by dnalift with its automatic batch size (``auto``). The median of ``--repeats`` runs (after one
warm-up, floor and dnalift interleaved) gives pairs per second. The table also gives the floor's working set
per batch (what autograd saves, and the largest single saved tensor), to set against the CPU's caches
(``lscpu``, printed at the top). Sizes whose estimated memory exceeds ``--max-gib`` are skipped and said so;
on CUDA a size that runs out of memory is reported and the larger ones are skipped.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_batch.py --markdown
    PYTHONPATH=. .venv/bin/python benchmarks/bench_batch.py --model bpnet --length 2114 --device cuda
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
from _models import MODELS, build  # noqa: E402

SIZES = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
DEFAULT_PAIRS = {"paper": 8192, "paper-relu": 8192, "bpnet": 512}
"""Pairs scored at every batch size smaller than this (CPU); on CUDA four times as many."""
MEMORY_FACTOR = {"rescale": 2.0, "revealcancel": 4.0, "genomics": 4.0}
"""dnalift's memory per row as a multiple of the floor's saved bytes (measured on CPU: about 1.4 for Rescale
and 3.4 for RevealCancel on the BPNet-like model), with a margin."""


def memory_budget(device: torch.device, max_gib: float | None) -> int:
    """Bytes a batch may take: ``max_gib``, else 80% of the GPU's free memory, else min(8 GiB, half of the
    memory available)."""
    if max_gib is not None:
        return int(max_gib * 2**30)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0] * 0.8)
    available = 16 * 2**30
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    return min(8 * 2**30, available // 2)


def measure_size(name, module, loaded, X, R, *, batch, rule, device, repeats) -> dict:
    """Median seconds of the floor and of dnalift at one batch size (and peak GPU memory on CUDA)."""
    rows = R.reshape(-1, *R.shape[2:])
    runs = {"floor": lambda: common.floor_pass(module, rows, batch_size=batch, device=device),
            "dnalift": lambda: common.dnalift_attribute(loaded.model, X, R, rule=rule, device=device,
                                                        batch_size=batch)}
    walls = {label: [] for label in runs}
    cpus = {label: [] for label in runs}
    peaks = {label: 0 for label in runs}
    for repeat in range(repeats + 1):  # the first is the warm-up
        for label, fn in runs.items():
            measured = common.timed(fn, device)
            peaks[label] = max(peaks[label], measured.get("peak_bytes", 0))
            if repeat:
                walls[label].append(measured["wall"])
                cpus[label].append(measured["cpu"])
    out = {label: common.median(values) for label, values in walls.items()}
    out.update({f"{label}_cpu": common.median(values) for label, values in cpus.items()})
    if device.type == "cuda":
        out["floor_peak_gib"], out["dnalift_peak_gib"] = peaks["floor"] / 2**30, peaks["dnalift"] / 2**30
    return out


def bench_model(name: str, args, device: torch.device) -> dict:
    module, length = build(name, seed=args.seed, length=args.length if name == "bpnet" else None)
    module = module.to(device)
    saved, largest = common.saved_bytes_per_row(module, length, device=device)
    budget = memory_budget(device, args.max_gib)
    r = args.refs
    base_pairs = args.pairs or DEFAULT_PAIRS[name] * (4 if device.type == "cuda" else 1)
    biggest = max(max(args.sizes), base_pairs)
    X_all = common.random_one_hot(math.ceil(biggest / r), length, seed=args.seed)
    R_all = common.shuffled_references(X_all, r, seed=args.seed)
    loaded = common.DnaliftModel(module.cpu(), X_all)
    module = module.to(device)
    rows, stop = [], False
    print(f"\n== {name}, length {length}, {r} references per sequence, rule {args.rule}, device {device}, "
          f"load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    try:
        for batch in [None, *sorted(args.sizes)]:
            pairs = max(batch or 0, base_pairs)
            n = math.ceil(pairs / r)
            X, R = X_all[:n], R_all[:n]
            row = {"model": name, "length": length, "batch": batch, "pairs": n * r,
                   "working_set_mib": saved * (batch or 0) / 2**20, "largest_mib": largest * (batch or 0) / 2**20}
            estimate = saved * MEMORY_FACTOR.get(args.rule, 4.0) * (batch or 0)
            if stop or estimate > budget:
                row["skipped"] = ("a smaller size ran out of memory" if stop else
                                  f"estimated {estimate / 2**30:.1f} GiB > budget {budget / 2**30:.1f} GiB")
                rows.append(row)
                continue
            try:
                if batch is None:  # dnalift alone, with its automatic batch size
                    run = (lambda: common.dnalift_attribute(loaded.model, X, R, rule=args.rule, device=device))
                    common.timed(run, device)  # warm-up
                    measured = [common.timed(run, device) for _ in range(args.repeats)]
                    row["dnalift"] = common.median([m["wall"] for m in measured])
                    row["dnalift_cpu"] = common.median([m["cpu"] for m in measured])
                    row["auto_batch"] = common.dnalift_auto_batch(loaded.model, device=device)
                else:
                    row.update(measure_size(name, module, loaded, X, R, batch=batch, rule=args.rule, device=device,
                                            repeats=args.repeats))
            except torch.cuda.OutOfMemoryError as error:
                row["skipped"] = f"out of memory ({str(error).splitlines()[0][:80]})"
                stop = True
                torch.cuda.empty_cache()
            rows.append(row)
            done = ", ".join(f"{k} {row[k]:.3f}s" for k in ("floor", "dnalift") if k in row)
            print(f"  batch {batch or 'auto'}: {done or row.get('skipped')}", file=sys.stderr, flush=True)
    finally:
        loaded.close()
    return {"model": name, "length": length, "refs": r, "rule": args.rule, "saved_bytes_per_row": saved,
            "largest_saved_bytes_per_row": largest, "budget_bytes": budget, "rows": rows}


def table(results: list[dict], *, markdown: bool) -> str:
    header = ["model", "length", "batch", "pairs", "floor pairs/s", "dnalift pairs/s", "dnalift / floor",
              "floor pairs/CPU s", "dnalift pairs/CPU s", "working set MiB", "largest tensor MiB"]
    cuda = any("dnalift_peak_gib" in row for result in results for row in result["rows"])
    if cuda:
        header += ["floor peak GiB", "dnalift peak GiB"]
    best_floor = {}
    for result in results:
        floors = [row["pairs"] / row["floor"] for row in result["rows"] if "floor" in row]
        best_floor[result["model"], result["length"]] = max(floors, default=None)
    lines = []
    for result in results:
        for row in result["rows"]:
            batch = f"auto ({row['auto_batch']})" if row["batch"] is None and row.get("auto_batch") else (
                "auto" if row["batch"] is None else str(row["batch"]))
            if "skipped" in row:
                lines.append([result["model"], str(row["length"]), batch, str(row["pairs"]), "-", "-",
                              row["skipped"], "", "", "", ""] + (["", ""] if cuda else []))
                continue
            floor = f"{row['pairs'] / row['floor']:,.0f}" if "floor" in row else ""
            ours = f"{row['pairs'] / row['dnalift']:,.0f}"
            best = best_floor[result["model"], result["length"]]
            ratio = (f"{row['dnalift'] / row['floor']:.2f}" if "floor" in row else
                     f"{(row['dnalift'] / row['pairs']) * best:.2f} (best floor)" if best else "")
            sizes = ["", ""] if row["batch"] is None else [f"{row['working_set_mib']:.1f}",
                                                            f"{row['largest_mib']:.1f}"]
            floor_cpu = f"{row['pairs'] / row['floor_cpu']:,.0f}" if "floor_cpu" in row else ""
            ours_cpu = f"{row['pairs'] / row['dnalift_cpu']:,.0f}"
            line = [result["model"], str(row["length"]), batch, str(row["pairs"]), floor, ours, ratio, floor_cpu,
                    ours_cpu, *sizes]
            if cuda:
                line += [f"{row.get('floor_peak_gib', 0):.2f}" if "floor" in row else "",
                         f"{row.get('dnalift_peak_gib', 0):.2f}" if "dnalift_peak_gib" in row else ""]
            lines.append(line)
    return common.format_table(header, lines, markdown=markdown)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", choices=MODELS, default=["paper", "bpnet"])
    parser.add_argument("--length", type=int, help="input length of the BPNet-like model (default 1000)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                        help="batch sizes in pairs (default 64 ... 8192)")
    parser.add_argument("--rule", choices=sorted(MEMORY_FACTOR), default="rescale")
    parser.add_argument("--refs", type=int, default=20, help="references per sequence (default 20)")
    parser.add_argument("--pairs", type=int, help="pairs scored at each smaller batch size (default: 8192 "
                        "paper CNNs, 512 bpnet; four times as many on CUDA)")
    parser.add_argument("--max-gib", type=float, help="skip sizes whose estimated memory exceeds this (default: "
                        "80%% of free GPU memory; on CPU min(8, half the available memory))")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:i")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up (default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.refs < 1 or min(args.sizes) < 1:
        parser.error("--repeats, --refs and --sizes must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    run = common.run_models("bench_batch.py", args, argv, bench_model)
    if run is None:
        return 2
    _, info, results, command = run
    print(f"Command: `{command}`\nMachine: {common.describe_machine(info)}\n")
    print(table(results, markdown=args.markdown))
    print("\nworking set: what autograd saves for the floor's backward in one batch (dnalift keeps about as much "
          "again); largest tensor: the largest single saved activation of a batch. dnalift / floor: time ratio "
          "at the same batch size (auto: against the best floor). pairs/CPU s: pairs per second of the process's CPU "
          "time (steadier than wall time on a loaded machine).")
    if args.json:
        common.write_json(args.json, info, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
