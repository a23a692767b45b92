"""Tests of dnalift.models.export: control inputs, layouts, graph clean-ups and the per-module export cache."""

from __future__ import annotations

import gc
import inspect
import warnings
import weakref

import pytest
import torch
import torch.nn as nn

import dnalift.models.export as export
import toy_models as toys
from conftest import frozen, random_one_hot
from dnalift.errors import ModelFormatError, ModelInputError, OptionError
from dnalift.models.passes import scalarize_shape_arithmetic
from dnalift.models import from_module, from_program, load_model, program_for_module

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


def call_targets(loaded) -> set:
    return {n.target for n in loaded.program.graph.nodes if n.op == "call_function"}


def trace(module, *example):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(module, example)


# --------------------------------------------------------------------------------------------------------
# control inputs


def test_a_required_second_input_needs_its_shape():
    net = frozen(toys.WithControl)
    with pytest.raises(ModelInputError, match="further input 'x_ctl'") as err:
        from_module(net, input_shape=(4, 12))
    assert err.value.argument == "control_shapes"
    loaded = from_module(net, input_shape=(4, 12), control_shapes=[(2, 12)])
    assert loaded.control_shapes == ((2, 12),) and loaded.output_shapes == {"": (1,)}
    users = loaded.program.graph_signature.user_inputs
    assert len(users) == 2
    x, c = random_one_hot(3, 12), torch.rand(3, 2, 12)
    torch.testing.assert_close(loaded.module()(x, c), net(x, c))
    batch = [n.meta["val"].shape[0] for n in loaded.program.graph.nodes if n.name in users]
    assert all(isinstance(b, torch.SymInt) for b in batch) and batch[0].node.expr == batch[1].node.expr


def test_an_optional_input_keeps_its_default():
    class Optional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(4, 2, 3)

        def forward(self, x, x_ctl=None, *, scale: float = 1.0):
            return self.conv(x).mean(-1) * scale

    assert from_module(Optional(), input_shape=(4, 10)).control_shapes == ()


def test_traced_second_input_is_read_from_the_archive(tmp_path):
    net = frozen(toys.WithControl)
    path = tmp_path / "ctl.pt"
    torch.jit.save(trace(net, random_one_hot(2, 12), torch.rand(2, 2, 12)), str(path))
    loaded = load_model(path)
    assert (loaded.input_shape, loaded.control_shapes) == ((4, 12), ((2, 12),))
    assert [t.shape for t in loaded.example_inputs(1)] == [(1, 4, 12), (1, 2, 12)]


# --------------------------------------------------------------------------------------------------------
# values computed from sizes (TorchScript traces) and from the batch size


def test_traced_crop_gets_a_known_length(tmp_path):
    net = frozen(toys.CroppedProfile, trimming=4)
    path = tmp_path / "crop.pt"
    torch.jit.save(trace(net, random_one_hot(2, 30)), str(path))
    loaded = load_model(path)
    assert loaded.output_shapes == {"0": (2, 22), "1": (1,)}
    for n in (1, 5):
        x = random_one_hot(n, 30, seed=n)
        for got, want in zip(loaded.module()(x), net(x)):
            torch.testing.assert_close(got, want)


def test_scripted_crop_loads(tmp_path):
    net = frozen(toys.CroppedProfile, trimming=3)
    path = tmp_path / "crop_script.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    loaded = load_model(path, input_length=20)
    assert loaded.output_shapes == {"0": (2, 14), "1": (1,)}
    x = random_one_hot(3, 20)
    torch.testing.assert_close(loaded.module()(x)[0], net(x)[0])


