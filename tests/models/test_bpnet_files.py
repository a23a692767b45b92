"""The files bpnet-lite and chrombpnet users have, as small bpnet-lite 1.1.0 models built here.

A BPNet returns ``(profile, counts)``: profile logits ``(n, n_outputs, length - 2 * trimming)`` and counts
``(n, 1)``; with ``n_control_tracks > 0`` its forward takes a control track ``X_ctl`` ``(n, tracks, length)``.
A ChromBPNet combines a bias and an accessibility BPNet (built from modules, so ``arch`` cannot rebuild it).
Each file kind must load with a dynamic batch and compute what the module computes.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from conftest import random_one_hot
from dnalift.errors import ModelFormatError, UntrustedModelError
from dnalift.models.export import PT2_EXPORT_CODE
from dnalift.models import from_module, load_model

bpnet = pytest.importorskip("bpnetlite.bpnet")
chrombpnet = pytest.importorskip("bpnetlite.chrombpnet")

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

L = 206                  # with n_layers=2 the default trimming is 47 + 2 + 4 = 53: 100 profile positions
OUT = L - 2 * 53
ARCH = "bpnetlite.bpnet:BPNet"
SMALL = {"n_filters": 8, "n_layers": 2, "verbose": False}


def small_bpnet(seed: int, n_control_tracks: int = 0, n_outputs: int = 2):
    torch.manual_seed(seed)
    model = bpnet.BPNet(n_control_tracks=n_control_tracks, n_outputs=n_outputs, **SMALL).eval()
    with torch.no_grad():  # bpnet-lite starts its heads near zero; spread the weights so outputs differ
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module")
def plain():
    return small_bpnet(0)


@pytest.fixture(scope="module")
def with_control():
    return small_bpnet(1, n_control_tracks=2)


@pytest.fixture(scope="module")
def chrom():
    return chrombpnet.ChromBPNet(bias=small_bpnet(2, n_outputs=1), accessibility=small_bpnet(3, n_outputs=1)).eval()


def assert_computes_like(loaded, module, *, control_tracks: int = 0):
    """The loaded program equals the module on random one-hot batches of 1 and 3 rows (a dynamic batch)."""
    run = loaded.module()
    for n in (1, 3):
        x = random_one_hot(n, L, seed=n)
        args = (x, torch.rand(n, control_tracks, L)) if control_tracks else (x,)
        with torch.no_grad():
            expected, got = module(*args), run(*args)
        assert len(got) == 2
        for want, have in zip(expected, got):
            assert have.shape == want.shape
            torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-5)


def assert_bpnet_shapes(loaded, *, control_tracks: int = 0):
    assert loaded.input_shape == (4, L) and loaded.layout == "NCL"
    assert loaded.output_shapes == {"0": (2, OUT), "1": (1,)}
    assert loaded.output_shape == (2, OUT)
    assert loaded.control_shapes == (((control_tracks, L),) if control_tracks else ())


# --------------------------------------------------------------------------------------------------------
# whole pickled modules (torch.save(model), as bpnet-lite saves them)


@pytest.mark.parametrize("which", ["plain", "with_control", "chrom"])
def test_whole_pickled_module_loads_with_trust(tmp_path, request, which):
    module = request.getfixturevalue(which)
    path = tmp_path / f"{which}.torch"
    torch.save(module, path)
    loaded = load_model(path, trust=True, input_length=L)
    assert loaded.format == "pickle"
    tracks = module.n_control_tracks
    if which == "chrom":
        assert loaded.output_shapes == {"0": (1, OUT), "1": (1,)} and loaded.control_shapes == ()
    else:
        assert_bpnet_shapes(loaded, control_tracks=tracks)
    assert_computes_like(loaded, module, control_tracks=tracks)


def test_whole_pickled_module_without_trust_says_how_to_convert(tmp_path, chrom):
    path = tmp_path / "chrombpnet.torch"
    torch.save(chrom, path)
    with pytest.raises(UntrustedModelError) as err:
        load_model(path, input_length=L)
    msg = str(err.value)
    assert "bpnetlite.chrombpnet.ChromBPNet" in msg and "dynamic_shapes" in msg and "trust=True" in msg
    assert "ChromBPNet(bias, accessibility)" in msg and "\n" not in msg
    assert err.value.argument == "trust"


# --------------------------------------------------------------------------------------------------------
# TorchScript


def test_traced_bpnet_with_its_crop_loads(tmp_path, plain):
    """The trace records ``X.shape[2] - trimming`` as tensor ops; the export must still know the crop's length."""
    path = tmp_path / "traced.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(plain, random_one_hot(2, L)), str(path))
    loaded = load_model(path)  # the length comes from the traced inputs
    assert loaded.format == "torchscript"
    assert_bpnet_shapes(loaded)
    assert_computes_like(loaded, plain)
    targets = {str(n.target) for n in loaded.program.graph.nodes if n.op == "call_function"}
    assert "aten._local_scalar_dense.default" not in targets


