"""Cluster execution of the workflow without a cluster: the batch-scheduler stand-in workflows/cluster/local_batch.py
that CI runs the workflow through (tests/workflow/test_workflow.py runs the demo with it), and the SLURM profile's dry runs
with snakemake-executor-plugin-slurm installed, where no SLURM command may be called."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_workflow import DEMO_CONFIG, WF, job_counts, job_resources, snakemake

yaml = pytest.importorskip("yaml")

LOCAL_BATCH = WF / "cluster" / "local_batch.py"
PROFILE = WF / "profiles" / "slurm"
SLURM_COMMANDS = ("sbatch", "srun", "sacct", "squeue", "sinfo", "scontrol", "scancel", "sacctmgr")


def batch(workdir: Path, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LOCAL_BATCH), *args], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=60)


def wait_for(workdir: Path, job_id: str, timeout: float = 30.0) -> str:
    """Poll ``status`` like Snakemake does until the job is no longer running."""
    deadline = time.monotonic() + timeout
    while True:
        state = batch(workdir, "status", job_id).stdout.strip()
        if state != "running" or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def submit(workdir: Path, script: str, *options, env: dict | None = None) -> str:
    jobscript = workdir / "job.sh"
    jobscript.write_text("#!/bin/sh\n" + script)
    res = batch(workdir, "submit", "--cpus", "1", "--mem-mb", "100", "--time", "1", "--job-name", "test",
                *options, str(jobscript), env=env)
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip()
    assert re.fullmatch(r"test\.\w+", job_id), res.stdout
    return job_id


# --------------------------------------------------------------------------------------------- local_batch.py
def test_a_job_runs_detached_with_nothing_from_the_submitter(tmp_path):
    report = tmp_path / "report.txt"
    env = dict(os.environ, SUBMITTER_ONLY="1")
    job_id = submit(tmp_path, f"pwd > {report}\n"
                              f"cut -d ' ' -f 6 /proc/$$/stat >> {report}\n"  # the session id
                              f"readlink /proc/$$/fd/0 >> {report}\n"
                              f"env >> {report}\n", env=env)
    assert wait_for(tmp_path, job_id) == "success"
    cwd, sid, stdin, *environment = report.read_text().splitlines()
    assert cwd == "/"  # not the submitter's directory
    assert int(sid) != os.getsid(0)  # its own session
    assert stdin == "/dev/null"  # nothing to read from the submitter
    variables = {line.split("=", 1)[0] for line in environment if "=" in line}
    assert "SUBMITTER_ONLY" not in variables and {"PATH", "HOME", "LOCAL_BATCH_JOB_ID"} <= variables
    assert variables <= {"PATH", "HOME", "LANG", "LOCAL_BATCH_JOB_ID", "LOCAL_BATCH_CPUS", "PWD", "OLDPWD", "SHLVL",
                         "_"}, variables
    job = tmp_path / ".local-batch" / job_id
    assert (job / "exit").read_text().strip() == "0"
    assert yaml.safe_load((job / "request.json").read_text()) == {"job_name": "test", "cpus": 1, "mem_mb": 100,
                                                                  "time_min": 1.0}


def test_status_of_failed_timed_out_cancelled_and_unknown_jobs(tmp_path):
    failed = submit(tmp_path, "echo oops; exit 3\n")
    timed_out = submit(tmp_path, "sleep 30\n", "--time", "0.02")  # 1.2 s of wall time
    cancelled = submit(tmp_path, "sleep 30\n")
    assert batch(tmp_path, "status", cancelled).stdout.strip() == "running"
    subprocess.run([str(WF / "cluster" / "local_cancel"), cancelled], cwd=tmp_path, check=True, timeout=30)
    assert wait_for(tmp_path, failed) == "failed"
    assert (tmp_path / ".local-batch" / failed / "output.log").read_text() == "oops\n"
    assert (tmp_path / ".local-batch" / failed / "exit").read_text().strip() == "3"
    assert wait_for(tmp_path, timed_out) == "failed"
    assert (tmp_path / ".local-batch" / timed_out / "exit").read_text().strip() == "124"  # timeout's status
    assert wait_for(tmp_path, cancelled, timeout=10) == "failed"
    assert batch(tmp_path, "status", "no_such_job").stdout.strip() == "failed"


def test_submit_refuses_a_job_without_resources(tmp_path):
    (tmp_path / "job.sh").write_text("#!/bin/sh\ntrue\n")
    res = batch(tmp_path, "submit", "--cpus", "1", "--time", "10", str(tmp_path / "job.sh"))
    assert res.returncode == 2 and "--mem-mb" in res.stderr
    res = batch(tmp_path, "submit", "--cpus", "1", "--mem-mb", "10", "--time", "0", str(tmp_path / "job.sh"))
    assert res.returncode == 2 and "more than 0 minutes" in res.stderr
    assert not list(tmp_path.glob(".local-batch/*"))


# -------------------------------------------------------------------------------------------- SLURM profile
@pytest.fixture
def no_slurm(tmp_path):
    """An environment whose SLURM commands fail, recording that they were called: a dry run must pass without
    them (the plugin asks `scontrol show config` for limits and falls back to defaults) and submit nothing."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    fake = tmp_path / "fake_slurm"
    fake.mkdir()
    calls = tmp_path / "slurm_calls.txt"
    for name in SLURM_COMMANDS:
        (fake / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\nexit 1\n')
        (fake / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ.get('PATH', '')}")
    return env, calls


def submitted(calls: Path) -> list[str]:
    """The recorded calls of the SLURM commands that start jobs."""
    lines = calls.read_text().splitlines() if calls.exists() else []
    return [line for line in lines if line.split()[0] in ("sbatch", "srun")]


def test_slurm_profile_dry_run_needs_no_slurm(tmp_path, no_slurm):
    env, calls = no_slurm
    res = snakemake(tmp_path, "--profile", str(PROFILE), "-n", config=DEMO_CONFIG, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not submitted(calls)
    assert job_counts(res.stdout)["score_shard"] == 4  # two folds of two shards
    for shard in job_resources(res.stdout, "score_shard"):
        # the workflow's resources for the shards and FiNeMo, the profile's defaults for the rest; no GPU on cpu
        assert (shard["runtime"], shard["mem_mb"], shard["slurm_account"]) == ("10", "2000", "CHANGE_ME")
        assert "gpu" not in shard
    for job in job_resources(res.stdout, "merge") + job_resources(res.stdout, "average"):
        assert (job["runtime"], job["mem_mb"], job["slurm_partition"]) == ("30", "4000", "CHANGE_ME")
    (hits,) = job_resources(res.stdout, "finemo_hits")
    assert (hits["runtime"], hits["mem_mb"], hits["slurm_partition"]) == ("20", "4000", "CHANGE_ME")


def test_slurm_profile_sends_gpu_shards_to_the_gpu_partition(tmp_path, no_slurm):
    """The profile's documented GPU block, uncommented, with score.device cuda: the shards ask for one GPU of the
    model named there, in the GPU partition; the other steps stay on the CPU partition without a GPU."""
    env, calls = no_slurm
    text = (PROFILE / "config.yaml").read_text()
    block = text[text.index("# set-resources:"):]
    assert "gpu_model" in block
    profile = tmp_path / "slurm_gpu"
    profile.mkdir()
    uncommented = "\n".join(line[2:] if line.startswith("# ") else line for line in block.splitlines())
    (profile / "config.yaml").write_text(text.replace(block, uncommented + "\n"))
    res = snakemake(tmp_path, "--profile", str(profile), "-n", config={**DEMO_CONFIG, "score": {"device": "cuda"}},
                    env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not submitted(calls)
    shards = job_resources(res.stdout, "score_shard")
    assert len(shards) == 4
    for shard in shards:
        assert (shard["gpu"], shard["gpu_model"], shard["slurm_partition"]) == ("1", "a100", "CHANGE_ME_GPU")
    for job in job_resources(res.stdout, "merge") + job_resources(res.stdout, "average"):
        assert "gpu" not in job and job["slurm_partition"] == "CHANGE_ME"
