"""The record of a model ready for attribution: its program and what dnalift knows about its inputs and outputs."""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.nn as nn

from dnalift.errors import ModelInputError

__all__ = ["FORMATS", "LoadedModel"]

#: where a LoadedModel came from: a .pt2, TorchScript, state_dict (+ arch), whole pickled module, or memory
FORMATS = ("pt2", "torchscript", "state_dict", "pickle", "module", "keras")


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for attribution.

    Attributes
    ----------
    program : torch.export.ExportedProgram
        The model as one ATen graph. User inputs: the one-hot batch ``(n, *input_shape)``, then one
        ``(n, *shape)`` per entry of ``control_shapes``; ``n`` dynamic (``min=1``). Outputs: the model's own
        pytree of tensors, each ``(n, ...)``.
    path : str or None
        The file it was loaded from (None for :func:`from_module`).
    format : str
        One of :data:`FORMATS`.
    sha256 : str
        Hex SHA-256 of the file's bytes; for ``"module"``, of the module's state_dict (names, dtypes, shapes,
        bytes), or for :func:`from_program` of the program's state_dict, constants and graph.
    input_shape : tuple
        Shape of one sequence row, e.g. ``(4, 200)`` (``(200, 4)`` for ``layout="NLC"``); ``None`` marks a
        dimension the program leaves free (only possible for a ``.pt2`` exported with a dynamic length).
    output_shape : tuple
        Shape of one row of the first output, e.g. ``(1,)`` or ``(targets,)``.
    layout : str
        ``"NCL"`` when the model takes ``(n, 4, length)``, ``"NLC"`` when it takes ``(n, length, 4)``, ``"NC1L"``
        when it takes ``(n, 4, 1, length)`` (:mod:`dnalift.models.layouts`).
    normalized : bool
        True once :func:`dnalift.normalize.weights.normalize_first_layer` has mean-normalised the first layer.
    input_dtype : torch.dtype
        Floating dtype the program was exported with (one-hot and control inputs are passed as this dtype).
    output_names : tuple of str or None
        Names of the units of the first output when the model declares them (an ``output_names``,
        ``target_names``, ``targets`` or ``tasks`` attribute holding one string per unit).
    arch : str or None
        The ``package.module:Class`` a state_dict was loaded into.
    control_shapes : tuple of tuple
        Per-row shape of each user input after the sequence, in order, e.g. ``((2, 250),)`` for a bpnet-lite
        BPNet with ``n_control_tracks=2``; empty for a model that takes the sequence alone.
    output_shapes : dict of str to tuple
        Per-row shape of every output, in the program's output order, keyed by its place in the output
        pytree: ``"0"``, ``"1"`` for a tuple or list, the key for a dict (``"profile"``, ``"human"``), dotted
        for nested ones (``"heads.0"``); a model that returns one tensor has the single key ``""``.
    """

    program: torch.export.ExportedProgram
    path: str | None
    format: str
    sha256: str
    input_shape: tuple
    output_shape: tuple
    layout: str = "NCL"
    normalized: bool = False
    input_dtype: torch.dtype = torch.float32
    output_names: tuple[str, ...] | None = None
    arch: str | None = None
    control_shapes: tuple = ()
    output_shapes: dict = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        """The file's name for messages, or ``"<module>"``."""
        return os.path.basename(self.path) if self.path else "<module>"

    @property
    def input_length(self) -> int | None:
        """Sequence length the model takes (None if free)."""
        from dnalift.models.layouts import length_of

        return length_of(tuple(self.input_shape), self.layout) if self.layout else None

    @property
    def n_outputs(self) -> int:
        """Number of units per row of the first output (product of ``output_shape``)."""
        n = 1
        for d in self.output_shape:
            n *= d if d is not None else 1
        return n

    def module(self) -> nn.Module:
        """A runnable ``nn.Module`` (``program.module()``) taking the sequence batch, then any control inputs."""
        return self.program.module()

    def example_input(self, n: int = 2) -> torch.Tensor:
        """Zeros of shape ``(n, *input_shape)`` in ``input_dtype`` (free dimensions must not exist)."""
        if any(d is None for d in self.input_shape):
            raise ModelInputError(f"{self.name}: its input length is not fixed; load it with input_length=L",
                                  argument="input_length")
        return torch.zeros((n, *self.input_shape), dtype=self.input_dtype)

    def example_inputs(self, n: int = 2) -> tuple[torch.Tensor, ...]:
        """The sequence zeros of :meth:`example_input`, then zeros ``(n, *shape)`` for each control input."""
        controls = tuple(torch.zeros((n, *shape), dtype=self.input_dtype) for shape in self.control_shapes)
        return (self.example_input(n), *controls)
