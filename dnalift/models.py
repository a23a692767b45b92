"""Model files -> one ``torch.export`` graph with a variable batch size.

Every model dnalift scores, whatever file it came in, ends up as a :class:`torch.export.ExportedProgram`
whose single user input is the one-hot batch (dimension 0 is dynamic, ``min=1``; the other dimensions are
fixed) and whose single output is one tensor ``(n, targets...)``. The attribution engine interprets that
graph op by op; it never sees the original module.

Formats, detected from the file's content (zip member names, magic bytes), never from its name:

- ``"pt2"``: a zip archive whose ``archive_format`` member reads ``pt2`` (``torch.export.save``). Loaded
  with ``torch.export.load``; the preferred format. ``torch.export.load`` itself falls back to full
  unpickling for sample inputs or weights that ``weights_only`` loading rejects, so without ``trust=True``
  every pickle in the archive is first checked with ``torch.load(weights_only=True)`` and a file that needs
  more is refused (:class:`~dnalift.errors.UntrustedModelError`). A program with a fixed batch size, or
  exported in training mode, is re-exported with a variable batch / in eval mode.
- ``"torchscript"``: a zip archive with ``code/`` members and ``constants.pkl`` (``torch.jit.save``).
  Loaded with ``torch.jit.load``, converted with ``torch._export.converter.TS2EPConverter`` and re-exported.
  The input length comes from ``input_length``, else from the inputs a traced module stored in the archive
  (``traced_inputs.pkl``, read by a restricted unpickler that only rebuilds shapes), else from an
  ``input_length`` attribute of the module.
- ``"state_dict"``: a ``torch.save`` file (zip or legacy) that ``torch.load(weights_only=True)`` reads as a
  mapping of names to tensors (also under a checkpoint key such as ``"state_dict"`` or ``"model"``, or with
  a ``module.`` prefix), or a ``.safetensors`` file; needs ``arch="package.module:Class"`` (and
  ``arch_kwargs``). Loaded with a strict ``load_state_dict`` and exported.
- ``"pickle"``: a ``torch.save`` file holding other Python objects (a whole ``nn.Module``): only with
  ``trust=True`` (``torch.load(weights_only=False)``), then exported.
- ``"module"``: :func:`from_module` (an in-memory ``nn.Module`` or ``ScriptModule``) or :func:`from_program`
  (an in-memory ``ExportedProgram``).

Anything else (an empty, text, HDF5, ONNX, other zip, or unknown binary file; a missing file) raises
:class:`~dnalift.errors.ModelFormatError` naming the file and what was found.

Without ``trust=True`` a pickle is never unpickled: ``torch.load(weights_only=True)`` refuses any class it
does not know before calling it, and :class:`~dnalift.errors.UntrustedModelError` says how to convert the
file. This module is the only place in dnalift that calls ``torch.load``.

Input layout: dnalift's one-hot rows are ``(4, length)``. A model whose exported input rows are
``(length, 4)`` (last dimension 4 and not the first) gets ``layout="NLC"``; the pipeline transposes the data
for it. When a file does not record the input shape (TorchScript, state_dict, pickle), the model is run on
``(2, 4, length)`` and, if that fails, on ``(2, length, 4)``; a model that accepts both (e.g. one that starts
by flattening its input) is taken as ``NCL``. :func:`check_input` compares a model with the data.

Models are put in evaluation mode before they are exported (an in-memory module given to
:func:`from_module` gets its own mode back afterwards). A ``.pt2`` file exported in training mode has its
dropout and batch-norm ops switched to evaluation mode, with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import io
import json
import logging
import os
import pickle
import pickletools
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from dnalift.errors import ModelFormatError, ModelInputError, UntrustedModelError

__all__ = [
    "LoadedModel", "load_model", "from_module", "from_program", "check_input", "export_module", "unlift", "FORMATS",
]

log = logging.getLogger(__name__)

FORMATS = ("pt2", "torchscript", "state_dict", "pickle", "module")

#: attributes of a module that, when they hold an int, give its input length
_LENGTH_ATTRIBUTES = ("input_length", "sequence_length", "seq_len", "seqlen")
#: attributes of a module that, when they hold a list of strings, name its outputs
_NAME_ATTRIBUTES = ("output_names", "target_names", "targets", "tasks")
#: keys under which checkpoints commonly keep their state_dict
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "net", "weights", "params")

_CONVERT_HINT = (
    "convert it where you trust it: torch.export.save(torch.export.export(model.eval(), (x,)), 'model.pt2') "
    "(preferred), or torch.jit.save(torch.jit.script(model), 'model.pt') (or torch.jit.trace), or save "
    "model.state_dict() and pass --arch package.module:Class; or pass --trust-model (trust=True) if you trust "
    "this file"
)


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for attribution.

    Attributes
    ----------
    program : torch.export.ExportedProgram
        The model as one ATen graph; user input ``(n, *input_shape)`` with ``n`` dynamic (``min=1``); one
        output tensor ``(n, *output_shape)``.
    path : str or None
        The file it was loaded from (None for :func:`from_module`).
    format : str
        One of :data:`FORMATS`: ``"pt2"``, ``"torchscript"``, ``"state_dict"``, ``"pickle"``, ``"module"``.
    sha256 : str
        Hex SHA-256 of the file's bytes; for ``"module"``, of the module's state_dict (names, dtypes, shapes,
        bytes), or for :func:`from_program` of the program's state_dict, constants and graph.
    input_shape : tuple
        Shape of one input row, e.g. ``(4, 200)`` (``(200, 4)`` for ``layout="NLC"``); ``None`` marks a
        dimension the program leaves free (only possible for a ``.pt2`` exported with a dynamic length).
    output_shape : tuple
        Shape of one output row, e.g. ``(1,)`` or ``(targets,)``.
    layout : str
        ``"NCL"`` when the model takes ``(n, 4, length)``, ``"NLC"`` when it takes ``(n, length, 4)``.
    normalized : bool
        True once :func:`dnalift.normalize.normalize_first_layer` has mean-normalised the first layer.
    input_dtype : torch.dtype
        Floating dtype the program was exported with (one-hot is passed as this dtype).
    output_names : tuple of str or None
        Names of the output units when the model declares them (an ``output_names``, ``target_names``,
        ``targets`` or ``tasks`` attribute holding one string per output unit).
    arch : str or None
        The ``package.module:Class`` a state_dict was loaded into.
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

    @property
    def name(self) -> str:
        """The file's name for messages, or ``"<module>"``."""
        return os.path.basename(self.path) if self.path else "<module>"

    @property
    def input_length(self) -> int | None:
        """Sequence length the model takes (None if free)."""
        if len(self.input_shape) != 2:
            return None
        return self.input_shape[1] if self.layout == "NCL" else self.input_shape[0]

    @property
    def n_outputs(self) -> int:
        """Number of output units per row (product of ``output_shape``)."""
        n = 1
        for d in self.output_shape:
            n *= d if d is not None else 1
        return n

    def module(self) -> nn.Module:
        """A runnable ``nn.Module`` (``program.module()``) taking ``(n, *input_shape)``."""
        return self.program.module()

    def example_input(self, n: int = 2) -> torch.Tensor:
        """Zeros of shape ``(n, *input_shape)`` in ``input_dtype`` (free dimensions must not exist)."""
        if any(d is None for d in self.input_shape):
            raise ModelInputError(f"{self.name}: its input length is not fixed; load it with input_length=L")
        return torch.zeros((n, *self.input_shape), dtype=self.input_dtype)


