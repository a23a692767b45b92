"""``dnalift average`` from the command line (issue 21): two folds scored by ``dnalift score`` (two models, the same
sequences and references), averaged into one file that inspect, logo and export take; several-target scorings
averaged per target; mismatches refused in one line with nothing left behind."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from conftest import write_fasta
from dnalift.cli import cli

L = 20


class TwoHeads(nn.Module):
    """A small profile model: profile logits (n, 2, L) and counts (n, 1)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 5, padding=2)
        self.profile = nn.Conv1d(6, 2, 1)
        self.counts = nn.Linear(6, 1)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.profile(h), self.counts(h.mean(-1))


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def folds(tmp_path_factory):
    d = tmp_path_factory.mktemp("folds")
    rng = np.random.default_rng(3)
    fasta = write_fasta(d / "seqs.fa", [(f"s{i}", "".join(rng.choice(list("ACGT"), L))) for i in range(6)])
    batch = torch.export.Dim("batch", min=1)
    for i in range(2):
        torch.manual_seed(10 + i)
        program = torch.export.export(TwoHeads().eval(), (torch.zeros(2, 4, L),), dynamic_shapes=({0: batch},))
        torch.export.save(program, d / f"fold{i}.pt2")
        ok("score", d / f"fold{i}.pt2", fasta, "--target", "counts", "--target", "profile", "--n-refs", 3,
           "-o", d / f"fold{i}.h5", "-q")
        ok("score", d / f"fold{i}.pt2", fasta, "--target", "profile", "--n-refs", 3, "-o", d / f"one{i}.h5", "-q")
    ok("score", d / "fold1.pt2", fasta, "--target", "profile", "--n-refs", 3, "--seed", 5, "-o", d / "seed5.h5",
       "-q")
    return d, fasta


def test_average_two_folds_then_inspect_logo_export(folds, tmp_path):
    d, _ = folds
    res = ok("average", d / "one0.h5", d / "one1.h5", "-o", tmp_path / "mean.h5")
    assert f"averaged 2 folds (6 sequences of {L} bp) -> {tmp_path / 'mean.h5'}" in res.output
    with h5py.File(tmp_path / "mean.h5") as f, h5py.File(d / "one0.h5") as a, h5py.File(d / "one1.h5") as b:
        want = ((a["shap/seq"][:].astype(np.float64) + b["shap/seq"][:]) / 2).astype(np.float32)
        np.testing.assert_array_equal(f["shap/seq"][:], want)
        np.testing.assert_array_equal(f["fold_predictions"][:], np.stack([a["predictions"][:], b["predictions"][:]], 1))
        assert f.attrs["fold_model_sha256"] == f'["{a.attrs["model_sha256"]}", "{b.attrs["model_sha256"]}"]'
    res = ok("inspect", tmp_path / "mean.h5")
    assert "validation:  OK" in res.output and "fold_predictions" in res.output and "n_folds" in res.output
    ok("logo", tmp_path / "mean.h5", "--index", 0, "-o", tmp_path / "logo.png")
    ok("export", tmp_path / "mean.h5", "--format", "modisco", "-o", tmp_path / "m" / "mean", "--window", 10)
    assert (tmp_path / "m" / "mean.hyp.npz").exists()


def test_several_targets_are_averaged_per_target(folds, tmp_path):
    d, _ = folds
    res = ok("average", d / "fold0.h5", d / "fold1.h5", "-o", tmp_path / "mean.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mean.counts.h5", "mean.profile.h5"]
    assert "mean.counts.h5" in res.output and "mean.profile.h5" in res.output
    for target in ("counts", "profile"):
        with h5py.File(tmp_path / f"mean.{target}.h5") as f:
            assert f.attrs["target"] == target
        ok("inspect", tmp_path / f"mean.{target}.h5", "-q")


@pytest.mark.parametrize("other, words", [("seed5.h5", "seed differ"), ("fold1.counts.h5", "the target differ"),
                                          ("one0.h5", "given twice")])
def test_mismatches_are_refused_in_one_line(folds, tmp_path, other, words):
    d, _ = folds
    out = tmp_path / "out"
    res = run("average", d / "one0.h5", d / other, "-o", out / "mean.h5")
    assert res.exit_code == 1, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], res.stderr
    assert not out.exists() or not list(out.iterdir())
