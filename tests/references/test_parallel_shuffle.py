"""Dinucleotide shuffles made by worker processes (issue 23): the same bits as in one process, and as before."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from dnalift.errors import ReferenceInputError
from dnalift.references import dinucleotide_shuffle, make_references
from dnalift.references.parallel import ShufflePool
from dnalift.references.shuffle import shuffle_codes

#: sha256 of the shuffles of :func:`_batch` made by dnalift before the shuffles could be made in parallel
#: (commit 437fb31, seed 3, 6 shuffles): with names, and without (seeded by position)
BEFORE = {"names": "da1d0757d13bb44fb18f313c261af0c6ec3310db8deb29aa417d90e95b973dc2",
          "positions": "d22c6f051283c66f5e7dbbcd2bf280b02e3e1bd464f2ee0292c521ee202ed360"}


def _batch():
    """37 sequences of 300 bp with N runs, scattered Ns and an all-N sequence; their names."""
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 4, size=(37, 300))
    X = np.eye(4, dtype=np.int8)[codes].transpose(0, 2, 1).copy()
    X[3, :, 100:110] = 0
    X[5, :, ::7] = 0
    X[8] = 0
    return X, [f"peak_{i}" for i in range(37)]


def _digest(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def pool():
    with ShufflePool(2) as p:
        yield p


def test_one_process_gives_the_bits_of_before():
    X, names = _batch()
    assert _digest(dinucleotide_shuffle(X, n=6, seed=3, names=names)) == BEFORE["names"]
    assert _digest(dinucleotide_shuffle(X, n=6, seed=3)) == BEFORE["positions"]


def test_worker_processes_give_the_bits_of_one(pool):
    X, names = _batch()
    assert _digest(pool(X, n=6, seed=3, names=names)) == BEFORE["names"]
    assert _digest(pool(X, n=6, seed=3)) == BEFORE["positions"]  # blocks keep their rows' positions
    Xt = torch.from_numpy(X).to(torch.float32)
    out = pool(Xt, n=4, seed=1, names=names)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    torch.testing.assert_close(out, dinucleotide_shuffle(Xt, n=4, seed=1, names=names), rtol=0, atol=0)
    with pytest.raises(ReferenceInputError, match="names"):
        pool(X, n=2, names=names[:3])


def test_a_block_alone_gets_the_bits_it_has_in_the_batch():
    X, _ = _batch()
    codes = np.argmax(X, axis=1) + 4 * (X.sum(axis=1) == 0)
    whole = shuffle_codes(codes, n=3, seed=5)
    np.testing.assert_array_equal(shuffle_codes(codes[10:20], n=3, seed=5, first_index=10), whole[10:20])


def test_references_of_a_run_with_workers_are_the_same(pool):
    X, names = _batch()
    plain = make_references("dinuc", length=300, n_refs=4, seed=2)
    parallel = make_references("dinuc", length=300, n_refs=4, seed=2, workers=2)
    try:
        np.testing.assert_array_equal(parallel(X, names), plain(X, names))
    finally:
        parallel.close()
        plain.close()
    assert parallel._pool is None  # closed
