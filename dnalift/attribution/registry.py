"""The rule registry: one entry per ATen op (or op family) with everything dnalift needs to know about it.

dnalift never looks at module types. Every model is exported to one ATen graph, and each op in it that depends
on the input is looked up here by its ATen name (``relu`` for ``aten.relu_.default``). An entry carries:

* its **kind** (:mod:`dnalift.attribution.kinds`): the argument check, the Rescale pass and the RevealCancel
  pass side by side; an op whose rule depends on how many of its arguments depend on the input (``mul`` by a
  constant is linear, ``mul`` of two activations is the product rule) has a ``select`` function;
* its **genomics role** (:class:`Role`): the "genomics" mode gives RevealCancel to nonlinearities fed by dense
  layers and Rescale to those fed by convolutions, looking back through ops with role ``PASS``;
* whether it only **moves values** (copies, selects, reorders entries or returns its input): first-layer weight
  normalisation (:mod:`dnalift.normalize.weights`) follows the one-hot input through these ops;
* whether its value depends only on its input's **shape** (``zeros_like``): it is recomputed per batch with no
  difference from reference.

Adding an elementwise activation is one line here (``_entries("softsign", _nonlinear)``); a weighted op is one
module with its :class:`~dnalift.attribution.kinds.linear.WeightedSpec` (:mod:`.kinds.transposed_conv`) and one
line here; users add their own with :func:`register_rule`.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Callable

from dnalift.attribution.kinds import composite as comp
from dnalift.attribution.kinds.base import Kind, iter_nodes
from dnalift.attribution.kinds.bookkeeping import Meta, NoValue, Refused
from dnalift.attribution.kinds.linear import (ADDMM, CONV, CONVOLUTION, LINEAR, MATMUL, Additive, BatchNorm,
                                              Concat, Dropout, Identity, Scale, ShapedLike, Structural, Weighted,
                                              Where)
from dnalift.attribution.kinds.max import Max, Pooling, Window
from dnalift.attribution.kinds.nonlinear import Nonlinear
from dnalift.attribution.kinds.product import Bilinear, Product
from dnalift.attribution.kinds.transposed_conv import TRANSPOSED_CONV

__all__ = ["Role", "WeightLayout", "WeightArgs", "OpRule", "REGISTRY", "register_rule", "rule_for", "moves_values"]


class Role(enum.Enum):
    """What an op is to the genomics mode."""

    DENSE = "dense"    # a dense layer: nonlinearities it feeds get RevealCancel
    CONV = "conv"      # a convolution: nonlinearities it feeds get Rescale
    PASS = "pass"      # bias, scaling, normalisation, reshaping: looked through
    OTHER = "other"    # anything else: a nonlinearity it feeds gets Rescale


class WeightLayout(enum.Enum):
    """How a weighted op's weight is laid out (for first-layer normalisation)."""

    CONV = "conv"       # (out, in, *kernel), as conv1d/conv2d
    OUT_IN = "out_in"   # (out, in), as F.linear
    IN_OUT = "in_out"   # (in, out), as mm, addmm, matmul


@dataclasses.dataclass(frozen=True)
class WeightArgs:
    """Where a weighted op's activation and weight are, and the weight's layout (for normalisation).

    An op with a weight that normalisation cannot handle (a transposed convolution: ``(in, out, *kernel)``)
    has none, and normalisation leaves it, saying why.
    """

    data: str
    weight: str
    layout: WeightLayout


