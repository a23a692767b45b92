"""Which rule each nonlinearity gets in each mode, and where RevealCancel needs positive/negative parts.

Modes
-----
``rescale``
    Rescale at every elementwise nonlinearity.
``revealcancel``
    RevealCancel at every elementwise nonlinearity.
``genomics``
    The original DeepLIFT code's default for DNA models: Rescale on a nonlinearity whose input comes from a
    convolution, RevealCancel on one whose input comes from a dense layer (registry role ``DENSE``: ``linear``,
    ``addmm``, ``mm``/``matmul``/``bmm`` with a constant weight). "Comes from" looks back through ops of role
    ``PASS`` (bias, scaling, batch norm, views, dropout, sums); where paths join in a sum, all of them must come
    from dense layers (a recurrent gate's ``W_ih x_t + W_hh h``). A nonlinearity fed by anything else (the input
    itself, a max pool, another nonlinearity, a product, a residual add of a layer and its input) gets
    Rescale.

A step's difference is carried as positive and negative parts (``needs_split``) when a RevealCancel unit reads
it, directly or through ops that route parts; weighted layers, composite ops and the gradient fallback split
their input afresh (or not at all), so the need stops there. When no nonlinearity gets RevealCancel (every
model in Rescale mode, an all-convolution model in genomics mode) nothing is split and the engine takes the
Rescale pass.
"""

from __future__ import annotations

from dnalift.attribution.kinds.base import iter_nodes
from dnalift.attribution.registry import Role
from dnalift.options import Mode

def _dependent_parents(step, producers) -> list:
    return [producers[n.name] for n in iter_nodes(step.args) if n.name in producers]


def assign_modes(steps: list, mode: str) -> bool:
    """Set ``mode`` on nonlinear steps and ``needs_split`` on every step; whether any step needs parts.

    Parameters
    ----------
    steps : list of Step
        In execution order.
    mode : {"rescale", "revealcancel", "genomics"}
    """
    producers = {s.node.name: s for s in steps if s.kind != "shape"}
    for step in steps:
        if step.kind != "nonlinear":
            continue
        if mode == Mode.GENOMICS:
            step.mode = Mode.REVEALCANCEL if _feeding_layer(step, producers) is Role.DENSE else Mode.RESCALE
        else:
            step.mode = mode
    users: dict[str, list] = {}
    for step in steps:
        for parent in _dependent_parents(step, producers):
            users.setdefault(parent.node.name, []).append(step)
    for step in reversed(steps):
        step.needs_split = any(_reads_parts(user) for user in users.get(step.node.name, ()))
    return any(s.mode == "revealcancel" for s in steps)


def _reads_parts(user) -> bool:
    """Whether a step needs its inputs' differences as parts."""
    if user.kind == "nonlinear":
        return user.mode == "revealcancel" or user.needs_split
    if user.rule is None or user.rule.resplits:
        return False  # weighted layers split by the sign of each term; chains take the whole difference
    return user.needs_split


def _feeding_layer(step, producers, memo=None) -> Role | None:
    """``DENSE`` or ``CONV`` when every input-dependent path into ``step`` comes, through ``PASS`` ops, from a layer
    of that role (one path, or several that join in a sum as a recurrent cell's ``W_ih x_t + W_hh h``)."""
    memo = {} if memo is None else memo
    if step.node.name in memo:
        return memo[step.node.name]
    roles = set()
    for parent in _dependent_parents(step, producers):
        if parent.role in (Role.DENSE, Role.CONV):
            roles.add(parent.role)
        elif parent.role is Role.PASS and parent.kind in ("linear", "meta"):
            roles.add(_feeding_layer(parent, producers, memo))
        else:
            roles.add(None)
    memo[step.node.name] = role = roles.pop() if len(roles) == 1 else None
    return role
