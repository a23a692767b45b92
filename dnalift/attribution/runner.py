"""Running a plan on one batch: the sequences' forward pass, the references' pass (Rescale: differentiated;
RevealCancel: differences carried beside the values), and the gradients of the targets.

:class:`Runner` is what :func:`dnalift.attribution.engine.attribute` calls for each batch of ``n`` sequences with
``r`` references each (``n * r`` reference rows).
"""

from __future__ import annotations

import torch

from dnalift.attribution.kinds.base import RunContext
from dnalift.attribution.pairing import Pairing, near_zero_threshold
from dnalift.attribution.parts import Split, map_parts, total
from dnalift.attribution.plan import Plan, values_in

__all__ = ["Runner"]


class Runner:
    """Runs a plan on batches of sequences and references."""

    def __init__(self, plan: Plan, *, device: torch.device, dtype: torch.dtype, lower: torch.dtype | None = None):
        self.plan = plan
        self.device = device
        self.dtype = dtype
        self.lower = lower  # matrix products and convolutions autocast to it (bfloat16), the rest in dtype
        self.eps = near_zero_threshold(dtype)
        self.constants = plan.constants_on(device, dtype)
        self.output_names = [o.node.name for o in plan.outputs]

    def _start(self, inputs: torch.Tensor) -> dict:
        env = dict(self.constants)
        env[self.plan.input_name] = inputs
        rows = inputs.shape[0]
        for name, shape, _ in self.plan.control_inputs:
            sizes = [inputs.shape[i + 1] if s < 0 and i + 1 < inputs.dim() else s for i, s in enumerate(shape)]
            env[name] = torch.zeros((rows, *sizes), dtype=self.dtype, device=inputs.device)
        return env

    def _shaped(self, step, args, kwargs):
        """A value that depends on the batch's shape only, floating values in the engine's dtype."""
        value = step.run(args, kwargs)
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != self.dtype:
            value = value.to(self.dtype)
        return value

    def _back(self, value):
        """A value of the autocast ops back in the engine's dtype (a no-op without ``lower``)."""
        if self.lower is None:
            return value
        if isinstance(value, torch.Tensor):
            return value.to(self.dtype) if value.is_floating_point() and value.dtype != self.dtype else value
        if isinstance(value, Split):
            return map_parts(value, self._back)
        return value

    def _free(self, env: dict, index: int):
        for name in self.plan.released[index]:
            env.pop(name, None)

    def _as_targets(self, values: list) -> list:
        """Output values or differences as targets see them (:meth:`Output.as_target`: mean-normalised logits
        where the model ends in a softmax)."""
        return [output.as_target(value) for output, value in zip(self.plan.outputs, values)]

    def _outputs(self, env: dict) -> list:
        """The outputs' values as targets see them."""
        return self._as_targets([env[output.node.name] for output in self.plan.outputs])

    def forward(self, inputs: torch.Tensor) -> dict:
        """Plain forward of the sequences; returns the values in ``x_needed`` (no autograd)."""
        env = self._start(inputs)
        kept = {name: env[name] for name in self.plan.x_needed if name in env}
        with torch.no_grad():
            for index, step in enumerate(self.plan.steps):
                args, kwargs = values_in(step.args, env), values_in(step.kwargs, env)
                value = self._shaped(step, args, kwargs) if step.kind == "shape" else self._back(step.run(args, kwargs))
                env[step.node.name] = value
                if step.node.name in self.plan.x_needed:
                    kept[step.node.name] = value
                self._free(env, index)
        return kept

    def rescale_pass(self, refs: torch.Tensor, x_env: dict, pairing: Pairing):
        """Reference forward with DeepLIFT backward functions; returns (reference input, outputs)."""
        refs = refs.detach().requires_grad_(True)
        env = self._start(refs)
        ctx = RunContext(pairing, self.eps, self.plan.batch_dims, x_env, env)
        for index, step in enumerate(self.plan.steps):
            args, kwargs = values_in(step.args, env), values_in(step.kwargs, env)
            if step.kind == "shape":
                env[step.node.name] = self._shaped(step, args, kwargs)
            else:
                env[step.node.name] = self._back(step.rule.reference(step, args, kwargs, ctx))
            self._free(env, index)
        return refs, self._outputs(env)

    def parts_pass(self, refs: torch.Tensor, x_env: dict, pairing: Pairing, inputs: torch.Tensor):
        """Reference forward (no autograd) beside the differences; returns (input diff, output diffs, outputs),
        the outputs' differences and values as targets see them."""
        ref_env = self._start(refs)
        difference = pairing.diff(inputs, refs, 0).detach().requires_grad_(True)
        ctx = RunContext(pairing, self.eps, self.plan.batch_dims, x_env, ref_env, {self.plan.input_name: difference})
        d_env = ctx.d_env
        for index, step in enumerate(self.plan.steps):
            with torch.no_grad():
                args, kwargs = values_in(step.args, ref_env), values_in(step.kwargs, ref_env)
                value = self._shaped(step, args, kwargs) if step.kind == "shape" else self._back(step.run(args, kwargs))
            ref_env[step.node.name] = value
            if step.kind != "shape":
                deltas = [d_env.get(a.name) if isinstance(a, torch.fx.Node) else None for a in step.node.args]
                d_env[step.node.name] = self._back(step.rule.difference(step, args, kwargs, deltas, ctx, value))
            self._free(ref_env, index)
            self._free(d_env, index)
            ctx.release(self.plan.released[index])
        d_out = self._as_targets([total(d_env[name]) for name in self.output_names])
        return difference, d_out, self._outputs(ref_env)

    def run(self, inputs: torch.Tensor, refs: torch.Tensor, pairing: Pairing, targets: list):
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
        with torch.autocast(self.device.type, dtype=self.lower, enabled=self.lower is not None):
            return self._run(inputs, refs, pairing, targets)

    def _run(self, inputs, refs, pairing, targets):
        x_env = self.forward(inputs)
        x_out = self._outputs(x_env)
        anchors = [t.anchor(x_out[t.output]) for t in targets]
        on_inputs = [t(x_out, a) for t, a in zip(targets, anchors)]
        ref_anchors = [pairing.expand(a, 0) if a is not None else None for a in anchors]
        dims = [self.plan.batch_dims.get(o.node.name) or 0 for o in self.plan.outputs]
        with torch.enable_grad():
            if not self.plan.parts_pass:
                leaf, ref_out = self.rescale_pass(refs, x_env, pairing)
                values = [t(ref_out, w) for t, w in zip(targets, ref_anchors)]
                on_refs = [v.detach() for v in values]
            else:
                leaf, d_out, ref_out = self.parts_pass(refs, x_env, pairing, inputs)
                on_refs = [t(ref_out, w) for t, w in zip(targets, ref_anchors)]
                x_rep = [pairing.expand(x, d) for x, d in zip(x_out, dims)]
                below = [x - d for x, d in zip(x_rep, d_out)]
                values = [t(x_rep, w) - t(below, w) for t, w in zip(targets, ref_anchors)]
            multipliers = []
            for i, value in enumerate(values):
                (grad,) = torch.autograd.grad(value.sum(), leaf, retain_graph=i < len(values) - 1,
                                              allow_unused=True)
                multipliers.append(torch.zeros_like(leaf) if grad is None else grad)
        return multipliers, on_inputs, on_refs


