"""The FASTA index is checked against the file (issue 24): a stale ``.fai`` never gives one record's bases under
another's name, and an index that cannot go beside the FASTA goes to the cache folder."""

from __future__ import annotations

import logging
import os
import shutil

import pytest

from dnalift.io.fasta import open_fasta
from dnalift.io.regions import open_regions

A, B = "AAAACCCCAAAA", "GGGGTTTTGGGG"


def _write(path, records, line=60):
    path.write_text("".join(f">{n}\n" + "".join(s[i:i + line] + "\n" for i in range(0, len(s), line))
                            for n, s in records))
    return path


def _age(path, seconds):
    """Set the modification time ``seconds`` before the index's (``cp -p`` keeps the old time)."""
    t = os.stat(str(path) + ".fai").st_mtime_ns - int(seconds * 1e9)
    os.utime(path, ns=(t, t))


def _cache_files():
    folder = os.path.join(os.environ["XDG_CACHE_HOME"], "dnalift", "faidx")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def _read(path, **kwargs):
    with open_fasta(path, **kwargs) as source:
        return dict(zip(source.names, source.sequences()))


def test_swapped_records_with_a_newer_index_score_the_right_bases(tmp_path, caplog):
    """The FASTA is rewritten with its two records swapped and the old index left newer (cp -p, rsync -a):
    pyfaidx alone gives 'a' the bases of 'b'. dnalift notices, says so, and leaves the user's index alone."""
    path = _write(tmp_path / "x.fa", [("a", A), ("b", B)])
    assert _read(path) == {"a": A, "b": B}
    old_index = (tmp_path / "x.fa.fai").read_bytes()
    _write(path, [("b", B), ("a", A)])
    _age(path, 10)
    import pyfaidx

    with pyfaidx.Fasta(str(path), as_raw=True) as stale:  # what trusting the index gives
        assert stale["a"][:] != A
    with caplog.at_level(logging.INFO, logger="dnalift"):
        assert _read(path) == {"b": B, "a": A}
    assert any("does not match" in r.getMessage() and "x.fa.fai" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "x.fa.fai").read_bytes() == old_index  # not dnalift's file: left as it was
    assert any(f.endswith("x.fa.fai") for f in _cache_files())
    assert _read(path) == {"b": B, "a": A}  # the private index is reused, and right


@pytest.mark.parametrize("records", [
    [("a", A + "AC"), ("b", B)],        # a length changed
    [("a", A), ("b", B), ("c", A)],     # a record added at the end
    [("a", A)],                         # a record removed
    [("a2", A), ("b", B)],              # a name changed
], ids=["longer", "added", "removed", "renamed"])
def test_changed_fasta_with_a_newer_index_is_read_as_it_is(tmp_path, records):
    path = _write(tmp_path / "x.fa", [("a", A), ("b", B)], line=5)
    _read(path, width=len(A))
    _write(path, records, line=5)
    _age(path, 10)
    assert _read(path, width=len(A)) == {n: (s if len(s) == len(A) else s[1:-1]) for n, s in records}


def test_index_older_than_the_fasta_is_not_trusted(tmp_path, caplog):
    path = _write(tmp_path / "x.fa", [("a", A), ("b", B)])
    _read(path)
    _write(path, [("b", B), ("a", A)])
    os.utime(path, ns=(os.stat(path).st_mtime_ns + 10**10,) * 2)
    with caplog.at_level(logging.INFO, logger="dnalift"):
        assert _read(path) == {"b": B, "a": A}
    assert any("older than" in r.getMessage() for r in caplog.records)


def test_a_corrupt_index_is_not_used(tmp_path):
    path = _write(tmp_path / "x.fa", [("a", A), ("b", B)])
    (tmp_path / "x.fa.fai").write_text("this is not an index\n")
    assert _read(path) == {"a": A, "b": B}


def test_stale_genome_index_with_reordered_chromosomes_gives_the_right_windows(tmp_path):
    chr1, chr2 = "ACGT" * 30, "TTGCA" * 20
    genome = _write(tmp_path / "g.fa", [("chr1", chr1), ("chr2", chr2)], line=7)
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t10\t30\tr1\nchr2\t40\t60\tr2\n")
    with open_regions(bed, genome, width=20) as source:
        before = source.sequences()
    _write(genome, [("chr2", chr2), ("chr1", chr1)], line=7)
    _age(genome, 10)
    with open_regions(bed, genome, width=20) as source:
        assert source.sequences() == before == [chr1[10:30], chr2[40:60]]


def test_bgzip_with_a_stale_index(tmp_path):
    Bio = pytest.importorskip("Bio.bgzf")
    path = tmp_path / "x.fa.gz"

    def write(records):
        with Bio.BgzfWriter(str(path), "wb") as handle:
            handle.write("".join(f">{n}\n{s}\n" for n, s in records).encode())

    write([("a", A), ("b", B)])
    assert _read(path) == {"a": A, "b": B}
    write([("b", B), ("a", A + "AAAA")])
    for suffix in (".fai", ".gzi"):
        os.utime(str(path) + suffix, ns=(os.stat(path).st_mtime_ns + 10**10,) * 2)
    assert _read(path, width=len(A)) == {"b": B, "a": (A + "AAAA")[2:14]}


def test_unwritable_folder_puts_the_index_in_the_cache_folder(tmp_path, monkeypatch, caplog):
    import dnalift.io.faidx as faidx

    folder = tmp_path / "shared"
    folder.mkdir()
    path = _write(folder / "x.fa", [("a", A), ("b", B)])
    real = os.access
    monkeypatch.setattr(faidx.os, "access", lambda p, mode: False if str(p) == str(folder) else real(p, mode))
    with caplog.at_level(logging.INFO, logger="dnalift"):
        assert _read(path) == {"a": A, "b": B}
    assert sorted(p.name for p in folder.iterdir()) == ["x.fa"]
    cache = os.path.join(os.environ["XDG_CACHE_HOME"], "dnalift", "faidx")
    assert any(cache in r.getMessage() and "cannot be written" in r.getMessage() for r in caplog.records)
    shutil.rmtree(cache)


def test_new_index_beside_the_fasta_is_announced(tmp_path, caplog):
    path = _write(tmp_path / "x.fa", [("a", A)])
    with caplog.at_level(logging.INFO, logger="dnalift"):
        _read(path)
    assert any(f"writing {path}.fai" in r.getMessage() for r in caplog.records)


def test_a_genome_that_changes_after_the_check_names_its_index(tmp_path):
    from dnalift.errors import SequenceError

    chr1 = "ACGT" * 30
    genome = _write(tmp_path / "g.fa", [("chr1", chr1)], line=7)
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t90\t110\tr1\n")
    with open_regions(bed, genome, width=20) as source:
        with open(genome, "r+") as handle:  # cut short in place while the run reads it
            handle.truncate(60)
        with pytest.raises(SequenceError, match=r"chr1:90-110 has \d+ bases, not 20: .*g\.fa\.fai"):
            source.sequences()
