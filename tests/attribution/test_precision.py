"""The faster arithmetics of --precision (issue 23): tf32 refused off CUDA, bfloat16 measured against float32
and float64 on the CPU, the TF32 flags of each precision, one-hot bytes."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import dnalift
from conftest import frozen, random_one_hot
from dnalift.attribution.precision import arithmetic, dtype_of, lower_dtype
from dnalift.errors import OptionError


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 16, 7, padding=3)
        self.conv2 = nn.Conv1d(16, 16, 3, padding=1)
        self.out = nn.Linear(16, 1)

    def forward(self, x):
        return self.out(torch.relu(self.conv2(torch.relu(self.conv(x)))).mean(dim=-1))


@pytest.fixture(scope="module")
def case():
    model = frozen(ConvNet, seed=4)
    X = random_one_hot(6, 50, seed=1)
    R = dnalift.dinucleotide_shuffle(X, n=4, seed=0)
    return model, X, R


def test_dtypes_of_the_precisions():
    assert dtype_of("float64") == torch.float64
    assert {dtype_of(p) for p in ("float32", "tf32", "bfloat16")} == {torch.float32}
    assert lower_dtype("bfloat16") == torch.bfloat16 and lower_dtype("tf32") is None
    with pytest.raises(OptionError, match="precision"):
        dtype_of("float16")


def test_tf32_is_refused_on_the_cpu_in_one_line(case):
    model, X, R = case
    with pytest.raises(OptionError, match=r"precision='tf32' needs a CUDA device .* not cpu"):
        dnalift.attribute(model, X, R, device="cpu", precision="tf32")


def test_each_precision_sets_the_tf32_flags_while_it_runs():
    flags = torch.backends.cuda.matmul, torch.backends.cudnn
    before = [f.allow_tf32 for f in flags]
    try:
        for f in flags:
            f.allow_tf32 = True  # PyTorch's default for cuDNN convolutions
        cuda = torch.device("cuda")  # only flags are set: no GPU needed
        for precision, inside in (("float32", False), ("float64", False), ("tf32", True), ("bfloat16", False)):
            with arithmetic(precision, cuda):
                assert [f.allow_tf32 for f in flags] == [inside, inside], precision
            assert [f.allow_tf32 for f in flags] == [True, True]  # restored
    finally:
        for f, value in zip(flags, before):
            f.allow_tf32 = value


def test_bfloat16_is_close_to_float32_and_measured(case):
    model, X, R = case
    exact = dnalift.attribute(model, X, R, device="cpu", precision="float64")
    single = dnalift.attribute(model, X, R, device="cpu", precision="float32")
    low = dnalift.attribute(model, X, R, device="cpu", precision="bfloat16")
    assert low.contributions.dtype == torch.float32  # multipliers and sums in float32
    scale = float(exact.contributions.abs().max())
    error = float((low.contributions.double() - exact.contributions).abs().max()) / scale
    error32 = float((single.contributions.double() - exact.contributions).abs().max()) / scale
    assert error32 < 1e-5
    assert 1e-4 < error < 5e-2  # rounded (the convolutions did run in bfloat16), not wrong
    change = (exact.predictions - exact.reference_predictions).abs().max()
    assert float(low.deltas.abs().max()) < 5e-2 * max(1.0, float(change))  # its default delta tolerance
    assert float(exact.deltas.abs().max()) < 1e-12


def test_one_hot_bytes_give_the_bits_of_floats(case):
    model, X, R = case
    floats = dnalift.attribute(model, X, R, device="cpu")
    as_bytes = dnalift.attribute(model, X.to(torch.int8), R.to(torch.int8), device="cpu")
    torch.testing.assert_close(as_bytes.contributions, floats.contributions, rtol=0, atol=0)
    torch.testing.assert_close(as_bytes.hypothetical, floats.hypothetical, rtol=0, atol=0)
