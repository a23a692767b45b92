"""``dnalift merge``: join the shard files of a ``--shard i-of-n`` run into one result file."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from dnalift.cli import _logging
from dnalift.cli._errors import verbosity_options

log = logging.getLogger("dnalift.cli")


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path),
                metavar="SHARD.h5...")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar="ALL.h5", help="The merged result file.")
@click.option("--force", is_flag=True, help="Overwrite ALL.h5 if it exists (replaced only when complete).")
@verbosity_options
def merge(shards, output, force, verbose, quiet):
    """Join SHARD.h5 files written with `dnalift score --shard i-of-n` into ALL.h5.

    The shards must come from one run (same model, options and input, compared by content: the same FASTA
    given by a relative or an absolute path is one input) and together hold every sequence exactly once;
    they may be given in any order. Nothing is left behind when they do not fit.

    \b
    Examples:
      dnalift merge part1.h5 part2.h5 part3.h5 -o scores.h5
      dnalift merge shards/scores.*-of-8.h5 -o scores.h5 --force
    """
    _logging.setup(verbose, quiet)
    from dnalift.io.store import merge_results, open_results

    merge_results(list(shards), output, force=force, command_line=_logging.command_line())
    with open_results(output) as r:
        n, length = r.n, r.length
    if not quiet:
        click.echo(f"merged {len(shards)} shards ({n} sequences of {length} bp) -> {output}")
