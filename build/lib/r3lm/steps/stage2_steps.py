"""Stage stage2 (workflow/rules/stage2.smk): the reasoning-conditioned regressor per input mode, and the bundle
that serves a mode to `r3lm predict` and `r3lm explain`."""

from __future__ import annotations

import argparse
from typing import Any

from r3lm.commands import arg, step
from r3lm.io import OutputFolder
from r3lm.steps.common import EVIDENCE_TAGS, NO_PROGRESS, evidence_tags_of

THREE_SETS = ("TRAIN", "VAL", "TEST")


@step("stage2", "Stage II: train the regressor for one input mode and predict the test set",
      arg("--mode", required=True, help="generated_cot, oracle_cot, rcc_only or sequence_only"),
      arg("--backbone", required=True, help="the Stage-I model folder, or the base model"),
      arg("--teacher-sets", nargs=3, required=True, metavar=THREE_SETS,
          help="teacher tables of the Stage II train, val and test sets (they decide the rows)"),
      arg("--cards", nargs=3, required=True, metavar=THREE_SETS, help="card tables of the three sets' splits"),
      arg("--rationales", nargs=3, default=None, metavar=THREE_SETS,
          help="generated_cot: the Stage-I model's rationales of the three sets"),
      arg("--data-summary", required=True, help="the dataset's summary.json (level edges)"),
      arg("--work-dir", type=OutputFolder, required=True,
          help="model/, curve.csv, embeddings/, checkpoints, summary.json"),
      arg("--predictions", type=OutputFolder, required=True, help="folder for <cell_type>.parquet and summary.json"),
      NO_PROGRESS, sections=("stage2", "llm", "levels", "motifs"))
def stage2(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.stage2.run import SetFiles, run_stage2

    rationales = dict(zip(("train", "val", "test"), args.rationales or (None, None, None), strict=True))
    sets = {name: SetFiles(teacher_set, cards, rationales[name])
            for name, teacher_set, cards in zip(("train", "val", "test"), args.teacher_sets, args.cards, strict=True)}
    run_stage2(config, args.mode, args.backbone, sets, args.data_summary, args.work_dir, args.predictions,
               progress=not args.no_progress)


@step("package-model", "a self-contained model folder for predict and explain",
      arg("--mode", required=True, help="the Stage II input mode (generated_cot, rcc_only, ...)"),
      arg("--stage2-models", required=True, help="the mode's model/ folder (one folder per group)"),
      arg("--stage1-model", nargs="+", required=True, help="the Stage-I model, or CELL=MODEL per cell type"),
      arg("--data-dir", required=True, help="the prepared dataset (level edges, training lengths)"),
      EVIDENCE_TAGS,
      arg("--out", type=OutputFolder, required=True, help="the model folder to write"),
      sections=("stage2", "llm", "levels", "motifs", "rcc", "reasoning", "generation", "dataset"))
def package_model(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.deploy.bundle import write_bundle
    from r3lm.stage1.models import Stage1Models

    write_bundle(config, args.mode, args.stage2_models, Stage1Models.parse(args.stage1_model, option="--stage1-model"),
                 args.data_dir, args.out, evidence_tags=evidence_tags_of(args))
