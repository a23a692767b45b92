"""Keras layers without weights as torch modules: pooling, cropping and padding, reshaping, merging, the
activation layers, and the one ``Lambda`` dnalift recognises (chrombpnet's logsumexp of the counts).

Each module takes and returns Keras' channels-last layout (see :mod:`dnalift.models.files.keras_layers`).
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dnalift.models.files.keras_layers import (Fn, KerasLayer, activation_module, as_tuple, flat_pad, pads_for,
                                               require_channels_last)

__all__ = ["Pool", "Crop", "Pad", "Merge", "LogSumExp", "WEIGHTLESS"]

#: padding with this value never wins a max: TensorFlow's "same" max pooling ignores the padded positions
_NEVER_MAX = -1e30


class Pool(nn.Module):
    """Keras ``MaxPooling``/``AveragePooling`` 1D/2D on channels-last input; ``"same"`` padding as TensorFlow
    (padded positions never count: not in a max, not in an average's divisor)."""

    def __init__(self, kind: str, size: tuple, stride: tuple, padding: str):
        super().__init__()
        self.kind, self.size, self.stride, self.padding = kind, size, stride, padding

    def forward(self, x):
        x = x.movedim(-1, 1)
        nd = len(self.size)
        pads = pads_for(x.shape[2:], self.size, self.stride, (1,) * nd, self.padding)
        padded = any(p for pair in pads for p in pair)
        if self.kind == "max":
            if padded:
                x = F.pad(x, flat_pad(pads), value=_NEVER_MAX)
            pool = F.max_pool1d if nd == 1 else F.max_pool2d
            return pool(x, self.size, self.stride).movedim(1, -1)
        pool = F.avg_pool1d if nd == 1 else F.avg_pool2d
        if not padded:
            return pool(x, self.size, self.stride).movedim(1, -1)
        y = pool(F.pad(x, flat_pad(pads)), self.size, self.stride)
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
        share = pool(F.pad(ones, flat_pad(pads)), self.size, self.stride)  # the fraction of real positions
        return (y / share).movedim(1, -1)

    def extra_repr(self) -> str:
        return f"{self.kind}, size={self.size}, stride={self.stride}, padding={self.padding!r}"


def _pool(kind: str, nd: int):
    def convert(layer: KerasLayer) -> nn.Module:
        require_channels_last(layer)
        c = layer.config
        size = as_tuple(c.get("pool_size", 2), nd)
        stride = as_tuple(c.get("strides") or size, nd)
        padding = str(c.get("padding", "valid")).lower()
        if padding not in ("valid", "same"):
            raise layer.refuse(f"has padding={padding!r}", "use 'valid' or 'same'")
        return Pool(kind, size, stride, padding)
    return convert


class GlobalPool(nn.Module):
    """Keras ``GlobalMax``/``GlobalAveragePooling`` 1D/2D: over the positions of channels-last input."""

    def __init__(self, kind: str, nd: int, keepdims: bool):
        super().__init__()
        self.kind, self.dims, self.keepdims = kind, tuple(range(1, nd + 1)), keepdims

    def forward(self, x):
        if self.kind == "max":
            return x.amax(dim=self.dims, keepdim=self.keepdims)
        return x.mean(dim=self.dims, keepdim=self.keepdims)

    def extra_repr(self) -> str:
        return f"{self.kind} over axes {self.dims}"


def _global(kind: str, nd: int):
    def convert(layer: KerasLayer) -> nn.Module:
        require_channels_last(layer)
        return GlobalPool(kind, nd, bool(layer.config.get("keepdims", False)))
    return convert


class Crop(nn.Module):
    """Keras ``Cropping1D``/``Cropping2D``: drop ``(before, after)`` positions per spatial axis."""

    def __init__(self, crops):
        super().__init__()
        self.crops = crops

    def forward(self, x):
        index = [slice(None)]
        for axis, (before, after) in enumerate(self.crops, 1):
            index.append(slice(before, x.shape[axis] - after))
        return x[tuple(index)]

    def extra_repr(self) -> str:
        return f"crops={self.crops}"


def _pairs(value, nd: int) -> tuple:
    """Keras' ``cropping``/``padding`` -> ``((before, after), ...)`` per spatial axis: an int (all sides), one
    pair (1D: ``[2, 3]``), or one int or pair per axis (2D: ``[[1, 1], [2, 3]]``)."""
    if isinstance(value, int):
        return ((value, value),) * nd
    value = list(value)
    if nd == 1 and all(isinstance(v, int) for v in value):
        return ((value[0], value[-1]),)
    return tuple((int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1])) for v in value)


