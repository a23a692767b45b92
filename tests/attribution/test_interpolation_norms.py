"""Linear interpolation, upsampling and vector norms (issue 19, item 3): interpolation is linear with weights in
[0, 1], so its gradient is its exact rule; a p-norm is the chain |x|^p (x² for p = 2), sum, root with the root's
exact secant; ``expand_as(a, b)`` reads only ``b``'s shape. Checked by hand, by summation-to-delta in float64 in every mode, and against the same networks
written out with other ops (the interpolation as a constant matrix, the norm as squares, a sum and a square root)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import dnalift
from conftest import random_one_hot
from dnalift.attribution.engine import attribute, describe
from dnalift.errors import UnsupportedOpError

F64 = torch.float64
MODES = ("rescale", "revealcancel", "genomics")


def export(model, example):
    batch = example[:1].repeat(2, *([1] * (example.dim() - 1)))
    return torch.export.export(model.eval(), (batch,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))


def scores(program, X, R, *, target=0, mode="rescale"):
    with warnings.catch_warnings():
        warnings.simplefilter("error", dnalift.ConservationWarning)
        return attribute(program, X, R, target=target, rule=mode, dtype=F64)


def assert_sums_to_delta(result, tolerance=1e-9):
    change = result.predictions - result.reference_predictions
    total = result.contributions.flatten(1).sum(1)
    assert torch.all((total - change).abs() <= tolerance * change.abs().clamp(min=1)), (total, change)


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


# ------------------------------------------------------------------------------------------------- by hand
@pytest.mark.parametrize("mode", MODES)
def test_linear_interpolation_by_hand(mode):
    """x = (1, 3) against 0, upsampled ×2 (align_corners False): (1, 1.5, 2.5, 3); output 1 is ¾ x₀ + ¼ x₁
    (contributions ¾, ¾), output 2 is ¼ x₀ + ¾ x₁ (¼, 9/4). Bilinear on a 1 × 2 image gives the same per row."""
    x, ref = torch.tensor([[[1.0, 3.0]]], dtype=F64), torch.zeros(1, 1, 2, dtype=F64)
    linear = export(Lambda(lambda t: F.interpolate(t, scale_factor=2, mode="linear").flatten(1)), x)
    bilinear = export(Lambda(lambda t: F.interpolate(t.unsqueeze(2), scale_factor=2, mode="bilinear")
                             .flatten(1)), x)
    expected = torch.tensor([[[[0.75, 0.75]], [[0.25, 2.25]]]], dtype=F64)
    result = scores(linear, x, ref, target=[1, 2], mode=mode)
    torch.testing.assert_close(result.contributions, expected, rtol=0, atol=1e-15)
    result = scores(bilinear, x, ref, target=[1, 2, 5, 6], mode=mode)  # rows 0 and 1 of the 2 × 4 output
    torch.testing.assert_close(result.contributions, expected.repeat(1, 2, 1, 1), rtol=0, atol=1e-15)
    trilinear = export(Lambda(lambda t: F.interpolate(t[:, :, None, None], scale_factor=2, mode="trilinear")
                              .flatten(1)), x)
    result = scores(trilinear, x, ref, target=[1, 2], mode=mode)
    torch.testing.assert_close(result.contributions, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("mode", MODES)
def test_nearest_upsampling_by_hand(mode):
    """Nearest ×2 on a 2 × 2 image: output (1, 3) reads x[0, 1]; 'nearest-exact' the same here."""
    x, ref = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=F64), torch.zeros(1, 1, 2, 2, dtype=F64)
    for how in ("nearest", "nearest-exact"):
        program = export(Lambda(lambda t: F.interpolate(t, scale_factor=2, mode=how).flatten(1)), x)
        result = scores(program, x, ref, target=3, mode=mode)
        torch.testing.assert_close(result.contributions, torch.tensor([[[[0.0, 2.0], [0.0, 0.0]]]], dtype=F64))


@pytest.mark.parametrize("mode", MODES)
def test_euclidean_norm_by_hand(mode):
    """y = ||x[:, :, l]|| over the 4 channels: x₀ = (3, 4, 0, 0) against r = (0, 0, 1, 0) at position 0.
    Square (Rescale: x + r), sum, root (secant 1 / (||x|| + ||r||) = 1/6): x_c gets (x_c + r_c)(x_c − r_c) / 6 =
    (9, 16, −1, 0) / 6, summing to 5 − 1. Position 1 is 0 in both: multiplier 0, no NaN."""
    x = torch.tensor([[[3.0, 0.0], [4.0, 0.0], [0.0, 0.0], [0.0, 0.0]]], dtype=F64)
    ref = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]], dtype=F64)
    for fn in (lambda t: torch.linalg.vector_norm(t, dim=1), lambda t: torch.norm(t, dim=1),
               lambda t: t.norm(p=2, dim=1), lambda t: torch.linalg.norm(t, dim=1)):
        result = scores(export(Lambda(fn), x), x, ref, target=[0, 1], mode=mode)
        expected = torch.tensor([[9.0, 0.0], [16.0, 0.0], [-1.0, 0.0], [0.0, 0.0]], dtype=F64) / 6
        torch.testing.assert_close(result.contributions[0, 0], expected, rtol=0, atol=1e-15)
        assert torch.all(result.contributions[0, 1] == 0) and torch.isfinite(result.hypothetical).all()


def test_expand_as_reads_only_the_shape_of_an_activation():
    """``c.expand_as(h)`` of a constant is no input-dependent value (it was refused as one); ``h.expand_as(g)``
    moves h's differences only: y = (x + c.expand_as(x)) · 2 + x₀.expand_as(x) has contributions 2Δx + Δx₀."""

    class Shaped(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Parameter(torch.tensor([[0.5], [1.5]], dtype=F64), requires_grad=False)

        def forward(self, x):
            return ((x + self.c.expand_as(x)) * 2 + x[:, :1].expand_as(x)).flatten(1)

    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], dtype=F64)
    ref = torch.zeros(1, 2, 2, dtype=F64)
    for mode in MODES:
        result = scores(export(Shaped(), x), x, ref, target=[0, 3], mode=mode)
        expected = torch.tensor([[[[3.0, 0.0], [0.0, 0.0]], [[0.0, 2.0], [0.0, 8.0]]]], dtype=F64)
        torch.testing.assert_close(result.contributions, expected, rtol=0, atol=1e-15)


