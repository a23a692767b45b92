"""A :class:`SequenceSource`: sequences of one length fetched on demand, and one pass over them (:meth:`scan`)
that fingerprints their content and counts the sequences worth a warning.

:func:`dnalift.io.fasta.open_fasta` and :func:`dnalift.io.regions.open_regions` return sources; memory holds
only the names and coordinates, never the sequences.

Fingerprint
    ``input_sha256`` (:attr:`SourceScan.sha256`) is the SHA-256 of, for every kept sequence in order, its
    name, a tab, its letters in upper case (with the N padding that ``width`` adds), and for regions a tab
    and ``chrom:start:strand``, a tab and the input line, then a newline. It identifies what is scored, whatever path, copy, or
    compression the file has: resume and merge compare it, not file names.
"""

from __future__ import annotations

import hashlib
import logging
from typing import NamedTuple

import numpy as np

from dnalift.encoding import BAD_CODE, BYTE_TO_CODE, one_hot_encode

__all__ = ["SequenceSource", "Skipped", "SourceScan", "MOSTLY_N"]

logger = logging.getLogger(__name__)

#: a sequence is "mostly N" when more than this fraction of its letters are not A, C, G or T
MOSTLY_N = 0.5


class Skipped(NamedTuple):
    """A sequence or region left out of a :class:`SequenceSource`."""

    name: str
    reason: str


class SourceScan(NamedTuple):
    """What :meth:`SequenceSource.scan` found.

    Attributes
    ----------
    sha256 : str
        The content fingerprint (see the module notes).
    with_u : list of str
        Names of the sequences that contain ``U``/``u`` (RNA?), encoded as all-zero columns like N.
    mostly_n : list of str
        Names of the sequences whose letters are mostly not A, C, G or T (padding from ``width`` not counted).
    invalid : tuple or None
        ``(name, position, character)`` of the first character that is no nucleotide letter (0-based position
        in the sequence as scored), or None.
    """

    sha256: str
    with_u: list
    mostly_n: list
    invalid: tuple | None = None


_U = np.zeros(256, dtype=bool)
_U[[ord("U"), ord("u")]] = True


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
        ``name``, each of shape ``(n,)``, and ``line``, the input lines (sliced like an array); None for FASTA
        sources.
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

    def _parts(self, i: int) -> tuple[int, str, int]:  # pragma: no cover - overridden
        """``(left N padding, letters, right N padding)`` of sequence ``i``."""
        raise NotImplementedError

    def _fetch(self, i: int) -> str:
        left, letters, right = self._parts(i)
        return "N" * left + letters + "N" * right if left or right else letters

    def _identity(self, i: int) -> str:
        """What besides name and letters identifies row ``i`` (regions: the window)."""
        return ""

    def _range(self, start: int, stop: int | None) -> range:
        return range(*slice(start, stop).indices(len(self)))

    def sequences(self, start: int = 0, stop: int | None = None) -> list[str]:
        """Sequences ``start:stop`` as strings (case as in the file, minus-strand windows reverse-complemented).

        Returns
        -------
        list of str
            Each of length :attr:`length`.
        """
        return [self._fetch(i) for i in self._range(start, stop)]

    def one_hot(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """One-hot encoding of sequences ``start:stop``.

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

    def scan(self) -> SourceScan:
        """Read every sequence once: the content fingerprint, and the sequences with U or mostly N.

        Returns
        -------
        SourceScan
        """
        digest = hashlib.sha256()
        with_u, mostly_n, invalid = [], [], None
        for i in range(len(self)):
            left, letters, right = self._parts(i)
            raw = np.frombuffer(letters.encode("ascii", errors="replace"), dtype=np.uint8)
            if invalid is None and raw.size and (BYTE_TO_CODE[raw] == BAD_CODE).any():
                j = int(np.flatnonzero(BYTE_TO_CODE[raw] == BAD_CODE)[0])
                invalid = (self.names[i], left + j, letters[j])
            if raw.size and _U[raw].any():
                with_u.append(self.names[i])
            if raw.size == 0 or np.count_nonzero(BYTE_TO_CODE[raw] > 3) > MOSTLY_N * raw.size:
                mostly_n.append(self.names[i])
            extra = self._identity(i)
            digest.update(f"{self.names[i]}\t{'N' * left}{letters.upper()}{'N' * right}"
                          f"{chr(9) + extra if extra else ''}\n".encode("utf-8", errors="replace"))
        return SourceScan(digest.hexdigest(), with_u, mostly_n, invalid)

    def close(self) -> None:
        """Close the underlying FASTA file."""
        fasta = getattr(self, "_fasta", None)
        if fasta is not None:
            fasta.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
