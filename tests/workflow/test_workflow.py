"""The Snakemake workflow in workflows/: lint, dry runs of its configurations, its schema against dnalift's enums,
and one end-to-end run of the test configuration on the demo data (the CLI, TF-MoDISco lite and its report, as CI
runs them), reused by the tests that need a finished run: a second run does nothing, an interrupted shard
restarts after its options change, and the cluster-generic executor gives the same scores."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("snakemake")
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
WF = ROOT / "workflows"
DEMO = ROOT / "data" / "demo"
BIN = Path(sys.executable).parent
LOCAL_BATCH = WF / "cluster" / "local_batch.py"
FOLD_MODELS = [DEMO / "model.pt", DEMO / "fold2" / "model.pt"]
# the demo inputs by absolute path, so the workflow can run in a temporary directory: two folds, as test.yaml
DEMO_CONFIG = {"model": "", "models": [str(m) for m in FOLD_MODELS], "fasta": str(DEMO / "test.fa"),
               "modisco": {"meme_db": str(WF / "config" / "demo_motifs.meme")}}
#: one model, instead of test.yaml's two folds
ONE_MODEL = {"model": str(DEMO / "model.pt"), "models": None}
# the scores of the first fold only: shards and merge
SCORES_ONLY = {**DEMO_CONFIG, **ONE_MODEL, "logos": {"top_k": 0}, "modisco": {"enabled": False}}
DATASETS = ("raw/seq", "shap/seq", "projected_shap/seq", "predictions", "reference_predictions", "deltas")


def snakemake(workdir: Path, *args, config: dict | None = None, timeout: int = 600, env: dict | None = None,
              snakefile: Path = WF / "workflow" / "Snakefile"):
    """Run snakemake on the workflow in ``workdir`` with the test configuration, updated by ``config`` (written
    to a second config file: later config files override earlier ones, nested keys one by one)."""
    configs = [str(WF / "config" / "test.yaml")]
    if config:
        extra = workdir / "override.yaml"
        extra.write_text(yaml.safe_dump(config))
        configs.append(str(extra))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir),
           "--configfile", *configs, *args]
    env = dict(os.environ if env is None else env)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
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


def failure(res, workdir: Path) -> str:
    """What to show when a run failed: the ends of its output and of every rule's log."""
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(workdir.glob("results/test/logs/*")))
    return res.stdout[-3000:] + res.stderr[-3000:] + logs


def needs_commands(*tools):
    for tool in tools:
        if not (BIN / tool).exists() and shutil.which(tool) is None:
            pytest.skip(f"the {tool} command is not installed (pip install -e '.[workflow]')")


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def read_datasets(path: Path) -> dict[str, np.ndarray]:
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "r") as f:
        data = {name: f[name][:] for name in DATASETS}
        data["names"] = f["names"].asstr()[:]
    return data


def assert_same_scores(path: Path, expected: Path):
    got, want = read_datasets(path), read_datasets(expected)
    for name in want:  # same code, same chunks, same device: the very same numbers
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


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
        for path in [config["fasta"], *([config["model"]] if config["model"] else config["models"])]:
            assert (WF / path).is_file(), (name, path)
    assert len(yaml.safe_load((WF / "config" / "test.yaml").read_text())["models"]) == 2  # two folds in CI
    test = yaml.safe_load((WF / "config" / "test.yaml").read_text())
    assert (WF / test["modisco"]["meme_db"]).is_file()


def test_schema_choices_are_dnalift_enums():
    """A YAML schema cannot import Python, and the Snakefile does not import dnalift (Snakemake may run in an
    environment without it), so this test keeps the schema's choices equal to dnalift/config.py's enums."""
    from dnalift.options import Center, MaxRule, Mode, NPolicy, Precision, ReferenceMethod

    schema = yaml.safe_load((WF / "workflow" / "schemas" / "config.schema.yaml").read_text())
    score = schema["properties"]["score"]["properties"]
    builtin = [branch["enum"] for branch in score["reference"]["anyOf"] if "enum" in branch]
    assert builtin == [list(ReferenceMethod.values())]
    assert score["rule"]["enum"] == list(Mode.values())
    assert score["max_rule"]["enum"] == list(MaxRule.values())
    assert score["precision"]["enum"] == list(Precision.values())
    assert score["n_policy"]["enum"] == list(NPolicy.values())
    assert schema["properties"]["center"]["enum"] == list(Center.values())
    # and config/config.yaml documents every score option the schema has
    documented = yaml.safe_load((WF / "config" / "config.yaml").read_text())
    assert set(documented["score"]) == set(score)
    assert set(documented["finemo"]) == set(schema["properties"]["finemo"]["properties"])


