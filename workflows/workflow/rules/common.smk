# Paths, input checks and command-line pieces shared by the rules.

import os
import shlex

OUT = os.path.normpath(config["outdir"])
N_SHARDS = config["shards"]
SHARDS = [f"{i}-of-{N_SHARDS}" for i in range(1, N_SHARDS + 1)]
SCORE = config["score"]
LOGOS = config["logos"]
MODISCO = config["modisco"]
DNALIFT = config["dnalift"]
MODISCO_BIN = config["modisco_bin"]
ENV = "../envs/dnalift.yaml"
#: the page `modisco report` (full) or `modisco report-simple` writes in its output directory
REPORT_HTML = f"{OUT}/modisco/report/" + ("report.html" if MODISCO["report"] == "full" else "motifs.html")

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


def q(value):
    """Shell-quote one value for a command line."""
    return shlex.quote(str(value))


def sequence_inputs(wildcards):
    """The files `dnalift score` reads besides the model."""
    if USE_REGIONS:
        return {"regions": config["regions"], "genome": config["genome"]}
    return {"fasta": config["fasta"]}


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
    """Options shared by every shard; they must be equal for `dnalift merge` to accept the shards."""
    opts = [
        f"--reference {q(SCORE['reference'])}",
        f"--n-refs {SCORE['n_refs']}",
        f"--seed {SCORE['seed']}",
        f"--rule {SCORE['rule']}",
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
    if SCORE["resume"]:
        opts.append("--resume")
    if SCORE.get("extra"):
        opts.append(SCORE["extra"])
    return " ".join(opts)


def logo_files(wildcards):
    """The logos of the top sequences, known once `top_sequences` has run (a checkpoint: fewer sequences
    than logos.top_k give fewer logos)."""
    table = checkpoints.top_sequences.get().output.table
    with open(table) as fh:
        n = sum(1 for line in fh if line.strip()) - 1  # minus the header
    return [f"{OUT}/logos/top{rank}.{LOGOS['format']}" for rank in range(1, n + 1)]


def all_outputs():
    targets = [f"{OUT}/scores.h5"]
    if LOGOS["top_k"] > 0:
        targets.append(f"{OUT}/logos/done.txt")
    if MODISCO["enabled"]:
        targets.append(REPORT_HTML)
    if USE_REGIONS and config["bigwig"]:
        targets.append(f"{OUT}/scores.bw")
    return targets


def report_command():
    """`modisco report` (full) or `modisco report-simple` and their options; with modisco.meme_db, match the
    patterns to its motifs."""
    if MODISCO["report"] == "full":
        cmd = f"report --n_examples {MODISCO['n_examples']}"
    else:
        cmd = "report-simple"
    if MODISCO.get("meme_db"):
        cmd += f" -m {q(MODISCO['meme_db'])} -n {MODISCO['n_matches']}"
        cmd += " -l" if MODISCO["tomtom"] == "lite" else ""
    return cmd
