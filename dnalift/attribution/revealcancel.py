"""RevealCancel mode: differences from reference carried forward as positive and negative parts.

In this mode the engine runs, beside the references' own values, their differences from the sequence
``dx = x - ref`` through the graph. Where a RevealCancel nonlinearity will need them, a difference is a
:class:`Split` into a positive part ``pos`` and a negative part ``neg`` (``dx = pos + neg``). Every step maps
the differences of its inputs to the difference of its output by a linear map whose coefficients are detached
from autograd (they are the DeepLIFT multipliers), so the gradient of the target's difference with respect to
the input difference is exactly the input multipliers.

Conventions (the 2017 paper and DESIGN.md; where the original code has none, the choice keeps
summation-to-delta):

* conv / linear / matmul: each term ``w * dx`` goes to the positive or negative part of the output by its
  sign: ``dy+ = W+ dx+ + W- dx-`` and ``dy- = W- dx+ + W+ dx-`` with ``dx+``/``dx-`` the positive and negative
  parts of the *total* input difference (the bias cancels). Going back, an input with ``dx > 0`` gets
  ``sum m+ w+ + m- w-``, one with ``dx < 0`` gets ``sum m+ w- + m- w+`` and one with ``dx = 0`` gets the
  average ``sum (m+ + m-) w / 2``.
* add, mean, sum, average pooling, views, cat, pad, dropout: parts are routed unchanged; sub and negative
  constant scales swap them; batch norm (eval) scales each channel by ``gamma / sqrt(var + eps)`` and swaps
  where that is negative.
* RevealCancel at ``y = f(x)``: ``dy+ = (f(x0 + dx+) - f(x0)) / 2 + (f(x0 + dx- + dx+) - f(x0 + dx-)) / 2``,
  ``dy-`` symmetrically; the multipliers are ``dy+ / dx+`` and ``dy- / dx-``.
* Rescale at ``y = f(x)`` (genomics mode): both parts are scaled by ``dy / dx``.
* max (a RevealCancel unit fed by a max pool): the exact max rule is a linear map with coefficients in
  [0, 1], so each part is routed through it as it is (``dy+ = sum a dx+``).
* product ``a * b`` (paper 2.3.5): ``dy = dA (b0 + db/2) + db (a0 + da/2)``; each part is scaled by those
  coefficients, swapping where a coefficient is negative.
* an unsplit difference reaching a RevealCancel unit (the input itself, or a branch that never went through a
  weighted layer) is split by its sign, with an exact 0 counted half to each part.
"""

from __future__ import annotations

import dataclasses

import torch

from dnalift.attribution import ops
from dnalift.attribution.rules import (
    MaxWindows,
    Pairing,
    derivative,
    max_rule_terms,
    product_coefficients,
    replace_on_rows,
    rescale_multiplier,
)


@dataclasses.dataclass
class Split:
    """A difference from reference as a positive and a negative part (``pos + neg`` is the difference)."""

    pos: torch.Tensor
    neg: torch.Tensor

    def total(self) -> torch.Tensor:
        return self.pos + self.neg


def total(d):
    """The whole difference of a :class:`Split` or plain tensor."""
    return d.total() if isinstance(d, Split) else d


def sign_weights(d: torch.Tensor) -> torch.Tensor:
    """1 where ``d > 0``, 0 where ``d < 0``, 1/2 where ``d == 0`` (detached)."""
    return torch.sign(d.detach()).add_(1).mul_(0.5)


def as_split(d) -> Split:
    """Split a difference by its sign; a :class:`Split` stays as it is."""
    if isinstance(d, Split):
        return d
    p = sign_weights(d)
    return Split(d * p, d * (1 - p))


def map_parts(d, fn):
    """Apply a linear map with non-negative coefficients to each part."""
    if d is None:
        return None
    if isinstance(d, Split):
        pos, neg = fn(d.pos), fn(d.neg)
        if isinstance(pos, (list, tuple)):
            return [Split(p, n) for p, n in zip(pos, neg)]
        return Split(pos, neg)
    return fn(d)


