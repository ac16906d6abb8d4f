# Stage: stage1. Fine-tune the base LLM on the teacher's rationales (one shared model, or one per cell
# type on that cell type's rationales), then let each model write its own rationale, from the card alone,
# for every sequence of its cell types that Stage II sees.


rule stage1_train:
    input:
        unpack(base_model_input),
        train=f"{REASONING_DIR}/sharegpt/stage1_train",
        val=f"{REASONING_DIR}/sharegpt/stage1_val",
    output:
        model=directory(f"{STAGE1_DIR}/{{group}}/model"),
        losses=f"{STAGE1_DIR}/{{group}}/loss.csv",
        curve=report(
            f"{STAGE1_DIR}/{{group}}/loss.png",
            caption="../report/stage1_loss.rst",
            category="Stage I",
            subcategory="{group}",
        ),
        summary=f"{STAGE1_DIR}/{{group}}/summary.json",
    params:
        settings=settings("stage1-train", without=["stage1.models", "stage1.pretrained"]),
        base=PATHS.base_model,
        out_dir=lambda wildcards, output: Path(output.summary).parent,
        cell_type=lambda wildcards: (
            "" if wildcards.group == SHARED_STAGE1 else f"--cell-type {wildcards.group}"
        ),
        launcher=launcher(STAGE1["gpus"], data_parallel=True),
    log:
        f"{LOG_DIR}/stage1/{Path(STAGE1_DIR).name}/train_{{group}}.log",
    wildcard_constraints:
        group="|".join(STAGE1_GROUPS),
    threads: 2
    resources:
        mem_mb=16384,
        runtime=1440,
        gpu=STAGE1["gpus"],
    conda:
        ENV
    shell:
        "{params.launcher} step stage1-train --config {params.settings:q} --base {params.base:q}"
        " --train {input.train} --val {input.val} {params.cell_type}"
        " --out-dir {params.out_dir} > {log} 2>&1"


# One job per Stage-I model for every Stage-II set: the model loads once, and the small train and validation
# sets decode in the same batches as the test set instead of at a fraction of the batch on their own.
rule self_rationales:
    input:
        models=lambda wildcards: stage1_model_inputs([wildcards.group]),
        teacher_sets=expand(f"{REASONING_DIR}/{{set}}.parquet", set=STAGE2_SETS),
        cards=[f"{TEXT_CARD_DIR}/{SET_TABLES[name]}.parquet" for name in STAGE2_SETS],
    output:
        tables=expand(f"{STAGE1_DIR}/{{{{group}}}}/rationales/{{set}}.parquet", set=STAGE2_SETS),
        summaries=expand(
            f"{STAGE1_DIR}/{{{{group}}}}/rationales/{{set}}.summary.json", set=STAGE2_SETS
        ),
    params:
        settings=settings("self-rationales"),
        models=lambda wildcards: stage1_models_argument([wildcards.group]),
        launcher=launcher(config["generation"]["gpus"]),
    log:
        f"{LOG_DIR}/stage1/{Path(STAGE1_DIR).name}/rationales_{{group}}.log",
    wildcard_constraints:
        group="|".join(STAGE1_GROUPS),
    threads: 2
    resources:
        mem_mb=16384,
        runtime=1440,
        gpu=config["generation"]["gpus"],
    conda:
        ENV
    shell:
        "{params.launcher} step self-rationales --config {params.settings:q} --model {params.models}"
        " --teacher-set {input.teacher_sets} --cards {input.cards} --out {output.tables}"
        " --summary {output.summaries} > {log} 2>&1"


rule merge_rationales:
    input:
        tables=expand(f"{STAGE1_DIR}/{{group}}/rationales/{{{{set}}}}.parquet", group=STAGE1_GROUPS),
        summaries=expand(
            f"{STAGE1_DIR}/{{group}}/rationales/{{{{set}}}}.summary.json", group=STAGE1_GROUPS
        ),
        teacher_set=f"{REASONING_DIR}/{{set}}.parquet",
    output:
        table=f"{STAGE1_DIR}/rationales/{{set}}.parquet",
        summary=f"{STAGE1_DIR}/rationales/{{set}}.summary.json",
    params:
        settings=settings("merge-rationales"),
    log:
        f"{LOG_DIR}/stage1/{Path(STAGE1_DIR).name}/merge_{{set}}.log",
    wildcard_constraints:
        set="|".join(STAGE2_SETS),
    threads: 1
    resources:
        mem_mb=4096,
        runtime=30,
    conda:
        ENV
    shell:
        "python -m r3lm step merge-rationales --config {params.settings:q} --tables {input.tables}"
        " --summaries {input.summaries} --teacher-set {input.teacher_set}"
        " --out {output.table} --summary {output.summary} > {log} 2>&1"
