"""Differences from reference carried as positive and negative parts (RevealCancel mode).

Where a RevealCancel unit will need them, a difference ``dx = x - ref`` is a :class:`Split` into a positive part
``pos`` and a negative part ``neg`` (``dx = pos + neg``); elsewhere it is a plain tensor. These helpers apply
linear maps to either form, routing the parts by the sign of each coefficient.
"""

from __future__ import annotations

import dataclasses
import functools
import operator

import torch


@dataclasses.dataclass
class Split:
    """A difference from reference as a positive and a negative part (``pos + neg`` is the difference)."""

    pos: torch.Tensor
    neg: torch.Tensor

    def total(self) -> torch.Tensor:
        return self.pos + self.neg


def total(d):
    """The whole difference of a :class:`Split` or plain tensor (None stays None)."""
    return d.total() if isinstance(d, Split) else d


def sign_weights(d: torch.Tensor) -> torch.Tensor:
    """1 where ``d > 0``, 0 where ``d < 0``, 1/2 where ``d == 0`` (detached)."""
    return torch.sign(d.detach()).add_(1).mul_(0.5)


def as_split(d) -> Split:
    """Split a difference by its sign (an exact 0 counted half to each part); a :class:`Split` stays as it is."""
    if isinstance(d, Split):
        return d
    p = sign_weights(d)
    return Split(d * p, d * (1 - p))


def map_parts(d, fn):
    """Apply a linear map with non-negative coefficients to each part (or to a plain difference)."""
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
    if not isinstance(c, torch.Tensor) and c == 1:
        return d
    if not isinstance(d, Split):
        return d * c
    if not isinstance(c, torch.Tensor):
        return Split(d.pos * c, d.neg * c) if c >= 0 else Split(d.neg * c, d.pos * c)
    c = c.detach()
    cp, cn = c.clamp(min=0), c.clamp(max=0)
    return Split(cp * d.pos + cn * d.neg, cp * d.neg + cn * d.pos)


def tensor_sum(terms):
    """The sum of a non-empty iterable of tensors, without the extra pass of builtin ``sum``'s ``0 + t``."""
    return functools.reduce(operator.add, terms)


def add_all(terms, split=lambda i, t: as_split(t)):
    """Sum differences, leaving out None terms; if any is split, all are.

    ``split(i, t)`` gives the parts of an unsplit term ``t = terms[i]`` (default: by its own sign).
    """
    present = [(i, t) for i, t in enumerate(terms) if t is not None]
    if not present:
        return None
    if any(isinstance(t, Split) for _, t in present):
        parts = [split(i, t) for i, t in present]
        return Split(tensor_sum(p.pos for p in parts), tensor_sum(p.neg for p in parts))
    return tensor_sum(t for _, t in present)
