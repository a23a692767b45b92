"""Compile an exported program into a plan the engine can run many times.

A plan is the exported ATen graph as a list of steps in execution order. Each step knows its function (the
out-of-place version of the op), its arguments (graph values or constants), whether it depends on the input,
its DeepLIFT kind (see :mod:`dnalift.attribution.ops`), the dimension that holds the batch, and after which
step each value can be freed. Unsupported ops are found here, before anything runs, and named with the line of
the model's source that made them.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

import torch
import torch.fx

from dnalift.attribution import ops
from dnalift.errors import ModelInputError, UnsupportedOpError


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
        The ATen packet name (``"conv1d"``, ``"relu"``...).
    kind : str
        ``"const"`` when the value does not depend on the input, else a kind of :func:`ops.classify`
        or ``"gradient"`` for ops the user allowed through with gradients.
    args, kwargs
        Arguments with :class:`torch.fx.Node` objects standing for graph values.
    dependent_args : tuple of int
        Positions in ``args`` holding input-dependent tensors (lists count through their items).
    batch_dim : int or None
        The dimension of the output that holds the batch, from the exported shapes.
    source : str
        Where in the model's code the op was made, for messages.
    """

    node: torch.fx.Node
    fn: Callable
    name: str
    kind: str
    args: tuple
    kwargs: dict
    dependent_args: tuple
    batch_dim: int | None
    source: str
    rule: str = ""  # "rescale" or "revealcancel" for nonlinear steps, filled by the engine per mode


@dataclasses.dataclass
class Plan:
    """A model ready to be interpreted by the engine.

    Attributes
    ----------
    steps : list of Step
        Input-dependent steps in order (constant steps are folded into ``constants``).
    input_name : str
        The graph name of the model input.
    output_node : torch.fx.Node
        The node whose value is the model output used for targets.
    softmax_output : tuple or None
        ``(dim,)`` when the model ends in softmax/log-softmax: targets are then taken on the logits,
        mean-normalised over ``dim``.
    constants : dict
        Values of graph nodes that do not depend on the input (parameters, buffers, folded ops).
    last_use : dict
        For each node name, the index of the last step that reads it (values are freed after it).
    released : list of list of str
        For each step, the node names whose last use it is.
    input_shape : tuple
        Per-row input shape of the exported program.
    """

    steps: list
    input_name: str
    output_node: torch.fx.Node
    softmax_output: tuple | None
    constants: dict
    last_use: dict
    input_shape: tuple
    batch_dims: dict = dataclasses.field(default_factory=dict)
    released: list = dataclasses.field(default_factory=list)
    graph_module: Any = None
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


def source_of(node: torch.fx.Node) -> str:
    """The model source line that created a node, as ``file:line: code``, or the node name."""
    trace = node.meta.get("stack_trace") or ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in \w+\n\s*(.*)', trace)
    if frames:
        path, line, code = frames[-1]
        return f"{path.rsplit('/', 1)[-1]}:{line}: {code.strip()}"
    return f"graph node {node.name}"


def _batch_dim(node: torch.fx.Node) -> int | None:
    value = node.meta.get("val")
    if isinstance(value, (tuple, list)):
        value = value[0] if value else None
    shape = getattr(value, "shape", None)
    if shape is None:
        return None
    for dim, size in enumerate(shape):
        if isinstance(size, torch.SymInt) and not str(size).isdigit():
            return dim
    return 0 if len(shape) else None


def _iter_nodes(arg):
    if isinstance(arg, torch.fx.Node):
        yield arg
    elif isinstance(arg, (list, tuple)):
        for item in arg:
            yield from _iter_nodes(item)
    elif isinstance(arg, dict):
        for item in arg.values():
            yield from _iter_nodes(item)


def _carries_values(node: torch.fx.Node) -> bool:
    value = node.meta.get("val")
    if isinstance(value, (tuple, list)):
        return any(isinstance(v, torch.Tensor) for v in value)
    return isinstance(value, torch.Tensor)


def _is_tensor_node(node: torch.fx.Node) -> bool:
    value = node.meta.get("val")
    return isinstance(value, torch.Tensor)


