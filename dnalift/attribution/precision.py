"""The engine's arithmetic for each :class:`~dnalift.options.Precision`: the dtype of its tensors, and the settings
in force while it runs.

``float32``, ``float64``
    Strict: on CUDA, TF32 is turned off for matrix products and cuDNN convolutions while the engine runs (PyTorch
    turns it on for convolutions by default), so float32 means float32 on every device.
``tf32``
    float32 tensors; on CUDA, matrix products and convolutions on tensor cores with operands rounded to TF32 (a
    10-bit mantissa) and float32 sums. CUDA only: a CPU has no TF32, and the option is refused there.
``bfloat16``
    float32 tensors; matrix products and convolutions under ``torch.autocast`` to bfloat16 (an 8-bit mantissa,
    float32 sums), their results cast back to float32 at once (:class:`~dnalift.attribution.runner.Runner`), so
    every other op, the nonlinearities' multipliers among them, computes in float32. Gradients through the
    linear ops are bfloat16. Runs on CUDA and (slowly, for checking) on the CPU.

The settings are process-wide flags of PyTorch, set for the duration of :func:`arithmetic` and restored after.
"""

from __future__ import annotations

import contextlib

import torch

from dnalift.errors import OptionError
from dnalift.options import Precision

__all__ = ["dtype_of", "lower_dtype", "arithmetic"]


def dtype_of(precision) -> torch.dtype:
    """The dtype of the engine's tensors: float64 for ``float64``, float32 for every other precision."""
    return torch.float64 if Precision.parse(precision, argument="precision") == Precision.FLOAT64 else torch.float32


def lower_dtype(precision) -> torch.dtype | None:
    """The dtype matrix products and convolutions autocast to (bfloat16), or None."""
    return torch.bfloat16 if Precision.parse(precision, argument="precision") == Precision.BFLOAT16 else None


@contextlib.contextmanager
def arithmetic(precision, device: torch.device):
    """The TF32 flags of ``precision`` on ``device`` while the block runs (restored after).

    Raises
    ------
    OptionError
        ``tf32`` on a device that is not CUDA.
    """
    precision = Precision.parse(precision, argument="precision")
    if precision == Precision.TF32 and device.type != "cuda":
        raise OptionError(f"precision='tf32' needs a CUDA device (TF32 is the tensor-core format of NVIDIA GPUs), "
                          f"not {device.type}; use precision='float32' or 'bfloat16' there", argument="precision",
                          value=str(precision))
    if device.type != "cuda":
        yield
        return
    tf32 = precision == Precision.TF32
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
