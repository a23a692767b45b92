"""Speed and agreement of dnalift's DeepLIFT engine against tangermeme and captum (not part of the tests).

Every tool scores the same sequences against the same references (per-sequence dinucleotide shuffles) with
the Rescale rule, and its time is given as a ratio to a floor measured in the same run: a plain forward and
backward (gradient of the output with respect to the input only; parameters do not require gradients) of
the model over the n*r reference rows, in the same batch size. The repeats of all tools are interleaved
(floor, dnalift, tangermeme, captum, floor, ...), so that a change of machine load hits them alike; the
median of the repeats is reported, after one warm-up run of each.

Accuracy columns: ``max|delta|`` is the largest summation-to-delta error of any sequence,
``sum(contributions) - (f(x) - mean_r f(ref_r))`` with f the model's output computed here in float32;
``max|diff|`` is the largest absolute difference from dnalift's scores of what the tool returns
(tangermeme: hypothetical contributions; captum: per-channel contributions m*(x - ref) averaged over
references). A tool that has no DeepLIFT rule for some module treats it as linear, which shows as a large
``max|delta|``.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_engine.py --model paper --n 256 --refs 20
    PYTHONPATH=. .venv/bin/python benchmarks/bench_engine.py --model bpnet --n 64 --refs 10
    PYTHONPATH=. .venv/bin/python benchmarks/bench_engine.py --model paper --rule rescale revealcancel genomics
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _models import MODELS, build, export  # noqa: E402

from dnalift.attribution.engine import attribute, auto_batch_size, plan_for  # noqa: E402

DEFAULT_SIZES = {"paper": (256, 20), "paper-relu": (256, 20), "bpnet": (64, 10)}
TOOLS = ("dnalift", "tangermeme", "captum")


# ------------------------------------------------------------------------------------------------ data
def random_one_hot(n: int, length: int, *, seed: int) -> torch.Tensor:
    """Uniformly random one-hot sequences, float32 (n, 4, length)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, size=(n, length))
    X = np.zeros((n, 4, length), dtype=np.float32)
    np.put_along_axis(X, codes[:, None, :], 1.0, axis=1)
    return torch.from_numpy(X)


def make_references(X: torch.Tensor, r: int, *, seed: int) -> tuple[torch.Tensor, str]:
    """(n, r, 4, length) float32 references: dnalift's dinucleotide shuffles, or random one-hot without them."""
    try:
        from dnalift.references import dinucleotide_shuffle
    except ImportError:
        n, _, length = X.shape
        R = random_one_hot(n * r, length, seed=seed + 1).reshape(n, r, 4, length)
        return R, "random one-hot (dnalift.references.dinucleotide_shuffle not available)"
    R = dinucleotide_shuffle(X, n=r, seed=seed)
    return R.to(torch.float32), "dinucleotide shuffles (dnalift.references.dinucleotide_shuffle)"


# ----------------------------------------------------------------------------------------------- tools
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_floor(model, X, R, *, batch_size, device):
    """Forward + input-gradient backward over the n*r reference rows, ``batch_size`` rows at a time."""
    flat = R.reshape(-1, *R.shape[2:])
    for start in range(0, flat.shape[0], batch_size):
        rows = flat[start:start + batch_size].to(device).requires_grad_(True)
        out = model(rows)[:, 0]
        torch.autograd.grad(out.sum(), rows)
    return None


def run_dnalift(program, X, R, *, batch_size, device, rule="rescale"):
    result = attribute(program, X, R, target=0, rule=rule, batch_size=batch_size, device=device)
    return {"contributions": result.contributions, "hypothetical": result.hypothetical}


def run_tangermeme(model, X, R, *, batch_size, device):
    from tangermeme.deep_lift_shap import deep_lift_shap

    hypothetical = deep_lift_shap(model, X, references=R, target=0, batch_size=batch_size, hypothetical=True,
                                  device=device, dtype=torch.float32, verbose=False)
    # Hypothetical scores times the one-hot input: per position, the contribution of the observed base,
    # which is what dnalift's contributions sum to over the four channels.
    return {"hypothetical": hypothetical, "projected": hypothetical * X}


