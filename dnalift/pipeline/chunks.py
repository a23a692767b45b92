"""One chunk of a scoring run: sequences -> references -> the engine (and the reverse strand) -> the writers."""

from __future__ import annotations

import numpy as np

from dnalift.options import ControlInputs
from dnalift.errors import ModelInputError

__all__ = ["score_chunk", "read_chunk", "Overlap", "log_device"]


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

    from dnalift.attribution.batching import describe_device, resolve_device
    from dnalift.attribution.engine import batch_size_of
    from dnalift.attribution.precision import dtype_of

    c = run.config
    device = resolve_device(c.device)
    if c.batch_size is not None:
        rows, how = c.batch_size, "batch_size"
    else:
        rows = batch_size_of(run.model, (4, run.source.length), rule=str(c.rule), max_rule=str(c.max_rule),
                             allow_gradient=c.allow_gradient, device=device, dtype=dtype_of(c.precision))
        how = "automatic"
    logging.getLogger("dnalift.pipeline.device").info(
        "device %s; %s sequence-reference pairs per batch (%s); precision %s", describe_device(device),
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
    hyp, pred, ref_pred, deltas = _attribute(run, X, R, names, report)
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
        options["control_inputs"] = str(c.control_inputs)
    res = engine.attribute(run.model, X, R, target=list(run.targets), rule=str(c.rule),
                           max_rule=str(c.max_rule), batch_size=c.batch_size, device=c.device,
                           precision=str(c.precision),
                           allow_gradient=c.allow_gradient, names=[f"{strand}{name}" for name in names],
                           progress=progress, **options)
    if res.hypothetical is None:
        raise ModelInputError("the engine returned no hypothetical scores (the input has no channel axis of 4)")
    return res
