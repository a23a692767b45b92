"""Fixed-width windows around BED/narrowPeak regions of a genome, read lazily: :func:`open_regions`.

BED with 3 or more columns (name in column 4 and strand in column 6 when present) or narrowPeak (summit
offset in column 10). Each region becomes a window of ``width`` bases, 0-based half-open, starting at
``start + (end - start) // 2 - width // 2`` (``center="mid"``) or ``start + summit - width // 2``
(``center="summit"``). Windows on the minus strand are reverse-complemented. A window that is not on the
genome (it runs off its chromosome, or its chromosome is not in the genome FASTA) is skipped and counted,
with a warning (``off_genome="skip"``), or stops the run (``"error"``). Regions are named by column 4 when
every line has a unique name there, otherwise ``chrom:start-end(strand)`` of the window (0-based start and
exclusive end, as in BED; strand ``.`` when the file has none).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from dnalift.options import Center, NPolicy, OffGenome, parse_choice
from dnalift.encoding import reverse_complement_sequence
from dnalift.errors import RegionError, SequenceError
from dnalift.io.fasta import check_width, open_indexed_fasta, open_text, rows_with_acgt_only
from dnalift.io.source import SequenceSource, Skipped

__all__ = ["open_regions", "region_name"]

logger = logging.getLogger(__name__)

OFF_CHROMOSOME = "window off its chromosome"
UNKNOWN_CHROMOSOME = "chromosome not in the genome"


class _Lines:
    """The input lines of the kept regions, packed in one buffer (their bytes and 8 more each, no objects)."""

    def __init__(self, blob: bytes, ends: np.ndarray):
        self._blob, self._ends = blob, np.asarray(ends, np.int64)

    def __len__(self) -> int:
        return len(self._ends)

    def text(self, i: int) -> str:
        """Line ``i`` as it was in the file, without its newline."""
        start = int(self._ends[i - 1]) if i > 0 else 0
        return self._blob[start:int(self._ends[i])].decode("utf-8", errors="replace")

    def __getitem__(self, idx) -> np.ndarray:
        """Lines ``idx`` (a slice) as an object array of str."""
        return np.array([self.text(i) for i in range(len(self))[idx]], dtype=object)

    def subset(self, keep: np.ndarray) -> "_Lines":
        lines = [self.text(i).encode("utf-8") for i in np.flatnonzero(keep)]
        return _Lines(b"".join(lines), np.cumsum([len(x) for x in lines], dtype=np.int64))


class _RegionSource(SequenceSource):
    def __init__(self, genome, *, path, chrom_names, chrom, start, strand, names, width, skipped, lines):
        self._fasta = genome
        self._chrom_names = chrom_names
        self._chrom = chrom
        self._start = start
        self._strand = strand
        self._lines = lines
        self._regions = None
        super().__init__(path=path, names=names, length=width, skipped=skipped)

    def _parts(self, i: int) -> tuple[int, str, int]:
        a = int(self._start[i])
        seq = self._fasta[self._chrom_names[self._chrom[i]]][a: a + self.length]
        if self._strand[i] == b"-":
            seq = reverse_complement_sequence(seq)
        return 0, seq, 0

    def _identity(self, i: int) -> str:
        window = f"{self._chrom_names[self._chrom[i]]}:{int(self._start[i])}:{self._strand[i].decode()}"
        return f"{window}\t{self._lines.text(i)}"  # the line too: it goes to the kept regions file

    def subset(self, keep: np.ndarray, skipped) -> "_RegionSource":
        return _RegionSource(self._fasta, path=self.path, chrom_names=self._chrom_names, chrom=self._chrom[keep],
                             start=self._start[keep], strand=self._strand[keep],
                             names=[nm for nm, k in zip(self.names, keep) if k], width=self.length, skipped=skipped,
                             lines=self._lines.subset(keep))

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
                "line": self._lines,
            }
        return self._regions


def region_name(chrom: str, start: int, end: int, strand: str) -> str:
    """``chrom:start-end(strand)``: 0-based start, exclusive end (BED coordinates)."""
    return f"{chrom}:{start}-{end}({strand})"


def open_regions(bed, genome, *, width: int, center: str = "mid", off_genome: str = "skip",
                 n_policy: str = "zero") -> SequenceSource:
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
    off_genome : {"skip", "error"}
        Windows that are not on the genome: past either end of their chromosome, or on a chromosome the
        genome lacks. ``"skip"`` leaves them out (``skipped``, with a warning that counts them).
    n_policy : {"zero", "skip", "error"}
        Letters other than ACGT in a window (see :mod:`dnalift.io.fasta`).

    Returns
    -------
    SequenceSource
        With ``regions``: ``chrom``, ``start``, ``end``, ``strand``, ``name`` of each kept window, and ``line``,
        the input lines of the kept regions (sliced like an array; the kept regions file is made of them).

    Raises
    ------
    RegionError
        A malformed line, no summit with ``center="summit"``, a window not on the genome with
        ``off_genome="error"``, duplicate windows, or no region left.
    SequenceError
        The genome FASTA cannot be read, or a window has a non-ACGT letter with ``n_policy="error"``.
    """
    width = check_width(width)
    n_policy = parse_choice(NPolicy, n_policy, argument="n_policy")
    center = parse_choice(Center, center, argument="center")
    off_genome = parse_choice(OffGenome, off_genome, argument="off_genome")
    bed, genome_path = os.fspath(bed), os.fspath(genome)
    if not os.path.exists(bed):
        raise RegionError(f"region file {bed} does not exist; check the path", argument="regions", path=bed)
    fasta = open_indexed_fasta(genome_path, argument="genome")
    try:
        chrom_names = list(fasta.keys())
        table = _read_bed(bed, genome_path, chrom_names, [fasta.faidx.index[c].rlen for c in chrom_names],
                          width=width, center=center, off_genome=off_genome)
        names = _names(bed, table, chrom_names, width)
        source = _RegionSource(fasta, path=bed, chrom_names=chrom_names, chrom=np.array(table["chrom"], np.int32),
                               start=np.array(table["start"], np.int64), strand=np.array(table["strand"], "S1"),
                               names=names, width=width, skipped=table["skipped"],
                               lines=_Lines(bytes(table["text"]), np.array(table["ends"], np.int64)))
        if n_policy != NPolicy.ZERO:
            source = _apply_n_policy(source, bed, table["line"], n_policy)
        if len(source) == 0:
            reasons = sorted({s.reason for s in source.skipped})
            hint = _unknown_hint(table, chrom_names, genome_path) if UNKNOWN_CHROMOSOME in reasons else \
                "check the width, the genome and n_policy"
            raise RegionError(f"{bed}: no region is left ({len(source.skipped)} skipped: {', '.join(reasons)}); "
                              f"{hint}", argument="regions", path=bed)
        return source
    except BaseException:
        fasta.close()
        raise


