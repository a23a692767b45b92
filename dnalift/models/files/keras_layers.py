"""Keras layers as torch modules: one converter per Keras class, each module taking and returning Keras' own
layout (channels last), so that ``Flatten``, ``Reshape``, ``Permute`` and ``Dense`` see what Keras saw.

A converter gets a :class:`KerasLayer` (the layer's class, name, config and weights as the file stores them) and
returns an ``nn.Module`` built from ops that have DeepLIFT rules (:mod:`dnalift.attribution.registry`). Nothing
the file holds is run: a ``Lambda`` layer's code is only searched for a known function's name.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dnalift.errors import ModelFormatError

__all__ = ["KerasLayer", "CONVERTERS", "IDENTITY_CLASSES", "Fn", "activation_module", "same_padding", "pads_for",
           "flat_pad", "as_tuple", "require_channels_last", "Conv", "Dense", "Affine", "PReLU"]


@dataclasses.dataclass
class KerasLayer:
    """One layer of a Keras model file.

    Attributes
    ----------
    class_name : str
        The Keras class (``"Conv1D"``).
    name : str
        The layer's name in the model.
    config : dict
        Its ``config`` from the model's JSON.
    weights : list of numpy.ndarray
        Its variables in Keras' order (``kernel``, ``bias``; ``gamma``, ``beta``, ``moving_mean``,
        ``moving_variance``).
    where : str
        The file, for messages.
    """

    class_name: str
    name: str
    config: dict
    weights: list
    where: str

    def refuse(self, why: str, fix: str) -> ModelFormatError:
        """A one-line error naming this layer."""
        return ModelFormatError(f"{self.where}: Keras layer {self.name!r} ({self.class_name}) {why}; {fix}",
                                argument="model", layer=self.name, keras_class=self.class_name)

    def __post_init__(self):  # half-precision weights (a mixed-precision model) are computed in float32
        self.weights = [np.asarray(a, dtype=np.float32) if np.asarray(a).dtype.itemsize < 4 else np.asarray(a)
                        for a in self.weights]

    def tensor(self, i: int) -> torch.Tensor:
        """Weight ``i`` as a tensor."""
        return torch.from_numpy(np.ascontiguousarray(self.weights[i]))


def as_tuple(value, n: int) -> tuple:
    if isinstance(value, (list, tuple)):
        value = tuple(int(v) for v in value)
        return value * n if len(value) == 1 and n > 1 else value
    return (int(value),) * n


def require_channels_last(layer: KerasLayer) -> None:
    if layer.config.get("data_format", "channels_last") not in (None, "channels_last"):
        raise layer.refuse("is channels_first", "dnalift converts channels_last Keras layers (the default); "
                           "rebuild the model with data_format='channels_last'")


# ------------------------------------------------------------------------------------------------ activations
def _activation_name(value) -> str:
    if isinstance(value, dict):  # Keras 3 serialises some activations as objects
        value = value.get("config", value.get("class_name"))
        if isinstance(value, dict):
            value = value.get("name")
    return str(value or "linear")


class Fn(nn.Module):
    """An elementwise function of one tensor (``torch.relu``, a softmax over the last axis...)."""

    def __init__(self, label: str, fn, **kwargs):
        super().__init__()
        self.label, self.fn, self.kwargs = label, fn, kwargs

    def forward(self, x):
        return self.fn(x, **self.kwargs)

    def extra_repr(self) -> str:
        return self.label


def _selu(x):
    return 1.0507009873554805 * F.elu(x, alpha=1.6732632423543772)


_ACTIVATIONS = {
    "relu": lambda: Fn("relu", F.relu),
    "sigmoid": lambda: Fn("sigmoid", torch.sigmoid),
    "tanh": lambda: Fn("tanh", torch.tanh),
    "softmax": lambda: Fn("softmax", F.softmax, dim=-1),
    "log_softmax": lambda: Fn("log_softmax", F.log_softmax, dim=-1),
    "elu": lambda: Fn("elu", F.elu),
    "selu": lambda: Fn("selu", _selu),
    "softplus": lambda: Fn("softplus", F.softplus),
    "exponential": lambda: Fn("exp", torch.exp),
    "swish": lambda: Fn("silu", F.silu),
    "silu": lambda: Fn("silu", F.silu),
    "gelu": lambda: Fn("gelu", F.gelu),
    "relu6": lambda: Fn("relu6", F.relu6),
    "linear": lambda: None,
}


def activation_module(value, layer: KerasLayer) -> nn.Module | None:
    """The module for a Keras activation given by name (``"relu"``), or None for ``"linear"``."""
    name = _activation_name(value)
    if name not in _ACTIVATIONS:
        raise layer.refuse(f"uses the activation {name!r}, which dnalift does not convert",
                           f"use one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


class _Then(nn.Module):
    """A layer followed by its own activation (``Conv1D(..., activation="relu")``)."""

    def __init__(self, body: nn.Module, activation: nn.Module | None):
        super().__init__()
        self.body, self.activation = body, activation

    def forward(self, x):
        y = self.body(x)
        return y if self.activation is None else self.activation(y)


def _with_activation(body: nn.Module, layer: KerasLayer) -> nn.Module:
    act = activation_module(layer.config.get("activation"), layer)
    return body if act is None else _Then(body, act)


# ------------------------------------------------------------------------------------------------ padding
def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's ``padding="same"``: the output has ``ceil(size / stride)`` positions; the extra padding of
    an even total goes to the end."""
    span = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def pads_for(spatial, kernel, stride, dilation, padding) -> list[tuple[int, int]]:
    if padding == "valid":
        return [(0, 0)] * len(spatial)
    if padding == "causal":
        return [((k - 1) * d, 0) for k, d in zip(kernel, dilation)]
    return [same_padding(n, k, s, d) for n, k, s, d in zip(spatial, kernel, stride, dilation)]


