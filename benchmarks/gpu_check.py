"""The GPU check of issue 10, in one short run (``bash benchmarks/gpu_check.sh`` calls this).

Three parts, each in its own ``try`` with its own time budget, so that one failure does not hide the others:

(a) **equality**: dnalift's scores (contributions and hypothetical contributions) on the device equal those on
    the CPU, for the paper CNN and the BPNet-like model, rules rescale, revealcancel and genomics: relative
    difference (largest absolute difference / largest absolute CPU score) at most 1e-9 in float64 and 1e-4 in
    float32 (strict: dnalift turns TF32 off for float32, ``--precision tf32`` is part (d)'s). Where float32
    fails, the CPU's own float32 error against float64 follows, to tell the rule's rounding from the device's.
(b) **score**: ``dnalift score --device DEVICE`` on the demo data (data/demo/model.pt, data/demo/test.fa), its
    HDF5 checked and compared with the same command on the CPU.
(c) **throughput**: sequence-reference pairs per second of dnalift (Rescale at a few batch sizes and with its
    automatic choice, RevealCancel at one) and of the floor (forward + input-gradient backward), with peak
    GPU memory (``torch.cuda.max_memory_allocated``), on the paper CNN and the BPNet-like model at lengths
    1,000 and 2,114.
(d) **chrombpnet**: a ChromBPNet-sized model (512 filters, 8 dilated layers, 2,114 bp in, 1,000 out; counts and
    profile scored in one pass) at the automatic batch size, in each precision (float32, tf32, bfloat16): pairs
    per second, peak GPU memory, FLOP/s achieved against the card's peak, and the projected time of 300,000 peaks
    x 20 shuffles on this card (``_chrombpnet.py``); ``--profile`` adds the torch profiler's table of kernels of
    one float32 call (``$OUT/gpu_profile.txt``).

Without a GPU, ``--device cpu`` runs the same code on the CPU: part (a) then compares the CPU's default batch
size with batches of ``--check-batch`` pairs (batch-size invariance), part (b) runs the CLI twice on the CPU;
``--tiny`` shrinks every size so that the whole check takes seconds. The summary table is printed and written
to ``$OUT/gpu_check.txt`` when ``OUT`` is set (rewritten after each part, so a run stopped early keeps the
parts done). Exit status: 0 when every check passed, 1 otherwise.

    PYTHONPATH=. python3 benchmarks/gpu_check.py                          # on the GPU machine
    PYTHONPATH=. .venv/bin/python benchmarks/gpu_check.py --device cpu --tiny
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _chrombpnet  # noqa: E402
import _common as common  # noqa: E402
from _models import build  # noqa: E402

RULES = ("rescale", "revealcancel", "genomics")
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4}
"""Largest relative difference allowed between the device's scores and the CPU's."""


def relative_difference(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |ours - reference| / max |reference| (0 when both are zero; inf when shapes differ)."""
    if ours.shape != reference.shape:
        return math.inf
    scale = float(reference.abs().max()) if reference.numel() else 0.0
    diff = float((ours.double().cpu() - reference.double().cpu()).abs().max()) if reference.numel() else 0.0
    if scale == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / scale


def check_row(part: str, item: str, value: float, limit: float, detail: str = "") -> dict:
    """A pass/fail row of the summary: ``value <= limit`` passes (NaN fails)."""
    return {"part": part, "item": item, "figure": f"{value:.2e}", "limit": f"<= {limit:.0e}",
            "status": "PASS" if value <= limit else "FAIL", "detail": detail}


# ------------------------------------------------------------------------------------------- (a) equality
def equality_cases(*, tiny: bool) -> list[tuple[str, int, int, int]]:
    """(model, length, sequences, references) of the equality check."""
    if tiny:
        return [("paper", 200, 3, 3), ("bpnet", 120, 2, 3)]
    return [("paper", 200, 8, 5), ("bpnet", 1000, 3, 4)]


