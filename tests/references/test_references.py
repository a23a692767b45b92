"""Dinucleotide shuffles (counts, uniformity, seeding), expected-frequency, zero and FASTA references."""

import collections

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

import dnalift.references.shuffle as shuffle
from dnalift.encoding import one_hot_decode, one_hot_encode
from dnalift.errors import ReferenceInputError
from dnalift.references.make import (
    dinucleotide_shuffle,
    expected_frequency_references,
    references_from_fasta,
    zero_references,
)


def dinucleotides(seq):
    """Counts of dinucleotides inside the ACGT runs of seq (N splits runs)."""
    counts = collections.Counter()
    for run in seq.split("N"):
        counts.update(run[i : i + 2] for i in range(len(run) - 1))
    return counts


def random_sequences(rng, m, length, n_rate=0.0):
    seqs = []
    for _ in range(m):
        probs = rng.dirichlet([0.7] * 4)  # skewed compositions give repeats and many self-loops
        letters = rng.choice(list("ACGT"), size=length, p=probs)
        letters[rng.random(length) < n_rate] = "N"
        seqs.append("".join(letters))
    return seqs


def valid_shuffles(seq):
    """Every sequence with seq's first letter and dinucleotide counts (depth-first over the counts)."""
    left = dinucleotides(seq)
    found = []

    def extend(prefix):
        if len(prefix) == len(seq):
            found.append(prefix)
        for b in "ACGT":
            pair = prefix[-1] + b
            if left[pair] > 0:
                left[pair] -= 1
                extend(prefix + b)
                left[pair] += 1

    extend(seq[0])
    return found


def draw_counts(seq, n, seed=0):
    Y = dinucleotide_shuffle(one_hot_encode([seq]), n=n, seed=seed)
    return collections.Counter(one_hot_decode(Y[0]))


# --- what every shuffle keeps -------------------------------------------------------------------------------


@pytest.mark.parametrize("n_rate", [0.0, 0.08])
def test_shuffles_keep_dinucleotides_first_letters_and_n(n_rate):
    rng = np.random.default_rng(0)
    seqs = random_sequences(rng, 120, 80, n_rate)
    Y = dinucleotide_shuffle(one_hot_encode(seqs), n=6, seed=1)
    assert Y.shape == (120, 6, 4, 80) and Y.dtype == np.int8
    changed = 0
    for seq, shuffles in zip(seqs, Y):
        for s in one_hot_decode(shuffles):
            assert dinucleotides(s) == dinucleotides(seq)
            assert [c == "N" for c in s] == [c == "N" for c in seq]
            assert [run[:1] for run in s.split("N")] == [run[:1] for run in seq.split("N")]
            changed += s != seq
    assert changed > 0.9 * 120 * 6


def test_short_runs_and_all_n_are_copied():
    seqs = ["ANCGNNTNAC", "NNNNNNNNNN", "ACNGTNCANG"]  # runs of 1 or 2 letters have a single arrangement
    Y = dinucleotide_shuffle(one_hot_encode(seqs), n=3)
    for seq, shuffles in zip(seqs, Y):
        assert one_hot_decode(shuffles) == [seq] * 3


def test_runs_of_very_different_lengths_in_one_batch():
    rng = np.random.default_rng(3)
    base = random_sequences(rng, 4, 300)
    seqs = [base[0], base[1][:37] + "N" + base[1][38:], "N" * 150 + base[2][150:], base[3][:5] + "N" * 295]
    Y = dinucleotide_shuffle(one_hot_encode(seqs), n=4, seed=5)
    for seq, shuffles in zip(seqs, Y):
        for s in one_hot_decode(shuffles):
            assert dinucleotides(s) == dinucleotides(seq)
            assert [c == "N" for c in s] == [c == "N" for c in seq]


def test_torch_in_torch_out():
    X = torch.from_numpy(one_hot_encode(["ACGTTGCAAGGTAC", "TTTTACGAGNNGCA"])).to(torch.float32)
    Y = dinucleotide_shuffle(X, n=5, seed=2)
    assert isinstance(Y, torch.Tensor) and Y.dtype == torch.float32 and Y.shape == (2, 5, 4, 14)
    Z = dinucleotide_shuffle(X.numpy(), n=5, seed=2)
    np.testing.assert_array_equal(Y.numpy(), Z)


# --- uniformity ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seq, n", [("ACAGCATACG", 20_000), ("AACACCAAGA", 20_000), ("TTTTATTTAT", 20_000), ("CCAGCTGGACCA", 40_000)]
)
def test_uniform_over_all_valid_shuffles(seq, n):
    valid = valid_shuffles(seq)
    assert len(valid) > 10
    got = draw_counts(seq, n, seed=0)
    assert set(got) <= set(valid)
    observed = [got[v] for v in valid]
    assert min(observed) > 0
    assert chisquare(observed).pvalue > 1e-3


