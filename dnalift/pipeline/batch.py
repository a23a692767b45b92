"""The batch size of a scoring run, fixed once, because a row's bits depend on the batch it is computed in.

PyTorch's convolutions and matrix products block their work by the shape of the batch, so one sequence scored in
a batch of 64 rows and in one of 128 differs in the last bits of float32 (measured on the CPU: every row, by up
to a few 1e-7 of the row's largest score; the same holds for a row's position in a batch of some shapes). A
run therefore picks its batch size once: the option, or the automatic choice for the model and device
(:func:`~dnalift.attribution.batching.auto_batch_size`, which on a GPU depends on its free memory). Every chunk
uses it and the result files record it (attribute ``batch_size``). ``resume=True`` goes on with the recorded
size and refuses another one given explicitly, so a resumed file holds the bits the uninterrupted run would
have written. Shards and merges do not compare it: files scored with other batch sizes, shard boundaries or
devices agree to float32 rounding, not bit for bit.
"""

from __future__ import annotations

import logging

import h5py

__all__ = ["run_batch_size"]

log = logging.getLogger("dnalift.pipeline")


def run_batch_size(config, model, length: int, paths) -> tuple[int, str]:
    """Sequence-reference pairs per engine batch for the whole run.

    Parameters
    ----------
    config : ScoreConfig
    model : LoadedModel
    length : int
        The sequences' length L.
    paths : list of Path
        The run's result files (their partial files are read when resuming).

    Returns
    -------
    int
        ``config.batch_size``; when resuming without it, the interrupted run's; otherwise the automatic choice.
    str
        Which of the three (``"batch_size"``, ``"the interrupted run's"``, ``"automatic"``), for the log.
    """
    if config.batch_size is not None:
        return config.batch_size, "batch_size"
    if config.resume:
        recorded = _recorded(paths)
        if recorded is not None:
            log.info("resuming with the interrupted run's batch size, %d", recorded)
            return recorded, "the interrupted run's"
    from dnalift.attribution import engine
    from dnalift.attribution.batching import auto_batch_size, torch_device

    program, _, _ = engine.program_of(model, (4, length))
    plan = engine.plan_for(program, mode=config.rule, max_rule=config.max_rule,
                           allow_gradient=config.allow_gradient)
    from dnalift.attribution.precision import dtype_of

    return int(auto_batch_size(plan, device=torch_device(config.device), dtype=dtype_of(config.precision))), "automatic"


def _recorded(paths) -> int | None:
    """The batch size recorded in the first partial file of ``paths`` that has one."""
    from dnalift.io.store import partial_path

    for path in paths:
        partial = partial_path(path)
        if not partial.exists():
            continue
        try:
            with h5py.File(partial, "r") as f:
                value = f.attrs.get("batch_size")
        except OSError:  # the writer names what is wrong with the file
            continue
        if value is not None:
            return int(value)
    return None