# --------------------------------------------------------------------------------------- in networks
class Upsampling(nn.Module):
    """conv → ReLU → upsample → conv → ReLU → dense → ReLU → dense; ``matrix`` writes a 1-d upsampling as a
    product with its constant interpolation matrix."""

    def __init__(self, how: str, dims: int = 1, matrix: bool = False):
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.how, self.dims = how, dims
        self.conv1, self.conv2 = conv(4, 3, 3), conv(3, 3, 3)
        width = 2 * (12 - 2) - 2
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(3 * width * (1 if dims == 1 else 4 - 2), 5), nn.ReLU(),
                                   nn.Linear(5, 2))
        self.matrix = None
        if matrix:
            eye = torch.eye(10, dtype=F64).unsqueeze(1)
            self.matrix = F.interpolate(eye, scale_factor=2, mode=how).squeeze(1)  # (10, 20)

    def forward(self, x):
        h = torch.relu(self.conv1(x if self.dims == 1 else x.unsqueeze(2).expand(-1, -1, 4, -1)))
        if self.matrix is not None:
            h = h @ self.matrix
        elif self.dims == 1:
            h = F.interpolate(h, scale_factor=2, mode=self.how)
        else:
            h = F.interpolate(h, scale_factor=2, mode=self.how)[:, :, :4, :]
        return self.dense(torch.relu(self.conv2(h)))


def random_data(length=12, n=3, r=2, seed=0):
    X = random_one_hot(n, length, seed=seed, dtype=F64)
    R = random_one_hot(n * r, length, seed=seed + 1, dtype=F64).reshape(n, r, 4, length)
    return X, R


@pytest.mark.parametrize("how,dims", [("linear", 1), ("nearest", 1), ("bilinear", 2), ("nearest", 2)])
def test_upsampling_sums_to_delta_in_every_mode(how, dims):
    torch.manual_seed(0)
    model = Upsampling(how, dims).double()
    X, R = random_data()
    program = export(model, X)
    for mode in MODES:
        result = scores(program, X, R, target=1, mode=mode)
        assert_sums_to_delta(result)
        assert result.contributions.abs().max() > 1e-3


@pytest.mark.parametrize("how", ["linear", "nearest"])
def test_upsampling_equals_its_interpolation_matrix(how):
    """The same network with the upsampling written as ``h @ M`` (a dense map with constant, non-negative
    weights): the same scores in every mode."""
    X, R = random_data(seed=5)
    torch.manual_seed(1)
    model = Upsampling(how).double()
    torch.manual_seed(1)
    written = Upsampling(how, matrix=True).double()
    for mode in MODES:
        a = scores(export(model, X), X, R, target=0, mode=mode)
        b = scores(export(written, X), X, R, target=0, mode=mode)
        torch.testing.assert_close(a.contributions, b.contributions, rtol=0, atol=1e-12)
        torch.testing.assert_close(a.hypothetical, b.hypothetical, rtol=0, atol=1e-12)


