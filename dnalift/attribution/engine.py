"""The DeepLIFT engine: one exported graph, one rule registry, inputs forwarded once.

How a batch is scored (``n_c`` sequences with ``r_c`` references each):

1. The sequences go forward once (``n_c`` rows, no autograd), keeping the values the rules need.
2. The references go forward through the same graph (``n_c * r_c`` rows). Without RevealCancel units this pass
   is differentiated: nonlinear, max and product ops are custom autograd functions whose backward multiplies by
   the DeepLIFT multiplier (the sequences' values broadcast over the references, never copied). With
   RevealCancel units the differences from reference are carried beside the reference values, as positive and
   negative parts where a RevealCancel unit needs them (each kind's ``difference``).
3. One ``torch.autograd.grad`` of each target, summed over rows, gives the multipliers of the input; model
   parameters never require gradients.

Contributions are ``m * (x - ref)`` and hypothetical contributions ``sum_c m_c * (e_b - ref)_c``, both
averaged over the references (:mod:`dnalift.attribution.hypothetical`).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
import weakref
from typing import Callable, Sequence

import numpy as np
import torch

from dnalift.attribution import hypothetical as hyp
from dnalift.attribution.batching import auto_batch_size, batches, torch_device
from dnalift.attribution.pairing import Pairing
from dnalift.attribution.plan import Plan, compile_plan, describe as describe_plan, program_outputs
from dnalift.attribution.precision import arithmetic, dtype_of, lower_dtype
from dnalift.attribution.runner import Runner
from dnalift.attribution.targets import Target, output_table, resolve_targets
from dnalift.models import layouts
from dnalift.options import ControlInputs, MaxRule, Mode, Precision
from dnalift.errors import ConservationWarning, ModelInputError, ReferenceInputError

log = logging.getLogger(__name__)


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
    targets : list of str
        The targets' labels, in the order of the target axis.
    """

    contributions: torch.Tensor
    hypothetical: torch.Tensor | None
    predictions: torch.Tensor
    reference_predictions: torch.Tensor
    deltas: torch.Tensor
    rule: str
    max_rule: str
    targets: list = dataclasses.field(default_factory=list)


# ----------------------------------------------------------------------------------------------- models
def program_of(model, example_shape: tuple):
    """The exported program, input layout and output unit names of a LoadedModel, ExportedProgram or module.

    Returns
    -------
    program : torch.export.ExportedProgram
    layout : {"NCL", "NLC", "NC1L"}
        The model's input layout (:mod:`dnalift.models.layouts`).
    unit_names : tuple of str or None
    """
    if isinstance(model, torch.export.ExportedProgram):
        from dnalift.models.export import cells_program
        from dnalift.models.signature import program_inputs

        row = program_inputs(model, "the program").row
        return cells_program(model), layouts.detect(row) or "NCL", None  # recurrent layers written out as cells
    if isinstance(model, torch.nn.Module):
        from dnalift.models.export import program_for_module

        model = program_for_module(model, tuple(example_shape) or None)  # exported once per module
    program = getattr(model, "program", None)
    if program is None:
        raise TypeError("model must be a dnalift LoadedModel, a torch.export.ExportedProgram or an nn.Module")
    return program, getattr(model, "layout", "NCL"), getattr(model, "output_names", None)


_PLANS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def plan_for(program, *, mode: str = "rescale", max_rule: str = "exact", allow_gradient: Sequence[str] = ()) -> Plan:
    """The plan of a program for a mode and max rule, compiled once (cached without keeping the program alive)."""
    key = (str(mode), str(max_rule), tuple(sorted(a.removeprefix("aten.") for a in allow_gradient)))
    plans = _PLANS.setdefault(program, {})
    if key not in plans:
        plans[key] = compile_plan(program, mode=mode, max_rule=max_rule, allow_gradient=key[2])
    return plans[key]