def _unknown_hint(table, chrom_names, genome_path) -> str:
    shown = ", ".join(repr(c) for c in chrom_names[:3])
    unknown = ", ".join(repr(c) for c in table["unknown"][:3])
    return (f"the regions are on {unknown}, the genome {genome_path} has {shown}...: use the genome the regions "
            f"were called on, or rename the chromosomes to match (e.g. 'chr1' vs '1')")


def _read_bed(bed, genome_path, chrom_names, chrom_lengths, *, width, center, off_genome) -> dict:
    """Parse the region file: per kept window its chromosome index, start, strand, column-4 name and line."""
    chrom_index = {c: i for i, c in enumerate(chrom_names)}
    table = {"chrom": [], "start": [], "strand": [], "name": [], "line": [], "skipped": [], "unknown": [],
             "text": bytearray(), "ends": []}
    counts = {OFF_CHROMOSOME: 0, UNKNOWN_CHROMOSOME: 0}
    n_data = 0
    with open_text(bed) as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            n_data += 1
            where = f"{bed}, line {line_no}"
            chrom, start, end, strand, name, mid = _parse_line(line, where, center)
            w_start = mid - width // 2
            c = chrom_index.get(chrom)
            reason = None
            if c is None:
                reason = UNKNOWN_CHROMOSOME
                if chrom not in table["unknown"]:
                    table["unknown"].append(chrom)
            elif w_start < 0 or w_start + width > chrom_lengths[c]:
                reason = OFF_CHROMOSOME
            if reason is not None:
                if off_genome == OffGenome.ERROR:
                    raise RegionError(_off_genome_message(where, chrom, w_start, width, genome_path, reason,
                                                          chrom_lengths[c] if c is not None else None),
                                      argument="off_genome", path=bed, line=line_no, reason=reason)
                counts[reason] += 1
                table["skipped"].append(Skipped(name or region_name(chrom, w_start, w_start + width, strand), reason))
                continue
            for key, value in (("chrom", c), ("start", w_start), ("strand", strand), ("name", name),
                               ("line", line_no)):
                table[key].append(value)
            table["text"] += line.encode("utf-8")
            table["ends"].append(len(table["text"]))
    if n_data == 0:
        raise RegionError(f"{bed} has no regions; it needs tab-separated lines chrom, start, end", argument="regions",
                          path=bed)
    if table["skipped"]:
        parts = []
        if counts[UNKNOWN_CHROMOSOME]:
            parts.append(f"{counts[UNKNOWN_CHROMOSOME]} on chromosomes not in {genome_path} "
                         f"({', '.join(table['unknown'][:3])}{' ...' if len(table['unknown']) > 3 else ''})")
        if counts[OFF_CHROMOSOME]:
            parts.append(f"{counts[OFF_CHROMOSOME]} whose {width}-base window runs off its chromosome")
        logger.warning("%s: skipped %d of %d regions: %s; off_genome='error' stops instead", bed,
                       len(table["skipped"]), n_data, ", ".join(parts))
    return table


