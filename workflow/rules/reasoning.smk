# Stage: reasoning. CRE-ReasonBench: the base LLM, the training split's motif-family evidence,
# and the teacher's rationales for each set of cards, filtered for format, as ShareGPT.


rule prepare_base_model:
    output:
        directory(f"{LLM['models_dir']}/{EMBEDDED_MODEL}"),
    params:
        settings=settings("llm"),
    log:
        f"{LLM['models_dir']}/{EMBEDDED_MODEL}.log",
    threads: 2
    resources:
        mem_mb=4096,
        runtime=20,
    conda:
        ENV
    shell:
        "python -m r3lm prepare-model --config {params.settings:q} --out {output} > {log} 2>&1"


rule family_evidence:
    input:
        cards=f"{RCC_DIR}/train.parquet",
    output:
        f"{REASONING_DIR}/evidence.parquet",
    params:
        settings=settings("reasoning", "levels"),
    log:
        f"{LOG_DIR}/reasoning/{Path(REASONING_DIR).name}/family_evidence.log",
    threads: 1
    resources:
        mem_mb=4096,
        runtime=20,
    conda:
        ENV
    shell:
        "python -m r3lm evidence --config {params.settings:q} --cards {input.cards}"
        " --out {output} > {log} 2>&1"


rule teacher:
    input:
        unpack(hf_teacher_input),
        cards=lambda wildcards: f"{RCC_DIR}/{TEACHER_SETS[wildcards.set]}.parquet",
        evidence=f"{REASONING_DIR}/evidence.parquet",
    output:
        table=f"{REASONING_DIR}/{{set}}.parquet",
        sharegpt=directory(f"{REASONING_DIR}/sharegpt/{{set}}"),
        summary=f"{REASONING_DIR}/{{set}}.summary.json",
    params:
        settings=teacher_settings(),
        cache=f"{REASONING_DIR}/cache",
    log:
        f"{LOG_DIR}/reasoning/{Path(REASONING_DIR).name}/teacher_{{set}}.log",
    wildcard_constraints:
        set="|".join(TEACHER_SETS),
    threads: 2
    resources:
        mem_mb=8192,
        runtime=240,
    conda:
        ENV
    shell:
        "python -m r3lm teacher --config {params.settings:q} --set {wildcards.set}"
        " --cards {input.cards} --evidence {input.evidence} --cache {params.cache}"
        " --out {output.table} --sharegpt {output.sharegpt} --summary {output.summary} > {log} 2>&1"


rule dataset_info:
    input:
        expand(f"{REASONING_DIR}/sharegpt/{{set}}", set=TEACHER_SETS),
    output:
        f"{REASONING_DIR}/sharegpt/dataset_info.json",
    log:
        f"{LOG_DIR}/reasoning/{Path(REASONING_DIR).name}/dataset_info.log",
    threads: 1
    resources:
        mem_mb=1024,
        runtime=5,
    conda:
        ENV
    shell:
        "python -m r3lm dataset-info --sets {input} --out {output} > {log} 2>&1"
