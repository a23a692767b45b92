"""Products of two input-dependent tensors: gates (``a * b``) and bilinear maps (``matmul``, ``bmm``, ``einsum``).

The 2016 paper's rule (section 2.3.5), generalised to any map ``f(A, B)`` that is linear in each argument:

    f(A, B) - f(A0, B0) = f(dA, B0 + dB / 2) + f(A0 + dA / 2, dB)

which holds exactly, so the rule sums to delta. The multipliers of ``A`` are those of ``f(., B0 + dB/2)`` and
the multipliers of ``B`` those of ``f(A0 + dA/2, .)``: for ``a * b``, ``m_a = (b0 + b) / 2`` and
``m_b = (a0 + a) / 2``.

RevealCancel pass: for ``a * b`` each part is scaled by its coefficient, the parts swapped where it is negative;
for a bilinear map each operand's difference is split by the sign of its forward difference and each term goes
to the part of its sign, as in a weighted layer whose weight is the other operand's midpoint.
"""

from __future__ import annotations

import torch

from dnalift.attribution.kinds.base import Kind, iter_nodes
from dnalift.attribution.pairing import Pairing, reduce_to
from dnalift.attribution.parts import Split, add_all, scale, tensor_sum, total


def product_coefficients(a_x, b_x, a_ref, b_ref, pairing: Pairing, dims):
    """``m_a = b0 + db/2`` and ``m_b = a0 + da/2`` in the shapes of the reference values."""
    da = pairing.diff(a_x, a_ref, dims[0])
    db = pairing.diff(b_x, b_ref, dims[1])
    return b_ref + db / 2, a_ref + da / 2


class ProductFunction(torch.autograd.Function):
    """Forward: ``a * b`` on the references. Backward: the product rule's multipliers."""

    @staticmethod
    def forward(ctx, a_ref, b_ref, a_x, b_x, pairing, dims):
        m_a, m_b = product_coefficients(a_x, b_x, a_ref, b_ref, pairing, dims)
        ctx.shapes = (a_ref.shape, b_ref.shape)
        ctx.save_for_backward(m_a, m_b)
        return a_ref * b_ref

    @staticmethod
    def backward(ctx, grad):
        m_a, m_b = ctx.saved_tensors
        a_shape, b_shape = ctx.shapes
        return reduce_to(grad * m_a, a_shape), reduce_to(grad * m_b, b_shape), None, None, None, None


class Product(Kind):
    """``mul`` of two input-dependent tensors."""

    name = "product"
    label = "product rule (2.3.5)"
    max_dependent = 2

    def check(self, node, dependent):
        return None

    def x_inputs(self, step) -> bool:
        return True

    def reference(self, step, args, kwargs, ctx):
        a, b = step.node.args[0], step.node.args[1]
        return ProductFunction.apply(args[0], args[1], ctx.x_env[a.name], ctx.x_env[b.name], ctx.pairing,
                                     (ctx.dim(a), ctx.dim(b)))

    def difference(self, step, args, kwargs, deltas, ctx, ref_out):
        a, b = step.node.args[0], step.node.args[1]
        m_a, m_b = product_coefficients(ctx.x_env[a.name], ctx.x_env[b.name], args[0], args[1], ctx.pairing,
                                        (ctx.dim(a), ctx.dim(b)))
        return add_all([scale(deltas[0], m_a), scale(deltas[1], m_b)])


# ---------------------------------------------------------------------------------------------- bilinear
def bilinear_vjp(call, grad, a_point, b_point, which: int):
    """The gradient of ``call(a, b)`` with respect to operand ``which`` at the given points (linear in it)."""
    with torch.enable_grad():
        if which == 0:
            var = a_point.detach().requires_grad_(True)
            out = call(var, b_point)
        else:
            var = b_point.detach().requires_grad_(True)
            out = call(a_point, var)
        (g,) = torch.autograd.grad(out, var, grad)
    return g


class BilinearFunction(torch.autograd.Function):
    """Forward: ``call(a, b)`` on the references. Backward: the bilinear rule's multipliers."""

    @staticmethod
    def forward(ctx, a_ref, b_ref, a_mid, b_mid, call):
        ctx.call = call
        ctx.save_for_backward(a_mid, b_mid)
        return call(a_ref, b_ref)

    @staticmethod
    def backward(ctx, grad):
        a_mid, b_mid = ctx.saved_tensors
        g_a = bilinear_vjp(ctx.call, grad, a_mid, b_mid, 0)
        g_b = bilinear_vjp(ctx.call, grad, a_mid, b_mid, 1)
        return g_a, g_b, None, None, None


