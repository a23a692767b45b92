"""The kinds of DeepLIFT rule, one module each, with both passes of a kind side by side.

Every kind is a :class:`~dnalift.attribution.kinds.base.Kind`: an argument check, the Rescale pass (the op on the
references, with a backward that multiplies by DeepLIFT multipliers) and the RevealCancel pass (the difference
of its output from the differences of its inputs, carried as positive and negative parts where needed). The
registry (:mod:`dnalift.attribution.registry`) says which kind each ATen op gets.

- :mod:`.linear`: ops that are linear in their input-dependent arguments (views, sums, conv/linear, add...).
- :mod:`.nonlinear`: elementwise nonlinearities (Rescale, RevealCancel).
- :mod:`.max`: max pooling and max reductions (the exact max rule, or the original code's gradient rule).
- :mod:`.product`: products of two input-dependent tensors (gates, attention): the 2016 paper's 2.3.5 rule.
- :mod:`.composite`: ops computed as a chain of the rules above (softmax inside the network, normalisation
  layers, division of two activations).
- :mod:`.bookkeeping`: shape queries, tuple indexing, value-preserving casts and metadata checks, and the
  gradient fallback the user can allow for named ops.
"""
