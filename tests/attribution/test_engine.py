"""The DeepLIFT engine: hand-computed examples from the papers, summation-to-delta, spellings, captum."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dnalift.attribution.engine import attribute, describe
from dnalift.errors import ConservationWarning, TargetError, UnsupportedOpError
from conftest import export

F64 = torch.float64


def one_hot(shape, seed=0):
    """Random one-hot DNA (..., 4, length) as float64."""
    generator = torch.Generator().manual_seed(seed)
    *lead, channels, length = shape
    assert channels == 4
    index = torch.randint(0, 4, (*lead, length), generator=generator)
    return F.one_hot(index, 4).movedim(-1, -2).to(F64)


def relative_delta(result):
    change = (result.predictions - result.reference_predictions).abs().clamp(min=1.0)
    return (result.deltas.abs() / change).max().item()


# ------------------------------------------------------------------------------------- hand-computed
class Figure1(nn.Module):
    """2016 paper, Figure 1: y = 0.2 * ReLU(x1 + 2 x2 + 2) + 0.1."""

    def forward(self, x):
        return 0.2 * F.relu(x[:, 0:1] + 2 * x[:, 1:2] + 2) + 0.1


@pytest.mark.parametrize("rule", ["rescale", "revealcancel", "genomics"])
def test_figure1_contributions_where_the_gradient_is_zero(rule):
    program = export(Figure1().double(), torch.zeros(2, 2, dtype=F64))
    x = torch.tensor([[-1.0, -1.0]], dtype=F64)
    result = attribute(program, x, torch.zeros(1, 2, dtype=F64), dtype=F64, rule=rule)
    torch.testing.assert_close(result.contributions, torch.tensor([[-0.4 / 3, -0.8 / 3]], dtype=F64))
    torch.testing.assert_close(result.predictions, torch.tensor([0.1], dtype=F64))
    torch.testing.assert_close(result.reference_predictions, torch.tensor([0.5], dtype=F64))
    # ... although the gradient there is 0:
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(Figure1()(x).sum(), x)
    assert grad.abs().max() == 0


class ThresholdUnit(nn.Module):
    """2017 paper, Figure 2: a ReLU with bias -10."""

    def forward(self, x):
        return F.relu(x - 10)


def test_relu_with_bias_minus_10_gives_continuous_contributions():
    program = export(ThresholdUnit().double(), torch.zeros(2, 1, dtype=F64))
    xs = torch.tensor([[9.0], [9.99], [10.0], [10.01], [10.5], [15.0]], dtype=F64)
    result = attribute(program, xs, torch.zeros(1, 1, dtype=F64), dtype=F64)
    expected = torch.tensor([[0.0], [0.0], [0.0], [0.01], [0.5], [5.0]], dtype=F64)
    torch.testing.assert_close(result.contributions, expected)
    # gradient x input jumps from 0 to 10.01 at x = 10.01; DeepLIFT moves by 0.01
    assert (result.contributions[3] - result.contributions[2]).abs().item() < 0.02


class OverlappingMax(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x):
        return F.max_pool1d(x, self.kernel, self.stride).sum(dim=(1, 2)).unsqueeze(1)


def test_exact_max_rule_on_overlapping_windows_by_hand():
    # windows [0,1,2] and [2,3,4] share position 2.
    x = torch.tensor([[[1.0, 5.0, 2.0, 0.0, 0.0, 1.0]]], dtype=F64)
    ref = torch.tensor([[[3.0, 0.0, 4.0, 1.0, 6.0, 0.0]]], dtype=F64)
    program = export(OverlappingMax(3, 2).double(), x.repeat(2, 1, 1))
    result = attribute(program, x, ref, dtype=F64)
    # window 0: y=5 (pos 1), y0=4 (pos 2): +1 to pos 1, 0 to pos 2.
    # window 1: y=2 (pos 2), y0=6 (pos 4): M=6, 0 to pos 2, -4 to pos 4.
    expected = torch.tensor([[[0.0, 1.0, 0.0, 0.0, -4.0, 0.0]]], dtype=F64)
    torch.testing.assert_close(result.contributions, expected)
    assert abs(result.deltas.item()) < 1e-12
    # The original code's rule (gradient at the input's argmax) does not sum to delta here.
    with pytest.warns(ConservationWarning, match=r"worst: window-test \(6\).*--max-rule exact"):
        gradient = attribute(program, x, ref, dtype=F64, max_rule="gradient", names=["window-test"])
    torch.testing.assert_close(gradient.contributions,
                               torch.tensor([[[0.0, 5.0, -2.0, 0.0, 0.0, 0.0]]], dtype=F64))


def test_exact_max_rule_with_stride_one_sums_to_delta():
    x = one_hot((5, 4, 30), seed=1) * torch.linspace(0.5, 2, 30, dtype=F64)
    refs = one_hot((5, 3, 4, 30), seed=2)
    model = nn.Sequential(nn.Conv1d(4, 3, 3), nn.ReLU(), nn.MaxPool1d(4, 1), nn.Flatten(),
                          nn.LazyLinear(1)).double()
    model(x[:1])
    result = attribute(export(model, x[:2]), x, refs, dtype=F64)
    assert relative_delta(result) < 1e-10


class Gate(nn.Module):
    """y = (x1 + 1) * (2 x2): both factors depend on the input."""

    def forward(self, x):
        return ((x[:, 0:1] + 1) * (2 * x[:, 1:2]))


def test_product_rule_by_hand():
    program = export(Gate().double(), torch.zeros(2, 2, dtype=F64))
    x = torch.tensor([[2.0, 3.0]], dtype=F64)
    result = attribute(program, x, torch.zeros(1, 2, dtype=F64), dtype=F64)
    # a: 1 -> 3, b: 0 -> 6. m_a = b0 + db/2 = 3, m_b = a0 + da/2 = 2: C_x1 = 3*2 = 6, C_x2 = 2*6 = 12.
    torch.testing.assert_close(result.contributions, torch.tensor([[6.0, 12.0]], dtype=F64))
    assert abs(result.deltas.item()) < 1e-12


class SoftmaxHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 4)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[1.0, 2.0, 0.5], [1.0, -1.0, 0.0], [1.0, 0.0, 3.0],
                                                   [1.0, 1.0, 1.0]]))
            self.linear.bias.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))

    def forward(self, x):
        return torch.softmax(self.linear(x), dim=-1)


def test_softmax_output_targets_mean_normalised_logits():
    program = export(SoftmaxHead().double(), torch.zeros(2, 3, dtype=F64))
    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=F64)
    result = attribute(program, x, torch.zeros(1, 3, dtype=F64), target=[0, 2], dtype=F64)
    w = SoftmaxHead().linear.weight.double()
    normalised = w - w.mean(0, keepdim=True)
    # input 0 has the same weight (1.0) into every class: zero contribution (paper 2.5)
    torch.testing.assert_close(result.contributions[0, 0], normalised[0] * x[0])
    torch.testing.assert_close(result.contributions[0, 1], normalised[2] * x[0])
    assert result.contributions[0, :, 0].abs().max() < 1e-12
    assert result.deltas.abs().max() < 1e-12


def test_hypothetical_scores_on_the_observed_base_are_the_contributions():
    model = nn.Sequential(nn.Conv1d(4, 6, 5), nn.ReLU(), nn.AvgPool1d(2), nn.Flatten(), nn.LazyLinear(2))
    model = model.double()
    x = one_hot((3, 4, 20), seed=3)
    model(x[:1])
    refs = one_hot((3, 4, 4, 20), seed=4)
    result = attribute(export(model, x[:2]), x, refs, target=1, dtype=F64)
    per_position = result.contributions.sum(1)
    projected = (result.hypothetical * x).sum(1)
    torch.testing.assert_close(projected, per_position)
    # hypothetical for base b is sum_c m_c (e_b - ref)_c: check one entry against multipliers from autograd
    # of a single-reference run (Rescale multipliers are the gradient of the reference pass).
    assert result.hypothetical.shape == x.shape


# ------------------------------------------------------------------------ summation-to-delta, spellings
class Spelled(nn.Module):
    """One network written four ways: modules, functional calls, a reused module, in-place ReLU."""

    def __init__(self, spelling: str):
        super().__init__()
        self.spelling = spelling
        self.conv = nn.Conv1d(4, 8, 5, padding=2)
        self.bn = nn.BatchNorm1d(8)
        self.conv2 = nn.Conv1d(8, 8, 3, padding=1)
        self.linear = nn.Linear(8 * 6, 3)
        self.relu_a = nn.ReLU()
        self.relu_b = nn.ReLU()
        self.shared = nn.ReLU()
        self.inplace = nn.ReLU(inplace=True)

    def forward(self, x):
        h = self.bn(self.conv(x))
        if self.spelling == "modules":
            h = self.relu_a(h)
            h = h + self.relu_b(self.conv2(h))
        elif self.spelling == "functional":
            h = F.relu(h)
            h = h + torch.relu(self.conv2(h))
        elif self.spelling == "reused":
            h = self.shared(h)
            h = h + self.shared(self.conv2(h))
        else:
            h = self.inplace(h)
            h = h + self.inplace(self.conv2(h))
        h = F.max_pool1d(h, 4)  # ReLU straight into max pooling
        return self.linear(h.flatten(1))


def _randomise_batchnorm(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.weight.copy_(torch.randn(module.num_features, generator=generator))
                module.bias.copy_(torch.randn(module.num_features, generator=generator))


@pytest.mark.parametrize("rule", ["rescale", "revealcancel", "genomics"])
def test_every_spelling_gives_the_same_scores(rule):
    torch.manual_seed(0)
    reference_model = Spelled("modules").double()
    _randomise_batchnorm(reference_model)
    x = one_hot((4, 4, 24), seed=5)
    refs = one_hot((4, 3, 4, 24), seed=6)
    results = {}
    for spelling in ["modules", "functional", "reused", "inplace"]:
        model = Spelled(spelling).double()
        model.load_state_dict(reference_model.state_dict())
        results[spelling] = attribute(export(model, x[:2]), x, refs, target=[0, 2], dtype=F64, rule=rule)
        assert relative_delta(results[spelling]) < 1e-8
    for result in results.values():
        torch.testing.assert_close(result.contributions, results["modules"].contributions, rtol=0, atol=1e-12)
        torch.testing.assert_close(result.hypothetical, results["modules"].hypothetical, rtol=0, atol=1e-12)


class Zoo(nn.Module):
    """Every supported nonlinearity, a gate, residual adds, dropout, batch norm, both poolings."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 7, padding=3)
        self.bn = nn.BatchNorm1d(8)
        self.prelu = nn.PReLU(8)
        self.gate = nn.Conv1d(8, 16, 3, padding=1)
        self.drop = nn.Dropout(0.3)
        self.dense = nn.Linear(8 * 4, 16)
        self.out = nn.Linear(16, 2)

    def forward(self, x):
        h = self.prelu(self.bn(self.conv(x)))
        a, b = self.gate(h).chunk(2, dim=1)
        h = h + torch.tanh(a) * torch.sigmoid(b)  # gated residual (product of two dependent tensors)
        h = F.gelu(h) + F.silu(h) + F.elu(h) + F.softplus(h) + F.leaky_relu(h, 0.1)
        h = torch.cat([F.max_pool1d(h, 8), F.avg_pool1d(h, 8)], dim=2)
        h = self.drop(h.flatten(1))
        h = torch.exp(-F.relu(self.dense(h)) * 0.1)
        return self.out(h)


