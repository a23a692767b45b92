"""The HDF5 result file: writer, reader, resume after a crash, validation, merge of shards."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from dnalift.errors import OutputExistsError, StoreError
from dnalift.io.store import (ResultWriter, merge_results, open_results, partial_path, shard_attrs,
                              validate_results)

L = 12
ATTRS = {"rule": "rescale", "max_rule": "exact", "reference": "dinucleotide_shuffle", "n_refs": 10, "seed": 7,
         "target": 0, "model_sha256": "ab" * 32, "model_path": "model.pt2", "command_line": "dnalift score m s"}


def rows(start, stop, length=L):
    """Deterministic data for global rows [start, stop): the same row always gets the same numbers."""
    b = stop - start
    raw = np.zeros((b, 4, length), np.int8)
    hyp = np.zeros((b, 4, length), np.float32)
    for k, i in enumerate(range(start, stop)):
        rng = np.random.default_rng(1000 + i)
        bases = rng.integers(0, 5, length)  # 4 = N: all-zero column
        for pos, base in enumerate(bases):
            if base < 4:
                raw[k, base, pos] = 1
        hyp[k] = rng.normal(size=(4, length)).astype(np.float32)
    idx = np.arange(start, stop, dtype=np.float32)
    regions = {"chrom": np.array([f"chr{1 + i % 2}" for i in range(start, stop)], dtype=object),
               "start": np.arange(start, stop, dtype=np.int64) * 100,
               "end": np.arange(start, stop, dtype=np.int64) * 100 + length,
               "strand": np.array(["+-"[i % 2] for i in range(start, stop)], dtype=object)}
    return dict(raw=raw, hypothetical=hyp, names=[f"seq{i}" for i in range(start, stop)], predictions=idx * 0.5,
                reference_predictions=idx * 0.25, deltas=idx * 1e-3), regions


def write_all(path, n, *, batch=7, chunk_size=5, regions=False, attrs=ATTRS, **kw):
    with ResultWriter(path, n=n, length=L, attrs=attrs, chunk_size=chunk_size, regions=regions, **kw) as w:
        for a in range(0, n, batch):
            data, reg = rows(a, min(a + batch, n))
            w.write(a, **data, regions=reg if regions else None)
    return path


def datasets(path):
    """Every dataset of a file as numpy arrays (strings decoded)."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj.asstr()[...] if obj.dtype.kind == "O" else obj[...]
        f.visititems(visit)
    return out


def assert_same_data(a, b):
    da, db = datasets(a), datasets(b)
    assert sorted(da) == sorted(db)
    for key in da:
        np.testing.assert_array_equal(da[key], db[key], err_msg=key)
        assert da[key].dtype == db[key].dtype, key


def test_round_trip_numbers_and_schema(tmp_path):
    path = write_all(tmp_path / "out.h5", 23, regions=True)
    assert not partial_path(path).exists()
    want, reg = rows(0, 23)
    # the schema, as plain h5py sees it
    with h5py.File(path, "r") as f:
        assert f["raw/seq"].shape == (23, 4, L) and f["raw/seq"].dtype == np.int8
        assert f["shap/seq"].dtype == np.float32 and f["projected_shap/seq"].dtype == np.float32
        assert f["shap/seq"].chunks == (5, 4, L) and f["shap/seq"].compression == "gzip"
        assert f["names"].shape == (23,) and h5py.check_string_dtype(f["names"].dtype).encoding == "utf-8"
        for key in ("predictions", "reference_predictions", "deltas"):
            assert f[key].shape == (23,) and f[key].dtype == np.float32
        assert f["regions/start"].dtype == np.int64
        assert list(f["chunks_complete"][...]) == [1] * 5
        assert f.attrs["axis_order"] == "n,base,position" and f.attrs["alphabet"] == "ACGT"
        assert f.attrs["format_version"] == 1 and f.attrs["seed"] == 7 and f.attrs["rule"] == "rescale"
        assert "created" in f.attrs and "dnalift_version" in f.attrs and "torch_version" in f.attrs
    with open_results(path) as r:
        assert (r.n, r.length, len(r)) == (23, L, 23)
        np.testing.assert_array_equal(r.raw(), want["raw"])
        np.testing.assert_array_equal(r.hypothetical(), want["hypothetical"])
        np.testing.assert_array_equal(r.projected(), want["hypothetical"] * want["raw"])
        np.testing.assert_array_equal(r.raw(3), want["raw"][3])
        np.testing.assert_array_equal(r.hypothetical([9, 2, 9]), want["hypothetical"][[9, 2, 9]])
        assert r.names == want["names"]
        assert r.index_of("seq17") == 17
        np.testing.assert_array_equal(r.predictions(), np.arange(23, dtype=np.float32) * 0.5)
        assert r.deltas(10) == want["deltas"][10] and r.deltas(10).dtype == np.float32
        assert r.reference_predictions(4) == 1.0
        assert list(r.regions["chrom"]) == list(reg["chrom"]) and list(r.regions["strand"]) == list(reg["strand"])
        assert r.region(3) == ("chr2", 300, 312, "-")
        assert r.attrs["target"] == 0 and r.attrs["command_line"] == "dnalift score m s"
    assert validate_results(path) == []


