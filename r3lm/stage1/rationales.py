"""The Stage-I model's own rationales: one per Stage-II sequence, written from the card alone.

The model never sees the label. Each rationale is checked with the teacher's format filter (without
the label), and how often its concluding level agrees with the measured level is counted separately:
Stage II uses every rationale, valid or not, because at prediction time there is no teacher to fall back on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from r3lm.errors import InputError
from r3lm.io import write_json, write_parquet
from r3lm.llm.generate import generate_to_table, open_generator
from r3lm.reasoning.evidence import parse_card
from r3lm.reasoning.format import student_messages
from r3lm.reasoning.validate import (
    motif_vocabulary,
    validate_rationale,
    validation_counts,
)

log = logging.getLogger(__name__)

KEYS = ["id", "cell_type"]


def _with_cards(teacher_set: pd.DataFrame, cards: pd.DataFrame, cards_path: str | Path) -> pd.DataFrame:
    """The teacher set's rows with their card JSON (every row must have its card)."""
    joined = teacher_set.merge(cards[KEYS + ["card_json"]], on=KEYS, how="left", validate="one_to_one")
    missing = joined["card_json"].isna()
    if missing.any():
        row = joined[missing].iloc[0]
        raise InputError(f"no card for id {row['id']!r} in cell type {row['cell_type']!r} "
                         f"({int(missing.sum())} rows lack one)", path=cards_path, column="id")
    return joined


def write_self_rationales(config: Mapping[str, Any], model_dir: str | Path, teacher_set_path: str | Path,
                          cards_path: str | Path, out_path: str | Path, summary_path: str | Path, *,
                          progress: bool = True) -> dict[str, Any]:
    """The workflow step for one Stage-II set: generate (resumably), validate, write the table and a summary."""
    started = time.perf_counter()
    reasoning, n_levels = config["reasoning"], config["levels"]["n_levels"]
    teacher_set = pd.read_parquet(teacher_set_path, columns=[*KEYS, "split", "activity", "level", "card_text",
                                                             "system"])
    items = _with_cards(teacher_set, pd.read_parquet(cards_path, columns=[*KEYS, "card_json"]), cards_path)
    items["messages"] = [student_messages(card_text, system)
                         for card_text, system in zip(items["card_text"], items["system"])]
    generator = open_generator(model_dir, config["generation"],
                               dtype=config["generation"]["dtype"] or config["llm"]["dtype"])
    out = Path(out_path)
    partial = out.with_name(f"{out.name}.partial.jsonl")
    generated = generate_to_table(items[[*KEYS, "messages"]], generator, out, partial_path=partial,
                                  text_column="rationale", source=teacher_set_path, progress=progress, write=False)
    vocabulary = motif_vocabulary(config["motifs"])
    validations = [validate_rationale(text, parse_card(card_json, cards_path, row), label=None,
                                      min_steps=reasoning["min_steps"], max_steps=reasoning["max_steps"],
                                      n_levels=n_levels, motif_vocabulary=vocabulary)
                   for row, (text, card_json) in enumerate(zip(generated["rationale"], items["card_json"]), start=1)]
    table = items[[*KEYS, "split", "activity", "level", "card_text"]].assign(
        rationale=generated["rationale"].to_numpy(), n_new_tokens=generated["n_new_tokens"].to_numpy(),
        truncated=generated["truncated"].to_numpy(), valid=[item.valid for item in validations],
        reject_reason=[item.reason for item in validations], stated_level=[item.level for item in validations])
    summary = {**validation_counts(validations, labels=table["level"].astype(int).tolist()),
               "backend": generator.backend, "model": str(model_dir),
               "new_tokens": int(table["n_new_tokens"].sum()), "truncated": int(table["truncated"].sum()),
               "seconds": round(time.perf_counter() - started, 3),
               "per_cell_type": {str(cell): {"rows": len(group), "valid": int(group["valid"].sum())}
                                 for cell, group in table.groupby("cell_type", sort=True)}}
    write_parquet(table, out)
    write_json(summary, summary_path)
    partial.unlink()  # only now: a kill before this point resumes from the generated rows
    log.info("%d of %d self-generated rationales pass the format filter; stated level agrees with the "
             "measurement for %s", summary["valid"], summary["rows"], summary["level_agreement"])
    return summary
