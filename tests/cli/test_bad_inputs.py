"""The table of bad inputs and faults (issue 14): every way a user's input or the machine can fail a command.

Each row runs one command in-process (one small model and shared fixtures, so the table takes seconds) and
asserts: the exit code (2 for a wrong option, 1 for bad data or a fault, 130 for Ctrl-C), exactly one line on
stderr that starts with ``Error:`` (after the expected number of ``dnalift: warning:`` lines), no traceback,
no wording of an internal error, nothing left in the output folder but the files the row allows (a partial file
that ``--resume`` can finish, and the files that were there before, byte for byte), and the inputs unchanged.
"""

from __future__ import annotations

import dataclasses
import errno
import gzip
import hashlib
import shutil
import struct
import sys
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from conftest import fail_attribute_on_call, write_fasta
from dnalift.cli import cli
from dnalift.io.store import OutputLock, open_results, partial_path, validate_results

sys.path.insert(0, str(Path(__file__).parents[1]))
import toy_models  # noqa: E402
from toy_models import FixedLength, NoRule  # noqa: E402

L, N = 24, 12


class Tiny(nn.Module):
    def __init__(self, n_out: int = 2):
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 5, padding=2)
        self.out = nn.Linear(6, n_out)

    def forward(self, x):
        return self.out(torch.relu(self.conv(x)).mean(dim=-1))


def _bgzf_block(data: bytes) -> bytes:
    """One BGZF block (a gzip member with the BC extra field), as bgzip writes them."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = deflate.compress(data) + deflate.flush()
    header = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00"
    size = len(header) + 2 + len(body) + 8
    return header + struct.pack("<H", size - 1) + body + struct.pack("<II", zlib.crc32(data), len(data))


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Models, sequences, a genome, a scored file, a partial file and shards, shared read-only by every row."""
    d = tmp_path_factory.mktemp("kit")
    rng = np.random.default_rng(7)
    seqs = ["".join("ACGT"[i] for i in rng.integers(0, 4, L)) for _ in range(N)]
    names = [f"s{i:02d}" for i in range(N)]
    k = {"dir": d, "seqs": seqs, "names": names, "fasta": write_fasta(d / "seqs.fa", zip(names, seqs))}
    torch.manual_seed(0)
    tiny = Tiny().eval()
    batch = torch.export.Dim("batch", min=1)
    example = torch.zeros(2, 4, L)
    torch.export.save(torch.export.export(tiny, (example,), dynamic_shapes=({0: batch},)), d / "model.pt2")
    k["model"] = d / "model.pt2"
    torch.jit.save(torch.jit.trace(FixedLength().eval(), torch.zeros(2, 4, 30)), d / "fixed30.pt")
    torch.jit.save(torch.jit.trace(NoRule().eval(), example), d / "norule.pt")
    torch.jit.save(torch.jit.trace(toy_models.FiveChannel().eval(), torch.zeros(2, 5, L)), d / "five.pt")
    torch.save(toy_models.MarkerModule(d / "unpickled.txt"), d / "whole.pt")
    (d / "junk.bin").write_bytes(bytes(range(256)) * 4)
    chroms = {"chr1": "".join("ACGT"[i] for i in rng.integers(0, 4, 120)),
              "chr2": "".join("ACGT"[i] for i in rng.integers(0, 4, 80))}
    k["genome"] = write_fasta(d / "genome.fa", chroms.items())
    (d / "peaks.bed").write_text("chr1\t10\t40\tr1\nchr2\t30\t50\tr2\n")
    k["bed"] = d / "peaks.bed"
    # a scored file, a partial file (interrupted after one chunk of 4 rows), shards of one run
    k["scored"] = d / "scored.h5"
    assert invoke("score", k["model"], k["fasta"], "-o", k["scored"], "--n-refs", 2).exit_code == 0
    mp = pytest.MonkeyPatch()
    fail_attribute_on_call(mp, 2)
    assert invoke("score", k["model"], k["fasta"], "-o", d / "cut.h5", "--n-refs", 2, "--chunk-size", 4).exit_code == 130
    mp.undo()
    k["partial"] = partial_path(d / "cut.h5")
    assert k["partial"].exists()
    for i in (1, 2):
        assert invoke("score", k["model"], k["fasta"], "-o", d / f"part{i}.h5", "--n-refs", 2,
                      "--shard", f"{i}-of-2").exit_code == 0
    # shard 2 of the same run on another FASTA with the same names, at the same relative path elsewhere
    other = d / "other"
    other.mkdir()
    changed = list(seqs)
    changed[-1] = changed[-1][::-1]
    write_fasta(other / "seqs.fa", zip(names, changed))
    assert invoke("score", k["model"], other / "seqs.fa", "-o", other / "part2.h5", "--n-refs", 2,
                  "--shard", "2-of-2").exit_code == 0
    k["other_part2"] = other / "part2.h5"
    k["changed_fasta"] = other / "seqs.fa"
    # issue 24: a model that gives NaN, a file scored from it with --allow-nonfinite, a scripted model whose
    # kernel (15) is longer than a short --width
    nan = Tiny().eval()
    with torch.no_grad():
        nan.out.bias[0] = float("nan")
    torch.export.save(torch.export.export(nan, (example,), dynamic_shapes=({0: batch},)), d / "nan.pt2")
    k["nan_model"] = d / "nan.pt2"
    k["nan_scored"] = d / "nan_scored.h5"
    assert invoke("score", k["nan_model"], k["fasta"], "-o", k["nan_scored"], "--n-refs", 2,
                  "--allow-nonfinite").exit_code == 0
    torch.jit.save(torch.jit.script(toy_models.Kernel15().eval()), d / "kernel15.pt")
    return k


