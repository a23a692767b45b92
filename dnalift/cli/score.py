"""``dnalift score``: DeepLIFT scores of every sequence of a FASTA file (or every BED region) to HDF5."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from dnalift.cli import _logging
from dnalift.cli._errors import verbosity_options
from dnalift.cli._scoring import config_options, run_scoring, scoring_options
from dnalift.options import INT_MAX, Center, OffGenome

log = logging.getLogger("dnalift.cli")

@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("seqs", required=False, type=click.Path(path_type=Path), metavar="[SEQS.fa]")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Result file (HDF5). With several --target: one file per target, OUT.<target>.h5 "
                   "(scores.h5 -> scores.0.h5, scores.2.h5).")
@click.option("--regions", type=click.Path(path_type=Path), metavar="BED",
              help="Score windows around BED/narrowPeak regions instead of a FASTA (needs --genome).")
@click.option("--genome", type=click.Path(path_type=Path), metavar="FASTA",
              help="Genome FASTA the --regions are on.")
@click.option("--width", type=click.IntRange(min=1, max=INT_MAX["width"]), metavar="L",
              help="Sequence length: FASTA records are centre-cropped or N-padded to it; windows around "
                   "regions have it (default for regions: the model's input length).")
@click.option("--center", type=click.Choice(Center.values()), default="mid", show_default=True,
              help="Centre region windows on the region's middle or its narrowPeak summit.")
@click.option("--off-genome", type=click.Choice(OffGenome.values()), default="skip", show_default=True,
              help="Regions whose window is not on the genome (runs off its chromosome, or a chromosome the "
                   "genome lacks): leave them out, counted in a warning, or stop.")
@scoring_options
@verbosity_options
def score(model, seqs, output, regions, genome, width, center, off_genome, verbose, quiet, **options):
    """Score every sequence of SEQS.fa (or every --regions window) with MODEL.

    MODEL is a PyTorch model reading one-hot DNA (n, 4, L) or (n, L, 4), channels A, C, G, T: a .pt2
    (torch.export.save), TorchScript (torch.jit.save), a state_dict with --arch, or a pickled module with
    --trust-model.

    The result is an HDF5 file with raw/seq (one-hot), shap/seq (hypothetical contributions),
    projected_shap/seq (contributions of the observed bases), names, predictions, reference_predictions,
    deltas (summation-to-delta errors) and, for regions, their genome coordinates (0-based, half-open);
    `modisco motifs -i OUT.h5` reads it as it is. It is written chunk by chunk to .OUT.h5.partial.h5 and
    renamed to OUT.h5 when complete; a second run with the same -o refuses to start while one runs. A run
    stopped by a data error leaves no file; an interrupted run (Ctrl-C, SIGTERM, out of memory, a full disk)
    keeps the partial file: rerun the same command with --resume to finish it.

    \b
    Examples:
      dnalift score model.pt seqs.fa -o scores.h5
      dnalift score model.pt seqs.fa -o scores.h5 --rule genomics --n-refs 50 --device cuda
      dnalift score model.pt2 --regions peaks.narrowPeak --genome hg38.fa --width 1000 \\
          --center summit --target 0 --target 3 -o peaks.h5      # peaks.0.h5, peaks.3.h5
      dnalift score chrombpnet.pt --trust-model --regions peaks.narrowPeak --genome hg38.fa \\
          --center summit --target counts --target profile -o cbp.h5   # cbp.counts.h5, cbp.profile.h5
      dnalift score model.pt seqs.fa -o part2.h5 --shard 2-of-8  # then: dnalift merge part*.h5 -o all.h5
      dnalift score model.pt seqs.fa -o scores.h5 --resume       # finish an interrupted run
      dnalift score model.pt seqs.fa -o scores.h5 --device cuda:all   # every GPU, one part each
    """
    _logging.setup(verbose, quiet)
    ctx = click.get_current_context()
    # SEQS.fa or --regions, --regions with --genome: ScoreConfig checks them; whether --center or --off-genome was
    # given (not only its default) only the command line knows
    for name in ("center", "off_genome"):
        if regions is None and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError(f"--{name.replace('_', '-')} applies to --regions windows only")

    from dnalift.pipeline.config import ScoreConfig

    config = ScoreConfig(model=model, fasta=seqs, regions=regions, genome=genome, output=output, width=width,
                         center=center, off_genome=off_genome, **config_options(options))
    run_scoring(config, quiet=quiet)
