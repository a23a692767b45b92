"""Clean-ups of a model's graph before dnalift exports it again (torch only).

Each pass edits an unlifted :class:`torch.fx.GraphModule` (``ExportedProgram.module()``, parameters as
``get_attr`` nodes) in place, so that the program exported from it holds only ATen ops with a batch dimension
that stays dynamic:

- :func:`force_eval`: dropout and batch norm of a program exported in training mode switched to eval mode.
- :func:`inline_autocast`: ``torch.autocast(..., enabled=False)`` regions (``higher_order.wrap_with_autocast``)
  replaced by the ops they wrap; an enabled region on a device dnalift runs on is refused, naming its line.
- :func:`refuse_vmap`: a ``torch.vmap`` left as functorch calls is refused, naming its line.
- :func:`scalarize_shape_arithmetic`: the tensor arithmetic that ``torch.jit.trace`` records for
  ``x.shape[2] - t`` (``scalar_tensor`` -> ``sub`` -> ``_local_scalar_dense``) done on the sizes themselves,
  so the export sees ``length - t`` (a number) instead of a value read from a tensor (data-dependent).
"""

from __future__ import annotations

import logging
import operator

import torch

from dnalift.errors import ModelFormatError
from dnalift.graph import source_line

__all__ = ["TRAIN_FLAG_ARG", "training_nodes", "force_eval", "autocast_nodes", "inline_autocast",
           "refuse_vmap", "tensor_reads", "scalarize_shape_arithmetic", "source_line"]

log = logging.getLogger(__name__)

aten = torch.ops.aten

#: op -> index of its ``train``/``training`` argument
TRAIN_FLAG_ARG = {
    aten.dropout.default: 2,
    aten.feature_dropout.default: 2,
    aten.alpha_dropout.default: 2,
    aten.feature_alpha_dropout.default: 2,
    aten.batch_norm.default: 5,
    aten.native_batch_norm.default: 5,
    aten._native_batch_norm_legit_functional.default: 5,
    aten._native_batch_norm_legit.default: 5,
    aten.instance_norm.default: 5,
}

#: devices dnalift computes on: an enabled autocast region for one of them changes the dtypes it computes in
_DNALIFT_DEVICES = ("cpu", "cuda")






# ----------------------------------------------------------------------------------------------------------
# training mode


def training_nodes(graph: torch.fx.Graph) -> list[torch.fx.Node]:
    """The dropout and batch-norm nodes of ``graph`` whose training flag is True."""
    out = []
    for node in graph.nodes:
        i = TRAIN_FLAG_ARG.get(node.target)
        if i is not None and i < len(node.args) and node.args[i] is True:
            out.append(node)
    return out


def force_eval(gm: torch.fx.GraphModule, where: str) -> int:
    """Switch dropout and batch norm to evaluation mode; drop the then pointless ``num_batches_tracked += 1``.

    Returns
    -------
    int
        How many ops were changed (a warning says so when there are any).
    """
    changed = training_nodes(gm.graph)
    if not changed:
        return 0
    for node in changed:
        if node.target == aten.instance_norm.default:
            continue  # instance norm normalises by the input's own statistics either way
        args = list(node.args)
        args[TRAIN_FLAG_ARG[node.target]] = False
        node.args = tuple(args)
    for node in list(gm.graph.nodes):
        if (node.op == "call_function" and node.target == aten.add_.Tensor and not node.users
                and isinstance(node.args[0], torch.fx.Node) and node.args[0].op == "get_attr"
                and str(node.args[0].target).endswith("num_batches_tracked")):
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    log.warning("%s: the model was exported in training mode; switched %d dropout/batch-norm ops to evaluation "
                "mode (call model.eval() before exporting)", where, len(changed))
    return len(changed)


# ----------------------------------------------------------------------------------------------------------
# autocast


def autocast_nodes(graph: torch.fx.Graph) -> list[torch.fx.Node]:
    """The ``higher_order.wrap_with_autocast`` nodes of ``graph`` (not of its sub-graphs)."""
    hop = torch.ops.higher_order.wrap_with_autocast
    return [n for n in graph.nodes if n.op == "call_function" and n.target is hop]


def _region_source(gm: torch.fx.GraphModule, node: torch.fx.Node) -> str:
    """The source line of an autocast region: its own, else that of the first op inside it."""
    own = source_line(node)
    if not own.startswith("graph node"):
        return own
    inner = getattr(gm, node.args[4].target, None)
    for sub in getattr(inner, "graph", torch.fx.Graph()).nodes:
        if sub.op == "call_function":
            line = source_line(sub)
            if not line.startswith("graph node"):
                return line
    return own