@dataclasses.dataclass
class Case:
    """One row: ``args(kit, out)`` -> the command line; ``prepare(kit, out, monkeypatch)`` makes the folder's
    files before the run; ``keep`` names the files that may (or must, when they were prepared) be there after."""

    id: str
    args: Callable
    code: int
    words: tuple = ()
    prepare: Callable | None = None
    keep: tuple = ()
    warnings: int = 0


def _score(*extra):
    return lambda k, out: ["score", k["model"], k["fasta"], "-o", out / "o.h5", "--n-refs", 2, *extra]


def _score_on(seqs_file, *extra, model=None):
    def args(k, out):
        path = seqs_file(k, out)
        return ["score", model(k) if model else k["model"], path, "-o", out / "o.h5", "--n-refs", 2, *extra]
    return args


def _write(name, content):
    """A file ``name`` beside the folder (written by the prepare step) -> its path."""
    def make(k, out):
        path = out.parent / name
        if not path.exists():
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content if isinstance(content, str) else content(k))
        return path
    return make


def _regions(bed_text, *extra):
    def args(k, out):
        bed = out.parent / "r.bed"
        bed.write_text(bed_text)
        return ["score", k["model"], "--regions", bed, "--genome", k["genome"], "--width", L, "-o", out / "o.h5",
                "--n-refs", 2, *extra]
    return args


def _copy_partial(k, out, monkeypatch=None):
    shutil.copy(k["partial"], partial_path(out / "o.h5"))


def _hold_lock(k, out, monkeypatch):
    """Another run holds the output's lock and has written a partial file; returns its release."""
    _copy_partial(k, out)
    return OutputLock(out / "o.h5").acquire().release


def _truncated(k, out) -> Path:
    path = out.parent / "truncated.h5"
    blob = k["scored"].read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    return path


def _full_disk_after_first_chunk(k, out, monkeypatch):
    import dnalift.io.store.writer as writer

    calls = []

    class Usage:
        def __init__(self, free):
            self.free = free

    def disk_usage(path):
        calls.append(1)
        return Usage(10 ** 12 if len(calls) == 1 else 1000)

    monkeypatch.setattr(writer.shutil, "disk_usage", disk_usage)


def _write_fails_with_enospc(k, out, monkeypatch):
    import dnalift.io.store.writer as writer

    real, calls = writer.ResultWriter._flush_chunk, []

    def flush(self, c, p):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("Unable to synchronously flush file (file write failed: errno = 28, error message = "
                               "'No space left on device')")
        return real(self, c, p)

    monkeypatch.setattr(writer.ResultWriter, "_flush_chunk", flush)


def _existing(name, content=b"precious"):
    def prepare(k, out, monkeypatch):
        (out / name).write_bytes(content)
    return prepare


def _one_chunk_then_interrupt(k, out, monkeypatch):
    fail_attribute_on_call(monkeypatch, 1)


def _full_disk_from_the_start(k, out, monkeypatch):
    import dnalift.io.store.writer as writer

    class Usage:
        free = 1000

    monkeypatch.setattr(writer.shutil, "disk_usage", lambda path: Usage())


def _sigterm_in_the_second_chunk(k, out, monkeypatch):
    """The scheduler stops the job (SIGTERM) while the second chunk is scored."""
    import os
    import signal

    import dnalift.attribution.engine as engine

    real, calls = engine.attribute, []

    def attribute(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # the command's handler raises in this thread
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "attribute", attribute)


def _oom_in_the_second_chunk(k, out, monkeypatch):
    fail_attribute_on_call(monkeypatch, 2, MemoryError)


def _bad_int(option, value, *words):
    return Case(f"{option} {value}", _score(option, value), 2, (option, *words))


def _regions_opt(*extra):
    return _regions("chr1\t10\t40\tr1\n", *extra)


