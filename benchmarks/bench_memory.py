"""Peak memory of ``dnalift score`` against the number of sequences (not part of the tests).

Writes FASTA files of random sequences (default 2,000 and 50,000 sequences of 200 bp, the demo model's
length) to a temporary directory, runs ``dnalift score MODEL SEQS.fa -o OUT.h5 --n-refs 5 --force`` on each
as a child process, and reports the child's peak resident set size (``ru_maxrss`` from ``os.wait4``, the
figure ``/usr/bin/time -v`` prints as "Maximum resident set size"), its wall time and the output size. A
streaming pipeline's peak should not grow with the number of sequences: the goal is that the largest run
peaks within 20% of the smallest.

Run from the repository root::

    .venv/bin/python benchmarks/bench_memory.py
    .venv/bin/python benchmarks/bench_memory.py --sizes 2000 50000 --json mem.json -- --rule genomics

Arguments after ``--`` are passed to ``dnalift score``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def write_fasta(path: Path, n: int, length: int, *, seed: int) -> None:
    """``n`` uniformly random A/C/G/T sequences of ``length`` bp, 80 bases a line, names seq_0000000..."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    with open(path, "w") as handle:
        for start in range(0, n, 10_000):
            stop = min(n, start + 10_000)
            codes = letters[rng.integers(0, 4, size=(stop - start, length))]
            for i, row in enumerate(codes, start):
                seq = row.tobytes().decode()
                lines = "\n".join(seq[j:j + 80] for j in range(0, length, 80))
                handle.write(f">seq_{i:07d}\n{lines}\n")


def run_child(command: list[str], *, env: dict, log: Path) -> dict:
    """Run ``command``; its peak RSS (MiB), wall seconds, CPU seconds and exit status."""
    with open(log, "w") as out:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in kilobytes on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return {"peak_rss_mib": usage.ru_maxrss * scale / 2**20, "wall_seconds": wall,
            "cpu_seconds": usage.ru_utime + usage.ru_stime, "returncode": child.returncode}


def dnalift_command() -> list[str]:
    """The ``dnalift`` entry point of the venv (or on PATH), else the CLI through this Python."""
    exe = shutil.which("dnalift", path=str(ROOT / ".venv" / "bin")) or shutil.which("dnalift")
    if exe is None:
        return [sys.executable, "-c", "import sys; from dnalift.cli import main; sys.exit(main())"]
    return [exe]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "data" / "demo" / "model.pt")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 50000], help="numbers of sequences")
    parser.add_argument("--length", type=int, default=200, help="sequence length (the model's input length)")
    parser.add_argument("--n-refs", type=int, default=5)
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the child (default: unset)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="keep the FASTA and outputs here (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    base = dnalift_command()
    probe = subprocess.run(base + ["score", "--help"], capture_output=True, text=True, env=env, cwd=ROOT)
    if probe.returncode != 0:
        print(f"`{' '.join(base)} score --help` failed ({probe.returncode}); is the CLI installed?\n"
              f"{probe.stderr.strip()[-2000:]}", file=sys.stderr)
        return 2

    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="dnalift-bench-memory-")
        workdir = Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n in args.sizes:
            fasta = workdir / f"random_{n}x{args.length}.fa"
            if not fasta.exists():
                write_fasta(fasta, n, args.length, seed=args.seed)
            out = workdir / f"scores_{n}.h5"
            command = base + ["score", str(args.model), str(fasta), "-o", str(out), "--n-refs", str(args.n_refs),
                              "--force"] + extra
            print(f"running: {' '.join(command)}  (load {os.getloadavg()[0]:.2f})", flush=True)
            result = run_child(command, env=env, log=workdir / f"log_{n}.txt")
            result.update({"sequences": n, "command": command,
                           "output_mib": out.stat().st_size / 2**20 if out.exists() else None})
            if result["returncode"] != 0:
                result["log_tail"] = (workdir / f"log_{n}.txt").read_text()[-3000:]
                print(f"  failed with status {result['returncode']}:\n{result['log_tail']}", file=sys.stderr)
            rows.append(result)
            print(f"  peak RSS {result['peak_rss_mib']:.0f} MiB, {result['wall_seconds']:.1f} s wall, "
                  f"{n / result['wall_seconds']:.0f} sequences/s", flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()

    print(f"\n{'sequences':>10} {'peak RSS MiB':>13} {'wall s':>8} {'seq/s':>8} {'output MiB':>11} {'status':>7}")
    for row in rows:
        size = f"{row['output_mib']:.1f}" if row["output_mib"] is not None else "-"
        print(f"{row['sequences']:>10} {row['peak_rss_mib']:>13.0f} {row['wall_seconds']:>8.1f} "
              f"{row['sequences'] / row['wall_seconds']:>8.0f} {size:>11} {row['returncode']:>7}")
    ok = [r for r in rows if r["returncode"] == 0]
    summary = {}
    if len(ok) >= 2:
        smallest = min(ok, key=lambda r: r["sequences"])
        largest = max(ok, key=lambda r: r["sequences"])
        ratio = largest["peak_rss_mib"] / smallest["peak_rss_mib"]
        summary = {"peak_ratio_largest_to_smallest": ratio, "within_20_percent": ratio <= 1.2}
        print(f"\npeak RSS with {largest['sequences']} sequences / with {smallest['sequences']}: {ratio:.2f} "
              f"(goal <= 1.20: {'met' if ratio <= 1.2 else 'NOT met'})")
    if args.json:
        info = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "platform": platform.platform(),
                "cpu_count": os.cpu_count(), "python": platform.python_version(),
                "self_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        args.json.write_text(json.dumps({"machine": info, "argv": sys.argv, "runs": rows, "summary": summary},
                                        indent=1))
        print(f"wrote {args.json}")
    return 0 if len(ok) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
