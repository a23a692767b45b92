"""Ops that are linear in their input-dependent arguments.

Rescale pass: the op itself; its gradient is its multiplier (the Linear rule). RevealCancel pass:

* :class:`Structural` (views, slicing, padding, sums, means, average pooling, casts, dropout in eval mode...):
  every coefficient is non-negative, so each part goes through the op unchanged (padding with 0).
* :class:`Additive` (add, sub, rsub, neg): parts add; a negative coefficient swaps them.
* :class:`Scale` (mul or div by a constant, batch norm in eval mode): parts are scaled, swapped where the
  constant is negative.
* :class:`Weighted` (conv, linear, addmm, and mm/matmul/bmm with a constant operand): each term ``w * dx`` goes
  to the positive or negative part by its sign: ``dy+ = W+ dx+ + W- dx-``, ``dy- = W- dx+ + W+ dx-``, with
  ``dx+``/``dx-`` split by the sign of the forward difference ``x - x0`` of the layer's input (an exact 0 half to
  each). Going back, that gives each input one multiplier: ``sum m+ w+ + m- w-`` where ``x - x0 > 0``,
  ``sum m+ w- + m- w+`` where it is negative and ``sum (m+ + m-) w / 2`` where it is 0 (the original code's).
* :class:`Concat` (cat, stack) and :class:`Where` (select by a constant condition): parts are combined as they
  are; an unsplit operand is split by the sign of its forward difference.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F

from dnalift.attribution.kinds.base import Kind, iter_nodes
from dnalift.graph import op_name
from dnalift.attribution.parts import Split, add_all, map_parts, scale, total


def _dependent(arg, dependent: set) -> bool:
    return any(n.name in dependent for n in iter_nodes(arg))


class Linear(Kind):
    """Base of the linear kinds: gradient in the Rescale pass."""

    name = "linear"
    label = "linear (gradient)"


class Structural(Linear):
    """Ops with non-negative coefficients only: they move, copy, select, pad, sum or average values.

    Parameters
    ----------
    pad_value_arg : int, optional
        Position of a padding-value argument, which is 0 for differences.
    label : str, optional
        The rule for ``dnalift info`` (default "linear (gradient)").
    """

    def __init__(self, *, pad_value_arg: int | None = None, label: str | None = None):
        self.pad_value_arg = pad_value_arg
        if label is not None:
            self.label = label

    def difference(self, step, args, kwargs, deltas, ctx, ref_out):
        rest = list(args[1:])
        if self.pad_value_arg is not None and len(rest) >= self.pad_value_arg:
            rest[self.pad_value_arg - 1] = 0.0
        return map_parts(deltas[0], lambda t: step.fn(t, *rest, **kwargs))


class ShapedLike(Structural):
    """``expand_as(a, b)``, ``view_as``, ``reshape_as``: ``a`` moved to ``b``'s shape; ``b`` (only its shape is
    read) may depend on the input."""

    max_dependent = None

    def check(self, node, dependent):
        if any(_dependent(a, dependent) for a in list(node.args[2:]) + list(node.kwargs.values())):
            return "an op whose other arguments depend on the input values"
        return None

    def difference(self, step, args, kwargs, deltas, ctx, ref_out):
        return map_parts(deltas[0], lambda t: step.fn(t, args[1]))


class Identity(Structural):
    """Ops that return their input's values (value-preserving casts, clone, alias, eval-mode dropout).

    They run as the identity, so a cast to float32 in a model's forward does not round a float64 run.
    """

    label = "identity (no arithmetic)"

    def forward(self, step, args, kwargs):
        return args[0]

    def difference(self, step, args, kwargs, deltas, ctx, ref_out):
        return deltas[0]


class Additive(Linear):
    """``add``, ``sub``, ``rsub``, ``neg``: sums of input-dependent tensors and constants."""

    max_dependent = None

    def x_inputs(self, step) -> bool:
        return step.needs_split

    def check(self, node, dependent):
        alpha = node.kwargs.get("alpha")
        if _dependent(alpha, dependent):
            return "an alpha that depends on the input"
        return None

    def difference(self, step, args, kwargs, deltas, ctx, ref_out):
        name = step.name
        if name == "neg":
            return scale(deltas[0], -1)
        alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
        first, second = (1, -alpha) if name == "sub" else (-alpha, 1) if name == "rsub" else (1, alpha)
        terms = [scale(deltas[0], first), scale(deltas[1] if len(deltas) > 1 else None, second)]
        return combine(terms, list(step.node.args[:2]), ctx)


class Scale(Linear):
    """``mul`` by a constant, or ``div`` of an input-dependent tensor by a constant."""

    def check(self, node, dependent):
        if op_name(node.target) == "div" and not _dependent(node.args[0], dependent):
            return "division by a value that depends on the input"
        return None

    def difference(self, step, args, kwargs, deltas, ctx, ref_out):
        if step.name == "div":
            divisor = args[1]
            return scale(deltas[0], 1 / divisor)
        if deltas[0] is not None:
            return scale(deltas[0], args[1])
        return scale(deltas[1], args[0])


class BatchNorm(Linear):
    """Batch norm in eval mode: each channel scaled by ``gamma / sqrt(var + eps)``."""

    def check(self, node, dependent):
        reason = super().check(node, dependent)
        if reason:
            return reason
        if op_name(node.target) == "batch_norm" and len(node.args) > 5 and node.args[5] is True:
            return "batch norm in training mode (put the model in eval mode before saving it)"
        return None

    def difference(self, step, args, kwargs, deltas, ctx, ref_out):
        x, weight, _, _, var = args[:5]
        eps = args[7] if step.name == "batch_norm" else args[6]
        factor = torch.rsqrt(var + eps)
        if weight is not None:
            factor = factor * weight
        out = scale(deltas[0], factor.reshape([1, -1] + [1] * (x.dim() - 2)))
        return out if step.name == "batch_norm" else (out, None, None)


class Dropout(Identity):
    """Dropout in eval mode (``train=False``) is the identity."""

    def check(self, node, dependent):
        reason = super().check(node, dependent)
        if reason:
            return reason
        if len(node.args) > 2 and node.args[2] is True:
            return "dropout in training mode (put the model in eval mode before saving it)"
        return None


# --------------------------------------------------------------------------------------------- weighted
@dataclasses.dataclass(frozen=True)
class WeightedSpec:
    """How a weighted op is called with another weight and no bias, and how its transpose is applied.

    Attributes
    ----------
    apply : callable
        ``apply(step, args, t, w)``: the op on ``t`` with weight ``w``, without the bias.
    weight_arg : int
        Position of the weight argument (for ops whose operands can swap, the position when the input is
        first; :meth:`Weighted.operands` finds the other case).
    input_arg : int
        Position of the input-dependent argument.
    transpose : callable or None
        ``transpose(step, args, w)`` gives ``g, shape -> `` the gradient of ``apply`` with respect to an input
        of ``shape`` for the output gradient ``g``, without running the op forward; it (or the function) is
        None where autograd must do it.
    swappable : bool
        Either operand may be the input-dependent one (``mm``/``matmul``/``bmm``).
    """

    apply: Callable
    weight_arg: int
    input_arg: int = 0
    transpose: Callable | None = None
    swappable: bool = False


def _conv_input_grad(w, stride, padding, dilation, groups):
    """``g -> d(conv)/d(input)`` for a convolution with these settings, or None for string padding."""
    if isinstance(padding, str):
        return None  # "same"/"valid": autograd works it out
    grad = torch.nn.grad.conv1d_input if w.dim() == 3 else torch.nn.grad.conv2d_input
    return lambda g, shape: grad(shape, w, g, stride, padding, dilation, groups)


def _conv_transpose(step, args, w):
    given = list(args[3:])
    rest = given + [1, 0, 1, 1][len(given):]  # stride, padding, dilation, groups
    return _conv_input_grad(w, *rest[:4])


def _convolution_transpose(step, args, w):
    stride, padding, dilation, transposed, _, groups = args[3:9]
    return None if transposed else _conv_input_grad(w, stride, padding, dilation, groups)


CONV = WeightedSpec(apply=lambda step, args, t, w: step.fn(t, w, None, *args[3:]), weight_arg=1,
                    transpose=_conv_transpose)
CONVOLUTION = WeightedSpec(apply=lambda step, args, t, w: step.fn(t, w, None, *args[3:]), weight_arg=1,
                           transpose=_convolution_transpose)
LINEAR = WeightedSpec(apply=lambda step, args, t, w: F.linear(t, w), weight_arg=1,
                      transpose=lambda step, args, w: lambda g, shape: g @ w)
ADDMM = WeightedSpec(apply=lambda step, args, t, w: torch.mm(t, w), weight_arg=2, input_arg=1,
                     transpose=lambda step, args, w: lambda g, shape: g @ w.T)
MATMUL = WeightedSpec(apply=lambda step, args, t, w: step.fn(t, w), weight_arg=1, swappable=True)


class KnownValue(torch.autograd.Function):
    """A linear map of a difference whose value is already known from the two forward passes.

    Forward returns ``value`` (the output's ``x - ref``, exact); backward applies the map's transpose. The
    difference itself is never pushed through the op, which saves one op per weighted layer.
    """

    @staticmethod
    def forward(ctx, d, value, transpose, shape):
        ctx.transpose, ctx.shape = transpose, shape
        return value

    @staticmethod
    def backward(ctx, grad):
        return ctx.transpose(grad.contiguous(), ctx.shape), None, None, None


class Weighted(Linear):
    """A weighted sum with a constant weight tensor (see the module docstring for the parts)."""

    resplits = True

    def __init__(self, spec: WeightedSpec):
        self.spec = spec

    def check(self, node, dependent):
        spec = self.spec
        args = node.args
        positions = [i for i, a in enumerate(args) if _dependent(a, dependent)]
        if spec.swappable and positions in ([0], [1]):
            return None
        if positions != [spec.input_arg]:
            return "a convolution or linear layer whose weight or bias depends on the input"
        return None

    def x_inputs(self, step) -> bool:
        return step.needs_split

    def x_output(self, step) -> bool:
        return step.parts_pass  # its difference is read from the forward passes

    def label_for(self, step) -> str:
        return "linear (positive/negative parts)" if step.needs_split else self.label

    def operands(self, step, args, deltas):
        """``(input node, input difference, weight, op(t, w))`` of one call."""
        spec = self.spec
        if spec.swappable and deltas[0] is None:
            return step.node.args[1], deltas[1], args[0], lambda t, w: step.fn(w, t)
        return (step.node.args[spec.input_arg], deltas[spec.input_arg], args[spec.weight_arg],
                lambda t, w: spec.apply(step, args, t, w))

    def _transpose(self, step, args, weight):
        return self.spec.transpose(step, args, weight) if self.spec.transpose is not None else None

    def difference(self, step, args, kwargs, deltas, ctx, ref_out):
        node, d, weight, op = self.operands(step, args, deltas)
        transpose = self._transpose(step, args, weight)
        if transpose is None:  # autograd differentiates the op itself
            d = total(d)
            whole = op(d, weight)
            if not step.needs_split:
                return whole
            spread = op(torch.sign(ctx.forward_diff(node)) * d, weight.abs() * 0.5)
            pos = torch.add(spread, whole, alpha=0.5)
            return Split(pos, whole - pos)
        whole = ctx.forward_diff(step.node)
        if not step.needs_split:
            d = total(d)
            return KnownValue.apply(d, whole, transpose, d.shape)
        half_abs = weight.abs() * 0.5
        dx = ctx.forward_diff(node)
        pos, neg = (d.pos, d.neg) if isinstance(d, Split) else (d, None)
        return Split(*SplitWeighted.apply(pos, neg, whole, dx, lambda t: op(t, half_abs),
                                          self._transpose(step, args, weight * 0.5),
                                          self._transpose(step, args, half_abs)))


class SplitWeighted(torch.autograd.Function):
    """A weighted layer's difference as parts: ``dy+- = (W dx +- |W| |dx|) / 2``.

    ``dx`` is the input's forward difference: where ``dx > 0`` the parts are ``W+ dx`` and ``W- dx``, where
    ``dx < 0`` ``W- dx`` and ``W+ dx``, where ``dx = 0`` nothing. ``W dx`` is known from the forward passes. The
    carried difference (``d_pos + d_neg``, or ``d_pos`` alone when ``d_neg`` is None) has the same value and is
    what the gradients flow back to: ``(W/2)^T (g+ + g-) + s * (|W|/2)^T (g+ - g-)`` with ``s = sign(dx)``, two
    transposed ops, to each of its parts.
    """

    @staticmethod
    def forward(ctx, d_pos, d_neg, whole, dx, half_abs_op, half_transpose, half_abs_transpose):
        with torch.no_grad():
            pos = half_abs_op(dx.abs()).add_(whole, alpha=0.5)
            neg = whole - pos
        ctx.save_for_backward(dx)
        ctx.transposes, ctx.shape, ctx.has_neg = (half_transpose, half_abs_transpose), d_pos.shape, d_neg is not None
        return pos, neg

    @staticmethod
    def backward(ctx, g_pos, g_neg):
        (dx,) = ctx.saved_tensors
        half_transpose, half_abs_transpose = ctx.transposes
        grad = half_transpose((g_pos + g_neg).contiguous(), ctx.shape)
        grad.addcmul_(torch.sign(dx), half_abs_transpose((g_pos - g_neg).contiguous(), ctx.shape))
        return grad, grad if ctx.has_neg else None, None, None, None, None, None


# --------------------------------------------------------------------------------------- combinations
def combine(terms, nodes, ctx):
    """Sum differences; if one is split, all are (unsplit ones by the sign of their forward difference)."""
    return add_all(terms, lambda i, t: ctx.split_by_forward_sign(
        t, nodes[i] if isinstance(nodes[i], torch.fx.Node) else None))


class Concat(Linear):
    """``cat`` and ``stack`` of tensors of which some depend on the input."""

    max_dependent = None

    def x_inputs(self, step) -> bool:
        return step.needs_split

    def check(self, node, dependent):
        if any(_dependent(a, dependent) for a in node.args[1:]):
            return "a concatenation whose dimension depends on the input"
        return None

    def difference(self, step, args, kwargs, deltas, ctx, ref_out):
        nodes = step.node.args[0]
        d_env = ctx.d_env
        parts = [d_env.get(n.name) if isinstance(n, torch.fx.Node) else None for n in nodes]
        filled = [d if d is not None else torch.zeros_like(v) for d, v in zip(parts, args[0])]
        rest = args[1:]
        if any(isinstance(d, Split) for d in filled):
            splits = [ctx.split_by_forward_sign(d, n if isinstance(n, torch.fx.Node) else None)
                      for d, n in zip(filled, nodes)]
            return Split(step.fn([s.pos for s in splits], *rest), step.fn([s.neg for s in splits], *rest))
        return step.fn(filled, *rest)


class Where(Linear):
    """``torch.where(condition, a, b)`` with a condition that does not depend on the input."""

    max_dependent = None

    def x_inputs(self, step) -> bool:
        return step.needs_split

    def check(self, node, dependent):
        if _dependent(node.args[0], dependent):
            return "torch.where with a condition that depends on the input"
        return None

    def difference(self, step, args, kwargs, deltas, ctx, ref_out):
        condition = args[0]
        a, b = deltas[1], deltas[2]
        a = a if a is not None else torch.zeros_like(total(b))
        b = b if b is not None else torch.zeros_like(total(a))
        if isinstance(a, Split) or isinstance(b, Split):
            nodes = step.node.args[1:3]
            a, b = (ctx.split_by_forward_sign(t, n if isinstance(n, torch.fx.Node) else None)
                    for t, n in zip((a, b), nodes))
            return Split(torch.where(condition, a.pos, b.pos), torch.where(condition, a.neg, b.neg))
        return torch.where(condition, a, b)
