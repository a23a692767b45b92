"""Keras model files (``.h5`` from tf.keras 2 or Keras 3, ``.keras`` zips) as torch modules, read with h5py.

No TensorFlow, no Keras, and nothing the file holds is run: the architecture is the JSON of the ``model_config``
attribute (``config.json`` in a ``.keras``), the weights are read as arrays, and each layer becomes a torch
module of :mod:`~dnalift.models.files.keras_layers` / :mod:`~dnalift.models.files.keras_ops`. A ``Lambda``
layer (Python bytecode) is never unmarshalled.

Where the weights are:

- ``.h5`` (both dialects): group ``model_weights/<layer>``, its ``weight_names`` attribute listing datasets
  ``<layer>/<variable>[:0]``; a nested model's group holds all its layers' variables, named by the inner layer.
- ``.keras``: ``model.weights.h5`` in the zip, ``layers/<key>/vars/<i>`` (nested: ``layers/<key>/layers/...``),
  ``<key>`` the snake-case class name made unique in layer order (recent Keras also stores the layer's name
  as the ``name`` attribute of ``vars``).

The graph: a Functional model's layers are called in the order of the config (Keras writes them in call order),
each call's inputs found by ``(layer, node, tensor)``; tf.keras 2 counts a nested model's own graph as its node 0,
so its references to a nested model's calls start at 1.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import zipfile
from pathlib import Path

import h5py
import numpy as np
import torch.nn as nn

from dnalift.errors import ModelFormatError, ModelInputError

__all__ = ["KerasFile", "read_keras", "convert", "Converted", "KerasModule", "layer_rows", "weights_only_message",
           "h5_reason"]

#: the major Keras versions whose files dnalift reads
KERAS_MAJORS = ("2", "3")


@dataclasses.dataclass
class KerasFile:
    """A Keras file's architecture and weights, read but not converted.

    Attributes
    ----------
    config : dict
        The model's serialised config (``{"class_name": ..., "config": ...}``).
    weights : _Weights
        Where each layer's arrays are.
    version : str
        ``keras_version`` as the file records it (``"2.8.0"``, ``"3.5.0"``); ``""`` when absent.
    container : str
        ``"h5"`` or ``"keras"`` (zip).
    """

    config: dict
    weights: object
    version: str
    container: str

    @property
    def major(self) -> str:
        return self.version.split(".")[0] if self.version else "2"


# ----------------------------------------------------------------------------------------------- reading files
def read_keras(path: Path, where: str, container: str) -> KerasFile:
    """Read a Keras ``.h5`` or ``.keras`` file (not its Lambda code).

    Raises
    ------
    ModelFormatError
        Damaged file, weights without architecture, unsupported version.
    """
    if container == "keras":
        return _read_zip(path, where)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ModelFormatError(f"{where}: a damaged HDF5 file ({h5_reason(e)}); the file is truncated or not a "
                               f"Keras model", argument="model") from e
    try:
        if "model_config" not in f.attrs:
            raise ModelFormatError(f"{where}: {weights_only_message()}", argument="model")
        config = _json(f.attrs["model_config"], where, "model_config")
        version = _text(f.attrs.get("keras_version", ""))
        _check_version(version, where)
        if "model_weights" not in f:
            raise ModelFormatError(f"{where}: a Keras model file without weights (no 'model_weights' group); save "
                                   f"it with model.save('model.h5') after training", argument="model")
        weights = _H5Weights.read(f["model_weights"], where)
    except (OSError, KeyError, ValueError) as e:
        if isinstance(e, ModelFormatError):
            raise
        raise ModelFormatError(f"{where}: a damaged Keras HDF5 file ({h5_reason(e)}); the file is truncated",
                               argument="model") from e
    finally:
        f.close()
    return KerasFile(config, weights, version, "h5")


def weights_only_message() -> str:
    """What a Keras weights file (``save_weights``: no architecture) is, and what to do."""
    return ("holds Keras weights only (saved with save_weights: no 'model_config' architecture); load them into "
            "the model in Keras and save the whole model: model.save('model.h5')")


def h5_reason(e: Exception) -> str:
    """The first line of an h5py error (at most 200 characters)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _json(value, where: str, what: str) -> dict:
    try:
        config = json.loads(_text(value))
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelFormatError(f"{where}: the Keras {what} is not valid JSON ({e}); the file is damaged",
                               argument="model") from e
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFormatError(f"{where}: the Keras {what} does not describe a model", argument="model")
    return _legacy_sequential(config)


