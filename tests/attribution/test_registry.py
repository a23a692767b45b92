"""The rule registry and the plan built from it (issue 13): one entry per op with both passes, rules resolved
once per mode, plans that do not keep models alive, and an engine that loads no file-format libraries."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

import pytest
import torch
import torch.nn as nn

from conftest import frozen, random_one_hot
from dnalift.attribution import registry
from dnalift.attribution.engine import attribute, plan_for
from dnalift.attribution.kinds.base import Kind
from dnalift.attribution.kinds.bookkeeping import Refused
from dnalift.attribution.kinds.nonlinear import Nonlinear
from dnalift.errors import UnsupportedOpError
from conftest import export

F64 = torch.float64


def test_every_entry_has_both_passes():
    for name, rule in registry.REGISTRY.items():
        kind = rule.kind
        if isinstance(kind, Refused):
            continue
        assert type(kind).difference is not Kind.difference, name
        if rule.select is not None:
            for deps in ((0,), (0, 1)):
                chosen, _ = rule.select(deps)
                assert type(chosen).difference is not Kind.difference, (name, deps)


def test_a_kind_without_a_revealcancel_pass_cannot_be_registered():
    class HalfKind(Kind):
        name = "half"

    with pytest.raises(TypeError, match="no RevealCancel pass"):
        registry.register_rule("half_op", HalfKind())
    with pytest.raises(ValueError, match="already has a rule"):
        registry.register_rule("relu", Nonlinear())


def test_an_activation_is_one_registry_line():
    class Erf(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(4, 3, 3)

        def forward(self, x):
            return torch.erf(self.conv(x)).mean(-1)

    X = random_one_hot(2, 8, seed=1, dtype=F64)
    R = random_one_hot(3, 8, seed=2, dtype=F64)
    program = export(frozen(Erf, dtype=F64), X)
    with pytest.raises(UnsupportedOpError, match="aten.erf"):
        attribute(program, X, R, dtype=F64)
    registry.register_rule("erf", Nonlinear())
    try:
        program = export(frozen(Erf, dtype=F64), X)   # a new program: plans of the old one are cached
        for mode in ("rescale", "revealcancel"):
            result = attribute(program, X, R, dtype=F64, rule=mode, target=1)
            change = result.predictions - result.reference_predictions
            assert torch.allclose(result.contributions.flatten(1).sum(1), change, atol=1e-12)
    finally:
        del registry.REGISTRY["erf"]


def test_steps_carry_their_rule_for_the_mode():
    model = nn.Sequential(nn.Conv1d(4, 4, 3), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(16, 5), nn.ReLU(),
                          nn.Linear(5, 1))
    program = export(frozen(lambda: model), random_one_hot(2, 10))
    labels = {}
    for mode in ("rescale", "revealcancel", "genomics"):
        plan = plan_for(program, mode=mode)
        labels[mode] = [s.label for s in plan.steps if s.kind == "nonlinear"]
        assert plan.parts_pass is (mode != "rescale")
    assert labels == {"rescale": ["Rescale", "Rescale"], "revealcancel": ["RevealCancel", "RevealCancel"],
                      "genomics": ["Rescale", "RevealCancel"]}
    weighted = [s for s in plan_for(program, mode="genomics").steps if s.name == "linear"]
    # only the dense layer that feeds a RevealCancel unit splits its output into parts
    assert [s.needs_split for s in weighted] == [True, False]


def test_genomics_mode_on_an_all_convolution_model_is_rescale():
    model = nn.Sequential(nn.Conv1d(4, 4, 3), nn.ReLU(), nn.Conv1d(4, 2, 3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(12, 1))
    X = random_one_hot(2, 10, seed=3, dtype=F64)
    R = random_one_hot(4, 10, seed=4, dtype=F64)
    program = export(frozen(lambda: model, dtype=F64), X)
    assert not plan_for(program, mode="genomics").parts_pass
    genomics = attribute(program, X, R, rule="genomics", dtype=F64)
    rescale = attribute(program, X, R, rule="rescale", dtype=F64)
    assert torch.equal(genomics.contributions, rescale.contributions)


def test_plans_do_not_keep_programs_alive():
    program = export(nn.Sequential(nn.Conv1d(4, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1)),
                     random_one_hot(2, 6))
    plan_for(program, mode="revealcancel")
    ref = weakref.ref(program)
    del program
    gc.collect()
    assert ref() is None


def test_a_module_is_exported_once_while_its_weights_do_not_change(monkeypatch):
    import dnalift.models.export as export_layer

    calls = []
    real = export_layer.from_module
    monkeypatch.setattr(export_layer, "from_module", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = frozen(lambda: nn.Sequential(nn.Conv1d(4, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1)))
    X = random_one_hot(2, 6)
    first = attribute(model, X, X[:1])
    attribute(model, X, X[:1])
    assert len(calls) == 1
    with torch.no_grad():
        model[0].weight.mul_(2)        # in place: the export must not be reused
    second = attribute(model, X, X[:1])
    assert len(calls) == 2 and not torch.equal(first.contributions, second.contributions)


def test_scoring_a_module_loads_no_file_format_library():
    code = ("import sys, torch, torch.nn as nn, dnalift\n"
            "m = nn.Sequential(nn.Conv1d(4, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1)).eval()\n"
            "X = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 6)), 4).transpose(1, 2).float()\n"
            "dnalift.attribute(m, X, dnalift.dinucleotide_shuffle(X.numpy().astype('int8'), n=2, seed=0))\n"
            "print(sorted(k for k in ('h5py', 'pyfaidx', 'click', 'matplotlib') if k in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("mode", ["rescale", "revealcancel"])
def test_a_weighted_op_from_its_own_module_transposed_convolution(mode):
    """conv_transpose1d (kinds/transposed_conv.py and one registry line): the scores sum to delta in both
    passes, and the module's explicit transpose (a convolution) equals autograd's gradient of the op."""

    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(4, 3, 3)
            self.up = nn.ConvTranspose1d(3, 2, 4, stride=2, padding=1, output_padding=1, groups=1)
            self.out = nn.Linear(2 * 17, 1)

        def forward(self, x):
            return self.out(torch.relu(self.up(torch.relu(self.conv(x)))).flatten(1))

    X = random_one_hot(2, 10, seed=5, dtype=F64)
    R = random_one_hot(3, 10, seed=6, dtype=F64)
    program = export(frozen(Up, dtype=F64), X)
    ops = [n.target.__name__ for n in program.graph.nodes if n.op == "call_function"]
    assert "conv_transpose1d.default" in ops
    result = attribute(program, X, R, rule=mode, dtype=F64)
    change = result.predictions - result.reference_predictions
    torch.testing.assert_close(result.contributions.flatten(1).sum(1), change, rtol=1e-12, atol=1e-12)
    # the explicit transpose agrees with autograd's: same multipliers as the op run through autograd
    from dnalift.attribution.kinds import linear

    spec = registry.REGISTRY["conv_transpose1d"].kind.spec
    weight = torch.randn(3, 2, 4, dtype=F64)
    t = torch.randn(2, 3, 8, dtype=F64, requires_grad=True)
    step = type("S", (), {"fn": torch.ops.aten.conv_transpose1d.default})()
    args = (None, weight, None, [2], [1], [1], 1, [1])
    y = spec.apply(step, args, t, weight)
    g = torch.randn_like(y)
    (expected,) = torch.autograd.grad(y, t, g)
    torch.testing.assert_close(spec.transpose(step, args, weight)(g, t.shape), expected)
    assert isinstance(registry.REGISTRY["conv_transpose1d"].kind, linear.Weighted)


def test_every_registered_op_has_a_complete_entry():
    """Walk the registry: each entry's kind has both passes, and what normalisation, pooling and output
    normalisation need is data in the entry, consistent with its kind."""
    from dnalift.attribution.kinds.base import Kind
    from dnalift.attribution.kinds.bookkeeping import Refused
    from dnalift.attribution.kinds.composite import Composite
    from dnalift.attribution.kinds.linear import Weighted
    from dnalift.attribution.kinds.max import Max, Pooling
    from dnalift.attribution.registry import REGISTRY, Role, WeightArgs

    assert len(REGISTRY) > 150
    for name, rule in REGISTRY.items():
        assert rule.op == name and isinstance(rule.kind, Kind), name
        assert type(rule.kind).difference is not Kind.difference or isinstance(rule.kind, Refused), name
        assert isinstance(rule.role, Role), name
        if isinstance(rule.kind, Max):
            assert isinstance(rule.kind.pooling, Pooling), name
            assert (rule.kind.pooling.spatial in (1, 2)) != rule.kind.pooling.reduction, name
        if rule.weights is not None:
            assert isinstance(rule.weights, WeightArgs) and isinstance(rule.kind, Weighted), name
        if isinstance(rule.kind, Weighted) and rule.op not in ("bmm",):
            # a weighted layer says where its weight is, or it is one whose layout normalisation leaves
            assert rule.weights is not None or name.startswith("conv_transpose"), name
        if rule.softmax_head:
            assert isinstance(rule.kind, Composite) and "softmax" in rule.kind.label, name
        if rule.value_args is not None or rule.pad_value is not None:
            assert rule.moves_values, name
    assert {n for n, r in REGISTRY.items() if r.softmax_head} == {"softmax", "_softmax", "log_softmax",
                                                                  "_log_softmax"}


def test_max_pooling_reads_its_windows_from_the_entry():
    """A max op registered under a new name scores by its entry's Pooling, not by its name."""
    import torch.nn.functional as F

    from dnalift.attribution.kinds.max import Max, MaxWindows, Pooling, Window

    t = torch.tensor([[[1.0, 3.0, 2.0, 0.0, 5.0, 4.0]]])
    windows = MaxWindows(Pooling(Window.POOL, 1, returns_indices=False), (t, [2]), {})
    values, index = windows.pool(t)
    assert values.tolist() == F.max_pool1d(t, 2).tolist() and index.tolist() == [[1, 2, 4]]
    reduction = MaxWindows(Pooling(Window.AMAX), (t, [2]), {})
    assert reduction.pool(t)[0].tolist() == [[5.0]]
    assert Max(Pooling(Window.MAX_DIM, returns_indices=True)).pooling.returns_indices
