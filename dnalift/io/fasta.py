"""Sequences from FASTA files, read lazily with pyfaidx, and the checks that turn a bad FASTA into one line.

:func:`open_fasta` returns a :class:`~dnalift.io.source.SequenceSource`. Regions on a genome are in
:mod:`dnalift.io.regions` (:func:`~dnalift.io.regions.open_regions`).

FASTA
    Plain or bgzip-compressed (bgzip needs Biopython, as pyfaidx does; plain gzip cannot be indexed and is
    refused with the command that converts it). A record's name is the first word of its ``>`` line.
    Lowercase is accepted. Every line of a record but its last must have one length (what ``samtools
    faidx`` needs too); a blank line inside a record is named with its line number. All records must have
    one length unless ``width`` is given: then longer records are centre-cropped (``(len - width) // 2``
    bases dropped on the left, the rest on the right) and shorter ones padded with ``N`` (``(width - len)
    // 2`` on the left, the rest on the right).

N policy
    ``n_policy`` is that of :mod:`dnalift.encoding`: ``"zero"`` encodes non-ACGT letters as all-zero
    columns; ``"skip"`` drops the sequences that contain any (listed in ``skipped``, count logged);
    ``"error"`` refuses them. ``"skip"`` and ``"error"`` read every sequence once when the source is
    opened. The ``N`` padding added by ``width`` does not count. Positions in messages are 0-based.
"""

from __future__ import annotations

import gzip
import logging
import os

import numpy as np

from dnalift.options import NPolicy, parse_choice
from dnalift.encoding import BYTE_TO_CODE
from dnalift.errors import CompressionError, FastaFormatError, OptionError, SequenceError
from dnalift.io import faidx
from dnalift.io.source import SequenceSource, Skipped

__all__ = ["SequenceSource", "Skipped", "open_fasta", "open_indexed_fasta", "sniff",
           "open_text"]

logger = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
#: the empty block that ends every complete BGZF file (SAM/BAM specification, 4.1.2)
_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
#: compressions pyfaidx cannot read: their magic bytes, the tool that undoes them, and their usual suffix
_COMPRESSED = ((b"BZh", "bzip2", ".bz2"), (b"\xfd7zXZ\x00", "xz", ".xz"), (b"\x28\xb5\x2f\xfd", "zstd", ".zst"))
_BINARY = ((b"PK\x03\x04", "a zip archive (PyTorch model files are zip archives)"),
           (b"\x89HDF", "an HDF5 file"), (b"\x80", "a pickle (a torch.save file?)"))


