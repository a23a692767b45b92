"""The dnalift result file's schema: every dataset name, dtype and shape, every root attribute, the version.

This module is the format reference, and the only place where a dataset or attribute name is spelled out;
the writer, reader, validation and merge take them from here. A result file holds the scores of ``n``
sequences of one length ``L`` for ONE model output (target); ``dnalift score`` writes one file per target
when several are asked. Plain ``h5py`` reads it, and so does TF-MoDISco lite (``modisco motifs -i out.h5``)
without conversion.

Datasets (all chunked along ``n``; compression gzip level 4 with shuffle (default), lzf, or none; every
numeric dataset carries a Fletcher-32 checksum, so a damaged chunk is an error when read, not silent
garbage; string datasets take no filters)::

    raw/seq                (n, 4, L) int8     one-hot input; channels A, C, G, T; N and other IUPAC
                                              letters are an all-zero column
    shap/seq               (n, 4, L) float32  hypothetical contributions: the contribution each of the
                                              four bases would have at each position (DeepSHAP style)
    projected_shap/seq     (n, 4, L) float32  contributions of the observed base: shap/seq * raw/seq
                                              (zero for the three absent bases); summed over the base axis
                                              this is the per-position contribution score
    names                  (n,)  str          sequence names (variable-length UTF-8), unique
    predictions            (n,)  float32      the target output of the model on the input sequence
    reference_predictions  (n,)  float32      the target output averaged over the sequence's references
    deltas                 (n,)  float32      summation-to-delta error: sum(contributions) -
                                              (prediction - reference_prediction); near 0 when exact
    chunks_complete        (ceil(n / chunk_size),) uint8
                                              1 for each block of chunk_size rows written in full;
                                              all 1 in a finished file (bookkeeping for --resume)
    regions/chrom          (n,)  str          only when the input was BED regions on a genome:
    regions/start          (n,)  int64        the window scored, 0-based half-open genome coordinates
    regions/end            (n,)  int64        (end - start == L),
    regions/strand         (n,)  str          "+", "-" (the sequence is the reverse complement of the
                                              genome window, position 0 is genome position end - 1) or "."
    variant_ids            (n,)  str          only when the input was variants (``dnalift variants``): rows
    alleles                (n,)  int8         come in pairs, 2k the reference allele (0), 2k+1 the
    variants/chrom         (n,)  str          alternative (1), of variant k; both rows carry its id, its
    variants/pos           (n,)  int64        chromosome, the 0-based genome position of REF's first
    variants/ref           (n,)  str          base, its two alleles (upper case, "" when empty) and
    variants/alt           (n,)  str          the index in the window where the allele starts (offset,
    variants/offset        (n,)  int64        L // 2); see dnalift.io.variant_source for the windows
    regions/line           (n,)  str          the line of the BED/narrowPeak input that gave the row, as it
                                              was (no newline); older files lack it
    fold_predictions       (n, k) float32     only in a file written by ``dnalift average`` of k folds: each
                                              fold's predictions, in the order of ``averaged_from``; the
                                              float datasets above hold the folds' means (computed in
                                              float64, stored float32), so ``predictions`` is the mean of
                                              these columns and the file sums to delta as each fold does

The axis order is (sequence, base, position), the one TF-MoDISco lite reads from ``shap/seq`` and
``raw/seq`` and that chrombpnet writes. Row ``i`` of every dataset is the same sequence. Positions are
0-based everywhere (names, regions, messages).

Root attributes (scalars or strings; lists and dicts are stored as JSON strings)::

    format_version   1 (this layout); readers refuse newer versions
    axis_order       "n,base,position"
    alphabet         "ACGT"
    chunk_size       rows per chunk, compression   "gzip" | "lzf" | "none"
    created          ISO 8601 time (UTC) the file was started
    dnalift_version, torch_version, command_line   (filled in when the caller gives none)
    rule, max_rule, reference, n_refs, seed, target (index or name), model_sha256, ...
                     the run's parameters, as given by the caller (``attrs``)
    input_sha256     fingerprint of the input's content: SHA-256 over the name and letters of every
                     sequence of the whole input (all shards), in order (see dnalift.io.source)
    model_sha256     SHA-256 of the model file's bytes
    reference_sha256 SHA-256 of the references FASTA's bytes (only with a references file)
    model_path, input, genome, reference_path
                     where the files were (provenance only: resume and merge compare the fingerprints,
                     never these paths)
    regions_format   "narrowPeak" or "bed" (only for regions input): the input's format, by its file name
                     (``*.narrowPeak`` or ``*.narrowPeak.gz`` is narrowPeak), which names the kept regions
    shard, row_start, row_stop, n_total
                     only in a shard written with ``--shard i-of-n`` (1-based ``i``): this file holds
                     rows [row_start, row_stop) of a run over n_total sequences; merge joins the shards
    averaged_from, n_folds, fold_model_sha256, fold_model_path
                     only in a file written by ``dnalift average``: the fold files' names, their number,
                     and their models' fingerprints and paths (JSON lists, in the order of the
                     ``fold_predictions`` columns); such a file has no ``model_sha256`` or ``model_path``

Kept regions (a file beside a result scored from regions): ``OUT.regions.narrowPeak`` (narrowPeak input) or
``OUT.regions.bed`` (any other BED) beside ``OUT.h5`` (:func:`kept_regions_path`): the input lines of its rows,
``regions/line``, one per row in row order, plain text. Regions the run skipped are not in it, so it has as
many lines as the file has rows, as FiNeMo's ``extract-regions-chrombpnet-h5 -p`` and TF-MoDISco's
``seqlet-bed -p`` need. The writer puts it in place (written to a hidden partial name, then renamed) just
before the result file gets its final name.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import h5py
import numpy as np

from dnalift.options import parse_shard as _parse_option_shard

__all__ = [
    "FORMAT_VERSION", "AXIS_ORDER", "ALPHABET", "RAW", "HYPOTHETICAL", "PROJECTED", "NAMES", "PREDICTIONS",
    "REFERENCE_PREDICTIONS", "DELTAS", "CHUNKS_COMPLETE", "REGIONS", "REGION_FIELDS", "Dataset", "PER_BASE",
    "PER_ROW", "REGION_DATASETS", "STRING", "VARIANT_IDS", "ALLELES", "VARIANTS",
    "VARIANT_DATASETS", "variant_field", "region_path", "SHARD_ATTRS", "VOLATILE_ATTRS", "STORAGE_ATTRS",
    "PROVENANCE_ATTRS", "FINGERPRINT_ATTRS", "COMPRESSIONS", "partial_path", "lock_path", "default_chunk_size",
    "parse_shard", "shard_attrs", "n_chunks", "comparable", "ROW_VALUES", "REGION_LINE", "REGIONS_FORMAT",
    "KEPT_REGIONS_SUFFIXES", "regions_format", "kept_regions_path",
    "FOLD_PREDICTIONS", "FOLD_ATTRS",
    "AVERAGE_ATTRS",
]

FORMAT_VERSION = 1
AXIS_ORDER = "n,base,position"
ALPHABET = "ACGT"

#: variable-length UTF-8 strings
STRING = h5py.string_dtype("utf-8")

RAW = "raw/seq"
HYPOTHETICAL = "shap/seq"
PROJECTED = "projected_shap/seq"
NAMES = "names"
PREDICTIONS = "predictions"
REFERENCE_PREDICTIONS = "reference_predictions"
DELTAS = "deltas"
CHUNKS_COMPLETE = "chunks_complete"
FOLD_PREDICTIONS = "fold_predictions"
REGIONS = "regions"
REGION_FIELDS = ("chrom", "start", "end", "strand")
VARIANT_IDS = "variant_ids"
ALLELES = "alleles"
VARIANTS = "variants"
#: ``regions/line``: the input line of each row (optional when reading: older files lack it)
REGION_LINE = "line"
#: root attribute: the format of the regions input, which names the kept regions file
REGIONS_FORMAT = "regions_format"
#: the kept regions file's suffix (replacing ``.h5``) for each input format
KEPT_REGIONS_SUFFIXES = {"narrowPeak": ".regions.narrowPeak", "bed": ".regions.bed"}


class Dataset(NamedTuple):
    """One dataset of the schema: its path in the file, its dtype and whether its rows are (4, L)."""

    name: str
    dtype: Any
    per_base: bool


#: the (n, 4, L) datasets
PER_BASE = (Dataset(RAW, np.dtype(np.int8), True), Dataset(HYPOTHETICAL, np.dtype(np.float32), True),
            Dataset(PROJECTED, np.dtype(np.float32), True))
#: the (n,) datasets of every file
PER_ROW = (Dataset(NAMES, STRING, False), Dataset(PREDICTIONS, np.dtype(np.float32), False),
           Dataset(REFERENCE_PREDICTIONS, np.dtype(np.float32), False), Dataset(DELTAS, np.dtype(np.float32), False))
#: the (n,) datasets of a file scored from regions
REGION_DATASETS = (Dataset(f"{REGIONS}/chrom", STRING, False), Dataset(f"{REGIONS}/start", np.dtype(np.int64), False),
                   Dataset(f"{REGIONS}/end", np.dtype(np.int64), False), Dataset(f"{REGIONS}/strand", STRING, False),
                   Dataset(f"{REGIONS}/{REGION_LINE}", STRING, False))
#: the (n,) datasets of a file scored from variants (keyed by these names in writes and reads)
VARIANT_DATASETS = (Dataset(VARIANT_IDS, STRING, False), Dataset(ALLELES, np.dtype(np.int8), False),
                    Dataset(f"{VARIANTS}/chrom", STRING, False), Dataset(f"{VARIANTS}/pos", np.dtype(np.int64), False),
                    Dataset(f"{VARIANTS}/ref", STRING, False), Dataset(f"{VARIANTS}/alt", STRING, False),
                    Dataset(f"{VARIANTS}/offset", np.dtype(np.int64), False))
#: the float32 per-row values (what a writer receives per row besides names)
ROW_VALUES = (PREDICTIONS, REFERENCE_PREDICTIONS, DELTAS)


def variant_field(name: str) -> str:
    """The key of a :data:`VARIANT_DATASETS` dataset in writes and reads: ``variants/pos`` -> ``pos``."""
    return name.rpartition("/")[2]


def region_path(field: str) -> str:
    """``regions/<field>``."""
    return f"{REGIONS}/{field}"


#: attributes that differ between shards of one run (and ``n``, which is a dataset shape)
SHARD_ATTRS = ("shard", "row_start", "row_stop", "n_total")
#: attributes that say when and how a file was made rather than what it holds
VOLATILE_ATTRS = ("created", "command_line", "merged_from", "averaged_from")
#: attributes about storage, not results
STORAGE_ATTRS = ("chunk_size", "compression")
#: where the inputs were: recorded, never compared (a relative and an absolute path name one file)
PROVENANCE_ATTRS = ("model_path", "input", "genome", "reference_path", "fold_model_path")
#: what identifies the inputs: compared by resume and merge
FINGERPRINT_ATTRS = ("input_sha256", "model_sha256", "reference_sha256")
COMPRESSIONS = ("gzip", "lzf", "none")
#: what differs between the folds of one scoring (one model each): every other attribute must agree to average
FOLD_ATTRS = ("model_sha256", "model_path")
#: what an averaged file records of its folds (JSON lists in fold order, and their number)
AVERAGE_ATTRS = ("averaged_from", "n_folds", "fold_model_sha256", "fold_model_path")


def comparable(attrs: dict) -> dict:
    """The attributes that two files of one run (a partial file and its resumption; shards) must share."""
    skip = set(VOLATILE_ATTRS) | set(STORAGE_ATTRS) | set(PROVENANCE_ATTRS) | set(SHARD_ATTRS)
    return {k: v for k, v in attrs.items() if k not in skip}


def partial_path(path):
    """The temporary name a result file has while it is written: ``dir/.<name>.partial.h5``."""
    from pathlib import Path

    path = Path(path)
    return path.with_name(f".{path.name}.partial.h5")


def lock_path(path):
    """The lock file of an output while a run writes it: ``dir/.<name>.lock``."""
    from pathlib import Path

    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def regions_format(regions_input) -> str:
    """``"narrowPeak"`` for a regions file named ``*.narrowPeak`` or ``*.narrowPeak.gz`` (any case), else
    ``"bed"``: the format the kept regions file is named after."""
    name = os.path.basename(os.fspath(regions_input)).lower()
    return "narrowPeak" if name.endswith((".narrowpeak", ".narrowpeak.gz")) else "bed"


def kept_regions_path(path, fmt: str):
    """The kept regions file of the result ``path`` (``dir/OUT.h5`` -> ``dir/OUT.regions.narrowPeak`` for
    ``fmt`` "narrowPeak", ``dir/OUT.regions.bed`` for "bed"; a name without ``.h5``/``.hdf5`` keeps it whole)."""
    from pathlib import Path

    path = Path(path)
    name = path.name
    stem = next((name[: -len(x)] for x in (".h5", ".hdf5") if name.lower().endswith(x)), name)
    return path.with_name(stem + KEPT_REGIONS_SUFFIXES[fmt])


def default_chunk_size(length: int) -> int:
    """Rows per chunk such that a chunk of ``shap/seq`` is about 1 MiB (1 to 1024 rows)."""
    return int(min(1024, max(1, 2**20 // (16 * max(int(length), 1)))))


def n_chunks(n: int, chunk_size: int) -> int:
    """Number of chunks of ``chunk_size`` rows in ``n`` rows."""
    return math.ceil(int(n) / int(chunk_size)) if n else 0


def parse_shard(spec) -> tuple[int, int]:
    """``"i-of-n"`` -> ``(i, n)`` (:func:`dnalift.options.parse_shard`; an OptionError, a ValueError)."""
    return _parse_option_shard(spec)


def shard_attrs(spec: str, n_total: int, *, group: int = 1) -> dict[str, Any]:
    """Attributes of shard ``spec`` ("i-of-k", 1-based ``i``) of a run over ``n_total`` sequences.

    Rows are split into ``k`` contiguous blocks whose sizes differ by at most one; shard ``i`` gets
    rows ``[(i-1)*n_total//k, i*n_total//k)``. With ``group`` (2 for variants: a pair of rows), whole groups
    are split that way, so no group is cut.

    Returns
    -------
    dict
        ``{"shard": "i-of-k", "row_start": int, "row_stop": int, "n_total": n_total}``
    """
    i, k = parse_shard(spec)
    n_total, group = int(n_total), int(group)
    groups = n_total // group
    return {"shard": f"{i}-of-{k}", "row_start": (i - 1) * groups // k * group, "row_stop": i * groups // k * group,
            "n_total": n_total}
