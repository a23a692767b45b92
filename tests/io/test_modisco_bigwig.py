"""Exports: the TF-MoDISco npz pair (and modisco itself on a result file) and bigWig tracks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from dnalift.errors import DnaliftError, OutputExistsError, StoreError
from dnalift.io.bigwig import read_chrom_sizes, write_bigwig
from dnalift.io.modisco import modisco_window, write_modisco_npz
from dnalift.io.store import ResultWriter


def make_file(path, n=5, length=11, *, regions=None, contributions=None, seed=0):
    """A result file with random one-hot input and hypothetical scores (or given per-position
    contributions on an all-A sequence)."""
    rng = np.random.default_rng(seed)
    if contributions is not None:
        n, length = contributions.shape
        raw = np.zeros((n, 4, length), np.int8)
        raw[:, 0, :] = 1
        hyp = np.zeros((n, 4, length), np.float32)
        hyp[:, 0, :] = contributions
        hyp[:, 1, :] = 99.0  # not the observed base: must not reach the bigWig
    else:
        raw = np.zeros((n, 4, length), np.int8)
        np.put_along_axis(raw, rng.integers(0, 4, (n, 1, length)), 1, axis=1)
        hyp = rng.normal(size=(n, 4, length)).astype(np.float32)
    with ResultWriter(path, n=n, length=length, attrs={"rule": "rescale"}, chunk_size=2,
                      regions=regions is not None) as w:
        w.write(0, raw=raw, hypothetical=hyp, names=[f"s{i}" for i in range(n)], predictions=np.zeros(n),
                reference_predictions=np.zeros(n), deltas=np.zeros(n), regions=regions)
    return raw, hyp


def test_modisco_npz_pair_loads_as_modisco_reads_it(tmp_path):
    raw, hyp = make_file(tmp_path / "out.h5")
    out = write_modisco_npz(tmp_path / "out.h5", tmp_path / "mod" / "run")
    assert out.hypothetical == tmp_path / "mod" / "run.hyp.npz" and out.one_hot == tmp_path / "mod" / "run.ohe.npz"
    for path, want in ((out.hypothetical, hyp), (out.one_hot, raw)):
        with np.load(path) as npz:
            assert list(npz.keys()) == ["arr_0"]
            arr = npz["arr_0"]
        assert arr.shape == (5, 4, 11) and arr.dtype == np.float32
        np.testing.assert_array_equal(arr, want.astype(np.float32))
    # L = 11 is odd: modisco must be told the largest even window
    assert out.command.startswith(f"modisco motifs -s {out.one_hot} -a {out.hypothetical} -n 2000 -w 10 -o ")
    with pytest.raises(OutputExistsError, match="force=True"):
        write_modisco_npz(tmp_path / "out.h5", tmp_path / "mod" / "run")
    write_modisco_npz(tmp_path / "out.h5", tmp_path / "mod" / "run", force=True)


def test_modisco_own_reader_gets_the_same_arrays(tmp_path):
    cli = pytest.importorskip("modiscolite.cli")
    raw, hyp = make_file(tmp_path / "out.h5")
    out = write_modisco_npz(tmp_path / "out.h5", tmp_path / "run")
    # modisco reads members with its own zip reader and falls back to np.load when that declines
    fast = cli._read_npz_member(out.hypothetical, "arr_0")
    assert fast is not None, "modisco's fast npz reader declined the file"
    np.testing.assert_array_equal(fast, hyp)
    np.testing.assert_array_equal(cli._load_input(out.one_hot), raw.astype(np.float32))


def test_window_crop_matches_modisco(tmp_path):
    raw, hyp = make_file(tmp_path / "out.h5", length=11)
    out = write_modisco_npz(tmp_path / "out.h5", tmp_path / "w4", window=4)
    arr = np.load(out.hypothetical)["arr_0"]
    # modisco keeps [L//2 - w//2, L//2 + w//2) = [3, 7) of 11 positions
    np.testing.assert_array_equal(arr, hyp[:, :, 3:7])
    np.testing.assert_array_equal(np.load(out.one_hot)["arr_0"], raw[:, :, 3:7])
    assert " -w 4 " in out.command
    with pytest.raises(DnaliftError, match="must be even"):
        write_modisco_npz(tmp_path / "out.h5", tmp_path / "w5", window=5)
    with pytest.raises(DnaliftError, match="longer than the sequences"):
        write_modisco_npz(tmp_path / "out.h5", tmp_path / "w12", window=12)
    assert not (tmp_path / "w5.hyp.npz").exists()
    assert modisco_window(200) == 200 and modisco_window(201) == 200


@pytest.mark.slow
def test_modisco_runs_on_a_result_file(tmp_path):
    """`modisco motifs -i out.h5` reads our file as written and finds the planted motif."""
    modisco = shutil.which("modisco") or str(Path(sys.executable).with_name("modisco"))
    if not Path(modisco).exists():
        pytest.skip("modisco-lite is not installed")
    rng = np.random.default_rng(0)
    n, length, motif = 300, 100, "GATTACAGG"
    seqs = rng.integers(0, 4, (n, length))
    hyp = rng.normal(scale=0.05, size=(n, 4, length)).astype(np.float32)
    for k in range(n):
        p = rng.integers(10, length - 20)
        for j, c in enumerate(motif):
            seqs[k, p + j] = "ACGT".index(c)
            hyp[k, "ACGT".index(c), p + j] += 1.0
    raw = np.zeros((n, 4, length), np.int8)
    np.put_along_axis(raw, seqs[:, None, :], 1, axis=1)
    path = tmp_path / "out.h5"
    with ResultWriter(path, n=n, length=length, attrs={"rule": "rescale"}) as w:
        w.write(0, raw=raw, hypothetical=hyp, names=[f"s{i}" for i in range(n)], predictions=np.zeros(n),
                reference_predictions=np.zeros(n), deltas=np.zeros(n))
    result = tmp_path / "modisco.h5"
    proc = subprocess.run([modisco, "motifs", "-i", str(path), "-n", "2000", "-w", "100", "-o", str(result)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with h5py.File(result, "r") as f:
        consensus = ["".join("ACGT"[i] for i in f[f"pos_patterns/{p}/sequence"][...].argmax(axis=1))
                     for p in f["pos_patterns"]]
    assert any("GATTACAGG" in c for c in consensus), consensus


# ------------------------------------------------------------------------------------------------ bigWig


def regions_of(rows):
    return {"chrom": np.array([r[0] for r in rows], dtype=object), "start": np.array([r[1] for r in rows]),
            "end": np.array([r[1] + 10 for r in rows]), "strand": np.array([r[2] for r in rows], dtype=object)}


def test_bigwig_values_on_a_tiny_genome(tmp_path):
    pyBigWig = pytest.importorskip("pyBigWig")
    fai = tmp_path / "genome.fa.fai"
    fai.write_text("chr1\t50\t6\t50\t51\nchr2\t30\t63\t30\t31\n")
    contributions = np.array([
        100 + np.arange(10),  # chr2:0-10 +, first in the file but second in genome order
        1 + np.arange(10),  # chr1:5-15 +     -> chr1 5..14 = 1..10
        200 + np.arange(10),  # chr1:10-20 -  -> chr1 19..10 = 200..209 (flipped back)
        300 + np.arange(10),  # chr1:30-40 +, after a gap
    ], dtype=np.float32)
    regions = regions_of([("chr2", 0, "+"), ("chr1", 5, "+"), ("chr1", 10, "-"), ("chr1", 30, "+")])
    make_file(tmp_path / "out.h5", contributions=contributions, regions=regions)
    out = write_bigwig(tmp_path / "out.h5", tmp_path / "out.bw", genome_fai=fai)

    bw = pyBigWig.open(str(out))
    assert bw.chroms() == {"chr1": 50, "chr2": 30}
    chr1 = np.array(bw.values("chr1", 0, 50))
    assert np.isnan(chr1[:5]).all() and np.isnan(chr1[20:30]).all() and np.isnan(chr1[40:]).all()
    np.testing.assert_allclose(chr1[5:10], [1, 2, 3, 4, 5])
    # 10..14 are covered by both windows: the mean; chr1:10 is + position 5 (6) and - position 9 (209)
    np.testing.assert_allclose(chr1[10:15], [(6 + 209) / 2, (7 + 208) / 2, (8 + 207) / 2, (9 + 206) / 2,
                                            (10 + 205) / 2])
    np.testing.assert_allclose(chr1[15:20], [204, 203, 202, 201, 200])
    np.testing.assert_allclose(chr1[30:40], 300 + np.arange(10))
    np.testing.assert_allclose(bw.values("chr2", 0, 10), 100 + np.arange(10))
    assert np.isnan(bw.values("chr2", 10, 30)).all()
    bw.close()
    with pytest.raises(OutputExistsError):
        write_bigwig(tmp_path / "out.h5", tmp_path / "out.bw", genome_fai=fai)
    # a chrom.sizes mapping works as well
    write_bigwig(tmp_path / "out.h5", tmp_path / "out2.bw", chrom_sizes={"chr1": 50, "chr2": 30})


def test_bigwig_refuses_files_without_regions_and_wrong_genomes(tmp_path):
    pytest.importorskip("pyBigWig")
    make_file(tmp_path / "fasta.h5", length=10)
    with pytest.raises(StoreError, match="no genome regions"):
        write_bigwig(tmp_path / "fasta.h5", tmp_path / "a.bw", chrom_sizes={"chr1": 100})
    make_file(tmp_path / "bed.h5", contributions=np.ones((1, 10), np.float32), regions=regions_of([("chrX", 0, "+")]))
    with pytest.raises(StoreError, match="'chrX', which is not in the chromosome sizes"):
        write_bigwig(tmp_path / "bed.h5", tmp_path / "a.bw", chrom_sizes={"chr1": 100})
    with pytest.raises(StoreError, match="outside chrX"):
        write_bigwig(tmp_path / "bed.h5", tmp_path / "a.bw", chrom_sizes={"chrX": 5})
    assert not (tmp_path / "a.bw").exists()
    with pytest.raises(DnaliftError, match="exactly one"):
        write_bigwig(tmp_path / "bed.h5", tmp_path / "a.bw")


def test_read_chrom_sizes(tmp_path):
    (tmp_path / "g.fa").write_text(">chr1\nACGT\n")
    (tmp_path / "g.fa.fai").write_text("chr1\t4\t6\t4\t5\n")
    assert read_chrom_sizes(tmp_path / "g.fa") == {"chr1": 4}  # the FASTA's .fai is found
    (tmp_path / "bad.sizes").write_text("chr1 four\n")
    with pytest.raises(StoreError, match="line 1"):
        read_chrom_sizes(tmp_path / "bad.sizes")
