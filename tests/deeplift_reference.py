"""An independent, slow, float64 NumPy reference implementation of DeepLIFT (the yardstick of issue 9).

Written from the 2017 paper (Shrikumar, Greenside & Kundaje, "Learning Important Features Through Propagating
Activation Differences"), the rules of DESIGN.md and the conventions of the original kundajelab/deeplift code,
not from dnalift's engine. It runs one (sequence, reference) pair at a time, layer by layer, with explicit loops
over output positions and pooling windows, so that each rule can be read next to its statement below.

Conventions
-----------
1. ``x`` and the reference ``x0`` go forward through every layer; ``Δ = activation(x) - activation(x0)``.
   Every activation also carries a positive and a negative part (``Δ⁺ + Δ⁻ = Δ``): the input's are ``Δ`` split
   by its sign.
2. Linear and Conv1d (the Linear rule with ± parts): the difference of the layer's *input activations* is split
   by sign and each term ``w·Δx`` goes to ``Δy⁺`` or ``Δy⁻`` by its own sign (the bias cancels). Backward, each
   input unit gets one multiplier: ``Σ_j m⁺_j w⁺_ji + m⁻_j w⁻_ji`` where its ``Δx > 0``, ``Σ_j m⁺_j w⁻_ji +
   m⁻_j w⁺_ji`` where ``Δx < 0``, ``Σ_j ½(m⁺_j + m⁻_j) w_ji`` where ``Δx == 0`` exactly. The sign is that of
   the forward difference, never of a sum of carried parts. Its ``m⁺`` and ``m⁻`` are that one value.
3. Elementwise nonlinearities ``y = f(x)`` (ReLU, PReLU, Sigmoid, Tanh):
   - Rescale: ``m = Δy/Δx``, or ``f'(x0)`` where ``|Δx| < 1e-10``; both parts are scaled by ``m`` and both
     incoming multipliers are multiplied by it.
   - RevealCancel, from the input's parts ``Δx⁺``, ``Δx⁻``:
     ``Δy⁺ = ½[f(x0+Δx⁺) − f(x0)] + ½[f(x0+Δx⁻+Δx⁺) − f(x0+Δx⁻)]``, ``Δy⁻`` symmetric, ``m± = Δy±/Δx±``;
     a part with ``|part| < 1e-10`` gets the limit ``(f'(x0) + f'(x0 + other part))/2``. The input's
     ``m⁺ = m⁺_out·m⁺`` and ``m⁻ = m⁻_out·m⁻``; the output's parts are ``Δy⁺`` and ``Δy⁻``.
   - "genomics" (the original's DeepLIFT_GenomicsDefault): Rescale when the layer just before is a Conv1d,
     RevealCancel when it is a Linear, Rescale otherwise (the original refuses that case; dnalift's README says
     Rescale).
   ``f'`` at a kink is torch's (and the original's) one-sided choice: ReLU′(0) = 0, PReLU′(0) = slope.
4. MaxPool1d, per window with input values ``v`` (argmax ``i*``, ``y = v[i*]``) and reference values ``v0``
   (argmax ``j*``, ``y0``); ties go to the first index, as torch's max_pool1d indices do:
   - "gradient" (the original code): coefficient 1 at ``i*``;
   - "exact" (DESIGN.md): ``M = max(y, y0)``; coefficient ``(M − y0)/Δx[i*]`` at ``i*`` (1, the gradient,
     where ``Δx[i*] == 0``) plus ``(y − M)/Δx[j*]`` at ``j*`` (0 where ``Δx[j*] == 0``), added up where
     windows overlap.
   The coefficients route the ± parts forward and ``m⁺``, ``m⁻`` back, separately.
5. AvgPool1d and Flatten: linear with non-negative coefficients; parts and multipliers routed the same way.
6. The target is one unit of the last layer's output (flattened per row), with ``m⁺ = m⁻ = 1``.
7. A Softmax or LogSoftmax as the last layer (over the features of a Linear's output): the target is taken on the
   logits minus their mean, ``z_t − mean(z)`` (2016 paper 2.5), whatever the rule: the multipliers of the logits
   are ``m⁺ = m⁻ = e_t − 1/K`` for K logits. (Its ``pos``/``neg`` are the centred parts; nothing reads them.)

At the input, the multiplier is ``m⁺`` where ``Δx > 0``, ``m⁻`` where ``Δx < 0`` and ``½(m⁺ + m⁻)`` where
``Δx == 0`` (the same one-multiplier rule as 2; when the first layer is Linear or Conv1d, ``m⁺ = m⁻``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch.nn as nn

__all__ = ["NEAR_ZERO", "LayerTrace", "PairResult", "reference_deeplift", "deeplift_pair", "convert_layers",
           "resolve_rule", "OutputSoftmax"]

NEAR_ZERO = 1e-10
MODES = ("rescale", "revealcancel", "genomics")
MAX_RULES = ("exact", "gradient")


# ---------------------------------------------------------------------------------------------------------------
# Layers read into NumPy float64


@dataclass
class Dense:
    weight: np.ndarray  # (out, in)
    bias: np.ndarray  # (out,)


@dataclass
class Conv:
    weight: np.ndarray  # (out channels, in channels, kernel)
    bias: np.ndarray  # (out channels,)
    stride: int


@dataclass
class Elementwise:
    kind: str  # "relu", "prelu", "sigmoid", "tanh"
    slope: np.ndarray | None = None  # PReLU: (1,) or (channels,)


@dataclass
class Pool:
    kind: str  # "max" or "avg"
    kernel: int
    stride: int


@dataclass
class FlattenLayer:
    pass


@dataclass
class OutputSoftmax:
    log: bool  # LogSoftmax: the same target (the centred logits)


def _int(value) -> int:
    return int(value[0]) if isinstance(value, (tuple, list)) else int(value)


def _convert_conv(module: nn.Conv1d) -> Conv:
    if _int(module.padding) != 0 or _int(module.dilation) != 1 or module.groups != 1:
        raise ValueError(f"Conv1d with padding 0, dilation 1 and groups 1 only, not {module}")
    bias = module.bias.detach().double().numpy() if module.bias is not None else np.zeros(module.out_channels)
    return Conv(module.weight.detach().double().numpy(), bias, _int(module.stride))


def _convert_pool(module: nn.Module, kind: str) -> Pool:
    if _int(module.padding) != 0 or getattr(module, "ceil_mode", False) or _int(getattr(module, "dilation", 1)) != 1:
        raise ValueError(f"pooling with padding 0, dilation 1 and ceil_mode False only, not {module}")
    kernel = _int(module.kernel_size)
    stride = _int(module.stride) if module.stride is not None else kernel
    return Pool(kind, kernel, stride)


def convert_layers(layers) -> list:
    """Read torch modules into NumPy float64 layer records.

    Parameters
    ----------
    layers : iterable of torch.nn.Module
        Conv1d, Linear, ReLU, PReLU, Sigmoid, Tanh, MaxPool1d, AvgPool1d, Flatten (start_dim 1), in order;
        a Softmax or LogSoftmax (dim 1) as the last one.

    Returns
    -------
    list of Dense, Conv, Elementwise, Pool, FlattenLayer and OutputSoftmax
    """
    converted = []
    for module in layers:
        if isinstance(module, nn.Linear):
            bias = module.bias.detach().double().numpy() if module.bias is not None else np.zeros(module.out_features)
            converted.append(Dense(module.weight.detach().double().numpy(), bias))
        elif isinstance(module, nn.Conv1d):
            converted.append(_convert_conv(module))
        elif isinstance(module, nn.PReLU):
            converted.append(Elementwise("prelu", module.weight.detach().double().numpy().reshape(-1)))
        elif isinstance(module, (nn.ReLU, nn.Sigmoid, nn.Tanh)):
            converted.append(Elementwise(type(module).__name__.lower()))
        elif isinstance(module, nn.MaxPool1d):
            converted.append(_convert_pool(module, "max"))
        elif isinstance(module, nn.AvgPool1d):
            converted.append(_convert_pool(module, "avg"))
        elif isinstance(module, (nn.Softmax, nn.LogSoftmax)):
            if module.dim not in (1, -1) or module is not layers[-1]:
                raise ValueError("Softmax/LogSoftmax over dim 1 as the last layer only")
            converted.append(OutputSoftmax(isinstance(module, nn.LogSoftmax)))
        elif isinstance(module, nn.Flatten):
            if module.start_dim != 1 or module.end_dim != -1:
                raise ValueError("Flatten(start_dim=1, end_dim=-1) only")
            converted.append(FlattenLayer())
        else:
            raise ValueError(f"the reference implementation has no rule for {type(module).__name__}")
    return converted


def resolve_rule(layers: list, index: int, mode: str) -> str:
    """The rule ("rescale" or "revealcancel") of the nonlinearity ``layers[index]`` under ``mode``."""
    if mode != "genomics":
        return mode
    before = layers[index - 1] if index > 0 else None
    return "revealcancel" if isinstance(before, Dense) else "rescale"


# ---------------------------------------------------------------------------------------------------------------
# Elementwise functions and their derivatives


def _slope(layer: Elementwise, shape) -> np.ndarray:
    """PReLU slopes broadcast to an activation of ``shape`` (one slope, or one per channel = axis 0)."""
    slope = layer.slope
    if slope.size == 1:
        return np.full(shape, slope[0])
    return slope.reshape((-1,) + (1,) * (len(shape) - 1)) * np.ones(shape)


def _f(layer: Elementwise, z: np.ndarray) -> np.ndarray:
    if layer.kind == "relu":
        return np.where(z > 0, z, 0.0)
    if layer.kind == "prelu":
        return np.where(z > 0, z, _slope(layer, z.shape) * z)
    if layer.kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if layer.kind == "tanh":
        return np.tanh(z)
    raise ValueError(layer.kind)


def _f_prime(layer: Elementwise, z: np.ndarray) -> np.ndarray:
    if layer.kind == "relu":
        return np.where(z > 0, 1.0, 0.0)
    if layer.kind == "prelu":
        return np.where(z > 0, 1.0, _slope(layer, z.shape))
    if layer.kind == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-z))
        return s * (1.0 - s)
    if layer.kind == "tanh":
        return 1.0 - np.tanh(z) ** 2
    raise ValueError(layer.kind)


# ---------------------------------------------------------------------------------------------------------------
# One pair (x, x0): the forward pass with ± parts


@dataclass
class LayerTrace:
    """What one layer did for one (x, x0) pair; activations are per sample: (features,) or (channels, length).

    ``pos`` and ``neg`` are the ± parts of the output difference. ``rule`` is the nonlinearity's resolved rule,
    ``m_pos``/``m_neg`` its multipliers. ``routes`` (pools, (channels, windows, length)) holds the coefficients
    from input positions to windows; ``windows`` (max pools) lists per window
    ``(channel, window, i_star, j_star, y, y0, dx_at_i_star)``.
    """

    layer: object
    inp: np.ndarray
    inp0: np.ndarray
    out: np.ndarray
    out0: np.ndarray
    pos: np.ndarray
    neg: np.ndarray
    rule: str | None = None
    m_pos: np.ndarray | None = None
    m_neg: np.ndarray | None = None
    routes: np.ndarray | None = None
    windows: list = field(default_factory=list)


def _split(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.where(d > 0, d, 0.0), np.where(d < 0, d, 0.0)


def _signed_sums(terms: np.ndarray, axes) -> tuple[np.ndarray, np.ndarray]:
    """Sums of the positive and of the negative entries of ``terms`` over ``axes``."""
    return np.where(terms > 0, terms, 0.0).sum(axis=axes), np.where(terms < 0, terms, 0.0).sum(axis=axes)


def _dense_forward(layer: Dense, a, a0):
    out, out0 = layer.weight @ a + layer.bias, layer.weight @ a0 + layer.bias
    terms = layer.weight * (a - a0)[None, :]  # (out, in): each w_ji * Δx_i
    pos, neg = _signed_sums(terms, 1)
    return out, out0, pos, neg


def _conv_forward(layer: Conv, a, a0):
    w, stride = layer.weight, layer.stride
    kernel = w.shape[2]
    length_out = (a.shape[1] - kernel) // stride + 1
    out = np.empty((w.shape[0], length_out))
    out0, pos, neg = np.empty_like(out), np.empty_like(out), np.empty_like(out)
    d = a - a0
    for p in range(length_out):
        window = slice(p * stride, p * stride + kernel)
        out[:, p] = (w * a[None, :, window]).sum(axis=(1, 2)) + layer.bias
        out0[:, p] = (w * a0[None, :, window]).sum(axis=(1, 2)) + layer.bias
        terms = w * d[None, :, window]  # (out ch, in ch, kernel)
        pos[:, p], neg[:, p] = _signed_sums(terms, (1, 2))
    return out, out0, pos, neg


def _max_routes(v: np.ndarray, v0: np.ndarray, max_rule: str):
    """Coefficients (length of window,) of one max-pool window, with i*, j*, y, y0, Δx[i*]."""
    i_star, j_star = int(np.argmax(v)), int(np.argmax(v0))
    y, y0 = v[i_star], v0[j_star]
    coefficients = np.zeros(v.shape)
    dx_i, dx_j = v[i_star] - v0[i_star], v[j_star] - v0[j_star]
    if max_rule == "gradient":
        coefficients[i_star] += 1.0
    else:
        top = max(y, y0)
        coefficients[i_star] += 1.0 if dx_i == 0 else (top - y0) / dx_i
        coefficients[j_star] += 0.0 if dx_j == 0 else (y - top) / dx_j
    return coefficients, (i_star, j_star, y, y0, dx_i)


def _pool_forward(layer: Pool, a, a0, pos_in, neg_in, max_rule: str):
    """Pool outputs, and the routing coefficients (channels, windows, length) with the max windows' records."""
    channels, length = a.shape
    windows_out = (length - layer.kernel) // layer.stride + 1
    routes = np.zeros((channels, windows_out, length))
    records = []
    for c in range(channels):
        for w in range(windows_out):
            start = w * layer.stride
            span = slice(start, start + layer.kernel)
            if layer.kind == "avg":
                routes[c, w, span] = 1.0 / layer.kernel
            else:
                coefficients, record = _max_routes(a[c, span], a0[c, span], max_rule)
                routes[c, w, span] += coefficients
                records.append((c, w) + record)
    reduce = np.max if layer.kind == "max" else np.mean
    out = np.stack([[reduce(a[c, w * layer.stride: w * layer.stride + layer.kernel]) for w in range(windows_out)]
                    for c in range(channels)])
    out0 = np.stack([[reduce(a0[c, w * layer.stride: w * layer.stride + layer.kernel]) for w in range(windows_out)]
                     for c in range(channels)])
    pos = np.einsum("cwl,cl->cw", routes, pos_in)
    neg = np.einsum("cwl,cl->cw", routes, neg_in)
    return out, out0, pos, neg, routes, records


