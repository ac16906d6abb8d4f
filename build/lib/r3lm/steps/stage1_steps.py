"""Stage stage1 (workflow/rules/stage1.smk): fine-tune the LLM on the teacher's rationales, then let it write its
own rationale for every card of the Stage-II sets."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from r3lm.commands import arg, step
from r3lm.errors import InputError
from r3lm.io import OutputFile, OutputFolder
from r3lm.steps.common import NO_PROGRESS


@step("stage1-train", "Stage I: fine-tune the base LLM on the teacher's rationales",
      arg("--base", required=True, help="base model: a folder or hub id"),
      arg("--train", nargs="+", required=True, help="ShareGPT JSONL files or folders"),
      arg("--val", nargs="+", required=True, help="held-out ShareGPT JSONL files or folders"),
      arg("--out-dir", type=OutputFolder, required=True, help="model/, loss.csv, loss.png, summary.json, checkpoints/"),
      arg("--max-steps", type=int, default=None, help="cap on optimizer steps (default: epochs decide)"),
      arg("--cell-type", default=None, help="train on this cell type's records only (default: all)"),
      sections=("stage1", "llm"))
def stage1_train(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.stage1.sft import train_stage1

    train_stage1(config, args.base, args.train, args.val, args.out_dir, max_steps=args.max_steps,
                 cell_type=args.cell_type)


@step("self-rationales", "the Stage-I model's own rationale for each card of one or more sets (one model load)",
      arg("--model", nargs="+", required=True, help="the Stage-I model (folder or hub id), or CELL=MODEL per cell type"),
      arg("--teacher-set", nargs="+", required=True, help="per set, its teacher table (which cards)"),
      arg("--cards", nargs="+", required=True, help="per set, the cards of its split"),
      arg("--out", type=OutputFile, nargs="+", required=True, help="per set, the rationales parquet"),
      arg("--summary", type=OutputFile, nargs="+", required=True,
          help="per set, the summary JSON (format validation, level agreement)"),
      NO_PROGRESS, sections=("reasoning", "levels", "llm", "generation", "motifs"))
def self_rationales(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.stage1.models import Stage1Models
    from r3lm.stage1.rationales import RationaleSet, write_self_rationales

    columns = (args.teacher_set, args.cards, args.out, args.summary)
    if len({len(column) for column in columns}) != 1:
        raise InputError("--teacher-set, --cards, --out and --summary need one entry per set "
                         f"(got {', '.join(str(len(column)) for column in columns)})")
    sets = [RationaleSet(*map(Path, paths)) for paths in zip(*columns)]
    write_self_rationales(config, Stage1Models.parse(args.model), sets, progress=not args.no_progress)


@step("merge-rationales", "one set's self-generated rationales from the jobs of its Stage-I models, summarised",
      arg("--tables", nargs="+", required=True, help="the set's rationale table from each job"),
      arg("--summaries", nargs="+", required=True, help="each job's summary JSON (same order)"),
      arg("--teacher-set", required=True, help="the set's teacher table (which rows, in which order)"),
      arg("--out", type=OutputFile, required=True, help="the merged rationales parquet"),
      arg("--summary", type=OutputFile, required=True, help="the merged summary JSON"),
      sections=("reasoning", "levels", "generation", "motifs"))
def merge_rationales(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.stage1.rationales import merge_rationales

    if len(args.tables) != len(args.summaries):
        raise InputError(f"--tables and --summaries need one entry per job (got {len(args.tables)} and "
                         f"{len(args.summaries)})")
    merge_rationales(config, args.tables, args.summaries, args.teacher_set, args.out, args.summary)
