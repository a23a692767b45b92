"""Ops without arithmetic on the data (shape queries, tuple indexing, metadata checks) and the gradient fallback.

* :class:`Meta`: ``sym_size`` and other shape queries, and ``getitem`` of an op returning several values.
* :class:`NoValue`: ``_assert_tensor_metadata`` (made by ``x.to(device)`` or ``x.to(dtype)`` in a forward): a
  check that returns nothing.
* :class:`Refused`: an op that must not be scored, with the reason (``detach`` of an input-dependent value: the
  value would not pass on any difference, so DeepLIFT's scores would silently miss that path).
* :class:`Gradient`: ops the user allowed through with gradients (``allow_gradient``): not exact, no rule.
"""

from __future__ import annotations

from dnalift.attribution.kinds.base import Kind
from dnalift.attribution.parts import total


class Meta(Kind):
    """Shape queries and tuple indexing."""

    name = "meta"
    label = "shape only"

    def check(self, node, dependent):
        return None

    def difference(self, step, args, kwargs, deltas, ctx, ref_out):
        if step.name != "getitem":
            return None
        source = deltas[0]
        if source is None:
            return None
        item = source[step.node.args[1]]
        return item


class NoValue(Kind):
    """A check that returns nothing (``_assert_tensor_metadata``); skipped."""

    name = "meta"
    label = "metadata check (no value)"
    max_dependent = None

    def check(self, node, dependent):
        return None

    def forward(self, step, args, kwargs):
        return None

    def difference(self, step, args, kwargs, deltas, ctx, ref_out):
        return None


class Refused(Kind):
    """An op that has a name in the registry only to be refused with a reason."""

    name = "refused"

    def __init__(self, reason: str):
        self.reason = reason

    def check(self, node, dependent):
        return self.reason


class Gradient(Kind):
    """An op without a DeepLIFT rule, let through with its gradient because the user asked for it."""

    resplits = True

    name = "gradient"
    label = "gradient fallback (allowed by the user)"
    max_dependent = None

    def check(self, node, dependent):
        return None

    def x_inputs(self, step) -> bool:
        return True

    def x_output(self, step) -> bool:
        return True

    def difference(self, step, args, kwargs, deltas, ctx, ref_out):
        shifted = []
        for arg, value, d in zip(step.node.args, args, deltas):
            if d is None:
                shifted.append(value)
            else:
                shifted.append(value.detach() + total(d))
        out = step.fn(*shifted, **kwargs)
        return out - ref_out.detach()


