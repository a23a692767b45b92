"""A softmax or log-softmax output head (2016 paper 2.5) under every rule (issue 19, item 1): the target is the
logit minus the mean logit, whatever rule the nonlinearities get. Checked by hand, against the independent float64
reference (``deeplift_reference``, convention 7) and by summation-to-delta of the centred logits."""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import pytest
import torch
import torch.nn as nn

import dnalift
from conftest import random_one_hot
from deeplift_reference import reference_deeplift

F64 = torch.float64
MODES = ("rescale", "revealcancel", "genomics")
HEADS = {"softmax": lambda: nn.Softmax(dim=1), "log_softmax": lambda: nn.LogSoftmax(dim=1)}


def export(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    batch = example[:1].repeat(2, *([1] * (example.dim() - 1)))
    return torch.export.export(model.eval(), (batch,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))


def scores(program, X, R, *, target, mode):
    """dnalift's result in float64, turning a ConservationWarning into a failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", dnalift.ConservationWarning)
        return dnalift.attribute(program, torch.as_tensor(X, dtype=F64), torch.as_tensor(R, dtype=F64),
                                 target=target, rule=mode, dtype=F64)


def issue_layers(head: str) -> list:
    """Linear(2, 2) W = I, b = 0 → ReLU → Linear(2, 3) W = [[1, 0], [0, 1], [1, 1]], b = 0 → the head."""
    first, second = nn.Linear(2, 2, bias=False).double(), nn.Linear(2, 3, bias=False).double()
    with torch.no_grad():
        first.weight.copy_(torch.eye(2, dtype=F64))
        second.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=F64))
    return [first, nn.ReLU(), second, HEADS[head]()]


ISSUE_X, ISSUE_R = np.array([[1.0, 2.0]]), np.zeros((1, 1, 2))
# logits z = (h1, h2, h1 + h2), mean (2 h1 + 2 h2) / 3: target 0 is h1/3 − 2 h2/3; both ReLUs pass (h = x > 0 = h0,
# m = 1 under Rescale and RevealCancel alike), so x = (1, 2) gets (1/3, −4/3), summing to −1 = (1 − 2) − 0.
ISSUE_EXPECTED = np.array([[1 / 3, -4 / 3]])


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("mode", MODES)
def test_issue_example_by_hand_in_every_mode(mode, head):
    result = scores(export(nn.Sequential(*issue_layers(head)), torch.as_tensor(ISSUE_X)), ISSUE_X, ISSUE_R[:, 0],
                    target=0, mode=mode)
    np.testing.assert_allclose(result.contributions.numpy(), ISSUE_EXPECTED, rtol=0, atol=1e-14)
    assert result.predictions.item() == pytest.approx(-1.0, abs=1e-14)  # the centred logit, not the probability
    assert result.reference_predictions.item() == 0.0
    assert abs(result.deltas.item()) < 1e-14


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("mode", MODES)
def test_reference_issue_example_by_hand(mode, head):
    contributions, _ = reference_deeplift(issue_layers(head), ISSUE_X, ISSUE_R, target=0, mode=mode,
                                          max_rule="exact")
    np.testing.assert_allclose(contributions, ISSUE_EXPECTED, rtol=0, atol=1e-15)


def multiclass_layers(kind: str, head: str) -> tuple[int, list]:
    """A random multi-class classifier: dense (ReLU, then Tanh) or conv → max pool → dense, with 4 classes."""
    L = nn.Linear
    if kind == "dense":
        return 8, [nn.Flatten(), L(32, 8), nn.ReLU(), L(8, 6), nn.Tanh(), L(6, 4), HEADS[head]()]
    return 16, [nn.Conv1d(4, 4, 5), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(), L(24, 6), nn.ReLU(), L(6, 4),
                HEADS[head]()]


def random_case(kind: str, head: str, seed: int = 0):
    """Seeded float64 weights N(0, 4/fan_in), biases N(0, 0.3²); 2 one-hot sequences with 3 one-hot references."""
    length, layers = multiclass_layers(kind, head)
    rng = np.random.default_rng([zlib.crc32(f"{kind}{head}".encode()), seed])
    with torch.no_grad():
        for module in layers:
            module.double()
            if isinstance(module, (nn.Linear, nn.Conv1d)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.from_numpy(rng.normal(0, 2 / np.sqrt(fan_in), module.weight.shape)))
                module.bias.copy_(torch.from_numpy(rng.normal(0, 0.3, module.bias.shape)))
    X = random_one_hot(2, length, seed=int(rng.integers(2**31)), dtype=F64).numpy()
    R = random_one_hot(6, length, seed=int(rng.integers(2**31)), dtype=F64).numpy().reshape(2, 3, 4, length)
    return layers, X, R


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_multiclass_model_agrees_with_reference_in_every_mode(kind, head):
    """Every mode, two targets: dnalift within 1e-9 of the reference; both sum to the change of the centred
    logit."""
    layers, X, R = random_case(kind, head)
    model = nn.Sequential(*layers).eval()
    program = export(model, torch.from_numpy(X))
    with torch.no_grad():
        logits = nn.Sequential(*layers[:-1])
        z, z0 = logits(torch.from_numpy(X)), logits(torch.from_numpy(R.reshape(-1, *R.shape[2:])))
    for target in (1, 3):
        centred = (z - z.mean(1, keepdim=True))[:, target].numpy()
        centred0 = (z0 - z0.mean(1, keepdim=True))[:, target].numpy().reshape(2, 3).mean(1)
        for mode in MODES:
            expected, expected_hypothetical = reference_deeplift(layers, X, R, target=target, mode=mode,
                                                                 max_rule="exact")
            np.testing.assert_allclose(expected.sum(axis=(1, 2)), centred - centred0, rtol=0, atol=1e-12)
            result = scores(program, X, R, target=target, mode=mode)
            scale = np.abs(expected).max()
            assert np.abs(result.contributions.numpy() - expected).max() <= 1e-9 * scale, (mode, target)
            assert np.abs(result.hypothetical.numpy() - expected_hypothetical).max() <= 1e-9 * scale
            np.testing.assert_allclose(result.predictions.numpy(), centred, rtol=0, atol=1e-12)
            np.testing.assert_allclose(result.contributions.numpy().sum(axis=(1, 2)), centred - centred0,
                                       rtol=0, atol=1e-12)
