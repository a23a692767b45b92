"""References for rows that come in pairs (a variant's reference and alternative allele): :class:`PairedReferences`.

``shared`` (the default of ``dnalift variants``)
    Both rows of a variant get the references of the reference-allele row: dinucleotide shuffles of the
    reference window seeded by ``(seed, variant id)``, its GC column, or the records ``ID/0 .. ID/r-1`` of a
    references FASTA. A column that is N (all zero) in the alternative row is zeroed in its references, so each
    row still sums to its own delta. The two rows then have the same reference prediction, and the change of
    prediction is the change of the summed contributions: ``sum(alt) - sum(ref) = pred(alt) - pred(ref)`` (up to
    the two rows' summation-to-delta errors).

``own`` (kundajelab variant-scorer's choice)
    Each row gets references made from its own window, named by its row name (``ID/ref``, ``ID/alt``): its own
    shuffles, its own GC column, or records ``ID/ref/0 ..``. The reference predictions of the two rows differ.
"""

from __future__ import annotations

import numpy as np

from dnalift.options import PairReferences, parse_choice

__all__ = ["PairedReferences"]


class PairedReferences:
    """Wraps a run's :class:`~dnalift.references.make.References` for rows in pairs.

    Parameters
    ----------
    inner : References
        Made with ``names`` = the variant ids (``shared``) or the row names (``own``).
    mode : PairReferences or str

    Every call gets whole pairs: rows ``2k, 2k + 1`` of a chunk are one variant's reference and alternative.
    """

    def __init__(self, inner, mode):
        self.inner = inner
        self.mode = parse_choice(PairReferences, mode, argument="pair_references")

    def __getattr__(self, name):  # label, n_refs, path, sha256, seed...
        return getattr(self.inner, name)

    def __call__(self, X, names):
        """References of ``X`` (b, 4, L), ``b`` even, rows named ``ID/ref, ID/alt, ...``: (b, r, 4, L) or a shared
        (r, 4, L)."""
        names = list(names)
        if len(names) % 2:
            raise ValueError(f"rows in pairs need an even number of rows, got {len(names)}")
        if self.mode == PairReferences.OWN:
            return self.inner(X, names)
        ids = [name.rpartition("/")[0] for name in names[0::2]]
        R = self.inner(X[0::2], ids)
        if getattr(R, "ndim", 0) == 3:  # shared by all rows
            return R
        if hasattr(R, "detach"):
            R = R.detach().cpu().numpy()
        R = np.repeat(np.asarray(R), 2, axis=0)
        present = (np.asarray(X[1::2]).sum(axis=1) > 0).astype(R.dtype)  # (b/2, L): ACGT columns of the alt rows
        R[1::2] *= present[:, None, None, :]
        return R

    def close(self) -> None:
        self.inner.close()
