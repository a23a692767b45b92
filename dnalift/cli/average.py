"""``dnalift average``: the mean of the result files of several folds (one model each) of one scoring."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from dnalift.cli import _logging
from dnalift.cli._errors import verbosity_options

log = logging.getLogger("dnalift.cli")


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("folds", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path),
                metavar="FOLD.h5...")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar="MEAN.h5", help="The averaged result file.")
@click.option("--force", is_flag=True, help="Overwrite MEAN.h5 if it exists (replaced only when complete).")
@verbosity_options
def average(folds, output, force, verbose, quiet):
    """Average FOLD.h5 files, one per model (the folds of a BPNet or ChromBPNet), into MEAN.h5.

    The files must hold the same sequences and windows, scored for the same target with the same references and
    options (compared by content, as merge compares shards); only the model differs. MEAN.h5 holds the mean
    scores and predictions, each fold's predictions (fold_predictions) and the folds' model fingerprints, and
    opens wherever a result file does (modisco, export, logo, inspect). Nothing is written when the files do not
    fit. For a scoring with several targets give the names given to -o (A.h5 for A.counts.h5, A.profile.h5):
    each target is averaged into MEAN.<target>.h5.

    \b
    Examples:
      dnalift average fold0.h5 fold1.h5 fold2.h5 fold3.h5 fold4.h5 -o mean.h5
      dnalift average fold0.h5 fold1.h5 -o mean.h5   # fold*.counts.h5, fold*.profile.h5 -> mean.counts.h5, ...
    """
    _logging.setup(verbose, quiet)
    from dnalift.io.store import average_target_files, open_results

    written = average_target_files(list(folds), output, force=force, command_line=_logging.command_line())
    for path in written:
        with open_results(path) as r:
            n, length = r.n, r.length
        if not quiet:
            click.echo(f"averaged {len(folds)} folds ({n} sequences of {length} bp) -> {path}")
