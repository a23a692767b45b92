"""RevealCancel and the Linear rule with positive and negative parts (2017 paper, section 3.5.3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dnalift.attribution.engine import attribute
from conftest import export

F64 = torch.float64


class MinNetwork(nn.Module):
    """2017 paper, Figure 3: o = ReLU(i1) - ReLU(i1 - i2) = min(i1, i2) for positive inputs."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(2, 2, bias=False)
        self.out = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, -1.0]]))
            self.out.weight.copy_(torch.tensor([[1.0, -1.0]]))

    def forward(self, x):
        return self.out(F.relu(self.hidden(x)))


@pytest.mark.parametrize("i1,i2", [(3.0, 5.0), (5.0, 3.0), (2.0, 2.0), (0.5, 7.0)])
def test_figure3_min_splits_evenly_under_revealcancel(i1, i2):
    program = export(MinNetwork().double(), torch.zeros(2, 2, dtype=F64))
    x = torch.tensor([[i1, i2]], dtype=F64)
    zero = torch.zeros(1, 2, dtype=F64)
    reveal = attribute(program, x, zero, dtype=F64, rule="revealcancel")
    low = min(i1, i2)
    torch.testing.assert_close(reveal.contributions, torch.tensor([[0.5 * low, 0.5 * low]], dtype=F64))
    # Rescale gives everything to one input.
    rescale = attribute(program, x, zero, dtype=F64, rule="rescale")
    assert rescale.contributions.sum().item() == pytest.approx(low)
    if i1 != i2:
        assert (rescale.contributions == 0).any()
    # genomics mode: the ReLUs follow a dense layer, so they get RevealCancel too.
    genomics = attribute(program, x, zero, dtype=F64, rule="genomics")
    torch.testing.assert_close(genomics.contributions, reveal.contributions)


class OneUnit(nn.Module):
    """A kernel-1 convolution over 4 channels into one ReLU unit."""

    def __init__(self, weights, bias):
        super().__init__()
        self.conv = nn.Linear(4, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([weights]))
            self.conv.bias.fill_(bias)

    def forward(self, x):
        return F.relu(self.conv(x[:, :, 0])).unsqueeze(-1).squeeze(-1)


def test_positive_negative_linear_rule_by_hand_including_a_zero_difference():
    # w = (2, -1, 3, 0.5), b = 0, x = (2, 1, 0, -2), reference 0.
    # terms w*dx: +4, -1, 0, -1  ->  dy+ = 4, dy- = -2; x0 = 0, x = 2.
    # RevealCancel: dy+ = (f(4) - f(0))/2 + (f(2) - f(-2))/2 = 3; dy- = (f(-2) - f(0))/2 + (f(2) - f(4))/2 = -1
    # m+ = 3/4, m- = 1/2. Input multipliers: x1 (dx>0, w>0) m+ w = 1.5; x2 (dx>0, w<0) m- w = -0.5;
    # x3 (dx = 0) (m+ + m-)/2 w = 1.875; x4 (dx<0, w>0) m- w = 0.25.
    program = export(OneUnit([2.0, -1.0, 3.0, 0.5], 0.0).double(), torch.zeros(2, 4, 1, dtype=F64))
    x = torch.tensor([[[2.0], [1.0], [0.0], [-2.0]]], dtype=F64)
    zero = torch.zeros(1, 4, 1, dtype=F64)
    result = attribute(program, x, zero, dtype=F64, rule="revealcancel")
    multipliers = torch.tensor([1.5, -0.5, 1.875, 0.25], dtype=F64)
    # With a zero reference the hypothetical score of "base" b is its multiplier.
    torch.testing.assert_close(result.hypothetical[0, :, 0], multipliers)
    torch.testing.assert_close(result.contributions[0, :, 0], multipliers * x[0, :, 0])
    assert result.contributions.sum().item() == pytest.approx(2.0)
    # Rescale: one multiplier dy/dx = 2/2 = 1 for the unit, times each weight.
    rescale = attribute(program, x, zero, dtype=F64, rule="rescale")
    torch.testing.assert_close(rescale.hypothetical[0, :, 0], torch.tensor([2.0, -1.0, 3.0, 0.5], dtype=F64))


def test_revealcancel_with_nonzero_reference_at_the_unit():
    # bias -1: x0 = -1; w = (2, -1, 0, 0), x = (2, 1, 0, 0): dy+ = 4, dy- = -1, x = 2.
    # dy+ = (f(3) - f(-1))/2 + (f(2) - f(-2))/2 = 2.5 ; dy- = (f(-2) - f(-1))/2 + (f(2) - f(3))/2 = -0.5
    program = export(OneUnit([2.0, -1.0, 0.0, 0.0], -1.0).double(), torch.zeros(2, 4, 1, dtype=F64))
    x = torch.tensor([[[2.0], [1.0], [0.0], [0.0]]], dtype=F64)
    result = attribute(program, x, torch.zeros(1, 4, 1, dtype=F64), dtype=F64, rule="revealcancel")
    torch.testing.assert_close(result.contributions[0, :2, 0], torch.tensor([2.5, -0.5], dtype=F64))


