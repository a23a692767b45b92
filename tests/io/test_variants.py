"""Variants: VCF/TSV parsing, both alleles' windows checked against the genome by hand, and the scoring run.

The genome is a small FASTA written here (chr1 of 60 bases, chr2 of 30); windows have L = 10 bases, so a
variant's first REF base sits at index 5 of its window. Every expected window below is spelled out as slices of
the genome, independently of the module's own formula.
"""

from __future__ import annotations

import gzip
import logging
import types

import numpy as np
import pytest
import torch

from dnalift.encoding import one_hot_encode
from dnalift.errors import VariantError
from dnalift.io.variant_source import open_variants
from dnalift.io.variants import read_variants
from toy_models import conv_mean_linear

L = 10
CHR1 = "ACGTTGCAAGCTTACGGATCCGATATCGGCATGCTAGCTAACCGGTTAAGGCCTTAGCAT"  # 60 bases
CHR2 = "TTGACCATGGCAAATTTGGGCCCATATAGC"  # 30 bases
assert len(CHR1) == 60 and len(CHR2) == 30

OTHER = {"A": "C", "C": "G", "G": "T", "T": "A"}


def _vcf_lines():
    """(chrom, 1-based pos, id, ref, alt) records and the expected (id, ref row, alt row) of each variant."""
    g = CHR1
    snv_alt = OTHER[g[20]]
    m1, m2 = OTHER[g[10]], OTHER[OTHER[g[10]]]
    records = [
        ("chr1", 21, "snv", g[20], snv_alt),                       # SNV at 0-based 20
        ("chr1", 31, "ins", g[30], g[30] + "TT"),                  # insertion of TT after 0-based 30
        ("chr1", 41, "del", g[40:43], g[40]),                      # deletion of 0-based 41, 42
        ("chr1", 11, "multi", g[10], f"{m1},{m2}"),                # two ALT alleles
        ("chr2", 25, ".", CHR2[24], OTHER[CHR2[24]]),              # window [19, 29) of 30 bases: fits
        ("chr2", 28, "end", CHR2[27], OTHER[CHR2[27]]),            # window [22, 32): off chr2
        ("chr1", 51, "bad_ref", OTHER[g[50]], g[50]),              # REF is not the genome's base
        ("chr1", 15, "sym", g[14], "<DEL>"),                       # symbolic: skipped
    ]
    expected = [
        ("snv", g[15:25], g[15:20] + snv_alt + g[21:25]),
        ("ins", g[25:35], g[25:30] + g[30] + "TT" + g[31:33]),
        ("del", g[35:45], g[35:40] + g[40] + g[43:47]),
        (f"multi:{g[10]}:{m1}", g[5:15], g[5:10] + m1 + g[11:15]),
        (f"multi:{g[10]}:{m2}", g[5:15], g[5:10] + m2 + g[11:15]),
        (f"chr2:25:{CHR2[24]}:{OTHER[CHR2[24]]}", CHR2[19:29], CHR2[19:24] + OTHER[CHR2[24]] + CHR2[25:29]),
    ]
    return records, expected


def write_vcf(path, records, *, compress=False):
    text = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "".join(
        f"{c}\t{p}\t{i}\t{r}\t{a}\t.\tPASS\t.\n" for c, p, i, r, a in records)
    if compress:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def write_tsv(path, rows, *, header=True):
    """rows: (chrom, pos, ref, alt, id)."""
    text = ("chr\tpos\tallele1\tallele2\tvariant_id\n" if header else "") + "".join(
        "\t".join(str(x) for x in row) + "\n" for row in rows)
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("variants")
    (d / "genome.fa").write_text(f">chr1\n{CHR1}\n>chr2\n{CHR2}\n")
    records, expected = _vcf_lines()
    vcf = write_vcf(d / "v.vcf", records)
    return types.SimpleNamespace(dir=d, genome=d / "genome.fa", vcf=vcf, records=records, expected=expected)


def test_windows_by_hand(data, caplog):
    with caplog.at_level(logging.WARNING):
        source = open_variants(data.vcf, data.genome, width=L)
    try:
        assert source.ids == [e[0] for e in data.expected]
        seqs = source.sequences()
        assert len(seqs) == 2 * len(data.expected)
        for k, (vid, ref_row, alt_row) in enumerate(data.expected):
            assert len(ref_row) == len(alt_row) == L
            assert seqs[2 * k] == ref_row, vid
            assert seqs[2 * k + 1] == alt_row, vid
            assert source.names[2 * k] == f"{vid}/ref" and source.names[2 * k + 1] == f"{vid}/alt"
        reasons = {s.name: s.reason for s in source.skipped}
        assert reasons["end"] == "window off its chromosome"
        assert reasons["bad_ref"] == "REF does not match the genome"
        assert reasons["sym"] == "symbolic or breakend ALT allele"
    finally:
        source.close()
    text = caplog.text
    assert "2 of 8 variants are not scored" in text and "end" in text and "bad_ref" in text
    assert "skipped 1 symbolic" in text


