"""dnalift.pipeline: option parsing, output names, targets, references files, progress, failure clean-up."""

from __future__ import annotations

import logging
import math
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import fail_attribute_on_call
from dnalift import pipeline
from dnalift.pipeline.config import ScoreConfig
from dnalift.encoding import one_hot_encode
from dnalift.errors import ReferenceInputError, SequenceError, TargetError
from dnalift.io.store import open_results, partial_path
from toy_models import conv_mean_linear

L = 16


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipeline")
    net = conv_mean_linear(4, 3, 2, seed=0, scale=3)
    example = torch.zeros(2, 4, L)
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(net, (example,), dynamic_shapes=({0: batch},)), d / "net.pt2")
    rng = np.random.default_rng(0)
    seqs = {f"q{i}": "".join("ACGT"[j] for j in rng.integers(0, 4, L)) for i in range(10)}
    (d / "seqs.fa").write_text("".join(f">{k}\n{v}\n" for k, v in seqs.items()))
    return types.SimpleNamespace(dir=d, model=d / "net.pt2", fasta=d / "seqs.fa", seqs=seqs, net=net)


def score(files, progress=None, **options):
    """pipeline.score on the module's model and FASTA with ``options``."""
    options.setdefault("fasta", files.fasta)
    return pipeline.score(ScoreConfig(model=files.model, **options), progress=progress)


def test_parse_shard():
    from dnalift.io.store import parse_shard

    assert parse_shard("2-of-8") == (2, 8)
    assert parse_shard(" 1-OF-1 ") == (1, 1)
    for bad in ("3-of-2", "0-of-2", "1of2", "a-of-b", "1-of-0", ""):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_output_paths():
    assert pipeline.output_paths("d/out.h5", ["0"]) == [Path("d/out.h5")]
    assert pipeline.output_paths("d/out.h5", ["0", "enhancer"]) == [Path("d/out.0.h5"), Path("d/out.enhancer.h5")]
    assert pipeline.output_paths("d/out", ["1", "2"]) == [Path("d/out.1.h5"), Path("d/out.2.h5")]
    assert pipeline.output_paths("o.hdf5", ["a/b", "c d"]) == [Path("o.a_b.hdf5"), Path("o.c_d.hdf5")]
    # labels that collide once made file-safe are numbered
    assert pipeline.output_paths("o.h5", ["a/b", "a_b"]) == [Path("o.0_a_b.h5"), Path("o.1_a_b.h5")]


def test_union_ranges():
    assert pipeline._union_ranges([[(0, 4), (8, 12)], [(4, 6)], [(10, 14), (20, 20)]]) == [(0, 6), (8, 14)]
    assert pipeline._union_ranges([[], []]) == []


def test_summary_line():
    s = pipeline.ScoreSummary(outputs=[Path("a.h5")], targets=["0"], n_sequences=10, n_scored=6, n_resumed=4,
                              n_skipped=1, seconds=75.2, max_abs_delta=3.14e-6, worst="q3")
    assert s.line() == ("scored 6 sequences, 4 kept from the interrupted run, skipped 1, in 1 min 15 s; worst "
                        "|summation-to-delta error| 3.14e-06 (q3) -> a.h5")


def test_score_progress_and_summary_without_printing(files, tmp_path, capsys):
    calls = []
    out = tmp_path / "o.h5"
    summary = score(files, output=out, n_refs=3, chunk_size=4,
                             targets=[0, 1], progress=lambda done, total: calls.append((done, total)))
    assert capsys.readouterr() == ("", "")
    assert calls[0] == (0, 10) and calls[-1] == (10, 10)
    assert all(b[0] >= a[0] for a, b in zip(calls, calls[1:]))
    assert summary.outputs == [tmp_path / "o.0.h5", tmp_path / "o.1.h5"] and not out.exists()
    assert (summary.n_scored, summary.n_resumed, summary.n_skipped) == (10, 0, 0)
    worst = 0.0
    for path in summary.outputs:
        with open_results(path) as r:
            worst = max(worst, float(np.abs(r.deltas()).max()))
            assert r.attrs["chunk_size"] == 4
    assert math.isclose(summary.max_abs_delta, worst, rel_tol=1e-6)
    assert summary.worst.split(",")[0] in files.seqs


