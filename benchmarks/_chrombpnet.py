"""Part (d) of the GPU check: a ChromBPNet-sized model, counts and profile in one pass, at the automatic batch size.

The model has chrombpnet's default shape (``ChromBPNetLike`` in ``_models.py``): 512 filters, a first convolution of
width 21, 8 dilated residual layers (dilations 2 ... 256), 2,114 bp in and 1,000 positions out (a profile head of
width 75 and a counts head), randomly initialised. For each precision the card runs (float32, tf32, bfloat16:
``dnalift score --precision``), it reports pairs per second, peak GPU memory, the FLOP/s achieved (the model's
convolution and linear FLOPs, counted on one forward pass, times the passes dnalift makes per pair) against the
card's peak for that arithmetic, and the projected time of 300,000 peaks x 20 shuffles on this one card.
"""

from __future__ import annotations

import math
import time

import torch

import _common as common
from _models import build

#: the genome-wide job issue 23 sizes: peaks x shuffles
JOB_PEAKS, JOB_SHUFFLES = 300_000, 20

#: dense peak FLOP/s by card and arithmetic (vendors' data sheets; no sparsity), matched on the device name
PEAKS = {
    "H100 PCIe": {"float32": 51.2e12, "tf32": 378e12, "bfloat16": 756e12},
    "H100": {"float32": 66.9e12, "tf32": 494.7e12, "bfloat16": 989.4e12},
    "H200": {"float32": 66.9e12, "tf32": 494.7e12, "bfloat16": 989.4e12},
    "A100": {"float32": 19.5e12, "tf32": 156e12, "bfloat16": 312e12},
}


def card_peak(name: str, precision: str) -> float | None:
    """The card's dense peak FLOP/s for ``precision`` (None for a card not in :data:`PEAKS`)."""
    for key, peaks in PEAKS.items():  # the more specific names first
        if key in name:
            return peaks.get(precision)
    return None


def forward_flops(module: torch.nn.Module, length: int) -> float:
    """FLOPs of one forward pass of one sequence: 2 x the multiply-adds of every Conv1d and Linear."""
    total = [0]

    def count(layer, inputs, output):
        if isinstance(layer, torch.nn.Conv1d):
            per_out = layer.in_channels // layer.groups * layer.kernel_size[0]
        else:
            per_out = layer.in_features
        total[0] += 2 * per_out * output[0].numel()

    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, (torch.nn.Conv1d,
                                                                                        torch.nn.Linear))]
    try:
        with torch.no_grad():
            module(torch.zeros(1, 4, length))
    finally:
        for hook in hooks:
            hook.remove()
    return float(total[0])


def pair_flops(forward: float, *, n_targets: int, n_refs: int) -> float:
    """FLOPs dnalift spends per sequence-reference pair: the reference's forward, one input-gradient backward per
    target (about a forward each: no weight gradients), and 1/r of the sequence's own forward."""
    return forward * (1 + n_targets + 1 / n_refs)


def sizes(*, tiny: bool) -> dict:
    """The model's shape and the pairs timed (tiny: a small model that runs in seconds on a CPU)."""
    if tiny:
        return {"filters": 8, "layers": 2, "out_length": 100, "sequences": 4, "refs": 3}
    return {"filters": 512, "layers": 8, "out_length": 1000, "sequences": 128, "refs": JOB_SHUFFLES}


def run(device: torch.device, *, tiny: bool, precisions, repeats: int, deadline: float,
        profile: bool = False) -> list[dict]:
    """Part (d): one row per precision (and, with ``profile``, the profiler's table of one float32 call)."""
    shape = sizes(tiny=tiny)
    module, length = build("chrombpnet", filters=shape["filters"], layers=shape["layers"],
                           out_length=shape["out_length"])
    flops = pair_flops(forward_flops(module, length), n_targets=2, n_refs=shape["refs"])
    X = common.random_one_hot(shape["sequences"], length, seed=3)
    R = common.shuffled_references(X, shape["refs"], seed=3)
    pairs = X.shape[0] * shape["refs"]
    loaded = common.DnaliftModel(module, X)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else common.cpu_model()
    rows = []
    try:
        for precision in precisions:
            item = (f"chrombpnet-sized {shape['filters']} filters x {shape['layers']} layers, L={length}, "
                    f"counts+profile, {precision}")
            if time.monotonic() > deadline:
                rows.append({"part": "d chrombpnet", "item": item, "figure": "", "limit": "", "status": "SKIP",
                             "detail": "time budget spent"})
                continue
            rows.append(_row(loaded.model, X, R, item=item, device=device, precision=precision, flops=flops,
                             pairs=pairs, name=name, repeats=repeats))
        if profile:
            kernels_table(loaded.model, X, R, device=device)
    finally:
        loaded.close()
    return rows


def kernels_table(model, X, R, *, device, rows: int = 25) -> str:
    """The torch profiler's table of the kernels (ATen ops on the CPU) of one float32 call, by device time; printed
    to stderr and written to ``$OUT/gpu_profile.txt`` when ``OUT`` is set."""
    import os
    import sys
    from pathlib import Path

    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        common.dnalift_attribute(model, X, R, rule="rescale", device=device, target=["counts", "profile"],
                                 precision="float32")
        common.sync(device)
    key = "cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=rows)
    print(table, file=sys.stderr)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"]).mkdir(parents=True, exist_ok=True)
        (Path(os.environ["OUT"]) / "gpu_profile.txt").write_text(table + "\n")
    return table


def _row(model, X, R, *, item, device, precision, flops, pairs, name, repeats) -> dict:
    def once():
        return common.dnalift_attribute(model, X, R, rule="rescale", device=device, target=["counts", "profile"],
                                        precision=precision)

    walls, peak = [], 0
    try:
        for i in range(repeats + 1):
            measured = common.timed(once, device)
            peak = max(peak, measured.get("peak_bytes", 0))
            if i:
                walls.append(measured["wall"])
    except Exception as error:  # noqa: BLE001 - a precision the device refuses, or out of memory
        text = " ".join(str(error).split())[:160]
        return {"part": "d chrombpnet", "item": item, "figure": "", "limit": "", "status": "FAIL",
                "detail": f"{type(error).__name__}: {text}"}
    rate = pairs / common.median(walls)
    achieved = rate * flops
    peak_flops = card_peak(name, precision) if device.type == "cuda" else None
    versus = f"{achieved / peak_flops:.0%} of the card's {peak_flops / 1e12:,.0f} TFLOP/s" if peak_flops else \
        "card peak unknown"
    job = JOB_PEAKS * JOB_SHUFFLES / rate
    detail = (f"{pairs} pairs, automatic batch; {flops / 1e9:,.3g} GFLOP/pair -> {achieved / 1e12:,.3g} TFLOP/s "
              f"({versus}); 300,000 peaks x 20 shuffles: {_duration(job)} on this card")
    if device.type == "cuda":
        detail += f"; peak {peak / 2**30:.2f} GiB"
    return {"part": "d chrombpnet", "item": item, "figure": f"{rate:,.0f} pairs/s", "limit": "", "status": "",
            "detail": detail}


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
