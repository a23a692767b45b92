"""Reference inputs for DeepLIFT, every kind built by one factory (:func:`make_references`).

The kinds: dinucleotide shuffles (:func:`dinucleotide_shuffle`, in :mod:`dnalift.references.shuffle`), expected
frequencies (:func:`expected_frequency_references`), zeros (:func:`zero_references`), or a FASTA file of
references (:class:`FastaReferences`, also :func:`references_from_fasta`). Each function takes one-hot
sequences ``X`` of shape ``(m, 4, L)`` (channels A, C, G, T; an all-zero column is ``N``) as a numpy array or a
torch tensor and returns the same kind: references of shape ``(m, r, 4, L)``, ``r`` references per sequence.

N columns
    An all-zero column of ``X`` (``N`` or another IUPAC letter) stays all-zero in every built-in reference,
    at the same position. Its difference from the reference is then zero, so it gets no contribution.

A FASTA of references has one of two layouts, chosen by one rule (:class:`FastaReferences`): when some
record is named ``NAME/k`` (``k`` a number) for a ``NAME`` among the sequences scored, every sequence has
its own references ``NAME/0 .. NAME/{r-1}`` (the same ``r`` for all); otherwise every record is one
reference, shared by all sequences.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Sequence

import numpy as np

from dnalift.options import ReferenceMethod
from dnalift.errors import ReferenceInputError
from dnalift.references.arrays import check_int, is_tensor, letter_codes
from dnalift.references.shuffle import dinucleotide_shuffle

__all__ = [
    "dinucleotide_shuffle",
    "expected_frequency_references",
    "zero_references",
    "references_from_fasta",
    "FastaReferences",
    "References",
    "make_references",
]

logger = logging.getLogger(__name__)

def _constant_references(codes: np.ndarray, columns: np.ndarray, like):
    """``(m, 1, 4, L)`` float32 references with column ``columns[i]`` at the ACGT positions of sequence i."""
    present = (codes < 4).astype(np.float32)  # (m, L)
    refs = columns.astype(np.float32)[:, None, :, None] * present[:, None, None, :]
    return _like(refs, like)


def _like(array: np.ndarray, X):
    if is_tensor(X):
        import torch

        return torch.from_numpy(np.ascontiguousarray(array)).to(device=X.device)
    return array


def expected_frequency_references(X, *, method="uniform"):
    """References made of a constant expected-frequency column.

    Parameters
    ----------
    X : numpy.ndarray or torch.Tensor, shape (m, 4, L)
        One-hot sequences (channels A, C, G, T; all-zero columns are N).
    method : {"uniform", "gc"} or tuple of 4 floats
        ``"uniform"``: 0.25 for each base. ``"gc"``: each sequence's own GC fraction ``g`` over its ACGT
        columns, the column ``((1-g)/2, g/2, g/2, (1-g)/2)``; a sequence without ACGT columns gets zeros.
        A tuple ``(a, c, g, t)``: these frequencies (non-negative, summing to 1); for the genome's GC
        content ``g`` pass ``((1-g)/2, g/2, g/2, (1-g)/2)``.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (m, 1, 4, L), float32
        Same kind (and device) as ``X``. N columns of ``X`` are all zero in the reference too.

    Raises
    ------
    ReferenceInputError
        ``X`` is not one-hot, or ``method`` is not one of the above.
    """
    codes = letter_codes(X)
    m = codes.shape[0]
    if isinstance(method, str):
        if method == "uniform":
            columns = np.full((m, 4), 0.25)
        elif method == "gc":
            counts = np.stack([(codes == b).sum(axis=1) for b in range(4)], axis=1).astype(np.float64)
            total = counts.sum(axis=1)
            gc = np.divide(counts[:, 1] + counts[:, 2], total, out=np.zeros(m), where=total > 0)
            at = np.where(total > 0, 1.0 - gc, 0.0)
            columns = np.stack([at / 2, gc / 2, gc / 2, at / 2], axis=1)
        else:
            raise ReferenceInputError(
                f"unknown expected-frequency method {method!r}; use 'uniform', 'gc' or a tuple of 4 frequencies "
                "(A, C, G, T)"
            )
    else:
        try:
            freqs = np.asarray(method, dtype=np.float64)
        except (TypeError, ValueError):
            freqs = None
        if freqs is None or freqs.shape != (4,) or not np.all(np.isfinite(freqs)):
            raise ReferenceInputError(
                f"expected frequencies must be 4 numbers (A, C, G, T), got {method!r}"
            )
        if (freqs < 0).any() or abs(freqs.sum() - 1.0) > 1e-6:
            raise ReferenceInputError(
                f"expected frequencies {tuple(freqs.tolist())} must be non-negative and sum to 1 "
                f"(they sum to {freqs.sum():.6g})"
            )
        columns = np.broadcast_to(freqs, (m, 4))
    return _constant_references(codes, np.asarray(columns), X)


def zero_references(X):
    """All-zero references.

    Parameters
    ----------
    X : numpy.ndarray or torch.Tensor, shape (m, 4, L)
        One-hot sequences.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (m, 1, 4, L), float32
        Zeros, same kind (and device) as ``X``.
    """
    if getattr(X, "ndim", None) != 3 or X.shape[1] != 4:
        raise ReferenceInputError(
            f"X has shape {tuple(getattr(X, 'shape', ()))} but references are built from one-hot sequences of "
            "shape (n, 4, length)"
        )
    return _like(np.zeros((X.shape[0], 1, 4, X.shape[2]), dtype=np.float32), X)



class FastaReferences:
    """References read from a FASTA file, in the layout the file has (see the module notes).

    Parameters
    ----------
    path : path
        FASTA file (plain, or bgzip-compressed with Biopython installed).
    length : int
        Length ``L`` of the sequences; every reference used must have exactly this length.
    names : sequence of str, optional
        Names of all the sequences that will be scored. Without names every record is a shared reference.

    Attributes
    ----------
    per_sequence : bool
    n_refs : int
        References per sequence.

    Raises
    ------
    ReferenceInputError
        A record has the wrong length, a sequence has no references or a different number than the others.
    SequenceError
        The file is missing or not a FASTA.
    """

    def __init__(self, path, *, length: int, names: Sequence[str] | None = None):
        from dnalift.io.fasta import open_indexed_fasta  # io is imported only when a file is read

        self.path = os.fspath(path)
        self.length = check_int(length, "length", 1)
        self._fasta = open_indexed_fasta(self.path, argument="reference")
        try:
            records = list(self._fasta.keys())
            self._sizes = {key: self._fasta.faidx.index[key].rlen for key in records}
            numbered: dict[str, dict[int, str]] = {}
            for key in records:
                base, sep, k = key.rpartition("/")
                if sep and k.isdigit():
                    numbered.setdefault(base, {})[int(k)] = key
            names = list(names) if names is not None else None
            self.per_sequence = names is not None and not set(numbered).isdisjoint(names)
            if self.per_sequence:
                self._numbered = numbered
                self.n_refs = self._check_per_sequence(names)
                self.shared = None
                logger.info("%s: %d references per sequence (records NAME/0 ... NAME/%d)", self.path, self.n_refs,
                            self.n_refs - 1)
            else:
                self.shared = self._encode(records)
                self.n_refs = len(records)
                logger.info("%s: %d references shared by every sequence", self.path, self.n_refs)
        except BaseException:
            self.close()
            raise

    def _encode(self, keys: list[str]) -> np.ndarray:
        from dnalift.encoding import one_hot_encode

        for key in keys:
            if self._sizes[key] != self.length:
                raise ReferenceInputError(
                    f"{self.path}: reference {key!r} has length {self._sizes[key]} but the sequences have length "
                    f"{self.length}; make every reference as long as the sequences", argument="reference",
                    path=self.path, record=key)
        return one_hot_encode([self._fasta[key][:] for key in keys], names=keys)

    def _check_per_sequence(self, names: list[str]) -> int:
        r = None
        for name in names:
            refs = self._numbered.get(name)
            if not refs:
                raise ReferenceInputError(
                    f"{self.path}: no references for sequence {name!r}; name them '{name}/0', '{name}/1', ... like "
                    f"those of the other sequences", argument="reference", path=self.path, name=name)
            if sorted(refs) != list(range(len(refs))):
                raise ReferenceInputError(
                    f"{self.path}: the references of {name!r} are numbered {sorted(refs)[:5]}; number them /0 to "
                    f"/{len(refs) - 1}", argument="reference", path=self.path, name=name)
            if r is None:
                r, first = len(refs), name
            elif len(refs) != r:
                raise ReferenceInputError(
                    f"{self.path}: {first!r} has {r} references but {name!r} has {len(refs)}; give every sequence "
                    "the same number", argument="reference", path=self.path, name=name)
            for key in refs.values():
                if self._sizes[key] != self.length:
                    self._encode([key])  # raises naming the record
        return r

    def __call__(self, X, names: Sequence[str]) -> np.ndarray:
        """References for the sequences ``names``: ``(b, r, 4, L)`` int8, or the shared ``(r, 4, L)``."""
        if not self.per_sequence:
            return self.shared
        out = np.empty((len(names), self.n_refs, 4, self.length), dtype=np.int8)
        for i, name in enumerate(names):
            refs = self._numbered.get(name)
            if not refs or len(refs) != self.n_refs:
                self._check_per_sequence([name])
            out[i] = self._encode([refs[k] for k in range(self.n_refs)])
        return out

    def close(self) -> None:
        fasta, self._fasta = getattr(self, "_fasta", None), None
        if fasta is not None:
            fasta.close()


def references_from_fasta(path, *, names: Sequence[str] | None = None, length: int):
    """Read references from a FASTA file (:class:`FastaReferences`).

    Parameters
    ----------
    path : str or os.PathLike
        FASTA file (plain, or bgzip-compressed with Biopython installed).
    names : sequence of str, optional
        Names of the ``m`` sequences the references are for, in the order of ``X``.
    length : int
        Length ``L`` of the sequences.

    Returns
    -------
    numpy.ndarray, int8
        ``(m, r, 4, L)`` when the file has references per sequence (``NAME/0 ..`` records for these names),
        otherwise the shared ``(r, 4, L)``.
    """
    refs = FastaReferences(path, length=length, names=names)
    try:
        if names is not None and refs.per_sequence:
            names = list(names)
            return refs(None, names) if names else np.zeros((0, refs.n_refs, 4, refs.length), dtype=np.int8)
        return refs.shared
    finally:
        refs.close()


class References:
    """The references of a run, chunk by chunk (made by :func:`make_references`).

    Attributes
    ----------
    label : str
        What is recorded as the ``reference`` attribute: ``dinucleotide_shuffle``,
        ``expected_frequency_gc``, ``expected_frequency_uniform``, ``zeros`` or ``file``.
    n_refs : int
        References per sequence.
    path : str or None
        The references FASTA, for a file.
    sha256 : str or None
        SHA-256 of the references file's bytes (its fingerprint), for a file.
    workers : int
        Worker processes making the dinucleotide shuffles (0: this process;
        :class:`~dnalift.references.parallel.ShufflePool`: the same bits).
    """

    def __init__(self, method, *, label: str, n_refs: int, seed: int = 0, fasta: FastaReferences | None = None,
                 path: str | None = None, sha256: str | None = None, workers: int = 0):
        self.method, self.label, self.n_refs, self.seed = method, label, int(n_refs), int(seed)
        self._fasta, self.path, self.sha256 = fasta, path, sha256
        self.workers = int(workers) if method == ReferenceMethod.DINUC else 0
        self._pool = None

    def __call__(self, X, names: Sequence[str]):
        """References for one-hot ``X`` (b, 4, L) named ``names``: (b, r, 4, L), or (r, 4, L) shared."""
        if self.method == ReferenceMethod.DINUC:
            if self.workers and len(names) > 1:
                if self._pool is None:
                    from dnalift.references.parallel import ShufflePool

                    self._pool = ShufflePool(self.workers)
                return self._pool(X, n=self.n_refs, seed=self.seed, names=list(names))
            return dinucleotide_shuffle(X, n=self.n_refs, seed=self.seed, names=list(names))
        if self.method in (ReferenceMethod.GC, ReferenceMethod.UNIFORM):
            return expected_frequency_references(X, method=str(self.method))
        if self.method == ReferenceMethod.ZEROS:
            return zero_references(X)
        return self._fasta(X, names)

    def close(self) -> None:
        if self._fasta is not None:
            self._fasta.close()
            self._fasta = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_LABELS = {ReferenceMethod.DINUC: "dinucleotide_shuffle", ReferenceMethod.GC: "expected_frequency_gc",
           ReferenceMethod.UNIFORM: "expected_frequency_uniform", ReferenceMethod.ZEROS: "zeros"}


def make_references(reference, *, length: int, n_refs: int = 20, seed: int = 0,
                    names: Sequence[str] | None = None, workers: int = 0) -> References:
    """The references of a run: one factory for every kind.

    Parameters
    ----------
    reference : ReferenceMethod, its value, or a path
        ``dinuc`` (``n_refs`` shuffles per sequence, seeded by ``(seed, name)``), ``gc``, ``uniform``,
        ``zeros`` (one reference each), or a FASTA file of references.
    length : int
        Sequence length (checked against a references file).
    n_refs, seed : int
        For ``dinuc``; other kinds have their own number of references.
    names : sequence of str, optional
        Names of all the sequences to score (a references file's layout depends on them).
    workers : int
        For ``dinuc``: worker processes making the shuffles (0: in the calling thread); the same bits either way.

    Returns
    -------
    References

    Raises
    ------
    ReferenceInputError, SequenceError
    """
    if isinstance(reference, str) and reference in ReferenceMethod.values():
        reference = ReferenceMethod(reference)
    if isinstance(reference, ReferenceMethod):
        if reference != ReferenceMethod.DINUC and int(n_refs) != 20:
            logger.info("reference=%s gives one reference per sequence; n_refs=%s is not used", reference, n_refs)
        count = check_int(n_refs, "n_refs", 1) if reference == ReferenceMethod.DINUC else 1
        return References(reference, label=_LABELS[reference], n_refs=count, seed=check_int(seed, "seed", 0),
                          workers=check_int(workers, "workers", 0))
    path = os.fspath(reference)
    fasta = FastaReferences(path, length=length, names=names)
    return References(None, label="file", n_refs=fasta.n_refs, fasta=fasta, path=path, sha256=file_sha256(path))


def file_sha256(path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
