"""The engine: an exported graph, a rule for every op, and DeepLIFT run over sequences and their references.

Vocabulary (one word per concept; the code uses these words and no others for them):

mode
    The user's choice of rule for nonlinearities: ``rescale``, ``revealcancel`` or ``genomics`` (RevealCancel
    after dense layers, Rescale after convolutions). ``--rule`` on the command line and ``rule=`` in the API,
    as the paper words it; :class:`~dnalift.options.Mode` in the code.
max rule
    How a max passes differences on: ``exact`` or ``gradient`` (the original code's).
op
    An ATen operator of the exported graph, named without overload or in-place underscore (``relu``).
kind
    A family of per-op rules, one module in :mod:`dnalift.attribution.kinds` with both passes side by side:
    linear, nonlinear, max, product, composite, bookkeeping. A step's ``kind`` names its family.
rule
    What the registry (:mod:`dnalift.attribution.registry`) holds for one op: its kind, genomics role and the
    facts normalisation and pooling need (:class:`~dnalift.attribution.registry.OpRule`).
plan, step
    The graph compiled for one (mode, max rule): a step per op that depends on the input, each with its kind
    chosen once (:mod:`dnalift.attribution.plan`; :func:`~dnalift.attribution.modes.assign_modes` chooses
    Rescale or RevealCancel per nonlinearity, :meth:`OpRule.kind_for` the kind of an op whose rule depends on
    its arguments).
difference
    ``Δx = x − x⁰``: a value on the sequence minus the same value on a reference.
parts
    A difference carried as its positive and negative parts (Δ⁺, Δ⁻), which RevealCancel needs
    (:mod:`dnalift.attribution.parts`); the pass that carries them is the parts pass. Only this is called a
    split.
multiplier
    ``m = Δy/Δx`` (Rescale, RevealCancel), what the backward pass carries.
contribution, hypothetical score
    ``C = m·Δx`` on the observed base; the hypothetical score is ``m·(e_b − x⁰)`` for each base b.
delta error
    The summation-to-delta error of a row: Σ contributions minus the target's difference (``deltas`` in the
    result file).
target
    The scalar per row that is explained: an output index, a name, ``counts`` or ``profile``
    (:mod:`dnalift.attribution.targets`). Targets are *resolved* against the model's outputs; nothing else is
    resolved.
pairing
    How the rows of sequences and references line up in one batch (``n`` sequences × ``r`` references;
    :meth:`~dnalift.attribution.pairing.Pairing.per_sequence` views them per sequence).
describe
    The rule table of a model (:func:`~dnalift.attribution.engine.describe`, ``dnalift info``); a device or a
    layout has a *label* (``device_label``, ``layouts.label_of``).

Layers of this package, top down: ``engine`` (the API: :func:`~dnalift.attribution.engine.attribute`) →
``runner`` and ``batching`` (passes over batches) → ``plan`` and ``modes`` (graph → steps) → ``targets`` →
``registry`` → ``kinds/`` → ``parts`` and ``pairing``.
"""
