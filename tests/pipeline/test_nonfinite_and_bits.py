"""What a scoring run promises about its numbers (issue 24): NaN or infinite values stop it (or are kept, flagged,
and refused downstream), every integer option is bounded by what the file holds, and a resumed run gives the bits
of an uninterrupted one while shards and other batch sizes agree to float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import fail_attribute_on_call, write_fasta
from dnalift import pipeline
from dnalift.errors import NonFiniteError, OptionError, ResumeMismatchError
from dnalift.io.store import merge_results, open_results, partial_path
from dnalift.pipeline.config import ScoreConfig

L, N = 40, 30


class Conv(nn.Module):
    """Convolutions and a dense layer: kernels whose CPU blocking depends on the batch's shape."""

    def __init__(self, bias_nan: bool = False):
        super().__init__()
        self.conv = nn.Conv1d(4, 16, 7, padding=3)
        self.conv2 = nn.Conv1d(16, 16, 5, padding=2)
        self.out = nn.Linear(16 * (L // 4), 2)
        if bias_nan:
            with torch.no_grad():
                self.out.bias[0] = float("nan")

    def forward(self, x):
        h = torch.max_pool1d(torch.relu(self.conv(x)), 2)
        h = torch.max_pool1d(torch.relu(self.conv2(h)), 2)
        return self.out(h.flatten(1))


def _export(module, path):
    torch.manual_seed(0)
    module = module.eval()
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(module, (torch.zeros(2, 4, L),), dynamic_shapes=({0: batch},)), path)
    return path


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    d = tmp_path_factory.mktemp("bits")
    rng = np.random.default_rng(3)
    torch.manual_seed(0)
    fasta = write_fasta(d / "seqs.fa", ((f"q{i:02d}", "".join("ACGT"[j] for j in rng.integers(0, 4, L)))
                                       for i in range(N)))
    torch.manual_seed(0)
    model = _export(Conv(), d / "conv.pt2")
    torch.manual_seed(0)
    nan_model = _export(Conv(bias_nan=True), d / "nan.pt2")
    return {"dir": d, "fasta": fasta, "model": model, "nan": nan_model}


def _score(kit, out, **options):
    options.setdefault("n_refs", 3)
    options.setdefault("chunk_size", 8)
    return pipeline.score(ScoreConfig(model=options.pop("model", kit["model"]), fasta=kit["fasta"], output=out,
                                      **options))


def _hyp(path):
    with open_results(path) as r:
        return r.hypothetical(), r.predictions(), r.deltas()


# --- NaN and infinity ---------------------------------------------------------------------------------------


def test_a_nan_prediction_stops_the_run_naming_sequences_and_writes_nothing(kit, tmp_path):
    with pytest.raises(NonFiniteError, match=r"NaN or infinite prediction.*'q00', 'q01', 'q02' and 5 more.*"
                                             r"allow_nonfinite=True"):
        _score(kit, tmp_path / "o.h5", model=kit["nan"])
    assert list(tmp_path.iterdir()) == []


def test_allow_nonfinite_keeps_and_flags_rows_and_downstream_refuses_them(kit, tmp_path, caplog):
    from dnalift.io.modisco import write_modisco_npz

    out = tmp_path / "o.h5"
    summary = _score(kit, out, model=kit["nan"], allow_nonfinite=True)
    assert summary.n_nonfinite == N and "every delta is NaN or infinite" in summary.line()
    assert f"{N} rows with NaN or infinite values" in summary.line() and "no rows" not in summary.line()
    with open_results(out) as r:
        assert r.attrs["allow_nonfinite"] and np.isnan(r.predictions()).all()
        with pytest.raises(NonFiniteError, match=r"'q00' \(row 0\) has a NaN or infinite prediction .*allow_nonfinite"):
            r.refuse_nonfinite(0, 4, "it has no logo", r.hypothetical(slice(0, 4)))
    with pytest.raises(NonFiniteError, match="TF-MoDISco cannot use"):
        write_modisco_npz(out, tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.h5"]


def test_summary_names_the_worst_finite_delta_and_counts_the_rest():
    from dnalift.pipeline.outputs import ScoreSummary

    s = ScoreSummary(outputs=["o.h5"], targets=["0"], n_sequences=3, n_scored=3, n_resumed=0, n_skipped=0,
                     seconds=1.0, max_abs_delta=2e-7, worst="x" * 57 + "...", n_nonfinite=1)
    assert "worst |summation-to-delta error| 2e-07" in s.line() and "1 rows with NaN" in s.line()


def test_long_names_are_cut_in_the_summary(tmp_path, kit):
    fasta = write_fasta(tmp_path / "long.fa", [("n" * 5000, "ACGT" * (L // 4))])
    summary = pipeline.score(ScoreConfig(model=kit["model"], fasta=fasta, output=tmp_path / "o.h5", n_refs=2))
    assert len(summary.worst) == 60 and len(summary.line()) < 300


# --- integer options ------------------------------------------------------------------------------------------


def test_seed_is_bounded_by_the_file_and_the_largest_seed_resumes(kit, tmp_path, monkeypatch):
    with pytest.raises(OptionError, match="seed must be at most 18446744073709551615"):
        ScoreConfig(model=kit["model"], fasta=kit["fasta"], output=tmp_path / "o.h5", seed=2**64)
    whole = tmp_path / "whole.h5"
    _score(kit, whole, seed=2**64 - 1)
    out = tmp_path / "o.h5"
    restore = fail_attribute_on_call(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        _score(kit, out, seed=2**64 - 1)
    restore()
    _score(kit, out, seed=2**64 - 1, resume=True)
    with open_results(out) as r:
        assert int(r.attrs["seed"]) == 2**64 - 1
    np.testing.assert_array_equal(_hyp(out)[0], _hyp(whole)[0])


@pytest.mark.parametrize("option, value", [("n_refs", 2**31), ("width", 2**28), ("batch_size", 2**31),
                                           ("chunk_size", 2**31), ("shard", f"1-of-{2**31}")])
def test_every_integer_option_has_its_upper_bound(kit, tmp_path, option, value):
    with pytest.raises(OptionError, match="at most"):
        ScoreConfig(model=kit["model"], fasta=kit["fasta"], output=tmp_path / "o.h5", **{option: value})


# --- the same result ------------------------------------------------------------------------------------------


def _values(path):
    """Per row: prediction, reference prediction, and the total contribution of the observed bases."""
    with open_results(path) as r:
        return r.predictions(), r.reference_predictions(), r.projected().sum(axis=(1, 2)), r.hypothetical()


def test_shards_and_batch_sizes_agree_to_float32_rounding_not_bits(kit, tmp_path):
    """What README promises: predictions, reference predictions and each sequence's total contribution agree to
    1e-5 relative; single scores mostly too, but not bit for bit, and a score may move between positions where a
    rule's choice (a max-pool tie, a difference from the reference that rounds to zero) flips."""
    whole = tmp_path / "whole.h5"
    _score(kit, whole, batch_size=64)
    parts = [tmp_path / f"p{i}.h5" for i in (1, 2, 3)]
    for i, p in enumerate(parts, 1):
        _score(kit, p, shard=f"{i}-of-3", batch_size=(64, 7, 64)[i - 1])  # shards may use other batch sizes
    merged = tmp_path / "merged.h5"
    merge_results(parts, merged)
    other = tmp_path / "b5.h5"
    _score(kit, other, batch_size=5)
    pred, ref, total, hyp = _values(whole)
    scale = np.maximum(np.abs(pred - ref), 1.0)
    for path in (merged, other):
        p2, r2, t2, h2 = _values(path)
        np.testing.assert_allclose(p2, pred, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(r2, ref, rtol=1e-5, atol=1e-7)
        assert (np.abs(t2 - total) <= 1e-5 * scale).all()
        row_max = np.abs(hyp).reshape(len(hyp), -1).max(axis=1)
        close = np.abs(h2 - hyp).reshape(len(hyp), -1).max(axis=1) <= 1e-5 * row_max
        assert close.mean() >= 0.9, close
    assert not np.array_equal(_values(other)[3], hyp)  # the bits depend on the batch: hence no bit-for-bit promise


def test_resume_keeps_the_batch_size_and_gives_the_uninterrupted_bits(kit, tmp_path, monkeypatch):
    whole = tmp_path / "whole.h5"
    _score(kit, whole, batch_size=5)
    out = tmp_path / "o.h5"
    restore = fail_attribute_on_call(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        _score(kit, out, batch_size=5)
    restore()
    with pytest.raises(ResumeMismatchError, match="batches of 5 and this run asks for 64"):
        _score(kit, out, batch_size=64, resume=True)
    assert partial_path(out).exists()
    _score(kit, out, resume=True)  # no batch size: the interrupted run's
    with open_results(out) as r:
        assert int(r.attrs["batch_size"]) == 5
    for a, b in zip(_hyp(out), _hyp(whole)):
        np.testing.assert_array_equal(a, b)