def fixed_last_successor_shuffle(seq, rng):
    """The common scheme: each letter keeps its last successor from seq; the other successors are shuffled."""
    succ = collections.defaultdict(list)
    for a, b in zip(seq, seq[1:]):
        succ[a].append(b)
    for a in succ:
        rest = succ[a][:-1]
        rng.shuffle(rest)
        succ[a] = rest + succ[a][-1:]
    out, here, used = [seq[0]], seq[0], collections.Counter()
    for _ in range(len(seq) - 1):
        here = succ[here][used[here]]
        used[out[-1]] += 1
        out.append(here)
    return "".join(out)


def test_fixed_last_successor_scheme_is_not_uniform():
    seq = "ACAGCATACG"
    valid = valid_shuffles(seq)
    rng = np.random.default_rng(0)
    naive = collections.Counter(fixed_last_successor_shuffle(seq, rng) for _ in range(3000))
    assert set(naive) <= set(valid)
    assert len(naive) < len(valid)  # some valid shuffles can never come out of it
    assert chisquare([naive[v] for v in valid]).pvalue < 1e-3  # so the uniformity test above would catch it
    assert len(draw_counts(seq, 3000)) == len(valid)  # the arborescence method reaches them all


def test_rank_ties_are_redrawn_exactly(monkeypatch):
    # With 2 rank bits nearly every shuffle has tied ranks and goes through the exact redraw.
    monkeypatch.setattr(shuffle, "_RANK_FIELD", np.uint32(0b1100))
    seq = "ACAGCATACG"
    valid = valid_shuffles(seq)
    got = draw_counts(seq, 4000, seed=4)
    assert set(got) <= set(valid)
    assert chisquare([got[v] for v in valid]).pvalue > 1e-3
    rng = np.random.default_rng(9)
    seqs = random_sequences(rng, 10, 60, 0.05)
    for s, shuffles in zip(seqs, dinucleotide_shuffle(one_hot_encode(seqs), n=3)):
        for t in one_hot_decode(shuffles):
            assert dinucleotides(t) == dinucleotides(s)


# --- seeding ------------------------------------------------------------------------------------------------


def test_named_sequences_shuffle_the_same_in_any_batch(monkeypatch):
    rng = np.random.default_rng(4)
    seqs = random_sequences(rng, 3, 90, 0.03)
    names = ["a", "b", "c"]
    X = one_hot_encode(seqs)
    full = dinucleotide_shuffle(X, n=4, seed=7, names=names)
    alone = dinucleotide_shuffle(X[1:2], n=4, seed=7, names=["b"])
    np.testing.assert_array_equal(full[1], alone[0])
    reordered = dinucleotide_shuffle(X[[2, 0, 1]], n=4, seed=7, names=["c", "a", "b"])
    np.testing.assert_array_equal(reordered, full[[2, 0, 1]])
    monkeypatch.setattr(shuffle, "_CHUNK_KEYS", 1)  # one sequence per chunk
    np.testing.assert_array_equal(dinucleotide_shuffle(X, n=4, seed=7, names=names), full)


def test_first_shuffles_do_not_depend_on_n():
    X = one_hot_encode(random_sequences(np.random.default_rng(6), 3, 70, 0.05))
    few = dinucleotide_shuffle(X, n=3, seed=2, names=["a", "b", "c"])
    many = dinucleotide_shuffle(X, n=8, seed=2, names=["a", "b", "c"])
    np.testing.assert_array_equal(few, many[:, :3])