def sniff(path) -> str:
    """What a file looks like from its first bytes: ``"fasta"``, ``"gzip"``, ``"bgzip"``, ``"text"`` (not
    starting with ``>``), ``"empty"`` or ``"binary"``."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if not head.strip():
        return "empty"
    if head[:2] == _GZIP_MAGIC:
        return "bgzip" if _is_bgzf_header(head) else "gzip"
    if b"\x00" in head or any(head.startswith(magic) for magic, _ in _BINARY) or \
            any(head.startswith(magic) for magic, _, _ in _COMPRESSED):
        return "binary"
    try:
        text = head.decode("utf-8", errors="strict") if len(head) < 4096 else head[:-4].decode("utf-8")
    except UnicodeDecodeError:
        return "binary"
    return "fasta" if text.lstrip().startswith(">") else "text"


def _is_bgzf_header(head: bytes) -> bool:
    """A gzip member with the FEXTRA flag and a ``BC`` subfield: a BGZF block."""
    return len(head) >= 18 and head[3] & 4 and head[12:14] == b"BC"


def open_text(path: str):
    """A text handle on a plain or gzip-compressed file."""
    with open(path, "rb") as handle:
        compressed = handle.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rt") if compressed else open(path)


def _check_file(path: str, argument: str) -> str:
    """The kind of a FASTA file (``sniff``) after the checks that need no parser."""
    if not os.path.exists(path):
        raise SequenceError(f"FASTA file {path} does not exist; check the path", argument=argument, path=path)
    if os.path.isdir(path):
        raise SequenceError(f"{path} is a folder, not a FASTA file; give the path of the .fa file",
                            argument=argument, path=path)
    kind = "empty" if os.path.getsize(path) == 0 else sniff(path)
    if kind == "empty":
        raise SequenceError(f"FASTA file {path} is empty; it needs '>name' lines each followed by a sequence",
                            argument=argument, path=path)
    if kind == "binary":
        with open(path, "rb") as handle:
            head = handle.read(8)
        for magic, tool, suffix in _COMPRESSED:
            if head.startswith(magic):
                raise CompressionError(f"{path} is compressed with {tool}, which cannot be indexed; decompress it "
                                       f"({tool} -d {path}) or recompress it with bgzip ({tool} -dc {path} | bgzip > "
                                       f"{path[:-len(suffix)] if path.endswith(suffix) else path}.gz)",
                                       argument=argument, path=path, kind=tool)
        what = next((w for magic, w in _BINARY if head.startswith(magic)), "a binary file")
        raise FastaFormatError(f"{path} is {what}, not a FASTA file; give a text file of '>name' lines and "
                               f"sequences", argument=argument, path=path, kind="binary")
    if kind == "text":
        raise FastaFormatError(f"{path} is not a FASTA file: it does not start with a '>name' line",
                               argument=argument, path=path, kind="text")
    if kind in ("gzip", "bgzip") and not path.lower().endswith((".gz", ".bgz")):
        raise CompressionError(f"{path} is gzip-compressed but its name does not end in .gz; rename it to end "
                               f"in .gz, or decompress it with gunzip", argument=argument, path=path, kind="name")
    if kind == "gzip":
        raise CompressionError(f"{path} is compressed with plain gzip, which cannot be indexed; decompress it "
                               f"(gunzip {path}) or recompress it with bgzip (gunzip -c {path} | bgzip > "
                               f"{path[:-3]}.bgz.gz)", argument=argument, path=path, kind="gzip")
    if kind == "bgzip":
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - len(_BGZF_EOF)))
            if handle.read() != _BGZF_EOF:
                raise CompressionError(f"{path} is a truncated bgzip file (it lacks the end-of-file block): the "
                                       f"download or copy was cut off; fetch or compress it again",
                                       argument=argument, path=path, kind="truncated")
    return kind


def open_indexed_fasta(path, *, argument: str = "fasta"):
    """Open a FASTA file with pyfaidx, turning every way it can fail into a one-line :class:`SequenceError`.

    The ``.fai`` (and ``.gzi``) index is checked against the file before it is used, and written next to the
    file or in the cache folder (:mod:`dnalift.io.faidx`).

    Parameters
    ----------
    path : str or os.PathLike
        Plain or bgzip-compressed FASTA.
    argument : str
        The API argument the file was given as (``"fasta"``, ``"genome"``, ``"reference"``), for messages.

    Returns
    -------
    pyfaidx.Fasta
        Opened with ``as_raw=True`` (slices are ``str``), names as the first word of each ``>`` line.

    Raises
    ------
    SequenceError
        Missing, empty, or duplicate names; :class:`~dnalift.errors.FastaFormatError` for binary or non-FASTA
        content, blank lines or uneven lines inside a record; :class:`~dnalift.errors.CompressionError` for
        plain gzip, a truncated bgzip file, or bgzip without Biopython.
    """
    path = os.fspath(path)
    kind = _check_file(path, argument)
    bgzip = kind == "bgzip"
    plan = faidx.plan_index(path, bgzip=bgzip)
    for _ in range(4):  # the index beside the file, a private one in the cache, a fresh private one
        try:
            fasta = _open_pyfaidx(path, argument, plan.kwargs(bgzip))
        except OSError as exc:  # the folder looked writable but is not (ACLs, network file systems)
            if "may not be writable" not in str(exc) or plan.private:
                raise
            plan = faidx.use_private(path, f"cannot write {plan.fai}")
            continue
        problem = faidx.index_problem(fasta.faidx) if plan.checked else None
        if problem is None:
            break
        fasta.close()
        faidx.discard(plan)
        plan = faidx.use_private(path, f"the index {plan.fai} does not match {path}: {problem}")
    if len(fasta.keys()) == 0:
        fasta.close()
        raise SequenceError(f"FASTA file {path} has no sequences; it needs '>name' lines each followed by a "
                            f"sequence", argument=argument, path=path)
    return fasta


def _open_pyfaidx(path: str, argument: str, index: dict):
    """``pyfaidx.Fasta`` on ``path`` with the index files ``index``; every way it fails is one line."""
    import pyfaidx

    try:
        return pyfaidx.Fasta(path, as_raw=True, sequence_always_upper=False, **index)
    except ImportError:
        raise CompressionError(f"{path} is bgzip-compressed; reading it needs Biopython (pip install biopython), "
                               f"or decompress it with gunzip", argument=argument, path=path,
                               kind="needs_biopython") from None
    except pyfaidx.UnsupportedCompressionFormat:
        raise CompressionError(f"{path} is compressed in a way pyfaidx cannot index; decompress it with gunzip",
                               argument=argument, path=path, kind="gzip") from None
    except (pyfaidx.FastaIndexingError, RuntimeError) as exc:  # pyfaidx raises RuntimeError for some layouts
        raise _layout_error(path, argument, exc) from None
    except ValueError as exc:
        if "Duplicate key" not in str(exc):
            raise
        dups = _duplicate_names(path)
        shown = ", ".join(repr(d) for d in dups[:5]) + (f" and {len(dups) - 5} more" if len(dups) > 5 else "")
        raise SequenceError(f"{path} has duplicate sequence names: {shown}; make the names (first word of each "
                            f"'>' line) unique", argument=argument, path=path, names=dups[:5]) from None


def _duplicate_names(path: str) -> list[str]:
    import collections

    counts = collections.Counter()
    with open_text(path) as handle:
        for line in handle:
            if line.startswith(">"):
                words = line[1:].split()
                counts[words[0] if words else ""] += 1
    return [name for name, k in counts.items() if k > 1]


def _layout_error(path: str, argument: str, exc: BaseException) -> FastaFormatError:
    """What is wrong with the lines of a FASTA that pyfaidx could not index (read only on this failure path)."""
    record, width, last, blank, where = None, None, None, None, "after"
    with open_text(path) as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if blank is not None and line.strip():
                where = "after" if line.startswith(">") else "inside"
                break
            if line.startswith(">") and not line[1:].split():
                return FastaFormatError(f"{path}, line {number}: a '>' line without a name; give every record a name "
                                        f"(the first word after '>')", argument=argument, path=path, line=number)
            if line.startswith(">"):
                record, width, last = (line[1:].split() or [""])[0], None, None
            elif record is not None and not line.strip():
                blank = number
            elif record is not None:
                if width is not None and last != width:
                    return FastaFormatError(
                        f"{path}, line {number - 1}: a line of {last} letters inside record {record!r}, whose lines "
                        f"have {width}; every line of a record but the last must have one length: rewrap the file "
                        f"(e.g. seqkit seq -w 60)", argument=argument, path=path, line=number - 1, record=record)
                width, last = width or len(line), len(line)
    if blank is not None:
        return FastaFormatError(f"{path}, line {blank}: a blank line {where} record {record!r}; FASTA indexes allow "
                                f"no blank lines: remove them (e.g. sed -i '/^$/d' {path})", argument=argument,
                                path=path, line=blank, record=record)
    detail = " ".join(str(exc).split()).split("Please report")[0].strip()
    return FastaFormatError(f"{path} is not a valid FASTA file ({detail}); check its '>name' lines and sequences",
                            argument=argument, path=path)


def _first_non_acgt(seq: str) -> int:
    """Index of the first letter of ``seq`` that is not A, C, G or T (any case), or -1."""
    raw = np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)
    hit = np.flatnonzero(BYTE_TO_CODE[raw] > 3)
    return int(hit[0]) if hit.size else -1


def rows_with_acgt_only(count: int, fetch, n_policy, refuse) -> np.ndarray:
    """Which of ``count`` sequences hold only A, C, G and T, for the N policies ``skip`` and ``error``.

    ``fetch(i)`` gives sequence ``i`` (str); under ``NPolicy.ERROR`` the first one with another letter raises
    ``refuse(i, seq, j)``, an exception naming it and its position ``j``.

    Returns
    -------
    ndarray of bool, shape (count,)
    """
    keep = np.ones(count, dtype=bool)
    for i in range(count):
        seq = fetch(i)
        j = _first_non_acgt(seq)
        if j < 0:
            continue
        if n_policy == NPolicy.ERROR:
            raise refuse(i, seq, j)
        keep[i] = False
    return keep


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
            return 0, self._fasta[key][a: a + self.length]
        return (self.length - size) // 2, self._fasta[key][:] if size else ""

    def _parts(self, i: int) -> tuple[int, str, int]:
        left, seq = self._window(int(self._kept[i]))
        return left, seq, self.length - len(seq) - left


def check_width(width, argument: str = "width") -> int:
    """``width`` as a positive int; OptionError otherwise."""
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise OptionError(f"{argument} must be a positive integer, got {width!r}", argument=argument, value=width)
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
    n_policy = parse_choice(NPolicy, n_policy, argument="n_policy")
    if width is not None:
        width = check_width(width)
    path = os.fspath(path)
    fasta = open_indexed_fasta(path)
    keys = list(fasta.keys())
    lengths = np.array([fasta.faidx.index[k].rlen for k in keys], dtype=np.int64)
    try:
        _refuse_empty_records(path, keys, lengths)
        width = _common_width(path, keys, lengths, width)
        kept, skipped = np.arange(len(keys)), []
        if n_policy != NPolicy.ZERO:
            kept, skipped = _apply_n_policy(fasta, path, keys, lengths, width, n_policy)
    except BaseException:
        fasta.close()
        raise
    return _FastaSource(fasta, path=path, keys=keys, record_lengths=lengths, kept=kept, width=width, skipped=skipped)


def _refuse_empty_records(path, keys, lengths) -> None:
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        shown = ", ".join(repr(keys[i][:60]) for i in empty[:3]) + (f" and {empty.size - 3} more" if empty.size > 3
                                                                    else "")
        raise SequenceError(f"{path}: record {shown} {'is' if empty.size == 1 else 'are'} empty (no bases after the "
                            f"'>' line); remove {'it' if empty.size == 1 else 'them'} or add the sequence",
                            argument="fasta", path=path, names=[keys[i] for i in empty[:3]])


def _common_width(path, keys, lengths, width) -> int:
    if width is not None:
        return width
    odd = np.flatnonzero(lengths != lengths[0])
    if odd.size:
        shown = ", ".join(f"{keys[i]!r} has {lengths[i]}" for i in odd[:3])
        more = f" ({odd.size - 3} more differ)" if odd.size > 3 else ""
        raise SequenceError(f"{path}: sequences differ in length: {keys[0]!r} has {lengths[0]} bases but {shown}"
                            f"{more}; give width= to centre-crop or N-pad them to one length", argument="width",
                            path=path)
    return int(lengths[0])


def _apply_n_policy(fasta, path, keys, lengths, width, n_policy):
    probe = _FastaSource(fasta, path=path, keys=keys, record_lengths=lengths, kept=np.arange(len(keys)),
                         width=width, skipped=[])

    def refuse(i, seq, j):
        return SequenceError(
            f"{path}: sequence {keys[i]!r} has {seq[j]!r} at position {j} (0-based) of its "
            f"{'window' if lengths[i] != width else 'sequence'}, which is not A, C, G or T; use "
            "n_policy='zero' to encode it as an all-zero column or n_policy='skip' to drop such sequences",
            argument="n_policy", path=path, name=keys[i], position=j)

    keep = rows_with_acgt_only(len(keys), lambda i: probe._window(i)[1], n_policy, refuse)
    skipped = [Skipped(keys[i], "letters other than ACGT") for i in np.flatnonzero(~keep)]
    if skipped:
        logger.warning("%s: skipped %d of %d sequences with letters other than ACGT", path, len(skipped), len(keys))
    if not keep.any():
        raise SequenceError(f"{path}: every sequence has letters other than ACGT, so n_policy='skip' left none; use "
                            "n_policy='zero'", argument="n_policy", path=path)
    return np.flatnonzero(keep), skipped
