"""Helpers every layer that reads an exported graph uses: an op's name, a node's source line, an output's key.

A leaf module: it imports only torch and the standard library.
"""

from __future__ import annotations

import operator
import os
import re

import torch

__all__ = ["op_name", "source_line", "key_name"]

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep


def op_name(target) -> str:
    """The ATen packet name of a graph node's target, without the in-place underscore.

    Parameters
    ----------
    target : OpOverload or callable
        ``node.target`` of a ``call_function`` node.

    Returns
    -------
    str
        For example ``"relu"`` for ``aten.relu_.default`` and ``"getitem"`` for ``operator.getitem``.
    """
    if target is operator.getitem:
        return "getitem"
    packet = getattr(target, "overloadpacket", None)
    if packet is None:
        return getattr(target, "__name__", str(target))
    name = packet.__name__
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]
    return name


def source_line(node: torch.fx.Node) -> str:
    """The line of the model's code that made ``node``, as ``file.py:LINE: code`` (``file.py:LINE, in forward``
    where only the line is known, as in a TorchScript trace), or ``graph node NAME`` and that the model records
    no source line for it."""
    trace = node.meta.get("stack_trace") or ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)\n[ \t]*(.*)', trace)
    outside_torch = [f for f in frames if _TORCH_DIR not in f[0]]  # the model's line, not torch's F.linear
    if outside_torch or frames:
        path, line, function, code = (outside_torch or frames)[-1]
        if function == "<archive>":  # a TorchScript file's stored code (models.script_source), not the source
            return (f"graph node {node.name} (the model file records no source line for it; its TorchScript "
                    f"code: {path}:{line}: {code.strip()})")
        where = f"{path.rsplit('/', 1)[-1]}:{line}"
        return f"{where}: {code.strip()}" if code.strip() else f"{where}, in {function}"
    return f"graph node {node.name} (the model file records no source line for it)"


def key_name(path) -> str:
    """A pytree key path as ``"0"``, ``"profile"``, ``"heads.0"`` (``""`` for the root)."""
    parts = []
    for key in path:
        for field in ("idx", "key", "name"):
            if hasattr(key, field):
                parts.append(str(getattr(key, field)))
                break
    return ".".join(parts)
