"""The demo data: the simulator of data/simulate.py and the model shipped in data/demo/."""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
DEMO = DATA / "demo"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


sim = _load("dnalift_demo_simulate", DATA / "simulate.py")
paper_model = _load("dnalift_demo_paper_model", DATA / "paper_model.py")

COMP = {"A": "T", "C": "G", "G": "C", "T": "A"}


def revcomp(s: str) -> str:
    return "".join(COMP[c] for c in reversed(s))


def pairwise_auroc(labels, scores) -> float:
    """P(score of a positive > score of a negative), ties counting one half: the definition, O(n^2)."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = s[y][:, None], s[~y][None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def check_sites(seq: str, motifs) -> None:
    """Each site is in the sequence on its strand, carries its motif's core and fits its PWM."""
    for m in motifs:
        name, start, end, strand, site = m["motif"], m["start"], m["end"], m["strand"], m["site"]
        pwm = np.asarray(sim.PWMS[name])
        assert end - start == len(site) == len(pwm)
        assert seq[start:end] == (site if strand == "+" else revcomp(site)), (name, start, strand)
        core = sim.CORES[name]
        assert site[2:2 + len(core)] == core
        probs = [pwm[i, "ACGT".index(c)] for i, c in enumerate(site)]
        assert min(probs) > 0, f"{site} has a letter of probability 0 under {name}"


def as_rows(record):
    return [vars(m) for m in record.motifs]


@pytest.fixture(scope="module")
def small():
    return sim.simulate(200, seed=3)


# ---------------------------------------------------------------- the simulator


def test_sequences_are_dna_of_the_right_length(small):
    assert len(small) == 200
    assert len({r.name for r in small}) == 200
    for r in small:
        assert len(r.sequence) == 200
        assert set(r.sequence) <= set("ACGT")


def test_motif_positions_hold_the_sampled_sites_on_their_strand(small):
    for r in small:
        check_sites(r.sequence, as_rows(r))
    strands = Counter(m.strand for r in small for m in r.motifs)
    assert strands["+"] > 50 and strands["-"] > 50


def test_positives_have_both_motifs_negatives_one_kind_once_or_twice(small):
    seen = Counter()
    for r in small:
        kinds = Counter(m.motif for m in r.motifs)
        if r.label == 1:
            assert kinds == Counter({"GATA1": 1, "TAL1": 1}), r.name
        else:
            assert r.label == 0
            assert len(kinds) == 1 and sum(kinds.values()) in (1, 2), (r.name, kinds)
            seen[(next(iter(kinds)), sum(kinds.values()))] += 1
    n_pos = sum(r.label for r in small)
    assert 70 < n_pos < 130  # 0.5 each: 100 +- 7
    assert set(seen) == {("GATA1", 1), ("GATA1", 2), ("TAL1", 1), ("TAL1", 2)}


def test_sites_do_not_overlap_and_stay_in_the_region(small):
    lo, hi = sim.DEFAULT_REGION
    for r in small:
        spans = sorted((m.start, m.end) for m in r.motifs)
        assert all(lo <= s and e <= hi for s, e in spans)
        assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans, spans[1:])), (r.name, spans)


def test_whole_sequence_region_is_allowed():
    records = sim.simulate(100, seed=4, region=(0, 200))
    assert max(m.end for r in records for m in r.motifs) > 164
    for r in records:
        check_sites(r.sequence, as_rows(r))


def test_background_is_uniform(small):
    counts = Counter()
    for r in small:
        mask = np.ones(200, bool)
        for m in r.motifs:
            mask[m.start:m.end] = False
        counts.update(c for c, keep in zip(r.sequence, mask) if keep)
    total = sum(counts.values())
    for c in "ACGT":
        assert abs(counts[c] / total - 0.25) < 0.015, counts  # sd of each share is about 0.0023


def test_sites_follow_their_pwm():
    rng = np.random.default_rng(0)
    pwm = np.asarray(sim.PWMS["GATA1"])
    sites = [sim.sample_site(pwm, rng) for _ in range(4000)]
    freq = np.array([[sum(s[i] == c for s in sites) / 4000 for c in "ACGT"] for i in range(len(pwm))])
    np.testing.assert_allclose(freq, pwm, atol=0.03)


def test_reproducible_from_the_seed(small):
    again = sim.simulate(200, seed=3)
    assert [(r.sequence, r.label, as_rows(r)) for r in again] == [(r.sequence, r.label, as_rows(r)) for r in small]
    # sequence i depends only on (seed, i)
    assert [r.sequence for r in sim.simulate(50, seed=3)] == [r.sequence for r in small[:50]]
    assert [r.sequence for r in sim.simulate(50, seed=5)] != [r.sequence for r in small[:50]]


