"""One loader per model-file format, chosen by :func:`load_model` from the file's content."""

from __future__ import annotations

import dataclasses
import logging
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from dnalift.options import Layout
from dnalift.errors import ModelFormatError, ModelInputError, UntrustedModelError
from dnalift.models.export import PT2_HINT, LoadedModel, finish_program, module_to_model, quiet_export
from dnalift.errors import first_line
from dnalift.models.signature import parse_layout
from dnalift.models.files import keras, pickles
from dnalift.models.files.safetensors import read_safetensors
from dnalift.models.files.sniff import sha256_file, sniff
from dnalift.models.files.state_dict import MODULE_ARGUMENTS_HINT, build_module, summary_of, extract_state_dict

__all__ = ["load_model", "LOADERS", "CONVERT_HINT"]

log = logging.getLogger(__name__)

#: how to turn a pickled module into a file dnalift loads without trusting it
CONVERT_HINT = (f"convert it where you trust it: {PT2_HINT} (preferred), or torch.jit.save(torch.jit.trace("
                f"model, x), 'model.pt'), or save model.state_dict() and pass arch='package.module:Class' "
                f"({MODULE_ARGUMENTS_HINT}); or pass trust=True if you trust this file")


@dataclasses.dataclass(frozen=True)
class _Request:
    """What :func:`load_model` was asked for, passed to each loader."""

    path: Path
    where: str
    sha256: str
    detail: object
    arch: str | None
    arch_kwargs: object
    trust: bool
    input_length: int | None
    layout: Layout


def load_model(path, *, arch: str | None = None, arch_kwargs: Mapping | str | None = None, trust: bool = False,
               input_length: int | None = None, layout: Layout | str = Layout.AUTO) -> LoadedModel:
    """Load a model file of any supported format as a :class:`~dnalift.models.export.LoadedModel`.

    Parameters
    ----------
    path : str or os.PathLike
        The model file: ``.pt2`` (``torch.export.save``), TorchScript (``torch.jit.save``), a state_dict
        (``torch.save(model.state_dict())`` or ``.safetensors``) together with ``arch``, or a whole pickled
        module (``torch.save(model)``, only with ``trust=True``), or a Keras model (``.h5`` with its
        architecture, ``.keras``; read without TensorFlow). The format is read from the content.
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
    layout : {"auto", "ncl", "nlc"}
        The model's input layout (:class:`~dnalift.options.Layout`): ``"auto"`` reads it from the program or
        runs the model on ``(2, 4, length)`` and then ``(2, length, 4)``.

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
        The model does not run on one-hot input, or returns no tensors with a row per sequence.
    """
    p = Path(path)
    where = str(path)
    if not p.exists():
        raise ModelFormatError(f"{where}: no such file; give the path of a PyTorch model (.pt2 from "
                               f"torch.export.save, TorchScript .pt, or a state_dict with arch=)", argument="model")
    if p.is_dir():
        if (p / "saved_model.pb").exists():
            raise ModelFormatError(f"{where}: a TensorFlow SavedModel folder, which dnalift does not read (its "
                                   f"graph is TensorFlow code); where TensorFlow is installed, load it and save the "
                                   f"Keras model as one file: tf.keras.models.load_model(folder).save('model.h5')",
                                   argument="model")
        raise ModelFormatError(f"{where}: is a directory, not a model file", argument="model")
    kind, detail = sniff(p)
    log.debug("%s: detected %s (%s)", where, kind, detail)
    loader = LOADERS.get(kind)
    if loader is None:
        raise ModelFormatError(f"{where}: {detail}", argument="model")
    if arch is not None and kind in ("pt2", "torchscript"):
        log.warning("%s: is a %s file, which holds its own architecture; ignoring arch=%r", where, kind, arch)
    request = _Request(path=p, where=where, sha256=sha256_file(p), detail=detail, arch=arch,
                       arch_kwargs=arch_kwargs, trust=trust, input_length=input_length,
                       layout=parse_layout(layout))
    return loader(request)


def _load_pt2(r: _Request) -> LoadedModel:
    if not r.trust:
        pickles.check_pt2_pickles(r.path, r.where)
    try:
        with quiet_export():
            ep = torch.export.load(str(r.path))
    except Exception as e:
        raise ModelFormatError(f"{r.where}: a .pt2 archive that torch.export.load cannot read ({first_line(e)}); "
                               f"re-save it with torch.export.save from this torch version", argument="model") from e
    return finish_program(ep, path=r.where, fmt="pt2", sha256=r.sha256, input_length=r.input_length,
                          layout=r.layout)


def _load_torchscript(r: _Request) -> LoadedModel:
    try:
        with quiet_export():
            ts = torch.jit.load(str(r.path), map_location="cpu")
    except Exception as e:
        raise ModelFormatError(f"{r.where}: a TorchScript archive that torch.jit.load cannot read: "
                               f"{first_line(e)}", argument="model") from e
    *earlier, last = _torchscript_shapes(pickles.traced_input_shapes(r.path), r.input_length)
    for input_shape, controls in earlier:
        try:
            return _export_script(ts, r, input_shape, controls)
        except ModelInputError as e:  # e.g. input_length from the data, not the model's: the traced one next
            if e.details.get("reason") != "fails_on_input":
                raise
            log.info("%s: %s; trying the traced input shape", r.where, e)
    return _export_script(ts, r, *last)