@dataclasses.dataclass(frozen=True)
class OpRule:
    """The registry entry of one ATen op.

    Attributes
    ----------
    op : str
        ATen name without overload or in-place underscore (``"conv1d"``).
    kind : Kind
        The rule (when ``select`` does not choose another).
    role : Role
        For the genomics mode.
    moves_values : bool
        The op only copies, selects or reorders entries, or returns its input (for weight normalisation).
    shape_only : bool
        The op's value depends only on its input's shape, never on its values.
    shape_args : tuple of int
        Positions of arguments of which the op reads only the shape (``expand_as(a, b)``: ``(1,)``); they do
        not make the op input-dependent.
    select : callable, optional
        ``select(dependent_positions) -> (Kind, Role)`` for ops whose rule depends on which of their arguments
        depend on the input (``dependent_positions``: indices into ``node.args``; list items count as their
        list's index).
    weights : WeightArgs, optional
        A weighted layer's activation and weight arguments (first-layer normalisation).
    value_args : tuple of str, optional
        For an op that moves values: the arguments whose values it moves (``cat``'s ``tensors``); the others
        are read for their shape or dtype only (``type_as``'s ``other``). None: the first argument.
    pad_value : str, optional
        A padding's fill-value argument (normalisation follows the input only through padding with 0).
    softmax_head : bool
        A softmax or log-softmax: at a model's output, targets are taken on its input logits, normalised as the
        2016 paper's section 2.5 says.
    """

    op: str
    kind: Kind
    role: Role = Role.OTHER
    moves_values: bool = False
    shape_only: bool = False
    select: Callable | None = None
    shape_args: tuple = ()
    weights: WeightArgs | None = None
    value_args: tuple[str, ...] | None = None
    pad_value: str | None = None
    softmax_head: bool = False

    def kind_for(self, node, dependent: set) -> tuple[Kind, Role]:
        """The kind and role for one graph node."""
        if self.select is None:
            return self.kind, self.role
        positions = tuple(i for i, a in enumerate(node.args) if any(n.name in dependent for n in iter_nodes(a)))
        return self.select(positions)


REGISTRY: dict[str, OpRule] = {}


def register_rule(op: str, kind: Kind, *, role: Role = Role.OTHER, moves_values: bool = False,
                  shape_only: bool = False, select: Callable | None = None, shape_args: tuple = (),
                  weights: WeightArgs | None = None, value_args: tuple[str, ...] | None = None,
                  pad_value: str | None = None, softmax_head: bool = False, replace: bool = False) -> OpRule:
    """Add (or with ``replace=True`` replace) the rule of an ATen op.

    Parameters
    ----------
    op : str
        The ATen name (``"softsign"``; ``aten.`` prefix, overload and in-place underscore are dropped).
    kind : Kind
        For an elementwise activation ``Nonlinear()``; see :mod:`dnalift.attribution.kinds` for the others.
    role, moves_values, shape_only, select, shape_args, weights, value_args, pad_value, softmax_head
        See :class:`OpRule`.

    Returns
    -------
    OpRule

    Examples
    --------
    >>> from dnalift.attribution.registry import register_rule
    >>> from dnalift.attribution.kinds.nonlinear import Nonlinear
    >>> rule = register_rule("my_activation", Nonlinear())
    """
    name = op.removeprefix("aten.").split(".")[0]
    if not isinstance(kind, Kind):
        raise TypeError(f"the rule of aten.{name} must be a Kind, not {type(kind).__name__}")
    if type(kind).difference is Kind.difference and not isinstance(kind, Refused):
        raise TypeError(f"{type(kind).__name__} has no RevealCancel pass (difference); every rule needs both "
                        "passes")
    if name in REGISTRY and not replace:
        raise ValueError(f"aten.{name} already has a rule; pass replace=True to replace it")
    rule = OpRule(name, kind, role=role, moves_values=moves_values, shape_only=shape_only, select=select,
                  shape_args=tuple(shape_args), weights=weights, value_args=value_args, pad_value=pad_value,
                  softmax_head=softmax_head)
    REGISTRY[name] = rule
    return rule


def rule_for(op: str) -> OpRule | None:
    """The registry entry of an ATen op name, or None when it has no rule."""
    return REGISTRY.get(op)


def moves_values(op: str) -> bool:
    """Whether an op only moves, copies, selects values or returns its input (weight normalisation)."""
    rule = REGISTRY.get(op)
    return bool(rule and rule.moves_values)


# ----------------------------------------------------------------------------------------------- entries
def _entries(names, kind, **options):
    for name in names.split():
        register_rule(name, kind, **options)


_nonlinear = Nonlinear()
_structural = Structural()
_identity = Identity()

# views, selections, reorderings and padding: non-negative coefficients that only move values
_entries("view reshape _unsafe_view permute transpose t unsqueeze squeeze flatten unflatten slice select narrow "
         "flip roll index index_select split split_with_sizes chunk unbind movedim swapaxes swapdims tensor_split "
         "reflection_pad1d reflection_pad2d replication_pad1d replication_pad2d _pad_circular "
         "view_copy permute_copy unsqueeze_copy squeeze_copy slice_copy select_copy transpose_copy t_copy",
         _structural, role=Role.PASS, moves_values=True)