def job_resources(output: str, rule: str) -> list[dict[str, str]]:
    """The resources of each job of ``rule`` in a dry run's listing (``resources: a=1, b=x``)."""
    found = re.findall(rf"rule {rule}:\n(?:\s+\w+: .*\n)*?\s+resources: (.*)", output)
    return [dict(item.split("=", 1) for item in line.split(", ")) for line in found]


def test_dry_run_on_cuda_asks_for_a_gpu_per_shard(tmp_path):
    res = snakemake(tmp_path, "-n", config={**DEMO_CONFIG, "score": {"device": "cuda:1"}})
    assert res.returncode == 0, res.stdout + res.stderr
    assert [job.get("gpu") for job in job_resources(res.stdout, "score_shard")] == ["1"] * 4
    assert ["gpu" in job for job in job_resources(res.stdout, "merge")] == [False, False]
    assert ["gpu" in job for job in job_resources(res.stdout, "finemo_hits")] == [False]
    res = snakemake(tmp_path, "-n", config={**DEMO_CONFIG, "finemo": {"gpu": True}})
    assert [job.get("gpu") for job in job_resources(res.stdout, "finemo_hits")] == ["1"]


def test_dry_run_lists_the_jobs_and_their_commands(tmp_path):
    res = snakemake(tmp_path, "-n", "-p", config={**DEMO_CONFIG, "score": {"max_rule": "gradient"}})
    assert res.returncode == 0, res.stdout + res.stderr
    assert job_counts(res.stdout) == {
        "score_shard": 4, "merge": 2, "average": 1, "top_sequences": 1, "logos_done": 1, "modisco_export": 1,
        "modisco_motifs": 1, "modisco_report": 1, "finemo_extract": 1, "finemo_hits": 1, "all": 1, "total": 15,
    }
    for fold in ("fold0", "fold1"):  # each fold scored in two shards, merged, then the folds averaged
        for shard in ("1-of-2", "2-of-2"):
            assert f"results/test/folds/{fold}/shards/scores.{shard}.h5" in res.stdout
    assert "results/test/modisco/report/report.html" in res.stdout
    # on the cpu no job asks for a GPU
    assert ["gpu" in job for job in job_resources(res.stdout, "score_shard")] == [False] * 4

    # score_shard and modisco_report are scripts (the shard's command is in its log, checked end to end); the
    # others print theirs
    for fold in ("fold0", "fold1"):
        assert re.search(rf"dnalift merge \S+{fold}/shards/scores\.1-of-2\.h5 \S+{fold}/shards/scores\.2-of-2\.h5 "
                         rf"-o results/test/folds/{fold}/scores\.h5", res.stdout)
    assert re.search(r"dnalift average results/test/folds/fold0/scores\.h5 results/test/folds/fold1/scores\.h5 "
                     r"-o results/test/scores\.h5", res.stdout)
    # the window is read from the exported npz when the job runs
    assert re.search(r"modisco motifs -s results/test/modisco/scores\.ohe\.npz -a results/test/modisco/scores\.hyp\.npz "
                     r"-w <TBD> -n 300 -l 1", res.stdout)
    assert re.search(r"finemo extract-regions-chrombpnet-h5 -c results/test/scores\.h5 \"\$@\" -w <TBD> "
                     r"-o results/test/finemo/regions\.npz", res.stdout)
    assert re.search(r"finemo call-hits -r results/test/finemo/regions\.npz -m results/test/modisco/"
                     r"modisco_results\.h5 -o results/test/finemo/hits -l 0\.7", res.stdout)
    # one model: no folds, no average
    res = snakemake(tmp_path, "-n", config={**DEMO_CONFIG, **ONE_MODEL})
    counts = job_counts(res.stdout)
    assert counts["score_shard"] == 2 and counts["merge"] == 1 and "average" not in counts
    assert "results/test/shards/scores.1-of-2.h5" in res.stdout


