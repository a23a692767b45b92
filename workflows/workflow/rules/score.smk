# Score the sequences in shards, then merge the shards into one result file.


rule score_shard:
    """DeepLIFT scores of one contiguous block of the sequences (`dnalift score --shard i-of-N`). A job killed
    part way leaves a hidden partial file beside its output; scripts/resume_or_restart.py runs the command with
    --resume when that file was made by the same command (and no input changed since), so the next run finishes
    it, and with --force otherwise (e.g. after score.n_refs changed), so the shard starts afresh. The decision
    and the command are the first lines of the log."""
    input:
        unpack(sequence_inputs),
        model=config["model"],
    output:
        f"{OUT}/shards/scores.{{shard}}.h5",
    log:
        f"{OUT}/logs/score.{{shard}}.log",
    params:
        dnalift=DNALIFT,
        sequences=sequence_args(),
        options=score_options(),
    threads: SCORE["threads"]
    resources:
        mem_mb=SCORE["mem_mb"],
        runtime=SCORE["runtime"],
        **SHARD_GPU,
    conda:
        ENV
    script:
        "../scripts/resume_or_restart.py"


rule merge:
    """Join the shards into one file (refuses shards whose parameters differ or that miss rows), then
    validate it with `dnalift inspect`."""
    input:
        expand(f"{OUT}/shards/scores.{{shard}}.h5", shard=SHARDS),
    output:
        f"{OUT}/scores.h5",
    log:
        f"{OUT}/logs/merge.log",
    params:
        dnalift=DNALIFT,
    conda:
        ENV
    shell:
        "{params.dnalift} merge {input:q} -o {output:q} --force > {log:q} 2>&1 && "
        "{params.dnalift} inspect {output:q} >> {log:q} 2>&1"


rule bigwig:
    """Per-base contributions on genome coordinates (regions input only)."""
    input:
        h5=f"{OUT}/scores.h5",
        genome=config.get("genome") or [],
    output:
        f"{OUT}/scores.bw",
    log:
        f"{OUT}/logs/bigwig.log",
    params:
        dnalift=DNALIFT,
    conda:
        ENV
    shell:
        "{params.dnalift} export {input.h5:q} --format bigwig --genome {input.genome:q} -o {output:q} --force "
        "> {log:q} 2>&1"
