"""Small enformer-pytorch and borzoi-pytorch models load (as modules and as .pt2 files).

Only the loading is tested here: the graph dnalift runs, its layout and its outputs. Whether every op of these
graphs has a DeepLIFT rule is the engine's business (its tests score them).
"""

from __future__ import annotations

import pytest
import torch

from conftest import random_one_hot
from dnalift.errors import ModelFormatError
from dnalift.models import from_module, load_model

enformer_pytorch = pytest.importorskip("enformer_pytorch")
borzoi_pytorch = pytest.importorskip("borzoi_pytorch")

ENFORMER_LENGTH = 64    # 3 downsamplings: 8 bins, cropped to target_length 4
BORZOI_LENGTH = 512     # 7 poolings: 4 bins into the (empty) transformer, 16 after the U-net, cropped to 8


def only_aten(program) -> bool:
    return all(isinstance(n.target, torch._ops.OpOverload) for n in program.graph.nodes if n.op == "call_function")


def assert_same(loaded, module, length, *, layout):
    for n in (1, 3):
        x = random_one_hot(n, length, seed=n, layout=layout)
        with torch.no_grad():
            want, got = module(x), loaded.module()(x)
        if isinstance(want, dict):
            assert set(got) == set(want)
            want, got = list(want.values()), [got[k] for k in want]
        else:
            want, got = [want], [got]
        for w, g in zip(want, got):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def enformer():
    torch.manual_seed(0)
    model = enformer_pytorch.Enformer.from_hparams(dim=48, depth=1, heads=2, output_heads={"human": 3},
                                                   target_length=4, num_downsamples=3, dim_divisible_by=8,
                                                   attn_dim_key=8)
    return model.eval()


def small_borzoi(depth: int):
    torch.manual_seed(0)
    config = borzoi_pytorch.config_borzoi.BorzoiConfig(dim=32, depth=depth, heads=2, attn_dim_key=8,
                                                       attn_dim_value=16, bins_to_return=8)
    model = borzoi_pytorch.Borzoi(config)
    model.set_track_subset([0, 1, 2])  # 3 human tracks instead of 7611
    return model.eval()


def test_enformer_loads_channels_last_with_its_dict_output(tmp_path, enformer):
    loaded = from_module(enformer, input_length=ENFORMER_LENGTH)
    assert (loaded.layout, loaded.input_shape) == ("NLC", (ENFORMER_LENGTH, 4))
    assert loaded.output_shapes == {"human": (4, 3)} and loaded.control_shapes == ()
    assert only_aten(loaded.program)
    assert_same(loaded, enformer, ENFORMER_LENGTH, layout="NLC")


def test_enformer_as_a_pt2(tmp_path, enformer):
    x = torch.zeros(2, ENFORMER_LENGTH, 4)  # the hint's channels-last spelling
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(enformer, (x,), dynamic_shapes=({0: batch},)), str(tmp_path / "e.pt2"))
    loaded = load_model(tmp_path / "e.pt2")
    assert (loaded.format, loaded.layout, loaded.output_shapes) == ("pt2", "NLC", {"human": (4, 3)})
    assert_same(loaded, enformer, ENFORMER_LENGTH, layout="NLC")


def test_conv_only_borzoi_loads_with_its_autocast_region_inlined(tmp_path):
    """borzoi-pytorch runs its heads in ``torch.amp.autocast('cuda', enabled=False)``."""
    model = small_borzoi(depth=0)
    loaded = from_module(model, input_length=BORZOI_LENGTH)
    assert (loaded.layout, loaded.input_shape, loaded.output_shapes) == ("NCL", (4, BORZOI_LENGTH), {"": (3, 8)})
    assert only_aten(loaded.program)
    assert_same(loaded, model, BORZOI_LENGTH, layout="NCL")
    batch = torch.export.Dim("batch")
    ep = torch.export.export(model, (torch.zeros(2, 4, BORZOI_LENGTH),), dynamic_shapes=({0: batch},))
    assert not only_aten(ep)  # the region is a higher-order op in the saved program
    torch.export.save(ep, str(tmp_path / "borzoi.pt2"))
    from_file = load_model(tmp_path / "borzoi.pt2")
    assert only_aten(from_file.program)
    assert_same(from_file, model, BORZOI_LENGTH, layout="NCL")


def test_borzoi_attention_is_refused_for_its_vmap():
    """Its relative shift is ``torch.vmap`` over ``as_strided``, which torch.export keeps as functorch calls."""
    with pytest.raises(ModelFormatError) as err:
        from_module(small_borzoi(depth=1), input_length=BORZOI_LENGTH)
    msg = str(err.value)
    assert "torch.vmap" in msg and "pytorch_borzoi_transformer.py" in msg and "fast_relative_shift" in msg
    assert "\n" not in msg
