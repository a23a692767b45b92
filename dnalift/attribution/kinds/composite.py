"""Ops computed as a chain of the other rules, so that they sum to delta exactly.

Each op here is written once as a chain of elementary steps over a :class:`Chain`: linear maps, constant shifts,
elementwise nonlinearities (Rescale), products (2.3.5) and bilinear maps. The Rescale pass runs the chain on the
references with each step's DeepLIFT backward; the RevealCancel pass runs it on the differences. Inside a chain the
sequences' values are lined up with each reference (one row per pair).

The decompositions (DESIGN.md, "inside the network"):

* softmax over ``dim``: ``e = exp(z - c)``, ``s = sum(e)``, ``y = e * (1 / s)``, with ``c`` the larger of the two
  maxima over ``dim`` of the sequence and of its reference (a constant for the pair: softmax does not change,
  and ``exp`` cannot overflow); log-softmax: ``(z - c) - log(s)``.
* division of two input-dependent tensors: ``a * (1 / b)``.
* layer norm: ``c = x - mean(x)`` (linear), ``v = mean(c ** 2) + eps``, ``y = c * rsqrt(v)``, then the affine
  ``y * weight + bias``; RMS norm: ``x * rsqrt(mean(x ** 2) + eps) * weight``; group norm: layer norm over each
  group of channels, then the per-channel affine.
* scaled dot-product attention: ``softmax(Q K^T * scale + mask) V`` with the bilinear rule for both products.
* p-norms over some dimensions (``torch.norm``, ``torch.linalg.vector_norm``, ``F.normalize``'s norm):
  ``s = sum(x ** 2)`` (``sum(|x| ** p)``), then ``s ** (1 / p)`` with its exact secant multiplier
  (``1 / (sqrt(s) + sqrt(s0))`` for p = 2), finite where ``s`` and ``s0`` are 0 (0 there: the norm does not
  move). ``F.normalize``'s division is the quotient rule below.

Positive and negative parts: a chain takes the whole difference of its inputs and gives a whole difference; where
a RevealCancel unit downstream needs parts, the output's difference is split by the sign of its forward difference.
Its elementwise steps use Rescale in every mode.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch

from dnalift.attribution.kinds.base import Kind, batch_dim_of, iter_nodes, value_meta
from dnalift.attribution.kinds.nonlinear import RescaleFunction, rescale_multiplier
from dnalift.attribution.kinds.product import BilinearFunction, ProductFunction, product_coefficients
from dnalift.attribution.pairing import Pairing
from dnalift.attribution.parts import total
from dnalift.graph import op_name

_SAME_ROWS = Pairing(0, 1)  # inside a chain the sequences' values have one row per reference row


@dataclasses.dataclass
class Value:
    """A value inside a chain: on the sequences (lined up with the references), on the references, and (RevealCancel
    pass) its difference."""

    x: torch.Tensor
    ref: torch.Tensor
    d: torch.Tensor | None = None


class Chain:
    """Elementary steps with their DeepLIFT rule, for one pass.

    Parameters
    ----------
    eps : float
        Near-zero threshold of Rescale.
    differences : bool
        True in the RevealCancel pass (differences are carried); False in the Rescale pass (the references are
        differentiated).
    """

    def __init__(self, eps: float, differences: bool):
        self.eps = eps
        self.differences = differences

    def linear(self, fn: Callable, v: Value) -> Value:
        """``fn`` linear without a constant term (sums, means, views, scaling by constants)."""
        return Value(fn(v.x), fn(v.ref), fn(v.d) if self.differences else None)

    def shift(self, v: Value, c) -> Value:
        """Add a constant (the same for a sequence and its reference): differences do not change."""
        return Value(v.x + c, v.ref + c, v.d)

    def nonlinear(self, name: str, fn: Callable, v: Value) -> Value:
        """An elementwise function with the Rescale rule."""
        with torch.no_grad():
            x_out = fn(v.x)
        if not self.differences:
            return Value(x_out, RescaleFunction.apply(v.ref, v.x, x_out, name, fn, (), {}, _SAME_ROWS, 0, self.eps))
        ref_out = fn(v.ref)
        m = rescale_multiplier(name, fn, (), {}, dx=v.x - v.ref, dy=x_out - ref_out, ref_in=v.ref, eps=self.eps)
        return Value(x_out, ref_out, v.d * m)

    def product(self, a: Value, b: Value) -> Value:
        """``a * b`` (broadcasting) with the product rule."""
        x_out = a.x * b.x
        if not self.differences:
            return Value(x_out, ProductFunction.apply(a.ref, b.ref, a.x, b.x, _SAME_ROWS, (0, 0)))
        m_a, m_b = product_coefficients(a.x, b.x, a.ref, b.ref, _SAME_ROWS, (0, 0))
        return Value(x_out, a.ref * b.ref, a.d * m_a + b.d * m_b)

    def bilinear(self, call: Callable, a: Value, b: Value) -> Value:
        """``call(a, b)`` linear in each operand, with the bilinear product rule."""
        x_out = call(a.x, b.x)
        a_mid, b_mid = ((a.x + a.ref) / 2).detach(), ((b.x + b.ref) / 2).detach()
        if not self.differences:
            return Value(x_out, BilinearFunction.apply(a.ref, b.ref, a_mid, b_mid, call))
        return Value(x_out, call(a.ref, b.ref), call(a.d, b_mid) + call(a_mid, b.d))

    def exact(self, fn: Callable, v: Value, multiplier: Callable) -> Value:
        """An elementwise step whose multiplier ``multiplier(x_in, ref_in, x_out, ref_out)`` is known in closed
        form (finite everywhere), in place of Rescale's ``dy / dx`` with the derivative near ``dx = 0``."""
        ref_in = v.ref.detach()
        with torch.no_grad():
            x_out, ref_out = fn(v.x), fn(ref_in)
            m = multiplier(v.x, ref_in, x_out, ref_out)
        if not self.differences:
            return Value(x_out, ref_out + (v.ref - ref_in) * m)  # the value ref_out, the gradient m
        return Value(x_out, ref_out, v.d * m)