def _off_genome_message(where, chrom, w_start, width, genome_path, reason, chrom_length) -> str:
    if reason == UNKNOWN_CHROMOSOME:
        return (f"{where}: chromosome {chrom!r} is not in {genome_path}; use the genome the regions were called on, "
                f"or off_genome='skip' to leave such regions out")
    return (f"{where}: the {width}-base window {chrom}:{w_start}-{w_start + width} (0-based) runs off {chrom} "
            f"(length {chrom_length}); use off_genome='skip' to leave such regions out, or a smaller width")


def _parse_line(line: str, where: str, center) -> tuple:
    """``(chrom, start, end, strand, name or None, window centre)`` of one BED line."""
    fields = line.split("\t")
    if len(fields) < 3:
        fields = line.split()
    if len(fields) < 3:
        raise RegionError(f"{where}: expected tab-separated chrom, start, end; got {line[:60]!r}", argument="regions")
    try:
        start, end = int(fields[1]), int(fields[2])
    except ValueError:
        raise RegionError(f"{where}: start and end must be whole numbers, got {fields[1]!r} and {fields[2]!r}",
                          argument="regions") from None
    if start < 0 or end < start:
        raise RegionError(f"{where}: start {start} and end {end} must satisfy 0 <= start <= end", argument="regions")
    strand = fields[5] if len(fields) >= 6 else "."
    if strand not in ("+", "-", "."):
        raise RegionError(f"{where}: strand (column 6) must be '+', '-' or '.', got {strand!r}", argument="regions")
    name = fields[3] if len(fields) >= 4 and fields[3] not in ("", ".") else None
    if center != Center.SUMMIT:
        return fields[0], start, end, strand, name, start + (end - start) // 2
    if len(fields) < 10:
        raise RegionError(f"{where}: center='summit' needs narrowPeak lines (10 columns, summit in column 10); this "
                          f"line has {len(fields)}; use center='mid'", argument="center")
    try:
        summit = int(fields[9])
    except ValueError:
        raise RegionError(f"{where}: summit (column 10) must be a whole number, got {fields[9]!r}",
                          argument="regions") from None
    if summit < 0 or summit > end - start:
        raise RegionError(f"{where}: summit offset {summit} is not within the peak (0 to {end - start}); narrowPeak "
                          "uses -1 for 'no summit': use center='mid' for such files", argument="center")
    return fields[0], start, end, strand, name, start + summit


def _apply_n_policy(source: _RegionSource, bed: str, lines: list, n_policy) -> _RegionSource:
    def refuse(i, seq, j):
        return SequenceError(
            f"{bed}, line {lines[i]}: window {source.names[i]!r} has {seq[j]!r} at position {j} (0-based), "
            "which is not A, C, G or T; use n_policy='zero' to encode it as an all-zero column or "
            "n_policy='skip' to drop such regions", argument="n_policy", path=bed, name=source.names[i],
            position=j)

    keep = rows_with_acgt_only(len(source), source._fetch, n_policy, refuse)
    if keep.all():
        return source
    skipped = list(source.skipped) + [Skipped(source.names[i], "letters other than ACGT")
                                      for i in np.flatnonzero(~keep)]
    logger.warning("%s: skipped %d regions whose window has letters other than ACGT", bed, int((~keep).sum()))
    return source.subset(keep, skipped)


def _names(bed, table, chrom_names, width) -> list[str]:
    """Column-4 names when every region has a unique one, otherwise window coordinates."""
    bed_names = table["name"]
    if bed_names and all(nm is not None for nm in bed_names) and len(set(bed_names)) == len(bed_names):
        return list(bed_names)
    if any(nm is not None for nm in bed_names):
        logger.warning("%s: column 4 does not give every region a unique name; naming regions chrom:start-end(strand)"
                       " (0-based start, exclusive end)", bed)
    names = [region_name(chrom_names[c], int(s), int(s) + width, st)
             for c, s, st in zip(table["chrom"], table["start"], table["strand"])]
    if len(set(names)) != len(names):
        seen: dict[str, int] = {}
        for nm, ln in zip(names, table["line"]):
            if nm in seen:
                raise RegionError(f"{bed}, lines {seen[nm]} and {ln}: both give the window {nm}; remove duplicate "
                                  "regions (e.g. sort -u) or give each a unique name in column 4", argument="regions")
            seen[nm] = ln
    return names
