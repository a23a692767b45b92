"""Transposed convolutions (``conv_transpose1d``, ``conv_transpose2d``): a weighted op with a constant weight.

This module is the whole of what a weighted op needs: how to call it with another weight and no bias, and its
transpose for the backward pass (the input gradient of a transposed convolution is the convolution of the output
gradient with the same weight, stride, padding, dilation and groups). The registry gives it one line.
"""

from __future__ import annotations

import torch.nn.functional as F

from dnalift.attribution.kinds.linear import WeightedSpec

__all__ = ["TRANSPOSED_CONV"]


def _apply(step, args, t, w):
    """``conv_transpose(t, w)`` without the bias, with the op's own settings."""
    return step.fn(t, w, None, *args[3:])


def _transpose(step, args, w):
    given = list(args[3:])  # stride, padding, output_padding, groups, dilation
    stride, padding, _, groups, dilation = given + [1, 0, 0, 1, 1][len(given):]
    if isinstance(padding, str):
        return None
    conv = F.conv1d if w.dim() == 3 else F.conv2d
    return lambda g, shape: conv(g, w, None, stride, padding, dilation, groups)


TRANSPOSED_CONV = WeightedSpec(apply=_apply, weight_arg=1, transpose=_transpose)
