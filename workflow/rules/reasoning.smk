# Stage: reasoning. CRE-ReasonBench: the base LLM, the training split's motif-family evidence,
# and the teacher's rationales for each set of cards, filtered for format, as ShareGPT.


rule prepare_base_model:
    output:
        directory(f"{LLM['models_dir']}/{EMBEDDED_NAME}"),
    params:
        settings=settings("prepare-model"),
    log:
        f"{LLM['models_dir']}/{EMBEDDED_NAME}.log",
    threads: 2
    resources:
        mem_mb=4096,
        runtime=20,
    conda:
        ENV
    shell:
        "python -m r3lm step prepare-model --config {params.settings:q} --out {output} > {log} 2>&1"


if TEACHER != "released":

    rule family_evidence:
        input:
            cards=f"{RCC_DIR}/train.parquet",
        output:
            f"{REASONING_DIR}/evidence.parquet",
        params:
            settings=settings("evidence"),
        log:
            f"{LOG_DIR}/reasoning/{Path(REASONING_DIR).name}/family_evidence.log",
        threads: 1
        resources:
            mem_mb=4096,
            runtime=20,
        conda:
            ENV
        shell:
            "python -m r3lm step evidence --config {params.settings:q} --cards {input.cards}"
            " --out {output} > {log} 2>&1"


    rule evidence_tags:
        input:
            motifs=f"{MOTIF_DIR}/motifs.parquet",
            evidence=f"{REASONING_DIR}/evidence.parquet",
        output:
            EVIDENCE_TAG_FILE,
        params:
            settings=settings("evidence-tags"),
        log:
            f"{LOG_DIR}/reasoning/{Path(REASONING_DIR).name}/evidence_tags.log",
        threads: 1
        resources:
            mem_mb=4096,
            runtime=20,
        conda:
            ENV
        shell:
            "python -m r3lm step evidence-tags --config {params.settings:q} --motif-table {input.motifs}"
            " --evidence {input.evidence} --out {output} > {log} 2>&1"


    rule tag_cards:
        input:
            cards=f"{RCC_DIR}/{{table}}.parquet",
            tags=EVIDENCE_TAG_FILE,
        output:
            f"{REASONING_DIR}/cards/{{table}}.parquet",
        params:
            settings=settings("tag-cards"),
        log:
            f"{LOG_DIR}/reasoning/{Path(REASONING_DIR).name}/tag_cards_{{table}}.log",
        wildcard_constraints:
            table="|".join(TABLES),
        threads: 1
        resources:
            mem_mb=4096,
            runtime=20,
        conda:
            ENV
        shell:
            "python -m r3lm step tag-cards --config {params.settings:q} --cards {input.cards} --tags {input.tags}"
            " --out {output} > {log} 2>&1"


    rule teacher:
        input:
            unpack(hf_teacher_input),
            cards=lambda wildcards: f"{TEXT_CARD_DIR}/{SET_TABLES[wildcards.set]}.parquet",
            evidence=f"{REASONING_DIR}/evidence.parquet",
        output:
            table=f"{REASONING_DIR}/{{set}}.parquet",
            sharegpt=directory(f"{REASONING_DIR}/sharegpt/{{set}}"),
            summary=f"{REASONING_DIR}/{{set}}.summary.json",
        params:
            settings=settings("teacher"),
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
            "python -m r3lm step teacher --config {params.settings:q} --set {wildcards.set}"
            " --cards {input.cards} --evidence {input.evidence} --cache {params.cache}"
            " --out {output.table} --sharegpt {output.sharegpt} --summary {output.summary} > {log} 2>&1"

else:

    # The released CRE-ReasonBench stands in for the teacher: one job maps its records onto the five sets.
    rule released_sets:
        input:
            unpack(released_source_input),
            cards=[f"{RCC_DIR}/{split}.parquet" for split in ("train", "val", "test")],
        output:
            tables=[f"{REASONING_DIR}/{name}.parquet" for name in TEACHER_SETS],
            sharegpt=[directory(f"{REASONING_DIR}/sharegpt/{name}") for name in TEACHER_SETS],
            summaries=[f"{REASONING_DIR}/{name}.summary.json" for name in TEACHER_SETS],
            summary=f"{REASONING_DIR}/released.summary.json",
        params:
            settings=settings("released"),
            out_dir=lambda wildcards, output: Path(output.summary).parent,
        log:
            f"{LOG_DIR}/reasoning/{Path(REASONING_DIR).name}/released_sets.log",
        threads: 1
        resources:
            mem_mb=16384,
            runtime=240,
        conda:
            ENV
        shell:
            "python -m r3lm step released --config {params.settings:q} --train-cards {input.cards[0]}"
            " --val-cards {input.cards[1]} --test-cards {input.cards[2]}"
            " --out-dir {params.out_dir} --no-progress > {log} 2>&1"


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
        "python -m r3lm step dataset-info --sets {input} --out {output} > {log} 2>&1"