def test_scalarize_turns_tensor_size_arithmetic_into_numbers():
    """The pass on a hand-made graph: scalar_tensor(L) - 4 read back with _local_scalar_dense becomes L - 4."""
    aten = torch.ops.aten
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    four = graph.get_attr("four")
    size = graph.call_function(aten.sym_size.int, (x, 2))
    as_tensor = graph.call_function(aten.scalar_tensor.default, (size,), {"dtype": torch.int64})
    diff = graph.call_function(aten.sub.Tensor, (as_tensor, four))
    read = graph.call_function(aten._local_scalar_dense.default, (diff,))
    graph.output(graph.call_function(aten.slice.Tensor, (x, 2, 0, read)))
    root = nn.Module()
    root.register_buffer("four", torch.tensor(4))
    gm = torch.fx.GraphModule(root, graph)
    assert scalarize_shape_arithmetic(gm) == 1
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert aten._local_scalar_dense.default not in targets and aten.scalar_tensor.default not in targets
    assert gm(torch.ones(1, 2, 10)).shape == (1, 2, 6)


@pytest.mark.parametrize("kind", ["module", "trace", "pt2"])
def test_zeros_of_the_batch_size_follow_the_batch(tmp_path, kind):
    net = frozen(toys.BatchZeros)
    if kind == "module":
        loaded = from_module(net, input_shape=(4, 10))
    elif kind == "trace":
        torch.jit.save(trace(net, random_one_hot(2, 10)), str(tmp_path / "z.pt"))
        loaded = load_model(tmp_path / "z.pt")
    else:
        batch = torch.export.Dim("batch")
        ep = torch.export.export(net, (random_one_hot(2, 10),), dynamic_shapes=({0: batch},))
        torch.export.save(ep, str(tmp_path / "z.pt2"))
        loaded = load_model(tmp_path / "z.pt2")
    for n in (1, 6):
        x = random_one_hot(n, 10, seed=n)
        torch.testing.assert_close(loaded.module()(x), net(x))


def test_a_size_read_from_tensor_values_is_refused_in_one_line(tmp_path):
    class ValueCrop(nn.Module):
        def forward(self, x):
            keep = int(x[0, 0].sum().item())  # how many positions depends on the data
            return x[:, :, :keep].sum(dim=(1, 2)).unsqueeze(1)

    path = tmp_path / "value_crop.pt"
    torch.jit.save(torch.jit.script(ValueCrop()), str(path))
    with pytest.raises(ModelFormatError) as err:
        load_model(path, input_length=8)
    assert "\n" not in str(err.value) and "torch.export" in str(err.value)


# --------------------------------------------------------------------------------------------------------
# bookkeeping in the graph: autocast, casts


def test_disabled_autocast_is_inlined():
    net = frozen(toys.DisabledAutocast)
    loaded = from_module(net, input_shape=(4, 12))
    targets = call_targets(loaded)
    assert torch.ops.higher_order.wrap_with_autocast not in targets
    assert all(isinstance(t, torch._ops.OpOverload) for t in targets), targets  # only ATen ops are left
    assert torch.ops.aten._assert_tensor_metadata.default in targets  # the no-op casts stay plain ATen nodes
    x = random_one_hot(3, 12)
    torch.testing.assert_close(loaded.module()(x), net(x))


