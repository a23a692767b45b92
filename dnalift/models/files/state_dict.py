"""A state_dict and ``arch="package.module:Class"`` -> the module with those weights."""

from __future__ import annotations

import importlib
import inspect
import json
import logging
from collections.abc import Mapping

import torch
import torch.nn as nn

from dnalift.errors import ModelFormatError
from dnalift.errors import first_line

__all__ = ["STATE_DICT_KEYS", "extract_state_dict", "summary_of", "build_module"]

log = logging.getLogger(__name__)

#: keys under which checkpoints commonly keep their state_dict
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "net", "weights", "params")

#: what to do with a model whose constructor takes other modules, which ``arch`` cannot build
MODULE_ARGUMENTS_HINT = ("a model built from other modules (such as bpnet-lite's ChromBPNet(bias, accessibility)) "
                         "cannot be rebuilt from arch and arch_kwargs: save the whole module (torch.save(model), "
                         "loaded with trust=True) or export it as a .pt2")


def extract_state_dict(obj) -> dict | None:
    """A flat ``{name: tensor}`` from a state_dict or a checkpoint dict holding one; None if there is none."""
    if not isinstance(obj, Mapping) or not obj:
        return None
    if all(isinstance(k, str) for k in obj) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    for key in STATE_DICT_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            log.info("using the state_dict under the checkpoint key %r", key)
            return dict(inner)
    return None


def summary_of(obj) -> str:
    """``a dict with keys ...`` or ``a package.Class``, for messages."""
    if isinstance(obj, Mapping):
        keys = ", ".join(repr(k) for k in list(obj)[:5])
        return f"a dict with keys {keys}{', ...' if len(obj) > 5 else ''}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__}"


def build_module(state: dict, arch, arch_kwargs, where: str) -> nn.Module:
    """``arch(**arch_kwargs)`` with the weights of ``state`` (a strict ``load_state_dict``), in eval mode.

    Raises
    ------
    ModelFormatError
        ``arch`` is missing, not importable, not a module class, needs arguments it was not given, or the
        state_dict does not fit it (the message lists missing and unexpected keys, or the size mismatches).
    """
    if arch is None:
        example = next(iter(state), "")
        raise ModelFormatError(
            f"{where}: holds a state_dict (weights only: {len(state)} tensors, e.g. {example!r}); give the "
            f"architecture with arch='package.module:Class' and its keyword arguments (arch_kwargs)",
            argument="arch", n_tensors=len(state))
    cls = _import_arch(arch, where)
    kwargs = _parse_kwargs(arch_kwargs, arch)
    missing = _required_arguments(cls, kwargs)
    if missing:
        raise ModelFormatError(f"arch {arch!r}: its constructor needs {', '.join(missing)}, which arch_kwargs does "
                               f"not give; {MODULE_ARGUMENTS_HINT}", argument="arch_kwargs", missing=missing)
    try:
        module = cls(**kwargs)
    except Exception as e:
        raise ModelFormatError(f"arch {arch!r}: constructing it with {kwargs} failed ({first_line(e)}); pass "
                               f"its keyword arguments with arch_kwargs", argument="arch_kwargs") from e
    if not isinstance(module, nn.Module):
        raise ModelFormatError(f"arch {arch!r}: builds a {type(module).__name__}, not a torch.nn.Module",
                               argument="arch")
    state = _match_keys(state, module, where, arch)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        mismatches = [line.strip() for line in str(e).splitlines() if "size mismatch" in line]
        detail = "; ".join(mismatches[:3]) if mismatches else first_line(e)
        raise ModelFormatError(f"{where}: the state_dict does not fit {arch} ({detail}); check arch_kwargs",
                               argument="arch_kwargs") from e
    return module.eval()


def _required_arguments(cls, kwargs: dict) -> list[str]:
    """Constructor parameters without a default that ``kwargs`` does not give."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in parameters if p.default is p.empty and p.name not in kwargs
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _import_arch(arch, where: str):
    if not isinstance(arch, str) or ":" not in arch:
        raise ModelFormatError(f"{where}: arch {arch!r} must look like 'package.module:Class'", argument="arch")
    modname, _, qual = arch.partition(":")
    try:
        obj = importlib.import_module(modname)
    except Exception as e:
        raise ModelFormatError(f"arch {arch!r}: cannot import module {modname!r} ({first_line(e)}); make it "
                               f"importable (install the package or set PYTHONPATH)", argument="arch") from e
    for part in qual.split("."):
        if not hasattr(obj, part):
            raise ModelFormatError(f"arch {arch!r}: module {modname!r} has no {qual!r}", argument="arch")
        obj = getattr(obj, part)
    return obj


def _parse_kwargs(arch_kwargs, arch) -> dict:
    if arch_kwargs is None:
        return {}
    if isinstance(arch_kwargs, str):
        try:
            arch_kwargs = json.loads(arch_kwargs)
        except json.JSONDecodeError as e:
            raise ModelFormatError(f"arch {arch!r}: arch_kwargs is not a JSON object ({e})",
                                   argument="arch_kwargs") from e
    if not isinstance(arch_kwargs, Mapping):
        raise ModelFormatError(f"arch {arch!r}: arch_kwargs must be a mapping of keyword arguments",
                               argument="arch_kwargs")
    return dict(arch_kwargs)


def _match_keys(state: dict, module: nn.Module, where: str, arch: str) -> dict:
    """Check the names of a state_dict against the module's; strip a common prefix ('module.', 'model.')
    when that makes them match. Raises ModelFormatError listing missing and unexpected keys."""
    want = set(module.state_dict())
    have = set(state)
    if want == have:
        return state
    for prefix in sorted({k.split(".", 1)[0] + "." for k in have if "." in k}):
        if all(k.startswith(prefix) for k in have):
            stripped = {k[len(prefix):]: v for k, v in state.items()}
            if set(stripped) == want:
                log.info("%s: stripped the prefix %r from the state_dict's names", where, prefix)
                return stripped
    missing = sorted(want - have)
    unexpected = sorted(have - want)

    def show(keys):
        return ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "") if keys else "none"

    raise ModelFormatError(f"{where}: the state_dict does not fit {arch}: missing keys: {show(missing)}; "
                           f"unexpected keys: {show(unexpected)}; check arch and arch_kwargs", argument="arch",
                           missing=missing, unexpected=unexpected)