def test_off_genome_error_names_the_variant(data):
    with pytest.raises(VariantError, match=r"line 8: variant 'end'.*off chr2"):
        open_variants(data.vcf, data.genome, width=L, off_genome="error")
    records = [r for r in data.records if r[2] != "end"]
    vcf = write_vcf(data.dir / "noend.vcf", records)
    with pytest.raises(VariantError, match=r"variant 'bad_ref'.*REF '.' is not the genome's base"):
        open_variants(vcf, data.genome, width=L, off_genome="error")


def test_tsv_with_and_without_header_and_dashes(data, tmp_path):
    g = CHR1
    rows = [("chr1", 21, g[20], "A" if g[20] != "A" else "C", "s1"), ("chr1", 31, "-", "TT", "ins"),
            ("chr1", 41, g[40:42], "-", "del")]
    for header in (True, False):
        tsv = write_tsv(tmp_path / f"v{header}.tsv", rows, header=header)
        t = read_variants(tsv)
        assert t.kind == "tsv" and t.ids == ["s1", "ins", "del"]
        assert t.ref[1] == "" and t.alt[2] == ""
    source = open_variants(tsv, data.genome, width=L)
    try:
        seqs = source.sequences()
        # variant-scorer's convention for an empty REF: the insertion goes before the base at pos
        assert seqs[2] == g[25:35] and seqs[3] == g[25:30] + "TT" + g[30:33]
        assert seqs[4] == g[35:45] and seqs[5] == g[35:40] + g[42:47]
    finally:
        source.close()


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("chr1\t10\tA\tR\tx\n")
    with pytest.raises(VariantError, match=r"line 1: alt 'R' is not a DNA allele"):
        read_variants(bad)
    bad.write_text("chr1\t10\tA\tA\tx\n")
    with pytest.raises(VariantError, match="REF and ALT are both"):
        read_variants(bad)
    bad.write_text("chr1\t10\tA\tC\tx\nchr1\t12\tA\tC\ty\nchr1\t10\tA\tC\tx\n")
    with pytest.raises(VariantError, match="lines 1 and 3: both give the variant 'x:A:C'"):
        read_variants(bad)
    with pytest.raises(VariantError, match="does not exist"):
        read_variants(tmp_path / "none.vcf")
    bad.write_text(">chr1\nACGT\n")
    with pytest.raises(VariantError, match="looks like a FASTA file"):
        read_variants(bad)
    bad.write_bytes(b"PK\x03\x04\xff\xfe\x00binary")
    with pytest.raises(VariantError, match="is not a readable text file"):
        read_variants(bad)


def test_chromosome_names_that_do_not_match_the_genome(data, tmp_path):
    vcf = write_vcf(tmp_path / "v.vcf", [("1", 21, "snv", CHR1[20], OTHER[CHR1[20]])])
    with pytest.raises(VariantError, match=r"the variants are on '1'\.\.\., .* has 'chr1', 'chr2'.*'chr1' vs '1'"):
        open_variants(vcf, data.genome, width=L)


def test_gzip_vcf_reads_the_same(data, tmp_path):
    gz = write_vcf(tmp_path / "v.vcf.gz", data.records, compress=True)
    a, b = read_variants(data.vcf), read_variants(gz)
    assert a.ids == b.ids and a.ref == b.ref and a.alt == b.alt and list(a.pos) == list(b.pos)


# ------------------------------------------------------------------------------------------------ scoring


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("variant_model")
    net = conv_mean_linear(3, 3, 2, seed=0, scale=3)
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(net, (torch.zeros(2, 4, L),), dynamic_shapes=({0: batch},)), d / "net.pt2")
    return types.SimpleNamespace(path=d / "net.pt2", net=net)


def _score(model, variants, genome, output, **options):
    from dnalift import pipeline
    from dnalift.pipeline.config import ScoreConfig

    options.setdefault("n_refs", 4)
    return pipeline.score(ScoreConfig(model=model.path, variants=variants, genome=genome, output=output, width=L,
                                      **options))