def batch_size_of(model, example_shape: tuple, *, rule: str = "rescale", max_rule: str = "exact",
                  allow_gradient: Sequence[str] = (), device="auto", dtype: torch.dtype = torch.float32) -> int:
    """The batch size (sequence-reference pairs) :func:`attribute` chooses for ``model`` with no ``batch_size``.

    Parameters
    ----------
    example_shape : tuple
        The shape of one input row, ``(4, length)`` (an nn.Module is exported with it).
    """
    program, _, _ = program_of(model, tuple(example_shape))
    plan = plan_for(program, mode=rule, max_rule=max_rule, allow_gradient=allow_gradient)
    return auto_batch_size(plan, device=torch_device(device), dtype=dtype)


def describe(model, *, rule: str = "rescale", max_rule: str = "exact", allow_gradient=()) -> list[dict]:
    """Each input-dependent op of the model with the rule it gets (for ``dnalift info``).

    Raises
    ------
    UnsupportedOpError
        When some op has no rule (``ops`` lists them all).
    """
    program, _, _ = program_of(model, ())
    return describe_plan(plan_for(program, mode=rule, max_rule=max_rule, allow_gradient=allow_gradient))


def outputs_of(model) -> list[dict]:
    """The model's outputs with their per-row shapes and the target names each accepts (``dnalift info``)."""
    program, _, _ = program_of(model, ())
    return output_table(program_outputs(program))


def targets_of(model, specs, *, where: str | None = None) -> list[Target]:
    """Resolve target specs against a model's outputs (see :mod:`dnalift.attribution.targets`)."""
    program, _, unit_names = program_of(model, ())
    name = where or getattr(model, "name", "the model")
    return resolve_targets(program_outputs(program), specs, unit_names=unit_names, where=name)


# ---------------------------------------------------------------------------------------------- inputs
def _as_tensor(value, name: str, dtype) -> torch.Tensor:
    """A tensor of ``value``; one-hot bytes (int8, uint8, bool) stay bytes until a batch is on the device (a
    quarter of float32's transfer), other values take ``dtype`` here."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a numpy array or a torch tensor, not {type(value).__name__}")
    if value.dtype in (torch.int8, torch.uint8, torch.bool):
        return value.detach()
    return value.detach().to(dtype)


def _on_device(value: torch.Tensor, device: torch.device, dtype) -> torch.Tensor:
    """A batch on the device in ``dtype`` (copied without waiting when ``value`` is in pinned memory)."""
    return value.to(device, non_blocking=True).to(dtype)


def _pinned(value: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``value`` in page-locked memory when it goes to a GPU (its batches are then copied beside the compute)."""
    if device.type != "cuda" or value.device.type != "cpu" or not value.is_contiguous():
        return value
    return value.pin_memory()


def _check_inputs(X, R, dtype):
    X = _as_tensor(X, "X", dtype)
    R = _as_tensor(R, "references", dtype)
    if X.dim() < 2:
        raise ModelInputError(f"X must have shape (n, ...) with n sequences; got {tuple(X.shape)}", argument="X")
    shape = tuple(X.shape[1:])
    if R.dim() == X.dim():
        R = R.unsqueeze(0).expand(X.shape[0], *R.shape)
    if R.dim() != X.dim() + 1 or tuple(R.shape[2:]) != shape or R.shape[0] != X.shape[0]:
        raise ReferenceInputError(
            f"references have shape {tuple(R.shape)}; expected (n, r, {', '.join(map(str, shape))}) with "
            f"n = {X.shape[0]} or (r, {', '.join(map(str, shape))}) shared by all sequences",
            argument="references")
    if R.shape[1] < 1:
        raise ReferenceInputError("at least one reference per sequence is needed", argument="references")
    return X, R


