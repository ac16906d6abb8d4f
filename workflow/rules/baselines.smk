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
        settings=settings("baselines", without=["baselines.methods"]),
    log:
        f"{LOG_DIR}/baselines/motif_ridge_{Path(RCC_DIR).name}.log",
    threads: 1
    resources:
        mem_mb=8192,
        runtime=60,
    conda:
        ENV
    shell:
        "python -m r3lm baseline-ridge --config {params.settings:q} --train {input.train} --val {input.val}"
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
        settings=settings("baselines", without=["baselines.methods"]),
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
        "python -m r3lm baseline-cnn --config {params.settings:q} --train {input.train} --val {input.val}"
        " --test {input.test} --data-summary {input.data_summary} --out-dir {output} --no-progress > {log} 2>&1"
