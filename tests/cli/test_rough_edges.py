"""The rough edges of issue 24 that are no errors: each gets its line (a warning), or its fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from conftest import write_fasta
from dnalift.cli import cli
from dnalift.io.store import merge_results, open_results

L = 16


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    d = tmp_path_factory.mktemp("edges")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(4, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * L, 1)).eval()
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(model, (torch.zeros(2, 4, L),), dynamic_shapes=({0: batch},)),
                      d / "m.pt2")
    rng = np.random.default_rng(0)
    fasta = write_fasta(d / "s.fa", ((f"s{i}", "".join("ACGT"[j] for j in rng.integers(0, 4, L))) for i in range(3)))
    return {"model": d / "m.pt2", "fasta": fasta}


def test_n_refs_with_a_one_reference_method_warns(kit, tmp_path):
    result = invoke("score", kit["model"], kit["fasta"], "-o", tmp_path / "o.h5", "--reference", "zeros",
                    "--n-refs", 5)
    assert result.exit_code == 0, result.output
    assert "warning: --n-refs 5 is not used: --reference zeros gives one reference per sequence" in result.stderr
    with open_results(tmp_path / "o.h5") as r:
        assert r.attrs["n_refs"] == 1


def test_a_shard_without_sequences_warns_and_merges(kit, tmp_path):
    parts = []
    for i in range(1, 5):  # 3 sequences in 4 shards: one is empty
        parts.append(tmp_path / f"p{i}.h5")
        result = invoke("score", kit["model"], kit["fasta"], "-o", parts[-1], "--n-refs", 2, "--shard", f"{i}-of-4")
        assert result.exit_code == 0, result.output
        empty = "has no sequences" in result.stderr
        with open_results(parts[-1]) as r:
            assert empty == (r.n == 0), result.stderr
    merge_results(parts, tmp_path / "all.h5")
    with open_results(tmp_path / "all.h5") as r:
        assert r.n == 3


def test_score_help_keeps_each_example_on_its_line():
    text = CliRunner().invoke(cli, ["score", "--help"]).output
    lines = [line for line in text.splitlines() if "chrombpnet.pt" in line]
    assert lines and lines[0].rstrip().endswith("\\"), lines
    assert not any("hg38.fa  " in line and "--center summit" in line for line in text.splitlines())


def test_allow_nonfinite_is_documented():
    text = CliRunner().invoke(cli, ["score", "--help"]).output
    assert "--allow-nonfinite" in text
