"""Max pooling and max reductions: the exact max rule, or the original code's gradient rule.

Per window, with ``y`` the maximum of the sequence's window at its argmax ``i``, ``y0`` the maximum of the
reference's window at its argmax ``j`` and ``M = max(y, y0)``: ``y - y0 = (M - y0) + (y - M)``; ``M - y0`` is
routed to ``i`` and ``y - M`` to ``j`` (added up where windows overlap), each divided by the input's difference
there. Both coefficients lie in [0, 1] and the rule sums to delta exactly. Where the difference at ``i`` is 0 there
is nothing to route and ``i`` keeps the gradient, 1 (captum's rule, and the gradient the hypothetical scores
need); where it is 0 at ``j`` the coefficient is 0. The original DeepLIFT code gives the whole multiplier to ``i``
(the gradient), which sums to delta only when the reference is constant in each window.

RevealCancel pass: the rule is a linear map with non-negative coefficients, so each part goes through it as it
is. With the gradient rule the parts of the input's argmax are passed on (coefficient 1), so values, parts and
multipliers agree; like the rule itself this sums to delta only when the reference is constant in each window.
"""

from __future__ import annotations

import dataclasses
import enum
import math

import torch
import torch.nn.functional as F

from dnalift.attribution.kinds.base import Kind
from dnalift.attribution.pairing import Pairing
from dnalift.attribution.parts import map_parts, tensor_sum


class Window(enum.Enum):
    """How a max op groups its input into windows."""

    POOL = "pool"          # max_pool{1,2}d: kernel_size, stride, padding, dilation, ceil_mode
    ADAPTIVE = "adaptive"  # adaptive_max_pool{1,2}d: output_size
    AMAX = "amax"          # amax(self, dim=[], keepdim=False): a reduction over dims
    MAX_DIM = "max_dim"    # max.dim(self, dim, keepdim=False): a reduction over one dim, with indices


@dataclasses.dataclass(frozen=True)
class Pooling:
    """What a max op is, as data in its registry entry (never read off the op's name).

    Attributes
    ----------
    window : Window
    spatial : int
        Spatial dimensions of a pooling (1 or 2); 0 for the reductions.
    returns_indices : bool
        The op returns ``(values, indices)`` rather than values alone.
    """

    window: Window
    spatial: int = 0
    returns_indices: bool = False

    @property
    def reduction(self) -> bool:
        return self.window in (Window.AMAX, Window.MAX_DIM)