def _revealcancel(layer: Elementwise, z0, pos_in, neg_in):
    """Δy⁺, Δy⁻ and m⁺, m⁻ of the 2017 paper's RevealCancel rule, with the limit where a part is zero."""
    f = lambda z: _f(layer, z)  # noqa: E731
    dy_pos = 0.5 * (f(z0 + pos_in) - f(z0)) + 0.5 * (f(z0 + neg_in + pos_in) - f(z0 + neg_in))
    dy_neg = 0.5 * (f(z0 + neg_in) - f(z0)) + 0.5 * (f(z0 + pos_in + neg_in) - f(z0 + pos_in))
    small_pos, small_neg = np.abs(pos_in) < NEAR_ZERO, np.abs(neg_in) < NEAR_ZERO
    limit_pos = 0.5 * (_f_prime(layer, z0) + _f_prime(layer, z0 + neg_in))
    limit_neg = 0.5 * (_f_prime(layer, z0) + _f_prime(layer, z0 + pos_in))
    m_pos = np.where(small_pos, limit_pos, dy_pos / np.where(small_pos, 1.0, pos_in))
    m_neg = np.where(small_neg, limit_neg, dy_neg / np.where(small_neg, 1.0, neg_in))
    return dy_pos, dy_neg, m_pos, m_neg


