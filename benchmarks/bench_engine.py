"""DeepLIFT speed and agreement: dnalift against the floor, tangermeme and captum (not part of the tests).

Every tool scores the same sequences against the same references (dnalift's dinucleotide shuffles of each
sequence) on target 0, and each is timed as it does best:

- the **floor** is one plain forward and input-gradient backward of the model (float32, parameters frozen,
  ``torch.no_grad`` not used) over the n*r sequence-reference rows, timed at every batch size of a sweep; the
  fastest is the **best floor**, which every ratio divides by. A DeepLIFT implementation must do at least this.
- **tangermeme** (``deep_lift_shap``) and **captum** (``DeepLift``, one baseline per pair) are timed at every
  batch size of the same sweep, and each is reported at its own fastest.
- **dnalift** runs with its defaults, as a user would: the model saved with ``torch.export.save`` and read with
  ``dnalift.load_model``, ``dnalift.attribute(model, X, R, target=0, rule=..., device=...)``, no batch size
  (``--dnalift-batch`` adds rows at fixed batch sizes).

All configurations run once to warm up, then ``--repeats`` times interleaved (floor, dnalift, tangermeme,
captum, floor, ...), so that a change of load hits them alike; the median of the repeats is reported. The
machine's load average is recorded before and after.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_engine.py --markdown              # the README table
    PYTHONPATH=. .venv/bin/python benchmarks/bench_engine.py --model bpnet --rule rescale --repeats 3
    PYTHONPATH=. .venv/bin/python benchmarks/bench_engine.py --device cuda --n 2048 --refs 20
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
from _models import MODELS, build  # noqa: E402

DEFAULT_SIZES = {"paper": (256, 20), "paper-relu": (256, 20), "bpnet": (16, 20)}
"""(sequences, references per sequence) of each model."""
DEFAULT_SWEEP = {"paper": (256, 1024, 2048, 5120), "paper-relu": (256, 1024, 2048, 5120),
                 "bpnet": (32, 64, 128, 320)}
"""Batch sizes (sequence-reference pairs) of the floor, tangermeme and captum; capped at n*r."""
RULES = ("rescale", "revealcancel", "genomics")
OTHER_TOOLS = ("tangermeme", "captum")


@dataclasses.dataclass
class Config:
    """One timed configuration: a tool (``floor``, ``dnalift``, ``tangermeme``, ``captum``) with a rule and a
    batch size (None: the tool's own default)."""

    tool: str
    rule: str
    batch: int | None
    run: Callable[[], object]
    walls: list = dataclasses.field(default_factory=list)
    cpus: list = dataclasses.field(default_factory=list)
    peaks: list = dataclasses.field(default_factory=list)
    warnings: set = dataclasses.field(default_factory=set)
    output: object = None
    warmup: float = 0.0

    @property
    def seconds(self) -> float:
        return common.median(self.walls)

    @property
    def cpu_seconds(self) -> float:
        return common.median(self.cpus)


# ----------------------------------------------------------------------------------------------- tools
def run_tangermeme(model, X, R, *, batch_size, device):
    """tangermeme's hypothetical contributions (n, 4, length) and their projection on the observed bases."""
    from tangermeme.deep_lift_shap import deep_lift_shap

    hypothetical = deep_lift_shap(model, X, references=R, target=0, batch_size=batch_size, hypothetical=True,
                                  device=device, dtype=torch.float32, verbose=False)
    return {"hypothetical": hypothetical.cpu(), "projected": hypothetical.cpu() * X}


def run_captum(model, X, R, *, batch_size, device):
    """captum's DeepLift contributions m*(x - ref) per pair, averaged over each sequence's references."""
    from captum.attr import DeepLift

    n, r = R.shape[:2]
    explainer = DeepLift(model)
    flat = R.reshape(n * r, *R.shape[2:])
    pair_seq = torch.arange(n).repeat_interleave(r)
    chunks = []
    for start in range(0, n * r, batch_size):
        stop = min(n * r, start + batch_size)
        inputs = X[pair_seq[start:stop]].to(device)
        chunks.append(explainer.attribute(inputs, baselines=flat[start:stop].to(device), target=0).detach().cpu())
    return {"contributions": torch.cat(chunks).reshape(n, r, *X.shape[1:]).mean(1)}


def tool_missing(name: str) -> str | None:
    """None when the tool imports, else why not."""
    try:
        if name == "tangermeme":
            import tangermeme.deep_lift_shap  # noqa: F401
        elif name == "captum":
            import captum.attr  # noqa: F401
    except Exception as error:  # noqa: BLE001 - any import failure means: skip the tool
        return f"{type(error).__name__}: {error}"
    return None


# ---------------------------------------------------------------------------------------------- accuracy
def model_outputs(model, X, R, *, device, batch_size=1024):
    """f(x) (n,) and mean_r f(ref_r) (n,) on target 0, float64 on the CPU."""
    n, r = R.shape[:2]
    flat = R.reshape(n * r, *R.shape[2:])
    with torch.no_grad():
        fx = torch.cat([model(X[s:s + batch_size].to(device))[:, 0].cpu() for s in range(0, n, batch_size)])
        fr = torch.cat([model(flat[s:s + batch_size].to(device))[:, 0].cpu()
                        for s in range(0, n * r, batch_size)])
    return fx.double(), fr.double().reshape(n, r).mean(1)


def delta_error(per_sequence_sums, fx, fr) -> float:
    """Largest |sum of contributions - (f(x) - mean f(ref))| over the sequences."""
    return float((per_sequence_sums.double() - (fx - fr)).abs().max())


def agreement(config: Config, dnalift_out, fx, fr) -> dict:
    """Summation-to-delta error of a configuration's scores and, for the other tools, the largest absolute
    difference from dnalift's Rescale scores (tangermeme: hypothetical; captum: contributions)."""
    out = config.output
    if config.tool == "floor" or out is None:
        return {}
    if config.tool == "dnalift":
        return {"max_abs_delta": delta_error(out.contributions.flatten(1).sum(1), fx, fr)}
    if config.tool == "tangermeme":
        ours = dnalift_out.hypothetical
        return {"max_abs_delta": delta_error(out["projected"].flatten(1).sum(1), fx, fr),
                "max_abs_diff": float((out["hypothetical"] - ours).abs().max()), "compared": "hypothetical"}
    ours = dnalift_out.contributions
    return {"max_abs_delta": delta_error(out["contributions"].flatten(1).sum(1), fx, fr),
            "max_abs_diff": float((out["contributions"] - ours).abs().max()), "compared": "contributions"}


# ------------------------------------------------------------------------------------------ measurement
def configs_for(name: str, args, device) -> tuple[dict, list[Config], dict, Callable]:
    """The data and every configuration to time for one model."""
    module, length = build(name, seed=args.seed)
    n0, r0 = DEFAULT_SIZES[name]
    n, r = args.n or n0, args.refs or r0
    X = common.random_one_hot(n, length, seed=args.seed)
    R = common.shuffled_references(X, r, seed=args.seed)
    loaded = common.DnaliftModel(module, X)
    module = module.to(device)
    rows = R.reshape(n * r, 4, length)
    sweep = sorted({min(size, n * r) for size in (args.sweep or DEFAULT_SWEEP[name])})
    configs = [Config("floor", "", size, (lambda size=size: common.floor_pass(module, rows, batch_size=size,
                                                                               device=device)))
               for size in sweep]
    for rule in args.rule:
        configs.append(Config("dnalift", rule, None, (lambda rule=rule: common.dnalift_attribute(
            loaded.model, X, R, rule=rule, device=device))))
        for size in args.dnalift_batch:
            configs.append(Config("dnalift", rule, size, (lambda rule=rule, size=size: common.dnalift_attribute(
                loaded.model, X, R, rule=rule, device=device, batch_size=size))))
    skipped = {}
    for tool in args.tools:
        reason = tool_missing(tool)
        if reason:
            skipped[tool] = reason
            continue
        fn = run_tangermeme if tool == "tangermeme" else run_captum
        configs += [Config(tool, "rescale", size, (lambda fn=fn, size=size: fn(module, X, R, batch_size=size,
                                                                                device=device)))
                    for size in sweep]
    auto = common.dnalift_auto_batch(loaded.model, device=device)
    data = {"model": name, "n": n, "refs": r, "length": length, "pairs": n * r, "sweep": sweep,
            "dnalift_auto_batch": auto, "skipped": skipped}
    return data, configs, {"module": module, "X": X, "R": R}, loaded.close


def bench_model(name: str, args, device: torch.device) -> dict:
    data, configs, tensors, close = configs_for(name, args, device)
    try:
        auto = data["dnalift_auto_batch"]
        print(f"\n== {name}: {data['n']} sequences x {data['refs']} references, length {data['length']}, "
              f"sweep {data['sweep']}, dnalift automatic batch {auto}, device {device}, "
              f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
        data["load_before"] = os.getloadavg()
        for config in configs:  # warm-up; keeps the outputs for the agreement columns
            measured = common.timed(config.run, device)
            config.output, config.warmup = measured["value"], measured["wall"]
            config.warnings |= set(measured["warnings"])
        for repeat in range(args.repeats):
            for config in configs:
                measured = common.timed(config.run, device)
                config.walls.append(measured["wall"])
                config.cpus.append(measured["cpu"])
                config.peaks.append(measured.get("peak_bytes"))
                config.warnings |= set(measured["warnings"])
            print(f"  repeat {repeat + 1}/{args.repeats} done, load {os.getloadavg()[0]:.2f}", file=sys.stderr,
                  flush=True)
        data["load_after"] = os.getloadavg()
        data["rows"] = summarise(configs, data, tensors, device)
    finally:
        close()
    return data


def summarise(configs: list[Config], data: dict, tensors: dict, device) -> list[dict]:
    """One row per configuration, with the best of each swept tool marked and every ratio filled in."""
    floors = [c for c in configs if c.tool == "floor"]
    best_floor = min(floors, key=lambda c: c.seconds)
    rescale = next((c for c in configs if c.tool == "dnalift" and c.rule == "rescale" and c.batch is None), None)
    best = {tool: min((c for c in configs if c.tool == tool), key=lambda c: c.seconds)
            for tool in ("floor", *OTHER_TOOLS) if any(c.tool == tool for c in configs)}
    fx, fr = model_outputs(tensors["module"], tensors["X"], tensors["R"], device=device)
    data["mean_abs_output_change"] = float((fx - fr).abs().mean())
    rows = []
    for config in configs:
        row = {"tool": config.tool, "rule": config.rule, "batch": config.batch, "seconds": config.seconds,
               "cpu_seconds": config.cpu_seconds, "all_seconds": config.walls, "warmup_seconds": config.warmup,
               "pairs_per_s": data["pairs"] / config.seconds, "ratio_to_best_floor": config.seconds / best_floor.seconds,
               "cpu_ratio_to_best_floor": config.cpu_seconds / best_floor.cpu_seconds,
               "best_of_sweep": best.get(config.tool) is config, "warnings": sorted(config.warnings)}
        if config.peaks and config.peaks[0] is not None:
            row["peak_gib"] = max(config.peaks) / 2**30
        if config.tool == "dnalift" and config.batch is None:
            auto = data["dnalift_auto_batch"]
            row["batch_label"] = f"auto ({min(auto, data['pairs'])})"
        if rescale is not None:
            row.update(agreement(config, rescale.output, fx, fr))
            if config.tool in OTHER_TOOLS:
                row["times_dnalift"] = config.seconds / rescale.seconds
            elif config.tool == "dnalift" and config is not rescale:
                row["ratio_to_rescale"] = config.seconds / rescale.seconds
        rows.append(row)
    if rescale is not None:
        data["max_abs_dnalift_contribution"] = float(rescale.output.contributions.abs().max())
        data["max_abs_dnalift_hypothetical"] = float(rescale.output.hypothetical.abs().max())
    return rows


# --------------------------------------------------------------------------------------------- report
def _batch(row) -> str:
    return row.get("batch_label") or str(row["batch"])


def main_table(results: list[dict], *, markdown: bool) -> str:
    """The comparison: the best floor, dnalift with its defaults, each other tool at its best batch size."""
    header = ["model", "tool", "rule", "batch (won)", "seconds", "pairs/s", "x best floor", "cpu x floor",
              "tool / dnalift", "max abs delta", "max abs diff vs dnalift"]
    lines = []
    for result in results:
        for row in result["rows"]:
            if row["tool"] in ("floor", *OTHER_TOOLS) and not row["best_of_sweep"]:
                continue
            if row["tool"] == "dnalift" and row["batch"] is not None:
                continue
            relative = ""
            if "times_dnalift" in row:
                relative = f"{row['times_dnalift']:.2f}"
            elif "ratio_to_rescale" in row:
                relative = f"{row['ratio_to_rescale']:.2f} x Rescale"
            delta = f"{row['max_abs_delta']:.1e}" if "max_abs_delta" in row else ""
            diff = f"{row['max_abs_diff']:.1e} ({row['compared'][:4]}.)" if "max_abs_diff" in row else ""
            lines.append([result["model"], row["tool"], row["rule"] or "-", _batch(row), f"{row['seconds']:.3f}",
                          f"{row['pairs_per_s']:,.0f}", f"{row['ratio_to_best_floor']:.2f}",
                          f"{row['cpu_ratio_to_best_floor']:.2f}", relative, delta, diff])
    return common.format_table(header, lines, markdown=markdown, left=(0, 1, 2, 3))


def sweep_table(results: list[dict], *, markdown: bool) -> str:
    """Every timed configuration: seconds and ratio to the best floor for each batch size."""
    header = ["model", "tool", "rule", "batch", "seconds", "pairs/s", "x best floor", "peak GiB", "best"]
    lines = []
    for result in results:
        for row in result["rows"]:
            peak = f"{row['peak_gib']:.2f}" if "peak_gib" in row else ""
            lines.append([result["model"], row["tool"], row["rule"] or "-", _batch(row), f"{row['seconds']:.3f}",
                          f"{row['pairs_per_s']:,.0f}", f"{row['ratio_to_best_floor']:.2f}", peak,
                          "*" if row["best_of_sweep"] else ""])
    return common.format_table(header, lines, markdown=markdown, left=(0, 1, 2, 3))


def report(results: list[dict], info: dict, command: str, *, markdown: bool) -> str:
    parts = [f"Command: `{command}`", f"Machine: {common.describe_machine(info)}", "",
             main_table(results, markdown=markdown), ""]
    for result in results:
        notes = [f"{result['model']}: {result['n']} sequences x {result['refs']} references = {result['pairs']} "
                 f"pairs, length {result['length']}; mean |f(x) - mean f(ref)| = "
                 f"{result['mean_abs_output_change']:.3g}"]
        if "max_abs_dnalift_contribution" in result:
            notes.append(f"largest |dnalift contribution| {result['max_abs_dnalift_contribution']:.3g}, "
                         f"|hypothetical| {result['max_abs_dnalift_hypothetical']:.3g}")
        notes += [f"{tool} skipped ({why})" for tool, why in result["skipped"].items()]
        notes.append(f"load {tuple(round(x, 2) for x in result['load_before'])} -> "
                     f"{tuple(round(x, 2) for x in result['load_after'])}")
        parts.append(("- " if markdown else "  ") + "; ".join(notes))
    parts += ["", "Every configuration (median seconds; * the fastest of a tool's sweep):", "",
              sweep_table(results, markdown=markdown), "",
              "x best floor: seconds / the fastest floor (forward + input-gradient backward over the n*r rows). "
              "cpu x floor: the same with process CPU time. tool / dnalift: the tool's seconds / dnalift "
              "Rescale's (how many times faster dnalift is). max abs delta: worst summation-to-delta error. "
              "max abs diff: worst absolute difference from dnalift's Rescale scores (hypothetical or "
              "contributions)."]
    warned = [(res["model"], row["tool"], row["rule"], message) for res in results for row in res["rows"]
              for message in row["warnings"]]
    if warned:
        parts += ["", "Warnings raised by the tools:"]
        parts += [f"- [{model} / {tool} {rule}] {message}" for model, tool, rule, message in sorted(set(warned))]
    return "\n".join(parts)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", choices=MODELS, default=list(MODELS),
                        help="models (default: all three)")
    parser.add_argument("--rule", nargs="+", choices=RULES, default=list(RULES), help="dnalift rules to time")
    parser.add_argument("--tools", nargs="*", choices=OTHER_TOOLS, default=list(OTHER_TOOLS),
                        help="other tools to compare (default: both; none: only the floor and dnalift)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:i (default cpu)")
    parser.add_argument("--n", type=int, help="sequences (default: 256 paper CNNs, 16 bpnet)")
    parser.add_argument("--refs", type=int, help="references per sequence (default 20)")
    parser.add_argument("--sweep", type=int, nargs="+", help="batch sizes of the floor and the other tools "
                        "(default: 256 1024 2048 5120 paper CNNs, 32 64 128 320 bpnet; capped at n*r)")
    parser.add_argument("--dnalift-batch", type=int, nargs="*", default=[],
                        help="also time dnalift at these batch sizes (default: only its automatic choice)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up (default 5)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS",
                        help="after the timing, profile one dnalift run per rule and print the top ROWS entries")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if any(size < 1 for size in (args.sweep or []) + args.dnalift_batch):
        parser.error("batch sizes must be at least 1")
    return args


def profile_dnalift(name: str, args, device, rows: int) -> None:
    """Print where one dnalift run per rule spends its time: Python functions (cProfile), ATen ops (torch)."""
    import cProfile
    import io
    import pstats

    from torch.profiler import ProfilerActivity, profile

    module, length = build(name, seed=args.seed)
    n0, r0 = DEFAULT_SIZES[name]
    X = common.random_one_hot(args.n or n0, length, seed=args.seed)
    R = common.shuffled_references(X, args.refs or r0, seed=args.seed)
    loaded = common.DnaliftModel(module, X)
    try:
        for rule in args.rule:
            common.dnalift_attribute(loaded.model, X, R, rule=rule, device=device)  # warm
            profiler = cProfile.Profile()
            profiler.enable()
            common.dnalift_attribute(loaded.model, X, R, rule=rule, device=device)
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(r"dnalift|built-in|method", rows)
            print(f"\n-- {name} dnalift {rule}: functions by own time (cProfile)\n{text.getvalue().strip()}")
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
            with profile(activities=activities) as prof:
                common.dnalift_attribute(loaded.model, X, R, rule=rule, device=device)
            print(f"\n-- {name} dnalift {rule}: ATen ops by self time (torch.profiler)")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
    finally:
        loaded.close()


def main(argv=None) -> int:
    args = parse_args(argv)
    run = common.run_models("bench_engine.py", args, argv, bench_model)
    if run is None:
        return 2
    device, info, results, command = run
    print(report(results, info, command, markdown=args.markdown))
    if args.json:
        common.write_json(args.json, info, results)
        print(f"\nwrote {args.json}", file=sys.stderr)
    for name in args.model if args.profile else ():
        profile_dnalift(name, args, device, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
