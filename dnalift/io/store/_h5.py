"""What the writer, reader, validation and merge share: opening HDF5 with one-line errors, attribute values."""

from __future__ import annotations

import errno as _errno
import json
import os
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dnalift.errors import StoreError
from dnalift.io.store import schema

#: HDF5 chunk cache per open dataset file
CACHE_BYTES = 64 * 2**20


def open_h5(path: Path, mode: str = "r", **kwargs) -> h5py.File:
    """h5py.File with one-line StoreErrors for the ways a file can be unusable."""
    if mode == "r" and not path.exists():
        raise StoreError(f"{path}: no such file; check the path (a run that did not finish leaves "
                         f"{schema.partial_path(path).name} instead)", argument="path", path=str(path))
    if mode == "r" and path.is_dir():
        raise StoreError(f"{path} is a directory, not a result file", argument="path", path=str(path))
    try:
        return h5py.File(path, mode, **kwargs)
    except OSError as exc:
        text = " ".join(str(exc).split())
        lower = text.lower()
        if "truncated" in lower:
            raise StoreError(f"{path} is truncated ({text.split('(', 1)[-1].rstrip(')')}); the run that wrote "
                             f"it was cut off or the copy is incomplete: copy it again or rerun", argument="path",
                             path=str(path)) from None
        if "signature" in lower or "not an hdf5" in lower or "file format" in lower:
            raise StoreError(f"{path} is not an HDF5 file; give a result file written by dnalift score",
                             argument="path", path=str(path)) from None
        raise StoreError(f"{path} cannot be opened as HDF5 ({text}); check the file", argument="path",
                         path=str(path)) from None


def check_dnalift(f: h5py.File, path: Path) -> int:
    """The file's format version; StoreError when it is not a dnalift file or is newer than this reader."""
    version = f.attrs.get("format_version")
    if version is None:
        raise StoreError(f"{path} is HDF5 but not a dnalift result file (no format_version attribute); "
                         f"give a file written by dnalift score", argument="path", path=str(path))
    version = int(read_attr(version))
    if version > schema.FORMAT_VERSION:
        raise StoreError(f"{path} has format_version {version}, newer than this dnalift reads "
                         f"({schema.FORMAT_VERSION}); upgrade dnalift", argument="path", path=str(path))
    return version


def normalize_attr(value: Any) -> Any:
    """A value as it is stored in an HDF5 attribute (None -> not stored)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):  # str enums (config choices) are stored as their value
        return str(value.value) if hasattr(value, "value") else value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return json.dumps(value, sort_keys=True, default=str)


def read_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_attrs(f: h5py.File) -> dict[str, Any]:
    return {key: read_attr(value) for key, value in f.attrs.items()}


def fmt_rows(start: int, stop: int) -> str:
    """``row 3`` or ``rows 3-7`` (0-based, inclusive)."""
    return f"row {start}" if stop - start == 1 else f"rows {start}-{stop - 1}"


def missing_chunks(f: h5py.File) -> tuple[int, int]:
    """``(chunks never completed, chunks)`` of an open result file."""
    if schema.CHUNKS_COMPLETE not in f:
        return 0, 0
    flags = f[schema.CHUNKS_COMPLETE][...]
    return int(np.count_nonzero(flags == 0)), int(flags.size)


_ERRNO = re.compile(r"errno\s*=\s*(\d+)")


def io_errno(exc: BaseException) -> int | None:
    """The errno of a failed write: ``OSError.errno``, or the one HDF5 puts in the text of h5py's errors
    (``... errno = 28, error message = 'No space left on device' ...``)."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code:
        return code
    m = _ERRNO.search(str(exc))
    return int(m.group(1)) if m else None


NO_SPACE = (_errno.ENOSPC, getattr(_errno, "EDQUOT", _errno.ENOSPC))


def mb(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f} MB"


def to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def group_rows(path, what: str, given, expected: bool, b: int, fields) -> dict[str, np.ndarray]:
    """The rows of an optional group of datasets (``regions``, ``variants``): ``fields`` are (key in ``given``,
    dataset name) pairs."""
    if not expected:
        if given is not None:
            raise StoreError(f"{path}: {what} given but the writer was made with {what}=False")
        return {}
    if given is None:
        raise StoreError(f"{path}: this file has {what}; write() needs {what}=")
    out = {}
    for key, name in fields:
        if key not in given:
            raise StoreError(f"{path}: {what} lacks {key!r}; give {', '.join(k for k, _ in fields)}")
        value = to_numpy(given[key])
        if value.shape != (b,):
            raise StoreError(f"{path}: {what}[{key!r}] must have shape ({b},), got {value.shape}")
        out[name] = value
    return out
