# Stage: evaluate. Every method scored per cell type on both protocols with bootstrap intervals,
# explanation faithfulness, and the report (summary.md, figures, and `snakemake --report`).


rule metrics:
    input:
        predictions=list(prediction_dirs().values()),
        test=f"{DATA_DIR}/test.parquet",
        test_subset=PAPER_TEST,
    output:
        metrics=f"{EVAL_DIR}/metrics.tsv",
        skipped=f"{EVAL_DIR}/metrics_skipped.tsv",
    params:
        settings=settings("metrics", without=NOT_TRANSFER),
        predictions=named(prediction_dirs()),
        baselines=BASELINES,
    log:
        f"{RUN_LOG_DIR}/metrics.log",
    threads: 1
    resources:
        mem_mb=8192,
        runtime=60,
    conda:
        ENV
    shell:
        "python -m r3lm step metrics --config {params.settings:q} --predictions {params.predictions}"
        " --baselines {params.baselines} --test {input.test} --test-subset {input.test_subset}"
        " --out {output.metrics} --skipped {output.skipped} > {log} 2>&1"


rule citation_faithfulness:
    input:
        rationales=lambda wildcards: (
            f"{STAGE1_DIR}/rationales/test.parquet"
            if wildcards.source == "generated"
            else f"{REASONING_DIR}/test.parquet"
        ),
        cards=f"{RCC_DIR}/{SET_TABLES['test']}.parquet",
        ground_truth=f"{DATA_DIR}/ground_truth.parquet",
    output:
        f"{EVAL_DIR}/citation_{{source}}.tsv",
    params:
        settings=settings("citation-faithfulness", without=NOT_TRANSFER),
    log:
        f"{RUN_LOG_DIR}/citation_{{source}}.log",
    wildcard_constraints:
        source="generated|teacher",
    threads: 1
    resources:
        mem_mb=4096,
        runtime=30,
    conda:
        ENV
    shell:
        "python -m r3lm step citation-faithfulness --config {params.settings:q} --rationales {input.rationales}"
        " --cards {input.cards} --ground-truth {input.ground_truth} --out {output} > {log} 2>&1"


rule report:
    input:
        metrics=f"{EVAL_DIR}/metrics.tsv",
        skipped=f"{EVAL_DIR}/metrics_skipped.tsv",
        predictions=list(prediction_dirs().values()),
        test=f"{DATA_DIR}/test.parquet",
        test_subset=PAPER_TEST,
        faithfulness=list(faithfulness_tables().values()),
        # the CNN's curve is written inside its predictions folder (a directory output)
        curves=[
            path
            for path in training_curves().values()
            if not path.startswith(prediction_dir("cnn"))
        ],
        transfer=transfer_metrics(),
        design=design_summary(),
    output:
        summary=report(
            f"{REPORT_DIR}/summary.md", caption="../report/summary.rst", category="Evaluation"
        ),
        scatter=report(
            expand(f"{REPORT_DIR}/scatter_{{protocol}}.png", protocol=["full", "paper"]),
            caption="../report/scatter.rst",
            category="Evaluation",
        ),
        pearson=report(
            expand(f"{REPORT_DIR}/pearson_{{protocol}}.png", protocol=["full", "paper"]),
            caption="../report/pearson.rst",
            category="Evaluation",
        ),
        curves=report(
            f"{REPORT_DIR}/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
        ),
        design=report(
            f"{REPORT_DIR}/design_objective.png",
            caption="../report/design.rst",
            category="Design",
        ),
    params:
        settings=settings("report", without=NOT_TRANSFER),
        predictions=named(prediction_dirs()),
        faithfulness=named(faithfulness_tables()),
        curves=named(training_curves()),
        design=lambda wildcards, input: f"--design {Path(input.design[0]).parent}" if input.design else "",
        figure_dir=lambda wildcards, output: Path(output.summary).parent,
    log:
        f"{RUN_LOG_DIR}/report.log",
    threads: 1
    resources:
        mem_mb=4096,
        runtime=30,
    conda:
        ENV
    shell:
        "python -m r3lm step report --config {params.settings:q} --metrics {input.metrics} --skipped {input.skipped}"
        " --predictions {params.predictions} --test {input.test} --test-subset {input.test_subset}"
        " --faithfulness {params.faithfulness} --curves {params.curves} --transfer {input.transfer}"
        " --out {output.summary} --figure-dir {params.figure_dir} {params.design} > {log} 2>&1"


# Every bundle of the run scored on another table (an evaluation.transfer entry); the LLM bundles write a
# rationale per row, so the entry's sample size bounds the job's time.
rule transfer:
    input:
        unpack(transfer_inputs),
        models=model_bundles(),
        seen=transfer_seen_tables(),
        metrics=f"{EVAL_DIR}/metrics.tsv",
    output:
        predictions=f"{EVAL_DIR}/transfer/{{transfer}}/predictions.parquet",
        metrics=f"{EVAL_DIR}/transfer/{{transfer}}/metrics.tsv",
        summary=f"{EVAL_DIR}/transfer/{{transfer}}/summary.json",
    params:
        settings=lambda wildcards: transfer_settings(wildcards.transfer),
        models=named({Path(bundle).name: bundle for bundle in model_bundles()}),
        launcher=launcher(STAGE2["gpus"] if DEPLOYABLE_MODES else 0),
    log:
        f"{RUN_LOG_DIR}/transfer_{{transfer}}.log",
    wildcard_constraints:
        transfer="[A-Za-z0-9_.-]+",
    threads: 2
    resources:
        mem_mb=16384,
        runtime=720,
        gpu=STAGE2["gpus"] if DEPLOYABLE_MODES else 0,
    conda:
        ENV
    shell:
        "{params.launcher} step transfer --config {params.settings:q} --name {wildcards.transfer}"
        " --models {params.models} --seen {input.seen} --in-dataset-metrics {input.metrics}"
        " --predictions {output.predictions} --metrics {output.metrics} --summary {output.summary}"
        " --no-progress > {log} 2>&1"


rule disruption:
    input:
        unpack(evidence_tag_input),
        models=f"{STAGE2_DIR}/{DISRUPTION['mode']}/model",
        predictions=prediction_dir(DISRUPTION["mode"]),
        cards=f"{TEXT_CARD_DIR}/{SET_TABLES['test']}.parquet",
        stage1_models=stage1_model_inputs(),
        data_summary=f"{DATA_DIR}/summary.json",
    output:
        table=f"{EVAL_DIR}/disruption.tsv",
        summary=f"{EVAL_DIR}/disruption_summary.tsv",
    params:
        stage1_models=lambda wildcards: stage1_models_argument(),
        settings=settings("disruption", without=NOT_TRANSFER),
        data_dir=lambda wildcards, input: Path(input.data_summary).parent,
        evidence_tags=evidence_tag_argument,
        launcher=launcher(STAGE2["gpus"]),
    log:
        f"{RUN_LOG_DIR}/disruption.log",
    threads: 2
    resources:
        mem_mb=16384,
        runtime=720,
        gpu=STAGE2["gpus"],
    conda:
        ENV
    shell:
        "{params.launcher} step disruption --config {params.settings:q} --models {input.models}"
        " --predictions {input.predictions} --cards {input.cards} --stage1-model {params.stage1_models}"
        " --data-dir {params.data_dir} {params.evidence_tags} --out {output.table} --summary {output.summary}"
        " --no-progress > {log} 2>&1"
