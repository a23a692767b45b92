"""The dnalift result file: an HDF5 file of DeepLIFT scores, written as the run goes.

This docstring is the format reference. A result file holds the scores of ``n`` sequences of one length
``L`` for ONE model output (target); ``dnalift score`` writes one file per target when several are asked.
Plain ``h5py`` reads it, and so does TF-MoDISco lite (``modisco motifs -i out.h5``) without conversion.

Datasets (all chunked along ``n``; compression gzip level 4 with shuffle (default), lzf, or none; every
numeric dataset carries a Fletcher-32 checksum, so a damaged chunk is an error when read, not silent
garbage; string datasets take no filters)::

    raw/seq                (n, 4, L) int8     one-hot input; channels A, C, G, T; N and other IUPAC
                                              letters are an all-zero column
    shap/seq               (n, 4, L) float32  hypothetical contributions: the contribution each of the
                                              four bases would have at each position (DeepSHAP style)
    projected_shap/seq     (n, 4, L) float32  contributions of the observed base: shap/seq * raw/seq
                                              (zero for the three absent bases); summed over the base axis
                                              this is the per-position contribution score
    names                  (n,)  str          sequence names (variable-length UTF-8), unique
    predictions            (n,)  float32      the target output of the model on the input sequence
    reference_predictions  (n,)  float32      the target output averaged over the sequence's references
    deltas                 (n,)  float32      summation-to-delta error: sum(contributions) -
                                              (prediction - reference_prediction); near 0 when exact
    chunks_complete        (ceil(n / chunk_size),) uint8
                                              1 for each block of chunk_size rows written in full;
                                              all 1 in a finished file (bookkeeping for --resume)
    regions/chrom          (n,)  str          only when the input was BED regions on a genome:
    regions/start          (n,)  int64        the window scored, 0-based half-open genome coordinates
    regions/end            (n,)  int64        (end - start == L),
    regions/strand         (n,)  str          "+", "-" (the sequence is the reverse complement of the
                                              genome window, position 0 is genome position end - 1) or "."

The axis order is (sequence, base, position), the one TF-MoDISco lite reads from ``shap/seq`` and
``raw/seq`` and that chrombpnet writes. Row ``i`` of every dataset is the same sequence.

Root attributes (scalars or strings; lists and dicts are stored as JSON strings)::

    format_version   1 (this layout); readers refuse newer versions
    axis_order       "n,base,position"
    alphabet         "ACGT"
    chunk_size       rows per chunk, compression   "gzip" | "lzf" | "none"
    created          ISO 8601 time (UTC) the file was started
    dnalift_version, torch_version, command_line   (filled in when the caller gives none)
    rule, max_rule, reference, n_refs, seed, target (index or name), model_sha256, model_path, ...
                     the run's parameters, as given by the caller (``attrs``)
    shard, row_start, row_stop, n_total
                     only in a shard written with ``--shard i-of-n`` (1-based ``i``): this file holds
                     rows [row_start, row_stop) of a run over n_total sequences (see
                     :func:`shard_attrs`); :func:`merge_results` joins the shards into one file

How a file is written (:class:`ResultWriter`): rows go to ``.<name>.partial.h5`` beside the final path,
a whole chunk at a time (rows of an unfinished chunk wait in memory, at most a few chunks); after each
chunk its ``chunks_complete`` flag is set and the file is flushed. When the run ends without error the
partial file is renamed to the final name in one atomic step, so the final name never holds an
unfinished file. When the run fails or is killed, the partial file stays; running again with
``resume=True`` (``--resume``) with the same parameters keeps the complete chunks and computes only the
others (:meth:`ResultWriter.pending_ranges`). A partial file that cannot be opened any more (killed
mid-write) is discarded with a warning and the run starts over.

Reading: :func:`open_results` returns a lazy :class:`ResultReader`; :func:`validate_results` lists the
problems of a file.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import h5py
import numpy as np

from dnalift.errors import OutputExistsError, StoreError

__all__ = [
    "FORMAT_VERSION",
    "ResultWriter",
    "ResultReader",
    "open_results",
    "validate_results",
    "merge_results",
    "shard_attrs",
    "parse_shard",
    "partial_path",
    "default_chunk_size",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
AXIS_ORDER = "n,base,position"
ALPHABET = "ACGT"

#: attributes that differ between shards of one run (and ``n``, which is a dataset shape)
SHARD_ATTRS = ("shard", "row_start", "row_stop", "n_total")
#: attributes that say when and how a file was made rather than what it holds
_VOLATILE_ATTRS = ("created", "command_line", "merged_from")
#: attributes about storage, not results
_STORAGE_ATTRS = ("chunk_size", "compression")

_SEQ_DATASETS = ("raw/seq", "shap/seq", "projected_shap/seq")
_ROW_DATASETS = ("names", "predictions", "reference_predictions", "deltas")
_REGION_FIELDS = ("chrom", "start", "end", "strand")
_STR = h5py.string_dtype("utf-8")
_CACHE_BYTES = 64 * 2**20
_COMPRESSIONS = ("gzip", "lzf", "none")


# ----------------------------------------------------------------------------------------------- helpers


def partial_path(path: str | os.PathLike) -> Path:
    """The temporary name a result file has while it is written: ``dir/.<name>.partial.h5``."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial.h5")


