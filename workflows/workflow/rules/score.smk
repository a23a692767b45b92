# Score the sequences in shards, then merge the shards into one result file; with several fold models, each fold
# is scored and merged on its own and the folds are averaged into outdir/scores.h5.


rule score_shard:
    """DeepLIFT scores of one contiguous block of the sequences (`dnalift score --shard i-of-N`), by one model (a
    fold's with several). A job killed part way leaves a hidden partial file beside its output;
    scripts/resume_or_restart.py runs the command with --resume when that file was made by the same command (and
    no input changed since), so the next run finishes it, and with --force otherwise (e.g. after score.n_refs
    changed), so the shard starts afresh. A dnalift run still writing the output (left running by a killed
    Snakemake) is waited for first. The decision and the command are the first lines of the log."""
    input:
        unpack(sequence_inputs),
        model=fold_model,
    output:
        f"{FOLD_DIR}/shards/scores.{{shard}}.h5",
    log:
        f"{OUT}/logs/score.{{fold}}.{{shard}}.log" if FOLDS else f"{OUT}/logs/score.{{shard}}.log",
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
    """Join a fold's shards into one file (refuses shards whose parameters differ or that miss rows), then
    validate it with `dnalift inspect`. With regions input dnalift writes the kept regions beside it."""
    input:
        fold_shards,
    output:
        **scores_outputs(f"{FOLD_DIR}/scores.h5"),
    log:
        f"{OUT}/logs/merge.{{fold}}.log" if FOLDS else f"{OUT}/logs/merge.log",
    params:
        dnalift=DNALIFT,
    conda:
        ENV
    shell:
        "{params.dnalift} merge {input:q} -o {output.h5:q} --force > {log:q} 2>&1 && "
        "{params.dnalift} inspect {output.h5:q} >> {log:q} 2>&1"


if FOLDS:  # with one model the merged file is outdir/scores.h5

    rule average:
        """The mean of the folds' scores and predictions (`dnalift average`: files of the same sequences, options and
        references, checked by their fingerprints; each fold's predictions and model fingerprint stay in the file),
        validated with `dnalift inspect`."""
        input:
            expand(f"{OUT}/folds/{{fold}}/scores.h5", fold=list(FOLDS)),
        output:
            **scores_outputs(SCORES),
        log:
            f"{OUT}/logs/average.log",
        params:
            dnalift=DNALIFT,
        conda:
            ENV
        shell:
            "{params.dnalift} average {input:q} -o {output.h5:q} > {log:q} 2>&1 && "
            "{params.dnalift} inspect {output.h5:q} >> {log:q} 2>&1"


rule bigwig:
    """Per-base contributions on genome coordinates (regions input only), of the merged or averaged scores."""
    input:
        h5=SCORES,
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
