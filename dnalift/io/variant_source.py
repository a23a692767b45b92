"""Windows around variants, both alleles, read lazily from the genome: :func:`open_variants`.

Window convention
    A variant at 0-based position ``p`` (VCF POS - 1, the first base of REF) gets windows of ``L`` bases whose
    index ``L // 2`` holds the first base of its allele (the middle base for odd ``L``, the right one of the two
    middle bases for even ``L``). Each row is::

        genome[p - L//2 : p]  +  allele  +  genome[p + len(REF) : ...]     cut to L bases

    the left flank and the allele at the same place in both rows, the right end filled from the genome after
    REF (a deletion's row reads further right, an insertion's row stops earlier); an allele longer than
    ``L - L//2`` is cut at the window's end. This is kundajelab variant-scorer's convention (its windows are
    ``genome[p - L//2 : p + L//2]`` with the allele at ``L//2``, for even ``L``). The reference row of an SNV is
    exactly the genome window ``[p - L//2, p - L//2 + L)``.

Rows
    Variant ``k`` gives rows ``2k`` (reference allele) and ``2k + 1`` (alternative allele), named ``ID/ref`` and
    ``ID/alt``, in the order of the file.

Not scored
    A variant whose REF differs from the genome (case ignored), whose window runs off its chromosome, or whose
    chromosome the genome lacks is skipped, counted and named in a warning (``off_genome="skip"``), or stops the
    run (``"error"``).
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np

from dnalift.errors import VariantError, SequenceError
from dnalift.io.fasta import check_width, open_indexed_fasta, rows_with_acgt_only
from dnalift.io.source import SequenceSource, Skipped
from dnalift.io.variants import read_variants, VariantTable
from dnalift.options import NPolicy, OffGenome, parse_choice

__all__ = ["open_variants", "variant_windows", "ALLELE_NAMES", "REF_MISMATCH", "OFF_CHROMOSOME", "UNKNOWN_CHROMOSOME"]

logger = logging.getLogger(__name__)

#: the suffix of each row's name, by allele (0 reference, 1 alternative)
ALLELE_NAMES = ("ref", "alt")
REF_MISMATCH = "REF does not match the genome"
OFF_CHROMOSOME = "window off its chromosome"
UNKNOWN_CHROMOSOME = "chromosome not in the genome"


def _span(pos: int, ref: str, alt: str, width: int) -> tuple[int, int]:
    """The genome bases ``[start, stop)`` both rows of a variant read."""
    half = width // 2
    right = max(0, width - half - min(len(ref), len(alt)))
    return pos - half, pos + len(ref) + right


def variant_windows(genome_span: str, ref: str, alt: str, width: int) -> tuple[str, str]:
    """The reference and alternative rows of a variant from the genome bases it spans (:func:`_span`).

    Parameters
    ----------
    genome_span : str
        ``genome[p - L//2 : stop)`` (see :func:`_span`), REF starting at index ``L // 2``.
    ref, alt : str
        The alleles (``""`` for an empty one).
    width : int
        ``L``.

    Returns
    -------
    (str, str)
        Both of length ``L``.
    """
    half = width // 2
    left, after = genome_span[:half], genome_span[half + len(ref):]
    return (left + ref + after)[:width], (left + alt + after)[:width]


class _RowNames(Sequence):
    """``ID/ref, ID/alt`` for every variant, made when asked (the names of a million variants stay unmade)."""

    def __init__(self, ids: list):
        self._ids = ids

    def __len__(self) -> int:
        return 2 * len(self._ids)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        return f"{self._ids[i // 2]}/{ALLELE_NAMES[i % 2]}"


class _VariantSource(SequenceSource):
    """Rows in pairs (reference, alternative) of every kept variant; see the module notes."""

    def __init__(self, genome, *, path, table: VariantTable, keep: np.ndarray, width: int, skipped):
        self._fasta = genome
        self._table = table
        self._keep = keep  # indices into the table of the kept variants
        self.ids = [table.ids[k] for k in keep]
        self._last = (-1, None)
        super().__init__(path=path, names=_RowNames(self.ids), length=width, skipped=skipped)

    def _pair(self, v: int) -> tuple[str, str]:
        """Both rows of kept variant ``v``, read once for the two rows (the last pair is kept; read as one tuple,
        since the pipeline's reading thread and the main thread may both be here)."""
        last = self._last
        if last[0] == v:
            return last[1]
        t, k = self._table, int(self._keep[v])
        start, stop = _span(int(t.pos[k]), t.ref[k], t.alt[k], self.length)
        pair = variant_windows(self._fasta[t.chrom[k]][start:stop], t.ref[k], t.alt[k], self.length)
        self._last = (v, pair)
        return pair

    def _parts(self, i: int) -> tuple[int, str, int]:
        return 0, self._pair(i // 2)[i % 2], 0

    def _identity(self, i: int) -> str:
        t, k = self._table, int(self._keep[i // 2])
        return f"{t.chrom[k]}:{int(t.pos[k])}:{t.ref[k]}:{t.alt[k]}:{i % 2}"

    def subset(self, keep_variants: np.ndarray, skipped) -> "_VariantSource":
        return _VariantSource(self._fasta, path=self.path, table=self._table, keep=self._keep[keep_variants],
                              width=self.length, skipped=skipped)

    def variants_of(self, start: int, stop: int) -> dict:
        """The variant fields of rows ``[start, stop)``: ``variant_ids``, ``alleles``, ``chrom``, ``pos``, ``ref``,
        ``alt``, ``offset`` arrays (the datasets of :mod:`dnalift.io.store.schema`)."""
        rows = np.arange(start, stop)
        k = self._keep[rows // 2]
        t = self._table
        return {"variant_ids": np.array([t.ids[j] for j in k], dtype=object),
                "alleles": (rows % 2).astype(np.int8),
                "chrom": np.array([t.chrom[j] for j in k], dtype=object), "pos": t.pos[k],
                "ref": np.array([t.ref[j] for j in k], dtype=object), "alt": np.array([t.alt[j] for j in k],
                                                                                     dtype=object),
                "offset": np.full(len(rows), self.length // 2, np.int64)}


def open_variants(path, genome, *, width: int, off_genome: str = "skip", n_policy: str = "zero") -> SequenceSource:
    """Open both alleles' windows of every variant of a VCF or TSV as a lazy :class:`SequenceSource`.

    Parameters
    ----------
    path : str or os.PathLike
        VCF (plain, gzip or bgzip) or variant-scorer TSV (:func:`dnalift.io.variants.read_variants`).
    genome : str or os.PathLike
        FASTA of the genome (plain or bgzip), indexed with pyfaidx.
    width : int
        Window length ``L``.
    off_genome : {"skip", "error"}
        Variants whose REF does not match the genome, whose window runs off its chromosome, or whose chromosome
        the genome lacks: left out with a warning that counts and names them, or refused.
    n_policy : {"zero", "skip", "error"}
        Letters other than ACGT in a window: with ``skip`` both rows of the variant are left out.

    Returns
    -------
    SequenceSource
        ``2 m`` rows for ``m`` kept variants (see the module notes), with ``ids`` (m,) and ``variants_of``.

    Raises
    ------
    VariantError
        A malformed file, a variant not on the genome with ``off_genome="error"``, or no variant left.
    SequenceError
        The genome cannot be read, or a window has a non-ACGT letter with ``n_policy="error"``.
    """
    width = check_width(width)
    off_genome = parse_choice(OffGenome, off_genome, argument="off_genome")
    n_policy = parse_choice(NPolicy, n_policy, argument="n_policy")
    path, genome_path = os.fspath(path), os.fspath(genome)
    table = read_variants(path)
    fasta = open_indexed_fasta(genome_path, argument="genome")
    try:
        keep, skipped = _check_on_genome(path, genome_path, table, fasta, width, off_genome)
        source = _VariantSource(fasta, path=path, table=table, keep=keep, width=width,
                                skipped=list(table.skipped) + skipped)
        if n_policy != NPolicy.ZERO:
            source = _apply_n_policy(source, n_policy)
        if len(source) == 0:
            reasons = sorted({s.reason for s in source.skipped})
            hint = "check the genome (the one the variants were called on), the width and n_policy"
            if UNKNOWN_CHROMOSOME in reasons:
                hint = (f"the variants are on {table.chrom[0]!r}..., {genome_path} has "
                        f"{', '.join(repr(c) for c in list(fasta.keys())[:3])}...: use the genome the variants were "
                        f"called on, or rename the chromosomes to match (e.g. 'chr1' vs '1')")
            raise VariantError(f"{path}: no variant is left ({len(source.skipped)} skipped: {', '.join(reasons)}); "
                               f"{hint}", argument="variants", path=path)
        return source
    except BaseException:
        fasta.close()
        raise


def _check_on_genome(path, genome_path, table, fasta, width, off_genome) -> tuple[np.ndarray, list]:
    """Indices of the variants that can be scored; the others as Skipped, with one warning."""
    lengths = {c: fasta.faidx.index[c].rlen for c in fasta.keys()}
    keep, skipped = [], []
    for k, (chrom, pos, ref, alt) in enumerate(zip(table.chrom, table.pos, table.ref, table.alt)):
        start, stop = _span(int(pos), ref, alt, width)
        if chrom not in lengths:
            reason = UNKNOWN_CHROMOSOME
        elif start < 0 or stop > lengths[chrom]:
            reason = OFF_CHROMOSOME
        elif fasta[chrom][int(pos):int(pos) + len(ref)].upper() != ref:
            reason = REF_MISMATCH
        else:
            keep.append(k)
            continue
        if off_genome == OffGenome.ERROR:
            raise VariantError(_refusal(path, genome_path, table, k, reason, width, lengths.get(chrom)),
                               argument="off_genome", path=path, line=int(table.line[k]), reason=reason)
        skipped.append(Skipped(table.ids[k], reason))
    if skipped:
        counts = {}
        for s in skipped:
            counts[s.reason] = counts.get(s.reason, 0) + 1
        shown = ", ".join(s.name for s in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        logger.warning("%s: %d of %d variants are not scored (%s): %s; off_genome='error' stops instead", path,
                       len(skipped), len(table.ids), ", ".join(f"{n} {r}" for r, n in counts.items()), shown)
    return np.asarray(keep, dtype=np.int64), skipped


def _refusal(path, genome_path, table, k, reason, width, chrom_length) -> str:
    where = f"{path}, line {int(table.line[k])}: variant {table.ids[k]!r}"
    chrom, pos = table.chrom[k], int(table.pos[k])
    if reason == UNKNOWN_CHROMOSOME:
        return (f"{where}: chromosome {chrom!r} is not in {genome_path}; use the genome the variants were called on "
                f"(e.g. 'chr1' vs '1'), or off_genome='skip' to leave such variants out")
    if reason == OFF_CHROMOSOME:
        start, stop = _span(pos, table.ref[k], table.alt[k], width)
        return (f"{where}: its {width}-base window reads {chrom}:{start}-{stop} (0-based), off {chrom} (length "
                f"{chrom_length}); use off_genome='skip' to leave such variants out, or a smaller width")
    return (f"{where}: REF {table.ref[k]!r} is not the genome's base(s) at {chrom}:{pos + 1} (1-based) in "
            f"{genome_path}; use the genome the variants were called on, or off_genome='skip' to leave such variants "
            f"out")


def _apply_n_policy(source: _VariantSource, n_policy) -> _VariantSource:
    def refuse(i, seq, j):
        return SequenceError(
            f"{source.path}: the {ALLELE_NAMES[i % 2]} window of variant {source.ids[i // 2]!r} has {seq[j]!r} at "
            f"position {j} (0-based), which is not A, C, G or T; use n_policy='zero' to encode it as an all-zero "
            f"column or n_policy='skip' to leave such variants out", argument="n_policy", path=source.path,
            name=source.names[i], position=j)

    rows = rows_with_acgt_only(len(source), source._fetch, n_policy, refuse)
    keep = rows[0::2] & rows[1::2]
    if keep.all():
        return source
    skipped = list(source.skipped) + [Skipped(source.ids[v], "letters other than ACGT") for v in np.flatnonzero(~keep)]
    logger.warning("%s: skipped %d variants whose windows have letters other than ACGT", source.path,
                   int((~keep).sum()))
    return source.subset(keep, skipped)
