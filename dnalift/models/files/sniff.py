"""Which kind of model file a path holds, read from its content (zip members, magic bytes), never its name."""

from __future__ import annotations

import hashlib
import struct
import zipfile
from pathlib import Path

import h5py

__all__ = ["KINDS", "sniff", "sha256_file", "is_pickle_header"]

#: what :func:`sniff` tells apart (``"error"`` otherwise, with the message as detail)
KINDS = ("pt2", "torchscript", "torch_pickle", "safetensors", "keras")

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def is_pickle_header(head: bytes) -> bool:
    """Whether bytes start like a pickle of protocol 2 to 5 (a legacy ``torch.save`` file)."""
    return head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5


def sniff(p: Path) -> tuple[str, object]:
    """The kind of model file at ``p``.

    Returns
    -------
    kind : str
        One of :data:`KINDS`, or ``"error"``.
    detail
        For ``"pt2"`` and ``"torchscript"`` the zip member names; for ``"torch_pickle"`` ``"zip"`` or
        ``"legacy"``; for ``"keras"`` ``"h5"`` (an HDF5 file with a ``model_config`` attribute) or ``"zip"`` (a
        ``.keras`` archive: ``config.json`` with ``metadata.json`` or ``model.weights.h5``); for ``"error"`` the
        message saying what the file is instead.
    """
    size = p.stat().st_size
    if size == 0:
        return "error", "the file is empty (0 bytes), not a model"
    with open(p, "rb") as fh:
        head = fh.read(4096)
    if head[:4] == b"PK\x03\x04" or zipfile.is_zipfile(p):
        return _sniff_zip(p)
    if is_pickle_header(head):
        return "torch_pickle", "legacy"
    if head.startswith(_HDF5_MAGIC):
        return _sniff_hdf5(p)
    if len(head) >= 10 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= size - 8:
            return "safetensors", None
    text = _as_text(head)
    if text is not None:
        first = text.strip().splitlines()[0][:60] if text.strip() else ""
        return "error", f"a text file (beginning {first!r}), not a model file"
    if p.suffix.lower() == ".onnx":
        return "error", "an ONNX file (not supported); give the PyTorch model (.pt2, TorchScript or state_dict)"
    return "error", (f"unrecognised binary content (first bytes {head[:8].hex()}), not a .pt2, TorchScript or "
                     f"torch.save file")


def _sniff_zip(p: Path) -> tuple[str, object]:
    try:
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
            fmt_member = next((n for n in names if n.endswith("/archive_format") or n == "archive_format"), None)
            archive_format = zf.read(fmt_member).strip() if fmt_member else b""
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return "error", f"a damaged zip archive ({e}); the file is truncated or not a model"
    if "config.json" in names and ("metadata.json" in names or "model.weights.h5" in names):
        return "keras", "zip"
    if archive_format == b"pt2" or any(n.endswith("models/model.json") for n in names):
        return "pt2", names
    if any("/code/" in n or n.startswith("code/") for n in names) and any(n.endswith("constants.pkl") for n in names):
        return "torchscript", names
    if any(n.endswith("data.pkl") for n in names):
        return "torch_pickle", "zip"
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    return "error", (f"a zip archive that is not a PyTorch model file (members: {shown}); expected a .pt2 "
                     f"from torch.export.save, TorchScript from torch.jit.save, or torch.save output")


def _sniff_hdf5(p: Path) -> tuple[str, object]:
    """A Keras model (``model_config`` attribute), Keras weights alone, or another HDF5 file."""
    from dnalift.models.files.keras import h5_reason, weights_only_message

    try:
        with h5py.File(p, "r") as f:
            attrs, groups = set(f.attrs), set(f)
    except OSError as e:
        return "error", f"a damaged HDF5 file ({h5_reason(e)}); it is truncated or not a model"
    if "model_config" in attrs:
        return "keras", "h5"
    if "layer_names" in attrs or "model_weights" in groups:
        return "error", weights_only_message()
    return "error", ("an HDF5 file that is not a model (a dnalift result file?); dnalift reads PyTorch models "
                     "(.pt2, TorchScript, state_dict) and Keras models (.h5 saved with the architecture, .keras)")


def _as_text(head: bytes) -> str | None:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:  # the 4 KB cut may split a character
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return None
    printable = sum(ch.isprintable() or ch in "\n\r\t" for ch in text)
    return text if text and printable >= 0.95 * len(text) else None


def sha256_file(p: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
