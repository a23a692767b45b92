"""Input layouts (issue 19): (n, 4, L), (n, L, 4) and Conv2d-style (n, 4, 1, L) models are found automatically from
modules, .pt2 and TorchScript files; the API takes data in dnalift's layout or the model's own and scores it the
same; data that fits neither is refused naming the shape it has."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from conftest import random_one_hot
from dnalift.attribution.engine import attribute
from dnalift.errors import ModelInputError
from dnalift.models import check_input, from_module, layouts, load_model

F64 = torch.float64
LENGTH = 12

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


class Image(nn.Module):
    """A DeepSEA/Beluga-style model as Kipoi ships them: Conv2d over (n, 4, 1, L)."""

    input_length = LENGTH

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 5, (1, 3))
        self.pool = nn.MaxPool2d((1, 2))
        self.dense = nn.Linear(5 * ((LENGTH - 2) // 2), 3)

    def forward(self, x):
        return torch.sigmoid(self.dense(self.pool(torch.relu(self.conv(x))).flatten(1)))


class ChannelsLast(nn.Module):
    input_length = LENGTH

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 5, 3)
        self.dense = nn.Linear(5 * (LENGTH - 2), 2)

    def forward(self, x):
        return self.dense(torch.relu(self.conv(x.transpose(1, 2))).flatten(1))


def frozen(cls):
    torch.manual_seed(0)
    model = cls().to(F64).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def test_layout_helpers():
    assert [layouts.detect(layouts.row_of(x, 7)) for x in layouts.LAYOUTS] == list(layouts.LAYOUTS)
    assert layouts.detect((5, 7)) is None and layouts.detect((4, 2, 7)) is None
    x = torch.arange(8.0).reshape(1, 4, 2)
    for layout in layouts.LAYOUTS:
        assert torch.equal(layouts.from_model(layouts.to_model(x, layout), layout), x)
    assert layouts.data_layout((3, 4, 1, 9), (4, 1, 9), "NC1L") == "model"
    assert layouts.data_layout((3, 4, 9), (4, 1, 9), "NC1L") == "dnalift"
    assert layouts.data_layout((3, 9, 4), (4, 1, 9), "NC1L") is None


@pytest.mark.parametrize("save", ["module", "pt2", "trace", pytest.param("script", marks=pytest.mark.slow)])
def test_image_style_model_is_found_from_every_format(tmp_path, save):
    net = frozen(Image)
    if save == "module":
        model = from_module(net)
    elif save == "pt2":
        example = torch.zeros(2, 4, 1, LENGTH, dtype=F64)
        program = torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        torch.export.save(program, tmp_path / "m.pt2")
        model = load_model(tmp_path / "m.pt2")
    else:
        ts = (torch.jit.trace(net, torch.zeros(2, 4, 1, LENGTH, dtype=F64)) if save == "trace"
              else torch.jit.script(net))
        ts.save(str(tmp_path / "m.pt"))
        model = load_model(tmp_path / "m.pt", input_length=LENGTH)
    assert (model.layout, model.input_shape, model.input_length) == ("NC1L", (4, 1, LENGTH), LENGTH)
    check_input(model, (4, LENGTH))
    check_input(model, (3, 4, 1, LENGTH))
    with pytest.raises(ModelInputError, match="width=12"):
        check_input(model, (4, LENGTH + 1))


@pytest.mark.parametrize("cls, own", [(Image, lambda X: X.unsqueeze(-2)),
                                     (ChannelsLast, lambda X: X.transpose(-1, -2))])
def test_data_in_the_models_layout_or_dnalifts_get_the_same_scores(cls, own):
    net = frozen(cls)
    X = random_one_hot(2, LENGTH, seed=1, dtype=F64)
    R = random_one_hot(4, LENGTH, seed=2, dtype=F64).reshape(2, 2, 4, LENGTH)
    for model in (net, from_module(net)):
        ours = attribute(model, X, R, target=1, rule="revealcancel", dtype=F64)
        theirs = attribute(model, own(X), own(R), target=1, rule="revealcancel", dtype=F64)
        assert ours.contributions.shape == X.shape and theirs.contributions.shape == own(X).shape
        assert torch.allclose(own(ours.contributions), theirs.contributions, atol=1e-12, rtol=0)
        assert torch.allclose(own(ours.hypothetical), theirs.hypothetical, atol=1e-12, rtol=0)
        assert torch.allclose(ours.contributions.flatten(1).sum(1), ours.predictions - ours.reference_predictions,
                              atol=1e-9)


def test_data_in_neither_layout_is_refused_naming_its_own_shape():
    model = from_module(frozen(ChannelsLast))
    X = torch.zeros(3, LENGTH + 1, 4)
    with pytest.raises(ModelInputError) as err:
        attribute(model, X, X[:1])
    assert "(3, 13, 4)" in str(err.value) and "(n, 12, 4)" in str(err.value) and "(n, 4, 12)" in str(err.value)
    with pytest.raises(ModelInputError, match=r"the data has shape \(3, 13, 5\)"):
        check_input(model, (3, LENGTH + 1, 5))


def test_a_given_layout_is_checked_and_used():
    net = frozen(Image)
    assert from_module(net, layout="nc1l").layout == "NC1L"
    with pytest.raises(ModelInputError, match="fails on one-hot input"):
        from_module(net, layout="nlc")