def test_dry_run_with_regions_adds_the_bigwig(tmp_path):
    genome = tmp_path / "genome.fa"
    genome.write_text(">chr1\n" + "ACGT" * 250 + "\n")
    bed = tmp_path / "peaks.bed"
    bed.write_text("chr1\t100\t300\nchr1\t500\t700\n")
    refs = tmp_path / "refs.fa"
    refs.write_text(">r0\n" + "A" * 200 + "\n")
    res = snakemake(tmp_path, "-n", "-p", config={
        **ONE_MODEL, "fasta": None, "regions": str(bed), "genome": str(genome), "width": 200,
        "modisco": {"enabled": False}, "shards": 3, "score": {"reference": str(refs)}})
    assert res.returncode == 0, res.stdout + res.stderr
    counts = job_counts(res.stdout)
    assert counts["score_shard"] == 3 and counts["bigwig"] == 1
    assert "modisco_motifs" not in counts and "finemo_hits" not in counts
    assert f"--format bigwig --genome {genome}" in res.stdout
    # the merge names the kept regions beside its output, as dnalift names them (the workflow cannot import it)
    from dnalift.io.store.schema import kept_regions_path, regions_format

    kept = kept_regions_path("results/test/scores.h5", regions_format(bed))
    assert re.search(rf"rule merge:\n(?:\s+\w+: .*\n)*?\s+output: results/test/scores\.h5, {re.escape(str(kept))}\n",
                     res.stdout), res.stdout
    # a FASTA of references is an input of the shards: a change to it reruns them
    shard_inputs = re.search(r"rule score_shard:\n\s+input: (.*)", res.stdout).group(1)
    assert shard_inputs.split(", ") == [str(bed), str(genome), str(refs), str(DEMO / "model.pt")]
    narrow = tmp_path / "peaks.narrowPeak.gz"
    narrow.write_bytes(b"")
    res = snakemake(tmp_path, "-n", config={
        "models": [str(m) for m in FOLD_MODELS], "model": "", "fasta": None, "regions": str(narrow),
        "genome": str(genome), "width": 200, "modisco": {"enabled": False}})
    kept = kept_regions_path("results/test/scores.h5", regions_format(narrow))
    assert kept.name == "scores.regions.narrowPeak"
    assert re.search(rf"rule average:\n(?:\s+\w+: .*\n)*?\s+output: results/test/scores\.h5, {re.escape(str(kept))}\n",
                     res.stdout), res.stdout


@pytest.mark.parametrize("config, message", [
    ({"shards": 0}, "instance['shards']"),
    ({"modisco": {"window": 51}}, "instance['modisco']['window']"),
    ({"score": {"max_rule": "max"}}, "instance['score']['max_rule']"),
    ({"score": {"reference": ""}}, "instance['score']['reference']"),
    ({"score": {"n_policy": "drop"}}, "instance['score']['n_policy']"),
    ({"unknown_key": 1}, "unknown_key"),
])
def test_bad_configs_are_refused_by_the_schema(config, message):
    """The schema the Snakefile validates against, checked in-process (the next test runs Snakemake)."""
    from snakemake.utils import validate

    base = yaml.safe_load((WF / "config" / "test.yaml").read_text())
    with pytest.raises(Exception, match=re.escape(message)):  # a replaced section takes the other defaults
        validate({**base, **config}, str(WF / "workflow" / "schemas" / "config.schema.yaml"))


@pytest.mark.parametrize("config, message", [
    ({"fasta": ""}, "give either 'fasta' or 'regions'"),
    ({"regions": "x.bed"}, "give either 'fasta' or 'regions'"),
    ({"fasta": "", "regions": "x.bed", "genome": "g.fa"}, "'regions' needs 'genome' (a FASTA) and 'width'"),
    ({"score": {"rule": "deeplift"}}, "instance['score']['rule']"),
    ({"score": {"reference": "no_such_refs.fa"}}, "no_such_refs.fa"),
    ({"model": str(DEMO / "model.pt")}, "give either 'model' (one model file) or 'models'"),
    ({"models": None}, "give either 'model' (one model file) or 'models'"),
    ({"models": {"fold 0": "a.pt"}}, "instance['models']"),
])
def test_bad_configs_are_refused(tmp_path, config, message):
    res = snakemake(tmp_path, "-n", config={**DEMO_CONFIG, **config})
    assert res.returncode != 0
    assert message in res.stdout + res.stderr


