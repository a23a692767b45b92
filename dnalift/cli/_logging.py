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

log = logging.getLogger("dnalift.cli")
#: library loggers whose INFO lines the command shows by default, as its own (where a run computes)
SHOWN = ("dnalift.pipeline.device",)

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
        from dnalift.cli._words import cli_words

        message = cli_words(record.getMessage())
        if record.exc_info and state["verbose"]:
            message += "\n" + self.formatException(record.exc_info)
        level = record.levelname.lower()
        if record.levelno == logging.INFO and record.name.startswith(("dnalift.cli", *SHOWN)):
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
    for name in SHOWN:
        logging.getLogger(name).setLevel(own)
    warnings.showwarning = _showwarning
    warnings.simplefilter("default")


def snapshot():
    """The logging and warnings state that :func:`setup` changes (restored after an in-process command)."""
    root = logging.getLogger("dnalift")
    return (list(root.handlers), root.level, root.propagate, log.level, warnings.showwarning,
            list(warnings.filters), dict(state), [logging.getLogger(name).level for name in SHOWN])


def restore(saved) -> None:
    root = logging.getLogger("dnalift")
    handlers, level, propagate, own, showwarning, filters, old_state, shown = saved
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    root.propagate = propagate
    log.setLevel(own)
    for name, value in zip(SHOWN, shown):
        logging.getLogger(name).setLevel(value)
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
    """``progress(done, total)`` for :func:`dnalift.pipeline.score`.

    On a terminal: one line redrawn in place, at most 5 times a second, from the start::

        scoring  37% |#######.............| 1,110/3,000 seq  85 seq/s  elapsed 13 s  ETA 22 s

    (``ETA estimating`` until the first chunk is done). Piped (a log file, a cluster job): a log line after the
    first update that moves, then whenever another tenth of the rows is done or a minute has passed, never
    more than once every ``min_interval`` seconds. Nothing with ``--quiet``. Rates count only this run's rows
    (rows kept from an interrupted run are not), so the ETA of a resumed run is right.
    """

    WIDTH = 20

    def __init__(self, label: str = "scoring", *, unit: str = "seq", min_interval: float = 5.0,
                 max_interval: float = 60.0):
        self.label, self.unit = label, unit
        self.min_interval, self.max_interval = min_interval, max_interval
        self.enabled = not state["quiet"]
        self.tty = self.enabled and sys.stderr.isatty()
        self.start = self.first = None
        self.last_draw = self.last_log = 0.0
        self.logged_done = 0
        self.drawn = False

    def _line(self, done: int, total: int, now: float) -> str:
        fraction = done / total if total else 1.0
        bar = "#" * int(fraction * self.WIDTH)
        elapsed = now - self.start
        rate = (done - self.first) / elapsed if elapsed > 0 and done > self.first else 0.0
        eta = "ETA estimating" if rate <= 0 else f"ETA {_duration((total - done) / rate)}"
        if done >= total:
            eta = "done"
        rate_text = f"{rate:,.0f} {self.unit}/s" if rate > 0 else f"- {self.unit}/s"
        return (f"{self.label} {100 * fraction:3.0f}% |{bar:.<{self.WIDTH}}| {done:,}/{total:,} {self.unit}  "
                f"{rate_text}  elapsed {_duration(elapsed)}  {eta}")

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.start is None:
            self.start, self.first, self.logged_done, self.last_log = now, done, done, now
        if self.tty:
            if now - self.last_draw >= 0.2 or done >= total or not self.drawn:
                sys.stderr.write("\r" + self._line(done, total, now) + "\033[K")
                sys.stderr.flush()
                self.last_draw, self.drawn = now, True
            return
        moved = done > self.logged_done
        first = moved and self.logged_done == self.first
        tenth = done - self.logged_done >= max(1, total // 10)
        due = first or tenth or now - self.last_log >= self.max_interval or done >= total
        if moved and due and (first or done >= total or now - self.last_log >= self.min_interval):
            log.info("%s", self._line(done, total, now))
            self.last_log, self.logged_done = now, done

    def close(self) -> None:
        if self.tty and self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.drawn = False
