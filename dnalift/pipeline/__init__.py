"""The scoring pipeline: sequences + model -> streamed HDF5 result files.

:func:`score` is what ``dnalift score`` (and the Snakemake workflow, through it) runs, for one validated
:class:`~dnalift.options.ScoreConfig`. It composes the pieces::

    open_fasta / open_regions  ->  chunk of one-hot X (b, 4, L)      (lazy: only names live in memory)
    load_model (+ normalize_first_layer)                              (once)
    make_references            ->  R (b, r, 4, L)                     (dinucleotide shuffles seeded per name)
    attribute(model, X, R, target=[...])                              (the engine)
    ResultWriter.write(...)                                           (one file per target)

Memory is bounded by the chunk (``chunk_size`` sequences, the result file's HDF5 chunk, about 1 MiB of
scores) and by the engine's batch, never by the number of sequences.

Output files
    One target: ``output`` itself. Several targets: one file per target, ``OUT.<target>.h5`` where ``OUT``
    is ``output`` without its ``.h5`` suffix and ``<target>`` the target's label, e.g. ``scores.h5`` with
    targets 0 and 2 gives ``scores.0.h5`` and ``scores.2.h5``. An output may never be an input file.

Reproducibility
    Dinucleotide shuffles are seeded by ``(seed, sequence name)``, so a sequence gets the same references
    whatever chunk, shard or resumed run it is scored in. A resumed run gives the bits of an uninterrupted one
    (on the same device and precision): it keeps the batch size (:mod:`dnalift.pipeline.batch`). Shards and
    other batch sizes agree to float32 rounding only, since a row's bits depend on the batch it is in.

Failures
    A lock on the output name (:class:`~dnalift.io.store.lock.OutputLock`) keeps a second run with the same
    output from starting. Rows are written to ``.OUT.h5.partial.h5`` and renamed to ``OUT.h5`` only when
    every row is written. When the run stops on a data error (:class:`~dnalift.errors.DnaliftError`: a bad
    sequence, model, option) the partial files of this run are deleted: the input must change, so nothing in
    them could be resumed. When the run is interrupted (Ctrl-C, SIGTERM, out of memory, a full disk, any
    error that is not about the data) the partial files that hold at least one complete chunk are kept, and
    ``resume=True`` with the same options and inputs finishes them without recomputing the complete chunks;
    the inputs are compared by content (``input_sha256``, ``model_sha256``, ``reference_sha256``), not by path.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence


from dnalift.options import ControlInputs, Layout, PairReferences
from dnalift.pipeline.config import ScoreConfig
from dnalift.errors import DiskFullError, DnaliftError, OutputWriteError
from dnalift.pipeline.batch import run_batch_size
from dnalift.pipeline.chunks import Overlap, log_device, read_chunk, score_chunk
from dnalift.pipeline.inputs import (check_argument_order, check_device, check_precision, open_inputs, scan,
                                     shuffle_workers)
from dnalift.pipeline.outputs import DeltaTally, ScoreSummary, output_paths, resolve_targets

__all__ = ["score", "score_part", "ScoreConfig", "ScoreSummary", "output_paths", "resolve_targets"]

log = logging.getLogger(__name__)

#: sequences per chunk when the result file's chunk is larger (bounds the references' memory)
MAX_CHUNK = 1024
#: chunks between two returns of freed heap memory to the system (see :func:`_trim_heap`)
TRIM_EVERY = 8


# ------------------------------------------------------------------------------------------------ score


@dataclasses.dataclass
class _Run:
    """What the chunk loop needs, set up once."""

    config: ScoreConfig
    source: object
    model: object
    references: object
    targets: list
    paths: list
    row_start: int
    n_rows: int
    batch_size: int
    batch_size_from: str  # for the log: the option, the interrupted run's or automatic
    writers: list = dataclasses.field(default_factory=list)
    fresh: list = dataclasses.field(default_factory=list)
    tally: DeltaTally | None = None  # the worst delta, carried from the chunks


def score(config: ScoreConfig, *, progress: Callable[[int, int], None] | None = None) -> ScoreSummary:
    """Score every sequence of a FASTA file (or every region of a BED file) and stream the results to HDF5.

    Parameters
    ----------
    config : ScoreConfig
        Every option of the run, already checked (see :class:`~dnalift.pipeline.config.ScoreConfig`). With
        several devices (``cuda:0,cuda:1``, ``cuda:all``, ``cpu,cpu``) one worker process per device scores a
        part of the rows and the parts are joined into the output (:mod:`dnalift.pipeline.devices`): the same
        result as on one device.
    progress : callable, optional
        ``progress(done, total)`` with the number of rows finished (including resumed ones) and the total (of
        every part, with several devices); called once before scoring and after each engine batch.

    Returns
    -------
    ScoreSummary

    Raises
    ------
    DnaliftError
        Bad sequences, regions, model, references, targets or outputs (one-line messages); another run
        writing the same output (:class:`~dnalift.errors.OutputInUseError`); a full disk
        (:class:`~dnalift.errors.DiskFullError`, the partial files kept for ``resume=True``).
    """
    t0 = time.perf_counter()
    return _score(config, progress, t0, several=True)


def score_part(config: ScoreConfig, *, part: tuple[int, int], final_output, progress=None) -> ScoreSummary:
    """Part ``i`` of ``k`` of a run on several devices (:mod:`dnalift.pipeline.devices`; each worker runs this).

    Like :func:`score` with ``config.output`` the part's file (a shard: ``row_start``, ``row_stop``, ``n_total``),
    on ``config.device`` alone, its rows whole chunks (:func:`~dnalift.pipeline.devices.part_rows`), and the
    run's own outputs (``final_output``, one per target) checked as :func:`score` checks them.
    """
    return _score(config, progress, time.perf_counter(), part=part, final_output=final_output)


def _score(config: ScoreConfig, progress, t0: float, *, several: bool = False, part=None,
           final_output=None) -> ScoreSummary:
    from dnalift.io.outputs import OutputFolders, check_not_existing, check_not_input, check_output_dir
    from dnalift.io.store import OutputLock

    check_output_dir(config.output)
    check_not_input(config.output, config.input_files())
    if len(config.targets) == 1:
        check_not_existing(Path(final_output or config.output), force=config.force, resume=config.resume)
    check_argument_order(config)
    devices = check_device(config.device)
    check_precision(config.precision, devices)
    if len(devices) == 1 and devices[0] != config.device:
        config = config.replace(device=devices[0])  # cuda:all on a machine with one GPU
    folders = OutputFolders()
    folders.make(config.output.parent)
    try:
        with OutputLock(config.output):
            if several and len(devices) > 1:
                from dnalift.pipeline.devices import score_on_devices

                return score_on_devices(config, devices, progress=progress)
            return _score_locked(config, progress, t0, part=part, final_output=final_output)
    finally:
        folders.remove_empty()


def _score_locked(config: ScoreConfig, progress, t0: float, *, part=None, final_output=None) -> ScoreSummary:
    from dnalift.io.outputs import check_not_existing, check_not_input
    from dnalift.io.store.schema import kept_regions_path, regions_format

    source, model = open_inputs(config)
    references = None
    try:
        fingerprint = scan(source)
        targets = resolve_targets(model, config.targets)
        paths = output_paths(config.output, [t.label for t in targets])
        finals = output_paths(final_output, [t.label for t in targets]) if final_output is not None else paths
        for p in finals[1:] if len(finals) > 1 else ():
            check_not_input(p, config.input_files())
        for p in finals if config.regions is not None else ():  # the kept regions file beside each output
            check_not_input(kept_regions_path(p, regions_format(config.regions)), config.input_files())
        for p in finals if len(finals) > 1 else ():
            check_not_existing(p, force=config.force, resume=config.resume)
        references = _references(config, source, workers=shuffle_workers(config, [config.device]))
        shard = _rows(config, source, part)
        row_start, row_stop = (shard["row_start"], shard["row_stop"]) if shard else (0, len(source))
        run = _Run(config, source, model, references, targets, paths, row_start, row_stop - row_start,
                   *run_batch_size(config, model, source.length, paths))
        if shard and run.n_rows == 0:
            log.warning("shard %s has no sequences (the input has %d, fewer than the shards): its file is empty; "
                        "dnalift merge takes it with the others", config.shard, len(source))
        attrs = _attrs(run, fingerprint, shard)
        _open_writers(run, attrs)
        run.tally = tally = DeltaTally([t.label for t in targets])
        n_resumed = _score_chunks(run, progress)
        return ScoreSummary(outputs=paths, targets=[t.label for t in targets], n_sequences=run.n_rows,
                            n_scored=run.n_rows - n_resumed, n_resumed=n_resumed, n_skipped=len(source.skipped),
                            seconds=time.perf_counter() - t0, max_abs_delta=tally.value, worst=tally.name,
                            n_nonfinite=tally.n_nonfinite, paired=config.variants is not None, tally=tally)
    finally:
        source.close()
        if references is not None:
            references.close()


def _chunk_size(config: ScoreConfig, length: int) -> int:
    """Rows per chunk of the result files (a resumed file keeps its own); even for variants, whose pairs of rows
    stay in one chunk (a pair's references are made together)."""
    from dnalift.io.store import default_chunk_size

    chunk = config.chunk_size or min(MAX_CHUNK, default_chunk_size(length))
    return chunk + chunk % 2 if config.variants is not None else chunk


def _rows(config: ScoreConfig, source, part) -> dict:
    """The shard attributes of the run's rows: ``shard``, or part ``(i, k)`` of a run on several devices (whole
    chunks, so whole pairs of variants); {} for every row."""
    from dnalift.io.store import shard_attrs

    if part is not None:
        from dnalift.pipeline.devices import part_rows

        start, stop = part_rows(len(source), _chunk_size(config, source.length), *part)
        return {"shard": f"{part[0]}-of-{part[1]}", "row_start": start, "row_stop": stop, "n_total": len(source)}
    group = 2 if config.variants is not None else 1
    return shard_attrs(config.shard, len(source), group=group) if config.shard is not None else {}


def _references(config: ScoreConfig, source, *, workers: int = 0):
    """The run's references (dinucleotide shuffles made by ``workers`` processes); for variants wrapped to treat
    each pair of rows together (``pair_references``)."""
    from dnalift.references.make import make_references

    if config.variants is None:
        return make_references(config.reference, length=source.length, n_refs=config.n_refs, seed=config.seed,
                               names=source.names, workers=workers)
    from dnalift.references.pairs import PairedReferences

    names = source.ids if config.pair_references == PairReferences.SHARED else source.names
    inner = make_references(config.reference, length=source.length, n_refs=config.n_refs, seed=config.seed,
                            names=names, workers=workers)
    return PairedReferences(inner, config.pair_references)


def _attrs(run: _Run, fingerprint: str, shard: dict) -> dict:
    """The root attributes every result file of the run gets (the writers add the target's own)."""
    from dnalift.io.store.schema import REGIONS_FORMAT, regions_format

    c, refs, model = run.config, run.references, run.model
    regions, variants = c.regions is not None, c.variants is not None
    kind = "regions" if regions else "variants" if variants else "fasta"
    return {
        "rule": c.rule, "max_rule": c.max_rule, "reference": refs.label, "n_refs": refs.n_refs, "seed": c.seed,
        "input_sha256": fingerprint, "model_sha256": model.sha256, "reference_sha256": refs.sha256,
        "model_path": os.fspath(c.model), "input": os.fspath(c.input_path), "reference_path": refs.path,
        "genome": os.fspath(c.genome) if c.genome is not None else None, "model_format": model.format,
        "normalized": bool(model.normalized), "n_policy": c.n_policy, "rc_average": c.rc_average,
        "precision": c.precision, "width": run.source.length, "input_kind": kind,
        "center": c.center if regions else None, "off_genome": c.off_genome if regions or variants else None,
        "pair_references": c.pair_references if variants else None,
        REGIONS_FORMAT: regions_format(c.regions) if regions else None,
        "allow_gradient": list(c.allow_gradient) or None, "n_targets": len(run.targets),
        "allow_nonfinite": True if c.allow_nonfinite else None, "batch_size": run.batch_size,
        "layout": c.layout if c.layout != Layout.AUTO else None,
        "control_inputs": c.control_inputs if c.control_inputs != ControlInputs.ZEROS else None,
        "command_line": c.command_line or None, **shard,
    }


def _target_attrs(model, target) -> dict:
    """What a result file records of its target: the output, the unit index and name, or the standard target."""
    names = list(model.output_shapes) if getattr(model, "output_shapes", None) else [""]
    own = {"target_kind": target.how}
    if names[target.output]:
        own["target_output"] = names[target.output]
    if target.how == "unit":
        own["target_index"] = target.index
        if model.output_names and len(names) == 1:
            own["target_name"] = model.output_names[target.index]
    return own


def _open_writers(run: _Run, attrs: dict) -> None:
    from dnalift.io.store import ResultWriter, partial_path

    c = run.config
    chunk = _chunk_size(c, run.source.length)
    try:
        for target, path in zip(run.targets, run.paths):
            own = dict(attrs, target=target.label, **_target_attrs(run.model, target))
            fresh = not (c.resume and partial_path(path).exists())
            writer = ResultWriter(path, n=run.n_rows, length=run.source.length, attrs=own, chunk_size=chunk,
                                  regions=run.source.regions is not None, variants=c.variants is not None,
                                  force=c.force, resume=c.resume,
                                  lock=Path(path) != c.output)
            run.writers.append(writer)
            run.fresh.append(fresh or writer.completed_rows() == 0)
    except BaseException:
        _abandon(run.writers, delete=run.fresh)  # keep the partial files of an earlier run this one only opened
        raise


def _score_chunks(run: _Run, progress) -> int:
    """Compute and write every pending row; returns the rows kept from an interrupted run."""
    pending = _union_ranges([w.pending_ranges() for w in run.writers])
    n_resumed = run.n_rows - sum(b - a for a, b in pending)
    if n_resumed:
        log.info("resuming: %d of %d rows are already complete", n_resumed, run.n_rows)
        run.tally.add_kept(run.writers, _complement(pending, run.n_rows), offset=run.row_start)
    step = run.writers[0].chunk_size
    chunks = [(c0, min(c0 + step, b)) for a, b in pending for c0 in range(a, b, step)]
    _handle_failures(run, lambda: _start(run, chunks, progress, n_resumed))
    return n_resumed


def _start(run: _Run, chunks: list, progress, done: int) -> None:
    """Say where the run computes (the output's checks passed), then score."""
    log_device(run)
    _score_pending(run, chunks, progress, done)


def _score_pending(run: _Run, chunks: list, progress, done: int) -> None:
    """Score the chunks in order, reading each one ahead and writing each one behind the compute."""
    overlap = Overlap()
    try:
        if progress is not None:
            progress(done, run.n_rows)
        for n_chunks, (c0, c1) in enumerate(chunks, 1):
            inputs = overlap.take_read()
            if n_chunks < len(chunks):  # read and shuffle the next chunk while this one is scored
                overlap.read(read_chunk, run, *chunks[n_chunks])
            overlap.write(score_chunk(run, c0, c1, progress, done, inputs))  # written beside the next chunk
            done += c1 - c0
            if n_chunks % TRIM_EVERY == 0:
                _trim_heap()
            if progress is not None:
                progress(done, run.n_rows)
        overlap.finish()
    except BaseException:
        overlap.drain()  # no thread touches the files while they are closed
        raise
    finally:
        overlap.close()
    for w in run.writers:
        w.close(success=True)


def _handle_failures(run: _Run, score) -> None:
    """Run ``score()``; when it fails, close the writers keeping the partial files that resume can finish."""
    try:
        score()
    except DiskFullError as e:
        if not e.details.get("kept", True):
            _abandon(run.writers, delete=None, quiet=True)
            raise
        rows = _abandon(run.writers, delete=None, quiet=True)
        if rows == 0 or not run.writers[0].partial.exists():
            raise DiskFullError(f"{e}; nothing was written (no chunk was complete): free space and run the command "
                                f"again", argument=e.argument, **dict(e.details, kept=False)) from None
        raise DiskFullError(f"{e}; {rows} of {run.n_rows} rows are kept in {run.writers[0].partial}: free space and "
                            f"rerun the same command with resume=True", argument=e.argument,
                            **e.details) from None
    except OutputWriteError:
        _abandon(run.writers, delete=None)
        raise
    except DnaliftError:  # a data error: the input or options must change, so nothing could be resumed
        _abandon(run.writers, delete=[True] * len(run.writers))
        raise
    except BaseException:  # interrupted (Ctrl-C, SIGTERM, out of memory...): keep what resume can finish
        _abandon(run.writers, delete=None)
        raise


_MALLOC_TRIM = None


def _trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim``; a no-op elsewhere).

    Each chunk allocates and frees the engine's batches (hundreds of MB) among long-lived small objects; glibc
    keeps the freed memory, fragmented, and the peak resident memory of a long run creeps up with the number
    of chunks (+20% from 2,000 to 50,000 sequences). Trimming every few chunks keeps it flat; trimming after
    every chunk would cost page faults (about 2% of the run time every 8 chunks, 25% every chunk).
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        _MALLOC_TRIM = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
            except (OSError, AttributeError):
                pass
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