# ----------------------------------------------------------------------------------------------------------
# public entry points


def load_model(path, *, arch: str | None = None, arch_kwargs: Mapping | str | None = None, trust: bool = False,
               input_length: int | None = None) -> LoadedModel:
    """Load a model file of any supported format as a :class:`LoadedModel`.

    Parameters
    ----------
    path : str or os.PathLike
        The model file: ``.pt2`` (``torch.export.save``), TorchScript (``torch.jit.save``), a state_dict
        (``torch.save(model.state_dict())`` or ``.safetensors``) together with ``arch``, or a whole pickled
        module (``torch.save(model)``, only with ``trust=True``). The format is read from the content.
    arch : str, optional
        ``"package.module:Class"`` to build the model a state_dict is loaded into.
    arch_kwargs : mapping or JSON object string, optional
        Keyword arguments for the ``arch`` constructor.
    trust : bool
        Allow unpickling a whole pickled module (this runs code from the file).
    input_length : int, optional
        Sequence length to export the model for. Needed where the file does not record it (TorchScript
        without traced inputs, state_dict, pickle), unless the module has an ``input_length`` attribute. For
        a ``.pt2`` it fixes a length the program left free.

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelFormatError
        Missing, empty, damaged or unknown file; a state_dict without ``arch`` or that does not fit it.
    UntrustedModelError
        ``trust`` is False and the file is a pickle of Python objects, or a ``.pt2`` archive holding one.
    ModelInputError
        The model does not run on one-hot input, or does not return one tensor.
    """
    p = Path(path)
    where = str(path)
    if not p.exists():
        raise ModelFormatError(f"{where}: no such file; give the path of a PyTorch model (.pt2 from "
                               f"torch.export.save, TorchScript .pt, or a state_dict with --arch)")
    if p.is_dir():
        raise ModelFormatError(f"{where}: is a directory, not a model file")
    digest = _sha256_file(p)
    kind, detail = _sniff(p)
    log.debug("%s: detected %s (%s)", where, kind, detail)
    if arch is not None and kind in ("pt2", "torchscript"):
        log.warning("%s: is a %s file, which holds its own architecture; ignoring arch=%r", where, kind, arch)

    if kind == "pt2":
        if not trust:
            _check_pt2_pickles(p, where)
        ep = _load_pt2(p, where)
        return _from_program(ep, path=where, fmt="pt2", sha256=digest, input_length=input_length)
    if kind == "torchscript":
        return _load_torchscript(p, where, digest, input_length)
    if kind == "safetensors":
        state = _read_safetensors(p, where)
        return _from_state_dict(state, where, digest, arch, arch_kwargs, input_length)
    if kind == "torch_pickle":
        return _load_torch_pickle(p, where, digest, arch, arch_kwargs, trust, input_length, detail)
    raise ModelFormatError(f"{where}: {detail}")


def from_module(module: nn.Module, *, input_shape, path: str | None = None) -> LoadedModel:
    """Export an in-memory module as a :class:`LoadedModel` (``format="module"``).

    Parameters
    ----------
    module : torch.nn.Module
        Takes a float one-hot batch ``(n, 4, length)`` or ``(n, length, 4)`` and returns one tensor
        ``(n, targets...)``. It is exported in evaluation mode; its own train/eval mode is restored after.
    input_shape : tuple of int
        Shape of one input row: ``(4, length)``, or ``(length, 4)`` for a channels-last model.
    path : str, optional
        Recorded as the model's path (for messages).

    Returns
    -------
    LoadedModel
    """
    if not isinstance(module, nn.Module):
        raise ModelFormatError(f"from_module needs a torch.nn.Module, got {type(module).__name__}")
    shape = tuple(int(d) for d in input_shape)
    if isinstance(module, torch.jit.ScriptModule):
        return _from_script_module(module, path or "<module>", _sha256_state(module), fmt="module", path=path,
                                   shapes=[shape])
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        ep = export_module(module, shape, dtype=_param_dtype(module), where=path or "<module>")
    finally:
        for m, mode in modes.items():
            m.training = mode
    return _from_program(ep, path=path, fmt="module", sha256=_sha256_state(module), input_length=None,
                         output_names=_output_names(module))