def load_helper():
    """workflow/scripts/resume_or_restart.py as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("resume_or_restart",
                                                  WF / "workflow" / "scripts" / "resume_or_restart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resume_or_restart_decides_from_the_partial_file(tmp_path):
    """The helper's choice for each state of the partial file, without scoring anything."""
    h5py = pytest.importorskip("h5py")
    helper = load_helper()
    out = tmp_path / "shards" / "scores.1-of-2.h5"
    out.parent.mkdir()
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    command = ["dnalift", "score", str(model), "seqs.fa", "--n-refs", "5", "--shard", "1-of-2", "-o", str(out)]
    partial = out.with_name(".scores.1-of-2.h5.partial.h5")

    def decide(**kwargs):
        return helper.decide(command, inputs=[str(model)], restart=False, **kwargs)[0]

    def make_partial(recorded: list[str] | None, created: str = "2099-01-01T00:00:00+00:00"):
        with h5py.File(partial, "w") as f:
            if recorded is not None:
                f.attrs["command_line"] = " ".join(recorded)
            f.attrs["created"] = created

    assert decide() == "--resume"  # no partial file: a fresh start either way
    assert helper.decide(command, inputs=[], restart=True)[0] == "--force"
    make_partial(["dnalift", *command[1:], "--resume"])
    assert decide() == "--resume"
    # the executable is not compared (the CLI records it as 'dnalift'), nor verbosity or --resume/--force
    assert helper.decide(["/env/bin/dnalift", *command[1:], "-v"], inputs=[], restart=False)[0] == "--resume"
    make_partial(["dnalift", *command[1:4], "--n-refs", "3", *command[6:], "--force"])
    flag, reason = helper.decide(command, inputs=[], restart=False)
    assert flag == "--force" and "--n-refs 3, now --n-refs 5" in reason
    make_partial(["dnalift", *command[1:], "--rc-average"])
    assert decide() == "--force"
    make_partial(None)  # no record of the command that made it
    assert decide() == "--force"
    # an input changed after the partial file was started
    make_partial(["dnalift", *command[1:]], created="2000-01-01T00:00:00+00:00")
    flag, reason = helper.decide(command, inputs=[str(model)], restart=False)
    assert flag == "--force" and str(model) in reason
    # a file that cannot be read (damaged, or held by a live run): dnalift score --resume decides
    partial.write_bytes(b"not hdf5")
    assert decide() == "--resume"


def test_a_shard_job_waits_for_a_live_run_on_its_output(tmp_path):
    """A shard job left running by a killed Snakemake holds dnalift's lock on the output: the next job waits for it
    (saying so, with its process id), then finds the output it finished: nothing to do with the same command,
    replaced with another one."""
    from dnalift.io.store import lock_path

    helper = load_helper()
    out = tmp_path / "scores.1-of-2.h5"
    assert helper.lock_path(str(out)) == lock_path(out)
    assert helper.live_run(str(out)) is None and not lock_path(out).exists()  # no lock file is made
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from dnalift.io.store import OutputLock; lock = OutputLock(sys.argv[1]).acquire(); "
        "print('locked', flush=True); time.sleep(1.5); lock.release()"), str(out)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert helper.live_run(str(out)) == str(holder.pid)
        import contextlib
        import io

        said, t0 = io.StringIO(), time.monotonic()
        with contextlib.redirect_stdout(said):
            helper.wait_for_live_run(str(out), poll=0.1)
        assert time.monotonic() - t0 > 1.0  # it waited for the end of that run (1.5 s after it locked)
    finally:
        holder.kill()
        holder.wait()
    assert f"being written by another dnalift run (process {holder.pid}" in said.getvalue()
    assert f"kill {holder.pid}" in said.getvalue() and "that run has ended" in said.getvalue()
    assert helper.live_run(str(out)) is None and not lock_path(out).exists()
    # what that run left: the output made by this command (nothing to do) or another (replaced)
    h5py = pytest.importorskip("h5py")
    command = ["dnalift", "score", "m.pt", "s.fa", "--n-refs", "5", "--shard", "1-of-2", "-o", str(out)]
    assert helper.left_by_earlier_run(command, inputs=[]) is None
    with h5py.File(out, "w") as f:
        f.attrs["command_line"] = " ".join(command + ["--resume"])
        f.attrs["created"] = "2099-01-01T00:00:00+00:00"
    assert helper.left_by_earlier_run(command, inputs=[]) == "done"
    assert helper.left_by_earlier_run([*command[:5], "3", *command[6:]], inputs=[]) == "--force"
    model = tmp_path / "m.pt"
    model.write_bytes(b"")
    with h5py.File(out, "r+") as f:
        f.attrs["created"] = "2000-01-01T00:00:00+00:00"  # the model changed after that run started
    assert helper.left_by_earlier_run(command, inputs=[str(model)]) == "--force"