def default_chunk_size(length: int) -> int:
    """Rows per chunk such that a chunk of ``shap/seq`` is about 1 MiB (1 to 1024 rows)."""
    return int(min(1024, max(1, 2**20 // (16 * max(int(length), 1)))))


def parse_shard(spec: str) -> tuple[int, int]:
    """``"i-of-n"`` -> ``(i, n)`` with ``1 <= i <= n``.

    Raises
    ------
    StoreError
        (a ValueError) with a one-line message when ``spec`` is not of that form.
    """
    m = re.fullmatch(r"\s*(\d+)\s*-of-\s*(\d+)\s*", str(spec), flags=re.IGNORECASE)
    if not m:
        raise StoreError(f"{spec!r} is not of the form i-of-n (e.g. 2-of-8: the second of 8 shards)")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= i <= n:
        raise StoreError(f"{spec!r}: i must be between 1 and n (1-of-{max(n, 1)} ... {max(n, 1)}-of-{max(n, 1)})")
    return i, n


def shard_attrs(spec: str, n_total: int) -> dict[str, Any]:
    """Attributes of shard ``spec`` ("i-of-k", 1-based ``i``) of a run over ``n_total`` sequences.

    Rows are split into ``k`` contiguous blocks whose sizes differ by at most one; shard ``i`` gets
    rows ``[(i-1)*n_total//k, i*n_total//k)``.

    Returns
    -------
    dict
        ``{"shard": "i-of-k", "row_start": int, "row_stop": int, "n_total": n_total}``
    """
    i, k = parse_shard(spec)
    n_total = int(n_total)
    return {"shard": f"{i}-of-{k}", "row_start": (i - 1) * n_total // k, "row_stop": i * n_total // k,
            "n_total": n_total}


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _normalize_attr(value: Any) -> Any:
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
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return json.dumps(value, sort_keys=True, default=str)


def _read_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_attrs(f: h5py.File) -> dict[str, Any]:
    return {key: _read_attr(value) for key, value in f.attrs.items()}


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _dnalift_version() -> str:
    import dnalift

    return dnalift.__version__


def _open_h5(path: Path, mode: str = "r", **kwargs) -> h5py.File:
    """h5py.File with one-line StoreErrors for the ways a file can be unusable."""
    if mode == "r" and not path.exists():
        raise StoreError(f"{path}: no such file; check the path (a run that did not finish leaves "
                         f"{partial_path(path).name} instead)")
    if mode == "r" and path.is_dir():
        raise StoreError(f"{path} is a directory, not a result file")
    try:
        return h5py.File(path, mode, **kwargs)
    except OSError as exc:
        text = str(exc)
        if "truncated" in text.lower():
            raise StoreError(f"{path} is truncated ({text.split('(', 1)[-1].rstrip(')')}); the run that wrote "
                             f"it was cut off or the copy is incomplete: copy it again or rerun") from None
        if "signature" in text.lower() or "not an hdf5" in text.lower() or "file format" in text.lower():
            raise StoreError(f"{path} is not an HDF5 file; give a result file written by dnalift score") from None
        raise StoreError(f"{path} cannot be opened as HDF5 ({text}); check the file") from None


def _check_dnalift(f: h5py.File, path: Path) -> int:
    version = f.attrs.get("format_version")
    if version is None:
        raise StoreError(f"{path} is HDF5 but not a dnalift result file (no format_version attribute); "
                         f"give a file written by dnalift score")
    version = int(_read_attr(version))
    if version > FORMAT_VERSION:
        raise StoreError(f"{path} has format_version {version}, newer than this dnalift reads "
                         f"({FORMAT_VERSION}); upgrade dnalift")
    return version


def _fmt_rows(start: int, stop: int) -> str:
    return f"row {start}" if stop - start == 1 else f"rows {start}-{stop - 1}"


# ----------------------------------------------------------------------------------------------- writer


@dataclass
class _Pending:
    """Rows of one chunk received so far and not yet written to the file."""

    start: int
    raw: np.ndarray
    hyp: np.ndarray
    names: np.ndarray
    predictions: np.ndarray
    reference_predictions: np.ndarray
    deltas: np.ndarray
    regions: dict[str, np.ndarray] | None
    filled: np.ndarray  # bool per row


class ResultWriter:
    """Streams results to an HDF5 file that gets its final name only when every row is written.

    Parameters
    ----------
    path : str or path-like
        The final file name (``out.h5``). While writing, rows go to :func:`partial_path` (``.out.h5.partial.h5``).
    n : int
        Number of sequences (rows).
    length : int
        Sequence length ``L``.
    attrs : mapping
        The run's parameters (rule, max_rule, reference, n_refs, seed, target, model_sha256, model_path,
        command_line, ...), stored as root attributes. ``None`` values are left out; lists and dicts are
        stored as JSON strings.
    chunk_size : int, optional
        Rows per chunk (default :func:`default_chunk_size`, about 1 MiB of scores). On resume the partial
        file's chunk size is used.
    compression : {"gzip", "lzf", "none"}
    regions : bool
        Whether rows carry genome regions (input was BED); then every :meth:`write` needs ``regions``.
    force : bool
        Overwrite an existing final file (it is replaced only when the new one is complete).
    resume : bool
        Continue from the partial file of an interrupted run with the same parameters, keeping its
        complete chunks; without a partial file the run starts fresh.

    Use it as a context manager; on leaving the block without an exception the file is renamed to its final
    name; on an exception the partial file stays for ``resume=True`` and the exception goes on.

    Examples
    --------
    >>> with ResultWriter("out.h5", n=len(src), length=200, attrs={"rule": "rescale"}) as w:
    ...     for start, stop in w.pending_ranges():
    ...         for b in range(start, stop, 256):
    ...             e = min(b + 256, stop)
    ...             res = attribute(model, src.one_hot(b, e), refs, target=0)
    ...             w.write(b, raw=..., hypothetical=res.hypothetical, names=src.names[b:e],
    ...                     predictions=res.predictions, reference_predictions=res.reference_predictions,
    ...                     deltas=res.deltas)
    """

    def __init__(self, path: str | os.PathLike, *, n: int, length: int, attrs: Mapping[str, Any] | None = None,
                 chunk_size: int | None = None, compression: str | None = "gzip", regions: bool = False,
                 force: bool = False, resume: bool = False):
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.n = int(n)
        self.length = int(length)
        self.has_regions = bool(regions)
        self.force = bool(force)
        if self.n < 0:
            raise StoreError(f"{self.path}: n must be >= 0, got {n}")
        if self.length < 1:
            raise StoreError(f"{self.path}: sequence length must be >= 1, got {length}")
        compression = "none" if compression in (None, False) else str(compression).lower()
        if compression not in _COMPRESSIONS:
            raise StoreError(f"unknown compression {compression!r}; choose gzip, lzf or none")
        if chunk_size is None:
            chunk_size = default_chunk_size(self.length)
        if int(chunk_size) < 1:
            raise StoreError(f"chunk_size must be >= 1, got {chunk_size}")
        if self.path.exists() and not self.force:
            raise OutputExistsError(f"{self.path} exists; pass --force to overwrite it or choose another output")
        self.path.parent.mkdir(parents=True, exist_ok=True)

        self._attrs = {}
        for key, value in dict(attrs or {}).items():
            value = _normalize_attr(value)
            if value is not None:
                self._attrs[str(key)] = value
        self._attrs.setdefault("dnalift_version", _dnalift_version())
        torch_version = _package_version("torch")
        if torch_version is not None:
            self._attrs.setdefault("torch_version", torch_version)
        self._attrs.setdefault("command_line", shlex.join(sys.argv))
        self._attrs.update(format_version=FORMAT_VERSION, axis_order=AXIS_ORDER, alphabet=ALPHABET)

        self._pending: dict[int, _Pending] = {}
        self._file: h5py.File | None = None
        self._closed = False
        if resume and self.partial.exists():
            self._file = self._open_partial()
        if self._file is None:
            if self.partial.exists() and not resume:
                logger.warning("%s: discarding the partial file of an earlier run (use --resume to continue it)",
                               self.partial)
            self.chunk_size = int(chunk_size)
            self.compression = compression
            self._file = self._create()
        self._n_chunks = math.ceil(self.n / self.chunk_size) if self.n else 0
        self._done_chunks = int(np.count_nonzero(self._file["chunks_complete"][...]))

    # -- set-up

    def _comparable(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        skip = set(_VOLATILE_ATTRS) | set(_STORAGE_ATTRS)
        return {k: v for k, v in attrs.items() if k not in skip}

    def _create(self) -> h5py.File:
        f = h5py.File(self.partial, "w", rdcc_nbytes=_CACHE_BYTES)
        try:
            attrs = dict(self._attrs)
            attrs.update(chunk_size=self.chunk_size, compression=self.compression,
                         created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
            for key, value in attrs.items():
                f.attrs[key] = value
            rows = max(1, min(self.chunk_size, self.n))
            rows_1d = max(1, min(self.n, max(self.chunk_size, 16384)))
            opts: dict[str, Any] = {"fletcher32": True}
            if self.compression == "gzip":
                opts.update(compression="gzip", compression_opts=4, shuffle=True)
            elif self.compression == "lzf":
                opts.update(compression="lzf", shuffle=True)
            shape3 = (self.n, 4, self.length)

            def make(name, shape, dtype, chunks):
                if self.n == 0:  # HDF5 chunks may not be larger than an empty dataset
                    return f.create_dataset(name, shape=shape, dtype=dtype)
                # variable-length strings take no filters (HDF5 keeps them in a heap)
                return f.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks,
                                        **(opts if dtype is not _STR else {}))

            for name, dtype in (("raw/seq", np.int8), ("shap/seq", np.float32), ("projected_shap/seq", np.float32)):
                make(name, shape3, dtype, (rows, 4, self.length))
            make("names", (self.n,), _STR, (rows_1d,))
            for name in ("predictions", "reference_predictions", "deltas"):
                make(name, (self.n,), np.float32, (rows_1d,))
            if self.has_regions:
                for name, dtype in (("chrom", _STR), ("start", np.int64), ("end", np.int64), ("strand", _STR)):
                    make(f"regions/{name}", (self.n,), dtype, (rows_1d,))
            n_chunks = math.ceil(self.n / self.chunk_size) if self.n else 0
            f.create_dataset("chunks_complete", data=np.zeros(n_chunks, dtype=np.uint8))
            f.flush()
        except BaseException:
            f.close()
            raise
        return f

    def _open_partial(self) -> h5py.File | None:
        """Open the partial file of an earlier run for resuming, after checking it matches this run."""
        try:
            f = h5py.File(self.partial, "r+", rdcc_nbytes=_CACHE_BYTES)
        except OSError as exc:
            logger.warning("%s cannot be opened (%s), probably because the run was killed while writing; "
                           "starting over", self.partial, exc)
            return None
        try:
            if "format_version" not in f.attrs or "chunks_complete" not in f or "raw/seq" not in f:
                raise StoreError(f"{self.partial} is not a dnalift partial result file; delete it or choose "
                                 f"another output")
            old = _read_attrs(f)
            shape = f["raw/seq"].shape
            if shape != (self.n, 4, self.length):
                raise StoreError(f"cannot resume {self.partial}: it holds {shape[0]} sequences of length {shape[2]}, "
                                 f"this run has {self.n} of length {self.length}; run without --resume to start over")
            if ("regions" in f) != self.has_regions:
                had = "has" if "regions" in f else "has no"
                raise StoreError(f"cannot resume {self.partial}: it {had} genome regions and this run does not "
                                 f"match; run without --resume to start over")
            a, b = self._comparable(old), self._comparable(self._attrs)
            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key):
                    raise StoreError(f"cannot resume {self.partial}: parameter {key!r} was {a.get(key)!r} in the "
                                     f"interrupted run and is {b.get(key)!r} now; rerun with the same options or "
                                     f"without --resume to start over")
            self.chunk_size = int(old["chunk_size"])
            self.compression = str(old.get("compression", "gzip"))
        except BaseException:
            f.close()
            raise
        done = int(np.count_nonzero(f["chunks_complete"][...]))
        logger.info("resuming %s: %d of %d chunks already complete", self.partial, done, f["chunks_complete"].shape[0])
        return f

    # -- progress

    def _chunk_range(self, c: int) -> tuple[int, int]:
        return c * self.chunk_size, min((c + 1) * self.chunk_size, self.n)

    def _flags(self) -> np.ndarray:
        if self._file is not None:
            return self._file["chunks_complete"][...]
        with h5py.File(self.partial if self.partial.exists() else self.path, "r") as f:
            return f["chunks_complete"][...]

    def completed_rows(self) -> int:
        """Number of rows already in the file in complete chunks (0 for a fresh file)."""
        return int(sum(self._chunk_range(c)[1] - self._chunk_range(c)[0] for c in np.flatnonzero(self._flags())))

    def pending_chunks(self) -> list[tuple[int, int]]:
        """``(start, stop)`` row ranges of the chunks not yet complete in the file, in order."""
        flags = self._flags()
        return [self._chunk_range(int(c)) for c in np.flatnonzero(flags == 0)]

    def pending_ranges(self) -> list[tuple[int, int]]:
        """:meth:`pending_chunks` with adjacent chunks joined: the row ranges still to compute."""
        out: list[list[int]] = []
        for start, stop in self.pending_chunks():
            if out and out[-1][1] == start:
                out[-1][1] = stop
            else:
                out.append([start, stop])
        return [(a, b) for a, b in out]

    @property
    def complete(self) -> bool:
        return self._done_chunks == self._n_chunks

    # -- writing

    def write(self, start: int, *, raw, hypothetical, names: Sequence[str], predictions, reference_predictions,
              deltas, regions: Mapping[str, Any] | None = None) -> None:
        """Store rows ``[start, start + b)``.

        Parameters
        ----------
        start : int
            First row.
        raw : array (b, 4, L)
            One-hot input (int or float 0/1; stored as int8).
        hypothetical : array (b, 4, L)
            Hypothetical contributions; ``projected_shap/seq`` is computed here as ``hypothetical * raw``.
        names : sequence of b str
        predictions, reference_predictions, deltas : array (b,)
        regions : mapping, optional
            ``chrom``, ``start``, ``end``, ``strand`` arrays of length b (other keys are ignored);
            required when the writer was made with ``regions=True``.

        Numpy arrays and CPU or GPU torch tensors are accepted. Rows of a chunk wait in memory until
        the chunk is whole, then the chunk is written and flushed.
        """
        if self._closed:
            raise StoreError(f"{self.path}: write after the writer was closed")
        raw = _to_numpy(raw)
        hyp = _to_numpy(hypothetical)
        if raw.ndim != 3 or raw.shape[1:] != (4, self.length):
            raise StoreError(f"{self.path}: raw must have shape (b, 4, {self.length}), got {raw.shape}")
        b = raw.shape[0]
        start = int(start)
        if start < 0 or start + b > self.n:
            raise StoreError(f"{self.path}: rows {start}-{start + b - 1} are outside 0-{self.n - 1}")
        if hyp.shape != raw.shape:
            raise StoreError(f"{self.path}: hypothetical has shape {hyp.shape}, raw has {raw.shape}; they must match")
        raw8 = raw.astype(np.int8)
        if (raw.dtype != np.int8 and not np.array_equal(raw8, raw)) or (b and (raw8.min() < 0 or raw8.max() > 1
                                                                             or raw8.sum(axis=1).max() > 1)):
            raise StoreError(f"{self.path}: {_fmt_rows(start, start + b)} of raw are not one-hot (values must be "
                             f"0/1 with at most one base per position)")
        names = np.asarray([s.decode() if isinstance(s, bytes) else str(s) for s in names], dtype=object)
        rows = {"predictions": _to_numpy(predictions), "reference_predictions": _to_numpy(reference_predictions),
                "deltas": _to_numpy(deltas)}
        if len(names) != b:
            raise StoreError(f"{self.path}: {len(names)} names for {b} rows")
        for key, value in rows.items():
            if value.shape != (b,):
                raise StoreError(f"{self.path}: {key} must have shape ({b},), got {value.shape}; "
                                 f"one target per result file")
        reg = None
        if self.has_regions:
            if regions is None:
                raise StoreError(f"{self.path}: this file has genome regions; write() needs regions=")
            reg = {}
            for key in _REGION_FIELDS:
                if key not in regions:
                    raise StoreError(f"{self.path}: regions lacks {key!r}; give chrom, start, end and strand")
                value = _to_numpy(regions[key])
                if value.shape != (b,):
                    raise StoreError(f"{self.path}: regions[{key!r}] must have shape ({b},), got {value.shape}")
                reg[key] = value
        elif regions is not None:
            raise StoreError(f"{self.path}: regions given but the writer was made with regions=False")

        pos = 0
        while pos < b:
            row = start + pos
            c = row // self.chunk_size
            c_start, c_stop = self._chunk_range(c)
            take = min(b - pos, c_stop - row)
            p = self._pending.get(c)
            if p is None:
                p = self._pending[c] = self._new_pending(c_start, c_stop)
            a, e = row - c_start, row - c_start + take
            sl = slice(pos, pos + take)
            p.raw[a:e] = raw8[sl]
            p.hyp[a:e] = hyp[sl]
            p.names[a:e] = names[sl]
            p.predictions[a:e] = rows["predictions"][sl]
            p.reference_predictions[a:e] = rows["reference_predictions"][sl]
            p.deltas[a:e] = rows["deltas"][sl]
            if reg is not None:
                for key in _REGION_FIELDS:
                    p.regions[key][a:e] = reg[key][sl]
            p.filled[a:e] = True
            if p.filled.all():
                self._flush_chunk(c, p)
                del self._pending[c]
            pos += take

    def _new_pending(self, c_start: int, c_stop: int) -> _Pending:
        m = c_stop - c_start
        reg = None
        if self.has_regions:
            reg = {"chrom": np.empty(m, dtype=object), "start": np.zeros(m, np.int64), "end": np.zeros(m, np.int64),
                   "strand": np.empty(m, dtype=object)}
        return _Pending(start=c_start, raw=np.zeros((m, 4, self.length), np.int8),
                        hyp=np.zeros((m, 4, self.length), np.float32), names=np.empty(m, dtype=object),
                        predictions=np.zeros(m, np.float32), reference_predictions=np.zeros(m, np.float32),
                        deltas=np.zeros(m, np.float32), regions=reg, filled=np.zeros(m, bool))

    def _flush_chunk(self, c: int, p: _Pending) -> None:
        f = self._file
        sl = slice(p.start, p.start + len(p.filled))
        f["raw/seq"][sl] = p.raw
        f["shap/seq"][sl] = p.hyp
        f["projected_shap/seq"][sl] = p.hyp * p.raw
        f["names"][sl] = p.names
        f["predictions"][sl] = p.predictions
        f["reference_predictions"][sl] = p.reference_predictions
        f["deltas"][sl] = p.deltas
        if p.regions is not None:
            for key in _REGION_FIELDS:
                f["regions"][key][sl] = p.regions[key]
        f.flush()  # the rows are on disk before the flag says so
        if not f["chunks_complete"][c]:
            f["chunks_complete"][c] = 1
            self._done_chunks += 1
        f.flush()

    # -- finishing

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(success=exc_type is None)

    def close(self, *, success: bool = True) -> Path | None:
        """Finish: with ``success`` and every row written, rename to the final name and return it;
        otherwise keep the partial file (for ``resume=True``) and return None."""
        if self._closed:
            return None
        self._closed = True
        missing = [] if not success else self._missing_rows()
        f, self._file = self._file, None
        f.close()
        if not success:
            logger.warning("the run stopped; %d of %d rows are kept in %s: rerun with --resume to finish it",
                           self.completed_rows(), self.n, self.partial)
            return None
        if missing:
            raise StoreError(f"{self.path}: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} were never "
                             f"written; the partial file {self.partial.name} is kept (rerun with --resume)")
        if self.path.exists() and not self.force:
            raise OutputExistsError(f"{self.path} appeared while the run went on; pass --force to overwrite it "
                                    f"(the results are in {self.partial.name})")
        with open(self.partial, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self.partial, self.path)
        logger.info("wrote %s (%d sequences)", self.path, self.n)
        return self.path

    def _missing_rows(self) -> list[str]:
        flags = self._file["chunks_complete"][...]
        out = []
        for c in np.flatnonzero(flags == 0):
            a, e = self._chunk_range(int(c))
            p = self._pending.get(int(c))
            if p is None:
                out.append(_fmt_rows(a, e))
            else:
                idx = np.flatnonzero(~p.filled)
                out.append(_fmt_rows(a + int(idx[0]), a + int(idx[-1]) + 1) if len(idx) else _fmt_rows(a, e))
        return out


# ----------------------------------------------------------------------------------------------- reader


class ResultReader:
    """Lazy read access to a result file (open it with :func:`open_results`).

    Data methods take an index, a slice or a list of indices (default: all rows) and read only those
    rows: ``raw(i)`` -> (4, L) int8, ``raw(slice(0, 10))`` -> (10, 4, L). Use it as a context manager or
    call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._f = _open_h5(self.path, "r", rdcc_nbytes=_CACHE_BYTES)
        try:
            self.format_version = _check_dnalift(self._f, self.path)
            for name in _SEQ_DATASETS[:2] + ("names",):
                if name not in self._f:
                    raise StoreError(f"{self.path} has no {name} dataset; the file is damaged or not a "
                                     f"dnalift result: run `dnalift validate` on it")
            shape = self._f["raw/seq"].shape
            if len(shape) != 3 or shape[1] != 4:
                raise StoreError(f"{self.path}: raw/seq has shape {shape}, expected (n, 4, length)")
        except BaseException:
            self._f.close()
            raise
        self.n, self.length = int(shape[0]), int(shape[2])
        self._names: list[str] | None = None
        self._index: dict[str, int] | None = None

    # -- context

    def __enter__(self) -> "ResultReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"ResultReader({str(self.path)!r}, n={self.n}, length={self.length})"

    # -- metadata

    @property
    def file(self) -> h5py.File:
        """The open h5py.File (read-only)."""
        return self._f

    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes as Python values."""
        return _read_attrs(self._f)

    @property
    def names(self) -> list[str]:
        """All sequence names (read once, then cached)."""
        if self._names is None:
            self._names = list(self._f["names"].asstr()[...])
        return self._names

    def index_of(self, name: str) -> int:
        """Row of the sequence called ``name``; StoreError naming close matches when there is none."""
        if self._index is None:
            self._index = {s: i for i, s in enumerate(self.names)}
        try:
            return self._index[name]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(str(name), self.names, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"names look like {', '.join(self.names[:3])}"
            raise StoreError(f"{self.path} has no sequence named {name!r}; {hint}") from None

    @property
    def regions(self) -> dict[str, np.ndarray] | None:
        """``{"chrom", "start", "end", "strand"}`` arrays of all rows, or None when the input was FASTA."""
        if "regions" not in self._f:
            return None
        g = self._f["regions"]
        return {"chrom": g["chrom"].asstr()[...], "start": g["start"][...], "end": g["end"][...],
                "strand": g["strand"].asstr()[...]}

    def region(self, index: int) -> tuple[str, int, int, str] | None:
        """``(chrom, start, end, strand)`` of one row, or None."""
        if "regions" not in self._f:
            return None
        g = self._f["regions"]
        return (g["chrom"].asstr()[index], int(g["start"][index]), int(g["end"][index]), g["strand"].asstr()[index])

    # -- data

    def _get(self, name: str, idx) -> np.ndarray:
        if name not in self._f:
            raise StoreError(f"{self.path} has no {name} dataset; run `dnalift validate` on it")
        ds = self._f[name]
        if idx is None:
            idx = slice(None)
        if isinstance(idx, (list, tuple, np.ndarray)):
            idx = np.asarray(idx, dtype=np.int64)
            order = np.argsort(idx, kind="stable")
            uniq, inverse = np.unique(idx[order], return_inverse=True)
            data = ds[uniq]  # h5py wants increasing indices
            out = np.empty((len(idx),) + data.shape[1:], dtype=data.dtype)
            out[order] = data[inverse]
            return out
        return ds[idx]

    def raw(self, idx=None) -> np.ndarray:
        """One-hot input, int8, (4, L) for an index or (b, 4, L)."""
        return self._get("raw/seq", idx)

    def hypothetical(self, idx=None) -> np.ndarray:
        """Hypothetical contributions, float32, (4, L) or (b, 4, L)."""
        return self._get("shap/seq", idx)

    def projected(self, idx=None) -> np.ndarray:
        """Contributions of the observed base (hypothetical x one-hot), float32, (4, L) or (b, 4, L)."""
        return self._get("projected_shap/seq", idx)

    def contributions(self, idx=None) -> np.ndarray:
        """Per-position contribution scores: projected summed over bases, (L,) or (b, L)."""
        return self.projected(idx).sum(axis=-2)

    def predictions(self, idx=None) -> np.ndarray:
        return self._get("predictions", idx)

    def reference_predictions(self, idx=None) -> np.ndarray:
        return self._get("reference_predictions", idx)

    def deltas(self, idx=None) -> np.ndarray:
        return self._get("deltas", idx)

    def iter_chunks(self, size: int | None = None) -> Iterable[tuple[int, int]]:
        """``(start, stop)`` row blocks aligned with the file's chunks, for streaming over all rows."""
        if size is None:
            chunks = self._f["raw/seq"].chunks
            size = chunks[0] if chunks else 256
        size = max(1, int(size))
        for start in range(0, self.n, size):
            yield start, min(start + size, self.n)


def open_results(path: str | os.PathLike) -> ResultReader:
    """Open a result file for reading.

    Raises
    ------
    StoreError
        The file is missing, not HDF5, truncated, not a dnalift result, or from a newer dnalift.
    """
    return ResultReader(path)


# ----------------------------------------------------------------------------------------------- validation


def validate_results(path: str | os.PathLike, *, check_values: bool = True) -> list[str]:
    """The problems of a result file, one line each; an empty list means the file is sound.

    Checks the datasets and their shapes and types, that every chunk is complete, names are unique,
    raw/seq is one-hot, projected_shap/seq equals shap/seq * raw/seq, scores have no NaN or infinity
    (``check_values``, read chunk by chunk), and genome regions are well formed.

    Raises
    ------
    StoreError
        The file cannot be read at all (missing, not HDF5, truncated, not a dnalift file).
    """
    path = Path(path)
    problems: list[str] = []
    with _open_h5(path, "r", rdcc_nbytes=_CACHE_BYTES) as f:
        _check_dnalift(f, path)
        attrs = _read_attrs(f)
        for key, want in (("axis_order", AXIS_ORDER), ("alphabet", ALPHABET)):
            if attrs.get(key) != want:
                problems.append(f"attribute {key} is {attrs.get(key)!r}, expected {want!r}")
        missing = [name for name in _SEQ_DATASETS + _ROW_DATASETS + ("chunks_complete",) if name not in f]
        problems += [f"dataset {name} is missing" for name in missing]
        if "raw/seq" not in f:
            return problems
        shape = f["raw/seq"].shape
        if len(shape) != 3 or shape[1] != 4:
            return problems + [f"raw/seq has shape {shape}, expected (n, 4, length)"]
        n = shape[0]
        dtypes = {"raw/seq": np.int8, "shap/seq": np.float32, "projected_shap/seq": np.float32,
                  "predictions": np.float32, "reference_predictions": np.float32, "deltas": np.float32}
        for name in _SEQ_DATASETS + _ROW_DATASETS:
            if name not in f:
                continue
            want = shape if name in _SEQ_DATASETS else (n,)
            if f[name].shape != want:
                problems.append(f"{name} has shape {f[name].shape}, expected {want}")
            if name in dtypes and f[name].dtype != dtypes[name]:
                problems.append(f"{name} has dtype {f[name].dtype}, expected {np.dtype(dtypes[name])}")
        written = None  # per row: in a complete chunk (None: unknown, check all rows)
        if "chunks_complete" in f:
            flags = f["chunks_complete"][...]
            size = int(attrs.get("chunk_size", 0) or 0)
            if size >= 1 and len(flags) == (math.ceil(n / size) if n else 0):
                written = np.repeat(flags.astype(bool), size)[:n]
            if size < 1 or len(flags) != (math.ceil(n / size) if n else 0):
                problems.append(f"chunks_complete has {len(flags)} entries, which does not fit n={n} and "
                                f"chunk_size={attrs.get('chunk_size')}")
            elif not flags.all():
                bad = np.flatnonzero(flags == 0)
                ranges = [_fmt_rows(int(c) * size, min((int(c) + 1) * size, n)) for c in bad[:3]]
                problems.append(f"{len(bad)} of {len(flags)} chunks were never completed ({', '.join(ranges)}"
                                f"{' ...' if len(bad) > 3 else ''}); the run did not finish: rerun with --resume")
        if "names" in f and f["names"].shape == (n,):
            seen: set[str] = set()
            dups: list[str] = []
            empty = 0
            for a in range(0, n, 65536):
                block = f["names"].asstr()[a:a + 65536]
                if written is not None:
                    block = block[written[a:a + 65536]]
                for s in block:
                    if not s:
                        empty += 1
                    elif s in seen:
                        dups.append(s)
                    seen.add(s)
            if dups:
                problems.append(f"{len(dups)} duplicate sequence names (first: {dups[0]!r})")
            if empty:
                problems.append(f"{empty} empty sequence names")
        if "regions" in f:
            problems += _validate_regions(f["regions"], n, shape[2], written)
        if check_values and not missing and not any(f[name].shape != shape for name in _SEQ_DATASETS):
            problems += _validate_values(f, n)
    return problems


def _validate_regions(g: h5py.Group, n: int, length: int, written: np.ndarray | None) -> list[str]:
    problems = []
    for key in _REGION_FIELDS:
        if key not in g:
            problems.append(f"regions/{key} is missing")
        elif g[key].shape != (n,):
            problems.append(f"regions/{key} has shape {g[key].shape}, expected ({n},)")
    if problems:
        return problems
    bad_len = bad_strand = 0
    for a in range(0, n, 65536):
        keep = slice(None) if written is None else written[a:a + 65536]
        start, end = g["start"][a:a + 65536][keep], g["end"][a:a + 65536][keep]
        bad_len += int(np.count_nonzero((end - start != length) | (start < 0)))
        strand = g["strand"].asstr()[a:a + 65536][keep]
        bad_strand += int(sum(s not in ("+", "-", ".") for s in strand))
    if bad_len:
        problems.append(f"{bad_len} regions do not span the sequence length {length} (end - start) or start < 0")
    if bad_strand:
        problems.append(f"{bad_strand} regions have a strand other than +, - or .")
    return problems


def _validate_values(f: h5py.File, n: int) -> list[str]:
    counts = {"nan_hyp": 0, "nan_rows": 0, "not_one_hot": 0, "projected": 0}
    size = f["raw/seq"].chunks[0] if f["raw/seq"].chunks else 256
    flags = f["chunks_complete"][...] if "chunks_complete" in f else None
    for c, a in enumerate(range(0, n, size)):
        if flags is not None and c < len(flags) and not flags[c]:
            continue  # never written: reported above
        sl = slice(a, min(a + size, n))
        raw, hyp, proj = f["raw/seq"][sl], f["shap/seq"][sl], f["projected_shap/seq"][sl]
        counts["nan_hyp"] += int(np.count_nonzero(~np.isfinite(hyp).all(axis=(1, 2))))
        counts["not_one_hot"] += int(np.count_nonzero(((raw != 0) & (raw != 1)).any(axis=(1, 2))
                                                      | (raw.sum(axis=1) > 1).any(axis=1)))
        same = (proj == hyp * raw) | (np.isnan(proj) & np.isnan(hyp))
        counts["projected"] += int(np.count_nonzero(~same.all(axis=(1, 2))))
        rows = np.stack([f[k][sl] for k in ("predictions", "reference_predictions", "deltas")])
        counts["nan_rows"] += int(np.count_nonzero(~np.isfinite(rows).all(axis=0)))
    problems = []
    if counts["nan_hyp"]:
        problems.append(f"{counts['nan_hyp']} sequences have NaN or infinite scores in shap/seq")
    if counts["nan_rows"]:
        problems.append(f"{counts['nan_rows']} sequences have NaN or infinite predictions, reference_predictions "
                        f"or deltas")
    if counts["not_one_hot"]:
        problems.append(f"{counts['not_one_hot']} sequences in raw/seq are not one-hot")
    if counts["projected"]:
        problems.append(f"{counts['projected']} sequences have projected_shap/seq != shap/seq * raw/seq")
    return problems


# ----------------------------------------------------------------------------------------------- merge


def merge_results(paths: Sequence[str | os.PathLike], output: str | os.PathLike, *, force: bool = False,
                  command_line: str | None = None) -> Path:
    """Join the shards of one run (files written with ``--shard i-of-n``) into one result file.

    The shards must share every attribute except ``shard``, ``row_start``, ``row_stop``, ``n_total``,
    ``created``, ``command_line`` (and the storage settings ``chunk_size``, ``compression``); their row
    ranges must cover ``0 .. n_total`` exactly once; names must be unique across shards. The merged
    file is written chunk by chunk through :class:`ResultWriter` (memory does not grow with the number
    of rows, apart from the set of names used to find duplicates). Its attributes are the shared ones
    plus ``merged_from`` (JSON list of the shard file names).

    Returns
    -------
    Path
        ``output``.

    Raises
    ------
    StoreError
        A shard is unreadable, incomplete, not a shard, or does not fit the others (the message names the
        attribute or rows and the two files).
    OutputExistsError
        ``output`` exists and not ``force``.
    """
    paths = [Path(p) for p in paths]
    output = Path(output)
    if not paths:
        raise StoreError("merge needs at least one shard file")
    if output.exists() and not force:
        raise OutputExistsError(f"{output} exists; pass --force to overwrite it or choose another output")
    if len(set(map(os.path.abspath, paths))) != len(paths):
        raise StoreError("the same shard file is given twice; give each shard once")

    infos = []
    for p in paths:
        with _open_h5(p, "r") as f:
            _check_dnalift(f, p)
            attrs = _read_attrs(f)
            for key in ("raw/seq", "chunks_complete"):
                if key not in f:
                    raise StoreError(f"{p} has no {key} dataset; it is damaged: run `dnalift validate {p}`")
            if not f["chunks_complete"][...].all():
                raise StoreError(f"{p} is incomplete (not every chunk was written); finish that shard with "
                                 f"--resume first")
            shape = f["raw/seq"].shape
            has_regions = "regions" in f
        missing = [k for k in SHARD_ATTRS if k not in attrs]
        if missing:
            raise StoreError(f"{p} is not a shard (no {missing[0]!r} attribute); merge takes the files written "
                             f"with --shard i-of-n")
        infos.append({"path": p, "attrs": attrs, "n": shape[0], "length": shape[2], "regions": has_regions,
                      "start": int(attrs["row_start"]), "stop": int(attrs["row_stop"])})

    first = infos[0]
    skip = set(SHARD_ATTRS) | set(_VOLATILE_ATTRS) | set(_STORAGE_ATTRS)
    params = {k: v for k, v in first["attrs"].items() if k not in skip}
    for info in infos[1:]:
        other = {k: v for k, v in info["attrs"].items() if k not in skip}
        for key in sorted(set(params) | set(other)):
            if key not in other:
                raise StoreError(f"attribute {key!r} is in {first['path']} but not in {info['path']}; shards must "
                                 f"come from one run with the same options")
            if key not in params:
                raise StoreError(f"attribute {key!r} is in {info['path']} but not in {first['path']}; shards must "
                                 f"come from one run with the same options")
            if params[key] != other[key]:
                raise StoreError(f"attribute {key!r} differs: {params[key]!r} in {first['path']}, {other[key]!r} in "
                                 f"{info['path']}; shards must come from one run with the same options")
        if info["length"] != first["length"]:
            raise StoreError(f"sequence length differs: {first['length']} in {first['path']}, {info['length']} in "
                             f"{info['path']}")
        if info["regions"] != first["regions"]:
            raise StoreError(f"{first['path']} {'has' if first['regions'] else 'has no'} genome regions but "
                             f"{info['path']} {'has' if info['regions'] else 'has no'}; shards must come from one run")
        if int(info["attrs"]["n_total"]) != int(first["attrs"]["n_total"]):
            raise StoreError(f"n_total differs: {first['attrs']['n_total']} in {first['path']}, "
                             f"{info['attrs']['n_total']} in {info['path']}; shards must come from one run")
    for info in infos:
        if info["stop"] - info["start"] != info["n"]:
            raise StoreError(f"{info['path']} says it holds rows {info['start']}-{info['stop'] - 1} but has "
                             f"{info['n']} rows; the shard is damaged")

    n_total = int(first["attrs"]["n_total"])
    infos.sort(key=lambda i: (i["start"], i["stop"]))
    pos, prev = 0, None
    for info in infos:
        if info["n"] == 0:
            continue
        if info["start"] > pos:
            where = f"between {prev['path']} and {info['path']}" if prev else f"before {info['path']}"
            raise StoreError(f"{_fmt_rows(pos, info['start'])} are in no shard ({where}); give every shard "
                             f"of the run")
        if info["start"] < pos:
            raise StoreError(f"{_fmt_rows(info['start'], min(pos, info['stop']))} are in both {prev['path']} and "
                             f"{info['path']}; give each shard once")
        pos, prev = info["stop"], info
    if pos != n_total:
        where = f"after {prev['path']}" if prev else "in the files given"
        raise StoreError(f"{_fmt_rows(pos, n_total)} of {n_total} are in no shard ({where}); give every shard "
                         f"of the run")

    seen: dict[str, tuple[Path, int]] = {}
    for info in infos:
        with _open_h5(info["path"], "r") as f:
            for a in range(0, info["n"], 65536):
                for j, name in enumerate(f["names"].asstr()[a:a + 65536]):
                    if name in seen:
                        other_path, other_row = seen[name]
                        raise StoreError(f"sequence name {name!r} is in {other_path} (row {other_row}) and in "
                                         f"{info['path']} (row {info['start'] + a + j}); names must be unique")
                    seen[name] = (info["path"], info["start"] + a + j)
    del seen

    attrs = dict(params)
    attrs["command_line"] = command_line if command_line is not None else shlex.join(sys.argv)
    attrs["merged_from"] = [i["path"].name for i in infos]
    with ResultWriter(output, n=n_total, length=first["length"], attrs=attrs,
                      chunk_size=int(first["attrs"].get("chunk_size") or default_chunk_size(first["length"])),
                      compression=str(first["attrs"].get("compression", "gzip")), regions=first["regions"],
                      force=force) as writer:
        step = writer.chunk_size
        for info in infos:
            with ResultReader(info["path"]) as r:
                for a in range(0, r.n, step):
                    sl = slice(a, min(a + step, r.n))
                    regions = None
                    if first["regions"]:
                        g = r.file["regions"]
                        regions = {"chrom": g["chrom"].asstr()[sl], "start": g["start"][sl], "end": g["end"][sl],
                                   "strand": g["strand"].asstr()[sl]}
                    writer.write(info["start"] + a, raw=r.raw(sl), hypothetical=r.hypothetical(sl),
                                 names=r.file["names"].asstr()[sl], predictions=r.predictions(sl),
                                 reference_predictions=r.reference_predictions(sl), deltas=r.deltas(sl),
                                 regions=regions)
    return output