def run_captum(model, X, R, *, batch_size, device):
    from captum.attr import DeepLift

    n, r = R.shape[:2]
    explainer = DeepLift(model)
    flat = R.reshape(n * r, *R.shape[2:])
    pair_seq = torch.arange(n).repeat_interleave(r)
    chunks = []
    for start in range(0, n * r, batch_size):
        stop = min(n * r, start + batch_size)
        inputs = X[pair_seq[start:stop]].to(device)
        baselines = flat[start:stop].to(device)
        chunks.append(explainer.attribute(inputs, baselines=baselines, target=0).detach().cpu())
    contributions = torch.cat(chunks).reshape(n, r, *X.shape[1:]).mean(1)
    return {"contributions": contributions}


def tool_available(name: str) -> str | None:
    """None when the tool can be imported, else why not."""
    try:
        if name == "tangermeme":
            import tangermeme.deep_lift_shap  # noqa: F401
        elif name == "captum":
            import captum.attr  # noqa: F401
    except Exception as error:  # noqa: BLE001 - any import failure means: skip the tool
        return f"{type(error).__name__}: {error}"
    return None


# ----------------------------------------------------------------------------------------- measurement
def timed(fn, device):
    """(wall seconds, process CPU seconds, return value, warning messages) of one call."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _sync(device)
        wall, cpu = time.perf_counter(), time.process_time()
        value = fn()
        _sync(device)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    messages = sorted({" ".join(str(w.message).split())[:300] for w in caught})
    return wall, cpu, value, messages


def predictions(model, X, R, *, batch_size, device):
    """f(x) (n,) and mean_r f(ref_r) (n,) on the target, float64 on the CPU."""
    n, r = R.shape[:2]
    with torch.no_grad():
        fx = torch.cat([model(X[s:s + batch_size].to(device))[:, 0].cpu() for s in range(0, n, batch_size)])
        flat = R.reshape(n * r, *R.shape[2:])
        fr = torch.cat([model(flat[s:s + batch_size].to(device))[:, 0].cpu()
                        for s in range(0, n * r, batch_size)])
    return fx.double(), fr.double().reshape(n, r).mean(1)


def summation_error(contributions_per_seq_sum, fx, fr):
    """Largest |sum of contributions - (f(x) - mean f(ref))| over sequences."""
    return float((contributions_per_seq_sum.double() - (fx - fr)).abs().max())


def accuracy(tool: str, out: dict, reference: dict, fx, fr) -> dict:
    """Summation-to-delta error of a tool's output and its largest difference from dnalift's."""
    if tool == "tangermeme":
        sums = out["projected"].flatten(1).sum(1)
        diff = (out["hypothetical"] - reference["hypothetical"]).abs().max()
        scale = reference["hypothetical"].abs().max()
        compared = "hypothetical"
    else:
        sums = out["contributions"].flatten(1).sum(1)
        diff = (out["contributions"] - reference["contributions"]).abs().max()
        scale = reference["contributions"].abs().max()
        compared = "contributions"
    return {"max_abs_delta": summation_error(sums, fx, fr), "max_abs_diff_vs_dnalift": float(diff),
            "max_abs_dnalift_score": float(scale), "compared": compared}


def bench_model(name: str, args, device: torch.device) -> dict:
    model, length = build(name, seed=args.seed)
    n, r = DEFAULT_SIZES[name]
    n = args.n or n
    r = args.refs or r
    X = random_one_hot(n, length, seed=args.seed)
    R, ref_kind = make_references(X, r, seed=args.seed)
    program = export(model, X)
    batch_size = args.batch_size or min(auto_batch_size(plan_for(program), device=device, dtype=torch.float32),
                                        n * r)
    model = model.to(device)
    fx, fr = predictions(model, X, R, batch_size=batch_size, device=device)

    rules = ["rescale"] + [rule for rule in args.rule if rule != "rescale"]
    runs = {"floor": lambda: run_floor(model, X, R, batch_size=batch_size, device=device)}
    for rule in rules:
        label = "dnalift" if rule == "rescale" else f"dnalift-{rule}"
        runs[label] = (lambda rule=rule: run_dnalift(program, X, R, batch_size=batch_size, device=device,
                                                     rule=rule))
    skipped = {}
    for tool in args.tools:
        if tool == "dnalift":
            continue
        reason = tool_available(tool)
        if reason:
            skipped[tool] = reason
            continue
        fn = run_tangermeme if tool == "tangermeme" else run_captum
        runs[tool] = (lambda fn=fn: fn(model, X, R, batch_size=batch_size, device=device))

    print(f"\n== {name}: n={n} sequences x r={r} references, length {length}, batch {batch_size} pairs, "
          f"{ref_kind}, device {device}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}",
          flush=True)
    walls = {label: [] for label in runs}
    cpus = {label: [] for label in runs}
    outputs, messages, warmup = {}, {}, {}
    for label, fn in runs.items():  # warm-up; keeps the outputs for the accuracy columns
        wall, _, value, caught = timed(fn, device)
        warmup[label] = wall
        outputs[label] = value
        messages[label] = caught
        print(f"  warm-up {label}: {wall:.2f} s", flush=True)
    for repeat in range(args.repeats):
        for label, fn in runs.items():
            wall, cpu, _, caught = timed(fn, device)
            walls[label].append(wall)
            cpus[label].append(cpu)
            messages[label] = sorted(set(messages[label]) | set(caught))
        print(f"  repeat {repeat + 1}/{args.repeats}: "
              + ", ".join(f"{label} {walls[label][-1]:.2f}s" for label in runs), flush=True)

    floor = statistics.median(walls["floor"])
    ours = statistics.median(walls["dnalift"])
    floor_cpu = statistics.median(cpus["floor"])
    rows = []
    for label in runs:
        seconds = statistics.median(walls[label])
        row = {"model": name, "tool": label, "seconds": seconds, "cpu_seconds": statistics.median(cpus[label]),
               "all_seconds": walls[label], "warmup_seconds": warmup[label], "ratio_to_floor": seconds / floor,
               "cpu_ratio_to_floor": statistics.median(cpus[label]) / floor_cpu,
               "warnings": messages[label]}
        if label in ("tangermeme", "captum"):
            row["dnalift_speedup"] = seconds / ours
            row.update(accuracy(label, outputs[label], outputs["dnalift"], fx, fr))
        elif label.startswith("dnalift"):
            sums = outputs[label]["contributions"].flatten(1).sum(1)
            row["max_abs_delta"] = summation_error(sums, fx, fr)
            if label != "dnalift":
                row["ratio_to_rescale"] = seconds / ours
        rows.append(row)
    if args.profile:
        for rule in rules:
            profile_dnalift(program, X, R, batch_size=batch_size, device=device, rule=rule, rows=args.profile)
    return {"model": name, "n": n, "refs": r, "length": length, "batch_size": batch_size,
            "references": ref_kind, "mean_abs_output_change": float((fx - fr).abs().mean()),
            "max_abs_dnalift_contribution": float(outputs["dnalift"]["contributions"].abs().max()),
            "max_abs_dnalift_hypothetical": float(outputs["dnalift"]["hypothetical"].abs().max()),
            "skipped": skipped, "rows": rows}


def profile_dnalift(program, X, R, *, batch_size, device, rule, rows: int) -> None:
    """Print where one dnalift run spends its time: functions of dnalift (cProfile) and ATen ops (torch)."""
    import cProfile
    import io
    import pstats

    from torch.profiler import ProfilerActivity, profile

    profiler = cProfile.Profile()
    profiler.enable()
    run_dnalift(program, X, R, batch_size=batch_size, device=device, rule=rule)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).sort_stats("tottime")
    stats.print_stats(r"dnalift|built-in|method", rows)
    print(f"\n-- profile of dnalift {rule}: functions by own time (cProfile)\n" + text.getvalue().strip())
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run_dnalift(program, X, R, batch_size=batch_size, device=device, rule=rule)
    print(f"\n-- profile of dnalift {rule}: ATen ops by self time (torch.profiler)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


# --------------------------------------------------------------------------------------------- report
def print_table(results: list[dict]) -> None:
    header = (f"{'model':<11} {'tool':<22} {'seconds':>8} {'/floor':>7} {'cpu/fl':>7} {'dnalift x':>9} {'max|delta|':>11} "
              f"{'max|diff|':>10}")
    print("\n" + header)
    print("-" * len(header))
    for result in results:
        for row in result["rows"]:
            speedup = f"{row['dnalift_speedup']:.2f}x" if "dnalift_speedup" in row else ""
            if "ratio_to_rescale" in row:
                speedup = f"RS {row['ratio_to_rescale']:.2f}"
            delta = f"{row['max_abs_delta']:.2e}" if "max_abs_delta" in row else ""
            diff = f"{row['max_abs_diff_vs_dnalift']:.2e}" if "max_abs_diff_vs_dnalift" in row else ""
            print(f"{row['model']:<11} {row['tool']:<22} {row['seconds']:>8.2f} {row['ratio_to_floor']:>7.2f} "
                  f"{row['cpu_ratio_to_floor']:>7.2f} "
                  f"{speedup:>9} {delta:>11} {diff:>10}")
        print(f"{'':<11} (n={result['n']}, r={result['refs']}, batch {result['batch_size']}; "
              f"mean |f(x) - mean f(ref)| = {result['mean_abs_output_change']:.3g}; "
              f"largest |dnalift contribution| = {result['max_abs_dnalift_contribution']:.3g}, "
              f"|hypothetical| = {result['max_abs_dnalift_hypothetical']:.3g})")
        for tool, reason in result["skipped"].items():
            print(f"{'':<11} {tool} skipped: {reason}")
    print("\nseconds: median wall time; /floor: ratio to forward+input-gradient over the reference rows; "
          "cpu/fl: the same with process CPU time (less sensitive to other load; with several threads it "
          "counts their waiting); "
          "dnalift x: tool time / dnalift time (RS: this rule's time / dnalift Rescale); max|delta|: worst "
          "summation-to-delta error; max|diff|: worst absolute difference from dnalift's scores.")
    warned = [(r["model"], r["tool"], m) for res in results for r in res["rows"] for m in r["warnings"]]
    if warned:
        print("\nwarnings raised by the tools:")
        for model, tool, message in warned:
            print(f"  [{model} / {tool}] {message}")


def machine() -> dict:
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "load_average_at_start": os.getloadavg()}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", choices=MODELS, default=["paper", "paper-relu", "bpnet"],
                        help="models to run (default: all three)")
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--n", type=int, help="sequences (default: 256 for the paper CNNs, 64 for bpnet)")
    parser.add_argument("--refs", type=int, help="references per sequence (default: 20 paper, 10 bpnet)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up (default 3)")
    parser.add_argument("--batch-size", type=int,
                        help="sequence-reference pairs per batch, the same for every tool and the floor "
                             "(default: dnalift's automatic choice, at most n*r)")
    parser.add_argument("--rule", nargs="+", choices=["rescale", "revealcancel", "genomics"], default=["rescale"],
                        help="dnalift rules to time; the others are compared with Rescale (tangermeme and "
                             "captum implement Rescale only)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS",
                        help="after timing, profile one dnalift run per rule (cProfile and torch.profiler) and "
                             "print the top ROWS entries")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: PyTorch sees no CUDA device here", file=sys.stderr)
        return 2
    info = machine()
    results = [bench_model(name, args, device) for name in args.model]
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "argv": sys.argv, "results": results}, indent=1))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
