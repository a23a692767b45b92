"""The rule table: which DeepLIFT rule each ATen operation gets.

dnalift never looks at module types. Every model is exported to one ATen graph, and each operation in it that
depends on the input is looked up here by its ATen name. The kinds are:

``linear``
    Linear in its input-dependent tensor arguments (conv, linear, add, mean, views, pooling by averaging,
    batch norm in eval mode, multiplication by a constant...). Rescale mode passes gradients through them
    (the Linear rule: the multiplier of an affine function is its weight). RevealCancel mode routes the positive
    and negative parts of the difference from reference by the sign of each coefficient; the *weighted*
    subkind (conv, linear, matmul) splits each term ``w * dx`` by its sign.
``nonlinear``
    Elementwise functions of one input-dependent tensor: Rescale or RevealCancel.
``max``
    Max pooling and reductions by max: the exact max rule, or the original code's gradient rule.
``product``
    ``mul`` of two input-dependent tensors (gates): paper 2.3.5.
``softmax``
    Softmax or log-softmax producing the model output: the target becomes the mean-normalised logits
    (paper 2.5).
``meta``
    Shape queries (``sym_size``) and tuple indexing: no arithmetic on the data.

Anything else that depends on the input is refused before anything runs.
"""

from __future__ import annotations

import operator

import torch

aten = torch.ops.aten

# Linear ops whose coefficients are all non-negative: they move or average values (RevealCancel routes the
# positive part to the positive part). The first argument is the input-dependent tensor; other arguments are
# shapes, dims or constants.
POSITIVE_STRUCTURAL = {
    "view", "reshape", "_unsafe_view", "permute", "transpose", "t", "unsqueeze", "squeeze", "flatten",
    "unflatten", "expand", "expand_as", "repeat", "slice", "select", "narrow", "clone", "contiguous", "alias",
    "detach", "dropout", "feature_dropout", "alpha_dropout", "_to_copy", "to", "type_as", "flip", "roll",
    "mean", "sum", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "index_select",
    "lift_fresh_copy", "split", "split_with_sizes", "chunk", "unbind", "movedim", "upsample_nearest1d",
    "repeat_interleave", "constant_pad_nd", "pad", "view_copy", "permute_copy", "unsqueeze_copy",
    "squeeze_copy", "slice_copy", "select_copy", "transpose_copy", "expand_copy", "t_copy", "cumsum",
    "identity",
}
# Linear ops that add or subtract input-dependent tensors (and constants, which cancel in differences).
ADDITIVE = {"add", "sub", "rsub", "neg"}
# Linear ops that scale by a constant (which may be negative: RevealCancel swaps the parts there).
SCALING = {"mul", "div", "batch_norm", "_native_batch_norm_legit_no_training"}
# Linear ops that are a weighted sum with a constant weight tensor.
WEIGHTED = {"conv1d", "conv2d", "convolution", "_convolution", "linear", "addmm", "mm", "matmul", "bmm"}
# Linear ops with several tensor inputs that are concatenated or selected.
COMBINING = {"cat", "stack", "concat", "concatenate", "where"}
# Elementwise nonlinearities of one tensor (other arguments are constants: PReLU weight, slopes...).
NONLINEAR = {
    "relu", "leaky_relu", "prelu", "_prelu_kernel", "elu", "selu", "celu", "gelu", "silu", "sigmoid", "tanh",
    "softplus", "exp", "hardtanh", "relu6", "hardsigmoid", "hardswish", "mish", "clamp", "clamp_min",
    "clamp_max", "abs", "square", "pow", "log1p", "log", "sqrt", "rsqrt", "log_sigmoid", "expm1", "sin", "cos",
}
MAX = {
    "max_pool1d", "max_pool2d", "max_pool1d_with_indices", "max_pool2d_with_indices", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "amax", "max",
}
SOFTMAX = {"softmax", "_softmax", "log_softmax", "_log_softmax"}
# Ops whose result depends only on the shape of their input, never on its values.
SHAPE_ONLY = {"zeros_like", "ones_like", "full_like", "empty_like", "new_zeros", "new_ones", "new_full",
              "new_empty", "scalar_tensor"}
META = {"sym_size", "sym_numel", "sym_stride", "sym_storage_offset", "size", "dim"}

# The plain-language name of each kind, used by `dnalift info`.
RULE_NAMES = {
    "linear": "linear (gradient)",
    "nonlinear": "Rescale",
    "max": "max rule",
    "product": "product rule (2.3.5)",
    "softmax": "target mean-normalised logits (2.5)",
    "meta": "shape only",
    "gradient": "gradient fallback (allowed by the user)",
}


def op_name(target) -> str:
    """The ATen packet name of a graph node's target, without the in-place underscore.

    Parameters
    ----------
    target : OpOverload or callable
        ``node.target`` of a ``call_function`` node.

    Returns
    -------
    str
        For example ``"relu"`` for ``aten.relu_.default`` and ``"getitem"`` for ``operator.getitem``.
    """
    if target is operator.getitem:
        return "getitem"
    packet = getattr(target, "overloadpacket", None)
    if packet is None:
        return getattr(target, "__name__", str(target))
    name = packet.__name__
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]
    return name


def functional(target):
    """The functional (out-of-place) version of an in-place ATen op; other targets unchanged.

    The exported graph has already rewired the users of a mutated tensor, so running ``relu`` where the
    model ran ``relu_`` keeps the semantics and never mutates a value dnalift still needs.
    """
    packet = getattr(target, "overloadpacket", None)
    if packet is None:
        return target
    name = packet.__name__
    if not (name.endswith("_") and not name.startswith("_")):
        return target
    base = getattr(aten, name[:-1], None)
    if base is None:
        return target
    overload = target._overloadname
    return getattr(base, overload, None) or getattr(base, "default", None) or getattr(base, "Tensor", target)


def returns_indices(name: str) -> bool:
    """Whether a max op returns ``(values, indices)`` rather than values alone."""
    return name == "max" or name.endswith("with_indices") or name.startswith("adaptive_max")


def classify(name: str, n_dependent_tensors: int) -> str | None:
    """The kind of rule for an op that depends on the input, or None when there is no rule.

    Parameters
    ----------
    name : str
        From :func:`op_name`.
    n_dependent_tensors : int
        How many of its tensor arguments depend on the input.
    """
    if name in META or name == "getitem":
        return "meta"
    if name == "mul":
        return "product" if n_dependent_tensors >= 2 else "linear"
    if name == "div":
        return "linear" if n_dependent_tensors == 1 else None
    if name in WEIGHTED:
        return "linear" if n_dependent_tensors == 1 else None
    if name in POSITIVE_STRUCTURAL or name in ADDITIVE or name in SCALING or name in COMBINING:
        return "linear"
    if name in NONLINEAR:
        return "nonlinear" if n_dependent_tensors == 1 else None
    if name in MAX:
        return "max" if n_dependent_tensors == 1 else None
    if name in SOFTMAX:
        return "softmax"
    return None