@pytest.mark.parametrize("rule", ["rescale", "revealcancel", "genomics"])
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-8), (torch.float32, 1e-4)])
def test_summation_to_delta_on_a_model_with_every_op(rule, dtype, tolerance):
    torch.manual_seed(1)
    model = Zoo()
    _randomise_batchnorm(model, seed=1)
    model = model.to(dtype)
    x = one_hot((6, 4, 16), seed=7).to(dtype)
    refs = one_hot((6, 5, 4, 16), seed=8).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConservationWarning)
        result = attribute(export(model, x[:2]), x, refs, target=[0, 1], dtype=dtype, rule=rule)
    assert relative_delta(result) < tolerance


@pytest.mark.parametrize("seed", range(3))
def test_summation_to_delta_on_random_dense_models(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(40, 30), nn.Sigmoid(), nn.Linear(30, 20), nn.Tanh(),
                          nn.Linear(20, 10), nn.PReLU(), nn.Linear(10, 3)).double()
    x = torch.randn(7, 4, 10, dtype=F64) * 3
    refs = torch.randn(7, 4, 4, 10, dtype=F64)
    program = export(model, x[:2])
    for rule in ["rescale", "revealcancel", "genomics"]:
        assert relative_delta(attribute(program, x, refs, target=[0, 1, 2], dtype=F64, rule=rule)) < 1e-8


