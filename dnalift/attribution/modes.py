"""Which rule each nonlinearity gets in each mode, and where RevealCancel needs positive/negative parts.

Modes
-----
``rescale``
    Rescale at every elementwise nonlinearity.
``revealcancel``
    RevealCancel at every elementwise nonlinearity.
``genomics``
    The original DeepLIFT code's default for DNA models: Rescale on a nonlinearity whose input comes from a
    convolution, RevealCancel on one whose input comes from a dense layer (``linear``, ``addmm``, ``mm``,
    ``matmul``, ``bmm``). "Comes from" looks back through ops that only add a bias, scale, normalise or
    reshape (add/sub of constants, batch norm, views, dropout). A nonlinearity fed by anything else (the input
    itself, a max pool, another nonlinearity, a product, a residual add of two branches) gets Rescale.
"""

from __future__ import annotations

from dnalift.attribution import ops

MODES = ("rescale", "revealcancel", "genomics")
_PASS_THROUGH = ops.POSITIVE_STRUCTURAL | ops.SCALING | {"add", "sub", "neg", "rsub"}
_DENSE = {"linear", "addmm", "mm", "matmul", "bmm"}
_CONV = {"conv1d", "conv2d", "convolution", "_convolution"}


def _producer(plan):
    return {step.node.name: step for step in plan.steps}


def _dependent_inputs(step, producers):
    from dnalift.attribution.plan import _iter_nodes

    return [producers[n.name] for n in _iter_nodes(step.args) if n.name in producers]


def nonlinear_rules(plan, rule: str) -> dict:
    """Map each nonlinear step's node name to ``"rescale"`` or ``"revealcancel"``.

    Parameters
    ----------
    plan : Plan
    rule : {"rescale", "revealcancel", "genomics"}
    """
    if rule not in MODES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(MODES)}")
    producers = _producer(plan)
    chosen = {}
    for step in plan.steps:
        if step.kind != "nonlinear":
            continue
        if rule != "genomics":
            chosen[step.node.name] = rule
            continue
        chosen[step.node.name] = "revealcancel" if _parent_layer(step, producers) in _DENSE else "rescale"
    return chosen


def _parent_layer(step, producers) -> str | None:
    current = step
    while True:
        parents = _dependent_inputs(current, producers)
        if len(parents) != 1:
            return None
        parent = parents[0]
        if parent.name in _DENSE or parent.name in _CONV:
            return parent.name
        if parent.kind == "linear" and parent.name in _PASS_THROUGH:
            current = parent
            continue
        return None


def split_needed(plan, rules: dict) -> set:
    """Names of nodes whose difference must be carried as positive and negative parts.

    A node needs the split when a RevealCancel nonlinearity reads it, directly or through ops that route the
    parts (everything except the weighted linear ops, which split their input afresh by the sign of each term).
    """
    users: dict[str, list] = {}
    producers = _producer(plan)
    for step in plan.steps:
        for parent in _dependent_inputs(step, producers):
            users.setdefault(parent.node.name, []).append(step)
    needed: set = set()
    for step in reversed(plan.steps):
        name = step.node.name
        for user in users.get(name, ()):
            if user.kind == "nonlinear" and rules.get(user.node.name) == "revealcancel":
                needed.add(name)
            elif user.name in ops.WEIGHTED or user.kind == "gradient":
                continue
            elif user.node.name in needed:
                needed.add(name)
    return needed
