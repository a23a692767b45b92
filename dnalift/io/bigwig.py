"""A bigWig track of per-base contribution scores on genome coordinates, for files scored from BED regions."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

from dnalift.errors import DnaliftError, StoreError
from dnalift.io.outputs import check_outputs_free
from dnalift.io.store import open_results

__all__ = ["write_bigwig", "read_chrom_sizes", "sweep_tracks"]

logger = logging.getLogger(__name__)


def read_chrom_sizes(path: str | os.PathLike) -> dict[str, int]:
    """Chromosome lengths from a FASTA index (``genome.fa.fai``) or a chrom.sizes file (name, length
    in the first two tab-separated columns), in file order. Given a FASTA path, reads ``<path>.fai``."""
    path = Path(path)
    if not path.name.endswith((".fai", ".sizes", ".txt", ".tsv")) and Path(str(path) + ".fai").exists():
        path = Path(str(path) + ".fai")
    if not path.exists():
        raise StoreError(f"{path}: no such file; give the genome's .fai index (samtools faidx genome.fa) "
                         f"or a chrom.sizes file")
    sizes: dict[str, int] = {}
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            try:
                sizes[fields[0]] = int(fields[1])
            except (IndexError, ValueError):
                raise StoreError(f"{path} line {number}: expected <name><TAB><length>, got {line.strip()[:60]!r}; "
                                 f"give a .fai index or chrom.sizes file") from None
    if not sizes:
        raise StoreError(f"{path} lists no chromosomes; give the genome's .fai index")
    return sizes


def write_bigwig(path: str | os.PathLike, output: str | os.PathLike, *,
                  genome_fai: str | os.PathLike | None = None,
                  chrom_sizes: str | os.PathLike | Mapping[str, int] | None = None,
                  which: str = "projected", force: bool = False) -> Path:
    """Write the per-base contribution scores of a file scored from BED regions as a bigWig track.

    The value at a genome position is ``projected_shap/seq`` summed over the four bases (the
    contribution of the base observed there). Minus-strand windows were scored as the reverse
    complement, so their positions are flipped back: sequence position ``j`` is genome position
    ``end - 1 - j``. Where windows overlap, the value is the MEAN over the windows covering the
    position (it does not depend on the order of the rows). Positions no window covers have no value.

    Parameters
    ----------
    path : result file with a ``regions`` group
    output : bigWig path (``.bw``)
    genome_fai, chrom_sizes : path (or mapping for chrom_sizes)
        Chromosome lengths for the bigWig header, from the genome's ``.fai`` or a chrom.sizes file;
        give exactly one.
    which : {"projected"}
        The score written (the only one so far).
    force : bool
        Overwrite ``output``.

    Notes
    -----
    Memory holds only the row order and at most a window's worth of positions: the per-row scores
    are first summed into a temporary file beside ``output`` (n x L float32), then swept in genome
    order.
    """
    if which != "projected":
        raise DnaliftError(f"which={which!r} is not a bigWig score dnalift writes; use 'projected'")
    if (genome_fai is None) == (chrom_sizes is None):
        raise DnaliftError("give exactly one of genome_fai (the genome's .fai) and chrom_sizes")
    sizes = dict(chrom_sizes) if isinstance(chrom_sizes, Mapping) else read_chrom_sizes(genome_fai or chrom_sizes)
    output = Path(output)
    check_outputs_free((output,), force)
    try:
        import pyBigWig  # noqa: F401  (a clear message before any work)
    except ImportError:
        raise DnaliftError("bigWig export needs pyBigWig: pip install 'dnalift[bigwig]'") from None

    output.parent.mkdir(parents=True, exist_ok=True)
    with open_results(path) as r:
        regions = r.regions
        if regions is None:
            raise StoreError(f"{path} has no genome regions (it was scored from FASTA); bigWig export needs a "
                             f"file scored from BED regions on a genome")
        chrom_index = {c: i for i, c in enumerate(sizes)}
        chroms, starts, ends = regions["chrom"], regions["start"], regions["end"]
        minus = np.asarray([s == "-" for s in regions["strand"]], dtype=bool)
        del regions
        for i in range(r.n):
            if chroms[i] not in chrom_index:
                raise StoreError(f"{path}: {r.names[i]} is on {chroms[i]!r}, which is not in the chromosome sizes; "
                                 f"give the .fai of the genome the regions came from")
            if ends[i] - starts[i] != r.length or starts[i] < 0 or ends[i] > sizes[chroms[i]]:
                raise StoreError(f"{path}: {r.names[i]} at {chroms[i]}:{starts[i]}-{ends[i]} does not fit the "
                                 f"sequence length {r.length} or lies outside {chroms[i]} "
                                 f"({sizes[chroms[i]]} bp); give the genome's .fai")
        with tempfile.TemporaryFile(dir=output.parent) as scratch:
            scores = np.memmap(scratch, dtype=np.float32, mode="w+", shape=(max(r.n, 1), r.length))
            for a, b in r.iter_chunks():
                s = r.projected(slice(a, b)).sum(axis=1)
                flip = minus[a:b]
                s[flip] = s[flip, ::-1]
                scores[a:b] = s
            sweep_tracks(output, sizes, chroms, starts, scores, r.length)
            del scores
    logger.info("wrote %s", output)
    return output


def sweep_tracks(output: Path, sizes: Mapping[str, int], chroms, starts: np.ndarray, scores: np.ndarray,
                 length: int) -> None:
    """Write ``scores`` (n, L), row ``i`` at ``chroms[i]:starts[i]`` (0-based), as a bigWig named ``output``
    (written under a temporary name, renamed when complete); overlaps are averaged, NaN is no value."""
    import pyBigWig

    chrom_index = {c: i for i, c in enumerate(sizes)}
    order = np.lexsort((starts, np.fromiter((chrom_index[c] for c in chroms), np.int64, len(chroms))))
    bw_tmp = output.parent / f".{output.name}.partial"
    try:
        bw = pyBigWig.open(os.fspath(bw_tmp), "w")
        bw.addHeader([(c, int(n)) for c, n in sizes.items()])
        _sweep(bw, order, chroms, starts, scores, length)
        bw.close()
        os.replace(bw_tmp, output)
    except BaseException:
        bw_tmp.unlink(missing_ok=True)
        raise


def _sweep(bw, order: np.ndarray, chroms, starts: np.ndarray, scores: np.ndarray, length: int) -> None:
    """Add windows in genome order, averaging overlaps, writing each stretch once no later window can
    reach it."""
    buf_chrom, buf_start = None, 0
    total = np.zeros(0)
    count = np.zeros(0, np.int32)

    def emit(upto: int) -> None:
        """Write buffered positions [buf_start, upto) and drop them."""
        nonlocal buf_start, total, count
        k = max(0, min(upto - buf_start, len(total)))
        if k == 0:
            return
        c, t = count[:k], total[:k]
        covered = c > 0
        edges = np.flatnonzero(np.diff(np.concatenate(([0], covered.view(np.int8), [0]))))
        for run_start, run_stop in zip(edges[::2], edges[1::2]):
            values = t[run_start:run_stop] / c[run_start:run_stop]
            bw.addEntries(buf_chrom, int(buf_start + run_start), values=values.astype(np.float64), span=1, step=1)
        total, count = total[k:], count[k:]
        buf_start += k

    for i in order:
        chrom, start = chroms[i], int(starts[i])
        if chrom != buf_chrom:
            emit(buf_start + len(total))
            buf_chrom, buf_start = chrom, start
            total, count = np.zeros(0), np.zeros(0, np.int32)
        emit(start)
        if buf_start < start:  # a gap: nothing buffered before this window
            buf_start = start
        need = start + length - buf_start
        if need > len(total):
            total = np.concatenate((total, np.zeros(need - len(total))))
            count = np.concatenate((count, np.zeros(need - len(count), np.int32)))
        off = start - buf_start
        row = scores[i]
        known = np.isfinite(row)
        total[off:off + length] += np.where(known, row, 0.0)
        count[off:off + length] += known
    emit(buf_start + len(total))
