"""Writing a result file as the run goes: :class:`ResultWriter`.

Rows go to ``.<name>.partial.h5`` beside the final path, a whole chunk at a time (rows of an unfinished chunk wait
in memory, at most a few chunks); after each chunk its ``chunks_complete`` flag is set and the file is flushed. When
the run ends without error the partial file is renamed to the final name in one atomic step, so the final name never
holds an unfinished file. When the run fails or is killed, the partial file stays; running again with
``resume=True`` and the same parameters and inputs keeps the complete chunks and computes only the others
(:meth:`ResultWriter.pending_ranges`; :meth:`ResultWriter.kept` reads the kept rows).

Full disks: before each chunk the writer checks that the file system has room for it (its uncompressed size and a
margin), and stops with :class:`~dnalift.errors.DiskFullError` before writing when it has not, so the partial file
stays valid for ``resume=True``. When a write fails anyway (another process filled the disk, a quota, an I/O error),
the file can no longer be trusted: the writer stops HDF5 from touching it again, removes it and raises
:class:`~dnalift.errors.OutputWriteError` (``details["kept"]`` is False).

A :class:`~dnalift.io.store.lock.OutputLock` on the final name is held from the start to :meth:`close` (unless the
caller holds one, ``lock=False``), so a second run with the same output refuses to start and never deletes the first
one's partial file.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from dnalift.errors import (DiskFullError, OutputExistsError, OutputWriteError, ResumeMismatchError,
                            StoreError)
from dnalift.io.store import schema
from dnalift.io.store._h5 import (CACHE_BYTES, NO_SPACE, fmt_rows, group_rows, io_errno, mb, normalize_attr,
                                  package_version, read_attrs, to_numpy)
from dnalift.io.store.kept import write_kept_regions
from dnalift.io.store.lock import OutputLock

__all__ = ["ResultWriter"]

logger = logging.getLogger(__name__)

#: room kept free beyond a chunk's uncompressed size (HDF5 metadata, the names' heap)
SPACE_MARGIN = 1 << 20

_WHAT_CHANGED = {"input_sha256": "the sequences (the content of the FASTA or of the regions' windows)",
                 "model_sha256": "the model file", "reference_sha256": "the references file"}


class _Pending:
    """Rows of one chunk received so far and not yet written: one array per dataset, and which rows are in."""

    def __init__(self, start: int, rows: int, length: int, extra: tuple):
        self.start = start
        self.values: dict[str, np.ndarray] = {}
        for ds in schema.PER_BASE[:2] + schema.PER_ROW + extra:
            shape = (rows, 4, length) if ds.per_base else (rows,)
            self.values[ds.name] = np.empty(rows, dtype=object) if ds.dtype is schema.STRING else np.zeros(
                shape, ds.dtype)
        self.filled = np.zeros(rows, bool)

    def nbytes(self) -> int:
        raw = self.values[schema.RAW].nbytes
        names = sum(len(str(s)) + 16 for s in self.values[schema.NAMES])
        return sum(v.nbytes for v in self.values.values() if v.dtype != object) + raw * 4 + 2 * names


class ResultWriter:
    """Streams results to an HDF5 file that gets its final name only when every row is written.

    Parameters
    ----------
    path : str or path-like
        The final file name (``out.h5``). While writing, rows go to :func:`schema.partial_path`.
    n : int
        Number of sequences (rows).
    length : int
        Sequence length ``L``.
    attrs : mapping
        The run's parameters and fingerprints (see :mod:`dnalift.io.store.schema`), stored as root
        attributes. ``None`` values are left out; lists and dicts are stored as JSON strings.
    chunk_size : int, optional
        Rows per chunk (default :func:`schema.default_chunk_size`). On resume the partial file's is used.
    compression : {"gzip", "lzf", "none"}
    regions : bool
        Whether rows carry genome regions (input was BED); then every :meth:`write` needs ``regions``.
    variants : bool
        Whether rows carry variants (pairs of alleles); then every :meth:`write` needs ``variants``.
    force : bool
        Overwrite an existing final file (it is replaced only when the new one is complete).
    resume : bool
        Continue from the partial file of an interrupted run with the same parameters, keeping its
        complete chunks; without a partial file the run starts fresh.
    lock : bool
        Take the output's lock (False when the caller holds it).

    Raises
    ------
    OutputExistsError, OutputInUseError, ResumeMismatchError, StoreError

    Use it as a context manager; on leaving the block without an exception the file is renamed to its final
    name; on an exception the partial file stays for ``resume=True`` and the exception goes on.
    """

    def __init__(self, path: str | os.PathLike, *, n: int, length: int, attrs: Mapping[str, Any] | None = None,
                 chunk_size: int | None = None, compression: str | None = "gzip", regions: bool = False,
                 force: bool = False, resume: bool = False, lock: bool = True, variants: bool = False):
        self.path = Path(path)
        self.partial = schema.partial_path(self.path)
        self.n, self.length = int(n), int(length)
        self.has_regions, self.has_variants, self.force = bool(regions), bool(variants), bool(force)
        self._extra = (schema.REGION_DATASETS if self.has_regions else ()) + (
            schema.VARIANT_DATASETS if self.has_variants else ())
        compression = "none" if compression in (None, False) else str(compression).lower()
        self._check_arguments(compression, chunk_size)
        if self.path.exists() and not self.force:
            raise OutputExistsError(f"{self.path} exists; pass force=True to overwrite it or choose another output",
                                    argument="output", path=str(self.path))
        self._attrs = self._run_attrs(attrs)
        self._pending: dict[int, _Pending] = {}
        self._file: h5py.File | None = None
        self._closed, self._lock = False, None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if lock:
            self._lock = OutputLock(self.path).acquire()
        try:
            if resume and self.partial.exists():
                self._file = self._open_partial()
            if self._file is None:
                if self.partial.exists() and not resume:
                    logger.warning("%s: discarding the partial file of an earlier run (use resume=True to continue "
                                   "it)", self.partial)
                self.chunk_size = int(chunk_size or schema.default_chunk_size(self.length))
                self.compression = compression
                self._file = self._guard(self._create, "create")
        except BaseException:
            self._release()
            raise
        self._n_chunks = schema.n_chunks(self.n, self.chunk_size)
        self._done_chunks = int(np.count_nonzero(self._file[schema.CHUNKS_COMPLETE][...]))

    # -- set-up

    def _check_arguments(self, compression: str, chunk_size) -> None:
        if self.n < 0:
            raise StoreError(f"{self.path}: n must be >= 0, got {self.n}", argument="n")
        if self.length < 1:
            raise StoreError(f"{self.path}: sequence length must be >= 1, got {self.length}", argument="length")
        if compression not in schema.COMPRESSIONS:
            raise StoreError(f"unknown compression {compression!r}; choose gzip, lzf or none", argument="compression")
        if chunk_size is not None and int(chunk_size) < 1:
            raise StoreError(f"chunk_size must be >= 1, got {chunk_size}", argument="chunk_size")

    @staticmethod
    def _run_attrs(attrs) -> dict[str, Any]:
        out = {}
        for key, value in dict(attrs or {}).items():
            value = normalize_attr(value)
            if value is not None:
                out[str(key)] = value
        import dnalift

        out.setdefault("dnalift_version", dnalift.__version__)
        torch_version = package_version("torch")
        if torch_version is not None:
            out.setdefault("torch_version", torch_version)
        out.setdefault("command_line", shlex.join(sys.argv))
        out.update(format_version=schema.FORMAT_VERSION, axis_order=schema.AXIS_ORDER, alphabet=schema.ALPHABET)
        return out

    def _create(self) -> h5py.File:
        f = h5py.File(self.partial, "w", rdcc_nbytes=CACHE_BYTES)
        try:
            attrs = dict(self._attrs, chunk_size=self.chunk_size, compression=self.compression,
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
            datasets = schema.PER_BASE + schema.PER_ROW + self._extra
            for ds in datasets:
                shape = (self.n, 4, self.length) if ds.per_base else (self.n,)
                if self.n == 0:  # HDF5 chunks may not be larger than an empty dataset
                    f.create_dataset(ds.name, shape=shape, dtype=ds.dtype)
                    continue
                chunks = (rows, 4, self.length) if ds.per_base else (rows_1d,)
                # variable-length strings take no filters (HDF5 keeps them in a heap)
                f.create_dataset(ds.name, shape=shape, dtype=ds.dtype, chunks=chunks,
                                 **(opts if ds.dtype is not schema.STRING else {}))
            f.create_dataset(schema.CHUNKS_COMPLETE, data=np.zeros(schema.n_chunks(self.n, self.chunk_size), np.uint8))
            f.flush()
        except BaseException:
            f.close()
            raise
        return f

    def _open_partial(self) -> h5py.File | None:
        """Open the partial file of an earlier run for resuming, after checking it matches this run."""
        try:
            f = h5py.File(self.partial, "r+", rdcc_nbytes=CACHE_BYTES)
        except OSError as exc:
            logger.warning("%s cannot be opened (%s), probably because the run was killed while writing; "
                           "starting over", self.partial, " ".join(str(exc).split()))
            return None
        try:
            self._check_resumable(f)
        except BaseException:
            f.close()
            raise
        flags = f[schema.CHUNKS_COMPLETE][...]
        logger.info("resuming %s: %d of %d chunks already complete", self.partial, int(np.count_nonzero(flags)),
                    flags.size)
        return f

    def _check_resumable(self, f: h5py.File) -> None:
        partial = str(self.partial)
        if "format_version" not in f.attrs or schema.CHUNKS_COMPLETE not in f or schema.RAW not in f:
            raise StoreError(f"{partial} is not a dnalift partial result file; delete it or choose another output",
                             argument="output", path=partial)
        old = read_attrs(f)
        shape = f[schema.RAW].shape
        if shape != (self.n, 4, self.length):
            raise ResumeMismatchError(
                f"cannot resume {partial}: it holds {shape[0]} sequences of length {shape[2]}, this run has "
                f"{self.n} of length {self.length}; pass force=True to start over", argument="resume",
                path=partial, key="shape", old=shape, new=(self.n, 4, self.length))
        if (schema.REGIONS in f) != self.has_regions:
            had = "has" if schema.REGIONS in f else "has no"
            raise ResumeMismatchError(f"cannot resume {partial}: it {had} genome regions and this run does not "
                                      f"match; pass force=True to start over", argument="resume", path=partial,
                                      key=schema.REGIONS, old=schema.REGIONS in f, new=self.has_regions)
        a, b = schema.comparable(old, resume=True), schema.comparable(self._attrs, resume=True)
        for key in sorted(set(a) | set(b)):
            if a.get(key) == b.get(key) or key in schema.COMPUTE_ATTRS and key not in a:  # not recorded (an older file)
                continue
            if key in _WHAT_CHANGED:
                what = f"{_WHAT_CHANGED[key]} changed since the interrupted run ({key} {str(a.get(key))[:12]}... " \
                       f"then, {str(b.get(key))[:12]}... now)"
            elif key == "batch_size":
                what = (f"it was computed in batches of {a.get(key)} and this run asks for {b.get(key)}, which changes "
                        f"the last bits of the scores; leave batch_size out to go on with {a.get(key)}")
            else:
                what = f"parameter {key!r} was {a.get(key)!r} in the interrupted run and is {b.get(key)!r} now"
            raise ResumeMismatchError(f"cannot resume {partial}: {what}; rerun with the same options and inputs, "
                                      f"or pass force=True to start over", argument="resume", path=partial,
                                      key=key, old=a.get(key), new=b.get(key))
        self.chunk_size = int(old["chunk_size"])
        self.compression = str(old.get("compression", "gzip"))

    # -- progress

    def _chunk_range(self, c: int) -> tuple[int, int]:
        return c * self.chunk_size, min((c + 1) * self.chunk_size, self.n)

    def _flags(self) -> np.ndarray:
        if self._file is not None:
            return self._file[schema.CHUNKS_COMPLETE][...]
        if not self.partial.exists() and not self.path.exists():
            return np.zeros(self._n_chunks, np.uint8)
        with h5py.File(self.partial if self.partial.exists() else self.path, "r") as f:
            return f[schema.CHUNKS_COMPLETE][...]

    def completed_rows(self) -> int:
        """Number of rows already in the file in complete chunks (0 for a fresh file)."""
        return int(sum(b - a for a, b in map(self._chunk_range, np.flatnonzero(self._flags()))))

    def pending_chunks(self) -> list[tuple[int, int]]:
        """``(start, stop)`` row ranges of the chunks not yet complete in the file, in order."""
        return [self._chunk_range(int(c)) for c in np.flatnonzero(self._flags() == 0)]

    def pending_ranges(self) -> list[tuple[int, int]]:
        """:meth:`pending_chunks` with adjacent chunks joined: the row ranges still to compute."""
        out: list[list[int]] = []
        for start, stop in self.pending_chunks():
            if out and out[-1][1] == start:
                out[-1][1] = stop
            else:
                out.append([start, stop])
        return [(a, b) for a, b in out]

    def kept(self, name: str, start: int, stop: int) -> np.ndarray:
        ds = self._file[name]
        return (ds.asstr() if h5py.check_string_dtype(ds.dtype) else ds)[start:stop]

    @property
    def complete(self) -> bool:
        return self._done_chunks == self._n_chunks

    # -- writing

    def write(self, start: int, *, raw, hypothetical, names: Sequence[str], predictions, reference_predictions,
              deltas, regions: Mapping[str, Any] | None = None, variants: Mapping[str, Any] | None = None) -> None:
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
            ``chrom``, ``start``, ``end``, ``strand`` arrays of length b and optionally ``line`` (the input
            lines, for the kept regions file; other keys are ignored); required when the writer was made with
            ``regions=True``.
        variants : mapping, optional
            ``variant_ids``, ``alleles``, ``chrom``, ``pos``, ``ref``, ``alt``, ``offset`` arrays of length b (the
            :data:`schema.VARIANT_DATASETS`); required when the writer was made with ``variants=True``.

        Numpy arrays and CPU or GPU torch tensors are accepted. Rows of a chunk wait in memory until
        the chunk is whole, then the chunk is written and flushed.
        """
        if self._closed:
            raise StoreError(f"{self.path}: write after the writer was closed")
        rows = self._check_rows(int(start), raw, hypothetical, names,
                                {schema.PREDICTIONS: predictions, schema.REFERENCE_PREDICTIONS: reference_predictions,
                                 schema.DELTAS: deltas}, regions, variants)
        b = rows[schema.RAW].shape[0]
        pos = 0
        while pos < b:
            row = int(start) + pos
            c = row // self.chunk_size
            c_start, c_stop = self._chunk_range(c)
            take = min(b - pos, c_stop - row)
            p = self._pending.get(c)
            if p is None:
                p = self._pending[c] = _Pending(c_start, c_stop - c_start, self.length, self._extra)
            a, e = row - c_start, row - c_start + take
            for name, value in rows.items():
                p.values[name][a:e] = value[pos:pos + take]
            p.filled[a:e] = True
            if p.filled.all():
                self._guard(lambda: self._flush_chunk(c, p), "write")
                del self._pending[c]
            pos += take

    def _check_rows(self, start, raw, hypothetical, names, values, regions, variants) -> dict[str, np.ndarray]:
        raw, hyp = to_numpy(raw), to_numpy(hypothetical)
        if raw.ndim != 3 or raw.shape[1:] != (4, self.length):
            raise StoreError(f"{self.path}: raw must have shape (b, 4, {self.length}), got {raw.shape}")
        b = raw.shape[0]
        if start < 0 or start + b > self.n:
            raise StoreError(f"{self.path}: rows {start}-{start + b - 1} are outside 0-{self.n - 1}")
        if hyp.shape != raw.shape:
            raise StoreError(f"{self.path}: hypothetical has shape {hyp.shape}, raw has {raw.shape}; they must match")
        raw8 = raw.astype(np.int8)
        if (raw.dtype != np.int8 and not np.array_equal(raw8, raw)) or (b and (raw8.min() < 0 or raw8.max() > 1
                                                                             or raw8.sum(axis=1).max() > 1)):
            raise StoreError(f"{self.path}: {fmt_rows(start, start + b)} of raw are not one-hot (values must be "
                             f"0/1 with at most one base per position)")
        names = np.asarray([s.decode() if isinstance(s, bytes) else str(s) for s in names], dtype=object)
        if len(names) != b:
            raise StoreError(f"{self.path}: {len(names)} names for {b} rows")
        out = {schema.RAW: raw8, schema.HYPOTHETICAL: hyp, schema.NAMES: names}
        for key, value in values.items():
            value = to_numpy(value)
            if value.shape != (b,):
                raise StoreError(f"{self.path}: {key} must have shape ({b},), got {value.shape}; one target per "
                                 f"result file")
            out[key] = value
        out.update(group_rows(self.path, "regions", regions, self.has_regions, b,
                               [(k, schema.region_path(k)) for k in schema.REGION_FIELDS]))
        if self.has_regions:  # the input lines are optional: rows copied from older files have none
            lines = regions.get(schema.REGION_LINE)
            out[schema.region_path(schema.REGION_LINE)] = np.asarray([""] * b if lines is None else lines, object)
        out.update(group_rows(self.path, "variants", variants, self.has_variants, b,
                               [(schema.variant_field(ds.name), ds.name) for ds in schema.VARIANT_DATASETS]))
        return out

    def _flush_chunk(self, c: int, p: _Pending) -> None:
        self._check_space(p.nbytes())
        f = self._file
        sl = slice(p.start, p.start + len(p.filled))
        for name, value in p.values.items():
            f[name][sl] = value
        f[schema.PROJECTED][sl] = p.values[schema.HYPOTHETICAL] * p.values[schema.RAW]
        f.flush()  # the rows are on disk before the flag says so
        if not f[schema.CHUNKS_COMPLETE][c]:
            f[schema.CHUNKS_COMPLETE][c] = 1
            self._done_chunks += 1
        f.flush()

    def _check_space(self, nbytes: int) -> None:
        try:
            free = shutil.disk_usage(self.partial.parent).free
        except OSError:
            return
        needed = nbytes + SPACE_MARGIN
        if free < needed:
            raise DiskFullError(
                f"no space left for {self.path}: {mb(free)} free in {self.partial.parent}, the next chunk needs up "
                f"to {mb(needed)}", argument="output", path=str(self.path), errno=28, kept=True, free=free,
                needed=needed)

    def _guard(self, action, what: str):
        """Run an HDF5 write; on an I/O error, make the partial file harmless, remove it and raise one error."""
        try:
            return action()
        except (OSError, RuntimeError) as exc:
            if isinstance(exc, (OutputWriteError, StoreError)):
                raise
            code = io_errno(exc)
            self._drop_broken_file()
            reason = os.strerror(code) if code else " ".join(str(exc).split())[:200]
            cls = DiskFullError if code in NO_SPACE else OutputWriteError
            raise cls(f"cannot {what} {self.partial}: {reason[0].lower() + reason[1:]}; the failed write left the "
                      f"partial file unusable, so it was removed: fix the cause (free space, quota, permissions) "
                      f"and run again", argument="output", path=str(self.path), errno=code, kept=False) from None

    def _drop_broken_file(self) -> None:
        """After a failed write HDF5 would retry its writes on close (and may crash doing so): point the file's
        descriptor at /dev/null first, close, and remove the partial file."""
        f, self._file = self._file, None
        self._closed = True
        self._pending.clear()
        if f is not None:
            try:
                fd = f.id.get_vfd_handle()
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)
            except (OSError, RuntimeError, ValueError, TypeError):
                logger.debug("cannot redirect %s", self.partial, exc_info=True)
            try:
                f.close()
            except (OSError, RuntimeError):
                logger.debug("closing %s failed", self.partial, exc_info=True)
        self.partial.unlink(missing_ok=True)
        self._release()

    # -- finishing

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(success=exc_type is None)

    def close(self, *, success: bool = True, discard: bool = False) -> Path | None:
        """Finish: with ``success`` and every row written, rename to the final name and return it. Otherwise keep
        the partial file for ``resume=True`` (or remove it, ``discard``) and return None; the lock is released last."""
        if self._closed:
            self._release()
            return None
        try:
            return self._finish(success, discard)
        finally:
            self._release()

    def _finish(self, success: bool, discard: bool) -> Path | None:
        missing = self._missing_rows() if success else []
        f, self._file = self._file, None
        self._closed = True
        if success and not missing:
            self._guard(lambda: f.close(), "close")
        else:
            f.close()
        if not success:
            if discard:
                self.partial.unlink(missing_ok=True)
            return None
        if missing:
            raise StoreError(f"{self.path}: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} were never "
                             f"written; the partial file {self.partial.name} is kept (rerun with resume=True)")
        if self.path.exists() and not self.force:
            raise OutputExistsError(f"{self.path} appeared while the run went on; pass force=True to overwrite it "
                                    f"(the results are in {self.partial.name})", argument="output")
        with open(self.partial, "rb+") as handle:
            os.fsync(handle.fileno())
        write_kept_regions(self.partial, self.path)  # in place before the result: a finished result has it
        os.replace(self.partial, self.path)
        logger.info("wrote %s (%d sequences)", self.path, self.n)
        return self.path

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _missing_rows(self) -> list[str]:
        flags = self._file[schema.CHUNKS_COMPLETE][...]
        out = []
        for c in np.flatnonzero(flags == 0):
            a, e = self._chunk_range(int(c))
            p = self._pending.get(int(c))
            idx = np.flatnonzero(~p.filled) if p is not None else []
            out.append(fmt_rows(a + int(idx[0]), a + int(idx[-1]) + 1) if len(idx) else fmt_rows(a, e))
        return out
