"""The choices of every scoring option, each in one enum.

The engine, the pipeline, the command line (``click.Choice(Mode.values())``) and the workflow's config schema
read their choices from here, so a choice is added or renamed in one place. Each enum is a ``str`` enum: its
members compare equal to their values (``Mode.RESCALE == "rescale"``), so plain strings keep working in the
API.
"""

from __future__ import annotations

import enum
import re

__all__ = ["Choice", "Mode", "MaxRule", "Precision", "NPolicy", "Center", "ReferenceMethod", "Layout",
           "ControlInputs", "OffGenome", "PairReferences", "parse_choice",
           "parse_shard", "INT_MAX", "POSITION_MAX"]

#: the largest value of each integer option of a scoring run: what the result file can hold (its attributes are
#: int64, the seed uint64; an HDF5 chunk holds under 2**32 bytes, so one row of scores, 4 x L float32, bounds
#: the width; chunk and batch sizes, reference and shard counts are HDF5 chunk dimensions or torch sizes,
#: kept to int32)
INT_MAX = {"seed": 2**64 - 1, "width": 2**28 - 1, "n_refs": 2**31 - 1, "batch_size": 2**31 - 1,
           "chunk_size": 2**31 - 1, "shard": 2**31 - 1, "shuffle_workers": 2**31 - 1}
#: the largest row or position a command takes (``logo --index/--start/--end``, ``export --window``: int64)
POSITION_MAX = 2**63 - 1


class Choice(str, enum.Enum):
    """A ``str`` enum with the helpers the option checks need."""

    def __str__(self) -> str:  # the value, for messages and file attributes
        return self.value

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """The choices as strings, in declaration order."""
        return tuple(member.value for member in cls)

    @classmethod
    def parse(cls, value, *, argument: str):
        """The member for ``value`` (a member or its string).

        Parameters
        ----------
        value : str or member
        argument : str
            The API argument's name, for the message (``"rule"``).

        Raises
        ------
        OptionError
            When ``value`` is none of the choices.
        """
        return parse_choice(cls, value, argument=argument)


def parse_choice(enum_type, value, *, argument: str):
    """The member of ``enum_type`` for ``value``; :class:`~dnalift.errors.OptionError` naming the choices."""
    if isinstance(value, enum_type):
        return value
    try:
        return enum_type(value)
    except ValueError:
        from dnalift.errors import OptionError

        raise OptionError(f"{argument} must be one of {', '.join(enum_type.values())}, not {value!r}",
                          argument=argument, value=value, choices=enum_type.values()) from None


class Mode(Choice):
    """The rule for elementwise nonlinearities (:mod:`dnalift.attribution.modes`)."""

    RESCALE = "rescale"
    REVEALCANCEL = "revealcancel"
    GENOMICS = "genomics"


class MaxRule(Choice):
    """The max-pooling rule: ``exact`` sums to delta; ``gradient`` is the original code's."""

    EXACT = "exact"
    GRADIENT = "gradient"


class Precision(Choice):
    """The arithmetic the engine computes in (:mod:`dnalift.attribution.precision`).

    ``float32`` (the default) and ``float64`` are strict: on CUDA, TF32 is turned off for matrix products and
    convolutions. ``tf32`` (CUDA only) lets tensor cores round the operands of matrix products and convolutions
    to TF32 (10-bit mantissa, float32 sums); ``bfloat16`` runs them in bfloat16 (autocast; float32 sums), every
    other op, and so every nonlinearity's multiplier, in float32. Both are faster on GPUs and less exact:
    benchmarks/README.md gives their summation-to-delta and their difference from float32 scores.
    """

    FLOAT32 = "float32"
    FLOAT64 = "float64"
    TF32 = "tf32"
    BFLOAT16 = "bfloat16"


class NPolicy(Choice):
    """What to do with N and other IUPAC letters: an all-zero column, leave the sequence out, or stop."""

    ZERO = "zero"
    SKIP = "skip"
    ERROR = "error"


class Center(Choice):
    """Where a window around a BED region is centred: its middle, or its narrowPeak summit."""

    MID = "mid"
    SUMMIT = "summit"


class ReferenceMethod(Choice):
    """Built-in references (a FASTA of references is the other choice)."""

    DINUC = "dinuc"
    GC = "gc"
    UNIFORM = "uniform"
    ZEROS = "zeros"


class Layout(Choice):
    """The model's input layout (:mod:`dnalift.models.layouts`): found by running the model (``auto``), channels
    first ``(n, 4, length)`` (``ncl``), channels last ``(n, length, 4)`` (``nlc``), or channels first with a
    height of 1, ``(n, 4, 1, length)``, as Conv2d models such as DeepSEA and Beluga take (``nc1l``)."""

    AUTO = "auto"
    NCL = "ncl"
    NLC = "nlc"
    NC1L = "nc1l"


class ControlInputs(Choice):
    """What a model input beyond the sequence (a control track such as bpnet-lite's ``X_ctl``) is given."""

    ZEROS = "zeros"
    REFUSE = "refuse"


class OffGenome(Choice):
    """A BED region whose window is not on the genome (it runs off its chromosome, or its chromosome is not in
    the genome FASTA): leave it out (counted, with a warning) or stop. For variants, also a REF that is not the
    genome's bases."""

    SKIP = "skip"
    ERROR = "error"


class PairReferences(Choice):
    """The references of a variant's two rows (:mod:`dnalift.references.pairs`): both those of the reference
    allele's row, or each row its own."""

    SHARED = "shared"
    OWN = "own"


def _option_error(message: str, argument: str, **details):
    from dnalift.errors import OptionError

    return OptionError(message, argument=argument, **details)


def parse_shard(spec) -> tuple[int, int]:
    """``"i-of-n"`` -> ``(i, n)`` with ``1 <= i <= n``.

    Raises
    ------
    OptionError
        (a ValueError, ``argument="shard"``) when ``spec`` is not of that form.
    """
    m = re.fullmatch(r"\s*(\d+)\s*-of-\s*(\d+)\s*", str(spec), flags=re.IGNORECASE)
    if not m:
        raise _option_error(f"shard={spec!r} is not of the form i-of-n (e.g. 2-of-8: the second of 8 shards)",
                            "shard", value=spec)
    i, n = int(m.group(1)), int(m.group(2))
    if n > INT_MAX["shard"]:
        raise _option_error(f"shard={spec!r}: n may be at most {INT_MAX['shard']}", "shard", value=spec)
    if n < 1 or not 1 <= i <= n:
        k = max(n, 1)
        raise _option_error(f"shard={spec!r}: i must be between 1 and n (1-of-{k} ... {k}-of-{k})", "shard",
                            value=spec)
    return i, n


class StandardTarget(Choice):
    """The standard targets of a profile model (BPNet, ChromBPNet; :mod:`dnalift.attribution.targets`): the count
    head; the profile logits weighted by their softmax as bpnet-lite and chrombpnet explain them (each row its
    own softmax, the product a Rescale nonlinearity); or the same with the sequence's softmax held constant."""

    COUNTS = "counts"
    PROFILE = "profile"
    PROFILE_FIXED = "profile-fixed"
