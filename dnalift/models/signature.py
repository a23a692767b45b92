"""What a model takes and returns: input layout, control inputs, output pytrees (torch only).

For a module (before export): :func:`find_input_spec` finds the sequence row (``(4, length)`` or
``(length, 4)``, by running the module where the layout is ``"auto"``) and the rows of its further inputs (a
bpnet-lite ``X_ctl`` of ``(n_control_tracks, length)``). For an exported program: :func:`program_inputs` and
:func:`program_outputs` read the same from its signature and say (:func:`reexport_reasons`) what must be
exported again.
"""

from __future__ import annotations

import dataclasses
import inspect

import torch
import torch.nn as nn
import torch.utils._pytree as pytree
from torch.export.graph_signature import InputKind, OutputKind, TensorArgument
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

from dnalift.models import layouts
from dnalift.models import passes as export_passes
from dnalift.models.recurrent import recurrent_nodes
from dnalift.options import Layout
from dnalift.errors import ModelFormatError, ModelInputError, first_line
from dnalift.graph import key_name

__all__ = ["find_input_spec", "check_input", "parse_layout", "check_outputs", "key_name", "ProgramInputs",
           "program_inputs", "reexport_reasons", "fixed_rows", "program_outputs", "layout_of", "param_dtype",
           "length_attribute", "output_names_of", "first_line"]

#: attributes of a module that, when they hold an int, give its input length
LENGTH_ATTRIBUTES = ("input_length", "sequence_length", "seq_len", "seqlen")
#: attributes of a module that, when they hold a list of strings, name the units of its (first) output
NAME_ATTRIBUTES = ("output_names", "target_names", "targets", "tasks")
#: the attribute bpnet-lite models give the number of control tracks their second input has
CONTROL_ATTRIBUTE = "n_control_tracks"


# ----------------------------------------------------------------------------------------------------------
# modules


def find_input_spec(module: nn.Module, *, input_shape=None, input_length=None, layout=Layout.AUTO,
                    control_shapes=None, dtype=torch.float32, where="<module>") -> tuple[tuple, tuple]:
    """The sequence row and the control rows to export ``module`` with.

    Returns
    -------
    row : tuple of int
        ``(4, length)`` or ``(length, 4)`` (or ``input_shape`` as given, with ``layout="auto"``).
    controls : tuple of tuple of int
        One row per further input.

    Raises
    ------
    ModelInputError
        No length is known, the module runs on none of the candidate rows, or a further input has no shape.
    """
    wanted = parse_layout(layout)
    failures = []
    for row in _candidate_rows(module, input_shape, input_length, wanted, where):
        controls = _control_rows(module, row, control_shapes, where)
        example = [torch.zeros((2, *shape), dtype=dtype) for shape in (row, *controls)]
        try:
            with torch.no_grad():
                out = module(*example)
        except Exception as e:
            failures.append(f"{tuple(example[0].shape)}: {first_line(e)}")
            continue
        check_outputs(out, 2, where)
        return row, controls
    raise ModelInputError(f"{where}: the model fails on one-hot input ({'; '.join(failures)[:400]}); pass the "
                          f"length it was trained on with input_length=L (no shorter than what its layers take in)",
                          argument="input_length", reason="fails_on_input")


def _candidate_rows(module, input_shape, input_length, wanted: Layout, where: str) -> list[tuple]:
    """The rows to try: ``input_shape`` first, then its length in the other layouts (``layout="auto"``)."""
    if input_shape is not None:
        shape = tuple(int(d) for d in input_shape)
        found = layouts.detect(shape)
        if found is None:
            if wanted == Layout.AUTO:
                return [shape]
            raise ModelInputError(f"{where}: input_shape {shape} is none of (4, length), (length, 4), (4, 1, length), "
                                  f"as layout={str(wanted)!r} needs", argument="input_shape")
        length = layouts.length_of(shape, found)
        if wanted == Layout.AUTO:
            return [shape] + [row for row in (layouts.row_of(x, length) for x in layouts.LAYOUTS) if row != shape]
    else:
        length = input_length or length_attribute(module)
        if length is None:
            raise ModelInputError(f"{where}: the model does not record its input length; pass input_length=L "
                                  f"with the length it was trained on", argument="input_length",
                                  reason="unknown_length")
        length = int(length)
        if wanted == Layout.AUTO:
            return [layouts.row_of(x, length) for x in layouts.LAYOUTS]
    return [layouts.row_of(str(wanted).upper(), length)]


