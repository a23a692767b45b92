"""The DeepLIFT engine: one exported graph, one rule table, inputs forwarded once.

How a batch is scored (``n_c`` sequences with ``r_c`` references each):

1. The sequences go forward once (``n_c`` rows, no autograd), keeping the values the rules need.
2. The references go forward through the same graph (``n_c * r_c`` rows). In Rescale mode this pass is
   differentiated: nonlinear, max and product ops are custom autograd functions whose backward multiplies by
   the DeepLIFT multiplier (the sequences' values broadcast over the references, never copied). In
   RevealCancel and genomics modes the differences from reference are carried beside the reference values as
   positive and negative parts (:mod:`dnalift.attribution.revealcancel`).
3. One ``torch.autograd.grad`` of the target, summed over rows, gives the multipliers of the input; model
   parameters never require gradients.

Contributions are ``m * (x - ref)`` and hypothetical contributions ``sum_c m_c * (e_b - ref)_c``, both
averaged over the references (:mod:`dnalift.attribution.hypothetical`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from typing import Callable, Sequence

import numpy as np
import torch

from dnalift.attribution import hypothetical as hyp
from dnalift.attribution import ops
from dnalift.attribution.modes import MODES, nonlinear_rules, split_needed
from dnalift.attribution.plan import Plan, compile_plan, describe as describe_plan, resolve
from dnalift.attribution.revealcancel import SplitPass, total
from dnalift.attribution.rules import (
    MaxFunction,
    MaxWindows,
    Pairing,
    ProductFunction,
    RescaleFunction,
    near_zero_threshold,
)
from dnalift.errors import ConservationWarning, ModelInputError, ReferenceInputError, TargetError

log = logging.getLogger(__name__)

MAX_RULES = ("exact", "gradient")


@dataclasses.dataclass
class Attribution:
    """DeepLIFT scores for a batch of sequences.

    Attributes
    ----------
    contributions : Tensor (n, 4, length) or (n, T, 4, length)
        ``m * (x - ref)`` averaged over references; sums to ``predictions - reference_predictions``.
    hypothetical : Tensor (n, 4, length) or (n, T, 4, length), or None
        For one-hot input: the contribution each base would have at each position
        (``sum_c m_c (e_b - ref)_c`` averaged over references). ``hypothetical * X`` gives the
        contributions of the observed bases. None when the input has no channel axis of 4.
    predictions : Tensor (n,) or (n, T)
        The target on the sequences.
    reference_predictions : Tensor (n,) or (n, T)
        The target averaged over each sequence's references.
    deltas : Tensor (n,) or (n, T)
        Summation-to-delta error: ``sum(contributions) - (predictions - reference_predictions)``.
    rule, max_rule : str
        The rules used.
    """

    contributions: torch.Tensor
    hypothetical: torch.Tensor | None
    predictions: torch.Tensor
    reference_predictions: torch.Tensor
    deltas: torch.Tensor
    rule: str
    max_rule: str


# ----------------------------------------------------------------------------------------------- models
def program_of(model, example_shape: tuple):
    """The exported program and input layout of a LoadedModel, ExportedProgram or nn.Module.

    Returns
    -------
    program : torch.export.ExportedProgram
    layout : {"NCL", "NLC"}
    """
    if isinstance(model, torch.export.ExportedProgram):
        return model, "NCL"
    if isinstance(model, torch.nn.Module):
        from dnalift.models import from_module

        model = from_module(model, input_shape=tuple(example_shape))
    program = getattr(model, "program", None)
    if program is None:
        raise TypeError("model must be a dnalift LoadedModel, a torch.export.ExportedProgram or an nn.Module")
    return program, getattr(model, "layout", "NCL")


_PLANS: dict = {}


def plan_for(program, *, allow_gradient: Sequence[str] = ()) -> Plan:
    """Compile (once per program and options) the plan of a program."""
    key = (id(program), tuple(sorted(allow_gradient)))
    cached = _PLANS.get(key)
    if cached is None or cached[0] is not program:
        cached = (program, compile_plan(program, allow_gradient=tuple(allow_gradient)))
        _PLANS[key] = cached
    return cached[1]


def describe(model, *, rule: str = "rescale", max_rule: str = "exact", allow_gradient=()) -> list[dict]:
    """Each input-dependent op of the model with the rule it gets (for ``dnalift info``).

    Raises
    ------
    UnsupportedOpError
        When some op has no rule.
    """
    program, _ = program_of(model, ())
    return describe_plan(plan_for(program, allow_gradient=allow_gradient), rule=rule, max_rule=max_rule)


# ---------------------------------------------------------------------------------------------- targets
@dataclasses.dataclass
class Target:
    """Reduces the model output (rows, ...) to one value per row (rows,). Linear in the output."""

    index: int | None = None
    fn: Callable | None = None

    def __call__(self, out: torch.Tensor, softmax_dim) -> torch.Tensor:
        if softmax_dim is not None:
            out = out - out.mean(dim=softmax_dim, keepdim=True)  # paper 2.5
        if self.fn is not None:
            value = self.fn(out)
            if value.dim() != 1 or value.shape[0] != out.shape[0]:
                raise TargetError(f"the target function returned shape {tuple(value.shape)}; it must return "
                                  f"one value per row ({out.shape[0]},)")
            return value
        return out.reshape(out.shape[0], -1)[:, self.index]


def _targets(target, output_numel: int) -> tuple[list[Target], bool]:
    single = not isinstance(target, (list, tuple))
    items = [target] if single else list(target)
    if not items:
        raise TargetError("no target given")
    targets = []
    for item in items:
        if callable(item):
            targets.append(Target(fn=item))
            continue
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            raise TargetError(f"target {item!r} must be an output index (int) or a function of the output")
        if not -output_numel <= int(item) < output_numel:
            raise TargetError(f"target {item} does not exist: the model has {output_numel} output(s) per "
                              f"sequence (indices 0 to {output_numel - 1})")
        targets.append(Target(index=int(item) % output_numel))
    return targets, single


# ------------------------------------------------------------------------------------------------ runs
class _Runner:
    """Runs a plan on batches of sequences and references for one mode."""

    def __init__(self, plan: Plan, *, rule: str, max_rule: str, device: torch.device, dtype: torch.dtype):
        self.plan = plan
        self.rule = rule
        self.exact_max = max_rule == "exact"
        self.device = device
        self.dtype = dtype
        self.eps = near_zero_threshold(dtype)
        self.constants = plan.constants_on(device, dtype)
        self.rules = nonlinear_rules(plan, rule)
        self.split = split_needed(plan, self.rules) if rule != "rescale" else set()
        self.x_needed = self._x_needed()
        self.softmax_dim = plan.softmax_output[0] if plan.softmax_output else None

    def _x_needed(self) -> set:
        needed = {self.plan.output_node.name}
        for step in self.plan.steps:
            if step.kind in ("nonlinear", "max", "product", "gradient"):
                needed.update(a.name for a in step.node.args if isinstance(a, torch.fx.Node))
            if step.kind in ("nonlinear", "gradient"):
                needed.add(step.node.name)
        return needed

    def _free(self, env: dict, index: int):
        for name in self.plan.released[index]:
            env.pop(name, None)

    def forward(self, inputs: torch.Tensor) -> dict:
        """Plain forward of the sequences; returns the values in ``x_needed`` (no autograd)."""
        env = dict(self.constants)
        env[self.plan.input_name] = inputs
        kept = {}
        with torch.no_grad():
            for index, step in enumerate(self.plan.steps):
                value = step.fn(*resolve(step.args, env), **resolve(step.kwargs, env))
                env[step.node.name] = value
                if step.node.name in self.x_needed:
                    kept[step.node.name] = value
                self._free(env, index)
        if self.plan.input_name in self.x_needed:
            kept[self.plan.input_name] = inputs
        return kept

    # -------------------------------------------------------------------------------------- rescale
    def rescale_pass(self, refs: torch.Tensor, x_env: dict, pairing: Pairing):
        """Reference forward with DeepLIFT backward functions; returns (reference input, output)."""
        env = dict(self.constants)
        refs = refs.detach().requires_grad_(True)
        env[self.plan.input_name] = refs
        dims = self.plan.batch_dims
        for index, step in enumerate(self.plan.steps):
            args = resolve(step.args, env)
            kwargs = resolve(step.kwargs, env)
            if step.kind == "nonlinear":
                source = step.node.args[0].name
                value = RescaleFunction.apply(args[0], x_env[source], x_env[step.node.name], step.fn,
                                              tuple(args[1:]), kwargs, pairing, dims[source], self.eps)
            elif step.kind == "max":
                source = step.node.args[0].name
                windows = MaxWindows(step.name, args, kwargs)
                value = MaxFunction.apply(args[0], x_env[source], windows, pairing, dims[source],
                                          self.exact_max)
                if ops.returns_indices(step.name):
                    value = (value, None)
            elif step.kind == "product":
                a, b = step.node.args[0].name, step.node.args[1].name
                value = ProductFunction.apply(args[0], args[1], x_env[a], x_env[b], pairing, (dims[a], dims[b]))
            else:
                value = step.fn(*args, **kwargs)
            env[step.node.name] = value
            self._free(env, index)
        return refs, env[self.plan.output_node.name]

    # --------------------------------------------------------------------------------- revealcancel
    def split_pass(self, refs: torch.Tensor, x_env: dict, pairing: Pairing, inputs: torch.Tensor):
        """Reference forward (no autograd) beside the differences as parts; returns (input diff, output diff)."""
        runner = SplitPass(pairing, self.eps, self.exact_max, self.plan.batch_dims)
        ref_env = dict(self.constants)
        ref_env[self.plan.input_name] = refs
        difference = pairing.diff(inputs, refs, 0).detach().requires_grad_(True)
        d_env = {self.plan.input_name: difference}
        for index, step in enumerate(self.plan.steps):
            with torch.no_grad():
                args = resolve(step.args, ref_env)
                kwargs = resolve(step.kwargs, ref_env)
                value = step.fn(*args, **kwargs)
            ref_env[step.node.name] = value
            if step.kind != "shape":
                d_env[step.node.name] = runner.run(step, args, d_env, ref_env, x_env, value,
                                                   step.node.name in self.split, self.rules.get(step.node.name))
            self._free(ref_env, index)
            self._free(d_env, index)
        output = self.plan.output_node.name
        return difference, total(d_env[output]), ref_env[output]

    # ---------------------------------------------------------------------------------------- batch
    def run(self, inputs: torch.Tensor, refs: torch.Tensor, pairing: Pairing, targets: list[Target]):
        """Multipliers and target values for one batch.

        Parameters
        ----------
        inputs : Tensor (n_c, *shape)
        refs : Tensor (n_c * r_c, *shape)

        Returns
        -------
        multipliers : list of Tensor (n_c * r_c, *shape), one per target
        on_inputs : list of Tensor (n_c,)
        on_refs : list of Tensor (n_c * r_c,)
        """
        x_env = self.forward(inputs)
        x_out = x_env[self.plan.output_node.name]
        on_inputs = [t(x_out, self.softmax_dim) for t in targets]
        with torch.enable_grad():
            if self.rule == "rescale":
                leaf, ref_out = self.rescale_pass(refs, x_env, pairing)
                values = [t(ref_out, self.softmax_dim) for t in targets]
                on_refs = [v.detach() for v in values]
            else:
                leaf, d_out, ref_out = self.split_pass(refs, x_env, pairing, inputs)
                on_refs = [t(ref_out, self.softmax_dim) for t in targets]
                x_rep = pairing.expand(x_out, self.plan.batch_dims[self.plan.output_node.name] or 0)
                values = [t(x_rep, self.softmax_dim) - t(x_rep - d_out, self.softmax_dim) for t in targets]
            multipliers = []
            for i, value in enumerate(values):
                (grad,) = torch.autograd.grad(value.sum(), leaf, retain_graph=i < len(values) - 1,
                                              allow_unused=True)
                multipliers.append(torch.zeros_like(leaf) if grad is None else grad)
        return multipliers, on_inputs, on_refs


# ---------------------------------------------------------------------------------------------- inputs
def _as_tensor(value, name: str, dtype) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a numpy array or a torch tensor, not {type(value).__name__}")
    return value.detach().to(dtype)


def _resolve_device(device) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelInputError("--device cuda was asked for but PyTorch sees no CUDA device here; use --device cpu")
    return device


def auto_batch_size(plan: Plan, *, device: torch.device, dtype: torch.dtype) -> int:
    """Rows (sequence-reference pairs) per batch so that the saved activations fit a memory budget.

    The budget is 1 GiB on the CPU and a quarter of the free memory on a GPU; a row costs about three times
    the sum of the sizes of every activation in the graph (values, multipliers, gradients).
    """
    per_row = 0
    for step in plan.steps:
        value = step.node.meta.get("val")
        if isinstance(value, (tuple, list)):
            value = value[0] if value else None
        shape = getattr(value, "shape", None)
        if shape is None or not len(shape):
            continue
        sizes = [int(s) if not isinstance(s, torch.SymInt) or str(s).isdigit() else 1 for s in shape]
        per_row += math.prod(sizes)
    per_row = max(per_row, 1) * torch.tensor([], dtype=dtype).element_size() * 3
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = free // 4
    else:
        budget = 1 << 30
    return int(max(1, min(8192, budget // per_row)))


def _batches(n: int, r: int, rows: int):
    """Yield (sequence slice, reference slice) so that each batch has at most ``rows`` pairs."""
    if r <= rows:
        per = max(1, rows // r)
        for start in range(0, n, per):
            yield slice(start, min(n, start + per)), slice(0, r)
    else:
        for i in range(n):
            for start in range(0, r, rows):
                yield slice(i, i + 1), slice(start, min(r, start + rows))


def attribute(model, X, references, *, target=0, rule: str = "rescale", max_rule: str = "exact",
              batch_size: int | None = None, device="auto", dtype: torch.dtype = torch.float32,
              allow_gradient: Sequence[str] = (), delta_tolerance: float | None = None,
              names: Sequence[str] | None = None,
              progress: Callable[[int], None] | None = None) -> Attribution:
    """DeepLIFT contribution scores of a model's target for each sequence, averaged over references.

    Parameters
    ----------
    model : LoadedModel, torch.export.ExportedProgram or torch.nn.Module
        The model. An nn.Module is exported first (with its input shape taken from ``X``).
    X : array or Tensor (n, 4, length)
        One-hot sequences (or any input of shape (n, ...)).
    references : array or Tensor (n, r, 4, length) or (r, 4, length)
        References per sequence, or one set shared by all sequences.
    target : int, callable, or list of them
        Output index (of the output flattened per row), or a function mapping the output (rows, ...) to one
        value per row that is linear in the output. A list scores several targets in one pass and adds a
        target axis after n to every result.
    rule : {"rescale", "revealcancel", "genomics"}
        Rule for elementwise nonlinearities (see :mod:`dnalift.attribution.modes`).
    max_rule : {"exact", "gradient"}
        The exact max rule (sums to delta) or the original code's gradient rule.
    batch_size : int, optional
        Sequence-reference pairs per batch; by default from a memory budget (:func:`auto_batch_size`).
    device : {"auto", "cpu", "cuda", "cuda:i"} or torch.device
    dtype : torch.float32 or torch.float64
    allow_gradient : sequence of str
        ATen op names without a DeepLIFT rule to let through with gradients.
    delta_tolerance : float, optional
        Warn (:class:`ConservationWarning`) for sequences whose ``|delta|`` exceeds this times
        ``max(1, |prediction - reference prediction|)``; default 1e-3 for float32, 1e-8 for float64.
    names : sequence of str, optional
        Names of the n sequences, used in that warning (else their indices).
    progress : callable, optional
        Called with the number of sequences finished after each batch.

    Returns
    -------
    Attribution
        CPU tensors of ``dtype``.
    """
    if rule not in MODES:
        raise ValueError(f"rule must be one of {', '.join(MODES)}, not {rule!r}")
    if max_rule not in MAX_RULES:
        raise ValueError(f"max_rule must be one of {', '.join(MAX_RULES)}, not {max_rule!r}")
    X = _as_tensor(X, "X", dtype)
    R = _as_tensor(references, "references", dtype)
    if X.dim() < 2:
        raise ModelInputError(f"X must have shape (n, ...) with n sequences; got {tuple(X.shape)}")
    shape = tuple(X.shape[1:])
    if R.dim() == X.dim():
        R = R.unsqueeze(0).expand(X.shape[0], *R.shape)
    if R.dim() != X.dim() + 1 or tuple(R.shape[2:]) != shape or R.shape[0] != X.shape[0]:
        raise ReferenceInputError(
            f"references have shape {tuple(R.shape)}; expected (n, r, {', '.join(map(str, shape))}) with "
            f"n = {X.shape[0]} or (r, {', '.join(map(str, shape))}) shared by all sequences")
    n, r = X.shape[0], R.shape[1]
    if r < 1:
        raise ReferenceInputError("at least one reference per sequence is needed")
    program, layout = program_of(model, shape)
    if layout == "NLC":
        X, R = X.transpose(-1, -2), R.transpose(-1, -2)
    plan = plan_for(program, allow_gradient=allow_gradient)
    if plan.input_shape and tuple(X.shape[1:]) != plan.input_shape:
        raise ModelInputError(f"the model takes inputs of shape (n, {', '.join(map(str, plan.input_shape))}) "
                              f"but the data has shape {tuple(X.shape)}")
    device = _resolve_device(device)
    runner = _Runner(plan, rule=rule, max_rule=max_rule, device=device, dtype=dtype)
    rows = batch_size or auto_batch_size(plan, device=device, dtype=dtype)
    out_meta = plan.output_node.meta.get("val")
    output_numel = math.prod(int(s) for s in out_meta.shape[1:]) if out_meta is not None else 1
    targets, single = _targets(target, output_numel)
    n_targets = len(targets)

    contributions = torch.zeros((n, n_targets) + tuple(X.shape[1:]), dtype=dtype)
    one_hot_axis = X.dim() >= 3 and X.shape[1] == 4 if layout == "NCL" else X.shape[-1] == 4
    hypotheticals = torch.zeros_like(contributions) if one_hot_axis else None
    predictions = torch.zeros((n, n_targets), dtype=dtype)
    reference_sums = torch.zeros((n, n_targets), dtype=dtype)
    done = 0
    for seqs, ref_slice in _batches(n, r, rows):
        inputs = X[seqs].to(device)
        refs = R[seqs, ref_slice].to(device)
        n_c, r_c = refs.shape[0], refs.shape[1]
        pairing = Pairing(n_c, r_c)
        flat_refs = refs.reshape((n_c * r_c,) + tuple(refs.shape[2:]))
        multipliers, on_inputs, on_refs = runner.run(inputs, flat_refs, pairing, targets)
        for t in range(n_targets):
            m = multipliers[t].reshape(refs.shape)
            contributions[seqs, t] += hyp.contribution_sum(m, inputs, refs).cpu()
            if hypotheticals is not None:
                channel = 1 if layout == "NCL" else -1
                hypotheticals[seqs, t] += hyp.hypothetical_sum(m, refs, channel_axis=channel).cpu()
            predictions[seqs, t] = on_inputs[t].detach().cpu()
            reference_sums[seqs, t] += on_refs[t].detach().reshape(n_c, r_c).sum(1).cpu()
        if ref_slice.stop == r and progress is not None:
            done = seqs.stop
            progress(done)
    contributions /= r
    if hypotheticals is not None:
        hypotheticals /= r
    reference_predictions = reference_sums / r
    deltas = contributions.flatten(2).sum(-1) - (predictions - reference_predictions)
    if layout == "NLC":
        contributions = contributions.transpose(-1, -2)
        hypotheticals = hypotheticals.transpose(-1, -2) if hypotheticals is not None else None
    _warn_deltas(deltas, predictions - reference_predictions, dtype, delta_tolerance, names=names,
                 max_rule=max_rule)
    if single:
        contributions = contributions[:, 0]
        hypotheticals = hypotheticals[:, 0] if hypotheticals is not None else None
        predictions, reference_predictions, deltas = predictions[:, 0], reference_predictions[:, 0], deltas[:, 0]
    return Attribution(contributions.contiguous(), None if hypotheticals is None else hypotheticals.contiguous(),
                       predictions, reference_predictions, deltas, rule, max_rule)


def _warn_deltas(deltas, change, dtype, tolerance, *, names=None, max_rule="exact"):
    """Warn (ConservationWarning) naming the worst sequences where summation-to-delta is off."""
    if tolerance is None:
        tolerance = 1e-8 if dtype == torch.float64 else 1e-3
    scale = change.abs().clamp(min=1.0)
    bad = (deltas.abs() / scale) > tolerance
    if bool(bad.any()):
        worst = torch.argsort((deltas.abs() / scale).max(dim=1).values, descending=True)[:5].tolist()
        label = (lambda i: names[i]) if names is not None else (lambda i: f"#{i}")
        details = ", ".join(f"{label(i)} ({float(deltas[i].abs().max()):.3g})" for i in worst)
        hint = ("The gradient max rule does not sum to delta; use --max-rule exact" if max_rule == "gradient"
                else "Try --precision float64; if it persists, run `dnalift info` on the model and report it")
        warnings.warn(
            f"summation-to-delta is off by more than {tolerance:g} (relative) for {int(bad.any(1).sum())} of "
            f"{len(deltas)} sequence(s); worst: {details}. {hint}", ConservationWarning, stacklevel=3)
