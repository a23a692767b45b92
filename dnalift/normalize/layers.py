"""Where the one-hot input goes before its first weighted layers (for :mod:`dnalift.normalize.weights`).

The input is followed through ops that only move values (the registry's ``moves_values``); an id tensor
(``1 + 4 * position + channel`` at each entry, 0 for padding) pushed through the same ops tells which weights
of a first layer see which one-hot column.
"""

from __future__ import annotations

import operator

import torch
from torch.fx.node import map_arg

from dnalift.attribution import registry
from dnalift.graph import op_name
from dnalift.attribution.kinds.bookkeeping import Meta, NoValue
from dnalift.attribution.kinds.linear import Identity
from dnalift.errors import DnaliftError
from dnalift.models import layouts
from dnalift.models.loaded import LoadedModel

WeightLayout = registry.WeightLayout


def entry_of(node):
    """The registry entry of a graph node's op, or None."""
    return registry.rule_for(op_name(node.target)) if node.op == "call_function" else None


def moves_values(node) -> bool:
    """Only moves, copies, selects or reorders entries (the registry's ``moves_values``)."""
    rule = entry_of(node)
    return bool(rule and rule.moves_values)


def is_identity(node) -> bool:
    """Returns its input's values (casts, copies, eval-mode dropout): evaluated as the identity on column ids."""
    rule = entry_of(node)
    return bool(rule and isinstance(rule.kind, Identity))


def weights_of(node):
    """The registry's :class:`~dnalift.attribution.registry.WeightArgs` of a weighted layer, or None."""
    rule = entry_of(node)
    return rule.weights if rule else None


def reads_shape_only(node) -> bool:
    """Shape queries, metadata checks and ``zeros_like``-style ops: they read no value."""
    rule = entry_of(node)
    return bool(rule and (rule.shape_only or (isinstance(rule.kind, (Meta, NoValue))
                                              and node.target is not operator.getitem)))


class Blocked(Exception):
    """The one-hot input's path to a layer is not one normalisation can handle; the message says why."""


# ----------------------------------------------------------------------------------------------------------
# finding the first layers


def packet(node):
    target = node.target
    return getattr(target, "overloadpacket", target)


def input_node(gm, where):
    """The sequence input: the graph's first input (the others are control tracks)."""
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if not inputs:
        raise DnaliftError(f"{where}: the model's graph has no input")
    return inputs[0]


def op_args(node) -> dict:
    """All arguments of an ATen call by schema name (defaults filled in)."""
    schema = node.target._schema
    out = {}
    for i, a in enumerate(schema.arguments):
        if i < len(node.args) and not a.kwarg_only:
            out[a.name] = node.args[i]
        elif a.name in node.kwargs:
            out[a.name] = node.kwargs[a.name]
        elif a.has_default_value():
            out[a.name] = a.default_value
        else:
            out[a.name] = None
    return out


def set_arg(node, name, value) -> None:
    schema = node.target._schema
    names = [a.name for a in schema.arguments]
    i = names.index(name)
    if schema.arguments[i].kwarg_only or name in node.kwargs:
        kwargs = dict(node.kwargs)
        kwargs[name] = value
        node.kwargs = kwargs
        return
    args = list(node.args)
    while len(args) <= i:  # fill omitted positional arguments with their defaults
        a = schema.arguments[len(args)]
        args.append(a.default_value if a.has_default_value() else None)
    args[i] = value
    node.args = tuple(args)


def data_arg(node):
    """Names of the arguments that carry the activation and the weight into an affine op (None, None if none)."""
    weights = weights_of(node)
    return (weights.data, weights.weight) if weights else (None, None)


def depends_on(node, x_node, memo) -> bool:
    if not isinstance(node, torch.fx.Node):
        return False
    if node in memo:
        return memo[node]
    memo[node] = node is x_node or node.op == "placeholder" or any(
        depends_on(n, x_node, memo) for n in node.all_input_nodes)
    return memo[node]


def first_layers(gm, x_node):
    """Affine ops fed by the input through layout-only ops, and the other ops that read it ("blockers").

    Walks the graph in topological order, growing the set of nodes that are layout-only images of the input.
    """
    memo = {}
    path = {x_node}
    layers, blockers = [], []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            continue
        touched = [n for n in node.all_input_nodes if n in path]
        if not touched:
            continue
        if node.op != "call_function":
            blockers.append(node)
            continue
        if reads_shape_only(node):
            continue
        if node.target is operator.getitem:
            path.add(node)
            continue
        data, weight = data_arg(node)
        if data is not None:
            args = op_args(node)
            if args[data] in path and not depends_on(args[weight], x_node, memo):
                layers.append(node)
            else:
                blockers.append(node)
            continue
        if moves_values(node):
            args = op_args(node)
            value_args = entry_of(node).value_args
            moved = [a for name in (value_args or (next(iter(args)),))
                     for a in (args[name] if isinstance(args[name], (list, tuple)) else [args[name]])]
            if value_args is not None and not any(isinstance(a, torch.fx.Node) and a in path for a in moved):
                continue  # the input is read for its dtype or shape only (`c.type_as(x)`)
            ok = all(isinstance(a, torch.fx.Node) and a in path for a in moved) and all(
                n in moved for n in touched)
            if ok:
                path.add(node)
            else:
                blockers.append(node)
            continue
        blockers.append(node)
    return layers, blockers


# ----------------------------------------------------------------------------------------------------------
# column ids pushed through the layout ops


def column_ids(model: LoadedModel) -> torch.Tensor:
    """(1, *input_shape) float64 tensor: 1 + 4 * position + channel at each entry (0 is left for padding)."""
    length = model.input_length
    ids = 1 + torch.arange(4 * length, dtype=torch.float64).reshape(length, 4).T  # (4, length)
    return layouts.to_model(ids, model.layout).contiguous().unsqueeze(0)


def fetch_attr(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


class Evaluator:
    """Evaluates graph nodes on the id tensor (for the path from the input) or on constants."""

    def __init__(self, gm, x_node, ids):
        self.gm = gm
        self.x_node = x_node
        self.ids = ids
        self.memo = {}

    def __call__(self, node):
        if node in self.memo:
            return self.memo[node]
        value = self._eval(node)
        self.memo[node] = value
        return value

    def _eval(self, node):
        if node is self.x_node:
            return self.ids
        if node.op == "get_attr":
            value = fetch_attr(self.gm, node.target)
            return value.detach() if isinstance(value, torch.Tensor) else value
        if node.op != "call_function":
            raise Blocked(f"cannot follow {node.op} {node.target}")
        if is_identity(node):
            return self(node.args[0])
        pad_value = entry_of(node).pad_value if entry_of(node) else None
        if pad_value is not None and op_args(node).get(pad_value) not in (None, 0, 0.0):
            raise Blocked("padding with a non-zero constant")
        args = map_arg(node.args, self)
        kwargs = map_arg(node.kwargs, self)
        with torch.no_grad():
            return node.target(*args, **kwargs)