def test_the_report_gets_one_word_motif_names(tmp_path):
    """modisco-lite's report finds a match's logo only under the first word of its MOTIF line: the database the
    report job writes has one-word names, unique, without path separators, and reads back with its matrices."""
    import importlib.util

    memelite = pytest.importorskip("memelite.io")
    spec = importlib.util.spec_from_file_location("modisco_report", WF / "workflow" / "scripts" / "modisco_report.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    demo = (WF / "config" / "demo_motifs.meme").read_text()
    source = tmp_path / "db.meme"
    source.write_text(demo.replace("MOTIF GATA1 CAGATAAGAA", "MOTIF MA0035.4  GATA1/gata-1\tlong").replace(
        "MOTIF TAL1 AACAGATGGT", "MOTIF MA0035.4 GATA1/gata-1 long"))
    renamed = script.one_word_names(str(source), str(tmp_path / "out.meme"))
    assert [new for _, new in renamed] == ["MA0035.4_GATA1_gata-1_long", "MA0035.4_GATA1_gata-1_long_"]
    motifs = memelite.read_meme(str(tmp_path / "out.meme"))
    assert list(motifs) == [new for _, new in renamed]
    assert all(name.split()[0] == name for name in motifs)  # how the report looks a match's logo up
    for a, b in zip(memelite.read_meme(str(WF / "config" / "demo_motifs.meme")).values(), motifs.values()):
        np.testing.assert_array_equal(a, b)  # the matrices are untouched
    names = script.full_names({"pos_patterns.pattern_0": {"match_0": "MA0035.4_GATA1_gata-1_long", "match_1": "X"},
                               "pos_patterns.pattern_1": {}}, top_n_matches=1)
    assert names == {"pos_patterns.pattern_0": "MA0035.4_GATA1_gata-1_long", "pos_patterns.pattern_1":
                     "pos_patterns.pattern_1"}


# ----------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The test configuration from the model to the modisco report, run once for the tests below (1-2
    minutes on 2 cores). ``-p`` prints each command as it runs."""
    needs_commands("dnalift", "modisco")
    workdir = tmp_path_factory.mktemp("demo_run")
    res = snakemake(workdir, "--cores", "2", "-p", config=DEMO_CONFIG, timeout=900)
    assert res.returncode == 0, failure(res, workdir)
    return workdir, res


@pytest.mark.slow
def test_end_to_end_on_the_demo(demo_run, tmp_path):
    h5py = pytest.importorskip("h5py")
    workdir, res = demo_run
    out = workdir / "results" / "test"
    names = fasta_names(DEMO / "test.fa")
    # each fold: two shards of 150 rows each, merged into one file holding every sequence once, in FASTA order
    folds = []
    for fold in ("fold0", "fold1"):
        for i, (a, b) in enumerate([(0, 150), (150, 300)], start=1):
            with h5py.File(out / "folds" / fold / "shards" / f"scores.{i}-of-2.h5", "r") as f:
                assert f["raw/seq"].shape == (b - a, 4, 200)
        folds.append(read_datasets(out / "folds" / fold / "scores.h5"))
        assert list(folds[-1]["names"]) == names
    assert not np.allclose(folds[0]["shap/seq"], folds[1]["shap/seq"], atol=1e-3)  # two different models
    # the average of the folds: their mean, for the scores and the predictions
    with h5py.File(out / "scores.h5", "r") as f:
        assert f["raw/seq"].shape == (300, 4, 200)
        assert list(f["names"].asstr()[:]) == names
        for name in ("shap/seq", "projected_shap/seq", "predictions"):
            mean = (folds[0][name].astype(np.float64) + folds[1][name]) / 2
            np.testing.assert_allclose(f[name][:], mean, rtol=1e-5, atol=1e-6, err_msg=name)
        predictions = np.asarray(f["predictions"][:]).reshape(300, -1)[:, 0]
        projected = f["projected_shap/seq"][:]
        raw = f["raw/seq"][:]
        assert int(f.attrs["n_refs"]) == 5
    assert np.abs(folds[0]["deltas"]).max() < 1e-3 and np.abs(folds[1]["deltas"]).max() < 1e-3
    # the per-base scores sum to prediction - mean reference prediction: here only checked to be nonzero and
    # confined to the observed bases
    assert np.all(projected[raw == 0] == 0) and np.abs(projected).sum() > 0
    # each shard's log says how it started (no partial file: afresh) and the command, with the options
    decision, command = (out / "logs" / "score.fold0.1-of-2.log").read_text().splitlines()[:2]
    assert decision.startswith("resume_or_restart: no partial file") and decision.endswith("(--resume)")
    assert command.startswith(f"command: dnalift score {DEMO / 'model.pt'} {DEMO / 'test.fa'} ")
    for option in ("--reference dinuc", "--n-refs 5", "--seed 0", "--rule rescale", "--max-rule exact",
                   "--target 0", "--device cpu", "--precision float32", "--n-policy zero",
                   "--shard 1-of-2 -o results/test/folds/fold0/shards/scores.1-of-2.h5 --resume"):
        assert f" {option}" in command, option
    assert (out / "logs" / "score.fold1.2-of-2.log").read_text().splitlines()[1].startswith(
        f"command: dnalift score {DEMO / 'fold2' / 'model.pt'} ")

    # sharding changes nothing: an unsharded run of the sequences either side of the shard boundary (references
    # are seeded per sequence name) gives their scores
    records = (DEMO / "test.fa").read_text().split(">")[1:]
    around = tmp_path / "around_the_boundary.fa"
    around.write_text("".join(">" + r for r in records[140:160]))
    single = tmp_path / "single.h5"
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    run = subprocess.run(["dnalift", "score", str(DEMO / "model.pt"), str(around), "--n-refs", "5",
                          "--device", "cpu", "-q", "-o", str(single)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    with h5py.File(single, "r") as f:
        assert list(f["names"].asstr()[:]) == names[140:160]
        np.testing.assert_allclose(f["projected_shap/seq"][:], folds[0]["projected_shap/seq"][140:160], rtol=0,
                                   atol=1e-5)

    # logos of the three highest predictions
    with open(out / "logos" / "top_sequences.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    best = np.argsort(-predictions, kind="stable")[:3]
    assert [int(r["index"]) for r in rows] == best.tolist()
    assert [r["name"] for r in rows] == [names[i] for i in best]
    for rank in (1, 2, 3):
        png = out / "logos" / f"top{rank}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "logos" / "done.txt").read_text().split() == [f"{out.relative_to(workdir)}/logos/top{r}.png"
                                                                for r in (1, 2, 3)]

    # the modisco inputs, its window (the length, 200, read from the npz when the job ran), results and report
    for kind in ("hyp", "ohe"):
        with np.load(out / "modisco" / f"scores.{kind}.npz") as z:
            assert z["arr_0"].shape == (300, 4, 200)
    assert re.search(r"modisco motifs -s \S+ -a \S+ -w 200 -n 300 ", res.stdout + res.stderr)
    with h5py.File(out / "modisco" / "modisco_results.h5", "r") as f:
        assert "pos_patterns" in f and len(f["pos_patterns"]) >= 1
    check_report(out / "modisco" / "report")
    check_finemo_hits(out / "finemo" / "hits")


def check_report(report: Path):
    """The report names each pattern after its best match among the demo's two motifs, by the whole name (the
    database's MOTIF line, made one word: longer than the 10 characters modisco-lite keeps), and shows each
    match's logo: the DeepLIFT scores of the demo models should let modisco find both among the positive
    patterns."""
    html = (report / "report.html").read_text()
    best_matches = re.findall(r'class="pattern-name">\s*(\S+)\s*</a>\s*<span class="pattern-id">pos_patterns', html)
    assert {"GATA1_CAGATAAGAA", "TAL1_AACAGATGGT"} <= set(best_matches), best_matches
    assert "Logo not available" not in html
    assert len(re.findall(r'<img src="data:image/png;base64,[^"]+" alt="Match 0 Logo"', html)) >= 2
    assert (report / "motifs.meme").read_text().count("MOTIF ") == 2


def check_finemo_hits(hits_dir: Path):
    """FiNeMo's hits of the two patterns matched to GATA1 and TAL1 lie on the sites the simulator planted
    (data/demo/test_motifs.tsv), each pattern mostly on its own motif's sites (a 6-base hit placed at random
    would overlap one of a sequence's one or two 10-base sites about 10-16% of the time; GATA hits also find
    GATA-like letters the random background holds, which the models use too: 0.67 of them are planted sites)."""
    with open(hits_dir / "hits.tsv") as fh:
        hits = list(csv.DictReader(fh, delimiter="\t"))
    with open(DEMO / "test_motifs.tsv") as fh:
        sites = list(csv.DictReader(fh, delimiter="\t"))
    names = fasta_names(DEMO / "test.fa")
    planted = {}
    for site in sites:
        planted.setdefault(names.index(site["name"]), []).append((int(site["start"]), int(site["end"]), site["motif"]))
    on = {}
    for hit in hits:
        row, a, b = int(hit["peak_id"]), int(hit["start"]), int(hit["end"])
        motifs = [m for s, e, m in planted.get(row, []) if a < e and s < b]
        on.setdefault(hit["motif_name"], []).append(motifs[0] if motifs else None)
    assert len(hits) > 100, len(hits)
    best = {}
    for pattern, found in on.items():
        if len(found) >= 50:
            motif = max(set(found) - {None}, key=found.count)
            best[motif] = found.count(motif) / len(found)
    assert set(best) == {"GATA1", "TAL1"} and min(best.values()) > 0.5, best


@pytest.mark.slow
def test_second_run_does_nothing(demo_run, tmp_path):
    """Rerunning the finished demo unchanged runs no job and touches no file, by Snakemake's own account."""
    workdir, _ = demo_run
    before = mtimes(workdir / "results")
    summary = snakemake(workdir, "--summary", config=DEMO_CONFIG)
    assert summary.returncode == 0, summary.stderr
    rows = [line.split("\t") for line in summary.stdout.splitlines() if line.startswith("results/")]
    assert len(rows) >= 12  # shards, merge, logos, modisco export, results and report
    assert {(row[4], row[5]) for row in rows} == {("ok", "no update")}, summary.stdout
    rerun = snakemake(workdir, "--cores", "2", config=DEMO_CONFIG)
    assert rerun.returncode == 0, rerun.stderr
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
    # switching score.resume changes how an unfinished shard starts, not a finished one; and where the workflow's
    # files are is no part of any job's record: still nothing to do with the workflow copied elsewhere
    moved = tmp_path / "elsewhere"
    shutil.copytree(WF / "workflow", moved / "workflow")  # copy2: the files keep their modification times
    toggled = snakemake(workdir, "-n", config={**DEMO_CONFIG, "score": {"resume": False}},
                        snakefile=moved / "workflow" / "Snakefile")
    assert "Nothing to be done" in toggled.stdout + toggled.stderr, toggled.stdout
    assert mtimes(workdir / "results") == before


