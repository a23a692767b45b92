"""``dnalift logo``: the contribution logo of one sequence of a result file."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from dnalift.cli import _logging
from dnalift.cli._errors import verbosity_options
from dnalift.errors import NameNotFoundError, OutputExistsError, StoreError

log = logging.getLogger("dnalift.cli")

FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


def _check_output(ctx, param, value: Path):
    fmt = FORMATS.get(value.suffix.lower())
    if fmt is None:
        raise click.BadParameter(f"{value.name!r}: the file name must end in .png, .pdf or .svg")
    return value


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("result", type=click.Path(dir_okay=False, path_type=Path), metavar="OUT.h5")
@click.option("--name", metavar="NAME", help="The sequence to draw, by name (`dnalift inspect OUT.h5 --names`).")
@click.option("--index", type=click.IntRange(min=0), metavar="I", help="The sequence to draw, by row (0-based).")
@click.option("--variant", metavar="ID",
              help="A file of `dnalift variants`: draw both alleles of variant ID, one above the other, around it.")
@click.option("--start", type=click.IntRange(min=0), metavar="S", help="First position to draw (0-based).")
@click.option("--end", type=click.IntRange(min=1), metavar="E",
              help="End of the positions to draw (0-based, exclusive).")
@click.option("--around-max", type=click.IntRange(min=1), metavar="W",
              help="Draw W positions centred on the largest absolute contribution.")
@click.option("--hypothetical", is_flag=True, help="Add a panel with the hypothetical scores of all four bases.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              callback=_check_output, metavar="logo.png|pdf|svg", help="Image file; the format is its suffix.")
@click.option("--force", is_flag=True, help="Overwrite the image file if it exists.")
@verbosity_options
def logo(result, name, index, variant, start, end, around_max, hypothetical, output, force, verbose, quiet):
    """Draw the contribution logo of one sequence of OUT.h5.

    Letter heights are the contribution of the observed base (projected_shap/seq): above the axis when it
    raises the prediction, below when it lowers it; A green, C blue, G orange, T red. The title gives the
    name and the prediction; positions on the axis are 0-based. With --variant, the reference allele's
    window above the alternative's, the allele's columns shaded, 20 positions on each side (or --start/--end).

    \b
    Examples:
      dnalift logo scores.h5 --index 0 -o logo.png
      dnalift logo scores.h5 --name 'chr1:1000-2000(+)' --around-max 40 -o peak.pdf
      dnalift logo scores.h5 --index 3 --start 40 --end 110 --hypothetical -o s3.svg --force
      dnalift logo variants.h5 --variant rs123 -o rs123.png
    """
    _logging.setup(verbose, quiet)
    if sum(x is not None for x in (name, index, variant)) != 1:
        raise click.UsageError("give the sequence with exactly one of --name NAME, --index I and --variant ID")
    if variant is not None and (around_max is not None or hypothetical):
        raise click.UsageError("--variant draws both alleles' contributions; --around-max and --hypothetical are "
                               "for one sequence")
    if around_max is not None and (start is not None or end is not None):
        raise click.UsageError("give either --start/--end or --around-max, not both")
    if start is not None and end is not None and end <= start:
        raise click.UsageError(f"--end {end} must be larger than --start {start}")
    if output.exists() and not force:
        raise OutputExistsError(f"{output} exists; pass force=True to overwrite it or choose another output",
                                argument="output", path=str(output))

    from dnalift.io.store import open_results
    from dnalift.plotting import plot_result

    if variant is not None:
        return _variant_logo(result, variant, start, end, output, quiet)
    with open_results(result) as reader:
        if index is not None and index >= reader.n:
            raise StoreError(f"index={index} is out of range: {result} has {reader.n} sequences (0-{reader.n - 1})",
                             argument="index")
        if (start is not None and start >= reader.length) or (end is not None and end > reader.length):
            raise click.UsageError(f"--start/--end must lie within the {reader.length} positions of the sequences "
                                   f"(0 <= start < end <= {reader.length}, 0-based)")
        try:
            row = reader.index_of(name) if name is not None else index
        except NameNotFoundError as e:
            raise NameNotFoundError(f"{e}; list the names with `dnalift inspect {result} --names`",
                                    argument=e.argument, **e.details) from None
        fig = plot_result(reader, row, start=start, end=end, around_max=around_max, hypothetical=hypothetical)
        label = reader.names[row]
    _save(fig, output)
    if not quiet:
        click.echo(f"wrote {output} (sequence {label}, row {row})")


def _variant_logo(result, variant, start, end, output, quiet) -> None:
    from dnalift.io.store import open_results
    from dnalift.plotting import plot_variant

    with open_results(result) as reader:
        if (start is not None and start >= reader.length) or (end is not None and end > reader.length):
            raise click.UsageError(f"--start/--end must lie within the {reader.length} positions of the windows")
        row = reader.variant_row(variant)
        fig = plot_variant(reader, variant, start=start, end=end)
    _save(fig, output)
    if not quiet:
        click.echo(f"wrote {output} (variant {variant}, rows {row} and {row + 1})")


def _save(fig, output: Path) -> None:
    """Write the figure under a temporary name and rename it, so a failure leaves no image (or folder)."""
    from dnalift.io.outputs import OutputFolders

    folders = OutputFolders()
    folders.make(output.parent)
    tmp = output.with_name(f".{output.name}.partial{output.suffix}")
    try:
        fig.savefig(tmp, format=FORMATS[output.suffix.lower()], dpi=150)
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        folders.remove_empty()
        raise
