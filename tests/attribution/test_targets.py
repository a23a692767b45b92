"""Targets by output name, and the standard targets of profile models (issues 11 and 21): ``counts``, ``profile``
and ``profile-fixed`` on bpnet-lite's BPNet (with and without control tracks) and ChromBPNet, checked for
summation-to-delta, against hand-computed multipliers, and against bpnet-lite's own ``ProfileWrapper`` /
``CountWrapper`` with its ``deep_lift_shap`` (``profile``, ``counts``) and tangermeme on fixed-weight wrappers
(``profile-fixed``), on the same references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from conftest import frozen, random_one_hot
from dnalift.attribution.engine import attribute, outputs_of
from dnalift.errors import ModelInputError, TargetError
from conftest import export

F64 = torch.float64


class TwoHeads(nn.Module):
    """A small profile model: a profile head (n, 2, L) and a count head (n, 1), returned as a tuple or a dict."""

    def __init__(self, as_dict: bool = False):
        super().__init__()
        self.as_dict = as_dict
        self.conv = nn.Conv1d(4, 6, 3, padding=1)
        self.profile = nn.Conv1d(6, 2, 1)
        self.counts = nn.Linear(6, 1)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        profile, counts = self.profile(h), self.counts(h.mean(-1))
        return {"profile": profile, "counts": counts} if self.as_dict else (profile, counts)


def _data(n=3, length=12, r=4, seed=0):
    X = random_one_hot(n, length, seed=seed, dtype=F64)
    R = torch.stack([random_one_hot(r, length, seed=100 + seed + i, dtype=F64) for i in range(n)])
    return X, R


@pytest.mark.parametrize("as_dict", [False, True])
@pytest.mark.parametrize("rule", ["rescale", "revealcancel"])
def test_counts_and_profile_are_understood_and_exact(as_dict, rule):
    model = frozen(TwoHeads, dtype=F64, as_dict=as_dict)
    X, R = _data()
    program = export(model, X[:2])
    result = attribute(program, X, R, target=["counts", "profile", "profile-fixed"], dtype=F64, rule=rule)
    assert result.targets == ["counts", "profile", "profile-fixed"]
    change = result.predictions - result.reference_predictions
    torch.testing.assert_close(result.contributions.flatten(2).sum(-1), change, rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        out = model(X)
        profile, counts = (out["profile"], out["counts"]) if as_dict else out
        ref_out = model(R.reshape(-1, 4, 12))
        ref_profile = (ref_out["profile"] if as_dict else ref_out[0]).reshape(3, 4, -1)
    logits = profile.reshape(len(X), -1)
    logits = logits - logits.mean(1, keepdim=True)
    weights = torch.softmax(logits, -1)
    torch.testing.assert_close(result.predictions[:, 0], counts[:, 0])
    torch.testing.assert_close(result.predictions[:, 1], (weights * logits).sum(1))
    torch.testing.assert_close(result.predictions[:, 2], (weights * logits).sum(1))
    ref_logits = ref_profile - ref_profile.mean(-1, keepdim=True)
    # profile: each reference weighted by its own softmax
    expected = (torch.softmax(ref_logits, -1) * ref_logits).sum(-1).mean(1)
    torch.testing.assert_close(result.reference_predictions[:, 1], expected, rtol=1e-12, atol=1e-14)
    # profile-fixed: the references are scored with the SEQUENCE's weights (held constant): a linear target
    expected = (weights.unsqueeze(1) * ref_logits).sum(-1).mean(1)
    torch.testing.assert_close(result.reference_predictions[:, 2], expected, rtol=1e-12, atol=1e-14)


def test_the_profile_multipliers_by_hand():
    """The gradient of ``softmax_weighted`` is the Rescale multiplier of each ``l_p softmax(l)_p`` (each row its
    own softmax), written out in a float64 loop; the derivative where the difference is zero."""
    from dnalift.attribution.targets import softmax_weighted

    ref = torch.tensor([[0.5, -1.0, 2.0, 0.25], [1.0, 1.0, -3.0, 0.0]], dtype=F64, requires_grad=True)
    anchor = torch.tensor([[1.5, -1.0, 0.0, 0.75], [2.0, 1.0, 1.0, 0.5]], dtype=F64)
    value = softmax_weighted(ref, anchor)
    (grad,) = torch.autograd.grad(value.sum(), ref)
    for row in range(2):
        r, x = ref[row].detach().tolist(), anchor[row].tolist()
        sr = [math.exp(v) / sum(math.exp(u) for u in r) for v in r]
        sx = [math.exp(v) / sum(math.exp(u) for u in x) for v in x]
        assert value[row].item() == pytest.approx(sum(a * b for a, b in zip(r, sr)), rel=1e-15)
        for p in range(4):
            if x[p] == r[p]:
                want = sr[p] * (1 + r[p] * (1 - sr[p]))  # d(l_p s_p)/dl_p at the reference
            else:
                want = (x[p] * sx[p] - r[p] * sr[p]) / (x[p] - r[p])
            assert grad[row, p].item() == pytest.approx(want, rel=1e-13), (row, p)
        # the multipliers times the differences are the change of the value, less the change of the products
        # whose logit did not move (row 0, position 1: its weight changed with the others; no rule can give it)
        change = sum(x[p] * sx[p] - r[p] * sr[p] for p in range(4) if x[p] != r[p])
        assert sum(grad[row, p].item() * (x[p] - r[p]) for p in range(4)) == pytest.approx(change, rel=1e-13)


def test_outputs_by_name_and_index():
    model = frozen(TwoHeads, dtype=F64, as_dict=True)
    X, R = _data()
    program = export(model, X[:2])
    table = {row["name"]: row for row in outputs_of(program)}
    assert table["profile"]["shape"] == (2, 12) and "profile" in table["profile"]["targets"]
    assert table["counts"]["targets"][:2] == ["counts", "counts"]
    unit = attribute(program, X, R, target="profile:13", dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(unit.predictions, model(X)["profile"].reshape(3, -1)[:, 13])
    with pytest.raises(TargetError, match="profile:99 does not exist: .*output profile has 24 value"):
        attribute(program, X, R, target="profile:99", dtype=F64)
    with pytest.raises(TargetError, match=r"its outputs are profile \(2, 12\), counts \(1,\)"):
        attribute(program, X, R, target="signal", dtype=F64)
    with pytest.raises(TargetError, match="given twice"):
        attribute(program, X, R, target=["counts", "counts:0"], dtype=F64)


def test_unit_names_of_a_one_output_model():
    from dnalift import from_module
    from dnalift.attribution.engine import targets_of

    class Named(nn.Module):
        output_names = ("a", "b", "c")

        def forward(self, x):
            return x.sum(-1)[:, :3]

    class Unnamed(nn.Module):
        def forward(self, x):
            return x.sum(-1)[:, :1]

    model = from_module(Named(), input_shape=(4, 6))
    targets = targets_of(model, ["c", 0, "-2"])
    assert [(t.index, t.label) for t in targets] == [(2, "c"), (0, "0"), (1, "-2")]
    with pytest.raises(TargetError, match="0=a, 1=b, 2=c"):
        targets_of(model, ["d"])
    with pytest.raises(TargetError, match="given twice"):
        targets_of(model, ["a", "0"])
    with pytest.raises(TargetError, match="3 value"):
        targets_of(model, [3])
    with pytest.raises(TargetError, match="declares no output names"):
        targets_of(from_module(Unnamed(), input_shape=(4, 6)), ["x"])
    with pytest.raises(TargetError, match="no target"):
        targets_of(model, [])


def test_a_name_with_several_values_asks_for_an_index():
    class Wide(nn.Module):
        def forward(self, x):
            return x.sum(-1), x.mean(1)

    X, R = _data()
    program = export(Wide(), X[:2])
    with pytest.raises(TargetError, match=r"'0' is an output with 4 values per sequence; give one of them as 0:INDEX"):
        attribute(program, X, R, target="0")
    result = attribute(program, X, R, target=["0:2", "1:5"], dtype=F64)
    torch.testing.assert_close(result.predictions, torch.stack([X[:, 2].sum(-1), X.mean(1)[:, 5]], 1))


def test_control_inputs_get_zeros_or_are_refused():
    class WithControl(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(6, 1, 3)

        def forward(self, x, control):
            return self.conv(torch.cat([x, control], 1)).sum(-1) + torch.log(control.sum((1, 2)) + 1).unsqueeze(1)

    model = frozen(WithControl, dtype=F64)
    X, R = _data()
    program = export(model, X[:2], torch.zeros(2, 2, 12, dtype=F64))
    result = attribute(program, X, R, dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(result.predictions, model(X, torch.zeros(3, 2, 12, dtype=F64))[:, 0])
    with pytest.raises(ModelInputError, match="input\\(s\\) beside the sequence"):
        attribute(program, X, R, dtype=F64, control_inputs="refuse")


# -------------------------------------------------------------------------------------------- bpnet-lite
bpnetlite = pytest.importorskip("bpnetlite.bpnet")
tangermeme = pytest.importorskip("tangermeme.deep_lift_shap")


class _Fixed(nn.Module):
    """A wrapper with the profile logits weighted by constant weights: what dnalift's ``profile-fixed`` target is
    for one sequence."""

    def __init__(self, model, n_controls, weights):
        super().__init__()
        self.model, self.n_controls = model, n_controls
        self.register_buffer("weights", weights)

    def forward(self, x):
        outputs = self.model(x, torch.zeros(len(x), self.n_controls, x.shape[-1], dtype=x.dtype)) \
            if self.n_controls else self.model(x)
        logits = outputs[0].reshape(len(x), -1)
        return (self.weights * (logits - logits.mean(1, keepdim=True))).sum(1, keepdim=True)


def _bpnet(n_controls):
    torch.manual_seed(1)
    return bpnetlite.BPNet(n_filters=8, n_layers=2, n_outputs=2, n_control_tracks=n_controls,
                           verbose=False).double().eval()


def _chrombpnet():
    from bpnetlite.chrombpnet import ChromBPNet

    torch.manual_seed(2)
    bias = bpnetlite.BPNet(n_filters=4, n_layers=1, n_outputs=1, n_control_tracks=0, verbose=False)
    accessibility = bpnetlite.BPNet(n_filters=8, n_layers=2, n_outputs=1, n_control_tracks=0, verbose=False)
    return ChromBPNet(bias=bias, accessibility=accessibility).double().eval()


def _relative(theirs, mine):
    """Largest difference per sequence relative to the sequence's largest score."""
    return ((theirs - mine).abs().flatten(1).max(1).values / mine.abs().flatten(1).max(1).values).max().item()