def _check_positions(step_name: str, node: torch.fx.Node, dependent: set) -> str | None:
    """A reason why an op with a known name is still unsupported here (input in the wrong place)."""
    args = node.args
    first_dependent = bool(args) and any(n.name in dependent for n in _iter_nodes(args[0]))
    if step_name in ops.WEIGHTED:
        if step_name == "addmm":
            weight_dep = any(n.name in dependent for n in _iter_nodes(args[2])) or \
                any(n.name in dependent for n in _iter_nodes(args[0]))
            if weight_dep:
                return "a matrix product whose weight or bias depends on the input"
            return None
        if step_name in ("mm", "matmul", "bmm"):
            return None  # one operand is constant (checked by the count); either side is fine
        if not first_dependent or any(n.name in dependent for a in args[1:] for n in _iter_nodes(a)):
            return "a convolution or linear layer whose weight or bias depends on the input"
    if step_name == "div" and not first_dependent:
        return "division by a value that depends on the input"
    if step_name == "where" and any(n.name in dependent for n in _iter_nodes(args[0])):
        return "torch.where with a condition that depends on the input"
    if step_name == "max" and node.target._overloadname not in ("dim",):
        return "max over all elements or of two tensors (use max over a dimension or amax)"
    if step_name in ("batch_norm",) and len(args) > 5 and args[5] is True:
        return "batch norm in training mode (put the model in eval mode before saving it)"
    if step_name in ("dropout", "feature_dropout", "alpha_dropout") and len(args) > 2 and args[2] is True:
        return "dropout in training mode (put the model in eval mode before saving it)"
    if step_name in ops.NONLINEAR or step_name in ops.MAX:
        if not first_dependent:
            return "a nonlinearity whose parameters depend on the input"
    if step_name in ops.POSITIVE_STRUCTURAL and not first_dependent:
        return "an op whose shape or index arguments depend on the input values"
    return None


def compile_plan(program, *, allow_gradient: tuple = ()) -> Plan:
    """Turn an exported program into a :class:`Plan`, refusing ops that have no rule.

    Parameters
    ----------
    program : torch.export.ExportedProgram
        The model, exported with a dynamic batch dimension.
    allow_gradient : tuple of str
        ATen op names (``"layer_norm"``) to let through with gradients where they have no DeepLIFT rule.

    Returns
    -------
    Plan

    Raises
    ------
    UnsupportedOpError
        Naming every op without a rule and the line of the model's code that made each.
    ModelInputError
        When the program has no or several tensor inputs or outputs.
    """
    graph = program.graph
    signature = program.graph_signature
    state = dict(program.state_dict)
    state.update(getattr(program, "constants", {}) or {})
    constants: dict[str, Any] = {}
    user_inputs = list(signature.user_inputs)
    if len(user_inputs) != 1:
        raise ModelInputError(
            f"the model takes {len(user_inputs)} inputs; dnalift scores models that take one tensor "
            "(n, 4, length): wrap the model so its forward takes the one-hot sequence only")
    input_name = user_inputs[0]
    placeholder_targets = {}
    for spec in signature.input_specs:
        if spec.target is not None:
            placeholder_targets[spec.arg.name] = spec.target

    dependent: set[str] = set()
    shaped: set[str] = set()
    batch_dims: dict[str, int | None] = {}
    steps: list[Step] = []
    problems: list[str] = []
    output_node = None
    input_shape = ()
    for node in graph.nodes:
        if node.op == "placeholder":
            if node.name == input_name:
                dependent.add(node.name)
                batch_dims[node.name] = 0
                value = node.meta.get("val")
                input_shape = tuple(int(s) for s in value.shape[1:]) if value is not None else ()
            else:
                target = placeholder_targets.get(node.name)
                if target not in state:
                    raise ModelInputError(f"the exported program has no value for {node.name}: re-export it")
                constants[node.name] = state[target]
            continue
        if node.op == "output":
            outs = [n for n in _iter_nodes(node.args[0])]
            if len(outs) != 1:
                raise ModelInputError(
                    f"the model returns {len(outs)} values; dnalift needs one tensor (n, targets): wrap the "
                    "model so its forward returns the output you want to explain")
            output_node = outs[0]
            continue
        if node.op == "get_attr":
            constants[node.name] = getattr(program.graph_module, node.target)
            continue
        if node.op != "call_function":
            problems.append(f"{node.op} {node.target} (at {source_of(node)})")
            continue
        inputs = list(_iter_nodes((node.args, node.kwargs)))
        is_dependent = any(n.name in dependent and _carries_values(n) for n in inputs)
        name = ops.op_name(node.target)
        fn = ops.functional(node.target)
        if name in ops.SHAPE_ONLY:
            is_dependent = False
        if not is_dependent:
            if any(n.name in dependent or n.name in shaped for n in inputs):
                # Depends on the batch's shape only (sizes, or tensors built from them): recomputed for every
                # batch, with no difference from reference.
                shaped.add(node.name)
                batch_dims[node.name] = _batch_dim(node)
                steps.append(Step(node, fn, name, "shape", node.args, node.kwargs, (), batch_dims[node.name],
                                  source_of(node)))
            else:
                steps.append(Step(node, fn, name, "const", node.args, node.kwargs, (), None, source_of(node)))
            continue
        dependent.add(node.name)
        positions = tuple(i for i, a in enumerate(node.args)
                          if any(n.name in dependent and _is_tensor_node(n) for n in _iter_nodes(a)))
        n_dependent = sum(1 for a in node.args for n in _iter_nodes(a)
                          if n.name in dependent and _is_tensor_node(n))
        kind = ops.classify(name, n_dependent)
        reason = None if kind is None else _check_positions(name, node, dependent)
        if kind is None or reason is not None:
            if name in allow_gradient:
                kind = "gradient"
            else:
                what = reason or "an op with no DeepLIFT rule"
                problems.append(f"aten.{name} ({what}) at {source_of(node)}")
                continue
        batch_dims[node.name] = _batch_dim(node)
        steps.append(Step(node, fn, name, kind, node.args, node.kwargs, positions, batch_dims[node.name],
                          source_of(node)))

    if problems:
        allow = sorted({p.split(" ", 1)[0].removeprefix("aten.") for p in problems})
        raise UnsupportedOpError(
            f"the model uses {len(problems)} op(s) dnalift has no rule for: {'; '.join(problems)}. "
            f"Rewrite that part of the model with supported layers, or let them through with gradients "
            f"(--allow-gradient {','.join(allow)}) at the cost of exactness")
    if output_node is None or output_node.name not in dependent:
        raise ModelInputError("the model output does not depend on its input")

    # Fold constant steps now: they are the same for every batch.
    folded = _fold_constants(steps, constants)
    steps = [s for s in steps if s.kind != "const"]

    softmax_output = None
    producer = next((s for s in steps if s.node is output_node), None)
    if producer is not None and producer.kind == "softmax":
        dim = producer.args[1] if len(producer.args) > 1 else producer.kwargs.get("dim", -1)
        softmax_output = (dim,)
        output_node = producer.args[0]
        steps = [s for s in steps if s is not producer]
    for step in steps:
        if step.kind == "softmax":
            raise UnsupportedOpError(
                f"the model uses aten.{step.name} inside the network (at {step.source}); dnalift handles "
                "softmax only as the final layer (paper 2.5)")
    for step in steps:
        if step.name == "getitem":
            source = step.args[0]
            producer = next((s for s in steps if s.node is source), None)
            if producer is not None and producer.kind == "max" and step.args[1] != 0:
                if step.node.users:
                    raise UnsupportedOpError(
                        f"the model uses the indices of a max (at {step.source}); dnalift can only use its "
                        "values")
    constants.update(folded)
    last_use: dict[str, int] = {}
    for index, step in enumerate(steps):
        for n in _iter_nodes((step.args, step.kwargs)):
            last_use[n.name] = index
    last_use[output_node.name] = len(steps)
    released: list[list[str]] = [[] for _ in steps]
    for name, index in last_use.items():
        if index < len(steps):
            released[index].append(name)
    return Plan(steps, input_name, output_node, softmax_output, constants, last_use, input_shape,
                batch_dims=batch_dims, released=released, graph_module=program.graph_module)


