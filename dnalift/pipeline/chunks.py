"""One chunk of a scoring run: sequences -> references -> the engine (and the reverse strand) -> the writers."""

from __future__ import annotations

import logging
import warnings

import numpy as np

from dnalift.options import ControlInputs
from dnalift.errors import ConservationWarning, ModelInputError, NonFiniteError

__all__ = ["score_chunk", "read_chunk", "Overlap", "log_device", "check_finite", "short_name"]

log = logging.getLogger(__name__)


class Overlap:
    """One background thread that reads the next chunk and writes the last one while a chunk is scored.

    Reading (FASTA or genome windows), shuffling and HDF5 writes then run beside the engine, so a GPU does not
    wait for them. At most one read and one write are pending; a failure in either is raised in the main
    thread, at the next :meth:`take_read`, :meth:`write` or :meth:`finish`.
    """

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dnalift-io")
        self._read = None
        self._write = None

    def read(self, fn, *args) -> None:
        """Start ``fn(*args)`` (the next chunk's inputs)."""
        self._read = self._pool.submit(fn, *args)

    def take_read(self):
        """The result of the pending read (None when nothing was read ahead)."""
        future, self._read = self._read, None
        return future.result() if future is not None else None

    def write(self, fn) -> None:
        """Start ``fn()`` after the previous write has finished (its error is raised here)."""
        self.finish()
        self._write = self._pool.submit(fn)

    def finish(self) -> None:
        """Wait for the pending write; raise its error."""
        future, self._write = self._write, None
        if future is not None:
            future.result()

    def drain(self) -> None:
        """Wait for everything pending, ignoring its errors (the run is failing already)."""
        for future in (self._read, self._write):
            if future is not None:
                try:
                    future.result()
                except BaseException:
                    pass
        self._read = self._write = None

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def log_device(run) -> None:
    """Log where the run computes: the device (name, memory), the batch size, the precision; the first thing to
    check when a run is slow ("is it even on the GPU?"). The command line shows it by default."""
    import logging

    from dnalift.attribution.batching import device_label, torch_device

    c = run.config
    device = torch_device(c.device)
    rows, how = run.batch_size, run.batch_size_from
    logging.getLogger("dnalift.pipeline.device").info(
        "device %s; %s sequence-reference pairs per batch (%s); precision %s", device_label(device),
        f"{rows:,}", how, c.precision)


def read_chunk(run, c0: int, c1: int) -> tuple:
    """The inputs of rows ``[c0, c1)`` (shard-relative): names, one-hot ``X`` (b, 4, L), references ``R``."""
    rows = slice(run.row_start + c0, run.row_start + c1)
    names = run.source.names[rows]
    X = run.source.one_hot(rows.start, rows.stop)
    return names, X, run.references(X, names)


def score_chunk(run, c0: int, c1: int, progress, done: int, inputs=None):
    """Score rows ``[c0, c1)`` of the run (shard-relative).

    Parameters
    ----------
    inputs : tuple, optional
        :func:`read_chunk` of these rows, when it was read ahead.

    Returns
    -------
    callable
        Writes the chunk's rows to every writer (the caller may run it beside the next chunk's compute).
    """
    source, c = run.source, run.config
    names, X, R = inputs if inputs is not None else read_chunk(run, c0, c1)
    report = None
    if progress is not None and not c.rc_average:
        def report(k, base=done):
            progress(base + k, run.n_rows)
    with warnings.catch_warnings(record=True) as caught:  # held until the values are known to be finite
        warnings.simplefilter("always")
        hyp, pred, ref_pred, deltas = _attribute(run, X, R, names, report)
    n_bad = check_finite(names, hyp, pred, ref_pred, deltas, allow=c.allow_nonfinite)
    if run.tally is not None:
        run.tally.add(deltas, lambda i: names[i], start=run.row_start + c0)
    for w in caught:  # a conservation warning about NaN deltas only repeats what check_finite said
        if not (n_bad and issubclass(w.category, ConservationWarning)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    regions = variants = None
    rows = slice(run.row_start + c0, run.row_start + c1)
    if source.regions is not None:
        regions = {k: source.regions[k][rows] for k in ("chrom", "start", "end", "strand", "line")}
    if getattr(source, "variants_of", None) is not None:
        variants = source.variants_of(rows.start, rows.stop)

    def write():
        for t, w in enumerate(run.writers):
            w.write(c0, raw=X, hypothetical=hyp[:, t], names=names, predictions=pred[:, t],
                    reference_predictions=ref_pred[:, t], deltas=deltas[:, t], regions=regions, variants=variants)

    return write


def check_finite(names, hyp, pred, ref_pred, deltas, *, allow: bool) -> int:
    """Stop on rows with a NaN or infinite value (or, with ``allow``, warn and count them).

    Parameters
    ----------
    names : list of str, length b
    hyp : ndarray (b, T, 4, L)
    pred, ref_pred, deltas : ndarray (b, T)

    Returns
    -------
    int
        The rows with a non-finite value (only with ``allow``).

    Raises
    ------
    NonFiniteError
        Without ``allow``, naming the first such sequences and what was not finite.
    """
    parts = {"prediction": ~np.isfinite(pred).all(axis=1), "reference prediction": ~np.isfinite(ref_pred).all(axis=1),
             "scores": ~np.isfinite(hyp).reshape(len(hyp), -1).all(axis=1)}
    bad = parts["prediction"] | parts["reference prediction"] | parts["scores"] | ~np.isfinite(deltas).all(axis=1)
    if not bad.any():
        return 0
    rows = np.flatnonzero(bad)
    shown = ", ".join(repr(short_name(names[i])) for i in rows[:3]) + (f" and {rows.size - 3} more" if rows.size > 3
                                                                       else "")
    what = ", ".join(k for k, v in parts.items() if v.any()) or "summation-to-delta error"
    if allow:
        log.warning("NaN or infinite %s for %s; kept (allow_nonfinite=True: the file's attribute "
                    "'allow_nonfinite' flags it)", what, shown)
        return int(rows.size)
    raise NonFiniteError(f"the model gives a NaN or infinite {what} for {shown}; nothing is written. Check the model "
                         f"on these sequences (a log of 0, a division by 0, an overflow: try precision='float64'), "
                         f"or pass allow_nonfinite=True to keep such rows, flagged", argument="model",
                         names=[names[i] for i in rows[:3]])


def short_name(name: str, limit: int = 60) -> str:
    """``name``, cut to ``limit`` characters with an ellipsis (a FASTA name may run to thousands)."""
    return name if len(name) <= limit else name[: limit - 3] + "..."


def _attribute(run, X, R, names, progress):
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


def _run_engine(run, X, R, names, progress, strand: str = ""):
    """``attribute`` on one chunk; its ConservationWarning names the sequences (and the strand)."""
    from dnalift.attribution import engine

    c = run.config
    options = {}
    if c.control_inputs != ControlInputs.ZEROS:
        options["control_inputs"] = c.control_inputs
    res = engine.attribute(run.model, X, R, target=list(run.targets), rule=c.rule,
                           max_rule=c.max_rule, batch_size=run.batch_size, device=c.device,
                           precision=c.precision,
                           allow_gradient=c.allow_gradient, names=[f"{strand}{name}" for name in names],
                           progress=progress, **options)
    if res.hypothetical is None:
        raise ModelInputError("the engine returned no hypothetical scores (the input has no channel axis of 4)")
    return res
