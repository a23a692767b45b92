"""Elementwise nonlinearities ``y = f(x)``: Rescale and RevealCancel.

Rescale (2017 paper): the multiplier is ``m = dy / dx``; where ``|dx|`` is below a threshold it is the derivative
``f'(x0)`` at the reference (the limit). In the Rescale pass the op is a custom autograd function whose forward
computes ``f`` on the references and whose backward multiplies by ``m`` (the sequences' values broadcast over
the references, never copied).

RevealCancel (2017 paper), in the RevealCancel pass: with ``dx+`` and ``dx-`` the positive and negative parts of
the input's difference,

    dy+ = (f(x0 + dx+) - f(x0)) / 2 + (f(x0 + dx- + dx+) - f(x0 + dx-)) / 2
    dy- = (f(x0 + dx-) - f(x0)) / 2 + (f(x0 + dx+ + dx-) - f(x0 + dx+)) / 2

and the multipliers are ``m+ = dy+ / dx+`` and ``m- = dy- / dx-``. Where a part is exactly zero its multiplier
is the limit ``(f'(x0) + f'(x0 + other part)) / 2``: the value the original code's pseudocount (1e-7 added
inside ``f``) approximates, without the summation-to-delta leak the pseudocount has. Rescale in that pass
(genomics mode) scales both parts by ``dy / dx``.

Adding an activation is one registry line (:mod:`dnalift.attribution.registry`); a closed-form derivative in
:data:`DERIVATIVES` is optional (autograd gives it otherwise).
"""

from __future__ import annotations

import torch

from dnalift.attribution.kinds.base import Kind
from dnalift.attribution.pairing import replace_where
from dnalift.attribution.parts import Split


def _prelu_derivative(t, rest):
    weight = rest[0]
    if weight.numel() > 1 and t.dim() > 1:
        weight = weight.reshape([1, -1] + [1] * (t.dim() - 2))
    return torch.where(t > 0, torch.ones((), dtype=t.dtype, device=t.device), weight.to(t.dtype))


#: closed-form derivatives ``f'(t)`` of common activations, by ATen name (``rest``: the op's other arguments)
DERIVATIVES = {
    "relu": lambda t, rest: (t > 0).to(t.dtype),
    "leaky_relu": lambda t, rest: torch.where(t > 0, 1.0, float(rest[0]) if rest else 0.01).to(t.dtype),
    "prelu": _prelu_derivative,
    "_prelu_kernel": _prelu_derivative,
    "sigmoid": lambda t, rest: torch.sigmoid(t).mul_(torch.sigmoid(-t)),
    "tanh": lambda t, rest: torch.tanh(t).square_().neg_().add_(1),
    "exp": lambda t, rest: torch.exp(t),
}


#: piecewise-linear activations: ``dy / dx`` is a slope (or lies between two) for every ``dx != 0``, however small,
#: so only ``dx == 0`` needs the derivative
PIECEWISE_LINEAR = {"relu", "leaky_relu", "prelu", "_prelu_kernel", "relu6", "hardtanh", "clamp", "clamp_min",
                    "clamp_max", "abs"}


def derivative(step_name: str, fn, t: torch.Tensor, rest: tuple, kwargs: dict) -> torch.Tensor:
    """Elementwise derivative of ``fn(t, *rest)`` at ``t`` (same shape as ``t``)."""
    closed = DERIVATIVES.get(step_name)
    if closed is not None and not kwargs:
        return closed(t, rest).expand_as(t)
    with torch.enable_grad():
        point = t.detach().requires_grad_(True)
        out = fn(point, *rest, **kwargs)
        (grad,) = torch.autograd.grad(out, point, torch.ones_like(out))
    return grad


def rescale_multiplier(step_name, fn, rest, kwargs, *, dx, dy, ref_in, eps, inplace=False) -> torch.Tensor:
    """The Rescale multiplier ``dy / dx``; the derivative at the reference where ``|dx| < eps`` (where ``dx == 0``
    for a piecewise-linear activation).

    Parameters
    ----------
    dx, dy : Tensor
        Differences from reference of the op's input and output, shape of the reference values.
    ref_in : Tensor
        The op's input on the references.
    inplace : bool
        Overwrite ``dx`` and ``dy`` (fresh temporaries) instead of allocating.
    """
    if step_name in PIECEWISE_LINEAR:
        m = dy.div_(dx) if inplace and not dy.requires_grad else dy / dx
        # 0/0 is the only undefined ratio: one reduction finds whether there is any (NaN propagates to the sum)
        if bool(torch.isnan(m.sum())):
            replace_where(m, dx == 0, lambda rows: derivative(step_name, fn, ref_in[rows], rest, kwargs))
        return m
    if inplace and not dy.requires_grad:
        m = dy.div_(dx)
        small = dx.abs_() < eps
    else:
        m = dy / dx
        small = dx.abs() < eps
    replace_where(m, small, lambda rows: derivative(step_name, fn, ref_in[rows], rest, kwargs))
    return m