@pytest.mark.slow
def test_restart_after_an_interruption_with_other_options(demo_run, tmp_path):
    """Shard 1 was interrupted when the run had score.n_refs 3 (its partial file is left), shard 2 with the
    current options; with n_refs 5 now, shard 1 starts afresh, shard 2 is finished from its partial file, and the
    merged scores are those of the clean run."""
    h5py = pytest.importorskip("h5py")
    workdir, _ = demo_run
    clean = workdir / "results" / "test" / "folds" / "fold0"  # the first fold: the demo model, as SCORES_ONLY
    shards = tmp_path / "results" / "test" / "shards"
    shards.mkdir(parents=True)
    # shard 1: the clean run's file as the partial file a run with --n-refs 3 leaves (its recorded options and
    # command say n_refs 3; its scores are zeroed, so that keeping any of them would show in the merged file)
    stale = shards / ".scores.1-of-2.h5.partial.h5"
    shutil.copy(clean / "shards" / "scores.1-of-2.h5", stale)
    with h5py.File(stale, "r+") as f:
        f.attrs["n_refs"] = 3
        f.attrs["command_line"] = str(f.attrs["command_line"]).replace("--n-refs 5", "--n-refs 3").replace(
            "folds/fold0/shards", "shards")
        assert "--n-refs 3" in f.attrs["command_line"]
        for name in ("shap/seq", "projected_shap/seq"):
            f[name][...] = 0
    # shard 2: the partial file of the current options (the clean run's shard, as if killed before its rename)
    shutil.copy(clean / "shards" / "scores.2-of-2.h5", shards / ".scores.2-of-2.h5.partial.h5")
    with h5py.File(shards / ".scores.2-of-2.h5.partial.h5", "r+") as f:  # its output then, in one model's layout
        f.attrs["command_line"] = str(f.attrs["command_line"]).replace("folds/fold0/shards", "shards")

    res = snakemake(tmp_path, "--cores", "2", config=SCORES_ONLY)
    assert res.returncode == 0, failure(res, tmp_path)
    logs = tmp_path / "results" / "test" / "logs"
    assert "--n-refs 3, now --n-refs 5" in (logs / "score.1-of-2.log").read_text()
    assert "finishing it (--resume)" in (logs / "score.2-of-2.log").read_text()
    with h5py.File(shards / "scores.1-of-2.h5", "r") as f:
        assert int(f.attrs["n_refs"]) == 5
    with h5py.File(shards / "scores.2-of-2.h5", "r") as new, h5py.File(clean / "shards" / "scores.2-of-2.h5") as old:
        assert new.attrs["created"] == old.attrs["created"]  # finished, not recomputed
    assert not list(shards.glob(".*.partial.h5"))
    assert_same_scores(tmp_path / "results" / "test" / "scores.h5", clean / "scores.h5")


