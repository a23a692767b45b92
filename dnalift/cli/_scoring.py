"""The options ``dnalift score`` and ``dnalift variants`` share, declared once, and running a scoring pipeline
from the command line (progress bar, SIGTERM kept like Ctrl-C)."""

from __future__ import annotations

import logging
import signal

import click

from dnalift.cli import _logging
from dnalift.options import INT_MAX, ControlInputs, Layout, MaxRule, Mode, NPolicy, Precision, ReferenceMethod

__all__ = ["scoring_options", "config_options", "run_scoring", "split_ops", "SCORING_OPTIONS"]

log = logging.getLogger("dnalift.cli")


def split_ops(ctx, param, value):
    ops = []
    for item in value:
        ops += [v.strip().removeprefix("aten.") for v in item.split(",") if v.strip()]
    return tuple(ops)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a cluster scheduler stopping the job) handled like Ctrl-C: partial files are kept for --resume."""

    signal_name = "SIGTERM"


def _on_sigterm(signum, frame):
    raise _Terminated()


#: every shared option, in the order --help lists them
SCORING_OPTIONS = (
    click.option("--reference", default="dinuc", show_default=True, metavar="dinuc|gc|uniform|zeros|FILE.fa",
                 help="References: dinucleotide shuffles of each sequence; a column of the sequence's GC "
                      "content; 0.25 each; all zeros; or a FASTA of references (records NAME/0..NAME/r-1 per "
                      "sequence, or any records shared by all)."),
    click.option("--n-refs", type=click.IntRange(min=1, max=INT_MAX["n_refs"]), default=20, show_default=True,
                 help="Dinucleotide shuffles per sequence (scores are averaged over them)."),
    click.option("--seed", type=click.IntRange(min=0, max=INT_MAX["seed"]), default=0, show_default=True,
                 help="Seed of the shuffles; each sequence's are seeded by (seed, its name), so shards and "
                      "resumed runs agree."),
    click.option("--rule", type=click.Choice(Mode.values()), default="rescale", show_default=True,
                 help="Rule for nonlinearities; genomics: Rescale after convolutions, RevealCancel after dense "
                      "layers."),
    click.option("--max-rule", type=click.Choice(MaxRule.values()), default="exact", show_default=True,
                 help="Max pooling: the exact rule (sums to delta) or the original code's gradient rule."),
    click.option("--target", "targets", multiple=True, metavar="INDEX|NAME[:INDEX]|counts|profile|profile-fixed",
                 help="Model output to explain (default 0): an index, an output name or NAME:INDEX for a model "
                      "returning a tuple or dict, or a profile model's 'counts', 'profile' (bpnet-lite's and "
                      "chrombpnet's: each reference weighted by its own softmax) or 'profile-fixed' (the "
                      "sequence's softmax held fixed). Repeat to score several targets in one pass (one file "
                      "each)."),
    click.option("--layout", type=click.Choice(Layout.values()), default="auto", show_default=True,
                 help="The model's input layout: ncl channels first (n, 4, L); nlc channels last (n, L, 4) as "
                      "Enformer takes; nc1l (n, 4, 1, L) as Conv2d models such as Kipoi's DeepSEA and Beluga "
                      "take; auto found by running the model. Scores are written (n, 4, L) whatever the layout."),
    click.option("--control-inputs", type=click.Choice(ControlInputs.values()), default="zeros", show_default=True,
                 help="What inputs after the sequence get (control tracks, bpnet-lite's X_ctl): zeros, as "
                      "`bpnet attribute` does, or refuse such models."),
    click.option("--batch-size", type=click.IntRange(min=1, max=INT_MAX["batch_size"]), metavar="N",
                 help="Sequence-reference pairs per batch (default: chosen for speed: on the CPU a batch whose "
                      "activations fit the cache, 32 to 1,024 pairs; on a GPU a quarter of its free memory)."),
    click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:i]|cuda:0,cuda:1|cuda:all",
                 help="Where to compute (auto: the GPU when PyTorch sees one). Several devices (a comma-separated "
                      "list, or cuda:all for every GPU) each score a part of the sequences in a worker process of "
                      "their own; the parts are joined into the output: the same result as on one device."),
    click.option("--precision", type=click.Choice(Precision.values()), default="float32", show_default=True,
                 help="Arithmetic (results are stored as float32). float32 and float64 are strict (no TF32 on "
                      "GPUs); tf32 (CUDA only) and bfloat16 are faster on GPUs and less exact: see the README."),
    click.option("--shuffle-workers", type=click.IntRange(min=0), metavar="N",
                 help="Processes making the dinucleotide shuffles beside the compute (default: none on the CPU; "
                      "on a GPU the cores left per device, at most 8)."),
    click.option("--no-normalize", is_flag=True,
                 help="Do not mean-normalise the first layer's weights over the four bases (paper 2.6)."),
    click.option("--n-policy", type=click.Choice(NPolicy.values()), default="zero", show_default=True,
                 help="Letters other than ACGT (N, IUPAC): all-zero column; leave the sequence out; or stop."),
    click.option("--rc-average", is_flag=True,
                 help="Also score the reverse complement and average its scores (flipped back) with the "
                      "forward ones."),
    click.option("--shard", metavar="i-of-n",
                 help="Score only the i-th of n contiguous blocks of sequences; join the files with "
                      "`dnalift merge`."),
    click.option("--resume", is_flag=True,
                 help="Finish an interrupted run (same options and inputs, compared by content): the complete "
                      "chunks of .OUT.h5.partial.h5 are kept."),
    click.option("--force", is_flag=True,
                 help="Overwrite existing output files (replaced only when the new ones are complete)."),
    click.option("--arch", metavar="package.module:Class", help="Architecture for a state_dict model file."),
    click.option("--arch-kwargs", metavar="JSON", help="Keyword arguments of --arch, as a JSON object."),
    click.option("--trust-model", is_flag=True,
                 help="Allow loading a pickled model (torch.save(model)); this runs code from the file."),
    click.option("--allow-gradient", multiple=True, callback=split_ops, metavar="OP[,OP...]",
                 help="ATen ops without a DeepLIFT rule to pass through with plain gradients (not exact)."),
    click.option("--allow-nonfinite", is_flag=True,
                 help="Keep rows whose prediction, reference prediction or scores are NaN or infinite (flagged in "
                      "the file's attributes; logo and export refuse them). Without it such a row stops the run "
                      "and nothing is written."),
    click.option("--chunk-size", type=click.IntRange(min=1, max=INT_MAX["chunk_size"]), hidden=True,
                 help="Sequences per chunk of the result file (default: about 1 MiB of scores)."),
)


def scoring_options(command):
    """Add :data:`SCORING_OPTIONS` to a Click command (its function gets them as keyword arguments)."""
    for option in reversed(SCORING_OPTIONS):
        command = option(command)
    return command


def config_options(options: dict) -> dict:
    """The :class:`~dnalift.pipeline.config.ScoreConfig` keyword arguments of the shared options' values."""
    options = dict(options)  # cross-option checks (--arch-kwargs needs --arch, --resume or --force) are ScoreConfig's
    reference, n_refs = options.get("reference"), options.get("n_refs")
    if reference in ReferenceMethod.values() and reference != ReferenceMethod.DINUC and n_refs != 1 and \
            click.get_current_context().get_parameter_source("n_refs") == click.core.ParameterSource.COMMANDLINE:
        log.warning("--n-refs %d is not used: --reference %s gives one reference per sequence (the file records "
                    "n_refs 1); --n-refs counts the shuffles of --reference dinuc", n_refs, reference)
    options["targets"] = options.pop("targets") or (0,)
    options["normalize"] = not options.pop("no_normalize")
    options["command_line"] = _logging.command_line()
    return options


def run_scoring(config, *, quiet: bool, what: str = "scoring"):
    """Run :func:`dnalift.pipeline.score` with a progress bar, SIGTERM handled like Ctrl-C; print its summary."""
    from dnalift import pipeline

    progress = _logging.Progress(what)
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
    return summary