def _legacy_sequential(config: dict) -> dict:
    """Keras 2.0-2.2 wrote a Sequential's config as its list of layers: the same as ``{"layers": [...]}``
    (nested models included)."""
    inner = config.get("config")
    if isinstance(inner, list):
        config = dict(config, config={"name": config.get("name", "sequential"), "layers": inner})
    layers = config.get("config", {}).get("layers", []) if isinstance(config.get("config"), dict) else []
    for i, layer in enumerate(layers):
        if isinstance(layer, dict) and layer.get("class_name") in ("Functional", "Model", "Sequential"):
            layers[i] = _legacy_sequential(layer)
    return config


def _check_version(version: str, where: str) -> None:
    major = version.split(".")[0] if version else "2"
    if major not in KERAS_MAJORS:
        raise ModelFormatError(f"{where}: written by Keras {version}, and dnalift reads the files of Keras 2 "
                               f"(tf.keras) and Keras 3; save it again with one of those", argument="model")


def _read_zip(path: Path, where: str) -> KerasFile:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            meta = json.loads(zf.read("metadata.json")) if "metadata.json" in names else {}
            version = str(meta.get("keras_version", "")) if isinstance(meta, dict) else ""
            if not version:
                raise ModelFormatError(f"{where}: a .keras archive whose metadata.json records no keras_version; "
                                       f"save it again with model.save('model.keras')", argument="model")
            _check_version(version, where)
            if "config.json" not in names:
                raise ModelFormatError(f"{where}: a .keras archive without config.json", argument="model")
            config = _json(zf.read("config.json"), where, "config.json")
            if "model.weights.h5" not in names:
                shown = ", ".join(sorted(names)[:5])
                raise ModelFormatError(f"{where}: a .keras archive without model.weights.h5 (members: {shown}); "
                                       f"dnalift reads .keras files of Keras 2.13+ and 3 with their weights in "
                                       f"one HDF5 member; save it with model.save('model.keras') from Keras 3",
                                       argument="model")
            data = zf.read("model.weights.h5")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        if isinstance(e, ModelFormatError):
            raise
        raise ModelFormatError(f"{where}: a damaged .keras archive ({h5_reason(e)})", argument="model") from e
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            weights = _ZipWeights.read(f, where)
    except OSError as e:
        raise ModelFormatError(f"{where}: its model.weights.h5 is damaged ({h5_reason(e)})", argument="model") from e
    return KerasFile(config, weights, version, "keras")


# ----------------------------------------------------------------------------------------------- weights
class _H5Weights:
    """A ``.h5`` model's arrays: per layer of the top model, and for a nested model, per inner layer by the
    owner named in each weight's name (``conv1d/kernel:0``)."""

    def __init__(self, groups: dict, pool: list | None = None):
        self.groups = groups  # top layer -> [(owner, variable, array)]
        self.pool = pool      # inside a nested model: all its [(owner, variable, array)]

    @classmethod
    def read(cls, group: h5py.Group, where: str) -> "_H5Weights":
        groups = {}
        for name in group:
            g = group[name]
            if not isinstance(g, h5py.Group):
                continue
            items = []
            for wname in g.attrs.get("weight_names", []):
                wname = _text(wname)
                parts = wname.split("/")
                owners = tuple(parts[:-1]) or (name,)
                items.append((owners, parts[-1].split(":")[0], np.asarray(g[wname])))
            groups[name] = items
        return cls(groups)

    def items(self, name: str) -> list:
        """A layer's (owners, variable, array): the path of a weight's name holds its layer's name (an LSTM's
        are ``lstm/lstm_cell/kernel``); the group of a top-level layer holds only its own."""
        if self.pool is None:
            items = self.groups.get(name, [])
            return [item for item in items if name in item[0]] or items
        return [item for item in self.pool if name in item[0]]

    def of(self, name: str, class_name: str, variables: tuple) -> list:
        """The arrays of layer ``name``, in the order of ``variables`` where the names say, else as stored."""
        items = self.items(name)
        by_name = {var: array for _, var, array in items}
        wanted = [v for v in variables if v in by_name]
        if len(wanted) == len(items):
            return [by_name[v] for v in wanted]
        return [array for _, _, array in items]

    def nested(self, name: str, class_name: str) -> "_H5Weights":
        if self.pool is not None:
            return self  # a model nested in a nested model: its variables are in the same pool
        return _H5Weights(self.groups, self.groups.get(name, []))


