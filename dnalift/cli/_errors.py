"""How the command line reports failures: one line on stderr, ``Error: <message>``, and an exit code.

==========================================  =====  ===========================================
what went wrong                              exit   examples
==========================================  =====  ===========================================
usage: an option or argument is wrong        2      ``--shard 3-of-2``, FASTA and ``--regions``,
(``click.UsageError``, ``BadParameter``,            ``--regions`` without ``--genome``, an odd
:class:`~dnalift.errors.TargetError`,               ``--window``, ``--target`` the model lacks,
:class:`~dnalift.errors.OptionError`)               ``-o`` naming an input, ``--device mps``
data: a file or model cannot be used         1      missing/empty/not FASTA, model format, IUPAC
(:class:`~dnalift.errors.DnaliftError`,             letters with ``--n-policy error``, output
``OSError``)                                        exists, truncated HDF5, invalid result file
interrupted (Ctrl-C; SIGTERM: 143)           130
anything else (a bug in dnalift)             1      the line says to rerun with ``-v``
==========================================  =====  ===========================================

There is never a traceback on stderr, except in the log with ``-v`` (for debugging). Library messages name
API arguments (``n_refs``, ``force=True``); :data:`FLAGS` is the one table that maps them to the command
line's options (``--n-refs``, ``--force``).
"""

from __future__ import annotations

import logging
import sys

import click

from dnalift.cli import _logging
from dnalift.cli._words import FLAGS, cli_words  # noqa: F401  (FLAGS: the table, re-exported)
from dnalift.errors import DnaliftError, OptionError, TargetError

log = logging.getLogger("dnalift.cli")

USAGE, DATA, INTERRUPTED, TERMINATED = 2, 1, 130, 143
_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())


def one_line(text) -> str:
    """A message on one line (newlines and runs of spaces become single spaces)."""
    return " ".join(str(text).split())


def _emit(message: str, argument: str | None = None) -> None:
    click.echo(f"Error: {cli_words(one_line(message), argument)}", err=True)


def _os_message(e: OSError) -> str:
    what = e.strerror or str(e) or type(e).__name__
    where = f"{e.filename}: " if getattr(e, "filename", None) else ""
    return f"{where}{what[0].lower() + what[1:] if what else what}; check the path and its permissions"


def _interrupted(e: KeyboardInterrupt) -> int:
    """Ctrl-C: exit 130; SIGTERM (raised as a KeyboardInterrupt subclass by ``score``): exit 143."""
    if getattr(e, "signal_name", None) == "SIGTERM":
        _emit("terminated (SIGTERM)")
        return TERMINATED
    _emit("interrupted")
    return INTERRUPTED


def _debug_traceback(e: BaseException) -> None:
    if _logging.state["verbose"]:
        log.info("traceback, for debugging:", exc_info=(type(e), e, e.__traceback__))


def run_main(invoke, standalone_mode: bool):
    """Call ``invoke()`` (click's non-standalone main) and turn every failure into one line and an exit code.

    Returns the exit code (0 on success) in non-standalone mode; exits in standalone mode.
    """
    code = 0
    saved = _logging.snapshot()
    try:
        code = _run(invoke)
    finally:
        _logging.restore(saved)
    if standalone_mode:
        sys.exit(code)
    return code


def _run(invoke) -> int:
    code = 0
    try:
        rv = invoke()
        if isinstance(rv, int) and not isinstance(rv, bool):
            code = rv
    except _NO_ARGS as e:
        click.echo(e.ctx.get_help() if e.ctx else str(e), err=True)
        code = USAGE
    except click.UsageError as e:
        hint = ""
        if e.ctx is not None:
            hint = f" (see '{e.ctx.command_path} --help')"
        _emit(f"{e.format_message()}{hint}")
        code = USAGE
    except click.ClickException as e:
        _emit(e.format_message())
        code = e.exit_code
    except click.Abort as e:
        cause = e.__cause__ or e.__context__
        if isinstance(cause, KeyboardInterrupt):
            code = _interrupted(cause)
        else:
            _emit("aborted")
            code = DATA
    except KeyboardInterrupt as e:
        code = _interrupted(e)
    except (TargetError, OptionError) as e:
        _debug_traceback(e)
        _emit(str(e), e.argument)
        code = USAGE
    except DnaliftError as e:
        _debug_traceback(e)
        _emit(str(e), e.argument)
        code = DATA
    except OSError as e:
        _debug_traceback(e)
        _emit(_os_message(e))
        code = DATA
    except MemoryError as e:
        _debug_traceback(e)
        _emit("out of memory; rerun with a lower --batch-size and --force (--resume keeps the batch size of the run "
              "that ran out), or score fewer sequences at a time with --shard")
        code = DATA
    except Exception as e:  # a bug: still one line, the traceback only with -v
        _debug_traceback(e)
        _emit(f"internal error ({type(e).__name__}: {e}); rerun with -v for the traceback and report it to the "
              f"dnalift developers")
        code = DATA
    return code


def verbosity_options(f):
    """``-v/--verbose`` (repeatable) and ``-q/--quiet``; the command calls ``_logging.setup`` with them."""
    f = click.option("-q", "--quiet", is_flag=True, help="Only errors: no progress, warnings or summary.")(f)
    f = click.option("-v", "--verbose", count=True,
                     help="More log lines (-v: info, -vv: debug, with tracebacks of errors).")(f)
    return f