def test_results_do_not_depend_on_batch_size():
    torch.manual_seed(2)
    model = Zoo().double()
    x = one_hot((5, 4, 16), seed=9)
    refs = one_hot((5, 7, 4, 16), seed=10)
    program = export(model, x[:2])
    for rule in ["rescale", "revealcancel"]:
        runs = [attribute(program, x, refs, dtype=F64, rule=rule, batch_size=b) for b in (1, 3, 7, 50)]
        for run in runs[1:]:
            torch.testing.assert_close(run.contributions, runs[0].contributions, rtol=0, atol=1e-12)
            torch.testing.assert_close(run.hypothetical, runs[0].hypothetical, rtol=0, atol=1e-12)
            torch.testing.assert_close(run.reference_predictions, runs[0].reference_predictions)


def test_shared_references_equal_per_sequence_copies():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv1d(4, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8, 1)).double()
    x = one_hot((3, 4, 10), seed=11)
    shared = one_hot((2, 4, 10), seed=12)
    program = export(model, x[:2])
    a = attribute(program, x, shared, dtype=F64)
    b = attribute(program, x, shared.unsqueeze(0).expand(3, -1, -1, -1), dtype=F64)
    torch.testing.assert_close(a.contributions, b.contributions)


def test_callable_target_for_a_profile_head():
    class Profile(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(4, 2, 5, padding=2)

        def forward(self, x):
            return F.relu(self.conv(x))  # (n, 2, length): a profile per strand

    model = Profile().double()
    x = one_hot((2, 4, 12), seed=13)
    refs = one_hot((2, 3, 4, 12), seed=14)
    weights = torch.linspace(-1, 1, 12, dtype=F64)
    result = attribute(export(model, x[:2]), x, refs, target=lambda out: (out[:, 0] * weights).sum(-1),
                       dtype=F64)
    assert relative_delta(result) < 1e-10
    expected = (model(x)[:, 0] * weights).sum(-1)
    torch.testing.assert_close(result.predictions, expected)


# ---------------------------------------------------------------------------------------- refusals
def test_unsupported_ops_are_all_refused_before_running_with_their_source_lines():
    class Sorted(nn.Module):
        def forward(self, x):
            top = torch.sort(x, dim=-1).values            # no DeepLIFT rule
            return (torch.cumprod(top, -1) + torch.erfinv(x * 0.5)).sum((1, 2)).unsqueeze(1)

    program = export(Sorted().double(), torch.zeros(2, 4, 10, dtype=F64))
    with pytest.raises(UnsupportedOpError) as info:
        attribute(program, torch.zeros(1, 4, 10, dtype=F64), torch.zeros(1, 4, 10, dtype=F64))
    # every op without a rule in one message, each with its source line
    assert [op.op for op in info.value.ops] == ["sort", "cumprod", "erfinv"]
    assert all("test_engine.py:" in op.source for op in info.value.ops)
    assert "allow_gradient=sort,cumprod,erfinv" in str(info.value) or \
        "allow_gradient=cumprod,erfinv,sort" in str(info.value)
    # allowed through with gradients when asked
    result = attribute(program, one_hot((1, 4, 10)), torch.zeros(1, 4, 10, dtype=F64), dtype=F64,
                       allow_gradient=("sort", "cumprod", "erfinv"), delta_tolerance=float("inf"))
    assert result.contributions.shape == (1, 4, 10)


def test_wrong_target_names_the_valid_range():
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 3)).double()
    program = export(model, torch.zeros(2, 4, 2, dtype=F64))
    with pytest.raises(TargetError, match="0 to 2"):
        attribute(program, torch.zeros(1, 4, 2, dtype=F64), torch.zeros(1, 4, 2, dtype=F64), target=3)