@pytest.mark.parametrize("kind", ["bpnet", "bpnet-no-controls", "chrombpnet"])
def test_bpnet_lite_targets_match_bpnet_lite(kind):
    from bpnetlite.attribute import deep_lift_shap
    from bpnetlite.chrombpnet import _Exp, _Log

    length = 260
    model, n_controls = {"bpnet": lambda: (_bpnet(2), 2), "bpnet-no-controls": lambda: (_bpnet(0), 0),
                         "chrombpnet": lambda: (_chrombpnet(), 0)}[kind]()
    for p in model.parameters():
        p.requires_grad_(False)
    X, R = _data(n=3, length=length, r=3, seed=5)
    examples = (X[:2], torch.zeros(2, n_controls, length, dtype=F64)) if n_controls else (X[:2],)
    program = export(model, *examples)
    targets = ["counts", "profile", "profile-fixed"]
    ours = attribute(program, X, R, target=targets, dtype=F64)
    change = ours.predictions - ours.reference_predictions
    assert (ours.deltas.abs() <= 1e-12 * change.abs().clamp(min=1e-3)).all()
    args = (torch.zeros(len(X), n_controls, length, dtype=F64),) if n_controls else None
    # bpnet-lite's own wrappers and deep_lift_shap (which registers logits * softmax(logits) as a nonlinearity)
    for t, wrapper in ((0, bpnetlite.CountWrapper(model)), (1, bpnetlite.ProfileWrapper(model))):
        theirs = deep_lift_shap(wrapper, X, args=args, references=R, hypothetical=True, device="cpu",
                                warning_threshold=1e9, batch_size=9)
        assert _relative(theirs, ours.hypothetical[:, t]) <= 1e-6, targets[t]
        with torch.no_grad():
            on_x = wrapper(X, *(args or ()))[:, 0]
        torch.testing.assert_close(ours.predictions[:, t], on_x, rtol=1e-12, atol=1e-14)
    # profile-fixed: tangermeme on a wrapper whose weights are the sequence's softmax
    with torch.no_grad():
        profile = model(X, *(args or ()))[0]
    weights = torch.softmax(profile.reshape(len(X), -1), -1)
    extra = {_Exp: tangermeme._nonlinear, _Log: tangermeme._nonlinear}
    for i in range(len(X)):
        wrapper = _Fixed(model, n_controls, weights[i]).eval()
        theirs = tangermeme.deep_lift_shap(wrapper, X[i:i + 1], references=R[i:i + 1], hypothetical=True,
                                           warning_threshold=1e9, batch_size=8, additional_nonlinear_ops=extra)
        assert _relative(theirs, ours.hypothetical[i:i + 1, 2]) <= 1e-6, i
    # the two profile targets are different scores
    assert _relative(ours.hypothetical[:, 2], ours.hypothetical[:, 1]) > 0.1
    # float32: summation-to-delta within 1e-3 of the mean change
    single = attribute(program, X.float(), R.float(), target=targets)
    mean_change = (single.predictions - single.reference_predictions).abs().mean()
    assert single.deltas.abs().max() <= 1e-3 * max(float(mean_change), 1e-6)