def _arrays(g: h5py.Group) -> list:
    """A layer's arrays in a ``.keras``: its ``vars``, then those of its sublayers (an RNN's ``cell``, a
    Bidirectional's ``forward_layer`` then ``backward_layer``)."""
    vars_ = g.get("vars")
    arrays = [np.asarray(vars_[str(i)]) for i in range(len(vars_))] if vars_ is not None else []
    for sub in ("cell", "forward_layer", "backward_layer"):
        if isinstance(g.get(sub), h5py.Group):
            arrays += _arrays(g[sub])
    return arrays


def _snake(name: str) -> str:
    """Keras' snake-case of a class name (``GlobalAveragePooling1D`` -> ``global_average_pooling1d``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class _ZipWeights:
    """A ``.keras`` model's arrays: ``layers/<key>/vars/<i>``, nested models under ``layers/<key>/layers``."""

    def __init__(self, children: dict, order: list):
        self.children = children  # key -> (vars arrays, nested children dict, nested order, name attr)
        self.order = order        # keys in file order
        self.used: dict = {}

    @classmethod
    def read(cls, f: h5py.Group, where: str) -> "_ZipWeights":
        root = f.get("layers") or f.get("_layer_checkpoint_dependencies")
        return cls._from(root)

    @classmethod
    def _from(cls, root) -> "_ZipWeights":
        children = {}
        if root is not None:
            for key in root:
                g = root[key]
                vars_ = g.get("vars")
                label = _text(vars_.attrs["name"]) if vars_ is not None and "name" in vars_.attrs else None
                nested = g.get("layers") or g.get("_layer_checkpoint_dependencies")
                children[key] = (_arrays(g), nested and cls._from(nested), label)
        return cls(children, list(children))

    def key(self, name: str, class_name: str) -> str | None:
        for key, (_, _, label) in self.children.items():
            if label == name:
                return key
        base = _snake(class_name)  # older files: the n-th layer of a class is <class>_<n-1>
        n = self.used.get(base, 0)
        self.used[base] = n + 1
        key = base if n == 0 else f"{base}_{n}"
        return key if key in self.children else None

    def of(self, name: str, class_name: str, variables: tuple) -> list:
        key = self.key(name, class_name)
        return list(self.children[key][0]) if key else []

    def nested(self, name: str, class_name: str) -> "_ZipWeights":
        key = self.key(name, class_name)
        inner = self.children[key][1] if key else None
        return inner if inner is not None else _ZipWeights({}, [])


# ----------------------------------------------------------------------------------------------- the module
class KerasModule(nn.Module):
    """A converted Keras model: takes the one-hot batch as dnalift passes it (``(n, L, 4)``, or ``(n, 4, L)``
    for a model whose input is channels first), then the other inputs in Keras' order, and returns the Keras
    outputs: one tensor, or a dict keyed by output layer name.

    Attributes
    ----------
    net : Graph
    shapes : list of tuple
        Each Keras input's per-row shape (the one-hot input is reshaped to it: ``(1, L, 4)`` for a Conv2D model).
    sequence : int
        Which Keras input is the sequence.
    keras_outputs : tuple of str
        The output names (dict keys when there are several).
    """

    def __init__(self, graph: nn.Module, shapes: list, sequence: int, keras_outputs: tuple):
        super().__init__()
        self.net, self.shapes, self.sequence, self.keras_outputs = graph, shapes, sequence, keras_outputs

    def run(self, x, others: tuple):
        """The outputs for the one-hot batch ``x`` and the other inputs."""
        xs = list(others)
        xs.insert(self.sequence, x)
        xs = [t if tuple(t.shape[1:]) == shape else t.reshape(t.shape[0], *shape) for t, shape in zip(xs, self.shapes)]
        outs = self.net(*xs)
        if len(outs) == 1:
            return outs[0]
        return dict(zip(self.keras_outputs, outs))


# torch.export needs a forward with one argument per input (no *args)
class _OneInput(KerasModule):
    def forward(self, x):
        return self.run(x, ())


class _TwoInputs(KerasModule):
    def forward(self, x, a):
        return self.run(x, (a,))


