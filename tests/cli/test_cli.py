"""The command line, end to end on tiny data: every subcommand, read back through the library, numbers checked.

The models are small conv nets saved in the test (TorchScript, pickle); the FASTA files have a dozen sequences
of 24 bases. The bad-input table of issue 5 is at the end: each case checks the exit code (2 usage, 1 data),
exactly one line on stderr starting with "Error:", no traceback and no output file left behind.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from conftest import fail_attribute_on_call, write_fasta
from dnalift.cli import cli
from dnalift.encoding import one_hot_encode, reverse_complement_sequence
from dnalift.io.store import open_results, partial_path, validate_results
from dnalift.references.make import dinucleotide_shuffle

sys.path.insert(0, str(Path(__file__).parents[1]))
import toy_models  # noqa: E402
from toy_models import FixedLength, NoRule  # noqa: E402

L = 24
N = 12


class Tiny(nn.Module):
    """Conv1d(4, 6, 5, padding 2) -> ReLU -> MaxPool1d(2) -> mean over length -> Linear(6, n_out); any length."""

    def __init__(self, n_out: int = 2):
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 5, padding=2)
        self.pool = nn.MaxPool1d(2)
        self.out = nn.Linear(6, n_out)

    def forward(self, x):
        return self.out(self.pool(torch.relu(self.conv(x))).mean(dim=-1))


class NamedTiny(Tiny):
    """Tiny with named outputs."""

    output_names = ("enhancer", "promoter")


def _model(cls, seed=0, **kw):
    torch.manual_seed(seed)
    m = cls(**kw).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)
    return m


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Sequences, models and a genome shared by the tests (read-only)."""
    d = tmp_path_factory.mktemp("cli_data")
    rng = np.random.default_rng(1)
    seqs = ["".join("ACGT"[i] for i in rng.integers(0, 4, L)) for _ in range(N)]
    names = [f"s{i:02d}" for i in range(N)]
    fasta = write_fasta(d / "seqs.fa", zip(names, seqs))
    tiny = _model(Tiny)
    example = torch.zeros(2, 4, L)
    torch.jit.save(torch.jit.trace(tiny, example), d / "model.pt")
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(tiny, (example,), dynamic_shapes=({0: batch},)), d / "model.pt2")
    named = _model(NamedTiny, seed=1)
    torch.save(named, d / "named.pkl")
    torch.jit.save(torch.jit.trace(_model(FixedLength), torch.zeros(2, 4, 30)), d / "fixed30.pt")
    torch.jit.save(torch.jit.trace(_model(NoRule), example), d / "norule.pt")
    torch.jit.save(torch.jit.trace(_model(toy_models.FiveChannel), torch.zeros(2, 5, L)), d / "five.pt")
    torch.jit.save(torch.jit.trace(_model(toy_models.ChannelsLastCNN), torch.zeros(2, L, 4)), d / "nlc.pt")
    chroms = {"chr1": "".join("ACGT"[i] for i in rng.integers(0, 4, 120)),
              "chr2": "".join("ACGT"[i] for i in rng.integers(0, 4, 80))}
    genome = write_fasta(d / "genome.fa", chroms.items())
    # model.pt2 (torch.export) loads faster than TorchScript, so most tests use it; model.pt is the same net
    return {"dir": d, "seqs": seqs, "names": names, "fasta": fasta, "model": d / "model.pt2", "tiny": tiny,
            "torchscript": d / "model.pt",
            "named": named, "genome": genome, "chroms": chroms}


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def assert_error(result, code: int, *words, folder: Path | None = None, warnings: int = 0):
    """Exit ``code``, exactly one stderr line "Error: ...", containing ``words`` (after ``warnings`` warning
    lines); nothing left in ``folder``."""
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 + warnings, result.stderr
    assert all(line.startswith("dnalift: warning: ") for line in lines[:-1]), result.stderr
    lines = lines[-1:]
    assert lines[0].startswith("Error: "), lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    if folder is not None:
        assert files_in(folder) == [], files_in(folder)
    return lines[0]


