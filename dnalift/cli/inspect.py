"""``dnalift inspect``: what a result file holds, where it came from, its deltas, and whether it is sound."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import click
import numpy as np

from dnalift.cli import _logging
from dnalift.cli._errors import verbosity_options

log = logging.getLogger("dnalift.cli")

_PROVENANCE_FIRST = ("format_version", "created", "dnalift_version", "torch_version", "command_line", "model_path",
                     "model_sha256", "input", "input_sha256", "reference_path", "reference_sha256", "model_format",
                     "normalized", "rule", "max_rule", "reference", "n_refs", "seed", "target", "target_index",
                     "target_name", "precision", "rc_average", "n_policy", "input_kind", "genome", "width",
                     "center", "off_genome", "shard", "row_start", "row_stop", "n_total", "merged_from")


def _size(n_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} TB"


def delta_stats(reader) -> dict:
    """Streaming statistics of ``deltas`` (absolute and relative to ``|prediction - reference|``)."""
    n = 0
    total = 0.0
    worst, worst_row = -1.0, None
    worst_rel = 0.0
    for a, b in reader.iter_chunks(65536):
        d = np.abs(reader.deltas(slice(a, b)).astype(np.float64))
        change = np.abs(reader.predictions(slice(a, b)).astype(np.float64)
                        - reader.reference_predictions(slice(a, b)).astype(np.float64))
        if not d.size:
            continue
        n += d.size
        total += float(np.nansum(d))
        i = int(np.nanargmax(d)) if np.isfinite(d).any() else 0
        if d[i] > worst:
            worst, worst_row = float(d[i]), a + i
        worst_rel = max(worst_rel, float(np.nanmax(d / np.maximum(change, 1.0))))
    return {"n": n, "max": worst if n else float("nan"), "mean": total / n if n else float("nan"),
            "row": worst_row, "max_relative": worst_rel if n else float("nan")}


def _kept_regions(r) -> str:
    """Where the kept regions file of a region-based result is, and whether it is there with one line per row."""
    path = r.kept_regions
    if not path.exists():
        return f"{path} is missing (it is written beside the result when it is finished)"
    with open(path, "rb") as fh:
        lines = sum(1 for _ in fh)
    if lines != r.n:
        return f"{path} has {lines} lines, this file {r.n} rows: it belongs to another result; rescore or remerge"
    return f"{path} (the input lines of the {r.n} rows, in row order: finemo/modisco -p take it)"


def _run(result, names_only: bool, quiet: bool, what: str) -> None:
    from dnalift.errors import StoreError
    from dnalift.io.store import open_results, validate_results

    with open_results(result, allow_incomplete=True) as r:  # validation below says what is missing
        if names_only:
            for a, b in r.iter_chunks(65536):
                for name in r.names_of(slice(a, b)):
                    click.echo(name)
            return
        attrs = r.attrs
        f = r.file
        if not quiet:
            click.echo(f"file:        {result} ({_size(Path(result).stat().st_size)})")
            click.echo(f"sequences:   {r.n} of length {r.length}"
                       f"{' (genome regions, 0-based half-open)' if r.has_regions else ''}")
            if r.has_regions:
                click.echo(f"kept regions: {_kept_regions(r)}")
            click.echo("datasets:")
            items = []
            f.visititems(lambda name, obj: items.append((name, obj)) if hasattr(obj, "shape") else None)
            for name, ds in items:
                click.echo(f"  {name:<24} {str(tuple(ds.shape)):<18} {ds.dtype}")
            click.echo("provenance:")
            keys = [k for k in _PROVENANCE_FIRST if k in attrs] + sorted(k for k in attrs if k not in _PROVENANCE_FIRST)
            for k in keys:
                v = attrs[k]
                if isinstance(v, (list, dict)):
                    v = json.dumps(v)
                click.echo(f"  {k:<16} {v}")
        try:
            stats = delta_stats(r)
            worst_name = f" ({r.names_of(stats['row'])})" if stats["row"] is not None else ""
        except (OSError, KeyError) as e:
            raise StoreError(f"{result}: cannot read the deltas ({' '.join(str(e).split())}); the file is damaged: "
                             f"rerun dnalift score") from None
    if not quiet:
        if math.isnan(stats["max"]):
            click.echo("deltas:      no rows")
        else:
            click.echo(f"deltas:      max |delta| {stats['max']:.3g}{worst_name}, mean |delta| {stats['mean']:.3g}, "
                       f"max relative {stats['max_relative']:.3g} (summation-to-delta error)")
    problems = validate_results(result)
    if problems:
        if not quiet:
            click.echo(f"validation:  FAILED, {len(problems)} problem(s):")
            for p in problems:
                click.echo(f"  - {p}")
        raise StoreError(f"{result} is not a valid result file: {problems[0]}"
                         f"{f' (and {len(problems) - 1} more problem(s))' if len(problems) > 1 else ''}")
    if not quiet:
        click.echo("validation:  OK")


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("result", type=click.Path(dir_okay=False, path_type=Path), metavar="OUT.h5")
@click.option("--names", "names_only", is_flag=True, help="Only list the sequence names, one per line.")
@verbosity_options
def inspect_cmd(result, names_only, verbose, quiet):
    """Show what OUT.h5 holds: provenance, dataset shapes, summation-to-delta statistics, and validate it.

    Exits with 1 when the file is not a valid result file (or a run did not finish it: .OUT.h5.partial.h5).

    \b
    Examples:
      dnalift inspect scores.h5
      dnalift inspect scores.h5 --names | head      # the sequence names, one per line (for logo --name)
      dnalift inspect .scores.h5.partial.h5         # what an interrupted run has written so far
    """
    _logging.setup(verbose, quiet)
    _run(result, names_only, quiet, "inspect")


@click.command(hidden=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("result", type=click.Path(dir_okay=False, path_type=Path), metavar="OUT.h5")
@verbosity_options
def validate(result, verbose, quiet):
    """Validate OUT.h5 (the same checks as `dnalift inspect`, printing only the verdict).

    \b
    Example:
      dnalift validate scores.h5
    """
    _logging.setup(verbose, quiet)
    _run(result, False, True, "validate")
    if not quiet:
        click.echo(f"{result}: OK")
