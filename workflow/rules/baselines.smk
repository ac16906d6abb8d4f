# Baselines on the same splits: motif-count ridge regression (interpretable, seconds) and a
# LegNet/Malinois-style CNN, each predicting every test row into
# results/<dataset>/baselines/<method>/[<card setting>/]predictions/.


rule motif_ridge:
    input:
        train=f"{RCC_DIR}/train.parquet",
        val=f"{RCC_DIR}/val.parquet",
        test=f"{RCC_DIR}/test.parquet",
        data_summary=f"{DATA_DIR}/summary.json",
    output:
        directory(prediction_dir("motif_ridge")),
    params:
        settings=settings("baseline-ridge", without=["baselines.methods"]),
    log:
        f"{LOG_DIR}/baselines/motif_ridge_{Path(RCC_DIR).name}.log",
    threads: 1
    resources:
        mem_mb=8192,
        runtime=60,
    conda:
        ENV
    shell:
        "python -m r3lm step baseline-ridge --config {params.settings:q} --train {input.train} --val {input.val}"
        " --test {input.test} --data-summary {input.data_summary} --out-dir {output} > {log} 2>&1"


rule cnn:
    input:
        train=f"{DATA_DIR}/train.parquet",
        val=f"{DATA_DIR}/val.parquet",
        test=f"{DATA_DIR}/test.parquet",
        data_summary=f"{DATA_DIR}/summary.json",
    output:
        directory(prediction_dir("cnn")),
    params:
        settings=settings("baseline-cnn", without=["baselines.methods"]),
    log:
        f"{LOG_DIR}/baselines/cnn.log",
    threads: 2
    resources:
        mem_mb=16384,
        runtime=720,
        gpu=1 if config["baselines"]["cnn"]["device"].startswith("cuda") else 0,
    conda:
        ENV
    shell:
        "python -m r3lm step baseline-cnn --config {params.settings:q} --train {input.train} --val {input.val}"
        " --test {input.test} --data-summary {input.data_summary} --out-dir {output} --no-progress > {log} 2>&1"


# Each baseline's model as a fast bundle beside the LLM bundles, for `r3lm score`, `r3lm variants` and
# `r3lm mutagenesis` (r3lm.deploy.fast reads it).
rule package_baseline:
    input:
        model=lambda wildcards: prediction_dir(wildcards.method),
        data=dataset_tables(),
    output:
        directory(f"{MODELS_DIR}/{{method}}"),
    params:
        # the ridge counts motifs on cards: its bundle records how they were made
        settings=settings("package-baseline"),
        data_dir=lambda wildcards, input: Path(input.data[0]).parent,
    log:
        f"{RUN_LOG_DIR}/package_{{method}}.log",
    wildcard_constraints:
        method="cnn|motif_ridge",
    threads: 1
    resources:
        mem_mb=4096,
        runtime=30,
    conda:
        ENV
    shell:
        "python -m r3lm step package-baseline --config {params.settings:q} --kind {wildcards.method}"
        " --model-dir {input.model} --data-dir {params.data_dir} --out {output} > {log} 2>&1"
