"""The kept regions beside a result scored from regions: the input lines of its rows, in row order.

A region run may skip regions (off the genome, letters other than ACGT), so its rows are not the lines of the
input; tools that pair a score file with a peak file row by row (FiNeMo's ``extract-regions-chrombpnet-h5
-p``, TF-MoDISco's ``seqlet-bed -p``) need a peak file of exactly the rows. :func:`write_kept_regions` writes
it from ``regions/line`` (see :mod:`dnalift.io.store.schema` for its name), to a hidden partial name first and
then renamed, so the kept regions file is never half written; :class:`~dnalift.io.store.writer.ResultWriter`
calls it just before the result file gets its final name, so every finished result (a run, a shard, a merge, a
resumed run) has its kept regions beside it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py

from dnalift.errors import DiskFullError, OutputWriteError
from dnalift.io.store import schema

__all__ = ["write_kept_regions", "kept_regions_of"]

logger = logging.getLogger(__name__)

#: rows read from ``regions/line`` at a time
_BLOCK = 65536


def kept_regions_of(f: h5py.File, path) -> Path | None:
    """The kept regions file of the result ``path`` whose open file is ``f``; None when it was not scored
    from regions."""
    if schema.REGIONS not in f:
        return None
    fmt = f.attrs.get(schema.REGIONS_FORMAT, "bed")
    fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
    return schema.kept_regions_path(path, fmt if fmt in schema.KEPT_REGIONS_SUFFIXES else "bed")


def write_kept_regions(h5_path, result_path) -> Path | None:
    """Write the kept regions of the result file ``h5_path`` (complete, closed) beside ``result_path``.

    Parameters
    ----------
    h5_path : path
        The finished file (its partial name, while the writer finishes it).
    result_path : path
        The name it gets; the kept regions go beside it (:func:`schema.kept_regions_path`).

    Returns
    -------
    Path or None
        The kept regions file; None when the file holds no regions, or no input lines (files of older
        dnalift versions; a warning says so).

    Raises
    ------
    DiskFullError, OutputWriteError
        The file cannot be written (the partial kept regions file is removed; the result is not renamed).
    """
    with h5py.File(h5_path, "r") as f:
        target = kept_regions_of(f, result_path)
        if target is None:
            return None
        line_path = f"{schema.REGIONS}/{schema.REGION_LINE}"
        if line_path not in f:
            logger.warning("%s has no %s (made by an older dnalift): no kept regions file is written", h5_path,
                           line_path)
            return None
        partial = target.with_name(f".{target.name}.partial")
        try:
            complete = _write_lines(f[line_path], partial)
            if not complete:
                partial.unlink(missing_ok=True)
                logger.warning("%s: some rows have no input line (rows of an older dnalift file): no kept regions "
                               "file is written", result_path)
                return None
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            cls = DiskFullError if exc.errno == 28 else OutputWriteError
            raise cls(f"cannot write the kept regions {target}: {exc.strerror or exc}; fix the cause (free space, "
                      f"permissions) and rerun with resume=True", argument="output", path=str(target),
                      errno=exc.errno, kept=True) from None
    for other in schema.KEPT_REGIONS_SUFFIXES:  # another format's kept regions belong to the result replaced
        stale = schema.kept_regions_path(result_path, other)
        if stale != target and stale.exists():
            stale.unlink()
    logger.info("wrote %s (the input lines of the %s rows, in row order)", target, Path(result_path).name)
    return target


def _write_lines(dataset: h5py.Dataset, partial: Path) -> bool:
    """Stream the lines to ``partial`` (flushed to disk); False when a row has no line."""
    with open(partial, "w", encoding="utf-8", newline="\n") as out:
        for a in range(0, dataset.shape[0], _BLOCK):
            lines = dataset.asstr()[a:a + _BLOCK]
            if any(not line for line in lines):
                return False
            out.write("\n".join(lines) + "\n")
        out.flush()
        os.fsync(out.fileno())
    return True