def attribute(model, X, references, *, target=0, rule: str = "rescale", max_rule: str = "exact",
              batch_size: int | None = None, device="auto", dtype: torch.dtype = torch.float32,
              allow_gradient: Sequence[str] = (), control_inputs: str = "zeros",
              delta_tolerance: float | None = None, names: Sequence[str] | None = None,
              progress: Callable[[int], None] | None = None, precision: str | None = None) -> Attribution:
    """DeepLIFT contribution scores of a model's target for each sequence, averaged over references.

    Parameters
    ----------
    model : LoadedModel, torch.export.ExportedProgram or torch.nn.Module
        The model. An nn.Module is exported first (with its input shape taken from ``X``), once while its
        parameters do not change.
    X : array or Tensor (n, 4, length)
        One-hot sequences (or any input of shape (n, ...)), in dnalift's layout ``(n, 4, length)`` or in the
        model's own (``(n, length, 4)``, ``(n, 4, 1, length)``: :mod:`dnalift.models.layouts`); the results
        have the layout of ``X``.
    references : array or Tensor (n, r, 4, length) or (r, 4, length)
        References per sequence, or one set shared by all sequences, in the layout of ``X``.
    target : int, str, callable, Target, or a list of them
        What to explain (:mod:`dnalift.attribution.targets`): an output index, an output name or
        ``NAME:INDEX``, ``"counts"``, ``"profile"``, ``"profile-fixed"``, or a function of the output that is
        linear in it. A list scores several targets in one pass and adds a target axis after n to every result.
    rule : {"rescale", "revealcancel", "genomics"}
        Rule for elementwise nonlinearities (see :mod:`dnalift.attribution.modes`).
    max_rule : {"exact", "gradient"}
        The exact max rule (sums to delta) or the original code's gradient rule.
    batch_size : int, optional
        Sequence-reference pairs per batch; by default chosen for speed (:func:`auto_batch_size`: on the CPU
        a batch whose activations fit the cache, on a GPU a quarter of its free memory).
    device : {"auto", "cpu", "cuda", "cuda:i"} or torch.device
    dtype : torch.float32 or torch.float64
    precision : {"float32", "float64", "tf32", "bfloat16"}, optional
        The arithmetic (:mod:`dnalift.attribution.precision`); given, it sets ``dtype`` (float64 for ``float64``,
        else float32). ``float32`` and ``float64`` turn TF32 off on CUDA while the call runs; ``tf32`` is refused
        on the CPU.
    allow_gradient : sequence of str
        ATen op names without a DeepLIFT rule to let through with gradients.
    control_inputs : {"zeros", "refuse"}
        What model inputs beyond the sequence (control tracks) get: zeros, as ``bpnet attribute`` does, or an
        error.
    delta_tolerance : float, optional
        Warn (:class:`ConservationWarning`) for sequences whose ``|delta|`` exceeds this times
        ``max(1, |prediction - reference prediction|)``; default 1e-3 for float32, 1e-8 for float64, 1e-2 for
        tf32, 5e-2 for bfloat16 (:data:`DELTA_TOLERANCE`).
    names : sequence of str, optional
        Names of the n sequences, used in that warning (else their indices).
    progress : callable, optional
        Called with the number of sequences finished after each batch.

    Returns
    -------
    Attribution
        CPU tensors of ``dtype``.
    """
    if precision is not None:
        dtype = dtype_of(precision)
    rule = Mode.parse(rule, argument="rule")  # members from here on (a str enum: plain strings are accepted)
    max_rule = MaxRule.parse(max_rule, argument="max_rule")
    control_inputs = ControlInputs.parse(control_inputs, argument="control_inputs")
    X, R = _check_inputs(X, references, dtype)
    n, r = X.shape[0], R.shape[1]
    program, layout, unit_names = program_of(model, tuple(X.shape[1:]))
    plan = plan_for(program, mode=rule, max_rule=max_rule, allow_gradient=allow_gradient)
    for note in plan.notes:
        log.warning(note)
    X, R, converted = _in_model_layout(X, R, layout, plan.input_shape)
    if plan.control_inputs and control_inputs is ControlInputs.REFUSE:
        raise ModelInputError(f"the model takes {len(plan.control_inputs)} input(s) beside the sequence "
                              f"({', '.join(c[0] for c in plan.control_inputs)}); give control_inputs='zeros' to "
                              "score it with all-zero control tracks", argument="control_inputs")
    device = torch_device(device)
    precision = Precision.parse(precision, argument="precision") if precision is not None else (
        Precision.FLOAT64 if dtype == torch.float64 else Precision.FLOAT32)
    runner = Runner(plan, device=device, dtype=dtype, lower=lower_dtype(precision))
    rows = batch_size or auto_batch_size(plan, device=device, dtype=dtype)
    targets, single = _targets(plan, target, unit_names, getattr(model, "name", "the model"))
    sums = _Sums(n, len(targets), X, layout, dtype, device)
    X, R = _pinned(X, device), _pinned(R, device)
    with arithmetic(precision, device):
        for seqs, ref_slice in batches(n, r, rows):
            inputs = _on_device(X[seqs], device, dtype)
            refs = _on_device(R[seqs, ref_slice], device, dtype)
            pairing = Pairing(refs.shape[0], refs.shape[1])
            flat_refs = refs.reshape((pairing.n * pairing.r,) + tuple(refs.shape[2:]))
            multipliers, on_inputs, on_refs = runner.run(inputs, flat_refs, pairing, targets)
            sums.add(seqs, refs, inputs, multipliers, on_inputs, on_refs, pairing)
            if ref_slice.stop == r and progress is not None:
                progress(seqs.stop)
    result = sums.result(r, layout if converted else None, rule, max_rule, [t.label for t in targets])
    _warn_deltas(result.deltas, result.predictions - result.reference_predictions, precision, delta_tolerance,
                 names=names, max_rule=max_rule, let_through=gradient_ops(plan))
    return _single(result) if single else result


