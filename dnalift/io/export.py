"""Exports of a result file: the TF-MoDISco npz pair and a bigWig track of per-base scores.

TF-MoDISco lite can read a result file directly (``modisco motifs -i out.h5``: it reads ``shap/seq``
and ``raw/seq``, shape (n, 4, L), and transposes them itself). :func:`export_modisco` writes the other
input it takes, the pair of ``.npz`` files for ``modisco motifs -s ohe.npz -a hyp.npz``: each holds one
array under the key ``arr_0`` (what ``np.savez_compressed(path, array)`` writes and what modisco reads),
shape (n, 4, L), float32. Modisco keeps the central ``-w`` positions of each sequence, from
``L//2 - w//2`` to ``L//2 + w//2``, so ``w`` must be even (an odd ``w`` gives ``w - 1`` positions and
modisco stops with an error) and at most ``L``; :func:`export_modisco` crops the same way when asked.

:func:`export_bigwig` writes the per-position contribution (``projected_shap/seq`` summed over the four
bases) on genome coordinates, for files scored from BED regions.
"""

from __future__ import annotations

import logging
import os
import shlex
import tempfile
from pathlib import Path
from typing import Mapping, NamedTuple

import numpy as np

from dnalift.errors import DnaliftError, OutputExistsError, StoreError
from dnalift.io.store import open_results

__all__ = ["ModiscoExport", "export_modisco", "modisco_command", "export_bigwig", "read_chrom_sizes",
           "modisco_window"]

logger = logging.getLogger(__name__)

#: ``modisco motifs -n``: the README of TF-MoDISco lite uses 2000; raise it for large data sets
MODISCO_MAX_SEQLETS = 2000


class ModiscoExport(NamedTuple):
    """What :func:`export_modisco` wrote and how to run TF-MoDISco on it."""

    hypothetical: Path  #: ``<prefix>.hyp.npz``
    one_hot: Path  #: ``<prefix>.ohe.npz``
    command: str  #: ``modisco motifs -s ... -a ... -n 2000 -w W -o <prefix>.modisco.h5``


def modisco_window(length: int, window: int | None = None) -> int:
    """The ``-w`` to give modisco for sequences of ``length``: ``window`` after checking it, or the
    largest even number <= length."""
    if window is None:
        return int(length) - int(length) % 2
    window = int(window)
    if window < 2 or window % 2:
        raise DnaliftError(f"window {window} must be even and >= 2: TF-MoDISco's -w keeps the positions "
                           f"L//2 - w//2 to L//2 + w//2, so an odd window loses a position and modisco refuses it")
    if window > length:
        raise DnaliftError(f"window {window} is longer than the sequences ({length} bp); give a window <= {length}")
    return window


def _crop(length: int, window: int) -> slice:
    """Modisco's central window: [L//2 - w//2, L//2 + w//2)."""
    start = length // 2 - window // 2
    return slice(start, start + window)


def modisco_command(h5_path: str | os.PathLike | None = None, *, one_hot: str | os.PathLike | None = None,
                    hypothetical: str | os.PathLike | None = None, window: int, output: str | os.PathLike,
                    max_seqlets: int = MODISCO_MAX_SEQLETS) -> str:
    """The ``modisco motifs`` command line for a result file (``-i``) or an npz pair (``-s``/``-a``)."""
    q = lambda p: shlex.quote(os.fspath(p))  # noqa: E731
    inputs = f"-i {q(h5_path)}" if h5_path is not None else f"-s {q(one_hot)} -a {q(hypothetical)}"
    return f"modisco motifs {inputs} -n {int(max_seqlets)} -w {int(window)} -o {q(output)}"


def _check_outputs(paths, force: bool) -> None:
    for p in paths:
        if Path(p).exists() and not force:
            raise OutputExistsError(f"{p} exists; pass force=True to overwrite it or choose another prefix/output",
                                    argument="output", path=str(p))