CASES = [
    # --- score: the sequences
    Case("fasta missing", _score_on(lambda k, o: o.parent / "nope.fa"), 1, ("does not exist",)),
    Case("fasta empty", _score_on(_write("empty.fa", "")), 1, ("is empty",)),
    Case("fasta is text", _score_on(_write("notes.txt", "hello\nnot FASTA\n")), 1, ("not a FASTA file",)),
    Case("fasta is binary", _score_on(_write("blob.fa", bytes(range(256)))), 1, ("binary", "not a FASTA file")),
    Case("model and fasta swapped", lambda k, o: ["score", k["fasta"], k["model"], "-o", o / "o.h5"], 2,
         ("look swapped", "give the model first")),
    Case("blank line inside a record", _score_on(_write("blank.fa", ">a\n" + "ACGT" * 3 + "\n\n" + "ACGT" * 3
                                                        + "\n>b\n" + "ACGT" * 6 + "\n")), 1,
         ("line 3", "blank line inside record 'a'")),
    Case("blank lines after records", _score_on(_write("trail.fa", ">a\n" + "ACGT" * 6 + "\n\n>b\n" + "ACGT" * 6
                                                       + "\n\n\n")), 1, ("blank line after record 'a'",)),
    Case("uneven lines in a record", _score_on(_write("ragged.fa", ">a\n" + "ACGT" * 3 + "\nACG\n" + "ACGT" * 3
                                                      + "\n")), 1, ("line 3", "rewrap")),
    Case("plain gzip", _score_on(_write("seqs.fa.gz", gzip.compress(b">a\n" + b"ACGT" * 6 + b"\n"))), 1,
         ("plain gzip", "bgzip")),
    Case("truncated bgzip", _score_on(_write("cut.fa.gz", _bgzf_block(b">a\nACGT\n")[:-3])), 1, ("truncated",)),
    Case("gzip without .gz", _score_on(_write("zipped.fa", gzip.compress(b">a\nACGT\n"))), 1, ("does not end in .gz",)),
    Case("duplicate names", _score_on(_write("dup.fa", ">a\n" + "ACGT" * 6 + "\n>a\n" + "TGCA" * 6 + "\n")), 1,
         ("duplicate sequence names", "'a'")),
    Case("lengths differ", _score_on(_write("mixed.fa", ">a\n" + "ACGT" * 6 + "\n>b\nACGTAC\n")), 1,
         ("differ in length", "--width")),
    Case("not a nucleotide letter", _score_on(_write("digit.fa", ">a\n" + "ACGT" * 6 + "\n>b\nACG7" + "ACGT" * 5
                                                     + "\n")), 1, ("'7' at position 3 (0-based)",)),
    Case("N with --n-policy error", _score_on(_write("n.fa", ">a\n" + "ACGT" * 6 + "\n>b\nACGN" + "ACGT" * 5 + "\n"),
                                              "--n-policy", "error"), 1, ("'b'", "--n-policy zero", "--n-policy skip")),
    Case("every sequence skipped", _score_on(_write("alln.fa", ">a\n" + "N" * 24 + "\n"), "--n-policy", "skip"), 1,
         ("left none",), warnings=1),
    # --- score: the model
    Case("model missing", lambda k, o: ["score", o.parent / "none.pt", k["fasta"], "-o", o / "o.h5"], 1,
         ("no such file",)),
    Case("model is junk", lambda k, o: ["score", k["dir"] / "junk.bin", k["fasta"], "-o", o / "o.h5"], 1,
         ("junk.bin",)),
    Case("model is a FASTA", lambda k, o: ["score", k["genome"], k["fasta"], "-o", o / "o.h5"], 1, ("text file",)),
    Case("pickle without --trust-model", lambda k, o: ["score", k["dir"] / "whole.pt", k["fasta"], "-o", o / "o.h5"],
         1, ("--trust-model",)),
    Case("model length differs", lambda k, o: ["score", k["dir"] / "fixed30.pt", k["fasta"], "-o", o / "o.h5"], 1,
         ("length 30", "--width 30")),
    Case("model has 5 channels", lambda k, o: ["score", k["dir"] / "five.pt", k["fasta"], "-o", o / "o.h5"], 1),
    Case("op without a rule", lambda k, o: ["score", k["dir"] / "norule.pt", k["fasta"], "-o", o / "o.h5"], 1,
         ("erf", "--allow-gradient")),
    # --- score: the outputs
    Case("output exists", _score(), 1, ("exists", "--force"), prepare=_existing("o.h5"), keep=("o.h5",)),
    Case("output folder is a file", lambda k, o: ["score", k["model"], k["fasta"], "-o", o / "f" / "o.h5"], 1,
         ("not a directory",), prepare=_existing("f"), keep=("f",)),
    Case("output is a folder", lambda k, o: ["score", k["model"], k["fasta"], "-o", o / "d"], 2, ("is a directory",),
         prepare=lambda k, o, m: (o / "d").mkdir(), keep=("d",)),
    Case("output is the FASTA", lambda k, o: ["score", k["model"], k["fasta"], "-o", k["fasta"], "--force"], 2,
         ("fasta file the run reads", "--force never overwrites an input")),
    Case("output is the model", lambda k, o: ["score", k["model"], k["fasta"], "-o", k["model"], "--force"], 2,
         ("model file the run reads",)),
    Case("output is the genome", lambda k, o: ["score", k["model"], "--regions", k["bed"], "--genome", k["genome"],
                                               "--width", L, "-o", k["genome"], "--force"], 2,
         ("genome file the run reads",)),
    Case("output is the references", lambda k, o: ["score", k["model"], k["fasta"], "--reference", k["fasta"],
                                                   "-o", k["fasta"], "--force"], 2, ("file the run reads",)),
    # --- score: options
    Case("target index out of range", _score("--target", 5), 2, ("--target 5 does not exist", "2 output")),
    Case("target name unknown", _score("--target", "enhancer"), 2, ("--target enhancer", "no output names")),
    Case("shard 3-of-2", _score("--shard", "3-of-2"), 2, ("--shard 3-of-2", "between 1 and n")),
    Case("shard not i-of-n", _score("--shard", "two"), 2, ("--shard two", "i-of-n")),
    Case("fasta and --regions", _score("--regions", "x.bed", "--genome", "g.fa"), 2, ("not both",)),
    Case("n-refs 0", _score("--n-refs", 0), 2, ("--n-refs",)),
    Case("device gpu", _score("--device", "gpu"), 2, ("--device gpu", "auto, cpu, cuda")),
    Case("device mps", _score("--device", "mps"), 2, ("--device mps", "not supported", "--device cpu")),
    Case("device cuda:99", _score("--device", "cuda:99"), 2, ("--device cuda:99",)),
    Case("reference file missing", _score("--reference", "nothing.fa"), 2, ("--reference nothing.fa",)),
    Case("reference of another length", lambda k, o: _score("--reference", _write("short.fa", ">r\nACGT\n")(k, o))(
        k, o), 1, ("length 4", "length 24")),
    Case("reference records missing", lambda k, o: _score("--reference", _write("per.fa", ">s00/0\n" + "A" * L +
                                                                               "\n")(k, o))(k, o), 1,
         ("no references for sequence 's01'",)),
    Case("regions without genome", lambda k, o: ["score", k["model"], "--regions", k["bed"], "-o", o / "o.h5"], 2,
         ("--genome",)),
    Case("genome without regions", _score("--genome", "g.fa"), 2, ("--genome is for --regions",)),
    Case("center without regions", _score("--center", "summit"), 2, ("--center applies to --regions",)),
    Case("arch-kwargs without arch", _score("--arch-kwargs", "{}"), 2, ("--arch-kwargs needs --arch",)),
    # --- score: regions
    Case("BED missing", lambda k, o: ["score", k["model"], "--regions", o.parent / "no.bed", "--genome", k["genome"],
                                      "--width", L, "-o", o / "o.h5"], 1, ("does not exist",)),
    Case("BED line too short", _regions("chr1\t10\n"), 1, ("line 1", "chrom, start, end")),
    Case("BED start not a number", _regions("chr1\tten\t40\n"), 1, ("line 1", "whole numbers")),
    Case("BED every window off its chromosome", _regions("chr2\t70\t80\n"), 1, ("no region is left",), warnings=1),
    Case("BED unknown chromosome, --off-genome error", _regions("chr1\t10\t40\nchrX\t0\t30\n", "--off-genome",
                                                               "error"), 1, ("line 2", "'chrX'", "--off-genome skip")),
    Case("BED every chromosome unknown", _regions("1\t10\t40\n2\t10\t40\n"), 1, ("rename the chromosomes",),
         warnings=1),
    Case("BED summit without narrowPeak", _regions("chr1\t10\t40\n", "--center", "summit"), 1, ("narrowPeak",)),
    # --- score: resume, locks, faults
    Case("resume with other options", _score("--chunk-size", 4, "--seed", 5, "--resume"), 1,
         ("cannot resume", "'seed' was 0", "--force"), prepare=_copy_partial, keep=(".o.h5.partial.h5",)),
    Case("resume after the FASTA changed", lambda k, o: ["score", k["model"], k["changed_fasta"], "-o", o / "o.h5",
                                                         "--n-refs", 2, "--chunk-size", 4, "--resume"], 1,
         ("cannot resume", "the sequences", "changed"), prepare=_copy_partial, keep=(".o.h5.partial.h5",)),
    Case("another run writes the output", _score("--chunk-size", 4, "--resume"), 1,
         ("being written by another dnalift run", "process"), prepare=_hold_lock,
         keep=(".o.h5.partial.h5", ".o.h5.lock")),
    Case("disk full before a chunk", _score("--chunk-size", 4), 1, ("no space left", "4 of 12 rows are kept",
                                                                    "--resume"),
         prepare=_full_disk_after_first_chunk, keep=(".o.h5.partial.h5",)),
    Case("a write fails with ENOSPC", _score("--chunk-size", 4), 1, ("no space left on device", "removed"),
         prepare=_write_fails_with_enospc),
    Case("Ctrl-C in the first chunk", _score("--chunk-size", 4), 130, ("interrupted",),
         prepare=_one_chunk_then_interrupt),
    # --- logo
    Case("logo of a partial file", lambda k, o: ["logo", k["partial"], "--index", 0, "-o", o / "l.png"], 1,
         ("incomplete", "--resume")),
    Case("logo of a truncated file", lambda k, o: ["logo", _truncated(k, o), "--index", 0, "-o", o / "l.png"], 1,
         ("truncated",)),
    Case("inspect a truncated file", lambda k, o: ["inspect", _truncated(k, o)], 1, ("truncated",)),
    Case("logo of a FASTA", lambda k, o: ["logo", k["fasta"], "--index", 0, "-o", o / "l.png"], 1,
         ("not an HDF5 file",)),
    Case("logo name unknown", lambda k, o: ["logo", k["scored"], "--name", "nope", "-o", o / "l.png"], 1,
         ("no sequence named 'nope'", "dnalift inspect")),
    Case("logo index out of range", lambda k, o: ["logo", k["scored"], "--index", 99, "-o", o / "l.png"], 1,
         ("--index 99 is out of range",)),
    Case("logo .jpg", lambda k, o: ["logo", k["scored"], "--index", 0, "-o", o / "l.jpg"], 2, (".png",)),
    Case("logo without a sequence", lambda k, o: ["logo", k["scored"], "-o", o / "l.png"], 2, ("--name", "--index")),
    Case("logo output exists", lambda k, o: ["logo", k["scored"], "--index", 0, "-o", o / "l.png"], 1,
         ("exists", "--force"), prepare=_existing("l.png"), keep=("l.png",)),
    Case("logo start past the end", lambda k, o: ["logo", k["scored"], "--index", 0, "--start", 30, "-o",
                                                  o / "l.png"], 2, ("0-based",)),
    # --- export
    Case("export of a partial file", lambda k, o: ["export", k["partial"], "--format", "modisco", "-o", o / "m"], 1,
         ("incomplete",)),
    Case("bigwig of a FASTA-scored file", lambda k, o: ["export", k["scored"], "--format", "bigwig", "-o",
                                                        o / "x.bw", "--genome", k["genome"]], 1, ("no genome regions",)),
    Case("export odd window", lambda k, o: ["export", k["scored"], "--format", "modisco", "-o", o / "m", "--window",
                                            7], 2, ("even",)),
    Case("export outputs exist", lambda k, o: ["export", k["scored"], "--format", "modisco", "-o", o / "m"], 1,
         ("--force",), prepare=_existing("m.hyp.npz"), keep=("m.hyp.npz",)),
    Case("export missing file", lambda k, o: ["export", o.parent / "none.h5", "--format", "modisco", "-o", o / "m"],
         1, ("no such file",)),
    # --- merge
    Case("merge shards of another FASTA", lambda k, o: ["merge", k["dir"] / "part1.h5", k["other_part2"], "-o",
                                                        o / "all.h5"], 1, ("'input_sha256' differs",)),
    Case("merge a missing shard", lambda k, o: ["merge", k["dir"] / "part1.h5", "-o", o / "all.h5"], 1,
         ("in no shard",)),
    Case("merge one shard twice", lambda k, o: ["merge", k["dir"] / "part1.h5", Path(
        shutil.os.path.relpath(k["dir"] / "part1.h5")), k["dir"] / "part2.h5", "-o", o / "all.h5"], 1,
         ("given twice",)),
    Case("merge a file that is no shard", lambda k, o: ["merge", k["scored"], "-o", o / "all.h5"], 1,
         ("not a shard",)),
    Case("merge output exists", lambda k, o: ["merge", k["dir"] / "part1.h5", k["dir"] / "part2.h5", "-o",
                                              o / "all.h5"], 1, ("exists", "--force"), prepare=_existing("all.h5"),
         keep=("all.h5",)),
    # --- inspect, info
    Case("inspect a partial file", lambda k, o: ["inspect", k["partial"]], 1, ("never completed", "--resume")),
    Case("inspect a non-HDF5 file", lambda k, o: ["inspect", k["fasta"]], 1, ("not an HDF5 file",)),
    Case("info of a missing model", lambda k, o: ["info", o.parent / "none.pt"], 1, ("no such file",)),
    Case("info of a model without a rule", lambda k, o: ["info", k["dir"] / "norule.pt"], 1, ("erf",)),
    # --- issue 24: integer options bounded by what the file holds, checked before anything runs
    _bad_int("--seed", 2**64, "18446744073709551615"),
    _bad_int("--n-refs", 2**31, "2147483647"),
    _bad_int("--width", 2**28, "268435455"),
    _bad_int("--batch-size", 2**31, "2147483647"),
    _bad_int("--chunk-size", 2**31, "2147483647"),
    Case("shard n too large", _score("--shard", f"1-of-{2**31}"), 2, ("--shard", "at most 2147483647")),
    Case("logo index past int64", lambda k, o: ["logo", k["scored"], "--index", 2**63, "-o", o / "l.png"], 2,
         ("--index",)),
    Case("export window past int64", lambda k, o: ["export", k["scored"], "--format", "modisco", "-o", o / "m",
                                                   "--window", 2**63], 2, ("--window",)),
    _bad_int("--seed", -1),
    _bad_int("--n-refs", -3),
    _bad_int("--width", 0),
    _bad_int("--batch-size", 0),
    _bad_int("--seed", "abc", "not a valid integer"),
    # --- issue 24: rough edges
    Case("--resume with --force", _score("--resume", "--force"), 2, ("--resume", "--force", "not both")),
    Case("-q with -v", _score("-q", "-v"), 2, ("-v", "-q", "not both")),
    Case("fasta compressed with bzip2", _score_on(_write("seqs.fa.bz2", b"BZh91AY&SY" + bytes(range(40)))), 1,
         ("bzip2", "bgzip")),
    Case("fasta compressed with xz", _score_on(_write("seqs.fa.xz", b"\xfd7zXZ\x00" + bytes(range(40)))), 1,
         ("xz -d", "bgzip")),
    Case("fasta compressed with zstd", _score_on(_write("seqs.fa.zst", b"\x28\xb5\x2f\xfd" + bytes(range(40)))), 1,
         ("zstd",)),
    Case("an empty record", _score_on(_write("hole.fa", ">a\n" + "ACGT" * 6 + "\n>b\n>c\n" + "ACGT" * 6 + "\n")), 1,
         ("record 'b' is empty",)),
    Case("an empty record with --width", _score_on(_write("hole2.fa", ">a\n" + "ACGT" * 6 + "\n>b\n"), "--width", L),
         1, ("record 'b' is empty",)),
    Case("a nameless first header", _score_on(_write("anon.fa", ">\n" + "ACGT" * 6 + "\n")), 1,
         ("line 1", "without a name")),
    Case("a nameless later header", _score_on(_write("anon2.fa", ">a\n" + "ACGT" * 6 + "\n> \n" + "ACGT" * 6 + "\n")),
         1, ("line 3", "without a name")),
    Case("model gives NaN", _score_on(lambda k, o: k["fasta"], model=lambda k: k["nan_model"]), 1,
         ("NaN or infinite prediction", "'s00'", "--allow-nonfinite")),
    Case("logo of a NaN row", lambda k, o: ["logo", k["nan_scored"], "--index", 0, "-o", o / "l.png"], 1,
         ("NaN or infinite prediction", "no logo", "--allow-nonfinite")),
    Case("modisco export of NaN rows", lambda k, o: ["export", k["nan_scored"], "--format", "modisco", "-o", o / "m"],
         1, ("NaN or infinite", "TF-MoDISco")),
    Case("inspect a NaN file", lambda k, o: ["inspect", k["nan_scored"]], 1, ("NaN or infinite", "kept on purpose")),
    Case("resume with another batch size", _score("--chunk-size", 4, "--batch-size", 3, "--resume"), 1,
         ("cannot resume", "batches of", "leave --batch-size out"), prepare=_copy_partial,
         keep=(".o.h5.partial.h5",)),
    Case("width shorter than the kernel", lambda k, o: ["score", k["dir"] / "kernel15.pt", k["fasta"], "-o",
                                                        o / "o.h5", "--width", 10, "--n-refs", 2], 1,
         ("Kernel size", "--width")),
    Case("disk full before the first chunk", _score("--chunk-size", 4), 1, ("no space left", "nothing was written"),
         prepare=_full_disk_from_the_start),
    Case("SIGTERM in the second chunk", _score("--chunk-size", 4), 143, ("terminated (SIGTERM)",),
         prepare=_sigterm_in_the_second_chunk, keep=(".o.h5.partial.h5",), warnings=1),
    Case("out of memory in the second chunk", _score("--chunk-size", 4), 1, ("out of memory", "--batch-size",
                                                                             "--force"),
         prepare=_oom_in_the_second_chunk, keep=(".o.h5.partial.h5",), warnings=1),
    # --- more options
    Case("rule unknown", _score("--rule", "deeplift"), 2, ("--rule",)),
    Case("max-rule unknown", _score("--max-rule", "soft"), 2, ("--max-rule",)),
    Case("precision float16", _score("--precision", "float16"), 2, ("--precision",)),
    Case("layout unknown", _score("--layout", "NCHW"), 2, ("--layout",)),
    Case("n-policy unknown", _score("--n-policy", "maybe"), 2, ("--n-policy",)),
    Case("control-inputs unknown", _score("--control-inputs", "ones"), 2, ("--control-inputs",)),
    Case("target given twice", _score("--target", 0, "--target", 0), 2, ("--target",)),
    Case("unknown option", _score("--n-ref", 3), 2, ("--n-ref",)),
    Case("no output", lambda k, o: ["score", k["model"], k["fasta"]], 2, ("-o",)),
    Case("no sequences", lambda k, o: ["score", k["model"], "-o", o / "o.h5"], 2, ("SEQS.fa", "--regions")),
    Case("arch-kwargs not JSON", _score("--arch", "toy_models:PaperCNN", "--arch-kwargs", "{oops"), 2,
         ("--arch-kwargs",)),
    # --- more sequences
    Case("fasta is a folder", _score_on(lambda k, o: o), 1, ("is a folder",)),
    Case("fasta of headers only", _score_on(_write("heads.fa", ">a\n>b\n")), 1, ("empty",)),
    Case("fasta of one N record with --n-policy error", _score_on(_write("onen.fa", ">a\n" + "N" * L + "\n"),
                                                                  "--n-policy", "error"), 1, ("'N' at position 0",)),
    Case("model file empty", lambda k, o: ["score", _write("empty.pt", b"")(k, o), k["fasta"], "-o", o / "o.h5"], 1,
         ("empty.pt",)),
    # --- more regions
    Case("BED empty", _regions(""), 1, ("has no regions",)),
    Case("BED end before start", _regions("chr1\t40\t10\n"), 1, ("line 1", "0 <= start <= end")),
    Case("BED negative start", _regions("chr1\t-5\t10\n"), 1, ("line 1", "0 <= start")),
    Case("BED strand unknown", _regions("chr1\t10\t40\tr1\t0\t*\n"), 1, ("line 1", "strand")),
    Case("BED summit -1", _regions("chr1\t10\t40\tr\t0\t+\t1\t1\t1\t-1\n", "--center", "summit"), 1,
         ("summit offset -1",)),
    Case("BED summit not a number", _regions("chr1\t10\t40\tr\t0\t+\t1\t1\t1\tx\n", "--center", "summit"), 1,
         ("summit (column 10)",)),
    Case("BED duplicate windows", _regions("chr1\t10\t40\nchr1\t10\t40\n"), 1, ("lines 1 and 2", "sort -u")),
    Case("genome missing", lambda k, o: ["score", k["model"], "--regions", k["bed"], "--genome", o.parent / "no.fa",
                                         "--width", L, "-o", o / "o.h5"], 1, ("does not exist",)),
    Case("genome is binary", lambda k, o: ["score", k["model"], "--regions", k["bed"], "--genome",
                                           k["dir"] / "junk.bin", "--width", L, "-o", o / "o.h5"], 1, ("binary",)),
    Case("center unknown", _regions_opt("--center", "peak"), 2, ("--center",)),
    Case("off-genome unknown", _regions_opt("--off-genome", "maybe"), 2, ("--off-genome",)),
    # --- more logo, export, merge, inspect, info
    Case("logo end before start", lambda k, o: ["logo", k["scored"], "--index", 0, "--start", 10, "--end", 5, "-o",
                                                o / "l.png"], 2, ("--end 5",)),
    Case("logo around-max with start", lambda k, o: ["logo", k["scored"], "--index", 0, "--start", 1,
                                                     "--around-max", 4, "-o", o / "l.png"], 2, ("not both",)),
    Case("logo name and index", lambda k, o: ["logo", k["scored"], "--index", 0, "--name", "s00", "-o", o / "l.png"],
         2, ("exactly one",)),
    Case("logo missing file", lambda k, o: ["logo", o.parent / "none.h5", "--index", 0, "-o", o / "l.png"], 1),
    Case("export format unknown", lambda k, o: ["export", k["scored"], "--format", "csv", "-o", o / "m"], 2,
         ("--format",)),
    Case("export modisco with --genome", lambda k, o: ["export", k["scored"], "--format", "modisco", "-o", o / "m",
                                                       "--genome", k["genome"]], 2, ("--genome is for",)),
    Case("export bigwig with --window", lambda k, o: ["export", k["scored"], "--format", "bigwig", "-o", o / "x.bw",
                                                      "--window", 4], 2, ("--window is for",)),
    Case("export window longer than the sequences", lambda k, o: ["export", k["scored"], "--format", "modisco", "-o",
                                                                  o / "m", "--window", 2 * L], 2, ("longer",)),
    Case("merge a partial file", lambda k, o: ["merge", k["partial"], "-o", o / "all.h5"], 1, ("incomplete",)),
    Case("inspect a missing file", lambda k, o: ["inspect", o.parent / "none.h5"], 1),
    Case("info of junk", lambda k, o: ["info", k["dir"] / "junk.bin"], 1, ("junk.bin",)),
    Case("info width 0", lambda k, o: ["info", k["model"], "--width", 0], 2, ("--width",)),
]


