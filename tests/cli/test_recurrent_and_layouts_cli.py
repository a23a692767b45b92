"""From the command line (issue 19): a DanQ-style model (conv, max pool, BiLSTM, dense) and a DeepSEA-style Conv2d
model taking (n, 4, 1, L) are scored with their layout found automatically, in float64 summing to delta, with
the predictions of the model itself; `dnalift info` lists the LSTM's cells and the layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from conftest import write_fasta
from dnalift.cli import cli
from dnalift.encoding import one_hot_encode
from dnalift.io.store import open_results

L = 20
SEQS = ["ACGTTGCAACGTAGCTAGCA", "TTTTGGGGCCCCAAAATGCA", "GATTACAGATTACAGATTAC"]

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


class DanQ(nn.Module):
    """DanQ in miniature: Conv1d -> ReLU -> MaxPool1d -> BiLSTM (batch first) -> dense -> ReLU -> dense."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 5)
        self.pool = nn.MaxPool1d(4, 4)
        self.lstm = nn.LSTM(6, 4, batch_first=True, bidirectional=True)
        self.dense = nn.Linear(4 * 2 * 4, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, x):
        h = self.pool(torch.relu(self.conv(x))).transpose(1, 2)   # (n, 4 positions, 6)
        h, _ = self.lstm(h)
        return self.out(torch.relu(self.dense(h.flatten(1))))


class DeepSEA(nn.Module):
    """Conv2d over (n, 4, 1, L), as Kipoi's DeepSEA and Beluga take their input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 6, (1, 5))
        self.pool = nn.MaxPool2d((1, 4), (1, 4))
        self.dense = nn.Linear(6 * 4, 3)

    def forward(self, x):
        return torch.sigmoid(self.dense(self.pool(torch.relu(self.conv(x))).flatten(1)))


def frozen(cls):
    torch.manual_seed(0)
    model = cls().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("cls, save, layout", [(DanQ, "pt2", (4, L)), (DeepSEA, "torchscript", (4, 1, L))])
def test_scored_from_the_command_line_summing_to_delta(tmp_path, cls, save, layout):
    net = frozen(cls)
    example = torch.zeros(2, *layout)
    if save == "pt2":
        path = tmp_path / "model.pt2"
        program = torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        torch.export.save(program, path)
    else:
        path = tmp_path / "model.pt"
        torch.jit.trace(net, (example,)).save(str(path))
    fasta = write_fasta(tmp_path / "seqs.fa", [(f"s{i}", s) for i, s in enumerate(SEQS)])
    out = tmp_path / "scores.h5"
    result = run("score", path, fasta, "-o", out, "--target", 2, "--n-refs", 2, "--precision", "float64",
                 "--rule", "revealcancel")
    assert result.exit_code == 0, result.output
    X = torch.as_tensor(one_hot_encode(SEQS), dtype=torch.float32).reshape(len(SEQS), *layout)
    with open_results(out) as r, torch.no_grad():
        np.testing.assert_allclose(r.predictions(), net(X)[:, 2].numpy(), atol=1e-6)
        np.testing.assert_allclose(r.projected().sum(axis=(1, 2)), r.predictions() - r.reference_predictions(),
                                   atol=1e-6)
        assert r.hypothetical().shape == (len(SEQS), 4, L)
    info = run("info", path)
    assert info.exit_code == 0, info.output
    if cls is DanQ:
        assert "aten.sigmoid" in info.output and "product rule" in info.output and "aten.lstm" not in info.output
    else:
        assert "(n, 4, 1, 20) channels A,C,G,T first, height 1 (Conv2d)" in info.output
