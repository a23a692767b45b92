#!/usr/bin/env python3
"""A stand-in for a batch scheduler (sbatch / sacct / scancel) that runs each job as its own detached process on
this machine, for running the workflow through Snakemake's cluster-generic executor where there is no cluster
(CI). It shows the jobs need nothing from the process that submitted them: a job starts in a new session, in
/, with stdin closed and an environment of PATH and HOME only, so it works only because its job script changes
to the shared working directory itself and its rules name their inputs, resources and logs.

    snakemake ... --executor cluster-generic --jobs 4 \\
        --cluster-generic-submit-cmd "python3 cluster/local_batch.py submit --cpus {threads} \\
            --mem-mb {resources.mem_mb} --time {resources.runtime} --job-name {rule}" \\
        --cluster-generic-status-cmd "python3 cluster/local_batch.py status" \\
        --cluster-generic-cancel-cmd cluster/local_cancel

``submit [options] JOBSCRIPT``
    Like sbatch: checks the job asks for CPUs, memory and wall time, copies the job script, starts it
    detached under a wall-time limit (``timeout``: SIGTERM when it runs out, SIGKILL a minute later) and
    prints the job id.
``status JOBID``
    Like sacct: prints ``running``, ``success`` or ``failed`` (the line cluster-generic expects).
``cancel JOBID...``
    Like scancel: SIGTERM to every process of the job (dnalift keeps its partial file for --resume); Linux.

Each job has a folder ``.local-batch/JOBID/`` in the directory the command runs in (Snakemake's working
directory): ``job.sh`` (the script as submitted), ``request.json`` (what it asked for), ``output.log`` (its
stdout and stderr), ``pid`` and, once it ended, ``exit`` (its exit status; 124 when the wall time ran out).
Memory is recorded, not enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

STATE_DIR = Path(".local-batch")
#: the only variables a job gets from the submitting environment (the software it runs is found on PATH)
EXPORTED = ("PATH", "HOME")
#: seconds between SIGTERM at the end of the wall time and SIGKILL
KILL_AFTER_S = 60
#: runs the job script under the wall time and records its exit status when it ends, however it ends
WRAPPER = ('timeout --signal=TERM --kill-after="$1" "$2" sh "$3"; status=$?; '
           'echo "$status" > "$4.tmp" && mv "$4.tmp" "$4"')


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def minutes(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 minutes, got {text}")
    return value


def submit(args: argparse.Namespace) -> None:
    jobscript = Path(args.jobscript)
    if not jobscript.is_file():
        sys.exit(f"local_batch submit: no job script {jobscript}")
    STATE_DIR.mkdir(exist_ok=True)
    job_dir = Path(tempfile.mkdtemp(prefix=f"{args.job_name}.", dir=STATE_DIR))
    job_id = job_dir.name
    shutil.copy(jobscript, job_dir / "job.sh")  # as sbatch does: the job runs the script as it was submitted
    request = {"job_name": args.job_name, "cpus": args.cpus, "mem_mb": args.mem_mb, "time_min": args.time}
    (job_dir / "request.json").write_text(json.dumps(request, indent=1) + "\n")
    env = {name: os.environ[name] for name in EXPORTED if name in os.environ}
    env.update(LANG="C.UTF-8", LOCAL_BATCH_JOB_ID=job_id, LOCAL_BATCH_CPUS=str(args.cpus))
    with open(job_dir / "output.log", "wb") as log:
        process = subprocess.Popen(
            ["sh", "-c", WRAPPER, "local-batch", str(KILL_AFTER_S), f"{args.time * 60:g}s",
             str((job_dir / "job.sh").resolve()), str((job_dir / "exit").resolve())],
            cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    (job_dir / "pid").write_text(f"{process.pid}\n")
    print(job_id)


def _alive(pid: int, job_dir: Path) -> bool:
    """Whether process ``pid`` is still this job's wrapper (not a later process that got the same pid)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.is_dir():
        try:
            return str(job_dir.resolve()).encode() in cmdline.read_bytes()
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status(args: argparse.Namespace) -> None:
    job_dir = STATE_DIR / args.job_id
    exit_file = job_dir / "exit"
    if exit_file.is_file():
        print("success" if exit_file.read_text().strip() == "0" else "failed")
    elif (job_dir / "pid").is_file() and _alive(int((job_dir / "pid").read_text()), job_dir):
        print("running")
    else:  # unknown job, or its process is gone without an exit status (killed with the machine)
        print("failed")


def _session(sid: int) -> list[int]:
    """The processes of session ``sid`` (a job and everything it started, in whatever process groups)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == sid:
                members.append(int(entry.name))
    return members


def cancel(args: argparse.Namespace) -> None:
    for job_id in args.job_ids:
        job_dir = STATE_DIR / job_id
        pid_file = job_dir / "pid"
        if not pid_file.is_file() or (job_dir / "exit").is_file():
            continue
        for pid in _session(int(pid_file.read_text())):  # the job leads its own session (see submit)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="local_batch.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("submit", help="start a job script detached; print its id")
    p.add_argument("--cpus", type=positive_int, required=True)
    p.add_argument("--mem-mb", type=positive_int, required=True)
    p.add_argument("--time", type=minutes, required=True, help="wall time in minutes (fractions allowed)")
    p.add_argument("--job-name", default="job")
    p.add_argument("jobscript")
    p.set_defaults(run=submit)
    p = commands.add_parser("status", help="print running, success or failed")
    p.add_argument("job_id")
    p.set_defaults(run=status)
    p = commands.add_parser("cancel", help="stop jobs (SIGTERM)")
    p.add_argument("job_ids", nargs="+")
    p.set_defaults(run=cancel)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
