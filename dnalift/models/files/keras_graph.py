"""A Keras model's layer graph as one torch module: Functional graphs (several inputs and outputs, shared layers,
nested models) and Sequential stacks, each layer converted by :func:`~dnalift.models.files.keras_layers.convert_layer`.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from dnalift.errors import ModelFormatError, first_line
from dnalift.models.files.keras_layers import CONVERTERS, IDENTITY_CLASSES, KerasLayer
from dnalift.models.files.keras_ops import WEIGHTLESS
from dnalift.models.files.keras_recurrent import RECURRENT

__all__ = ["Graph", "build_graph", "LayerRow", "input_shapes", "input_names", "output_refs", "convert_layer",
           "variables_of"]

MODEL_CLASSES = ("Functional", "Model", "Sequential")


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One converted layer, for ``dnalift info``: its name (dotted inside nested models), class and module."""

    name: str
    class_name: str
    module: str


class Graph(nn.Module):
    """Runs the layers of a Keras model in call order.

    Attributes
    ----------
    calls : list of (str, tuple, tuple)
        Per call: the module's key in ``layers``, the keys of its input tensors, the keys of its outputs.
    inputs, outputs : list of tuple
        The model's input and output tensor keys ``(layer, node, tensor)``.
    """

    def __init__(self, layers: dict, calls: list, inputs: list, outputs: list):
        super().__init__()
        self.layers = nn.ModuleDict(layers)
        self.calls, self.inputs, self.outputs = calls, inputs, outputs

    def forward(self, *xs) -> tuple:
        values = dict(zip(self.inputs, xs))
        for key, ins, outs in self.calls:
            result = self.layers[key](*(values[k] for k in ins))
            for out, value in zip(outs, result if isinstance(result, tuple) else (result,)):
                values[out] = value
        return tuple(values[k] for k in self.outputs)


def _refs(value) -> list:
    """``[[name, node, tensor], ...]`` (or one such triple) -> list of (name, node, tensor)."""
    if value and isinstance(value[0], str):
        value = [value]
    return [(str(v[0]), int(v[1]), int(v[2])) for v in value]


def _history(node) -> list:
    """The input tensors ``(layer, node, tensor)`` of one call of a layer, in order: a tf.keras 2 node
    ``[[name, node, tensor, kwargs], ...]`` or a Keras 3 node ``{"args": [...], "kwargs": {...}}``."""
    if isinstance(node, dict):
        found = []

        def walk(v):
            if isinstance(v, dict):
                if v.get("class_name") == "__keras_tensor__":
                    h = v["config"]["keras_history"]
                    found.append((str(h[0]), int(h[1]), int(h[2])))
                else:
                    for item in v.values():
                        walk(item)
            elif isinstance(v, (list, tuple)):
                for item in v:
                    walk(item)

        walk(node.get("args", []))
        return found
    return [(str(v[0]), int(v[1]), int(v[2])) for v in node]


def _shape(config: dict) -> tuple | None:
    """An InputLayer's (or first Sequential layer's) per-row shape, None for a free dimension."""
    for key in ("batch_shape", "batch_input_shape"):
        if config.get(key) is not None:
            return tuple(None if d is None else int(d) for d in config[key][1:])
    return None


def input_shapes(config: dict) -> list[tuple]:
    """The per-row shapes of a model's inputs (``[(2114, 4)]``)."""
    inner = config["config"]
    if config["class_name"] == "Sequential":
        return [_sequential_shape(inner, config.get("build_config") or {})]
    layers = {_name(layer): layer for layer in inner["layers"]}
    return [_shape(layers[name]["config"]) for name, _, _ in _refs(inner["input_layers"])]


def input_names(config: dict) -> list[str]:
    """The names of a model's inputs."""
    inner = config["config"]
    if config["class_name"] == "Sequential":
        first = inner["layers"][0] if inner["layers"] else {}
        return [_name(first) if first.get("class_name") == "InputLayer" else "input"]
    return [name for name, _, _ in _refs(inner["input_layers"])]


def output_refs(config: dict) -> list[tuple]:
    """The model's outputs as ``(layer, node, tensor)``."""
    inner = config["config"]
    if config["class_name"] == "Sequential":
        return [(_name(inner["layers"][-1]), 0, 0)]
    return _refs(inner["output_layers"])


