"""``.safetensors`` weights read without the safetensors package: a JSON header and raw little-endian bytes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from dnalift.errors import ModelFormatError
from dnalift.errors import first_line

__all__ = ["read_safetensors"]

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors(p: Path, where: str) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` file as ``{name: tensor}``.

    Raises
    ------
    ModelFormatError
        When the header or the byte ranges cannot be read.
    """
    try:
        data = p.read_bytes()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n].decode("utf-8"))
        body = memoryview(data)[8 + n:]
        state = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = _DTYPES[info["dtype"]]
            start, stop = info["data_offsets"]
            raw = bytearray(body[start:stop])
            t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            state[name] = t.reshape(info["shape"])
    except Exception as e:
        raise ModelFormatError(f"{where}: not a readable .safetensors file ({first_line(e)})",
                               argument="model") from e
    return state