def _in_model_layout(X, R, layout: str, row: tuple):
    """``X`` and ``R`` in the model's layout, and whether they were turned into it from dnalift's
    ``(n, 4, length)`` (:mod:`dnalift.models.layouts`); data already in the model's layout stays as it is.

    Raises
    ------
    ModelInputError
        The data fits neither, naming the shape it has.
    """
    given = layouts.data_layout(tuple(X.shape), row, layout) if row else "dnalift"
    if given is None:
        shown = ", ".join(map(str, row))
        also = "" if layout == "NCL" else f", or (n, 4, {layouts.length_of(row, layout)}) (dnalift's layout)"
        raise ModelInputError(f"the model takes inputs of shape (n, {shown}) ({layouts.label_of(layout)}){also}; "
                              f"the data has shape {tuple(X.shape)}", argument="X")
    if given == "model":
        return X, R, False
    return layouts.to_model(X, layout), layouts.to_model(R, layout), True


def _targets(plan, target, unit_names, where):
    single = not isinstance(target, (list, tuple))
    return resolve_targets(plan.outputs, target, unit_names=unit_names, where=where), single


#: most bytes of running sums kept on a GPU (beyond it they are added on the host, batch by batch)
DEVICE_SUMS = 2 << 30


class _Sums:
    """Running sums over references of one call's results: on the device (copied to the host once, at the end,
    instead of a synchronising copy per target per batch) unless they would take more than :data:`DEVICE_SUMS`."""

    def __init__(self, n, n_targets, X, layout, dtype, device):
        size = n * n_targets * X[:1].numel() * torch.tensor([], dtype=dtype).element_size() * 2
        self.device = device if size <= DEVICE_SUMS else torch.device("cpu")
        self.contributions = torch.zeros((n, n_targets) + tuple(X.shape[1:]), dtype=dtype, device=self.device)
        self.channel = layouts.channel_axis(layout)
        one_hot_axis = X.dim() >= 3 and X.shape[self.channel] == 4
        self.hypotheticals = torch.zeros_like(self.contributions) if one_hot_axis else None
        self.predictions = torch.zeros((n, n_targets), dtype=dtype, device=self.device)
        self.reference_sums = torch.zeros((n, n_targets), dtype=dtype, device=self.device)

    def add(self, seqs, refs, inputs, multipliers, on_inputs, on_refs, pairing):
        here = self.device
        for t, m in enumerate(multipliers):
            m = m.reshape(refs.shape)
            self.contributions[seqs, t] += hyp.contribution_sum(m, inputs, refs).to(here)
            if self.hypotheticals is not None:
                self.hypotheticals[seqs, t] += hyp.hypothetical_sum(m, refs, channel_axis=self.channel).to(here)
            self.predictions[seqs, t] = on_inputs[t].detach().to(here)
            self.reference_sums[seqs, t] += on_refs[t].detach().reshape(pairing.n, pairing.r).sum(1).to(here)

    def result(self, r, layout, rule, max_rule, labels) -> Attribution:
        if self.device.type != "cpu":  # the one copy to the host
            for name in ("contributions", "hypotheticals", "predictions", "reference_sums"):
                value = getattr(self, name)
                setattr(self, name, value.cpu() if value is not None else None)
        contributions = self.contributions / r
        hypotheticals = self.hypotheticals / r if self.hypotheticals is not None else None
        reference_predictions = self.reference_sums / r
        deltas = contributions.flatten(2).sum(-1) - (self.predictions - reference_predictions)
        if layout is not None:  # back to (n, targets, 4, length)
            contributions = layouts.from_model(contributions, layout)
            hypotheticals = layouts.from_model(hypotheticals, layout) if hypotheticals is not None else None
        return Attribution(contributions.contiguous(),
                           None if hypotheticals is None else hypotheticals.contiguous(),
                           self.predictions, reference_predictions, deltas, rule, max_rule, labels)


