# FiNeMo: the TF-MoDISco patterns called as hits in every scored sequence.


rule finemo_extract:
    """`finemo extract-regions-chrombpnet-h5`: the sequences and hypothetical scores (raw/seq, shap/seq) of the
    merged or averaged scores, cropped to the central window TF-MoDISco saw (its width read from the exported
    npz when the job runs), as FiNeMo's regions.npz. With regions input whose lines have the ten narrowPeak
    columns, the kept regions (the input lines of the rows, in row order) are its peak file, so the hits get
    genome coordinates; a BED of fewer columns is not given (FiNeMo reads narrowPeak only)."""
    input:
        h5=SCORES,
        ohe=f"{OUT}/modisco/scores.ohe.npz",
        peaks=kept_regions(SCORES) if USE_REGIONS else [],
    output:
        f"{OUT}/finemo/regions.npz",
    log:
        f"{OUT}/logs/finemo_extract.log",
    params:
        finemo=FINEMO_BIN,
        width=npz_width,
    conda:
        ENV
    shell:
        ": > {log:q}; set --; if [ -n '{input.peaks}' ]; then "
        "if awk -F '\\t' 'NF < 10 {{ exit 1 }}' {input.peaks:q}; then set -- -p {input.peaks:q}; "
        "else echo '{input.peaks} has lines of fewer than 10 columns (not narrowPeak): hits without genome "
        "coordinates' >> {log:q}; fi; fi; "
        '{params.finemo} extract-regions-chrombpnet-h5 -c {input.h5:q} "$@" -w {params.width} -o {output:q} '
        ">> {log:q} 2>&1"


rule finemo_hits:
    """`finemo call-hits`: each TF-MoDISco pattern's hits in every sequence (hits.tsv, hits_unique.tsv,
    hits.bed), with a row of quality figures per sequence (peaks_qc.tsv) and the motifs used (motif_data.tsv)."""
    input:
        regions=f"{OUT}/finemo/regions.npz",
        modisco=f"{OUT}/modisco/modisco_results.h5",
    output:
        hits=f"{OUT}/finemo/hits/hits.tsv",
        unique=f"{OUT}/finemo/hits/hits_unique.tsv",
        bed=f"{OUT}/finemo/hits/hits.bed",
        qc=f"{OUT}/finemo/hits/peaks_qc.tsv",
        motifs=f"{OUT}/finemo/hits/motif_data.tsv",
    log:
        f"{OUT}/logs/finemo_hits.log",
    params:
        finemo=FINEMO_BIN,
        outdir=lambda wildcards, output: os.path.dirname(output.hits),
        options=f"-l {FINEMO['lambda']} {FINEMO.get('extra') or ''}",
    threads: FINEMO["threads"]
    resources:
        mem_mb=FINEMO["mem_mb"],
        runtime=FINEMO["runtime"],
        **({"gpu": 1} if FINEMO["gpu"] else {}),
    conda:
        ENV
    shell:
        "OMP_NUM_THREADS={threads} NUMBA_NUM_THREADS={threads} "
        "{params.finemo} call-hits -r {input.regions:q} -m {input.modisco:q} -o {params.outdir:q} "
        "{params.options} > {log:q} 2>&1"
