"""A first look at a variants result file: one TSV line per variant, :func:`write_variant_table`.

Columns (tab-separated, one header line, variants in the order of the result file)::

    variant_id   chrom   pos   ref   alt
    prediction_ref   prediction_alt   delta_prediction          (alt - ref)
    contribution_ref   contribution_alt   delta_contribution    (alt - ref)

``pos`` is 1-based (VCF POS), an empty allele is ``-``. ``contribution_<allele>`` is the sum of the per-position
contributions (``projected_shap/seq`` summed over the bases) of that allele's row over the allele and ``flank``
bases on each side of it: positions ``[offset - flank, offset + len(allele) + flank)`` of the window, clipped to
it. Sort it with e.g. ``sort -t$'\\t' -k8,8g`` (column 8, the change of prediction).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from dnalift.errors import StoreError

__all__ = ["write_variant_table", "TABLE_COLUMNS", "table_path", "DEFAULT_FLANK"]

logger = logging.getLogger(__name__)

TABLE_COLUMNS = ("variant_id", "chrom", "pos", "ref", "alt", "prediction_ref", "prediction_alt", "delta_prediction",
                 "contribution_ref", "contribution_alt", "delta_contribution")
#: bases on each side of the allele summed into ``contribution_*`` unless told otherwise
DEFAULT_FLANK = 10
#: rows read at a time (even: whole pairs)
_BLOCK = 4096


def table_path(result) -> Path:
    """The table written beside a result file: ``OUT.h5`` -> ``OUT.tsv``."""
    result = Path(result)
    stem = result.name[: -len(result.suffix)] if result.suffix.lower() in (".h5", ".hdf5") else result.name
    return result.with_name(f"{stem}.tsv")


def _window_sums(contrib: np.ndarray, offset: np.ndarray, length: np.ndarray, flank: int) -> np.ndarray:
    """Sum of ``contrib`` (b, L) over ``[offset - flank, offset + length + flank)`` of each row, clipped."""
    L = contrib.shape[1]
    cols = np.arange(L)[None, :]
    lo = np.maximum(offset - flank, 0)[:, None]
    hi = np.minimum(offset + length + flank, L)[:, None]
    return np.where((cols >= lo) & (cols < hi), contrib.astype(np.float64), 0.0).sum(axis=1)


def write_variant_table(result, output=None, *, flank: int = DEFAULT_FLANK, force: bool = False) -> Path:
    """Write the per-variant table of a variants result file (see the module notes).

    Parameters
    ----------
    result : path
        A result file written by ``dnalift variants``.
    output : path, optional
        The TSV (default :func:`table_path`).
    flank : int
        Bases on each side of the allele summed into ``contribution_*``.
    force : bool
        Overwrite ``output``.

    Returns
    -------
    Path

    Raises
    ------
    StoreError
        The file is not a variants result file.
    OutputExistsError
    """
    from dnalift.io.outputs import check_outputs_free
    from dnalift.io.store import open_results

    output = Path(output) if output is not None else table_path(result)
    if int(flank) < 0:
        raise StoreError(f"flank={flank} must be >= 0", argument="flank")
    check_outputs_free((output,), force)
    tmp = output.with_name(f".{output.name}.partial")
    with open_results(result) as r:
        if not r.has_variants:
            raise StoreError(f"{result} was not scored from variants (it has no variant_ids); the table is for files "
                             f"written by `dnalift variants`", argument="path")
        try:
            with open(tmp, "w") as handle:
                handle.write("\t".join(TABLE_COLUMNS) + "\n")
                for a, b in r.iter_chunks(_BLOCK):
                    handle.writelines(_lines(r, a, b, int(flank)))
            os.replace(tmp, output)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    logger.info("wrote %s", output)
    return output


def _lines(r, a: int, b: int, flank: int):
    v = r.variants_of(slice(a, b))
    pred = r.predictions(slice(a, b)).astype(np.float64)
    contrib = r.contributions(slice(a, b))
    lengths = np.array([len(x) for x in v["ref"]], np.int64)
    alt_lengths = np.array([len(x) for x in v["alt"]], np.int64)
    lengths[v["alleles"] == 1] = alt_lengths[v["alleles"] == 1]
    sums = _window_sums(contrib, v["offset"], lengths, flank)
    for k in range(0, b - a, 2):
        ref_sum, alt_sum = sums[k], sums[k + 1]
        fields = [v["variant_ids"][k], v["chrom"][k], str(int(v["pos"][k]) + 1), v["ref"][k] or "-",
                  v["alt"][k] or "-", f"{pred[k]:.6g}", f"{pred[k + 1]:.6g}", f"{pred[k + 1] - pred[k]:.6g}",
                  f"{ref_sum:.6g}", f"{alt_sum:.6g}", f"{alt_sum - ref_sum:.6g}"]
        yield "\t".join(fields) + "\n"