def from_program(program: torch.export.ExportedProgram, *, input_length: int | None = None,
                 path: str | None = None) -> LoadedModel:
    """Wrap an exported program (e.g. from ``torch.export.export``) as a :class:`LoadedModel`
    (``format="module"``), re-exporting it with a variable batch size and in evaluation mode if needed.

    Parameters
    ----------
    program : torch.export.ExportedProgram
        One tensor input ``(n, 4, length)`` or ``(n, length, 4)``, one tensor output ``(n, targets...)``.
    input_length : int, optional
        Fixes the length if the program leaves it free.
    path : str, optional
        Recorded as the model's path (for messages).
    """
    if not isinstance(program, torch.export.ExportedProgram):
        raise ModelFormatError(f"from_program needs a torch.export.ExportedProgram, got {type(program).__name__}")
    return _from_program(program, path=path, fmt="module", sha256=_sha256_program(program),
                         input_length=input_length)


def check_input(model: LoadedModel, shape) -> None:
    """Raise :class:`~dnalift.errors.ModelInputError` when one-hot data of this shape does not fit the model.

    Parameters
    ----------
    model : LoadedModel
    shape : tuple of int
        Shape of the data: one row ``(4, length)`` or a batch ``(n, 4, length)`` (dnalift's layout, whatever
        the model's; the pipeline transposes for ``layout="NLC"`` models).
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) == 3:
        shape = shape[1:]
    name = model.path or "<module>"
    if len(shape) != 2 or shape[0] != 4:
        raise ModelInputError(f"{name}: one-hot data must have rows of shape (4, length), got {shape}")
    length = shape[1]
    mshape = tuple(model.input_shape)
    shown = "(" + ", ".join("L" if d is None else str(d) for d in mshape) + ")"
    if len(mshape) != 2:
        raise ModelInputError(
            f"{name}: the model takes rows of shape {shown}, dnalift passes one-hot rows (4, length) or "
            f"(length, 4); wrap the model in a module whose forward takes (n, 4, length) and reshapes")
    if 4 not in mshape and None not in mshape:
        raise ModelInputError(
            f"{name}: the model takes rows of shape {shown}: neither dimension is the 4 one-hot channels "
            f"(A, C, G, T); dnalift passes (4, length) or (length, 4); wrap the model so it takes (n, 4, length)")
    expected = model.input_length
    if expected is not None and expected != length:
        layout = "(n, 4, L)" if model.layout == "NCL" else "(n, L, 4)"
        raise ModelInputError(
            f"{name}: the model expects sequences of length {expected} (input {layout}), the data has length "
            f"{length}; fix: --width {expected} (or export the model for length {length})")


def export_module(module: nn.Module, input_shape, *, dtype: torch.dtype = torch.float32,
                  where: str = "<module>") -> torch.export.ExportedProgram:
    """``torch.export`` a module (already in the mode wanted) on input ``(2, *input_shape)`` with a dynamic
    batch dimension (``min=1``); the other dimensions are fixed.

    Raises ModelInputError when the module does not run on that input, ModelFormatError when it runs but
    cannot be exported.
    """
    example = torch.zeros((2, *input_shape), dtype=dtype)
    try:
        with torch.no_grad():
            out = module(example)
    except Exception as e:  # the model's own error: wrong shape, dtype...
        raise ModelInputError(f"{where}: the model fails on one-hot input of shape {tuple(example.shape)}: "
                              f"{_first_line(e)}") from e
    _check_output_value(out, where)
    batch = torch.export.Dim("batch", min=1)
    chatter = io.StringIO()  # torch.export prints the partial graph to stderr when it fails
    try:
        with _quiet_export(), contextlib.redirect_stderr(chatter):
            ep = torch.export.export(module, (example,), dynamic_shapes=({0: batch},), strict=False)
        if chatter.getvalue().strip():
            log.debug("%s: torch.export said:\n%s", where, chatter.getvalue())
        return ep
    except Exception as e:
        if chatter.getvalue().strip():
            log.debug("%s: torch.export said:\n%s", where, chatter.getvalue())
        msg = _first_line(e)
        text = str(e)
        if "Constraints violated" in text or "specializ" in text:
            detail = next((line.strip(" -") for line in text.splitlines() if "constant" in line), msg)
            detail = detail.split(". ")[0][:200]
            raise ModelFormatError(
                f"{where}: cannot export the model with a variable batch size ({detail}); its forward must not fix "
                f"the batch size (use x.shape[0] or -1 in reshapes)") from e
        if "data-dependent" in text:
            raise ModelFormatError(
                f"{where}: torch.export cannot export the model: its forward branches on the input's values "
                f"({msg[:150]}); rewrite the branch with torch.where (or torch.cond)") from e
        raise ModelFormatError(f"{where}: torch.export cannot export the model: {msg}") from e


# ----------------------------------------------------------------------------------------------------------
# format detection


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _sniff(p: Path) -> tuple[str, Any]:
    """Return (kind, detail): kind in pt2, torchscript, torch_pickle, safetensors, or an error kind whose
    detail is the message (what was found)."""
    size = p.stat().st_size
    if size == 0:
        return "error", "the file is empty (0 bytes), not a model"
    with open(p, "rb") as fh:
        head = fh.read(4096)
    if head[:4] == b"PK\x03\x04" or zipfile.is_zipfile(p):
        try:
            with zipfile.ZipFile(p) as zf:
                names = zf.namelist()
                fmt_member = next((n for n in names if n.endswith("/archive_format") or n == "archive_format"),
                                  None)
                archive_format = zf.read(fmt_member).strip() if fmt_member else b""
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            return "error", f"a damaged zip archive ({e}); the file is truncated or not a model"
        if archive_format == b"pt2" or any(n.endswith("models/model.json") for n in names):
            return "pt2", names
        if any("/code/" in n or n.startswith("code/") for n in names) and any(
                n.endswith("constants.pkl") for n in names):
            return "torchscript", names
        if any(n.endswith("data.pkl") for n in names):
            return "torch_pickle", "zip"
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        return "error", (f"a zip archive that is not a PyTorch model file (members: {shown}); expected a .pt2 "
                         f"from torch.export.save, TorchScript from torch.jit.save, or torch.save output")
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "torch_pickle", "legacy"
    if head.startswith(_HDF5_MAGIC):
        return "error", ("an HDF5 file (a Keras/TensorFlow model or a result file?), not a PyTorch model; "
                         "dnalift reads PyTorch models (.pt2, TorchScript, state_dict)")
    if len(head) >= 10 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= size - 8:
            return "safetensors", None
    text = _as_text(head)
    if text is not None:
        first = text.strip().splitlines()[0][:60] if text.strip() else ""
        return "error", f"a text file (beginning {first!r}), not a model file"
    if p.suffix.lower() == ".onnx":
        return "error", "an ONNX file (not supported); give the PyTorch model (.pt2, TorchScript or state_dict)"
    return "error", (f"unrecognised binary content (first bytes {head[:8].hex()}), not a .pt2, TorchScript or "
                     f"torch.save file")


def _as_text(head: bytes) -> str | None:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:  # the 4 KB cut may split a character
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return None
    printable = sum(ch.isprintable() or ch in "\n\r\t" for ch in text)
    return text if text and printable >= 0.95 * len(text) else None


def _sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256_program(program: torch.export.ExportedProgram) -> str:
    return _sha256_state(program.state_dict, extra=[program.constants, str(program.graph)])


def _sha256_state(module, extra=()) -> str:
    """SHA-256 over a module's (or a mapping's) tensors: names, dtypes, shapes and bytes."""
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


# ----------------------------------------------------------------------------------------------------------
# .pt2


def _load_pt2(p: Path, where: str) -> torch.export.ExportedProgram:
    try:
        with _quiet_export():
            return torch.export.load(str(p))
    except Exception as e:
        raise ModelFormatError(f"{where}: a .pt2 archive that torch.export.load cannot read ({_first_line(e)}); "
                               f"re-save it with torch.export.save from this torch version") from e


# ----------------------------------------------------------------------------------------------------------
# TorchScript


def _load_torchscript(p: Path, where: str, digest: str, input_length: int | None) -> LoadedModel:
    try:
        with _quiet_export():
            ts = torch.jit.load(str(p), map_location="cpu")
    except Exception as e:
        raise ModelFormatError(f"{where}: a TorchScript archive that torch.jit.load cannot read: "
                               f"{_first_line(e)}") from e
    traced = _traced_input_shape(p)
    lengths = []
    for cand in (input_length, _length_attribute(ts), _length_from_shape(traced)):
        if cand is not None and cand not in lengths:
            lengths.append(int(cand))
    if not lengths:
        raise ModelInputError(f"{where}: a TorchScript file that does not record its input length; pass "
                              f"input_length=L (--width L) with the length the model was trained on")
    shapes = []
    for length in lengths:
        if traced is not None and len(traced) == 3 and traced[2] == 4 and traced[1] != 4:
            shapes += [(length, 4), (4, length)]
        else:
            shapes += [(4, length), (length, 4)]
    if traced is not None and len(traced) >= 2 and tuple(traced[1:]) not in shapes:
        shapes.append(tuple(int(d) for d in traced[1:]))  # e.g. (5, L): loads, and check_input explains
    return _from_script_module(ts, where, digest, fmt="torchscript", path=where, shapes=shapes)


def _from_script_module(ts, where: str, digest: str, *, fmt: str, path, shapes) -> LoadedModel:
    """TorchScript module -> TS2EPConverter -> re-export with a variable batch. ``shapes``: row shapes to
    try, in order; the first the module runs on is used."""
    modes = {m: m.training for m in ts.modules()}
    ts.eval()
    try:
        return _convert_script_module(ts, where, digest, fmt=fmt, path=path, shapes=shapes,
                                      dtype=_param_dtype(ts))
    finally:
        if fmt == "module":  # the caller's own module gets its modes back
            for m, mode in modes.items():
                m.training = mode


def _convert_script_module(ts, where, digest, *, fmt, path, shapes, dtype) -> LoadedModel:
    example, failures = None, []
    for shape in shapes:
        x = torch.zeros((2, *shape), dtype=dtype)
        try:
            with torch.no_grad():
                out = ts(x)
        except Exception as e:
            failures.append(f"{tuple(x.shape)}: {_first_line(e)}")
            continue
        _check_output_value(out, where)
        example = x
        break
    if example is None:
        raise ModelInputError(f"{where}: the TorchScript model fails on one-hot input "
                              f"({'; '.join(failures)[:400]}); pass the length it was trained on with --width")
    try:
        import torch._export.converter as ts_converter

        with _quiet_export():
            converted = ts_converter.TS2EPConverter(ts, (example,)).convert()
    except Exception as e:
        raise ModelFormatError(f"{where}: cannot convert this TorchScript model to a torch.export graph "
                               f"({_first_line(e)}); export the model with torch.export.export and save a .pt2 "
                               f"with torch.export.save instead") from e
    gm = unlift(converted)
    _force_eval(gm, where)
    ep = export_module(gm, tuple(example.shape[1:]), dtype=dtype, where=where)
    return _from_program(ep, path=path, fmt=fmt, sha256=digest, input_length=None, output_names=_output_names(ts))


class _ShapeOnly:
    def __init__(self, shape):
        self.shape = tuple(shape)


class _ShapeUnpickler(pickle.Unpickler):
    """Reads ``traced_inputs.pkl`` of a traced TorchScript archive into shapes, and nothing else: any
    class other than the few tensor-rebuilding helpers is refused (nothing from the file is called)."""

    def find_class(self, module, name):
        if (module, name) == ("torch.jit._pickle", "restore_type_tag"):
            return lambda value, tag: value
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, size, *rest: _ShapeOnly(size)
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if module == "torch" and name.endswith("Storage"):
            return None
        raise pickle.UnpicklingError(f"{module}.{name} not allowed")

    def persistent_load(self, pid):
        return None


def _traced_input_shape(p: Path) -> tuple | None:
    """Shape of the first input ``torch.jit.trace`` was run on, when the archive stored it."""
    try:
        with zipfile.ZipFile(p) as zf:
            member = next((n for n in zf.namelist() if n.endswith("/traced_inputs.pkl")), None)
            if member is None:
                return None
            data = zf.read(member)
        value = _ShapeUnpickler(io.BytesIO(data)).load()
    except Exception:  # absent or unexpected content: just unknown
        return None
    if isinstance(value, Mapping):
        for t in value.get("forward", []) or []:
            if isinstance(t, _ShapeOnly):
                return t.shape
    return None


def _length_from_shape(shape) -> int | None:
    if shape is None or len(shape) != 3:
        return None
    if shape[2] == 4 and shape[1] != 4:
        return int(shape[1])
    return int(shape[2])


# ----------------------------------------------------------------------------------------------------------
# torch.save files: state_dicts and pickled modules


def _load_torch_pickle(p: Path, where: str, digest: str, arch, arch_kwargs, trust: bool,
                       input_length, container: str) -> LoadedModel:
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        classes = _pickled_classes(p, container)
        what = f"class {classes[0]}" if classes else "Python objects"
        if not trust:
            raise UntrustedModelError(
                f"{where}: the file is a pickle of Python objects ({what}), and unpickling runs code from the "
                f"file; {_CONVERT_HINT}") from e
        log.warning("%s: unpickling %s because trust=True (this runs code from the file)", where, what)
        return _load_trusted_pickle(p, where, digest, arch, arch_kwargs, input_length)
    except Exception as e:
        raise ModelFormatError(f"{where}: a torch.save file that cannot be read ({_first_line(e)}); the file "
                               f"is damaged or truncated") from e
    state = _extract_state_dict(obj)
    if state is None:
        raise ModelFormatError(f"{where}: holds {_describe(obj)}, not a model or a state_dict (a mapping of "
                               f"parameter names to tensors)")
    return _from_state_dict(state, where, digest, arch, arch_kwargs, input_length)


def _load_trusted_pickle(p: Path, where: str, digest: str, arch, arch_kwargs, input_length) -> LoadedModel:
    try:
        try:
            obj = torch.load(str(p), map_location="cpu", weights_only=False)
        except RuntimeError as e:
            if "magic number" not in str(e):
                raise
            with open(p, "rb") as fh:  # a plain pickle.dump of the model, not torch.save
                obj = pickle.load(fh)
    except (AttributeError, ModuleNotFoundError, ImportError) as e:
        raise ModelFormatError(f"{where}: the pickled model's code cannot be imported here ({_first_line(e)}); "
                               f"make its module importable (PYTHONPATH) or convert the model: "
                               f"torch.jit.save(torch.jit.script(model), 'model.pt')") from e
    except Exception as e:
        raise ModelFormatError(f"{where}: cannot unpickle the file ({_first_line(e)})") from e
    if isinstance(obj, torch.jit.ScriptModule):
        raise ModelFormatError(f"{where}: holds a pickled TorchScript module; save it with torch.jit.save instead")
    if isinstance(obj, nn.Module):
        if arch is not None:
            log.warning("%s: holds a whole module; ignoring arch=%r", where, arch)
        obj.eval()
        length = input_length or _length_attribute(obj)
        if length is None:
            raise ModelInputError(f"{where}: a pickled module that does not record its input length; pass "
                                  f"input_length=L (--width L)")
        shape = _probe_layout(obj, length, _param_dtype(obj), where)
        ep = export_module(obj, shape, dtype=_param_dtype(obj), where=where)
        return _from_program(ep, path=where, fmt="pickle", sha256=digest, input_length=None,
                             output_names=_output_names(obj))
    state = _extract_state_dict(obj)
    if state is None:
        raise ModelFormatError(f"{where}: holds {_describe(obj)}, not a model or a state_dict")
    return _from_state_dict(state, where, digest, arch, arch_kwargs, input_length, fmt="pickle")


def _pickled_classes(p: Path, container: str) -> list[str]:
    """Names of the classes/functions a torch.save pickle refers to, beyond torch's tensor helpers. Reads
    the opcodes only (``pickletools``): nothing is unpickled."""
    try:
        return _pickle_globals(p.read_bytes())
    except Exception:
        return []


def _pickle_globals(data: bytes) -> list[str]:
    """Globals named by a pickle, or by the ``data.pkl`` of a torch.save zip, user classes first."""
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            member = next(n for n in zf.namelist() if n.endswith("data.pkl"))
            data = zf.read(member)
    found: list[str] = []
    strings: list[str] = []
    stream = io.BytesIO(data)
    for _ in range(6):  # legacy files hold several pickles in a row
        try:
            for op, arg, _pos in pickletools.genops(stream):
                if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                    strings.append(arg)
                elif op.name == "GLOBAL":
                    found.append(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
        except Exception:
            break
        if stream.tell() >= len(data):
            break
    boring = ("torch.", "collections.", "builtins.", "_codecs.", "numpy.core.multiarray.", "numpy.dtype")
    user = [g for g in found if not g.startswith(boring)]          # the user's own classes first
    torch_nn = [g for g in found if g.startswith("torch.nn.")]      # then torch.nn layers
    return list(dict.fromkeys(user + torch_nn))


def _check_pt2_pickles(p: Path, where: str) -> None:
    """Refuse a .pt2 archive holding a pickle that ``weights_only`` loading rejects: ``torch.export.load``
    would then unpickle it in full (it falls back to ``weights_only=False`` for sample inputs and for
    weights saved with ``use_pickle``), which runs code from the file. Nothing is unpickled here beyond
    ``torch.load(weights_only=True)``."""
    with zipfile.ZipFile(p) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        raw = set()  # tensor payloads stored as plain bytes, not pickles
        for cfg in names:
            if cfg.endswith(("weights_config.json", "constants_config.json")):
                try:
                    config = json.loads(zf.read(cfg)).get("config", {})
                except (ValueError, AttributeError):
                    continue
                folder = cfg.rsplit("/", 1)[0]
                for meta in config.values():
                    if isinstance(meta, Mapping) and not meta.get("use_pickle") and "path_name" in meta:
                        raw.add(f"{folder}/{meta['path_name']}")
        for name in names:
            if name in raw or name.endswith(".json"):
                continue
            with zf.open(name) as fh:
                head = fh.read(4)
            if not (head == b"PK\x03\x04" or (head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5)):
                continue
            data = zf.read(name)
            try:
                torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            except Exception as e:
                try:
                    classes = _pickle_globals(data)
                except Exception:
                    classes = []
                what = f" ({classes[0]})" if classes else ""
                raise UntrustedModelError(
                    f"{where}: the .pt2 archive holds a pickled Python object{what} in {name.split('/', 1)[-1]}, "
                    f"which torch.export.load would unpickle in full, running code from the file; re-export the "
                    f"model with torch.export.save from plain tensors, or pass --trust-model (trust=True) if you "
                    f"trust this file") from e


def _extract_state_dict(obj) -> dict | None:
    """A flat ``{name: tensor}`` from a state_dict or a checkpoint dict holding one; None if there is none."""
    if not isinstance(obj, Mapping) or not obj:
        return None
    if all(isinstance(k, str) for k in obj) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    for key in _STATE_DICT_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            log.info("using the state_dict under the checkpoint key %r", key)
            return dict(inner)
    return None


def _describe(obj) -> str:
    if isinstance(obj, Mapping):
        keys = ", ".join(repr(k) for k in list(obj)[:5])
        return f"a dict with keys {keys}{', ...' if len(obj) > 5 else ''}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__}"


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _read_safetensors(p: Path, where: str) -> dict:
    """A ``.safetensors`` file as ``{name: tensor}`` (a JSON header and raw little-endian bytes)."""
    try:
        data = p.read_bytes()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n].decode("utf-8"))
        body = memoryview(data)[8 + n:]
        state = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = _SAFETENSORS_DTYPES[info["dtype"]]
            start, stop = info["data_offsets"]
            raw = bytearray(body[start:stop])
            t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            state[name] = t.reshape(info["shape"])
    except Exception as e:
        raise ModelFormatError(f"{where}: not a readable .safetensors file ({_first_line(e)})") from e
    return state


def _import_arch(arch: str, where: str):
    if not isinstance(arch, str) or ":" not in arch:
        raise ModelFormatError(f"{where}: arch {arch!r} must look like 'package.module:Class'")
    modname, _, qual = arch.partition(":")
    try:
        obj = importlib.import_module(modname)
    except Exception as e:
        raise ModelFormatError(f"arch {arch!r}: cannot import module {modname!r} ({_first_line(e)}); make it "
                               f"importable (install the package or set PYTHONPATH)") from e
    for part in qual.split("."):
        if not hasattr(obj, part):
            raise ModelFormatError(f"arch {arch!r}: module {modname!r} has no {qual!r}")
        obj = getattr(obj, part)
    return obj


def _parse_kwargs(arch_kwargs, arch) -> dict:
    if arch_kwargs is None:
        return {}
    if isinstance(arch_kwargs, str):
        try:
            arch_kwargs = json.loads(arch_kwargs)
        except json.JSONDecodeError as e:
            raise ModelFormatError(f"arch {arch!r}: arch_kwargs is not a JSON object ({e})") from e
    if not isinstance(arch_kwargs, Mapping):
        raise ModelFormatError(f"arch {arch!r}: arch_kwargs must be a mapping of keyword arguments")
    return dict(arch_kwargs)


def _from_state_dict(state: dict, where: str, digest: str, arch, arch_kwargs, input_length,
                     fmt: str = "state_dict") -> LoadedModel:
    if arch is None:
        example = next(iter(state), "")
        raise ModelFormatError(
            f"{where}: holds a state_dict (weights only: {len(state)} tensors, e.g. {example!r}); give the "
            f"architecture with arch='package.module:Class' (--arch) and its keyword arguments (--arch-kwargs)")
    cls = _import_arch(arch, where)
    kwargs = _parse_kwargs(arch_kwargs, arch)
    try:
        module = cls(**kwargs)
    except Exception as e:
        raise ModelFormatError(f"arch {arch!r}: constructing it with {kwargs} failed ({_first_line(e)}); pass "
                               f"its keyword arguments with --arch-kwargs") from e
    if not isinstance(module, nn.Module):
        raise ModelFormatError(f"arch {arch!r}: builds a {type(module).__name__}, not a torch.nn.Module")
    state = _match_keys(state, module, where, arch)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        mismatches = [line.strip() for line in str(e).splitlines() if "size mismatch" in line]
        detail = "; ".join(mismatches[:3]) if mismatches else _first_line(e)
        raise ModelFormatError(f"{where}: the state_dict does not fit {arch} ({detail}); check --arch-kwargs") \
            from e
    module.eval()
    dtype = _param_dtype(module)
    length = input_length or _length_attribute(module)
    if length is None:
        raise ModelInputError(f"{where}: a state_dict does not record the input length; pass input_length=L "
                              f"(--width L) with the length {arch} takes")
    shape = _probe_layout(module, length, dtype, where)
    ep = export_module(module, shape, dtype=dtype, where=where)
    return _from_program(ep, path=where, fmt=fmt, sha256=digest, input_length=None,
                         output_names=_output_names(module), arch=arch)


def _match_keys(state: dict, module: nn.Module, where: str, arch: str) -> dict:
    """Check the names of a state_dict against the module's; strip a common prefix ('module.', 'model.')
    when that makes them match. Raises ModelFormatError listing missing and unexpected keys."""
    want = set(module.state_dict())
    have = set(state)
    if want == have:
        return state
    for prefix in sorted({k.split(".", 1)[0] + "." for k in have if "." in k}):
        if all(k.startswith(prefix) for k in have):
            stripped = {k[len(prefix):]: v for k, v in state.items()}
            if set(stripped) == want:
                log.info("%s: stripped the prefix %r from the state_dict's names", where, prefix)
                return stripped
    missing = sorted(want - have)
    unexpected = sorted(have - want)

    def show(keys):
        return ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "") if keys else "none"

    raise ModelFormatError(f"{where}: the state_dict does not fit {arch}: missing keys: {show(missing)}; "
                           f"unexpected keys: {show(unexpected)}; check --arch and --arch-kwargs")


def _probe_layout(module, length: int, dtype: torch.dtype, where: str) -> tuple[int, int]:
    """Row shape the module takes: (4, length) if it runs on it, else (length, 4)."""
    failures = []
    for shape in ((4, int(length)), (int(length), 4)):
        x = torch.zeros((2, *shape), dtype=dtype)
        try:
            with torch.no_grad():
                module(x)
        except Exception as e:
            failures.append(f"{tuple(x.shape)}: {_first_line(e)}")
            continue
        return shape
    raise ModelInputError(f"{where}: the model fails on one-hot input ({'; '.join(failures)[:400]}); pass the "
                          f"length it was trained on with --width")


# ----------------------------------------------------------------------------------------------------------
# programs


_TRAIN_FLAG_ARG = {  # op -> index of its `train`/`training` argument
    torch.ops.aten.dropout.default: 2,
    torch.ops.aten.feature_dropout.default: 2,
    torch.ops.aten.alpha_dropout.default: 2,
    torch.ops.aten.feature_alpha_dropout.default: 2,
    torch.ops.aten.batch_norm.default: 5,
    torch.ops.aten.native_batch_norm.default: 5,
    torch.ops.aten._native_batch_norm_legit_functional.default: 5,
    torch.ops.aten._native_batch_norm_legit.default: 5,
    torch.ops.aten.instance_norm.default: 5,
}


def _training_nodes(graph) -> list:
    out = []
    for node in graph.nodes:
        i = _TRAIN_FLAG_ARG.get(node.target)
        if i is not None and i < len(node.args) and node.args[i] is True:
            out.append(node)
    return out


def _force_eval(gm: torch.fx.GraphModule, where: str) -> int:
    """Switch dropout and batch norm to evaluation mode in an unlifted graph; drop the then pointless
    ``num_batches_tracked += 1``. Returns how many ops were changed."""
    changed = _training_nodes(gm.graph)
    if not changed:
        return 0
    for node in changed:
        if node.target == torch.ops.aten.instance_norm.default:
            continue  # instance norm normalises by the input's own statistics either way
        args = list(node.args)
        args[_TRAIN_FLAG_ARG[node.target]] = False
        node.args = tuple(args)
    for node in list(gm.graph.nodes):
        if (node.op == "call_function" and node.target == torch.ops.aten.add_.Tensor and not node.users
                and isinstance(node.args[0], torch.fx.Node) and node.args[0].op == "get_attr"
                and str(node.args[0].target).endswith("num_batches_tracked")):
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    log.warning("%s: the model was exported in training mode; switched %d dropout/batch-norm ops to evaluation "
                "mode (call model.eval() before exporting)", where, len(changed))
    return len(changed)


def _user_input_node(ep: torch.export.ExportedProgram, where: str):
    from torch.export.graph_signature import InputKind

    names = [s.arg.name for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    if len(names) != 1:
        raise ModelInputError(f"{where}: the model takes {len(names)} inputs; dnalift passes one one-hot tensor "
                              f"(n, 4, length): wrap the model so that forward takes only that")
    node = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == names[0])
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        raise ModelInputError(f"{where}: the model's input is not a tensor")
    return node, val


def _dim_is_dynamic(d) -> bool:
    return isinstance(d, torch.SymInt)


def _batch_lower_bound(ep, d) -> int | None:
    if not isinstance(d, torch.SymInt):
        return None
    expr = d.node.expr
    vr = ep.range_constraints.get(expr)
    return int(vr.lower) if vr is not None else None


def _check_output_value(out, where: str) -> None:
    if isinstance(out, torch.Tensor):
        if out.dim() == 0:
            raise ModelInputError(f"{where}: the model returns a scalar; it must return one tensor (n, targets) "
                                  f"with a row per sequence")
        return
    raise ModelInputError(f"{where}: the model returns {_describe_output(out)}; dnalift needs one tensor "
                          f"(n, targets): wrap the model in a module whose forward returns the one output to "
                          f"explain (e.g. return model(x)[0] or model(x)['name'])")


def _describe_output(out) -> str:
    if isinstance(out, Mapping):
        return f"a dict with keys {', '.join(repr(k) for k in out)}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)} values"
    return f"a {type(out).__name__}"


def _check_program_output(ep: torch.export.ExportedProgram, where: str):
    spec = ep.call_spec.out_spec
    out_node = next(n for n in ep.graph.nodes if n.op == "output")
    from torch.export.graph_signature import OutputKind

    user = [s for s in ep.graph_signature.output_specs if s.kind == OutputKind.USER_OUTPUT]
    if (spec is not None and not spec.is_leaf()) or len(user) != 1:
        kind = getattr(spec, "type", None)
        if kind is dict:
            what = f"a dict with keys {', '.join(repr(k) for k in spec.context)}"
        elif kind in (tuple, list):
            what = f"a {kind.__name__} of {spec.num_leaves} values"
        else:
            what = f"{len(user)} outputs"
        raise ModelInputError(f"{where}: the model returns {what}; dnalift needs one tensor (n, targets): wrap "
                              f"the model in a module whose forward returns the one output to explain")
    name = user[0].arg.name
    node = next(a for a in out_node.args[0] if isinstance(a, torch.fx.Node) and a.name == name)
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor) or val.dim() == 0:
        raise ModelInputError(f"{where}: the model must return one tensor (n, targets) with a row per sequence")
    return val


def _from_program(ep: torch.export.ExportedProgram, *, path, fmt: str, sha256: str, input_length,
                  output_names=None, arch=None) -> LoadedModel:
    """Validate an exported program (one tensor in, one tensor out), make its batch dimension dynamic
    (min 1), its other dimensions fixed where ``input_length`` says so, and its ops eval-mode."""
    where = path or "<module>"
    _, val = _user_input_node(ep, where)
    _check_program_output(ep, where)
    if val.dim() < 2:
        raise ModelInputError(f"{where}: the model takes input of shape {tuple(val.shape)}; dnalift passes "
                              f"(n, 4, length)")
    shape = tuple(None if _dim_is_dynamic(d) else int(d) for d in val.shape)
    dtype = val.dtype if val.dtype.is_floating_point else torch.float32
    layout = _layout_of(shape[1:])
    needs = []
    if not _dim_is_dynamic(val.shape[0]) or (_batch_lower_bound(ep, val.shape[0]) or 0) > 1:
        needs.append("a variable batch size")
    if any(d is None for d in shape[1:]) and input_length is not None:
        needs.append(f"length {input_length}")
    if _training_nodes(ep.graph):
        needs.append("evaluation mode")
    if needs:
        log.info("%s: re-exporting the program for %s", where, " and ".join(needs))
        row = list(shape[1:])
        free = [i for i, d in enumerate(row) if d is None]
        if free:
            if input_length is None:
                raise ModelInputError(f"{where}: the program's input length is not fixed; pass input_length=L")
            if len(row) == 2 and len(free) == 1:
                row[free[0]] = int(input_length)
            else:
                raise ModelInputError(f"{where}: the program's input {tuple(val.shape)} has free dimensions "
                                      f"other than the length; export it with a fixed (4, length) input")
        gm = unlift(ep)
        _force_eval(gm, where)
        ep = export_module(gm, tuple(row), dtype=dtype, where=where)
        _, val = _user_input_node(ep, where)
        shape = tuple(None if _dim_is_dynamic(d) else int(d) for d in val.shape)
        layout = _layout_of(shape[1:])
    out_val = _check_program_output(ep, where)
    if not _dim_is_dynamic(out_val.shape[0]) or out_val.shape[0].node.expr != val.shape[0].node.expr:
        raise ModelInputError(f"{where}: the model's output {tuple(out_val.shape)} has no row per input sequence; "
                              f"it must return (n, targets)")
    out_shape = tuple(None if _dim_is_dynamic(d) else int(d) for d in out_val.shape[1:])
    if output_names is not None:
        n_out = 1
        for d in out_shape:
            n_out *= d or 1
        if len(output_names) != n_out:
            output_names = None
    return LoadedModel(program=ep, path=path, format=fmt, sha256=sha256, input_shape=shape[1:],
                       output_shape=out_shape, layout=layout, normalized=False, input_dtype=dtype,
                       output_names=output_names, arch=arch)


def unlift(program: torch.export.ExportedProgram) -> torch.fx.GraphModule:
    """``program.module()`` without the input-shape checks, so that it can be re-exported for other
    shapes (a variable batch, a length); parameters and buffers are get_attr nodes of the result."""
    gm = program.module(check_guards=False)
    gm.validate_inputs = False
    return gm


def _layout_of(row: tuple) -> str:
    """NLC when the row is (length, 4): last dimension 4 and the first not."""
    if len(row) == 2 and row[1] == 4 and row[0] != 4:
        return "NLC"
    return "NCL"


# ----------------------------------------------------------------------------------------------------------
# small helpers


def _param_dtype(module) -> torch.dtype:
    for t in list(module.parameters()) + list(module.buffers()):
        if t.dtype.is_floating_point:
            return t.dtype
    return torch.float32


def _length_attribute(module) -> int | None:
    for name in _LENGTH_ATTRIBUTES:
        try:
            value = getattr(module, name, None)
        except Exception:
            value = None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _output_names(module) -> tuple[str, ...] | None:
    for name in _NAME_ATTRIBUTES:
        try:
            value = getattr(module, name, None)
        except Exception:
            value = None
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line[:300]


#: torch loggers whose warnings during export concern torch's internals, not the user's model
_NOISY_TORCH_LOGGERS = ("torch.fx.experimental.symbolic_shapes", "torch._export.converter")


@contextlib.contextmanager
def _quiet_export():
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