# ------------------------------------------------------------------------------------------------ chains
def softmax_chain(ch: Chain, z: Value, dim: int, *, log: bool = False) -> Value:
    """softmax (or log-softmax) over ``dim`` as ``exp``, ``sum``, ``1 / s`` and a product."""
    top = torch.maximum(z.x.amax(dim, keepdim=True), z.ref.amax(dim, keepdim=True)).detach()
    shifted = ch.shift(z, -top)
    e = ch.nonlinear("exp", torch.exp, shifted)
    s = ch.linear(lambda t: t.sum(dim, keepdim=True), e)
    if log:
        log_s = ch.nonlinear("log", torch.log, s)
        return Value(shifted.x - log_s.x, shifted.ref - log_s.ref,
                     shifted.d - log_s.d if ch.differences else None)
    return ch.product(e, ch.nonlinear("reciprocal", torch.reciprocal, s))


def _affine(ch: Chain, y: Value, weight, bias, shape) -> Value:
    if weight is not None:
        w = weight.reshape(shape)
        y = ch.linear(lambda t: t * w, y)
    if bias is not None:
        y = ch.shift(y, bias.reshape(shape))
    return y


def layer_norm_chain(ch: Chain, x: Value, normalized_shape, weight=None, bias=None, eps=1e-5, *_) -> Value:
    """``layer_norm`` over the last ``len(normalized_shape)`` dimensions."""
    dims = tuple(range(-len(normalized_shape), 0))
    centred = ch.linear(lambda t: t - t.mean(dims, keepdim=True), x)
    variance = ch.shift(ch.linear(lambda t: t.mean(dims, keepdim=True),
                                  ch.nonlinear("square", torch.square, centred)), eps)
    y = ch.product(centred, ch.nonlinear("rsqrt", torch.rsqrt, variance))
    return _affine(ch, y, weight, bias, tuple(normalized_shape))


def rms_norm_chain(ch: Chain, x: Value, normalized_shape, weight=None, eps=None) -> Value:
    """``rms_norm`` over the last ``len(normalized_shape)`` dimensions."""
    dims = tuple(range(-len(normalized_shape), 0))
    if eps is None:
        eps = torch.finfo(x.ref.dtype).eps
    mean_square = ch.shift(ch.linear(lambda t: t.mean(dims, keepdim=True),
                                     ch.nonlinear("square", torch.square, x)), eps)
    y = ch.product(x, ch.nonlinear("rsqrt", torch.rsqrt, mean_square))
    return _affine(ch, y, weight, None, tuple(normalized_shape))


