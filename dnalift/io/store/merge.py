"""Joining the shards of one run (files written with ``shard="i-of-n"``) into one result file."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

from dnalift.errors import OutputExistsError, ShardMismatchError, StoreError
from dnalift.io.store import schema
from dnalift.io.store._h5 import check_dnalift, fmt_rows, open_h5, read_attrs
from dnalift.io.store.reader import ResultReader
from dnalift.io.store.writer import ResultWriter

__all__ = ["merge_results"]


def merge_results(paths: Sequence[str | os.PathLike], output: str | os.PathLike, *, force: bool = False,
                  command_line: str | None = None, lock: bool = True) -> Path:
    """Join the shards of one run into one result file.

    The shards must share every attribute that :func:`schema.comparable` keeps: the options, and the
    fingerprints of the input, model and references (``input_sha256``, ``model_sha256``,
    ``reference_sha256``), not the paths they were read from, so shards written from a relative and an
    absolute path of one FASTA merge, and a shard of another FASTA at the same path does not. Their row
    ranges must cover ``0 .. n_total`` exactly once; names must be unique across shards. The merged file is
    written chunk by chunk through :class:`ResultWriter` (memory does not grow with the number of rows,
    apart from the set of names used to find duplicates). Its attributes are the shared ones plus
    ``merged_from`` (JSON list of the shard file names). ``lock=False`` when the caller holds the output's lock
    (a run on several devices joining its parts).

    Returns
    -------
    Path
        ``output``.

    Raises
    ------
    ShardMismatchError
        Shards of different runs (the message names the attribute and the two files).
    StoreError
        A shard is unreadable, incomplete or not a shard; rows missing or given twice.
    OutputExistsError
        ``output`` exists and not ``force``.
    """
    paths = [Path(p) for p in paths]
    output = Path(output)
    if not paths:
        raise StoreError("merge needs at least one shard file", argument="paths")
    if output.exists() and not force:
        raise OutputExistsError(f"{output} exists; pass force=True to overwrite it or choose another output",
                                argument="output", path=str(output))
    check_distinct(paths, output, unit="shard")
    infos = sorted((_shard_info(p) for p in paths), key=lambda i: (i["start"], i["stop"]))
    params = _check_same_run(infos)
    _check_coverage(infos)
    _check_unique_names(infos)
    first = infos[0]
    provenance = {k: first["attrs"][k] for k in schema.PROVENANCE_ATTRS if k in first["attrs"]}  # the first's
    attrs = dict(provenance, **params, command_line=command_line if command_line is not None else shlex.join(sys.argv),
                 merged_from=[i["path"].name for i in infos])
    storage = first["attrs"]
    writer = ResultWriter(output, n=int(storage["n_total"]), length=first["length"], attrs=attrs,
                          chunk_size=int(storage.get("chunk_size") or schema.default_chunk_size(first["length"])),
                          compression=str(storage.get("compression", "gzip")), regions=first["regions"],
                          variants=first["variants"], force=force, lock=lock)
    try:
        for info in infos:
            _copy_rows(info, writer)
    except BaseException:
        writer.close(success=False, discard=True)  # merge never resumes: leave nothing behind
        raise
    writer.close(success=True)
    return output


def check_distinct(paths: list[Path], output: Path, *, unit: str) -> None:
    """Each input file once (by its real path) and the output none of them; ``unit`` names the inputs
    (``"shard"``, ``"fold"``) in the message."""
    real = [os.path.realpath(p) for p in paths]
    if len(set(real)) != len(real):
        raise StoreError(f"the same {unit} file is given twice (perhaps once as a relative and once as an absolute "
                         f"path); give each {unit} once", argument="paths")
    if os.path.realpath(output) in real:
        raise StoreError(f"the output {output} is one of the {unit}s; choose another output", argument="output")


def complete_file_info(p: Path, *, unit: str) -> dict:
    """The header of a complete result file: path, attrs, n, length, and whether it has regions, variants and
    fold predictions (an average); :class:`StoreError` for a damaged or incomplete one (``unit`` names its
    run in the message: ``"shard"``, ``"run"``)."""
    with open_h5(p, "r") as f:
        check_dnalift(f, p)
        attrs = read_attrs(f)
        for key in (schema.RAW, schema.CHUNKS_COMPLETE):
            if key not in f:
                raise StoreError(f"{p} has no {key} dataset; it is damaged: run `dnalift inspect {p}`",
                                 argument="paths", path=str(p))
        if not f[schema.CHUNKS_COMPLETE][...].all():
            raise StoreError(f"{p} is incomplete (not every chunk was written); finish that {unit} with resume=True "
                             f"first", argument="paths", path=str(p))
        shape = f[schema.RAW].shape
        return {"path": p, "attrs": attrs, "n": shape[0], "length": shape[2], "regions": schema.REGIONS in f,
                "variants": schema.VARIANT_IDS in f, "averaged": schema.FOLD_PREDICTIONS in f}


def _shard_info(p: Path) -> dict:
    info = complete_file_info(p, unit="shard")
    attrs = info["attrs"]
    missing = [k for k in schema.SHARD_ATTRS if k not in attrs]
    if missing:
        raise StoreError(f"{p} is not a shard (no {missing[0]!r} attribute); merge takes the files written "
                         f"with shard='i-of-n'", argument="paths", path=str(p))
    info.update(start=int(attrs["row_start"]), stop=int(attrs["row_stop"]))
    if info["stop"] - info["start"] != info["n"]:
        raise StoreError(f"{p} says it holds rows {info['start']}-{info['stop'] - 1} but has {info['n']} rows; the "
                         f"shard is damaged", argument="paths", path=str(p))
    return info


def _check_same_run(infos: list[dict]) -> dict:
    """The shared attributes; ShardMismatchError naming the first that differs."""
    first = infos[0]
    params = schema.comparable(first["attrs"])
    for info in infos[1:]:
        other = schema.comparable(info["attrs"])
        for key in sorted(set(params) | set(other)):
            if params.get(key) != other.get(key):
                a, b = params.get(key, "(none)"), other.get(key, "(none)")
                raise ShardMismatchError(
                    f"attribute {key!r} differs: {a!r} in {first['path']}, {b!r} in {info['path']}; shards must "
                    f"come from one run (same model, input and options)", argument="paths", key=key,
                    first=str(first["path"]), other=str(info["path"]), values=(a, b))
        for what in ("length", "regions", "variants"):
            if info[what] != first[what]:
                raise ShardMismatchError(f"{what} differs: {first[what]} in {first['path']}, {info[what]} in "
                                         f"{info['path']}; shards must come from one run", argument="paths",
                                         key=what, first=str(first["path"]), other=str(info["path"]))
        if int(info["attrs"]["n_total"]) != int(first["attrs"]["n_total"]):
            raise ShardMismatchError(f"n_total differs: {first['attrs']['n_total']} in {first['path']}, "
                                     f"{info['attrs']['n_total']} in {info['path']}; shards must come from one run",
                                     argument="paths", key="n_total", first=str(first["path"]),
                                     other=str(info["path"]))
    return params


def _check_coverage(infos: list[dict]) -> None:
    n_total = int(infos[0]["attrs"]["n_total"])
    pos, prev = 0, None
    for info in infos:
        if info["n"] == 0:
            continue
        if info["start"] > pos:
            where = f"between {prev['path']} and {info['path']}" if prev else f"before {info['path']}"
            raise StoreError(f"{fmt_rows(pos, info['start'])} are in no shard ({where}); give every shard of the run",
                             argument="paths")
        if info["start"] < pos:
            raise StoreError(f"{fmt_rows(info['start'], min(pos, info['stop']))} are in both {prev['path']} and "
                             f"{info['path']}; give each shard once", argument="paths")
        pos, prev = info["stop"], info
    if pos != n_total:
        where = f"after {prev['path']}" if prev else "in the files given"
        raise StoreError(f"{fmt_rows(pos, n_total)} of {n_total} are in no shard ({where}); give every shard of "
                         f"the run", argument="paths")


def _check_unique_names(infos: list[dict]) -> None:
    seen: dict[str, tuple[Path, int]] = {}
    for info in infos:
        with open_h5(info["path"], "r") as f:
            names = f[schema.NAMES].asstr()
            for a in range(0, info["n"], 65536):
                for j, name in enumerate(names[a:a + 65536]):
                    if name in seen:
                        other_path, other_row = seen[name]
                        raise StoreError(f"sequence name {name!r} is in {other_path} (row {other_row}) and in "
                                         f"{info['path']} (row {info['start'] + a + j}); names must be unique",
                                         argument="paths")
                    seen[name] = (info["path"], info["start"] + a + j)


def _copy_rows(info: dict, writer: ResultWriter) -> None:
    step = writer.chunk_size
    with ResultReader(info["path"]) as r:
        for a in range(0, r.n, step):
            sl = slice(a, min(a + step, r.n))
            writer.write(info["start"] + a, raw=r.raw(sl), hypothetical=r.hypothetical(sl), names=r.names_of(sl),
                         predictions=r.predictions(sl), reference_predictions=r.reference_predictions(sl),
                         deltas=r.deltas(sl), regions=r.regions_of(sl),
                         variants=r.variants_of(sl))
