"""``dnalift score``: DeepLIFT scores of every sequence of a FASTA file (or every BED region) to HDF5."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import click

from dnalift.cli import _logging
from dnalift.cli._errors import verbosity_options
from dnalift.options import Center, ControlInputs, Layout, MaxRule, Mode, NPolicy, OffGenome, Precision

log = logging.getLogger("dnalift.cli")



def _split_ops(ctx, param, value):
    ops = []
    for item in value:
        ops += [v.strip().removeprefix("aten.") for v in item.split(",") if v.strip()]
    return tuple(ops)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a cluster scheduler stopping the job) handled like Ctrl-C: partial files are kept for --resume."""

    signal_name = "SIGTERM"


def _on_sigterm(signum, frame):
    raise _Terminated()


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
@click.option("--width", type=click.IntRange(min=1), metavar="L",
              help="Sequence length: FASTA records are centre-cropped or N-padded to it; windows around "
                   "regions have it (default for regions: the model's input length).")
@click.option("--center", type=click.Choice(Center.values()), default="mid", show_default=True,
              help="Centre region windows on the region's middle or its narrowPeak summit.")
@click.option("--off-genome", type=click.Choice(OffGenome.values()), default="skip", show_default=True,
              help="Regions whose window is not on the genome (runs off its chromosome, or a chromosome the "
                   "genome lacks): leave them out, counted in a warning, or stop.")
@click.option("--reference", default="dinuc", show_default=True,
              metavar="dinuc|gc|uniform|zeros|FILE.fa",
              help="References: dinucleotide shuffles of each sequence; a column of the sequence's GC "
                   "content; 0.25 each; all zeros; or a FASTA of references (records NAME/0..NAME/r-1 per "
                   "sequence, or any records shared by all).")
@click.option("--n-refs", type=click.IntRange(min=1), default=20, show_default=True,
              help="Dinucleotide shuffles per sequence (scores are averaged over them).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the shuffles; each sequence's are seeded by (seed, its name), so shards and "
                   "resumed runs agree.")
@click.option("--rule", type=click.Choice(Mode.values()), default="rescale",
              show_default=True,
              help="Rule for nonlinearities; genomics: Rescale after convolutions, RevealCancel after dense "
                   "layers.")
@click.option("--max-rule", type=click.Choice(MaxRule.values()), default="exact", show_default=True,
              help="Max pooling: the exact rule (sums to delta) or the original code's gradient rule.")
@click.option("--target", "targets", multiple=True, metavar="INDEX|NAME[:INDEX]|counts|profile",
              help="Model output to explain (default 0): an index, an output name or NAME:INDEX for a model "
                   "returning a tuple or dict, or a profile model's 'counts' or 'profile' (BPNet, ChromBPNet). "
                   "Repeat to score several targets in one pass (one file each).")
@click.option("--layout", type=click.Choice(Layout.values()), default="auto", show_default=True,
              help="The model's input layout: ncl channels first (n, 4, L); nlc channels last (n, L, 4) as "
                   "Enformer takes; nc1l (n, 4, 1, L) as Conv2d models such as Kipoi's DeepSEA and Beluga take; "
                   "auto found by running the model. Scores are written (n, 4, L) whatever the layout.")
@click.option("--control-inputs", type=click.Choice(ControlInputs.values()), default="zeros",
              show_default=True,
              help="What inputs after the sequence get (control tracks, bpnet-lite's X_ctl): zeros, as "
                   "`bpnet attribute` does, or refuse such models.")
@click.option("--batch-size", type=click.IntRange(min=1), metavar="N",
              help="Sequence-reference pairs per batch (default: chosen for speed: on the CPU a batch whose "
                   "activations fit the cache, 32 to 1,024 pairs; on a GPU a quarter of its free memory).")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:i]",
              help="Where to compute (auto: the GPU when PyTorch sees one).")
@click.option("--precision", type=click.Choice(Precision.values()), default="float32", show_default=True,
              help="Arithmetic precision (results are stored as float32).")
@click.option("--no-normalize", is_flag=True,
              help="Do not mean-normalise the first layer's weights over the four bases (paper 2.6).")