def test_projected_is_hypothetical_on_the_observed_base(tmp_path):
    raw = np.zeros((1, 4, 3), np.int8)
    raw[0, 0, 0] = 1  # A
    raw[0, 3, 1] = 1  # T; position 2 is N
    hyp = np.array([[[0.5, 1, 9], [-1, 2, 9], [2, 3, 9], [3, -4, 9]]], np.float32)
    with ResultWriter(tmp_path / "p.h5", n=1, length=3, attrs={}) as w:
        w.write(0, raw=raw.astype(np.float32), hypothetical=hyp, names=["s"], predictions=[1.0],
                reference_predictions=[0.0], deltas=[0.0])
    with open_results(tmp_path / "p.h5") as r:
        expected = np.array([[0.5, 0, 0], [0, 0, 0], [0, 0, 0], [0, -4, 0]], np.float32)
        np.testing.assert_array_equal(r.projected(0), expected)
        np.testing.assert_array_equal(r.contributions(0), [0.5, -4, 0])


def test_torch_tensors_are_accepted(tmp_path):
    torch = pytest.importorskip("torch")
    data, _ = rows(0, 4)
    data = {k: (torch.as_tensor(np.asarray(v)) if k != "names" else v) for k, v in data.items()}
    with ResultWriter(tmp_path / "t.h5", n=4, length=L, attrs=ATTRS) as w:
        w.write(0, **data)
    with open_results(tmp_path / "t.h5") as r:
        np.testing.assert_array_equal(r.hypothetical(), rows(0, 4)[0]["hypothetical"])


def test_write_checks_its_input(tmp_path):
    data, _ = rows(0, 3)
    with pytest.raises(StoreError):
        with ResultWriter(tmp_path / "a.h5", n=3, length=L, attrs={}) as w:
            bad = dict(data, raw=data["raw"] * 2)
            with pytest.raises(StoreError, match="not one-hot"):
                w.write(0, **bad)
            with pytest.raises(StoreError, match="outside"):
                w.write(1, **data)
            with pytest.raises(StoreError, match="one target per result file"):
                w.write(0, **dict(data, predictions=np.zeros((3, 2))))
            with pytest.raises(StoreError, match="regions given"):
                w.write(0, **data, regions={"chrom": ["a"] * 3})
    # leaving the block with rows unwritten is an error and keeps the partial file
    assert not (tmp_path / "a.h5").exists() and partial_path(tmp_path / "a.h5").exists()


def test_unwritten_rows_are_named(tmp_path):
    path = tmp_path / "u.h5"
    with pytest.raises(StoreError, match="rows 5-9 were never written"):
        with ResultWriter(path, n=12, length=L, attrs={}, chunk_size=5) as w:
            data, _ = rows(0, 5)
            w.write(0, **data)
            data, _ = rows(10, 12)
            w.write(10, **data)
    assert not path.exists()