class _ThreeInputs(KerasModule):
    def forward(self, x, a, b):
        return self.run(x, (a, b))


class _FourInputs(KerasModule):
    def forward(self, x, a, b, c):
        return self.run(x, (a, b, c))


_BY_INPUTS = (_OneInput, _TwoInputs, _ThreeInputs, _FourInputs)


@dataclasses.dataclass
class Converted:
    """A Keras file as a torch module, and what dnalift needs to export it.

    Attributes
    ----------
    module : KerasModule
    row : tuple
        The one-hot input's per-row shape, ``(L, 4)`` or ``(4, L)``.
    layout : str
        ``"nlc"`` or ``"ncl"``.
    controls : list of tuple
        Per-row shapes of the other inputs, in order.
    rows : list of LayerRow
        The converted layers.
    inputs : list of (str, tuple)
        Each Keras input's name and per-row shape.
    """

    module: KerasModule
    row: tuple
    layout: str
    controls: list
    rows: list
    inputs: list


def convert(kf: KerasFile, where: str, *, input_length: int | None = None) -> Converted:
    """Build the torch module of a read Keras file.

    Raises
    ------
    ModelFormatError
        A layer dnalift does not convert, no one-hot input, a free length without ``input_length``.
    ModelInputError
        ``input_length`` differs from the length the model takes.
    """
    from dnalift.models.files.keras_graph import build_graph, input_names, input_shapes, output_refs

    rows: list = []
    graph = build_graph(kf.config, kf.weights, where=where, major=kf.major, rows=rows)
    shapes = input_shapes(kf.config)
    names = input_names(kf.config)
    sequence, length, layout = _sequence_input(shapes, where, input_length)
    filled = [tuple(length if d is None else d for d in s) for s in shapes]
    row = tuple(d for d in filled[sequence] if d != 1) if len(filled[sequence]) > 2 else filled[sequence]
    controls = [s for i, s in enumerate(filled) if i != sequence]
    if len(filled) > len(_BY_INPUTS):
        raise ModelFormatError(f"{where}: the Keras model has {len(filled)} inputs; dnalift converts models with "
                               f"the sequence and up to {len(_BY_INPUTS) - 1} other inputs", argument="model")
    module = _BY_INPUTS[len(filled) - 1](graph, filled, sequence, _output_names(output_refs(kf.config)))
    module.eval()
    return Converted(module, row, layout, controls, rows, list(zip(names, filled)))


def _sequence_input(shapes: list, where: str, input_length: int | None) -> tuple[int, int, str]:
    """(which input is the one-hot sequence, its length, its layout)."""
    for i, shape in enumerate(shapes):
        if shape is None:
            continue
        dims = [d for d in shape if d != 1] if len(shape) > 2 else list(shape)
        if len(dims) != 2 or 4 not in dims:
            continue
        layout = "nlc" if dims[1] == 4 else "ncl"
        length = dims[0] if layout == "nlc" else dims[1]
        if length is None:
            if input_length is None:
                raise ModelFormatError(f"{where}: the Keras model takes sequences of any length; give the length "
                                       f"to score with --width L (input_length=L)", argument="input_length")
            length = input_length
        elif input_length is not None and input_length != length:
            raise ModelInputError(f"{where}: the Keras model takes sequences of {length} bp (its input shape "
                                  f"{tuple(shape)}); leave out --width or give --width {length}",
                                  argument="input_length")
        return i, length, layout
    shown = ", ".join(str(tuple(s)) if s else "unknown" for s in shapes)
    raise ModelFormatError(f"{where}: no input of the Keras model takes one-hot DNA (shape (L, 4)); its inputs are "
                           f"{shown}", argument="model")


def _output_names(refs: list) -> tuple:
    names = [name for name, _, _ in refs]
    out = []
    for name, node, tensor in refs:
        out.append(name if names.count(name) == 1 else f"{name}_{tensor}")
    return tuple(out)


def layer_rows(path, *, input_length: int | None = None) -> list:
    """The converted layers of a Keras file (:class:`~dnalift.models.files.keras_graph.LayerRow`), for
    ``dnalift info``."""
    p = Path(path)
    container = "keras" if zipfile.is_zipfile(p) else "h5"
    return convert(read_keras(p, str(path), container), str(path), input_length=input_length).rows