def datasets(path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(
            name, obj.asstr()[...] if obj.dtype.kind == "O" else obj[...]) if isinstance(obj, h5py.Dataset) else None)
    return out


def predict(model, X) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(X), dtype=torch.float32)).numpy()


# ---------------------------------------------------------------------------------------------------- score


def test_score_fasta_numbers(data, tmp_path):
    out = tmp_path / "out.h5"
    res = ok("score", data["torchscript"], data["fasta"], "-o", out, "--n-refs", 4, "--seed", 3)
    assert res.stdout.startswith(f"scored {N} sequences, skipped 0, in ")
    assert "worst |summation-to-delta error|" in res.stdout and str(out) in res.stdout
    assert validate_results(out) == []
    X = one_hot_encode(data["seqs"])
    with open_results(out) as r:
        assert r.names == data["names"]
        np.testing.assert_array_equal(r.raw(), X)
        proj, hyp = r.projected(), r.hypothetical()
        pred, ref_pred, deltas = r.predictions(), r.reference_predictions(), r.deltas()
        attrs = r.attrs
    # predictions are the model's own outputs (weight normalisation does not change them)
    np.testing.assert_allclose(pred, predict(data["tiny"], X)[:, 0], rtol=1e-5, atol=1e-5)
    # references: 4 dinucleotide shuffles per sequence seeded by (3, name)
    refs = dinucleotide_shuffle(X, n=4, seed=3, names=data["names"])
    ref_out = predict(data["tiny"], refs.reshape(-1, 4, L))[:, 0].reshape(N, 4).mean(1)
    np.testing.assert_allclose(ref_pred, ref_out, rtol=1e-5, atol=1e-5)
    # summation to delta: the projected scores add up to prediction - reference prediction
    change = pred - ref_pred
    assert np.abs(change).max() > 0.1  # the check below is not vacuous
    np.testing.assert_allclose(proj.sum(axis=(1, 2)), change, atol=2e-5)
    np.testing.assert_allclose(deltas, proj.sum(axis=(1, 2)) - change, atol=2e-5)
    np.testing.assert_array_equal(proj, hyp * X)
    # provenance
    assert attrs["rule"] == "rescale" and attrs["n_refs"] == 4 and attrs["seed"] == 3 and attrs["target"] == "0"
    assert attrs["model_sha256"] == hashlib.sha256(data["torchscript"].read_bytes()).hexdigest()
    assert attrs["model_format"] == "torchscript"
    assert attrs["command_line"].startswith("dnalift score ") and "--seed 3" in attrs["command_line"]
    assert attrs["normalized"] is True or attrs["normalized"] == 1
    # the same numbers as the engine called directly on the normalised model
    from dnalift.attribution.engine import attribute
    from dnalift.models import load_model
    from dnalift.normalize.weights import normalize_first_layer

    model = normalize_first_layer(load_model(data["torchscript"], input_length=L))
    direct = attribute(model, X, refs, target=0)
    np.testing.assert_allclose(hyp, direct.hypothetical.numpy(), atol=1e-6)


