"""The Snakemake workflow in workflows/: lint, dry runs of its configurations, and one end-to-end run of the test
configuration on the demo data (the CLI, TF-MoDISco lite and its report, as CI runs them)."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("snakemake")
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
WF = ROOT / "workflows"
DEMO = ROOT / "data" / "demo"
BIN = Path(sys.executable).parent
# the demo inputs by absolute path, so the workflow can run in a temporary directory
DEMO_CONFIG = {"model": str(DEMO / "model.pt"), "fasta": str(DEMO / "test.fa"),
               "modisco": {"meme_db": str(WF / "config" / "demo_motifs.meme")}}


def snakemake(workdir: Path, *args, config: dict | None = None, timeout: int = 600):
    """Run snakemake on the workflow in ``workdir`` with the test configuration, updated by ``config`` (written
    to a second config file: later config files override earlier ones, nested keys one by one)."""
    configs = [str(WF / "config" / "test.yaml")]
    if config:
        extra = workdir / "override.yaml"
        extra.write_text(yaml.safe_dump(config))
        configs.append(str(extra))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(WF / "workflow" / "Snakefile"), "-d", str(workdir),
           "--configfile", *configs, *args]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(cmd, cwd=WF, env=env, capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    """The first 'Job stats' table of a snakemake run: rule -> number of jobs."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Job stats"))
    counts = {}
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def fasta_names(path: Path) -> list[str]:
    return [line[1:].split()[0] for line in path.read_text().splitlines() if line.startswith(">")]


# ------------------------------------------------------------------------------------------------ static
def test_lint_passes(tmp_path):
    res = snakemake(tmp_path, "--lint", config=DEMO_CONFIG)
    assert res.returncode == 0, res.stdout + res.stderr