def test_crash_leaves_partial_file_and_no_final_name(tmp_path):
    path = tmp_path / "out.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with ResultWriter(path, n=23, length=L, attrs=ATTRS, chunk_size=5) as w:
            data, _ = rows(0, 12)
            w.write(0, **data)  # chunks 0 and 1 complete, chunk 2 has 2 of 5 rows
            raise RuntimeError("boom")
    assert not path.exists()
    assert partial_path(path).exists() and partial_path(path).name == ".out.h5.partial.h5"
    problems = validate_results(partial_path(path))
    assert len(problems) == 1 and "3 of 5 chunks were never completed" in problems[0]


def test_resume_equals_uninterrupted_run(tmp_path):
    full = write_all(tmp_path / "full.h5", 23, regions=True)

    path = tmp_path / "out.h5"
    with pytest.raises(KeyboardInterrupt):
        with ResultWriter(path, n=23, length=L, attrs=ATTRS, chunk_size=5, regions=True) as w:
            assert w.pending_ranges() == [(0, 23)]
            for a, b in ((0, 7), (7, 14)):  # rows 0-13: chunks 0, 1 complete, chunk 2 partly
                data, reg = rows(a, b)
                w.write(a, **data, regions=reg)
            raise KeyboardInterrupt
    assert not path.exists()

    attrs = dict(ATTRS, command_line="dnalift score m s --resume")  # the command line may differ
    written = []
    with ResultWriter(path, n=23, length=L, attrs=attrs, chunk_size=99, regions=True, resume=True) as w:
        assert w.chunk_size == 5  # taken from the partial file
        assert w.completed_rows() == 10
        assert w.pending_chunks() == [(10, 15), (15, 20), (20, 23)]
        assert w.pending_ranges() == [(10, 23)]
        for a, b in w.pending_ranges():
            for s in range(a, b, 4):
                data, reg = rows(s, min(s + 4, b))
                w.write(s, **data, regions=reg)
                written.append((s, min(s + 4, b)))
    assert written[0] == (10, 14)
    assert not partial_path(path).exists()
    assert_same_data(path, full)
    with h5py.File(path, "r") as f:
        assert f.attrs["command_line"] == "dnalift score m s"  # the attributes of the run that started it


def test_resume_after_the_process_is_killed(tmp_path):
    """SIGKILL after two chunks: the flushed chunks survive and the run finishes with --resume."""
    path = tmp_path / "out.h5"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(Path(__file__).parents[1])!r}]
        from test_store import rows, ATTRS
        from dnalift.io.store import ResultWriter
        w = ResultWriter({str(path)!r}, n=23, length={L}, attrs=ATTRS, chunk_size=5)
        data, _ = rows(0, 12)
        w.write(0, **data)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    repo = str(Path(__file__).parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", script], env=env)
    assert proc.returncode == -9
    assert not path.exists() and partial_path(path).exists()
    with ResultWriter(path, n=23, length=L, attrs=ATTRS, resume=True) as w:
        assert w.pending_chunks() == [(10, 15), (15, 20), (20, 23)]
        data, _ = rows(10, 23)
        w.write(10, **data)
    assert_same_data(path, write_all(tmp_path / "full.h5", 23))


def test_resume_refuses_other_parameters(tmp_path):
    path = tmp_path / "out.h5"
    with pytest.raises(RuntimeError):
        with ResultWriter(path, n=23, length=L, attrs=ATTRS, chunk_size=5) as w:
            w.write(0, **rows(0, 5)[0])
            raise RuntimeError
    with pytest.raises(StoreError, match=r"parameter 'seed' was 7 in the interrupted run and is 8 now"):
        ResultWriter(path, n=23, length=L, attrs=dict(ATTRS, seed=8), resume=True)
    with pytest.raises(StoreError, match="it holds 23 sequences of length 12, this run has 24"):
        ResultWriter(path, n=24, length=L, attrs=ATTRS, resume=True)
    # without --resume the old partial file is discarded and the run starts over
    with ResultWriter(path, n=23, length=L, attrs=dict(ATTRS, seed=8), chunk_size=5) as w:
        assert w.completed_rows() == 0
        w.write(0, **rows(0, 23)[0])
    assert open_results(path).attrs["seed"] == 8


def test_resume_without_partial_file_starts_fresh(tmp_path):
    path = tmp_path / "out.h5"
    with ResultWriter(path, n=3, length=L, attrs=ATTRS, resume=True) as w:
        assert w.pending_ranges() == [(0, 3)]
        w.write(0, **rows(0, 3)[0])
    assert validate_results(path) == []


def test_existing_output_needs_force_and_survives_a_failed_run(tmp_path):
    path = write_all(tmp_path / "out.h5", 6)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="force=True"):
        ResultWriter(path, n=6, length=L, attrs=ATTRS)
    with pytest.raises(RuntimeError):
        with ResultWriter(path, n=6, length=L, attrs=dict(ATTRS, seed=1), force=True) as w:
            w.write(0, **rows(0, 6)[0])
            raise RuntimeError
    assert path.read_bytes() == before  # the old file is replaced only by a complete new one
    write_all(path, 6, attrs=dict(ATTRS, seed=1), force=True)
    assert open_results(path).attrs["seed"] == 1


