"""FASTA and BED/narrowPeak sources, checked against small hand-made genomes."""

import gzip
import logging
import tracemalloc

import numpy as np
import pytest

from dnalift.encoding import one_hot_decode, one_hot_encode, reverse_complement_sequence
from dnalift.errors import RegionError, SequenceError
from dnalift.io.fasta import open_fasta
from dnalift.io.regions import open_regions


def write_fasta(path, records, line=60):
    with open(path, "w") as handle:
        for name, seq in records:
            handle.write(f">{name}\n")
            for i in range(0, len(seq), line):
                handle.write(seq[i : i + line] + "\n")
    return path


def write_bed(path, lines):
    path.write_text("".join("\t".join(str(f) for f in fields) + "\n" for fields in lines))
    return path


# chr1: 40 bases with a recognisable layout; chr2: 12 bases with Ns.
CHR1 = "AAAACCCCGGGGTTTTACGTacgtAAAACCCCGGGGTTTT"
CHR2 = "ACGTNNNNACGT"


@pytest.fixture
def genome(tmp_path):
    return write_fasta(tmp_path / "genome.fa", [("chr1", CHR1), ("chr2", CHR2)], line=7)


# --- FASTA --------------------------------------------------------------------------------------------------


def test_open_fasta_reads_names_lazily(tmp_path):
    seqs = {"s1 extra words": "ACGTACGTAC", "s2": "ttttggggcc", "s3": "ACGTNNACGT"}
    src = open_fasta(write_fasta(tmp_path / "x.fa", seqs.items(), line=4))
    assert src.names == ["s1", "s2", "s3"] and len(src) == 3
    assert src.length == src.width == 10 and src.regions is None and src.skipped == []
    X = src.one_hot()
    assert X.dtype == np.int8 and X.shape == (3, 4, 10)
    np.testing.assert_array_equal(X, one_hot_encode(list(seqs.values())))
    assert one_hot_decode(src.one_hot(1, 3)) == ["TTTTGGGGCC", "ACGTNNACGT"]
    assert src.sequences(1, 2) == ["ttttggggcc"]
    assert src.one_hot(3, 3).shape == (0, 4, 10)


def test_different_lengths_refused_naming_them(tmp_path):
    path = write_fasta(tmp_path / "x.fa", [("a", "ACGTAC"), ("b", "ACG"), ("c", "ACGTAC"), ("d", "A")])
    with pytest.raises(SequenceError, match=r"'a' has 6 bases but 'b' has 3, 'd' has 1; give width="):
        open_fasta(path)


def test_width_crops_and_pads_centrally(tmp_path):
    records = [
        ("even_crop", "AACCGGTT"),  # 8 -> 4: drop 2 left, 2 right
        ("odd_crop", "AACCGTTTT"),  # 9 -> 4: drop 2 left, 3 right
        ("even_pad", "CG"),  # 2 -> 4: 1 N each side
        ("odd_pad", "G"),  # 1 -> 4: 1 N left, 2 right
        ("exact", "TTAA"),
    ]
    src = open_fasta(write_fasta(tmp_path / "x.fa", records), width=4)
    assert src.sequences() == ["CCGG", "CCGT", "NCGN", "NGNN", "TTAA"]


def test_duplicate_names_listed(tmp_path):
    path = write_fasta(tmp_path / "x.fa", [("a", "ACGT"), ("b", "ACGT"), ("a", "TTTT"), ("b", "GGGG"), ("c", "AAAA")])
    with pytest.raises(SequenceError, match=r"duplicate sequence names: 'a', 'b'; make the names"):
        open_fasta(path)


@pytest.mark.parametrize(
    "content, match",
    [("", "is empty"), ("hello\nworld\n", "not a FASTA file: it does not start with a '>name' line"), (">a\n\n>b\n\n", "record 'a', 'b' are empty")],
)
def test_bad_fasta_files(tmp_path, content, match):
    path = tmp_path / "x.fa"
    path.write_text(content)
    with pytest.raises(SequenceError, match=match):
        open_fasta(path)


