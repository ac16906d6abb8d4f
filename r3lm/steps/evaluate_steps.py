"""Stage evaluate (workflow/rules/evaluate.smk): metrics with intervals, faithfulness of the rationales, transfer
to other tables, and the report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from r3lm.commands import arg, step
from r3lm.errors import InputError
from r3lm.io import OutputFile, OutputFolder, write_table
from r3lm.steps.common import (
    EVIDENCE_TAGS,
    NO_PROGRESS,
    PREDICTIONS,
    evidence_tags_of,
    named_paths,
    predictions_by_method,
)


@step("metrics", "per-cell-type metrics with bootstrap intervals, both protocols",
      PREDICTIONS,
      arg("--baselines", nargs="+", required=True, help="methods compared against (by folder name)"),
      arg("--test", required=True, help="the full test table"),
      arg("--test-subset", required=True,
          help="the paper protocol's test rows: test_subset.parquet, or the released test set"),
      arg("--out", type=OutputFile, required=True, help="metrics.tsv"),
      arg("--skipped", type=OutputFile, required=True, help="TSV of (method, protocol, cell type) not covered"),
      sections=("evaluation",))
def metrics(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.evaluate.metrics import evaluate, write_metrics

    scores = evaluate(predictions_by_method(args.predictions), args.baselines, args.test, args.test_subset,
                      config["evaluation"]["bootstrap"])
    write_metrics(scores, args.out, args.skipped)


@step("citation-faithfulness", "cited motifs against the simulator's planted causal sites (demo)",
      arg("--rationales", required=True, help="a table with id, cell_type, rationale"),
      arg("--cards", required=True, help="the cards of those rows"),
      arg("--ground-truth", required=True, help="the simulator's ground_truth.parquet"),
      arg("--out", type=OutputFile, required=True, help="faithfulness TSV"),
      sections=("evaluation",))
def citation_faithfulness(args: argparse.Namespace, config: dict[str, Any]) -> None:
    import pandas as pd

    from r3lm.evaluate.citations import citation_faithfulness
    from r3lm.rationale.claims import attach_cards

    rationales = pd.read_parquet(args.rationales, columns=["id", "cell_type", "rationale"])
    cards = pd.read_parquet(args.cards, columns=["id", "cell_type", "card_json"])
    table = citation_faithfulness(attach_cards(rationales, cards), pd.read_parquet(args.ground_truth),
                                  config["evaluation"]["bootstrap"])
    write_table(table, args.out)


@step("disruption", "faithfulness: disrupt each cited motif, rebuild the card, predict again",
      arg("--models", required=True, help="a Stage II mode's model/ folder (one folder per group)"),
      arg("--predictions", required=True, help="that mode's predictions folder"),
      arg("--cards", required=True, help="the cards of the predicted rows"),
      arg("--stage1-model", nargs="+", default=None,
          help="the Stage-I model, or CELL=MODEL per cell type (to regenerate rationales)"),
      arg("--data-dir", default=None, help="the prepared dataset (motifs.background: input)"),
      EVIDENCE_TAGS,
      arg("--out", type=OutputFile, required=True, help="pair table TSV (one row per disrupted motif)"),
      arg("--summary", type=OutputFile, required=True, help="agreement per cell type TSV"),
      NO_PROGRESS,
      sections=("evaluation", "rcc", "generation", "reasoning", "levels", "llm", "stage2", "motifs"))
def disruption(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.evaluate.disruption import run_disruption
    from r3lm.stage1.models import Stage1Models

    settings = config["evaluation"]["disruption"]
    model_dirs = {folder.name: folder for folder in sorted(Path(args.models).iterdir()) if folder.is_dir()}
    if not model_dirs:
        raise InputError("no Stage II model folders inside", path=args.models)
    run_disruption(config, model_dirs, args.predictions, args.cards, args.out, args.summary,
                   stage1_models=Stage1Models.parse(args.stage1_model, option="--stage1-model")
                   if args.stage1_model else None, regenerate=settings["regenerate"],
                   max_sequences=settings["max_sequences"], seed=settings["seed"], data_dir=args.data_dir,
                   settings=config["evaluation"]["bootstrap"], evidence_tags=evidence_tags_of(args),
                   progress=not args.no_progress)


@step("transfer", "score the run's models on another table's rows (an evaluation.transfer entry): Pearson and "
      "Spearman per method and cell type, beside each method's in-dataset Pearson",
      arg("--name", required=True, help="the evaluation.transfer entry to score"),
      arg("--models", nargs="+", required=True,
          help="METHOD=BUNDLE per method (an LLM bundle or a fast one; a bare folder is named by its last component)"),
      arg("--seen", nargs="+", required=True,
          help="the split tables the models trained or validated on: rows of the other table holding one of "
               "their sequences, or its reverse complement, are removed and counted"),
      arg("--in-dataset-metrics", default=None, help="the run's metrics.tsv: each method's Pearson on its own test"),
      arg("--predictions", type=OutputFile, required=True, help="predictions parquet (one row per method and row)"),
      arg("--metrics", type=OutputFile, required=True, help="metrics TSV (one row per method and cell type)"),
      arg("--summary", type=OutputFile, required=True, help="summary JSON: rows read, dropped, leaked, scored"),
      arg("--batch-size", type=int, default=None, help="default: sized to the device"),
      arg("--device", default="auto", help="auto (a CUDA GPU when present), cpu, cuda, ..."),
      NO_PROGRESS, sections=("evaluation", "sampling", "dataset"))
def transfer(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.evaluate.transfer import run_transfer

    run_transfer(config, args.name, predictions_by_method(args.models, "--models"), args.seen, args.predictions,
                 args.metrics, args.summary, in_dataset_metrics=args.in_dataset_metrics, device=args.device,
                 batch_size=args.batch_size, progress=not args.no_progress)


@step("report", "summary.md and figures from the evaluation",
      arg("--metrics", required=True),
      arg("--skipped", required=True),
      PREDICTIONS,
      arg("--test", required=True),
      arg("--test-subset", required=True),
      arg("--faithfulness", nargs="*", default=None, metavar="HEADING=TSV"),
      arg("--curves", nargs="*", default=None, metavar="HEADING=CSV"),
      arg("--transfer", nargs="*", default=None, metavar="TSV",
          help="transfer metrics (r3lm step transfer), one per evaluation.transfer entry"),
      arg("--design", default=None, help="the design step's folder (r3lm step design), for a design section"),
      arg("--out", type=OutputFile, required=True, help="summary.md"),
      arg("--figure-dir", type=OutputFolder, required=True, help="where the PNG figures go"),
      sections=("evaluation",))
def report(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.evaluate.report import write_report

    write_report(metrics_path=args.metrics, skipped_path=args.skipped,
                 prediction_dirs=predictions_by_method(args.predictions), test_path=args.test,
                 test_subset_path=args.test_subset, summary_path=args.out, figure_dir=args.figure_dir,
                 faithfulness=named_paths(args.faithfulness, "--faithfulness"),
                 curves=named_paths(args.curves, "--curves"), transfer=args.transfer or (), design=args.design,
                 settings=config["evaluation"]["bootstrap"])