def test_command_line_writes_files_that_read_back(tmp_path, small):
    assert sim.main(["--n", "200", "--seed", "3", "--out", str(tmp_path)]) == 0
    names, seqs, descs = sim.read_fasta(tmp_path / "sequences.fa")
    assert names == [r.name for r in small] and seqs == [r.sequence for r in small]
    assert descs == [f"label={r.label}" for r in small]
    rows = sim.read_motifs(tmp_path / "motifs.tsv")
    expected = [{"name": r.name, "label": r.label, **m} for r in small for m in as_rows(r)]
    assert rows == expected
    pwms = json.loads((tmp_path / "pwms.json").read_text())
    assert pwms["GATA1"]["consensus"] == "CAGATAAGAA" and pwms["TAL1"]["consensus"] == "AACAGATGGT"
    assert np.allclose(pwms["TAL1"]["probabilities"], sim.PWMS["TAL1"])


def test_one_hot_channels_are_acgt():
    x = sim.one_hot(["ACGTN"])
    assert x.shape == (1, 4, 5)
    np.testing.assert_array_equal(x[0], [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0]])


def test_paper_model_shapes():
    model = paper_model.PaperCNN()
    assert model.fc1.in_features == 60  # 186 conv positions -> 3 pooled windows x 20 filters
    assert model(torch.zeros(2, 4, 200)).shape == (2, 1)
    with pytest.raises(ValueError):
        paper_model.PaperCNN(input_length=60)


def test_pairwise_auroc_by_hand():
    assert pairwise_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert pairwise_auroc([0, 1], [0.5, 0.5]) == 0.5


# ---------------------------------------------------------------- the shipped demo


@pytest.fixture(scope="module")
def demo():
    names, seqs, descs = sim.read_fasta(DEMO / "test.fa")
    rows = sim.read_motifs(DEMO / "test_motifs.tsv")
    labels = np.array([int(d.split("label=")[1]) for d in descs])
    return names, seqs, labels, rows


def test_demo_files_are_small():
    files = ["model.pt", "model.pt2", "model_state.pt", "test.fa", "test_motifs.tsv", "pwms.json", "metrics.json"]
    sizes = {f: (DEMO / f).stat().st_size for f in files}
    assert sum(sizes.values()) < 2_000_000, sizes


def test_demo_sequences_and_motif_table_agree(demo):
    names, seqs, labels, rows = demo
    assert len(names) == 300 and len(set(names)) == 300
    assert all(len(s) == 200 for s in seqs)
    assert labels.sum() == 150 and labels[0] == 1
    by_name = {}
    for row in rows:
        by_name.setdefault(row["name"], []).append(row)
    assert set(by_name) == set(names)
    for name, seq, label in zip(names, seqs, labels):
        assert {r["label"] for r in by_name[name]} == {label}
        check_sites(seq, by_name[name])
        kinds = Counter(r["motif"] for r in by_name[name])
        if label:
            assert kinds == Counter({"GATA1": 1, "TAL1": 1}), name
        else:
            assert len(kinds) == 1 and sum(kinds.values()) in (1, 2), name


@pytest.fixture(scope="module")
def demo_outputs(demo):
    torch.set_num_threads(2)
    X = torch.from_numpy(sim.one_hot(demo[1]))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: TorchScript is what users have
        ts = torch.jit.load(str(DEMO / "model.pt"))(X)[:, 0].numpy()
        program = torch.export.load(str(DEMO / "model.pt2"))
        ep = program.module()(X)[:, 0].numpy()
        model = paper_model.PaperCNN()
        model.load_state_dict(torch.load(DEMO / "model_state.pt", weights_only=True))
        st = model.eval()(X)[:, 0].numpy()
        ep_small = [program.module()(X[:k])[:, 0].numpy() for k in (1, 3)]
    return X, ts, ep, st, ep_small


def test_shipped_models_agree(demo_outputs):
    X, ts, ep, st, ep_small = demo_outputs
    assert ts.shape == ep.shape == st.shape == (300,)
    np.testing.assert_allclose(ep, ts, rtol=0, atol=1e-6)
    np.testing.assert_allclose(st, ts, rtol=0, atol=1e-6)
    # the .pt2 has a dynamic batch dimension
    np.testing.assert_allclose(ep_small[0], ts[:1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ep_small[1], ts[:3], rtol=0, atol=1e-5)


def test_shipped_model_is_good_on_the_shipped_test_set(demo, demo_outputs):
    labels = demo[2]
    logits = demo_outputs[1]
    accuracy = float(((logits > 0) == (labels == 1)).mean())
    auc = pairwise_auroc(labels, logits)
    assert accuracy > 0.8
    assert auc > 0.9
    metrics = json.loads((DEMO / "metrics.json").read_text())
    assert metrics["demo_auroc"] == pytest.approx(auc, abs=1e-6)
    assert metrics["demo_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert metrics["test_auroc"] > 0.9 and metrics["n_test"] >= 2000