def test_configs_are_valid_and_test_paths_exist():
    from snakemake.utils import validate

    schema = str(WF / "workflow" / "schemas" / "config.schema.yaml")
    for name in ("config.yaml", "test.yaml"):
        config = yaml.safe_load((WF / "config" / name).read_text())
        validate(config, schema)  # raises on an invalid configuration
        # the documented command runs from workflows/: the relative inputs must be there
        for key in ("model", "fasta"):
            assert (WF / config[key]).is_file(), (name, key)
    test = yaml.safe_load((WF / "config" / "test.yaml").read_text())
    assert (WF / test["modisco"]["meme_db"]).is_file()
    profile = yaml.safe_load((WF / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert "slurm_account" in profile["default-resources"]


def test_dry_run_lists_the_jobs(tmp_path):
    res = snakemake(tmp_path, "-n", config=DEMO_CONFIG)
    assert res.returncode == 0, res.stdout + res.stderr
    assert job_counts(res.stdout) == {
        "score_shard": 2, "merge": 1, "top_sequences": 1, "logos_done": 1, "modisco_export": 1,
        "modisco_motifs": 1, "modisco_report": 1, "all": 1, "total": 9,
    }
    out = res.stdout
    for shard in ("1-of-2", "2-of-2"):
        assert f"results/test/shards/scores.{shard}.h5" in out
    assert "results/test/modisco/report/report.html" in out


def test_dry_run_prints_the_commands(tmp_path):
    res = snakemake(tmp_path, "-n", "-p", config=DEMO_CONFIG)
    assert res.returncode == 0, res.stdout + res.stderr
    score = [line for line in res.stdout.splitlines() if " score " in line and "--shard 1-of-2" in line]
    assert score, res.stdout
    for option in ("--reference dinuc", "--n-refs 5", "--seed 0", "--rule rescale", "--target 0", "--resume"):
        assert option in score[0]
    assert re.search(r"dnalift merge .*scores\.1-of-2\.h5 .*scores\.2-of-2\.h5 -o results/test/scores\.h5",
                     res.stdout)
    assert re.search(r"modisco report --n_examples 1 -m \S+demo_motifs\.meme -n 1 -l -i results/test/modisco/"
                     r"modisco_results\.h5 -o results/test/modisco/report -s \./", res.stdout)
    assert re.search(r"modisco motifs -s results/test/modisco/scores\.ohe\.npz -a results/test/modisco/scores\.hyp\.npz "
                     r"-w \$w -n 300 -l 1", res.stdout)


def test_dry_run_with_regions_adds_the_bigwig(tmp_path):
    genome = tmp_path / "genome.fa"
    genome.write_text(">chr1\n" + "ACGT" * 250 + "\n")
    bed = tmp_path / "peaks.bed"
    bed.write_text("chr1\t100\t300\nchr1\t500\t700\n")
    res = snakemake(tmp_path, "-n", "-p", config={
        "model": str(DEMO / "model.pt"), "fasta": None, "regions": str(bed), "genome": str(genome), "width": 200,
        "modisco": {"enabled": False}, "shards": 3})
    assert res.returncode == 0, res.stdout + res.stderr
    counts = job_counts(res.stdout)
    assert counts["score_shard"] == 3 and counts["bigwig"] == 1
    assert "modisco_motifs" not in counts
    assert f"--regions {bed} --genome {genome} --width 200 --center mid" in res.stdout
    assert f"--format bigwig --genome {genome}" in res.stdout


@pytest.mark.parametrize("config, message", [
    ({"fasta": ""}, "give either 'fasta' or 'regions'"),
    ({"regions": "x.bed"}, "give either 'fasta' or 'regions'"),
    ({"fasta": "", "regions": "x.bed", "genome": "g.fa"}, "'regions' needs 'genome' (a FASTA) and 'width'"),
    ({"shards": 0}, "instance['shards']"),
    ({"modisco": {"window": 51}}, "instance['modisco']['window']"),
    ({"score": {"rule": "deeplift"}}, "instance['score']['rule']"),
    ({"unknown_key": 1}, "unknown_key"),
])
def test_bad_configs_are_refused(tmp_path, config, message):
    res = snakemake(tmp_path, "-n", config={"model": str(DEMO / "model.pt"), "fasta": str(DEMO / "test.fa"), **config})
    assert res.returncode != 0
    assert message in res.stdout + res.stderr


# ----------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_end_to_end_on_the_demo(tmp_path):
    """The test configuration from the model to the modisco report (about 1-2 minutes on 1 core)."""
    for tool in ("dnalift", "modisco"):
        if not (BIN / tool).exists() and shutil.which(tool) is None:
            pytest.skip(f"the {tool} command is not installed (pip install -e '.[workflow]')")
    h5py = pytest.importorskip("h5py")
    res = snakemake(tmp_path, "--cores", "1", config=DEMO_CONFIG, timeout=900)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(tmp_path.glob("results/test/logs/*")))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:] + logs

    out = tmp_path / "results" / "test"
    names = fasta_names(DEMO / "test.fa")
    # two shards of 150 rows each, merged into one file holding every sequence once, in FASTA order
    for i, (a, b) in enumerate([(0, 150), (150, 300)], start=1):
        with h5py.File(out / "shards" / f"scores.{i}-of-2.h5", "r") as f:
            assert f["raw/seq"].shape == (b - a, 4, 200)
    with h5py.File(out / "scores.h5", "r") as f:
        assert f["raw/seq"].shape == (300, 4, 200)
        assert f["shap/seq"].shape == (300, 4, 200)
        assert list(f["names"].asstr()[:]) == names
        predictions = np.asarray(f["predictions"][:]).reshape(300, -1)[:, 0]
        projected = f["projected_shap/seq"][:]
        raw = f["raw/seq"][:]
        deltas = f["deltas"][:]
        assert int(f.attrs["n_refs"]) == 5
    assert np.abs(deltas).max() < 1e-3
    # the per-base scores sum to prediction - mean reference prediction: here only checked to be nonzero and
    # confined to the observed bases
    assert np.all(projected[raw == 0] == 0) and np.abs(projected).sum() > 0

    # sharding changes nothing: one unsharded run with the same options gives the same scores
    single = tmp_path / "single.h5"
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    run = subprocess.run(["dnalift", "score", str(DEMO / "model.pt"), str(DEMO / "test.fa"), "--n-refs", "5",
                          "--device", "cpu", "-q", "-o", str(single)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    with h5py.File(single, "r") as f:
        np.testing.assert_allclose(f["projected_shap/seq"][:], projected, rtol=0, atol=1e-5)

    # logos of the three highest predictions
    with open(out / "logos" / "top_sequences.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    best = np.argsort(-predictions, kind="stable")[:3]
    assert [int(r["index"]) for r in rows] == best.tolist()
    assert [r["name"] for r in rows] == [names[i] for i in best]
    for rank in (1, 2, 3):
        png = out / "logos" / f"top{rank}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "logos" / "done.txt").read_text().split() == [f"{out.relative_to(tmp_path)}/logos/top{r}.png"
                                                                for r in (1, 2, 3)]

    # the modisco inputs, its results and the report
    for kind in ("hyp", "ohe"):
        with np.load(out / "modisco" / f"scores.{kind}.npz") as z:
            assert z["arr_0"].shape == (300, 4, 200)
    with h5py.File(out / "modisco" / "modisco_results.h5", "r") as f:
        assert "pos_patterns" in f and len(f["pos_patterns"]) >= 1
    html = (out / "modisco" / "report" / "report.html").read_text()
    # the report names each pattern after its best match among the demo's two motifs: the DeepLIFT scores of
    # the demo model should let modisco find both among the positive patterns
    best_matches = re.findall(r'class="pattern-name">\s*(\w+)[^<]*</a>\s*<span class="pattern-id">pos_patterns',
                              html)
    assert {"GATA1", "TAL1"} <= set(best_matches), best_matches


@pytest.mark.slow
def test_end_to_end_regions_to_bigwig(tmp_path):
    """BED regions on a genome: the shards read windows of the genome and the bigWig puts the per-base scores
    back on genome coordinates (the demo sequences laid out on one chromosome, 50 N between them)."""
    if not (BIN / "dnalift").exists() and shutil.which("dnalift") is None:
        pytest.skip("the dnalift command is not installed (pip install -e '.[workflow]')")
    h5py = pytest.importorskip("h5py")
    pyBigWig = pytest.importorskip("pyBigWig")
    fasta = (DEMO / "test.fa").read_text().split(">")[1:13]
    records = [(r.split()[0], "".join(r.splitlines()[1:])) for r in fasta]
    genome, bed = "", []
    for name, seq in records:
        start = len(genome) + 50
        genome += "N" * 50 + seq
        bed.append(f"chr1\t{start}\t{start + len(seq)}\t{name}\n")
    genome += "N" * 50
    (tmp_path / "genome.fa").write_text(">chr1\n" + "\n".join(genome[i:i + 60] for i in range(0, len(genome), 60)) + "\n")
    (tmp_path / "regions.bed").write_text("".join(bed))
    res = snakemake(tmp_path, "--cores", "1", config={
        "model": str(DEMO / "model.pt"), "fasta": None, "regions": str(tmp_path / "regions.bed"),
        "genome": str(tmp_path / "genome.fa"), "width": 200, "shards": 3, "modisco": {"enabled": False},
        "logos": {"top_k": 0}})
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(tmp_path.glob("results/test/logs/*")))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:] + logs
    out = tmp_path / "results" / "test"
    with h5py.File(out / "scores.h5", "r") as f:
        assert f["raw/seq"].shape == (12, 4, 200)
        starts = f["regions/start"][:]
        projected = f["projected_shap/seq"][:].sum(axis=1)  # (12, 200)
    assert starts.tolist() == [int(line.split("\t")[1]) for line in bed]
    bw = pyBigWig.open(str(out / "scores.bw"))
    try:
        assert bw.chroms() == {"chr1": len(genome)}
        for row in (0, 11):
            values = np.array(bw.values("chr1", int(starts[row]), int(starts[row]) + 200))
            np.testing.assert_allclose(values, projected[row], rtol=0, atol=1e-6)
    finally:
        bw.close()
    assert not (out / "logos").exists() and not (out / "modisco").exists()