@pytest.mark.slow
def test_cluster_executor_gives_the_local_scores(demo_run, tmp_path):
    """Score and merge through snakemake-executor-plugin-cluster-generic with workflows/cluster/local_batch.py as
    the scheduler: each job a detached process in its own session, started in / with only PATH and HOME, under
    the wall time it declared. The merged scores equal those of the local run."""
    pytest.importorskip("snakemake_executor_plugin_cluster_generic")
    workdir, _ = demo_run
    batch = f"{sys.executable} {LOCAL_BATCH}"
    try:
        res = snakemake(
            tmp_path, "--executor", "cluster-generic", "--jobs", "3", "--seconds-between-status-checks", "1",
            "--default-resources", "mem_mb=1000", "runtime=10",  # for the merge, as profiles/slurm's defaults
            "--cluster-generic-submit-cmd",
            f"{batch} submit --cpus {{threads}} --mem-mb {{resources.mem_mb}} --time {{resources.runtime}} "
            f"--job-name {{rule}}",
            "--cluster-generic-status-cmd", f"{batch} status",
            "--cluster-generic-cancel-cmd", str(WF / "cluster" / "local_cancel"),
            config=SCORES_ONLY, timeout=600)
    finally:  # never leave a detached job behind (those that ended are left alone)
        jobs = sorted((tmp_path / ".local-batch").glob("*"))
        if jobs:
            subprocess.run([str(WF / "cluster" / "local_cancel"), *[job.name for job in jobs]], cwd=tmp_path)
    assert res.returncode == 0, failure(res, tmp_path) + "".join(
        (job / "output.log").read_text()[-2000:] for job in jobs)
    assert_same_scores(tmp_path / "results" / "test" / "scores.h5",
                       workdir / "results" / "test" / "folds" / "fold0" / "scores.h5")
    # one job per shard and one for the merge, each with the resources it declared, its exit status and its log
    assert sorted(job.name.split(".")[0] for job in jobs) == ["merge", "score_shard", "score_shard"]
    for job in jobs:
        request = yaml.safe_load((job / "request.json").read_text())
        expected = {"score_shard": (1, 2000, 10), "merge": (1, 1000, 10)}[request["job_name"]]
        assert (request["cpus"], request["mem_mb"], request["time_min"]) == expected
        assert (job / "exit").read_text().strip() == "0"
        assert f"--target-jobs '{request['job_name']}:" in (job / "job.sh").read_text()
    for name in ("score.1-of-2.log", "score.2-of-2.log", "merge.log"):
        assert (tmp_path / "results" / "test" / "logs" / name).stat().st_size > 0


