"""The scoring pipeline: sequences + model -> streamed HDF5 result files.

:func:`score` is what ``dnalift score`` (and the Snakemake workflow) runs. It composes the pieces::

    open_fasta / open_regions  ->  chunk of one-hot X (b, 4, L)      (lazy: only names live in memory)
    load_model (+ normalize_first_layer)                              (once)
    references for the chunk  ->  R (b, r, 4, L)                      (dinucleotide shuffles seeded per name)
    attribute(model, X, R, target=[...])                              (the engine)
    ResultWriter.write(...)                                           (one file per target)

Memory is bounded by the chunk (``chunk_size`` sequences, the result file's HDF5 chunk, about 1 MiB of
scores) and by the engine's batch, never by the number of sequences.

Output files
    One target: ``output`` itself. Several targets: one file per target, ``OUT.<target>.h5`` where ``OUT``
    is ``output`` without its ``.h5`` suffix and ``<target>`` the target as given (index or output name),
    e.g. ``scores.h5`` with ``--target 0 --target 2`` gives ``scores.0.h5`` and ``scores.2.h5``.

Reproducibility
    Dinucleotide shuffles are seeded by ``(seed, sequence name)``, so a sequence gets the same references
    whatever chunk, shard or resumed run it is scored in; a sharded or resumed run gives the same numbers
    as one uninterrupted run (on the same device and precision).

Failures
    Rows are written to ``.OUT.h5.partial.h5`` and renamed to ``OUT.h5`` only when every row is written, so
    the final name never holds an unfinished file. When the run stops on a data error
    (:class:`~dnalift.errors.DnaliftError`: a bad sequence, model, option) the partial files of this run are
    deleted: the input must change, so nothing in them could be resumed. When the run is interrupted
    (Ctrl-C, SIGTERM, out of memory, disk full, any error that is not about the data) the partial files
    that hold at least one complete chunk are kept, and ``resume=True`` (``--resume``) with the same options
    finishes them without recomputing the complete chunks.
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

from dnalift.errors import (DnaliftError, ModelInputError, OutputExistsError,
                            ReferenceInputError, RegionError, StoreError, TargetError)

__all__ = ["score", "ScoreSummary", "REFERENCE_METHODS", "RULES", "output_paths",
           "resolve_targets"]

log = logging.getLogger(__name__)

REFERENCE_METHODS = ("dinuc", "gc", "uniform", "zeros")
RULES = ("rescale", "revealcancel", "genomics")
MAX_RULES = ("exact", "gradient")
PRECISIONS = ("float32", "float64")
N_POLICIES = ("zero", "skip", "error")
CENTERS = ("mid", "summit")

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
        The targets as given (index or output name), in the order of ``outputs``.
    n_sequences : int
        Rows in each result file (the shard's rows for a shard).
    n_scored : int
        Rows computed by this run (fewer than ``n_sequences`` when resuming).
    n_resumed : int
        Rows kept from the partial file of an interrupted run.
    n_skipped : int
        Sequences or regions of the input left out (letters other than ACGT with ``n_policy="skip"``,
        windows off their chromosome).
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


# ---------------------------------------------------------------------------------------------- options


def output_paths(output: str | os.PathLike, labels: Sequence[str]) -> list[Path]:
    """The result file of each target: ``output`` for one target, ``OUT.<label>.h5`` for several."""
    output = Path(output)
    if len(labels) == 1:
        return [output]
    name = output.name
    stem, suffix = (name[: -len(s)], s) if (s := next((x for x in (".h5", ".hdf5") if name.lower().endswith(x)),
                                                       "")) else (name, ".h5")
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
        A target that is not an output of the model, or a target given twice.
    """
    n_out = int(model.n_outputs)
    names = list(model.output_names or ())
    if names:
        listing = f"its outputs are {', '.join(f'{i}={n}' for i, n in enumerate(names[:10]))}" + (
            " ..." if len(names) > 10 else "")
    else:
        listing = f"indices 0 to {n_out - 1}" if n_out > 1 else "index 0"
    where = model.name
    out: list[tuple[int, str]] = []
    if not targets:
        raise TargetError("no target given; pass --target INDEX (or an output name)")
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
            raise TargetError(f"--target {text!r} is not an output of {where}: {hint}; `dnalift info "
                              f"{model.path or 'MODEL'}` lists them")
        if not -n_out <= index < n_out:
            raise TargetError(f"--target {text} does not exist: {where} has {n_out} output(s) per sequence "
                              f"({listing}); `dnalift info {model.path or 'MODEL'}` lists them")
        index %= n_out
        if any(i == index for i, _ in out):
            raise TargetError(f"--target {text} is given twice (output {index}); give each target once")
        out.append((index, text))
    return out


