# Stage: design. Cell-type-specific enhancers designed on the run's CNN bundle (the design oracle), judged by a
# second CNN trained on another seed and division of the data (the held-out oracle) and, on the demo, by the
# simulation's noiseless truth; the report's design section reads design/summary.json.


rule heldout_oracle:
    input:
        train=f"{DATA_DIR}/train.parquet",
        val=f"{DATA_DIR}/val.parquet",
        test=f"{DATA_DIR}/test.parquet",
        data=dataset_tables(),
    output:
        directory(HELDOUT_ORACLE_DIR),
    params:
        settings=settings("heldout-oracle", without=["baselines.methods"]),
        data_dir=lambda wildcards, input: Path(input.data[0]).parent,
    log:
        f"{LOG_DIR}/design/{Path(HELDOUT_ORACLE_DIR).name}.log",
    threads: 2
    resources:
        mem_mb=16384,
        runtime=720,
        gpu=1 if config["baselines"]["cnn"]["device"].startswith("cuda") else 0,
    conda:
        ENV
    shell:
        "python -m r3lm step heldout-oracle --config {params.settings:q} --train {input.train} --val {input.val}"
        " --test {input.test} --data-dir {params.data_dir} --out-dir {output} --no-progress > {log} 2>&1"


rule design:
    input:
        oracle=f"{MODELS_DIR}/cnn",
        heldout=HELDOUT_ORACLE_DIR,
        natural=NATURAL_SEQUENCES,
    output:
        designs=f"{DESIGN_DIR}/designs.parquet",
        fasta=f"{DESIGN_DIR}/designs.fa",
        natural=f"{DESIGN_DIR}/natural.parquet",
        summary=f"{DESIGN_DIR}/summary.json",
        logos=directory(f"{DESIGN_DIR}/logos"),
    params:
        settings=settings("designs"),
        out_dir=lambda wildcards, output: Path(output.summary).parent,
    log:
        f"{RUN_LOG_DIR}/design.log",
    threads: 2
    resources:
        mem_mb=8192,
        runtime=240,
    conda:
        ENV
    shell:
        "python -m r3lm step designs --config {params.settings:q} --oracle {input.oracle}"
        " --heldout {input.heldout}/bundle --natural {input.natural} --out-dir {params.out_dir} > {log} 2>&1"


rule explain_designs:
    input:
        designs=f"{DESIGN_DIR}/designs.parquet",
        model=f"{MODELS_DIR}/generated_cot",
        oracle=f"{MODELS_DIR}/cnn",
        motif_file=MOTIF_FILE,
    output:
        f"{DESIGN_DIR}/explained.parquet",
    params:
        settings=settings("explain-designs"),
    log:
        f"{RUN_LOG_DIR}/explain_designs.log",
    threads: 2
    resources:
        mem_mb=8192,
        runtime=120,
    conda:
        ENV
    shell:
        "python -m r3lm step explain-designs --config {params.settings:q} --designs {input.designs}"
        " --model {input.model} --oracle {input.oracle} --motif-file {input.motif_file} --out {output} > {log} 2>&1"
