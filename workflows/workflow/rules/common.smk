# Paths, input checks and command-line pieces shared by the rules.

import ast
import os
import re
import shlex
import struct
import zipfile

import yaml

OUT = os.path.normpath(config["outdir"])
N_SHARDS = config["shards"]
SHARDS = [f"{i}-of-{N_SHARDS}" for i in range(1, N_SHARDS + 1)]
SCORE = config["score"]
LOGOS = config["logos"]
MODISCO = config["modisco"]
FINEMO = config["finemo"]
DNALIFT = config["dnalift"]
MODISCO_BIN = config["modisco_bin"]
FINEMO_BIN = config["finemo_bin"]
ENV = "../envs/dnalift.yaml"
#: the choices of the configuration's options, as the schema lists them (tests/workflow/test_workflow.py checks they are
#: those of dnalift/config.py's enums; the Snakefile does not import dnalift, which may live in another environment)
with open(os.path.join(workflow.basedir, "schemas", "config.schema.yaml")) as _fh:
    _SCHEMA = yaml.safe_load(_fh)
#: built-in reference methods; any other score.reference is a FASTA of references, an input of the shards
REFERENCE_METHODS = next(
    branch["enum"] for branch in _SCHEMA["properties"]["score"]["properties"]["reference"]["anyOf"] if "enum" in branch
)
#: the page `modisco report` (full) or `modisco report-simple` writes in its output directory
REPORT_HTML = f"{OUT}/modisco/report/" + ("report.html" if MODISCO["report"] == "full" else "motifs.html")


def fold_models() -> dict:
    """Model name -> model file: config `model` alone ({"": model}) or `models` (a list names them fold0,
    fold1, ...)."""
    model, models = config.get("model"), config.get("models")
    if bool(model) == bool(models):
        raise ValueError("config: give either 'model' (one model file) or 'models' (the fold models), not both "
                         "and not neither; see config/config.yaml")
    if isinstance(models, list):
        return {f"fold{i}": path for i, path in enumerate(models)}
    return dict(models) if models else {"": model}


_MODELS = fold_models()
#: fold name -> model file with several models; empty with one, whose shards and merged file are in outdir/
FOLDS = _MODELS if len(_MODELS) > 1 else {}
#: the one model (None with folds)
MODEL = None if FOLDS else next(iter(_MODELS.values()))
#: where a fold's shards and merged file go: outdir/folds/<fold>/ (outdir/ itself with one model)
FOLD_DIR = f"{OUT}/folds/{{fold}}" if FOLDS else OUT
#: the scores everything after the scoring reads: the merged file, or the folds' average
SCORES = f"{OUT}/scores.h5"

USE_REGIONS = bool(config.get("regions"))
if USE_REGIONS == bool(config.get("fasta")):
    raise ValueError(
        "config: give either 'fasta' or 'regions' (with 'genome' and 'width'), not both and not neither; "
        "see config/config.yaml"
    )
if USE_REGIONS and not (config.get("genome") and config.get("width")):
    raise ValueError(
        "config: 'regions' needs 'genome' (a FASTA) and 'width' (bases per window); add them to the config"
    )


wildcard_constraints:
    shard=r"\d+-of-\d+",
    rank=r"\d+",
    fold="|".join(re.escape(name) for name in FOLDS) or "none",


def kept_regions(h5: str) -> str:
    """The kept regions file dnalift writes beside a result scored from regions (the input lines of its rows):
    OUT.regions.narrowPeak for a *.narrowPeak(.gz) input, else OUT.regions.bed (dnalift.io.store.schema's
    kept_regions_path and regions_format; tests/workflow/test_workflow.py keeps them equal)."""
    name = os.path.basename(str(config["regions"])).lower()
    suffix = ".regions.narrowPeak" if name.endswith((".narrowpeak", ".narrowpeak.gz")) else ".regions.bed"
    return h5[: -len(".h5")] + suffix


def scores_outputs(h5: str) -> dict:
    """The outputs of a merge or an average: the result (``h5``) and, with regions input, its kept regions."""
    return {"h5": h5, "kept": kept_regions(h5)} if USE_REGIONS else {"h5": h5}


def fold_model(wildcards) -> str:
    """The model of a shard job's fold (the one model without folds)."""
    return FOLDS[wildcards.fold] if FOLDS else MODEL


def fold_shards(wildcards) -> list:
    """The shard files of one fold (of the one model without folds)."""
    folder = FOLD_DIR.format(fold=wildcards.fold) if FOLDS else OUT
    return [f"{folder}/shards/scores.{shard}.h5" for shard in SHARDS]


def q(value):
    """Shell-quote one value for a command line."""
    return shlex.quote(str(value))


