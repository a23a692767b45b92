"""Dinucleotide-shuffled references (:func:`dinucleotide_shuffle`), uniform over all sequences with the same
dinucleotide counts. :mod:`dnalift.references.make` builds every kind of reference from here and elsewhere.

``X`` is one-hot ``(m, 4, L)`` (channels A, C, G, T; an all-zero column is ``N``), a numpy array or a torch
tensor; the result is the same kind, ``(m, n, 4, L)``. An all-zero column stays all-zero in every shuffle,
at the same position.

Dinucleotide shuffles
    :func:`dinucleotide_shuffle` keeps, in every shuffle, the first letter and the dinucleotide counts of
    each maximal run of A/C/G/T letters (N columns stay in place and split the runs), and draws uniformly
    among all sequences with those counts. It samples an Eulerian path of the dinucleotide multigraph by the
    Altschul–Erickson / Kandel et al. method: a random arborescence of "last exit" edges towards the last
    letter, drawn with probability proportional to the number of edge choices that realise it (an exact
    weighted draw among the at most 16 arborescences on four letters), then a uniformly random order of the
    other out-edges of each letter, then the walk. (Fixing each letter's last successor, as many
    implementations do, is not uniform.) The work is vectorised over all shuffles of all sequences of a
    chunk: sorting random keys gives the per-letter orders (the rare shuffles with tied keys are redrawn
    with exact permutations), and the walk advances every shuffle one letter per numpy step.

Seeding
    Each sequence's random numbers come from ``numpy.random.SeedSequence([seed, 1, h])`` with ``h`` the
    64-bit BLAKE2b hash of its name (``[seed, 0, index]`` when no names are given), spawned into one PCG64
    stream per run and purpose (arborescence draws; sort-key bits; the rare exact redraw of shuffle ``t``).
    So a named sequence gets the same shuffles whatever batch, order, chunk or shard it is in, and the first
    ``n`` shuffles do not change when more are asked for.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from typing import Sequence

import numpy as np

from dnalift.errors import ReferenceInputError
from dnalift.references.arrays import check_int, is_tensor, letter_codes

__all__ = ["dinucleotide_shuffle", "check_shuffle_options", "shuffle_codes", "one_hot_shuffles"]

logger = logging.getLogger(__name__)

# Sort keys of the shuffle (uint32): bits 31-30 the source letter, renumbered so that the last letter of the
# run sorts last; bit 29 marks padding; bits 28-2 a random rank (the reserved last-exit edge gets the highest
# rank); bits 1-0 the successor letter. Ties of rank within a letter's group are detected and redrawn.
_RANK_FIELD = np.uint32(((1 << 27) - 1) << 2)
_PAD_KEY = np.uint32((3 << 30) | (1 << 29))

# Sort keys per chunk of the shuffle (shuffles x dinucleotides); about 11 bytes of scratch memory each.
_CHUNK_KEYS = 1 << 22
# Spawn keys of the random streams of a sequence's run (see the module notes on seeding).
_TREE_STREAM, _BITS_STREAM, _REDRAW_STREAM = 0, 1, 2
# Longest sequence for which the arborescence weights (at most (L/3)^3) stay inside int64.
_MAX_RUN = 4_000_000


def _arborescences() -> np.ndarray:
    """All spanning arborescences of the complete digraph on 4 letters, directed towards each root.

    Returns
    -------
    numpy.ndarray, shape (4, 16, 4), int64
        ``T[e, t, v]`` is the successor of letter ``v`` in the ``t``-th arborescence rooted at ``e``
        (``T[e, t, e] == e``).
    """
    table = np.empty((4, 16, 4), dtype=np.int64)
    for root in range(4):
        others = [v for v in range(4) if v != root]
        found = []
        for choice in itertools.product(range(4), repeat=3):
            succ = dict(zip(others, choice))
            succ[root] = root
            if any(succ[v] == v for v in others):
                continue
            if all(_reaches(succ, v, root) for v in others):
                found.append([succ[v] for v in range(4)])
        assert len(found) == 16  # Cayley: 4^(4-2) trees per root
        table[root] = found
    return table


def _reaches(succ: dict, v: int, root: int) -> bool:
    for _ in range(4):
        if v == root:
            return True
        v = succ[v]
    return v == root


_TREES = _arborescences()


def _name_hash(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "little")


def _entropy(seed: int, name: str | None, index: int | None) -> list[int]:
    """Seed entropy of one sequence: ``[seed, 1, blake2b64(name)]``, or ``[seed, 0, index]`` without a name."""
    return [seed, 1, _name_hash(name)] if name is not None else [seed, 0, int(index)]


def dinucleotide_shuffle(X, *, n: int, seed: int = 0, names: Sequence[str] | None = None):
    """Dinucleotide-shuffled references, uniform over all sequences with the same dinucleotide counts.

    Each maximal run of A/C/G/T letters is shuffled on its own: every shuffle keeps the run's first letter
    (hence its last letter and letter counts) and its count of each of the 16 dinucleotides, and is drawn
    uniformly among all sequences that do. All-zero columns (N) keep their positions. Runs of one or two
    letters have a single such sequence and are copied.

    Parameters
    ----------
    X : numpy.ndarray or torch.Tensor, shape (m, 4, L)
        One-hot sequences, channels A, C, G, T; all-zero columns are N.
    n : int
        Number of shuffles per sequence (>= 1).
    seed : int
        Non-negative seed of the run.
    names : sequence of str, optional
        ``m`` sequence names. Sequence ``i`` is seeded by ``(seed, names[i])``, so it gets the same shuffles
        in any batch, order or shard; without names, by ``(seed, i)``, which depends on its position in
        ``X``. Shuffle ``t`` of a sequence does not depend on ``n`` (``n=5`` gives the first 5 of ``n=20``).

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (m, n, 4, L)
        Same kind, dtype (and device) as ``X``.

    Raises
    ------
    ReferenceInputError
        ``X`` is not one-hot of shape (m, 4, L), ``n`` or ``seed`` is invalid, or ``names`` has the wrong
        length.

    Notes
    -----
    The walk advances all shuffles of a chunk of sequences together, one position per numpy step; the
    Python overhead is per position of the longest run, not per base of every shuffle. Throughput is
    highest for many sequences of moderate length (benchmarks/bench_shuffle.py).
    """
    codes = letter_codes(X)
    n, seed, names = check_shuffle_options(codes, n=n, seed=seed, names=names)
    m, length = codes.shape
    per_chunk = max(1, _CHUNK_KEYS // max(1, n * length))
    out = np.empty((m, n, 4, length), dtype=np.int8 if is_tensor(X) else X.dtype)
    shuffled = np.empty((min(m, per_chunk), n, length), dtype=np.uint8)
    work = _Workspace()
    for c0 in range(0, m, per_chunk):
        c1 = min(m, c0 + per_chunk)
        chunk = shuffled[: c1 - c0]
        _shuffle_rows(codes[c0:c1], n, seed, names[c0:c1] if names is not None else None, c0, chunk, work)
        one_hot_shuffles(chunk, out=out[c0:c1])
    if is_tensor(X):
        import torch

        return torch.from_numpy(out).to(device=X.device, dtype=X.dtype)
    return out


def check_shuffle_options(codes: np.ndarray, *, n, seed, names):
    """``(n, seed, names)`` of a shuffle of letter codes ``(m, L)`` checked: ReferenceInputError naming the bad one."""
    n = check_int(n, "n", 1)
    seed = check_int(seed, "seed", 0)
    m, length = codes.shape
    if names is not None:
        names = list(names)
        if len(names) != m:
            raise ReferenceInputError(f"got {len(names)} names for {m} sequences; give one name per sequence")
    if length > _MAX_RUN:
        raise ReferenceInputError(
            f"sequences of length {length} are longer than the {_MAX_RUN} bases dinucleotide_shuffle supports; "
            "shuffle shorter windows"
        )
    return n, seed, names


def shuffle_codes(codes: np.ndarray, *, n: int, seed: int, names: Sequence[str] | None = None,
                  first_index: int = 0) -> np.ndarray:
    """Dinucleotide shuffles as letter codes: what :func:`dinucleotide_shuffle` computes, before the one-hot.

    Parameters
    ----------
    codes : numpy.ndarray, shape (m, L)
        Letter codes (0-3 for A, C, G, T; 4 for N), options checked (:func:`check_shuffle_options`).
    n, seed, names
        As for :func:`dinucleotide_shuffle`.
    first_index : int
        The index of row 0 in the whole batch, for the seeds of sequences without names, so that a block of a
        batch shuffled on its own gets the bits it has in the whole batch.

    Returns
    -------
    numpy.ndarray, shape (m, n, L), uint8
    """
    m, length = codes.shape
    per_chunk = max(1, _CHUNK_KEYS // max(1, n * length))
    out = np.empty((m, n, length), dtype=np.uint8)
    work = _Workspace()
    for c0 in range(0, m, per_chunk):
        c1 = min(m, c0 + per_chunk)
        _shuffle_rows(codes[c0:c1], n, seed, names[c0:c1] if names is not None else None, first_index + c0,
                      out[c0:c1], work)
    return out


def one_hot_shuffles(letters: np.ndarray, *, out: np.ndarray) -> None:
    """Write the one-hot ``(m, n, 4, L)`` of letter codes ``(m, n, L)`` into ``out`` (code 4, N, is all zero)."""
    channels = np.arange(4, dtype=np.uint8)[:, None]
    if out.dtype.itemsize == 1 and out.dtype.kind in "biu":  # int8, uint8, bool: write the bytes directly
        np.equal(letters[:, :, None, :], channels, out=out.view(np.bool_))
    else:
        out[...] = letters[:, :, None, :] == channels


def _shuffle_rows(codes, n, seed, names, first_index, out, work) -> None:
    """Shuffle one chunk of rows (row ``i`` is row ``first_index + i`` of the batch) into ``out`` (c, n, L)."""
    entropies = [_entropy(seed, names[i] if names is not None else None, first_index + i)
                 for i in range(codes.shape[0])]
    _shuffle_chunk(codes, n, entropies, out, work)


def _runs(codes: np.ndarray):
    """Maximal runs of ACGT codes: (sequence index, start, number of letters) arrays, in row order."""
    m, length = codes.shape
    padded = np.zeros((m, length + 2), dtype=np.int8)
    padded[:, 1:-1] = codes < 4
    step = np.diff(padded.ravel())
    starts = np.flatnonzero(step == 1)  # flat index of the 0 before each run
    ends = np.flatnonzero(step == -1)  # flat index of each run's last letter
    row = starts // (length + 2)
    start = starts % (length + 2)  # == column of the first letter, as padding shifts by one
    return row, start, ends - starts


class _Workspace:
    """Large scratch arrays reused from chunk to chunk (fresh pages cost more than the work on them)."""

    def __init__(self):
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < nbytes:
            buffer = self._buffers[name] = np.empty(nbytes, dtype=np.uint8)
        return buffer[:nbytes].view(dtype).reshape(shape)


def _shuffle_chunk(codes: np.ndarray, n: int, entropies: list, out: np.ndarray, work: _Workspace) -> None:
    """Shuffle the ACGT runs of ``codes`` ``(c, L)`` into ``out`` ``(c, n, L)``.

    ``entropies[i]`` is the seed entropy of row ``i`` (see the module notes on seeding).
    """
    c, length = codes.shape
    out[:] = codes[:, None, :]
    row, start, size = _runs(codes)
    keep = size >= 3
    row, start, size = row[keep], start[keep], size[keep]
    n_runs = row.size
    if n_runs == 0:
        return
    n_edges = size - 1  # dinucleotides of each run

    # Dinucleotides of every run, as pair codes 4*a+b, and the run each belongs to.
    run_of_edge = np.repeat(np.arange(n_runs), n_edges)
    first_edge = np.cumsum(n_edges) - n_edges
    offset = np.arange(run_of_edge.size) - first_edge[run_of_edge]
    flat = (row * length + start)[run_of_edge] + offset
    flat_codes = codes.ravel().astype(np.int64)
    pair = run_of_edge * 16 + flat_codes[flat] * 4 + flat_codes[flat + 1]
    counts = np.bincount(pair, minlength=n_runs * 16).reshape(n_runs, 4, 4)
    where = np.zeros(n_runs * 16, dtype=np.int64)
    where[pair] = offset  # some occurrence of each dinucleotide in its run (any one will do)
    where = where.reshape(n_runs, 4, 4)
    first = flat_codes[row * length + start]
    last = flat_codes[row * length + start + n_edges]
    outdeg = counts.sum(axis=2)

    # Weights of the 16 last-exit arborescences of each run: the product over letters of the number of
    # edges that realise the chosen exit. Absent letters point straight at the root with weight 1.
    letters = np.arange(4)
    weight = counts.copy()
    weight[:, letters, letters] = 0
    is_root = letters[None, :] == last[:, None]
    fixed = is_root | ((outdeg == 0) & ~is_root)
    weight[fixed] = 0
    runs_idx, v_idx = np.nonzero(fixed)
    weight[runs_idx, v_idx, last[runs_idx]] = 1
    trees = _TREES[last]  # (runs, 16, 4)
    tree_weight = np.take_along_axis(weight[:, None, :, :], trees[:, :, :, None], axis=3)[..., 0].prod(axis=2)
    cum_weight = np.cumsum(tree_weight, axis=1)  # (runs, 16)

    # Random numbers, from each sequence's own generator: the arborescence draws of its runs, then 32 random
    # bits per dinucleotide and shuffle for the sort keys.
    tree_draw = np.empty((n_runs, n), dtype=np.int64)
    bits = [None] * n_runs
    bounds = np.searchsorted(row, np.arange(c + 1))
    for i in range(c):
        r0, r1 = bounds[i], bounds[i + 1]
        if r0 == r1:
            continue
        for g in range(r0, r1):
            run = g - r0
            tree_draw[g] = _rng(entropies[i], (_TREE_STREAM, run)).integers(0, cum_weight[g, -1], size=n)
            size = n * int(n_edges[g])
            raw = _rng(entropies[i], (_BITS_STREAM, run)).bit_generator.random_raw((size + 1) // 2)
            bits[g] = raw.view(np.uint32)[:size].reshape(n, n_edges[g])  # shuffle t: words t*k .. (t+1)*k
    tree = (tree_draw[:, :, None] >= cum_weight[:, None, :]).sum(axis=2)  # (runs, n) in 0..15
    exits = trees[np.arange(n_runs)[:, None], tree]  # (runs, n, 4): last successor of each letter

    runs = _RunTable(
        codes=codes, row=row, start=start, n_edges=n_edges, first=first, last=last, outdeg=outdeg, where=where,
        exits=exits, bits=bits, entropies=entropies, run_in_row=np.arange(n_runs) - bounds[row],
    )
    # Runs of similar length share a walk; group them by the power of two above their edge count.
    bucket = np.ceil(np.log2(n_edges)).astype(np.int64)
    for b in np.unique(bucket):
        _walk_runs(runs, np.flatnonzero(bucket == b), n, out, work)


class _RunTable:
    """Per-run arrays of a chunk: ``row``, ``start``, ``n_edges``, ``first``/``last`` letter, ``outdeg``
    (runs, 4), ``where`` (runs, 4, 4) an edge index of each dinucleotide, ``exits`` (runs, n, 4) the drawn
    last successors, ``bits`` the random key bits (n, n_edges) of each run."""

    def __init__(self, **arrays):
        self.__dict__.update(arrays)


def _rng(entropy, spawn_key=()) -> np.random.Generator:
    """PCG64 generator of ``SeedSequence(entropy, spawn_key=spawn_key)``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy, spawn_key=spawn_key)))


