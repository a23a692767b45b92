"""A module or an exported program -> the program dnalift runs (torch only).

Every model dnalift scores ends up as a :class:`torch.export.ExportedProgram`, held by a :class:`LoadedModel`:

- its **first user input is the one-hot sequence** ``(n, 4, length)`` (``(n, length, 4)`` for channels-last
  models, ``layout="NLC"``); **any further user input is a control input** (bpnet-lite's ``X_ctl``, a
  control track), which the engine fills with zeros of its per-row shape (``LoadedModel.control_shapes``);
- the batch dimension ``n`` of every input is one dynamic dimension (``min=1``); the other dimensions are fixed;
- its outputs are the model's own: one tensor, or a tuple, list or dict of tensors (kept as the program's
  output pytree), each with a row per sequence;
- it holds only ATen ops in evaluation mode: dropout and batch norm of a program exported in training mode are
  switched to eval mode, disabled autocast regions are inlined, and the size arithmetic that a TorchScript trace
  records as tensor ops is done on the sizes (:mod:`dnalift.models.passes`); recurrent layers (LSTM, GRU, RNN)
  are written out as their cell equations (:mod:`dnalift.models.recurrent`).

:func:`from_module` exports an in-memory ``nn.Module`` (or ``ScriptModule``); :func:`program_for_module` does the
same once per module and input shape (a cache that does not keep the module alive and notices changed
parameters); :func:`from_program` takes an ``ExportedProgram``. The model-file formats are read by
:mod:`dnalift.models`, which ends in these functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import warnings
import weakref
from collections.abc import Mapping

import torch
import torch.nn as nn
import torch.utils._pytree as pytree

from dnalift.models import passes as export_passes
from dnalift.models import recurrent, script_source
from dnalift.models import signature as inputs
from dnalift.options import Layout
from dnalift.errors import ModelFormatError, ModelInputError
from dnalift.models.signature import check_input
from dnalift.models.loaded import FORMATS, LoadedModel

__all__ = ["FORMATS", "PT2_EXPORT_CODE", "PT2_HINT", "LoadedModel", "from_module", "from_program",
           "program_for_module", "cells_program", "check_input", "export_module", "reexport", "convert_script_module",
           "check_conversion", "unlift", "sha256_of_module", "sha256_of_program", "quiet_export"]

log = logging.getLogger(__name__)

#: Python that saves ``model`` (an nn.Module taking ``(n, 4, length)``) as a .pt2 that dnalift loads: the batch
#: dimension must be dynamic (a fixed batch breaks on models such as bpnet-lite's BPNet, whose forward reshapes
#: to ``(X.shape[0], 1)``)
PT2_EXPORT_CODE = ("x = torch.zeros(2, 4, length); batch = torch.export.Dim('batch'); "
                   "torch.export.save(torch.export.export(model.eval(), (x,), dynamic_shapes=({0: batch},)), "
                   "'model.pt2')")
#: the same, with the variants, for messages
PT2_HINT = (f"{PT2_EXPORT_CODE} (for a channels-last model x = torch.zeros(2, length, 4); for a model with a "
            f"control input (x, x_ctl) and ({{0: batch}}, {{0: batch}}))")


# ----------------------------------------------------------------------------------------------------------
# public entry points


def from_module(module: nn.Module, *, input_shape=None, input_length: int | None = None,
                layout: Layout | str = Layout.AUTO, control_shapes=None, path: str | None = None) -> LoadedModel:
    """Export an in-memory module as a :class:`LoadedModel` (``format="module"``).

    Parameters
    ----------
    module : torch.nn.Module or torch.jit.ScriptModule
        Takes a float one-hot batch ``(n, 4, length)`` or ``(n, length, 4)`` (and, optionally, control inputs)
        and returns a tensor or a tuple/list/dict of tensors, each ``(n, ...)``. It is exported in evaluation
        mode; its own train/eval mode is restored after.
    input_shape : tuple of int, optional
        Shape of one input row: ``(4, length)``, or ``(length, 4)`` for a channels-last model. With
        ``layout="auto"`` a module that fails on it is tried on the transposed shape.
    input_length : int, optional
        The sequence length, when ``input_shape`` is not given (else the module's ``input_length`` attribute).
    layout : {"auto", "ncl", "nlc"}
        The input layout (:class:`~dnalift.options.Layout`); ``"auto"`` runs the module to find it.
    control_shapes : sequence of tuple, optional
        Per-row shapes of the inputs after the sequence. By default: ``(n_control_tracks, length)`` for the
        first one when the module has an ``n_control_tracks`` attribute above 0 (bpnet-lite), none otherwise.
    path : str, optional
        Recorded as the model's path (for messages).

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelInputError
        The module does not run on one-hot input, or returns no row per sequence.
    ModelFormatError
        It runs but ``torch.export`` cannot export it with a variable batch size.
    """
    if not isinstance(module, nn.Module):
        raise ModelFormatError(f"from_module needs a torch.nn.Module, got {type(module).__name__}",
                               argument="module")
    return module_to_model(module, input_shape=input_shape, input_length=input_length, layout=layout,
                           control_shapes=control_shapes, path=path, fmt="module")


def program_for_module(module: nn.Module, input_shape=None, **options) -> LoadedModel:
    """:func:`from_module`, exported once per module and options.

    The result is cached on the module weakly (the cache never keeps a module alive) and exported again when
    any of the module's parameters or buffers changed (replaced, moved, or written in place, as an optimizer
    step or ``load_state_dict`` does). Changes to plain attributes of the module are not seen: call
    :func:`from_module` then.

    Parameters
    ----------
    module : torch.nn.Module
    input_shape : tuple of int, optional
    **options
        ``input_length``, ``layout``, ``control_shapes``, ``path``: as for :func:`from_module`.

    Returns
    -------
    LoadedModel
    """
    key = _options_key(input_shape, options)
    state = _state_signature(module)
    per_module = _EXPORTS.get(module)
    if per_module is not None and key in per_module and per_module[key][0] == state:
        return per_module[key][1]
    loaded = from_module(module, input_shape=input_shape, **options)
    if per_module is None:
        per_module = _EXPORTS.setdefault(module, {})
    per_module[key] = (state, loaded)
    return loaded


_EXPORTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cells_program(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """``program`` itself, or, when it has recurrent layers, the program exported again with them written out as
    cells (:mod:`dnalift.models.recurrent`), once per program (cached without keeping it alive).

    For an ``ExportedProgram`` given to the engine directly, which does not go through :func:`from_program`.
    """
    if not recurrent.recurrent_nodes(program.graph):
        return program
    cached = _CELLS.get(program)
    if cached is None:
        spec = inputs.program_inputs(program, "<program>")
        row, controls = inputs.fixed_rows(spec, None, "<program>")
        cached = reexport(unlift(program), row, control_shapes=controls, dtype=spec.dtype, where="<program>")
        _CELLS[program] = cached
    return cached


_CELLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _options_key(input_shape, options: Mapping) -> tuple:
    shape = None if input_shape is None else tuple(int(d) for d in input_shape)
    controls = options.get("control_shapes")
    controls = None if controls is None else tuple(tuple(int(d) for d in s) for s in controls)
    layout = str(inputs.parse_layout(options.get("layout", Layout.AUTO)))
    return shape, options.get("input_length"), layout, controls, options.get("path")


def _state_signature(module: nn.Module) -> tuple:
    """Identity and version of every parameter and buffer: changes when one is replaced or written in place."""
    return tuple((name, t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape))
                 for name, t in [*module.named_parameters(), *module.named_buffers()])


def from_program(program: torch.export.ExportedProgram, *, input_length: int | None = None,
                 layout: Layout | str = Layout.AUTO, path: str | None = None) -> LoadedModel:
    """Wrap an exported program (e.g. from ``torch.export.export``) as a :class:`LoadedModel`
    (``format="module"``), re-exporting it with a variable batch size and in evaluation mode if needed.

    Parameters
    ----------
    program : torch.export.ExportedProgram
        First input ``(n, 4, length)`` or ``(n, length, 4)``, then any control inputs; tensor outputs ``(n, ...)``.
    input_length : int, optional
        Fixes the length if the program leaves it free.
    layout : {"auto", "ncl", "nlc"}
        The input layout; ``"auto"`` reads it from the input shape (``(length, 4)`` is channels last).
    path : str, optional
        Recorded as the model's path (for messages).
    """
    if not isinstance(program, torch.export.ExportedProgram):
        raise ModelFormatError(f"from_program needs a torch.export.ExportedProgram, got {type(program).__name__}",
                               argument="program")
    return finish_program(program, path=path, fmt="module", sha256=sha256_of_program(program),
                          input_length=input_length, layout=layout)


# ----------------------------------------------------------------------------------------------------------
# modules -> programs


def module_to_model(module: nn.Module, *, input_shape=None, input_length=None, layout=Layout.AUTO,
                    control_shapes=None, path=None, fmt: str, sha256: str | None = None,
                    arch: str | None = None) -> LoadedModel:
    """Export ``module`` (a Python or TorchScript module) in eval mode; its own modes are restored after.

    The loaders of :mod:`dnalift.models` call this with their ``fmt``, ``sha256`` (of the file) and ``arch``.
    """
    where = path or "<module>"
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        dtype = inputs.param_dtype(module)
        row, controls = inputs.find_input_spec(module, input_shape=input_shape, input_length=input_length,
                                               layout=layout, control_shapes=control_shapes, dtype=dtype,
                                               where=where)
        if isinstance(module, torch.jit.ScriptModule):
            gm = convert_script_module(module, row, controls, dtype=dtype, where=where)
            ep = reexport(gm, row, control_shapes=controls, dtype=dtype, where=where)
            check_conversion(module, ep, row, controls, dtype=dtype, where=where)
        else:
            ep = export_module(module, row, control_shapes=controls, dtype=dtype, where=where)
        digest = sha256 or sha256_of_module(module)
        names = inputs.output_names_of(module)
    finally:
        for m, mode in modes.items():
            m.training = mode
    return finish_program(ep, path=path, fmt=fmt, sha256=digest, layout=layout, output_names=names, arch=arch)


def export_module(module: nn.Module, input_shape, *, control_shapes=(), dtype: torch.dtype = torch.float32,
                  where: str = "<module>") -> torch.export.ExportedProgram:
    """``torch.export`` a module (already in the mode wanted) with a dynamic batch dimension.

    Parameters
    ----------
    module : torch.nn.Module
    input_shape : tuple of int
        The sequence row; exported on ``(2, *input_shape)``.
    control_shapes : sequence of tuple
        Rows of the further inputs, exported on zeros ``(2, *shape)``; all inputs share the batch ``Dim``.
    dtype : torch.dtype
    where : str
        The model's name for messages.

    Raises
    ------
    ModelInputError
        The module does not run on that input.
    ModelFormatError
        It runs but cannot be exported.
    """
    example = tuple(torch.zeros((2, *shape), dtype=dtype) for shape in (input_shape, *control_shapes))
    try:
        with torch.no_grad():
            out = module(*example)
    except Exception as e:  # the model's own error: wrong shape, dtype...
        raise ModelInputError(f"{where}: the model fails on one-hot input of shape {tuple(example[0].shape)}: "
                              f"{inputs.first_line(e)}") from e
    inputs.check_outputs(out, 2, where)
    batch = torch.export.Dim("batch", min=1)
    chatter = io.StringIO()  # torch.export prints the partial graph to stderr when it fails
    try:
        with quiet_export(), contextlib.redirect_stderr(chatter):
            ep = torch.export.export(module, example, dynamic_shapes=tuple({0: batch} for _ in example),
                                     strict=False)
    except Exception as e:
        raise _export_error(e, where) from e
    finally:
        if chatter.getvalue().strip():
            log.debug("%s: torch.export said:\n%s", where, chatter.getvalue())
    return ep


def _export_error(e: Exception, where: str) -> ModelFormatError:
    """A one-line error for a failed ``torch.export``."""
    msg, text = inputs.first_line(e), str(e)
    if "Constraints violated" in text or "specializ" in text:
        detail = next((line.strip(" -") for line in text.splitlines() if "constant" in line), msg)
        detail = detail.split(". ")[0][:200]
        return ModelFormatError(
            f"{where}: cannot export the model with a variable batch size ({detail}); its forward must not fix "
            f"the batch size (use x.shape[0] or -1 in reshapes)", argument="model", reason="batch_specialized")
    if "data-dependent" in text or "GuardOnDataDependent" in type(e).__name__:
        return ModelFormatError(
            f"{where}: torch.export cannot export the model: a size or a branch depends on the values of a tensor "
            f"({msg[:150]}); if it branches on the input's values, rewrite the branch with torch.where; if this "
            f"is a TorchScript trace, export the original module instead: {PT2_HINT}", argument="model")
    return ModelFormatError(f"{where}: torch.export cannot export the model: {msg}", argument="model")


def reexport(gm: torch.fx.GraphModule, input_shape, *, control_shapes=(), dtype=torch.float32,
             where: str = "<module>") -> torch.export.ExportedProgram:
    """Clean an unlifted graph (:mod:`dnalift.models.passes`) and export it again with a dynamic batch."""
    export_passes.scalarize_shape_arithmetic(gm)
    export_passes.inline_autocast(gm, where)
    export_passes.force_eval(gm, where)
    recurrent.unroll_recurrent(gm)
    return export_module(gm, input_shape, control_shapes=control_shapes, dtype=dtype, where=where)


def convert_script_module(ts, row, controls=(), *, dtype=torch.float32,
                          where: str = "<module>") -> torch.fx.GraphModule:
    """A TorchScript module as an unlifted graph, converted by ``TS2EPConverter`` on zeros of these rows
    (clean it and export it again with :func:`reexport`)."""
    example = tuple(torch.zeros((2, *shape), dtype=dtype) for shape in (row, *controls))
    try:
        import torch._export.converter as ts_converter

        with quiet_export(), script_source.keep_source_lines():
            converted = ts_converter.TS2EPConverter(ts, example).convert()
    except Exception as e:
        raise ModelFormatError(f"{where}: cannot convert this TorchScript model to a torch.export graph "
                               f"({inputs.first_line(e)}); export the original module instead: {PT2_HINT}",
                               argument="model") from e
    return unlift(converted)


def check_conversion(reference, program: torch.export.ExportedProgram, row, controls=(), *, dtype=torch.float32,
                     where: str = "<module>") -> None:
    """Raise :class:`~dnalift.errors.ModelFormatError` when ``program`` and the module it was converted from
    disagree on a random batch (``TS2EPConverter`` can mistranslate, e.g. a size computed from tensor values)."""
    generator = torch.Generator().manual_seed(0)
    example = tuple(torch.rand((3, *shape), generator=generator, dtype=dtype) for shape in (row, *controls))
    with torch.no_grad():
        want = pytree.tree_leaves(reference(*example))
        got = pytree.tree_leaves(program.module()(*example))
    worst = 0.0 if len(want) == len(got) else float("inf")
    for w, g in zip(want, got):
        if w.shape != g.shape:
            worst = float("inf")
            break
        scale = max(1.0, float(w.abs().max())) if w.numel() else 1.0
        worst = max(worst, float((w - g.to(w.dtype)).abs().max()) / scale if w.numel() else 0.0)
    if worst > 1e-4:
        raise ModelFormatError(f"{where}: converting the TorchScript model to a torch.export graph changed its "
                               f"outputs (largest relative difference {worst:.3g}); export the original module "
                               f"instead: {PT2_HINT}", argument="model", reason="conversion_changed_outputs")


def unlift(program: torch.export.ExportedProgram) -> torch.fx.GraphModule:
    """``program.module()`` without the input-shape checks, so that it can be re-exported for other
    shapes (a variable batch, a length); parameters and buffers are get_attr nodes of the result."""
    gm = program.module(check_guards=False)
    gm.validate_inputs = False
    return gm


# ----------------------------------------------------------------------------------------------------------
# programs -> LoadedModel


def finish_program(ep: torch.export.ExportedProgram, *, path, fmt: str, sha256: str, input_length=None,
                   layout=Layout.AUTO, output_names=None, arch=None) -> LoadedModel:
    """Validate an exported program and re-export it where needed: a variable batch size (min 1) on every
    input, the length fixed by ``input_length`` where the program leaves it free, eval mode, no autocast
    region and no size read from a tensor."""
    where = path or "<module>"
    wanted = inputs.parse_layout(layout)
    export_passes.refuse_vmap(ep.graph, where)
    spec = inputs.program_inputs(ep, where)
    needs = inputs.reexport_reasons(ep, spec, input_length)
    if needs:
        log.info("%s: re-exporting the program for %s", where, " and ".join(needs))
        row, controls = inputs.fixed_rows(spec, input_length, where)
        try:
            ep = reexport(unlift(ep), row, control_shapes=controls, dtype=spec.dtype, where=where)
        except ModelFormatError as e:
            if e.details.get("reason") != "batch_specialized" or not isinstance(spec.batch, int):
                raise
            raise ModelFormatError(
                f"{where}: the program was exported for a fixed batch of {spec.batch}, which its graph keeps "
                f"(e.g. in a reshape), so dnalift cannot run other batch sizes; export it again with a dynamic "
                f"batch: {PT2_HINT}", argument="model", reason="fixed_batch") from e
        spec = inputs.program_inputs(ep, where)
    outputs = inputs.program_outputs(ep, spec.batch, where)
    first = next(iter(outputs.values()))
    n_first = 1
    for d in first:
        n_first *= d or 1
    if output_names is not None and len(output_names) != n_first:
        output_names = None
    return LoadedModel(program=ep, path=path, format=fmt, sha256=sha256, input_shape=spec.row,
                       output_shape=first, layout=inputs.layout_of(spec.row, wanted, where), normalized=False,
                       input_dtype=spec.dtype, output_names=output_names, arch=arch,
                       control_shapes=spec.controls, output_shapes=outputs)


# ----------------------------------------------------------------------------------------------------------
# hashing


def sha256_of_program(program: torch.export.ExportedProgram) -> str:
    """SHA-256 over a program's state_dict, constants and graph."""
    return _sha256_state(program.state_dict, extra=[program.constants, str(program.graph)])