def sequence_inputs(wildcards):
    """The files `dnalift score` reads besides the model: the sequences (or regions and genome) and a FASTA of
    references when score.reference is one, so that Snakemake reruns the shards when any of them changes."""
    files = {"regions": config["regions"], "genome": config["genome"]} if USE_REGIONS else {"fasta": config["fasta"]}
    if str(SCORE["reference"]) not in REFERENCE_METHODS:
        files["references"] = SCORE["reference"]
    return files


def sequence_args():
    """The sequence part of the `dnalift score` command line."""
    if USE_REGIONS:
        args = (
            f"--regions {q(config['regions'])} --genome {q(config['genome'])} "
            f"--width {int(config['width'])} --center {config['center']}"
        )
    else:
        args = q(config["fasta"])
        if config.get("width"):
            args += f" --width {int(config['width'])}"
    return args


def score_options():
    """Options shared by every shard; they must be equal for `dnalift merge` to accept the shards. Neither
    --resume nor --force: scripts/resume_or_restart.py adds one of them when the job runs (so score.resume is
    not among the recorded parameters, and switching it reruns no finished shard)."""
    opts = [
        f"--reference {q(SCORE['reference'])}",
        f"--n-refs {SCORE['n_refs']}",
        f"--seed {SCORE['seed']}",
        f"--rule {SCORE['rule']}",
        f"--max-rule {SCORE['max_rule']}",
        f"--target {q(SCORE['target'])}",
        f"--device {SCORE['device']}",
        f"--precision {SCORE['precision']}",
        f"--n-policy {SCORE['n_policy']}",
    ]
    if SCORE.get("batch_size"):
        opts.append(f"--batch-size {SCORE['batch_size']}")
    if not SCORE["normalize"]:
        opts.append("--no-normalize")
    if SCORE["rc_average"]:
        opts.append("--rc-average")
    if SCORE.get("arch"):
        opts.append(f"--arch {q(SCORE['arch'])}")
    if SCORE["trust_model"]:
        opts.append("--trust-model")
    if SCORE.get("extra"):
        opts.append(SCORE["extra"])
    return " ".join(opts)


def uses_gpu(device: str) -> bool:
    """Whether `dnalift score --device DEVICE` needs a GPU (cuda or cuda:N; auto takes one only if there is one)."""
    return str(device).startswith("cuda")


#: resources of a shard job beyond memory and time: one GPU when it scores on cuda (`gpu`, the name Snakemake's
#: local scheduler (--resources gpu=1) and the SLURM executor plugin (sbatch --gpus) use)
SHARD_GPU = {"gpu": 1} if uses_gpu(SCORE["device"]) else {}


def npz_width(wildcards, input):
    """`modisco motifs -w`: the length of the exported arrays (the last axis of arr_0 in the npz written by
    `dnalift export --format modisco`) rounded down to even, as modisco needs.

    Reads only the .npy header inside the archive (magic, version, header length, then a dict literal with the
    shape), without numpy, which the environment running Snakemake may lack. A function of the job's input:
    Snakemake evaluates it when the job runs (a dry run shows <TBD>) and keeps it out of the rule's recorded
    parameters, so nothing about where the workflow's files are can make modisco rerun."""
    with zipfile.ZipFile(input.ohe) as zf, zf.open("arr_0.npy") as member:
        magic = member.read(8)
        if magic[:6] != b"\x93NUMPY":
            raise ValueError(f"{input.ohe}: arr_0.npy is not a .npy array")
        size_format = "<H" if magic[6] == 1 else "<I"
        (header_length,) = struct.unpack(size_format, member.read(struct.calcsize(size_format)))
        header = ast.literal_eval(member.read(header_length).decode("latin1"))
    length = int(header["shape"][-1])
    return length - length % 2


def logo_files(wildcards):
    """The logos of the top sequences, known once `top_sequences` has run (a checkpoint: fewer sequences
    than logos.top_k give fewer logos)."""
    table = checkpoints.top_sequences.get().output.table
    with open(table) as fh:
        n = sum(1 for line in fh if line.strip()) - 1  # minus the header
    return [f"{OUT}/logos/top{rank}.{LOGOS['format']}" for rank in range(1, n + 1)]


def all_outputs():
    targets = [SCORES]
    if LOGOS["top_k"] > 0:
        targets.append(f"{OUT}/logos/done.txt")
    if MODISCO["enabled"]:
        targets.append(REPORT_HTML)
        if FINEMO["enabled"]:
            targets.append(f"{OUT}/finemo/hits/hits.tsv")
    if USE_REGIONS and config["bigwig"]:
        targets.append(f"{OUT}/scores.bw")
    return targets
