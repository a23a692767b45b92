"""Checking a result file: :func:`validate_results` lists its problems, one line each."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from dnalift.io.store import schema
from dnalift.io.store._h5 import CACHE_BYTES, check_dnalift, fmt_rows, open_h5, read_attrs

__all__ = ["validate_results"]

_BLOCK = 65536


def validate_results(path: str | os.PathLike, *, check_values: bool = True) -> list[str]:
    """The problems of a result file, one line each; an empty list means the file is sound.

    Checks the datasets and their shapes and types, that every chunk is complete, names are unique,
    raw/seq is one-hot, projected_shap/seq equals shap/seq * raw/seq, scores have no NaN or infinity
    (``check_values``, read chunk by chunk), and genome regions are well formed.

    Raises
    ------
    StoreError
        The file cannot be read at all (missing, not HDF5, truncated, not a dnalift file).
    """
    path = Path(path)
    with open_h5(path, "r", rdcc_nbytes=CACHE_BYTES) as f:
        check_dnalift(f, path)
        attrs = read_attrs(f)
        problems = [f"attribute {key} is {attrs.get(key)!r}, expected {want!r}"
                    for key, want in (("axis_order", schema.AXIS_ORDER), ("alphabet", schema.ALPHABET))
                    if attrs.get(key) != want]
        datasets = schema.PER_BASE + schema.PER_ROW
        missing = [ds.name for ds in datasets if ds.name not in f]
        if schema.CHUNKS_COMPLETE not in f:
            missing.append(schema.CHUNKS_COMPLETE)
        problems += [f"dataset {name} is missing" for name in missing]
        if schema.RAW not in f:
            return problems
        shape = f[schema.RAW].shape
        if len(shape) != 3 or shape[1] != 4:
            return problems + [f"{schema.RAW} has shape {shape}, expected (n, 4, length)"]
        n = shape[0]
        for ds in datasets:
            if ds.name not in f:
                continue
            want = shape if ds.per_base else (n,)
            if f[ds.name].shape != want:
                problems.append(f"{ds.name} has shape {f[ds.name].shape}, expected {want}")
            if ds.dtype is not schema.STRING and f[ds.name].dtype != ds.dtype:
                problems.append(f"{ds.name} has dtype {f[ds.name].dtype}, expected {ds.dtype}")
        written, chunk_problems = _chunk_flags(f, attrs, n)
        problems += chunk_problems
        if schema.NAMES in f and f[schema.NAMES].shape == (n,):
            problems += _validate_names(f[schema.NAMES], n, written)
        if schema.REGIONS in f:
            problems += _validate_regions(f[schema.REGIONS], n, shape[2], written)
        if schema.VARIANT_IDS in f:
            problems += _validate_variants(f, n)
        if check_values and not missing and not any(f[ds.name].shape != shape for ds in schema.PER_BASE):
            problems += _validate_values(f, n)
        if schema.FOLD_PREDICTIONS in f and not missing:
            problems += _validate_folds(f, n, attrs)
    return problems


def _validate_folds(f: h5py.File, n: int, attrs: dict) -> list[str]:
    """An averaged file: ``fold_predictions`` (n, k), whose row means (float64, stored float32) are
    ``predictions``."""
    ds = f[schema.FOLD_PREDICTIONS]
    k = attrs.get("n_folds")
    if len(ds.shape) != 2 or ds.shape[0] != n or ds.dtype != np.float32 or (k is not None and ds.shape[1] != k):
        return [f"{schema.FOLD_PREDICTIONS} has shape {ds.shape} and dtype {ds.dtype}, expected ({n}, {k}) float32"]
    bad = 0
    for a in range(0, n, _BLOCK):
        folds = ds[a:a + _BLOCK].astype(np.float64)
        total = folds[:, 0].copy()
        for j in range(1, folds.shape[1]):  # the folds in order, as they were averaged
            total += folds[:, j]
        bad += int(np.count_nonzero((total / folds.shape[1]).astype(np.float32) != f[schema.PREDICTIONS][a:a + _BLOCK]))
    return [f"{bad} sequences have {schema.PREDICTIONS} other than the mean of {schema.FOLD_PREDICTIONS}"
            ] if bad else []


def _chunk_flags(f: h5py.File, attrs: dict, n: int) -> tuple[np.ndarray | None, list[str]]:
    """Per row, whether it is in a complete chunk (None: unknown, check all rows), and the problems."""
    if schema.CHUNKS_COMPLETE not in f:
        return None, []
    flags = f[schema.CHUNKS_COMPLETE][...]
    size = int(attrs.get("chunk_size", 0) or 0)
    if size < 1 or len(flags) != schema.n_chunks(n, size):
        return None, [f"{schema.CHUNKS_COMPLETE} has {len(flags)} entries, which does not fit n={n} and "
                      f"chunk_size={attrs.get('chunk_size')}"]
    written = np.repeat(flags.astype(bool), size)[:n]
    if flags.all():
        return written, []
    bad = np.flatnonzero(flags == 0)
    ranges = [fmt_rows(int(c) * size, min((int(c) + 1) * size, n)) for c in bad[:3]]
    return written, [f"{len(bad)} of {len(flags)} chunks were never completed ({', '.join(ranges)}"
                     f"{' ...' if len(bad) > 3 else ''}); the run did not finish: rerun it with resume=True"]


def _validate_names(ds: h5py.Dataset, n: int, written: np.ndarray | None) -> list[str]:
    seen: set[str] = set()
    dups: list[str] = []
    empty = 0
    for a in range(0, n, _BLOCK):
        block = ds.asstr()[a:a + _BLOCK]
        if written is not None:
            block = block[written[a:a + _BLOCK]]
        for s in block:
            if not s:
                empty += 1
            elif s in seen:
                dups.append(s)
            seen.add(s)
    problems = []
    if dups:
        problems.append(f"{len(dups)} duplicate sequence names (first: {dups[0]!r})")
    if empty:
        problems.append(f"{empty} empty sequence names")
    return problems


def _validate_regions(g: h5py.Group, n: int, length: int, written: np.ndarray | None) -> list[str]:
    problems = []
    for key in (*schema.REGION_FIELDS, schema.REGION_LINE):
        if key not in g:
            if key != schema.REGION_LINE:  # the input lines are optional (older files lack them)
                problems.append(f"{schema.region_path(key)} is missing")
        elif g[key].shape != (n,):
            problems.append(f"{schema.region_path(key)} has shape {g[key].shape}, expected ({n},)")
    if problems:
        return problems
    bad_len = bad_strand = 0
    for a in range(0, n, _BLOCK):
        keep = slice(None) if written is None else written[a:a + _BLOCK]
        start, end = g["start"][a:a + _BLOCK][keep], g["end"][a:a + _BLOCK][keep]
        bad_len += int(np.count_nonzero((end - start != length) | (start < 0)))
        strand = g["strand"].asstr()[a:a + _BLOCK][keep]
        bad_strand += int(sum(s not in ("+", "-", ".") for s in strand))
    if bad_len:
        problems.append(f"{bad_len} regions do not span the sequence length {length} (end - start) or start < 0")
    if bad_strand:
        problems.append(f"{bad_strand} regions have a strand other than +, - or .")
    return problems


def _validate_variants(f: h5py.File, n: int) -> list[str]:
    """The variant datasets are all there, of n rows, and the alleles alternate 0, 1 (rows in pairs)."""
    problems = [f"dataset {ds.name} is missing" for ds in schema.VARIANT_DATASETS if ds.name not in f]
    problems += [f"{ds.name} has shape {f[ds.name].shape}, expected ({n},)" for ds in schema.VARIANT_DATASETS
                 if ds.name in f and f[ds.name].shape != (n,)]
    if problems:
        return problems
    if n % 2:
        return [f"a variants file has rows in pairs, but it has {n} rows"]
    for a in range(0, n, _BLOCK):
        alleles = f[schema.ALLELES][a:a + _BLOCK]
        if (alleles[0::2] != 0).any() or (alleles[1::2] != 1).any():
            return [f"{schema.ALLELES} does not alternate 0, 1 (reference, alternative) from row {a}"]
    return []


def _validate_values(f: h5py.File, n: int) -> list[str]:
    counts = {"nan_hyp": 0, "nan_rows": 0, "not_one_hot": 0, "projected": 0}
    size = f[schema.RAW].chunks[0] if f[schema.RAW].chunks else 256
    flags = f[schema.CHUNKS_COMPLETE][...] if schema.CHUNKS_COMPLETE in f else None
    for c, a in enumerate(range(0, n, size)):
        if flags is not None and c < len(flags) and not flags[c]:
            continue  # never written: reported above
        sl = slice(a, min(a + size, n))
        raw, hyp, proj = f[schema.RAW][sl], f[schema.HYPOTHETICAL][sl], f[schema.PROJECTED][sl]
        counts["nan_hyp"] += int(np.count_nonzero(~np.isfinite(hyp).all(axis=(1, 2))))
        counts["not_one_hot"] += int(np.count_nonzero(((raw != 0) & (raw != 1)).any(axis=(1, 2))
                                                      | (raw.sum(axis=1) > 1).any(axis=1)))
        same = (proj == hyp * raw) | (np.isnan(proj) & np.isnan(hyp))
        counts["projected"] += int(np.count_nonzero(~same.all(axis=(1, 2))))
        rows = np.stack([f[k][sl] for k in schema.ROW_VALUES])
        counts["nan_rows"] += int(np.count_nonzero(~np.isfinite(rows).all(axis=0)))
    problems = []
    if counts["nan_hyp"]:
        problems.append(f"{counts['nan_hyp']} sequences have NaN or infinite scores in {schema.HYPOTHETICAL}")
    if counts["nan_rows"]:
        problems.append(f"{counts['nan_rows']} sequences have NaN or infinite {', '.join(schema.ROW_VALUES)}")
    if counts["not_one_hot"]:
        problems.append(f"{counts['not_one_hot']} sequences in {schema.RAW} are not one-hot")
    if counts["projected"]:
        problems.append(f"{counts['projected']} sequences have {schema.PROJECTED} != {schema.HYPOTHETICAL} * "
                        f"{schema.RAW}")
    return problems
