"""Scoring on several devices (issue 23), with CPU stand-ins (``cpu,cpu``): the same datasets as one device, a
dead worker and resume, a device that is not there, the device log line, the part split."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import types

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import write_fasta
from dnalift import pipeline
from dnalift.cli import cli
from dnalift.errors import DeviceWorkerError, OptionError
from dnalift.io.store import partial_path
from dnalift.pipeline.config import ScoreConfig, parse_device
from dnalift.pipeline.devices import part_rows, parts_folder
from toy_models import conv_mean_linear

L = 24
N = 14


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("devices")
    net = conv_mean_linear(6, 5, 3, seed=0, scale=3)
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(net, (torch.zeros(2, 4, L),), dynamic_shapes=({0: batch},)), d / "net.pt2")
    rng = np.random.default_rng(3)
    fasta = write_fasta(d / "seqs.fa", ((f"r{i}", "".join("ACGT"[j] for j in rng.integers(0, 4, L)))
                                        for i in range(N)))
    return types.SimpleNamespace(dir=d, model=d / "net.pt2", fasta=fasta)


def config(files, output, **options):
    options = {"n_refs": 3, "chunk_size": 3, **options}
    return ScoreConfig(model=files.model, fasta=files.fasta, output=output, **options)


def datasets(path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[...]) if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_datasets(a, b):
    a, b = datasets(a), datasets(b)
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(b[key], a[key], err_msg=key)  # the same bits


def test_device_lists_are_parsed_without_torch():
    assert parse_device(" CUDA:0, cuda:1 ") == "cuda:0,cuda:1"
    assert parse_device("cpu,cpu") == "cpu,cpu"
    assert parse_device("cuda:all") == "cuda:all"
    for bad, word in (("cpu,gpu", "'gpu'"), ("auto,cpu", "'auto'"), ("cuda:all,cpu", "'cuda:all'"),
                      ("cpu,", "''"), ("cuda:x", "cuda:INDEX")):
        with pytest.raises(OptionError, match=word):
            parse_device(bad)
    with pytest.raises(OptionError, match="mps"):
        parse_device("cpu,mps")


def test_a_shard_on_several_devices_is_refused(files, tmp_path):
    with pytest.raises(OptionError, match="one device"):
        config(files, tmp_path / "o.h5", device="cpu,cpu", shard="1-of-2")


def test_parts_are_whole_chunks_covering_every_row_once():
    assert [part_rows(10, 3, i, 2) for i in (1, 2)] == [(0, 6), (6, 10)]  # chunks 0-1 | 2-3 (the last short)
    assert [part_rows(10, 3, i, 3) for i in (1, 2, 3)] == [(0, 3), (3, 6), (6, 10)]
    assert [part_rows(4, 3, i, 3) for i in (1, 2, 3)] == [(0, 0), (0, 3), (3, 4)]  # more parts than chunks
    for n, chunk, k in ((1000, 7, 4), (5, 10, 2), (0, 3, 2), (64, 8, 8)):
        parts = [part_rows(n, chunk, i, k) for i in range(1, k + 1)]
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
        assert all(start % chunk == 0 for start, stop in parts if stop > start)


def test_several_devices_give_the_datasets_of_one(files, tmp_path):
    one = tmp_path / "one" / "s.h5"
    alone = pipeline.score(config(files, one, targets=(0, 2)))
    seen = []
    summary = pipeline.score(config(files, tmp_path / "two" / "s.h5", targets=(0, 2), device="cpu,cpu"),
                             progress=lambda done, total: seen.append((done, total)))
    assert [p.name for p in summary.outputs] == ["s.0.h5", "s.2.h5"]
    assert summary.n_sequences == summary.n_scored == N and summary.n_resumed == 0
    # the parts' worst deltas, carried from their chunks, join into the one device's
    assert (summary.max_abs_delta, summary.worst, summary.n_nonfinite) == (alone.max_abs_delta, alone.worst, 0)
    assert alone.max_abs_delta > 0 and alone.worst.endswith(("target 0", "target 2"))
    for target in ("0", "2"):
        assert_same_datasets(tmp_path / "one" / f"s.{target}.h5", tmp_path / "two" / f"s.{target}.h5")
        with h5py.File(tmp_path / "two" / f"s.{target}.h5", "r") as f:
            assert "shard" not in f.attrs and f.attrs["merged_from"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["s.0.h5", "s.2.h5"]  # no parts left
    assert seen and {total for _, total in seen} == {N}  # the total of both parts from the first call
    assert seen[-1] == (N, N) and [d for d, _ in seen] == sorted(d for d, _ in seen)


@pytest.mark.slow
def _score_killing_the_second_worker(files, out):
    """Score on cpu,cpu and SIGKILL the second worker once three rows are done; the DeviceWorkerError, or None
    when the second worker had already finished its part before the kill (a race of the test, not of dnalift)."""
    killed = []

    def progress(done, total):  # kill the second worker once a chunk is done
        if done >= 3 and not killed:
            workers = [p for p in multiprocessing.active_children() if p.name.startswith("dnalift-cpu")]
            victim = max(workers, key=lambda p: p.name)
            os.kill(victim.pid, signal.SIGKILL)
            killed.append(victim.name)

    try:
        pipeline.score(config(files, out, device="cpu,cpu"), progress=progress)
    except DeviceWorkerError as e:
        assert killed
        return e
    return None


def test_a_dead_worker_stops_the_other_and_resume_finishes_each_part(files, tmp_path):
    for attempt in range(5):  # the kill must land while the second worker still runs: try again if it did not
        out = tmp_path / f"run{attempt}" / "s.h5"
        error = _score_killing_the_second_worker(files, out)
        if error is not None:
            break
    assert error is not None, "the second worker finished before the kill in every attempt"
    assert re.search(r"the worker on cpu \(part 2 of 2\) was killed \(SIGKILL", str(error))
    assert "resume=True" in str(error)
    assert not out.exists()
    left = {p.name for p in parts_folder(out).iterdir()}
    assert partial_path(parts_folder(out) / "2-of-2.h5").name in left  # the killed part, resumable
    assert left & {"1-of-2.h5", partial_path(parts_folder(out) / "1-of-2.h5").name}  # stopped, or done before
    assert not multiprocessing.active_children()

    summary = pipeline.score(config(files, out, device="cpu,cpu", resume=True))
    assert summary.n_sequences == N and summary.n_resumed > 0 and summary.n_scored == N - summary.n_resumed
    assert not parts_folder(out).exists()
    pipeline.score(config(files, tmp_path / "one.h5"))
    assert_same_datasets(tmp_path / "one.h5", out)


def test_a_device_that_is_not_there_is_refused_in_one_line(files, tmp_path):
    out = tmp_path / "o"
    result = CliRunner().invoke(cli, ["score", str(files.model), str(files.fasta), "-o", str(out / "s.h5"),
                                      "--device", "cpu,cuda:7"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "'cuda:7'" in lines[0], result.stderr
    assert not out.exists()


def test_the_device_is_logged_at_the_start(files, tmp_path):
    args = ["score", str(files.model), str(files.fasta), "--n-refs", "2"]
    result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "a.h5"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "device" in line]
    assert len(lines) == 1, result.stderr
    threads = torch.get_num_threads()
    assert lines[0].startswith("dnalift: device cpu (") and f"{threads} threads" in lines[0]
    assert lines[0].endswith("sequence-reference pairs per batch (automatic); precision float32"), lines[0]
    assert " GiB)" in lines[0]  # the memory
    result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "b.h5"), "--batch-size", "7", "-q"])
    assert result.exit_code == 0 and "device" not in result.stderr  # --quiet: errors only
    result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "c.h5"), "--batch-size", "7"])
    assert "; 7 sequence-reference pairs per batch (--batch-size); precision float32" in result.stderr


@pytest.mark.slow
def test_a_data_error_in_the_workers_leaves_nothing(files, tmp_path):
    from dnalift.errors import SequenceError

    bad = write_fasta(tmp_path / "bad.fa", [("a", "ACGT" * 6), ("b", "ACGT" * 5 + "AC!T")])
    out = tmp_path / "o"
    with pytest.raises(SequenceError, match="'!'"):
        pipeline.score(ScoreConfig(model=files.model, fasta=bad, output=out / "s.h5", n_refs=2, device="cpu,cpu"))
    assert not out.exists() or not any(out.iterdir())
