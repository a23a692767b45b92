"""What to explain: targets by output index, output name, or the standard targets of profile models.

A target reduces the model's outputs on a batch of rows to one value per row, linearly (so that DeepLIFT's
multipliers of the target are those of the outputs), except ``profile``, whose products are a nonlinearity
with their own Rescale multipliers. The spellings (the ``target`` of
:func:`~dnalift.attribution.engine.attribute`, ``--target`` of ``dnalift score``):

``I``
    Unit ``I`` of the output flattened per row (a model returning one tensor; negative counts from the end).
``NAME``
    An output of a model returning a tuple (``0``, ``1``), a list or a dict (its key) that has one value per
    row; or, for a one-output model that declares names for its units (``output_names``), that unit.
``NAME:INDEX``
    Unit ``INDEX`` of output ``NAME`` flattened per row (``human:12``).
``counts``
    The count head of a profile model (summed over its units if it has several, as chrombpnet does).
``profile``
    What bpnet-lite's ``ProfileWrapper`` with its ``deep_lift_shap`` (and chrombpnet) explain: the profile
    head's logits ``l`` flattened per row, ``l' = l - mean l``, and ``y = sum_p l'_p softmax(l')_p`` with each
    row (sequence or reference) weighted by its own softmax. The per-position product ``l'_p softmax(l')_p`` is
    one nonlinearity with a Rescale multiplier ``(f_p(x) - f_p(ref)) / (l'_p(x) - l'_p(ref))`` (the derivative
    of ``l'_p softmax(l')_p`` in ``l'_p`` at the reference where the difference is near zero), so it sums to
    delta (:func:`softmax_weighted`).
``profile-fixed``
    The linear variant: ``sum_p w_p (l_p - mean l)`` with ``w = softmax(l(x))`` of the sequence's own logits
    held constant for its references (a stop-gradient on the softmax). It also sums to delta; its scores differ
    from the ``profile`` ones (the references are weighted by the sequence's softmax, not their own).

``counts`` and ``profile`` (both profile targets) are the outputs of those names (dict keys) or, for a model
returning two tensors whose first is ``(n, channels, positions)`` and second ``(n, k)``, the first (profile)
and second (counts): the bpnet-lite and chrombpnet layout. A function of the output can also be given (API
only): it receives the output tensor (a dict of them for a model with several outputs) and must be linear in
it.

A target gets, beside the outputs of the rows it is computed on, an *anchor* (:meth:`Target.anchor`): what it
needs of the sequences' own outputs, repeated for each reference row (the softmax weights of ``profile-fixed``,
the normalised logits of ``profile``), and None for the other targets.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Sequence

import numpy as np
import torch

from dnalift.attribution.pairing import near_zero_threshold
from dnalift.errors import TargetError
from dnalift.options import StandardTarget

__all__ = ["Target", "resolve_targets", "output_table", "PROFILE", "PROFILE_FIXED", "COUNTS",
           "STANDARD_MEANINGS"]

PROFILE = StandardTarget.PROFILE.value
PROFILE_FIXED = StandardTarget.PROFILE_FIXED.value
COUNTS = StandardTarget.COUNTS.value
#: how each standard target computes its value
_HOW = {COUNTS: "sum", PROFILE: PROFILE, PROFILE_FIXED: PROFILE_FIXED}
#: the standard targets in a line each (``dnalift info``)
STANDARD_MEANINGS = {
    COUNTS: "the count head (summed over its outputs if several)",
    PROFILE: "sum softmax(l')*l' of the profile logits, l' = l - mean l, each row (sequence, reference) with "
             "its own softmax: what bpnet-lite's ProfileWrapper and chrombpnet explain",
    PROFILE_FIXED: "the same with the sequence's softmax held fixed for its references (a linear target)",
}
#: the endings of chrombpnet's output layer names (``wo_bias_bpnet_logcount_predictions``), which make an output
#: the profile or the counts
CHROMBPNET_OUTPUTS = {PROFILE: "logits_profile_predictions", COUNTS: "logcount_predictions"}


@dataclasses.dataclass(frozen=True)
class Target:
    """A resolved target.

    Attributes
    ----------
    label : str
        How it was given (file names ``OUT.<label>.h5`` and the result's ``target`` attribute).
    output : int
        Index into the plan's outputs.
    how : {"unit", "sum", "profile", "profile-fixed", "function"}
        One unit (``index``), the sum of all units, one of the profile targets, or a user function.
    index : int or None
        Flat unit index within the output, for ``how="unit"``.
    fn : callable or None
        For ``how="function"``.
    names : tuple of str
        For ``how="function"`` on a model with several outputs: their names (the function gets a dict).
    """

    label: str
    output: int = 0
    how: str = "unit"
    index: int | None = None
    fn: Callable | None = None
    names: tuple = ()

    def anchor(self, output: torch.Tensor) -> torch.Tensor | None:
        """What the target needs of the sequences' own output (rows, P), or None.

        ``profile-fixed``: the softmax weights ``softmax(l)``; ``profile``: the normalised logits
        ``l - mean l``; both of the output flattened per row.
        """
        if self.how not in (PROFILE, PROFILE_FIXED):
            return None
        flat = output.detach().reshape(output.shape[0], -1)
        if self.how == PROFILE_FIXED:
            return torch.softmax(flat, dim=-1)
        return flat - flat.mean(1, keepdim=True)

    def __call__(self, outputs: list, anchor: torch.Tensor | None = None) -> torch.Tensor:
        """The target on some rows.

        Parameters
        ----------
        outputs : list of Tensor (rows, ...)
            The plan's outputs (softmax outputs already mean-normalised logits).
        anchor : Tensor (rows, P), optional
            :meth:`anchor` of the sequences lined up with the rows (for the profile targets).

        Returns
        -------
        Tensor (rows,)
        """
        if self.how == "function":
            value = self.fn(outputs[0] if len(outputs) == 1 else dict(zip(self.names, outputs)))
            rows = outputs[0].shape[0]
            if not isinstance(value, torch.Tensor) or value.dim() != 1 or value.shape[0] != rows:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise TargetError(f"the target function returned {shape}; it must return one value per row "
                                  f"({rows},)", argument="target")
            return value
        out = outputs[self.output]
        flat = out.reshape(out.shape[0], -1)
        if self.how == "unit":
            return flat[:, self.index]
        if self.how == "sum":
            return flat.sum(1)
        if self.how == PROFILE_FIXED:
            return (anchor * (flat - flat.mean(1, keepdim=True))).sum(1)
        return softmax_weighted(flat - flat.mean(1, keepdim=True), anchor)


def softmax_weighted(logits: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """``sum_p l_p softmax(l)_p`` per row, whose gradient in ``l`` is the Rescale multiplier of each product.

    Parameters
    ----------
    logits : Tensor (rows, P)
        Normalised logits ``l`` of the rows (references, or the sequences themselves), differentiable.
    anchor : Tensor (rows, P)
        The sequences' normalised logits lined up with the rows (constant).

    Returns
    -------
    Tensor (rows,)
        The value ``sum_p f_p(l)`` with ``f_p(l) = l_p softmax(l)_p``; its gradient in ``l_p`` is
        ``(f_p(anchor) - f_p(l)) / (anchor_p - l_p)``, or the derivative ``s_p (1 + l_p (1 - s_p))`` of
        ``f_p`` in ``l_p`` (``s = softmax(l)``) where ``|anchor_p - l_p|`` is below the engine's near-zero
        threshold. Summed over positions the multipliers times the differences give the change of the
        value exactly, unless a position's logit does not move while its weight does (no multiplier can carry
        that change; mean-normalised logits of a reference that differs from the sequence all move).
    """
    with torch.no_grad():
        s = torch.softmax(logits, dim=-1)
        f_ref = logits * s
        f_x = anchor * torch.softmax(anchor, dim=-1)
        d = anchor - logits
        small = d.abs() < near_zero_threshold(logits.dtype)
        secant = (f_x - f_ref) / torch.where(small, torch.ones_like(d), d)
        m = torch.where(small, s * (1 + logits * (1 - s)), secant)
    return (f_ref + m * (logits - logits.detach())).sum(1)


def _units(output) -> int:
    """Values per row of an output (1 for a per-row scalar)."""
    return math.prod(output.shape)


def output_table(outputs) -> list[dict]:
    """The outputs of a plan as rows (name, per-row shape, the target names they accept), for ``dnalift info``."""
    roles = _standard(outputs)
    rows = []
    for i, o in enumerate(outputs):
        name = o.name or "output"
        units = _units(o)
        accepts = [r for r, index in roles.items() if index == i]
        if o.name:
            accepts.append(o.name if units == 1 else f"{o.name}:0 .. {o.name}:{units - 1}")
        if len(outputs) == 1:
            accepts.append(f"0 .. {units - 1}" if units > 1 else "0")
        rows.append({"name": name, "shape": o.shape, "units": units, "targets": accepts,
                     "softmax": o.softmax_dim is not None})
    return rows


def _standard(outputs) -> dict:
    """``{"profile": i, "profile-fixed": i, "counts": j}`` for the outputs that play those roles."""
    names = [o.name for o in outputs]
    found = {}
    for role in (PROFILE, COUNTS):
        if role in names:
            found[role] = names.index(role)
            continue
        ends = [i for i, n in enumerate(names) if n and n.endswith(CHROMBPNET_OUTPUTS[role])]
        if len(ends) == 1:  # chrombpnet's Keras output layers, with or without a prefix
            found[role] = ends[0]
    if not found and len(outputs) == 2 and len(outputs[0].shape) == 2 and len(outputs[1].shape) == 1:
        found = {PROFILE: 0, COUNTS: 1}
    if PROFILE in found:
        found[PROFILE_FIXED] = found[PROFILE]
    return {role: found[role] for role in StandardTarget.values() if role in found}


def _describe(outputs, unit_names) -> str:
    if len(outputs) == 1 and not outputs[0].name:
        units = _units(outputs[0])
        if unit_names:
            shown = ", ".join(f"{i}={n}" for i, n in enumerate(unit_names[:10]))
            return f"its outputs are {shown}{' ...' if len(unit_names) > 10 else ''}"
        return f"it has {units} output(s) per sequence (indices 0 to {units - 1})"
    shown = ", ".join(f"{o.name} {tuple(o.shape)}" for o in outputs)
    roles = _standard(outputs)
    extra = f"; standard targets: {', '.join(roles)}" if roles else ""
    return f"its outputs are {shown} (give NAME or NAME:INDEX){extra}"


def _one(spec, outputs, unit_names, where) -> Target:
    if isinstance(spec, Target):
        return spec
    if callable(spec):
        return Target(label=getattr(spec, "__name__", "function"), how="function", fn=spec,
                      names=tuple(o.name for o in outputs))
    if isinstance(spec, bool) or not isinstance(spec, (int, np.integer, str)):
        raise TargetError(f"target={spec!r} must be an output index, an output name, "
                          f"{', '.join(map(repr, StandardTarget.values()))} or a function of the output",
                          argument="target", value=repr(spec))
    text = str(spec).strip()
    listing = _describe(outputs, unit_names)
    roles = _standard(outputs)
    if text in roles:
        return Target(text, roles[text], _HOW[text])
    names = [o.name for o in outputs]
    match = re.fullmatch(r"(.+):(-?\d+)", text)
    if match and match.group(1) in names:
        output = names.index(match.group(1))
        return Target(text, output, "unit", _unit(int(match.group(2)), outputs[output], text, where, listing))
    if text and text in names:
        output = names.index(text)
        units = _units(outputs[output])
        if units != 1:
            raise TargetError(f"target={text!r} is an output with {units} values per sequence; give one of them "
                              f"as {text}:INDEX ({where}: {listing})", argument="target", value=text)
        return Target(text, output, "unit", 0)
    if len(outputs) == 1:
        if re.fullmatch(r"-?\d+", text):
            return Target(text, 0, "unit", _unit(int(text), outputs[0], text, where, listing))
        if unit_names and text in unit_names:
            return Target(text, 0, "unit", list(unit_names).index(text))
    hint = listing if unit_names or outputs[0].name else f"it declares no output names, use an index ({listing})"
    raise TargetError(f"target={text!r} is not an output of {where}: {hint}", argument="target", value=text)


def _unit(index: int, output, text, where, listing) -> int:
    units = _units(output)
    if not -units <= index < units:
        which = f"output {output.name} has" if output.name else "it has"
        raise TargetError(f"target={text} does not exist: in {where}, {which} {units} value(s) per sequence "
                          f"(indices 0 to {units - 1}); {listing}", argument="target", value=text)
    return index % units


def resolve_targets(outputs, specs: Sequence | object, *, unit_names=None, where: str = "the model") -> list:
    """Targets given as indices, names, ``counts``/``profile`` or functions -> :class:`Target` objects.

    Parameters
    ----------
    outputs : list of Output
        The plan's outputs (:attr:`Plan.outputs`).
    specs : target spec or sequence of them
    unit_names : sequence of str, optional
        Names of the units of a one-output model (``LoadedModel.output_names``).
    where : str
        The model's name, for messages.

    Raises
    ------
    TargetError
        A target that is not an output of the model, or a target given twice.
    """
    items = list(specs) if isinstance(specs, (list, tuple)) else [specs]
    if not items:
        raise TargetError("no target given; pass an output index or name", argument="target")
    targets = []
    for spec in items:
        target = _one(spec, outputs, unit_names, where)
        if any(_same(t, target, outputs) for t in targets):
            raise TargetError(f"target={target.label} is given twice; give each target once", argument="target",
                              value=target.label)
        targets.append(target)
    return targets


def _same(a: Target, b: Target, outputs) -> bool:
    """Whether two targets compute the same value (the sum of a one-value output is that value)."""
    def key(t):
        if t.how == "sum" and _units(outputs[t.output]) == 1:
            return (t.output, "unit", 0, None)
        return (t.output, t.how, t.index, t.fn)

    return key(a) == key(b)
