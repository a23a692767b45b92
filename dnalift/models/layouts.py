"""The input layouts a model may take, and how dnalift's one-hot batch ``(n, 4, length)`` becomes each (torch only).

The choices are :class:`dnalift.options.Layout`; a :class:`~dnalift.models.loaded.LoadedModel` records the one
it takes as the upper-case name:

========  ======================  ================================================================
layout    a row (one sequence)    models
========  ======================  ================================================================
``NCL``   ``(4, length)``         ``Conv1d`` models (dnalift's own layout)
``NLC``   ``(length, 4)``         channels last: Enformer/Borzoi ports, Keras models
``NC1L``  ``(4, 1, length)``      ``Conv2d`` models with a height of 1: DeepSEA, Beluga, Basset as Kipoi
                                  and their PyTorch ports ship them
========  ======================  ================================================================

:func:`to_model` turns ``(..., 4, length)`` arrays (a batch, or references ``(n, r, 4, length)``) into the
model's layout and :func:`from_model` turns arrays in the model's layout back.
"""

from __future__ import annotations

import torch

__all__ = ["LAYOUTS", "row_of", "detect", "length_of", "dnalift_row", "data_layout", "to_model", "from_model",
           "channel_axis", "pattern", "label_of"]

#: the layouts, in the order ``layout="auto"`` tries them on a module
LAYOUTS = ("NCL", "NLC", "NC1L")

_DESCRIPTIONS = {"NCL": ("(n, 4, L)", "channels A,C,G,T first"), "NLC": ("(n, L, 4)", "channels A,C,G,T last"),
                 "NC1L": ("(n, 4, 1, L)", "channels A,C,G,T first, height 1 (Conv2d)")}


def row_of(layout: str, length: int) -> tuple:
    """The row a model of ``layout`` takes for sequences of ``length``."""
    return {"NCL": (4, length), "NLC": (length, 4), "NC1L": (4, 1, length)}[layout]


def detect(row: tuple) -> str | None:
    """The layout of a model row (``None`` entries are free sizes), or None when it is none of them.

    A ``(4, 4)`` row counts as ``NCL``.
    """
    row = tuple(row)
    if len(row) == 2 and row[0] == 4:
        return "NCL"
    if len(row) == 2 and row[1] == 4:
        return "NLC"
    if len(row) == 3 and row[0] == 4 and row[1] == 1:
        return "NC1L"
    return None


def length_of(row: tuple, layout: str):
    """The sequence length in a row of ``layout`` (None where the row does not fit it or leaves it free)."""
    if len(row) != len(row_of(layout, 0)):
        return None
    return row[0] if layout == "NLC" else row[-1]


def dnalift_row(row: tuple, layout: str) -> tuple:
    """The ``(4, length)`` row of dnalift's layout that becomes ``row`` in ``layout``."""
    return (4, length_of(row, layout))


def to_model(x: torch.Tensor, layout: str) -> torch.Tensor:
    """``(..., 4, length)`` -> the model's layout (``(..., length, 4)``, ``(..., 4, 1, length)``)."""
    if layout == "NLC":
        return x.transpose(-1, -2)
    if layout == "NC1L":
        return x.unsqueeze(-2)
    return x


def from_model(x: torch.Tensor, layout: str) -> torch.Tensor:
    """The model's layout -> ``(..., 4, length)`` (the inverse of :func:`to_model`)."""
    if layout == "NLC":
        return x.transpose(-1, -2)
    if layout == "NC1L":
        return x.squeeze(-2)
    return x


def channel_axis(layout: str) -> int:
    """The axis of the 4 bases in an ``(n, ...)`` batch of ``layout``."""
    return -1 if layout == "NLC" else 1


def pattern(layout: str) -> str:
    """``"(n, L, 4)"``: the layout's batch shape for messages."""
    return _DESCRIPTIONS[layout][0]


def label_of(layout: str) -> str:
    """``"channels A,C,G,T last"``: the layout in words, for messages and ``dnalift info``."""
    return _DESCRIPTIONS[layout][1]


def _fits(row: tuple, model_row: tuple) -> bool:
    return len(row) == len(model_row) and all(m is None or int(d) == m for d, m in zip(row, model_row))


def data_layout(shape: tuple, model_row: tuple, layout: str) -> str | None:
    """Which layout a data batch is in, for a model taking ``model_row`` in ``layout``.

    Parameters
    ----------
    shape : tuple of int
        The data's shape ``(n, ...)``.
    model_row : tuple
        The model's row (``None`` for a free size).
    layout : {"NCL", "NLC", "NC1L"}

    Returns
    -------
    {"model", "dnalift"} or None
        ``"model"``: the data is in the model's own layout (for ``NCL`` models that is dnalift's); ``"dnalift"``:
        it is ``(n, 4, length)`` for a model of another layout; None: neither.
    """
    row = tuple(shape[1:])
    if _fits(row, tuple(model_row)):
        return "model"
    if layout != "NCL" and len(model_row) == len(row_of(layout, 0)) and _fits(row, dnalift_row(model_row, layout)):
        return "dnalift"
    return None
