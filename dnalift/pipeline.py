"""The scoring pipeline: sequences + model -> streamed HDF5 result files.

:func:`score` is what ``dnalift score`` (and the Snakemake workflow, through it) runs, for one validated
:class:`~dnalift.config.ScoreConfig`. It composes the pieces::

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
    whatever chunk, shard or resumed run it is scored in; a sharded or resumed run gives the same numbers
    as one uninterrupted run (on the same device and precision).

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
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dnalift.config import ControlInputs, Layout, ScoreConfig
from dnalift.errors import (DiskFullError, DnaliftError, ModelInputError, OptionError, OutputWriteError,
                            RegionError, SequenceError, TargetError)

__all__ = ["score", "ScoreConfig", "ScoreSummary", "output_paths", "resolve_targets"]

log = logging.getLogger(__name__)

#: sequences per chunk when the result file's chunk is larger (bounds the references' memory)
MAX_CHUNK = 1024
#: chunks between two returns of freed heap memory to the system (see :func:`_trim_heap`)
TRIM_EVERY = 8


@dataclasses.dataclass
class ScoreSummary:
    """What a :func:`score` run did.

    Attributes
    ----------
    outputs : list of Path
        The result files, one per target.
    targets : list of str
        The targets' labels, in the order of ``outputs``.
    n_sequences : int
        Rows in each result file (the shard's rows for a shard).
    n_scored : int
        Rows computed by this run (fewer than ``n_sequences`` when resuming).
    n_resumed : int
        Rows kept from the partial file of an interrupted run.
    n_skipped : int
        Sequences or regions of the input left out (letters other than ACGT with ``n_policy="skip"``,
        windows not on the genome).
    seconds : float
        Wall time of the run.
    max_abs_delta : float
        Largest ``|summation-to-delta error|`` over all rows and targets (``nan`` when there are no rows).
    worst : str or None
        Name of the sequence with that error (and its target when there are several).
    """

    outputs: list
    targets: list
    n_sequences: int
    n_scored: int
    n_resumed: int
    n_skipped: int
    seconds: float
    max_abs_delta: float
    worst: str | None

    def line(self) -> str:
        """The one-line summary ``dnalift score`` prints."""
        files = ", ".join(str(p) for p in self.outputs)
        resumed = f", {self.n_resumed} kept from the interrupted run" if self.n_resumed else ""
        if math.isnan(self.max_abs_delta):
            delta = "no rows"
        else:
            delta = f"worst |summation-to-delta error| {self.max_abs_delta:.3g}"
            if self.worst:
                delta += f" ({self.worst})"
        return (f"scored {self.n_scored} sequences{resumed}, skipped {self.n_skipped}, in "
                f"{_duration(self.seconds)}; {delta} -> {files}")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# ------------------------------------------------------------------------------------------ outputs, targets


def output_paths(output: str | os.PathLike, labels: Sequence[str]) -> list[Path]:
    """The result file of each target: ``output`` for one target, ``OUT.<label>.h5`` for several."""
    output = Path(output)
    if len(labels) == 1:
        return [output]
    name = output.name
    suffix = next((x for x in (".h5", ".hdf5") if name.lower().endswith(x)), "")
    stem, suffix = (name[: -len(suffix)], suffix) if suffix else (name, ".h5")
    safe = [re.sub(r"[^A-Za-z0-9_.+-]", "_", str(label)) for label in labels]
    if len(set(safe)) != len(safe):
        safe = [f"{i}_{s}" for i, s in enumerate(safe)]
    return [output.with_name(f"{stem}.{s}{suffix}") for s in safe]


def resolve_targets(model, targets: Sequence) -> list[tuple[int, str]]:
    """Targets given as indices or output names -> ``[(index, label), ...]``.

    Parameters
    ----------
    model : LoadedModel
    targets : sequence of int or str
        Output indices (of the output flattened per row; negative counts from the end) or names from the
        model's ``output_names``.

    Raises
    ------
    TargetError
        A target that is not an output of the model, or a target given twice (``argument="targets"``).
    """
    n_out = int(model.n_outputs)
    names = list(model.output_names or ())
    if names:
        listing = f"its outputs are {', '.join(f'{i}={n}' for i, n in enumerate(names[:10]))}" + (
            " ..." if len(names) > 10 else "")
    else:
        listing = f"indices 0 to {n_out - 1}" if n_out > 1 else "index 0"
    info = f"`dnalift info {model.path or 'MODEL'}` lists them"
    out: list[tuple[int, str]] = []
    if not targets:
        raise TargetError("no target given; give target=INDEX (or an output name)", argument="targets")
    for spec in targets:
        text = str(spec).strip()
        if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
            index = int(spec)
        elif re.fullmatch(r"-?\d+", text):
            index = int(text)
        elif text in names:
            index = names.index(text)
        else:
            hint = listing if names else f"the model declares no output names, use an index ({listing})"
            raise TargetError(f"target={text!r} is not an output of {model.name}: {hint}; {info}",
                              argument="targets", value=text)
        if not -n_out <= index < n_out:
            raise TargetError(f"target={text} does not exist: {model.name} has {n_out} output(s) per sequence "
                              f"({listing}); {info}", argument="targets", value=text)
        index %= n_out
        if any(i == index for i, _ in out):
            raise TargetError(f"target={text} is given twice (output {index}); give each target once",
                              argument="targets", value=text)
        out.append((index, text))
    return out


# ----------------------------------------------------------------------------------------------- inputs


def _check_argument_order(config: ScoreConfig) -> None:
    """A model file given as the sequences and a FASTA as the model: say so, instead of a decoding error."""
    from dnalift.io.fasta import sniff

    sequences = config.fasta if config.fasta is not None else config.genome
    try:
        model_kind = sniff(config.model) if config.model.is_file() else None
        seq_kind = sniff(sequences) if sequences is not None and sequences.is_file() else None
    except OSError:
        return
    if model_kind in ("fasta", "bgzip") and seq_kind == "binary":
        which = "fasta" if config.fasta is not None else "genome"
        raise OptionError(f"the arguments look swapped: {config.model} is a FASTA file and {sequences} is not; give "
                          f"the model first, then the {which} (model={sequences}, {which}={config.model})",
                          argument="model", path=str(config.model))


def _check_device(device: str) -> None:
    import torch

    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise OptionError(f"device={device!r} was asked for but PyTorch sees no CUDA device here; use device='cpu' "
                          f"(or 'auto')", argument="device", value=device)
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise OptionError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"cuda:0 to cuda:{torch.cuda.device_count() - 1}", argument="device", value=device)


def _load(config: ScoreConfig, input_length: int | None):
    from dnalift.models import load_model

    options = {"arch": config.arch, "arch_kwargs": config.arch_kwargs, "trust": config.trust_model}
    if config.layout != Layout.AUTO:
        options["layout"] = str(config.layout)
    return load_model(config.model, input_length=input_length, **options)


def _open_inputs(config: ScoreConfig):
    """The sequence source and the model, loaded once (for regions without ``width`` the model gives it)."""
    from dnalift.io.fasta import open_fasta
    from dnalift.io.regions import open_regions

    model = None
    if config.fasta is not None:
        source = open_fasta(config.fasta, width=config.width, n_policy=config.n_policy)
    else:
        width = config.width
        if width is None:
            model = _load(config, None)
            width = model.input_length
            if width is None:
                raise RegionError(f"{config.regions}: give the window width with width= (the model does not "
                                  f"record its input length)", argument="width")
            log.info("using the model's input length %d as the window width", width)
        source = open_regions(config.regions, config.genome, width=width, center=config.center,
                              off_genome=config.off_genome, n_policy=config.n_policy)
    try:
        log.info("%s: %d sequences of length %d%s", source.path, len(source), source.length,
                 f" ({len(source.skipped)} skipped)" if source.skipped else "")
        if model is None:
            model = _load(config, source.length)
        from dnalift.models import check_input

        check_input(model, (4, source.length))
        if config.normalize:
            from dnalift.normalize import normalize_first_layer

            model = normalize_first_layer(model)
    except BaseException:
        source.close()
        raise
    return source, model


def _scan(source) -> str:
    """The input's fingerprint; refuses a character that is no nucleotide letter; warns about U and N."""
    scan = source.scan()
    n = len(source)
    if scan.invalid is not None:
        name, position, char = scan.invalid
        raise SequenceError(f"{source.path}: sequence {name!r} has {char!r} at position {position} (0-based), which "
                            f"is not a nucleotide letter; sequences may hold only A, C, G, T (any case) and IUPAC "
                            f"codes such as N", argument="fasta", name=name, position=position)
    for names, what in ((scan.with_u, "contain U (uracil: RNA?), which is scored as an all-zero column like N; "
                                      "convert U to T first if they are RNA"),
                        (scan.mostly_n, "are mostly N (more than half their letters are not A, C, G or T): their "
                                        "scores say little; n_policy='skip' leaves out sequences with any N")):
        if names:
            shown = ", ".join(repr(x) for x in names[:3]) + (" ..." if len(names) > 3 else "")
            log.warning("%s: %d of %d sequences %s (%s)", source.path, len(names), n, what, shown)
    return scan.sha256


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
    writers: list = dataclasses.field(default_factory=list)
    fresh: list = dataclasses.field(default_factory=list)


def score(config: ScoreConfig, *, progress: Callable[[int, int], None] | None = None) -> ScoreSummary:
    """Score every sequence of a FASTA file (or every region of a BED file) and stream the results to HDF5.

    Parameters
    ----------
    config : ScoreConfig
        Every option of the run, already checked (see :class:`~dnalift.config.ScoreConfig`).
    progress : callable, optional
        ``progress(done, total)`` with the number of rows finished (including resumed ones) and the total;
        called once before scoring and after each engine batch.

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
    from dnalift.io.outputs import OutputFolders, check_not_existing, check_not_input, check_output_dir
    from dnalift.io.store import OutputLock

    t0 = time.perf_counter()
    check_output_dir(config.output)
    check_not_input(config.output, config.input_files())
    if len(config.targets) == 1:
        check_not_existing(config.output, force=config.force, resume=config.resume)
    _check_argument_order(config)
    _check_device(config.device)
    folders = OutputFolders()
    folders.make(config.output.parent)
    try:
        with OutputLock(config.output):
            return _score_locked(config, progress, t0)
    finally:
        folders.remove_empty()


def _score_locked(config: ScoreConfig, progress, t0: float) -> ScoreSummary:
    from dnalift.io.outputs import check_not_existing, check_not_input
    from dnalift.io.store import shard_attrs
    from dnalift.references import make_references

    source, model = _open_inputs(config)
    references = None
    try:
        fingerprint = _scan(source)
        targets = resolve_targets(model, config.targets)
        paths = output_paths(config.output, [label for _, label in targets])
        for p in paths[1:] if len(paths) > 1 else ():
            check_not_input(p, config.input_files())
        for p in paths if len(paths) > 1 else ():
            check_not_existing(p, force=config.force, resume=config.resume)
        references = make_references(config.reference, length=source.length, n_refs=config.n_refs,
                                     seed=config.seed, names=source.names)
        shard = shard_attrs(config.shard, len(source)) if config.shard is not None else {}
        row_start, row_stop = (shard["row_start"], shard["row_stop"]) if shard else (0, len(source))
        run = _Run(config, source, model, references, targets, paths, row_start, row_stop - row_start)
        attrs = _attrs(run, fingerprint, shard)
        _open_writers(run, attrs)
        n_resumed = _score_chunks(run, progress)
        seconds = time.perf_counter() - t0
        worst_value, worst_name = _worst_delta(run)
        return ScoreSummary(outputs=paths, targets=[label for _, label in targets], n_sequences=run.n_rows,
                            n_scored=run.n_rows - n_resumed, n_resumed=n_resumed, n_skipped=len(source.skipped),
                            seconds=seconds, max_abs_delta=worst_value, worst=worst_name)
    finally:
        source.close()
        if references is not None:
            references.close()


def _attrs(run: _Run, fingerprint: str, shard: dict) -> dict:
    """The root attributes every result file of the run gets (the writers add the target's own)."""
    c, refs, model = run.config, run.references, run.model
    regions = c.regions is not None
    return {
        "rule": c.rule, "max_rule": c.max_rule, "reference": refs.label, "n_refs": refs.n_refs, "seed": c.seed,
        "input_sha256": fingerprint, "model_sha256": model.sha256, "reference_sha256": refs.sha256,
        "model_path": os.fspath(c.model), "input": os.fspath(c.input_path), "reference_path": refs.path,
        "genome": os.fspath(c.genome) if regions else None, "model_format": model.format,
        "normalized": bool(model.normalized), "n_policy": c.n_policy, "rc_average": c.rc_average,
        "precision": c.precision, "width": run.source.length, "input_kind": "regions" if regions else "fasta",
        "center": c.center if regions else None, "off_genome": c.off_genome if regions else None,
        "allow_gradient": list(c.allow_gradient) or None, "n_targets": len(run.targets),
        "layout": c.layout if c.layout != Layout.AUTO else None,
        "control_inputs": c.control_inputs if c.control_inputs != ControlInputs.ZEROS else None,
        "command_line": c.command_line or None, **shard,
    }


def _open_writers(run: _Run, attrs: dict) -> None:
    from dnalift.io.store import ResultWriter, default_chunk_size, partial_path

    c = run.config
    chunk = c.chunk_size or min(MAX_CHUNK, default_chunk_size(run.source.length))
    try:
        for (index, label), path in zip(run.targets, run.paths):
            own = dict(attrs, target=label, target_index=index)
            if run.model.output_names:
                own["target_name"] = run.model.output_names[index]
            fresh = not (c.resume and partial_path(path).exists())
            writer = ResultWriter(path, n=run.n_rows, length=run.source.length, attrs=own, chunk_size=chunk,
                                  regions=run.source.regions is not None, force=c.force, resume=c.resume,
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
    done = n_resumed
    try:
        if progress is not None:
            progress(done, run.n_rows)
        n_chunks = 0
        step = run.writers[0].chunk_size
        for a, b in pending:
            for c0 in range(a, b, step):
                c1 = min(c0 + step, b)
                _score_chunk(run, c0, c1, progress, done)
                done += c1 - c0
                n_chunks += 1
                if n_chunks % TRIM_EVERY == 0:
                    _trim_heap()
                if progress is not None:
                    progress(done, run.n_rows)
        for w in run.writers:
            w.close(success=True)
    except DiskFullError as e:
        if not e.details.get("kept", True):
            _abandon(run.writers, delete=None, quiet=True)
            raise
        rows = _abandon(run.writers, delete=None, quiet=True)
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
    return n_resumed


def _score_chunk(run: _Run, c0: int, c1: int, progress, done: int) -> None:
    source, c = run.source, run.config
    rows = slice(run.row_start + c0, run.row_start + c1)
    names = source.names[rows]
    X = source.one_hot(rows.start, rows.stop)
    R = run.references(X, names)
    report = None
    if progress is not None and not c.rc_average:
        def report(k, base=done):
            progress(base + k, run.n_rows)
    hyp, pred, ref_pred, deltas = _attribute(run, X, R, names, report)
    regions = None
    if source.regions is not None:
        regions = {k: source.regions[k][rows] for k in ("chrom", "start", "end", "strand")}
    for t, w in enumerate(run.writers):
        w.write(c0, raw=X, hypothetical=hyp[:, t], names=names, predictions=pred[:, t],
                reference_predictions=ref_pred[:, t], deltas=deltas[:, t], regions=regions)


def _worst_delta(run: _Run) -> tuple[float, str | None]:
    from dnalift.io.store import open_results

    worst_value, worst_name = float("nan"), None
    for (_, label), path in zip(run.targets, run.paths):
        with open_results(path) as r:
            for a, b in r.iter_chunks(65536):
                d = np.abs(r.deltas(slice(a, b)).astype(np.float64))
                if d.size and (math.isnan(worst_value) or d.max() > worst_value):
                    i = int(np.argmax(d))
                    worst_value = float(d[i])
                    worst_name = str(r.names_of(a + i)) + (f", target {label}" if len(run.paths) > 1 else "")
    return worst_value, worst_name


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


def _attribute(run: _Run, X, R, names, progress):
    """Run the engine on one chunk (and on its reverse complement).

    Returns
    -------
    hypothetical : ndarray (b, T, 4, L) float32
    predictions, reference_predictions, deltas : ndarray (b, T) float32
    """
    res = _run_engine(run, X, R, names, progress)
    hyp = res.hypothetical.numpy().astype(np.float64)
    pred = res.predictions.numpy().astype(np.float64)
    ref_pred = res.reference_predictions.numpy().astype(np.float64)
    deltas = res.deltas.numpy().astype(np.float64)
    if run.config.rc_average:
        X_rc = np.ascontiguousarray(X[:, ::-1, ::-1])
        R_rc = np.ascontiguousarray(np.asarray(R)[..., ::-1, ::-1])
        rc = _run_engine(run, X_rc, R_rc, names, None, strand="reverse complement of ")
        hyp = (hyp + rc.hypothetical.numpy()[..., ::-1, ::-1].astype(np.float64)) / 2
        pred = (pred + rc.predictions.numpy()) / 2
        ref_pred = (ref_pred + rc.reference_predictions.numpy()) / 2
        deltas = (deltas + rc.deltas.numpy()) / 2
    return (hyp.astype(np.float32), pred.astype(np.float32), ref_pred.astype(np.float32),
            deltas.astype(np.float32))


def _run_engine(run: _Run, X, R, names, progress, strand: str = ""):
    """``attribute`` on one chunk; its ConservationWarning names the sequences (and the strand)."""
    import torch

    from dnalift.attribution import engine

    c = run.config
    options = {}
    if c.control_inputs != ControlInputs.ZEROS:
        options["control_inputs"] = str(c.control_inputs)
    res = engine.attribute(run.model, X, R, target=[index for index, _ in run.targets], rule=str(c.rule),
                           max_rule=str(c.max_rule), batch_size=c.batch_size, device=c.device,
                           dtype=torch.float64 if c.precision == "float64" else torch.float32,
                           allow_gradient=c.allow_gradient, names=[f"{strand}{name}" for name in names],
                           progress=progress, **options)
    if res.hypothetical is None:
        raise ModelInputError("the engine returned no hypothetical scores (the input has no channel axis of 4)")
    return res

