"""The ``.fai`` (and ``.gzi``) index of a FASTA file: where it is kept, and the check that it describes the file.

pyfaidx trusts an index that is not older than its FASTA; a FASTA rewritten with ``cp -p`` or ``rsync -a`` keeps
its old modification time, and the old index then gives one record's bases under another's name. dnalift uses
no index it has not checked against the file:

- the index (and for bgzip the ``.gzi``) must not be older than the FASTA, must parse, and must have one line
  per record of the file as read at the index's offsets: every record's ``>name`` line ends where the
  index says its bases start, the bases of one record end where the next ``>`` line begins (so every length
  agrees), and nothing but white space follows the last record. That reads a few bytes per record, never the
  bases.
- an index that fails the check is left as it is (it is not dnalift's file) and a private index is built in the
  cache folder (an info line says why and where).

Where a new index goes
    Beside the FASTA (``FILE.fai``, and ``FILE.gzi`` for bgzip), as samtools and pyfaidx put it, when that
    folder can be written; otherwise in the cache folder ``$XDG_CACHE_HOME/dnalift/faidx`` (default
    ``~/.cache/dnalift/faidx``; the system's temporary folder when neither can be written), under a name keyed
    by the FASTA's absolute path, size and modification time, so a changed FASTA never meets an old index.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile

__all__ = ["IndexPlan", "plan_index", "index_problem", "cache_folder"]

logger = logging.getLogger(__name__)

#: bytes read after the last record (more than this is not white space left by an editor)
_TAIL = 4096


class IndexPlan:
    """Where pyfaidx is to read (or write) the index of one FASTA.

    Attributes
    ----------
    fai, gzi : str
        The index files (``gzi`` only matters for bgzip).
    private : bool
        The index is dnalift's own, in the cache folder.
    checked : bool
        The index exists and must be checked against the file once opened (a new index needs no check).
    """

    def __init__(self, fai: str, gzi: str, *, private: bool, checked: bool):
        self.fai, self.gzi, self.private, self.checked = fai, gzi, private, checked

    def kwargs(self, bgzip: bool) -> dict:
        """pyfaidx's ``indexname`` (and ``gzi_indexname``) arguments."""
        return {"indexname": self.fai, **({"gzi_indexname": self.gzi} if bgzip else {})}


