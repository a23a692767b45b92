"""Every option of a scoring run, checked once: :class:`ScoreConfig`, and the parsers of shards and devices.

The choices themselves are the enums of :mod:`dnalift.options`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Mapping

from dnalift.options import (INT_MAX, Center, ControlInputs, Layout, MaxRule, Mode, NPolicy, OffGenome,
                             PairReferences, Precision, ReferenceMethod, parse_choice, parse_shard)

__all__ = ["parse_shard", "parse_device", "device_list", "ScoreConfig"]


def _option_error(message: str, argument: str, **details):
    from dnalift.errors import OptionError

    return OptionError(message, argument=argument, **details)


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
_LISTED = re.compile(r"cpu|cuda(:\d+)?")


def parse_device(device) -> str:
    """``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:i"``, a comma-separated list of devices (``"cuda:0,cuda:1"``; CPU
    stand-ins ``"cpu,cpu"``) or ``"cuda:all"`` (every CUDA device), checked without importing torch.

    A list (or ``cuda:all``) scores with one worker process per device (:mod:`dnalift.pipeline.devices`); its
    entries are normalised (``"CUDA:0, cuda:1"`` -> ``"cuda:0,cuda:1"``).

    Raises
    ------
    OptionError
        ``argument="device"``, naming the entry that is not a device; Apple's ``"mps"`` gets its own message (the
        engine needs float64 and ops that MPS lacks, so dnalift runs on the CPU there).
    """
    text = str(device).strip().lower()
    items = [item.strip() for item in text.split(",")]
    if any(item == "mps" or item.startswith("mps:") for item in items):
        raise _option_error("device='mps' (Apple GPUs) is not supported: dnalift runs on cpu or cuda; use "
                            "device='cpu' on a Mac", "device", value=device)
    if len(items) == 1:
        if text == "cuda:all" or _DEVICE.fullmatch(text):
            return text
        raise _option_error(f"device={device!r} is not auto, cpu, cuda, cuda:INDEX, cuda:all or a list such as "
                            f"cuda:0,cuda:1", "device", value=device)
    for item in items:
        if not _LISTED.fullmatch(item):
            raise _option_error(f"device={device!r}: {item!r} is not a device; list cpu, cuda or cuda:INDEX entries "
                                f"separated by commas (cuda:0,cuda:1)", "device", value=device)
    return ",".join(items)


def device_list(device: str) -> list[str]:
    """The devices a (parsed) device option names, one worker each: ``["cuda:0", "cuda:1"]`` for
    ``"cuda:0,cuda:1"``; every CUDA device for ``"cuda:all"`` (imports torch); ``[device]`` for one device."""
    if device == "cuda:all":
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else [device]
    return device.split(",")


def _positive(value, argument: str, *, minimum: int = 1, optional: bool = False):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int,)) and not hasattr(value, "__index__"):
        raise _option_error(f"{argument} must be a whole number >= {minimum}, not {value!r}", argument, value=value)
    value = int(value)
    if value < minimum:
        raise _option_error(f"{argument} must be at least {minimum}, got {value}", argument, value=value)
    if value > INT_MAX[argument]:
        raise _option_error(f"{argument} must be at most {INT_MAX[argument]} (what the result file holds), got "
                            f"{value}", argument, value=value)
    return value


def _path(value, argument: str, *, optional: bool = True):
    if value is None:
        if optional:
            return None
        raise _option_error(f"{argument} is required", argument)
    if isinstance(value, Path):
        return value
    if isinstance(value, (str, os.PathLike)) and str(value):
        return Path(value)
    raise _option_error(f"{argument} must be a file path, not {value!r}", argument, value=value)


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """Every option of a scoring run (:func:`dnalift.pipeline.score`), checked when it is made.

    The values are normalised on construction: paths become :class:`~pathlib.Path`, choices the members of
    their enum (strings are accepted), ``targets`` and ``allow_gradient`` tuples, ``shard`` ``"i-of-n"``.

    Attributes
    ----------
    model : path
        The model file (``.pt2``, TorchScript, state_dict with ``arch``, pickle with ``trust_model``).
    output : path
        The result file; several targets give ``OUT.<target>.h5`` (:func:`dnalift.pipeline.output_paths`).
    fasta : path, optional
        Sequences, all of one length unless ``width`` is given (then centre-cropped or N-padded).
    regions, genome : path, optional
        BED/narrowPeak regions and the genome FASTA they are on, instead of ``fasta``.
    variants : path, optional
        A VCF or variant-scorer TSV of variants on ``genome``, instead of ``fasta``: each variant is scored
        twice, rows in pairs (reference allele, alternative) (:mod:`dnalift.io.variant_source`).
    width : int, optional
        Sequence length; for regions the window width (default: the model's input length).
    center : Center
        Where region windows are centred (``mid`` or the narrowPeak ``summit``).
    off_genome : OffGenome
        Regions whose window is not on the genome (off the chromosome's end, or an unknown chromosome):
        ``skip`` (counted, with a warning) or ``error``. For variants also a REF that differs from the genome.
    pair_references : PairReferences
        For variants: ``shared`` (both rows use the references of the reference allele's row) or ``own``.
    reference : ReferenceMethod or path
        ``dinuc`` (``n_refs`` shuffles per sequence), ``gc``, ``uniform``, ``zeros``, or a FASTA of references.
    n_refs, seed : int
        Shuffles per sequence (>= 1) and their seed (>= 0).
    rule : Mode
    max_rule : MaxRule
    targets : tuple
        Output indices or names; one result file each.
    batch_size : int, optional
        Sequence-reference pairs per engine batch (default: chosen for speed,
        :func:`~dnalift.attribution.batching.auto_batch_size`).
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:i``; or several devices, one worker process each (``cuda:0,cuda:1``,
        ``cuda:all``, CPU stand-ins ``cpu,cpu``: :mod:`dnalift.pipeline.devices`).
    precision : Precision
        ``float32`` (default), ``float64``, or a faster GPU arithmetic: ``tf32`` (CUDA only) or ``bfloat16``
        (:class:`~dnalift.options.Precision`).
    normalize : bool
        Mean-normalise the first layer's weights (paper 2.6).
    n_policy : NPolicy
    rc_average : bool
        Average with the scores of the reverse complement.
    shard : str, optional
        ``"i-of-n"``: only the i-th of n contiguous blocks of rows (one device only).
    resume, force : bool
        Finish the partial file of an interrupted run; replace existing outputs.
    arch, arch_kwargs, trust_model : model loading (:func:`dnalift.models.load_model`)
    allow_gradient : tuple of str
        ATen ops to pass through with gradients.
    allow_nonfinite : bool
        Keep rows whose prediction, reference prediction or scores are NaN or infinite (the file's
        ``allow_nonfinite`` attribute flags it); by default such a row stops the run and nothing is written.
    chunk_size : int, optional
        Rows per chunk of the result file (default about 1 MiB of scores).
    layout : Layout
        The model's input layout (``auto``: detected); passed to the loader only when not ``auto``.
    control_inputs : ControlInputs
        What extra model inputs get; passed to the engine only when not ``zeros``.
    shuffle_workers : int, optional
        Worker processes making the dinucleotide shuffles beside the compute (0: the reading thread makes them;
        default: none on the CPU, the cores left over per device on CUDA:
        :func:`dnalift.pipeline.inputs.shuffle_workers`).
    command_line : str
        Recorded in the result files.

    Raises
    ------
    OptionError
        On construction, for any option out of its range or choices (``argument`` names it).
    """

    model: Path
    output: Path
    fasta: Path | None = None
    regions: Path | None = None
    genome: Path | None = None
    variants: Path | None = None
    width: int | None = None
    center: Center = Center.MID
    off_genome: OffGenome = OffGenome.SKIP
    pair_references: PairReferences = PairReferences.SHARED
    reference: Any = ReferenceMethod.DINUC
    n_refs: int = 20
    seed: int = 0
    rule: Mode = Mode.RESCALE
    max_rule: MaxRule = MaxRule.EXACT
    targets: tuple = (0,)
    batch_size: int | None = None
    device: str = "auto"
    precision: Precision = Precision.FLOAT32
    normalize: bool = True
    n_policy: NPolicy = NPolicy.ZERO
    rc_average: bool = False
    shard: str | None = None
    resume: bool = False
    force: bool = False
    arch: str | None = None
    arch_kwargs: Mapping | str | None = None
    trust_model: bool = False
    allow_gradient: tuple = ()
    allow_nonfinite: bool = False
    chunk_size: int | None = None
    layout: Layout = Layout.AUTO
    control_inputs: ControlInputs = ControlInputs.ZEROS
    shuffle_workers: int | None = None
    command_line: str = ""

    def __post_init__(self):
        put = object.__setattr__
        put(self, "model", _path(self.model, "model", optional=False))
        put(self, "output", _path(self.output, "output", optional=False))
        for name in ("fasta", "regions", "genome", "variants"):
            put(self, name, _path(getattr(self, name), name))
        given = [name for name in ("fasta", "regions", "variants") if getattr(self, name) is not None]
        if not given:
            raise _option_error("give the sequences: exactly one of fasta=, regions= (with genome=) or variants "
                                "(with genome=)", "fasta")
        if len(given) > 1:
            raise _option_error(f"give {' or '.join(f'{name}=' for name in given)}, not both", given[1])
        if given != ["fasta"] and self.genome is None:
            raise _option_error(f"{given[0]} need genome=, the genome FASTA the {given[0]} are on", "genome")
        if self.fasta is not None and self.genome is not None:
            raise _option_error("genome= is for regions= (or variants); with fasta= leave it out", "genome")
        for name, enum_type in (("center", Center), ("off_genome", OffGenome), ("rule", Mode),
                                ("max_rule", MaxRule), ("precision", Precision), ("n_policy", NPolicy),
                                ("layout", Layout), ("control_inputs", ControlInputs),
                                ("pair_references", PairReferences)):
            put(self, name, parse_choice(enum_type, getattr(self, name), argument=name))
        put(self, "reference", self._parse_reference(self.reference))
        put(self, "width", _positive(self.width, "width", optional=True))
        put(self, "n_refs", _positive(self.n_refs, "n_refs"))
        put(self, "seed", _positive(self.seed, "seed", minimum=0))
        put(self, "batch_size", _positive(self.batch_size, "batch_size", optional=True))
        put(self, "chunk_size", _positive(self.chunk_size, "chunk_size", optional=True))
        put(self, "device", parse_device(self.device))
        if self.shard is not None:
            i, n = parse_shard(self.shard)
            put(self, "shard", f"{i}-of-{n}")
            if "," in self.device or self.device == "cuda:all":
                raise _option_error(f"shard={self.shard!r} with device={self.device!r}: score a shard on one "
                                    f"device, or the whole input on several devices (they split it themselves)",
                                    "device", value=self.device)
        put(self, "shuffle_workers", _positive(self.shuffle_workers, "shuffle_workers", minimum=0, optional=True))
        targets = (self.targets,) if isinstance(self.targets, (str, int)) else tuple(self.targets)
        if not targets:
            raise _option_error("targets is empty; give at least one output index or name", "targets")
        put(self, "targets", targets)
        ops = (self.allow_gradient,) if isinstance(self.allow_gradient, str) else tuple(self.allow_gradient)
        put(self, "allow_gradient", tuple(str(op).strip().removeprefix("aten.") for op in ops if str(op).strip()))
        if self.arch_kwargs is not None and self.arch is None:
            raise _option_error("arch_kwargs needs arch= (the package.module:Class they are for)", "arch_kwargs")
        if isinstance(self.arch_kwargs, str):
            import json

            try:
                kwargs = json.loads(self.arch_kwargs)
            except json.JSONDecodeError as e:
                raise _option_error(f"arch_kwargs is not JSON ({e}); give a JSON object, e.g. '{{\"n_filters\": 64}}'",
                                    "arch_kwargs", value=self.arch_kwargs) from None
            if not isinstance(kwargs, dict):
                raise _option_error("arch_kwargs must be a JSON object of keyword arguments, e.g. "
                                    "'{\"n_filters\": 64}'", "arch_kwargs", value=self.arch_kwargs)
        if self.resume and self.force:
            raise _option_error("give resume=True (finish the partial file) or force=True (start afresh), not both",
                                "resume")
        for name in ("normalize", "rc_average", "resume", "force", "trust_model", "allow_nonfinite"):
            put(self, name, bool(getattr(self, name)))
        put(self, "command_line", str(self.command_line or ""))

    @staticmethod
    def _parse_reference(value):
        if isinstance(value, ReferenceMethod):
            return value
        if isinstance(value, str) and value in ReferenceMethod.values():
            return ReferenceMethod(value)
        path = _path(value, "reference")
        if not path.is_file():
            raise _option_error(f"reference={str(value)!r} is neither a method ({', '.join(ReferenceMethod.values())})"
                                f" nor an existing FASTA file", "reference", value=value)
        return path

    @property
    def reference_file(self) -> Path | None:
        """The references FASTA, or None for a built-in method."""
        return self.reference if isinstance(self.reference, Path) else None

    @property
    def input_path(self) -> Path:
        """The file the sequences come from: ``fasta``, ``regions`` or ``variants``."""
        return next(p for p in (self.fasta, self.regions, self.variants) if p is not None)

    def input_files(self) -> dict[str, Path]:
        """The files the run reads, by argument name (``model``, ``fasta`` or ``regions`` and ``genome``,
        ``reference``), for the check that no output overwrites one."""
        files = {"model": self.model, "fasta": self.fasta, "regions": self.regions, "variants": self.variants,
                 "genome": self.genome, "reference": self.reference_file}
        return {k: v for k, v in files.items() if v is not None}

    def replace(self, **changes) -> "ScoreConfig":
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)