def inline_autocast(gm: torch.fx.GraphModule, where: str) -> int:
    """Replace each autocast region that changes nothing by the ops it wraps (nested regions too).

    A region changes nothing when it is disabled (``torch.autocast("cuda", enabled=False)``, as borzoi-pytorch
    writes around its heads) or is for a device dnalift never computes on (``"mps"``, ``"xpu"``).

    Returns
    -------
    int
        How many regions were inlined.

    Raises
    ------
    ModelFormatError
        For an enabled region on CPU or CUDA (it would compute in lower precision), naming its source line.
    """
    inlined = 0
    while True:
        nodes = autocast_nodes(gm.graph)
        if not nodes:
            break
        for node in nodes:
            device, dtype, enabled = node.args[0], node.args[1], node.args[2]
            if enabled and str(device) in _DNALIFT_DEVICES:
                raise ModelFormatError(
                    f"{where}: the model computes in {dtype} inside torch.autocast({str(device)!r}) at "
                    f"{_region_source(gm, node)}; dnalift scores in float32 or float64: remove the autocast "
                    f"region (or pass enabled=False) and export the model again", argument="model",
                    source=_region_source(gm, node), dtype=str(dtype))
            _inline_region(gm, node)
            inlined += 1
    if inlined:
        gm.graph.eliminate_dead_code()
        gm.graph.lint()
        gm.recompile()
        log.info("%s: inlined %d disabled autocast region(s)", where, inlined)
    return inlined


def _inline_region(gm: torch.fx.GraphModule, node: torch.fx.Node) -> None:
    """Copy the region's sub-graph in place of ``node``; its ``getitem`` users read the copied outputs."""
    submod_node, operands = node.args[4], node.args[5:]
    sub = getattr(gm, submod_node.target)
    env: dict[torch.fx.Node, object] = {}
    placeholders = [n for n in sub.graph.nodes if n.op == "placeholder"]
    env.update(zip(placeholders, operands))
    outputs = None
    with gm.graph.inserting_before(node):
        for inner in sub.graph.nodes:
            if inner.op == "placeholder":
                continue
            if inner.op == "output":
                outputs = torch.fx.node.map_arg(inner.args[0], lambda n: env[n])
                break
            if inner.op == "get_attr":  # a nested region's sub-graph, or a constant of the region
                name = _fresh_attribute(gm, f"{submod_node.target}_{inner.target}")
                setattr(gm, name, getattr(sub, inner.target))
                env[inner] = gm.graph.get_attr(name)
                env[inner].meta = dict(inner.meta)
                continue
            env[inner] = gm.graph.node_copy(inner, lambda n: env[n])
    outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    for user in list(node.users):
        if user.op == "call_function" and user.target is operator.getitem:
            user.replace_all_uses_with(outputs[user.args[1]])
            gm.graph.erase_node(user)
    if node.users:  # the tuple itself is used: rebuild it
        raise ModelFormatError(f"graph node {node.name}: an autocast region whose result is used as a whole")
    gm.graph.erase_node(node)
    if not submod_node.users:
        gm.graph.erase_node(submod_node)
        delattr(gm, submod_node.target)


def _fresh_attribute(gm: torch.nn.Module, base: str) -> str:
    name, i = base.replace(".", "_"), 0
    while hasattr(gm, name):
        i += 1
        name = f"{base.replace('.', '_')}_{i}"
    return name


# ----------------------------------------------------------------------------------------------------------
# vmap


def refuse_vmap(graph: torch.fx.Graph, where: str) -> None:
    """Raise :class:`~dnalift.errors.ModelFormatError` when the graph holds ``torch.vmap`` plumbing.

    ``torch.export`` keeps a ``torch.vmap`` in the forward (borzoi-pytorch's relative shift) as functorch
    calls (``_add_batch_dim``, ``_vmap_increment_nesting``...), which are not ATen ops: the program cannot be
    exported again, and dnalift has no rule for them.
    """
    nodes = [n for n in graph.nodes if n.op == "call_function"
             and str(getattr(n.target, "__module__", "")).startswith("torch._functorch")]
    if nodes:
        lines = list(dict.fromkeys(source_line(n) for n in nodes))
        raise ModelFormatError(f"{where}: the model calls torch.vmap at {'; '.join(lines)}; torch.export keeps it "
                               f"as functorch calls, not ATen ops, so dnalift cannot run it: rewrite that part "
                               f"with batched tensor ops", argument="model", sources=lines)


# ----------------------------------------------------------------------------------------------------------
# shape arithmetic recorded as tensor ops (TorchScript traces)


_ARITHMETIC = {
    aten.add.Tensor: operator.add, aten.add.Scalar: operator.add,
    aten.sub.Tensor: operator.sub, aten.sub.Scalar: operator.sub,
    aten.mul.Tensor: operator.mul, aten.mul.Scalar: operator.mul,
    aten.floor_divide.default: operator.floordiv, aten.floor_divide.Scalar: operator.floordiv,
    aten.remainder.Tensor: operator.mod, aten.remainder.Scalar: operator.mod,
}
_TO_SCALAR = {aten._local_scalar_dense.default, aten.item.default}
_CASTS = {aten._to_copy.default, aten.to.dtype, aten.clone.default, aten.detach.default, aten.alias.default}


