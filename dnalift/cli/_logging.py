"""Logging, warnings and progress for the command line.

Library modules log through :mod:`logging` and warn through :mod:`warnings`; here both go to stderr as
one line each (``dnalift: warning: ...``). Levels: default WARNING for the library and INFO for the
command's own progress lines; ``-v`` INFO everywhere, ``-vv`` DEBUG; ``--quiet`` errors only.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings

import click

log = logging.getLogger("dnalift.cli")

#: what the last set-up asked for (the error handler reads it to decide on tracebacks), and the arguments
#: of the running command (recorded in result files)
state = {"verbose": 0, "quiet": False, "args": None}


def command_line() -> str:
    """The running command as typed: ``dnalift score ...``."""
    import shlex

    args = state["args"] if state["args"] is not None else sys.argv[1:]
    return shlex.join(["dnalift", *map(str, args)])


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when a record is emitted (CliRunner swaps it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it
        pass


class _Formatter(logging.Formatter):
    def format(self, record):
        message = record.getMessage()
        if record.exc_info and state["verbose"]:
            message += "\n" + self.formatException(record.exc_info)
        level = record.levelname.lower()
        if record.levelno == logging.INFO and record.name.startswith("dnalift.cli"):
            return f"dnalift: {message}"
        return f"dnalift: {level}: {message}"


def _showwarning(message, category, filename, lineno, file=None, line=None):
    """warnings -> one log line; warnings from outside dnalift (torch's chatter) only at DEBUG."""
    text = " ".join(str(message).split())
    ours = "dnalift" in str(filename) or category.__module__.startswith("dnalift")
    logger = logging.getLogger("dnalift.warnings")
    logger.log(logging.WARNING if ours else logging.DEBUG, "%s: %s", category.__name__, text)


def setup(verbose: int = 0, quiet: bool = False) -> None:
    """Configure the ``dnalift`` loggers and the display of warnings for one command."""
    state["verbose"] = int(verbose or 0)
    state["quiet"] = bool(quiet)
    root = logging.getLogger("dnalift")
    for h in list(root.handlers):
        if isinstance(h, _StderrHandler):
            root.removeHandler(h)
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    root.addHandler(handler)
    root.propagate = False
    if quiet:
        library, own = logging.ERROR, logging.ERROR
    elif verbose >= 2:
        library, own = logging.DEBUG, logging.DEBUG
    elif verbose == 1:
        library, own = logging.INFO, logging.INFO
    else:
        library, own = logging.WARNING, logging.INFO
    root.setLevel(library)
    log.setLevel(own)
    warnings.showwarning = _showwarning
    warnings.simplefilter("default")


def snapshot():
    """The logging and warnings state that :func:`setup` changes (restored after an in-process command)."""
    root = logging.getLogger("dnalift")
    return (list(root.handlers), root.level, root.propagate, log.level, warnings.showwarning,
            list(warnings.filters), dict(state))


def restore(saved) -> None:
    root = logging.getLogger("dnalift")
    handlers, level, propagate, own, showwarning, filters, old_state = saved
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    root.propagate = propagate
    log.setLevel(own)
    warnings.showwarning = showwarning
    warnings.filters[:] = filters
    mutated = getattr(warnings, "_filters_mutated", None)  # invalidates the "once" caches
    if mutated is not None:
        mutated()
    state.update(old_state)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


class Progress:
    """``progress(done, total)`` for :func:`dnalift.pipeline.score`: a bar with rate and ETA on a terminal,
    a log line every ``interval`` seconds otherwise, nothing with ``--quiet``."""

    def __init__(self, label: str = "scoring", *, interval: float = 30.0, unit: str = "seq"):
        self.label = label
        self.unit = unit
        self.interval = interval
        self.enabled = not state["quiet"]
        self.tty = self.enabled and sys.stderr.isatty()
        self.bar = None
        self.start = None
        self.first = 0
        self.shown = 0
        self.last_log = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.start is None:
            self.start, self.first, self.shown, self.last_log = now, done, done, now
            if self.tty and total > done:
                self.bar = click.progressbar(length=total - done, label=self.label, show_eta=True,
                                             show_pos=True, item_show_func=lambda s: s, file=sys.stderr)
                self.bar.__enter__()
            return
        rate = (done - self.first) / max(now - self.start, 1e-9)
        if self.bar is not None:
            self.bar.update(done - self.shown, f"{rate:,.0f} {self.unit}/s")
        elif now - self.last_log >= self.interval:
            left = (total - done) / rate if rate > 0 else float("nan")
            eta = _duration(left) if left == left else "?"
            log.info("%s: %d/%d (%d%%), %.0f %s/s, about %s left", self.label, done, total,
                     100 * done // max(total, 1), rate, self.unit, eta)
            self.last_log = now
        self.shown = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
