"""Keras ``LSTM``, ``GRU`` and ``Bidirectional`` as ``torch.nn.LSTM`` / ``torch.nn.GRU``.

Keras stores ``kernel`` ``(C, G·u)``, ``recurrent_kernel`` ``(u, G·u)`` and ``bias``; torch wants ``(G·u, C)``
and ``(G·u, u)`` per gate block, in its own gate order:

- LSTM: Keras' gates ``i, f, c, o`` are torch's ``i, f, g, o``; Keras' one bias is ``bias_ih`` (``bias_hh`` 0).
- GRU: Keras' ``z, r, h`` are torch's ``z, r, n`` reordered to ``r, z, n``. Only ``reset_after=True`` (the
  TensorFlow 2 default, ``bias`` ``(2, 3u)``: input and recurrent biases) is torch's GRU; the older
  ``reset_after=False`` applies the reset gate before the recurrent product and is refused.

The ops these export to (``aten.lstm``, ``aten.gru``) are scored once dnalift has their rules; until then
``dnalift info`` lists them as ops without a rule.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from dnalift.models.files.keras_layers import KerasLayer

__all__ = ["Recurrent", "Bidirectional", "RECURRENT"]

#: Keras' GRU gate blocks (z, r, h) in torch's order (r, z, n)
_GRU_ORDER = (1, 0, 2)
#: (activation, recurrent_activation) of the layers torch's LSTM and GRU compute (the TensorFlow 2 defaults)
_TORCH_ACTIVATIONS = ("tanh", "sigmoid")
#: Bidirectional's merge modes: (forward, backward) -> output
_MERGES = {
    "concat": lambda f, b: torch.cat([f, b], dim=-1),
    "sum": lambda f, b: f + b,
    "mul": lambda f, b: f * b,
    "ave": lambda f, b: (f + b) * 0.5,
}


def _check(layer: KerasLayer, config: dict) -> None:
    if (_name(config.get("activation")), _name(config.get("recurrent_activation"))) != _TORCH_ACTIVATIONS:
        raise layer.refuse(f"has activation {config.get('activation')!r} and recurrent_activation "
                           f"{config.get('recurrent_activation')!r}",
                           "dnalift converts recurrent layers with tanh and sigmoid (the TensorFlow 2 defaults)")
    for flag in ("stateful", "return_state", "unroll"):
        if config.get(flag):
            raise layer.refuse(f"has {flag}=True", f"save the model with {flag}=False")


def _name(value) -> str:
    return value.get("config", value.get("class_name")) if isinstance(value, dict) else str(value)


def _blocks(t: torch.Tensor, order) -> torch.Tensor:
    """Reorder the gate blocks along the first axis."""
    return torch.cat([chunk for chunk in (t.chunk(len(order), 0)[i] for i in order)], 0)


def _rnn(layer: KerasLayer, config: dict, arrays: list) -> nn.Module:
    """One direction's ``nn.LSTM`` / ``nn.GRU`` with Keras' arrays (kernel, recurrent_kernel[, bias])."""
    kind = config.get("class_name") or layer.class_name
    units, use_bias = int(config["units"]), bool(config.get("use_bias", True))
    tensors = [torch.from_numpy(a.copy()) for a in arrays]
    kernel, recurrent = tensors[0].t(), tensors[1].t()
    if kind == "LSTM":
        module = nn.LSTM(kernel.shape[1], units, batch_first=True, bias=use_bias)
        w_ih, w_hh = kernel, recurrent
        b_ih = tensors[2] if use_bias else None
        b_hh = torch.zeros_like(b_ih) if use_bias else None
    else:
        if not config.get("reset_after", False):
            raise layer.refuse("is a GRU with reset_after=False", "dnalift converts GRUs with reset_after=True "
                               "(the TensorFlow 2 default); retrain or rebuild the layer with it")
        module = nn.GRU(kernel.shape[1], units, batch_first=True, bias=use_bias)
        w_ih, w_hh = _blocks(kernel, _GRU_ORDER), _blocks(recurrent, _GRU_ORDER)
        b_ih = _blocks(tensors[2][0], _GRU_ORDER) if use_bias else None
        b_hh = _blocks(tensors[2][1], _GRU_ORDER) if use_bias else None
    with torch.no_grad():
        module = module.to(kernel.dtype)
        module.weight_ih_l0.copy_(w_ih)
        module.weight_hh_l0.copy_(w_hh)
        if use_bias:
            module.bias_ih_l0.copy_(b_ih)
            module.bias_hh_l0.copy_(b_hh)
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class Recurrent(nn.Module):
    """A Keras LSTM/GRU on ``(n, T, C)``: the sequence of outputs ``(n, T, u)`` or the last ``(n, u)``; with
    ``go_backwards`` it reads the sequence reversed and returns the outputs in that order, as Keras does."""

    def __init__(self, rnn: nn.Module, *, return_sequences: bool, go_backwards: bool):
        super().__init__()
        self.rnn, self.return_sequences, self.go_backwards = rnn, return_sequences, go_backwards

    def forward(self, x):
        y, _ = self.rnn(x.flip(1) if self.go_backwards else x)
        return y if self.return_sequences else y[:, -1]


class Bidirectional(nn.Module):
    """Keras ``Bidirectional``: the forward layer, the backward one on the reversed sequence (its outputs put
    back in time order), merged by ``concat``, ``sum``, ``mul`` or ``ave``."""

    def __init__(self, forward_rnn: nn.Module, backward_rnn: nn.Module, *, return_sequences: bool, merge: str):
        super().__init__()
        self.forward_rnn, self.backward_rnn = forward_rnn, backward_rnn
        self.return_sequences, self.merge = return_sequences, merge

    def forward(self, x):
        f, _ = self.forward_rnn(x)
        b, _ = self.backward_rnn(x.flip(1))
        if self.return_sequences:
            b = b.flip(1)
        else:
            f, b = f[:, -1], b[:, -1]
        return _MERGES[self.merge](f, b)


def _recurrent(layer: KerasLayer) -> nn.Module:
    c = layer.config
    _check(layer, c)
    return Recurrent(_rnn(layer, c, layer.weights), return_sequences=bool(c.get("return_sequences")),
                     go_backwards=bool(c.get("go_backwards")))


def _bidirectional(layer: KerasLayer) -> nn.Module:
    c = layer.config
    inner = c["layer"]
    if inner.get("class_name") not in ("LSTM", "GRU"):
        raise layer.refuse(f"wraps a {inner.get('class_name')}", "dnalift converts Bidirectional LSTM and GRU")
    backward = c.get("backward_layer") or inner
    merge = c.get("merge_mode", "concat")
    if merge not in _MERGES:
        raise layer.refuse(f"has merge_mode={merge!r}", "use concat, sum, mul or ave")
    for part in (inner, backward):
        _check(layer, part["config"])
        if part["config"].get("go_backwards") and part is inner:
            raise layer.refuse("has a forward layer that goes backwards", "rebuild it with the defaults")
    n = len(layer.weights) // 2
    rnns = [_rnn(layer, dict(part["config"], class_name=part["class_name"]), arrays)
            for part, arrays in ((inner, layer.weights[:n]), (backward, layer.weights[n:]))]
    return Bidirectional(*rnns, return_sequences=bool(inner["config"].get("return_sequences")), merge=merge)


#: Keras class -> (converter, variable names)
RECURRENT = {
    "LSTM": (_recurrent, ("kernel", "recurrent_kernel", "bias")),
    "GRU": (_recurrent, ("kernel", "recurrent_kernel", "bias")),
    "Bidirectional": (_bidirectional, ()),
}
