"""Weight normalisation of the first layer for one-hot input (DeepLIFT paper, section 2.6).

One-hot DNA satisfies one constraint per position: the four channels A, C, G, T of a column sum to 1. A unit
of the first layer (a convolution filter at one output position, or a dense unit) sees whole columns, so for
each column ``l`` it sees, adding the same constant ``mu`` to its four weights ``w[A..T, l]`` and taking
``mu`` off its bias leaves its output unchanged on every one-hot input. DeepLIFT's multipliers for an affine
layer are its weights, so the choice of ``mu`` matters to the scores; the paper's choice is the mean over the
four bases, which makes each column's weights sum to zero::

    w_bar[o, c, l] = w[o, c, l] - mu[o, l],   mu[o, l] = mean_c w[o, c, l]
    b_bar[o]       = b[o] + sum_l mu[o, l]            (for each column l the unit sees)

:func:`normalize_first_layer` rewrites every convolution (``conv1d``, ``conv2d``, ``convolution``) or dense
layer (``linear``; ``mm``, ``matmul``, ``addmm`` with a constant weight) that the one-hot input reaches
directly or through layout-only ops (permute, transpose, view/reshape/flatten, unsqueeze/squeeze, contiguous,
dtype casts, eval-mode dropout, flip/roll/slicing, padding, concatenation of such paths). Which weights belong
to which column is found by pushing a tensor of column ids through those ops, so channels-last models,
reverse-complement branches and flattened inputs are handled alike.

Padding: a zero-padded column sums to 0, not 1, so for a unit that overlaps the padding the bias correction
is only the ``mu`` of the real columns it sees. Predictions then stay exactly unchanged: when some unit sees
padding, the correction is added as a constant per output position (a ``(out, positions)`` tensor for the
model's input length) instead of being folded into the bias. Reflect/replicate/circular padding copies real
columns and needs no such care.

What this means for N and for zero references: an all-zero column (N, or an all-zero reference) contributes
nothing through the normalised weights, and the bias now holds the mean over the four bases, so an all-zero
column behaves exactly like the average base (0.25 A, 0.25 C, 0.25 G, 0.25 T) at the first layer. After
normalisation an all-zero reference is therefore the same as the uniform expected-frequency reference (the
paper's section 3.2 reference), and N positions in the input score as an average base. Without normalisation
an all-zero column behaves as "no base at all", which is outside anything a one-hot model was trained on.

The transformation is done on the exported graph (``program.module()`` is edited and re-exported): the
original :class:`~dnalift.models.LoadedModel` and its program are not modified.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
import torch.nn as nn

from dnalift.errors import DnaliftError
from dnalift.attribution.registry import Role
from dnalift.normalize.layers import (Blocked, Evaluator, WeightLayout, column_ids, entry_of, fetch_attr, first_layers,
                                     input_node, op_args, packet, set_arg, weights_of)
from dnalift.models import layouts
from dnalift.models.export import export_module, unlift
from dnalift.models.loaded import LoadedModel

__all__ = ["normalize_first_layer"]

log = logging.getLogger(__name__)

aten = torch.ops.aten


def normalize_first_layer(model: LoadedModel) -> LoadedModel:
    """Mean-normalise, per output unit and input column, the weights of the layer(s) fed by the one-hot input.

    Parameters
    ----------
    model : LoadedModel
        A loaded model with a fixed input length.

    Returns
    -------
    LoadedModel
        A copy with a new program (``normalized=True``) whose outputs equal the original's on every one-hot
        input without N; ``model`` itself is not changed. A model already normalised is returned as it is.

    Raises
    ------
    DnaliftError
        When the one-hot input reaches no convolution or linear layer through layout-only ops (then score
        without normalisation: ``--no-normalize``), or the input length is not fixed.
    """
    if model.normalized:
        return model
    where = model.path or "<module>"
    if layouts.detect(model.input_shape) is None or any(d is None for d in model.input_shape):
        raise DnaliftError(f"{where}: weight normalisation needs a fixed one-hot input (4, length), (length, 4) or "
                           f"(4, 1, length), "
                           f"the model takes {model.input_shape}; load it with input_length=L or pass --no-normalize")
    gm = unlift(model.program)
    x_node = input_node(gm, where)
    layers, blockers = first_layers(gm, x_node)
    ids = column_ids(model)
    evaluator = Evaluator(gm, x_node, ids)
    plans, reasons, erased = [], [], []
    for layer in layers:  # plan every layer on the unedited graph, then edit
        try:
            plans.append((layer, _plan(gm, layer, evaluator)))
        except Blocked as e:
            reasons.append(f"{_describe(layer)}: {e}")
    for index, (layer, plan) in enumerate(plans):
        erased += _apply(gm, layer, plan, index=index)
    done = [layer for layer, _ in plans]
    reasons += [f"{_describe(node)}: {_why_left(node)}" for node in blockers]
    if not done:
        why = "; ".join(reasons) if reasons else "the input is not used"
        raise DnaliftError(f"{where}: cannot normalise the first layer's weights: the one-hot input reaches no "
                           f"convolution or linear layer through layout-only ops ({why}); pass --no-normalize "
                           f"to score without weight normalisation")
    if reasons:
        log.warning("%s: normalised %d first layer(s); the one-hot input also reaches %s, left as they are",
                    where, len(done), "; ".join(reasons))
    _drop_unused_attributes(gm, erased)
    gm.graph.lint()
    gm.recompile()
    program = export_module(gm, model.input_shape, control_shapes=tuple(model.control_shapes or ()),
                            dtype=model.input_dtype, where=where)
    log.info("%s: normalised the weights of %s", where, ", ".join(_describe(n) for n in done))
    return dataclasses.replace(model, program=program, normalized=True)


def _why_left(node) -> str:
    rule = entry_of(node)
    if rule is not None and rule.weights is None and rule.role in (Role.CONV, Role.DENSE):
        return "a weighted layer whose weight layout normalisation does not handle (a transposed convolution)"
    return "not a convolution or linear layer"


# ----------------------------------------------------------------------------------------------------------
# per-layer plan: which weights form one one-hot column, and the corrections


@dataclasses.dataclass
class _Plan:
    kind: str                  # "conv", "linear" or "matmul"
    weight_name: str           # argument holding the weight
    new_weight: torch.Tensor   # in the argument's own layout
    bias_name: str | None      # argument holding the bias (conv/linear), None for mm/matmul/addmm
    new_bias: torch.Tensor | None
    offset: torch.Tensor | None  # added to the output (broadcast from the right), when not folded in the bias


def _plan(gm, layer, ev: Evaluator) -> _Plan:
    spec = weights_of(layer)
    conv, out_in = spec.layout is WeightLayout.CONV, spec.layout is WeightLayout.OUT_IN
    data_name, weight_name = spec.data, spec.weight
    args = op_args(layer)
    u = ev(args[data_name])
    weight_node = args[weight_name]
    weight = ev(weight_node) if isinstance(weight_node, torch.fx.Node) else weight_node
    if not isinstance(u, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise Blocked("input or weight is not a tensor")
    if not weight.dtype.is_floating_point:
        raise Blocked("integer weights")
    if conv:
        if args.get("transposed"):
            raise Blocked("transposed convolution")
        if args.get("groups", 1) != 1:
            raise Blocked(f"grouped convolution (groups={args['groups']})")
        out_ch = weight.shape[0]
        taps = int(weight[0].numel())
        # gather the id each weight tap sees at each output position with the layer's own op (its padding,
        # stride and dilation): a convolution with a selector weight, one output channel per tap
        selector = torch.eye(taps, dtype=torch.float64).reshape(taps, *weight.shape[1:])
        call_args = dict(args)
        call_args[data_name] = u
        call_args[weight_name] = selector
        call_args["bias"] = None
        positional = [call_args[a.name] for a in layer.target._schema.arguments]
        with torch.no_grad():
            gathered = layer.target(*positional)           # (B, taps, *spatial_out)
        tap_ids = gathered.transpose(0, 1).reshape(taps, -1)  # (taps, B * prod(spatial_out))
        batch = gathered.shape[0]
        out_spatial = tuple(gathered.shape[2:])
        w2 = weight.reshape(out_ch, taps).to(torch.float64)
    else:
        if weight.dim() != 2:
            raise Blocked(f"weight of shape {tuple(weight.shape)}")
        w2 = (weight if out_in else weight.T).to(torch.float64)  # (out, features)
        out_ch, taps = w2.shape
        if u.dim() < 2 or u.shape[-1] != taps:
            raise Blocked(f"input of shape {tuple(u.shape)}")
        tap_ids = u.reshape(-1, taps).T                    # (features, prod(leading dims))
        batch = u.shape[0]
        out_spatial = tuple(u.shape[1:-1])
    groups, real = _one_hot_groups(tap_ids)
    mu = w2[:, groups].mean(dim=-1)                        # (out, n_groups)
    w_bar = w2.clone()
    w_bar[:, groups] -= mu[:, :, None]
    if bool(real.all()):
        correction = mu.sum(dim=-1)                        # (out,): the same at every position
    else:
        per_pos = (mu @ real.to(torch.float64)).reshape(out_ch, batch, -1)
        if not torch.equal(per_pos, per_pos[:, :1].expand_as(per_pos)):
            raise Blocked("the padding seen differs along the batch dimension")
        correction = per_pos[:, 0].reshape(out_ch, *out_spatial)
        if conv:
            pass                                           # (out, *spatial): broadcasts on (n, out, *spatial)
        else:
            correction = correction.permute(*range(1, correction.dim()), 0)  # (*leading, out)
    dtype = weight.dtype
    if conv or out_in:
        new_weight = w_bar.reshape(weight.shape).to(dtype)
        kind = "conv" if conv else "linear"
        bias_node = args.get("bias")
        bias = ev(bias_node) if isinstance(bias_node, torch.fx.Node) else bias_node
        if bias is not None and not isinstance(bias, torch.Tensor):
            raise Blocked("bias is not a tensor")
        if correction.dim() == 1:
            base = bias.to(torch.float64) if bias is not None else torch.zeros(out_ch, dtype=torch.float64)
            return _Plan(kind, weight_name, new_weight, "bias", (base + correction).to(dtype), None)
        return _Plan(kind, weight_name, new_weight, None, None, correction.to(dtype))
    new_weight = w_bar.T.contiguous().to(dtype)          # back to (features, out)
    alpha = args.get("alpha", 1)  # addmm's scale of mat1 @ mat2
    return _Plan("matmul", weight_name, new_weight, None, None, (correction * alpha).to(dtype))


def _one_hot_groups(tap_ids: torch.Tensor):
    """Group the weight taps by the one-hot column they see.

    Taps that see the same column at every output position (the same column-id row, padding included) form
    a group; each group must hold 4 taps that see the channels A, C, G, T of that column wherever it is
    real. Taps that see padding at every position never see the input and are left out.

    Parameters
    ----------
    tap_ids : (taps, positions) float64 tensor
        Id seen by each tap at each output position: ``1 + 4 * column + channel``, 0 for padding.

    Returns
    -------
    groups : (n_groups, 4) long tensor of tap indices, one group per column seen
    real : (n_groups, positions) bool tensor, False where the group sees padding
    """
    ids = tap_ids.round().to(torch.int64)
    if not torch.equal(ids.to(torch.float64), tap_ids):
        raise Blocked("input values are not plain copies of the one-hot entries")
    present = ids > 0
    col = torch.where(present, (ids - 1) // 4, torch.full_like(ids, -1))
    chan = torch.where(present, (ids - 1) % 4, torch.full_like(ids, -1))
    live = present.any(dim=1).nonzero().flatten()
    if live.numel() == 0:
        raise Blocked("its weights never see the input")
    _, inverse, counts = torch.unique(col[live], dim=0, return_inverse=True, return_counts=True)
    if not bool((counts == 4).all()):
        bad = int(counts[counts != 4][0])
        raise Blocked(f"its weights see {bad} of the 4 channels of a column (it does not read whole one-hot "
                       f"columns)")
    groups = live[torch.argsort(inverse, stable=True)].reshape(-1, 4)
    real = col[groups[:, 0]] >= 0                           # (n_groups, positions)
    gchan = chan[groups].sort(dim=1).values                 # (n_groups, 4, positions)
    expected = torch.arange(4).reshape(1, 4, 1).expand_as(gchan)
    if not torch.equal(torch.where(real[:, None], gchan, expected), expected):
        raise Blocked("a weight column does not see the 4 channels A, C, G, T of one position")
    return groups, real


# ----------------------------------------------------------------------------------------------------------
# graph edits


def _new_attr(gm, name: str, value: torch.Tensor, as_parameter: bool, requires_grad: bool = False) -> str:
    if as_parameter:
        gm.register_parameter(name, nn.Parameter(value, requires_grad=requires_grad))
    else:
        gm.register_buffer(name, value)
    return name


def _is_parameter(gm, target: str) -> bool:
    owner_name, _, leaf = target.rpartition(".")
    owner = gm.get_submodule(owner_name) if owner_name else gm
    return leaf in owner._parameters


def _set_tensor(gm, layer, arg_name: str, value: torch.Tensor, name: str, like_parameter: bool,
                requires_grad: bool = False) -> None:
    """Give ``layer`` a new constant for ``arg_name``: rebind the attribute when only this layer reads it,
    else register a new one."""
    old = op_args(layer).get(arg_name)
    if isinstance(old, torch.fx.Node) and old.op == "get_attr" and len(old.users) == 1:
        owner_name, _, leaf = old.target.rpartition(".")
        owner = gm.get_submodule(owner_name) if owner_name else gm
        if leaf in owner._parameters:
            setattr(owner, leaf, nn.Parameter(value, requires_grad=owner._parameters[leaf].requires_grad))
        else:
            owner._buffers[leaf] = value
        return
    _new_attr(gm, name, value, like_parameter, requires_grad)
    with gm.graph.inserting_before(layer):
        node = gm.graph.get_attr(name)
    set_arg(layer, arg_name, node)


def _apply(gm, layer, plan: _Plan, *, index: int) -> list[str]:
    args = op_args(layer)
    weight_node = args[plan.weight_name]
    like_param = (isinstance(weight_node, torch.fx.Node) and weight_node.op == "get_attr"
                  and _is_parameter(gm, weight_node.target))
    grad = like_param and fetch_attr(gm, weight_node.target).requires_grad
    _set_tensor(gm, layer, plan.weight_name, plan.new_weight, f"dnalift_norm{index}_weight", like_param, grad)
    if plan.bias_name is not None:
        _set_tensor(gm, layer, plan.bias_name, plan.new_bias, f"dnalift_norm{index}_bias", like_param, grad)
    if plan.offset is not None:
        name = _new_attr(gm, f"dnalift_norm{index}_offset", plan.offset, as_parameter=False)
        with gm.graph.inserting_after(layer):
            const = gm.graph.get_attr(name)
        with gm.graph.inserting_after(const):
            added = gm.graph.call_function(aten.add.Tensor, (layer, const))
        added.meta["stack_trace"] = layer.meta.get("stack_trace")
        layer.replace_all_uses_with(added, delete_user_cb=lambda user: user is not added)
    erased = _erase_dead(gm, weight_node)
    if plan.bias_name is not None:
        erased += _erase_dead(gm, args.get(plan.bias_name))
    return erased


def _erase_dead(gm, node) -> list[str]:
    """Remove a constant chain (get_attr, transposes...) that the edit left without users; returns the
    targets of the get_attr nodes removed."""
    if not isinstance(node, torch.fx.Node) or node.users or node.op not in ("get_attr", "call_function"):
        return []
    inputs = list(node.all_input_nodes)
    erased = [node.target] if node.op == "get_attr" else []
    gm.graph.erase_node(node)
    for n in inputs:
        erased += _erase_dead(gm, n)
    return erased


def _drop_unused_attributes(gm, targets) -> None:
    """Delete the parameters/buffers in ``targets`` that no get_attr node reads any more (weights replaced by
    their normalised copies), so the new program does not carry them."""
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for target in set(targets) - used:
        owner_name, _, leaf = target.rpartition(".")
        owner = gm.get_submodule(owner_name) if owner_name else gm
        if hasattr(owner, leaf):
            delattr(owner, leaf)


def _describe(node) -> str:
    """``aten::conv1d (model.py:12)``: the op and the innermost source line outside torch itself."""
    op = str(packet(node)).replace("aten.", "aten::") if node.op == "call_function" else node.op
    frames = []
    for line in (node.meta.get("stack_trace") or "").splitlines():
        line = line.strip()
        if line.startswith("File ") and '"' in line and "line " in line:
            path = line.split('"')[1]
            lineno = line.split("line ", 1)[1].split(",")[0]
            frames.append((path, lineno))
    user = [f for f in frames if "/torch/" not in f[0].replace("\\", "/")]
    if user or frames:
        path, lineno = (user or frames)[-1]
        return f"{op} ({path.replace(chr(92), '/').rsplit('/', 1)[-1]}:{lineno})"
    return op
