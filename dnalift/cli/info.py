"""``dnalift info``: a model's ops, the DeepLIFT rule each gets, and what is unsupported, without scoring."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from dnalift.cli import _logging
from dnalift.cli._errors import verbosity_options
from dnalift.cli._scoring import split_ops as _split_ops
from dnalift.options import INT_MAX, Layout, MaxRule, Mode

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
@click.option("--rule", type=click.Choice(Mode.values()), default="rescale",
              show_default=True, help="The rule mode to show.")
@click.option("--max-rule", type=click.Choice(MaxRule.values()), default="exact", show_default=True)
@click.option("--width", "input_length", type=click.IntRange(min=1, max=INT_MAX["width"]), metavar="L",
              help="Sequence length to load the model for (needed when the file does not record it), as "
                   "`dnalift score --width`.")
@click.option("--layout", type=click.Choice(Layout.values()), default="auto", show_default=True,
              help="The model's input layout, as `dnalift score --layout`.")
@click.option("--arch", metavar="package.module:Class", help="Architecture for a state_dict model file.")
@click.option("--arch-kwargs", metavar="JSON", help="Keyword arguments of --arch, as a JSON object.")
@click.option("--trust-model", is_flag=True, help="Allow loading a pickled model (runs code from the file).")
@click.option("--allow-gradient", multiple=True, callback=_split_ops, metavar="OP[,OP...]",
              help="ATen ops without a rule to pass through with gradients.")
@verbosity_options
def info(model, rule, max_rule, input_length, layout, arch, arch_kwargs, trust_model, allow_gradient, verbose,
         quiet):
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
    from dnalift.attribution.engine import describe, outputs_of
    from dnalift.errors import UnsupportedOpError
    from dnalift.models import layouts, load_model

    m = load_model(model, arch=arch, arch_kwargs=arch_kwargs, trust=trust_model, input_length=input_length,
                   layout=layout)
    shape = ", ".join("L" if d is None else str(d) for d in m.input_shape)
    click.echo(f"model:   {model} ({m.format}, sha256 {m.sha256[:16]}...)")
    click.echo(f"input:   (n, {shape}) {layouts.label_of(m.layout)}; sequence length {m.input_length or 'free'}")
    for i, control in enumerate(m.control_shapes, 2):
        dims = ", ".join(map(str, control))
        click.echo(f"input {i}: (n, {dims}) a control input: zeros when scored (--control-inputs zeros), "
                   "not attributed")
    _echo_outputs(m, outputs_of(m))
    if m.format == "keras":
        _echo_keras_layers(model, m.input_length)
    click.echo(f"rules:   {rule} mode, max rule {max_rule}")
    try:
        rows, problems = describe(m, rule=rule, max_rule=max_rule, allow_gradient=allow_gradient), []
    except UnsupportedOpError as e:
        error, problems = e, list(e.ops)
        allowable = tuple(p.op for p in problems if p.allowable)
        try:
            rows = describe(m, rule=rule, max_rule=max_rule, allow_gradient=tuple(allow_gradient) + allowable)
        except UnsupportedOpError:
            rows = []
    marked = []
    no_rule = {p.node for p in problems}
    for i, row in enumerate(rows, 1):
        row = dict(row, **{"#": i})
        if row["node"] in no_rule:
            row["rule"] = "NO RULE"
        marked.append(row)
    click.echo("")
    for line in _table(marked, ["#", "op", "rule", "source"]):
        click.echo(line)
    click.echo("")
    if problems:
        click.echo(f"{len(problems)} op(s) have no DeepLIFT rule:")
        for p in problems:
            click.echo(f"  {p.line()}")
        raise error
    n_grad = sum(r.get("kind") == "gradient" for r in marked)
    extra = f" ({n_grad} passed through with gradients, as asked)" if n_grad else ""
    click.echo(f"all {len(marked)} input-dependent ops have a rule{extra}: the model can be scored.")


def _echo_keras_layers(path, length) -> None:
    """The Keras layers and the torch module each became."""
    from dnalift.models.files.keras import layer_rows

    rows = [{"layer": r.name, "class": r.class_name, "as": r.module} for r in layer_rows(path, input_length=length)]
    click.echo(f"keras:   {len(rows)} layers converted (a nested model's layers as MODEL.LAYER):")
    for line in _table(rows, ["layer", "class", "as"]):
        click.echo(f"  {line}")


def _echo_outputs(m, outputs) -> None:
    """The model's outputs, their per-row shapes and the --target values each accepts."""
    if len(outputs) == 1:
        o = outputs[0]
        names = f"; names: {', '.join(m.output_names)}" if m.output_names else ""
        shape = ", ".join(map(str, o["shape"]))
        click.echo(f"output:  (n, {shape}): {o['units']} target(s), --target 0..{o['units'] - 1}{names}")
        return
    from dnalift.attribution.targets import STANDARD_MEANINGS

    click.echo(f"outputs: {len(outputs)}")
    for o in outputs:
        shape = ", ".join(map(str, o["shape"]))
        click.echo(f"  {o['name']}: (n, {shape}); --target {' | '.join(o['targets'])}")
    accepted = {t for o in outputs for t in o["targets"]}
    for name, meaning in STANDARD_MEANINGS.items():
        if name in accepted:
            click.echo(f"  --target {name}: {meaning}")