def _models():
    yield "dense-relu", nn.Sequential(nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(),
                                      nn.Linear(8, 2))
    yield "dense-prelu-sigmoid-tanh", nn.Sequential(nn.Flatten(), nn.Linear(32, 16), nn.PReLU(),
                                                    nn.Linear(16, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.Tanh(),
                                                    nn.Linear(8, 2))
    yield "conv-maxpool", nn.Sequential(nn.Conv1d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2),
                                        nn.Conv1d(6, 6, 3), nn.PReLU(), nn.Flatten(), nn.Linear(6 * 2, 4),
                                        nn.Tanh(), nn.Linear(4, 2))
    yield "conv-avgpool", nn.Sequential(nn.Conv1d(4, 6, 3, padding=1), nn.Sigmoid(), nn.AvgPool1d(2),
                                        nn.Conv1d(6, 6, 3), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(),
                                        nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))


@pytest.mark.parametrize("name,model", list(_models()), ids=[n for n, _ in _models()])
@pytest.mark.parametrize("rule", ["revealcancel", "genomics", "rescale"])
def test_summation_to_delta_float64(name, model, rule):
    torch.manual_seed(11)
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.7)
    model = model.double()
    x = torch.randn(6, 4, 8, dtype=F64)
    refs = torch.randn(6, 3, 4, 8, dtype=F64) * 0.5
    result = attribute(export(model, x[:2]), x, refs, target=[0, 1], dtype=F64, rule=rule)
    change = (result.predictions - result.reference_predictions).abs().clamp(min=1.0)
    assert (result.deltas.abs() / change).max() < 1e-8


