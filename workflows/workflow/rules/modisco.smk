# TF-MoDISco lite on the merged scores: export the npz pair, find motifs, write the HTML report.


rule modisco_export:
    """`dnalift export --format modisco`: hypothetical scores and one-hot sequences as npz (key arr_0,
    (n, 4, L)), cropped to the central modisco.window bases when one is given."""
    input:
        f"{OUT}/scores.h5",
    output:
        hyp=f"{OUT}/modisco/scores.hyp.npz",
        ohe=f"{OUT}/modisco/scores.ohe.npz",
    log:
        f"{OUT}/logs/modisco_export.log",
    params:
        dnalift=DNALIFT,
        prefix=lambda wildcards, output: output.hyp[: -len(".hyp.npz")],
        window=f"--window {MODISCO['window']}" if MODISCO["window"] else "",
    conda:
        ENV
    shell:
        "{params.dnalift} export {input:q} --format modisco {params.window} -o {params.prefix:q} --force "
        "> {log:q} 2>&1"


rule modisco_motifs:
    """`modisco motifs` on the exported pair; its -w is the exported width rounded down to even (read from the
    npz when the job runs)."""
    input:
        hyp=f"{OUT}/modisco/scores.hyp.npz",
        ohe=f"{OUT}/modisco/scores.ohe.npz",
    output:
        f"{OUT}/modisco/modisco_results.h5",
    log:
        f"{OUT}/logs/modisco_motifs.log",
    params:
        modisco=MODISCO_BIN,
        width=npz_width,
        options=f"-n {MODISCO['max_seqlets']} -l {MODISCO['n_leiden']} {MODISCO.get('extra') or ''}",
    threads: MODISCO["threads"]
    resources:
        mem_mb=MODISCO["mem_mb"],
        runtime=MODISCO["runtime"],
    conda:
        ENV
    shell:
        "NUMBA_NUM_THREADS={threads} OMP_NUM_THREADS={threads} "
        "{params.modisco} motifs -s {input.ohe:q} -a {input.hyp:q} -w {params.width} {params.options} "
        "-o {output:q} > {log:q} 2>&1"


rule modisco_report:
    """TF-MoDISco lite's report (`modisco report`, or report-simple): an HTML page of the patterns (CWM logos,
    seqlet counts); with modisco.meme_db, their closest known motifs with their logos (tomtom-lite by default,
    which needs no MEME suite), each pattern named after its matches. scripts/modisco_report.py gives the
    database one-word motif names first, which the report needs to find each match's logo."""
    input:
        h5=f"{OUT}/modisco/modisco_results.h5",
        meme_db=MODISCO.get("meme_db") or [],
    output:
        REPORT_HTML,
    log:
        f"{OUT}/logs/modisco_report.log",
    params:
        kind=MODISCO["report"],
        n_matches=MODISCO["n_matches"],
        tomtom=MODISCO["tomtom"],
        n_examples=MODISCO["n_examples"],
    conda:
        ENV
    script:
        "../scripts/modisco_report.py"