def test_reference_fasta_shared_and_per_sequence(files, tmp_path):
    shared = tmp_path / "shared.fa"
    shared.write_text(">r0\n" + "A" * L + "\n>r1\n" + "GC" * (L // 2) + "\n")
    s = score(files, output=tmp_path / "s.h5", reference=str(shared))
    refs = one_hot_encode(["A" * L, "GC" * (L // 2)]).astype(np.float32)
    with torch.no_grad():
        expected = files.net(torch.from_numpy(refs))[:, 0].mean().item()
    with open_results(s.outputs[0]) as r:
        np.testing.assert_allclose(r.reference_predictions(), expected, atol=1e-5)
        assert r.attrs["n_refs"] == 2 and r.attrs["reference"] == "file"
        assert r.attrs["reference_path"] == str(shared) and len(r.attrs["reference_sha256"]) == 64
        np.testing.assert_allclose(r.projected().sum(axis=(1, 2)), r.predictions() - r.reference_predictions(),
                                   atol=2e-5)
    # per sequence: NAME/0, NAME/1 records (here: each sequence reversed, and all T)
    per = tmp_path / "per.fa"
    per.write_text("".join(f">{k}/0\n{v[::-1]}\n>{k}/1\n{'T' * L}\n" for k, v in files.seqs.items()))
    s = score(files, output=tmp_path / "p.h5", reference=str(per))
    R = np.stack([one_hot_encode([v[::-1], "T" * L]) for v in files.seqs.values()]).astype(np.float32)
    with torch.no_grad():
        expected = files.net(torch.from_numpy(R.reshape(-1, 4, L)))[:, 0].reshape(-1, 2).mean(1).numpy()
    with open_results(s.outputs[0]) as r:
        np.testing.assert_allclose(r.reference_predictions(), expected, atol=1e-5)
    # a sequence without its references, and references of the wrong length
    first = next(iter(files.seqs))
    partial = tmp_path / "partial.fa"
    partial.write_text(f">{first}/0\n{'A' * L}\n")
    with pytest.raises(ReferenceInputError, match="no references for sequence"):
        score(files, output=tmp_path / "x.h5", reference=str(partial))
    short = tmp_path / "short.fa"
    short.write_text(">r\nACGT\n")
    with pytest.raises(ReferenceInputError, match="length 4"):
        score(files, output=tmp_path / "y.h5", reference=str(short))
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".h5") == ["p.h5", "s.h5"]


def test_failure_clean_up(files, tmp_path, monkeypatch):
    """Data error mid-run: nothing stays. Interrupt in the first chunk: nothing to resume, nothing stays.
    Interrupt later: the partial file stays."""
    for exc, at, kept in ((SequenceError("bad"), 2, False), (KeyboardInterrupt(), 1, False),
                          (KeyboardInterrupt(), 3, True), (RuntimeError("CUDA out of memory"), 2, True)):
        out = tmp_path / f"{type(exc).__name__}{at}.h5"
        restore = fail_attribute_on_call(monkeypatch, at, exc)
        with pytest.raises(type(exc)):
            score(files, output=out, n_refs=2, chunk_size=4)
        restore()
        assert not out.exists()
        assert partial_path(out).exists() == kept, (exc, at)


def test_conservation_warning_names_sequences(files, tmp_path, monkeypatch):
    import dnalift.attribution.engine as engine

    real = engine.attribute

    def off(*args, **kwargs):
        # Break conservation for the second sequence and let the engine warn with the names the pipeline gave.
        res = real(*args, **kwargs)
        res.deltas[1] += 0.5
        engine._warn_deltas(res.deltas, res.predictions - res.reference_predictions, res.deltas.dtype, None,
                            names=kwargs["names"])
        return res

    monkeypatch.setattr(engine, "attribute", off)
    from dnalift.errors import ConservationWarning

    with pytest.warns(ConservationWarning, match=r"worst: q1 \(0\.5"):
        score(files, output=tmp_path / "w.h5", n_refs=2)


def test_logging_only(files, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="dnalift"):
        score(files, output=tmp_path / "l.h5", n_refs=2)
    assert any("10 sequences of length 16" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------- config, inputs, fingerprints


def test_score_config_checks_every_option(files, tmp_path):
    from dnalift.options import Mode, ReferenceMethod
    from dnalift.errors import OptionError

    c = ScoreConfig(model=files.model, fasta=files.fasta, output=tmp_path / "o.h5", rule="genomics",
                    shard=" 2-OF-3 ", targets="0", allow_gradient=["aten.erf", " "])
    assert c.rule is Mode.GENOMICS and c.shard == "2-of-3" and c.targets == ("0",) and c.allow_gradient == ("erf",)
    assert c.reference is ReferenceMethod.DINUC and c.reference_file is None
    bad = {"n_refs": 0, "seed": -1, "width": 0, "rule": "deeplift", "device": "mps", "shard": "3-of-2",
           "reference": str(tmp_path / "none.fa"), "batch_size": 1.5, "targets": (), "n_policy": "drop"}
    for argument, value in bad.items():
        with pytest.raises(OptionError) as info:
            ScoreConfig(model=files.model, fasta=files.fasta, output=tmp_path / "o.h5", **{argument: value})
        assert info.value.argument == argument, (argument, info.value)
    with pytest.raises(OptionError, match="exactly one of fasta"):
        ScoreConfig(model=files.model, output=tmp_path / "o.h5")
    with pytest.raises(OptionError, match="genome"):
        ScoreConfig(model=files.model, regions=files.fasta, output=tmp_path / "o.h5")


def test_model_loaded_once(files, tmp_path, monkeypatch):
    """FASTA, and regions without width (the model gives the width): one load each."""
    import dnalift.models as models

    real, calls = models.load_model, []

    def counting(*args, **kwargs):
        calls.append(kwargs.get("input_length"))
        return real(*args, **kwargs)

    monkeypatch.setattr(models, "load_model", counting)
    score(files, output=tmp_path / "a.h5", n_refs=2)
    assert calls == [L]
    genome = tmp_path / "g.fa"
    genome.write_text(">chr1\n" + "ACGT" * 30 + "\n")
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t40\t60\n")
    calls.clear()
    summary = score(files, fasta=None, regions=bed, genome=genome, output=tmp_path / "b.h5", n_refs=2)
    assert calls == [None] and summary.n_sequences == 1
    with open_results(tmp_path / "b.h5") as r:
        assert r.length == L and r.attrs["input_kind"] == "regions"


def test_resume_compares_content_not_paths(files, tmp_path, monkeypatch):
    """A partial file written from an absolute path resumes from a relative path of the same FASTA (and a copy
    of it); the fingerprint attributes are recorded."""
    import os

    out = tmp_path / "o.h5"
    restore = fail_attribute_on_call(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        score(files, output=out, n_refs=2, chunk_size=4)
    restore()
    copy = tmp_path / "copy" / "seqs.fa"
    copy.parent.mkdir()
    copy.write_bytes(files.fasta.read_bytes())
    monkeypatch.chdir(tmp_path)
    summary = score(files, fasta=os.path.relpath(copy), output="o.h5", n_refs=2, chunk_size=4, resume=True)
    assert (summary.n_resumed, summary.n_scored) == (4, 6)
    with open_results(out) as r:
        attrs = r.attrs
    assert len(attrs["input_sha256"]) == 64 and len(attrs["model_sha256"]) == 64
    assert attrs["input"] == str(files.fasta) and "reference_sha256" not in attrs  # the first run's provenance


def test_fingerprint_is_the_content(files, tmp_path):
    from dnalift.io.fasta import open_fasta

    rewrapped = tmp_path / "wrapped.fa"
    rewrapped.write_text("".join(f">{k}\n{v[:8].lower()}\n{v[8:].lower()}\n" for k, v in files.seqs.items()))
    with open_fasta(files.fasta) as a, open_fasta(rewrapped) as b:
        assert a.scan().sha256 == b.scan().sha256  # line wrapping and case do not change the content
    changed = tmp_path / "changed.fa"
    items = list(files.seqs.items())
    items[3] = (items[3][0], "A" + items[3][1][1:] if items[3][1][0] != "A" else "C" + items[3][1][1:])
    changed.write_text("".join(f">{k}\n{v}\n" for k, v in items))
    with open_fasta(files.fasta) as a, open_fasta(changed) as b:
        assert a.scan().sha256 != b.scan().sha256


def test_warns_about_u_and_mostly_n(files, tmp_path, caplog):
    fa = tmp_path / "rna.fa"
    records = {"a": "ACGU" * 4, "b": "N" * 9 + "ACGTACG", "c": "ACGT" * 4, "d": "UUUU" + "ACGT" * 3}
    fa.write_text("".join(f">{k}\n{v}\n" for k, v in records.items()))
    with caplog.at_level(logging.WARNING, logger="dnalift"):
        score(files, fasta=fa, output=tmp_path / "o.h5", n_refs=2)
    text = caplog.text
    assert "2 of 4 sequences contain U" in text and "'a', 'd'" in text
    assert "1 of 4 sequences are mostly N" in text and "'b'" in text


def test_output_lock_refuses_a_second_run_and_keeps_its_partial_file(files, tmp_path):
    from dnalift.errors import OutputInUseError
    from dnalift.io.store import OutputLock

    out = tmp_path / "o.h5"
    partial = partial_path(out)
    partial.write_bytes(b"a live partial file")
    with OutputLock(out):
        with pytest.raises(OutputInUseError, match="being written by another dnalift run") as info:
            score(files, output=out, n_refs=2, force=True)
        assert info.value.details["pid"] == __import__("os").getpid()
    assert partial.read_bytes() == b"a live partial file"
    score(files, output=out, n_refs=2, force=True)  # the lock is gone: the run starts over
    assert out.exists() and not partial.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["o.h5"]


def test_output_may_not_be_an_input(files, tmp_path):
    from dnalift.errors import OptionError

    before = files.fasta.read_bytes()
    with pytest.raises(OptionError, match="is the fasta file the run reads"):
        score(files, output=files.fasta, force=True)
    with pytest.raises(OptionError, match="is the model file"):
        score(files, output=files.model, force=True)
    assert files.fasta.read_bytes() == before


def test_failed_run_leaves_no_empty_folder(files, tmp_path):
    with pytest.raises(TargetError):
        score(files, output=tmp_path / "new" / "deeper" / "o.h5", targets=[7])
    assert list(tmp_path.iterdir()) == []


def _worst_in_files(paths) -> tuple[float, str, int]:
    """The largest finite |delta| over the files, its row's name (and target), the non-finite deltas: read back."""
    best, name, bad = -1.0, None, 0
    for path in paths:
        with open_results(path) as r:
            d = np.abs(r.deltas().astype(np.float64))
            bad += int((~np.isfinite(d)).sum())
            d[~np.isfinite(d)] = -1.0
            if d.max() > best:
                best, name = float(d.max()), f"{r.names_of(int(np.argmax(d)))}, target {r.attrs['target']}"
    return best, name, bad


def test_worst_delta_is_carried_from_the_chunks_not_reread(files, tmp_path, monkeypatch):
    """A fresh run reads no result file back for its summary; a resumed one reads the kept rows once (a delta
    planted in a kept row of the partial file is the one reported)."""
    import h5py

    import dnalift.io.store.reader as reader

    def refuse(*args, **kwargs):
        raise AssertionError("a result file was read back")

    with monkeypatch.context() as m:
        m.setattr(reader.ResultReader, "__init__", refuse)
        summary = score(files, output=tmp_path / "a.h5", n_refs=3, chunk_size=4, targets=[0, 1])
    best, name, bad = _worst_in_files(summary.outputs)
    assert (summary.max_abs_delta, summary.worst, summary.n_nonfinite) == (pytest.approx(best, rel=0), name, bad)
    assert 0 < best < 1e-3

    out = tmp_path / "b.h5"
    restore = fail_attribute_on_call(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        score(files, output=out, n_refs=3, chunk_size=4, targets=[0, 1], allow_nonfinite=True)
    restore()
    with h5py.File(partial_path(tmp_path / "b.1.h5"), "r+") as f:  # rows 0-3 are kept: plant two deltas there
        f["deltas"][2], f["deltas"][1] = -0.5, np.nan
    with monkeypatch.context() as m:
        m.setattr(reader.ResultReader, "__init__", refuse)
        summary = score(files, output=out, n_refs=3, chunk_size=4, targets=[0, 1], resume=True, allow_nonfinite=True)
    assert (summary.n_resumed, summary.max_abs_delta, summary.worst, summary.n_nonfinite) == (4, 0.5, "q2, target 1", 1)
    assert "worst |summation-to-delta error| 0.5 (q2, target 1); 1 rows with NaN" in summary.line()
    assert _worst_in_files(summary.outputs) == (0.5, "q2, target 1", 1)


def test_delta_tally_keeps_the_first_of_equal_deltas_and_joins_parts():
    from dnalift.pipeline.outputs import DeltaTally

    deltas = np.array([[0.1, -0.3], [np.inf, 0.3], [0.2, 0.0], [-0.3, np.nan]])  # (rows, targets)
    names = ["a", "b", "c", "d"]
    whole = DeltaTally(["x", "y"])
    whole.add(deltas, names.__getitem__, start=0)
    assert (whole.value, whole.name, whole.n_nonfinite) == (0.3, "d, target x", 2)  # first target, then first row
    parts = [DeltaTally(["x", "y"]) for _ in range(2)]
    parts[0].add(deltas[:2], names.__getitem__, start=0)
    parts[1].add(deltas[2:], lambda i: names[2 + i], start=2)
    joined = DeltaTally(["x", "y"])
    for p in parts[::-1]:
        joined.merge(p)
    assert (joined.value, joined.name, joined.n_nonfinite) == (0.3, "d, target x", 2)
    single = DeltaTally(["only"])
    single.add(deltas[:, :1], names.__getitem__, start=0)
    assert (single.value, single.name) == (0.3, "d")


def test_options_reach_the_engine_as_enum_members(files, tmp_path, monkeypatch):
    """ScoreConfig's members go to the engine as they are (no str round trip); the engine keeps them."""
    import dnalift.attribution.engine as engine
    from dnalift.options import MaxRule, Mode, Precision

    real, seen = engine.attribute, []

    def attribute(*args, **kwargs):
        seen.append(kwargs)
        result = real(*args, **kwargs)
        seen.append(result)
        return result

    monkeypatch.setattr(engine, "attribute", attribute)
    score(files, output=tmp_path / "o.h5", n_refs=2, rule="genomics", max_rule="gradient")
    kwargs, result = seen[0], seen[1]
    assert kwargs["rule"] is Mode.GENOMICS and kwargs["max_rule"] is MaxRule.GRADIENT
    assert kwargs["precision"] is Precision.FLOAT32
    assert result.rule is Mode.GENOMICS and result.max_rule is MaxRule.GRADIENT
    program = torch.export.load(files.model)  # one plan per mode, whether named by its member or its string
    plan = engine.plan_for(program, mode="genomics", max_rule="gradient")
    assert engine.plan_for(program, mode=Mode.GENOMICS, max_rule=MaxRule.GRADIENT) is plan
    assert plan.mode is Mode.GENOMICS and {s.mode for s in plan.steps if s.kind == "nonlinear"} <= set(Mode)