def test_revealcancel_differs_from_rescale_only_where_it_should():
    """A network with no cancellation (all weights positive, one layer) gives the same under both rules."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 1), nn.Sigmoid())
    with torch.no_grad():
        model[1].weight.uniform_(0.1, 1.0)
    model = model.double()
    x = torch.rand(3, 4, 2, dtype=F64)
    refs = torch.zeros(3, 1, 4, 2, dtype=F64)
    program = export(model, x[:2])
    a = attribute(program, x, refs, dtype=F64, rule="rescale")
    b = attribute(program, x, refs, dtype=F64, rule="revealcancel")
    torch.testing.assert_close(a.contributions, b.contributions)


# ------------------------------------------------------------------ the original code's conventions (issue 9)
def _linear(weight, bias):
    layer = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
    return layer


def test_dead_relu_with_cancelling_parts_gets_the_average_multiplier():
    """Linear(2->3) W=[[1,-1],[1,0],[0,1]], b=[-0.5,0,0] -> ReLU -> Linear(3->1) W=[1,1,-1], b=-0.1 -> ReLU ->
    Linear(1->1); x = (0.7, 0.3), reference 0.

    Hidden unit 1 is dead at x (-0.1) and at the reference (-0.5): its difference is exactly 0, but its parts
    are not (terms 0.7 and -0.3 give dy+ = 0.1, dy- = -0.1: m+ = 1/7, m- = 1/3). Units 2 and 3 have parts
    (0.7, 0) and (0.3, 0): m+ = 1, m- = the limit (relu'(0) + relu'(dx+))/2 = 1/2. The output unit's parts are
    0.7 and -0.3 at z0 = -0.1: dy+ = (0.6 + 0.3)/2 = 0.45, dy- = 0.3 - 0.45 = -0.15, so m+ = 9/14, m- = 1/2.
    Going back through the second layer, unit 1 (difference exactly 0: the sign of the forward difference)
    gets the average (9/14 + 1/2)/2 = 4/7, unit 2 gets m+ = 9/14, unit 3 m- * (-1) = -1/2. Through the ReLUs:
    unit 1's parts get 4/7 * 1/7 and 4/7 * 1/3, unit 2's 9/14 and 9/28, unit 3's -1/2 and -1/4. Through the
    first layer: x1 (all weights >= 0) gets 4/49 + 9/14 = 71/98, contribution 0.7 * 71/98 = 0.507142...;
    x2 gets m+ of unit 3 (w = 1) plus m- of unit 1 (w = -1): -1/2 - 4/21 = -29/42, contribution -0.207142...
    (the original code's numbers). Taking the sign at unit 1 from the carried parts instead (rounding noise)
    gives it m+ or m- alone and the scores (0.5, -0.2).
    """
    model = nn.Sequential(_linear([[1, -1], [1, 0], [0, 1]], [-0.5, 0, 0]), nn.ReLU(),
                          _linear([[1, 1, -1]], [-0.1]), nn.ReLU(), _linear([[1]], [0])).double()
    program = export(model, torch.zeros(2, 2, dtype=F64))
    x = torch.tensor([[0.7, 0.3]], dtype=F64)
    result = attribute(program, x, torch.zeros(1, 2, dtype=F64), dtype=F64, rule="revealcancel")
    torch.testing.assert_close(result.contributions, torch.tensor([[0.50714285714285714, -0.20714285714285714]],
                                                                  dtype=F64))
    assert abs(result.deltas.item()) < 1e-15


class _ConvPoolDense(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 1, 1)
        self.out = nn.Linear(1, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[[1.0], [-1.0]]]))
            self.conv.bias.fill_(-1.0)
            self.out.weight.fill_(1.0)
            self.out.bias.zero_()

    def forward(self, x):
        return self.out(F.max_pool1d(F.relu(self.conv(x)), 2).flatten(1))


@pytest.mark.parametrize("rule,expected", [("rescale", [0.0, -1.0, 0.0, 0.0]),
                                           ("revealcancel", [1.0, -1.0, -1.0, 0.0]),
                                           ("genomics", [0.0, -1.0, 0.0, 0.0])])
def test_exact_max_rule_gives_the_gradient_where_the_inputs_argmax_does_not_change(rule, expected):
    """Conv1d(2->1, k=1) w=(1,-1), b=-1 -> ReLU -> MaxPool1d(2) -> Linear; x = [[3, 0], [2.5, 0]],
    ref = [[0, 2], [0, 0]].

    Conv: x gives (-0.5, -1), the reference (-1, 1); after the ReLU (0, 0) and (0, 1). The window's maxima:
    y = 0 at position 0 (the input's argmax, where the difference is 0), y0 = 1 at position 1. The exact rule
    routes y - y0 = -1 to position 1 (coefficient (y - M)/dx = -1/-1 = 1) and gives position 0 the gradient, 1
    (not 0). Under Rescale position 0's ReLU multiplier is 0/0.5 = 0 so it gets nothing either way; under
    RevealCancel its parts (3 from x_A, -2.5 from x_C) give dy+ = 1, dy- = -1, m+ = 1/3, m- = 0.4, so x_A at
    position 0 contributes 1/3 * 3 = 1 and x_C -0.4 * 2.5 = -1; position 1: ReLU m = (0 - 1)/(-1 - 1) = 0.5,
    x_A gets 0.5 * (0 - 2) = -1.
    """
    program = export(_ConvPoolDense().double(), torch.zeros(2, 2, 2, dtype=F64))
    x = torch.tensor([[[3.0, 0.0], [2.5, 0.0]]], dtype=F64)
    ref = torch.tensor([[[0.0, 2.0], [0.0, 0.0]]], dtype=F64)
    result = attribute(program, x, ref, dtype=F64, rule=rule)
    assert result.contributions.flatten().tolist() == pytest.approx(expected, abs=1e-12)


def test_a_zero_part_gets_the_limit_multiplier():
    """One-hot A at one position, reference 0, Flatten -> Linear(4->1) w = (1, -1, 0.5, 0), b = 0 -> Sigmoid.

    The terms w * dx are (1, 0, 0, 0): dx+ = 1 and dx- = 0 exactly, so m+ = (s(1) - s(0)) / 1 and m- is the
    limit (s'(0) + s'(0 + 1)) / 2 = (1/4 + s(1)(1 - s(1))) / 2 (what the original code's 1e-7 pseudocount
    approximates). The hypothetical scores read the multipliers of the bases that are not there (difference
    exactly 0): (m+ + m-)/2 * w. So H = (m+, -(m+ + m-)/2, 0.5 (m+ + m-)/2, 0)."""
    layer = _linear([[1.0, -1.0, 0.5, 0.0]], [0.0])
    model = nn.Sequential(nn.Flatten(), layer, nn.Sigmoid()).double()
    program = export(model, torch.zeros(2, 4, 1, dtype=F64))
    x = torch.tensor([[[1.0], [0.0], [0.0], [0.0]]], dtype=F64)
    result = attribute(program, x, torch.zeros(1, 4, 1, dtype=F64), dtype=F64, rule="revealcancel")
    s1 = torch.sigmoid(torch.tensor(1.0, dtype=F64)).item()
    m_pos = s1 - 0.5
    m_neg = (0.25 + s1 * (1 - s1)) / 2
    average = (m_pos + m_neg) / 2
    expected = torch.tensor([[[m_pos], [-average], [0.5 * average], [0.0]]], dtype=F64)
    torch.testing.assert_close(result.hypothetical, expected, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(result.contributions, expected * x)