def test_missing_fasta(tmp_path):
    with pytest.raises(SequenceError, match="does not exist; check the path"):
        open_fasta(tmp_path / "nope.fa")


def test_n_policies_on_fasta(tmp_path, caplog):
    path = write_fasta(tmp_path / "x.fa", [("a", "ACGT"), ("b", "ACNT"), ("c", "GGCC"), ("d", "RYAA")])
    with caplog.at_level(logging.WARNING, logger="dnalift.io.fasta"):
        src = open_fasta(path, n_policy="skip")
    assert src.names == ["a", "c"]
    assert [s.name for s in src.skipped] == ["b", "d"]
    assert "skipped 2 of 4 sequences" in caplog.text
    assert one_hot_decode(src.one_hot()) == ["ACGT", "GGCC"]
    with pytest.raises(SequenceError, match=r"'b' has 'N' at position 2 \(0-based\)"):
        open_fasta(path, n_policy="error")
    assert one_hot_decode(open_fasta(path).one_hot(1, 2)) == ["ACNT"]


def test_padding_does_not_count_as_n(tmp_path):
    path = write_fasta(tmp_path / "x.fa", [("a", "ACGT"), ("b", "AC")])
    src = open_fasta(path, width=4, n_policy="error")
    assert src.sequences() == ["ACGT", "NACN"]


def test_plain_gzip_explained(tmp_path):
    path = tmp_path / "x.fa.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(">a\nACGT\n")
    with pytest.raises(SequenceError, match="gunzip"):
        open_fasta(path)


def test_bgzip_fasta(tmp_path):
    bgzf = pytest.importorskip("Bio.bgzf", reason="pyfaidx reads bgzip FASTA only with Biopython installed")
    path = tmp_path / "x.fa.gz"
    with bgzf.BgzfWriter(str(path), "wb") as handle:
        handle.write(b">a\nACGTAC\n>b\nggccTA\n")
    src = open_fasta(path)
    assert src.names == ["a", "b"]
    assert one_hot_decode(src.one_hot()) == ["ACGTAC", "GGCCTA"]


def test_unwritable_folder_gets_private_index(tmp_path, monkeypatch):
    import pyfaidx

    real = pyfaidx.Fasta
    calls = []

    def fasta_in_read_only_folder(path, **kwargs):
        calls.append(kwargs.get("indexname"))
        if kwargs.get("indexname") == f"{path}.fai":  # what pyfaidx says when it cannot write x.fa.fai
            raise OSError(f"{path}.fai may not be writable. Please use Fasta(rebuild=False)")
        return real(path, **kwargs)

    monkeypatch.setattr(pyfaidx, "Fasta", fasta_in_read_only_folder)
    path = write_fasta(tmp_path / "x.fa", [("a", "ACGT")])
    assert open_fasta(path).sequences() == ["ACGT"]
    assert calls[0].endswith("x.fa.fai") and calls[1].endswith("x.fa.fai") and not calls[1].startswith(str(tmp_path))
    assert not (tmp_path / "x.fa.fai").exists()


def test_memory_does_not_hold_sequences(tmp_path):
    rng = np.random.default_rng(0)
    n, length = 1000, 4000
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, n * length)].tobytes().decode()
    path = tmp_path / "big.fa"
    with open(path, "w") as handle:
        for i in range(n):
            handle.write(f">seq{i}\n{letters[i * length:(i + 1) * length]}\n")
    open_fasta(path).close()  # build the index first
    tracemalloc.start()
    src = open_fasta(path)
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert size < n * length / 4  # names and index (some 600 bytes a sequence), not the 4 MB of sequence
    assert src.one_hot(n - 2, n).shape == (2, 4, length)


# --- regions ------------------------------------------------------------------------------------------------


