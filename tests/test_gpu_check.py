"""The CPU-safe parts of benchmarks/gpu_check.py, so that the GPU check cannot rot between GPU runs.

On the CPU, the equality check compares dnalift's default batch size with batches of 3 pairs; on CUDA (the
``device`` fixture) it compares the GPU with the CPU, as the GPU check does. No timing is asserted.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import gpu_check  # noqa: E402


def test_relative_difference_by_hand():
    reference = torch.tensor([1.0, -2.0, 0.5])
    assert gpu_check.relative_difference(torch.tensor([1.0, -2.5, 0.5]), reference) == pytest.approx(0.25)
    assert gpu_check.relative_difference(reference.clone(), reference) == 0.0
    assert gpu_check.relative_difference(torch.zeros(3), torch.zeros(3)) == 0.0
    assert gpu_check.relative_difference(torch.tensor([0.0, 1e-30, 0.0]), torch.zeros(3)) == math.inf
    assert gpu_check.relative_difference(torch.zeros(2), torch.zeros(3)) == math.inf


def test_check_row_passes_only_within_the_limit():
    assert gpu_check.check_row("a", "x", 1e-10, 1e-9)["status"] == "PASS"
    assert gpu_check.check_row("a", "x", 1e-9, 1e-9)["status"] == "PASS"
    assert gpu_check.check_row("a", "x", 2e-9, 1e-9)["status"] == "FAIL"
    assert gpu_check.check_row("a", "x", float("nan"), 1e-9)["status"] == "FAIL"


def test_equality_check_passes_on_this_device(device):
    device = torch.device(device)
    check_batch = 3 if device.type == "cpu" else None
    rows = gpu_check.check_equality(device, tiny=True, check_batch=check_batch, dtypes=(torch.float64,))
    rows += gpu_check.check_equality(device, tiny=True, check_batch=check_batch, rules=("rescale",),
                                     dtypes=(torch.float32,))
    cases = len(gpu_check.equality_cases(tiny=True))
    assert len(rows) == cases * (len(gpu_check.RULES) + 1) * 2  # contributions and hypothetical per case
    failed = [(row["item"], row["figure"]) for row in rows if row["status"] != "PASS"]
    assert not failed
    limits = {row["limit"] for row in rows}
    assert limits == {"<= 1e-09", "<= 1e-04"}


def test_summary_counts_passes_and_failures():
    rows = [gpu_check.check_row("a", "ok", 0.0, 1e-9), gpu_check.check_row("a", "bad", 1.0, 1e-9),
            gpu_check.skipped_row("c", "late", "time budget spent")]
    text = gpu_check.summary(rows, "header")
    assert text.startswith("header")
    assert text.rstrip().endswith("1 passed, 1 failed")
    assert "time budget spent" in text


def test_chrombpnet_sized_model_has_chrombpnet_shape_and_counted_flops():
    import _chrombpnet
    from _models import ChromBPNetLike, build

    assert ChromBPNetLike.input_length(1000, 8) == 2114  # chrombpnet: 2,114 bp in, 1,000 out
    module, length = build("chrombpnet", filters=16, layers=3, out_length=40)
    assert length == 40 + 20 + 2 * (2 + 4 + 8) + 74
    with torch.no_grad():
        profile, counts = module(torch.zeros(2, 4, length))
    assert profile.shape == (2, 1, 40) and counts.shape == (2, 1)
    # by hand: stem 4->16 width 21; layers 16->16 width 3 over shrinking lengths; profile 16->1 width 75; counts
    lengths = [length - 20 - sum(2 * 2 ** i for i in range(1, k + 1)) for k in range(1, 4)]
    by_hand = 2 * (4 * 21 * 16 * (length - 20) + sum(16 * 3 * 16 * n for n in lengths) + 16 * 75 * 40 + 16)
    assert _chrombpnet.forward_flops(module, length) == by_hand
    assert _chrombpnet.pair_flops(10.0, n_targets=2, n_refs=20) == pytest.approx(30.5)


def test_card_peaks_by_name():
    import _chrombpnet

    assert _chrombpnet.card_peak("NVIDIA H100 80GB HBM3", "bfloat16") == 989.4e12
    assert _chrombpnet.card_peak("NVIDIA H100 PCIe", "tf32") == 378e12
    assert _chrombpnet.card_peak("NVIDIA H200", "float32") == 66.9e12
    assert _chrombpnet.card_peak("Tesla T4", "float32") is None


def test_chrombpnet_part_runs_tiny_on_the_cpu():
    import _chrombpnet

    rows = _chrombpnet.run(torch.device("cpu"), tiny=True, precisions=("float32", "bfloat16"), repeats=1,
                           deadline=math.inf)
    assert [row["status"] for row in rows] == ["", ""], rows
    assert all(row["figure"].endswith("pairs/s") and "300,000 peaks x 20 shuffles" in row["detail"] for row in rows)