# copies that repeat entries (weight normalisation does not follow them: a unit would see a column twice)
_entries("expand expand_copy repeat repeat_interleave", _structural, role=Role.PASS)
# the same with the shape of a second tensor, which may depend on the input (F.normalize's expand_as)
_entries("view_as reshape_as", ShapedLike(), role=Role.PASS, moves_values=True, shape_args=(1,))
register_rule("expand_as", ShapedLike(), role=Role.PASS, shape_args=(1,))
# upsampling: nearest repeats entries, linear interpolation averages two (four, eight) neighbours with weights
# in [0, 1] that sum to 1: linear with non-negative coefficients, so the gradient is the exact rule
_entries("upsample_nearest1d upsample_nearest2d upsample_nearest3d _upsample_nearest_exact1d "
         "_upsample_nearest_exact2d _upsample_nearest_exact3d", Structural(label="upsampling (gradient)"),
         role=Role.PASS)
_entries("upsample_linear1d upsample_bilinear2d upsample_trilinear3d",
         Structural(label="linear interpolation (gradient)"), role=Role.PASS)
register_rule("constant_pad_nd", Structural(pad_value_arg=2), role=Role.PASS, moves_values=True, pad_value="value")
register_rule("pad", Structural(pad_value_arg=3), role=Role.PASS, moves_values=True, pad_value="value")
# sums and averages: non-negative coefficients
_entries("mean sum avg_pool1d avg_pool2d adaptive_avg_pool1d adaptive_avg_pool2d cumsum", _structural,
         role=Role.PASS)
# ops that return their input's values (casts that change no value, copies, eval-mode dropout)
_entries("clone alias lift_fresh_copy identity contiguous", _identity, role=Role.PASS, moves_values=True)
register_rule("type_as", _identity, role=Role.PASS, moves_values=True, value_args=("self",))
_entries("dropout feature_dropout alpha_dropout feature_alpha_dropout", Dropout(), role=Role.PASS,
         moves_values=True)


class _Cast(Identity):
    """``to``/``_to_copy`` to a floating dtype or another device: the engine keeps its own dtype and device."""

    def check(self, node, dependent):
        import torch

        reason = super().check(node, dependent)
        if reason:
            return reason
        dtypes = [a for a in list(node.args[1:]) + list(node.kwargs.values()) if isinstance(a, torch.dtype)]
        if any(not (d.is_floating_point or d.is_complex) for d in dtypes):
            return "a cast to an integer or boolean type, which changes the values"
        return None


_entries("to _to_copy", _Cast(), role=Role.PASS, moves_values=True)
register_rule("_assert_tensor_metadata", NoValue(), moves_values=True)

# sums of activations and constants; scaling by constants; batch norm in eval mode
_entries("add sub rsub neg", Additive(), role=Role.PASS)
_entries("batch_norm _native_batch_norm_legit_no_training", BatchNorm(), role=Role.PASS)
_scale = Scale()
_product = Product()
register_rule("mul", _scale, role=Role.PASS,
              select=lambda deps: (_product, Role.OTHER) if len(deps) == 2 else (_scale, Role.PASS))
_quotient = comp.Composite(comp.quotient_chain, inputs=(0, 1), label="a * (1 / b): product rule, Rescale")
register_rule("div", _scale, role=Role.PASS,
              select=lambda deps: (_scale, Role.PASS) if deps == (0,) else (_quotient, Role.OTHER))

# weighted layers with a constant weight (each term split by its sign in RevealCancel mode)
_conv_weights = WeightArgs("input", "weight", WeightLayout.CONV)
_entries("conv1d conv2d", Weighted(CONV), role=Role.CONV, weights=_conv_weights)
_entries("convolution _convolution", Weighted(CONVOLUTION), role=Role.CONV, weights=_conv_weights)
_entries("conv_transpose1d conv_transpose2d", Weighted(TRANSPOSED_CONV), role=Role.CONV)  # weight (in, out, k)
register_rule("linear", Weighted(LINEAR), role=Role.DENSE, weights=WeightArgs("input", "weight", WeightLayout.OUT_IN))
register_rule("addmm", Weighted(ADDMM), role=Role.DENSE, weights=WeightArgs("mat1", "mat2", WeightLayout.IN_OUT))
_matmul, _bilinear = Weighted(MATMUL), Bilinear()
_matmul_select = lambda deps: (_bilinear, Role.OTHER) if len(deps) == 2 else (_matmul, Role.DENSE)  # noqa: E731
register_rule("mm", _matmul, role=Role.DENSE, select=_matmul_select,
              weights=WeightArgs("self", "mat2", WeightLayout.IN_OUT))