def test_score_targets_by_name_one_file_each(data, tmp_path):
    out = tmp_path / "scores.h5"
    res = ok("score", data["dir"] / "named.pkl", data["fasta"], "-o", out, "--trust-model", "--target", "promoter",
             "--target", "0", "--reference", "uniform", "--no-normalize")
    files = [tmp_path / "scores.promoter.h5", tmp_path / "scores.0.h5"]
    assert files_in(tmp_path) == sorted(p.name for p in files)
    assert all(str(p) in res.stdout for p in files)
    X = one_hot_encode(data["seqs"])
    expected = predict(data["named"], X)
    uniform = predict(data["named"], np.full((1, 4, L), 0.25, np.float32))[0]
    for path, column in zip(files, (1, 0)):
        with open_results(path) as r:
            np.testing.assert_allclose(r.predictions(), expected[:, column], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(r.reference_predictions(), np.full(N, uniform[column]), atol=1e-5)
            np.testing.assert_allclose(r.projected().sum(axis=(1, 2)), expected[:, column] - uniform[column],
                                       atol=2e-5)
            assert r.attrs["target_index"] == column and r.attrs["reference"] == "expected_frequency_uniform"
            assert r.attrs["normalized"] in (False, 0)


def test_rc_average_is_strand_symmetric(data, tmp_path):
    """With a strand-symmetric reference, scoring x and its reverse complement with --rc-average gives mirror
    images; predictions are the mean of the two strands."""
    rc = write_fasta(tmp_path / "rc.fa", zip(data["names"], map(reverse_complement_sequence, data["seqs"])))
    a, b, plain = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "plain.h5"
    common = ("--reference", "uniform", "--precision", "float64")
    ok("score", data["model"], data["fasta"], "-o", a, "--rc-average", *common)
    ok("score", data["model"], rc, "-o", b, "--rc-average", *common)
    ok("score", data["model"], data["fasta"], "-o", plain, *common)
    X = one_hot_encode(data["seqs"])
    p = predict(data["tiny"], X)[:, 0]
    p_rc = predict(data["tiny"], X[:, ::-1, ::-1].copy())[:, 0]
    with open_results(a) as ra, open_results(b) as rb, open_results(plain) as rp:
        np.testing.assert_allclose(ra.hypothetical(), rb.hypothetical()[:, ::-1, ::-1], atol=1e-5)
        np.testing.assert_allclose(ra.predictions(), (p + p_rc) / 2, atol=1e-5)
        np.testing.assert_allclose(ra.projected().sum(axis=(1, 2)), ra.predictions() - ra.reference_predictions(),
                                   atol=1e-5)
        assert np.abs(ra.hypothetical() - rp.hypothetical()).max() > 1e-3  # the option does something
        assert ra.attrs["rc_average"] in (True, 1)


def test_channels_last_model(data, tmp_path):
    out = tmp_path / "nlc.h5"
    ok("score", data["dir"] / "nlc.pt", data["fasta"], "-o", out, "--target", 1, "--n-refs", 3)
    X = one_hot_encode(data["seqs"])
    model = torch.jit.load(data["dir"] / "nlc.pt")
    with open_results(out) as r:
        np.testing.assert_allclose(r.predictions(), predict(model, X.transpose(0, 2, 1))[:, 1], atol=1e-5)
        np.testing.assert_allclose(r.projected().sum(axis=(1, 2)), r.predictions() - r.reference_predictions(),
                                   atol=2e-5)


def test_regions_and_bigwig(data, tmp_path):
    bed = tmp_path / "peaks.bed"
    bed.write_text("chr1\t10\t40\tr1\t0\t+\n"
                   "chr1\t50\t70\tr2\t0\t-\n"
                   "chr2\t30\t50\tr3\t0\t+\n"
                   "chr2\t70\t80\tr4\t0\t+\n")  # its 24-base window 63-87 runs off chr2 (80 bases)
    out = tmp_path / "peaks.h5"
    res = ok("score", data["model"], "--regions", bed, "--genome", data["genome"], "--width", L, "-o", out,
             "--n-refs", 3)
    assert "scored 3 sequences, skipped 1," in res.stdout
    chroms = data["chroms"]
    with open_results(out) as r:
        assert r.names == ["r1", "r2", "r3"]
        reg = r.regions
        assert list(reg["chrom"]) == ["chr1", "chr1", "chr2"]
        assert list(reg["start"]) == [13, 48, 28] and list(reg["end"]) == [37, 72, 52]
        assert list(reg["strand"]) == ["+", "-", "+"]
        np.testing.assert_array_equal(r.raw(0), one_hot_encode(chroms["chr1"][13:37])[0])
        np.testing.assert_array_equal(r.raw(1), one_hot_encode(reverse_complement_sequence(chroms["chr1"][48:72]))[0])
        per_base = r.projected().sum(axis=1)
        assert r.attrs["genome"] == str(data["genome"])
    pyBigWig = pytest.importorskip("pyBigWig")
    bw_path = tmp_path / "peaks.bw"
    res = ok("export", out, "--format", "bigwig", "-o", bw_path, "--genome", data["genome"])
    assert "bigWigInfo" in res.stdout
    bw = pyBigWig.open(str(bw_path))
    np.testing.assert_allclose(bw.values("chr1", 13, 37), per_base[0], atol=1e-6)
    np.testing.assert_allclose(bw.values("chr1", 48, 72), per_base[1][::-1], atol=1e-6)  # minus strand
    np.testing.assert_allclose(bw.values("chr2", 28, 52), per_base[2], atol=1e-6)
    bw.close()
    # without --genome: the genome recorded in the file
    ok("export", out, "--format", "bigwig", "-o", tmp_path / "again.bw")
    assert (tmp_path / "again.bw").stat().st_size > 0


def test_shards_merge_to_the_unsharded_run(data, tmp_path):
    full = tmp_path / "full.h5"
    ok("score", data["model"], data["fasta"], "-o", full, "--n-refs", 5)
    shards = [tmp_path / f"part{i}.h5" for i in (1, 2, 3)]
    for i, path in enumerate(shards, 1):
        ok("score", data["model"], data["fasta"], "-o", path, "--n-refs", 5, "--shard", f"{i}-of-3")
    with open_results(shards[1]) as r:
        assert r.n == 4 and r.attrs["shard"] == "2-of-3" and r.attrs["row_start"] == 4
    merged = tmp_path / "merged.h5"
    res = ok("merge", shards[2], shards[0], shards[1], "-o", merged)
    assert "merged 3 shards (12 sequences" in res.stdout
    a, b = datasets(full), datasets(merged)
    assert sorted(a) == sorted(b)
    for key in a:
        if a[key].dtype.kind in "fc":
            np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(b[key], a[key], err_msg=key)
    # merge refuses shards of different runs and incomplete sets; it leaves nothing behind
    other = tmp_path / "other" / "part2.h5"
    ok("score", data["model"], data["fasta"], "-o", other, "--n-refs", 5, "--seed", 9, "--shard", "2-of-3")
    folder = tmp_path / "m"
    assert_error(run("merge", shards[0], other, shards[2], "-o", folder / "all.h5"), 1, "seed", folder=folder)
    assert_error(run("merge", shards[0], shards[2], "-o", folder / "all.h5"), 1, "in no shard", folder=folder)


def test_resume_after_interruption_equals_uninterrupted(data, tmp_path, monkeypatch):
    whole = tmp_path / "whole.h5"
    common = ("--n-refs", 3, "--chunk-size", 4)
    ok("score", data["model"], data["fasta"], "-o", whole, *common)

    out = tmp_path / "run" / "out.h5"
    restore = fail_attribute_on_call(monkeypatch, 2)
    res = run("score", data["model"], data["fasta"], "-o", out, *common)
    restore()
    assert res.exit_code == 130
    assert res.stderr.splitlines()[-1] == "Error: interrupted"
    assert "--resume" in res.stderr
    assert not out.exists() and partial_path(out).exists()  # the first chunk is kept for --resume

    res = ok("score", data["model"], data["fasta"], "-o", out, *common, "--resume")
    assert res.stdout.startswith("scored 8 sequences, 4 kept from the interrupted run, skipped 0")
    assert not partial_path(out).exists()
    a, b = datasets(whole), datasets(out)
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(b[key], a[key], err_msg=key)
    # resuming with other options is refused and keeps the partial file
    ok("score", data["model"], data["fasta"], "-o", out, *common, "--force")
    res = run("score", data["model"], data["fasta"], "-o", tmp_path / "x" / "o.h5", *common, "--resume")
    assert res.exit_code == 0  # no partial file: --resume starts fresh


def test_resume_refuses_other_options(data, tmp_path, monkeypatch):
    out = tmp_path / "out.h5"
    restore = fail_attribute_on_call(monkeypatch, 2)
    assert run("score", data["model"], data["fasta"], "-o", out, "--n-refs", 3, "--chunk-size", 4).exit_code == 130
    restore()
    res = run("score", data["model"], data["fasta"], "-o", out, "--n-refs", 3, "--chunk-size", 4, "--seed", 5,
              "--resume")
    assert_error(res, 1, "cannot resume", "seed")
    assert partial_path(out).exists()  # the earlier run's work is not thrown away


# ------------------------------------------------------------------------------------- logo, export, inspect


@pytest.fixture(scope="module")
def scored(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("scored") / "out.h5"
    ok("score", data["model"], data["fasta"], "-o", out, "--n-refs", 3)
    return out


def test_logo(scored, tmp_path):
    png = tmp_path / "logo.png"
    res = ok("logo", scored, "--name", "s03", "--around-max", 10, "--hypothetical", "-o", png)
    assert "s03" in res.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ok("logo", scored, "--index", 0, "--start", 2, "--end", 20, "-o", tmp_path / "logo.svg")
    assert b"<svg" in (tmp_path / "logo.svg").read_bytes()[:2000]
    ok("logo", scored, "--index", 1, "-o", tmp_path / "logo.pdf")
    assert (tmp_path / "logo.pdf").read_bytes()[:5] == b"%PDF-"
    folder = tmp_path / "bad"
    assert_error(run("logo", scored, "--name", "nope", "-o", folder / "l.png"), 1, "nope", "dnalift inspect",
                 folder=folder)
    assert_error(run("logo", scored, "--index", 99, "-o", folder / "l.png"), 1, "out of range", folder=folder)
    assert_error(run("logo", scored, "--index", 0, "-o", folder / "l.jpg"), 2, ".png", folder=folder)
    assert_error(run("logo", scored, "-o", folder / "l.png"), 2, "--name", folder=folder)
    assert_error(run("logo", scored, "--index", 0, "--start", 1, "--around-max", 5, "-o", folder / "l.png"), 2,
                 folder=folder)


def test_export_modisco(scored, tmp_path):
    res = ok("export", scored, "--format", "modisco", "-o", tmp_path / "m" / "demo", "--window", 10)
    assert "modisco motifs -s" in res.stdout and "-w 10" in res.stdout
    hyp = np.load(tmp_path / "m" / "demo.hyp.npz")
    ohe = np.load(tmp_path / "m" / "demo.ohe.npz")
    assert list(hyp) == ["arr_0"] and list(ohe) == ["arr_0"]
    with open_results(scored) as r:
        assert hyp["arr_0"].shape == (N, 4, 10) and ohe["arr_0"].shape == (N, 4, 10)
        cols = slice(L // 2 - 5, L // 2 + 5)
        np.testing.assert_array_equal(hyp["arr_0"], r.hypothetical()[:, :, cols])
        np.testing.assert_array_equal(ohe["arr_0"], r.raw()[:, :, cols].astype(np.float32))
    folder = tmp_path / "bad"
    assert_error(run("export", scored, "--format", "modisco", "-o", folder / "p", "--window", 7), 2, "even",
                 folder=folder)
    assert_error(run("export", scored, "--format", "bigwig", "-o", folder / "x.bw"), 1, "regions", folder=folder)
    # the outputs exist now: refused without --force
    assert_error(run("export", scored, "--format", "modisco", "-o", tmp_path / "m" / "demo"), 1, "--force")


def test_inspect(scored, tmp_path):
    res = ok("inspect", scored)
    with open_results(scored) as r:
        deltas = np.abs(r.deltas())
        worst = r.names[int(np.argmax(deltas))]
    assert f"max |delta| {deltas.max():.3g} ({worst})" in res.stdout
    assert "validation:  OK" in res.stdout
    assert "projected_shap/seq" in res.stdout and f"({N}, 4, {L})" in res.stdout
    assert "model_sha256" in res.stdout and "rescale" in res.stdout
    assert ok("inspect", scored, "--names").stdout.split() == [f"s{i:02d}" for i in range(N)]
    # a file whose projected scores do not match: invalid -> exit 1
    bad = tmp_path / "bad.h5"
    bad.write_bytes(scored.read_bytes())
    with h5py.File(bad, "r+") as f:
        f["projected_shap/seq"][0, :, :] = 1.0
    res = run("inspect", bad)
    assert_error(res, 1, "not a valid result file", "projected_shap")
    assert "validation:  FAILED" in res.stdout


def test_info(data, tmp_path):
    res = ok("info", data["model"])
    assert "aten.relu" in res.stdout and "Rescale" in res.stdout
    assert "max rule (exact)" in res.stdout and "the model can be scored" in res.stdout
    assert "--target 0..1" in res.stdout
    res = ok("info", data["model"], "--rule", "revealcancel")
    assert "RevealCancel" in res.stdout
    res = run("info", data["dir"] / "norule.pt")
    assert_error(res, 1, "erf")
    assert "NO RULE" in res.stdout and "aten.erf" in res.stdout


def test_help_and_version():
    res = ok("score", "--help")
    assert "OUT.<target>.h5" in res.stdout and "--resume" in res.stdout and "--rc-average" in res.stdout
    assert "0.1.0" in ok("--version").stdout


# ----------------------------------------------------------------------------------------- bad-input table


@pytest.fixture
def out(tmp_path):
    """An empty output folder: nothing may be left in it after a failure."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def test_missing_fasta(data, out, tmp_path):
    assert_error(run("score", data["model"], tmp_path / "nope.fa", "-o", out / "o.h5"), 1, "does not exist",
                 folder=out)


def test_empty_fasta(data, out, tmp_path):
    empty = tmp_path / "empty.fa"
    empty.write_text("")
    assert_error(run("score", data["model"], empty, "-o", out / "o.h5"), 1, "empty", folder=out)


def test_not_a_fasta(data, out, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\nthis is not a FASTA file\n")
    assert_error(run("score", data["model"], text, "-o", out / "o.h5"), 1, "not a FASTA file", folder=out)


def test_binary_file_as_model(data, out, tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    assert_error(run("score", binary, data["fasta"], "-o", out / "o.h5"), 1, "model.bin", folder=out)


def test_pickle_without_trust_is_not_unpickled(data, out, tmp_path):
    marker = tmp_path / "unpickled.txt"
    torch.save(toy_models.MarkerModule(marker), tmp_path / "whole.pt")
    assert_error(run("score", tmp_path / "whole.pt", data["fasta"], "-o", out / "o.h5"), 1, "--trust-model",
                 folder=out)
    assert not marker.exists()


def test_model_input_length_mismatch(data, out):
    line = assert_error(run("score", data["dir"] / "fixed30.pt", data["fasta"], "-o", out / "o.h5"), 1,
                        "length 30", "--width 30", folder=out)
    assert "24" in line


def test_model_channel_layout_mismatch(data, out):
    assert_error(run("score", data["dir"] / "five.pt", data["fasta"], "-o", out / "o.h5"), 1, folder=out)


def test_op_without_rule(data, out):
    assert_error(run("score", data["dir"] / "norule.pt", data["fasta"], "-o", out / "o.h5"), 1, "erf",
                 "--allow-gradient", folder=out)


def test_mixed_lengths_need_width(data, out, tmp_path):
    mixed = write_fasta(tmp_path / "mixed.fa", [("a", "ACGTACGTACGTACGTACGTACGT"), ("b", "ACGTACGTAC")])
    assert_error(run("score", data["model"], mixed, "-o", out / "o.h5"), 1, "differ in length", "width",
                 folder=out)
    ok("score", data["model"], mixed, "-o", out / "o.h5", "--width", L, "--n-refs", 2)
    with open_results(out / "o.h5") as r:  # b is N-padded: 7 all-zero columns on each side
        assert r.length == L and r.raw(1)[:, :7].sum() == 0 and r.raw(1)[:, 7:17].sum() == 10
        assert r.raw(1)[:, 17:].sum() == 0


def test_duplicate_names(data, out, tmp_path):
    dup = write_fasta(tmp_path / "dup.fa", [("a", "ACGT" * 6), ("a", "TTGCA" * 4 + "ACGT")])
    assert_error(run("score", data["model"], dup, "-o", out / "o.h5"), 1, "duplicate", folder=out)


@pytest.fixture
def iupac(data, tmp_path):
    seqs = list(data["seqs"][:4])
    seqs[1] = seqs[1][:5] + "N" + seqs[1][6:10] + "R" + seqs[1][11:]
    return write_fasta(tmp_path / "iupac.fa", zip(data["names"][:4], seqs))


def test_iupac_zero_scores_with_zero_columns(data, out, iupac):
    ok("score", data["model"], iupac, "-o", out / "o.h5", "--n-refs", 2, "--n-policy", "zero")
    with open_results(out / "o.h5") as r:
        raw = r.raw(1)
        assert raw[:, 5].sum() == 0 and raw[:, 10].sum() == 0 and raw.sum() == L - 2
        assert np.all(r.projected(1)[:, [5, 10]] == 0)
        np.testing.assert_allclose(r.projected().sum(axis=(1, 2)), r.predictions() - r.reference_predictions(),
                                   atol=2e-5)


def test_iupac_skip_counts(data, out, iupac):
    res = ok("score", data["model"], iupac, "-o", out / "o.h5", "--n-refs", 2, "--n-policy", "skip")
    assert "scored 3 sequences, skipped 1," in res.stdout
    with open_results(out / "o.h5") as r:
        assert r.names == ["s00", "s02", "s03"]


def test_iupac_error_fails(data, out, iupac):
    assert_error(run("score", data["model"], iupac, "-o", out / "o.h5", "--n-policy", "error"), 1, "s01",
                 folder=out)


def test_bed_line_off_the_chromosome(data, out, tmp_path):
    bed = tmp_path / "off.bed"
    bed.write_text("chr2\t70\t80\tr4\n")  # the 24-base window 63-87 runs off chr2 (80 bases)
    assert_error(run("score", data["model"], "--regions", bed, "--genome", data["genome"], "--width", L,
                     "-o", out / "o.h5"), 1, "no region is left", folder=out, warnings=1)
    # (with other regions beside it, it is skipped and counted: test_regions_and_bigwig)


def test_output_exists_without_force(data, out):
    target = out / "o.h5"
    target.write_bytes(b"precious")
    assert_error(run("score", data["model"], data["fasta"], "-o", target), 1, "exists", "--force")
    assert target.read_bytes() == b"precious" and files_in(out) == ["o.h5"]
    ok("score", data["model"], data["fasta"], "-o", target, "--force", "--n-refs", 2)
    assert validate_results(target) == []


def test_unwritable_output_directory(data, out):
    blocker = out / "not_a_dir"
    blocker.write_text("a file where the output directory should be")
    assert_error(run("score", data["model"], data["fasta"], "-o", blocker / "o.h5"), 1, "not a directory")
    assert files_in(out) == ["not_a_dir"]


def test_wrong_target(data, out):
    assert_error(run("score", data["model"], data["fasta"], "-o", out / "o.h5", "--target", 5), 2,
                 "does not exist", "2 output", folder=out)
    assert_error(run("score", data["model"], data["fasta"], "-o", out / "o.h5", "--target", "enhancer"), 2,
                 "enhancer", folder=out)
    assert_error(run("score", data["dir"] / "named.pkl", data["fasta"], "-o", out / "o.h5", "--trust-model",
                     "--target", "silencer"), 2, "0=enhancer, 1=promoter", folder=out, warnings=1)


@pytest.mark.parametrize("args, words", [
    (["--shard", "3-of-2"], ["--shard", "between 1 and n"]),
    (["--shard", "two"], ["i-of-n"]),
    (["--regions", "x.bed", "--genome", "g.fa"], ["not both"]),
    (["--n-refs", "0"], ["--n-refs"]),
    (["--device", "gpu"], ["--device"]),
    (["--reference", "nothing.fa"], ["--reference"]),
])
def test_usage_errors(data, out, args, words):
    assert_error(run("score", data["model"], data["fasta"], "-o", out / "o.h5", *args), 2, *words, folder=out)


def test_regions_without_genome(data, out, tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t10\t40\n")
    assert_error(run("score", data["model"], "--regions", bed, "-o", out / "o.h5"), 2, "--genome", folder=out)


def test_data_error_mid_run_leaves_nothing(data, out, tmp_path):
    """A bad letter in the third chunk stops the run after two chunks were written: no partial file stays."""
    seqs = list(data["seqs"])
    seqs[10] = seqs[10][:3] + "7" + seqs[10][4:]
    bad = write_fasta(tmp_path / "bad.fa", zip(data["names"], seqs))
    assert_error(run("score", data["model"], bad, "-o", out / "o.h5", "--chunk-size", 4, "--n-refs", 2), 1,
                 "s10", folder=out)


@pytest.mark.parametrize("command", [["logo", "--index", "0", "-o", "{out}/l.png"],
                                     ["export", "--format", "modisco", "-o", "{out}/m"],
                                     ["inspect"]])
def test_truncated_hdf5(scored, out, tmp_path, command):
    truncated = tmp_path / "truncated.h5"
    blob = scored.read_bytes()
    truncated.write_bytes(blob[: len(blob) // 2])
    args = [command[0], truncated] + [c.format(out=out) for c in command[1:]]
    assert_error(run(*args), 1, "truncated", folder=out)


# ------------------------------------------------------------------------------------- help, words, progress


@pytest.mark.parametrize("command", ["score", "logo", "export", "merge", "average", "info", "inspect"])
def test_every_subcommand_help_has_examples(command):
    res = ok(command, "--help")
    assert "Examples:" in res.stdout and f"dnalift {command} " in res.stdout.split("Examples:")[1]


def test_one_option_name_per_concept():
    assert "--width" in ok("info", "--help").stdout and "--input-length" not in ok("info", "--help").stdout


def test_library_words_become_flags():
    from dnalift.cli._words import cli_words

    assert cli_words("n_refs must be at least 1, got 0", "n_refs") == "--n-refs must be at least 1, got 0"
    assert cli_words("use n_policy='zero' or n_policy='skip'") == "use --n-policy zero or --n-policy skip"
    assert cli_words("pass force=True to start over; rerun with resume=True") == \
        "pass --force to start over; rerun with --resume"
    assert cli_words("target='x' is not an output; its outputs are 0=a, 1=b") == \
        "--target x is not an output; its outputs are 0=a, 1=b"
    assert cli_words("seed must be a whole number", "seed") == "--seed must be a whole number"
    assert cli_words("the seed of the run", "seed") == "the seed of the run"  # prose stays prose
    assert cli_words("load it with input_length=L (--width L)") == "load it with --width L"


def test_logo_refuses_to_overwrite_without_force(scored, tmp_path):
    png = tmp_path / "l.png"
    ok("logo", scored, "--index", 0, "-o", png)
    first = png.read_bytes()
    assert_error(run("logo", scored, "--index", 1, "-o", png), 1, "exists", "--force")
    assert png.read_bytes() == first
    ok("logo", scored, "--index", 1, "-o", png, "--force")
    assert png.read_bytes() != first


def test_progress_line_has_rate_elapsed_and_labelled_eta(monkeypatch):
    from dnalift.cli import _logging

    now = [100.0]
    monkeypatch.setattr(_logging.time, "monotonic", lambda: now[0])
    p = _logging.Progress("scoring")
    p.start, p.first = 100.0, 0
    assert p._line(0, 3000, 100.0).endswith("ETA estimating")
    line = p._line(1000, 3000, 110.0)
    assert "33%" in line and "1,000/3,000 seq" in line and "100 seq/s" in line
    assert "elapsed 10 s" in line and line.endswith("ETA 20 s")
    assert p._line(3000, 3000, 130.0).endswith("done")


def test_piped_progress_logs_first_chunk_then_tenths(monkeypatch, caplog):
    import logging as std_logging

    from dnalift.cli import _logging

    now = [0.0]
    monkeypatch.setattr(_logging.time, "monotonic", lambda: now[0])
    p = _logging.Progress("scoring")
    p.tty, p.enabled = False, True
    with caplog.at_level(std_logging.INFO, logger="dnalift.cli"):
        p(0, 1000)
        for done in range(10, 1001, 10):  # a chunk of 10 every second
            now[0] += 1.0
            p(done, 1000)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("scoring   1% ") and "10/1,000" in lines[0]  # the first chunk, at once
    assert 9 <= len(lines) <= 12  # then about every tenth, never more often than every 5 s
    assert lines[-1].endswith("done")
