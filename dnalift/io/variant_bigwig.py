"""bigWig tracks of a variants result file, one per allele: :func:`write_variant_bigwigs`.

Each variant's window is placed on the genome window of its reference row, ``[pos - offset, pos - offset + L)``
(0-based). The reference track holds the reference rows' per-base contributions there (that row is exactly the
genome window). The alternative track holds the alternative rows' contributions at the genome position each
base came from: the left flank where it is; the allele on REF's bases when both alleles have one length (SNVs,
MNVs); the bases after the allele shifted by ``len(REF) - len(ALT)``. An indel's inserted bases have no genome
position and are left out, and so are the deleted ones (no value there from that variant). Where windows
overlap the value is their mean, as for regions (:func:`dnalift.io.bigwig.write_bigwig`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from dnalift.errors import DnaliftError, StoreError

__all__ = ["write_variant_bigwigs", "variant_track_paths", "alt_on_reference_window"]

logger = logging.getLogger(__name__)


def variant_track_paths(output) -> tuple[Path, Path]:
    """``out.bw`` -> ``out.ref.bw``, ``out.alt.bw``."""
    output = Path(output)
    stem = output.name[:-3] if output.name.lower().endswith(".bw") else output.name
    return output.with_name(f"{stem}.ref.bw"), output.with_name(f"{stem}.alt.bw")


def alt_on_reference_window(alt_scores: np.ndarray, offset: int, ref_len: int, alt_len: int) -> np.ndarray:
    """The alternative row's per-position scores (L,) at the positions of the reference window; NaN where no base
    of the alternative row comes from (inserted or deleted bases; see the module notes)."""
    length = alt_scores.shape[0]
    out = np.full(length, np.nan)
    out[:offset] = alt_scores[:offset]
    if ref_len == alt_len:
        out[offset:offset + ref_len] = alt_scores[offset:offset + ref_len]
    genome = np.arange(offset + ref_len, length)  # window positions after REF
    source = genome - ref_len + alt_len  # where they are in the alternative row
    ok = source < length
    out[genome[ok]] = alt_scores[source[ok]]
    return out


def write_variant_bigwigs(path, output, *, chrom_sizes: dict, force: bool = False) -> tuple[Path, Path]:
    """Write the reference and alternative tracks of a variants result file (see the module notes).

    Parameters
    ----------
    path : result file written by ``dnalift variants``
    output : path
        ``out.bw``; the tracks are ``out.ref.bw`` and ``out.alt.bw``.
    chrom_sizes : mapping
        Chromosome lengths (:func:`dnalift.io.bigwig.read_chrom_sizes`).
    force : bool
        Overwrite existing tracks.

    Returns
    -------
    (Path, Path)
    """
    from dnalift.io.bigwig import sweep_tracks
    from dnalift.io.outputs import check_outputs_free
    from dnalift.io.store import open_results

    paths = variant_track_paths(output)
    check_outputs_free(paths, force)
    try:
        import pyBigWig  # noqa: F401
    except ImportError:
        raise DnaliftError("bigWig export needs pyBigWig: pip install 'dnalift[bigwig]'") from None
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    with open_results(path) as r:
        if not r.has_variants:
            raise StoreError(f"{path} was not scored from variants; use write_bigwig for files scored from regions")
        v = r.variants_of(slice(0, r.n, 2))
        unknown = sorted(set(v["chrom"]) - set(chrom_sizes))
        if unknown:
            raise StoreError(f"{path}: variants on {', '.join(unknown[:3])}, which the chromosome sizes lack; give the "
                             f".fai of the genome the variants were scored on")
        starts = np.asarray(v["pos"], np.int64) - np.asarray(v["offset"], np.int64)
        chroms = list(v["chrom"])
        with tempfile.TemporaryDirectory(dir=paths[0].parent, prefix=".dnalift-") as scratch:
            for allele, out in enumerate(paths):
                scores = np.memmap(Path(scratch) / f"{allele}.f32", dtype=np.float32, mode="w+",
                                   shape=(max(r.n // 2, 1), r.length))
                _fill(r, allele, v, scores)
                sweep_tracks(out, chrom_sizes, chroms, starts, scores[: r.n // 2], r.length)
                del scores
    logger.info("wrote %s and %s", *paths)
    return paths


def _fill(r, allele: int, v: dict, scores: np.memmap) -> None:
    """Per-position contributions of one allele's rows, on the reference windows, into ``scores`` (m, L)."""
    step = 4096
    for a in range(0, r.n, step):
        rows = slice(a + allele, min(a + step, r.n), 2)
        contrib = r.contributions(rows).astype(np.float64)
        first = a // 2
        for k in range(contrib.shape[0]):
            i = first + k
            if allele == 0:
                scores[i] = contrib[k]
            else:
                scores[i] = alt_on_reference_window(contrib[k], int(v["offset"][i]), len(v["ref"][i]),
                                                    len(v["alt"][i]))
