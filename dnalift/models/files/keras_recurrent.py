"""Keras ``LSTM``, ``GRU`` and ``Bidirectional`` as torch's LSTM and GRU (``torch.lstm``, ``torch.gru``).

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

__all__ = ["RNN", "Recurrent", "Bidirectional", "RECURRENT"]

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


class RNN(nn.Module):
    """One direction of an LSTM or GRU over ``(n, T, C)`` -> ``(n, T, u)``, from zero initial states: torch's
    ``torch.lstm`` / ``torch.gru`` (``aten.lstm`` / ``aten.gru``, what ``nn.LSTM`` and ``nn.GRU`` call), with
    the weights as parameters of this module (``nn.LSTM`` keeps a list of them that ``torch.export`` warns about).

    Parameters
    ----------
    fn : callable
        ``torch.lstm`` or ``torch.gru``.
    weights : list of Tensor
        ``weight_ih (G·u, C)``, ``weight_hh (G·u, u)``, then ``bias_ih``, ``bias_hh`` ``(G·u,)`` if any, gate
        blocks in torch's order.
    cell_state : bool
        True for an LSTM (its state is ``(h, c)``).
    """

    def __init__(self, fn, weights: list, *, cell_state: bool):
        super().__init__()
        self.fn, self.cell_state = fn, cell_state
        self.weights = nn.ParameterList([nn.Parameter(w.contiguous(), requires_grad=False) for w in weights])
        self.units = weights[1].shape[1]

    def forward(self, x):
        h0 = x.new_zeros((1, x.shape[0], self.units))
        state = (h0, h0) if self.cell_state else h0
        return self.fn(x, state, list(self.weights), len(self.weights) == 4, 1, 0.0, False, False, True)[0]

    def extra_repr(self) -> str:
        return f"{getattr(self.fn, '__name__', 'rnn')}, units={self.units}"


def _rnn(layer: KerasLayer, config: dict, arrays: list) -> nn.Module:
    """One direction's :class:`RNN` with Keras' arrays (kernel, recurrent_kernel[, bias])."""
    kind = config.get("class_name") or layer.class_name
    use_bias = bool(config.get("use_bias", True))
    tensors = [torch.from_numpy(a.copy()) for a in arrays]
    kernel, recurrent = tensors[0].t(), tensors[1].t()
    if kind == "LSTM":
        weights = [kernel, recurrent] + ([tensors[2], torch.zeros_like(tensors[2])] if use_bias else [])
        return RNN(torch.lstm, weights, cell_state=True)
    if not config.get("reset_after", False):
        raise layer.refuse("is a GRU with reset_after=False", "dnalift converts GRUs with reset_after=True "
                           "(the TensorFlow 2 default); retrain or rebuild the layer with it")
    weights = [_blocks(kernel, _GRU_ORDER), _blocks(recurrent, _GRU_ORDER)]
    if use_bias:
        weights += [_blocks(tensors[2][0], _GRU_ORDER), _blocks(tensors[2][1], _GRU_ORDER)]
    return RNN(torch.gru, weights, cell_state=False)


class Recurrent(nn.Module):
    """A Keras LSTM/GRU on ``(n, T, C)``: the sequence of outputs ``(n, T, u)`` or the last ``(n, u)``; with
    ``go_backwards`` it reads the sequence reversed and returns the outputs in that order, as Keras does."""

    def __init__(self, rnn: nn.Module, *, return_sequences: bool, go_backwards: bool):
        super().__init__()
        self.rnn, self.return_sequences, self.go_backwards = rnn, return_sequences, go_backwards

    def forward(self, x):
        y = self.rnn(x.flip(1) if self.go_backwards else x)
        return y if self.return_sequences else y[:, -1]


class Bidirectional(nn.Module):
    """Keras ``Bidirectional``: the forward layer, the backward one on the reversed sequence (its outputs put
    back in time order), merged by ``concat``, ``sum``, ``mul`` or ``ave``."""

    def __init__(self, forward_rnn: nn.Module, backward_rnn: nn.Module, *, return_sequences: bool, merge: str):
        super().__init__()
        self.forward_rnn, self.backward_rnn = forward_rnn, backward_rnn
        self.return_sequences, self.merge = return_sequences, merge

    def forward(self, x):
        f = self.forward_rnn(x)
        b = self.backward_rnn(x.flip(1))
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
