"""Tests of dnalift.normalize.weights: first-layer weight normalisation for one-hot input (DeepLIFT paper 2.6)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dnalift.errors import DnaliftError
from dnalift.models import from_module, load_model
from dnalift.normalize.weights import normalize_first_layer
from tests import toy_models as toys

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


def one_hot(n, length, *, seed=0, layout="NCL"):
    g = torch.Generator().manual_seed(seed)
    x = F.one_hot(torch.randint(0, 4, (n, length), generator=g), 4).to(torch.float64)  # (n, L, 4)
    return x if layout == "NLC" else x.transpose(1, 2).contiguous()


def set_column(x, j, value, layout):
    """Copy of x with column j (all 4 channels) set to `value`."""
    x = x.clone()
    if layout == "NLC":
        x[:, j, :] = value
    else:
        x[:, :, j] = value
    return x


# --------------------------------------------------------------------------------------------------------
# more first layers than the toy models have


class MatmulChannelsLast(nn.Module):
    """(n, L, 4) @ W (4, 3): a per-position dense layer via aten.matmul."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3))
        self.out = nn.Linear(3, 1)

    def forward(self, x):
        return self.out(torch.relu(x @ self.w).mean(dim=1))


class AddmmScaled(nn.Module):
    """addmm(b, flatten(x), W.t(), alpha=0.5): bias, transposed constant weight and a scale."""

    def __init__(self, length=10):
        super().__init__()
        self.w = nn.Parameter(torch.randn(5, 4 * length))
        self.b = nn.Parameter(torch.randn(5))

    def forward(self, x):
        h = torch.addmm(self.b, x.reshape(x.shape[0], -1), self.w.t(), alpha=0.5)
        return torch.relu(h).sum(dim=1, keepdim=True)


class PadThenLinear(nn.Module):
    """Zero padding by F.pad, then a dense layer on the flattened input: padded entries never see data."""

    def __init__(self, length=10):
        super().__init__()
        self.dense = nn.Linear(4 * (length + 3), 2)

    def forward(self, x):
        return self.dense(F.pad(x, (1, 2)).flatten(1))


class ReflectPadded(nn.Module):
    """padding_mode='reflect': padded columns are copies of real one-hot columns."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 3, 5, padding=2, padding_mode="reflect")
        self.out = nn.Linear(3, 1)

    def forward(self, x):
        return self.out(torch.relu(self.conv(x)).mean(dim=-1))


class BatchConcatRevComp(nn.Module):
    """The reverse complement concatenated along the batch, one padded convolution, halves added."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 3, 5, padding=2)
        self.out = nn.Linear(3, 1)

    def forward(self, x):
        n = x.shape[0]
        h = torch.relu(self.conv(torch.cat([x, x.flip(1, 2)], dim=0)))
        return self.out((h[:n] + h[n:]).mean(dim=-1))