def _control_rows(module, row: tuple, control_shapes, where: str) -> tuple:
    """Rows of the inputs after the sequence: given, or bpnet-lite's ``(n_control_tracks, length)``."""
    if control_shapes is not None:
        return tuple(tuple(int(d) for d in shape) for shape in control_shapes)
    extra = _further_inputs(module)
    if not extra:
        return ()
    channels_last = layouts.detect(row) == "NLC" and row[0] != 4
    length = (row[0] if channels_last else row[-1]) if row else 0
    tracks = _int_attribute(module, (CONTROL_ATTRIBUTE,))
    rows = []
    if tracks:
        rows.append((length, tracks) if channels_last else (tracks, length))
        extra = extra[1:]
    for name, has_default in extra:
        if has_default:
            break  # this one and the ones after it keep their defaults
        raise ModelInputError(
            f"{where}: the model's forward takes a further input {name!r} whose shape dnalift cannot tell; pass "
            f"control_shapes=[(channels, length)] for it (dnalift gives such inputs zeros)",
            argument="control_shapes", input=name)
    return tuple(rows)


def _further_inputs(module) -> list[tuple[str, bool]]:
    """(name, has a default) of each positional parameter of ``forward`` after the sequence."""
    if isinstance(module, torch.jit.ScriptModule):
        try:
            arguments = module.forward.schema.arguments[2:]  # self, the sequence
        except (AttributeError, RuntimeError):
            return []
        return [(a.name, a.has_default_value()) for a in arguments if not a.kwarg_only]
    try:
        parameters = list(inspect.signature(module.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return []
    out = []
    for p in parameters:
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            break
        out.append((p.name, p.default is not p.empty))
    return out


def check_outputs(out, n: int, where: str) -> None:
    """Raise :class:`~dnalift.errors.ModelInputError` unless ``out`` (the model's value on ``n`` rows) is a
    tensor or a tuple/list/dict of tensors, each with ``n`` rows."""
    leaves = pytree.tree_leaves_with_path(out)
    if not leaves:
        raise ModelInputError(f"{where}: the model returns {_describe(out)}; dnalift needs tensors with a row "
                              f"per sequence")
    for path, leaf in leaves:
        name = key_name(path) or "its output"
        if not isinstance(leaf, torch.Tensor):
            raise ModelInputError(f"{where}: the model returns {_describe(out)}, with a {type(leaf).__name__} as "
                                  f"{name}; dnalift needs tensors with a row per sequence: wrap the model so it "
                                  f"returns only tensors")
        if leaf.dim() == 0:
            raise ModelInputError(f"{where}: the model returns a scalar as {name}; each output must be a tensor "
                                  f"(n, ...) with a row per sequence")
        if leaf.shape[0] != n:
            raise ModelInputError(f"{where}: the model's output {name} {tuple(leaf.shape)} has no row per input "
                                  f"sequence; it must be (n, ...)")




def _describe(out) -> str:
    if isinstance(out, dict):
        return f"a dict with keys {', '.join(repr(k) for k in out)}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)} values"
    return f"a {type(out).__name__}"


# ----------------------------------------------------------------------------------------------------------
# exported programs


@dataclasses.dataclass(frozen=True)
class ProgramInputs:
    """The user inputs of an exported program: the sequence row, the control rows (``None`` marks a dimension
    the program leaves free), their dtype, and the values (fake tensors) of each input."""

    row: tuple
    controls: tuple
    dtype: torch.dtype
    values: tuple

    @property
    def batch(self):
        """The sequence's batch size (a SymInt, or an int when fixed)."""
        return self.values[0].shape[0]


def program_inputs(ep: torch.export.ExportedProgram, where: str) -> ProgramInputs:
    """Read the user inputs of ``ep``; the first is the sequence, the others control inputs."""
    specs = [s for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    values = []
    for i, spec in enumerate(specs):
        value = nodes[spec.arg.name].meta.get("val") if isinstance(spec.arg, TensorArgument) else None
        if not isinstance(value, torch.Tensor):
            raise ModelInputError(f"{where}: the model's input {i + 1} ({spec.arg}) is not a tensor; export it with "
                                  f"tensor inputs only (the one-hot sequence, then any control tracks)")
        if value.dim() < 2:
            raise ModelInputError(f"{where}: the model takes input {i + 1} of shape {tuple(value.shape)}; dnalift "
                                  f"passes (n, 4, length)")
        if i > 0 and not value.dtype.is_floating_point:
            raise ModelInputError(f"{where}: the model's input {i + 1} ({spec.arg.name}) is {value.dtype}; dnalift "
                                  f"gives inputs after the sequence float zeros (control tracks)")
        values.append(value)
    if not values:
        raise ModelInputError(f"{where}: the model takes no tensor input; dnalift passes (n, 4, length)")
    rows = [tuple(None if isinstance(d, torch.SymInt) else int(d) for d in v.shape[1:]) for v in values]
    dtype = values[0].dtype if values[0].dtype.is_floating_point else torch.float32
    return ProgramInputs(row=rows[0], controls=tuple(rows[1:]), dtype=dtype, values=tuple(values))


def reexport_reasons(ep: torch.export.ExportedProgram, spec: ProgramInputs, input_length) -> list[str]:
    """Why ``ep`` must be exported again before dnalift runs it (empty when it need not)."""
    needs = []
    batch = spec.batch
    if (not isinstance(batch, torch.SymInt) or (_lower_bound(ep, batch) or 0) > 1
            or any(not _same_size(v.shape[0], batch) for v in spec.values[1:])):
        needs.append("a variable batch size")
    if input_length is not None and any(d is None for row in (spec.row, *spec.controls) for d in row):
        needs.append(f"length {input_length}")
    if export_passes.training_nodes(ep.graph):
        needs.append("evaluation mode")
    if export_passes.autocast_nodes(ep.graph):
        needs.append("no autocast regions")
    if (any(free_unbacked_symbols(d) for value in _output_values(ep) for d in value.shape)
            or export_passes.tensor_reads(ep.graph)):
        needs.append("sizes computed from the input's shape")
    if recurrent_nodes(ep.graph):
        needs.append("recurrent layers written out as cells")
    return needs


def _same_size(a, b) -> bool:
    if isinstance(a, torch.SymInt) and isinstance(b, torch.SymInt):
        return a.node.expr == b.node.expr
    return False


def _lower_bound(ep, d) -> int | None:
    vr = ep.range_constraints.get(d.node.expr)
    return int(vr.lower) if vr is not None else None


def fixed_rows(spec: ProgramInputs, input_length, where: str) -> tuple[tuple, tuple]:
    """The rows to export again with: a free length set to ``input_length``."""
    rows = []
    for row in (spec.row, *spec.controls):
        free = [i for i, d in enumerate(row) if d is None]
        if free and input_length is None:
            raise ModelInputError(f"{where}: the program's input length is not fixed; pass input_length=L",
                                  argument="input_length")
        if len(free) > 1 or (free and len(row) != 2):
            raise ModelInputError(f"{where}: the program's input (n, {', '.join(map(str, row))}) has free "
                                  f"dimensions other than the length; export it with a fixed (4, length) input")
        rows.append(tuple(int(input_length) if d is None else d for d in row))
    return rows[0], tuple(rows[1:])


def _output_values(ep: torch.export.ExportedProgram) -> list:
    user = [s.arg.name for s in ep.graph_signature.output_specs
            if s.kind == OutputKind.USER_OUTPUT and isinstance(s.arg, TensorArgument)]
    nodes = {n.name: n for n in ep.graph.nodes}
    return [v for v in (nodes[name].meta.get("val") for name in user) if isinstance(v, torch.Tensor)]


def program_outputs(ep: torch.export.ExportedProgram, batch, where: str) -> dict[str, tuple]:
    """Per-row shape of each user output of ``ep``, keyed by its place in the output pytree.

    Raises
    ------
    ModelInputError
        An output is not a tensor, or has no row per input sequence.
    ModelFormatError
        An output's size is still computed from tensor values.
    """
    specs = [s for s in ep.graph_signature.output_specs if s.kind == OutputKind.USER_OUTPUT]
    out_spec = ep.call_spec.out_spec
    paths = [key_name(path) for path, _ in pytree.tree_leaves_with_path(
        pytree.tree_unflatten(list(range(len(specs))), out_spec))] if out_spec is not None else [""]
    nodes = {n.name: n for n in ep.graph.nodes}
    shapes = {}
    for name, spec in zip(paths, specs):
        shown = f"output {name!r}" if name else "output"
        value = nodes[spec.arg.name].meta.get("val") if isinstance(spec.arg, TensorArgument) else None
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            raise ModelInputError(f"{where}: the model's {shown} is not a tensor with a row per sequence; each "
                                  f"output must be (n, ...)")
        if not _same_size(value.shape[0], batch):
            raise ModelInputError(f"{where}: the model's {shown} {tuple(value.shape)} has no row per input "
                                  f"sequence; it must be (n, ...)")
        if any(free_unbacked_symbols(d) for d in value.shape[1:]):
            raise ModelFormatError(f"{where}: the model's {shown} has a size read from a tensor "
                                   f"{tuple(value.shape)}; export the original module with torch.export with a "
                                   f"dynamic batch and save a .pt2", argument="model")
        shapes[name] = tuple(None if isinstance(d, torch.SymInt) else int(d) for d in value.shape[1:])
    if not shapes:
        raise ModelInputError(f"{where}: the model returns no tensor; it must return (n, targets)")
    return shapes


def layout_of(row: tuple, wanted: Layout, where: str) -> str:
    """The layout of a model row (:mod:`dnalift.models.layouts`: ``"NCL"``, ``"NLC"``, ``"NC1L"``; ``"NCL"`` for
    a row that is none of them, which :func:`check_input` explains); a given layout is checked."""
    found = layouts.detect(row)
    if wanted != Layout.AUTO and found is not None and found != str(wanted).upper():
        raise ModelInputError(f"{where}: the model takes rows {_shown(row)}, not the layout={str(wanted)!r} it was "
                              f"given; pass layout='auto'", argument="layout")
    if wanted != Layout.AUTO:
        return str(wanted).upper()
    return found or "NCL"


def _data_length(shape: tuple, mshape: tuple, layout: str) -> int | None:
    """The sequence length of data of ``shape``: a batch or a row in the model's layout (it fits the model's row)
    or in dnalift's ``(n, 4, length)``; None when it is none of these."""
    for batch in ((shape, (1, *shape)) if len(shape) == len(mshape) + 1 else ((1, *shape),)):
        if layouts.data_layout(batch, mshape, layout) == "model":
            return layouts.length_of(batch[1:], layout)
    if len(shape) in (2, 3) and shape[-2] == 4:
        return shape[-1]
    return None


def _shown(shape) -> str:
    return "(" + ", ".join("L" if d is None else str(d) for d in shape) + ")"


def check_input(model, shape) -> None:
    """Raise :class:`~dnalift.errors.ModelInputError` when one-hot data of this shape does not fit the model.

    Parameters
    ----------
    model : dnalift.models.export.LoadedModel
    shape : tuple of int
        Shape of the data: a batch ``(n, 4, length)`` in dnalift's layout (the engine turns it into the model's
        layout, :mod:`dnalift.models.layouts`) or ``(n, ...)`` in the model's own layout; or one row of either.
    """
    shape = tuple(int(d) for d in shape)
    name = model.path or "<module>"
    mshape = tuple(model.input_shape)
    layout = model.layout if layouts.detect(mshape) is not None else None
    if layout is None:
        why = ("neither dimension is the 4 one-hot channels (A, C, G, T)" if len(mshape) == 2 and 4 not in mshape
               else "none of the layouts dnalift passes: (4, length), (length, 4), (4, 1, length)")
        raise ModelInputError(f"{name}: the model takes rows of shape {_shown(mshape)}: {why}; wrap the model in a "
                              f"module whose forward takes (n, 4, length) and reshapes")
    length = _data_length(shape, mshape, layout)
    if length is None:
        raise ModelInputError(
            f"{name}: the model takes {_shown(('n', *mshape))} ({layouts.label_of(layout)}); the data has shape "
            f"{shape}: give (n, 4, length) or the model's own layout", argument="X", shape=shape)
    expected = model.input_length
    if expected is not None and expected != length:
        raise ModelInputError(
            f"{name}: the model expects sequences of length {expected} (input {layouts.pattern(layout)}), the "
            f"data has length {length}; fix: width={expected} (or export the model for length {length})",
            argument="width", expected=expected, length=length)


# ----------------------------------------------------------------------------------------------------------
# small helpers


def parse_layout(value) -> Layout:
    """The :class:`~dnalift.options.Layout` for ``value`` (``"auto"``, ``"ncl"``, ``"nlc"``, in any case)."""
    return Layout.parse(value.lower() if isinstance(value, str) and not isinstance(value, Layout) else value,
                        argument="layout")


def param_dtype(module) -> torch.dtype:
    """The first floating dtype among the module's parameters and buffers (float32 if none)."""
    for t in list(module.parameters()) + list(module.buffers()):
        if t.dtype.is_floating_point:
            return t.dtype
    return torch.float32


def _int_attribute(module, names) -> int | None:
    for name in names:
        try:
            value = getattr(module, name, None)
        except Exception:
            value = None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def length_attribute(module) -> int | None:
    """The module's input length from an ``input_length`` (or similar) attribute."""
    return _int_attribute(module, LENGTH_ATTRIBUTES)


def output_names_of(module) -> tuple[str, ...] | None:
    """The names of the first output's units from an ``output_names`` (or similar) attribute."""
    for name in NAME_ATTRIBUTES:
        try:
            value = getattr(module, name, None)
        except Exception:
            value = None
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
    return None