def _write_npz_stream(path: Path, shape: tuple[int, ...], blocks) -> None:
    """Write what ``np.savez_compressed(path, a)`` writes for an array ``a`` of ``shape`` float32,
    from its row blocks, without holding the array: a deflated zip (zip64) with one member
    ``arr_0.npy`` (npy format 1.0, C order, little-endian float32)."""
    import zipfile

    tmp = path.with_name(f".{path.name}.partial")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            with zf.open("arr_0.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(
                    member, {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False,
                             "shape": tuple(int(s) for s in shape)})
                for block in blocks:
                    member.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def export_modisco(path: str | os.PathLike, prefix: str | os.PathLike, *, window: int | None = None,
                   force: bool = False) -> ModiscoExport:
    """Write ``<prefix>.hyp.npz`` and ``<prefix>.ohe.npz`` for ``modisco motifs -s ... -a ...``.

    Parameters
    ----------
    path : result file
    prefix : str or path-like
        Output prefix; its directory is created if needed.
    window : int, optional
        Keep only the central ``window`` positions (even, <= L), exactly the positions ``modisco -w``
        keeps. Default: the whole sequence.
    force : bool
        Overwrite existing npz files.

    Returns
    -------
    ModiscoExport
        ``(hypothetical, one_hot, command)``: each npz holds ``arr_0``, float32 (n, 4, W) with W the
        window or L; ``command`` is the ``modisco motifs`` line to run next (its ``-w`` is the window,
        or the largest even number <= L, so modisco uses every position it can).

    Notes
    -----
    The arrays are streamed chunk by chunk into the zip archives, so memory does not grow with n;
    the files are the same as ``np.savez_compressed(file, array)`` writes.
    """
    prefix = os.fspath(prefix)
    hyp_path, ohe_path = Path(prefix + ".hyp.npz"), Path(prefix + ".ohe.npz")
    _check_outputs((hyp_path, ohe_path), force)
    hyp_path.parent.mkdir(parents=True, exist_ok=True)
    with open_results(path) as r:
        w = r.length if window is None else modisco_window(r.length, window)
        cols = _crop(r.length, w)
        shape = (r.n, 4, w)
        _write_npz_stream(hyp_path, shape, (r.hypothetical(slice(a, b))[:, :, cols] for a, b in r.iter_chunks()))
        _write_npz_stream(ohe_path, shape, (r.raw(slice(a, b))[:, :, cols] for a, b in r.iter_chunks()))
        n = r.n
    logger.info("wrote %s and %s (%d sequences x %d positions)", hyp_path, ohe_path, n, w)
    command = modisco_command(one_hot=ohe_path, hypothetical=hyp_path, window=modisco_window(w),
                              output=prefix + ".modisco.h5")
    return ModiscoExport(hyp_path, ohe_path, command)


# ------------------------------------------------------------------------------------------------ bigWig


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


def export_bigwig(path: str | os.PathLike, output: str | os.PathLike, *,
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
    _check_outputs((output,), force)
    try:
        import pyBigWig
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
        order = np.lexsort((starts, np.fromiter((chrom_index[c] for c in chroms), np.int64, r.n)))

        tmp_dir = output.parent
        bw_tmp = tmp_dir / f".{output.name}.partial"
        with tempfile.TemporaryFile(dir=tmp_dir) as scratch:
            scores = np.memmap(scratch, dtype=np.float32, mode="w+", shape=(max(r.n, 1), r.length))
            for a, b in r.iter_chunks():
                s = r.projected(slice(a, b)).sum(axis=1)
                flip = minus[a:b]
                s[flip] = s[flip, ::-1]
                scores[a:b] = s
            try:
                bw = pyBigWig.open(os.fspath(bw_tmp), "w")
                bw.addHeader([(c, int(n)) for c, n in sizes.items()])
                _sweep(bw, order, chroms, starts, scores, r.length)
                bw.close()
                os.replace(bw_tmp, output)
            except BaseException:
                bw_tmp.unlink(missing_ok=True)
                raise
            del scores
    logger.info("wrote %s", output)
    return output


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
        total[off:off + length] += scores[i]
        count[off:off + length] += 1
    emit(buf_start + len(total))