def _elementwise_forward(layer: Elementwise, rule: str, z, z0, pos_in, neg_in):
    out, out0 = _f(layer, z), _f(layer, z0)
    if rule == "revealcancel":
        pos, neg, m_pos, m_neg = _revealcancel(layer, z0, pos_in, neg_in)
        return out, out0, pos, neg, m_pos, m_neg
    dz = z - z0
    small = np.abs(dz) < NEAR_ZERO
    m = np.where(small, _f_prime(layer, z0), (out - out0) / np.where(small, 1.0, dz))
    return out, out0, m * pos_in, m * neg_in, m, m


def _centred(v: np.ndarray) -> np.ndarray:
    """``v − mean(v)``: the logits as a softmax output's target sees them (convention 7)."""
    return v - v.mean()


def forward_pair(layers: list, x: np.ndarray, x0: np.ndarray, *, mode: str, max_rule: str) -> list[LayerTrace]:
    """Forward one input and one reference through ``layers`` (from :func:`convert_layers`).

    Parameters
    ----------
    layers : list of layer records
    x, x0 : ndarray (4, length) or (features,)
        One input and one reference, float64.
    mode : {"rescale", "revealcancel", "genomics"}
    max_rule : {"exact", "gradient"}

    Returns
    -------
    list of LayerTrace, one per layer
    """
    a, a0 = x, x0
    pos, neg = _split(x - x0)
    traces = []
    for index, layer in enumerate(layers):
        extra = {}
        if isinstance(layer, Dense):
            out, out0, pos, neg = _dense_forward(layer, a, a0)
        elif isinstance(layer, Conv):
            out, out0, pos, neg = _conv_forward(layer, a, a0)
        elif isinstance(layer, Elementwise):
            rule = resolve_rule(layers, index, mode)
            out, out0, pos, neg, m_pos, m_neg = _elementwise_forward(layer, rule, a, a0, pos, neg)
            extra = dict(rule=rule, m_pos=m_pos, m_neg=m_neg)
        elif isinstance(layer, Pool):
            out, out0, pos, neg, routes, records = _pool_forward(layer, a, a0, pos, neg, max_rule)
            extra = dict(routes=routes, windows=records)
        elif isinstance(layer, FlattenLayer):
            out, out0, pos, neg = a.reshape(-1), a0.reshape(-1), pos.reshape(-1), neg.reshape(-1)
        elif isinstance(layer, OutputSoftmax):
            out, out0, pos, neg = _centred(a), _centred(a0), _centred(pos), _centred(neg)
        else:
            raise ValueError(f"unknown layer {layer!r}")
        traces.append(LayerTrace(layer, a, a0, out, out0, pos, neg, **extra))
        a, a0 = out, out0
    return traces