def _fold_constants(steps, constants) -> dict:
    folded = {}
    env = dict(constants)
    for step in steps:
        if step.kind != "const":
            continue
        args = resolve(step.args, env)
        kwargs = resolve(step.kwargs, env)
        with torch.no_grad():
            env[step.node.name] = step.fn(*args, **kwargs)
        folded[step.node.name] = env[step.node.name]
    return folded


def resolve(arg, env):
    """Replace graph nodes in (nested) arguments by their values in ``env``."""
    if isinstance(arg, torch.fx.Node):
        return env[arg.name]
    if isinstance(arg, (list, tuple)):
        return type(arg)(resolve(a, env) for a in arg)
    if isinstance(arg, dict):
        return {k: resolve(v, env) for k, v in arg.items()}
    return arg


def describe(plan: Plan, *, rule: str = "rescale", max_rule: str = "exact") -> list[dict]:
    """One row per input-dependent op: its name, the rule it gets and where it comes from.

    Parameters
    ----------
    plan : Plan
    rule : {"rescale", "revealcancel", "genomics"}
    max_rule : {"exact", "gradient"}

    Returns
    -------
    list of dict
        Keys ``node``, ``op``, ``kind``, ``rule``, ``source``.
    """
    from dnalift.attribution.modes import nonlinear_rules, split_needed

    per_node = nonlinear_rules(plan, rule)
    split = split_needed(plan, per_node) if rule != "rescale" else set()
    rows = []
    for step in plan.steps:
        if step.kind == "meta":
            continue
        if step.kind == "nonlinear":
            label = "RevealCancel" if per_node[step.node.name] == "revealcancel" else "Rescale"
        elif step.kind == "max":
            label = "max rule (exact)" if max_rule == "exact" else "max rule (gradient, original code)"
        elif step.kind == "linear" and step.node.name in split and step.name in ops.WEIGHTED:
            label = "linear (positive/negative parts)"
        else:
            label = ops.RULE_NAMES[step.kind]
        rows.append({"node": step.node.name, "op": f"aten.{step.name}", "kind": step.kind, "rule": label,
                     "source": step.source})
    if plan.softmax_output is not None:
        rows.append({"node": "output", "op": "aten.softmax", "kind": "softmax",
                     "rule": ops.RULE_NAMES["softmax"], "source": "model output"})
    return rows
