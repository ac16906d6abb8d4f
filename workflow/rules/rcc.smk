# Stage: rcc. One Regulatory Context Card per (sequence, cell type) row of each split table.


rule build_cards:
    input:
        table=f"{DATA_DIR}/{{table}}.parquet",
        hits=f"{MOTIF_DIR}/hits.parquet",
        motifs=f"{MOTIF_DIR}/motifs.parquet",
    output:
        f"{RCC_DIR}/{{table}}.parquet",
    params:
        settings=settings("build-cards"),
    log:
        f"{LOG_DIR}/rcc/{Path(RCC_DIR).name}/build_cards_{{table}}.log",
    wildcard_constraints:
        table="|".join(TABLES),
    threads: 1
    resources:
        mem_mb=8192,
        runtime=60,
    conda:
        ENV
    shell:
        "python -m r3lm step build-cards --config {params.settings:q} --table {input.table}"
        " --hits {input.hits} --out {output} > {log} 2>&1"