def sha256_of_module(module) -> str:
    """SHA-256 over a module's state_dict: names, dtypes, shapes and bytes."""
    return _sha256_state(module)


def _sha256_state(module, extra=()) -> str:
    h = hashlib.sha256()
    state = module.state_dict() if isinstance(module, nn.Module) else dict(module)
    for item in extra:
        if isinstance(item, Mapping):
            state.update({f"constant:{k}": v for k, v in item.items()})
        else:
            h.update(str(item).encode())
    for name, t in sorted(state.items()):
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


#: torch loggers whose warnings during export concern torch's internals, not the user's model
_NOISY_TORCH_LOGGERS = ("torch.fx.experimental.symbolic_shapes", "torch._export.converter")


@contextlib.contextmanager
def quiet_export():
    """Silence torch's export-time chatter that says nothing to a dnalift user (kept when dnalift's own
    logger is at DEBUG level)."""
    loud = log.isEnabledFor(logging.DEBUG)
    saved = {name: logging.getLogger(name).level for name in _NOISY_TORCH_LOGGERS}
    try:
        if not loud:
            for name in _NOISY_TORCH_LOGGERS:
                logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            if not loud:
                warnings.filterwarnings("ignore", message=".*is deprecated.*", category=FutureWarning)
                warnings.filterwarnings("ignore", message=".*Manually populate.*")
                warnings.filterwarnings("ignore", message="`torch.jit.* is deprecated", category=DeprecationWarning)
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
