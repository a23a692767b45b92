"""scripts/reproduce_paper.py: the reproduction of the DeepLIFT paper's genomics result (docs/reproduction.md), in a
fast version (a dozen sequences, three shuffles), and its auROC helper on hand-computed cases."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "reproduce_paper.py"


def _load():
    spec = importlib.util.spec_from_file_location("dnalift_reproduce_paper", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


rp = _load()


@pytest.mark.parametrize("labels, scores, expected", [
    ([1, 0], [2.0, 1.0], 1.0),
    ([1, 0], [1.0, 2.0], 0.0),
    ([1, 0, 0], [1.0, 1.0, 0.0], 0.75),          # one tie counts one half: (0.5 + 1) / 2
    ([1, 1, 0, 0], [0.9, 0.1, 0.5, 0.5], 0.5),   # (1 + 1 + 0 + 0) / 4
    ([0, 0, 1], [3.0, 3.0, 3.0], 0.5),           # all tied
])
def test_auroc_hand_computed(labels, scores, expected):
    assert rp.auroc(np.array(labels), np.array(scores)) == pytest.approx(expected)


def test_auroc_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.1
    scores = np.round(rng.normal(size=300), 1)  # many ties
    pos, neg = scores[labels][:, None], scores[~labels][None, :]
    pairwise = ((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size)
    assert rp.auroc(labels, scores) == pytest.approx(pairwise)
    assert np.isnan(rp.auroc(np.zeros(5, bool), np.arange(5.0)))


def test_core_positions_follow_the_strand(tmp_path):
    tsv = tmp_path / "m.tsv"
    tsv.write_text("name\tlabel\tmotif\tstart\tend\tstrand\tsite\n"
                   "s\t1\tGATA1\t10\t20\t+\tCAGATAAGAA\n"      # GATA at site offset 2 -> bases 12..16
                   "s\t1\tTAL1\t40\t50\t-\tAACAGATGGT\n")     # CAGATG at offset 2 of 10, minus strand -> 42..48
    assert rp.read_sites(tsv)["s"] == [("GATA1", 10, 20, 12, 16), ("TAL1", 40, 50, 42, 48)]


def test_fast_reproduction(tmp_path):
    """A dozen correctly classified positives, three shuffles: DeepLIFT ranks the GATA and TAL1 sites of
    the demo above the background (full run: mean per-sequence auROC 0.74-0.78 for GATA sites and about
    0.95 for the GATA cores)."""
    md = tmp_path / "reproduction.md"
    md.write_text("# text before\n\n<!-- reproduce_paper:table:begin -->\nold\n<!-- reproduce_paper:table:end -->\n"
                  "\ntext after\n")
    out = tmp_path / "numbers.json"
    fig = tmp_path / "logos.png"
    res = subprocess.run([sys.executable, str(SCRIPT), "--max-seqs", "12", "--n-refs", "3",
                          "--methods", "grad_x_input,rescale_dinuc,rescale_uniform_norm",
                          "--markdown", str(md), "--figure", str(fig), "--json", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    numbers = json.loads(out.read_text())
    assert numbers["meta"]["n_sequences"] == 12
    methods = numbers["methods"]
    assert list(methods) == ["grad_x_input", "rescale_dinuc", "rescale_uniform_norm"]
    for key in ("rescale_dinuc", "rescale_uniform_norm"):
        a = methods[key]["auroc"]
        assert a["GATA1_site"]["mean"] > 0.6, (key, a["GATA1_site"])
        assert a["GATA1_core"]["mean"] > 0.75, (key, a["GATA1_core"])
        assert a["TAL1_core"]["mean"] > 0.75, (key, a["TAL1_core"])
        assert methods[key]["max_abs_delta"] < 1e-3
    assert methods["grad_x_input"]["max_abs_delta"] is None
    # what docs/reproduction.md reports for this model: gradient x input ranks the TAL1 core below the background
    assert methods["grad_x_input"]["auroc"]["TAL1_core"]["mean"] < 0.5
    # the markdown keeps the text around the markers and replaces what was between them
    text = md.read_text()
    assert text.startswith("# text before\n") and text.rstrip().endswith("text after")
    assert "old" not in text and "| DeepLIFT Rescale | dinucleotide shuffles |" in text
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
