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

__all__ = ["ScoreSummary", "output_paths", "resolve_targets", "worst_delta"]


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
    paired : bool
        Rows come in pairs, two per variant (``n_skipped`` then counts variants).
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
    paired: bool = False

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


def worst_delta(targets, paths) -> tuple[float, str | None]:
    """The largest ``|delta|`` over the result files and the name of its sequence (and target, for several)."""
    from dnalift.io.store import open_results

    worst_value, worst_name = float("nan"), None
    for target, path in zip(targets, paths):
        label = target.label
        with open_results(path) as r:
            for a, b in r.iter_chunks(65536):
                d = np.abs(r.deltas(slice(a, b)).astype(np.float64))
                if d.size and (math.isnan(worst_value) or d.max() > worst_value):
                    i = int(np.argmax(d))
                    worst_value = float(d[i])
                    worst_name = str(r.names_of(a + i)) + (f", target {label}" if len(paths) > 1 else "")
    return worst_value, worst_name