# ---------------------------------------------------------------------------------------------------------------
# One pair: the backward pass of m⁺ and m⁻


def _one_multiplier(d: np.ndarray, when_pos, when_neg, when_zero) -> np.ndarray:
    """The Linear rule's single multiplier per input unit, chosen by the sign of its forward difference ``d``."""
    return np.where(d > 0, when_pos, np.where(d < 0, when_neg, when_zero))


def _dense_backward(layer: Dense, d, m_pos, m_neg):
    w = layer.weight
    w_pos, w_neg = np.where(w > 0, w, 0.0), np.where(w < 0, w, 0.0)
    m = _one_multiplier(d, m_pos @ w_pos + m_neg @ w_neg, m_pos @ w_neg + m_neg @ w_pos,
                        (0.5 * (m_pos + m_neg)) @ w)
    return m, m


def _conv_backward(layer: Conv, d, m_pos, m_neg):
    w, stride = layer.weight, layer.stride
    w_pos, w_neg = np.where(w > 0, w, 0.0), np.where(w < 0, w, 0.0)
    kernel = w.shape[2]
    m = np.zeros(d.shape)
    for p in range(m_pos.shape[1]):
        window = slice(p * stride, p * stride + kernel)
        mp, mn = m_pos[:, p, None, None], m_neg[:, p, None, None]  # (out ch, 1, 1)
        when_pos = (mp * w_pos + mn * w_neg).sum(axis=0)  # (in ch, kernel)
        when_neg = (mp * w_neg + mn * w_pos).sum(axis=0)
        when_zero = (0.5 * (mp + mn) * w).sum(axis=0)
        m[:, window] += _one_multiplier(d[:, window], when_pos, when_neg, when_zero)
    return m, m