def split_bilinear(call, d, other_mid, which: int, parts_of) -> Split:
    """``call`` applied to a difference with a signed coefficient operand, as positive and negative parts.

    Parameters
    ----------
    d : Tensor
        The difference of the operand at position ``which``.
    other_mid : Tensor
        The other operand's midpoint (the coefficients).
    parts_of : callable
        Splits ``d`` into parts by the sign of its forward difference.
    """
    parts = parts_of(d)
    w_pos, w_neg = other_mid.clamp(min=0), other_mid.clamp(max=0)

    def apply(t, w):
        return call(t, w) if which == 0 else call(w, t)

    pos = apply(parts.pos, w_pos) + apply(parts.neg, w_neg)
    neg = apply(parts.pos, w_neg) + apply(parts.neg, w_pos)
    return Split(pos, neg)


class Bilinear(Kind):
    """``matmul``/``mm``/``bmm``/``einsum`` of two input-dependent tensors (attention scores and values).

    Parameters
    ----------
    einsum : bool
        The op's arguments are ``(equation, [a, b])`` instead of ``(a, b, ...)``.
    """

    resplits = True

    name = "product"
    label = "bilinear product rule"
    max_dependent = 2

    def __init__(self, *, einsum: bool = False):
        self.einsum = einsum

    def check(self, node, dependent):
        a, b = self.operand_nodes(node)
        if a is None:
            return "an einsum of more than two tensors"
        operands = [n for n in (a, b) if isinstance(n, torch.fx.Node)]
        operand_args = (1,) if self.einsum else (0, 1)
        others = [x for i, x in enumerate(node.args) if i not in operand_args]
        if any(n.name in dependent for x in others for n in iter_nodes(x)):
            return "a product whose other arguments depend on the input"
        if not any(n.name in dependent for n in operands):
            return "a product with no input-dependent operand"
        return None

    def operand_nodes(self, node):
        if self.einsum:
            operands = node.args[1]
            return (operands[0], operands[1]) if len(operands) == 2 else (None, None)
        return node.args[0], node.args[1]

    def caller(self, step, args):
        if self.einsum:
            equation = args[0]
            return lambda a, b: step.fn(equation, [a, b])
        rest = args[2:]
        return lambda a, b: step.fn(a, b, *rest)

    def operands(self, args):
        return (args[1][0], args[1][1]) if self.einsum else (args[0], args[1])

    def x_inputs(self, step) -> bool:
        return True

    def midpoints(self, step, args, ctx):
        """The operands on the references and their midpoints ``(x + ref) / 2`` (constants: themselves)."""
        a_ref, b_ref = self.operands(args)
        return a_ref, b_ref, self._midpoint(a_ref, self.operand_nodes(step.node)[0], ctx), \
            self._midpoint(b_ref, self.operand_nodes(step.node)[1], ctx)

    @staticmethod
    def _midpoint(ref, node, ctx):
        if not isinstance(node, torch.fx.Node) or node.name not in ctx.x_env:
            return ref
        return ref + ctx.pairing.diff(ctx.x_env[node.name], ref, ctx.dim(node)) / 2

    def reference(self, step, args, kwargs, ctx):
        a_ref, b_ref, a_mid, b_mid = self.midpoints(step, args, ctx)
        return BilinearFunction.apply(a_ref, b_ref, a_mid.detach(), b_mid.detach(), self.caller(step, args))

    def difference(self, step, args, kwargs, deltas, ctx, ref_out):
        a_node, b_node = self.operand_nodes(step.node)
        d_a, d_b = (ctx.d_env.get(n.name) if isinstance(n, torch.fx.Node) else None for n in (a_node, b_node))
        _, _, a_mid, b_mid = self.midpoints(step, args, ctx)
        call = self.caller(step, args)
        a_mid, b_mid = a_mid.detach(), b_mid.detach()
        if not step.needs_split:
            return add_all([call(total(d_a), b_mid) if d_a is not None else None,
                            call(a_mid, total(d_b)) if d_b is not None else None])
        parts = [split_bilinear(call, total(d), other, which, lambda t, n=node: ctx.split_by_forward_sign(t, n))
                 for d, node, other, which in ((d_a, a_node, b_mid, 0), (d_b, b_node, a_mid, 1)) if d is not None]
        return Split(tensor_sum(p.pos for p in parts), tensor_sum(p.neg for p in parts))