# ------------------------------------------------------------------------------------------- references


class _References:
    """Builds the references of a chunk of sequences."""

    def __init__(self, reference: str, *, n_refs: int, seed: int, length: int):
        self.reference = str(reference)
        self.seed = int(seed)
        self.length = int(length)
        self.shared = None
        self.per_sequence = False
        self._fasta = None
        if self.reference == "dinuc":
            if int(n_refs) < 1:
                raise ReferenceInputError(f"--n-refs must be at least 1, got {n_refs}")
            self.n_refs = int(n_refs)
            self.label = "dinucleotide_shuffle"
        elif self.reference in ("gc", "uniform", "zeros"):
            self.n_refs = 1
            self.label = {"gc": "expected_frequency_gc", "uniform": "expected_frequency_uniform",
                          "zeros": "zeros"}[self.reference]
            if int(n_refs) != 20:
                log.info("--reference %s gives one reference per sequence; --n-refs %s is not used",
                         self.reference, n_refs)
        else:
            path = Path(self.reference)
            if not path.is_file():
                raise ReferenceInputError(f"--reference {self.reference!r} is neither a method "
                                          f"({', '.join(REFERENCE_METHODS)}) nor an existing FASTA file")
            self.label = f"file:{self.reference}"
            self.n_refs = None  # known once read

    def setup(self, first_name: str | None) -> None:
        """Open a references FASTA: records ``NAME/0 .. NAME/{r-1}`` per sequence when the first sequence has
        them, otherwise every record is one reference shared by all sequences (read once)."""
        if not self.label.startswith("file:"):
            return
        from dnalift.encoding import one_hot_encode
        from dnalift.io.fasta import open_indexed_fasta

        self._fasta = open_indexed_fasta(self.reference)
        keys = list(self._fasta.keys())
        prefix = f"{first_name}/"
        mine = sorted(int(k[len(prefix):]) for k in keys if k.startswith(prefix) and k[len(prefix):].isdigit())
        self.per_sequence = bool(mine)
        if self.per_sequence:
            self.n_refs = len(mine)
            if mine != list(range(self.n_refs)):
                raise ReferenceInputError(f"{self.reference}: the references of {first_name!r} are numbered {mine}; "
                                          f"number them {first_name}/0 to {first_name}/{self.n_refs - 1}")
            log.info("%s: %d references per sequence (records NAME/0 ... NAME/%d)", self.reference, self.n_refs,
                     self.n_refs - 1)
        else:
            for k in keys:
                self._check_length(k)
            self.shared = one_hot_encode([self._fasta[k][:] for k in keys], names=keys)
            self.n_refs = len(keys)
            log.info("%s: %d references shared by every sequence", self.reference, self.n_refs)

    def _check_length(self, key: str) -> None:
        size = len(self._fasta[key])
        if size != self.length:
            raise ReferenceInputError(f"{self.reference}: reference {key!r} has length {size} but the sequences have "
                                      f"length {self.length}; make every reference as long as the sequences")

    def close(self) -> None:
        fasta = getattr(self, "_fasta", None)
        if fasta is not None:
            fasta.close()
            self._fasta = None

    def __call__(self, X: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """References for one-hot ``X`` (b, 4, L): (b, r, 4, L), or (r, 4, L) shared."""
        from dnalift import references as refs
        from dnalift.encoding import one_hot_encode

        if self.reference == "dinuc":
            return refs.dinucleotide_shuffle(X, n=self.n_refs, seed=self.seed, names=list(names))
        if self.reference in ("gc", "uniform"):
            return refs.expected_frequency_references(X, method=self.reference)
        if self.reference == "zeros":
            return refs.zero_references(X)
        if not self.per_sequence:
            return self.shared
        out = np.empty((len(names), self.n_refs, 4, self.length), dtype=np.int8)
        for i, name in enumerate(names):
            keys = [f"{name}/{k}" for k in range(self.n_refs)]
            for key in keys:
                if key not in self._fasta:
                    raise ReferenceInputError(
                        f"{self.reference}: no reference record {key!r}; give every sequence {self.n_refs} "
                        f"references named NAME/0 ... NAME/{self.n_refs - 1} (as the first sequence has)")
                self._check_length(key)
            out[i] = one_hot_encode([self._fasta[k][:] for k in keys], names=keys)
        return out


# ------------------------------------------------------------------------------------------------ score


def _check_output_dir(path: Path) -> None:
    """Fail early when ``path`` cannot be written: its nearest existing ancestor must be a writable directory
    (missing directories are made by the writer, only once there is something to write)."""
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise StoreError(f"cannot write {path}: {probe} is a file, not a directory; choose another output path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise StoreError(f"cannot write {path}: no permission to write in {probe}; choose an output directory "
                         f"you can write to")


def _open_source(fasta, regions, genome, *, width, center, n_policy, model_length):
    from dnalift.io.fasta import open_fasta, open_regions

    if (fasta is None) == (regions is None):
        raise ValueError("give exactly one of fasta and regions")
    if fasta is not None:
        return open_fasta(fasta, width=width, n_policy=n_policy)
    if genome is None:
        raise RegionError("regions need a genome FASTA (--genome genome.fa) to read the sequences from")
    if width is None:
        width = model_length
        if width is None:
            raise RegionError(f"{regions}: give the window width with --width (the model does not record its "
                              f"input length)")
        log.info("using the model's input length %d as the window width", width)
    return open_regions(regions, genome, width=width, center=center, n_policy=n_policy)


def _model_length_hint(model_path, *, arch, arch_kwargs, trust) -> int | None:
    """The input length a model file records, for regions without --width (None when it records none)."""
    from dnalift.models import load_model

    try:
        return load_model(model_path, arch=arch, arch_kwargs=arch_kwargs, trust=trust).input_length
    except ModelInputError:
        return None


def score(model_path, *, fasta=None, regions=None, genome=None, output, width: int | None = None,
          center: str = "mid", reference: str = "dinuc", n_refs: int = 20, seed: int = 0, rule: str = "rescale",
          max_rule: str = "exact", targets: Sequence = (0,), batch_size: int | None = None, device: str = "auto",
          precision: str = "float32", normalize: bool = True, n_policy: str = "zero", rc_average: bool = False,
          shard: str | None = None, resume: bool = False, force: bool = False, arch: str | None = None,
          arch_kwargs=None, trust_model: bool = False, allow_gradient: Sequence[str] = (),
          chunk_size: int | None = None, command_line: str = "",
          progress: Callable[[int, int], None] | None = None) -> ScoreSummary:
    """Score every sequence of a FASTA file (or every region of a BED file) and stream the results to HDF5.

    Parameters
    ----------
    model_path : str or path-like
        Model file (``.pt2``, TorchScript, state_dict with ``arch``, pickle with ``trust_model``).
    fasta : path, optional
        Sequences; all of one length unless ``width`` is given (then centre-cropped or N-padded).
    regions, genome : path, optional
        BED/narrowPeak regions and the genome FASTA they are on (instead of ``fasta``). Windows of ``width``
        (default: the model's input length) centred by ``center``; minus-strand windows are reverse
        complemented.
    output : path
        The result file (several targets: ``OUT.<target>.h5``, see :func:`output_paths`).
    width : int, optional
    center : {"mid", "summit"}
    reference : {"dinuc", "gc", "uniform", "zeros"} or path
        Dinucleotide shuffles (``n_refs`` per sequence, seeded per sequence name), an expected-frequency
        column (the sequence's GC content, or 0.25 each), all zeros, or a FASTA of references (records
        ``NAME/0 .. NAME/{r-1}`` per sequence, or any records shared by all sequences).
    n_refs, seed : int
    rule : {"rescale", "revealcancel", "genomics"}
    max_rule : {"exact", "gradient"}
    targets : sequence of int or str
        Output indices or names (:func:`resolve_targets`); all are scored in one pass.
    batch_size : int, optional
        Sequence-reference pairs per engine batch (default: from a memory budget).
    device : {"auto", "cpu", "cuda", "cuda:i"}
    precision : {"float32", "float64"}
        The engine's dtype (results are stored as float32).
    normalize : bool
        Mean-normalise the first layer's weights (paper 2.6).
    n_policy : {"zero", "skip", "error"}
        Letters other than ACGT: all-zero column, leave the sequence out, or refuse.
    rc_average : bool
        Also score the reverse complement (with the reverse-complemented references) and average the
        scores, flipped back, with the forward ones; predictions, reference predictions and deltas are the
        averages too, so the scores still sum to ``prediction - reference_prediction``.
    shard : str, optional
        ``"i-of-n"``: score only the ``i``-th of ``n`` contiguous blocks of rows (merge with
        :func:`dnalift.io.store.merge_results`).
    resume : bool
        Finish the partial file of an interrupted run with the same options.
    force : bool
        Replace existing output files (only once the new ones are complete).
    arch, arch_kwargs, trust_model, allow_gradient
        Passed to :func:`dnalift.models.load_model` and the engine.
    chunk_size : int, optional
        Sequences per chunk (and per HDF5 chunk of the result file); default about 1 MiB of scores.
    command_line : str
        Recorded in the files.
    progress : callable, optional
        ``progress(done, total)`` with the number of rows finished (including resumed ones) and the total;
        called once before scoring and after each engine batch.

    Returns
    -------
    ScoreSummary

    Raises
    ------
    DnaliftError
        Bad sequences, regions, model, references, targets or outputs (one-line messages).
    """
    import torch

    from dnalift.attribution.engine import attribute
    from dnalift.io.store import ResultWriter, open_results, parse_shard, partial_path, shard_attrs
    from dnalift.models import check_input, load_model

    t0 = time.perf_counter()
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, not {rule!r}")
    if max_rule not in MAX_RULES:
        raise ValueError(f"max_rule must be one of {', '.join(MAX_RULES)}, not {max_rule!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be float32 or float64, not {precision!r}")
    if n_policy not in N_POLICIES:
        raise ValueError(f"n_policy must be one of {', '.join(N_POLICIES)}, not {n_policy!r}")
    if center not in CENTERS:
        raise ValueError(f"center must be mid or summit, not {center!r}")
    if shard is not None:
        try:
            parse_shard(shard)
        except ValueError as e:
            raise StoreError(f"--shard {e}") from None
    targets = list(targets)
    output = Path(output)
    dtype = torch.float64 if precision == "float64" else torch.float32
    refs = _References(reference, n_refs=n_refs, seed=seed, length=1)

    # Cheap checks first: the outputs (target labels are not known yet, so check the single-target name
    # and, after the model is loaded, the per-target names).
    _check_output_dir(output)
    if len(targets) == 1 and output.exists() and not force and not resume:
        raise OutputExistsError(f"{output} exists; pass --force to overwrite it or choose another output")

    model_length = None
    if regions is not None and width is None:
        model_length = _model_length_hint(model_path, arch=arch, arch_kwargs=arch_kwargs, trust=trust_model)
    source = _open_source(fasta, regions, genome, width=width, center=center, n_policy=n_policy,
                          model_length=model_length)
    try:
        return _score_source(
            source, model_path, output=output, fasta=fasta, regions=regions, genome=genome, width=width,
            center=center, refs=refs, reference=reference, seed=seed, rule=rule, max_rule=max_rule,
            targets=targets, batch_size=batch_size, device=device, dtype=dtype, precision=precision,
            normalize=normalize, n_policy=n_policy, rc_average=rc_average, shard=shard, resume=resume,
            force=force, arch=arch, arch_kwargs=arch_kwargs, trust_model=trust_model,
            allow_gradient=tuple(allow_gradient), chunk_size=chunk_size, command_line=command_line,
            progress=progress, t0=t0, attribute=attribute, ResultWriter=ResultWriter, open_results=open_results,
            partial_path=partial_path, shard_attrs=shard_attrs, check_input=check_input, load_model=load_model)
    finally:
        source.close()
        refs.close()


def _score_source(source, model_path, *, output, fasta, regions, genome, width, center, refs, reference, seed,
                  rule, max_rule, targets, batch_size, device, dtype, precision, normalize, n_policy, rc_average,
                  shard, resume, force, arch, arch_kwargs, trust_model, allow_gradient, chunk_size, command_line,
                  progress, t0, attribute, ResultWriter, open_results, partial_path, shard_attrs, check_input,
                  load_model):
    length = int(source.length)
    n_input = len(source)
    log.info("%s: %d sequences of length %d%s", source.path, n_input, length,
             f" ({len(source.skipped)} skipped)" if source.skipped else "")

    model = load_model(model_path, arch=arch, arch_kwargs=arch_kwargs, trust=trust_model, input_length=length)
    check_input(model, (4, length))
    if normalize:
        from dnalift.normalize import normalize_first_layer

        model = normalize_first_layer(model)
    resolved = resolve_targets(model, targets)
    labels = [label for _, label in resolved]
    indices = [index for index, _ in resolved]
    paths = output_paths(output, labels)
    if len(paths) > 1:
        for p in paths:
            if p.exists() and not force and not resume:
                raise OutputExistsError(f"{p} exists; pass --force to overwrite it or choose another output")

    refs.length = length
    refs.setup(source.names[0] if n_input else None)

    if shard is not None:
        sh = shard_attrs(shard, n_input)
        row_start, row_stop = int(sh["row_start"]), int(sh["row_stop"])
    else:
        sh, row_start, row_stop = {}, 0, n_input
    n_rows = row_stop - row_start

    common = {
        "rule": rule, "max_rule": max_rule, "reference": refs.label, "n_refs": refs.n_refs, "seed": int(seed),
        "model_path": os.fspath(model_path), "model_sha256": model.sha256, "model_format": model.format,
        "normalized": bool(model.normalized), "n_policy": n_policy, "rc_average": bool(rc_average),
        "precision": precision, "width": length, "input": os.fspath(fasta if fasta is not None else regions),
        "input_kind": "fasta" if fasta is not None else "regions",
        "genome": os.fspath(genome) if regions is not None and genome is not None else None,
        "center": center if regions is not None else None,
        "allow_gradient": list(allow_gradient) if allow_gradient else None,
        "n_targets": len(resolved),
        "command_line": command_line or None,
        **sh,
    }
    has_regions = source.regions is not None

    writers: list = []
    created: list[bool] = []  # this run made the partial file (it holds nothing of an earlier run)
    started = False
    try:
        for (index, label), path in zip(resolved, paths):
            attrs = dict(common, target=label, target_index=index)
            if model.output_names:
                attrs["target_name"] = model.output_names[index]
            fresh = not (resume and partial_path(path).exists())
            w = ResultWriter(path, n=n_rows, length=length, attrs=attrs,
                             chunk_size=chunk_size or min(MAX_CHUNK, _default_chunk(length)),
                             regions=has_regions, force=force, resume=resume)
            writers.append(w)
            created.append(fresh or w.completed_rows() == 0)
        pending = _union_ranges([w.pending_ranges() for w in writers])
        n_resumed = n_rows - sum(b - a for a, b in pending)
        if n_resumed:
            log.info("resuming: %d of %d rows are already complete", n_resumed, n_rows)
        step = writers[0].chunk_size
        done = n_resumed
        if progress is not None:
            progress(done, n_rows)
        started = True
        n_chunks = 0
        for a, b in pending:
            for c0 in range(a, b, step):
                c1 = min(c0 + step, b)
                names = source.names[row_start + c0: row_start + c1]
                X = source.one_hot(row_start + c0, row_start + c1)
                R = refs(X, names)
                report = None
                if progress is not None and not rc_average:
                    def report(k, base=done):
                        progress(base + k, n_rows)
                hyp, pred, ref_pred, deltas = _attribute(
                    attribute, model, X, R, names, indices, rule=rule, max_rule=max_rule, batch_size=batch_size,
                    device=device, dtype=dtype, allow_gradient=allow_gradient, rc_average=rc_average,
                    progress=report)
                reg = None
                if has_regions:
                    allr = source.regions
                    sl = slice(row_start + c0, row_start + c1)
                    reg = {k: allr[k][sl] for k in ("chrom", "start", "end", "strand")}
                for t, w in enumerate(writers):
                    w.write(c0, raw=X, hypothetical=hyp[:, t], names=names, predictions=pred[:, t],
                            reference_predictions=ref_pred[:, t], deltas=deltas[:, t], regions=reg)
                done += c1 - c0
                n_chunks += 1
                if n_chunks % TRIM_EVERY == 0:
                    _trim_heap()
                if progress is not None:
                    progress(done, n_rows)
        for w in writers:
            w.close(success=True)
    except DnaliftError:
        # A data error: the input or options must change, so a partial file could not be resumed. Before
        # scoring started, keep the partial files of an earlier run that this run only opened.
        _abandon(writers, delete=[True] * len(writers) if started else created)
        raise
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM, out of memory, disk full...): keep what --resume can finish.
        _abandon(writers, delete=None)
        raise

    seconds = time.perf_counter() - t0
    worst_value, worst_name = float("nan"), None
    for label, path in zip(labels, paths):
        with open_results(path) as r:
            for a, b in r.iter_chunks(65536):
                d = np.abs(r.deltas(slice(a, b)).astype(np.float64))
                if d.size and (math.isnan(worst_value) or d.max() > worst_value):
                    i = int(np.argmax(d))
                    worst_value = float(d[i])
                    worst_name = r.file["names"].asstr()[a + i] + (f", target {label}" if len(paths) > 1 else "")
    return ScoreSummary(outputs=paths, targets=labels, n_sequences=n_rows, n_scored=n_rows - n_resumed,
                        n_resumed=n_resumed, n_skipped=len(source.skipped), seconds=seconds,
                        max_abs_delta=worst_value, worst=worst_name)


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


