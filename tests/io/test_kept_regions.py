"""The kept regions file beside a result scored from regions: exactly the input lines of its rows, in row order
(skipped regions left out), written with the result (never half written), the same for shards merged, for a
resumed run and for one run; FiNeMo reads it with the result (and refuses the original peak file when regions
were skipped, which is why the file exists)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import fail_attribute_on_call
from dnalift import pipeline
from dnalift.cli import cli
from dnalift.errors import OptionError
from dnalift.io.store import merge_results, open_results, partial_path, validate_results
from dnalift.io.store.schema import kept_regions_path, regions_format
from dnalift.pipeline.config import ScoreConfig
from toy_models import conv_mean_linear

L = 16


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A model, a genome (chr1 400 random bases with an N at 200, chr2 30 bases) and a narrowPeak file whose
    lines 2 (off chr2), 5 (chrUn, not in the genome) and 7 (an N in its window, with n_policy skip) are
    skipped."""
    d = tmp_path_factory.mktemp("kept")
    net = conv_mean_linear(3, 5, 1, seed=0)
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(net, (torch.zeros(2, 4, L),), dynamic_shapes=({0: batch},)),
                      d / "net.pt2")
    rng = np.random.default_rng(1)
    chr1 = list("".join("ACGT"[j] for j in rng.integers(0, 4, 400)))
    chr1[200] = "N"
    (d / "genome.fa").write_text(">chr1\n" + "".join(chr1) + "\n>chr2\n" + "ACGT" * 7 + "AC\n")

    def peak(chrom, start, end, name, summit, score=0):
        return f"{chrom}\t{start}\t{end}\t{name}\t{score}\t.\t{score / 10:.1f}\t-1\t-1\t{summit}"

    lines = [peak("chr1", 10, 40, "p0", 12), peak("chr2", 20, 30, "off", 5), peak("chr1", 300, 380, "p1", 40, 7),
             peak("chr1", 50, 60, "p2", 3), peak("chrUn", 0, 50, "unknown", 25), peak("chr1", 100, 130, "p3", 20),
             peak("chr1", 190, 210, "with_n", 10), peak("chr1", 340, 360, "p4", 9)]
    (d / "peaks.narrowPeak").write_text("\n".join(lines) + "\n")
    kept = [line for line in lines if line.split("\t")[3].startswith("p")]
    return types.SimpleNamespace(dir=d, model=d / "net.pt2", genome=d / "genome.fa", peaks=d / "peaks.narrowPeak",
                                 lines=lines, kept=kept)


def score(files, output, **options):
    options = {"regions": files.peaks, "genome": files.genome, "width": L, "center": "summit", "n_policy": "skip",
               "n_refs": 2, "output": output, **options}
    return pipeline.score(ScoreConfig(model=files.model, **options))


