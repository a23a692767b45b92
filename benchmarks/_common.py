"""Helpers the benchmark scripts share: data, the floor, clocks, dnalift's public entry points, the machine.

Only dnalift's public API is used (``dnalift.attribute``, ``dnalift.dinucleotide_shuffle``,
``dnalift.load_model``, and ``dnalift.attribution.engine``'s ``plan_for`` and ``auto_batch_size`` to report the
automatic batch size),
so the scripts keep working while the engine changes.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------ data
def random_one_hot(n: int, length: int, *, seed: int) -> torch.Tensor:
    """Uniformly random one-hot sequences.

    Returns
    -------
    Tensor (n, 4, length), float32
    """
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, size=(n, length))
    X = np.zeros((n, 4, length), dtype=np.float32)
    np.put_along_axis(X, codes[:, None, :], 1.0, axis=1)
    return torch.from_numpy(X)


def shuffled_references(X: torch.Tensor, r: int, *, seed: int) -> torch.Tensor:
    """dnalift's dinucleotide shuffles of each sequence.

    Parameters
    ----------
    X : Tensor (n, 4, length)
    r : int
        Shuffles per sequence.

    Returns
    -------
    Tensor (n, r, 4, length), float32
    """
    import dnalift

    return torch.as_tensor(dnalift.dinucleotide_shuffle(X, n=r, seed=seed)).to(torch.float32)


# ----------------------------------------------------------------------------------------------- clocks
def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> dict:
    """Run ``fn()`` once and measure it.

    Returns
    -------
    dict
        ``wall`` and ``cpu`` seconds (the device synchronised before both clock reads), ``value`` (what ``fn``
        returned), ``warnings`` (sorted distinct messages raised during the call) and, on CUDA,
        ``peak_bytes`` (``torch.cuda.max_memory_allocated`` during the call).
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sync(device)
        wall, cpu = time.perf_counter(), time.process_time()
        value = fn()
        sync(device)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result = {"wall": wall, "cpu": cpu, "value": value,
              "warnings": sorted({" ".join(str(w.message).split())[:300] for w in caught})}
    if device.type == "cuda":
        result["peak_bytes"] = int(torch.cuda.max_memory_allocated(device))
    return result


def median(values) -> float:
    return float(statistics.median(values))


# ------------------------------------------------------------------------------------------------ floor
def floor_pass(model: torch.nn.Module, rows: torch.Tensor, *, batch_size: int, device: torch.device) -> None:
    """The floor: one plain forward and input-gradient backward over ``rows``, ``batch_size`` rows at a time.

    The model is used as it is (float32, parameters frozen by the caller, ``torch.no_grad`` not used); each
    batch is copied to ``device`` first, as every tool must do with data that starts on the host.

    Parameters
    ----------
    model : nn.Module
        Returns (batch, outputs); output 0 is differentiated.
    rows : Tensor (pairs, 4, length)
        The reference rows (sequence-reference pairs), on the host.
    """
    for start in range(0, rows.shape[0], batch_size):
        batch = rows[start:start + batch_size].to(device).requires_grad_(True)
        out = model(batch)[:, 0]
        torch.autograd.grad(out.sum(), batch)