def backward_pair(traces: list[LayerTrace], target: int) -> np.ndarray:
    """Input multipliers of one pair from its forward traces.

    Parameters
    ----------
    traces : list of LayerTrace
        From :func:`forward_pair`.
    target : int
        Index into the last layer's output, flattened.

    Returns
    -------
    ndarray, the shape of the input
        The multipliers ``m`` with contributions ``m * (x - x0)``.
    """
    last = traces[-1].out
    m_pos = np.zeros(last.size)
    m_pos[target] = 1.0
    m_pos = m_pos.reshape(last.shape)
    m_neg = m_pos.copy()
    for trace in reversed(traces):
        layer, d = trace.layer, trace.inp - trace.inp0
        if isinstance(layer, Dense):
            m_pos, m_neg = _dense_backward(layer, d, m_pos, m_neg)
        elif isinstance(layer, Conv):
            m_pos, m_neg = _conv_backward(layer, d, m_pos, m_neg)
        elif isinstance(layer, Elementwise):
            m_pos, m_neg = m_pos * trace.m_pos, m_neg * trace.m_neg
        elif isinstance(layer, Pool):
            m_pos = np.einsum("cwl,cw->cl", trace.routes, m_pos)
            m_neg = np.einsum("cwl,cw->cl", trace.routes, m_neg)
        elif isinstance(layer, FlattenLayer):
            m_pos, m_neg = m_pos.reshape(trace.inp.shape), m_neg.reshape(trace.inp.shape)
        elif isinstance(layer, OutputSoftmax):  # the centring is symmetric: e_t − 1/K
            m_pos, m_neg = _centred(m_pos), _centred(m_neg)
    d = traces[0].inp - traces[0].inp0
    return _one_multiplier(d, m_pos, m_neg, 0.5 * (m_pos + m_neg))