def flat_pad(pads) -> list[int]:
    """``F.pad``'s argument (last dimension first) for per-dimension (before, after) pairs."""
    out = []
    for before, after in reversed(pads):
        out += [before, after]
    return out


# ------------------------------------------------------------------------------------------------ weighted
class Conv(nn.Module):
    """Keras ``Conv1D``/``Conv2D`` on channels-last input ``(n, *spatial, C)``."""

    def __init__(self, weight, bias, *, stride, dilation, groups, padding):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.stride, self.dilation, self.groups, self.padding = stride, dilation, groups, padding
        self.conv = F.conv1d if weight.dim() == 3 else F.conv2d

    def forward(self, x):
        x = x.movedim(-1, 1)
        pads = pads_for(x.shape[2:], self.weight.shape[2:], self.stride, self.dilation, self.padding)
        if any(p for pair in pads for p in pair):
            x = F.pad(x, flat_pad(pads))
        y = self.conv(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return y.movedim(1, -1)

    def extra_repr(self) -> str:
        return (f"kernel={tuple(self.weight.shape[2:])}, filters={self.weight.shape[0]}, stride={self.stride}, "
                f"dilation={self.dilation}, padding={self.padding!r}")


def _conv(layer: KerasLayer, nd: int) -> nn.Module:
    require_channels_last(layer)
    c = layer.config
    padding = str(c.get("padding", "valid")).lower()
    if padding not in ("valid", "same", "causal"):
        raise layer.refuse(f"has padding={padding!r}", "use 'valid', 'same' or 'causal'")
    kernel = layer.tensor(0)  # (*k, in / groups, out) -> (out, in / groups, *k)
    weight = kernel.permute(nd + 1, nd, *range(nd)).contiguous()
    bias = layer.tensor(1) if c.get("use_bias", True) else None
    body = Conv(weight, bias, stride=as_tuple(c.get("strides", 1), nd), dilation=as_tuple(c.get("dilation_rate", 1), nd),
                groups=int(c.get("groups", 1) or 1), padding=padding)
    return _with_activation(body, layer)


class Dense(nn.Module):
    """Keras ``Dense``: ``x @ kernel + bias`` over the last axis."""

    def __init__(self, kernel, bias):
        super().__init__()
        self.weight = nn.Parameter(kernel.t().contiguous(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"units={self.weight.shape[0]}"


def _dense(layer: KerasLayer) -> nn.Module:
    bias = layer.tensor(1) if layer.config.get("use_bias", True) else None
    return _with_activation(Dense(layer.tensor(0), bias), layer)


class Affine(nn.Module):
    """``x * scale + shift`` along one axis (Keras ``BatchNormalization`` at inference)."""

    def __init__(self, scale, shift, axis: int):
        super().__init__()
        self.scale = nn.Parameter(scale, requires_grad=False)
        self.shift = nn.Parameter(shift, requires_grad=False)
        self.axis = axis

    def forward(self, x):
        axis = self.axis % x.dim()
        shape = [1] * x.dim()
        shape[axis] = -1
        return x * self.scale.reshape(shape) + self.shift.reshape(shape)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, units={self.scale.numel()}"


def _batch_norm(layer: KerasLayer) -> nn.Module:
    c = layer.config
    axis = c.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise layer.refuse(f"normalises over axes {axis}", "dnalift converts batch norm over one axis")
        axis = axis[0]
    w = [np.asarray(a, dtype=np.float64) for a in layer.weights]
    i = 0
    gamma = w[i] if c.get("scale", True) else 1.0
    i += bool(c.get("scale", True))
    beta = w[i] if c.get("center", True) else 0.0
    i += bool(c.get("center", True))
    mean, var = w[i], w[i + 1]
    scale = gamma / np.sqrt(var + float(c.get("epsilon", 1e-3)))
    shift = beta - mean * scale
    dtype = torch.from_numpy(layer.weights[-1][:0]).dtype
    return Affine(torch.from_numpy(np.asarray(scale)).to(dtype), torch.from_numpy(np.asarray(shift)).to(dtype),
                  int(axis))


class PReLU(nn.Module):
    """``max(0, x) + alpha * min(0, x)`` with a per-position/per-channel ``alpha`` of Keras' shape."""

    def __init__(self, alpha):
        super().__init__()
        self.alpha = nn.Parameter(alpha, requires_grad=False)

    def forward(self, x):
        return F.relu(x) - self.alpha * F.relu(-x)


def _prelu(layer: KerasLayer) -> nn.Module:
    return PReLU(layer.tensor(0))


#: Keras classes that are the identity at inference (dropout, noise, regularisers)
IDENTITY_CLASSES = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
                    "AlphaDropout", "ActivityRegularization")

#: Keras class -> converter, for the layers with weights; the variables each reads, in order
CONVERTERS = {
    "Conv1D": (lambda layer: _conv(layer, 1), ("kernel", "bias")),
    "Convolution1D": (lambda layer: _conv(layer, 1), ("kernel", "bias")),
    "Conv2D": (lambda layer: _conv(layer, 2), ("kernel", "bias")),
    "Convolution2D": (lambda layer: _conv(layer, 2), ("kernel", "bias")),
    "Dense": (_dense, ("kernel", "bias")),
    "BatchNormalization": (_batch_norm, ("gamma", "beta", "moving_mean", "moving_variance")),
    "PReLU": (_prelu, ("alpha",)),
}