def _sequential_shape(inner: dict, build_config: dict) -> tuple | None:
    """A Sequential's input row: its InputLayer's, its first layer's (``batch_input_shape`` or Keras 3's
    ``build_config``), or the model's own build shape (tf.keras 2 ``build_input_shape``, Keras 3 ``build_config``)."""
    for layer in inner["layers"][:1]:
        shape = _shape(layer["config"])
        if shape is None and layer.get("build_config"):
            shape = _as_row(layer["build_config"].get("input_shape"))
        if shape is not None:
            return shape
    return _as_row(inner.get("build_input_shape")) or _as_row(build_config.get("input_shape"))


def _as_row(shape) -> tuple | None:
    """``[null, 2114, 4]`` -> ``(2114, 4)``; None for no shape."""
    if not isinstance(shape, (list, tuple)) or len(shape) < 2:
        return None
    return tuple(None if d is None else int(d) for d in shape[1:])


def _name(layer: dict) -> str:
    return str(layer.get("name") or layer["config"]["name"])


def _key(name: str, used: dict) -> str:
    """A ModuleDict key for a layer name (no dots), unique."""
    key = name.replace(".", "_") or "layer"
    while key in used:
        key += "_"
    return key


def build_graph(config: dict, weights, *, where: str, major: str, prefix: str = "",
                rows: list | None = None) -> Graph:
    """The :class:`Graph` of a serialised Keras model.

    Parameters
    ----------
    config : dict
        ``{"class_name": "Functional" | "Sequential" | "Model", "config": {...}}``.
    weights
        The file's weight source (:mod:`dnalift.models.files.keras`), for this model.
    where : str
        The file, for messages.
    major : str
        ``"2"`` or ``"3"``: the Keras version that wrote it.
    prefix : str
        ``"outer."`` for a nested model (the names of ``rows``).
    rows : list of LayerRow, optional
        Filled with the converted layers.

    Raises
    ------
    ModelFormatError
        A layer or a graph dnalift does not convert.
    """
    rows = [] if rows is None else rows
    if config["class_name"] == "Sequential":
        return _sequential(config["config"], weights, where=where, major=major, prefix=prefix, rows=rows)
    if config["class_name"] not in ("Functional", "Model"):
        raise ModelFormatError(f"{where}: the model is a {config['class_name']} (a subclassed Keras model, whose "
                               f"forward is Python code not in the file); dnalift reads Functional and Sequential "
                               f"models", argument="model")
    return _functional(config["config"], weights, where=where, major=major, prefix=prefix, rows=rows)


def _module(layer: dict, weights, *, where, major, prefix, rows) -> nn.Module:
    """One layer's module: a nested model as a Graph, anything else by its converter."""
    cls, name = layer["class_name"], _name(layer)
    if cls in MODEL_CLASSES:
        inner = weights.nested(name, cls)
        return build_graph(layer, inner, where=where, major=major, prefix=f"{prefix}{name}.", rows=rows)
    keras_layer = KerasLayer(cls, name, layer.get("config", {}), weights.of(name, cls, variables_of(cls)), where)
    try:
        module = convert_layer(keras_layer)
    except ModelFormatError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:  # a config or arrays not as expected
        raise keras_layer.refuse(f"could not be converted ({type(e).__name__}: {first_line(e)})",
                                 "the file is damaged, or written by a Keras version whose config differs") from e
    rows.append(LayerRow(prefix + name, cls, _describe(module)))
    return module


def _describe(module: nn.Module) -> str:
    """``Conv(kernel=(21,), ...) + relu``: a converted layer in one line."""
    body, activation = getattr(module, "body", None), getattr(module, "activation", None)
    if body is not None:
        return f"{_describe(body)} + {_describe(activation)}"
    extra = module.extra_repr()
    if hasattr(module, "label"):
        return extra
    return f"{type(module).__name__}({extra})" if extra else type(module).__name__