def _union_ranges(lists: Sequence[Sequence[tuple[int, int]]]) -> list[tuple[int, int]]:
    """Union of row ranges, sorted and joined."""
    ranges = sorted((int(a), int(b)) for lst in lists for a, b in lst if b > a)
    out: list[list[int]] = []
    for a, b in ranges:
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _complement(ranges: Sequence[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """The rows of ``[0, n)`` outside ``ranges`` (sorted, disjoint)."""
    out, at = [], 0
    for a, b in ranges:
        if a > at:
            out.append((at, a))
        at = max(at, b)
    return out + ([(at, n)] if at < n else [])


def _abandon(writers, *, delete, quiet: bool = False) -> int:
    """Close writers after a failure; returns the rows kept. ``delete``: per writer, whether to remove its
    partial file; None (interrupted): remove only those without a complete chunk, and say how to resume the
    others (unless ``quiet``: the caller says it)."""
    kept = 0
    for i, w in enumerate(writers):
        try:
            rows = w.completed_rows()
        except Exception:
            rows = 0
        remove = delete[i] if delete is not None else rows == 0
        try:
            w.close(success=False, discard=remove)
        except Exception:  # closing a broken file must not hide the first error
            log.debug("closing %s failed", w.partial, exc_info=True)
        if not remove and w.partial.exists():
            kept = max(kept, rows)
            if delete is None and not quiet:
                log.warning("stopped; %d of %d rows are kept in %s: rerun the same command with resume=True to "
                            "finish", rows, w.n, w.partial)
    return kept


