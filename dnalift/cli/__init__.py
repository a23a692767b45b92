"""The ``dnalift`` command line: ``score``, ``variants``, ``logo``, ``export``, ``merge``, ``average``, ``info``,
``inspect``.

Each subcommand is a thin Click command in its own module over library functions
(:mod:`dnalift.pipeline`, :mod:`dnalift.io.store`, :mod:`dnalift.io.modisco`, :mod:`dnalift.io.bigwig`, :mod:`dnalift.plotting`).
Failures print one line, ``Error: <message>``, and exit with 2 for usage mistakes and 1 for data problems
(:mod:`dnalift.cli._errors`); there is no traceback unless ``-v`` is given.
"""

from __future__ import annotations

import click

from dnalift import __version__
from dnalift.cli import _errors, _logging

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class DnaliftGroup(click.Group):
    """A Click group whose ``main`` reports every failure as one ``Error:`` line (see :mod:`._errors`)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _logging.state["args"] = list(args) if args is not None else None
        return _errors.run_main(
            lambda: super(DnaliftGroup, self).main(args=args, prog_name=prog_name or "dnalift",
                                                   complete_var=complete_var, standalone_mode=False, **extra),
            standalone_mode)

    def list_commands(self, ctx):
        return ["score", "variants", "logo", "export", "merge", "average", "info", "inspect"]


@click.group(name="dnalift", cls=DnaliftGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="dnalift")
def cli():
    """DeepLIFT contribution scores for PyTorch genomics models.

    \b
    dnalift score MODEL SEQS.fa -o scores.h5        score every sequence (HDF5, TF-MoDISco ready)
    dnalift variants MODEL V.vcf --genome G.fa -o v.h5   both alleles of every variant (and v.tsv)
    dnalift logo scores.h5 --index 0 -o logo.png    draw a sequence's contributions
    dnalift export scores.h5 --format modisco -o P  npz pair for TF-MoDISco (or --format bigwig)
    dnalift merge part*.h5 -o scores.h5             join the shards of a --shard run
    dnalift average fold*.h5 -o mean.h5             average the folds' scores (one model each)
    dnalift info MODEL                              the model's ops and the rule each gets
    dnalift inspect scores.h5                       provenance, shapes, deltas, validation

    Run `dnalift COMMAND --help` for the options of each.
    """


from dnalift.cli import average as _average  # noqa: E402
from dnalift.cli import export as _export  # noqa: E402
from dnalift.cli import info as _info  # noqa: E402
from dnalift.cli import inspect as _inspect  # noqa: E402
from dnalift.cli import logo as _logo  # noqa: E402
from dnalift.cli import merge as _merge  # noqa: E402
from dnalift.cli import score as _score  # noqa: E402
from dnalift.cli import variants as _variants  # noqa: E402

cli.add_command(_score.score)
cli.add_command(_variants.variants)
cli.add_command(_logo.logo)
cli.add_command(_export.export)
cli.add_command(_merge.merge)
cli.add_command(_average.average)
cli.add_command(_info.info)
cli.add_command(_inspect.inspect_cmd, name="inspect")
cli.add_command(_inspect.validate)


def main(argv=None):
    """Entry point of the ``dnalift`` console script."""
    return cli.main(args=argv, prog_name="dnalift")


__all__ = ["cli", "main"]