def _export_script(ts, r: _Request, input_shape, controls) -> LoadedModel:
    return module_to_model(ts, input_shape=input_shape, input_length=r.input_length, layout=r.layout,
                           control_shapes=controls, path=r.where, fmt="torchscript", sha256=r.sha256)


def _torchscript_shapes(traced, input_length) -> list[tuple]:
    """(input_shape, control_shapes) to try in turn: for ``input_length`` first, then as traced."""
    if not traced or len(traced[0]) < 2:
        return [(None, None)]
    row = tuple(int(d) for d in traced[0][1:])
    controls = [tuple(int(d) for d in shape[1:]) for shape in traced[1:]] or None
    if input_length is None or input_length in row:
        return [(row, controls)]
    old = row[-1] if row[0] == 4 else row[0]
    resized = [tuple(input_length if d == old else d for d in shape) for shape in controls] if controls else None
    return [(None, resized), (row, controls)]


def _load_safetensors(r: _Request) -> LoadedModel:
    return _from_state_dict(read_safetensors(r.path, r.where), r, fmt="state_dict")


def _load_torch_pickle(r: _Request) -> LoadedModel:
    try:
        obj = torch.load(str(r.path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        classes = pickles.pickled_classes(r.path)
        what = f"class {classes[0]}" if classes else "Python objects"
        if not r.trust:
            raise UntrustedModelError(
                f"{r.where}: the file is a pickle of Python objects ({what}), and unpickling runs code from the "
                f"file; {CONVERT_HINT}", argument="trust", classes=classes) from e
        log.warning("%s: unpickling %s because trust=True (this runs code from the file)", r.where, what)
        return _from_trusted_pickle(r)
    except Exception as e:
        raise ModelFormatError(f"{r.where}: a torch.save file that cannot be read ({first_line(e)}); the file "
                               f"is damaged or truncated", argument="model") from e
    state = extract_state_dict(obj)
    if state is None:
        raise ModelFormatError(f"{r.where}: holds {summary_of(obj)}, not a model or a state_dict (a mapping of "
                               f"parameter names to tensors)", argument="model")
    return _from_state_dict(state, r, fmt="state_dict")


def _from_trusted_pickle(r: _Request) -> LoadedModel:
    obj = pickles.load_trusted(r.path, r.where)
    if isinstance(obj, torch.jit.ScriptModule):
        raise ModelFormatError(f"{r.where}: holds a pickled TorchScript module; save it with torch.jit.save instead",
                               argument="model")
    if isinstance(obj, nn.Module):
        if r.arch is not None:
            log.warning("%s: holds a whole module; ignoring arch=%r", r.where, r.arch)
        return _export_loaded(obj, r, fmt="pickle")
    state = extract_state_dict(obj)
    if state is None:
        raise ModelFormatError(f"{r.where}: holds {summary_of(obj)}, not a model or a state_dict", argument="model")
    return _from_state_dict(state, r, fmt="pickle")


def _from_state_dict(state: dict, r: _Request, *, fmt: str) -> LoadedModel:
    module = build_module(state, r.arch, r.arch_kwargs, r.where)
    return _export_loaded(module, r, fmt=fmt, arch=r.arch)


def _export_loaded(module: nn.Module, r: _Request, *, fmt: str, arch: str | None = None) -> LoadedModel:
    """Export a module built or unpickled from the file; the file does not record its input length."""
    try:
        return module_to_model(module, input_length=r.input_length, layout=r.layout, path=r.where, fmt=fmt,
                               sha256=r.sha256, arch=arch)
    except ModelInputError as e:
        if e.details.get("reason") == "unknown_length":
            what = "a state_dict" if fmt == "state_dict" else "a pickled module"
            raise ModelInputError(f"{r.where}: {what} does not record the input length; pass input_length=L with "
                                  f"the length {arch or 'the model'} takes", argument="input_length") from e
        raise


def _load_keras(r: _Request) -> LoadedModel:
    """A Keras ``.h5`` or ``.keras``, converted to torch modules (:mod:`dnalift.models.files.keras`)."""
    read = keras.read_keras(r.path, r.where, "keras" if r.detail == "zip" else "h5")
    converted = keras.convert(read, r.where, input_length=r.input_length)
    return module_to_model(converted.module, input_shape=converted.row, layout=converted.layout,
                           control_shapes=converted.controls, path=r.where, fmt="keras", sha256=r.sha256)


#: file kind (:func:`dnalift.models.files.sniff.sniff`) -> its loader
LOADERS = {
    "pt2": _load_pt2,
    "torchscript": _load_torchscript,
    "safetensors": _load_safetensors,
    "torch_pickle": _load_torch_pickle,
    "keras": _load_keras,
}
