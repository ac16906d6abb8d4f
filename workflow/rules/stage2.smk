# Stage: stage2. Reason-conditioned regression: one job per input mode (generated_cot is the method,
# oracle_cot an upper bound, rcc_only and sequence_only the ablations), each training its models and
# predicting the Stage-II test set into <stage2 setting>/<mode>/predictions/; package_model turns
# each deployable mode's models into a self-contained folder for `r3lm predict` and `r3lm explain`.


rule stage2:
    input:
        unpack(stage2_backbone_input),
        teacher_sets=[f"{REASONING_DIR}/{name}.parquet" for name in STAGE2_SETS],
        cards=[f"{TEXT_CARD_DIR}/{SET_TABLES[name]}.parquet" for name in STAGE2_SETS],
        rationales=stage2_rationales,
        data_summary=f"{DATA_DIR}/summary.json",
    output:
        predictions=directory(f"{STAGE2_DIR}/{{mode}}/predictions"),
        model=directory(f"{STAGE2_DIR}/{{mode}}/model"),
        curve=f"{STAGE2_DIR}/{{mode}}/curve.csv",
        summary=f"{STAGE2_DIR}/{{mode}}/summary.json",
    params:
        settings=settings("stage2", without=["stage2.modes"]),
        backbone=STAGE2_BACKBONE,
        work_dir=lambda wildcards, output: Path(output.summary).parent,
        rationales=lambda wildcards, input: (
            f"--rationales {' '.join(input.rationales)}" if input.rationales else ""
        ),
        launcher=launcher(STAGE2["gpus"]),
    log:
        f"{LOG_DIR}/stage2/{Path(STAGE2_DIR).name}/{{mode}}.log",
    wildcard_constraints:
        mode="|".join(STAGE2_INPUT_MODES),
    threads: 2
    resources:
        mem_mb=16384,
        runtime=1440,
        gpu=STAGE2["gpus"],
    conda:
        ENV
    shell:
        "{params.launcher} step stage2 --config {params.settings:q} --mode {wildcards.mode} --backbone {params.backbone:q}"
        " --teacher-sets {input.teacher_sets} --cards {input.cards} {params.rationales}"
        " --data-summary {input.data_summary} --work-dir {params.work_dir}"
        " --predictions {output.predictions} --no-progress > {log} 2>&1"


rule package_model:
    input:
        unpack(evidence_tag_input),
        models=f"{STAGE2_DIR}/{{mode}}/model",
        stage1_models=stage1_model_inputs(),
        data=dataset_tables(),
    output:
        directory(f"{MODELS_DIR}/{{mode}}"),
    params:
        stage1_models=lambda wildcards: stage1_models_argument(),
        settings=settings("package-model"),
        data_dir=lambda wildcards, input: Path(input.data[0]).parent,
        evidence_tags=evidence_tag_argument,
    log:
        f"{RUN_LOG_DIR}/package_{{mode}}.log",
    wildcard_constraints:
        mode="|".join(DEPLOYABLE_INPUT_MODES),
    threads: 1
    resources:
        mem_mb=4096,
        runtime=30,
    conda:
        ENV
    shell:
        "python -m r3lm step package-model --config {params.settings:q} --mode {wildcards.mode}"
        " --stage2-models {input.models} --stage1-model {params.stage1_models} --data-dir {params.data_dir}"
        " {params.evidence_tags} --out {output} > {log} 2>&1"