register_rule("matmul", _matmul, role=Role.DENSE, select=_matmul_select,
              weights=WeightArgs("self", "other", WeightLayout.IN_OUT))
register_rule("bmm", _matmul, role=Role.DENSE, select=_matmul_select)
register_rule("einsum", Bilinear(einsum=True))

# combining
_entries("cat concat concatenate stack", Concat(), moves_values=True, value_args=("tensors",))
register_rule("where", Where())

# elementwise nonlinearities: Rescale or RevealCancel
_entries("relu leaky_relu prelu _prelu_kernel elu selu celu gelu silu sigmoid tanh softplus exp hardtanh relu6 "
         "hardsigmoid hardswish mish clamp clamp_min clamp_max abs square log1p log sqrt rsqrt log_sigmoid "
         "expm1 sin cos reciprocal threshold", _nonlinear)


class _Power(Nonlinear):
    """``pow`` with a constant exponent (``x ** 2``); a tensor to a tensor power has no rule."""

    def check(self, node, dependent):
        if node.target._overloadname != "Tensor_Scalar":
            return "a power whose exponent is a tensor"
        return super().check(node, dependent)


register_rule("pow", _Power())

# max pooling and reductions
for _d in (1, 2):
    register_rule(f"max_pool{_d}d", Max(Pooling(Window.POOL, _d)))
    register_rule(f"max_pool{_d}d_with_indices", Max(Pooling(Window.POOL, _d, returns_indices=True)))
    register_rule(f"adaptive_max_pool{_d}d", Max(Pooling(Window.ADAPTIVE, _d, returns_indices=True)))
register_rule("amax", Max(Pooling(Window.AMAX)))
register_rule("max", Max(Pooling(Window.MAX_DIM, returns_indices=True)))

# softmax and normalisation inside the network, attention: exact chains of the rules above
_entries("softmax _softmax", comp.Composite(lambda ch, z, dim, *_: comp.softmax_chain(ch, z, dim),
                                            label="softmax: exp, sum, 1/s and product rule",
                                            options=comp.softmax_options), softmax_head=True)
_entries("log_softmax _log_softmax", comp.Composite(lambda ch, z, dim, *_: comp.softmax_chain(ch, z, dim, log=True),
                                                    label="log-softmax: exp, sum, log (Rescale)",
                                                    options=comp.softmax_options), softmax_head=True)
register_rule("layer_norm", comp.Composite(comp.layer_norm_chain,
                                           label="layer norm: centring, variance, rsqrt and product rule"))
register_rule("rms_norm", comp.Composite(comp.rms_norm_chain, label="RMS norm: mean square, rsqrt and product rule"))
register_rule("group_norm", comp.Composite(comp.group_norm_chain,
                                           label="group norm: layer norm per group and product rule"))

_entries("linalg_vector_norm linalg_norm norm",
         comp.Composite(comp.norm_chain, options=comp.norm_options,
                        label="p-norm: |x|^p (square), sum, root (exact secant)"))


def _attention_options(node) -> str | None:
    dropout = node.args[4] if len(node.args) > 4 else node.kwargs.get("dropout_p", 0.0)
    if dropout:
        return "attention with dropout (put the model in eval mode before saving it)"
    return None


register_rule("scaled_dot_product_attention",
              comp.Composite(comp.attention_chain, inputs=(0, 1, 2), options=_attention_options,
                             label="attention: bilinear product rule and softmax"))

# no arithmetic on the data
_entries("sym_size sym_numel sym_stride sym_storage_offset size dim", Meta())
register_rule("getitem", Meta(), role=Role.PASS)  # a piece of split/chunk's result: looked through by genomics
_entries("zeros_like ones_like full_like empty_like new_zeros new_ones new_full new_empty scalar_tensor", Meta(),
         shape_only=True)
register_rule("detach", Refused("detach of a value that depends on the input: no difference from reference "
                                "passes through it, so the scores would miss that path (for a BPNet profile "
                                "target, use target 'profile-fixed' instead of a softmax(...).detach() wrapper)"))
_entries("_local_scalar_dense item", Refused("reading a value that depends on the input as a Python number "
                                             "(.item()), which the graph cannot follow"))