def _walk_runs(runs: _RunTable, sel: np.ndarray, n: int, out: np.ndarray, work: _Workspace) -> None:
    """Build the per-letter successor lists of runs ``sel`` (every shuffle) and walk them into ``out``."""
    codes = runs.codes
    length = codes.shape[1]
    g_count = sel.size
    k = runs.n_edges[sel]
    width = int(k.max())
    e = runs.last[sel]
    cols = np.arange(width)
    letters = np.arange(4)
    unit = np.arange(g_count)[:, None] * n + np.arange(n)[None, :]  # (g, n)

    # Sort keys: source letter (renumbered so the root's group comes last), random rank, successor letter.
    keys = work.get("keys", (g_count, n, width), np.uint32)
    for j, g in enumerate(sel):
        np.bitwise_and(runs.bits[g], _RANK_FIELD, out=keys[j, :, : k[j]])
    pos = np.minimum((runs.row[sel] * length + runs.start[sel])[:, None] + cols[None, :], codes.size - 2)
    src = codes.ravel()[pos].astype(np.uint32)
    dst = codes.ravel()[pos + 1].astype(np.uint32)
    group = (src + np.uint32(3) - e[:, None].astype(np.uint32)) & np.uint32(3)  # (letter - root - 1) mod 4
    keys |= ((group << np.uint32(30)) | dst)[:, None, :]

    # The reserved last exit of each letter other than the root takes the highest rank of its group.
    needs_exit = (runs.outdeg[sel] > 0) & (letters[None, :] != e[:, None])  # (g, 4)
    reserved = runs.where[sel[:, None, None], letters[None, None, :], runs.exits[sel]]  # (g, n, 4)
    flat_reserved = (unit[:, :, None] * width + reserved)[np.broadcast_to(needs_exit[:, None, :], reserved.shape)]
    keys.reshape(-1)[flat_reserved] |= _RANK_FIELD

    # Padding sorts after everything and reads as the root letter, so a finished walk stays at the root.
    is_pad = cols[None, :] >= k[:, None]  # (g, width)
    if is_pad.any():
        np.copyto(keys, (_PAD_KEY | e.astype(np.uint32))[:, None, None], where=is_pad[:, None, :])
    keys.sort(axis=2)

    # Equal ranks within a letter's group would order its successors by letter, not at random (about one
    # shuffle in a thousand for 1 kb): those shuffles are redrawn with exact per-group permutations, so the
    # result stays exactly uniform. Sorted neighbours that differ only in the two letter bits share group and
    # rank; padding (all equal) and the step from one row to the next are not ties.
    flat_keys = keys.reshape(-1)
    diff = np.bitwise_xor(flat_keys[1:], flat_keys[:-1], out=work.get("diff", (flat_keys.size - 1,), np.uint32))
    close = np.flatnonzero(np.less(diff, 4, out=work.get("close", diff.shape, np.bool_)))
    tie_run, tie_shuffle, tie_col = np.unravel_index(close, keys.shape)
    real = (tie_col + 1 < width) & (tie_col + 1 < k[tie_run])
    for j, t in sorted(set(zip(tie_run[real].tolist(), tie_shuffle[real].tolist()))):
        keys[j, t] = _exact_successors(runs, int(sel[j]), int(t), reserved[j, t], needs_exit[j], width)

    # Successor table: the letters of each sorted row.
    succ = np.bitwise_and(keys, 3, out=work.get("succ", keys.shape, np.uint8), casting="unsafe").reshape(-1)

    # Pointer to the next unused out-edge of each (unit, letter): its group's start in the sorted row.
    group_of = (letters[None, :] - e[:, None] - 1) & 3  # (g, 4)
    deg_in_order = np.zeros((g_count, 4), dtype=np.int64)
    np.put_along_axis(deg_in_order, group_of, runs.outdeg[sel], axis=1)
    group_start = np.take_along_axis(np.cumsum(deg_in_order, axis=1) - deg_in_order, group_of, axis=1)
    ptr = (unit[:, :, None] * width + group_start[:, None, :]).reshape(-1)

    # The walk: every shuffle of every run advances one letter per step. ``here`` is the slot of the current
    # letter's pointer, 4 * unit + letter.
    n_units = g_count * n
    walked = work.get("walked", (width + 1, n_units), np.uint8)
    walked[0] = np.repeat(runs.first[sel], n)
    slot0 = np.arange(0, 4 * n_units, 4, dtype=np.int64)
    here = slot0 + walked[0]
    p = np.empty(n_units, dtype=np.int64)
    for i in range(1, width + 1):
        np.take(ptr, here, out=p, mode="clip")
        np.take(succ, p, out=walked[i], mode="clip")
        p += 1
        ptr[here] = p
        np.add(slot0, walked[i], out=here)

    shuffled = walked.T.reshape(g_count, n, width + 1)
    rows = runs.row[sel]
    if width + 1 == length and bool((k == width).all()):  # every run is a whole sequence
        out[rows] = shuffled
        return
    cols1 = np.arange(width + 1)
    dest = ((rows[:, None] * n + np.arange(n)[None, :]) * length + runs.start[sel][:, None])[:, :, None] + cols1
    inside = np.broadcast_to((cols1[None, :] <= k[:, None])[:, None, :], dest.shape)
    out.reshape(-1)[dest[inside]] = shuffled[inside]


