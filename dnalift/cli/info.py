"""``dnalift info``: a model's ops, the DeepLIFT rule each gets, and what is unsupported, without scoring."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import click

from dnalift.cli import _logging
from dnalift.cli._errors import verbosity_options
from dnalift.cli.score import _split_ops

log = logging.getLogger("dnalift.cli")


def _table(rows, columns) -> list[str]:
    widths = [max(len(str(c)), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns]
    widths[-1] = 0  # the last column is not padded
    head = "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()
    lines = [head]
    for r in rows:
        lines.append("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)).rstrip())
    return lines


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--rule", type=click.Choice(["rescale", "revealcancel", "genomics"]), default="rescale",
              show_default=True, help="The rule mode to show.")
@click.option("--max-rule", type=click.Choice(["exact", "gradient"]), default="exact", show_default=True)
@click.option("--width", "input_length", type=click.IntRange(min=1), metavar="L",
              help="Sequence length to load the model for (needed when the file does not record it), as "
                   "`dnalift score --width`.")
@click.option("--arch", metavar="package.module:Class", help="Architecture for a state_dict model file.")
@click.option("--arch-kwargs", metavar="JSON", help="Keyword arguments of --arch, as a JSON object.")
@click.option("--trust-model", is_flag=True, help="Allow loading a pickled model (runs code from the file).")
@click.option("--allow-gradient", multiple=True, callback=_split_ops, metavar="OP[,OP...]",
              help="ATen ops without a rule to pass through with gradients.")
@verbosity_options
def info(model, rule, max_rule, input_length, arch, arch_kwargs, trust_model, allow_gradient, verbose, quiet):
    """List MODEL's ops (ATen), the DeepLIFT rule each gets and the source line that made it.

    Nothing is scored. Ops without a rule are listed as NO RULE and the command exits with 1; score such
    a model after rewriting those parts, or with --allow-gradient OP (gradients, not exact).

    \b
    Examples:
      dnalift info model.pt2
      dnalift info model.pt --width 1000 --rule genomics
      dnalift info weights.pt --arch mypkg.models:Net --arch-kwargs '{"n_filters": 64}' --width 200
    """
    _logging.setup(verbose, quiet)
    if arch_kwargs is not None and arch is None:
        raise click.UsageError("--arch-kwargs needs --arch")
    from dnalift.attribution.engine import describe
    from dnalift.errors import UnsupportedOpError
    from dnalift.models import load_model

    m = load_model(model, arch=arch, arch_kwargs=arch_kwargs, trust=trust_model, input_length=input_length)
    shape = ", ".join("L" if d is None else str(d) for d in m.input_shape)
    out_shape = ", ".join("?" if d is None else str(d) for d in m.output_shape)
    click.echo(f"model:   {model} ({m.format}, sha256 {m.sha256[:16]}...)")
    layout = "channels A,C,G,T first" if m.layout == "NCL" else "channels A,C,G,T last"
    click.echo(f"input:   (n, {shape}) {layout}; sequence length {m.input_length or 'free'}")
    names = f"; names: {', '.join(m.output_names)}" if m.output_names else ""
    click.echo(f"output:  (n, {out_shape}): {m.n_outputs} target(s), --target 0..{m.n_outputs - 1}{names}")
    click.echo(f"rules:   {rule} mode, max rule {max_rule}")
    unsupported: list[str] = []
    try:
        rows = describe(m, rule=rule, max_rule=max_rule, allow_gradient=allow_gradient)
    except UnsupportedOpError as e:
        error = e
        match = re.search(r"--allow-gradient ([\w.,]+)", str(e))
        if not match:
            raise
        unsupported = [op for op in match.group(1).split(",") if op]
        rows = describe(m, rule=rule, max_rule=max_rule, allow_gradient=tuple(allow_gradient) + tuple(unsupported))
    else:
        error = None
    marked = []
    for i, row in enumerate(rows, 1):
        row = dict(row)
        row["#"] = i
        if row.get("op", "").removeprefix("aten.").split(".")[0] in unsupported and row.get("kind") == "gradient":
            row["rule"] = "NO RULE"
        marked.append(row)
    click.echo("")
    for line in _table(marked, ["#", "op", "rule", "source"]):
        click.echo(line)
    click.echo("")
    if error is not None:
        n_bad = sum(r["rule"] == "NO RULE" for r in marked)
        click.echo(f"{n_bad} op(s) have no DeepLIFT rule (NO RULE above).")
        raise error
    n_grad = sum(r.get("kind") == "gradient" for r in marked)
    extra = f" ({n_grad} passed through with gradients, as asked)" if n_grad else ""
    click.echo(f"all {len(marked)} input-dependent ops have a rule{extra}: the model can be scored.")