def test_empty_file(tmp_path):
    with ResultWriter(tmp_path / "e.h5", n=0, length=L, attrs={}) as w:
        assert w.pending_ranges() == []
    with open_results(tmp_path / "e.h5") as r:
        assert r.n == 0 and r.names == [] and r.raw().shape == (0, 4, L)
    assert validate_results(tmp_path / "e.h5") == []


def test_truncated_and_foreign_files_give_one_line_store_errors(tmp_path):
    path = write_all(tmp_path / "out.h5", 40)
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    for fn in (open_results, validate_results):
        with pytest.raises(StoreError, match="truncated") as info:
            fn(cut)
        assert "\n" not in str(info.value)
    text = tmp_path / "notes.h5"
    text.write_text("chr1\t1\t2\n")
    with pytest.raises(StoreError, match="not an HDF5 file"):
        open_results(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1]
    with pytest.raises(StoreError, match="not a dnalift result file"):
        validate_results(other)
    with pytest.raises(StoreError, match="no such file"):
        open_results(tmp_path / "missing.h5")


def test_validate_finds_damage(tmp_path):
    path = write_all(tmp_path / "out.h5", 12)
    with h5py.File(path, "r+") as f:
        f["shap/seq"][2, 0, 0] = np.nan
        f["projected_shap/seq"][5, 1, 1] = 123.0
        f["names"][7] = "seq3"
        f["deltas"][1] = np.inf
        f.attrs["alphabet"] = "ACGU"
    problems = validate_results(path)
    text = "\n".join(problems)
    assert "1 sequences have NaN or infinite scores in shap/seq" in text
    assert "projected_shap/seq != shap/seq * raw/seq" in text
    assert "duplicate sequence names (first: 'seq3')" in text
    assert "NaN or infinite predictions" in text
    assert "alphabet" in text
    # the NaN row also breaks projected == hyp * raw only where raw is 1; 5 problems, no more
    assert len(problems) == 5


def test_index_of_unknown_name(tmp_path):
    path = write_all(tmp_path / "out.h5", 12)
    with open_results(path) as r, pytest.raises(StoreError, match="did you mean"):
        r.index_of("seq_1")


# ------------------------------------------------------------------------------------------------ shards


def test_shard_attrs_split():
    parts = [shard_attrs(f"{i}-of-3", 23) for i in (1, 2, 3)]
    assert [(p["row_start"], p["row_stop"]) for p in parts] == [(0, 7), (7, 15), (15, 23)]
    assert parts[1] == {"shard": "2-of-3", "row_start": 7, "row_stop": 15, "n_total": 23}
    for bad in ("0-of-3", "4-of-3", "2of3", "a-of-b"):
        with pytest.raises(ValueError):
            shard_attrs(bad, 10)


def write_shard(tmp_path, spec, n_total, *, attrs=ATTRS, name=None, regions=True, **override):
    sa = dict(shard_attrs(spec, n_total), **override)
    a, b = sa["row_start"], sa["row_stop"]
    path = tmp_path / (name or f"shard{spec.split('-')[0]}.h5")
    with ResultWriter(path, n=b - a, length=L, attrs=dict(attrs, **sa, command_line=f"score --shard {spec}"),
                      chunk_size=5, regions=regions) as w:
        if b > a:
            data, reg = rows(a, b)
            w.write(0, **data, regions=reg if regions else None)
    return path


