"""``dnalift export``: TF-MoDISco's npz pair, a bigWig track of per-base scores, or a variants file's table."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from dnalift.cli import _logging
from dnalift.cli._errors import verbosity_options

log = logging.getLogger("dnalift.cli")


def _check_window(ctx, param, value):
    if value is not None and (value < 2 or value % 2):
        raise click.BadParameter(f"{value} must be even and at least 2 (TF-MoDISco's -w keeps L//2 - w//2 to "
                                 f"L//2 + w//2, so an odd window loses a position)")
    return value


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("result", type=click.Path(dir_okay=False, path_type=Path), metavar="OUT.h5")
@click.option("--format", "fmt", required=True, type=click.Choice(["modisco", "bigwig", "table"]),
              help="modisco: PREFIX.hyp.npz and PREFIX.ohe.npz; bigwig: per-base contributions on the genome; "
                   "table: one line per variant (a `dnalift variants` file).")
@click.option("-o", "--output", required=True, metavar="PREFIX|out.bw|out.tsv",
              help="modisco: the prefix of the two npz files; bigwig: the .bw file; table: the .tsv file.")
@click.option("--window", type=int, callback=_check_window, metavar="W",
              help="modisco: keep only the central W positions (even), as `modisco motifs -w W` does.")
@click.option("--genome", type=click.Path(dir_okay=False, path_type=Path), metavar="genome.fa",
              help="bigwig: the genome FASTA (its .fai index gives the chromosome sizes), or a .fai / "
                   "chrom.sizes file; default: the genome recorded in OUT.h5.")
@click.option("--flank", type=click.IntRange(min=0), metavar="W",
              help="table: sum each allele's contributions over the allele and W bases on each side (default: as "
                   "`dnalift variants --table-flank`).")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@verbosity_options
def export(result, fmt, output, window, genome, flank, force, verbose, quiet):
    """Export OUT.h5 for TF-MoDISco or a genome browser, and print the next command to run.

    \b
    modisco: two npz files (key arr_0, shape (n, 4, W), float32) of hypothetical scores and one-hot
             sequences, for `modisco motifs -s PREFIX.ohe.npz -a PREFIX.hyp.npz` (TF-MoDISco lite also
             reads OUT.h5 directly: `modisco motifs -i OUT.h5`).
    bigwig:  per-base contribution (of the observed base) on genome coordinates, for files scored from
             --regions; overlapping windows are averaged. A `dnalift variants` file gives two tracks,
             OUT.ref.bw and OUT.alt.bw (the reference and alternative alleles' rows on the genome).
    table:   a `dnalift variants` file's table (what it writes beside OUT.h5), e.g. for merged shards.

    A file whose run did not finish (a .partial.h5) is refused: finish it with `dnalift score ... --resume`.

    \b
    Examples:
      dnalift export scores.h5 --format modisco -o modisco/scores --window 400
      dnalift export peaks.h5 --format bigwig -o peaks.bw --genome hg38.fa
      dnalift export variants.h5 --format table -o variants.tsv --flank 20
    """
    _logging.setup(verbose, quiet)
    if fmt != "bigwig" and genome is not None:
        raise click.UsageError("--genome is for --format bigwig")
    if fmt != "modisco" and window is not None:
        raise click.UsageError("--window is for --format modisco")
    if fmt != "table" and flank is not None:
        raise click.UsageError("--flank is for --format table")
    if fmt == "table":
        from dnalift.io.variant_table import DEFAULT_FLANK, write_variant_table

        written = write_variant_table(result, output, flank=DEFAULT_FLANK if flank is None else flank, force=force)
        if not quiet:
            click.echo(f"wrote {written}")
        return

    from dnalift.io.store import open_results

    if fmt == "modisco":
        with open_results(result) as r:  # a clear error for a bad file before any output is made
            n, length = r.n, r.length
        if window is not None and window > length:
            raise click.BadParameter(f"{window} is longer than the sequences ({length} bp)",
                                     param_hint="'--window'")
        from dnalift.io.modisco import write_modisco_npz

        done = write_modisco_npz(result, output, window=window, force=force)
        w = window or length
        if not quiet:
            click.echo(f"wrote {done.hypothetical} and {done.one_hot} ({n} sequences x 4 x {w})")
            click.echo("next, find motifs with TF-MoDISco:")
            click.echo(f"  {done.command}")
        return

    with open_results(result) as r:
        recorded = r.attrs.get("genome")
        has_regions, has_variants = r.has_regions, r.has_variants
    if not has_regions and not has_variants:
        from dnalift.errors import StoreError

        raise StoreError(f"{result} has no genome regions (it was scored from a FASTA); bigWig export needs a "
                         f"file scored with regions= and genome=", argument="path")
    if genome is None:
        if not recorded:
            raise click.UsageError("--format bigwig needs --genome genome.fa (its .fai gives the chromosome sizes)")
        genome = Path(recorded)
        log.info("chromosome sizes from %s (recorded in %s)", genome, result)
    out = Path(output)
    from dnalift.io.bigwig import read_chrom_sizes, write_bigwig

    if has_variants:
        from dnalift.io.variant_bigwig import write_variant_bigwigs

        written = write_variant_bigwigs(result, out, chrom_sizes=read_chrom_sizes(genome), force=force)
    else:
        written = [write_bigwig(result, out, genome_fai=genome, force=force)]
    if not quiet:
        click.echo(f"wrote {', '.join(str(p) for p in written)}")
        click.echo("next, look at it in a genome browser (IGV: File > Load from File), or summarise it:")
        click.echo(f"  bigWigInfo {written[0]}")
