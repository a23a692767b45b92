"""Checks shared by every reference maker: tensors or arrays, letter codes of a one-hot batch, counts."""

from __future__ import annotations

import numbers
import sys

import numpy as np

from dnalift.encoding import codes_from_one_hot
from dnalift.errors import ReferenceInputError, SequenceError

__all__ = ["is_tensor", "letter_codes", "check_int"]


def is_tensor(X) -> bool:
    torch = sys.modules.get("torch")  # X cannot be a tensor if torch was never imported
    return torch is not None and isinstance(X, torch.Tensor)


def letter_codes(X, what: str = "X") -> np.ndarray:
    """Letter codes ``(m, L)`` of a one-hot batch ``(m, 4, L)``, as ReferenceInputError on bad input."""
    if getattr(X, "ndim", None) != 3:
        raise ReferenceInputError(
            f"{what} has shape {tuple(getattr(X, 'shape', ()))} but references are built from one-hot "
            "sequences of shape (n, 4, length); add a batch axis for a single sequence"
        )
    try:
        return codes_from_one_hot(X, what=what)
    except SequenceError as exc:
        raise ReferenceInputError(str(exc)) from None


def check_int(value, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ReferenceInputError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)
