"""Pickles in model files, read without running code from them.

A pickle may name any importable callable, which unpickling calls. dnalift unpickles only with
``torch.load(weights_only=True)`` (which refuses every class it does not know before calling it), reads the
class names a pickle refers to from its opcodes (:func:`pickle_globals`, nothing is called), and rebuilds the
shapes of a TorchScript trace's stored inputs with an unpickler that knows four harmless names. Full
unpickling happens only in :func:`load_trusted`, which the loaders call with ``trust=True``.
"""

from __future__ import annotations

import io
import json
import pickle
import pickletools
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from dnalift.errors import ModelFormatError, UntrustedModelError
from dnalift.errors import first_line
from dnalift.models.files.sniff import is_pickle_header

__all__ = ["pickle_globals", "pickled_classes", "check_pt2_pickles", "traced_input_shapes", "load_trusted"]

#: prefixes of the names in a pickle that belong to torch, numpy or Python, not to the model's own code
_LIBRARY_PREFIXES = ("torch.", "collections.", "builtins.", "_codecs.", "numpy.core.multiarray.", "numpy.dtype")


def pickle_globals(data: bytes) -> list[str]:
    """Globals named by a pickle, or by the ``data.pkl`` of a torch.save zip, the model's own classes first,
    then ``torch.nn`` layers. Reads the opcodes only (``pickletools``): nothing is unpickled."""
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            member = next(n for n in zf.namelist() if n.endswith("data.pkl"))
            data = zf.read(member)
    found: list[str] = []
    strings: list[str] = []
    stream = io.BytesIO(data)
    for _ in range(6):  # legacy files hold several pickles in a row
        try:
            for op, arg, _pos in pickletools.genops(stream):
                if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                    strings.append(arg)
                elif op.name == "GLOBAL":
                    found.append(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
        except Exception:
            break
        if stream.tell() >= len(data):
            break
    user = [g for g in found if not g.startswith(_LIBRARY_PREFIXES)]
    torch_nn = [g for g in found if g.startswith("torch.nn.")]
    return list(dict.fromkeys(user + torch_nn))


def pickled_classes(p: Path) -> list[str]:
    """:func:`pickle_globals` of a file, or ``[]`` when its opcodes cannot be read."""
    try:
        return pickle_globals(p.read_bytes())
    except Exception:
        return []


def check_pt2_pickles(p: Path, where: str) -> None:
    """Refuse a .pt2 archive holding a pickle that ``weights_only`` loading rejects.

    ``torch.export.load`` falls back to ``weights_only=False`` for sample inputs and for weights saved with
    ``use_pickle``, which runs code from the file. Nothing is unpickled here beyond
    ``torch.load(weights_only=True)``.

    Raises
    ------
    UntrustedModelError
        Naming the member and the class it refers to.
    """
    with zipfile.ZipFile(p) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        raw = _raw_tensor_members(zf, names)
        for name in names:
            if name in raw or name.endswith(".json"):
                continue
            with zf.open(name) as fh:
                head = fh.read(4)
            if not (head == b"PK\x03\x04" or is_pickle_header(head)):
                continue
            data = zf.read(name)
            try:
                torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            except Exception as e:
                try:
                    classes = pickle_globals(data)
                except Exception:
                    classes = []
                what = f" ({classes[0]})" if classes else ""
                raise UntrustedModelError(
                    f"{where}: the .pt2 archive holds a pickled Python object{what} in {name.split('/', 1)[-1]}, "
                    f"which torch.export.load would unpickle in full, running code from the file; re-export the "
                    f"model with torch.export.save from plain tensors, or pass trust=True if you trust this file",
                    argument="trust", member=name, classes=classes) from e


def _raw_tensor_members(zf: zipfile.ZipFile, names: list[str]) -> set[str]:
    """Members that hold tensor bytes (not pickles), as the archive's weight/constant configs list them."""
    raw = set()
    for cfg in names:
        if cfg.endswith(("weights_config.json", "constants_config.json")):
            try:
                config = json.loads(zf.read(cfg)).get("config", {})
            except (ValueError, AttributeError):
                continue
            folder = cfg.rsplit("/", 1)[0]
            for meta in config.values():
                if isinstance(meta, Mapping) and not meta.get("use_pickle") and "path_name" in meta:
                    raw.add(f"{folder}/{meta['path_name']}")
    return raw


class _ShapeOnly:
    def __init__(self, shape):
        self.shape = tuple(shape)


class _ShapeUnpickler(pickle.Unpickler):
    """Reads ``traced_inputs.pkl`` of a traced TorchScript archive into shapes, and nothing else: any
    class other than the few tensor-rebuilding helpers is refused (nothing from the file is called)."""

    def find_class(self, module, name):
        if (module, name) == ("torch.jit._pickle", "restore_type_tag"):
            return lambda value, tag: value
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, size, *rest: _ShapeOnly(size)
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if module == "torch" and name.endswith("Storage"):
            return None
        raise pickle.UnpicklingError(f"{module}.{name} not allowed")

    def persistent_load(self, pid):
        return None


def traced_input_shapes(p: Path) -> list[tuple] | None:
    """Shapes of the inputs ``torch.jit.trace`` ran ``forward`` on, when the archive stored them."""
    try:
        with zipfile.ZipFile(p) as zf:
            member = next((n for n in zf.namelist() if n.endswith("/traced_inputs.pkl")), None)
            if member is None:
                return None
            data = zf.read(member)
        value = _ShapeUnpickler(io.BytesIO(data)).load()
    except Exception:  # absent or unexpected content: just unknown
        return None
    if isinstance(value, Mapping):
        shapes = [t.shape for t in value.get("forward", []) or [] if isinstance(t, _ShapeOnly)]
        return shapes or None
    return None


def load_trusted(p: Path, where: str):
    """Unpickle a file in full (``torch.load(weights_only=False)``, or ``pickle.load`` for a plain pickle).

    This runs code from the file: the loaders call it only with ``trust=True``.

    Raises
    ------
    ModelFormatError
        When the pickled classes cannot be imported here, or the file cannot be unpickled.
    """
    try:
        try:
            return torch.load(str(p), map_location="cpu", weights_only=False)
        except RuntimeError as e:
            if "magic number" not in str(e):
                raise
            with open(p, "rb") as fh:  # a plain pickle.dump of the model, not torch.save
                return pickle.load(fh)
    except (AttributeError, ModuleNotFoundError, ImportError) as e:
        raise ModelFormatError(f"{where}: the pickled model's code cannot be imported here ({first_line(e)}); "
                               f"make its package importable (install it, or set PYTHONPATH) or convert the model "
                               f"where it loads: torch.export.save (see dnalift's README)", argument="model") from e
    except Exception as e:
        raise ModelFormatError(f"{where}: cannot unpickle the file ({first_line(e)})", argument="model") from e