def check_equality(device: torch.device, *, tiny: bool = False, check_batch: int | None = None,
                   rules=RULES, dtypes=(torch.float64, torch.float32), deadline: float = math.inf) -> list[dict]:
    """Part (a): the device's scores against the CPU's, per model, dtype and rule.

    Parameters
    ----------
    device : torch.device
        Where the scores under test are computed. On the CPU itself, pass ``check_batch``, so that the test run
        differs from the reference run (its batch size).
    check_batch : int, optional
        Batch size (pairs) of the run under test; the reference run uses dnalift's default.
    rules : sequence of str
    dtypes : sequence of torch.dtype
    deadline : float
        ``time.monotonic()`` after which the remaining cases are skipped (reported as such).

    Returns
    -------
    list of dict
        Summary rows, two per case (contributions, hypothetical).
    """
    cpu = torch.device("cpu")
    rows = []
    for name, length, n, r in equality_cases(tiny=tiny):
        module, length = build(name, length=length if name == "bpnet" else None)
        X = common.random_one_hot(n, length, seed=1)
        R = common.shuffled_references(X, r, seed=1)
        loaded = common.DnaliftModel(module, X)
        try:
            for dtype in dtypes:
                for rule in rules:
                    item = f"{name} L={length} {rule} {str(dtype)[6:]}"
                    if time.monotonic() > deadline:
                        rows.append(skipped_row("a equality", item, "time budget spent"))
                        continue
                    rows += compare_case(loaded.model, X, R, item=item, rule=rule, dtype=dtype, device=device,
                                         check_batch=check_batch, reference_device=cpu)
        finally:
            loaded.close()
    return rows


def compare_case(model, X, R, *, item, rule, dtype, device, check_batch, reference_device) -> list[dict]:
    """Summary rows for one case. Where float32 fails, a diagnosis row (status INFO) follows: the reference
    device's own float32 error against its float64 scores (when that is over the tolerance too, the rule's
    float32 rounding is the cause, not the device)."""
    reference = common.dnalift_attribute(model, X, R, rule=rule, device=reference_device, dtype=dtype)
    ours = common.dnalift_attribute(model, X, R, rule=rule, device=device, dtype=dtype, batch_size=check_batch)
    rows = []
    for field in ("contributions", "hypothetical"):
        value = relative_difference(getattr(ours, field), getattr(reference, field))
        rows.append(check_row("a equality", f"{item} {field}", value, TOLERANCE[dtype],
                              f"max |delta| {float(ours.deltas.abs().max()):.1e}"))
    if dtype != torch.float32 or all(row["status"] == "PASS" for row in rows):
        return rows
    exact = common.dnalift_attribute(model, X, R, rule=rule, device=reference_device, dtype=torch.float64)
    value = relative_difference(reference.contributions, exact.contributions)
    rows.append(info_row(f"{item}: {reference_device} float32 against {reference_device} float64", value,
                         "diagnosis: over the limit too means float32 rounding in the rule, not the device"))
    return rows


def info_row(item: str, value: float, detail: str) -> dict:
    return {"part": "a equality", "item": item, "figure": f"{value:.2e}", "limit": "", "status": "INFO",
            "detail": detail}


def skipped_row(part: str, item: str, why: str) -> dict:
    return {"part": part, "item": item, "figure": "", "limit": "", "status": "SKIP", "detail": why}


def failed_row(part: str, item: str, error: BaseException) -> dict:
    last = " ".join(str(error).split())[:160]
    return {"part": part, "item": item, "figure": "", "limit": "", "status": "FAIL",
            "detail": f"{type(error).__name__}: {last}"}


# ---------------------------------------------------------------------------------------------- (b) score
def score_demo(device: torch.device, workdir: Path, *, tiny: bool, timeout: float) -> list[dict]:
    """Part (b): ``dnalift score --device DEVICE`` on the demo data, checked against the same on the CPU.

    The demo's TorchScript model (data/demo/model.pt) is scored first; if that fails, its ``.pt2`` twin too, to
    tell a failure to load the model apart from a failure to score on the device.
    """
    rows = []
    for model in ("model.pt", "model.pt2"):
        done, ok = score_pair(device, workdir, model=model, tiny=tiny, timeout=timeout)
        rows += done
        if ok:
            break
    return rows