class Normed(nn.Module):
    """conv → ReLU → a norm over channels (``F.normalize``, or a scaling by a p-norm) → conv → ReLU → dense;
    ``explicit`` writes the norm with squares (abs and powers), a sum and a square root (a power)."""

    def __init__(self, how: str, explicit: bool = False):
        super().__init__()
        self.how, self.explicit = how, explicit
        self.conv1, self.conv2 = nn.Conv1d(4, 6, 3), nn.Conv1d(6, 3, 3)
        self.dense = nn.Linear(3 * 8, 2)

    def norm(self, h, p):
        if not self.explicit:
            return torch.linalg.vector_norm(h, ord=p, dim=1, keepdim=True)
        if p == 2:
            return h.square().sum(1, keepdim=True).sqrt()
        return h.abs().pow(p).sum(1, keepdim=True).pow(1 / p)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        if self.how == "normalize":
            h = F.normalize(h, dim=1) if not self.explicit else h / self.norm(h, 2).clamp_min(1e-12).expand_as(h)
        else:
            h = h * self.norm(h, float(self.how))
        return self.dense(torch.relu(self.conv2(h)).flatten(1))


@pytest.mark.parametrize("how", ["normalize", "2", "3"])
def test_norms_sum_to_delta_in_every_mode(how):
    X, R = random_data(seed=2)
    torch.manual_seed(2)
    program = export(Normed(how).double(), X)
    for mode in MODES:
        result = scores(program, X, R, target=0, mode=mode)
        assert_sums_to_delta(result)
        assert torch.isfinite(result.hypothetical).all()


@pytest.mark.parametrize("how", ["normalize", "2", "3"])
def test_norms_equal_the_network_written_out(how):
    """Written out, the norm's square, root and power are standalone nonlinearities: Rescale in rescale mode and
    in genomics mode here (none follows a dense layer), as inside the norm's chain, so the scores are the same."""
    X, R = random_data(seed=3)
    torch.manual_seed(3)
    model = Normed(how).double()
    torch.manual_seed(3)
    written = Normed(how, explicit=True).double()
    for mode in ("rescale", "genomics"):
        a = scores(export(model, X), X, R, target=1, mode=mode)
        b = scores(export(written, X), X, R, target=1, mode=mode)
        torch.testing.assert_close(a.contributions, b.contributions, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("fn,words", [
    (lambda t: t * torch.linalg.vector_norm(t, ord=math.inf, dim=1, keepdim=True), "order inf"),
    (lambda t: t * torch.linalg.vector_norm(t, ord=0.5, dim=1, keepdim=True), "order 0.5"),
    (lambda t: t * torch.linalg.vector_norm(t), "every dimension"),
    (lambda t: t * torch.linalg.norm(t, ord="nuc", dim=(1, 2), keepdim=True), "order 'nuc'"),
], ids=["inf", "half", "all", "nuclear"])
def test_norms_without_a_rule_are_refused_with_the_reason(fn, words):
    X, R = random_data()
    with pytest.raises(UnsupportedOpError, match=words):
        attribute(export(Lambda(fn), X), X, R, dtype=F64)


def test_matrix_norms_are_refused():
    """A matrix norm of numeric order (here the largest column sum) is no vector norm: refused, not computed as
    one. torch.export keeps it as linalg_norm only for a fixed batch, which the plan is compiled for here."""
    X, R = random_data()
    model = Lambda(lambda t: t * torch.linalg.norm(t, ord=1, dim=(1, 2), keepdim=True))
    program = torch.export.export(model, (X,))
    assert any("linalg_norm" in str(n.target) for n in program.graph.nodes)
    with pytest.raises(UnsupportedOpError, match="matrix norm"):
        attribute(program, X, R, dtype=F64)


@pytest.mark.parametrize("mode", MODES)
def test_frobenius_norm_is_the_euclidean_norm_of_the_entries(mode):
    X, R = random_data(seed=4)
    frobenius = Lambda(lambda t: torch.linalg.norm(t.unsqueeze(1), ord="fro", dim=(2, 3)))
    euclidean = Lambda(lambda t: torch.linalg.vector_norm(t.flatten(1), dim=1, keepdim=True))
    a = scores(export(frobenius, X), X, R, mode=mode)
    b = scores(export(euclidean, X), X, R, mode=mode)
    torch.testing.assert_close(a.contributions, b.contributions, rtol=0, atol=1e-14)
    assert_sums_to_delta(a)


def test_info_names_the_new_rules():
    X, _ = random_data()
    rules = {row["op"]: row["rule"] for row in describe(export(Normed("normalize").double(), X))}
    assert "p-norm" in rules["aten.linalg_vector_norm"]
    rules = {row["op"]: row["rule"] for row in describe(export(Upsampling("linear").double(), X))}
    assert rules["aten.upsample_linear1d"] == "linear interpolation (gradient)"