class RescaleFunction(torch.autograd.Function):
    """Forward: the op on the references. Backward: the gradient times the Rescale multiplier."""

    @staticmethod
    def forward(ctx, ref_in, x_in, x_out, step_name, fn, rest, kwargs, pairing, dim, eps):
        ref_out = fn(ref_in, *rest, **kwargs)
        m = rescale_multiplier(step_name, fn, rest, kwargs, dx=pairing.diff(x_in, ref_in, dim),
                               dy=pairing.diff(x_out, ref_out, dim), ref_in=ref_in, eps=eps, inplace=True)
        ctx.save_for_backward(m)
        return ref_out

    @staticmethod
    def backward(ctx, grad):
        (m,) = ctx.saved_tensors
        return (grad * m,) + (None,) * 9


class KnownParts(torch.autograd.Function):
    """``(pos * m+, neg * m-)`` whose values ``(dy+, dy-)`` are already known: backward multiplies by m+-."""

    @staticmethod
    def forward(ctx, pos, neg, m_pos, m_neg, dy_pos, dy_neg):
        ctx.save_for_backward(m_pos, m_neg)
        return dy_pos, dy_neg

    @staticmethod
    def backward(ctx, g_pos, g_neg):
        m_pos, m_neg = ctx.saved_tensors
        return g_pos * m_pos, g_neg * m_neg, None, None, None, None


def revealcancel_multipliers(step_name, fn, rest, kwargs, *, pos, neg, ref_in, dy, eps):
    """``(m+, m-)`` of RevealCancel at ``y = f(x)`` for the parts ``pos`` and ``neg`` (detached).

    Parameters
    ----------
    pos, neg : Tensor
        The positive and negative parts of the input's difference.
    ref_in : Tensor
        The input on the references.
    dy : Tensor
        The output's difference ``f(x) - f(x0)``.

    Returns
    -------
    m_pos, m_neg, dy_pos, dy_neg : Tensor
        The multipliers and the parts of the output's difference.
    """
    at_pos = ref_in + pos
    at_neg = ref_in + neg
    # dy+ = (f(x0+dx+) - f(x0))/2 + (f(x0+dx+ +dx-) - f(x0+dx-))/2 = (f(x0+dx+) - f(x0+dx-) + dy)/2
    dy_pos = (fn(at_pos, *rest, **kwargs) - fn(at_neg, *rest, **kwargs)).add_(dy).mul_(0.5)
    dy_neg = dy - dy_pos
    m_pos = dy_pos / pos
    m_neg = dy_neg / neg
    # The limit of dy+/dx+ as dx+ -> 0 is (f'(x0) + f'(x0 + dx-)) / 2, and symmetrically; computed only on the
    # batch rows that have such entries.
    # (A reduction first: most batches have no such entry, and it costs one read instead of a mask and a search.)
    if pos.numel() and pos.amin() < eps:
        replace_where(m_pos, pos < eps, lambda rows: derivative(step_name, fn, at_neg[rows], rest, kwargs).add_(
            derivative(step_name, fn, ref_in[rows], rest, kwargs)).mul_(0.5))
    if neg.numel() and neg.amax() > -eps:
        replace_where(m_neg, neg > -eps, lambda rows: derivative(step_name, fn, at_pos[rows], rest, kwargs).add_(
            derivative(step_name, fn, ref_in[rows], rest, kwargs)).mul_(0.5))
    return m_pos, m_neg, dy_pos, dy_neg


class Nonlinear(Kind):
    """An elementwise function of one input-dependent tensor (other arguments are constants)."""

    name = "nonlinear"
    label = "Rescale"

    def check(self, node, dependent):
        reason = super().check(node, dependent)
        return "a nonlinearity whose parameters depend on the input" if reason else None

    def x_inputs(self, step) -> bool:
        return True

    def x_output(self, step) -> bool:
        return True

    def label_for(self, step) -> str:
        return "RevealCancel" if step.mode == "revealcancel" else "Rescale"

    def reference(self, step, args, kwargs, ctx):
        source = step.node.args[0]
        return RescaleFunction.apply(args[0], ctx.x_env[source.name], ctx.x_env[step.node.name], step.name,
                                     step.fn, tuple(args[1:]), kwargs, ctx.pairing, ctx.dim(source), ctx.eps)

    def difference(self, step, args, kwargs, deltas, ctx, ref_out):
        source = step.node.args[0]
        ref_in, rest = args[0], tuple(args[1:])
        dy = ctx.forward_diff(step.node)
        d = deltas[0]
        if step.mode != "revealcancel":
            m = rescale_multiplier(step.name, step.fn, rest, kwargs, dx=ctx.forward_diff(source), dy=dy,
                                   ref_in=ref_in, eps=ctx.eps)
            if isinstance(d, Split):
                return Split(d.pos * m, d.neg * m)
            return d * m
        parts = ctx.split_by_forward_sign(d, source)
        m_pos, m_neg, dy_pos, dy_neg = revealcancel_multipliers(
            step.name, step.fn, rest, kwargs, pos=parts.pos.detach(), neg=parts.neg.detach(), ref_in=ref_in,
            dy=dy, eps=ctx.eps)
        return Split(*KnownParts.apply(parts.pos, parts.neg, m_pos, m_neg, dy_pos, dy_neg))