def test_describe_lists_each_op_with_its_rule():
    model = nn.Sequential(nn.Conv1d(4, 3, 3), nn.PReLU(), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(12, 5),
                          nn.ReLU(), nn.Linear(5, 1))
    program = export(model, torch.zeros(2, 4, 10))
    rows = describe(program, rule="genomics")
    rules = {row["op"]: row["rule"] for row in rows}
    assert rules["aten.prelu"] == "Rescale"  # after a convolution
    assert rules["aten.relu"] == "RevealCancel"  # after a dense layer
    assert rules["aten.max_pool1d"] == "max rule (exact)"
    assert all(row["source"] for row in rows)


# ------------------------------------------------------------------------------------------ captum
captum = pytest.importorskip("captum.attr")


class CaptumFriendly(nn.Module):
    """Module activations, each used once, no PReLU, no activation straight into max pooling."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 5)
        self.relu1 = nn.ReLU()
        self.pool = nn.AvgPool1d(2)
        self.flatten = nn.Flatten()
        self.dense = nn.Linear(6 * 8, 10)
        self.sigmoid = nn.Sigmoid()
        self.dense2 = nn.Linear(10, 5)
        self.tanh = nn.Tanh()
        self.out = nn.Linear(5, 2)

    def forward(self, x):
        h = self.flatten(self.pool(self.relu1(self.conv(x))))
        return self.out(self.tanh(self.dense2(self.sigmoid(self.dense(h)))))


def test_agrees_with_captum_where_captum_is_right():
    torch.manual_seed(4)
    model = CaptumFriendly().double().eval()
    x = one_hot((4, 4, 20), seed=15)
    refs = one_hot((4, 3, 4, 20), seed=16)
    program = export(model, x[:2])
    ours = attribute(program, x, refs, target=1, dtype=F64)
    explainer = captum.DeepLift(model)
    theirs = torch.stack([explainer.attribute(x, baselines=refs[:, k], target=1) for k in range(3)]).mean(0)
    torch.testing.assert_close(ours.contributions, theirs, rtol=0, atol=1e-6)


def test_captum_is_wrong_on_relu_into_maxpool_and_we_are_not():
    """A case hook-based tools get wrong: a ReLU feeding max pooling, and a reused activation module."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv1d(4, 6, 5), nn.ReLU(), nn.MaxPool1d(4), nn.Flatten(),
                          nn.Linear(24, 1)).double().eval()
    x = one_hot((4, 4, 20), seed=17)
    refs = one_hot((4, 1, 4, 20), seed=18)
    ours = attribute(export(model, x[:2]), x, refs, dtype=F64)
    assert relative_delta(ours) < 1e-10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, theirs = captum.DeepLift(model).attribute(x, baselines=refs[:, 0], return_convergence_delta=True)
    assert theirs.abs().max() > 1e-3  # captum's hooks do not conserve the difference here