def test_predictions_are_the_model_on_hand_built_windows(data, model, tmp_path):
    from dnalift.io.store import open_results, validate_results

    out = tmp_path / "v.h5"
    summary = _score(model, data.vcf, data.genome, out, precision="float64", normalize=False)
    assert summary.n_sequences == 2 * len(data.expected) and summary.n_skipped == 3
    rows = [row for _, ref_row, alt_row in data.expected for row in (ref_row, alt_row)]
    X = torch.from_numpy(one_hot_encode(rows).astype(np.float32))
    with torch.no_grad():
        expected = model.net(X)[:, 0].numpy()
    with open_results(out) as r:
        np.testing.assert_allclose(r.predictions(), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(r.raw(), one_hot_encode(rows))
        v = r.variants_of(slice(None))
        assert list(v["variant_ids"][0::2]) == [e[0] for e in data.expected]
        assert list(v["variant_ids"][1::2]) == [e[0] for e in data.expected]
        assert list(v["alleles"]) == [0, 1] * len(data.expected) and v["alleles"].dtype == np.int8
        assert set(v["offset"]) == {L // 2}
        assert list(v["pos"][0::2]) == [20, 30, 40, 10, 10, 24]
        # summation-to-delta, float64: each row's contributions sum to its prediction minus its reference's
        total = r.projected().astype(np.float64).sum(axis=(1, 2))
        np.testing.assert_allclose(total, r.predictions() - r.reference_predictions(), atol=1e-5)
        # shared references: the two rows of a variant have one reference prediction, so the change of the
        # summed contributions is the change of prediction
        ref_pred = r.reference_predictions()
        np.testing.assert_allclose(ref_pred[0::2], ref_pred[1::2], atol=1e-6)
        np.testing.assert_allclose(total[1::2] - total[0::2], r.predictions()[1::2] - r.predictions()[0::2],
                                   atol=1e-5)
        assert r.attrs["input_kind"] == "variants" and r.attrs["pair_references"] == "shared"
    assert validate_results(out) == []


def test_shared_references_are_shuffles_of_the_reference_window(data, model, tmp_path):
    """The reference predictions equal the model averaged over the seeded shuffles of the REF window."""
    from dnalift.io.store import open_results
    from dnalift.references import dinucleotide_shuffle

    out = tmp_path / "v.h5"
    _score(model, data.vcf, data.genome, out, precision="float64", normalize=False, seed=3)
    X = one_hot_encode([e[1] for e in data.expected])
    R = dinucleotide_shuffle(X, n=4, seed=3, names=[e[0] for e in data.expected])
    with torch.no_grad():
        want = model.net(torch.from_numpy(np.asarray(R, np.float32).reshape(-1, 4, L)))[:, 0].numpy()
    want = want.reshape(len(data.expected), 4).mean(axis=1)
    with open_results(out) as r:
        np.testing.assert_allclose(r.reference_predictions()[0::2], want, rtol=1e-5, atol=1e-6)
    own = tmp_path / "own.h5"
    _score(model, data.vcf, data.genome, own, pair_references="own", seed=3)
    with open_results(own) as r:
        assert not np.allclose(r.reference_predictions()[0::2], r.reference_predictions()[1::2])


def test_vcf_and_tsv_give_the_same_file(data, model, tmp_path):
    from dnalift.io.store import open_results

    source = open_variants(data.vcf, data.genome, width=L)
    t = source._table
    rows = [(t.chrom[k], int(t.pos[k]) + 1, t.ref[k], t.alt[k], t.ids[k]) for k in source._keep]
    source.close()
    tsv = write_tsv(tmp_path / "v.tsv", rows)
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    _score(model, data.vcf, data.genome, a)
    _score(model, tsv, data.genome, b)
    with open_results(a) as ra, open_results(b) as rb:
        assert ra.attrs["input_sha256"] == rb.attrs["input_sha256"]
        for name in ("raw/seq", "shap/seq", "projected_shap/seq", "predictions", "reference_predictions",
                     "deltas", "names", "variant_ids", "alleles", "variants/chrom", "variants/pos", "variants/ref",
                     "variants/alt", "variants/offset"):
            np.testing.assert_array_equal(ra.file[name][...], rb.file[name][...], err_msg=name)


def test_shards_keep_pairs_together_and_merge(data, model, tmp_path):
    from dnalift.io.store import merge_results, open_results

    whole = tmp_path / "whole.h5"
    _score(model, data.vcf, data.genome, whole, chunk_size=3)
    parts = []
    for i in (1, 2, 3):
        parts.append(tmp_path / f"p{i}.h5")
        _score(model, data.vcf, data.genome, parts[-1], shard=f"{i}-of-3", chunk_size=3)
        with open_results(parts[-1]) as r:
            assert r.n % 2 == 0 and r.attrs["row_start"] % 2 == 0 and r.attrs["chunk_size"] == 4
    merged = merge_results(parts, tmp_path / "merged.h5")
    with open_results(whole) as rw, open_results(merged) as rm:
        for name in ("shap/seq", "predictions", "variant_ids", "alleles", "variants/pos"):
            np.testing.assert_array_equal(rw.file[name][...], rm.file[name][...], err_msg=name)


def test_table(data, model, tmp_path):
    import csv

    from dnalift.io.store import open_results
    from dnalift.io.variant_table import write_variant_table

    out = tmp_path / "v.h5"
    _score(model, data.vcf, data.genome, out)
    table = write_variant_table(out, flank=2)
    assert table == tmp_path / "v.tsv"
    with open(table) as handle:
        lines = list(csv.DictReader(handle, delimiter="\t"))
    with open_results(out) as r:
        pred, contrib = r.predictions(), r.contributions()
    assert [x["variant_id"] for x in lines] == [e[0] for e in data.expected]
    ins = lines[1]
    assert (ins["chrom"], ins["pos"], ins["ref"], ins["alt"]) == ("chr1", "31", CHR1[30], CHR1[30] + "TT")
    assert float(ins["delta_prediction"]) == pytest.approx(pred[3] - pred[2], rel=1e-5, abs=1e-6)
    # the insertion: REF covers window column 5, ALT columns 5-7; two bases of flank each side
    assert float(ins["contribution_ref"]) == pytest.approx(contrib[2, 3:8].sum(), rel=1e-5, abs=1e-6)
    assert float(ins["contribution_alt"]) == pytest.approx(contrib[3, 3:10].sum(), rel=1e-5, abs=1e-6)


def test_alt_on_reference_window_by_hand():
    from dnalift.io.variant_bigwig import alt_on_reference_window

    alt, nan = np.arange(10.0), np.nan
    np.testing.assert_array_equal(alt_on_reference_window(alt, 5, 1, 1), alt)  # SNV: base for base
    # insertion (REF 1 base, ALT 3): REF's base has no value, the window's bases 6, 7 are the ALT row's 8, 9
    np.testing.assert_array_equal(alt_on_reference_window(alt, 5, 1, 3), [0, 1, 2, 3, 4, nan, 8, 9, nan, nan])
    # deletion (REF 3 bases, ALT 1): the deleted bases have no value, the window's 8, 9 are the ALT row's 6, 7
    np.testing.assert_array_equal(alt_on_reference_window(alt, 5, 3, 1), [0, 1, 2, 3, 4, nan, nan, nan, 6, 7])


def test_bigwig_tracks_per_allele(data, model, tmp_path):
    pyBigWig = pytest.importorskip("pyBigWig")
    from dnalift.io.store import open_results
    from dnalift.io.variant_bigwig import write_variant_bigwigs

    out = tmp_path / "v.h5"
    _score(model, data.vcf, data.genome, out)
    ref_bw, alt_bw = write_variant_bigwigs(out, tmp_path / "v.bw", chrom_sizes={"chr1": 60, "chr2": 30})
    assert (ref_bw.name, alt_bw.name) == ("v.ref.bw", "v.alt.bw")
    with open_results(out) as r:
        c = r.contributions().astype(np.float64)
    ref, alt = pyBigWig.open(str(ref_bw)), pyBigWig.open(str(alt_bw))
    # the SNV (rows 0, 1) alone on chr1:15-25
    np.testing.assert_allclose(ref.values("chr1", 15, 25), c[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(alt.values("chr1", 15, 25), c[1], rtol=1e-5, atol=1e-7)
    # the insertion (rows 2, 3) on chr1:25-35: its ALT row's bases 8, 9 on genome 31, 32; 30, 33, 34 no value
    np.testing.assert_allclose(ref.values("chr1", 25, 35), c[2], rtol=1e-5, atol=1e-7)
    got = np.array(alt.values("chr1", 25, 35))
    np.testing.assert_allclose(got[[0, 1, 2, 3, 4, 6, 7]], c[3, [0, 1, 2, 3, 4, 8, 9]], rtol=1e-5, atol=1e-7)
    assert np.isnan(got[[5, 8, 9]]).all()
    # the multi-allelic record's two variants share chr1:5-15: the mean of their rows
    np.testing.assert_allclose(ref.values("chr1", 5, 15), (c[6] + c[8]) / 2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(alt.values("chr1", 5, 15), (c[7] + c[9]) / 2, rtol=1e-5, atol=1e-7)
    ref.close()
    alt.close()


def test_n_policy_drops_or_refuses_whole_pairs(tmp_path):
    from dnalift.errors import SequenceError

    genome = tmp_path / "g.fa"
    genome.write_text(">chr1\nACGTACGTACNTACGTACGTACGTACGTAC\n")  # an N at 0-based 10
    vcf = write_vcf(tmp_path / "v.vcf", [("chr1", 8, "near_n", "T", "A"), ("chr1", 21, "clean", "A", "T")])
    source = open_variants(vcf, genome, width=L, n_policy="skip")
    try:
        assert source.ids == ["clean"] and len(source) == 2
        assert [(s.name, s.reason) for s in source.skipped] == [("near_n", "letters other than ACGT")]
    finally:
        source.close()
    with pytest.raises(SequenceError, match=r"the ref window of variant 'near_n' has 'N' at position 8"):
        open_variants(vcf, genome, width=L, n_policy="error")


def test_an_interrupted_run_resumes_to_the_same_file(data, model, tmp_path, monkeypatch):
    from conftest import fail_attribute_on_call
    from dnalift.io.store import open_results, partial_path

    whole = tmp_path / "whole.h5"
    _score(model, data.vcf, data.genome, whole, chunk_size=4)
    out = tmp_path / "v.h5"
    restore = fail_attribute_on_call(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        _score(model, data.vcf, data.genome, out, chunk_size=4)
    assert partial_path(out).exists() and not out.exists()
    restore()
    summary = _score(model, data.vcf, data.genome, out, chunk_size=4, resume=True)
    assert summary.n_resumed == 4 and summary.n_scored == 2 * len(data.expected) - 4
    with open_results(whole) as a, open_results(out) as b:
        for name in ("shap/seq", "predictions", "reference_predictions", "variant_ids", "alleles"):
            np.testing.assert_array_equal(a.file[name][...], b.file[name][...], err_msg=name)


def test_window_formula_odd_width_and_long_alleles():
    from dnalift.io.variant_source import _span, variant_windows

    g = "0123456789abcdefghij"  # any letters: the formula only cuts and joins
    # odd L = 5: the allele's first base is the middle one (index 2); an SNV's span is the genome window
    assert _span(10, "a", "X", 5) == (8, 13)
    assert variant_windows(g[8:13], "a", "X", 5) == ("89abc", "89Xbc")
    # an insertion longer than L - L//2: the allele is cut at the window's end
    start, stop = _span(10, "a", "aXYZW", 5)
    assert (start, stop) == (8, 13)
    assert variant_windows(g[start:stop], "a", "aXYZW", 5) == ("89abc", "89aXY")
    # a deletion longer than the window's right half: the reference row is cut, the alternative reads on
    start, stop = _span(10, "abcdef", "a", 6)
    assert (start, stop) == (7, 18)
    assert variant_windows(g[start:stop], "abcdef", "a", 6) == ("789abc", "789agh")


def test_shared_references_zero_the_alt_rows_n_columns(model, tmp_path):
    """A deletion moves an N of the right flank: the alternative row's references get a zero column there, so
    both rows still sum to their own delta (without it the alternative row's delta would be off)."""
    from dnalift.io.store import open_results

    genome = tmp_path / "g.fa"
    genome.write_text(">chr1\nACGTTGCAAGCTTACGGNTCCGATATCG\n")  # N at 0-based 17
    vcf = write_vcf(tmp_path / "v.vcf", [("chr1", 15, "del", "CG", "C")])  # p = 14, window [9, 19), N at 8
    out = tmp_path / "v.h5"
    _score(model, vcf, genome, out, precision="float64", normalize=False, n_refs=3)
    with open_results(out) as r:
        raw = r.raw()
        assert raw[0, :, 8].sum() == 0 and raw[1, :, 7].sum() == 0  # the N at window 8 (ref), 7 (alt)
        assert raw[0].sum() == raw[1].sum() == L - 1
        total = r.projected().astype(np.float64).sum(axis=(1, 2))
        np.testing.assert_allclose(total, r.predictions() - r.reference_predictions(), atol=1e-5)
        np.testing.assert_allclose(np.abs(r.deltas()), 0, atol=1e-5)