@dataclass
class PairResult:
    multipliers: np.ndarray
    traces: list[LayerTrace]


def deeplift_pair(layers, x, x0, *, target: int, mode: str, max_rule: str) -> PairResult:
    """Multipliers and per-layer traces of one input ``x`` against one reference ``x0`` (see the module notes)."""
    if mode not in MODES or max_rule not in MAX_RULES:
        raise ValueError(f"mode must be one of {MODES} and max_rule one of {MAX_RULES}")
    records = layers if layers and not isinstance(layers[0], nn.Module) else convert_layers(layers)
    traces = forward_pair(records, np.asarray(x, dtype=np.float64), np.asarray(x0, dtype=np.float64),
                          mode=mode, max_rule=max_rule)
    return PairResult(backward_pair(traces, target), traces)


def reference_deeplift(layers, X, R, *, target: int, mode: str, max_rule: str):
    """DeepLIFT contributions and hypothetical scores, averaged over references, in float64.

    Parameters
    ----------
    layers : list of torch.nn.Module
        The modules of an ``nn.Sequential``, in order (see :func:`convert_layers`).
    X : array (n, 4, length), or (n, ...) for other inputs
        Inputs (one-hot for the hypothetical scores to mean anything).
    R : array (n, r, ...) matching X
        References per input.
    target : int
        Index of the explained unit in the last layer's output (flattened per row): of the centred logits where
        the last layer is a Softmax or LogSoftmax (convention 7).
    mode : {"rescale", "revealcancel", "genomics"}
    max_rule : {"exact", "gradient"}

    Returns
    -------
    contributions : ndarray (n, ...)
        ``mean_k m_k * (x - ref_k)``.
    hypothetical : ndarray (n, 4, length) or None
        ``mean_k Σ_c m_k[c, l] * (e_b - ref_k)[c, l]`` for each base ``b`` at each position ``l``; None when X is
        not (n, channels, length).
    """
    X = np.asarray(X, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    records = convert_layers(layers)
    contributions = np.zeros(X.shape)
    hypothetical = np.zeros(X.shape) if X.ndim == 3 else None
    for i in range(X.shape[0]):
        for k in range(R.shape[1]):
            m = deeplift_pair(records, X[i], R[i, k], target=target, mode=mode, max_rule=max_rule).multipliers
            contributions[i] += m * (X[i] - R[i, k]) / R.shape[1]
            if hypothetical is not None:
                # Σ_c m[c, l] (e_b - ref)[c, l] = m[b, l] - Σ_c m[c, l] ref[c, l]
                hypothetical[i] += (m - (m * R[i, k]).sum(axis=0, keepdims=True)) / R.shape[1]
    return contributions, hypothetical