def _crop(nd: int):
    def convert(layer: KerasLayer) -> nn.Module:
        require_channels_last(layer)
        return Crop(_pairs(layer.config.get("cropping", 1), nd))
    return convert


class Pad(nn.Module):
    """Keras ``ZeroPadding1D``/``ZeroPadding2D`` on channels-last input."""

    def __init__(self, pads):
        super().__init__()
        self.pads = pads

    def forward(self, x):
        return F.pad(x, [0, 0, *flat_pad(self.pads)])

    def extra_repr(self) -> str:
        return f"pads={self.pads}"


def _pad(nd: int):
    def convert(layer: KerasLayer) -> nn.Module:
        require_channels_last(layer)
        return Pad(_pairs(layer.config.get("padding", 1), nd))
    return convert


class Reshape(nn.Module):
    """Keras ``Flatten`` (``shape=(-1,)``) and ``Reshape``: each row in Keras' (row-major, channels-last) order."""

    def __init__(self, shape: tuple):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Permute(nn.Module):
    """Keras ``Permute``: ``dims`` count from 1, after the batch axis."""

    def __init__(self, dims: tuple):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(0, *self.dims)


class Merge(nn.Module):
    """Keras merge layers of several tensors: ``Add``, ``Subtract``, ``Multiply``, ``Average``, ``Maximum``,
    ``Minimum``, ``Concatenate``."""

    def __init__(self, kind: str, axis: int = -1):
        super().__init__()
        self.kind, self.axis = kind, axis

    def forward(self, *xs):
        if self.kind == "concatenate":
            return torch.cat(xs, dim=self.axis)
        if self.kind == "subtract":
            return xs[0] - xs[1]
        if self.kind in ("maximum", "minimum"):
            stacked = torch.stack(xs, dim=0)
            return stacked.amax(0) if self.kind == "maximum" else -(-stacked).amax(0)
        out = xs[0]
        for x in xs[1:]:
            out = out * x if self.kind == "multiply" else out + x
        return out * (1.0 / len(xs)) if self.kind == "average" else out

    def extra_repr(self) -> str:
        return self.kind if self.kind != "concatenate" else f"concatenate, axis={self.axis}"


class LogSumExp(nn.Module):
    """``log(sum(exp(x)))`` over the last axis, keeping it (chrombpnet's ``logcount_predictions`` Lambda):
    exp, sum and log, which have rules. Log-counts are far below float32's ``exp`` overflow (88)."""

    def forward(self, x):
        return torch.log(torch.exp(x).sum(dim=-1, keepdim=True))


#: names a Lambda's code must mention (as an identifier) to be taken for chrombpnet's logsumexp
_LOGSUMEXP_NAMES = (b"reduce_logsumexp", b"logsumexp")


def _lambda_code(config: dict) -> bytes:
    """The raw bytes of a Lambda's marshalled code (never unmarshalled: only searched)."""
    fn = config.get("function")
    if isinstance(fn, dict):  # Keras 3: {"class_name": "__lambda__", "config": {"code": BASE64}}
        fn = (fn.get("config") or {}).get("code")
    elif isinstance(fn, (list, tuple)):  # Keras 2: [BASE64, defaults, closure]
        fn = fn[0] if fn else None
    if not isinstance(fn, str):
        return b""
    try:
        return base64.b64decode(fn.encode("ascii"), validate=False)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return b""


