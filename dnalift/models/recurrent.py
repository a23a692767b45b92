"""Recurrent layers written out as their cell equations, so that every gate gets a DeepLIFT rule (torch only).

``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` export as one op each (``aten.lstm.input``, ``aten.gru.input``,
``aten.rnn_tanh.input``, ``aten.rnn_relu.input``), which has no DeepLIFT rule. :func:`unroll_recurrent` points
those nodes of an unlifted graph at the Python functions below; exporting the graph again (``models.export``
does) traces them into the ops they are made of: linear maps, ``sigmoid``/``tanh``, sums and products of two
activations, one cell per position and direction. The engine then gives the gates the product rule (paper
2.3.5) and their nonlinearities Rescale or RevealCancel, as for any model written with explicit cells.

The cell equations are PyTorch's (``torch.nn.LSTM``/``GRU`` documentation), in this form, which decides the
positive and negative parts RevealCancel carries:

* LSTM: ``i, f, g, o = chunk(W_ih x_t + b_ih + W_hh h + b_hh, 4)``;
  ``c = sigmoid(f) * c + sigmoid(i) * tanh(g)``; ``h = sigmoid(o) * tanh(c)`` (then ``W_hr h`` with
  ``proj_size``);
* GRU: ``r = sigmoid(x_r + h_r)``, ``z = sigmoid(x_z + h_z)``, ``n = tanh(x_n + r * h_n)`` with
  ``x_* = W_i* x_t + b_i*`` and ``h_* = W_h* h + b_h*``; ``h = (1 - z) * n + z * h``;
* RNN: ``h = tanh(W_ih x_t + b_ih + W_hh h + b_hh)`` (or ``relu``).

``W_ih x_t + b_ih`` is computed for all positions at once (one linear map; per position it is the same
numbers). Layers run in order; a bidirectional layer's backward direction runs from the last position to the
first and its outputs are concatenated after the forward direction's, as PyTorch does. Dropout between layers
is a training-time op and is left out (evaluation mode). Packed sequences (``aten.lstm.data``) are not
rewritten.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

__all__ = ["RECURRENT_OPS", "recurrent_nodes", "unroll_recurrent", "lstm", "gru", "rnn_tanh", "rnn_relu"]

log = logging.getLogger(__name__)

aten = torch.ops.aten


def _weights(params, k: int, per: int, has_biases: bool) -> tuple:
    """``(W_ih, W_hh, b_ih, b_hh, W_hr)`` of layer-direction ``k`` (``None`` for those it does not have)."""
    w = params[k * per:(k + 1) * per]
    b_ih, b_hh = (w[2], w[3]) if has_biases else (None, None)
    w_hr = w[-1] if len(w) == (5 if has_biases else 3) else None
    return w[0], w[1], b_ih, b_hh, w_hr


def _positions(length: int, reverse: bool) -> range:
    return range(length - 1, -1, -1) if reverse else range(length)


def _lstm_direction(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, reverse: bool):
    """One direction of one LSTM layer over ``x`` ``(length, n, features)``: outputs ``(length, n, hidden)``,
    last ``h`` and ``c``."""
    inputs = F.linear(x, w_ih, b_ih)
    outputs = [None] * x.shape[0]
    for t in _positions(x.shape[0], reverse):
        i, f, g, o = (inputs[t] + F.linear(h, w_hh, b_hh)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        if w_hr is not None:
            h = F.linear(h, w_hr)
        outputs[t] = h
    return torch.stack(outputs), h, c


def _gru_direction(x, h, w_ih, w_hh, b_ih, b_hh, reverse: bool):
    """One direction of one GRU layer: outputs ``(length, n, hidden)`` and the last ``h``."""
    inputs = F.linear(x, w_ih, b_ih)
    outputs = [None] * x.shape[0]
    for t in _positions(x.shape[0], reverse):
        x_r, x_z, x_n = inputs[t].chunk(3, dim=-1)
        h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h = (1 - z) * n + z * h
        outputs[t] = h
    return torch.stack(outputs), h


def _rnn_direction(x, h, w_ih, w_hh, b_ih, b_hh, reverse: bool, activation):
    inputs = F.linear(x, w_ih, b_ih)
    outputs = [None] * x.shape[0]
    for t in _positions(x.shape[0], reverse):
        h = activation(inputs[t] + F.linear(h, w_hh, b_hh))
        outputs[t] = h
    return torch.stack(outputs), h


def _layers(input, states, params, has_biases, num_layers, bidirectional, batch_first, per, direction):
    """Run the layers: ``direction(x, states_k, weights_k, reverse)`` returns ``(outputs, *last states)``.

    ``states`` holds one tensor per kind of state (``(h0,)`` or ``(h0, c0)``), each ``(layers * directions,
    n, size)``. Returns the output ``(length, n, ...)`` (batch first if the input was) and the last states,
    stacked as PyTorch returns them.
    """
    directions = 2 if bidirectional else 1
    x = input.transpose(0, 1) if batch_first else input
    last = [[] for _ in states]
    for layer in range(num_layers):
        outputs = []
        for d in range(directions):
            k = layer * directions + d
            out, *ends = direction(x, [s[k] for s in states], _weights(params, k, per, has_biases), d == 1)
            outputs.append(out)
            for kept, end in zip(last, ends):
                kept.append(end)
        x = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
    out = x.transpose(0, 1) if batch_first else x
    return (out, *(torch.stack(kept) for kept in last))


def lstm(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    """``aten.lstm.input`` as cells: returns ``(output, h_n, c_n)``."""
    h0, c0 = hx
    per = (4 if has_biases else 2) + (1 if h0.shape[-1] != c0.shape[-1] else 0)  # + W_hr with proj_size

    def direction(x, states, w, reverse):
        return _lstm_direction(x, states[0], states[1], *w, reverse)

    return _layers(input, (h0, c0), params, has_biases, num_layers, bidirectional, batch_first, per, direction)


def gru(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    """``aten.gru.input`` as cells: returns ``(output, h_n)``."""

    def direction(x, states, w, reverse):
        return _gru_direction(x, states[0], *w[:4], reverse)

    return _layers(input, (hx,), params, has_biases, num_layers, bidirectional, batch_first,
                   4 if has_biases else 2, direction)


def _simple_rnn(activation):
    def rnn(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
        def direction(x, states, w, reverse):
            return _rnn_direction(x, states[0], *w[:4], reverse, activation)

        return _layers(input, (hx,), params, has_biases, num_layers, bidirectional, batch_first,
                       4 if has_biases else 2, direction)

    return rnn


rnn_tanh = _simple_rnn(torch.tanh)
rnn_tanh.__doc__ = "``aten.rnn_tanh.input`` as cells: returns ``(output, h_n)``."
rnn_relu = _simple_rnn(torch.relu)
rnn_relu.__doc__ = "``aten.rnn_relu.input`` as cells: returns ``(output, h_n)``."

#: the recurrent ops this module writes out, and their cells
RECURRENT_OPS = {
    aten.lstm.input: lstm,
    aten.gru.input: gru,
    aten.rnn_tanh.input: rnn_tanh,
    aten.rnn_relu.input: rnn_relu,
}


def recurrent_nodes(graph: torch.fx.Graph) -> list[torch.fx.Node]:
    """The nodes of ``graph`` that :func:`unroll_recurrent` rewrites."""
    return [n for n in graph.nodes if n.op == "call_function" and n.target in RECURRENT_OPS]


def unroll_recurrent(gm: torch.fx.GraphModule) -> int:
    """Point each recurrent op of ``gm`` at its cells (exporting ``gm`` again traces them); in place.

    The cells' ops keep the recurrent node's source line (the export carries a node's ``stack_trace`` over to
    the ops it traces from it).

    Returns
    -------
    int
        How many ops were rewritten.
    """
    nodes = recurrent_nodes(gm.graph)
    for node in nodes:
        dropout, train = node.args[5:7]  # (input, hx, params, has_biases, num_layers, dropout, train, ...)
        if train and dropout:
            log.warning("a recurrent layer was exported in training mode with dropout %g between its layers; "
                        "dnalift scores it in evaluation mode, without dropout (call model.eval() before "
                        "saving)", dropout)
        node.target = RECURRENT_OPS[node.target]
    if nodes:
        gm.recompile()
        log.info("wrote %d recurrent layer(s) out as their cell equations", len(nodes))
    return len(nodes)
