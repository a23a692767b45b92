"""Scoring on several devices at once (``device="cuda:0,cuda:1"``, ``"cuda:all"``, or CPU stand-ins ``"cpu,cpu"``).

The rows are split into one contiguous part per device, at the result file's chunk boundaries, so every chunk
holds the same rows (and the engine sees the same batches) as in a run on one device. One worker process per
device (``spawn`` start method: no CUDA state is inherited) runs :func:`dnalift.pipeline.score_part` on its
part, which writes it with the shard machinery to ``.OUT.h5.parts/i-of-k.h5`` (partial file, chunk flags,
resume) beside the output. When every part is complete they are joined into the output with
:func:`~dnalift.io.store.merge_results`, and the parts folder is removed.

Failures
    A worker that stops on a data error (a bad sequence, option or model) stops the others, and every part is
    removed (nothing could be resumed: the input must change); the parent raises that error. A worker that
    dies (killed, out of memory, a CUDA error) or is interrupted stops the others; the parts keep their
    complete chunks and ``resume=True`` with the same devices finishes each part where it stopped, then joins
    them. Ctrl-C or SIGTERM in the parent stops the workers the same way.

Logging and progress
    The workers' log records and warnings are sent to the parent and handled by its loggers; their progress
    is summed, so ``progress(done, total)`` counts the rows of every part.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue as queue_module
import shutil
import signal
import time
from pathlib import Path

from dnalift.errors import DeviceWorkerError, DnaliftError, DiskFullError, OptionError, OutputWriteError

__all__ = ["score_on_devices", "parts_folder", "part_output", "part_rows"]

log = logging.getLogger("dnalift.pipeline")

#: seconds a stopped worker gets to close its files before it is killed
STOP_GRACE = 30.0
#: seconds between two looks at the workers while no message comes
POLL = 0.2


def parts_folder(output) -> Path:
    """The folder of the parts of a run on several devices: ``dir/.OUT.h5.parts``."""
    output = Path(output)
    return output.with_name(f".{output.name}.parts")


def part_output(output, index: int, count: int) -> Path:
    """The result file of part ``index`` (1-based) of ``count``: ``dir/.OUT.h5.parts/i-of-k.h5``."""
    suffix = next((s for s in (".h5", ".hdf5") if Path(output).name.lower().endswith(s)), ".h5")
    return parts_folder(output) / f"{index}-of-{count}{suffix}"


def part_rows(n_total: int, chunk: int, index: int, count: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of part ``index`` (1-based) of ``count``: whole chunks of ``chunk`` rows, the
    parts' numbers of chunks differing by at most one (a part may be empty when there are fewer chunks than
    parts)."""
    n_chunks = -(-int(n_total) // int(chunk))
    first, last = (index - 1) * n_chunks // count, index * n_chunks // count
    return min(first * chunk, n_total), min(last * chunk, n_total)


# ----------------------------------------------------------------------------------------------- parent


def score_on_devices(config, devices: list[str], *, progress=None):
    """Score ``config`` with one worker process per device and join the parts into the output(s).

    Parameters
    ----------
    config : ScoreConfig
        The run (its ``device`` lists the devices; the caller holds the output's lock).
    devices : list of str
        The devices, one worker each (``["cuda:0", "cuda:1"]``, ``["cpu", "cpu"]``).
    progress : callable, optional
        ``progress(done, total)`` over all parts.

    Returns
    -------
    ScoreSummary
        Of the whole run: the joined output files, the rows of every part.

    Raises
    ------
    DnaliftError
        A data error of a worker (the parts are removed); :class:`~dnalift.errors.DeviceWorkerError` when a
        worker died or failed otherwise (the parts are kept for ``resume=True``).
    """
    from dnalift.io.outputs import check_not_existing

    t0 = time.perf_counter()
    folder = parts_folder(config.output)
    if len(config.targets) == 1:  # resume finishes the parts, it never replaces a finished output
        check_not_existing(config.output, force=config.force, resume=False)
    _prepare_parts(folder, config, len(devices))
    try:
        summaries = _Workers(config, devices, progress).run()
    except DnaliftError as e:
        if not isinstance(e, (DeviceWorkerError, OutputWriteError)):  # a data error: nothing could be resumed
            shutil.rmtree(folder, ignore_errors=True)
        raise
    except KeyboardInterrupt:
        log.warning("stopped; the parts in %s keep their complete chunks: rerun the same command with resume=True "
                    "to finish", folder)
        raise
    return _join(config, summaries, folder, time.perf_counter() - t0)


def _prepare_parts(folder: Path, config, count: int) -> None:
    """Clear the parts of an earlier run (without ``resume``), or ready them for resuming: complete parts get
    their partial name back, so their worker checks them against this run's options before keeping them."""
    from dnalift.io.store import partial_path

    if not folder.exists():
        return
    if not config.resume:
        if any(folder.iterdir()):
            log.warning("%s: discarding the parts of an earlier run (use resume=True to finish them)", folder)
        shutil.rmtree(folder)
        return
    files = [p for p in folder.iterdir() if p.suffix in (".h5", ".hdf5") and not p.name.startswith(".")]
    partials = [p for p in folder.iterdir() if p.name.endswith(".partial.h5")]
    counts = {int(p.name.lstrip(".").split("-of-")[1].split(".")[0]) for p in files + partials
              if "-of-" in p.name}
    if counts and counts != {count}:
        other = sorted(counts)[0]
        raise OptionError(f"cannot resume {folder}: the interrupted run was split over {other} devices and this one "
                          f"over {count}; resume with {other} devices, or pass force=True to start over",
                          argument="device", value=str(config.device))
    for p in files:
        os.replace(p, partial_path(p))


def _join(config, summaries: list, folder: Path, seconds: float):
    """Merge each target's parts into its output; the summary of the whole run."""
    from dnalift.io.store import merge_results
    from dnalift.pipeline.outputs import DeltaTally, ScoreSummary, output_paths

    labels = summaries[0].targets
    finals = output_paths(config.output, labels)
    for t, final in enumerate(finals):
        parts = [s.outputs[t] for s in summaries]
        merge_results(parts, final, force=config.force, command_line=config.command_line or None,
                      lock=Path(final) != Path(config.output))
        log.info("joined %d parts into %s", len(parts), final)
    shutil.rmtree(folder, ignore_errors=True)
    tally = DeltaTally(labels)
    for s in summaries:  # each part's worst delta, carried from its chunks
        tally.merge(s.tally)
    return ScoreSummary(outputs=finals, targets=labels, n_sequences=sum(s.n_sequences for s in summaries),
                        n_scored=sum(s.n_scored for s in summaries), n_resumed=sum(s.n_resumed for s in summaries),
                        n_skipped=summaries[0].n_skipped, seconds=seconds, max_abs_delta=tally.value,
                        worst=tally.name, n_nonfinite=tally.n_nonfinite, paired=summaries[0].paired, tally=tally)


class _Workers:
    """The worker processes of one run, their messages, and stopping them."""

    def __init__(self, config, devices: list[str], progress):
        import multiprocessing

        self.config, self.devices, self.progress = config, devices, progress
        self.context = multiprocessing.get_context("spawn")
        self.queue = self.context.Queue()
        self.processes: list = []
        self.done: dict[int, object] = {}
        self.rows: list = [None] * len(devices)  # (done, total) of each part, once it has said
        self.data_error = False  # the workers' last words are about parts that will be removed

    def run(self) -> list:
        from dnalift.pipeline.inputs import shuffle_workers

        count = len(self.devices)
        levels = _logger_levels()
        showwarning = _picklable(__import__("warnings").showwarning)
        workers = shuffle_workers(self.config, self.devices)
        finished = False
        try:
            for i, device in enumerate(self.devices, 1):
                part = self.config.replace(device=device, output=part_output(self.config.output, i, count),
                                           shuffle_workers=workers)
                process = self.context.Process(target=_worker, name=f"dnalift-{device}-{i}",
                                               args=(part, self.config.output, i, count, self.queue, levels,
                                                     showwarning))
                process.start()
                self.processes.append(process)
            while len(self.done) < count:
                self._next()
            finished = True
        finally:
            self._stop(terminate=not finished)
        return [self.done[i] for i in range(1, count + 1)]

    def _next(self) -> None:
        """Handle one message (or notice a worker that died without one)."""
        try:
            message = self.queue.get(timeout=POLL)
        except queue_module.Empty:
            for i, process in enumerate(self.processes, 1):
                if i not in self.done and process.exitcode is not None:
                    self._drain()
                    if i not in self.done:
                        raise self._died(i, process.exitcode)
            return
        self._handle(message)

    def _drain(self) -> None:
        while True:
            try:
                message = self.queue.get(timeout=0.5)
            except queue_module.Empty:
                return
            self._handle(message)

    def _handle(self, message) -> None:
        kind, index, *rest = message
        if kind == "record":
            record = rest[0]
            logging.getLogger(record.name).handle(record)
        elif kind == "progress":
            self.rows[index - 1] = tuple(rest)
            if self.progress is not None and all(r is not None for r in self.rows):  # the total from the start
                self.progress(sum(d for d, _ in self.rows), sum(t for _, t in self.rows))
        elif kind == "done":
            self.done[index] = rest[0]
        elif kind == "error":
            raise self._failed(index, rest[0])
        elif kind == "interrupted":
            raise self._died(index, None)

    def _where(self, index: int) -> str:
        return f"the worker on {self.devices[index - 1]} (part {index} of {len(self.devices)})"

    def _failed(self, index: int, error) -> BaseException:
        if isinstance(error, DnaliftError) and not isinstance(error, OutputWriteError):
            self.data_error = True
            return error  # a data error: the same in every part
        if isinstance(error, DiskFullError):
            return DiskFullError(f"{error}; every part keeps its complete chunks: free space and rerun the same "
                                 f"command with resume=True", argument=error.argument, **error.details)
        text = " ".join(str(error).split())[:300]
        return DeviceWorkerError(f"{self._where(index)} failed ({type(error).__name__}: {text}); the other workers "
                                 f"were stopped and the parts keep their complete chunks: fix the cause and rerun "
                                 f"the same command with resume=True", argument="device",
                                 device=self.devices[index - 1])

    def _died(self, index: int, exitcode) -> BaseException:
        if exitcode is None:
            how = "was interrupted"
        elif exitcode < 0:
            name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else f"signal {-exitcode}"
            how = f"was killed ({name}{', perhaps out of memory' if -exitcode == signal.SIGKILL else ''})"
        else:
            how = f"stopped with exit status {exitcode}"
        return DeviceWorkerError(f"{self._where(index)} {how}; the other workers were stopped and the parts keep "
                                 f"their complete chunks: rerun the same command with resume=True to finish",
                                 argument="device", device=self.devices[index - 1])

    def _stop(self, *, terminate: bool) -> None:
        """Reap the workers; first, when ``terminate``, stop those still running (SIGTERM: they keep their complete
        chunks). Their last log lines are handled meanwhile (a worker cannot exit before its queue is read)."""
        if terminate:
            for process in self.processes:
                if process.exitcode is None:
                    process.terminate()
        deadline = time.monotonic() + STOP_GRACE
        while any(p.exitcode is None for p in self.processes) and time.monotonic() < deadline:
            self._logs_only(POLL)
        for process in self.processes:
            if process.exitcode is None:
                process.kill()
            process.join()
        self._logs_only(0.0)
        self.queue.close()
        self.queue.join_thread()

    def _logs_only(self, timeout: float) -> None:
        """Handle the log records waiting (other messages are of no use once the run stops)."""
        while True:
            try:
                message = self.queue.get(timeout=timeout) if timeout else self.queue.get_nowait()
            except (queue_module.Empty, OSError, EOFError, ValueError):
                return
            if message[0] == "record" and not self.data_error:
                self._handle(message)
            timeout = 0.0


def _logger_levels() -> dict:
    """The levels set on dnalift's loggers here, for the workers' loggers."""
    loggers = logging.Logger.manager.loggerDict
    return {name: logger.level for name, logger in loggers.items()
            if (name == "dnalift" or name.startswith("dnalift.")) and isinstance(logger, logging.Logger)
            and logger.level}


def _picklable(fn):
    """``fn`` when a worker can receive it (a module-level function), else None."""
    try:
        pickle.dumps(fn)
    except Exception:  # noqa: BLE001 - a lambda or a bound method: the worker keeps its own
        return None
    return fn


# ----------------------------------------------------------------------------------------------- worker


class _QueueHandler(logging.Handler):
    """Sends a worker's log records to the parent (formatted there)."""

    def __init__(self, queue, index: int):
        super().__init__()
        self.queue, self.index = queue, index

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg, record.args = record.getMessage(), None
            record.exc_info = record.exc_text = None
            self.queue.put(("record", self.index, record))
        except Exception:  # noqa: BLE001 - logging must never stop the run
            self.handleError(record)


def _sigterm(signum, frame):
    raise KeyboardInterrupt()


def _watch_parent(parent: int) -> None:
    """Stop this worker (SIGTERM: it keeps its complete chunks) when its parent dies without stopping it."""
    import threading

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="dnalift-parent-watch", daemon=True).start()


