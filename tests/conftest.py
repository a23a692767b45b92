"""Shared fixtures and helpers of the test suite.

- ``random_one_hot(n, length, seed=..., layout=...)``: random one-hot DNA, (n, 4, length) or (n, length, 4).
- ``frozen(module_class, seed=..., **kwargs)``: a randomly initialised model in eval mode, no gradients.
- ``device``: every device the machine has (``cpu``, and ``cuda`` where PyTorch sees one), so the tests that take
  it also run on a GPU when there is one.
- ``float64``: ``torch.float64``, for the tight summation-to-delta checks.
- ``write_fasta(path, records)``: a FASTA file of ``(name, sequence)`` records, one line each.
- ``export(model, *examples)``: ``torch.export`` of a model in eval mode with a dynamic batch dimension on each
  input (an example of batch 1 is repeated to 2, so that export does not specialise the batch).
- ``fail_attribute_on_call(monkeypatch, call, exc=KeyboardInterrupt)``: the engine's ``attribute`` raises on its
  ``call``-th call (an interrupted or failing run).

Helpers are also importable (``from conftest import random_one_hot``): this folder and its stage folders
(``tests/models/`` ... mirroring the package) are on ``sys.path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

TESTS = Path(__file__).parent
# toy_models, the reference implementation and a few models shared between test modules (test_bpnet_files,
# test_rules_inside, test_workflow) import as top-level modules, from whichever stage folder holds them
for folder in [TESTS, *sorted(d for d in TESTS.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))]:
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_one_hot(n: int, length: int, *, seed: int = 0, layout: str = "NCL",
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random one-hot sequences.

    Returns
    -------
    Tensor (n, 4, length) for ``layout="NCL"``, (n, length, 4) for ``"NLC"``
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, 4, size=(n, length))
    X = np.eye(4, dtype=np.float64)[idx]  # (n, length, 4)
    if layout.upper() == "NCL":
        X = X.transpose(0, 2, 1)
    return torch.from_numpy(np.ascontiguousarray(X)).to(dtype)


def frozen(module_class, *, seed: int = 0, dtype: torch.dtype = torch.float32, **kwargs) -> torch.nn.Module:
    """``module_class(**kwargs)`` with weights from ``seed``, in eval mode, parameters not requiring grad."""
    torch.manual_seed(seed)
    model = module_class(**kwargs).to(dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def write_fasta(path: Path, records) -> Path:
    """Write ``(name, sequence)`` records as a FASTA file (each sequence on one line); returns ``path``."""
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in records))
    return path


def fail_attribute_on_call(monkeypatch, call: int, exc=KeyboardInterrupt):
    """Make ``dnalift.attribution.engine.attribute`` raise ``exc`` (a class or an instance) on its ``call``-th call
    (1-based), every other call going through; returns a function that puts the real one back."""
    import dnalift.attribution.engine as engine

    real, calls = engine.attribute, []

    def attribute(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "attribute", attribute)
    return lambda: monkeypatch.setattr(engine, "attribute", real)


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """Each device of this machine in turn: ``"cpu"``, then ``"cuda"`` where there is one."""
    return request.param


@pytest.fixture
def float64() -> torch.dtype:
    return torch.float64


def export(model, *examples) -> torch.export.ExportedProgram:
    """The model (put in eval mode) exported with a dynamic batch dimension on every input.

    Parameters
    ----------
    model : nn.Module
    *examples : Tensor (b, ...)
        One example per input; one of batch 1 is repeated to 2 (export would fix a batch of 1).
    """
    batch = torch.export.Dim("batch", min=1)
    examples = tuple(e.repeat(2, *([1] * (e.dim() - 1))) if e.shape[0] == 1 else e for e in examples)
    return torch.export.export(model.eval(), examples, dynamic_shapes=tuple({0: batch} for _ in examples))