def _functional(inner: dict, weights, *, where, major, prefix, rows) -> Graph:
    layers, calls, skip_first = {}, [], {}
    keys = {}
    for layer in inner["layers"]:
        cls, name = layer["class_name"], _name(layer)
        if cls == "InputLayer":
            weights.of(name, cls, ())
            continue
        key = keys[name] = _key(name, layers)
        layers[key] = _module(layer, weights, where=where, major=major, prefix=prefix, rows=rows)
        # tf.keras 2 counts a nested model's own graph as its node 0; its calls here are nodes 1, 2...
        skip_first[name] = int(major == "2" and _has_own_graph(layer))
        for node_index, node in enumerate(layer.get("inbound_nodes", [])):
            ins = [_ref(ref, skip_first) for ref in _history(node)]
            outs = tuple((name, node_index, t) for t in range(_n_outputs(layer)))
            calls.append((key, tuple(ins), outs))
    inputs = [(n, 0, t) for n, _, t in _refs(inner["input_layers"])]
    outputs = [_ref(ref, skip_first) for ref in _refs(inner["output_layers"])]
    _check_graph(calls, inputs, outputs, where)
    return Graph(layers, calls, inputs, outputs)


def _has_own_graph(layer: dict) -> bool:
    """A nested Functional model, or a Sequential built on an InputLayer: tf.keras 2 made its node 0."""
    if layer["class_name"] not in MODEL_CLASSES:
        return False
    inner = layer["config"].get("layers") or []
    return layer["class_name"] != "Sequential" or bool(inner and inner[0].get("class_name") == "InputLayer")


def _ref(ref: tuple, skip_first: dict) -> tuple:
    name, node, tensor = ref
    return name, node - skip_first.get(name, 0) if node > 0 else node, tensor


def _n_outputs(layer: dict) -> int:
    if layer["class_name"] in MODEL_CLASSES and layer["class_name"] != "Sequential":
        return max(1, len(_refs(layer["config"]["output_layers"])))
    return 1


def _check_graph(calls, inputs, outputs, where) -> None:
    known = set(inputs)
    for key, ins, outs in calls:
        missing = [k for k in ins if k not in known]
        if missing:
            raise ModelFormatError(f"{where}: Keras layer {key!r} takes {missing[0][0]!r} (node {missing[0][1]}), "
                                   f"which no earlier layer makes; the model config is not in call order or is "
                                   f"damaged", argument="model")
        known.update(outs)
    missing = [k for k in outputs if k not in known]
    if missing:
        raise ModelFormatError(f"{where}: the Keras model's output {missing[0][0]!r} is made by no layer",
                               argument="model")


def _sequential(inner: dict, weights, *, where, major, prefix, rows) -> Graph:
    layers, calls = {}, []
    previous = ("input", 0, 0)
    for layer in inner["layers"]:
        cls, name = layer["class_name"], _name(layer)
        if cls == "InputLayer":
            continue
        key = _key(name, layers)
        layers[key] = _module(layer, weights, where=where, major=major, prefix=prefix, rows=rows)
        out = (name, 0, 0)
        calls.append((key, (previous,), (out,)))
        previous = out
    return Graph(layers, calls, [("input", 0, 0)], [previous])


def convert_layer(layer: KerasLayer) -> nn.Module:
    """The torch module of one (non-model) Keras layer.

    Raises
    ------
    ModelFormatError
        A class, option or Lambda dnalift does not convert (naming the layer and its class).
    """
    weighted = {**CONVERTERS, **RECURRENT}
    if layer.class_name in IDENTITY_CLASSES:
        return nn.Identity()
    if layer.class_name in weighted:
        if not layer.weights:
            raise layer.refuse("has no weights in the file", "the file is damaged or was saved without weights")
        return weighted[layer.class_name][0](layer)
    if layer.class_name in WEIGHTLESS:
        return WEIGHTLESS[layer.class_name](layer)
    known = sorted({*weighted, *WEIGHTLESS, *IDENTITY_CLASSES})
    raise layer.refuse("is a layer class dnalift does not convert",
                       f"dnalift converts {', '.join(known)} and nested Functional/Sequential models; rebuild the "
                       f"model from these layers, or convert it to PyTorch yourself and save a .pt2")


def variables_of(class_name: str) -> tuple:
    """The variable names a Keras class stores, in the order its converter reads them (empty if unknown)."""
    return {**CONVERTERS, **RECURRENT}.get(class_name, (None, ()))[1]


def run_graph(graph: Graph, *xs) -> tuple:
    """``graph(*xs)`` without gradients (for checks)."""
    with torch.no_grad():
        return graph(*xs)