def score_pair(device: torch.device, workdir: Path, *, model: str, tiny: bool, timeout: float):
    """Score the demo with ``model`` on the device and on the CPU; (summary rows, whether both ran)."""
    import h5py

    root = common.ROOT
    refs = "3" if tiny else "20"
    paths = [str(root)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    rows, outputs = [], []
    for where in (str(device), "cpu"):
        out = workdir / f"demo_{model}_{len(outputs)}.h5"
        command = [sys.executable, "-c", "import sys; from dnalift.cli import main; sys.exit(main())", "score",
                   str(root / "data/demo" / model), str(root / "data/demo/test.fa"), "-o", str(out),
                   "--device", where, "--n-refs", refs, "--force", "-q"]
        item = f"dnalift score data/demo/{model} --device {where} ({refs} refs)"
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=root)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            message = (done.stderr.strip().splitlines() or ["(no message)"])[-1][:160]
            rows.append({"part": "b score", "item": item, "figure": "", "limit": "", "status": "FAIL",
                         "detail": f"exit {done.returncode}: {message}"})
            return rows, False
        with h5py.File(out, "r") as handle:
            shap, raw, deltas = handle["shap/seq"][()], handle["raw/seq"][()], handle["deltas"][()]
        outputs.append(torch.from_numpy(shap))
        finite = bool(torch.isfinite(outputs[-1]).all())
        rows.append({"part": "b score", "item": item, "figure": f"{seconds:.1f} s", "limit": "",
                     "status": "PASS" if finite else "FAIL",
                     "detail": f"shap/seq {tuple(shap.shape)}, raw/seq {tuple(raw.shape)}, "
                               f"max |delta| {float(abs(deltas).max()):.1e}" + ("" if finite else ", NOT FINITE")})
    rows.append(check_row("b score", f"shap/seq of {model}: {device} file against cpu file",
                          relative_difference(outputs[0], outputs[1]), TOLERANCE[torch.float32]))
    return rows, True


# ----------------------------------------------------------------------------------------- (c) throughput
def throughput_cases(device: torch.device, *, tiny: bool) -> list[tuple[str, int, tuple, int]]:
    """(model, length, batch sizes, pairs scored) of the throughput part."""
    if tiny:
        return [("paper", 200, (32, 64), 64), ("bpnet", 100, (16, 32), 32), ("bpnet", 211, (16,), 32)]
    if device.type == "cuda":
        return [("paper", 200, (1024, 4096, 16384), 65536), ("bpnet", 1000, (256, 1024, 4096), 16384),
                ("bpnet", 2114, (128, 512, 2048), 8192)]
    return [("paper", 200, (256, 1024), 5120), ("bpnet", 1000, (64, 128), 320), ("bpnet", 2114, (64,), 128)]


def measure(fn, device, repeats: int) -> tuple[float, float | None]:
    """Median wall seconds of ``repeats`` runs after one warm-up, and the peak GPU memory (GiB) seen."""
    peak = 0
    walls = []
    for i in range(repeats + 1):
        measured = common.timed(fn, device)
        peak = max(peak, measured.get("peak_bytes", 0))
        if i:
            walls.append(measured["wall"])
    return common.median(walls), (peak / 2**30 if device.type == "cuda" else None)


