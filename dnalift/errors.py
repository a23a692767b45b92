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
    "ReferenceInputError",
    "TargetError",
    "StoreError",
    "OutputExistsError",
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


class ReferenceInputError(DnaliftError, ValueError):
    """References cannot be built or do not match the sequences."""


class TargetError(DnaliftError, IndexError):
    """The requested target output does not exist."""


class StoreError(DnaliftError, ValueError):
    """An HDF5 result file is truncated, invalid, or does not match the others it is combined with."""


class OutputExistsError(DnaliftError, FileExistsError):
    """The output file exists and overwriting was not asked for."""


class ConservationWarning(UserWarning):
    """Summation-to-delta is broken beyond the tolerance for some sequences."""
