"""Tests of dnalift.models: every model format becomes one exported program with a variable batch size."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import struct
import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn

from dnalift.errors import DnaliftError, ModelFormatError, ModelInputError, UntrustedModelError
from dnalift.models import LoadedModel, check_input, from_module, load_model
from tests import toy_models as toys

ARCH = "tests.toy_models:PaperCNN"

# torch 2.13 deprecates torch.jit; the tests still write TorchScript files, as users have them
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


def one_hot(n, length, *, seed=0, layout="NCL", dtype=torch.float32):
    """Random one-hot batch (n, 4, length) or (n, length, 4)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 4, (n, length), generator=g)
    x = torch.nn.functional.one_hot(idx, 4).to(dtype)  # (n, L, 4)
    return x if layout == "NLC" else x.transpose(1, 2).contiguous()


def assert_same_outputs(loaded: LoadedModel, module: nn.Module, length: int, layout="NCL"):
    module.eval()
    prog = loaded.program.module()
    for n in (1, 5):
        x = one_hot(n, length, seed=n, layout=layout)
        with torch.no_grad():
            expected = module(x)
            got = prog(x)
        assert got.shape == expected.shape == (n, *loaded.output_shape)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def paper():
    torch.manual_seed(0)
    return toys.PaperCNN().eval()


# --------------------------------------------------------------------------------------------------------
# round trips of every format


def test_pt2_round_trip(tmp_path, paper):
    ep = torch.export.export(paper, (one_hot(2, 200),),
                             dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    path = tmp_path / "model.pt2"
    torch.export.save(ep, str(path))
    m = load_model(path)
    assert (m.format, m.input_shape, m.output_shape, m.layout, m.normalized) == ("pt2", (4, 200), (1,), "NCL",
                                                                                 False)
    assert m.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert m.path == str(path) and m.input_length == 200
    assert_same_outputs(m, paper, 200)


def test_pt2_with_fixed_batch_gets_a_variable_batch(tmp_path, paper):
    ep = torch.export.export(paper, (one_hot(1, 200),))  # static batch of 1
    path = tmp_path / "static.pt2"
    torch.export.save(ep, str(path))
    m = load_model(path)
    assert_same_outputs(m, paper, 200)


def test_pt2_exported_in_training_mode_is_switched_to_eval(tmp_path, caplog):
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv1d(4, 3, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                        nn.Linear(3 * 8, 2))
    net.eval()
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    net.train()
    ep = torch.export.export(net, (one_hot(2, 10),), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    path = tmp_path / "train.pt2"
    torch.export.save(ep, str(path))
    with caplog.at_level(logging.WARNING, logger="dnalift.models"):
        m = load_model(path)
    assert "training mode" in caplog.text
    assert_same_outputs(m, net.eval(), 10)  # deterministic: dropout off, running statistics used


@pytest.mark.parametrize("how", ["trace", "script"])
def test_torchscript_round_trip(tmp_path, paper, how):
    path = tmp_path / f"{how}.pt"
    ts = torch.jit.trace(paper, one_hot(2, 200)) if how == "trace" else torch.jit.script(paper)
    torch.jit.save(ts, str(path))
    m = load_model(path, input_length=200)
    assert (m.format, m.input_shape, m.layout) == ("torchscript", (4, 200), "NCL")
    assert m.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert_same_outputs(m, paper, 200)


def test_traced_torchscript_records_its_length(tmp_path, paper):
    path = tmp_path / "traced.pt"
    torch.jit.save(torch.jit.trace(paper, one_hot(2, 200)), str(path))
    m = load_model(path)  # no input_length: read from the traced inputs stored in the archive
    assert m.input_shape == (4, 200)


def test_scripted_torchscript_without_length_asks_for_it(tmp_path, paper):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(paper), str(path))
    with pytest.raises(ModelInputError, match="input_length=L") as err:
        load_model(path)
    assert err.value.argument == "input_length"


def test_state_dict_with_arch_round_trip(tmp_path, paper):
    path = tmp_path / "weights.pt"
    torch.save(paper.state_dict(), path)
    m = load_model(path, arch=ARCH, input_length=200)
    assert (m.format, m.arch, m.input_shape) == ("state_dict", ARCH, (4, 200))
    assert_same_outputs(m, paper, 200)


def test_state_dict_arch_kwargs_and_checkpoint_dict(tmp_path):
    torch.manual_seed(1)
    net = toys.PaddedCNN(kernel=5, padding=2).eval()
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 7, "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    m = load_model(path, arch="tests.toy_models:PaddedCNN", arch_kwargs={"kernel": 5, "padding": 2},
                   input_length=40)
    assert m.output_shape == (3,)
    assert_same_outputs(m, net, 40)
    m2 = load_model(path, arch="tests.toy_models:PaddedCNN", arch_kwargs='{"kernel": 5, "padding": 2}',
                    input_length=40)
    assert m2.output_shape == (3,)