@pytest.mark.slow
def test_end_to_end_regions_to_bigwig(tmp_path):
    """narrowPeak regions on a genome, scored by two folds: the shards read windows of the genome, the folds are
    averaged, the kept regions (the input lines of the rows) are beside every result, and the bigWig puts the
    averaged per-base scores back on genome coordinates (the demo sequences laid out on one chromosome, 50 N
    between them; one more region runs off the chromosome and is skipped)."""
    needs_commands("dnalift")
    h5py = pytest.importorskip("h5py")
    pyBigWig = pytest.importorskip("pyBigWig")
    fasta = (DEMO / "test.fa").read_text().split(">")[1:13]
    records = [(r.split()[0], "".join(r.splitlines()[1:])) for r in fasta]
    genome, peaks = "", []
    for name, seq in records:
        start = len(genome) + 50
        genome += "N" * 50 + seq
        peaks.append(f"chr1\t{start}\t{start + len(seq)}\t{name}\t0\t.\t1\t-1\t-1\t{len(seq) // 2}")
    genome += "N" * 50
    peaks.insert(5, "chr1\t10\t60\toff\t0\t.\t1\t-1\t-1\t5")
    (tmp_path / "genome.fa").write_text(">chr1\n" + "\n".join(genome[i:i + 60] for i in range(0, len(genome), 60)) + "\n")
    (tmp_path / "peaks.narrowPeak").write_text("\n".join(peaks) + "\n")
    res = snakemake(tmp_path, "--cores", "2", config={
        "models": [str(m) for m in FOLD_MODELS], "model": "", "fasta": None,
        "regions": str(tmp_path / "peaks.narrowPeak"), "genome": str(tmp_path / "genome.fa"), "width": 200,
        "center": "summit", "shards": 2, "modisco": {"enabled": False}, "logos": {"top_k": 0}})
    assert res.returncode == 0, failure(res, tmp_path)
    out = tmp_path / "results" / "test"
    kept = [line for line in peaks if "\toff\t" not in line]
    for folder in (out, out / "folds" / "fold0", out / "folds" / "fold1"):
        assert (folder / "scores.regions.narrowPeak").read_text().splitlines() == kept
    with h5py.File(out / "scores.h5", "r") as f:
        assert f["raw/seq"].shape == (12, 4, 200)
        starts = f["regions/start"][:]
        projected = f["projected_shap/seq"][:].sum(axis=1)  # (12, 200)
    assert starts.tolist() == [int(line.split("\t")[1]) for line in kept]
    command = (out / "logs" / "score.fold1.2-of-2.log").read_text().splitlines()[1]
    assert (f" --regions {tmp_path / 'peaks.narrowPeak'} --genome {tmp_path / 'genome.fa'} --width 200 "
            f"--center summit ") in command
    bw = pyBigWig.open(str(out / "scores.bw"))
    try:
        assert bw.chroms() == {"chr1": len(genome)}
        for row in (0, 11):
            values = np.array(bw.values("chr1", int(starts[row]), int(starts[row]) + 200))
            np.testing.assert_allclose(values, projected[row], rtol=0, atol=1e-6)
    finally:
        bw.close()
    assert not (out / "logos").exists() and not (out / "modisco").exists()