def _digests(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(kit, case, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    inputs = _digests(kit["dir"])
    cleanup = case.prepare(kit, out, monkeypatch) if case.prepare is not None else None
    prepared = _digests(out)
    try:
        result = invoke(*case.args(kit, out))
    finally:
        if cleanup is not None:
            after_lock = _digests(out)
            cleanup()
    if cleanup is not None:
        assert ".o.h5.lock" in after_lock  # the other run's lock was never taken away
    assert result.exit_code == case.code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    warnings = [line for line in lines if line.startswith("dnalift: warning: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert len(warnings) == case.warnings, result.stderr
    assert all(line.startswith(("Error: ", "dnalift: ")) for line in lines), result.stderr
    for word in case.words:
        assert word in errors[0], errors[0]
    for bad in ("please report", "internal error", "unexpected", "Traceback"):
        assert bad not in errors[0], errors[0]
    left = sorted(p.name for p in out.iterdir())
    assert set(left) <= set(case.keep), left
    now = _digests(out)
    for name, digest in prepared.items():  # what was there before is there, unchanged (a live partial file too)
        if name != ".o.h5.lock":
            assert now.get(name) == digest, name
    after = _digests(kit["dir"])
    assert {name: after.get(name) for name in inputs} == inputs  # no input was touched
    for name in left:  # a partial file left behind is one that --resume can finish
        if name.endswith(".partial.h5"):
            with open_results(out / name, allow_incomplete=True) as r:
                assert r.n == N and r.attrs["n_refs"] == 2


def test_the_table_is_large():
    assert len(CASES) > 120


def test_disk_full_partial_file_resumes_to_the_uninterrupted_result(kit, tmp_path, monkeypatch):
    """The disk fills after the first chunk: the kept partial file is valid, and --resume (space freed) gives the
    same file as a run that never stopped."""
    whole = tmp_path / "whole.h5"
    assert invoke(*_score("--chunk-size", 4)(kit, tmp_path)[:4], whole, "--n-refs", 2, "--chunk-size", 4).exit_code == 0
    out = tmp_path / "out"
    out.mkdir()
    with monkeypatch.context() as m:
        _full_disk_after_first_chunk(kit, out, m)
        assert invoke(*_score("--chunk-size", 4)(kit, out)).exit_code == 1
    assert partial_path(out / "o.h5").exists()
    result = invoke(*_score("--chunk-size", 4, "--resume")(kit, out))
    assert result.exit_code == 0, result.output
    assert "4 kept from the interrupted run" in result.stdout
    assert validate_results(out / "o.h5") == []
    with open_results(out / "o.h5") as a, open_results(whole) as b:
        np.testing.assert_array_equal(a.hypothetical(), b.hypothetical())
        assert a.names == b.names


def _can_mount_tmpfs(folder: Path) -> str | None:
    import subprocess

    if not hasattr(shutil.os, "geteuid") or shutil.os.geteuid() != 0 or not shutil.which("mount"):
        return "mounting a tmpfs needs root and mount(8)"
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True)
    return None if res.returncode == 0 else f"cannot mount a tmpfs here: {res.stderr.decode().strip()}"


def test_disk_full_on_a_real_small_tmpfs(kit, tmp_path):
    """3,000 sequences into a 2 MB tmpfs: one line, exit 1, a valid partial file or none; after freeing space
    (a ballast file removed) --resume finishes it."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    reason = _can_mount_tmpfs(mount)
    if reason:
        pytest.skip(reason)
    try:
        rng = np.random.default_rng(0)
        fasta = write_fasta(tmp_path / "many.fa", ((f"q{i}", "".join("ACGT"[j] for j in rng.integers(0, 4, L)))
                                             for i in range(3000)))
        (mount / "ballast").write_bytes(b"\0" * (1 << 20))
        args = ["score", kit["model"], fasta, "-o", mount / "o.h5", "--n-refs", 1, "--chunk-size", 256]
        result = invoke(*args)
        assert result.exit_code == 1, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines[-1].startswith("Error: ") and "no space" in lines[-1] and len(
            [x for x in lines if x.startswith("Error")]) == 1, result.stderr
        left = sorted(p.name for p in mount.iterdir())
        assert set(left) <= {"ballast", ".o.h5.partial.h5"}, left
        (mount / "ballast").unlink()
        if ".o.h5.partial.h5" in left:
            with open_results(partial_path(mount / "o.h5"), allow_incomplete=True) as r:
                assert r.n == 3000
            result = invoke(*args, "--resume")
            assert result.exit_code == 0, result.output
            assert validate_results(mount / "o.h5") == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_enospc_errno_is_recognised():
    from dnalift.io.store._h5 import io_errno

    assert io_errno(OSError(errno.ENOSPC, "No space left on device")) == errno.ENOSPC
    assert io_errno(RuntimeError("... errno = 28, error message = 'No space left on device' ...")) == 28
    assert io_errno(RuntimeError("something else")) is None
