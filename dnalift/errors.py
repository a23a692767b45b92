"""Exception classes of dnalift.

Every error that a user can cause (a bad file, a model that does not fit the data, an option that makes no
sense) is a :class:`DnaliftError`. Each subclass also derives from the builtin exception it refines, so code
that catches ``ValueError`` or ``OSError`` keeps working. The message of each is one line that says what is
wrong, where, and how to fix it; the command line prints it as it is, without a traceback.
"""

from __future__ import annotations

__all__ = [
    "DnaliftError",
    "ModelFormatError",
    "UntrustedModelError",
    "ModelInputError",
    "UnsupportedOpError",
    "SequenceError",
    "RegionError",
    "ReferenceInputError",
    "TargetError",
    "StoreError",
    "OutputExistsError",
    "ConservationWarning",
]


class DnaliftError(Exception):
    """Base class of the errors dnalift raises on bad input."""


class ModelFormatError(DnaliftError, ValueError):
    """The model file is none of the formats dnalift reads, or is damaged."""


class UntrustedModelError(DnaliftError, PermissionError):
    """The model file is a pickle, which runs code when loaded, and the user did not say they trust it."""


class ModelInputError(DnaliftError, ValueError):
    """The model's input (shape, channel layout, length) does not match the data."""


class UnsupportedOpError(DnaliftError, NotImplementedError):
    """The model uses an operation for which dnalift has no DeepLIFT rule."""


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
