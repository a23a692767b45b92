"""Run one `dnalift score` job of the workflow so that it finishes an interrupted run when it can and starts
afresh when it cannot.

    python resume_or_restart.py [--restart] [--input FILE ...] -- dnalift score MODEL SEQS ... -o OUT.h5

The command after ``--`` is run (this process is replaced by it) with one option added:

``--resume``
    when there is no partial file, or the partial file ``.OUT.h5.partial.h5`` of an interrupted run was made
    by the same command and no ``--input`` file changed since it was started: the run keeps its complete
    chunks and computes the others;
``--force``
    when the partial file was made by another command (other options: ``score.n_refs``, ``score.rule``...),
    an input changed after it was started, or ``--restart`` (score.resume: false) is given: the shard starts
    afresh and the stale partial file is replaced.

What it relies on, all of it documented by ``dnalift score``: the partial file's name, its root attributes
``command_line`` (the command as typed, ``dnalift score ...``) and ``created`` (ISO 8601 time it was
started), ``--resume`` refusing a partial file made with other options and ``--force`` starting afresh. Any
difference of the command besides ``--resume``/``--force`` and verbosity counts as a change. When the partial
file cannot be read (damaged, or held by a live run), ``--resume`` is used and ``dnalift score`` decides: it
starts over from a damaged file and refuses to touch a live one. The decision is written to stderr (the job's
log) before the command starts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import os
import shlex
import sys
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
    raise SystemExit("resume_or_restart.py: the command has no -o OUTPUT")


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
        a, b = old[i1 - shift:i2], new[j1 - shift:j2]
        parts.append(f"{shlex.join(a) or 'nothing'}, now {shlex.join(b) or 'nothing'}")
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


def decide(command: list[str], *, inputs: list[str], restart: bool) -> tuple[str, str]:
    """The option to add to ``command`` (``--resume`` or ``--force``) and why."""
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


def main(argv: list[str]) -> None:
    if "--" not in argv:
        raise SystemExit("usage: resume_or_restart.py [--restart] [--input FILE ...] -- dnalift score ...")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="resume_or_restart.py")
    parser.add_argument("--restart", action="store_true", help="always start afresh (score.resume: false)")
    parser.add_argument("--input", action="append", default=[], help="a file the command reads")
    options = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    if not command:
        raise SystemExit("resume_or_restart.py: no command after --")
    flag, reason = decide(command, inputs=options.input, restart=options.restart)
    print(f"resume_or_restart: {reason} ({flag})", file=sys.stderr, flush=True)
    print(f"command: {shlex.join(command + [flag])}", file=sys.stderr, flush=True)
    os.execvp(command[0], command + [flag])


if __name__ == "__main__":
    main(sys.argv[1:])
