"""How many sequence-reference pairs go into one batch, and on which device."""

from __future__ import annotations

import math

import torch

from dnalift.attribution.plan import Plan, value_meta
from dnalift.errors import ModelInputError

__all__ = ["torch_device", "device_label", "auto_batch_size", "batches", "CPU_BUDGET", "CPU_MIN_ROWS",
           "CPU_MAX_ROWS", "CPU_MEMORY", "CUDA_MAX_ROWS"]


def torch_device(device) -> torch.device:
    """``"auto"`` -> CUDA when PyTorch sees one, else the CPU; a CUDA device that is not there is refused."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelInputError("device cuda was asked for but PyTorch sees no CUDA device here; use device cpu",
                              argument="device", value=str(device))
    return device


def device_label(device: torch.device) -> str:
    """What a run's log says of its device: its name and memory (``cuda:0 (NVIDIA H100 80GB HBM3, 79.1 GiB, 78.5
    GiB free)``, ``cpu (AMD EPYC 7B13, 2 threads, 23.4 GiB)``)."""
    gib = 2 ** 30
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        return (f"cuda:{index} ({torch.cuda.get_device_name(index)}, {total / gib:.1f} GiB, {free / gib:.1f} GiB "
                f"free)")
    memory = ""
    try:
        import os

        memory = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / gib:.1f} GiB"
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows)
        pass
    return f"{device.type} ({_cpu_name()}, {torch.get_num_threads()} threads{memory})"


def _cpu_name() -> str:
    import platform

    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


#: CPU: a batch whose activations fit about the size of a last-level cache runs fastest (past it, elementwise
#: passes wait on memory; below a few dozen rows, per-op overhead shows): benchmarks/README.md, bench_batch.py
CPU_BUDGET = 32 << 20
CPU_MIN_ROWS = 32
CPU_MAX_ROWS = 1024
#: CPU: never more than this memory for one batch (a large model gets fewer than CPU_MIN_ROWS rows)
CPU_MEMORY = 1 << 30
#: CUDA: a quarter of the free memory, to fill the device
CUDA_MAX_ROWS = 16384


def auto_batch_size(plan: Plan, *, device: torch.device, dtype: torch.dtype) -> int:
    """Rows (sequence-reference pairs) per batch, chosen for speed.

    A row costs about three times the sum of the sizes of every activation in the graph (values, multipliers,
    gradients). On the CPU the batch fits :data:`CPU_BUDGET`, about a last-level cache (32 to 1,024 rows, and
    never over :data:`CPU_MEMORY`); on a GPU a quarter of its free memory (at most :data:`CUDA_MAX_ROWS`).
    """
    per_row = 0
    for step in plan.steps:
        shape = getattr(value_meta(step.node), "shape", None)
        if shape is None or not len(shape):
            continue
        sizes = [int(s) if not isinstance(s, torch.SymInt) or str(s).isdigit() else 1 for s in shape]
        per_row += math.prod(sizes)
    per_row = max(per_row, 1) * torch.tensor([], dtype=dtype).element_size() * 3
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(max(1, min(CUDA_MAX_ROWS, (free // 4) // per_row)))
    rows = min(CPU_MAX_ROWS, max(CPU_MIN_ROWS, CPU_BUDGET // per_row))
    return int(max(1, min(rows, CPU_MEMORY // per_row)))


def batches(n: int, r: int, rows: int):
    """Yield (sequence slice, reference slice) so that each batch has at most ``rows`` pairs."""
    if r <= rows:
        per = max(1, rows // r)
        for start in range(0, n, per):
            yield slice(start, min(n, start + per)), slice(0, r)
    else:
        for i in range(n):
            for start in range(0, r, rows):
                yield slice(i, i + 1), slice(start, min(r, start + rows))


