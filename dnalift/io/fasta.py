"""Sequences from FASTA files and from BED/narrowPeak regions on a genome, read lazily with pyfaidx.

Both openers return a :class:`SequenceSource`: a list of names of one fixed length whose one-hot encodings
are fetched on demand with :meth:`SequenceSource.one_hot`, so memory holds only the names and coordinates,
never the sequences (50,000 x 1 kb streams).

FASTA (:func:`open_fasta`)
    Plain or bgzip-compressed (bgzip needs Biopython, as pyfaidx does). A record's name is the first word of
    its ``>`` line. Lowercase is accepted. All records must have one length unless ``width`` is given: then
    longer records are centre-cropped (``(len - width) // 2`` bases dropped on the left, the rest on the
    right) and shorter ones padded with ``N`` (``(width - len) // 2`` on the left, the rest on the right).

Regions (:func:`open_regions`)
    BED with 3 or more columns (name in column 4 and strand in column 6 when present) or narrowPeak (summit
    offset in column 10). Each region becomes a window of ``width`` bases, 0-based half-open, starting at
    ``start + (end - start) // 2 - width // 2`` (``center="mid"``) or ``start + summit - width // 2``
    (``center="summit"``). Windows on the minus strand are reverse-complemented. Windows that run off their
    chromosome are skipped (``off_chromosome="skip"``, counted in the log) or refused. Regions are named by
    column 4 when every line has a unique name there, otherwise ``chrom:start-end(strand)`` of the window
    (0-based start, as in BED; strand ``.`` when the file has none).

N policy
    ``n_policy`` is that of :mod:`dnalift.encoding`: ``"zero"`` encodes non-ACGT letters as all-zero
    columns; ``"skip"`` drops the sequences that contain any (listed in :attr:`SequenceSource.skipped`, count
    logged); ``"error"`` refuses them. ``"skip"`` and ``"error"`` read every sequence once when the source is
    opened. The ``N`` padding added by ``width`` does not count.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import logging
import os
import tempfile
from typing import NamedTuple

import numpy as np

from dnalift.encoding import N_POLICIES, _LUT, one_hot_encode, reverse_complement_sequence
from dnalift.errors import RegionError, SequenceError

__all__ = ["SequenceSource", "Skipped", "open_fasta", "open_regions", "open_indexed_fasta"]

logger = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"


class Skipped(NamedTuple):
    """A sequence or region left out of a :class:`SequenceSource`."""

    name: str
    reason: str


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == _GZIP_MAGIC


def _open_text(path: str):
    return gzip.open(path, "rt") if _is_gzip(path) else open(path)


def _duplicate_names(path: str) -> list[str]:
    counts = collections.Counter()
    with _open_text(path) as handle:
        for line in handle:
            if line.startswith(">"):
                words = line[1:].split()
                counts[words[0] if words else ""] += 1
    return [name for name, k in counts.items() if k > 1]


def _private_index(path: str) -> tuple[str, str]:
    """Index paths in a private temporary folder, for a FASTA whose folder cannot be written."""
    folder = os.path.join(tempfile.gettempdir(), f"dnalift-faidx-{os.getuid() if hasattr(os, 'getuid') else 0}")
    os.makedirs(folder, exist_ok=True)
    key = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:16]
    stem = os.path.join(folder, f"{key}-{os.path.basename(path)}")
    return stem + ".fai", stem + ".gzi"


def open_indexed_fasta(path):
    """Open a FASTA file with pyfaidx, turning its failures into one-line :class:`SequenceError` messages.

    The ``.fai`` index is written next to the file, or in a private temporary folder when that folder is not
    writable.

    Parameters
    ----------
    path : str or os.PathLike
        Plain or bgzip-compressed FASTA.

    Returns
    -------
    pyfaidx.Fasta
        Opened with ``as_raw=True`` (slices are ``str``), names as the first word of each ``>`` line.

    Raises
    ------
    SequenceError
        Missing, empty, not a FASTA, compressed without bgzip or Biopython, or duplicate names.
    """
    import pyfaidx

    path = os.fspath(path)
    if not os.path.exists(path):
        raise SequenceError(f"FASTA file {path} does not exist; check the path")
    if os.path.isdir(path):
        raise SequenceError(f"{path} is a folder, not a FASTA file; give the path of the .fa file")
    if os.path.getsize(path) == 0:
        raise SequenceError(f"FASTA file {path} is empty; it needs '>name' lines each followed by a sequence")
    compressed = _is_gzip(path)
    if compressed and not path.lower().endswith((".gz", ".bgz")):
        raise SequenceError(
            f"{path} is gzip-compressed but its name does not end in .gz; rename it to end in .gz (bgzip "
            "compression) or decompress it with gunzip"
        )

    def attempt(**index_paths):
        return pyfaidx.Fasta(path, as_raw=True, sequence_always_upper=False, **index_paths)

    try:
        try:
            fasta = attempt()
        except OSError as exc:
            if "may not be writable" not in str(exc):
                raise
            fai, gzi = _private_index(path)
            logger.info("cannot write the index next to %s; keeping it in %s", path, fai)
            fasta = attempt(indexname=fai, gzi_indexname=gzi) if compressed else attempt(indexname=fai)
    except ImportError:
        if not compressed:
            raise SequenceError(
                f"{path} is not compressed but its name ends in .gz or .bgz; rename it (e.g. to .fa)"
            ) from None
        raise SequenceError(
            f"{path} is compressed; reading bgzip FASTA needs Biopython (pip install biopython), or "
            "decompress it with gunzip"
        ) from None
    except pyfaidx.UnsupportedCompressionFormat:
        raise SequenceError(
            f"{path} is compressed with plain gzip; pyfaidx reads only bgzip: run 'gunzip {path}' and "
            "optionally 'bgzip' the result"
        ) from None
    except pyfaidx.FastaIndexingError as exc:
        raise SequenceError(f"{path} is not a valid FASTA file: {exc}") from None
    except ValueError as exc:
        if "Duplicate key" not in str(exc):
            raise
        dups = _duplicate_names(path)
        shown = ", ".join(repr(d) for d in dups[:5]) + (f" and {len(dups) - 5} more" if len(dups) > 5 else "")
        raise SequenceError(
            f"{path} has duplicate sequence names: {shown}; make the names (first word of each '>' line) unique"
        ) from None
    if len(fasta.keys()) == 0:
        fasta.close()
        raise SequenceError(f"FASTA file {path} has no sequences; it needs '>name' lines each followed by a sequence")
    return fasta


def _first_non_acgt(seq: str) -> int:
    """Index of the first letter of ``seq`` that is not A, C, G or T (any case), or -1."""
    raw = np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)
    hit = np.flatnonzero(_LUT[raw] > 3)
    return int(hit[0]) if hit.size else -1


class SequenceSource:
    """Sequences of one length, fetched on demand.

    Attributes
    ----------
    names : list of str
        Names of the kept sequences, in file order.
    length : int
        Length ``L`` of every sequence (also ``width``).
    regions : dict of numpy.ndarray or None
        For region sources: ``chrom``, ``start``, ``end`` (the window, 0-based half-open), ``strand`` and
        ``name``, each of shape ``(n,)``; None for FASTA sources.
    skipped : list of Skipped
        ``(name, reason)`` of the sequences or regions left out.
    path : str
        The FASTA (or BED) file.
    """

    regions: dict | None = None

    def __init__(self, *, path: str, names: list[str], length: int, skipped: list[Skipped]):
        self.path = path
        self.names = names
        self.length = length
        self.skipped = skipped

    @property
    def width(self) -> int:
        """Alias of :attr:`length`."""
        return self.length

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, n={len(self)}, length={self.length}, skipped={len(self.skipped)})"

    def _fetch(self, i: int) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _range(self, start: int, stop: int | None) -> range:
        return range(*slice(start, stop).indices(len(self)))

    def sequences(self, start: int = 0, stop: int | None = None) -> list[str]:
        """Sequences ``start:stop`` as strings (case as in the file, minus-strand windows reverse-complemented).

        Parameters
        ----------
        start, stop : int
            Slice of the kept sequences, as in ``names[start:stop]``.

        Returns
        -------
        list of str
            Each of length :attr:`length`.
        """
        return [self._fetch(i) for i in self._range(start, stop)]

    def one_hot(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """One-hot encoding of sequences ``start:stop``.

        Parameters
        ----------
        start, stop : int
            Slice of the kept sequences, as in ``names[start:stop]``.

        Returns
        -------
        numpy.ndarray, shape (b, 4, L), int8
            Channels A, C, G, T; letters other than ACGT are all-zero columns.
        """
        idx = self._range(start, stop)
        seqs = [self._fetch(i) for i in idx]
        if not seqs:
            return np.zeros((0, 4, self.length), dtype=np.int8)
        return one_hot_encode(seqs, names=[self.names[i] for i in idx])

    def close(self) -> None:
        """Close the underlying FASTA file."""
        fasta = getattr(self, "_fasta", None)
        if fasta is not None:
            fasta.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _FastaSource(SequenceSource):
    def __init__(self, fasta, *, path, keys, record_lengths, kept, width, skipped):
        self._fasta = fasta
        self._keys = keys
        self._record_lengths = record_lengths
        self._kept = kept
        super().__init__(path=path, names=[keys[i] for i in kept], length=width, skipped=skipped)

    def _window(self, record: int) -> tuple[int, str]:
        """Left padding and cropped letters of a record."""
        key = self._keys[record]
        size = int(self._record_lengths[record])
        if size >= self.length:
            a = (size - self.length) // 2
            return 0, self._fasta[key][a : a + self.length]
        return (self.length - size) // 2, self._fasta[key][:] if size else ""

    def _fetch(self, i: int) -> str:
        left, seq = self._window(int(self._kept[i]))
        if len(seq) == self.length:
            return seq
        return "N" * left + seq + "N" * (self.length - len(seq) - left)


def _check_policy(n_policy: str) -> None:
    if n_policy not in N_POLICIES:
        raise ValueError(f"n_policy={n_policy!r} is not one of {', '.join(map(repr, N_POLICIES))}")


def _check_width(width) -> int:
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    return int(width)


def open_fasta(path, *, width: int | None = None, n_policy: str = "zero") -> SequenceSource:
    """Open a FASTA file as a lazy :class:`SequenceSource`.

    Parameters
    ----------
    path : str or os.PathLike
        Plain or bgzip-compressed FASTA; names are the first word of each ``>`` line and must be unique.
    width : int, optional
        Length to bring every record to: longer ones centre-cropped, shorter ones padded with N on both
        sides. Without it all records must have one length.
    n_policy : {"zero", "skip", "error"}
        Letters other than ACGT: all-zero columns; drop the record (recorded in ``skipped``); or refuse.

    Returns
    -------
    SequenceSource
        ``names``, ``length``, ``skipped``; ``regions`` is None.

    Raises
    ------
    SequenceError
        Missing, empty or invalid file, duplicate names, records of different lengths without ``width``,
        or a non-ACGT letter with ``n_policy="error"``.
    """
    _check_policy(n_policy)
    if width is not None:
        width = _check_width(width)
    path = os.fspath(path)
    fasta = open_indexed_fasta(path)
    keys = list(fasta.keys())
    lengths = np.array([fasta.faidx.index[k].rlen for k in keys], dtype=np.int64)
    if width is None:
        odd = np.flatnonzero(lengths != lengths[0])
        if odd.size:
            shown = ", ".join(f"{keys[i]!r} has {lengths[i]}" for i in odd[:3])
            more = f" ({odd.size - 3} more differ)" if odd.size > 3 else ""
            fasta.close()
            raise SequenceError(
                f"{path}: sequences differ in length: {keys[0]!r} has {lengths[0]} bases but {shown}{more}; "
                "give a width to centre-crop or N-pad them to one length"
            )
        width = int(lengths[0])
        if width == 0:
            fasta.close()
            raise SequenceError(f"{path}: the sequences are empty; give each '>name' line a sequence")
    source = _FastaSource(
        fasta, path=path, keys=keys, record_lengths=lengths, kept=np.arange(len(keys)), width=width, skipped=[]
    )
    if n_policy != "zero":
        keep = np.ones(len(keys), dtype=bool)
        for i in range(len(keys)):
            _, seq = source._window(i)
            j = _first_non_acgt(seq)
            if j < 0:
                continue
            if n_policy == "error":
                source.close()
                raise SequenceError(
                    f"{path}: sequence {keys[i]!r} has {seq[j]!r} at position {j + 1} of its "
                    f"{'window' if lengths[i] != width else 'sequence'}, which is not A, C, G or T; use "
                    "n_policy='zero' to encode it as an all-zero column or 'skip' to drop such sequences"
                )
            keep[i] = False
        skipped = [Skipped(keys[i], "letters other than ACGT") for i in np.flatnonzero(~keep)]
        if skipped:
            logger.warning("%s: skipped %d of %d sequences with letters other than ACGT", path, len(skipped), len(keys))
        source = _FastaSource(
            fasta, path=path, keys=keys, record_lengths=lengths, kept=np.flatnonzero(keep), width=width,
            skipped=skipped,
        )
        if not len(source):
            source.close()
            raise SequenceError(
                f"{path}: every sequence has letters other than ACGT, so n_policy='skip' left none; use "
                "n_policy='zero'"
            )
    return source


class _RegionSource(SequenceSource):
    def __init__(self, genome, *, path, chrom_names, chrom, start, strand, names, width, skipped):
        self._fasta = genome
        self._chrom_names = chrom_names
        self._chrom = chrom
        self._start = start
        self._strand = strand
        self._regions = None
        super().__init__(path=path, names=names, length=width, skipped=skipped)

    def _fetch(self, i: int) -> str:
        a = int(self._start[i])
        seq = self._fasta[self._chrom_names[self._chrom[i]]][a : a + self.length]
        if self._strand[i] == b"-":
            seq = reverse_complement_sequence(seq)
        return seq

    @property
    def regions(self) -> dict:
        if self._regions is None:
            chrom_names = np.array(self._chrom_names, dtype=str)
            self._regions = {
                "chrom": chrom_names[self._chrom] if len(self._chrom) else np.array([], dtype=str),
                "start": self._start.copy(),
                "end": self._start + self.length,
                "strand": self._strand.astype(str),
                "name": np.array(self.names, dtype=str),
            }
        return self._regions


def _region_name(chrom: str, start: int, end: int, strand: str) -> str:
    return f"{chrom}:{start}-{end}({strand})"


def open_regions(
    bed,
    genome,
    *,
    width: int,
    center: str = "mid",
    off_chromosome: str = "skip",
    n_policy: str = "zero",
) -> SequenceSource:
    """Open fixed-width windows around BED or narrowPeak regions of a genome as a lazy :class:`SequenceSource`.

    Parameters
    ----------
    bed : str or os.PathLike
        BED (3+ tab-separated columns; name in column 4 and strand ``+``/``-``/``.`` in column 6 when
        present) or narrowPeak (10 columns, summit offset from the start in column 10); plain or gzip.
        Lines starting with ``#``, ``track`` or ``browser`` and blank lines are ignored.
    genome : str or os.PathLike
        FASTA of the genome (plain or bgzip), indexed with pyfaidx.
    width : int
        Window length ``L``.
    center : {"mid", "summit"}
        Centre the window on ``start + (end - start) // 2`` or on ``start + summit`` (narrowPeak only); the
        window starts ``width // 2`` before the centre.
    off_chromosome : {"skip", "error"}
        What to do with windows that run past either end of their chromosome.
    n_policy : {"zero", "skip", "error"}
        Letters other than ACGT in a window (see the module notes).

    Returns
    -------
    SequenceSource
        With ``regions``: ``chrom``, ``start``, ``end``, ``strand``, ``name`` of each kept window.

    Raises
    ------
    RegionError
        A malformed line, an unknown chromosome, no summit with ``center="summit"``, a window off its
        chromosome with ``off_chromosome="error"``, duplicate windows, or no region left.
    SequenceError
        The genome FASTA cannot be read, or a window has a non-ACGT letter with ``n_policy="error"``.
    """
    width = _check_width(width)
    _check_policy(n_policy)
    if center not in ("mid", "summit"):
        raise ValueError(f"center={center!r} is not 'mid' or 'summit'")
    if off_chromosome not in ("skip", "error"):
        raise ValueError(f"off_chromosome={off_chromosome!r} is not 'skip' or 'error'")
    bed = os.fspath(bed)
    genome_path = os.fspath(genome)
    if not os.path.exists(bed):
        raise RegionError(f"region file {bed} does not exist; check the path")
    fasta = open_indexed_fasta(genome_path)
    try:
        return _open_regions(bed, genome_path, fasta, width, center, off_chromosome, n_policy)
    except BaseException:
        fasta.close()
        raise


def _open_regions(bed, genome_path, fasta, width, center, off_chromosome, n_policy):
    chrom_names = list(fasta.keys())
    chrom_index = {c: i for i, c in enumerate(chrom_names)}
    chrom_length = np.array([fasta.faidx.index[c].rlen for c in chrom_names], dtype=np.int64)

    chroms, starts, strands, bed_names, lines, skipped = [], [], [], [], [], []
    n_data = 0
    with _open_text(bed) as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            n_data += 1
            fields = line.split("\t")
            if len(fields) < 3:
                fields = line.split()
            where = f"{bed}, line {line_no}"
            if len(fields) < 3:
                raise RegionError(f"{where}: expected tab-separated chrom, start, end; got {line[:60]!r}")
            chrom = fields[0]
            try:
                start, end = int(fields[1]), int(fields[2])
            except ValueError:
                raise RegionError(
                    f"{where}: start and end must be whole numbers, got {fields[1]!r} and {fields[2]!r}"
                ) from None
            if start < 0 or end < start:
                raise RegionError(f"{where}: start {start} and end {end} must satisfy 0 <= start <= end")
            if chrom not in chrom_index:
                shown = ", ".join(repr(c) for c in chrom_names[:3])
                raise RegionError(
                    f"{where}: chromosome {chrom!r} is not in {genome_path} (it has {shown}...); use the genome "
                    "the regions were called on, or rename the chromosomes to match (e.g. 'chr1' vs '1')"
                )
            strand = fields[5] if len(fields) >= 6 else "."
            if strand not in ("+", "-", "."):
                raise RegionError(f"{where}: strand (column 6) must be '+', '-' or '.', got {strand!r}")
            if center == "summit":
                if len(fields) < 10:
                    raise RegionError(
                        f"{where}: center='summit' needs narrowPeak lines (10 columns, summit in column 10); this "
                        f"line has {len(fields)}; use center='mid'"
                    )
                try:
                    summit = int(fields[9])
                except ValueError:
                    raise RegionError(
                        f"{where}: summit (column 10) must be a whole number, got {fields[9]!r}"
                    ) from None
                if summit < 0 or summit > end - start:
                    raise RegionError(
                        f"{where}: summit offset {summit} is not within the peak (0 to {end - start}); narrowPeak "
                        "uses -1 for 'no summit': use center='mid' for such files"
                    )
                mid = start + summit
            else:
                mid = start + (end - start) // 2
            w_start = mid - width // 2
            w_end = w_start + width
            c = chrom_index[chrom]
            name = fields[3] if len(fields) >= 4 and fields[3] not in ("", ".") else None
            if w_start < 0 or w_end > chrom_length[c]:
                if off_chromosome == "error":
                    raise RegionError(
                        f"{where}: the {width}-base window {chrom}:{w_start}-{w_end} runs off {chrom} (length "
                        f"{chrom_length[c]}); use off_chromosome='skip' to leave such regions out, or a smaller "
                        "width"
                    )
                skipped.append(Skipped(name or _region_name(chrom, w_start, w_end, strand), "off chromosome"))
                continue
            chroms.append(c)
            starts.append(w_start)
            strands.append(strand)
            bed_names.append(name)
            lines.append(line_no)

    if n_data == 0:
        raise RegionError(f"{bed} has no regions; it needs tab-separated lines chrom, start, end")
    if skipped:
        logger.warning(
            "%s: skipped %d of %d regions whose %d-base window runs off its chromosome", bed, len(skipped), n_data,
            width,
        )
    chrom_arr = np.array(chroms, dtype=np.int32)
    start_arr = np.array(starts, dtype=np.int64)
    strand_arr = np.array(strands, dtype="S1")

    names = _names(bed, bed_names, chrom_names, chrom_arr, start_arr, width, strands, lines)
    source = _RegionSource(
        fasta, path=bed, chrom_names=chrom_names, chrom=chrom_arr, start=start_arr, strand=strand_arr,
        names=names, width=width, skipped=skipped,
    )
    if n_policy != "zero":
        keep = np.ones(len(source), dtype=bool)
        n_skipped = 0
        for i in range(len(source)):
            seq = source._fetch(i)
            j = _first_non_acgt(seq)
            if j < 0:
                continue
            if n_policy == "error":
                raise SequenceError(
                    f"{bed}, line {lines[i]}: window {names[i]!r} has {seq[j]!r} at position {j + 1}, which is "
                    "not A, C, G or T; use n_policy='zero' to encode it as an all-zero column or 'skip' to drop "
                    "such regions"
                )
            keep[i] = False
            skipped.append(Skipped(names[i], "letters other than ACGT"))
            n_skipped += 1
        if n_skipped:
            logger.warning("%s: skipped %d regions whose window has letters other than ACGT", bed, n_skipped)
            source = _RegionSource(
                fasta, path=bed, chrom_names=chrom_names, chrom=chrom_arr[keep], start=start_arr[keep],
                strand=strand_arr[keep], names=[nm for nm, k in zip(names, keep) if k], width=width,
                skipped=skipped,
            )
    if len(source) == 0:
        raise RegionError(
            f"{bed}: no region is left ({len(skipped)} skipped: {skipped[0].reason if skipped else ''}); check the "
            "width, the genome and n_policy"
        )
    return source


def _names(bed, bed_names, chrom_names, chrom, start, width, strands, lines) -> list[str]:
    """Column-4 names when every region has a unique one, otherwise window coordinates."""
    if bed_names and all(nm is not None for nm in bed_names) and len(set(bed_names)) == len(bed_names):
        return list(bed_names)
    if any(nm is not None for nm in bed_names):
        logger.warning(
            "%s: column 4 does not give every region a unique name; naming regions chrom:start-end(strand)", bed
        )
    names = [
        _region_name(chrom_names[c], int(s), int(s) + width, st) for c, s, st in zip(chrom, start, strands)
    ]
    if len(set(names)) != len(names):
        seen: dict[str, int] = {}
        for nm, ln in zip(names, lines):
            if nm in seen:
                raise RegionError(
                    f"{bed}, lines {seen[nm]} and {ln}: both give the window {nm}; remove duplicate regions "
                    "(e.g. sort -u) or give each a unique name in column 4"
                )
            seen[nm] = ln
    return names