def _exact_successors(runs: _RunTable, g: int, t: int, reserved, needs_exit, width: int) -> np.ndarray:
    """Successor letters of shuffle ``t`` of run ``g`` in walk order, from exact per-letter permutations.

    Returns a row of ``width`` values whose two low bits are the successor letters, grouped by source
    letter in the walk's group order, each group uniformly permuted with its reserved last exit at the end,
    then padding that reads as the root letter. Drawn from the sequence's stream spawned with
    ``(redraw, run index in the sequence, t)``, so it depends on nothing outside the sequence.
    """
    rng = _rng(runs.entropies[runs.row[g]], (_REDRAW_STREAM, int(runs.run_in_row[g]), t))
    length = runs.codes.shape[1]
    k = int(runs.n_edges[g])
    base = int(runs.row[g]) * length + int(runs.start[g])
    seq = runs.codes.ravel()[base : base + k + 1].astype(np.int64)
    src, dst = seq[:-1], seq[1:]
    root = int(runs.last[g])
    row = np.full(width, root, dtype=np.uint32)
    at = 0
    for v in ((root + 1) % 4, (root + 2) % 4, (root + 3) % 4, root):
        edges = np.flatnonzero(src == v)
        if needs_exit[v]:
            edges = edges[edges != reserved[v]]
            order = np.concatenate([rng.permutation(edges), [reserved[v]]])
        else:
            order = rng.permutation(edges)
        row[at : at + order.size] = dst[order]
        at += order.size
    return row