def scale(d, c):
    """Multiply a difference by a constant ``c`` (number or tensor), swapping parts where ``c < 0``."""
    if d is None:
        return None
    if not isinstance(d, Split):
        return d * c
    if not isinstance(c, torch.Tensor):
        return Split(d.pos * c, d.neg * c) if c >= 0 else Split(d.neg * c, d.pos * c)
    c = c.detach()
    cp, cn = c.clamp(min=0), c.clamp(max=0)
    return Split(cp * d.pos + cn * d.neg, cp * d.neg + cn * d.pos)


def add_all(terms):
    """Sum differences; if any is split, all are (unsplit ones by their sign)."""
    terms = [t for t in terms if t is not None]
    if not terms:
        return None
    if any(isinstance(t, Split) for t in terms):
        parts = [as_split(t) for t in terms]
        return Split(sum(p.pos for p in parts), sum(p.neg for p in parts))
    return sum(terms)


def _arg_delta(arg, d_env):
    if isinstance(arg, torch.fx.Node):
        return d_env.get(arg.name)
    return None


def _output_stack_dim(name, args):
    """(weight dim, output dim) along which two weights of a weighted op can be stacked, or None."""
    if name in ("conv1d", "conv2d"):
        groups = args[6] if len(args) > 6 else 1
        return (0, 1) if groups == 1 else None
    if name in ("convolution", "_convolution"):
        transposed, groups = args[6], args[8]
        return (0, 1) if not transposed and groups == 1 else None
    if name == "linear":
        return (0, -1)
    if name == "addmm":
        return (1, -1)
    return None