def cache_folder() -> str:
    """``$XDG_CACHE_HOME/dnalift/faidx`` (default ``~/.cache/dnalift/faidx``), made when missing; the system's
    temporary folder (per user) when it cannot be made."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for folder in (os.path.join(base, "dnalift", "faidx"),
                   os.path.join(tempfile.gettempdir(), f"dnalift-faidx-{os.getuid() if hasattr(os, 'getuid') else 0}")):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    raise OSError(f"cannot write an index for the FASTA: neither {base} nor {tempfile.gettempdir()} can be written")


def _private(path: str) -> tuple[str, str]:
    stat = os.stat(path)
    key = hashlib.sha256(f"{os.path.abspath(path)}\t{stat.st_size}\t{stat.st_mtime_ns}".encode()).hexdigest()[:20]
    stem = os.path.join(cache_folder(), f"{key}-{os.path.basename(path)}")
    return stem + ".fai", stem + ".gzi"


def _older(index: str, path: str) -> bool:
    return os.path.getmtime(index) < os.path.getmtime(path)


def plan_index(path: str, *, bgzip: bool) -> IndexPlan:
    """Where the index of ``path`` is (or will be): beside it when it is there and not older than the FASTA,
    or when the folder can be written; otherwise in the cache folder."""
    fai, gzi = path + ".fai", path + ".gzi"
    present = os.path.exists(fai) and (not bgzip or os.path.exists(gzi))
    if present:
        stale = [p for p in ((fai, gzi) if bgzip else (fai,)) if _older(p, path)]
        if stale:
            return use_private(path, f"{stale[0]} is older than {path}")
        if not _parses(fai):
            return use_private(path, f"{fai} is not a FASTA index")
        return IndexPlan(fai, gzi, private=False, checked=True)
    if os.access(os.path.dirname(os.path.abspath(path)), os.W_OK) and not os.path.exists(fai):
        logger.info("indexing %s: writing %s%s", path, fai, f" and {gzi}" if bgzip else "")
        return IndexPlan(fai, gzi, private=False, checked=False)
    if os.path.exists(fai):  # bgzip: pyfaidx would rewrite an index it cannot check without its .gzi
        return use_private(path, f"{fai} has no {gzi} beside it")
    return use_private(path, f"{os.path.dirname(os.path.abspath(path))} cannot be written")


def _parses(fai: str) -> bool:
    """Whether ``fai`` has the lines of a FASTA index: a name and four (or five) whole numbers."""
    try:
        with open(fai, encoding="utf-8") as handle:
            for line in handle:
                fields = line.rstrip("\r\n").split("\t")
                if len(fields) not in (5, 6) or not all(f.isdigit() for f in fields[1:]) or int(fields[3]) < 1 \
                        and int(fields[1]) > 0:
                    return False
    except (OSError, UnicodeDecodeError):
        return False
    return True


def use_private(path: str, reason: str) -> IndexPlan:
    """The private index of ``path`` in the cache folder (checked when it exists: it may be left half-written)."""
    fai, gzi = _private(path)
    exists = os.path.exists(fai) and _parses(fai)
    logger.info("%s; %s the index of %s in %s", reason, "using" if exists else "writing", path, fai)
    return IndexPlan(fai, gzi, private=True, checked=exists)


def discard(plan: IndexPlan) -> None:
    """Remove a private index that failed its check (never an index beside the user's FASTA)."""
    if plan.private:
        for p in (plan.fai, plan.gzi):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def index_problem(faidx) -> str | None:
    """What is wrong with an opened pyfaidx index, read against its file, or None when it describes the file.

    Parameters
    ----------
    faidx : pyfaidx.Faidx
        Opened (plain or bgzip); ``faidx.index`` holds one ``IndexRecord`` per record.

    Returns
    -------
    str or None
        e.g. ``"record 'a' starts at byte 3 but the line before it is '>b'"``.
    """
    read = _reader(faidx)
    records = sorted(faidx.index.items(), key=lambda item: item[1].offset)
    end = 0
    if not records:
        return None
    for name, rec in records:
        gap = rec.offset - end
        head = read(end, min(max(gap, 0), len(name) + 4)).lstrip(b"\r\n")
        want = b">" + name.encode("utf-8", errors="replace")
        if gap <= 0 or not head.startswith(want) or head[len(want):len(want) + 1] not in (b" ", b"\t", b"\r", b"\n"):
            shown = head.split(b"\n")[0][: len(want) + 20].decode("utf-8", errors="replace")
            return f"the index puts record {name!r} at byte {rec.offset}, where the file has {shown!r}"
        if read(rec.offset - 1, 1) != b"\n":
            return f"the index puts record {name!r} at byte {rec.offset}, which does not start a line"
        end = rec.bend
    tail = read(end, _TAIL + 1)
    if tail.strip() or len(tail) > _TAIL:
        return f"the file goes on after the last record the index has ({records[-1][0]!r}, {records[-1][1].rlen} bases)"
    return None


def _reader(faidx):
    """``read(offset, n) -> bytes`` at uncompressed offsets of the file pyfaidx opened."""
    handle = faidx.file
    if not getattr(faidx, "_bgzf", False):
        import mmap

        try:
            view = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError):  # an empty file cannot be mapped
            view = b""
        return lambda offset, n: view[max(offset, 0): max(offset, 0) + n]
    import bisect

    from Bio.bgzf import make_virtual_offset

    blocks = faidx.gzi_index
    starts = [b.ustart for b in blocks]

    def read_bgzf(offset, n):
        block = blocks[max(bisect.bisect_right(starts, offset) - 1, 0)]
        handle.seek(make_virtual_offset(block.cstart, offset - block.ustart))
        return handle.read(n)

    return read_bgzf
