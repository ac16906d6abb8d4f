"""The workflow's steps, one module per stage as workflow/rules/<stage>.smk: each step is declared once, its
inputs and outputs as its arguments and the config sections it reads (`commands.step`), beside the file
plumbing that reads its inputs, calls the stage's modules on tables and objects, and writes its outputs.
`r3lm step <name>` runs one (a rule's shell command, or a user redoing one step for an ablation), and
common.smk passes a rule exactly the sections its step declares (`step_sections`).
"""

from __future__ import annotations

from r3lm.commands import COMMANDS
from r3lm.steps import (  # noqa: F401 (they register their steps)
    baselines_steps,
    data_steps,
    design_steps,
    evaluate_steps,
    motifs_steps,
    rcc_steps,
    reasoning_steps,
    stage1_steps,
    stage2_steps,
)

# the order of `r3lm step --help`, the order the workflow runs them (a step missing here fails every call)
STEP_ORDER = ("download", "simulate", "prepare-data", "scan-shard", "gather-hits", "motif-table", "motif-file",
              "build-cards", "prepare-model", "evidence", "evidence-tags", "tag-cards", "teacher", "released",
              "dataset-info", "stage1-train", "self-rationales", "merge-rationales", "stage2", "baseline-ridge",
              "baseline-cnn", "package-baseline", "heldout-oracle", "designs", "explain-designs", "metrics", "citation-faithfulness", "disruption", "package-model",
              "transfer", "report")


def step_sections(name: str) -> tuple[str, ...]:
    """The config sections workflow step `name` reads, as its declaration says (common.smk passes them)."""
    return COMMANDS[name].sections