def _single(result: Attribution) -> Attribution:
    """Drop the target axis of a one-target result."""
    return Attribution(result.contributions[:, 0],
                       result.hypothetical[:, 0] if result.hypothetical is not None else None,
                       result.predictions[:, 0], result.reference_predictions[:, 0], result.deltas[:, 0],
                       result.rule, result.max_rule, result.targets)


def gradient_ops(plan: Plan) -> list[str]:
    """The ATen names of the ops a plan lets through with gradients (``allow_gradient``), in graph order."""
    return list(dict.fromkeys(f"aten.{s.name}" for s in plan.steps if s.kind == "gradient"))


def _conservation_hint(max_rule: str, let_through) -> str:
    """What the conservation warning suggests: the likely cause first."""
    hints = []
    if let_through:
        hints.append(f"Likely cause: {', '.join(let_through)}, let through with gradients (allow_gradient, "
                     "--allow-gradient), which need not sum to delta; rewrite that part of the model with ops that "
                     "have a rule (`dnalift info` lists them)")
    if max_rule == MaxRule.GRADIENT:
        hints.append("The gradient max rule does not sum to delta; use the exact one (max_rule='exact', "
                     "--max-rule exact)")
    if not hints:
        hints.append("Try float64 (dtype=torch.float64, --precision float64); if it persists, run `dnalift info` on "
                     "the model and report it")
    return ". ".join(hints)


#: the default relative tolerance of summation-to-delta per precision (benchmarks/README.md: the lower ones)
DELTA_TOLERANCE = {"float64": 1e-8, "float32": 1e-3, "tf32": 1e-2, "bfloat16": 5e-2}


def _warn_deltas(deltas, change, precision, tolerance, *, names=None, max_rule="exact", let_through=()):
    """Warn (ConservationWarning) naming the worst sequences where summation-to-delta is off, and its likely cause
    (ops let through with gradients, the gradient max rule, else float32 rounding); ``precision``: a
    :class:`~dnalift.options.Precision` or a dtype."""
    if isinstance(precision, torch.dtype):
        precision = "float64" if precision == torch.float64 else "float32"
    if tolerance is None:
        tolerance = DELTA_TOLERANCE[str(precision)]
    relative = deltas.abs() / change.abs().clamp(min=1.0)
    bad = ~(relative <= tolerance)  # NaN is off too
    if bool(bad.any()):
        worst = torch.argsort(relative.max(dim=1).values, descending=True)[:5].tolist()
        label = (lambda i: names[i]) if names is not None else (lambda i: f"#{i}")
        details = ", ".join(f"{label(i)} ({float(deltas[i].abs().max()):.3g})" for i in worst)
        warnings.warn(
            f"summation-to-delta is off by more than {tolerance:g} (relative) for {int(bad.any(1).sum())} of "
            f"{len(deltas)} sequence(s); worst: {details}. {_conservation_hint(max_rule, let_through)}",
            ConservationWarning, stacklevel=3)
