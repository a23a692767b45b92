"""Scoring attention models (issue 12): a small enformer-pytorch Enformer and the attention/LayerNorm/gated-MLP
model of test_rules_inside from the command line as .pt2 files in float32, and a conv-only borzoi-pytorch model
through the API in float64, in every mode."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import frozen, random_one_hot
from dnalift.attribution.engine import attribute
from dnalift.cli import cli
from dnalift.encoding import one_hot_decode
from test_rules_inside import AttentionBlock
from conftest import export as _export

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _fasta(path, X):
    with open(path, "w") as f:
        for i, seq in enumerate(one_hot_decode(X.numpy().astype(np.int8))):
            f.write(f">s{i}\n{seq}\n")
    return path


def _score_cli(tmp_path, program, X, *options):
    torch.export.save(program, str(tmp_path / "model.pt2"))
    out = tmp_path / "out.h5"
    res = CliRunner().invoke(cli, ["score", str(tmp_path / "model.pt2"), str(_fasta(tmp_path / "s.fa", X)), "-o",
                                   str(out), "--n-refs", "4", "-q", *options])
    assert res.exit_code == 0, res.output
    with h5py.File(out) as f:
        change = f["predictions"][:] - f["reference_predictions"][:]
        return f["deltas"][:], change, f["projected_shap/seq"][:]


def test_enformer_pt2_from_the_command_line(tmp_path):
    enformer_pytorch = pytest.importorskip("enformer_pytorch")
    torch.manual_seed(0)
    model = enformer_pytorch.Enformer.from_hparams(dim=48, depth=1, heads=2, output_heads={"human": 3},
                                                   target_length=4, num_downsamples=3, dim_divisible_by=8,
                                                   attn_dim_key=8).eval()
    X = random_one_hot(4, 64, seed=1)
    program = _export(model, X.transpose(1, 2))     # enformer takes (n, length, 4)
    deltas, change, projected = _score_cli(tmp_path, program, X, "--target", "human:5")
    assert np.abs(deltas).max() <= 1e-3 * np.abs(change).mean()
    assert projected.shape == (4, 4, 64) and np.abs(projected).sum() > 0
    assert np.isfinite(projected).all()


def test_attention_block_pt2_from_the_command_line(tmp_path):
    model = frozen(AttentionBlock, seed=1)
    X = random_one_hot(4, 12, seed=2)
    for rule in ("rescale", "genomics"):
        deltas, change, _ = _score_cli(tmp_path, _export(model, X), X, "--target", "1", "--rule", rule,
                                       "--force", "--no-normalize")
        assert np.abs(deltas).max() <= 1e-3 * np.abs(change).mean(), rule


@pytest.fixture(scope="module")
def borzoi():
    borzoi_pytorch = pytest.importorskip("borzoi_pytorch")
    torch.manual_seed(0)
    config = borzoi_pytorch.config_borzoi.BorzoiConfig(dim=32, depth=0, heads=2, attn_dim_key=8,
                                                       attn_dim_value=16, bins_to_return=8)
    model = borzoi_pytorch.Borzoi(config)
    model.set_track_subset([0, 1, 2])
    model = model.eval()  # float32 (its heads cast to float32 themselves): the engine computes in float64
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.mark.parametrize("mode", ["rescale", "revealcancel", "genomics"])
def test_conv_only_borzoi_sums_to_delta(borzoi, mode):
    X = random_one_hot(2, 512, seed=3, dtype=torch.float64)
    R = torch.stack([random_one_hot(2, 512, seed=40 + i, dtype=torch.float64) for i in range(2)])
    result = attribute(borzoi, X, R, target=[5, 20], rule=mode, dtype=torch.float64)
    change = result.predictions - result.reference_predictions
    assert (result.deltas.abs() <= 1e-8 * change.abs().clamp(min=1)).all()