@click.option("--n-policy", type=click.Choice(NPolicy.values()), default="zero", show_default=True,
              help="Letters other than ACGT (N, IUPAC): all-zero column; leave the sequence out; or stop.")
@click.option("--rc-average", is_flag=True,
              help="Also score the reverse complement and average its scores (flipped back) with the "
                   "forward ones.")
@click.option("--shard", metavar="i-of-n",
              help="Score only the i-th of n contiguous blocks of sequences; join the files with "
                   "`dnalift merge`.")
@click.option("--resume", is_flag=True,
              help="Finish an interrupted run (same options and inputs, compared by content): the complete "
                   "chunks of .OUT.h5.partial.h5 are kept.")
@click.option("--force", is_flag=True,
              help="Overwrite existing output files (replaced only when the new ones are complete).")
@click.option("--arch", metavar="package.module:Class",
              help="Architecture for a state_dict model file.")
@click.option("--arch-kwargs", metavar="JSON", help="Keyword arguments of --arch, as a JSON object.")
@click.option("--trust-model", is_flag=True,
              help="Allow loading a pickled model (torch.save(model)); this runs code from the file.")
@click.option("--allow-gradient", multiple=True, callback=_split_ops, metavar="OP[,OP...]",
              help="ATen ops without a DeepLIFT rule to pass through with plain gradients (not exact).")
@click.option("--chunk-size", type=click.IntRange(min=1), hidden=True,
              help="Sequences per chunk of the result file (default: about 1 MiB of scores).")
@verbosity_options
def score(model, seqs, output, regions, genome, width, center, off_genome, reference, n_refs, seed, rule,
          max_rule, targets, layout, control_inputs, batch_size, device, precision, no_normalize, n_policy, rc_average, shard, resume, force,
          arch, arch_kwargs, trust_model, allow_gradient, chunk_size, verbose, quiet):
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
      dnalift score chrombpnet.pt --trust-model --regions peaks.narrowPeak --genome hg38.fa \
          --center summit --target counts --target profile -o cbp.h5   # cbp.counts.h5, cbp.profile.h5
      dnalift score model.pt seqs.fa -o part2.h5 --shard 2-of-8  # then: dnalift merge part*.h5 -o all.h5
      dnalift score model.pt seqs.fa -o scores.h5 --resume       # finish an interrupted run
    """
    _logging.setup(verbose, quiet)
    ctx = click.get_current_context()
    if seqs is not None and regions is not None:
        raise click.UsageError("give either SEQS.fa or --regions, not both")
    if seqs is None and regions is None:
        raise click.UsageError("give the sequences: SEQS.fa, or --regions BED with --genome FASTA")
    if regions is not None and genome is None:
        raise click.UsageError("--regions needs --genome FASTA (the genome the regions are on)")
    if regions is None and genome is not None:
        raise click.UsageError("--genome is for --regions; with a FASTA of sequences leave it out")
    for name in ("center", "off_genome"):
        if regions is None and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError(f"--{name.replace('_', '-')} applies to --regions windows only")
    if arch_kwargs is not None and arch is None:
        raise click.UsageError("--arch-kwargs needs --arch")

    from dnalift import pipeline
    from dnalift.pipeline.config import ScoreConfig

    config = ScoreConfig(
        model=model, fasta=seqs, regions=regions, genome=genome, output=output, width=width, center=center,
        off_genome=off_genome, reference=reference, n_refs=n_refs, seed=seed, rule=rule, max_rule=max_rule,
        targets=targets or (0,), batch_size=batch_size, device=device, precision=precision,
        normalize=not no_normalize, n_policy=n_policy, rc_average=rc_average, shard=shard, resume=resume,
        force=force, arch=arch, arch_kwargs=arch_kwargs, trust_model=trust_model, allow_gradient=allow_gradient,
        chunk_size=chunk_size, layout=layout, control_inputs=control_inputs,
        command_line=_logging.command_line())
    progress = _logging.Progress("scoring")
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not in the main thread
        pass
    try:
        summary = pipeline.score(config, progress=progress)
    finally:
        progress.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if not quiet:
        click.echo(summary.line())