def test_merge_equals_unsharded(tmp_path):
    full = write_all(tmp_path / "full.h5", 23, regions=True)
    shards = [write_shard(tmp_path, f"{i}-of-3", 23) for i in (3, 1, 2)]  # any order
    out = merge_results(shards, tmp_path / "merged.h5", command_line="dnalift merge")
    assert_same_data(out, full)
    with h5py.File(out, "r") as f, h5py.File(full, "r") as g:
        skip = {"created", "command_line", "merged_from"}
        assert {k: f.attrs[k] for k in f.attrs if k not in skip} == {k: g.attrs[k] for k in g.attrs if k not in skip}
        assert "shard" not in f.attrs and f.attrs["merged_from"] == '["shard1.h5", "shard2.h5", "shard3.h5"]'
    assert validate_results(out) == []
    with pytest.raises(OutputExistsError):
        merge_results(shards, out)


def test_merge_refuses_mismatched_parameters(tmp_path):
    a = write_shard(tmp_path, "1-of-2", 10)
    b = write_shard(tmp_path, "2-of-2", 10, attrs=dict(ATTRS, seed=8))
    with pytest.raises(StoreError, match=r"attribute 'seed' differs: 7 in .*shard1\.h5, 8 in .*shard2\.h5"):
        merge_results([a, b], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_merge_refuses_gaps_and_overlaps(tmp_path):
    s1, s3 = write_shard(tmp_path, "1-of-3", 23), write_shard(tmp_path, "3-of-3", 23)
    with pytest.raises(StoreError, match=r"rows 7-14 are in no shard \(between .*shard1.h5 and .*shard3.h5\)"):
        merge_results([s1, s3], tmp_path / "m.h5")
    s2 = write_shard(tmp_path, "2-of-3", 23)
    with pytest.raises(StoreError, match=r"rows 15-22 of 23 are in no shard"):
        merge_results([s1, s2], tmp_path / "m.h5")
    wide = write_shard(tmp_path, "2-of-3", 23, name="wide.h5", row_start=5)  # rows 5-14 overlap shard 1
    with pytest.raises(StoreError, match=r"rows 5-6 are in both .*shard1.h5 and .*wide.h5"):
        merge_results([s1, wide, s3], tmp_path / "m.h5")
    with pytest.raises(StoreError, match="given twice"):
        merge_results([s1, s1, s2, s3], tmp_path / "m.h5")


def test_merge_refuses_duplicate_names_and_non_shards(tmp_path):
    s1 = write_shard(tmp_path, "1-of-2", 10, regions=False)
    s2 = tmp_path / "dup.h5"
    sa = shard_attrs("2-of-2", 10)
    with ResultWriter(s2, n=5, length=L, attrs=dict(ATTRS, **sa), chunk_size=5) as w:
        data, _ = rows(5, 10)
        data["names"][2] = "seq1"
        w.write(0, **data)
    with pytest.raises(StoreError, match=r"'seq1' is in .*shard1.h5 \(row 1\) and in .*dup.h5 \(row 7\)"):
        merge_results([s1, s2], tmp_path / "m.h5")
    plain = write_all(tmp_path / "plain.h5", 5)
    with pytest.raises(StoreError, match="not a shard"):
        merge_results([s1, plain], tmp_path / "m.h5")


# ------------------------------------------------------------------------------ schema, locks, fingerprints


def test_dataset_names_are_spelled_once():
    """Every dataset name of the format appears as a string literal in schema.py only."""
    import re

    package = Path(__file__).parents[2] / "dnalift"
    names = ["raw/seq", "shap/seq", "projected_shap/seq", "reference_predictions", "chunks_complete"]
    for path in package.rglob("*.py"):
        if path.name == "schema.py":
            continue
        text = path.read_text()
        for name in names:
            assert not re.search(rf"[\"']{re.escape(name)}[\"']", text), (path, name)


def test_lock_is_exclusive_and_leaves_no_file(tmp_path):
    from dnalift.errors import OutputInUseError
    from dnalift.io.store import OutputLock, lock_path

    out = tmp_path / "o.h5"
    with OutputLock(out):
        assert lock_path(out).exists()
        with pytest.raises(OutputInUseError) as info:
            OutputLock(out).acquire()
        assert isinstance(info.value, BlockingIOError) and info.value.argument == "output"
        with pytest.raises(OutputInUseError):
            ResultWriter(out, n=3, length=L, attrs=ATTRS)  # a writer takes the same lock
    assert not lock_path(out).exists()
    with OutputLock(out):  # free again
        pass


def test_incomplete_files_are_refused_unless_asked(tmp_path):
    from dnalift.errors import IncompleteResultError

    out = tmp_path / "o.h5"
    w = ResultWriter(out, n=12, length=L, attrs=ATTRS, chunk_size=5)
    data, _ = rows(0, 5)
    w.write(0, **data)
    w.close(success=False)
    with pytest.raises(IncompleteResultError, match="2 of 3 chunks were never written") as info:
        open_results(partial_path(out))
    assert info.value.details["missing_chunks"] == 2
    with open_results(partial_path(out), allow_incomplete=True) as r:
        np.testing.assert_array_equal(r.raw(slice(0, 5)), data["raw"])


def test_resume_refuses_another_input_by_fingerprint(tmp_path):
    from dnalift.errors import ResumeMismatchError

    out = tmp_path / "o.h5"
    attrs = dict(ATTRS, input_sha256="11" * 32, input="a/seqs.fa")
    w = ResultWriter(out, n=12, length=L, attrs=attrs, chunk_size=5)
    data, _ = rows(0, 5)
    w.write(0, **data)
    w.close(success=False)
    with pytest.raises(ResumeMismatchError, match="the sequences .* changed since the interrupted run") as info:
        ResultWriter(out, n=12, length=L, attrs=dict(attrs, input_sha256="22" * 32), resume=True)
    assert info.value.details["key"] == "input_sha256"
    # another path to the same content resumes
    again = ResultWriter(out, n=12, length=L, attrs=dict(attrs, input="/abs/b/seqs.fa"), resume=True)
    assert again.pending_ranges() == [(5, 12)]
    again.close(success=False)


def test_merge_compares_fingerprints_not_paths(tmp_path, monkeypatch):
    """Shards of one input given by a relative and an absolute path merge; a shard of another input at the
    same relative path does not."""
    from dnalift.errors import ShardMismatchError

    same = dict(ATTRS, input_sha256="aa" * 32)
    s1 = write_shard(tmp_path, "1-of-2", 10, attrs=dict(same, input="seqs.fa"), regions=False)
    s2 = write_shard(tmp_path, "2-of-2", 10, attrs=dict(same, input="/data/run/seqs.fa"), regions=False)
    monkeypatch.chdir(tmp_path)
    out = merge_results([Path(s1.name), s2], tmp_path / "all.h5")
    with open_results(out) as r:
        assert r.n == 10 and r.attrs["input"] == "seqs.fa"
    other = write_shard(tmp_path, "2-of-2", 10, attrs=dict(ATTRS, input_sha256="bb" * 32, input="seqs.fa"),
                        name="other.h5", regions=False)
    with pytest.raises(ShardMismatchError, match="'input_sha256' differs") as info:
        merge_results([s1, other], tmp_path / "bad.h5")
    assert info.value.details["key"] == "input_sha256"
    assert not (tmp_path / "bad.h5").exists() and not partial_path(tmp_path / "bad.h5").exists()


def test_write_failure_removes_the_unusable_file(tmp_path, monkeypatch):
    """A failed HDF5 write (ENOSPC): the writer does not let HDF5 retry on close, removes the file, says so."""
    from dnalift.errors import DiskFullError

    out = tmp_path / "o.h5"
    w = ResultWriter(out, n=12, length=L, attrs=ATTRS, chunk_size=5)
    data, _ = rows(0, 5)
    w.write(0, **data)

    def failing(c, p):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(w, "_flush_chunk", failing)
    data, _ = rows(5, 10)
    with pytest.raises(DiskFullError, match="no space left on device; the failed write left the partial file") as e:
        w.write(5, **data)
    assert e.value.details["kept"] is False and e.value.details["errno"] == 28
    assert not partial_path(out).exists() and not out.exists()
    w.close(success=False)  # closing again is harmless
