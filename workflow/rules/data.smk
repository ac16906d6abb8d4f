# Stage: data. Every source ends in results/<dataset>/data/{train,val,test,test_subset}.parquet
# plus summary.json (see r3lm/data/prepare.py for the format).


rule download_gosai:
    # on the submit host: cluster compute nodes often have no internet
    localrule: True
    output:
        table=gosai_table(),
        checksum=gosai_table() + ".sha256",
    params:
        urls=" ".join(f"--url {url}" for url in DATASET["gosai2024"]["urls"]),
        sha256=(
            f"--sha256 {DATASET['gosai2024']['sha256']}"
            if DATASET["gosai2024"]["sha256"]
            else ""
        ),
    log:
        f"{LOG_DIR}/download_gosai.log",
    threads: 1
    resources:
        mem_mb=512,
        runtime=120,
    conda:
        ENV
    shell:
        "python -m r3lm step download {params.urls} {params.sha256} --out {output.table} --no-progress > {log} 2>&1"


rule simulate_demo:
    input:
        catalogue=workflow.source_path("../../r3lm/data/demo_tfs.yaml"),
    output:
        measurements=f"{DATA_DIR}/simulated.parquet",
        ground_truth=f"{DATA_DIR}/ground_truth.parquet",
    params:
        settings=settings("simulate"),
    log:
        f"{LOG_DIR}/simulate_demo.log",
    threads: 1
    resources:
        mem_mb=2048,
        runtime=30,
    conda:
        ENV
    shell:
        "python -m r3lm step simulate --config {params.settings:q} --out {output.measurements}"
        " --ground-truth {output.ground_truth} > {log} 2>&1"


rule prepare_data:
    input:
        unpack(source_files),
    output:
        tables=[f"{DATA_DIR}/{table}.parquet" for table in TABLES],
        summary=report(
            f"{DATA_DIR}/summary.json",
            caption="../report/data_summary.rst",
            category="1. Data",
        ),
    params:
        settings=settings("prepare-data"),
        source=source_argument,
        out_dir=lambda wildcards, output: Path(output.summary).parent,
    log:
        f"{LOG_DIR}/prepare_data.log",
    threads: 1
    resources:
        mem_mb=8192,
        runtime=60,
    conda:
        ENV
    shell:
        "python -m r3lm step prepare-data --config {params.settings:q} --out-dir {params.out_dir} {params.source} > {log} 2>&1"
