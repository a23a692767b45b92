# Logos of the sequences with the highest prediction.


checkpoint top_sequences:
    """Rank the sequences by the model's prediction and keep the top k (a TSV: rank, index, name,
    prediction)."""
    input:
        f"{OUT}/scores.h5",
    output:
        table=f"{OUT}/logos/top_sequences.tsv",
    log:
        f"{OUT}/logs/top_sequences.log",
    params:
        top_k=LOGOS["top_k"],
    conda:
        ENV
    script:
        "../scripts/top_sequences.py"


rule logo:
    """`dnalift logo` of the sequence ranked {rank} (its row index is read from the table)."""
    input:
        h5=f"{OUT}/scores.h5",
        table=f"{OUT}/logos/top_sequences.tsv",
    output:
        f"{OUT}/logos/top{{rank}}.{LOGOS['format']}",
    log:
        f"{OUT}/logs/logo.top{{rank}}.log",
    params:
        dnalift=DNALIFT,
        window=f"--around-max {LOGOS['around_max']}" if LOGOS["around_max"] else "",
        hypothetical="--hypothetical" if LOGOS["hypothetical"] else "",
    conda:
        ENV
    shell:
        "index=$(awk -F '\\t' -v r={wildcards.rank} 'NR > 1 && $1 == r {{print $2}}' {input.table:q}); "
        'test -n "$index" || {{ echo "rank {wildcards.rank} is not in {input.table}" > {log:q}; exit 1; }}; '
        '{params.dnalift} logo {input.h5:q} --index "$index" {params.window} {params.hypothetical} '
        "-o {output:q} > {log:q} 2>&1"


rule logos_done:
    """All logos of the top sequences (their list is only known after `top_sequences`)."""
    input:
        logo_files,
    output:
        f"{OUT}/logos/done.txt",
    log:
        f"{OUT}/logs/logos_done.log",
    conda:
        ENV
    shell:
        "ls {input:q} > {output:q} 2> {log:q}"