def test_traced_bpnet_with_a_control_track_loads(tmp_path, with_control):
    path = tmp_path / "traced_ctl.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(with_control, (random_one_hot(2, L), torch.rand(2, 2, L))), str(path))
    loaded = load_model(path)
    assert_bpnet_shapes(loaded, control_tracks=2)
    assert_computes_like(loaded, with_control, control_tracks=2)


def test_traced_chrombpnet_loads(tmp_path, chrom):
    path = tmp_path / "traced_chrom.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(chrom, random_one_hot(2, L)), str(path))
    loaded = load_model(path, input_length=L)
    assert loaded.output_shapes == {"0": (1, OUT), "1": (1,)}
    assert_computes_like(loaded, chrom)


# --------------------------------------------------------------------------------------------------------
# .pt2


def test_pt2_made_as_the_hint_says_loads(tmp_path, monkeypatch, plain):
    monkeypatch.chdir(tmp_path)
    exec(PT2_EXPORT_CODE, {"torch": torch, "model": plain, "length": L})
    loaded = load_model(tmp_path / "model.pt2")
    assert loaded.format == "pt2"
    assert_bpnet_shapes(loaded)
    assert_computes_like(loaded, plain)


def test_pt2_with_a_fixed_batch_is_refused_with_the_hint(tmp_path, plain):
    """BPNet's ``reshape(X.shape[0], 1)`` keeps the example's batch size in a program exported without a Dim."""
    path = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(plain, (random_one_hot(2, L),)), str(path))
    with pytest.raises(ModelFormatError) as err:
        load_model(path)
    msg = str(err.value)
    assert "fixed batch of 2" in msg and "dynamic_shapes=({0: batch},)" in msg and "\n" not in msg


def test_pt2_with_a_control_input(tmp_path, with_control):
    batch = torch.export.Dim("batch")
    ep = torch.export.export(with_control, (random_one_hot(2, L), torch.zeros(2, 2, L)),
                             dynamic_shapes=({0: batch}, {0: batch}))
    path = tmp_path / "ctl.pt2"
    torch.export.save(ep, str(path))
    loaded = load_model(path)
    assert_bpnet_shapes(loaded, control_tracks=2)
    assert_computes_like(loaded, with_control, control_tracks=2)
    assert [t.shape for t in loaded.example_inputs(3)] == [(3, 4, L), (3, 2, L)]


# --------------------------------------------------------------------------------------------------------
# state_dict + arch


def test_state_dict_with_arch_and_a_control_track(tmp_path, with_control):
    path = tmp_path / "weights.pt"
    torch.save(with_control.state_dict(), path)
    loaded = load_model(path, arch=ARCH, arch_kwargs={**SMALL, "n_control_tracks": 2}, input_length=L)
    assert (loaded.format, loaded.arch) == ("state_dict", ARCH)
    assert_bpnet_shapes(loaded, control_tracks=2)
    assert_computes_like(loaded, with_control, control_tracks=2)


def test_state_dict_of_chrombpnet_says_to_save_the_whole_module(tmp_path, chrom):
    path = tmp_path / "weights.pt"
    torch.save(chrom.state_dict(), path)
    with pytest.raises(ModelFormatError) as err:
        load_model(path, arch="bpnetlite.chrombpnet:ChromBPNet", input_length=L)
    msg = str(err.value)
    assert "bias, accessibility" in msg and "torch.save(model)" in msg and ".pt2" in msg
    assert err.value.argument == "arch_kwargs" and err.value.details["missing"] == ["bias", "accessibility"]


# --------------------------------------------------------------------------------------------------------
# modules


def test_module_without_controls_takes_the_sequence_alone(plain):
    loaded = from_module(plain, input_shape=(4, L))
    users = [s for s in loaded.program.graph_signature.user_inputs]
    assert len(users) == 1 and loaded.control_shapes == ()


def test_control_wrapper_makes_zeros_of_the_batch_size(with_control):
    """``ControlWrapper`` builds ``torch.zeros(X.shape[0], tracks, length)``: it must follow the dynamic batch."""
    wrapped = bpnet.ControlWrapper(with_control).eval()
    loaded = from_module(wrapped, input_shape=(4, L))
    assert loaded.control_shapes == ()
    for n in (1, 4):
        x = random_one_hot(n, L, seed=n)
        with torch.no_grad():
            want = with_control(x, torch.zeros(n, 2, L))
            got = loaded.module()(x)
        torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-5)