def test_mid_windows_and_names(tmp_path, genome):
    bed = write_bed(tmp_path / "r.bed", [("chr1", 0, 10), ("chr1", 10, 21), ("chr2", 4, 8)])
    src = open_regions(bed, genome, width=4)
    # centres: 0 + 10 // 2 = 5, 10 + 11 // 2 = 15, 4 + 2 = 6; windows start 2 before
    assert src.regions["start"].tolist() == [3, 13, 4]
    assert src.regions["end"].tolist() == [7, 17, 8]
    assert src.regions["chrom"].tolist() == ["chr1", "chr1", "chr2"]
    assert src.regions["strand"].tolist() == [".", ".", "."]
    assert src.names == ["chr1:3-7(.)", "chr1:13-17(.)", "chr2:4-8(.)"]
    assert src.sequences() == [CHR1[3:7], CHR1[13:17], "NNNN"]
    assert one_hot_decode(src.one_hot(0, 1)) == ["ACCC"]


def test_odd_width(tmp_path, genome):
    src = open_regions(write_bed(tmp_path / "r.bed", [("chr1", 10, 20)]), genome, width=5)
    # centre 15, start 15 - 5 // 2 = 13
    assert src.regions["start"].tolist() == [13] and src.sequences() == [CHR1[13:18]]


def test_strand_and_bed_names(tmp_path, genome):
    bed = write_bed(tmp_path / "r.bed", [("chr1", 14, 22, "up", 0, "+"), ("chr1", 14, 22, "down", 0, "-")])
    src = open_regions(bed, genome, width=6)
    assert src.names == ["up", "down"]
    assert src.regions["strand"].tolist() == ["+", "-"]
    assert src.regions["name"].tolist() == ["up", "down"]
    forward = CHR1[15:21]  # centre 18, start 15
    assert forward == "TACGTa"
    assert src.sequences() == [forward, reverse_complement_sequence(forward)]
    assert one_hot_decode(src.one_hot())[1] == "TACGTA"


def test_summit_windows(tmp_path, genome):
    peak = ("chr1", 10, 30, "p1", 0, "+", 1.0, 1.0, 1.0, 3)
    src = open_regions(write_bed(tmp_path / "p.narrowPeak", [peak]), genome, width=4, center="summit")
    # summit at 10 + 3 = 13, start 11
    assert src.regions["start"].tolist() == [11] and src.sequences() == [CHR1[11:15]]
    mid = open_regions(tmp_path / "p.narrowPeak", genome, width=4)
    assert mid.regions["start"].tolist() == [18]


def test_summit_needs_narrowpeak(tmp_path, genome):
    bed = write_bed(tmp_path / "r.bed", [("chr1", 0, 10)])
    with pytest.raises(RegionError, match="line 1: center='summit' needs narrowPeak"):
        open_regions(bed, genome, width=4, center="summit")
    peak = write_bed(tmp_path / "p.narrowPeak", [("chr1", 10, 30, ".", 0, ".", 1, 1, 1, -1)])
    with pytest.raises(RegionError, match="summit offset -1"):
        open_regions(peak, genome, width=4, center="summit")


def test_windows_at_chromosome_edges(tmp_path, genome, caplog):
    bed = write_bed(
        tmp_path / "r.bed",
        [
            ("chr1", 0, 4),  # window 0-4: fits exactly at the start
            ("chr1", 36, 40),  # window 36-40: fits exactly at the end
            ("chr1", 0, 2),  # window -1-3: off the start
            ("chr1", 38, 40),  # window 37-41: off the end
        ],
    )
    with caplog.at_level(logging.WARNING, logger="dnalift.io.regions"):
        src = open_regions(bed, genome, width=4)
    assert src.regions["start"].tolist() == [0, 36]
    assert src.sequences() == [CHR1[:4], CHR1[36:]]
    assert [s.reason for s in src.skipped] == ["window off its chromosome"] * 2
    assert [s.name for s in src.skipped] == ["chr1:-1-3(.)", "chr1:37-41(.)"]
    assert "skipped 2 of 4 regions" in caplog.text
    with pytest.raises(RegionError, match=r"line 3: the 4-base window chr1:-1-3 \(0-based\) runs off chr1"):
        open_regions(bed, genome, width=4, off_genome="error")


