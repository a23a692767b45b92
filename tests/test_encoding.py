"""One-hot encoding, decoding, N policies and reverse complements."""

import numpy as np
import pytest
import torch

from dnalift.encoding import (
    ALPHABET,
    codes_from_one_hot,
    non_acgt_mask,
    one_hot_decode,
    one_hot_encode,
    reverse_complement,
    reverse_complement_sequence,
)
from dnalift.errors import SequenceError


def test_encode_by_hand():
    X = one_hot_encode(["ACGTN", "ttgca"])
    assert X.shape == (2, 4, 5) and X.dtype == np.int8
    expected0 = np.array(
        [
            [1, 0, 0, 0, 0],  # A
            [0, 1, 0, 0, 0],  # C
            [0, 0, 1, 0, 0],  # G
            [0, 0, 0, 1, 0],  # T
        ]
    )
    expected1 = np.array(
        [
            [0, 0, 0, 0, 1],
            [0, 0, 0, 1, 0],
            [0, 0, 1, 0, 0],
            [1, 1, 0, 0, 0],
        ]
    )
    np.testing.assert_array_equal(X[0], expected0)
    np.testing.assert_array_equal(X[1], expected1)


def test_single_string_and_dtype():
    X = one_hot_encode("GATTACA", dtype=np.float32)
    assert X.shape == (1, 4, 7) and X.dtype == np.float32
    assert X.sum() == 7
    assert ALPHABET == "ACGT"


def test_lowercase_equals_uppercase():
    rng = np.random.default_rng(0)
    s = "".join(rng.choice(list("ACGTN"), size=300))
    np.testing.assert_array_equal(one_hot_encode([s.lower()]), one_hot_encode([s]))


def test_round_trip_numpy_and_torch():
    rng = np.random.default_rng(1)
    seqs = ["".join(rng.choice(list("ACGTN"), size=50)) for _ in range(20)]
    X = one_hot_encode(seqs)
    assert one_hot_decode(X) == seqs
    assert one_hot_decode(torch.from_numpy(X).float()) == seqs
    assert one_hot_decode(X[3]) == seqs[3]  # a (4, L) array gives one string


def test_decode_turns_iupac_into_n():
    assert one_hot_decode(one_hot_encode(["ACRYKgtn"])) == ["ACNNNGTN"]


@pytest.mark.parametrize("letter", list("NRYSWKMBDHVUnrw"))
def test_zero_policy_gives_zero_column(letter):
    X = one_hot_encode([f"AC{letter}GT"])
    assert X[0, :, 2].tolist() == [0, 0, 0, 0]
    assert X[0].sum() == 4


def test_skip_policy_drops_flagged_sequences():
    seqs = ["ACGT", "ACNT", "acgt", "RCGT"]
    mask = non_acgt_mask(seqs)
    assert mask.tolist() == [False, True, False, True]
    X = one_hot_encode(seqs, n_policy="skip")
    assert one_hot_decode(X) == ["ACGT", "ACGT"]


def test_non_acgt_mask_accepts_mixed_lengths():
    assert non_acgt_mask(["A", "ACGTN", "", "gg-"]).tolist() == [False, True, False, True]


def test_error_policy_names_sequence_position_letter():
    with pytest.raises(SequenceError, match=r"'s2' has 'y' at position 2 \(0-based\), .*n_policy='zero'"):
        one_hot_encode(["ACGT", "ACyT"], n_policy="error", names=["s1", "s2"])
    with pytest.raises(SequenceError, match=r"sequence 1 has 'N' at position 0 \(0-based\)"):
        one_hot_encode(["ACGT", "NCGT"], n_policy="error")
    assert one_hot_encode(["ACGT"], n_policy="error").shape == (1, 4, 4)


@pytest.mark.parametrize("bad", ["AC-T", "AC T", "AC1T", "ACéT", "AC.T"])
@pytest.mark.parametrize("policy", ["zero", "skip", "error"])
def test_non_letters_always_refused(bad, policy):
    with pytest.raises(SequenceError, match=r"position 2 \(0-based\)"):
        one_hot_encode(["ACGT", bad], n_policy=policy)


def test_unknown_policy():
    with pytest.raises(ValueError, match="n_policy"):
        one_hot_encode(["ACGT"], n_policy="drop")


def test_lengths_must_match():
    with pytest.raises(SequenceError, match=r"'b' has length 3 but sequence 'a' has length 4"):
        one_hot_encode(["ACGT", "ACG"], names=["a", "b"])


def test_empty_input():
    assert one_hot_encode([]).shape == (0, 4, 0)


def test_reverse_complement_sequence_by_hand():
    assert reverse_complement_sequence("AACGTN") == "NACGTT"
    assert reverse_complement_sequence("acgRYKMBDHVSWn") == "nWSBDHVKMRYcgt"
    with pytest.raises(SequenceError, match=r"position 1 \(0-based\)"):
        reverse_complement_sequence("A-C")


def test_reverse_complement_numpy_matches_strings():
    rng = np.random.default_rng(2)
    seqs = ["".join(rng.choice(list("ACGTN"), size=40)) for _ in range(8)]
    X = one_hot_encode(seqs)
    R = reverse_complement(X)
    assert isinstance(R, np.ndarray) and R.dtype == X.dtype and R.flags.c_contiguous
    assert one_hot_decode(R) == [reverse_complement_sequence(s) for s in seqs]
    np.testing.assert_array_equal(reverse_complement(R), X)


def test_reverse_complement_torch_keeps_kind_and_leading_axes():
    X = torch.from_numpy(one_hot_encode(["ACCGTTN", "GGGAAAC"])).to(torch.float64)
    refs = torch.stack([X, X.flip(0)], dim=1)  # (n, r, 4, L)
    R = reverse_complement(refs)
    assert isinstance(R, torch.Tensor) and R.dtype == torch.float64 and R.shape == (2, 2, 4, 7)
    assert one_hot_decode(R[:, 0]) == ["NAACGGT", "GTTTCCC"]


def test_reverse_complement_needs_four_channels():
    with pytest.raises(SequenceError, match="second-to-last axis"):
        reverse_complement(np.zeros((2, 7, 4)))


def test_codes_from_one_hot_refuses_non_one_hot():
    X = one_hot_encode(["ACGT", "ACGT"])
    X[1, 0, 2] = 1  # column 2 (0-based) of sequence 1 now has two ones
    with pytest.raises(SequenceError, match=r"sequence 1, position 2 \(0-based\)"):
        codes_from_one_hot(X)
    Y = one_hot_encode(["ACGT"]).astype(np.float32) * 2
    with pytest.raises(SequenceError, match="not one-hot"):
        one_hot_decode(Y)
    assert codes_from_one_hot(one_hot_encode(["ACGTN"])).tolist() == [[0, 1, 2, 3, 4]]
