"""How the reference rows of a batch line up with its sequence rows, and small tensor helpers the rules share.

The engine runs the references (``rows = n * r``: ``r`` references for each of ``n`` sequences, the references of
one sequence next to each other) through the graph, while the values of the sequences themselves (``n`` rows)
were computed once, beforehand. :class:`Pairing` lines the two up without copying: the batch dimension of a
reference value is viewed as ``(n, r)`` and the sequence value broadcasts over ``r``.
"""

from __future__ import annotations

import dataclasses

import torch


def near_zero_threshold(dtype: torch.dtype) -> float:
    """Below this ``|dx|`` a multiplier is the derivative at the reference (paper: L'Hopital)."""
    return 1e-10 if dtype == torch.float64 else 1e-6


@dataclasses.dataclass(frozen=True)
class Pairing:
    """How reference rows line up with sequence rows in one batch: ``n`` sequences x ``r`` references."""

    n: int
    r: int

    def per_sequence(self, ref: torch.Tensor, dim: int) -> torch.Tensor:
        """View ``ref`` (..., n*r, ...) at ``dim`` as (..., n, r, ...)."""
        shape = ref.shape
        return ref.reshape(shape[:dim] + (self.n, self.r) + shape[dim + 1:])

    def diff(self, x: torch.Tensor, ref: torch.Tensor, dim: int | None) -> torch.Tensor:
        """``x - ref`` with ``x`` (..., n, ...) broadcast over the references; the shape of ``ref``.

        ``dim`` None means the value has no batch dimension (the same for every row): the difference is zero.
        """
        if dim is None:
            return torch.zeros_like(ref)
        if self.r == 1:
            return x - ref
        return (x.unsqueeze(dim + 1) - self.per_sequence(ref, dim)).reshape(ref.shape)

    def expand(self, x: torch.Tensor, dim: int | None) -> torch.Tensor:
        """``x`` (..., n, ...) repeated for each reference: (..., n*r, ...) (materialised)."""
        if self.r == 1 or dim is None:
            return x
        shape = x.shape
        expanded = x.unsqueeze(dim + 1).expand(shape[:dim + 1] + (self.r,) + shape[dim + 1:])
        return expanded.reshape(shape[:dim] + (self.n * self.r,) + shape[dim + 1:])


def replace_where(values: torch.Tensor, mask: torch.Tensor, compute) -> None:
    """Set ``values[mask]`` in place from ``compute(rows)``, evaluated only on the batch rows (dim 0) that need it.

    Near-zero differences are usually rare, so this touches a handful of rows; when a quarter of the rows or
    more need it (shuffles keep the end letters, so edge windows often match), it works on the whole tensor.

    Parameters
    ----------
    values : Tensor (rows, ...)
    mask : bool Tensor, shape of ``values``
    compute : callable
        ``compute(rows)`` gives the replacement values on those rows (an index tensor or ``slice(None)``),
        shaped like ``values[rows]``.
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


def reduce_to(t: torch.Tensor, shape) -> torch.Tensor:
    """Sum a broadcast gradient back to an operand's shape."""
    if t.shape == shape:
        return t
    while t.dim() > len(shape):
        t = t.sum(0)
    dims = [d for d, (a, b) in enumerate(zip(t.shape, shape)) if b == 1 and a != 1]
    return t.sum(dims, keepdim=True) if dims else t
