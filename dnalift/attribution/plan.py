"""Compile an exported program into a plan the engine can run many times, for one mode and max rule.

A plan is the exported ATen graph as a list of steps in execution order. Each step knows its function (the
out-of-place version of the op), its arguments (graph values or constants), its rule from the registry
(:mod:`dnalift.attribution.registry`) chosen once for the mode and max rule (``mode`` of a nonlinearity,
whether its difference must be carried as positive and negative parts), the dimension that holds the batch, and
after which step each value can be freed. Every op without a rule is found here, before anything runs, and named
with the line of the model's source that made it, all of them in one error.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.fx
import torch.utils._pytree as pytree

from dnalift.attribution import modes
from dnalift.attribution.kinds.base import Kind, batch_dim_of, functional, iter_nodes, value_meta
from dnalift.graph import op_name
from dnalift.attribution.kinds.bookkeeping import Gradient, NoValue, Refused
from dnalift.attribution.registry import Role, rule_for
from dnalift.options import MaxRule, Mode
from dnalift.errors import ModelInputError, UnsupportedOp, UnsupportedOpError
from dnalift.graph import key_name
from dnalift.graph import source_line as source_of
from dnalift.models.recurrent import RECURRENT_OPS

_CELLS = {op_name(op) for op in RECURRENT_OPS}  # written out as cells by the export: never in a plan

_GRADIENT = Gradient()


@dataclasses.dataclass
class Step:
    """One operation of the graph.

    Attributes
    ----------
    node : torch.fx.Node
        The graph node (its ``name`` keys the value tables).
    fn : callable
        The out-of-place ATen function to call.
    name : str
        The ATen op name (``"conv1d"``, ``"relu"``...).
    kind : str
        ``"const"`` (folded), ``"shape"`` (depends on the batch's shape only), or the name of its rule's kind.
    rule : Kind or None
        The rule (None for ``const`` and ``shape`` steps).
    role : Role
        Its role for the genomics mode.
    args, kwargs
        Arguments with :class:`torch.fx.Node` objects standing for graph values.
    batch_dim : int or None
        The dimension of the output that holds the batch, from the exported shapes.
    source : str
        Where in the model's code the op was made, for messages.
    mode : str or None
        ``"rescale"`` or ``"revealcancel"`` for an elementwise nonlinearity.
    max_rule : str
        ``"exact"`` or ``"gradient"``.
    needs_split : bool
        Whether this step's difference is carried as positive and negative parts (a RevealCancel unit reads it).
    parts_pass : bool
        Whether the plan runs the RevealCancel pass (some unit gets RevealCancel), where differences are carried.
    """

    node: torch.fx.Node
    fn: Callable
    name: str
    kind: str
    rule: Kind | None
    role: Role
    args: tuple
    kwargs: dict
    batch_dim: int | None
    source: str
    mode: str | None = None
    max_rule: str = "exact"
    needs_split: bool = False
    parts_pass: bool = False

    @property
    def label(self) -> str:
        """The rule in plain language (``dnalift info``)."""
        return self.rule.label_for(self) if self.rule is not None else self.kind

    def run(self, args, kwargs):
        """The op's value on argument values."""
        if self.rule is None:
            return self.fn(*args, **kwargs)
        return self.rule.forward(self, args, kwargs)


@dataclasses.dataclass(frozen=True)
class Output:
    """One tensor the model returns.

    Attributes
    ----------
    name : str
        Its name: ``""`` for a model returning one tensor, else the position or key (``"0"``, ``"counts"``,
        ``"heads.human"`` for nested outputs).
    node : torch.fx.Node
        The node whose value targets are taken on (the logits, where the model ends in a softmax).
    shape : tuple of int
        Its per-row shape.
    softmax_dim : int or None
        Set when the model applies a softmax (or log-softmax) to produce this output: targets are taken on the
        logits, mean-normalised over this dimension (paper 2.5).
    """

    name: str
    node: torch.fx.Node
    shape: tuple
    softmax_dim: int | None = None

    def as_target(self, value: torch.Tensor) -> torch.Tensor:
        """What targets read of this output: its value, or of a softmax output the logits minus their mean over
        the softmax dimension (2016 paper 2.5). Linear, so it applies to values and to differences alike, under
        every rule.

        Parameters
        ----------
        value : Tensor (rows, *shape)
            The node's value (the logits where the model ends in a softmax), or a difference of two values.
        """
        if self.softmax_dim is None:
            return value
        return value - value.mean(dim=self.softmax_dim, keepdim=True)


@dataclasses.dataclass
class Plan:
    """A model ready to be interpreted by the engine for one mode and max rule.

    Attributes
    ----------
    steps : list of Step
        Input-dependent and shape-dependent steps in order (constant steps are folded into ``constants``).
    input_name : str
        The graph name of the sequence input.
    control_inputs : list of (str, tuple, torch.dtype)
        Further model inputs (control tracks): graph name, per-row shape, dtype. The engine fills them.
    outputs : list of Output
    constants : dict
        Values of graph nodes that do not depend on the input (parameters, buffers, folded ops).
    released : list of list of str
        For each step, the node names whose last use it is (values are freed after it).
    input_shape : tuple
        Per-row input shape of the exported program.
    batch_dims : dict
        The batch dimension of every node's value.
    x_needed : set of str
        Nodes whose values on the sequences the rules read.
    mode, max_rule : str
    parts_pass : bool
        Whether some nonlinearity gets RevealCancel (the engine then carries differences as parts).
    notes : list of str
        Remarks on ``allow_gradient`` (names that do not occur or need no fallback).
    """

    steps: list
    input_name: str
    control_inputs: list
    outputs: list
    constants: dict
    released: list
    input_shape: tuple
    batch_dims: dict
    x_needed: set
    mode: str
    max_rule: str
    parts_pass: bool
    notes: list = dataclasses.field(default_factory=list)
    _cast_cache: dict = dataclasses.field(default_factory=dict)

    def constants_on(self, device: torch.device, dtype: torch.dtype) -> dict:
        """The constant values moved to a device, floating ones cast to ``dtype`` (cached)."""
        key = (str(device), dtype)
        if key not in self._cast_cache:
            moved = {}
            for name, value in self.constants.items():
                if isinstance(value, torch.Tensor):
                    value = value.detach().to(device)
                    if value.is_floating_point():
                        value = value.to(dtype)
                moved[name] = value
            self._cast_cache[key] = moved
        return self._cast_cache[key]


def _carries_values(node: torch.fx.Node) -> bool:
    value = node.meta.get("val")
    if isinstance(value, (tuple, list)):
        return any(isinstance(v, torch.Tensor) for v in value)
    return isinstance(value, torch.Tensor)


def _row_shape(node: torch.fx.Node) -> tuple:
    value = value_meta(node)
    shape = getattr(value, "shape", ())
    return tuple(int(s) if not isinstance(s, torch.SymInt) or str(s).isdigit() else -1 for s in shape[1:])


# ------------------------------------------------------------------------------------------------ compile
@dataclasses.dataclass
class _Graph:
    """What a walk over the graph found."""

    steps: list
    problems: list
    constants: dict
    batch_dims: dict
    input_name: str
    input_shape: tuple
    control_inputs: list
    output_leaves: list
    dependent: set


def _inputs(program):
    signature = program.graph_signature
    user_inputs = list(signature.user_inputs)
    if not user_inputs:
        raise ModelInputError("the model takes no tensor input; dnalift scores models that take a one-hot "
                              "sequence (n, 4, length)", argument="model")
    state = dict(program.state_dict)
    state.update(getattr(program, "constants", {}) or {})
    targets = {spec.arg.name: spec.target for spec in signature.input_specs if spec.target is not None}
    return user_inputs, state, targets


def _walk(program, allow_gradient) -> _Graph:
    user_inputs, state, targets = _inputs(program)
    input_name = user_inputs[0]
    g = _Graph([], [], {}, {}, input_name, (), [], [], set())
    shaped: set[str] = set()
    for node in program.graph.nodes:
        if node.op == "placeholder":
            if node.name == input_name:
                g.dependent.add(node.name)
                g.batch_dims[node.name] = 0
                value = node.meta.get("val")
                g.input_shape = tuple(int(s) for s in value.shape[1:]) if value is not None else ()
            elif node.name in user_inputs:  # a control track: filled by the engine for each batch
                shaped.add(node.name)
                g.batch_dims[node.name] = 0
                value = node.meta.get("val")
                g.control_inputs.append((node.name, _row_shape(node), getattr(value, "dtype", torch.float32)))
            else:
                target = targets.get(node.name)
                if target not in state:
                    raise ModelInputError(f"the exported program has no value for {node.name}: re-export it",
                                          argument="model")
                g.constants[node.name] = state[target]
        elif node.op == "output":
            g.output_leaves = list(node.args[0])
        elif node.op == "get_attr":
            g.constants[node.name] = getattr(program.graph_module, node.target)
        elif node.op != "call_function":
            g.problems.append(UnsupportedOp(str(node.target), f"a graph node of type {node.op}", source_of(node),
                                            node.name, allowable=False))
        else:
            _add_step(g, node, shaped, allow_gradient)
    return g


def _add_step(g: _Graph, node, shaped: set, allow_gradient) -> None:
    inputs = list(iter_nodes((node.args, node.kwargs)))
    name = op_name(node.target)
    fn = functional(node.target)
    entry = rule_for(name)
    shape_args = entry.shape_args if entry is not None else ()
    value_args = [a for i, a in enumerate(node.args) if i not in shape_args]  # expand_as reads only b's shape
    is_dependent = any(n.name in g.dependent and _carries_values(n) for n in iter_nodes((value_args, node.kwargs)))
    if (entry is not None and entry.shape_only) or not _carries_values(node):
        is_dependent = False  # sizes, metadata checks, zeros_like: they read no value of the input
    if not is_dependent:
        kind = "shape" if any(n.name in g.dependent or n.name in shaped for n in inputs) else "const"
        if kind == "shape":
            shaped.add(node.name)
        g.batch_dims[node.name] = batch_dim_of(node) if kind == "shape" else None
        rule = entry.kind if entry is not None and isinstance(entry.kind, NoValue) else None
        g.steps.append(Step(node, fn, name, kind, rule, Role.OTHER, node.args, node.kwargs,
                            g.batch_dims[node.name], source_of(node)))
        return
    g.dependent.add(node.name)
    rule, role, reason = None, Role.OTHER, "an op with no DeepLIFT rule"
    if entry is not None:
        rule, role = entry.kind_for(node, g.dependent)
        n_dependent = sum(1 for n in iter_nodes(value_args) if n.name in g.dependent and _carries_values(n))
        if rule.max_dependent is not None and n_dependent > rule.max_dependent:
            reason, rule = f"an op with {n_dependent} input-dependent tensors", None
        else:
            reason = rule.check(node, g.dependent)
            if reason is not None:
                rule = None
    if rule is None:
        if name in allow_gradient:
            rule, role = _GRADIENT, Role.OTHER
        else:
            allowable = not isinstance(entry.kind if entry else None, Refused)
            g.problems.append(UnsupportedOp(name, reason, source_of(node), node.name, allowable=allowable))
            return
    g.batch_dims[node.name] = batch_dim_of(node)
    g.steps.append(Step(node, fn, name, rule.name, rule, role, node.args, node.kwargs, g.batch_dims[node.name],
                        source_of(node)))


def _output_names(program, n_leaves: int) -> list[str]:
    """Each output leaf's place in the output pytree (``""``, ``"0"``, ``"counts"``, ``"heads.human"``)."""
    spec = getattr(program.call_spec, "out_spec", None)
    if spec is None:
        return [str(i) for i in range(n_leaves)] if n_leaves > 1 else [""]
    tree = pytree.tree_unflatten(list(range(spec.num_leaves)), spec)
    return [key_name(path) for path, _ in pytree.tree_leaves_with_path(tree)]


def _outputs(program, g: _Graph, steps: list) -> tuple[list, list]:
    names = _output_names(program, len(g.output_leaves))
    producers = {s.node.name: s for s in steps}
    outputs, drop = [], []
    for name, leaf in zip(names, g.output_leaves):
        if not isinstance(leaf, torch.fx.Node) or leaf.name not in g.dependent:
            continue  # constants and None outputs cannot be targets
        softmax_dim, node = None, leaf
        producer = producers.get(leaf.name)
        entry = rule_for(producer.name) if producer is not None else None
        if entry is not None and entry.softmax_head and len(leaf.users) == 1:
            softmax_dim = producer.args[1] if len(producer.args) > 1 else producer.kwargs.get("dim", -1)
            node = producer.args[0]
            drop.append(producer)
        outputs.append(Output(name, node, _row_shape(leaf), softmax_dim))
    if not outputs:
        raise ModelInputError("the model output does not depend on its input", argument="model")
    return outputs, drop


def compile_plan(program, *, mode: str = "rescale", max_rule: str = "exact", allow_gradient=()) -> Plan:
    """Turn an exported program into a :class:`Plan` for one mode, refusing ops that have no rule.

    Parameters
    ----------
    program : torch.export.ExportedProgram
        The model, exported with a dynamic batch dimension. Its first user input is the sequence; further ones
        are control inputs the engine fills.
    mode : {"rescale", "revealcancel", "genomics"}
    max_rule : {"exact", "gradient"}
    allow_gradient : sequence of str
        ATen op names (``"layer_norm"``) to let through with gradients where they have no DeepLIFT rule.

    Returns
    -------
    Plan

    Raises
    ------
    UnsupportedOpError
        Listing every op without a rule (``ops``), each with the line of the model's code that made it.
    ModelInputError
        When the program takes no tensor input or its output does not depend on it.
    """
    mode = Mode.parse(mode, argument="rule")
    max_rule = MaxRule.parse(max_rule, argument="max_rule")
    allow = tuple(a.removeprefix("aten.") for a in allow_gradient)
    g = _walk(program, allow)
    notes = _allow_notes(g, allow)
    if g.problems:
        raise unsupported_error(g.problems)
    constants = dict(g.constants)
    constants.update(_fold_constants(g.steps, constants))
    steps = [s for s in g.steps if s.kind != "const"]
    outputs, dropped = _outputs(program, g, steps)
    steps = [s for s in steps if all(s is not d for d in dropped)]
    for step in steps:
        step.max_rule = max_rule
    parts_pass = modes.assign_modes(steps, mode)
    for step in steps:
        step.parts_pass = parts_pass
    x_needed = _x_needed(steps, outputs)
    released = _released(steps, outputs)
    return Plan(steps, g.input_name, g.control_inputs, outputs, constants, released, g.input_shape, g.batch_dims,
                x_needed, mode, max_rule, parts_pass, notes)


def program_outputs(program) -> list:
    """The outputs of a program (:class:`Output`), also when some of its ops have no rule."""
    g = _walk(program, ())
    return _outputs(program, g, [s for s in g.steps if s.kind != "const"])[0]


def unsupported_error(problems: list) -> UnsupportedOpError:
    """One error listing every op without a rule."""
    allowable = sorted({p.op for p in problems if p.allowable})
    hint = "Rewrite that part of the model with supported layers"
    if allowable:
        hint += (f", or let them through with gradients (allow_gradient={','.join(allowable)}) at the cost of "
                 "exactness")
    return UnsupportedOpError(
        f"the model uses {len(problems)} op(s) dnalift has no rule for: "
        f"{'; '.join(p.line() for p in problems)}. {hint}", ops=problems, argument="model")


def _allow_notes(g: _Graph, allow: tuple) -> list[str]:
    """What ``allow_gradient`` did not do: names that do not occur, already have a rule, or cannot be allowed."""
    notes = []
    used = {s.name for s in g.steps if s.kind == "gradient"}
    occurring = {s.name for s in g.steps} | {p.op for p in g.problems}
    for name in allow:
        if name in used:
            continue
        if name not in occurring:
            cells = ", or is written out as its cells, whose ops have DeepLIFT rules" if name in _CELLS else ""
            notes.append(f"allow_gradient: aten.{name} does not occur in the model{cells}")
        elif any(p.op == name and not p.allowable for p in g.problems):
            notes.append(f"allow_gradient: aten.{name} cannot be let through with gradients")
        else:
            notes.append(f"allow_gradient: aten.{name} has a DeepLIFT rule; no gradient fallback is needed")
    return notes


def _x_needed(steps, outputs) -> set:
    needed = {o.node.name for o in outputs}
    for step in steps:
        if step.rule is None:
            continue
        if step.rule.x_inputs(step):
            needed.update(n.name for n in iter_nodes(step.node.args))
        if step.rule.x_output(step):
            needed.add(step.node.name)
    return needed


def _released(steps, outputs) -> list:
    last_use: dict[str, int] = {}
    for index, step in enumerate(steps):
        for n in iter_nodes((step.args, step.kwargs)):
            last_use[n.name] = index
    for o in outputs:
        last_use[o.node.name] = len(steps)
    released: list[list[str]] = [[] for _ in steps]
    for name, index in last_use.items():
        if index < len(steps):
            released[index].append(name)
    return released


def _fold_constants(steps, constants) -> dict:
    folded = {}
    env = dict(constants)
    for step in steps:
        if step.kind != "const":
            continue
        with torch.no_grad():
            env[step.node.name] = step.fn(*values_in(step.args, env), **values_in(step.kwargs, env))
        folded[step.node.name] = env[step.node.name]
    return folded


def values_in(arg, env):
    """Replace graph nodes in (nested) arguments by their values in ``env``."""
    if isinstance(arg, torch.fx.Node):
        return env[arg.name]
    if isinstance(arg, (list, tuple)):
        return type(arg)(values_in(a, env) for a in arg)
    if isinstance(arg, dict):
        return {k: values_in(v, env) for k, v in arg.items()}
    return arg


def describe(plan: Plan) -> list[dict]:
    """One row per input-dependent op: its name, the rule it gets and where it comes from.

    Returns
    -------
    list of dict
        Keys ``node``, ``op``, ``kind``, ``rule``, ``source``.
    """
    rows = []
    for step in plan.steps:
        if step.kind in ("meta", "shape"):
            continue
        rows.append({"node": step.node.name, "op": f"aten.{step.name}", "kind": step.kind, "rule": step.label,
                     "source": step.source})
    for output in plan.outputs:
        if output.softmax_dim is not None:
            rows.append({"node": output.name or "output", "op": "aten.softmax", "kind": "softmax",
                         "rule": "target mean-normalised logits (2.5)", "source": "model output"})
    return rows


__all__ = ["Step", "Output", "Plan", "compile_plan", "program_outputs", "describe", "values_in", "unsupported_error",
           "batch_dim_of", "value_meta"]
