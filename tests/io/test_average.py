"""Averaging the folds of one scoring (issue 21): the mean of every float dataset equals numpy's float64 mean of
the folds, stored float32, bit for bit; each fold's predictions are kept; files of other sequences, windows,
targets, references or options are refused in one line with nothing left behind; the files are read chunk by
chunk."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from dnalift.errors import FoldMismatchError, OutputExistsError, StoreError
from dnalift.io.store import (ResultReader, ResultWriter, average_results, average_target_files, open_results,
                              validate_results)
from dnalift.io.store.average import fold_groups

L = 10
BASE = {"rule": "rescale", "max_rule": "exact", "reference": "dinuc", "n_refs": 5, "seed": 3, "target": "profile",
        "input_sha256": "11" * 32, "reference_sha256": None, "command_line": "dnalift score"}
FLOATS = ("shap/seq", "projected_shap/seq", "predictions", "reference_predictions", "deltas")


def _sequences(n, seed=0):
    rng = np.random.default_rng(seed)
    raw = np.zeros((n, 4, L), np.int8)
    raw[np.arange(n)[:, None], rng.integers(0, 4, (n, L)), np.arange(L)[None, :]] = 1
    return raw


def _variants(n, alt="T"):
    k = np.arange(n) // 2
    return {"variant_ids": np.array([f"rs{i}" for i in k], dtype=object), "alleles": (np.arange(n) % 2).astype(np.int8),
            "chrom": np.array(["chr1"] * n, dtype=object), "pos": k.astype(np.int64) * 10,
            "ref": np.array(["A"] * n, dtype=object), "alt": np.array([alt] * n, dtype=object),
            "offset": np.full(n, L // 2, np.int64)}


def fold(path, fold_id, *, n=23, chunk_size=5, names=None, raw=None, regions=True, variants=None, **attrs):
    """A complete result file of fold ``fold_id``: the same sequences for every fold, its own scores."""
    rng = np.random.default_rng(100 + fold_id)
    raw = _sequences(n) if raw is None else raw
    hyp = rng.normal(size=(n, 4, L)).astype(np.float32)
    pred = rng.normal(size=n).astype(np.float32)
    ref = rng.normal(size=n).astype(np.float32)
    own = {**BASE, "model_sha256": f"{fold_id:02d}" * 32, "model_path": f"fold{fold_id}.torch", **attrs}
    where = {"chrom": np.array(["chr1"] * n, dtype=object), "start": np.arange(n, dtype=np.int64) * 7,
             "end": np.arange(n, dtype=np.int64) * 7 + L, "strand": np.array(["+"] * n, dtype=object)}
    with ResultWriter(path, n=n, length=L, attrs=own, chunk_size=chunk_size, regions=regions,
                      variants=variants is not None) as w:
        w.write(0, raw=raw, hypothetical=hyp, names=names or [f"peak{i}" for i in range(n)], predictions=pred,
                reference_predictions=ref, deltas=(hyp * raw).sum((1, 2)) - (pred - ref),
                regions=where if regions else None, variants=variants)
    return path


def read_all(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj.asstr()[...] if obj.dtype.kind == "O" else obj[...])
                     if isinstance(obj, h5py.Dataset) else None)
        return out, dict(f.attrs)


def test_the_mean_is_numpys_mean_and_each_fold_is_kept(tmp_path):
    paths = [fold(tmp_path / f"fold{i}.h5", i) for i in range(3)]
    out = average_results(paths, tmp_path / "mean.h5", command_line="dnalift average ...")
    folds = [read_all(p)[0] for p in paths]
    mean, attrs = read_all(out)
    for key in FLOATS:
        want = np.mean(np.stack([f[key] for f in folds]).astype(np.float64), axis=0).astype(np.float32)
        assert mean[key].dtype == np.float32
        np.testing.assert_array_equal(mean[key], want, err_msg=key)
    np.testing.assert_array_equal(mean["fold_predictions"], np.stack([f["predictions"] for f in folds], 1))
    for key in ("raw/seq", "names", "regions/chrom", "regions/start", "regions/end", "regions/strand"):
        np.testing.assert_array_equal(mean[key], folds[0][key])
    assert attrs["n_folds"] == 3 and "model_sha256" not in attrs and "model_path" not in attrs
    assert attrs["averaged_from"] == '["fold0.h5", "fold1.h5", "fold2.h5"]'
    assert attrs["fold_model_sha256"] == '["' + '", "'.join(f"{i:02d}" * 32 for i in range(3)) + '"]'
    assert attrs["target"] == "profile" and attrs["input_sha256"] == "11" * 32
    # the folds sum to delta, and so does their mean (float32 storage)
    change = mean["predictions"].astype(np.float64) - mean["reference_predictions"]
    np.testing.assert_allclose(mean["projected_shap/seq"].sum((1, 2)) - change, mean["deltas"], atol=2e-5)
    assert validate_results(out) == []
    with open_results(out) as r:
        assert r.n == 23 and r.has_regions


def test_a_changed_fold_column_fails_validation(tmp_path):
    out = average_results([fold(tmp_path / f"f{i}.h5", i) for i in range(2)], tmp_path / "mean.h5")
    with h5py.File(out, "r+") as f:
        f["fold_predictions"][4, 1] += 1.0
    assert validate_results(out) == ["1 sequences have predictions other than the mean of fold_predictions"]


def _refused(tmp_path, other, match, error=FoldMismatchError):
    a = tmp_path / "a.h5"
    if not a.exists():
        fold(a, 0)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(error, match=match) as info:
        average_results([a, other], tmp_path / "mean.h5")
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("change, match", [
    ({"input_sha256": "22" * 32}, "the sequences .* differ .*input_sha256 1111"),
    ({"target": "counts"}, "the target differ.*'profile' vs 'counts'"),
    ({"reference_sha256": "33" * 32}, "the references file differ"),
    ({"seed": 4}, "seed differ.*3 vs 4"),
    ({"n_refs": 20}, "number of references differ"),
    ({"rule": "revealcancel"}, "'rule' differ"),
    ({"model_sha256": "00" * 32}, "the same model"),
])
def test_other_scorings_are_refused(tmp_path, change, match):
    _refused(tmp_path, fold(tmp_path / "b.h5", 1, **change), match)


def test_other_rows_are_refused_while_streaming(tmp_path):
    names = [f"peak{i}" for i in range(23)]
    names[17] = "other"
    _refused(tmp_path, fold(tmp_path / "b.h5", 1, names=names), "name the sequences of rows 15-19 differently")
    with pytest.raises(FoldMismatchError):  # the folder the output was to go in is not left either
        average_results([tmp_path / "a.h5", tmp_path / "b.h5"], tmp_path / "new" / "mean.h5")
    assert not (tmp_path / "new").exists()
    raw = _sequences(23)
    raw[21] = _sequences(1, seed=9)[0]
    (tmp_path / "b.h5").unlink()
    _refused(tmp_path, fold(tmp_path / "b.h5", 1, raw=raw), "hold other sequences in rows 20-22")
    (tmp_path / "b.h5").unlink()
    _refused(tmp_path, fold(tmp_path / "b.h5", 1, n=22), "'n' differ.*23 vs 22")
    (tmp_path / "b.h5").unlink()
    _refused(tmp_path, fold(tmp_path / "b.h5", 1, regions=False), "'regions' differ")


def test_files_that_cannot_be_averaged(tmp_path):
    a, b = fold(tmp_path / "a.h5", 0), fold(tmp_path / "b.h5", 1)
    with pytest.raises(StoreError, match="two or more folds"):
        average_results([a], tmp_path / "m.h5")
    with pytest.raises(StoreError, match="given twice"):
        average_results([a, tmp_path / "." / "a.h5"], tmp_path / "m.h5")
    with pytest.raises(StoreError, match="one of the folds"):
        average_results([a, b], a)
    mean = average_results([a, b], tmp_path / "m.h5")
    with pytest.raises(StoreError, match="already an average"):
        average_results([mean, a], tmp_path / "m2.h5")
    with pytest.raises(OutputExistsError, match="force=True"):
        average_results([a, b], mean)
    assert average_results([b, a], mean, force=True) == mean
    with h5py.File(b, "r+") as f:
        f["chunks_complete"][2] = 0
    with pytest.raises(StoreError, match="incomplete"):
        average_results([a, b], tmp_path / "m3.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5", "m.h5"]


def test_it_reads_and_writes_chunk_by_chunk(tmp_path, monkeypatch):
    paths = [fold(tmp_path / f"fold{i}.h5", i, n=41, chunk_size=4) for i in range(2)]
    whole = average_results(paths, tmp_path / "whole.h5", chunk_size=1000)
    reads = []
    original = ResultReader.hypothetical

    def spy(self, idx=None):
        reads.append(idx)
        return original(self, idx)

    monkeypatch.setattr(ResultReader, "hypothetical", spy)
    out = average_results(paths, tmp_path / "mean.h5")   # the files' chunk size: 4 rows at a time
    assert all(isinstance(s, slice) and s.stop - s.start <= 4 for s in reads) and len(reads) == 2 * 11
    a, b = read_all(out)[0], read_all(whole)[0]
    for key in FLOATS + ("fold_predictions",):
        np.testing.assert_array_equal(a[key], b[key])


def test_several_target_files_average_per_target(tmp_path):
    for i in range(2):
        for target in ("counts", "profile"):
            fold(tmp_path / f"fold{i}.{target}.h5", i, target=target, n_targets=2)
    groups = fold_groups([tmp_path / "fold0.h5", tmp_path / "fold1.h5"], tmp_path / "mean.h5")
    assert [(list(map(lambda p: p.name, files)), out.name) for files, out in groups] == [
        (["fold0.counts.h5", "fold1.counts.h5"], "mean.counts.h5"),
        (["fold0.profile.h5", "fold1.profile.h5"], "mean.profile.h5")]
    written = average_target_files([tmp_path / "fold0.h5", tmp_path / "fold1.h5"], tmp_path / "mean.h5")
    assert [p.name for p in written] == ["mean.counts.h5", "mean.profile.h5"]
    for target, path in zip(("counts", "profile"), written):
        assert read_all(path)[1]["target"] == target and validate_results(path) == []
    # a fold whose second target file holds other sequences: nothing of this call is left
    (tmp_path / "fold1.profile.h5").unlink()
    names = [f"peak{i}" for i in range(23)]
    names[3] = "x"
    fold(tmp_path / "fold1.profile.h5", 1, target="profile", n_targets=2, names=names)
    with pytest.raises(FoldMismatchError, match="differently"):
        average_target_files([tmp_path / "fold0.h5", tmp_path / "fold1.h5"], tmp_path / "again.h5")
    assert not list(tmp_path.glob("again*")) and not list(tmp_path.glob(".again*"))
    (tmp_path / "fold1.counts.h5").unlink()
    with pytest.raises(FoldMismatchError, match="has the targets counts, profile and .* has profile"):
        fold_groups([tmp_path / "fold0.h5", tmp_path / "fold1.h5"], tmp_path / "m.h5")
    with pytest.raises(StoreError, match="no such file, and no per-target files"):
        fold_groups([tmp_path / "fold0.h5", tmp_path / "nothing.h5"], tmp_path / "m.h5")


def test_variant_files_keep_their_variants(tmp_path):
    paths = [fold(tmp_path / f"v{i}.h5", i, n=8, regions=False, variants=_variants(8)) for i in range(2)]
    out = average_results(paths, tmp_path / "mean.h5")
    assert validate_results(out) == []
    mean, first = read_all(out)[0], read_all(paths[0])[0]
    for key in ("variant_ids", "alleles", "variants/pos", "variants/alt"):
        np.testing.assert_array_equal(mean[key], first[key])
    other = fold(tmp_path / "w.h5", 2, n=8, regions=False, variants=_variants(8, alt="G"))
    with pytest.raises(FoldMismatchError, match="hold other variants in rows 0-4"):
        average_results([paths[0], other], tmp_path / "mean2.h5")
    assert not (tmp_path / "mean2.h5").exists()