@dataclasses.dataclass
class SplitPass:
    """Computes the difference of one step's output from the differences of its inputs.

    Attributes
    ----------
    pairing : Pairing
    eps : float
        Near-zero threshold for multipliers.
    exact_max : bool
        The exact max rule, or the original code's gradient rule (its values stay exact).
    batch_dims : dict
        The batch dimension of every node's value, by node name.
    """

    pairing: Pairing
    eps: float
    exact_max: bool
    batch_dims: dict

    def run(self, step, args, d_env, ref_env, x_env, ref_out, needs_split: bool, rule: str | None):
        """The output difference of ``step``.

        Parameters
        ----------
        step : Step
        args : tuple
            The step's arguments with graph values resolved on the references.
        d_env, ref_env, x_env : dict
            Differences, reference values and sequence values of earlier nodes, by node name.
        ref_out : object
            The step's output on the references.
        needs_split : bool
            Whether a RevealCancel unit downstream needs this output's parts.
        rule : str or None
            ``"rescale"`` or ``"revealcancel"`` for nonlinear steps.
        """
        name = step.name
        deltas = [_arg_delta(a, d_env) for a in step.node.args]
        if step.kind == "nonlinear":
            return self._nonlinear(step, args, deltas[0], ref_out, x_env, rule)
        if step.kind == "max":
            return self._max(step, args, deltas[0], x_env, ref_out)
        if step.kind == "product":
            return self._product(step, args, deltas, x_env)
        if step.kind == "gradient":
            return self._gradient(step, deltas, ref_env, ref_out)
        if step.kind == "meta":
            if name == "getitem":
                source = d_env.get(step.node.args[0].name)
                return None if source is None else source[step.node.args[1]]
            return None
        return self._linear(step, args, deltas, needs_split, d_env)

    # ---------------------------------------------------------------------------------------- linear
    def _linear(self, step, args, deltas, needs_split, d_env):
        name = step.name
        kwargs = step.kwargs
        if name in ops.POSITIVE_STRUCTURAL:
            rest = list(args[1:])
            if name == "constant_pad_nd" and len(rest) > 1:
                rest[1] = 0.0
            if name == "pad" and len(rest) > 2:
                rest[2] = 0.0
            return map_parts(deltas[0], lambda t: step.fn(t, *rest, **kwargs))
        if name in ("add", "sub", "rsub"):
            alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
            first, second = (1, -alpha) if name == "sub" else (-alpha, 1) if name == "rsub" else (1, alpha)
            return add_all([scale(deltas[0], first), scale(deltas[1] if len(deltas) > 1 else None, second)])
        if name == "neg":
            return scale(deltas[0], -1)
        if name == "mul":
            if deltas[0] is not None:
                return scale(deltas[0], args[1])
            return scale(deltas[1], args[0])
        if name == "div":
            return scale(deltas[0], 1 / args[1])
        if name in ("batch_norm", "_native_batch_norm_legit_no_training"):
            x, weight, _, _, var = args[:5]
            eps = args[7] if name == "batch_norm" else args[6]
            factor = torch.rsqrt(var + eps)
            if weight is not None:
                factor = factor * weight
            shape = [1, -1] + [1] * (x.dim() - 2)
            out = scale(deltas[0], factor.reshape(shape))
            return out if name == "batch_norm" else (out, None, None)
        if name in ops.WEIGHTED:
            return self._weighted(step, args, deltas, needs_split)
        if name in ("cat", "stack", "concat", "concatenate"):
            return self._combine_list(step, args, d_env)
        if name == "where":
            condition = args[0]
            a = deltas[1] if deltas[1] is not None else torch.zeros_like(total(deltas[2]))
            b = deltas[2] if deltas[2] is not None else torch.zeros_like(total(deltas[1]))
            if isinstance(a, Split) or isinstance(b, Split):
                a, b = as_split(a), as_split(b)
                return Split(torch.where(condition, a.pos, b.pos), torch.where(condition, a.neg, b.neg))
            return torch.where(condition, a, b)
        raise AssertionError(f"no RevealCancel routing for aten.{name}")

    def _combine_list(self, step, args, d_env):
        nodes = step.node.args[0]
        values = args[0]
        parts = [_arg_delta(n, d_env) for n in nodes]
        filled = [d if d is not None else torch.zeros_like(v) for d, v in zip(parts, values)]
        rest = args[1:]
        if any(isinstance(d, Split) for d in filled):
            splits = [as_split(d) for d in filled]
            return Split(step.fn([s.pos for s in splits], *rest), step.fn([s.neg for s in splits], *rest))
        return step.fn(filled, *rest)

    def _weighted(self, step, args, deltas, needs_split):
        name = step.name
        if name in ("conv1d", "conv2d"):
            def op(t, w):
                return step.fn(t, w, None, *args[3:])
        elif name in ("convolution", "_convolution"):
            def op(t, w):
                return step.fn(t, w, None, *args[3:])
        elif name == "linear":
            def op(t, w):
                return torch.nn.functional.linear(t, w)
        elif name == "addmm":
            def op(t, w):
                return torch.mm(t, w)
        elif deltas[0] is not None:
            def op(t, w):
                return step.fn(t, w)
        else:
            def op(t, w):
                return step.fn(w, t)
        if name == "addmm":
            d, weight = deltas[1], args[2]
        elif deltas[0] is not None:
            d, weight = deltas[0], args[1]
        else:
            d, weight = deltas[1], args[0]
        dx = total(d)
        if not needs_split:
            return op(dx, weight)
        positive = dx * sign_weights(dx)
        weight_pos, weight_neg = weight.clamp(min=0), weight.clamp(max=0)
        shared = op(positive, weight_pos - weight_neg)
        stack_dim = _output_stack_dim(name, args)
        if stack_dim is None:
            on_neg, on_pos = op(dx, weight_neg), op(dx, weight_pos)
        else:  # one call with the two weights stacked along the outputs
            weight_dim, out_dim = stack_dim
            on_neg, on_pos = op(dx, torch.cat([weight_neg, weight_pos], weight_dim)).chunk(2, out_dim)
        return Split(shared + on_neg, on_pos - shared)

    # ------------------------------------------------------------------------------------ nonlinear
    def _nonlinear(self, step, args, d, ref_out, x_env, rule):
        source = step.node.args[0].name
        dim = self.batch_dims[source]
        ref_in = args[0]
        rest, kwargs = tuple(args[1:]), step.kwargs
        x_in, x_out = x_env[source], x_env[step.node.name]
        pairing = self.pairing
        dy = pairing.diff(x_out, ref_out, dim)
        if rule == "rescale":
            m = rescale_multiplier(step.fn, rest, kwargs, dx=pairing.diff(x_in, ref_in, dim), dy=dy,
                                   ref_in=ref_in, eps=self.eps)
            return map_parts(d, lambda t: t * m)
        parts = as_split(d)
        pos, neg = parts.pos.detach(), parts.neg.detach()
        at_pos = ref_in + pos
        at_neg = ref_in + neg
        # dy+ = (f(x0+dx+) - f(x0))/2 + (f(x0+dx+ +dx-) - f(x0+dx-))/2 = (f(x0+dx+) - f(x0+dx-) + dy)/2
        dy_pos = (step.fn(at_pos, *rest, **kwargs) - step.fn(at_neg, *rest, **kwargs)).add_(dy).mul_(0.5)
        dy_neg = dy - dy_pos
        m_pos = dy_pos.div_(pos)
        m_neg = dy_neg.div_(neg)
        small_pos = pos < self.eps
        small_neg = neg > -self.eps
        # The limit of dy+/dx+ as dx+ -> 0 is (f'(x0) + f'(x0 + dx-)) / 2, and symmetrically; computed only
        # on the batch rows that have such entries.
        if bool(small_pos.any()):
            replace_on_rows(m_pos, small_pos, lambda rows: derivative(step.fn, at_neg[rows], rest, kwargs).add_(
                derivative(step.fn, ref_in[rows], rest, kwargs)).mul_(0.5))
        if bool(small_neg.any()):
            replace_on_rows(m_neg, small_neg, lambda rows: derivative(step.fn, at_pos[rows], rest, kwargs).add_(
                derivative(step.fn, ref_in[rows], rest, kwargs)).mul_(0.5))
        return Split(parts.pos * m_pos, parts.neg * m_neg)

    # ------------------------------------------------------------------------------------------ max
    def _max(self, step, args, d, x_env, ref_out):
        source = step.node.args[0].name
        dim = self.batch_dims[source]
        windows = MaxWindows(step.name, args, step.kwargs)
        ref_in = args[0]
        x_in = x_env[source]
        _, terms = max_rule_terms(windows, x_in, ref_in, self.pairing, dim, exact=True)
        out_shape = (ref_out[0] if isinstance(ref_out, (tuple, list)) else ref_out).shape

        def route(t, terms):
            flat = windows.flat(t)
            return sum(c * flat.gather(1, i) for i, c in terms).reshape(out_shape)

        out = map_parts(d, lambda t: route(t, terms))
        if not self.exact_max:
            # The original code's rule: values stay exact, gradients go to the input's argmax only.
            _, grad_terms = max_rule_terms(windows, x_in, ref_in, self.pairing, dim, exact=False)

            def straight_through(exact, t):
                g = route(t, grad_terms)
                return exact.detach() + g - g.detach()

            if isinstance(out, Split):
                out = Split(straight_through(out.pos, d.pos), straight_through(out.neg, d.neg))
            else:
                out = straight_through(out, d)
        if ops.returns_indices(step.name):
            return (out, None)
        return out

    # -------------------------------------------------------------------------------------- product
    def _product(self, step, args, deltas, x_env):
        a_node, b_node = step.node.args[0], step.node.args[1]
        dims = (self.batch_dims[a_node.name], self.batch_dims[b_node.name])
        m_a, m_b = product_coefficients(x_env[a_node.name], x_env[b_node.name], args[0], args[1],
                                        self.pairing, dims)
        return add_all([scale(deltas[0], m_a), scale(deltas[1], m_b)])

    # ------------------------------------------------------------------------------------- gradient
    def _gradient(self, step, deltas, ref_env, ref_out):
        shifted = []
        for arg, d in zip(step.node.args, deltas):
            if d is None:
                shifted.append(ref_env[arg.name] if isinstance(arg, torch.fx.Node) else arg)
            else:
                shifted.append(ref_env[arg.name].detach() + total(d))
        return step.fn(*shifted, **step.kwargs) - ref_out.detach()
