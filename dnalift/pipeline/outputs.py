"""What a scoring run writes and reports: the file of each target, the targets, the summary line."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from dnalift.errors import TargetError

__all__ = ["ScoreSummary", "DeltaTally", "output_paths", "resolve_targets"]


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
    n_nonfinite : int
        Rows whose delta is NaN or infinite (kept only with ``allow_nonfinite``), over all targets.
    paired : bool
        Rows come in pairs, two per variant (``n_skipped`` then counts variants).
    tally : DeltaTally or None
        Where ``max_abs_delta``, ``worst`` and ``n_nonfinite`` come from (the parts of a run on several devices
        are joined with it).
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
    n_nonfinite: int = 0
    paired: bool = False
    tally: "DeltaTally | None" = dataclasses.field(default=None, repr=False, compare=False)

    def line(self) -> str:
        """The one-line summary ``dnalift score`` prints."""
        files = ", ".join(str(p) for p in self.outputs)
        resumed = f", {self.n_resumed} kept from the interrupted run" if self.n_resumed else ""
        if math.isnan(self.max_abs_delta):
            delta = "every delta is NaN or infinite" if self.n_nonfinite else "no rows"
        else:
            delta = f"worst |summation-to-delta error| {self.max_abs_delta:.3g}"
            if self.worst:
                delta += f" ({self.worst})"
        if self.n_nonfinite:
            delta += f"; {self.n_nonfinite} rows with NaN or infinite values, kept (allow_nonfinite=True)"
        scored = f"{self.n_scored} sequences"
        if self.paired:
            scored = f"{self.n_scored // 2} variants ({self.n_scored} rows)"
        return (f"scored {scored}{resumed}, skipped {self.n_skipped}, in "
                f"{_duration(self.seconds)}; {delta} -> {files}")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


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


def resolve_targets(model, targets: Sequence) -> list:
    """The run's targets (indices, output names, ``NAME:INDEX``, ``counts``, ``profile``) against the model.

    Parameters
    ----------
    model : LoadedModel
    targets : sequence of int or str

    Returns
    -------
    list of :class:`~dnalift.attribution.targets.Target`
        Each with its ``label`` (the per-target file name ``OUT.<label>.h5``).

    Raises
    ------
    TargetError
        A target that is not an output of the model, or a target given twice.
    """
    from dnalift.attribution.engine import targets_of

    try:
        return targets_of(model, list(targets), where=model.name)
    except TargetError as e:
        raise TargetError(f"{e}; `dnalift info {model.path or 'MODEL'}` lists them", argument="targets",
                          **e.details) from None


@dataclasses.dataclass
class DeltaTally:
    """The largest finite ``|delta|`` of a run, carried from the chunks as they are computed (nothing is read back).

    Attributes
    ----------
    labels : list of str
        The targets' labels (a name gets ``", target LABEL"`` when there are several).
    value : float
        The largest finite ``|delta|`` so far (``nan`` before any finite one).
    name : str or None
        Its sequence's name, cut to 60 characters.
    n_nonfinite : int
        Deltas (rows x targets) that are NaN or infinite.
    key : tuple of int
        ``(target, row)`` of the worst delta: of equal values the first target, then the first row, is kept.
    """

    labels: list
    value: float = float("nan")
    name: str | None = None
    n_nonfinite: int = 0
    key: tuple = (math.inf, math.inf)

    def add(self, deltas, name_of, *, start: int, target: int = 0) -> None:
        """Count rows ``start, start + 1, ...`` (of the whole input) of targets ``target, target + 1, ...``.

        Parameters
        ----------
        deltas : array (b, T)
        name_of : callable
            ``name_of(i)``: the name of row ``i`` of ``deltas`` (called once, for the worst row only).
        """
        d = np.abs(np.asarray(deltas, dtype=np.float64))
        finite = np.isfinite(d)
        self.n_nonfinite += int(d.size - np.count_nonzero(finite))
        if not finite.any():
            return
        d = np.where(finite, d, -1.0)
        t, i = (int(x[0]) for x in np.nonzero(d.T == d.max()))  # first target, then first row, with the maximum
        self._offer(float(d[i, t]), (target + t, start + i), lambda: str(name_of(i)))

    def _offer(self, value: float, key: tuple, name_of) -> None:
        from dnalift.pipeline.chunks import short_name

        if math.isnan(self.value) or value > self.value or (value == self.value and key < self.key):
            several = f", target {self.labels[key[0]]}" if len(self.labels) > 1 else ""
            self.value, self.key, self.name = value, key, short_name(name_of()) + several

    def add_kept(self, writers, kept: Sequence[tuple[int, int]], *, offset: int, block: int = 65536) -> None:
        """Count the rows ``kept`` (``(start, stop)`` ranges of the writers' rows) from an interrupted run, read once
        from the partial files; ``offset``: the first writer row's row in the whole input."""
        from dnalift.io.store import schema

        for t, w in enumerate(writers):
            for a, b in kept:
                for s in range(a, b, block):
                    d = w.kept(schema.DELTAS, s, min(s + block, b))
                    self.add(d[:, None], lambda i, s=s, w=w: w.kept(schema.NAMES, s + i, s + i + 1)[0],
                             start=offset + s, target=t)

    def merge(self, other: "DeltaTally") -> None:
        """Take in the tally of another part of the same run (rows of every target, numbered in the whole input)."""
        self.n_nonfinite += other.n_nonfinite
        if not math.isnan(other.value) and (math.isnan(self.value) or other.value > self.value
                                            or (other.value == self.value and tuple(other.key) < tuple(self.key))):
            self.value, self.key, self.name = other.value, other.key, other.name
