"""The Stage-I model's own rationales: one per Stage-II sequence, written from the card alone.

The model never sees the label. Each rationale is checked with the teacher's format filter (without
the label), and how often its concluding level agrees with the measured level is counted separately:
Stage II uses every rationale, valid or not, because at prediction time there is no teacher to fall back on.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from r3lm.errors import InputError
from r3lm.io import write_json, write_parquet
from r3lm.reasoning.evidence import parse_card
from r3lm.reasoning.validate import (
    motif_vocabulary,
    validate_rationale,
    validation_counts,
)
from r3lm.stage1.writer import RationaleWriter

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


@dataclass(frozen=True)
class RationaleSet:
    """One Stage-II set: which cards (its teacher table and card table) and where its rationales go."""

    teacher_set: Path
    cards: Path
    out: Path
    summary: Path


def write_self_rationales(config: Mapping[str, Any], model_dir: str | Path, sets: Sequence[RationaleSet], *,
                          progress: bool = True) -> list[dict[str, Any]]:
    """The workflow step for the Stage-II sets: one model load and one generation pass over every card
    (resumable; a small set alone would decode at a fraction of the batch), then per set a validated table
    and a summary. Returns the summaries in `sets` order."""
    started = time.perf_counter()
    items = pd.concat([_set_items(item).assign(set=position) for position, item in enumerate(sets)],
                      ignore_index=True)
    writer = RationaleWriter.from_config(config, model_dir)
    partial = sets[0].out.with_name("rationales.partial.jsonl")
    generated = writer.write_table(items, partial.with_suffix(".parquet"), keys=("set", *KEYS),
                                   source=sets[0].teacher_set, progress=progress, write=False, partial_path=partial)
    seconds = time.perf_counter() - started
    summaries = []
    for position, item in enumerate(sets):
        chosen = (items["set"] == position).to_numpy()
        summaries.append(_finish_set(config, writer, item, items[chosen].reset_index(drop=True),
                                     generated[chosen].reset_index(drop=True), model_dir,
                                     seconds * chosen.sum() / len(items)))
    partial.unlink()  # only now: a kill before this point resumes from the generated rows
    return summaries


def _set_items(item: RationaleSet) -> pd.DataFrame:
    teacher_set = pd.read_parquet(item.teacher_set, columns=[*KEYS, "split", "activity", "level", "card_text"])
    return _with_cards(teacher_set, pd.read_parquet(item.cards, columns=[*KEYS, "card_json"]), item.cards)


def _finish_set(config: Mapping[str, Any], writer: RationaleWriter, item: RationaleSet, items: pd.DataFrame,
                generated: pd.DataFrame, model_dir: str | Path, seconds: float) -> dict[str, Any]:
    """Validate one set's rationales (as written, and the free attempt before guidance) and write its table
    and summary; `seconds` is the set's share of the generation time."""
    cards = [parse_card(card_json, item.cards, row) for row, card_json in enumerate(items["card_json"], start=1)]
    validate = rationale_validator(config)
    final = [validate(text, card) for text, card in zip(generated["rationale"], cards)]
    unguided = [validate(free if isinstance(free, str) else text, card)
                for text, free, card in zip(generated["rationale"], generated["unguided_text"], cards)]
    table = items[[*KEYS, "split", "activity", "level", "card_text"]].assign(
        rationale=generated["rationale"].to_numpy(), n_new_tokens=generated["n_new_tokens"].to_numpy(),
        truncated=generated["truncated"].to_numpy(), guided=generated["guided"].to_numpy(),
        valid=[check.valid for check in final], reject_reason=[check.reason for check in final],
        stated_level=pd.array([check.level for check in final], dtype="Int64"),
        valid_unguided=[check.valid for check in unguided], unguided_reject_reason=[check.reason for check in unguided])
    labels = table["level"].astype(int).tolist()
    summary = {**validation_counts(final, labels=labels),
               "guidance": config["generation"]["guidance"], "guided": int(table["guided"].sum()),
               "unguided": validation_counts(unguided, labels=labels) if writer.guidance != "always" else None,
               "backend": writer.backend, "model": str(model_dir),
               "new_tokens": int(table["n_new_tokens"].sum()), "truncated": int(table["truncated"].sum()),
               "seconds": round(seconds, 3),
               "per_cell_type": {str(cell): _cell_summary(group) for cell, group in table.groupby("cell_type", sort=True)}}
    write_parquet(table, item.out)
    write_json(summary, item.summary)
    log.info("%s: %d of %d self-generated rationales are valid (%s without guidance, %d written again under the "
             "grammar); stated level agrees with the measurement for %s", item.out.name, summary["valid"],
             summary["rows"], summary["unguided"]["valid"] if summary["unguided"] else "not measured",
             summary["guided"], summary["level_agreement"])
    return summary


def rationale_validator(config: Mapping[str, Any]) -> Any:
    """`validate_rationale` with the config's format and motif vocabulary, no label (the model never sees one)."""
    reasoning, vocabulary = config["reasoning"], motif_vocabulary(config["motifs"])
    return lambda text, card: validate_rationale(text, card, label=None, min_steps=reasoning["min_steps"],
                                                 max_steps=reasoning["max_steps"],
                                                 n_levels=config["levels"]["n_levels"], motif_vocabulary=vocabulary)


def _cell_summary(group: pd.DataFrame) -> dict[str, Any]:
    """Rows, validity with and without guidance, and level agreement with its 95% Wilson interval."""
    stated = group.dropna(subset=["stated_level"])
    agree = int((stated["stated_level"].astype(int) == stated["level"].astype(int)).sum())
    return {"rows": len(group), "valid": int(group["valid"].sum()), "valid_unguided": int(group["valid_unguided"].sum()),
            "with_level": len(stated), "level_agreement": agree / len(stated) if len(stated) else None,
            "level_agreement_ci95": wilson_interval(agree, len(stated))}


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> list[float] | None:
    """The Wilson score interval of a proportion (sound near 0 and 1 and for small counts)."""
    if not trials:
        return None
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return [round(centre - half, 4), round(centre + half, 4)]
