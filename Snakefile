# r3lm: reasoning-informed regression for regulatory DNA activity (R3LM, Duan et al., KDD 2026).
# Stages, one rule file each: data -> motifs -> rcc -> reasoning -> stage1 -> stage2 -> design -> evaluate.
# Run: snakemake --cores 2   (config/config.yaml, the simulated demo)
#      snakemake --cores 8 --configfile config/gosai2024.yaml   (the paper's data)

from snakemake.utils import min_version

min_version("8.0")


# The demo's settings only when no --configfile is given: snakemake would otherwise merge a --configfile
# over them, and the paper's run would inherit the demo's scale (p-value, rationale style, sizes).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/motifs.smk"
include: "workflow/rules/rcc.smk"
include: "workflow/rules/reasoning.smk"
include: "workflow/rules/stage1.smk"
include: "workflow/rules/stage2.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/design.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    default_target: True
    input:
        dataset_tables(),
        card_tables(),
        teacher_outputs(),
        stage1_outputs(),
        f"{REPORT_DIR}/summary.md",
        model_bundles(),
        design_summary(),