def test_unknown_chromosome_is_skipped_like_an_off_chromosome_window(tmp_path, genome, caplog):
    """One region on a chromosome the genome lacks: skipped and counted (as off-chromosome windows are), or,
    with off_genome='error', the line named; every region unknown: the naming hint."""
    bed = tmp_path / "r.bed"
    bed.write_text("track name=x\n# comment\nchr1\t0\t10\n\nchrX\t0\t10\nchr1\t38\t40\n")
    with caplog.at_level(logging.WARNING, logger="dnalift.io.regions"):
        src = open_regions(bed, genome, width=4)
    assert src.names == ["chr1:3-7(.)"]
    assert [(s.name, s.reason) for s in src.skipped] == [("chrX:3-7(.)", "chromosome not in the genome"),
                                                        ("chr1:37-41(.)", "window off its chromosome")]
    assert "skipped 2 of 3 regions: 1 on chromosomes not in" in caplog.text and "(chrX)" in caplog.text
    assert "1 whose 4-base window runs off its chromosome" in caplog.text
    with pytest.raises(RegionError, match=r"line 5: chromosome 'chrX' is not in .*genome.fa"):
        open_regions(bed, genome, width=4, off_genome="error")
    only = tmp_path / "only.bed"
    only.write_text("1\t0\t10\n2\t0\t10\n")
    with pytest.raises(RegionError, match=r"no region is left .*the regions are on '1', '2', the genome .* has "
                                          r"'chr1', 'chr2'"):
        open_regions(only, genome, width=4)


@pytest.mark.parametrize(
    "line, match",
    [
        ("chr1\t5\n", "expected tab-separated chrom, start, end"),
        ("chr1\tfive\t10\n", "must be whole numbers"),
        ("chr1\t10\t5\n", "0 <= start <= end"),
        ("chr1\t0\t10\tx\t0\tup\n", "strand"),
    ],
)
def test_malformed_lines(tmp_path, genome, line, match):
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t0\t10\n" + line)
    with pytest.raises(RegionError, match="line 2: .*" + match):
        open_regions(bed, genome, width=4)


def test_repeated_bed_names_fall_back_to_coordinates(tmp_path, genome):
    bed = write_bed(tmp_path / "r.bed", [("chr1", 0, 10, "peak"), ("chr1", 20, 30, "peak")])
    assert open_regions(bed, genome, width=4).names == ["chr1:3-7(.)", "chr1:23-27(.)"]
    dup = write_bed(tmp_path / "d.bed", [("chr1", 0, 10), ("chr1", 0, 10)])
    with pytest.raises(RegionError, match="lines 1 and 2: both give the window chr1:3-7"):
        open_regions(dup, genome, width=4)


def test_n_policy_on_regions(tmp_path, genome):
    bed = write_bed(tmp_path / "r.bed", [("chr2", 0, 4), ("chr2", 2, 6), ("chr2", 8, 12)])
    src = open_regions(bed, genome, width=4, n_policy="skip")
    assert src.names == ["chr2:0-4(.)", "chr2:8-12(.)"]
    assert src.regions["start"].tolist() == [0, 8]
    assert src.skipped[0].name == "chr2:2-6(.)"
    with pytest.raises(SequenceError, match=r"line 2: window 'chr2:2-6\(.\)' has 'N' at position 2 \(0-based\)"):
        open_regions(bed, genome, width=4, n_policy="error")


def test_gzipped_bed_and_empty_bed(tmp_path, genome):
    path = tmp_path / "r.bed.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("chr1\t0\t10\n")
    assert open_regions(path, genome, width=4).sequences() == [CHR1[3:7]]
    empty = tmp_path / "e.bed"
    empty.write_text("# nothing\n")
    with pytest.raises(RegionError, match="has no regions"):
        open_regions(empty, genome, width=4)
