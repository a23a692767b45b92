"""DeepLIFT multipliers for the nonlinear kinds of op: Rescale, RevealCancel, the max rule, the product rule.

The engine runs the references (``rows = n_c * r_c``: ``r_c`` references for each of ``n_c`` sequences, the
references of one sequence next to each other) through the graph, while the activations of the sequences
themselves (``n_c`` rows) were computed once, beforehand. :class:`Pairing` lines the two up without copying:
the batch dimension of a reference value is viewed as ``(n_c, r_c)`` and the sequence value broadcasts over
``r_c``.

In Rescale mode the reference pass is differentiated by autograd. Each nonlinear op is then a custom
autograd function whose forward computes the op on the references and whose backward multiplies the incoming
gradient by the DeepLIFT multiplier ``m = dy / dx`` instead of the derivative. Linear ops need nothing: their
gradient is their multiplier.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from dnalift.attribution import ops


def near_zero_threshold(dtype: torch.dtype) -> float:
    """Below this ``|dx|`` a multiplier is the derivative at the reference (paper: L'Hopital)."""
    return 1e-10 if dtype == torch.float64 else 1e-6


@dataclasses.dataclass(frozen=True)
class Pairing:
    """How reference rows line up with sequence rows in one batch: ``n`` sequences x ``r`` references."""

    n: int
    r: int

    def split(self, ref: torch.Tensor, dim: int) -> torch.Tensor:
        """View ``ref`` (..., n*r, ...) at ``dim`` as (..., n, r, ...)."""
        shape = ref.shape
        return ref.reshape(shape[:dim] + (self.n, self.r) + shape[dim + 1:])

    def diff(self, x: torch.Tensor, ref: torch.Tensor, dim: int) -> torch.Tensor:
        """``x - ref`` with ``x`` (..., n, ...) broadcast over the references; the shape of ``ref``."""
        if self.r == 1:
            return x - ref
        return (x.unsqueeze(dim + 1) - self.split(ref, dim)).reshape(ref.shape)

    def expand(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """``x`` (..., n, ...) repeated for each reference: (..., n*r, ...) (materialised)."""
        if self.r == 1:
            return x
        shape = x.shape
        expanded = x.unsqueeze(dim + 1).expand(shape[:dim + 1] + (self.r,) + shape[dim + 1:])
        return expanded.reshape(shape[:dim] + (self.n * self.r,) + shape[dim + 1:])


def _prelu_derivative(t, rest):
    weight = rest[0]
    if weight.numel() > 1 and t.dim() > 1:
        weight = weight.reshape([1, -1] + [1] * (t.dim() - 2))
    return torch.where(t > 0, torch.ones((), dtype=t.dtype, device=t.device), weight.to(t.dtype))


_CLOSED_FORM = {
    "relu": lambda t, rest: (t > 0).to(t.dtype),
    "leaky_relu": lambda t, rest: torch.where(t > 0, 1.0, float(rest[0]) if rest else 0.01).to(t.dtype),
    "prelu": _prelu_derivative,
    "sigmoid": lambda t, rest: torch.sigmoid(t).mul_(torch.sigmoid(-t)),
    "tanh": lambda t, rest: torch.tanh(t).square_().neg_().add_(1),
    "exp": lambda t, rest: torch.exp(t),
}


def derivative(fn, t: torch.Tensor, rest: tuple, kwargs: dict) -> torch.Tensor:
    """Elementwise derivative of ``fn(t, *rest)`` at ``t`` (same shape as ``t``).

    Closed forms for the common activations; autograd for the others.
    """
    closed = _CLOSED_FORM.get(ops.op_name(fn))
    if closed is not None and not kwargs:
        return closed(t, rest).expand_as(t)
    with torch.enable_grad():
        point = t.detach().requires_grad_(True)
        out = fn(point, *rest, **kwargs)
        (grad,) = torch.autograd.grad(out, point, torch.ones_like(out))
    return grad


def rescale_multiplier(fn, rest, kwargs, *, dx, dy, ref_in, eps) -> torch.Tensor:
    """The Rescale multiplier ``dy / dx``; the derivative at the reference where ``|dx| < eps``.

    Parameters
    ----------
    dx, dy : Tensor
        Differences from reference of the op's input and output, shape of the reference values.
    ref_in : Tensor
        The op's input on the references.
    """
    m = dy.div_(dx) if not dy.requires_grad else dy / dx
    small = dx.abs_() < eps
    replace_on_rows(m, small, lambda rows: derivative(fn, ref_in[rows], rest, kwargs))
    return m


def replace_on_rows(values: torch.Tensor, mask: torch.Tensor, compute) -> None:
    """Set ``values[mask]`` in place from ``compute(rows)``, evaluated only on the batch rows (dim 0) that need it.

    Near-zero differences are usually rare, so this touches a handful of rows; when a quarter of the rows or
    more need it (shuffles keep the end letters, so edge windows often match), it works on the whole tensor.
    """
    if values.dim() == 0:
        if bool(mask):
            values.copy_(compute(slice(None)))
        return
    needed = mask.reshape(mask.shape[0], -1).any(1)
    count = int(needed.sum())
    if count == 0:
        return
    if 4 * count >= values.shape[0]:
        torch.where(mask, compute(slice(None)), values, out=values)
        return
    rows = needed.nonzero().squeeze(1)
    values[rows] = torch.where(mask[rows], compute(rows), values[rows])


class RescaleFunction(torch.autograd.Function):
    """Forward: the op on the references. Backward: the gradient times the Rescale multiplier."""

    @staticmethod
    def forward(ctx, ref_in, x_in, x_out, fn, rest, kwargs, pairing, dim, eps):
        ref_out = fn(ref_in, *rest, **kwargs)
        m = rescale_multiplier(fn, rest, kwargs, dx=pairing.diff(x_in, ref_in, dim),
                               dy=pairing.diff(x_out, ref_out, dim), ref_in=ref_in, eps=eps)
        ctx.save_for_backward(m)
        return ref_out

    @staticmethod
    def backward(ctx, grad):
        (m,) = ctx.saved_tensors
        return grad * m, None, None, None, None, None, None, None, None


# --------------------------------------------------------------------------------------------------- max
@dataclasses.dataclass
class MaxWindows:
    """A max op seen as windows: the input flattened to (P, S) and each output a max over some of S.

    ``pool(t)`` gives the output values (the op's own output shape) and the flat indices (P, K) of the
    winning position of each window in S.
    """

    name: str
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
        if self.name == "amax":
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
        if self.name in ("amax", "max"):
            dims = self._reduced_dims(t)
            kept = [d for d in range(t.dim()) if d not in dims]
            moved = t.permute(kept + dims)
            return moved.reshape(-1, math.prod(t.shape[d] for d in dims))
        spatial = 2 if "2d" in self.name else 1
        return t.reshape(-1, math.prod(t.shape[-spatial:]))

    def unflat(self, flat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`flat` onto the shape of ``like``."""
        if self.name in ("amax", "max"):
            dims = self._reduced_dims(like)
            kept = [d for d in range(like.dim()) if d not in dims]
            order = kept + dims
            moved = flat.reshape([like.shape[d] for d in order])
            inverse = [order.index(d) for d in range(like.dim())]
            return moved.permute(inverse)
        return flat.reshape(like.shape)

    def pool(self, t: torch.Tensor):
        """Output values (op's output shape) and winning flat indices (P, K)."""
        if self.name in ("amax", "max"):
            flat = self.flat(t)
            values, index = flat.max(dim=1, keepdim=True)
            dims = self._reduced_dims(t)
            out_shape = [1 if d in dims else s for d, s in enumerate(t.shape)] if self._keepdim() else \
                [s for d, s in enumerate(t.shape) if d not in dims]
            return values.reshape(out_shape), index
        if self.name.startswith("adaptive_max_pool"):
            pool = F.adaptive_max_pool1d if "1d" in self.name else F.adaptive_max_pool2d
            values, index = pool(t, self.args[1], return_indices=True)
        else:
            pool = F.max_pool1d if "1d" in self.name else F.max_pool2d
            values, index = pool(t, return_indices=True, **self._pool_kwargs())
        return values, index.reshape(self.flat(t).shape[0], -1)


def max_coefficients(x_values, x_index, ref_values, ref_index, x_at_ref, ref_flat):
    """Per-window coefficients of the exact max rule.

    With ``y = max(x window)``, ``y0 = max(reference window)`` and ``M = max(y, y0)``, the difference
    ``y - y0 = (M - y0) + (y - M)`` goes to the input's argmax with coefficient ``a = (M - y0) / dx`` and to
    the reference's argmax with ``b = (y - M) / dx``; both lie in [0, 1]. Where ``dx`` is exactly 0 there is
    nothing to route and the input's argmax keeps a gradient of 1 (for hypothetical scores).

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
    """
    top = torch.maximum(x_values, ref_values)
    dx_at_x = x_values - ref_flat.gather(1, x_index)
    dx_at_ref = x_at_ref - ref_values
    zero_x = dx_at_x == 0
    zero_ref = dx_at_ref == 0
    a = torch.where(zero_x, (x_values >= ref_values).to(top.dtype),
                    (top - ref_values) / torch.where(zero_x, torch.ones_like(dx_at_x), dx_at_x))
    b = torch.where(zero_ref, torch.zeros_like(top),
                    (x_values - top) / torch.where(zero_ref, torch.ones_like(dx_at_ref), dx_at_ref))
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
        # without repeating the sequences' activations for every reference.
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
        ctx.n_terms = len(terms)
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


# ----------------------------------------------------------------------------------------------- product
def reduce_to(t: torch.Tensor, shape) -> torch.Tensor:
    """Sum a broadcast gradient back to an operand's shape."""
    if t.shape == shape:
        return t
    while t.dim() > len(shape):
        t = t.sum(0)
    dims = [d for d, (a, b) in enumerate(zip(t.shape, shape)) if b == 1 and a != 1]
    return t.sum(dims, keepdim=True) if dims else t


def product_coefficients(a_x, b_x, a_ref, b_ref, pairing: Pairing, dims):
    """Paper 2.3.5: ``m_a = b0 + db/2 = (b0 + b)/2`` and ``m_b = (a0 + a)/2``, reference shapes."""
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
