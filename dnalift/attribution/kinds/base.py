"""What every kind of rule provides, and the context its passes run in."""

from __future__ import annotations

import dataclasses

import torch

from dnalift.attribution.pairing import Pairing
from dnalift.attribution.parts import Split, as_split, sign_weights


def functional(target):
    """The functional (out-of-place) version of an in-place ATen op; other targets unchanged.

    The exported graph has already rewired the users of a mutated tensor, so running ``relu`` where the
    model ran ``relu_`` keeps the semantics and never mutates a value dnalift still needs.
    """
    packet = getattr(target, "overloadpacket", None)
    if packet is None:
        return target
    name = packet.__name__
    if not (name.endswith("_") and not name.startswith("_")):
        return target
    base = getattr(torch.ops.aten, name[:-1], None)
    if base is None:
        return target
    overload = target._overloadname
    return getattr(base, overload, None) or getattr(base, "default", None) or getattr(base, "Tensor", target)


def iter_nodes(arg):
    """The graph nodes inside (nested) arguments."""
    if isinstance(arg, torch.fx.Node):
        yield arg
    elif isinstance(arg, (list, tuple)):
        for item in arg:
            yield from iter_nodes(item)
    elif isinstance(arg, dict):
        for item in arg.values():
            yield from iter_nodes(item)


def value_meta(node: torch.fx.Node):
    """The exported example value of a node (the first one for a node that returns several), or None."""
    value = node.meta.get("val")
    if isinstance(value, (tuple, list)):
        value = value[0] if value else None
    return value


def batch_dim_of(node: torch.fx.Node) -> int | None:
    """The dimension of a node's value that holds the batch (the first symbolic one), or None."""
    shape = getattr(value_meta(node), "shape", None)
    if shape is None:
        return None
    for dim, size in enumerate(shape):
        if isinstance(size, torch.SymInt) and not str(size).isdigit():
            return dim
    return 0 if len(shape) else None


@dataclasses.dataclass
class RunContext:
    """What a rule may read while one batch runs.

    Attributes
    ----------
    pairing : Pairing
        ``n`` sequences x ``r`` references in this batch.
    eps : float
        Below this ``|dx|`` a multiplier is the derivative at the reference.
    batch_dims : dict
        The batch dimension of each node's value, by node name (None: no batch dimension).
    x_env : dict
        Values of the sequences (``n`` rows) at the nodes the rules asked for.
    ref_env : dict
        Values of the references (``n * r`` rows) computed so far, by node name.
    d_env : dict
        RevealCancel pass: differences from reference computed so far, by node name.
    diffs : dict
        Forward differences ``x - ref`` computed so far (:meth:`forward_diff`).
    """

    pairing: Pairing
    eps: float
    batch_dims: dict
    x_env: dict
    ref_env: dict
    d_env: dict = dataclasses.field(default_factory=dict)
    diffs: dict = dataclasses.field(default_factory=dict)

    def dim(self, node) -> int | None:
        return self.batch_dims.get(node.name) if isinstance(node, torch.fx.Node) else None

    def forward_diff(self, node: torch.fx.Node) -> torch.Tensor:
        """``x - ref`` of a node's value (reference rows), from the two forward passes (computed once per node;
        read-only)."""
        value = self.diffs.get(node.name)
        if value is None:
            value = self.pairing.diff(self.x_env[node.name], self.ref_env[node.name], self.dim(node))
            self.diffs[node.name] = value
        return value

    def release(self, names) -> None:
        """Forget the forward differences of nodes no later step reads."""
        for name in names:
            self.diffs.pop(name, None)

    def split_by_forward_sign(self, d, node) -> Split:
        """``d`` as parts, split by the sign of the node's forward difference (an exact 0 half to each part).

        The sign of the forward difference ``x - ref`` is exact where the value does not change; the sign of a
        carried difference is rounding noise there (DESIGN.md, RevealCancel).
        """
        if isinstance(d, Split):
            return d
        if node is None or node.name not in self.x_env or node.name not in self.ref_env:
            return as_split(d)
        p = sign_weights(self.forward_diff(node))
        return Split(d * p, d * (1 - p))


class Kind:
    """How a family of ops is treated in both passes of the engine.

    Attributes
    ----------
    name : str
        Short name (``"linear"``, ``"nonlinear"``...), the ``kind`` of a plan step.
    label : str
        The rule in plain language, for ``dnalift info``.
    max_dependent : int or None
        How many of its tensor arguments may depend on the input (None: any number).
    resplits : bool
        The RevealCancel pass reads its inputs' whole differences (and splits them afresh where it must), so
        the parts of its inputs are never needed.
    """

    name = "kind"
    label = ""
    max_dependent: int | None = 1
    resplits = False

    # ------------------------------------------------------------------------------------------ plan time
    def check(self, node: torch.fx.Node, dependent: set) -> str | None:
        """Why this op cannot be scored with this rule here (input in a wrong place...), or None.

        The default accepts the op when its first argument holds the input-dependent tensor and no other
        argument does.
        """
        args = node.args
        if not args or not any(n.name in dependent for n in iter_nodes(args[0])):
            return "an op whose other arguments depend on the input values"
        if any(n.name in dependent for a in list(args[1:]) + list(node.kwargs.values()) for n in iter_nodes(a)):
            return "an op whose other arguments depend on the input values"
        return None

    def x_inputs(self, step) -> bool:
        """Whether the rules need the sequences' values of this step's inputs."""
        return False

    def x_output(self, step) -> bool:
        """Whether the rules need the sequences' value of this step's output."""
        return False

    def label_for(self, step) -> str:
        """The rule of one step, for ``dnalift info``."""
        return self.label

    # ------------------------------------------------------------------------------------------- run time
    def forward(self, step, args, kwargs):
        """The op's value (both for the sequences and for the references)."""
        return step.fn(*args, **kwargs)

    def reference(self, step, args, kwargs, ctx: RunContext):
        """Rescale pass: the op on the references, differentiable so that the gradient is the multiplier.

        Linear ops need nothing more than the op itself: their gradient is their multiplier.
        """
        return self.forward(step, args, kwargs)

    def difference(self, step, args, kwargs, deltas, ctx: RunContext, ref_out):
        """RevealCancel pass: the difference of the output from the differences of the inputs.

        Parameters
        ----------
        step : Step
        args, kwargs
            The step's arguments with graph values looked up on the references.
        deltas : list
            The difference of each positional argument (None for arguments that do not depend on the input),
            a tensor or a :class:`~dnalift.attribution.parts.Split`.
        ctx : RunContext
        ref_out
            The op's value on the references.
        """
        raise NotImplementedError(f"{type(self).__name__} has no RevealCancel pass")
