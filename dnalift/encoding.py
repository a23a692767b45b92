"""One-hot encoding of DNA, decoding, and reverse complements.

Conventions shared by the whole package:

* A one-hot batch has shape ``(n, 4, length)``; the channels are ``A, C, G, T`` (:data:`ALPHABET`).
* Lowercase letters (soft-masked repeats) encode like uppercase ones.
* ``N`` and the other IUPAC ambiguity letters (``R Y S W K M B D H V U``) have no single base. What happens
  to them is the *N policy*:

  ``"zero"`` (default)
      the column is all zero;
  ``"skip"``
      sequences that contain such a letter are left out (:func:`non_acgt_mask` tells which);
  ``"error"``
      :class:`~dnalift.errors.SequenceError` naming the first offending sequence, position and letter.

* Characters that are not nucleotide letters at all (digits, ``-``, ``.``, spaces) are always an error.

Encoding goes through a 256-entry lookup table over the bytes of all sequences at once: there is no Python
loop over bases.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from dnalift.options import NPolicy, parse_choice
from dnalift.errors import SequenceError

__all__ = [
    "ALPHABET",
    "N_POLICIES",
    "one_hot_encode",
    "one_hot_decode",
    "non_acgt_mask",
    "reverse_complement",
    "reverse_complement_sequence",
    "codes_from_one_hot",
]

logger = logging.getLogger(__name__)

ALPHABET = "ACGT"
"""Channel order of every one-hot array in dnalift."""

N_POLICIES = NPolicy.values()
"""Accepted values of ``n_policy`` (the :class:`~dnalift.options.NPolicy` choices)."""

IUPAC_AMBIGUOUS = "NRYSWKMBDHVU"
"""Nucleotide letters that are not A, C, G or T (``U`` is uracil, not a DNA base)."""

_N_CODE = 4  # code of an IUPAC letter other than ACGT (all-zero column)
BAD_CODE = 255  # code of a byte that is no nucleotide letter

BYTE_TO_CODE = np.full(256, BAD_CODE, dtype=np.uint8)
for _i, _letter in enumerate(ALPHABET):
    BYTE_TO_CODE[ord(_letter)] = _i
    BYTE_TO_CODE[ord(_letter.lower())] = _i
for _letter in IUPAC_AMBIGUOUS:
    BYTE_TO_CODE[ord(_letter)] = _N_CODE
    BYTE_TO_CODE[ord(_letter.lower())] = _N_CODE
del _i, _letter

_COMPLEMENT = str.maketrans("ACGTRYSWKMBDHVNUacgtryswkmbdhvnu", "TGCAYRSWMKVHDBNAtgcayrswmkvhdbna")

_DECODE = np.frombuffer(b"ACGTN", dtype=np.uint8)


def _check_policy(n_policy: str) -> None:
    parse_choice(NPolicy, n_policy, argument="n_policy")


def _as_list(seqs: str | Sequence[str]) -> list[str]:
    if isinstance(seqs, (str, bytes)):
        seqs = [seqs]
    out = []
    for s in seqs:
        if isinstance(s, bytes):
            s = s.decode("ascii", errors="replace")
        elif not isinstance(s, str):
            raise TypeError(f"sequences must be str, got {type(s).__name__}")
        out.append(s)
    return out


def _seq_label(i: int, names: Sequence[str] | None) -> str:
    return f"sequence {names[i]!r}" if names is not None else f"sequence {i}"


def _codes(seqs: list[str], names: Sequence[str] | None) -> np.ndarray:
    """Letter codes ``(n, length)`` uint8 (0-3 ACGT, 4 other IUPAC) of equal-length sequences."""
    if not seqs:
        return np.zeros((0, 0), dtype=np.uint8)
    length = len(seqs[0])
    for i, s in enumerate(seqs):
        if len(s) != length:
            raise SequenceError(
                f"{_seq_label(i, names)} has length {len(s)} but {_seq_label(0, names)} has length {length}; "
                "one-hot encoding needs sequences of one length (crop or pad them, e.g. open_fasta(width=...))"
            )
    try:
        raw = "".join(seqs).encode("ascii")
    except UnicodeEncodeError as exc:
        pos = exc.start
        i, j = divmod(pos, length) if length else (0, 0)
        raise SequenceError(
            f"{_seq_label(i, names)} has the non-ASCII character {seqs[i][j]!r} at position {j} (0-based); "
            "sequences may hold only nucleotide letters (ACGT and IUPAC codes)"
        ) from None
    codes = BYTE_TO_CODE[np.frombuffer(raw, dtype=np.uint8)].reshape(len(seqs), length)
    bad = np.flatnonzero(codes.ravel() == BAD_CODE)
    if bad.size:
        i, j = divmod(int(bad[0]), length)
        raise SequenceError(
            f"{_seq_label(i, names)} has {seqs[i][j]!r} at position {j} (0-based), which is not a nucleotide letter; "
            "sequences may hold only A, C, G, T (any case) and IUPAC codes such as N"
        )
    return codes


def non_acgt_mask(seqs: str | Sequence[str]) -> np.ndarray:
    """Tell which sequences contain a letter other than A, C, G, T (in either case).

    This is what the ``"skip"`` policy drops. Sequences may have different lengths here.

    Parameters
    ----------
    seqs : str or sequence of str
        ``n`` sequences (a single string counts as one).

    Returns
    -------
    numpy.ndarray, shape (n,), bool
        True where the sequence has at least one non-ACGT character (N, another IUPAC letter, or any other
        character).
    """
    seqs = _as_list(seqs)
    mask = np.zeros(len(seqs), dtype=bool)
    for i, s in enumerate(seqs):  # one vectorised pass per sequence, no loop over bases
        raw = np.frombuffer(s.encode("ascii", errors="replace"), dtype=np.uint8)
        mask[i] = bool((BYTE_TO_CODE[raw] > 3).any())
    return mask


def one_hot_encode(
    seqs: str | Sequence[str],
    *,
    n_policy: str = "zero",
    dtype=np.int8,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """One-hot encode DNA sequences of one length.

    Parameters
    ----------
    seqs : str or sequence of str
        ``n`` sequences of the same length ``L``; a single string counts as one sequence. Lowercase is
        accepted.
    n_policy : {"zero", "skip", "error"}
        What to do with IUPAC letters other than ACGT: an all-zero column (``"zero"``); leave the
        sequences that contain one out of the result (``"skip"``; ``non_acgt_mask(seqs)`` is True for
        exactly the rows left out, and their count is logged); raise :class:`~dnalift.errors.SequenceError`
        (``"error"``).
    dtype : numpy dtype
        Type of the result (``numpy.int8`` by default; any numeric or bool type).
    names : sequence of str, optional
        Names of the sequences, used in error messages only.

    Returns
    -------
    numpy.ndarray, shape (n, 4, L)
        Channels A, C, G, T. With ``n_policy="skip"`` the first axis has only the kept sequences.

    Raises
    ------
    SequenceError
        Sequences of different lengths, a character that is not a nucleotide letter, or (with
        ``n_policy="error"``) an IUPAC letter other than ACGT.
    """
    _check_policy(n_policy)
    seqs = _as_list(seqs)
    if names is not None and len(names) != len(seqs):
        raise ValueError(f"got {len(names)} names for {len(seqs)} sequences")
    codes = _codes(seqs, names)
    if n_policy != "zero" and codes.size:
        is_n = codes == _N_CODE
        if n_policy == "error":
            hit = np.flatnonzero(is_n.ravel())
            if hit.size:
                i, j = divmod(int(hit[0]), codes.shape[1])
                raise SequenceError(
                    f"{_seq_label(i, names)} has {seqs[i][j]!r} at position {j} (0-based), which is not "
                    "A, C, G or T; use n_policy='zero' to encode it as an all-zero column or n_policy='skip' to "
                    "drop such sequences", argument="n_policy")
        else:
            keep = ~is_n.any(axis=1)
            n_skipped = int(keep.size - keep.sum())
            if n_skipped:
                logger.info("skipped %d of %d sequences with letters other than ACGT", n_skipped, keep.size)
                codes = codes[keep]
    return _one_hot_from_codes(codes, dtype)


def _one_hot_from_codes(codes: np.ndarray, dtype=np.int8) -> np.ndarray:
    """``(..., L)`` codes 0-4 -> ``(..., 4, L)`` one-hot of ``dtype`` (code 4 gives a zero column)."""
    channels = np.arange(4, dtype=codes.dtype).reshape(4, 1)
    hot = codes[..., None, :] == channels
    dtype = np.dtype(dtype)
    if dtype == np.int8 or dtype == np.uint8:
        return hot.view(dtype)
    return hot.astype(dtype)


def codes_from_one_hot(X, *, what: str = "X") -> np.ndarray:
    """Letter codes of a one-hot batch, checking that it is one-hot.

    Parameters
    ----------
    X : numpy.ndarray or torch.Tensor, shape (..., 4, L)
        One-hot DNA: every column is all zero or has a single 1.
    what : str
        Name of the argument, for error messages.

    Returns
    -------
    numpy.ndarray, shape (..., L), uint8
        0, 1, 2, 3 for A, C, G, T and 4 for an all-zero column.

    Raises
    ------
    SequenceError
        ``X`` does not have 4 channels on its second-to-last axis, or a column is not one-hot.
    """
    X = _to_numpy(X)
    if X.ndim < 2 or X.shape[-2] != 4:
        raise SequenceError(
            f"{what} has shape {tuple(X.shape)} but one-hot DNA needs shape (n, 4, length) with channels A, C, "
            "G, T; transpose inputs stored as (n, length, 4)"
        )
    if X.dtype == np.bool_:
        X = X.view(np.uint8)
    binary = (X == 0) | (X == 1)
    column_sum = X.sum(axis=-2, dtype=np.int64) if X.dtype.kind != "f" else X.sum(axis=-2)
    ok = binary.all(axis=-2) & (column_sum <= 1)
    if not ok.all():
        where = np.argwhere(~ok)[0]
        pos = ", ".join(str(int(k)) for k in where[:-1])
        seq = f"sequence {pos}" if pos else "the sequence"
        raise SequenceError(
            f"{what} is not one-hot at {seq}, position {int(where[-1])} (0-based): column "
            f"{X[tuple(where[:-1])][:, where[-1]].tolist()}; each column must be all zero (N) or hold a single 1"
        )
    codes = X[..., 1, :].astype(np.uint8)
    codes += 2 * X[..., 2, :].astype(np.uint8)
    codes += 3 * X[..., 3, :].astype(np.uint8)
    codes[column_sum == 0] = _N_CODE
    return codes


def _to_numpy(X) -> np.ndarray:
    if isinstance(X, np.ndarray):
        return X
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(X, torch.Tensor):
        return X.detach().cpu().numpy()
    return np.asarray(X)


def one_hot_decode(X) -> list[str] | str:
    """Turn one-hot DNA back into letters.

    Parameters
    ----------
    X : numpy.ndarray or torch.Tensor, shape (n, 4, L) or (4, L)
        One-hot DNA, channels A, C, G, T.

    Returns
    -------
    list of str, or str
        ``n`` uppercase sequences (one string for a ``(4, L)`` input); an all-zero column gives ``"N"``.

    Raises
    ------
    SequenceError
        A column holds something other than a single 1 or all zeros.
    """
    codes = codes_from_one_hot(X)
    letters = _DECODE[codes]
    if letters.ndim == 1:
        return letters.tobytes().decode("ascii")
    letters = letters.reshape(-1, letters.shape[-1])
    return [row.tobytes().decode("ascii") for row in letters]


def reverse_complement(X):
    """Reverse complement of one-hot DNA.

    Reverses the length axis and swaps A with T and C with G (the channel axis reversed).

    Parameters
    ----------
    X : numpy.ndarray or torch.Tensor, shape (..., 4, L)
        One-hot (or any per-base score) array with channels A, C, G, T on the second-to-last axis,
        e.g. ``(n, 4, L)`` sequences or ``(n, r, 4, L)`` references.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (..., 4, L)
        Same kind, dtype and device as ``X``; a new array (numpy) or tensor (torch), never a view.
    """
    if X.ndim < 2 or X.shape[-2] != 4:
        raise SequenceError(
            f"reverse_complement needs channels A, C, G, T on the second-to-last axis, got shape "
            f"{tuple(X.shape)}"
        )
    if isinstance(X, np.ndarray):
        return np.ascontiguousarray(X[..., ::-1, ::-1])
    import torch

    if isinstance(X, torch.Tensor):
        return torch.flip(X, dims=(-2, -1))
    raise TypeError(f"reverse_complement takes a numpy array or a torch tensor, got {type(X).__name__}")


def reverse_complement_sequence(seq: str) -> str:
    """Reverse complement of a DNA string.

    IUPAC letters are complemented (``R``<->``Y``, ``K``<->``M``, ``B``<->``V``, ``D``<->``H``; ``N``, ``S``,
    ``W`` stay) and case is kept, so soft-masking survives.

    Parameters
    ----------
    seq : str
        A DNA sequence.

    Returns
    -------
    str
        The reverse complement, same length.

    Raises
    ------
    SequenceError
        ``seq`` has a character that is not a nucleotide letter.
    """
    raw = np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)
    bad = np.flatnonzero(BYTE_TO_CODE[raw] == BAD_CODE)
    if bad.size:
        j = int(bad[0])
        raise SequenceError(
            f"cannot reverse-complement: {seq[j]!r} at position {j} (0-based) is not a nucleotide letter"
        )
    return seq.translate(_COMPLEMENT)[::-1]