def test_disabled_autocast_in_a_pt2_is_inlined(tmp_path):
    net = frozen(toys.DisabledAutocast)
    ep = torch.export.export(net, (random_one_hot(2, 12),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    assert any(n.target is torch.ops.higher_order.wrap_with_autocast for n in ep.graph.nodes)
    loaded = from_program(ep)
    assert torch.ops.higher_order.wrap_with_autocast not in call_targets(loaded)
    x = random_one_hot(2, 12)
    torch.testing.assert_close(loaded.module()(x), net(x))


def test_enabled_autocast_is_refused_naming_the_line():
    with pytest.raises(ModelFormatError) as err:
        from_module(frozen(toys.EnabledAutocast), input_shape=(4, 12))
    line = next(i for i, text in enumerate(inspect.getsource(toys.EnabledAutocast).splitlines())
                if "y = self.out(h)" in text)
    expected = inspect.getsourcelines(toys.EnabledAutocast)[1] + line
    msg = str(err.value)
    assert f"toy_models.py:{expected}: y = self.out(h)" in msg and "torch.bfloat16" in msg and "\n" not in msg


# --------------------------------------------------------------------------------------------------------
# layouts


def test_layout_auto_finds_channels_last_from_the_data_shape():
    net = frozen(toys.ChannelsLastCNN)
    loaded = from_module(net, input_shape=(4, 30))  # dnalift's data shape; the model takes (30, 4)
    assert (loaded.layout, loaded.input_shape, loaded.input_length) == ("NLC", (30, 4), 30)


@pytest.mark.parametrize("layout, shape", [("ncl", (4, 16)), ("nlc", (16, 4)), ("NLC", (16, 4))])
def test_layout_given(layout, shape):
    net = frozen(toys.PaddedCNN) if shape[0] == 4 else frozen(toys.ChannelsLastCNN)
    loaded = from_module(net, input_length=16, layout=layout)
    assert loaded.input_shape == shape and loaded.layout == layout.upper()


def test_layout_that_does_not_fit(tmp_path):
    with pytest.raises(ModelInputError, match="fails on one-hot input"):
        from_module(frozen(toys.ChannelsLastCNN), input_length=30, layout="ncl")
    ep = torch.export.export(frozen(toys.ChannelsLastCNN), (random_one_hot(2, 30, layout="NLC"),))
    with pytest.raises(ModelInputError, match="layout='ncl'") as err:
        from_program(ep, layout="ncl")
    assert err.value.argument == "layout"
    with pytest.raises(OptionError) as err:
        from_module(frozen(toys.PaddedCNN), input_length=16, layout="lnc")
    assert err.value.argument == "layout"


def test_load_model_takes_a_layout(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(frozen(toys.ChannelsLastCNN).state_dict(), path)
    loaded = load_model(path, arch="toy_models:ChannelsLastCNN", input_length=30, layout="nlc")
    assert (loaded.layout, loaded.input_shape) == ("NLC", (30, 4))


# --------------------------------------------------------------------------------------------------------
# one export per module


@pytest.fixture
def count_exports(monkeypatch):
    calls = []
    real = export.export_module

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(export, "export_module", counting)
    return calls


def test_program_for_module_exports_once(count_exports):
    net = frozen(toys.PaddedCNN)
    first = program_for_module(net, (4, 20))
    assert program_for_module(net, (4, 20)) is first and len(count_exports) == 1
    other = program_for_module(net, (4, 24))
    assert other is not first and other.input_shape == (4, 24) and len(count_exports) == 2


def test_program_for_module_sees_changed_parameters(count_exports):
    net = frozen(toys.PaddedCNN)
    x = random_one_hot(2, 20)
    first = program_for_module(net, (4, 20))
    with torch.no_grad():
        net.out.bias.add_(1.0)  # in place, as an optimizer step
    second = program_for_module(net, (4, 20))
    assert second is not first
    torch.testing.assert_close(second.module()(x), net(x))
    net.load_state_dict(frozen(toys.PaddedCNN, seed=5).state_dict())
    third = program_for_module(net, (4, 20))
    assert third is not second and len(count_exports) == 3
    torch.testing.assert_close(third.module()(x), net(x))


def test_program_for_module_does_not_keep_the_module_alive():
    net = frozen(toys.PaddedCNN)
    loaded = program_for_module(net, (4, 20))
    alive = weakref.ref(net)
    del net
    gc.collect()
    assert alive() is None
    assert loaded.module()(random_one_hot(1, 20)).shape == (1, 3)  # the program stands on its own


def test_hashes_follow_the_weights():
    a, b = frozen(toys.PaddedCNN, seed=1), frozen(toys.PaddedCNN, seed=2)
    assert export.sha256_of_module(a) == export.sha256_of_module(frozen(toys.PaddedCNN, seed=1))
    assert export.sha256_of_module(a) != export.sha256_of_module(b)
    pa = from_module(a, input_shape=(4, 20)).program
    assert export.sha256_of_program(pa) != export.sha256_of_program(from_module(b, input_shape=(4, 20)).program)