def test_seed_and_index_seeding():
    X = one_hot_encode(random_sequences(np.random.default_rng(5), 2, 60))
    a = dinucleotide_shuffle(X, n=3, seed=1)
    np.testing.assert_array_equal(a, dinucleotide_shuffle(X, n=3, seed=1))
    assert not np.array_equal(a, dinucleotide_shuffle(X, n=3, seed=2))
    # Without names a sequence is seeded by its index, so its position matters.
    assert not np.array_equal(a[1], dinucleotide_shuffle(X[1:], n=3, seed=1)[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n": 0}, "n must be"), ({"n": 2, "seed": -1}, "seed must be"), ({"n": 2, "names": ["x"]}, "1 names")],
)
def test_shuffle_argument_errors(kwargs, match):
    X = one_hot_encode(["ACGT", "AAGT"])
    with pytest.raises(ReferenceInputError, match=match):
        dinucleotide_shuffle(X, **kwargs)


def test_shuffle_refuses_non_one_hot():
    X = one_hot_encode(["ACGT"]).astype(np.float32)
    X[0, :, 1] = 0.25
    with pytest.raises(ReferenceInputError, match=r"not one-hot at sequence 0, position 1 \(0-based\)"):
        dinucleotide_shuffle(X, n=2)
    with pytest.raises(ReferenceInputError, match=r"shape \(4, 4\)"):
        dinucleotide_shuffle(X[0], n=2)


# --- expected frequencies and zeros -------------------------------------------------------------------------


def test_uniform_references_keep_n_columns_zero():
    R = expected_frequency_references(one_hot_encode(["ACNT"]))
    assert R.shape == (1, 1, 4, 4) and R.dtype == np.float32
    np.testing.assert_array_equal(R[0, 0, :, 2], 0)
    np.testing.assert_allclose(R[0, 0, :, [0, 1, 3]], 0.25)


def test_gc_references_by_hand():
    X = one_hot_encode(["GGCANNNN", "AATTAATT", "NNNNNNNN"])
    R = expected_frequency_references(X, method="gc")
    # sequence 0: 3 of its 4 ACGT letters are G or C
    np.testing.assert_allclose(R[0, 0, :, 0], [0.125, 0.375, 0.375, 0.125])
    np.testing.assert_array_equal(R[0, 0, :, 4:], 0)
    np.testing.assert_allclose(R[1, 0, :, 3], [0.5, 0, 0, 0.5])
    np.testing.assert_array_equal(R[2], 0)
    gc = (R[0, 0, 1, :4] + R[0, 0, 2, :4]).mean()
    assert gc == pytest.approx(0.75)


def test_given_frequencies_and_torch():
    X = torch.from_numpy(one_hot_encode(["ACGTN"])).to(torch.float64)
    R = expected_frequency_references(X, method=(0.3, 0.2, 0.2, 0.3))
    assert isinstance(R, torch.Tensor) and R.dtype == torch.float32 and R.shape == (1, 1, 4, 5)
    np.testing.assert_allclose(R[0, 0, :, 1].numpy(), [0.3, 0.2, 0.2, 0.3])
    assert R[0, 0, :, 4].abs().sum() == 0


@pytest.mark.parametrize(
    "method, match",
    [
        ((0.5, 0.5, 0.5), "4 numbers"),
        ((0.5, 0.6, -0.1, 0.0), "non-negative"),
        ((0.3, 0.3, 0.3, 0.3), "sum to 1"),
        ("genome", "unknown expected-frequency method"),
    ],
)
def test_bad_frequencies(method, match):
    with pytest.raises(ReferenceInputError, match=match):
        expected_frequency_references(one_hot_encode(["ACGT"]), method=method)


def test_zero_references():
    X = one_hot_encode(["ACGT", "TTTT"])
    R = zero_references(X)
    assert R.shape == (2, 1, 4, 4) and R.dtype == np.float32 and not R.any()
    assert isinstance(zero_references(torch.from_numpy(X)), torch.Tensor)


# --- references from a FASTA file ---------------------------------------------------------------------------


def write(path, records):
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in records))
    return path


def test_shared_references_from_fasta(tmp_path):
    path = write(tmp_path / "refs.fa", [("r1", "AAAA"), ("r2", "CCGN"), ("r3", "acgt")])
    R = references_from_fasta(path, length=4)
    assert R.shape == (3, 4, 4) and R.dtype == np.int8
    assert one_hot_decode(R) == ["AAAA", "CCGN", "ACGT"]


def test_per_sequence_references_from_fasta(tmp_path):
    records = [("s2/1", "GGGG"), ("s1/0", "AAAA"), ("other", "TTTT"), ("s2/0", "CCCC"), ("s1/1", "ACAC")]
    path = write(tmp_path / "refs.fa", records)
    R = references_from_fasta(path, names=["s1", "s2"], length=4)
    assert R.shape == (2, 2, 4, 4)
    assert one_hot_decode(R[0]) == ["AAAA", "ACAC"]
    assert one_hot_decode(R[1]) == ["CCCC", "GGGG"]


@pytest.mark.parametrize(
    "records, names, match",
    [
        ([("r1", "AAAA"), ("r2", "AAA")], None, "'r2' has length 3 but the sequences have length 4"),
        ([("s1/0", "AAAA")], ["s1", "s2"], "no references for sequence 's2'; name them 's2/0'"),
        ([("s1/0", "AAAA"), ("s1/1", "AAAA"), ("s2/0", "AAAA")], ["s1", "s2"], "'s1' has 2 references but 's2' has 1"),
        ([("s1/1", "AAAA"), ("s1/2", "AAAA")], ["s1"], r"numbered \[1, 2\]; number them /0 to /1"),
    ],
)
def test_reference_fasta_errors(tmp_path, records, names, match):
    path = write(tmp_path / "refs.fa", records)
    with pytest.raises(ReferenceInputError, match=match):
        references_from_fasta(path, names=names, length=4)
