# Stage: motifs. A FIMO-exact scan of every sequence (once, whatever its cell types) against
# JASPAR, scattered over `motifs.shards` jobs and gathered into one hits table.


rule motif_file:
    output:
        MOTIF_FILE,
    params:
        settings=settings("motif-file"),
    log:
        f"{MOTIF_FILE}.log",
    threads: 1
    resources:
        mem_mb=1024,
        runtime=10,
    conda:
        ENV
    shell:
        "python -m r3lm step motif-file --config {params.settings:q} --out {output} > {log} 2>&1"


rule motif_table:
    input:
        tables=expand(f"{DATA_DIR}/{{table}}.parquet", table=SCAN_TABLES),
        meme=MOTIF_FILE,
    output:
        f"{MOTIF_DIR}/motifs.parquet",
    params:
        settings=settings("motif-table"),
        data_dir=lambda wildcards, input: Path(input.tables[0]).parent,
    log:
        f"{LOG_DIR}/motifs/{MOTIF_SETTING}/motif_table.log",
    threads: 1
    resources:
        mem_mb=2048,
        runtime=10,
    conda:
        ENV
    shell:
        "python -m r3lm step motif-table --config {params.settings:q} --data-dir {params.data_dir}"
        " --out {output} > {log} 2>&1"


rule scan_shard:
    input:
        tables=expand(f"{DATA_DIR}/{{table}}.parquet", table=SCAN_TABLES),
    output:
        temp(f"{MOTIF_DIR}/shards/{{shard}}.parquet"),
    params:
        settings=settings("scan-shard"),
        data_dir=lambda wildcards, input: Path(input.tables[0]).parent,
        shard=lambda wildcards: int(wildcards.shard),
    log:
        f"{LOG_DIR}/motifs/{MOTIF_SETTING}/scan_shard_{{shard}}.log",
    threads: 2
    resources:
        mem_mb=4096,
        runtime=60,
    conda:
        ENV
    shell:
        "python -m r3lm step scan-shard --config {params.settings:q} --data-dir {params.data_dir}"
        " --shard {params.shard} --threads {threads} --out {output} > {log} 2>&1"


rule gather_hits:
    input:
        expand(f"{MOTIF_DIR}/shards/{{shard}}.parquet", shard=SHARDS),
    output:
        f"{MOTIF_DIR}/hits.parquet",
    log:
        f"{LOG_DIR}/motifs/{MOTIF_SETTING}/gather_hits.log",
    threads: 1
    resources:
        mem_mb=8192,
        runtime=20,
    conda:
        ENV
    shell:
        "python -m r3lm step gather-hits --out {output} {input} > {log} 2>&1"
