"""Recurrent layers (issue 19): ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` get exactly the scores of the same network
written out as explicit cells (``F.linear``, ``sigmoid``, ``tanh``, products, a Python loop over positions), in
every mode, and sum to delta in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import random_one_hot
from dnalift.attribution.engine import attribute, describe
from dnalift.models.export import from_module

F64 = torch.float64
MODES = ("rescale", "revealcancel", "genomics")
LENGTH = 5


# ----------------------------------------------------------------------------------- explicit cells
def lstm_cells(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, reverse):
    """One LSTM direction, one position at a time: x (n, length, features) -> (n, length, hidden)."""
    outputs = [None] * x.shape[1]
    for t in (reversed(range(x.shape[1])) if reverse else range(x.shape[1])):
        gates = F.linear(x[:, t], w_ih, b_ih) + F.linear(h, w_hh, b_hh)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        if w_hr is not None:
            h = F.linear(h, w_hr)
        outputs[t] = h
    return torch.stack(outputs, dim=1)


def gru_cells(x, h, w_ih, w_hh, b_ih, b_hh, w_hr, reverse):
    """One GRU direction (PyTorch's equations), one position at a time."""
    outputs = [None] * x.shape[1]
    for t in (reversed(range(x.shape[1])) if reverse else range(x.shape[1])):
        x_r, x_z, x_n = F.linear(x[:, t], w_ih, b_ih).chunk(3, dim=1)
        h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h = (1 - z) * n + z * h
        outputs[t] = h
    return torch.stack(outputs, dim=1)


def rnn_cells(x, h, w_ih, w_hh, b_ih, b_hh, w_hr, reverse):
    outputs = [None] * x.shape[1]
    for t in (reversed(range(x.shape[1])) if reverse else range(x.shape[1])):
        h = torch.tanh(F.linear(x[:, t], w_ih, b_ih) + F.linear(h, w_hh, b_hh))
        outputs[t] = h
    return torch.stack(outputs, dim=1)


class Explicit(nn.Module):
    """The recurrent layer ``rnn`` (batch first) written out with its own weights."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn
        self.cells = {nn.LSTM: lstm_cells, nn.GRU: gru_cells, nn.RNN: rnn_cells}[type(rnn)]

    def weights(self, layer, suffix):
        get = lambda name: getattr(self.rnn, f"{name}_l{layer}{suffix}", None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), get("weight_hr")

    def forward(self, x):
        rnn = self.rnn
        directions = 2 if rnn.bidirectional else 1
        for layer in range(rnn.num_layers):
            outputs = []
            for d, suffix in enumerate(["", "_reverse"][:directions]):
                size = rnn.proj_size if getattr(rnn, "proj_size", 0) else rnn.hidden_size
                h = x.new_zeros(x.shape[0], size)
                state = (h, x.new_zeros(x.shape[0], rnn.hidden_size)) if isinstance(rnn, nn.LSTM) else (h,)
                outputs.append(self.cells(x, *state, *self.weights(layer, suffix), reverse=d == 1))
            x = torch.cat(outputs, dim=2) if directions == 2 else outputs[0]
        return x


class Net(nn.Module):
    """conv -> ReLU -> recurrent layer -> flatten -> dense -> 2 outputs; ``explicit`` swaps in the cells."""

    def __init__(self, rnn, *, explicit=False):
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 3, padding=1)
        self.rnn = rnn
        self.explicit = Explicit(rnn) if explicit else None
        width = (rnn.proj_size or rnn.hidden_size if isinstance(rnn, nn.LSTM) else rnn.hidden_size)
        self.dense = nn.Linear(width * (2 if rnn.bidirectional else 1) * LENGTH, 2)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        if self.explicit is not None:
            out = self.explicit(h.transpose(1, 2))
        elif self.rnn.batch_first:
            out, _ = self.rnn(h.transpose(1, 2))
        else:
            out, _ = self.rnn(h.permute(2, 0, 1))
            out = out.transpose(0, 1)
        return self.dense(out.flatten(1))


def make(cls, seed=0, **options):
    torch.manual_seed(seed)
    rnn = cls(6, 5, **options)
    net = Net(rnn).to(F64).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    explicit = Net(rnn, explicit=True).to(F64).eval()
    explicit.load_state_dict(net.state_dict(), strict=False)
    return net, explicit


SLOW = pytest.mark.slow
CASES = [
    pytest.param(nn.LSTM, dict(num_layers=2, bidirectional=True), marks=SLOW),  # input (length, n, features)
    (nn.LSTM, dict(batch_first=True, bidirectional=True)),
    (nn.LSTM, dict(bias=False, proj_size=3)),
    pytest.param(nn.GRU, dict(num_layers=2, bidirectional=True, batch_first=True), marks=SLOW),
    (nn.GRU, dict(bias=False)),
    (nn.RNN, dict(batch_first=True, num_layers=2)),
]


def assert_sums_to_delta(result, tolerance=1e-9):
    change = result.predictions - result.reference_predictions
    total = result.contributions.flatten(result.predictions.dim()).sum(-1)
    assert torch.all((total - change).abs() <= tolerance * change.abs().clamp(min=1)), (total - change)


@pytest.mark.parametrize("cls, options", CASES, ids=lambda c: getattr(c, "__name__", None) or
                         ",".join(f"{k}={v}" for k, v in c.items()))
def test_recurrent_layers_get_the_scores_of_explicit_cells_in_every_mode(cls, options):
    net, explicit = make(cls, **options)
    X = random_one_hot(2, LENGTH, seed=1, dtype=F64)
    R = random_one_hot(4, LENGTH, seed=2, dtype=F64).reshape(2, 2, 4, LENGTH)
    with torch.no_grad():
        assert torch.allclose(net(X), explicit(X), atol=1e-12)
    model, reference = from_module(net, input_length=LENGTH), from_module(explicit, input_length=LENGTH)
    for mode in MODES:
        got = attribute(model, X, R, target=[0, 1], rule=mode, dtype=F64)
        want = attribute(reference, X, R, target=[0, 1], rule=mode, dtype=F64)
        assert torch.allclose(got.contributions, want.contributions, atol=1e-9, rtol=0), mode
        assert torch.allclose(got.hypothetical, want.hypothetical, atol=1e-9, rtol=0), mode
        assert_sums_to_delta(got)


def test_gates_get_the_product_rule_and_their_nonlinearities_the_mode(caplog):
    net, _ = make(nn.LSTM, batch_first=True)
    model = from_module(net, input_length=LENGTH)
    X = random_one_hot(1, LENGTH, seed=1, dtype=F64)
    with caplog.at_level("WARNING"):
        assert_sums_to_delta(attribute(model, X, X * 0, dtype=F64, allow_gradient=("lstm",)))
    assert "aten.lstm does not occur in the model, or is written out as its cells" in caplog.text
    rows = describe(model, rule="revealcancel")
    rules = {row["op"]: row["rule"] for row in rows}
    assert "aten.lstm" not in rules
    kinds = [row["kind"] for row in rows if row["op"] == "aten.mul"]
    # 3 gates per position; the first forget gate multiplies the constant initial cell state (a linear map)
    assert kinds.count("product") == 3 * LENGTH - 1 and kinds.count("linear") == 1
    assert "RevealCancel" in rules["aten.sigmoid"] and "RevealCancel" in rules["aten.tanh"]
    rows = describe(model, rule="genomics")
    assert any("RevealCancel" in row["rule"] for row in rows if row["op"] == "aten.sigmoid")  # fed by dense maps
    assert any("Rescale" in row["rule"] for row in rows if row["op"] == "aten.relu")           # fed by the conv


@pytest.mark.parametrize("save", [pytest.param("pt2", marks=SLOW), "program", "torchscript"])  # pt2: also the CLI test
def test_recurrent_layers_from_every_format_sum_to_delta(save, tmp_path):
    from dnalift.models import load_model

    net, explicit = make(nn.GRU, batch_first=True)
    X = random_one_hot(2, LENGTH, seed=3, dtype=F64)
    R = random_one_hot(2, LENGTH, seed=4, dtype=F64)[:, None]
    example = torch.zeros(2, 4, LENGTH, dtype=F64)
    program = torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    if save == "pt2":
        torch.export.save(program, tmp_path / "m.pt2")
        model = load_model(tmp_path / "m.pt2")
    elif save == "program":
        model = program
    else:
        torch.jit.trace(net, (example,)).save(str(tmp_path / "m.pt"))
        model = load_model(tmp_path / "m.pt", input_length=LENGTH)
    got = attribute(model, X, R, rule="revealcancel", dtype=F64)
    want = attribute(from_module(explicit, input_length=LENGTH), X, R, rule="revealcancel", dtype=F64)
    assert torch.allclose(got.contributions, want.contributions, atol=1e-9, rtol=0)
    assert_sums_to_delta(got)
