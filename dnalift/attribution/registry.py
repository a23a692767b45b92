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
                                              Concat, Dropout, Identity, Scale, Structural, Weighted, Where)
from dnalift.attribution.kinds.max import Max
from dnalift.attribution.kinds.nonlinear import Nonlinear
from dnalift.attribution.kinds.product import Bilinear, Product
from dnalift.attribution.kinds.transposed_conv import TRANSPOSED_CONV

__all__ = ["Role", "OpRule", "REGISTRY", "register_rule", "rule_for", "moves_values"]


class Role(enum.Enum):
    """What an op is to the genomics mode."""

    DENSE = "dense"    # a dense layer: nonlinearities it feeds get RevealCancel
    CONV = "conv"      # a convolution: nonlinearities it feeds get Rescale
    PASS = "pass"      # bias, scaling, normalisation, reshaping: looked through
    OTHER = "other"    # anything else: a nonlinearity it feeds gets Rescale


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
    select : callable, optional
        ``select(dependent_positions) -> (Kind, Role)`` for ops whose rule depends on which of their arguments
        depend on the input (``dependent_positions``: indices into ``node.args``; list items count as their
        list's index).
    """

    op: str
    kind: Kind
    role: Role = Role.OTHER
    moves_values: bool = False
    shape_only: bool = False
    select: Callable | None = None

    def resolve(self, node, dependent: set) -> tuple[Kind, Role]:
        """The kind and role for one graph node."""
        if self.select is None:
            return self.kind, self.role
        positions = tuple(i for i, a in enumerate(node.args) if any(n.name in dependent for n in iter_nodes(a)))
        return self.select(positions)


REGISTRY: dict[str, OpRule] = {}


def register_rule(op: str, kind: Kind, *, role: Role = Role.OTHER, moves_values: bool = False,
                  shape_only: bool = False, select: Callable | None = None, replace: bool = False) -> OpRule:
    """Add (or with ``replace=True`` replace) the rule of an ATen op.

    Parameters
    ----------
    op : str
        The ATen name (``"softsign"``; ``aten.`` prefix, overload and in-place underscore are dropped).
    kind : Kind
        For an elementwise activation ``Nonlinear()``; see :mod:`dnalift.attribution.kinds` for the others.
    role, moves_values, shape_only, select
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
    rule = OpRule(name, kind, role=role, moves_values=moves_values, shape_only=shape_only, select=select)
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
         "view_as reshape_as reflection_pad1d reflection_pad2d replication_pad1d replication_pad2d _pad_circular "
         "view_copy permute_copy unsqueeze_copy squeeze_copy slice_copy select_copy transpose_copy t_copy",
         _structural, role=Role.PASS, moves_values=True)
# copies that repeat entries (weight normalisation does not follow them: a unit would see a column twice)
_entries("expand expand_as expand_copy repeat repeat_interleave upsample_nearest1d", _structural, role=Role.PASS)
register_rule("constant_pad_nd", Structural(pad_value_arg=2), role=Role.PASS, moves_values=True)
register_rule("pad", Structural(pad_value_arg=3), role=Role.PASS, moves_values=True)
# sums and averages: non-negative coefficients
_entries("mean sum avg_pool1d avg_pool2d adaptive_avg_pool1d adaptive_avg_pool2d cumsum", _structural,
         role=Role.PASS)
# ops that return their input's values (casts that change no value, copies, eval-mode dropout)
_entries("clone alias lift_fresh_copy identity contiguous type_as", _identity, role=Role.PASS, moves_values=True)
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
_entries("conv1d conv2d", Weighted(CONV), role=Role.CONV)
_entries("convolution _convolution", Weighted(CONVOLUTION), role=Role.CONV)
_entries("conv_transpose1d conv_transpose2d", Weighted(TRANSPOSED_CONV), role=Role.CONV)
register_rule("linear", Weighted(LINEAR), role=Role.DENSE)
register_rule("addmm", Weighted(ADDMM), role=Role.DENSE)
_matmul, _bilinear = Weighted(MATMUL), Bilinear()
_entries("mm matmul bmm", _matmul, role=Role.DENSE,
         select=lambda deps: (_bilinear, Role.OTHER) if len(deps) == 2 else (_matmul, Role.DENSE))
register_rule("einsum", Bilinear(einsum=True))

# combining
_entries("cat concat concatenate stack", Concat(), moves_values=True)
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
_entries("max_pool1d max_pool2d max_pool1d_with_indices max_pool2d_with_indices adaptive_max_pool1d "
         "adaptive_max_pool2d amax max", Max())

# softmax and normalisation inside the network, attention: exact chains of the rules above
_entries("softmax _softmax", comp.Composite(lambda ch, z, dim, *_: comp.softmax_chain(ch, z, dim),
                                            label="softmax: exp, sum, 1/s and product rule",
                                            options=comp.softmax_options))
_entries("log_softmax _log_softmax", comp.Composite(lambda ch, z, dim, *_: comp.softmax_chain(ch, z, dim, log=True),
                                                    label="log-softmax: exp, sum, log (Rescale)",
                                                    options=comp.softmax_options))
register_rule("layer_norm", comp.Composite(comp.layer_norm_chain,
                                           label="layer norm: centring, variance, rsqrt and product rule"))
register_rule("rms_norm", comp.Composite(comp.rms_norm_chain, label="RMS norm: mean square, rsqrt and product rule"))
register_rule("group_norm", comp.Composite(comp.group_norm_chain,
                                           label="group norm: layer norm per group and product rule"))


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
                                "target, use target 'profile' instead of a softmax(...).detach() wrapper)"))
_entries("_local_scalar_dense item", Refused("reading a value that depends on the input as a Python number "
                                             "(.item()), which the graph cannot follow"))