@dataclasses.dataclass
class MaxWindows:
    """A max op seen as windows: the input flattened to (P, S) and each output a max over some of S.

    ``pool(t)`` gives the output values (the op's own output shape) and the flat indices (P, K) of the winning
    position of each window in S.
    """

    pooling: Pooling
    args: tuple
    kwargs: dict

    def _pool_kwargs(self):
        names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
        values = dict(zip(names, self.args[1:]))
        values.update(self.kwargs)
        if not values.get("stride"):
            values["stride"] = values["kernel_size"]
        return values

    def _reduced_dims(self, t):
        if self.pooling.window is Window.AMAX:
            dims = self.args[1] if len(self.args) > 1 else self.kwargs.get("dim", [])
            dims = [dims] if isinstance(dims, int) else list(dims)
            if not dims:
                dims = list(range(1, t.dim()))
        else:  # max.dim
            dims = [self.args[1] if len(self.args) > 1 else self.kwargs["dim"]]
        return sorted(d % t.dim() for d in dims)

    def _keepdim(self):
        return bool(self.args[2] if len(self.args) > 2 else self.kwargs.get("keepdim", False))

    def flat(self, t: torch.Tensor) -> torch.Tensor:
        """The input as (P, S) where windows index S."""
        if self.pooling.reduction:
            dims = self._reduced_dims(t)
            kept = [d for d in range(t.dim()) if d not in dims]
            moved = t.permute(kept + dims)
            return moved.reshape(-1, math.prod(t.shape[d] for d in dims))
        return t.reshape(-1, math.prod(t.shape[-self.pooling.spatial:]))

    def unflat(self, flat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`flat` onto the shape of ``like``."""
        if self.pooling.reduction:
            dims = self._reduced_dims(like)
            kept = [d for d in range(like.dim()) if d not in dims]
            order = kept + dims
            moved = flat.reshape([like.shape[d] for d in order])
            inverse = [order.index(d) for d in range(like.dim())]
            return moved.permute(inverse)
        return flat.reshape(like.shape)

    def pool(self, t: torch.Tensor):
        """Output values (op's output shape) and winning flat indices (P, K)."""
        if self.pooling.reduction:
            flat = self.flat(t)
            values, index = flat.max(dim=1, keepdim=True)
            dims = self._reduced_dims(t)
            out_shape = [1 if d in dims else s for d, s in enumerate(t.shape)] if self._keepdim() else \
                [s for d, s in enumerate(t.shape) if d not in dims]
            return values.reshape(out_shape), index
        one_d = self.pooling.spatial == 1
        if self.pooling.window is Window.ADAPTIVE:
            pool = F.adaptive_max_pool1d if one_d else F.adaptive_max_pool2d
            values, index = pool(t, self.args[1], return_indices=True)
        else:
            pool = F.max_pool1d if one_d else F.max_pool2d
            values, index = pool(t, return_indices=True, **self._pool_kwargs())
        return values, index.reshape(self.flat(t).shape[0], -1)


def max_coefficients(x_values, x_index, ref_values, ref_index, x_at_ref, ref_flat):
    """Per-window coefficients ``(a, b)`` of the exact max rule (module docstring).

    Parameters
    ----------
    x_values, ref_values : Tensor (P, K)
        Window maxima of the sequence (lined up with each reference) and of the references.
    x_index, ref_index : Tensor (P, K)
        Their flat positions in S.
    x_at_ref : Tensor (P, K)
        The sequence's values at the references' argmax positions.
    ref_flat : Tensor (P, S)
        The op's input on the references.

    Returns
    -------
    a, b : Tensor (P, K)
        Coefficients at the sequence's argmax (1 where its difference is 0: the gradient) and at the
        reference's argmax (0 where its difference is 0).
    """
    top = torch.maximum(x_values, ref_values)
    dx_at_x = x_values - ref_flat.gather(1, x_index)
    dx_at_ref = x_at_ref - ref_values
    zero_x = dx_at_x == 0
    zero_ref = dx_at_ref == 0
    one = torch.ones_like(top)
    a = torch.where(zero_x, one, (top - ref_values) / torch.where(zero_x, one, dx_at_x))
    b = torch.where(zero_ref, torch.zeros_like(top), (x_values - top) / torch.where(zero_ref, one, dx_at_ref))
    return a, b


def max_rule_terms(windows: MaxWindows, x_in, ref_in, pairing: Pairing, dim: int, *, exact: bool):
    """Coefficients and indices of the max rule for one batch.

    Returns
    -------
    ref_out : Tensor
        The op's output on the references.
    terms : list of (index (P, K), coefficient (P, K))
        The output difference is ``sum(coefficient * dx.gather(index))`` over the terms.
    """
    ref_flat = windows.flat(ref_in)
    ref_out, ref_index = windows.pool(ref_in)
    ref_values = ref_out.reshape(ref_index.shape)
    if dim == 0:
        # Pool the sequences once and line their windows up with the references' rows by index arithmetic,
        # without repeating the sequences' values for every reference.
        x_flat = windows.flat(x_in)
        x_values, x_index = windows.pool(x_in)
        x_values = x_values.reshape(x_index.shape)
        per_row = x_flat.shape[0] // pairing.n  # windows' rows per sequence
        rows = torch.arange(ref_flat.shape[0], device=ref_in.device)
        x_rows = (rows // (per_row * pairing.r)) * per_row + rows % per_row
        x_values, x_index = x_values[x_rows], x_index[x_rows]
        x_at_ref = x_flat.reshape(-1)[(x_rows * x_flat.shape[1]).unsqueeze(1) + ref_index]
    else:
        x_rep = pairing.expand(x_in, dim)
        x_flat = windows.flat(x_rep)
        x_values, x_index = windows.pool(x_rep)
        x_values = x_values.reshape(x_index.shape)
        x_at_ref = x_flat.gather(1, ref_index)
    if not exact:  # the original code: the gradient at the input's argmax
        return ref_out, [(x_index, torch.ones_like(x_values))]
    a, b = max_coefficients(x_values, x_index, ref_values, ref_index, x_at_ref, ref_flat)
    return ref_out, [(x_index, a), (ref_index, b)]


class MaxFunction(torch.autograd.Function):
    """Forward: the max op on the references. Backward: the max rule's multipliers."""

    @staticmethod
    def forward(ctx, ref_in, x_in, windows, pairing, dim, exact):
        ref_out, terms = max_rule_terms(windows, x_in, ref_in, pairing, dim, exact=exact)
        ctx.windows = windows
        ctx.save_for_backward(ref_in, *[t for term in terms for t in term])
        return ref_out

    @staticmethod
    def backward(ctx, grad):
        ref_in, *flat_terms = ctx.saved_tensors
        windows = ctx.windows
        like = windows.flat(ref_in)
        g = grad.reshape(flat_terms[0].shape)
        out = torch.zeros_like(like)
        for index, coefficient in zip(flat_terms[0::2], flat_terms[1::2]):
            out.scatter_add_(1, index, g * coefficient)
        return windows.unflat(out, ref_in), None, None, None, None, None


class Max(Kind):
    """Max pooling (1-d, 2-d, adaptive) and max reductions (``amax``, ``max.dim``) over one input.

    Parameters
    ----------
    pooling : Pooling
        What the op is (its registry entry says it: one ``Max`` per op).
    """

    name = "max"
    label = "max rule"

    def __init__(self, pooling: Pooling):
        self.pooling = pooling

    def check(self, node, dependent):
        reason = super().check(node, dependent)
        if reason:
            return "a max whose parameters depend on the input"
        if self.pooling.window is Window.MAX_DIM and node.target._overloadname != "dim":
            return "max over all elements or of two tensors (use max over a dimension or amax)"
        return None

    def x_inputs(self, step) -> bool:
        return True

    def label_for(self, step) -> str:
        return "max rule (exact)" if step.max_rule == "exact" else "max rule (gradient, original code)"

    def reference(self, step, args, kwargs, ctx):
        source = step.node.args[0]
        windows = MaxWindows(self.pooling, args, kwargs)
        value = MaxFunction.apply(args[0], ctx.x_env[source.name], windows, ctx.pairing, ctx.dim(source),
                                  step.max_rule == "exact")
        return (value, None) if self.pooling.returns_indices else value

    def difference(self, step, args, kwargs, deltas, ctx, ref_out):
        source = step.node.args[0]
        windows = MaxWindows(self.pooling, args, kwargs)
        _, terms = max_rule_terms(windows, ctx.x_env[source.name], args[0], ctx.pairing, ctx.dim(source),
                                  exact=step.max_rule == "exact")
        out_shape = (ref_out[0] if isinstance(ref_out, (tuple, list)) else ref_out).shape

        def route(t):
            flat = windows.flat(t)
            return tensor_sum(c * flat.gather(1, i) for i, c in terms).reshape(out_shape)

        # With the gradient rule the parts (and the gradients) follow the input's argmax alone, as the values
        # do: exact when the reference is constant in each window, like the rule itself.
        out = map_parts(deltas[0], route)
        return (out, None) if self.pooling.returns_indices else out
