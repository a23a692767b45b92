"""``dnalift variants`` end to end: the result file, the table beside it, the variant logo, export and refusals."""

from __future__ import annotations

import csv
import types

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dnalift.cli import cli
from dnalift.io.store import open_results
from toy_models import conv_mean_linear

L = 12
GENOME = "GATTACAGGCTTACGATCGATCGGATCCATGCAAGTCTAGCTAGGCTAACGTTGCA"  # 56 bases


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("variants_cli")
    net = conv_mean_linear(3, 5, 1, seed=1, scale=4)
    torch.jit.save(torch.jit.script(net), str(d / "net.pt"))
    (d / "g.fa").write_text(f">chr7\n{GENOME}\n")
    vcf = d / "v.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\n"
                   f"chr7\t20\trs1\t{GENOME[19]}\t{'A' if GENOME[19] != 'A' else 'C'}\n"
                   f"chr7\t30\trs2\t{GENOME[29]}\t{GENOME[29]}GGG\n"
                   f"chr7\t3\tnear_start\t{GENOME[2]}\tC\n")
    return types.SimpleNamespace(dir=d, model=d / "net.pt", vcf=vcf, genome=d / "g.fa")


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def test_variants_command_writes_file_and_table(files, tmp_path):
    out = tmp_path / "v.h5"
    r = run("variants", files.model, files.vcf, "--genome", files.genome, "--width", L, "-o", out, "--n-refs", 3)
    assert r.exit_code == 0, r.output
    assert "scored 2 variants (4 rows), skipped 1," in r.output and "v.tsv" in r.output
    with open_results(out) as res:
        assert res.names == ["rs1/ref", "rs1/alt", "rs2/ref", "rs2/alt"]
        delta = res.predictions()[1::2] - res.predictions()[0::2]
    with open(tmp_path / "v.tsv") as handle:
        lines = list(csv.DictReader(handle, delimiter="\t"))
    assert [x["variant_id"] for x in lines] == ["rs1", "rs2"]
    np.testing.assert_allclose([float(x["delta_prediction"]) for x in lines], delta, rtol=1e-4, atol=1e-6)
    # the variant logo: two panels, the allele shaded
    png = tmp_path / "rs2.png"
    r = run("logo", out, "--variant", "rs2", "-o", png)
    assert r.exit_code == 0, r.output
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = run("logo", out, "--variant", "rs9", "-o", tmp_path / "x.png")
    assert r.exit_code == 1 and "has no variant 'rs9'" in r.output
    # the table again through export (e.g. for merged shards), and one bigWig track per allele
    r = run("export", out, "--format", "table", "--flank", 3, "-o", tmp_path / "t.tsv")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "t.tsv").read_text().splitlines()[0].startswith("variant_id\tchrom\tpos\tref\talt")
    r = run("export", out, "--format", "bigwig", "-o", tmp_path / "v.bw")
    if r.exit_code == 0:  # pyBigWig installed
        assert (tmp_path / "v.ref.bw").exists() and (tmp_path / "v.alt.bw").exists()
    else:
        assert "pyBigWig" in r.output
    r = run("export", out, "--format", "modisco", "--flank", 3, "-o", tmp_path / "m")
    assert r.exit_code == 2 and "--flank is for --format table" in r.output
    # a second run refuses to overwrite the table as well as the file
    r = run("variants", files.model, files.vcf, "--genome", files.genome, "--width", L, "-o", out)
    assert r.exit_code == 1 and "exists" in r.output


def test_off_genome_error_and_usage(files, tmp_path):
    out = tmp_path / "v.h5"
    r = run("variants", files.model, files.vcf, "--genome", files.genome, "--width", L, "-o", out,
            "--off-genome", "error")
    assert r.exit_code == 1 and "line 5: variant 'near_start'" in r.output and "off chr7" in r.output
    assert not out.exists() and not (tmp_path / "v.tsv").exists()
    r = run("variants", files.model, files.vcf, "-o", out)
    assert r.exit_code == 2 and "--genome" in r.output


def test_the_table_never_overwrites_the_input(files, tmp_path):
    tsv = tmp_path / "v.tsv"
    tsv.write_text(f"chr7\t20\t{GENOME[19]}\tG\trs1\n" if GENOME[19] != "G" else f"chr7\t20\tG\tA\trs1\n")
    before = tsv.read_text()
    r = run("variants", files.model, tsv, "--genome", files.genome, "--width", L, "-o", tmp_path / "v.h5", "--force")
    assert r.exit_code == 2 and "would overwrite the variants file the run reads" in r.output
    assert tsv.read_text() == before and not (tmp_path / "v.h5").exists()