def _lambda(layer: KerasLayer) -> nn.Module:
    code = _lambda_code(layer.config)
    if layer.name.endswith("logcount_predictions") and any(n in code for n in _LOGSUMEXP_NAMES):
        return LogSumExp()
    raise layer.refuse("is a Lambda layer, whose Python code dnalift never runs and recognises only as "
                       "chrombpnet's logsumexp of the counts",
                       "save the model without it (replace the Lambda with standard Keras layers, or make the "
                       "model end at the layer before it) and score that file")


def _relu(layer: KerasLayer) -> nn.Module:
    c = layer.config
    slope = float(c.get("negative_slope") or 0.0)
    if float(c.get("threshold") or 0.0) != 0.0:
        raise layer.refuse("has a threshold", "dnalift converts ReLU with threshold 0")
    if c.get("max_value") is not None:
        if slope:
            raise layer.refuse("has both max_value and negative_slope", "use one of them")
        top = float(c["max_value"])
        return Fn(f"relu clamped at {top}", lambda x: F.relu(x).clamp_max(top))
    if slope:
        return Fn(f"leaky_relu {slope}", F.leaky_relu, negative_slope=float(np.float32(slope)))
    return Fn("relu", F.relu)


def _leaky_relu(layer: KerasLayer) -> nn.Module:
    c = layer.config
    slope = float(c.get("negative_slope", c.get("alpha", 0.3)))
    # TensorFlow's LeakyRelu op holds its slope as a float32 attribute, in float64 models too
    return Fn(f"leaky_relu {slope}", F.leaky_relu, negative_slope=float(np.float32(slope)))


def _activation(layer: KerasLayer) -> nn.Module:
    return activation_module(layer.config.get("activation"), layer) or nn.Identity()


def _softmax(layer: KerasLayer) -> nn.Module:
    axis = layer.config.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise layer.refuse(f"is a softmax over axes {axis}", "dnalift converts a softmax over one axis")
        axis = axis[0]
    return Fn("softmax", F.softmax, dim=int(axis))


def _reshape(layer: KerasLayer) -> nn.Module:
    return Reshape(tuple(int(d) for d in layer.config["target_shape"]))


def _merge(kind: str):
    def convert(layer: KerasLayer) -> nn.Module:
        return Merge(kind, int(layer.config.get("axis", -1)))
    return convert


#: Keras class -> converter, for the layers without weights
WEIGHTLESS = {
    "MaxPooling1D": _pool("max", 1), "MaxPool1D": _pool("max", 1),
    "MaxPooling2D": _pool("max", 2), "MaxPool2D": _pool("max", 2),
    "AveragePooling1D": _pool("avg", 1), "AvgPool1D": _pool("avg", 1),
    "AveragePooling2D": _pool("avg", 2), "AvgPool2D": _pool("avg", 2),
    "GlobalMaxPooling1D": _global("max", 1), "GlobalMaxPool1D": _global("max", 1),
    "GlobalMaxPooling2D": _global("max", 2), "GlobalMaxPool2D": _global("max", 2),
    "GlobalAveragePooling1D": _global("avg", 1), "GlobalAvgPool1D": _global("avg", 1),
    "GlobalAveragePooling2D": _global("avg", 2), "GlobalAvgPool2D": _global("avg", 2),
    "Cropping1D": _crop(1), "Cropping2D": _crop(2),
    "ZeroPadding1D": _pad(1), "ZeroPadding2D": _pad(2),
    "Flatten": lambda layer: (require_channels_last(layer), Reshape((-1,)))[1],
    "Reshape": _reshape,
    "Permute": lambda layer: Permute(tuple(int(d) for d in layer.config["dims"])),
    "Add": _merge("add"), "Subtract": _merge("subtract"), "Multiply": _merge("multiply"),
    "Average": _merge("average"), "Maximum": _merge("maximum"), "Minimum": _merge("minimum"),
    "Concatenate": _merge("concatenate"),
    "Activation": _activation, "ReLU": _relu, "LeakyReLU": _leaky_relu, "Softmax": _softmax,
    "ELU": lambda layer: Fn("elu", F.elu, alpha=float(layer.config.get("alpha", 1.0))),
    "Lambda": _lambda,
}


