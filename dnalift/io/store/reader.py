"""Reading result files lazily: :func:`open_results` and :class:`ResultReader`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from dnalift.errors import IncompleteResultError, NameNotFoundError, StoreError
from dnalift.io.store import schema
from dnalift.io.store._h5 import CACHE_BYTES, check_dnalift, missing_chunks, open_h5, read_attrs

__all__ = ["ResultReader", "open_results"]


class ResultReader:
    """Lazy read access to a result file (open it with :func:`open_results`).

    Data methods take an index, a slice or a list of indices (default: all rows) and read only those
    rows: ``raw(i)`` -> (4, L) int8, ``raw(slice(0, 10))`` -> (10, 4, L). Use it as a context manager or
    call :meth:`close`.

    Parameters
    ----------
    path : path
    allow_incomplete : bool
        Open a file whose run did not finish (a ``.partial.h5``, or one with chunks never written); by
        default that is an :class:`~dnalift.errors.IncompleteResultError`, since its unwritten rows read as
        zeros.
    """

    def __init__(self, path: str | os.PathLike, *, allow_incomplete: bool = False):
        self.path = Path(path)
        self._f = open_h5(self.path, "r", rdcc_nbytes=CACHE_BYTES)
        try:
            self.format_version = check_dnalift(self._f, self.path)
            for name in (schema.RAW, schema.HYPOTHETICAL, schema.NAMES):
                if name not in self._f:
                    raise StoreError(f"{self.path} has no {name} dataset; the file is damaged or not a "
                                     f"dnalift result: run `dnalift inspect` on it", argument="path")
            shape = self._f[schema.RAW].shape
            if len(shape) != 3 or shape[1] != 4:
                raise StoreError(f"{self.path}: {schema.RAW} has shape {shape}, expected (n, 4, length)",
                                 argument="path")
            missing, total = missing_chunks(self._f)
            if missing and not allow_incomplete:
                raise IncompleteResultError(
                    f"{self.path} is incomplete: {missing} of {total} chunks were never written (the run that "
                    f"wrote it did not finish); finish it by rerunning that dnalift score command with resume=True",
                    argument="path", path=str(self.path), missing_chunks=missing, n_chunks=total)
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
        return read_attrs(self._f)

    @property
    def has_regions(self) -> bool:
        """Whether the file was scored from genome regions."""
        return schema.REGIONS in self._f

    @property
    def names(self) -> list[str]:
        """All sequence names (read once, then cached)."""
        if self._names is None:
            self._names = list(self._f[schema.NAMES].asstr()[...])
        return self._names

    def names_of(self, idx) -> np.ndarray:
        """Names of rows ``idx`` (a slice or an index) without reading all of them."""
        return self._f[schema.NAMES].asstr()[idx]

    def index_of(self, name: str) -> int:
        """Row of the sequence called ``name``; :class:`~dnalift.errors.NameNotFoundError` naming close matches
        when there is none."""
        if self._index is None:
            self._index = {s: i for i, s in enumerate(self.names)}
        try:
            return self._index[name]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(str(name), self.names, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"names look like {', '.join(self.names[:3])}"
            raise NameNotFoundError(f"{self.path} has no sequence named {name!r}; {hint}", argument="name",
                                    path=str(self.path), name=name, close=close) from None

    @property
    def regions(self) -> dict[str, np.ndarray] | None:
        """``{"chrom", "start", "end", "strand"}`` arrays of all rows (not the input lines: :meth:`regions_of`
        reads those chunk by chunk), or None when the input was FASTA."""
        return self.regions_of(slice(None), lines=False)

    def regions_of(self, idx, *, lines: bool = True) -> dict[str, np.ndarray] | None:
        """The regions of rows ``idx`` (a slice), or None when the input was FASTA: ``chrom``, ``start``,
        ``end``, ``strand`` and, when the file has them and ``lines``, the input lines (``line``)."""
        if schema.REGIONS not in self._f:
            return None
        g = self._f[schema.REGIONS]
        keys = [k for k in (*schema.REGION_FIELDS, schema.REGION_LINE) if k in g and (lines or k != schema.REGION_LINE)]
        return {k: (g[k].asstr()[idx] if g[k].dtype.kind == "O" else g[k][idx]) for k in keys}

    @property
    def kept_regions(self) -> Path | None:
        """The kept regions file beside this result (:func:`schema.kept_regions_path`; it may be missing),
        or None when the input was FASTA."""
        from dnalift.io.store.kept import kept_regions_of

        return kept_regions_of(self._f, self.path)

    def region(self, index: int) -> tuple[str, int, int, str] | None:
        """``(chrom, start, end, strand)`` of one row (0-based half-open), or None."""
        r = self.regions_of(index, lines=False)
        return None if r is None else (r["chrom"], int(r["start"]), int(r["end"]), r["strand"])

    @property
    def has_variants(self) -> bool:
        """Whether the file was scored from variants (rows in pairs: reference allele, alternative)."""
        return schema.VARIANT_IDS in self._f

    def variants_of(self, idx) -> dict[str, np.ndarray] | None:
        """The variant datasets of rows ``idx`` (a slice or an index), by field: ``variant_ids``, ``alleles``,
        ``chrom``, ``pos``, ``ref``, ``alt``, ``offset``; None when the file was not scored from variants."""
        if not self.has_variants:
            return None
        out = {}
        for ds in schema.VARIANT_DATASETS:
            d = self._f[ds.name]
            out[schema.variant_field(ds.name)] = d.asstr()[idx] if d.dtype.kind == "O" else d[idx]
        return out

    def variant_row(self, variant_id: str) -> int:
        """The row of the reference allele of ``variant_id`` (its alternative is the next row)."""
        if not self.has_variants:
            raise StoreError(f"{self.path} was not scored from variants (it has no {schema.VARIANT_IDS}); give a file "
                             f"written by `dnalift variants`", argument="variant")
        ids = self._f[schema.VARIANT_IDS].asstr()
        for a in range(0, self.n, 65536):
            hits = np.flatnonzero(np.asarray(ids[a:a + 65536], dtype=object) == variant_id)
            if hits.size:
                return a + int(hits[0])
        import difflib

        close = difflib.get_close_matches(str(variant_id), list(ids[0:min(self.n, 65536):2]), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"ids look like {', '.join(ids[0:6:2])}"
        raise NameNotFoundError(f"{self.path} has no variant {variant_id!r}; {hint}", argument="variant",
                                path=str(self.path), name=variant_id, close=close)

    # -- data

    def _get(self, name: str, idx) -> np.ndarray:
        if name not in self._f:
            raise StoreError(f"{self.path} has no {name} dataset; run `dnalift inspect` on it", argument="path")
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
        return self._get(schema.RAW, idx)

    def hypothetical(self, idx=None) -> np.ndarray:
        """Hypothetical contributions, float32, (4, L) or (b, 4, L)."""
        return self._get(schema.HYPOTHETICAL, idx)

    def projected(self, idx=None) -> np.ndarray:
        """Contributions of the observed base (hypothetical x one-hot), float32, (4, L) or (b, 4, L)."""
        return self._get(schema.PROJECTED, idx)

    def contributions(self, idx=None) -> np.ndarray:
        """Per-position contribution scores: projected summed over bases, (L,) or (b, L)."""
        return self.projected(idx).sum(axis=-2)

    def predictions(self, idx=None) -> np.ndarray:
        return self._get(schema.PREDICTIONS, idx)

    def reference_predictions(self, idx=None) -> np.ndarray:
        return self._get(schema.REFERENCE_PREDICTIONS, idx)

    def deltas(self, idx=None) -> np.ndarray:
        return self._get(schema.DELTAS, idx)

    def iter_chunks(self, size: int | None = None) -> Iterable[tuple[int, int]]:
        """``(start, stop)`` row blocks aligned with the file's chunks, for streaming over all rows."""
        if size is None:
            chunks = self._f[schema.RAW].chunks
            size = chunks[0] if chunks else 256
        size = max(1, int(size))
        for start in range(0, self.n, size):
            yield start, min(start + size, self.n)


def open_results(path: str | os.PathLike, *, allow_incomplete: bool = False) -> ResultReader:
    """Open a result file for reading.

    Parameters
    ----------
    path : path
    allow_incomplete : bool
        Also open a file whose run did not finish (its unwritten rows read as zeros).

    Raises
    ------
    StoreError
        The file is missing, not HDF5, truncated, not a dnalift result, or from a newer dnalift.
    IncompleteResultError
        The run that wrote the file did not finish, and not ``allow_incomplete``.
    """
    return ResultReader(path, allow_incomplete=allow_incomplete)
