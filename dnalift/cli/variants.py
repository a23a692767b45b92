"""``dnalift variants``: DeepLIFT scores of both alleles of every variant of a VCF or TSV, in one file."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from dnalift.cli import _logging
from dnalift.cli._errors import verbosity_options
from dnalift.cli._scoring import config_options, run_scoring, scoring_options
from dnalift.io.variant_table import DEFAULT_FLANK
from dnalift.options import OffGenome, PairReferences

log = logging.getLogger("dnalift.cli")


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("variants", type=click.Path(dir_okay=False, path_type=Path), metavar="VARIANTS")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Result file (HDF5), rows in pairs (reference allele, alternative); a table OUT.tsv is written "
                   "beside it. With several --target: OUT.<target>.h5 and OUT.<target>.tsv.")
@click.option("--genome", required=True, type=click.Path(path_type=Path), metavar="FASTA",
              help="Genome FASTA the variants are on.")
@click.option("--width", type=click.IntRange(min=1), metavar="L",
              help="Window length (default: the model's input length); the allele starts at position L//2.")
@click.option("--off-genome", type=click.Choice(OffGenome.values()), default="skip", show_default=True,
              help="Variants whose REF does not match the genome, whose window runs off its chromosome, or whose "
                   "chromosome the genome lacks: leave them out, counted and named in a warning, or stop.")
@click.option("--pair-references", type=click.Choice(PairReferences.values()), default="shared", show_default=True,
              help="shared: both alleles use the references of the reference allele's window (same reference "
                   "prediction, so the summed contributions change as the prediction does); own: each allele "
                   "its own (variant-scorer's choice).")
@click.option("--table-flank", type=click.IntRange(min=0), default=DEFAULT_FLANK, show_default=True, metavar="W",
              help="The table sums each allele's contributions over the allele and W bases on each side.")
@scoring_options
@verbosity_options
def variants(model, variants, output, genome, width, off_genome, pair_references, table_flank, verbose, quiet,
             **options):
    """Score both alleles of every variant of VARIANTS with MODEL.

    VARIANTS is a VCF (plain or bgzip; a record with several ALT alleles gives several variants; symbolic ALTs
    such as <DEL> are skipped and counted) or a TSV of chrom, pos (1-based), ref, alt, id (variant-scorer's
    format, with or without a header; '-' for an empty allele).

    Each variant gets two windows of L bases: the genome with the reference allele, then with the
    alternative, the allele's first base at position L//2; for indels the left flank and the allele stay in
    place and the right end is filled from the genome (or cut) so both have L bases. OUT.h5 has the usual
    datasets (raw/seq, shap/seq, projected_shap/seq, predictions, ...) with rows 2k (reference) and 2k+1
    (alternative) for variant k, plus variant_ids, alleles (0 reference, 1 alternative) and variants/chrom,
    pos (0-based), ref, alt, offset (where the allele starts in the window). The change of prediction is
    predictions[1::2] - predictions[0::2]. OUT.tsv lists it per variant with the summed contributions
    around the variant.

    \b
    Examples:
      dnalift variants model.pt2 gwas.vcf.gz --genome hg38.fa --width 2114 -o gwas.h5
      dnalift variants chrombpnet.pt --trust-model caqtls.tsv --genome hg38.fa --target counts -o cq.h5
      dnalift logo gwas.h5 --variant rs123 -o rs123.png
    """
    _logging.setup(verbose, quiet)
    from dnalift.io.variant_table import table_path, write_variant_table
    from dnalift.pipeline import output_paths
    from dnalift.pipeline.config import ScoreConfig

    kwargs = config_options(options)
    config = ScoreConfig(model=model, variants=variants, genome=genome, output=output, width=width,
                         off_genome=off_genome, pair_references=pair_references, **kwargs)
    labels = [str(t) for t in config.targets]
    checked = {table_path(p) for p in output_paths(output, labels)}
    for t in checked:
        _check_table(t, config)
    summary = run_scoring(config, quiet=quiet, what="scoring variants")
    for path in summary.outputs:
        table = table_path(path)
        if table not in checked:  # a target whose label is not what was given (e.g. a name for an index)
            _check_table(table, config)
        written = write_variant_table(path, table, flank=table_flank, force=True)
        if not quiet:
            click.echo(f"wrote {written}")


def _check_table(table: Path, config) -> None:
    """The table beside a result file may not be an input file, nor (without --force) an existing file."""
    from dnalift.errors import OptionError
    from dnalift.io.outputs import check_not_existing, check_not_input

    try:
        check_not_input(table, config.input_files(), argument="output")
    except OptionError as e:
        raise OptionError(f"the table {table} (named after -o {config.output}) would overwrite the "
                          f"{e.details.get('input')} file the run reads; choose another -o", argument="output",
                          path=str(table)) from None
    check_not_existing(table, force=config.force, resume=config.resume)