def _worker(config, final_output, index: int, count: int, queue, levels: dict, showwarning) -> None:
    """A worker process: score part ``index`` of ``count`` and send the summary (or the error) to the parent."""
    import sys
    import warnings

    signal.signal(signal.SIGTERM, _sigterm)
    _watch_parent(os.getppid())
    root = logging.getLogger("dnalift")
    root.handlers[:] = [_QueueHandler(queue, index)]
    root.propagate = False
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    if showwarning is not None:
        warnings.showwarning = showwarning
    try:
        from dnalift.pipeline import score_part

        if config.device == "cpu":  # CPU stand-ins share the cores
            import torch

            torch.set_num_threads(max(1, torch.get_num_threads() // count))

        summary = score_part(config, part=(index, count), final_output=final_output,
                             progress=lambda done, total: queue.put(("progress", index, done, total)))
    except KeyboardInterrupt:
        queue.put(("interrupted", index))
        queue.close()
        queue.join_thread()
        sys.exit(130)
    except BaseException as error:  # noqa: BLE001 - every failure goes to the parent
        try:
            pickle.dumps(error)
        except Exception:  # noqa: BLE001 - an exception that does not pickle: its text
            error = RuntimeError(f"{type(error).__name__}: {error}")
        queue.put(("error", index, error))
        queue.close()
        queue.join_thread()
        sys.exit(1)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # done: nothing left to stop
    queue.put(("done", index, summary))
    queue.close()
    queue.join_thread()