def throughput(device: torch.device, *, tiny: bool, repeats: int, deadline: float) -> list[dict]:
    """Part (c): pairs per second of dnalift and the floor, with peak memory, over a few batch sizes."""
    rows = []
    r = 4 if tiny else 20
    for name, length, sizes, pairs in throughput_cases(device, tiny=tiny):
        module, length = build(name, length=length if name == "bpnet" else None)
        X = common.random_one_hot(math.ceil(max(pairs, *sizes) / r), length, seed=2)
        R = common.shuffled_references(X, r, seed=2)
        loaded = common.DnaliftModel(module, X)
        module = module.to(device)
        flat = R.reshape(-1, 4, length)
        runs = [("rescale", size) for size in sizes] + [("rescale", None), ("revealcancel", sizes[len(sizes) // 2])]
        try:
            for rule, size in runs:
                item = f"{name} L={length} {rule} batch {size or 'auto'}"
                if time.monotonic() > deadline:
                    rows.append(skipped_row("c throughput", item, "time budget spent"))
                    continue
                try:
                    rows.append(throughput_row(module, loaded.model, X, R, flat, item=item, rule=rule, size=size,
                                               device=device, repeats=repeats))
                except torch.OutOfMemoryError as error:
                    torch.cuda.empty_cache()
                    rows.append(failed_row("c throughput", item, error))
        finally:
            loaded.close()
            del module
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def throughput_row(module, model, X, R, flat, *, item, rule, size, device, repeats) -> dict:
    pairs = R.shape[0] * R.shape[1]
    ours, peak = measure(lambda: common.dnalift_attribute(model, X, R, rule=rule, device=device, batch_size=size),
                         device, repeats)
    detail = f"{pairs} pairs"
    if size is not None:
        floor, floor_peak = measure(lambda: common.floor_pass(module, flat, batch_size=size, device=device), device,
                                    repeats)
        detail += f"; floor {pairs / floor:,.0f} pairs/s, dnalift {ours / floor:.2f} x floor"
        if floor_peak is not None:
            detail += f", floor peak {floor_peak:.2f} GiB"
    else:
        auto = common.dnalift_auto_batch(model, device=device)
        detail += f"; automatic batch {auto}"
    if peak is not None:
        detail += f"; dnalift peak {peak:.2f} GiB"
    return {"part": "c throughput", "item": item, "figure": f"{pairs / ours:,.0f} pairs/s", "limit": "",
            "status": "", "detail": detail}


# ---------------------------------------------------------------------------------------------- summary
def summary(rows: list[dict], header: str) -> str:
    table = common.format_table(["part", "item", "figure", "limit", "status", "detail"],
                                [[row[k] for k in ("part", "item", "figure", "limit", "status", "detail")]
                                 for row in rows], markdown=False, left=(0, 1, 4, 5))
    failed = sum(row["status"] == "FAIL" for row in rows)
    passed = sum(row["status"] == "PASS" for row in rows)
    return f"{header}\n\n{table}\n\n{passed} passed, {failed} failed"


def write_summary(text: str) -> None:
    """Write the summary to ``$OUT/gpu_check.txt`` when ``OUT`` is set."""
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_check.txt").write_text(text + "\n")


def header_of(device: torch.device, args) -> str:
    info = common.machine(device)
    flags = ""
    if device.type == "cuda":
        flags = (f"; cuDNN TF32 {torch.backends.cudnn.allow_tf32}, matmul TF32 "
                 f"{torch.backends.cuda.matmul.allow_tf32}")
    return (f"dnalift GPU check (benchmarks/gpu_check.py {' '.join(args.argv)})\n"
            f"{common.describe_machine(info)}{flags}")


def run_part(name: str, fn, rows: list[dict], header: str) -> None:
    """Run one part; its failure becomes a FAIL row instead of stopping the others."""
    start, before = time.monotonic(), len(rows)
    try:
        rows += fn()
    except Exception as error:  # noqa: BLE001 - report and go on with the next part
        traceback.print_exc(file=sys.stderr)
        rows.append(failed_row(name, "part failed", error))
    statuses = [row["status"] for row in rows[before:]]
    print(f"[{name}: {time.monotonic() - start:.1f} s, {statuses.count('PASS')} passed, "
          f"{statuses.count('FAIL')} failed, {statuses.count('SKIP')} skipped]", file=sys.stderr, flush=True)
    write_summary(summary(rows, header))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="device under test (default: cuda)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: exercise the script in seconds")
    parser.add_argument("--parts", default="abcd", help="which parts to run (default abcd)")
    parser.add_argument("--check-batch", type=int, help="batch size (pairs) of the runs under test in part (a) "
                        "(default: dnalift's own on CUDA, 3 on the CPU)")
    parser.add_argument("--budget", type=float, nargs=4, default=(90.0, 60.0, 110.0, 200.0),
                        metavar=("A", "B", "C", "D"), help="seconds allowed to each part (default 90 60 110 200)")
    parser.add_argument("--precisions", nargs="+", default=None,
                        help="precisions of part (d) (default: float32 tf32 bfloat16 on CUDA, float32 bfloat16 on "
                             "the CPU)")
    parser.add_argument("--profile", action="store_true", help="part (d): the profiler's table of kernels")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats in part (c) (default 3)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        text = (f"dnalift GPU check: PyTorch sees no CUDA device here (torch {torch.__version__}); run with "
                f"--device cpu to exercise the script on the CPU")
        print(text)
        write_summary(text)
        return 1
    header = header_of(device, args)
    check_batch = args.check_batch or (3 if device.type == "cpu" else None)
    budget_a, budget_b, budget_c, budget_d = args.budget
    precisions = args.precisions or (("float32", "tf32", "bfloat16") if device.type == "cuda"
                                     else ("float32", "bfloat16"))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dnalift-gpu-check-") as workdir:
        if "a" in args.parts:
            run_part("a equality", lambda: check_equality(device, tiny=args.tiny, check_batch=check_batch,
                                                          deadline=time.monotonic() + budget_a), rows, header)
        if "b" in args.parts:
            run_part("b score", lambda: score_demo(device, Path(workdir), tiny=args.tiny, timeout=budget_b / 2),
                     rows, header)
        if "c" in args.parts:
            run_part("c throughput", lambda: throughput(device, tiny=args.tiny, repeats=args.repeats,
                                                        deadline=time.monotonic() + budget_c), rows, header)
        if "d" in args.parts:
            run_part("d chrombpnet", lambda: _chrombpnet.run(device, tiny=args.tiny, precisions=precisions,
                                                             repeats=args.repeats, profile=args.profile,
                                                             deadline=time.monotonic() + budget_d), rows, header)
    print(summary(rows, header))
    return 1 if any(row["status"] == "FAIL" for row in rows) or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
