"""Variants read from a VCF or a variant-scorer TSV: :func:`read_variants`.

Formats
    VCF (plain, gzip or bgzip): ``##`` meta lines and the ``#CHROM`` header are skipped; columns CHROM, POS
    (1-based), ID, REF, ALT are read, the others ignored. A record with several ALT alleles (``A,T``) gives one
    variant per allele. Symbolic and breakend ALTs (``<DEL>``, ``*``, ``.``, ``A[chr2:5[``) cannot be put in a
    window: they are skipped and counted in a warning.

    TSV (kundajelab variant-scorer's ``chrombpnet`` schema): tab-separated chrom, pos (1-based), ref, alt and,
    optionally, id; further columns are ignored. A first line whose pos is not a whole number is a header;
    lines starting with ``#`` and blank lines are ignored. An empty allele is written ``-`` (an insertion's REF,
    a deletion's ALT), as variant-scorer does.

Alleles are kept as written (no trimming of a shared first base, no left-alignment); letters are A, C, G, T, N
in any case (stored in upper case).

Identifiers
    A variant is named by its ID (VCF column 3, TSV column 5). A variant without one (``.``, empty, or a
    4-column TSV) is named ``chrom:pos:ref:alt`` (1-based pos, ``-`` for an empty allele). An ID shared by
    several variants (a multi-allelic record, or a file split with ``bcftools norm -m-``) is made unique by
    appending ``:ref:alt``. Two variants with the same coordinates and alleles are refused.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
from typing import NamedTuple

import numpy as np

from dnalift.errors import VariantError
from dnalift.io.fasta import open_text
from dnalift.io.source import Skipped

__all__ = ["VariantTable", "read_variants", "variant_label", "SYMBOLIC"]

logger = logging.getLogger(__name__)

SYMBOLIC = "symbolic or breakend ALT allele"
_ALLELE = re.compile(r"^[ACGTNacgtn]*$")
_BREAKEND = re.compile(r"[\[\]]")


class VariantTable(NamedTuple):
    """The variants of a file, in file order (a multi-allelic record's ALTs in their order).

    Attributes
    ----------
    chrom : list of str
    pos : ndarray (m,) int64
        0-based genome position of the first base of REF (VCF POS - 1).
    ref, alt : list of str
        Upper case; ``""`` for an empty allele.
    ids : list of str
        Unique identifiers (see the module notes).
    line : ndarray (m,) int64
        The line of the file each variant comes from (1-based).
    skipped : list of Skipped
        Alleles that were not read (symbolic ALTs).
    kind : str
        ``"vcf"`` or ``"tsv"``.
    """

    chrom: list
    pos: np.ndarray
    ref: list
    alt: list
    ids: list
    line: np.ndarray
    skipped: list
    kind: str


def variant_label(chrom: str, pos: int, ref: str, alt: str) -> str:
    """``chrom:pos:ref:alt`` with the 1-based ``pos`` of REF's first base (``pos`` given 0-based) and ``-`` for
    an empty allele."""
    return f"{chrom}:{int(pos) + 1}:{ref or '-'}:{alt or '-'}"


def _sniff(path: str) -> str:
    with open_text(path) as handle:
        for line in handle:
            if line.startswith(">"):
                raise VariantError(f"{path} looks like a FASTA file; the variants are a VCF or a TSV of chrom, pos, "
                                   f"ref, alt, id (the genome goes to genome=)", argument="variants", path=path)
            if line.strip():
                return "vcf" if line.startswith(("##fileformat=VCF", "#CHROM")) else "tsv"
    raise VariantError(f"{path} is empty; give a VCF or a TSV of chrom, pos, ref, alt, id", argument="variants",
                       path=path)


def _allele(text: str, where: str, what: str, *, dash: bool) -> str:
    if dash and text == "-":
        return ""
    if not text or not _ALLELE.match(text):
        hint = " ('-' for an empty allele)" if dash else ""
        raise VariantError(f"{where}: {what} {text[:30]!r} is not a DNA allele; alleles are letters A, C, G, T, N"
                           f"{hint}", argument="variants")
    return text.upper()


def _position(text: str, where: str) -> int:
    try:
        pos = int(text)
    except ValueError:
        raise VariantError(f"{where}: position {text!r} is not a whole number (1-based)", argument="variants") \
            from None
    if pos < 1:
        raise VariantError(f"{where}: position {pos} must be >= 1 (positions are 1-based)", argument="variants")
    return pos - 1


def _vcf_records(handle, path):
    """``(line, chrom, pos0, id or None, ref, [alt or None for symbolic])`` of each VCF data line."""
    for line_no, line in enumerate(handle, start=1):
        if line.startswith("#") or not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t")
        where = f"{path}, line {line_no}"
        if len(fields) < 5:
            raise VariantError(f"{where}: a VCF line needs tab-separated CHROM, POS, ID, REF, ALT; got "
                               f"{line.strip()[:60]!r}", argument="variants")
        chrom, pos, vid, ref, alts = fields[:5]
        pos = _position(pos, where)
        ref = _allele(ref, where, "REF", dash=False)
        out = []
        for alt in alts.split(","):
            if alt in (".", "*", "") or alt.startswith("<") or _BREAKEND.search(alt):
                out.append(None)
            else:
                out.append(_allele(alt, where, "ALT", dash=False))
        yield line_no, chrom, pos, (None if vid in (".", "") else vid), ref, out


def _tsv_records(handle, path):
    first = True
    for line_no, line in enumerate(handle, start=1):
        if line.startswith("#") or not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t")
        where = f"{path}, line {line_no}"
        if first and len(fields) >= 2 and not fields[1].strip().lstrip("+").isdigit():
            first = False
            continue  # a header
        first = False
        if len(fields) < 4:
            raise VariantError(f"{where}: expected tab-separated chrom, pos (1-based), ref, alt[, id]; got "
                               f"{line.strip()[:60]!r}", argument="variants")
        chrom, pos, ref, alt = (f.strip() for f in fields[:4])
        vid = fields[4].strip() if len(fields) > 4 else ""
        pos = _position(pos, where)
        ref = _allele(ref, where, "ref", dash=True)
        alt = _allele(alt, where, "alt", dash=True)
        yield line_no, chrom, pos, (None if vid in (".", "") else vid), ref, [alt]


def read_variants(path) -> VariantTable:
    """Read the variants of a VCF or a variant-scorer TSV (see the module notes).

    Parameters
    ----------
    path : str or os.PathLike
        Plain or gzip/bgzip-compressed.

    Returns
    -------
    VariantTable

    Raises
    ------
    VariantError
        A missing or empty file, a malformed line, an allele with letters other than ACGTN, REF equal to ALT,
        the same variant twice, or no variant at all.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VariantError(f"variant file {path} does not exist; check the path", argument="variants", path=path)
    try:
        kind = _sniff(path)
        table, skipped = _read(path, kind)
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as exc:
        raise VariantError(f"{path} is not a readable text file ({type(exc).__name__}); the variants are a VCF "
                           f"(plain or bgzip) or a TSV of chrom, pos, ref, alt, id", argument="variants",
                           path=path) from None
    if skipped:
        shown = ", ".join(s.name for s in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        logger.warning("%s: skipped %d symbolic or breakend ALT alleles (%s); only sequence alleles can be scored",
                       path, len(skipped), shown)
    if not table["chrom"]:
        raise VariantError(f"{path} has no variant with sequence alleles; give a VCF or a TSV of chrom, pos "
                           f"(1-based), ref, alt, id", argument="variants", path=path)
    ids = _unique_ids(path, table)
    return VariantTable(table["chrom"], np.asarray(table["pos"], np.int64), table["ref"], table["alt"], ids,
                        np.asarray(table["line"], np.int64), skipped, kind)


def _read(path: str, kind: str) -> tuple[dict, list]:
    """The variants of the file as columns, and the symbolic alleles skipped."""
    table = {"chrom": [], "pos": [], "ref": [], "alt": [], "id": [], "line": []}
    skipped = []
    with open_text(path) as handle:
        records = _vcf_records(handle, path) if kind == "vcf" else _tsv_records(handle, path)
        for line_no, chrom, pos, vid, ref, alts in records:
            for alt in alts:
                if alt is None:
                    skipped.append(Skipped(vid or f"{chrom}:{pos + 1}", SYMBOLIC))
                    continue
                if alt == ref:
                    raise VariantError(f"{path}, line {line_no}: REF and ALT are both {ref or '-'!r}; a variant needs "
                                       f"two different alleles", argument="variants", path=path, line=line_no)
                for key, value in (("chrom", chrom), ("pos", pos), ("ref", ref), ("alt", alt), ("id", vid),
                                   ("line", line_no)):
                    table[key].append(value)
    return table, skipped


def _unique_ids(path: str, table: dict) -> list[str]:
    counts: dict[str, int] = {}
    for vid in table["id"]:
        if vid is not None:
            counts[vid] = counts.get(vid, 0) + 1
    ids, seen = [], {}
    for vid, chrom, pos, ref, alt, line_no in zip(table["id"], table["chrom"], table["pos"], table["ref"],
                                                  table["alt"], table["line"]):
        if vid is None:
            name = variant_label(chrom, pos, ref, alt)
        elif counts[vid] > 1:
            name = f"{vid}:{ref or '-'}:{alt or '-'}"
        else:
            name = vid
        if name in seen:
            raise VariantError(f"{path}, lines {seen[name]} and {line_no}: both give the variant {name!r}; remove the "
                               f"duplicate or give each a unique ID", argument="variants", path=path)
        seen[name] = line_no
        ids.append(name)
    return ids