def _default_chunk(length: int) -> int:
    from dnalift.io.store import default_chunk_size

    return default_chunk_size(length)


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


def _abandon(writers, *, delete) -> None:
    """Close writers after a failure. ``delete``: per writer, whether to remove its partial file; None
    (interrupted): remove only those without a complete chunk, and say how to resume the others."""
    store_log = logging.getLogger("dnalift.io.store")
    for i, w in enumerate(writers):
        try:
            rows = w.completed_rows()
        except Exception:
            rows = 0
        quiet = _Silence()
        store_log.addFilter(quiet)  # its "rerun with --resume" warning is ours to give, or not
        try:
            w.close(success=False)
        except Exception:  # closing a broken file must not hide the first error
            log.debug("closing %s failed", w.partial, exc_info=True)
        finally:
            store_log.removeFilter(quiet)
        if delete is None and rows > 0:
            log.warning("stopped; %d of %d rows are kept in %s: rerun the same command with --resume to finish",
                        rows, w.n, w.partial)
            continue
        if delete is not None and not delete[i]:
            continue
        try:
            w.partial.unlink(missing_ok=True)
        except OSError:
            log.debug("cannot remove %s", w.partial, exc_info=True)


class _Silence(logging.Filter):
    def filter(self, record):
        return False


def _attribute(attribute, model, X, R, names, indices, *, rule, max_rule, batch_size, device, dtype,
               allow_gradient, rc_average, progress):
    """Run the engine on one chunk (and on its reverse complement).

    Returns
    -------
    hypothetical : ndarray (b, T, 4, L) float32
    predictions, reference_predictions, deltas : ndarray (b, T) float32
    """
    res = _run_engine(attribute, model, X, R, names, indices, rule=rule, max_rule=max_rule,
                      batch_size=batch_size, device=device, dtype=dtype, allow_gradient=allow_gradient,
                      progress=progress)
    hyp = res.hypothetical.numpy().astype(np.float64)
    pred = res.predictions.numpy().astype(np.float64)
    ref_pred = res.reference_predictions.numpy().astype(np.float64)
    deltas = res.deltas.numpy().astype(np.float64)
    if rc_average:
        X_rc = np.ascontiguousarray(X[:, ::-1, ::-1])
        R_rc = np.ascontiguousarray(np.asarray(R)[..., ::-1, ::-1])
        rc = _run_engine(attribute, model, X_rc, R_rc, names, indices, rule=rule, max_rule=max_rule,
                         batch_size=batch_size, device=device, dtype=dtype, allow_gradient=allow_gradient,
                         progress=None, strand="reverse complement of ")
        hyp = (hyp + rc.hypothetical.numpy()[..., ::-1, ::-1].astype(np.float64)) / 2
        pred = (pred + rc.predictions.numpy()) / 2
        ref_pred = (ref_pred + rc.reference_predictions.numpy()) / 2
        deltas = (deltas + rc.deltas.numpy()) / 2
    return (hyp.astype(np.float32), pred.astype(np.float32), ref_pred.astype(np.float32),
            deltas.astype(np.float32))


def _run_engine(attribute, model, X, R, names, indices, *, rule, max_rule, batch_size, device, dtype,
                allow_gradient, progress, strand=""):
    """``attribute`` on one chunk; its ConservationWarning names the sequences (and the strand)."""
    res = attribute(model, X, R, target=list(indices), rule=rule, max_rule=max_rule, batch_size=batch_size,
                    device=device, dtype=dtype, allow_gradient=allow_gradient,
                    names=[f"{strand}{name}" for name in names], progress=progress)
    if res.hypothetical is None:
        raise ModelInputError("the engine returned no hypothetical scores (the input has no channel axis of 4)")
    return res
