"""The inputs of a scoring run: checks made before anything is opened, the sequences and the model (loaded once),
and one scan of the sequences (their fingerprint, and the warnings about them)."""

from __future__ import annotations

import logging

from dnalift.options import Layout
from dnalift.pipeline.config import ScoreConfig
from dnalift.errors import OptionError, RegionError, SequenceError

__all__ = ["check_argument_order", "check_device", "check_precision", "shuffle_workers", "open_inputs", "scan"]

log = logging.getLogger("dnalift.pipeline")


def check_argument_order(config: ScoreConfig) -> None:
    """A model file given as the sequences and a FASTA as the model: say so, instead of a decoding error."""
    from dnalift.io.fasta import sniff

    sequences = config.fasta if config.fasta is not None else config.genome
    try:
        model_kind = sniff(config.model) if config.model.is_file() else None
        seq_kind = sniff(sequences) if sequences is not None and sequences.is_file() else None
    except OSError:
        return
    if model_kind in ("fasta", "bgzip") and seq_kind == "binary":
        which = "fasta" if config.fasta is not None else "genome"
        raise OptionError(f"the arguments look swapped: {config.model} is a FASTA file and {sequences} is not; give "
                          f"the model first, then the {which} (model={sequences}, {which}={config.model})",
                          argument="model", path=str(config.model))


def check_device(device: str) -> list[str]:
    """The devices of a (parsed) device option, each checked to exist here (one worker each when several).

    Raises
    ------
    OptionError
        One line naming the device that is not here: CUDA asked for where PyTorch sees none, or an index past the
        machine's last CUDA device.
    """
    import torch

    from dnalift.pipeline.config import device_list

    devices = device_list(device)
    for item in devices:
        if not item.startswith("cuda"):
            continue
        named = f"device={device!r}" if item == device else f"device {item!r} (of device={device!r})"
        if not torch.cuda.is_available():
            raise OptionError(f"{named} was asked for but PyTorch sees no CUDA device here; use device='cpu' (or "
                              f"'auto')", argument="device", value=device)
        index = int(item.split(":")[1]) if ":" in item and item != "cuda:all" else 0
        if index >= torch.cuda.device_count():
            raise OptionError(f"{named} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s), "
                              f"cuda:0 to cuda:{torch.cuda.device_count() - 1}", argument="device", value=device)
    return devices


def check_precision(precision, devices: list[str]) -> None:
    """``tf32`` on a device that is not CUDA (the CPU, or ``auto`` where PyTorch sees no GPU): one line."""
    if str(precision) != "tf32":
        return
    import torch

    for item in devices:
        if item == "cpu" or (item == "auto" and not torch.cuda.is_available()):
            raise OptionError(f"precision='tf32' needs a CUDA device (TF32 is the tensor-core format of NVIDIA GPUs) "
                              f"and device={item!r} is the CPU; use precision='float32' or 'bfloat16' there",
                              argument="precision", value="tf32")


def shuffle_workers(config: ScoreConfig, devices: list[str]) -> int:
    """Worker processes for the dinucleotide shuffles of one device's run: ``config.shuffle_workers`` if given;
    else none on the CPU (the engine has the cores) and on CUDA the cores of this process left over per device,
    one kept for the main thread (at most 8)."""
    if config.shuffle_workers is not None:
        return config.shuffle_workers
    if config.reference != "dinuc" or not any(d.startswith("cuda") or d == "auto" for d in devices):
        return 0
    import os

    import torch

    if devices == ["auto"] and not torch.cuda.is_available():
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores // len(devices) - 1))


def _load(config: ScoreConfig, input_length: int | None):
    from dnalift.models import load_model

    options = {"arch": config.arch, "arch_kwargs": config.arch_kwargs, "trust": config.trust_model}
    if config.layout != Layout.AUTO:
        options["layout"] = config.layout
    return load_model(config.model, input_length=input_length, **options)


def open_inputs(config: ScoreConfig):
    """The sequence source and the model, loaded once (for regions without ``width`` the model gives it)."""
    from dnalift.io.fasta import open_fasta
    from dnalift.io.regions import open_regions
    from dnalift.io.variant_source import open_variants

    model = None
    if config.fasta is not None:
        source = open_fasta(config.fasta, width=config.width, n_policy=config.n_policy)
    else:
        width = config.width
        if width is None:
            model = _load(config, None)
            width = model.input_length
            if width is None:
                raise RegionError(f"{config.input_path}: give the window width with width= (the model does not "
                                  f"record its input length)", argument="width")
            log.info("using the model's input length %d as the window width", width)
        if config.variants is not None:
            source = open_variants(config.variants, config.genome, width=width, off_genome=config.off_genome,
                                   n_policy=config.n_policy)
        else:
            source = open_regions(config.regions, config.genome, width=width, center=config.center,
                                  off_genome=config.off_genome, n_policy=config.n_policy)
    try:
        log.info("%s: %d sequences of length %d%s", source.path, len(source), source.length,
                 f" ({len(source.skipped)} skipped)" if source.skipped else "")
        if model is None:
            model = _load(config, source.length)
        from dnalift.models import check_input

        check_input(model, (4, source.length))
        if config.normalize:
            from dnalift.normalize.weights import normalize_first_layer

            model = normalize_first_layer(model)
    except BaseException:
        source.close()
        raise
    return source, model


def scan(source) -> str:
    """The input's fingerprint; refuses a character that is no nucleotide letter; warns about U and N."""
    scan = source.scan()
    n = len(source)
    if scan.invalid is not None:
        name, position, char = scan.invalid
        raise SequenceError(f"{source.path}: sequence {name!r} has {char!r} at position {position} (0-based), which "
                            f"is not a nucleotide letter; sequences may hold only A, C, G, T (any case) and IUPAC "
                            f"codes such as N", argument="fasta", name=name, position=position)
    for names, what in ((scan.with_u, "contain U (uracil: RNA?), which is scored as an all-zero column like N; "
                                      "convert U to T first if they are RNA"),
                        (scan.mostly_n, "are mostly N (more than half their letters are not A, C, G or T): their "
                                        "scores say little; n_policy='skip' leaves out sequences with any N")):
        if names:
            shown = ", ".join(repr(x) for x in names[:3]) + (" ..." if len(names) > 3 else "")
            log.warning("%s: %d of %d sequences %s (%s)", source.path, len(names), n, what, shown)
    return scan.sha256