class TwoChannelsOnly(nn.Module):
    """Reads only A and C: its weights do not see whole one-hot columns."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 3, 3)

    def forward(self, x):
        return self.conv(x[:, :2]).mean(dim=-1)


CASES = {
    "paper_valid_conv": (lambda: toys.PaperCNN(), (4, 200)),
    "padded_conv": (lambda: toys.PaddedCNN(kernel=7, padding=3), (4, 30)),
    "padded_dilated_conv": (lambda: toys.PaddedCNN(kernel=5, padding=4, dilation=2), (4, 30)),
    "same_even_kernel": (lambda: toys.PaddedCNN(kernel=6, padding="same"), (4, 30)),
    "linear_first": (lambda: toys.LinearFirst(length=20), (4, 20)),
    "channels_last": (lambda: toys.ChannelsLastCNN(), (30, 4)),
    "revcomp_shared_conv": (lambda: toys.RevCompCNN(), (4, 30)),
    "conv2d_basset": (lambda: toys.Conv2dFirst(), (4, 30)),
    "matmul_channels_last": (lambda: MatmulChannelsLast(), (10, 4)),
    "addmm_scaled": (lambda: AddmmScaled(10), (4, 10)),
    "pad_then_linear": (lambda: PadThenLinear(10), (4, 10)),
    "reflect_padding": (lambda: ReflectPadded(), (4, 10)),
    "batch_concat_revcomp": (lambda: BatchConcatRevComp(), (4, 10)),
}


def build(name, seed=0):
    make, shape = CASES[name]
    torch.manual_seed(seed)
    net = make().double().eval()
    loaded = from_module(net, input_shape=shape)
    return net, loaded


@pytest.fixture(scope="module")
def normalized_models():
    cache = {}

    def get(name):
        if name not in cache:
            net, loaded = build(name)
            cache[name] = (net, loaded, normalize_first_layer(loaded))
        return cache[name]

    return get


# --------------------------------------------------------------------------------------------------------
# hand-computed example


class TinyConv(nn.Module):
    """Conv1d(4, 1, 2) with weights (A..T rows) [[1, 2], [3, 4], [5, 6], [7, 8]] and bias 0.5."""

    def __init__(self, padding):
        super().__init__()
        self.conv = nn.Conv1d(4, 1, 2, padding=padding)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]]))
            self.conv.bias.fill_(0.5)

    def forward(self, x):
        return self.conv(x).flatten(1)


@pytest.mark.parametrize("padding, zero_output", [
    # column means: tap 0 -> (1+3+5+7)/4 = 4, tap 1 -> (2+4+6+8)/4 = 5; no padding: bias 0.5 + 4 + 5 = 9.5
    (0, [9.5, 9.5]),
    # padding 1, length 3: the first output sees (pad, column 0) -> 0.5 + 5, the last (column 2, pad) -> 0.5 + 4
    (1, [5.5, 9.5, 9.5, 4.5]),
])
def test_hand_computed_tiny_conv(padding, zero_output):
    net = TinyConv(padding).double().eval()
    loaded = from_module(net, input_shape=(4, 3))
    normed = normalize_first_layer(loaded)
    weight = normed.program.state_dict["conv.weight"]
    torch.testing.assert_close(weight, torch.tensor([[[-3.0, -3.0], [-1.0, -1.0], [1.0, 1.0], [3.0, 3.0]]],
                                                    dtype=torch.float64), rtol=0, atol=0)
    prog = normed.module()
    zero = torch.zeros(1, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(prog(zero), torch.tensor([zero_output], dtype=torch.float64), rtol=0, atol=1e-12)
    assert net(zero)[0, 0].item() == 0.5  # before: an all-zero input gives just the bias
    # every one of the 4^3 one-hot sequences keeps its output
    seqs = torch.tensor(list(itertools.product(range(4), repeat=3)))
    x = F.one_hot(seqs, 4).to(torch.float64).transpose(1, 2)
    torch.testing.assert_close(prog(x), net(x), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------------------
# predictions unchanged, zero column == average base


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("name", list(CASES))
def test_predictions_unchanged_on_one_hot(normalized_models, name):
    net, loaded, normed = normalized_models(name)
    assert normed.normalized and not loaded.normalized
    assert (normed.layout, normed.input_shape, normed.sha256) == (loaded.layout, loaded.input_shape, loaded.sha256)
    length = loaded.input_length
    prog = normed.module()
    for n, seed in ((1, 1), (5, 2)):
        x = one_hot(n, length, seed=seed, layout=loaded.layout)
        with torch.no_grad():
            torch.testing.assert_close(prog(x), net(x), rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("name", list(CASES))
def test_zero_column_scores_like_the_average_base(normalized_models, name):
    net, loaded, normed = normalized_models(name)
    layout, length = loaded.layout, loaded.input_length
    prog = normed.module()
    x = one_hot(4, length, seed=3, layout=layout)
    with torch.no_grad():
        for j in (0, length // 2, length - 1):  # the edges see padding in the padded models
            zero = set_column(x, j, 0.0, layout)
            average = set_column(x, j, 0.25, layout)
            torch.testing.assert_close(prog(zero), prog(average), rtol=1e-12, atol=1e-12)
        # the whole all-zero reference is the uniform reference
        zeros = torch.zeros(1, *loaded.input_shape, dtype=torch.float64)
        torch.testing.assert_close(prog(zeros), prog(zeros + 0.25), rtol=1e-12, atol=1e-12)
        # control: before normalisation a zero column is not the average base
        original = loaded.module()
        assert not torch.allclose(original(zeros), original(zeros + 0.25), rtol=1e-9, atol=1e-9)


def test_first_layer_output_of_a_zero_column_is_the_average_base(normalized_models):
    """At the first layer itself (the input of the first PReLU of the paper CNN)."""
    net, loaded, normed = normalized_models("paper_valid_conv")

    def first_layer(program, x):
        captured = {}

        class Capture(torch.fx.Interpreter):
            def run_node(self, node):
                result = super().run_node(node)
                if node.op == "call_function" and node.target == torch.ops.aten.prelu.default and not captured:
                    captured["pre"] = self.env[node.args[0]]
                return result

        Capture(program.module()).run(x)
        return captured["pre"]

    x = one_hot(2, 200, seed=5)
    zero = set_column(x, 17, 0.0, "NCL")
    average = set_column(x, 17, 0.25, "NCL")
    torch.testing.assert_close(first_layer(normed.program, zero), first_layer(normed.program, average),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(first_layer(normed.program, x), first_layer(loaded.program, x), rtol=0, atol=1e-12)
    assert not torch.allclose(first_layer(loaded.program, zero), first_layer(loaded.program, average))


def test_normalised_weights_sum_to_zero_over_bases_and_original_untouched(normalized_models):
    net, loaded, normed = normalized_models("paper_valid_conv")
    w = normed.program.state_dict["conv.weight"]
    assert w.shape == (20, 4, 15)
    torch.testing.assert_close(w.sum(dim=1), torch.zeros(20, 15, dtype=torch.float64), rtol=0, atol=1e-12)
    mu = net.conv.weight.mean(dim=1, keepdim=True)
    torch.testing.assert_close(w, net.conv.weight - mu, rtol=0, atol=1e-12)
    torch.testing.assert_close(normed.program.state_dict["conv.bias"], net.conv.bias + mu.sum(dim=(1, 2)),
                               rtol=0, atol=1e-12)
    # the original program and module keep their weights
    torch.testing.assert_close(loaded.program.state_dict["conv.weight"], net.conv.weight, rtol=0, atol=0)
    assert float(net.conv.weight.detach().sum(dim=1).abs().max()) > 0.01
    # deeper layers are not touched
    torch.testing.assert_close(normed.program.state_dict["dense1.weight"], net.dense1.weight, rtol=0, atol=0)


def test_already_normalised_is_returned_as_is(normalized_models):
    _, _, normed = normalized_models("linear_first")
    assert normalize_first_layer(normed) is normed


def test_torchscript_program_is_normalised(tmp_path):
    """A traced model converts to aten.convolution with buffers instead of parameters."""
    torch.manual_seed(6)
    net = toys.PaddedCNN().double().eval()
    path = tmp_path / "padded.pt"
    torch.jit.save(torch.jit.trace(net, one_hot(2, 25)), str(path))
    loaded = load_model(path)
    assert loaded.input_dtype == torch.float64
    normed = normalize_first_layer(loaded)
    x = one_hot(6, 25, seed=7)
    torch.testing.assert_close(normed.module()(x), net(x), rtol=1e-12, atol=1e-12)
    zero = set_column(x, 0, 0.0, "NCL")
    torch.testing.assert_close(normed.module()(zero), normed.module()(set_column(x, 0, 0.25, "NCL")),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("net, match", [
    (toys.GatedFirst(), "aten::mul"),
    (TwoChannelsOnly(), "2 of the 4 channels"),
])
def test_no_normalisable_first_layer(net, match):
    loaded = from_module(net, input_shape=(4, 12))
    with pytest.raises(DnaliftError, match=match) as err:
        normalize_first_layer(loaded)
    assert "--no-normalize" in str(err.value)


@pytest.mark.parametrize("second_layer", [False, True])
def test_a_first_transposed_convolution_is_left_with_the_reason(second_layer):
    """ConvTranspose1d's weight is (in, out, k): normalisation leaves it and says so, never a raw error; a model
    with another first layer beside it gets that one normalised with the same predictions."""
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose1d(4, 3, 3)
            self.conv = nn.Conv1d(4, 3, 3, padding=2)

        def forward(self, x):
            y = self.up(x).relu().sum(dim=(1, 2))
            return (y + self.conv(x).relu().sum(dim=(1, 2)))[:, None] if second_layer else y[:, None]

    model = from_module(Net().eval(), input_shape=(4, 20))
    if not second_layer:
        with pytest.raises(DnaliftError, match="transposed convolution.*--no-normalize"):
            normalize_first_layer(model)
        return
    normalized = normalize_first_layer(model)
    x = one_hot(5, 20).to(torch.float32)
    torch.testing.assert_close(normalized.program.module()(x), model.program.module()(x), rtol=1e-5, atol=1e-5)
