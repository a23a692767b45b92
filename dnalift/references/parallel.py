"""Dinucleotide shuffles made by worker processes, with the same bits as :func:`dinucleotide_shuffle` in one.

Every sequence's shuffles come from its own seeded streams (``(seed, name)``, or ``(seed, index)`` without names:
:mod:`dnalift.references.shuffle`), so a block of sequences can be shuffled anywhere: :class:`ShufflePool` cuts
a batch into blocks, shuffles them in ``workers`` processes (``spawn``: nothing of the parent's threads or GPU
state is inherited) and puts the one-hot shuffles together in order. The workers return letter codes (one byte
per base), a quarter of the one-hot bytes; the parent writes the one-hot result.

The shuffle's walk is a Python loop over positions with small numpy steps, so threads would wait on the GIL;
processes scale with the cores (``benchmarks/bench_shuffle_cores.py``).
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from dnalift.references.arrays import check_int, is_tensor, letter_codes
from dnalift.references.shuffle import check_shuffle_options, one_hot_shuffles, shuffle_codes

__all__ = ["ShufflePool"]

log = logging.getLogger(__name__)

#: fewest sequences per block sent to a worker (smaller blocks cost more in messages than they gain)
MIN_BLOCK = 8


class ShufflePool:
    """``workers`` processes making dinucleotide shuffles; ``pool(X, n=..., seed=..., names=...)`` is
    :func:`~dnalift.references.shuffle.dinucleotide_shuffle` with the same arguments, result and bits.

    Parameters
    ----------
    workers : int
        Worker processes (>= 1), started at the first call and stopped by :meth:`close` (or at exit).
    """

    def __init__(self, workers: int):
        self.workers = check_int(workers, "workers", 1)
        self._executor = None

    def _pool(self):
        if self._executor is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
            log.debug("started %d shuffle worker processes", self.workers)
        return self._executor

    def __call__(self, X, *, n: int, seed: int = 0, names: Sequence[str] | None = None):
        """Shuffles of ``X`` (m, 4, L): (m, n, 4, L), the kind, dtype and device of ``X``."""
        codes = letter_codes(X)
        n, seed, names = check_shuffle_options(codes, n=n, seed=seed, names=names)
        m = codes.shape[0]
        step = max(MIN_BLOCK, -(-m // (2 * self.workers)))  # two blocks per worker balance uneven blocks
        starts = list(range(0, m, step))
        pool = self._pool()
        futures = [pool.submit(shuffle_codes, codes[a:a + step], n=n, seed=seed,
                               names=names[a:a + step] if names is not None else None, first_index=a)
                   for a in starts]
        out = np.empty((m, n, 4, codes.shape[1]), dtype=np.int8 if is_tensor(X) else X.dtype)
        for a, future in zip(starts, futures):
            one_hot_shuffles(future.result(), out=out[a:a + step])
        if is_tensor(X):
            import torch

            return torch.from_numpy(out).to(device=X.device, dtype=X.dtype)
        return out

    def close(self) -> None:
        """Stop the worker processes."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
