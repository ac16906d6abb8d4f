# Stage: stage1. Fine-tune the base LLM on the teacher's rationales, then let it write its own
# rationale, from the card alone, for every sequence Stage II sees.


rule stage1_train:
    input:
        unpack(base_model_input),
        train=f"{REASONING_DIR}/sharegpt/stage1_train",
        val=f"{REASONING_DIR}/sharegpt/stage1_val",
    output:
        model=directory(f"{STAGE1_DIR}/model"),
        losses=f"{STAGE1_DIR}/loss.csv",
        curve=report(
            f"{STAGE1_DIR}/loss.png",
            caption="../report/stage1_loss.rst",
            category="Stage I",
        ),
        summary=f"{STAGE1_DIR}/summary.json",
    params:
        settings=settings("stage1", "llm"),
        base=base_model(),
        out_dir=lambda wildcards, output: Path(output.summary).parent,
        launcher=launcher(STAGE1["gpus"]),
    log:
        f"{LOG_DIR}/stage1/{Path(STAGE1_DIR).name}/train.log",
    threads: 2
    resources:
        mem_mb=16384,
        runtime=1440,
        gpu=STAGE1["gpus"],
    conda:
        ENV
    shell:
        "{params.launcher} stage1-train --config {params.settings:q} --base {params.base:q}"
        " --train {input.train} --val {input.val} --out-dir {params.out_dir} > {log} 2>&1"


# One job for every Stage-II set: the model loads once, and the small train and validation sets decode
# in the same batches as the test set instead of at a fraction of the batch on their own.
rule self_rationales:
    input:
        model=f"{STAGE1_DIR}/model",
        teacher_sets=expand(f"{REASONING_DIR}/{{set}}.parquet", set=STAGE2_SETS),
        cards=[f"{RCC_DIR}/{TEACHER_SETS[name]}.parquet" for name in STAGE2_SETS],
    output:
        tables=expand(f"{STAGE1_DIR}/rationales/{{set}}.parquet", set=STAGE2_SETS),
        summaries=expand(f"{STAGE1_DIR}/rationales/{{set}}.summary.json", set=STAGE2_SETS),
    params:
        settings=settings("reasoning", "levels", "llm", "generation", "motifs"),
    log:
        f"{LOG_DIR}/stage1/{Path(STAGE1_DIR).name}/rationales.log",
    threads: 2
    resources:
        mem_mb=16384,
        runtime=1440,
        gpu=config["generation"]["gpus"],
    conda:
        ENV
    shell:
        "python -m r3lm self-rationales --config {params.settings:q} --model {input.model}"
        " --teacher-set {input.teacher_sets} --cards {input.cards} --out {output.tables}"
        " --summary {output.summaries} > {log} 2>&1"
