"""Run one `dnalift score --shard` job of the workflow (Snakemake's ``script:`` of rule score_shard) so that it
finishes an interrupted run when it can and starts afresh when it cannot.

The rule's command (``params``: dnalift, sequences, options; ``--shard`` and ``-o`` from the job) is run, this
process replaced by it, with one option added:

``--resume``
    when there is no partial file, or the partial file ``.OUT.h5.partial.h5`` of an interrupted run was made
    by the same command and no input (model, sequences, genome, references) changed since it was started: the
    run keeps its complete chunks and computes the others;
``--force``
    when the partial file was made by another command (other options: ``score.n_refs``, ``score.rule``...),
    an input changed after it was started, or score.resume is false: the shard starts afresh and the stale
    partial file is replaced.

What it relies on, all of it documented by ``dnalift score``: the partial file's name, its root attributes
``command_line`` (the command as typed, ``dnalift score ...``) and ``created`` (ISO 8601 time it was
started), ``--resume`` refusing a partial file made with other options and ``--force`` starting afresh. Any
difference of the command besides ``--resume``/``--force`` and verbosity counts as a change. When the partial
file cannot be read (damaged), ``--resume`` is used and ``dnalift score`` decides: it starts over from a damaged
file. The decision and the command are the first lines of the job's log.

A dnalift run still writing the output (a shard job of a Snakemake that was killed: the job runs on, holding
dnalift's lock ``.OUT.h5.lock``) is waited for first, with a line in the log naming its process; when it has
finished the output with the same command, nothing is left to do, otherwise the decision above follows.

A ``script:`` rather than a shell command calling this file, so that no path of the workflow's own files is
part of what Snakemake records for a job (moving the workflow reruns nothing); Snakemake reruns the shards when
this file is newer than their outputs.
"""

# (no `from __future__` import: Snakemake puts its preamble before the script; the annotations work as they are
# from Python 3.10)
import datetime as dt
import difflib
import os
import shlex
import sys
import time
from pathlib import Path

#: options that change how a run reports or starts, not what it computes
IGNORED = {"--resume", "--force", "-q", "--quiet", "-v", "-vv", "-vvv", "--verbose"}
#: slack for clocks and file systems that keep whole seconds (``created`` has a resolution of one second)
MTIME_SLACK_S = 1.0


def partial_path(output: str) -> Path:
    """Where `dnalift score -o OUT.h5` writes until it is done: ``.OUT.h5.partial.h5`` beside the output."""
    path = Path(output)
    return path.with_name(f".{path.name}.partial.h5")


def output_of(command: list[str]) -> str:
    """The value of ``-o``/``--output`` in a `dnalift score` command line."""
    for i, arg in enumerate(command):
        if arg in ("-o", "--output") and i + 1 < len(command):
            return command[i + 1]
        if arg.startswith("--output="):
            return arg.split("=", 1)[1]
    raise ValueError(f"no -o OUTPUT in {shlex.join(command)}")


def comparable(args: list[str]) -> list[str]:
    """A `dnalift score` command from its subcommand on, without the options that do not change the results."""
    if "score" in args:
        args = args[args.index("score"):]
    return [a for a in args if a not in IGNORED]


def differences(old: list[str], new: list[str]) -> str:
    """What differs between two command lines, e.g. ``--n-refs 3, now --n-refs 5``; a changed value is shown
    with the option before it."""
    parts = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        option_before = i1 > 0 and j1 > 0 and old[i1 - 1] == new[j1 - 1] and old[i1 - 1].startswith("-")
        shift = 1 if option_before else 0
        parts.append(f"{shlex.join(old[i1 - shift:i2]) or 'nothing'}, now {shlex.join(new[j1 - shift:j2]) or 'nothing'}")
    return "; ".join(parts)