def group_norm_chain(ch: Chain, x: Value, num_groups, weight=None, bias=None, eps=1e-5, *_) -> Value:
    """``group_norm``: layer norm over each group of channels (dim 1), then the per-channel affine."""
    shape = x.ref.shape
    grouped_shape = (shape[0], num_groups, -1)

    def group(t):
        return t.reshape(grouped_shape)

    normed = layer_norm_chain(ch, ch.linear(group, x), (math.prod(shape[1:]) // num_groups,), eps=eps)
    y = ch.linear(lambda t: t.reshape(shape), normed)
    affine_shape = (-1,) + (1,) * (len(shape) - 2)
    return _affine(ch, y, weight, bias, affine_shape)


def attention_chain(ch: Chain, q: Value, k: Value, v: Value, attn_mask=None, dropout_p=0.0, is_causal=False,
                    scale=None, enable_gqa=False) -> Value:
    """``scaled_dot_product_attention`` (eval mode: no dropout)."""
    size = q.ref.shape[-1]
    factor = scale if scale is not None else 1 / math.sqrt(size)
    scores = ch.bilinear(lambda a, b: (a @ b.transpose(-2, -1)) * factor, q, k)
    length, source = scores.ref.shape[-2], scores.ref.shape[-1]
    if is_causal:
        causal = torch.ones(length, source, dtype=torch.bool, device=scores.ref.device).tril()
        scores = ch.shift(scores, torch.zeros((), dtype=scores.ref.dtype, device=scores.ref.device)
                          .masked_fill(~causal, float("-inf")))
    if attn_mask is not None:
        mask = attn_mask
        if mask.dtype == torch.bool:
            mask = torch.zeros(mask.shape, dtype=scores.ref.dtype, device=mask.device).masked_fill(~mask,
                                                                                                    float("-inf"))
        scores = ch.shift(scores, mask)
    weights = softmax_chain(ch, scores, -1)
    return ch.bilinear(lambda a, b: a @ b, weights, v)


def quotient_chain(ch: Chain, a: Value, b: Value) -> Value:
    """``a / b`` of two input-dependent tensors: ``a * (1 / b)``."""
    return ch.product(a, ch.nonlinear("reciprocal", torch.reciprocal, b))


# --------------------------------------------------------------------------------------------- vector norms
def _root_multiplier(p: float, eps: float) -> Callable:
    """``(s^(1/p) - s0^(1/p)) / (s - s0)`` for sums ``s, s0 >= 0``; 0 where both are 0 (the norm does not move and
    has no derivative there); for ``p = 2`` in the form ``1 / (sqrt s + sqrt s0)``, exact at every ``s``."""
    def multiplier(x_in, ref_in, x_out, ref_out):
        zero = torch.zeros((), dtype=ref_out.dtype, device=ref_out.device)
        if p == 2:
            total = x_out + ref_out
            return torch.where(total > 0, 1 / torch.where(total > 0, total, 1), zero)
        dx = x_in - ref_in
        secant = (x_out - ref_out) / torch.where(dx != 0, dx, 1)
        slope = torch.where(ref_in > 0, ref_in.clamp(min=torch.finfo(ref_in.dtype).tiny) ** (1 / p - 1) / p, zero)
        use_secant = (dx.abs() >= eps) | ((ref_in == 0) & (dx != 0))
        return torch.where(use_secant, secant, slope)
    return multiplier


def _order(ord) -> float | None:
    """A vector norm's order as a number (``None`` and ``"fro"``: 2), or None for one without a rule."""
    if ord is None or ord == "fro":
        return 2.0
    if isinstance(ord, (int, float)) and not isinstance(ord, bool) and math.isfinite(ord) and ord >= 1:
        return float(ord)
    return None


def _dims(dim) -> tuple:
    return (dim,) if isinstance(dim, int) else tuple(dim)


def norm_chain(ch: Chain, x: Value, ord=2, dim=None, keepdim=False, *_, **__) -> Value:
    """A p-norm over ``dim`` (``linalg_vector_norm``, ``linalg_norm``, ``norm``): ``|x|`` (``x ** 2`` for
    p = 2) raised to ``p`` (Rescale), its sum (linear), then the root with its exact secant
    (:func:`_root_multiplier`). A ``dtype`` is ignored: the engine keeps its own."""
    p, dims = _order(ord), _dims(dim)
    if p == 2:
        powered = ch.nonlinear("square", torch.square, x)
    else:
        powered = ch.nonlinear("abs", torch.abs, x)
        if p != 1:
            powered = ch.nonlinear("pow", lambda t: t.pow(p), powered)
    total = ch.linear(lambda t: t.sum(dims, keepdim=keepdim), powered)
    if p == 1:
        return total
    root = torch.sqrt if p == 2 else (lambda t: t.pow(1 / p))
    return ch.exact(root, total, _root_multiplier(p, ch.eps))


def norm_options(node) -> str | None:
    """A vector norm of order ``p >= 1`` (finite) over given dimensions that leave the batch alone."""
    args, kwargs = node.args, node.kwargs
    default = None if op_name(node.target) == "linalg_norm" else 2
    ord = args[1] if len(args) > 1 else kwargs.get("ord", kwargs.get("p", default))
    dim = args[2] if len(args) > 2 else kwargs.get("dim")
    if _order(ord) is None:
        largest = "; write the largest |x| as x.abs().amax(dim)" if ord in (math.inf, -math.inf) else ""
        return f"a norm of order {ord!r} (rules exist for finite orders >= 1{largest})"
    if dim is None or not _dims(dim):
        return "a norm over every dimension, the batch's included (give dim)"
    rank = len(getattr(value_meta(node.args[0]), "shape", ()))
    batch = batch_dim_of(node.args[0])
    if batch is not None and any(d % max(rank, 1) == batch for d in _dims(dim)):
        return "a norm over the batch dimension (give the dims of one row)"
    if op_name(node.target) == "linalg_norm" and len(_dims(dim)) == 2 and ord not in (None, "fro"):
        return f"a matrix norm of order {ord!r} (only the Frobenius norm has a rule)"
    return None


# -------------------------------------------------------------------------------------------------- kind
class Composite(Kind):
    """An op run as a chain of elementary rules.

    Parameters
    ----------
    chain : callable
        ``chain(ch, *values, *other arguments)``: the op written with a :class:`Chain`.
    inputs : tuple of int
        Positions of the arguments that may depend on the input (become chain values).
    label : str
        The rule, for ``dnalift info``.
    """

    resplits = True

    name = "composite"

    def __init__(self, chain: Callable, *, inputs: tuple = (0,), label: str, options: Callable | None = None):
        self.chain = chain
        self.inputs = inputs
        self.label = label
        self.options = options
        self.max_dependent = len(inputs)

    def check(self, node, dependent):
        others = [a for i, a in enumerate(node.args) if i not in self.inputs] + list(node.kwargs.values())
        if any(n.name in dependent for a in others for n in iter_nodes(a)):
            return "an op whose parameters depend on the input"
        if self.options is not None:
            return self.options(node)
        return None

    def x_inputs(self, step) -> bool:
        return True

    def _run(self, step, args, kwargs, ctx, deltas):
        ch = Chain(ctx.eps, differences=deltas is not None)
        values = []
        rest = []
        for i, arg in enumerate(args):
            if i not in self.inputs:
                rest.append(arg)
                continue
            node = step.node.args[i]
            if isinstance(node, torch.fx.Node) and node.name in ctx.x_env:
                dim = ctx.dim(node)
                x = ctx.pairing.expand(ctx.x_env[node.name], dim)
                d = total(deltas[i]) if deltas is not None else None
                if deltas is not None and d is None:
                    d = torch.zeros_like(arg)
            else:  # a constant operand
                x, d = arg, (torch.zeros_like(arg) if deltas is not None else None)
            values.append(Value(x, arg, d))
        return self.chain(ch, *values, *rest, **kwargs)

    def reference(self, step, args, kwargs, ctx):
        return self._run(step, args, kwargs, ctx, None).ref

    def difference(self, step, args, kwargs, deltas, ctx, ref_out):
        return self._run(step, args, kwargs, ctx, deltas).d


def softmax_options(node) -> str | None:
    """Softmax over a dimension with no dtype conversion (``half_to_float`` False)."""
    if len(node.args) > 2 and node.args[2] is True:
        return "softmax with a dtype conversion"
    return None