def kept_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_the_kept_regions_are_the_input_lines_of_the_rows(files, tmp_path):
    out = tmp_path / "scores.h5"
    summary = score(files, out)
    assert summary.n_sequences == 5 and summary.n_skipped == 3
    kept = tmp_path / "scores.regions.narrowPeak"
    assert kept_regions_path(out, "narrowPeak") == kept
    assert kept_lines(kept) == files.kept  # the lines as they were, skipped ones left out, in row order
    with open_results(out) as r:
        assert r.kept_regions == kept
        assert list(r.names) == ["p0", "p1", "p2", "p3", "p4"]
        starts = r.regions["start"]
        assert list(r.regions_of(slice(None))["line"]) == files.kept and "line" not in r.regions
    # each row's window is centred on its line's summit (start + summit - L/2), as FiNeMo places it
    assert starts.tolist() == [int(x.split("\t")[1]) + int(x.split("\t")[9]) - L // 2 for x in files.kept]
    assert validate_results(out) == []
    assert not list(tmp_path.glob(".*"))  # no partial or lock file left
    result = CliRunner().invoke(cli, ["inspect", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"kept regions: {kept} (the input lines of the 5 rows" in result.output


def test_bed_input_gives_a_bed_file_and_fasta_none(files, tmp_path):
    assert regions_format("x.narrowPeak.gz") == "narrowPeak" == regions_format("dir/X.NARROWPEAK")
    assert regions_format("peaks.bed") == "bed" == regions_format("peaks.bed.gz")
    bed = tmp_path / "windows.bed"
    bed.write_text("track name=w\nchr1\t10\t30\n# a comment\nchr1\t2\t6\nchr2\t0\t16\n")
    out = tmp_path / "b.h5"
    score(files, out, regions=bed, center="mid", n_policy="zero")
    # no track line or comment; chr1 2-6, whose window (-4, 12) is off chr1, skipped
    assert kept_lines(tmp_path / "b.regions.bed") == ["chr1\t10\t30", "chr2\t0\t16"]
    assert not (tmp_path / "b.regions.narrowPeak").exists()
    fasta = tmp_path / "s.fa"
    fasta.write_text(">a\n" + "ACGT" * 4 + "\n")
    pipeline.score(ScoreConfig(model=files.model, fasta=fasta, output=tmp_path / "f.h5", n_refs=2))
    assert not list(tmp_path.glob("f.*regions*"))


def test_shards_merged_and_a_resumed_run_give_the_same_file(files, tmp_path, monkeypatch):
    whole = tmp_path / "whole.h5"
    score(files, whole)
    shards = []
    for i in (1, 2, 3):
        shard = tmp_path / f"s{i}.h5"
        score(files, shard, shard=f"{i}-of-3")
        shards.append(shard)
    assert [len(kept_lines(kept_regions_path(s, "narrowPeak"))) for s in shards] == [1, 2, 2]
    merged = merge_results(shards, tmp_path / "merged.h5")
    assert kept_lines(kept_regions_path(merged, "narrowPeak")) == files.kept
    # interrupted after its first chunk (2 rows): only the partial file, no kept regions yet; resumed: the file
    out = tmp_path / "resumed.h5"
    restore = fail_attribute_on_call(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        score(files, out, chunk_size=2)
    restore()
    assert partial_path(out).exists() and not kept_regions_path(out, "narrowPeak").exists()
    assert not list(tmp_path.glob(".resumed.regions*"))
    score(files, out, chunk_size=2, resume=True)
    assert kept_lines(kept_regions_path(out, "narrowPeak")) == files.kept


def test_a_result_without_input_lines_gets_no_kept_regions(files, tmp_path, caplog):
    """Shards of older files have no regions/line: the merged file says so instead of writing a wrong file."""
    shards = [tmp_path / "s1.h5", tmp_path / "s2.h5"]
    for i, shard in enumerate(shards, start=1):
        score(files, shard, shard=f"{i}-of-2")
        with h5py.File(shard, "r+") as f:
            del f["regions/line"]
    merge_results(shards, tmp_path / "m.h5")
    assert not kept_regions_path(tmp_path / "m.h5", "narrowPeak").exists()
    assert "no kept regions file is written" in caplog.text
    assert validate_results(tmp_path / "m.h5") == []


def test_the_kept_regions_may_not_overwrite_an_input(files, tmp_path):
    peaks = tmp_path / "x.regions.narrowPeak"
    shutil.copy(files.peaks, peaks)
    with pytest.raises(OptionError, match="x.regions.narrowPeak"):
        score(files, tmp_path / "x.h5", regions=peaks)
    assert peaks.read_text() == files.peaks.read_text()
    assert not (tmp_path / "x.h5").exists()


def finemo_command() -> str:
    found = shutil.which("finemo", path=str(Path(sys.executable).parent)) or shutil.which("finemo")
    if found is None:
        pytest.skip("finemo is not installed (pip install -c constraints.txt finemo)")
    return found


def test_finemo_reads_the_result_with_its_kept_regions(files, tmp_path):
    """`finemo extract-regions-chrombpnet-h5 -p` takes the result and its kept regions: the sequences and scores
    are the file's, each region placed at the window dnalift scored; the original peak file (with the skipped
    regions) is refused for its length. (`finemo call-hits` needs TF-MoDISco patterns, which five rows cannot
    give: tests/workflow/test_workflow.py runs it on the demo's 300 sequences.)"""
    finemo = finemo_command()
    out = tmp_path / "scores.h5"
    score(files, out)
    npz = tmp_path / "regions.npz"
    run = subprocess.run([finemo, "extract-regions-chrombpnet-h5", "-c", str(out), "-p",
                          str(kept_regions_path(out, "narrowPeak")), "-o", str(npz), "-w", str(L)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    with open_results(out) as r, np.load(npz) as z:
        np.testing.assert_array_equal(z["sequences"], r.raw(slice(None)))
        np.testing.assert_allclose(z["contributions"], r.hypothetical(slice(None)), rtol=1e-3, atol=1e-4)  # float16
        assert z["start"].tolist() == r.regions["start"].tolist()
        assert z["peak_name"].tolist() == list(r.names) and z["chr"].tolist() == ["chr1"] * 5
    # the same command's function in this process (a second finemo process would cost its slow start again)
    from finemo.main import extract_regions_chrombpnet_h5

    with pytest.raises(ValueError, match="peak region count of 8"):
        extract_regions_chrombpnet_h5(str(files.peaks), None, [str(out)], str(tmp_path / "bad.npz"), L)
    assert not (tmp_path / "bad.npz").exists()


def test_a_kept_regions_file_that_cannot_be_written_keeps_the_result_unfinished(files, tmp_path, monkeypatch):
    """A full disk while writing the kept regions: no kept regions file (nor its partial name), no result under
    its final name, the complete partial result kept; the same command with resume then finishes both."""
    import errno

    import dnalift.io.store.kept as kept_module
    from dnalift.errors import DiskFullError

    real = kept_module._write_lines

    def full(dataset, partial):
        partial.write_text("half a line")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(kept_module, "_write_lines", full)
    out = tmp_path / "scores.h5"
    with pytest.raises(DiskFullError, match="cannot write the kept regions .*scores.regions.narrowPeak"):
        score(files, out)
    assert not out.exists() and partial_path(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [partial_path(out).name]
    monkeypatch.setattr(kept_module, "_write_lines", real)
    score(files, out, resume=True)
    assert kept_lines(kept_regions_path(out, "narrowPeak")) == files.kept
    assert validate_results(out) == []