def read_partial(path: Path) -> dict | None:
    """The root attributes ``command_line`` and ``created`` of a partial file; None if it cannot be read."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return {key: _text(f.attrs[key]) for key in ("command_line", "created") if key in f.attrs}
    except Exception:  # damaged, locked by a live run, not HDF5: dnalift score decides with --resume
        return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _timestamp(created: str | None) -> float | None:
    if not created:
        return None
    try:
        when = dt.datetime.fromisoformat(created)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def decide(command: list[str], *, inputs: list[str], restart: bool) -> tuple[str, str]:
    """The option to add to a `dnalift score` command (``--resume`` or ``--force``) and why.

    Parameters
    ----------
    command : list of str
        The command line, ``-o OUTPUT`` included, without ``--resume``/``--force``.
    inputs : list of str
        The files it reads: a partial file started before one of them changed is not resumed.
    restart : bool
        Always start afresh (score.resume is false).
    """
    partial = partial_path(output_of(command))
    if restart:
        return "--force", "score.resume is false: starting afresh"
    if not partial.exists():
        return "--resume", f"no partial file ({partial.name}): starting afresh"
    attrs = read_partial(partial)
    if attrs is None:
        return "--resume", f"{partial} cannot be read; dnalift score --resume decides what to do with it"
    recorded = attrs.get("command_line")
    if recorded is None:
        return "--force", f"{partial} does not say which command made it: starting afresh"
    old, new = comparable(shlex.split(recorded)[1:]), comparable(command)
    if old != new:
        return "--force", f"{partial} was made with other options ({differences(old, new)}): starting afresh"
    started = _timestamp(attrs.get("created"))
    for name in inputs:
        if started is not None and os.path.exists(name) and os.path.getmtime(name) > started + MTIME_SLACK_S:
            return "--force", f"{name} changed after {partial} was started: starting afresh"
    return "--resume", f"{partial} was made by the same command: finishing it"


def lock_path(output: str) -> Path:
    """The lock `dnalift score -o OUT.h5` holds while it runs: ``.OUT.h5.lock`` beside the output."""
    path = Path(output)
    return path.with_name(f".{path.name}.lock")


def live_run(output: str) -> str | None:
    """The process id (or "unknown") of a dnalift run holding the output's lock, or None when none does.

    dnalift holds an exclusive ``flock`` on the lock file for its whole run; the system drops it when the process
    ends, however it ends. The lock file is never made here (a missing one means no run)."""
    import fcntl

    try:
        fd = os.open(lock_path(output), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return pid if pid.isdigit() else "unknown"
    finally:
        os.close(fd)  # closing drops a lock taken here
    return None


def wait_for_live_run(output: str, *, poll: float = 10.0, earlier_log: str | None = None) -> None:
    """Wait while another dnalift run writes ``output`` (a shard job left running by a killed Snakemake: it goes
    on, and would refuse this job's run), saying so in the log first."""
    pid = live_run(output)
    if pid is None:
        return
    where = f"; its log goes on in {earlier_log}" if earlier_log else ""
    print(f"resume_or_restart: {output} is being written by another dnalift run (process {pid}, e.g. a shard job "
          f"of a Snakemake that was killed){where}; waiting for it to end. To stop it instead: kill {pid} (its "
          f"complete chunks are kept and this job finishes them)", flush=True)
    while live_run(output) is not None:
        time.sleep(poll)
    print("resume_or_restart: that run has ended", flush=True)


def left_by_earlier_run(command: list[str], *, inputs: list[str]) -> str | None:
    """When the output exists (Snakemake removes it before the job, so a run of an earlier Snakemake finished it
    while this job waited): ``"done"`` if that run had this very command and no input changed since it started,
    else ``"--force"`` (it is replaced). None when there is no output."""
    output = Path(output_of(command))
    if not output.exists():
        return None
    attrs = read_partial(output) or {}
    recorded, started = attrs.get("command_line"), _timestamp(attrs.get("created"))
    same = recorded is not None and comparable(shlex.split(recorded)[1:]) == comparable(command)
    changed = started is None or any(os.path.exists(name) and os.path.getmtime(name) > started + MTIME_SLACK_S
                                     for name in inputs)
    return "done" if same and not changed else "--force"


def run_job(smk) -> None:
    """Compose the job's command, wait for a live run on its output, decide, write the decision and the command
    to the log and replace this process with the command."""
    command = [*shlex.split(smk.params.dnalift), "score", smk.input.model, *shlex.split(smk.params.sequences),
               *shlex.split(smk.params.options), "--shard", smk.wildcards.shard, "-o", smk.output[0]]
    earlier_log = None
    if live_run(smk.output[0]) is not None and os.path.exists(smk.log[0]):
        earlier_log = smk.log[0] + ".earlier"  # that run writes on to its log: moved out of this job's way
        os.replace(smk.log[0], earlier_log)
    log = os.open(smk.log[0], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    wait_for_live_run(smk.output[0], earlier_log=earlier_log)
    left = left_by_earlier_run(command, inputs=list(smk.input))
    if left == "done":
        print(f"resume_or_restart: {smk.output[0]} was finished by that run, with this command: nothing to do",
              flush=True)
        return
    if left is not None:
        flag, reason = left, f"{smk.output[0]} was finished by that run with other options or inputs: replacing it"
    else:
        flag, reason = decide(command, inputs=list(smk.input), restart=not smk.config["score"]["resume"])
    print(f"resume_or_restart: {reason} ({flag})", flush=True)
    print(f"command: {shlex.join(command + [flag])}", flush=True)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(smk.threads)
    try:
        os.execvp(command[0], command + [flag])
    except OSError as e:
        sys.exit(f"cannot run {command[0]} ({e.strerror}): set `dnalift` in the configuration or put it on PATH")


if "snakemake" in globals():
    run_job(snakemake)  # noqa: F821 (defined by Snakemake)
elif __name__ == "__main__":
    sys.exit("resume_or_restart.py is the script of the workflow's score_shard rule; run the workflow")