def test_safetensors_state_dict(tmp_path):
    torch.manual_seed(2)
    net = toys.LinearFirst(length=12).eval()
    header, chunks, offset = {}, [], 0
    for name, t in net.state_dict().items():
        raw = t.contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    path = tmp_path / "weights.safetensors"
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(chunks))
    m = load_model(path, arch="tests.toy_models:LinearFirst", arch_kwargs={"length": 12}, input_length=12)
    assert m.format == "state_dict"
    assert_same_outputs(m, net, 12)


def test_state_dict_that_does_not_fit_lists_the_keys(tmp_path, paper):
    state = dict(paper.state_dict())
    state["extra.weight"] = state.pop("dense2.weight")
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    with pytest.raises(ModelFormatError) as err:
        load_model(path, arch=ARCH, input_length=200)
    msg = str(err.value)
    assert "missing keys: dense2.weight" in msg and "unexpected keys: extra.weight" in msg and "\n" not in msg


def test_state_dict_of_the_wrong_size(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(toys.PaperCNN(n_filters=10, hidden=8).state_dict(), path)
    with pytest.raises(ModelFormatError, match="size mismatch"):
        load_model(path, arch=ARCH, input_length=200)


def test_state_dict_without_arch_or_with_a_bad_arch(tmp_path, paper):
    path = tmp_path / "weights.pt"
    torch.save(paper.state_dict(), path)
    with pytest.raises(ModelFormatError, match="arch='package.module:Class'") as err:
        load_model(path, input_length=200)
    assert err.value.argument == "arch"
    with pytest.raises(ModelFormatError, match="package.module:Class"):
        load_model(path, arch="PaperCNN", input_length=200)
    with pytest.raises(ModelFormatError, match="cannot import"):
        load_model(path, arch="no_such_package_xyz:Net", input_length=200)
    with pytest.raises(ModelFormatError, match="has no 'Nope'"):
        load_model(path, arch="tests.toy_models:Nope", input_length=200)
    with pytest.raises(ModelInputError, match="input_length"):
        load_model(path, arch=ARCH)


def test_state_dict_length_from_a_module_attribute(tmp_path, monkeypatch):
    monkeypatch.setattr(toys.LinearFirst, "input_length", 20, raising=False)
    path = tmp_path / "weights.pt"
    torch.save(toys.LinearFirst().state_dict(), path)
    assert load_model(path, arch="tests.toy_models:LinearFirst").input_shape == (4, 20)


def test_pickle_with_trust_round_trip(tmp_path, paper):
    path = tmp_path / "whole.pt"
    torch.save(paper, path)
    m = load_model(path, trust=True, input_length=200)
    assert m.format == "pickle"
    assert_same_outputs(m, paper, 200)


def test_pickle_without_trust_is_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled.marker"
    path = tmp_path / "whole.pt"
    torch.save(toys.MarkerModule(str(marker)), path)
    assert not marker.exists()
    with pytest.raises(UntrustedModelError) as err:
        load_model(path, input_length=3)
    assert not marker.exists(), "the untrusted pickle was unpickled"
    msg = str(err.value)
    assert "pickle" in msg and "torch.jit.save" in msg and "torch.export.save" in msg and "trust=True" in msg
    assert err.value.argument == "trust"
    assert "tests.toy_models._make_marker" in msg and "\n" not in msg
    assert isinstance(err.value, PermissionError)
    # the control: with trust the same file is unpickled, which runs its code
    m = load_model(path, trust=True, input_length=3)
    assert marker.exists() and m.format == "pickle" and m.input_shape == (4, 3)


def test_from_module_keeps_the_module_mode():
    net = toys.PaddedCNN().train()
    m = from_module(net, input_shape=(4, 25))
    assert net.training and all(sub.training for sub in net.modules())
    assert (m.format, m.path, m.input_shape, m.output_shape) == ("module", None, (4, 25), (3,))
    assert len(m.sha256) == 64 and m.sha256 == from_module(net, input_shape=(4, 25)).sha256
    assert_same_outputs(m, net, 25)


def test_output_names_from_a_module_attribute():
    net = toys.PaddedCNN()
    net.output_names = ["ctcf", "gata1", "tal1"]
    assert from_module(net, input_shape=(4, 20)).output_names == ("ctcf", "gata1", "tal1")
    net.output_names = ["just_one"]  # does not match the 3 outputs: ignored
    assert from_module(net, input_shape=(4, 20)).output_names is None


# --------------------------------------------------------------------------------------------------------
# files that are not models


@pytest.mark.parametrize("content, expected", [
    (b"", "empty"),
    (b"chr1\t100\t200\tpeak1\n" * 5, "text file"),
    (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "unrecognised binary"),
    (b"\x89HDF\r\n\x1a\n" + bytes(100), "HDF5"),
])
def test_not_a_model_file(tmp_path, content, expected):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(ModelFormatError) as err:
        load_model(path, input_length=10)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelFormatError, match="no such file"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(ModelFormatError, match="directory"):
        load_model(tmp_path)


def test_zip_that_is_not_a_model_and_truncated_archive(tmp_path, paper):
    npz = tmp_path / "arrays.npz"
    np.savez(npz, a=np.zeros(3))
    with pytest.raises(ModelFormatError, match="not a PyTorch model"):
        load_model(npz)
    full = tmp_path / "full.pt"
    torch.jit.save(torch.jit.script(paper), str(full))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(full.read_bytes()[:2000])
    with pytest.raises(ModelFormatError):
        load_model(cut, input_length=200)


def test_detection_reads_content_not_extension(tmp_path, paper):
    path = tmp_path / "model.bin"  # a .pt2 under another name
    torch.export.save(torch.export.export(paper, (one_hot(2, 200),)), str(path))
    assert load_model(path).format == "pt2"
    assert zipfile.is_zipfile(path)


# --------------------------------------------------------------------------------------------------------
# input checks and layouts


def test_wrong_length_message(paper):
    m = from_module(paper, input_shape=(4, 200))
    check_input(m, (4, 200))
    check_input(m, (7, 4, 200))
    with pytest.raises(ModelInputError) as err:
        check_input(m, (4, 300))
    msg = str(err.value)
    assert "length 200" in msg and "length 300" in msg and "width=200" in msg


def test_channels_last_detected_from_the_program(tmp_path):
    torch.manual_seed(4)
    net = toys.ChannelsLastCNN().eval()
    ep = torch.export.export(net, (one_hot(2, 30, layout="NLC"),),
                             dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    path = tmp_path / "nlc.pt2"
    torch.export.save(ep, str(path))
    m = load_model(path)
    assert (m.layout, m.input_shape, m.input_length) == ("NLC", (30, 4), 30)
    check_input(m, (4, 30))  # dnalift's data stays (4, L); the pipeline transposes
    with pytest.raises(ModelInputError, match="width=30"):
        check_input(m, (4, 31))
    assert_same_outputs(m, net, 30, layout="NLC")


def test_channels_last_detected_by_running_torchscript(tmp_path):
    net = toys.ChannelsLastCNN().eval()
    path = tmp_path / "nlc.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    m = load_model(path, input_length=30)
    assert (m.layout, m.input_shape) == ("NLC", (30, 4))
    assert_same_outputs(m, net, 30, layout="NLC")


def test_neither_dimension_is_four():
    m = from_module(toys.FiveChannel(), input_shape=(5, 30))
    with pytest.raises(ModelInputError, match="neither dimension is the 4 one-hot channels"):
        check_input(m, (4, 30))


def test_model_that_does_not_run_on_one_hot(tmp_path, paper):
    path = tmp_path / "weights.pt"
    torch.save(paper.state_dict(), path)
    with pytest.raises(ModelInputError, match="fails on one-hot input"):
        load_model(path, arch=ARCH, input_length=150)  # its dense layer needs length 200


def test_several_outputs_load_as_the_models_pytree(tmp_path):
    net = toys.TupleOutput().eval()
    m = from_module(net, input_shape=(4, 20))
    assert m.output_shapes == {"0": (2, 20), "1": (2,)} and m.output_shape == (2, 20) and m.n_outputs == 40
    x = one_hot(3, 20)
    got = m.module()(x)
    assert isinstance(got, tuple) and len(got) == 2
    torch.testing.assert_close(got[1], net(x)[1])
    path = tmp_path / "dict.pt2"
    torch.export.save(torch.export.export(toys.DictOutput(), (one_hot(2, 20),)), str(path))  # fixed batch
    m = load_model(path)
    assert m.output_shapes == {"enhancer": (1,), "promoter": (1,)} and m.output_shape == (1,)
    assert set(m.module()(one_hot(5, 20))) == {"enhancer", "promoter"}


def test_single_output_has_the_empty_key():
    assert from_module(toys.PaddedCNN(), input_shape=(4, 20)).output_shapes == {"": (3,)}


class ReturnsNone(nn.Module):
    def forward(self, x):
        return x.mean(-1), None


def test_non_tensor_output_is_refused():
    with pytest.raises(ModelInputError, match="NoneType as 1"):
        from_module(ReturnsNone(), input_shape=(4, 10))


def test_double_model_is_exported_in_float64():
    net = toys.LinearFirst(length=8).double()
    m = from_module(net, input_shape=(4, 8))
    assert m.input_dtype == torch.float64
    x = one_hot(3, 8, dtype=torch.float64)
    torch.testing.assert_close(m.module()(x), net(x), rtol=0, atol=1e-12)


def test_errors_are_dnalift_errors():
    assert issubclass(ModelFormatError, DnaliftError) and issubclass(ModelInputError, DnaliftError)


class FixedBatchReshape(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(40, 1)

    def forward(self, x):
        return self.dense(x.reshape(2, -1))  # only works for a batch of 2


class SumsOverTheBatch(nn.Module):
    def forward(self, x):
        return x.sum(dim=0)


def test_model_that_fixes_the_batch_size():
    with pytest.raises(ModelFormatError, match="variable batch size"):
        from_module(FixedBatchReshape(), input_shape=(4, 10))


def test_model_without_a_row_per_sequence():
    with pytest.raises(ModelInputError, match="no row per input sequence"):
        from_module(SumsOverTheBatch(), input_shape=(4, 10))


def test_traced_torchscript_with_five_channels_loads_and_check_input_explains(tmp_path):
    path = tmp_path / "five.pt"
    torch.jit.save(torch.jit.trace(toys.FiveChannel(), torch.zeros(2, 5, 16)), str(path))
    m = load_model(path, input_length=16)
    assert m.input_shape == (5, 16)
    with pytest.raises(ModelInputError, match="neither dimension"):
        check_input(m, (4, 16))


def test_pt2_with_a_smuggled_pickle_is_refused(tmp_path):
    """torch.export.load falls back to full unpickling for sample inputs it cannot load safely."""
    net = toys.LinearFirst(length=5).eval()
    good = tmp_path / "good.pt2"
    torch.export.save(torch.export.export(net, (one_hot(2, 5),)), str(good))
    marker = tmp_path / "unpickled.marker"
    smuggled = io.BytesIO()
    torch.save(toys.MarkerModule(str(marker)), smuggled)
    evil = tmp_path / "evil.pt2"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(evil, "w") as zout:
        replaced = 0
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("sample_inputs/model.pt"):
                data, replaced = smuggled.getvalue(), replaced + 1
            zout.writestr(info, data)
    assert replaced == 1
    assert load_model(good).format == "pt2"  # the untouched archive passes the check
    with pytest.raises(UntrustedModelError, match="trust=True") as err:
        load_model(evil)
    assert "tests.toy_models._make_marker" in str(err.value)
    assert not marker.exists(), "the smuggled pickle was unpickled"
    # the control: with trust, torch.export.load does run it (and then fails on what it got)
    with pytest.raises(ModelFormatError):
        load_model(evil, trust=True)
    assert marker.exists()
