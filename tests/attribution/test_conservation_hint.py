"""The summation-to-delta warning names its likely cause (issue 19): ops let through with gradients
(``allow_gradient``), the gradient max rule, else float32 rounding."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import dnalift
from conftest import random_one_hot
from dnalift.attribution.engine import _conservation_hint, attribute
from dnalift.errors import UnsupportedOpError

F64 = torch.float64


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def export(model, example):
    return torch.export.export(model.eval(), (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))


def random_data(length=12, n=3, r=2, seed=0):
    X = random_one_hot(n, length, seed=seed, dtype=F64)
    R = random_one_hot(n * r, length, seed=seed + 1, dtype=F64).reshape(n, r, 4, length)
    return X, R


def test_conservation_warning_names_the_ops_let_through():
    """An op without a rule let through with gradients (atan) breaks summation-to-delta: the warning names it
    as the likely cause instead of suggesting float64."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv1d(4, 3, 3), Lambda(torch.atan), nn.Flatten(), nn.Linear(30, 1)).double()
    X, R = random_data()
    program = export(model, X)
    with pytest.raises(UnsupportedOpError, match="atan"):
        attribute(program, X, R, dtype=F64)
    with pytest.warns(dnalift.ConservationWarning) as caught:
        attribute(program, X, R, dtype=F64, allow_gradient=["atan"])
    message = str(caught[0].message)
    assert "Likely cause: aten.atan, let through with gradients" in message and "float64" not in message


def test_hint_lists_every_cause_it_knows_and_float64_only_without_one():
    both = _conservation_hint("gradient", ["aten.atan", "aten.erf"])
    assert both.startswith("Likely cause: aten.atan, aten.erf, let through with gradients")
    assert "gradient max rule" in both and "float64" not in both
    assert _conservation_hint("gradient", []).startswith("The gradient max rule does not sum to delta")
    assert _conservation_hint("exact", []).startswith("Try float64")


def test_nan_deltas_are_warned_about():
    """A NaN delta (a multiplier 0 · ∞ somewhere) is off by more than any tolerance: it must not pass silently."""
    from dnalift.attribution.engine import _warn_deltas

    deltas = torch.tensor([[0.0], [float("nan")]], dtype=F64)
    with pytest.warns(dnalift.ConservationWarning, match=r"for 1 of 2 sequence\(s\); worst: #1 \(nan\)"):
        _warn_deltas(deltas, torch.ones(2, 1, dtype=F64), F64, None)
