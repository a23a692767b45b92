"""Exception classes of dnalift.

Every error that a user can cause (a bad file, a model that does not fit the data, an option that makes no
sense) is a :class:`DnaliftError`. Each subclass also derives from the builtin exception it refines, so code
that catches ``ValueError`` or ``OSError`` keeps working. The message of each is one line that says what is
wrong, where, and how to fix it; the command line prints it as it is, without a traceback.

Errors carry their data as attributes, so the command line can word its message from fields instead of
parsing text. ``argument`` names the API argument an error is about (``"n_refs"``, ``"target"``); library
messages use API names, and the command line translates them to its flags (``--n-refs``).
"""

from __future__ import annotations

import dataclasses

__all__ = [
    "DnaliftError",
    "OptionError",
    "ModelFormatError",
    "UntrustedModelError",
    "ModelInputError",
    "UnsupportedOpError",
    "UnsupportedOp",
    "SequenceError",
    "RegionError",
    "VariantError",
    "ReferenceInputError",
    "TargetError",
    "StoreError",
    "OutputExistsError",
    "FastaFormatError",
    "CompressionError",
    "IncompleteResultError",
    "ResumeMismatchError",
    "ShardMismatchError",
    "FoldMismatchError",
    "NameNotFoundError",
    "OutputInUseError",
    "OutputWriteError",
    "DiskFullError",
    "DeviceWorkerError",
    "ConservationWarning",
]


class DnaliftError(Exception):
    """Base class of the errors dnalift raises on bad input.

    Parameters
    ----------
    message : str
        One line: what is wrong, where, how to fix it (in API terms).
    argument : str, optional
        The API argument the error is about, if one is.
    **details
        Further data of the error (the value, the choices, the file...), kept in ``details``.
    """

    def __init__(self, message: str = "", *, argument: str | None = None, **details):
        super().__init__(message)
        self.argument = argument
        self.details = details


class OptionError(DnaliftError, ValueError):
    """An option has a value outside its choices or range (``argument`` names it)."""


class ModelFormatError(DnaliftError, ValueError):
    """The model file is none of the formats dnalift reads, or is damaged."""


class UntrustedModelError(DnaliftError, PermissionError):
    """The model file is a pickle, which runs code when loaded, and the user did not say they trust it."""


class ModelInputError(DnaliftError, ValueError):
    """The model's input (shape, channel layout, length) does not match the data."""


@dataclasses.dataclass(frozen=True)
class UnsupportedOp:
    """One op of a model that dnalift cannot score.

    Attributes
    ----------
    op : str
        The ATen op name without the ``aten.`` prefix (``"layer_norm"``).
    reason : str
        Why (``"an op with no DeepLIFT rule"``, ``"division by a value that depends on the input"``).
    source : str
        The line of the model's code that made it (``"model.py:12: x = self.norm(x)"``) or the graph node.
    node : str
        The graph node's name.
    allowable : bool
        Whether ``allow_gradient`` can let it through.
    """

    op: str
    reason: str
    source: str
    node: str = ""
    allowable: bool = True

    def line(self) -> str:
        """``aten.OP (reason) at SOURCE``."""
        return f"aten.{self.op} ({self.reason}) at {self.source}"


class UnsupportedOpError(DnaliftError, NotImplementedError):
    """The model uses operations for which dnalift has no DeepLIFT rule.

    ``ops`` lists every one of them (:class:`UnsupportedOp`), not only the first.
    """

    def __init__(self, message: str = "", *, ops=(), **details):
        super().__init__(message, argument=details.pop("argument", None), **details)
        self.ops = tuple(ops)


class SequenceError(DnaliftError, ValueError):
    """A FASTA file or its sequences cannot be used (empty, not FASTA, mixed lengths, duplicate names...)."""


class RegionError(DnaliftError, ValueError):
    """A BED/narrowPeak region cannot be used (bad line, unknown chromosome, off the chromosome...)."""


class VariantError(RegionError):
    """A VCF/TSV of variants cannot be read, or a variant cannot be scored (``off_genome="error"``)."""


class ReferenceInputError(DnaliftError, ValueError):
    """References cannot be built or do not match the sequences."""


class TargetError(DnaliftError, IndexError):
    """The requested target output does not exist."""


class StoreError(DnaliftError, ValueError):
    """An HDF5 result file is truncated, invalid, or does not match the others it is combined with."""


class OutputExistsError(DnaliftError, FileExistsError):
    """The output file exists and overwriting was not asked for."""


class FastaFormatError(SequenceError):
    """A FASTA file pyfaidx cannot index: blank lines inside a record, lines of uneven length, binary content.

    ``details`` has ``path`` and, where known, ``line`` (1-based line number of the file) and ``record``.
    """


class CompressionError(SequenceError):
    """A compressed FASTA that cannot be read: plain gzip (not bgzip), a truncated bgzip file, or bgzip without
    Biopython. ``details`` has ``path`` and ``kind`` (``"gzip"``, ``"truncated"``, ``"needs_biopython"``...)."""


class IncompleteResultError(StoreError):
    """A result file that a run did not finish (``chunks_complete`` not all set): readers that need every row
    refuse it. ``details`` has ``path``, ``missing_chunks`` and ``n_chunks``."""


class ResumeMismatchError(StoreError):
    """``resume=True`` found a partial file written with other options or another input or model.

    ``details`` has ``path``, ``key`` (the attribute that differs), ``old`` and ``new``.
    """


class ShardMismatchError(StoreError):
    """Shards given to merge do not come from one run. ``details`` has ``key``, ``first`` and ``other`` (the
    two files) and the two values where an attribute differs."""


class FoldMismatchError(StoreError):
    """Files given to average are not the folds of one scoring (other sequences, windows, target, references or
    options, or one model twice). ``details`` has ``key``, ``first`` and ``other`` (the two files)."""


class NameNotFoundError(StoreError, LookupError):
    """No sequence of that name in a result file. ``details`` has ``path``, ``name`` and ``close`` (close
    matches)."""


class OutputInUseError(DnaliftError, BlockingIOError):
    """Another running dnalift process writes the same output (it holds the output's lock file).

    ``details`` has ``path`` (the output), ``lock`` (the lock file) and ``pid`` (the other process, if known).
    """


class OutputWriteError(DnaliftError, OSError):
    """Writing an output failed (an I/O error of the file system). ``details`` has ``path``, ``errno`` and
    ``kept`` (whether a valid partial file was kept for ``resume=True``)."""


class DiskFullError(OutputWriteError):
    """The output's file system has no room for the next chunk (checked before writing it, so the partial file
    stays valid), or a write failed with ENOSPC/EDQUOT. ``details`` adds ``free`` and ``needed`` (bytes)."""


class DeviceWorkerError(DnaliftError, RuntimeError):
    """A worker of a run on several devices died or failed (not on bad data); the parts are kept for resume."""


class ConservationWarning(UserWarning):
    """Summation-to-delta is broken beyond the tolerance for some sequences."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (at most 300 characters)."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line[:300]