def saved_bytes_per_row(model: torch.nn.Module, length: int, *, device: torch.device) -> tuple[int, int]:
    """What autograd saves per input row for the floor's backward, measured on a batch of 7 rows.

    Only saved tensors with the batch as their first dimension count (not the weights a layer saves).

    Returns
    -------
    total : int
        Bytes of every saved per-row tensor, per row.
    largest : int
        Bytes of the largest single saved per-row tensor, per row.
    """
    rows = 7
    sizes = []

    def pack(tensor):
        if tensor.dim() and tensor.shape[0] == rows:
            sizes.append(tensor.numel() * tensor.element_size() // rows)
        return tensor

    batch = torch.zeros(rows, 4, length, device=device, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(batch)
    del out
    return max(1, sum(sizes)), max(1, max(sizes, default=1))


# ---------------------------------------------------------------------------------------------- dnalift
class DnaliftModel:
    """A benchmark model as a dnalift user has it: saved with ``torch.export.save``, read by
    ``dnalift.load_model``. The file lives in a temporary directory removed by :meth:`close`."""

    def __init__(self, module: torch.nn.Module, example: torch.Tensor):
        import dnalift

        self._dir = tempfile.mkdtemp(prefix="dnalift-bench-")
        path = Path(self._dir) / "model.pt2"
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(module.eval(), (example[:2].cpu(),), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(path))
        self.model = dnalift.load_model(str(path))

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def dnalift_attribute(model, X, R, *, rule: str, device: torch.device, dtype=torch.float32,
                      batch_size: int | None = None, target=0, precision: str | None = None):
    """``dnalift.attribute`` on ``target`` (0) with every other option at its default unless given here
    (``precision``, when given, sets the dtype)."""
    import dnalift

    options = {"target": target, "rule": rule, "device": device, "dtype": dtype}
    if batch_size is not None:
        options["batch_size"] = batch_size
    if precision is not None:
        options["precision"] = precision
    return dnalift.attribute(model, X, R, **options)


def dnalift_auto_batch(model, *, device: torch.device, dtype=torch.float32) -> int:
    """dnalift's automatic batch size (sequence-reference pairs) for this model (a loaded model or a program)."""
    from dnalift.attribution import engine

    program = getattr(model, "program", model)
    return int(engine.auto_batch_size(engine.plan_for(program), device=device, dtype=dtype))


# ---------------------------------------------------------------------------------------------- machine
def cpu_caches() -> dict:
    """Cache sizes as ``lscpu`` reports them (``{"L1d": "64 KiB (2 instances)", ...}``); {} where unknown."""
    caches = {}
    if shutil.which("lscpu"):
        try:
            text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                                  env={**os.environ, "LC_ALL": "C"}).stdout
        except (OSError, subprocess.SubprocessError):
            text = ""
        for line in text.splitlines():
            match = re.match(r"\s*(L\d\w?) cache:\s*(.+)", line)
            if match:
                caches[match.group(1)] = match.group(2).strip()
    return caches


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict:
    """What the figures depend on: date, CPU, caches, threads, load average, versions, the GPU."""
    info = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "platform": platform.platform(),
            "cpu": cpu_model(), "cpu_count": os.cpu_count(), "caches": cpu_caches(),
            "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "load_before": os.getloadavg()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs"
        info["cuda"] = torch.version.cuda
    return info


def run_models(script: str, args, argv, bench_model):
    """The part every benchmark's ``main`` shares: threads, device, machine, ``bench_model`` per model.

    Returns ``(device, info, results, command)`` (``command``: how to rerun it, for the report), or None after
    one line on stderr when ``--device cuda`` is asked for and PyTorch sees no CUDA device.
    """
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: PyTorch sees no CUDA device here; use --device cpu", file=sys.stderr)
        return None
    info = machine(device)
    results = [bench_model(name, args, device) for name in args.model]
    info["load_after"] = os.getloadavg()
    command = " ".join([f"PYTHONPATH=. .venv/bin/python benchmarks/{script}",
                        *(sys.argv[1:] if argv is None else argv)])
    return device, info, results, command


def write_json(path: Path, info: dict, results: list) -> None:
    """Every figure of a run, with the machine and the command line."""
    path.write_text(json.dumps({"machine": info, "argv": sys.argv, "results": results}, indent=1))


def describe_machine(info: dict) -> str:
    """One paragraph for the top of a report."""
    caches = ", ".join(f"{k} {v}" for k, v in info.get("caches", {}).items()) or "caches unknown"
    load = info.get("load_before")
    after = info.get("load_after")
    loads = f"load average (1, 5, 15 min) before {tuple(round(x, 2) for x in load)}" if load else ""
    if after:
        loads += f", after {tuple(round(x, 2) for x in after)}"
    gpu = f"; GPU {info['gpu']} (CUDA {info.get('cuda')})" if "gpu" in info else ""
    return (f"{info['date']}; {info['cpu']}, {info['cpu_count']} CPUs ({caches}); torch {info['torch']}, "
            f"{info['torch_threads']} threads; {loads}{gpu}")


# ----------------------------------------------------------------------------------------------- tables
def format_table(header: list[str], rows: list[list[str]], *, markdown: bool, left=(0,)) -> str:
    """A plain-text table with aligned columns (those numbered in ``left`` left-aligned, the others right), or
    a GitHub markdown table."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(w) if i in left else str(cell).rjust(w)
                       for i, (cell, w) in enumerate(zip(line, widths))).rstrip() for line in [header, *rows]]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)
