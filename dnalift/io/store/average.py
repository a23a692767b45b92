"""Averaging the folds of one scoring: result files of the same sequences, windows, target, references and
options, each scored with another model (the cross-validation folds of a BPNet or ChromBPNet), into one file.

The mean of every score array (``shap/seq``, and so ``projected_shap/seq``) and of every per-row value
(``predictions``, ``reference_predictions``, ``deltas``) is computed in float64 and stored as float32; each
fold's predictions are kept (``fold_predictions``, (n, k)) and the folds' model fingerprints are in the
attributes (:mod:`dnalift.io.store.schema`). The mean of files that each sum to delta sums to delta. The
file is written chunk by chunk through the result writer: memory does not grow with the number of rows.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from dnalift.errors import FoldMismatchError, OutputExistsError, StoreError
from dnalift.io.store import schema
from dnalift.io.store._h5 import fmt_rows, open_h5, read_attrs
from dnalift.io.store.merge import check_distinct, complete_file_info
from dnalift.io.store.reader import ResultReader
from dnalift.io.store.writer import ResultWriter

__all__ = ["average_results", "average_target_files", "fold_groups"]

#: what an attribute that differs between the files means, for the message
_MEANING = {"input_sha256": "the sequences (their names and letters)", "reference_sha256": "the references file",
            "target": "the target", "reference": "the references", "n_refs": "the number of references",
            "seed": "the references' seed", "width": "the window width", "center": "the windows' centre"}


def average_results(paths: Sequence[str | os.PathLike], output: str | os.PathLike, *, force: bool = False,
                    command_line: str | None = None, chunk_size: int | None = None) -> Path:
    """Average the result files of the folds of one scoring into one result file.

    Parameters
    ----------
    paths : sequence of path
        Two or more complete result files, one per fold: the same sequences (``input_sha256``), windows,
        target, references (``reference_sha256``, ``reference``, ``n_refs``, ``seed``) and options, compared
        as :func:`~dnalift.io.store.merge.merge_results` compares shards, except the model (``model_sha256``),
        which must differ.
    output : path
        The averaged file; written under its partial name and renamed when complete.
    force : bool
        Overwrite ``output`` if it exists.
    command_line : str, optional
        Recorded in the file (default: this process's).
    chunk_size : int, optional
        Rows read and written at a time (default: the first file's chunk size).

    Returns
    -------
    Path
        ``output``.

    Raises
    ------
    FoldMismatchError
        The files are not folds of one scoring (one line naming what differs and the two files), or one model
        is given twice; nothing is written.
    StoreError
        Fewer than two files, a file given twice, unreadable, incomplete, or already an average.
    OutputExistsError
        ``output`` exists and not ``force``.
    """
    paths, output = [Path(p) for p in paths], Path(output)
    infos = _check_folds(paths, output, force)
    first = infos[0]
    storage = first["attrs"]
    new_folder = not output.parent.exists()
    writer = _AverageWriter(output, folds=len(infos), n=first["n"], length=first["length"],
                            attrs=_attrs(infos, command_line), regions=first["regions"],
                            variants=first["variants"], force=force,
                            chunk_size=int(storage.get("chunk_size") or schema.default_chunk_size(first["length"])),
                            compression=str(storage.get("compression", "gzip")))
    step = max(1, int(chunk_size or writer.chunk_size))
    try:
        with contextlib.ExitStack() as stack:
            readers = [stack.enter_context(ResultReader(i["path"])) for i in infos]
            for start in range(0, first["n"], step):
                _average_block(readers, writer, slice(start, min(start + step, first["n"])))
    except BaseException:
        writer.close(success=False, discard=True)  # an average never resumes: leave nothing behind
        if new_folder:
            with contextlib.suppress(OSError):
                output.parent.rmdir()
        raise
    writer.close(success=True)
    return output


def _check_folds(paths: list[Path], output: Path, force: bool) -> list[dict]:
    """The files' headers, checked to be folds of one scoring."""
    if len(paths) < 2:
        raise StoreError(f"average needs the result files of two or more folds; got {len(paths)}",
                         argument="paths")
    check_distinct(paths, output, unit="fold")
    if output.exists() and not force:
        raise OutputExistsError(f"{output} exists; pass force=True to overwrite it or choose another "
                                f"output", argument="output", path=str(output))
    infos = [_fold_info(p) for p in paths]
    _check_same_scoring(infos)
    return infos


def _fold_info(p: Path) -> dict:
    info = complete_file_info(p, unit="run")
    if info["averaged"] or "averaged_from" in info["attrs"]:
        raise StoreError(f"{p} is already an average of folds; average the fold files themselves",
                         argument="paths", path=str(p))
    return info


def _shared(attrs: dict) -> dict:
    """The attributes every fold of one scoring shares (shard attributes included: shards of one range)."""
    skip = set(schema.VOLATILE_ATTRS) | set(schema.STORAGE_ATTRS) | set(schema.PROVENANCE_ATTRS) | set(
        schema.FOLD_ATTRS)
    return {k: v for k, v in attrs.items() if k not in skip}


def _check_same_scoring(infos: list[dict]) -> None:
    first = infos[0]
    params = _shared(first["attrs"])
    for info in infos[1:]:
        other = _shared(info["attrs"])
        keys = set(params) | set(other)
        for key in [k for k in _MEANING if k in keys] + sorted(keys - set(_MEANING)):  # the telling ones first
            if params.get(key) != other.get(key):
                _mismatch(first, info, key, params.get(key, "(none)"), other.get(key, "(none)"))
        for key in ("n", "length", "regions", "variants"):
            if info[key] != first[key]:
                _mismatch(first, info, key, first[key], info[key])
    seen: dict = {}
    for info in infos:
        sha = info["attrs"].get("model_sha256")
        if sha is not None and sha in seen:
            raise FoldMismatchError(f"{seen[sha]} and {info['path']} were scored with the same model (model_sha256 "
                                    f"{str(sha)[:12]}...); give each fold's file once", argument="paths",
                                    key="model_sha256", first=str(seen[sha]), other=str(info["path"]))
        seen[sha] = info["path"]


def _mismatch(first: dict, info: dict, key: str, a, b) -> None:
    what = _MEANING.get(key, f"{key!r}")
    shown = [f"{str(v)[:12]}..." if key.endswith("sha256") else repr(v) for v in (a, b)]
    raise FoldMismatchError(f"{first['path']} and {info['path']} are not folds of one scoring: {what} differ "
                            f"({key} {shown[0]} vs {shown[1]}); average files of the same sequences, windows, "
                            f"target, references and options scored with different models", argument="paths",
                            key=key, first=str(first["path"]), other=str(info["path"]), values=(a, b))


def _attrs(infos: list[dict], command_line: str | None) -> dict:
    first = infos[0]["attrs"]
    provenance = {k: first[k] for k in schema.PROVENANCE_ATTRS if k in first and k not in schema.FOLD_ATTRS}
    folds = {"averaged_from": [i["path"].name for i in infos], "n_folds": len(infos),
             "fold_model_sha256": [i["attrs"].get("model_sha256") for i in infos],
             "fold_model_path": [i["attrs"].get("model_path") for i in infos]}
    return dict(provenance, **_shared(first), **folds,
                command_line=command_line if command_line is not None else shlex.join(sys.argv))


def _average_block(readers: list[ResultReader], writer: "_AverageWriter", sl: slice) -> None:
    """Rows ``sl`` of every fold, checked to be the same sequences, averaged and written."""
    first = readers[0]
    names, raw, regions, variants = first.names_of(sl), first.raw(sl), first.regions_of(sl), first.variants_of(sl)
    hyp = first.hypothetical(sl).astype(np.float64)
    rows = {key: first._get(key, sl).astype(np.float64) for key in schema.ROW_VALUES}
    folds = np.empty((len(names), len(readers)), np.float32)
    folds[:, 0] = first.predictions(sl)
    for j, r in enumerate(readers[1:], 1):
        _check_same_rows(first, r, sl, names, raw, regions, variants)
        hyp += r.hypothetical(sl)
        for key in schema.ROW_VALUES:
            rows[key] += r._get(key, sl)
        folds[:, j] = r.predictions(sl)
    k = len(readers)
    writer.write_folds(sl.start, folds)
    writer.write(sl.start, raw=raw, hypothetical=(hyp / k).astype(np.float32), names=names, regions=regions,
                 variants=variants, **{key: (value / k).astype(np.float32) for key, value in rows.items()})


def _check_same_rows(first: ResultReader, other: ResultReader, sl: slice, names, raw, regions, variants) -> None:
    rows = fmt_rows(sl.start, sl.stop)
    if not np.array_equal(other.names_of(sl), names):
        raise FoldMismatchError(f"{first.path} and {other.path} name the sequences of {rows} differently; average "
                                f"files of the same sequences", argument="paths", key="names",
                                first=str(first.path), other=str(other.path))
    if not np.array_equal(other.raw(sl), raw):
        raise FoldMismatchError(f"{first.path} and {other.path} hold other sequences in {rows}; average files of "
                                f"the same sequences", argument="paths", key="raw", first=str(first.path),
                                other=str(other.path))
    for what, ours, theirs in (("windows", regions, other.regions_of(sl)),
                               ("variants", variants, other.variants_of(sl))):
        if ours is not None and any(not np.array_equal(theirs[k], ours[k]) for k in ours):
            raise FoldMismatchError(f"{first.path} and {other.path} hold other {what} in {rows}; average files of "
                                    f"the same {what}", argument="paths", key=what, first=str(first.path),
                                    other=str(other.path))


class _AverageWriter(ResultWriter):
    """The result writer with one more dataset: each fold's predictions, (n, k) float32."""

    def __init__(self, path, *, folds: int, **kwargs):
        self.folds = int(folds)
        super().__init__(path, **kwargs)

    def _create(self):
        f = super()._create()
        try:
            like = f[schema.PREDICTIONS]
            opts = {} if self.n == 0 else {
                "chunks": (like.chunks[0], self.folds), "compression": like.compression,
                "compression_opts": like.compression_opts, "shuffle": like.shuffle, "fletcher32": like.fletcher32}
            f.create_dataset(schema.FOLD_PREDICTIONS, shape=(self.n, self.folds), dtype=np.float32, **opts)
            f.flush()
        except BaseException:
            f.close()
            raise
        return f

    def write_folds(self, start: int, values: np.ndarray) -> None:
        """Each fold's predictions of rows ``[start, start + b)``, (b, k); before :meth:`write` of those rows."""
        def put():
            self._file[schema.FOLD_PREDICTIONS][start:start + len(values)] = values

        self._guard(put, "write")


# ------------------------------------------------------------------------------------- several target files
def fold_groups(paths: Sequence[str | os.PathLike], output: str | os.PathLike) -> list[tuple[list[Path], Path]]:
    """The files to average together and where each average goes.

    ``A.h5 B.h5 -o M.h5`` averages those files into ``M.h5``; when ``A.h5`` does not exist but the per-target
    files of a several-target scoring do (``A.counts.h5``, ``A.profile.h5``), each target's files are
    averaged into ``M.counts.h5``, ``M.profile.h5``.

    Returns
    -------
    list of (list of Path, Path)
        The fold files of each target and its output.

    Raises
    ------
    StoreError
        A file that does not exist and has no per-target files, or folds with different sets of targets.
    """
    paths, output = [Path(p) for p in paths], Path(output)
    if all(p.exists() for p in paths):
        return [(paths, output)]
    labelled = [_target_files(p) for p in paths]
    labels = sorted(labelled[0])
    for p, files in zip(paths[1:], labelled[1:]):
        if sorted(files) != labels:
            raise FoldMismatchError(f"{paths[0]} has the targets {', '.join(labels)} and {p} has "
                                    f"{', '.join(sorted(files))}; average the folds of one scoring",
                                    argument="paths", key="target", first=str(paths[0]), other=str(p))
    stem, suffix = _split_suffix(output.name)
    return [([files[label] for files in labelled], output.with_name(f"{stem}.{label}{suffix}")) for label in labels]


def _split_suffix(name: str) -> tuple[str, str]:
    suffix = next((x for x in (".h5", ".hdf5") if name.lower().endswith(x)), "")
    return (name[: -len(suffix)], suffix) if suffix else (name, ".h5")


def _target_files(path: Path) -> dict[str, Path]:
    """``{label: file}`` of the per-target files ``STEM.<label>.h5`` written for ``path`` by a several-target
    scoring."""
    if path.exists():
        raise StoreError(f"{path} exists but other folds were given as the names of several-target scorings; give "
                         f"every fold the same way", argument="paths", path=str(path))
    stem, suffix = _split_suffix(path.name)
    found = {}
    folder = path.parent if path.parent.is_dir() else None
    for candidate in sorted(folder.iterdir() if folder else ()):
        name = candidate.name
        label = name[len(stem) + 1: len(name) - len(suffix)]
        if not (name.startswith(f"{stem}.") and name.endswith(suffix) and label) or not candidate.is_file():
            continue
        with open_h5(candidate, "r") as f:
            if f.attrs.get("format_version") is None or int(read_attrs(f).get("n_targets", 1)) < 2:
                continue
        found[label] = candidate
    if not found:
        raise StoreError(f"{path}: no such file, and no per-target files {stem}.<target>{suffix} beside it; give "
                         f"the result files of the folds", argument="paths", path=str(path))
    return found


def average_target_files(paths: Sequence[str | os.PathLike], output: str | os.PathLike, *, force: bool = False,
                         command_line: str | None = None) -> list[Path]:
    """:func:`average_results` for each group of :func:`fold_groups`: every group is checked before any is
    written, and when one fails the averages this call already wrote are removed.

    Returns
    -------
    list of Path
        The averaged files, one per target.
    """
    groups = fold_groups(paths, output)
    for files, out in groups:
        _check_folds(files, out, force)
    written: list[Path] = []
    try:
        for files, out in groups:
            written.append(average_results(files, out, force=force, command_line=command_line))
    except BaseException:
        for out in written:
            out.unlink(missing_ok=True)
        raise
    return written