class _Scalars:
    """Rewrites a 0-dim tensor computed from sizes into the same arithmetic on Python numbers (SymInts)."""

    def __init__(self, gm: torch.fx.GraphModule):
        self.gm = gm
        self.memo: dict[torch.fx.Node, tuple] = {}  # node -> (value node or number, is_int)

    def constant(self, node) -> tuple | None:
        """A 0-dim constant tensor (a get_attr) as (number, is_int)."""
        if isinstance(node, (int, float)) and not isinstance(node, bool):
            return node, isinstance(node, int)
        if isinstance(node, torch.fx.Node) and node.op == "get_attr":
            value = getattr(self.gm, node.target, None)
            if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dim() == 0:
                return value.item(), not value.dtype.is_floating_point
        return None

    def number_of(self, node) -> tuple | None:
        """(node or number giving the same Python number, whether it is an integer), or None."""
        const = self.constant(node)
        if const is not None or not isinstance(node, torch.fx.Node):
            return const
        if node in self.memo:
            return self.memo[node]
        self.memo[node] = result = self._build(node)
        return result

    def _build(self, node: torch.fx.Node) -> tuple | None:
        if node.op != "call_function":
            return None
        if node.target == aten.sym_size.int:
            return node, True
        if node.target == aten.scalar_tensor.default:
            value = node.args[0]
            dtype = node.kwargs.get("dtype")
            is_int = dtype is not None and not dtype.is_floating_point and dtype != torch.bool
            if isinstance(value, torch.fx.Node) and value.target == aten.sym_size.int:
                return (value, True) if is_int or dtype is None else (self._call(torch.sym_float, value), False)
            return None
        if node.target in _CASTS:
            inner = self.number_of(node.args[0])
            dtype = node.kwargs.get("dtype", node.args[1] if node.target == aten.to.dtype else None)
            if inner is None or dtype is None or dtype in (torch.bool, torch.complex64, torch.complex128):
                return inner if dtype is None else None
            if dtype.is_floating_point:
                return (inner[0], False) if not inner[1] else (self._call(torch.sym_float, inner[0]), False)
            return inner if inner[1] else (self._call(torch.sym_int, inner[0]), True)
        fn = _ARITHMETIC.get(node.target)
        if fn is None or len(node.args) != 2 or node.kwargs.get("alpha", 1) != 1:
            return None
        a, b = self.number_of(node.args[0]), self.number_of(node.args[1])
        if a is None or b is None:
            return None
        return self._call(fn, a[0], b[0]), a[1] and b[1]

    def _call(self, fn, *args):
        if not any(isinstance(a, torch.fx.Node) for a in args):
            return fn(*args)
        return self.gm.graph.call_function(fn, args)


def tensor_reads(graph: torch.fx.Graph) -> list[torch.fx.Node]:
    """The nodes that read a Python number out of a tensor (``_local_scalar_dense``, ``item``)."""
    return [n for n in graph.nodes if n.op == "call_function" and n.target in _TO_SCALAR]


def scalarize_shape_arithmetic(gm: torch.fx.GraphModule) -> int:
    """Turn ``_local_scalar_dense`` / ``item`` of size arithmetic into arithmetic on the sizes.

    ``torch.jit.trace`` records ``X.shape[2] - self.trimming`` as tensor ops whose result is read back with
    ``aten::Int``; exported, that read is data-dependent, so a crop ``y[:, :, t:X.shape[2] - t]`` gets an
    unknown length (and torch raises ``GuardOnDataDependentSymNode`` on the next export). Computed on the
    sizes instead, the length is known (and a batch-size value such as ``torch.zeros(X.shape[0], 1)`` stays
    tied to the dynamic batch). Runtime asserts on the old unknown sizes are dropped; the next export makes
    its own.

    Returns
    -------
    int
        How many reads were replaced.
    """
    scalars = _Scalars(gm)
    replaced = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in _TO_SCALAR:
            continue
        with gm.graph.inserting_before(node):
            number = scalars.number_of(node.args[0])
        if number is None:
            continue
        node.replace_all_uses_with(number[0]) if isinstance(number[0], torch.fx.Node) else \
            _replace_with_literal(node, number[0])
        gm.graph.erase_node(node)
        replaced += 1
    if replaced:
        for node in list(gm.graph.nodes):
            if node.op == "call_function" and node.target in (aten._assert_scalar.default,
                                                              aten.sym_constrain_range_for_size.default):
                gm.graph.erase_node(node)
        gm.graph.eliminate_dead_code()
        gm.graph.lint()
        gm.recompile()
    return replaced


def _replace_with_literal(node: torch.fx.Node, value) -> None:
    for user in list(node.users):
        user.args = torch.fx.node.map_arg(user.args, lambda n: value if n is node else n)
        user.kwargs = torch.fx.node.map_arg(user.kwargs, lambda n: value if n is node else n)