# ------------------------------------------------------------------------------------- model formats
def test_every_model_format_gives_identical_scores(tmp_path):
    from dnalift.models import load_model
    from tests.toy_models import PaperCNN

    torch.manual_seed(6)
    module = PaperCNN().eval()
    example = one_hot((2, 4, 200), seed=19).float()
    torch.jit.save(torch.jit.trace(module, example), tmp_path / "model.pt")
    torch.export.save(torch.export.export(module, (example,), dynamic_shapes=(
        {0: torch.export.Dim("batch", min=1)},)), tmp_path / "model.pt2")
    torch.save(module.state_dict(), tmp_path / "state.pt")
    loaded = [load_model(tmp_path / "model.pt", input_length=200), load_model(tmp_path / "model.pt2"),
              load_model(tmp_path / "state.pt", arch="tests.toy_models:PaperCNN", input_length=200)]
    x = one_hot((3, 4, 200), seed=20)
    refs = one_hot((3, 4, 4, 200), seed=21)
    for rule in ["rescale", "genomics"]:
        results = [attribute(model, x, refs, dtype=F64, rule=rule) for model in loaded]
        for result in results[1:]:
            torch.testing.assert_close(result.contributions, results[0].contributions, rtol=0, atol=1e-12)
            torch.testing.assert_close(result.hypothetical, results[0].hypothetical, rtol=0, atol=1e-12)
        assert relative_delta(results[0]) < 1e-8
