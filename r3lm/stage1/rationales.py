"""The Stage-I model's own rationales: one per Stage-II sequence, written from the card alone.

The model never sees the label. Each rationale is checked with the teacher's format filter (without
the label), and how often its concluding level agrees with the measured level is counted separately:
Stage II uses every rationale, valid or not, because at prediction time there is no teacher to fall back on.
"""

from __future__ import annotations

import json
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
from r3lm.rationale.validate import (
    motif_vocabulary,
    rejection_counts,
    validate_rationale,
)
from r3lm.rcc.card import parse_card
from r3lm.stage1.models import Stage1Models
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


def write_self_rationales(config: Mapping[str, Any], models: Stage1Models, sets: Sequence[RationaleSet], *,
                          progress: bool = True) -> list[dict[str, Any]]:
    """The workflow step for the Stage-II sets: per Stage-I model, one load and one generation pass over the
    cards of its cell types in every set (resumable; a small set alone would decode at a fraction of the batch),
    then per set a validated table and a summary. Rows of cell types no model covers are left to another job
    (per-cell-type models run as one job each) and counted in the log. Returns the summaries in `sets` order."""
    started = time.perf_counter()
    items = pd.concat([_set_items(item).assign(set=position) for position, item in enumerate(sets)],
                      ignore_index=True)
    covered = items["cell_type"].map(models.covers).to_numpy(dtype=bool)
    if not covered.any():
        raise InputError(f"no row of these sets is in a cell type of the given models ({', '.join(models.arguments())})",
                         path=sets[0].teacher_set, column="cell_type")
    if not covered.all():
        log.info("%d of %d rows are in other cell types: their models write them in another job",
                 int((~covered).sum()), len(items))
    items = items[covered].reset_index(drop=True)
    generated, backend = _generate(config, models, items, sets[0], progress)
    seconds = time.perf_counter() - started
    summaries = []
    for position, item in enumerate(sets):
        chosen = (items["set"] == position).to_numpy()
        table = _validated_table(config, item, items[chosen].reset_index(drop=True),
                                 generated[chosen].reset_index(drop=True))
        summary = rationale_summary(table, config, backend=backend, models=models.arguments(),
                                    seconds=seconds * chosen.sum() / len(items))
        _write_set(table, summary, item.out, item.summary)
    for partial in sets[0].out.parent.glob("rationales.*partial.jsonl"):
        partial.unlink()  # only now: a kill before this point resumes from the generated rows
    return summaries


def _generate(config: Mapping[str, Any], models: Stage1Models, items: pd.DataFrame, first: RationaleSet,
              progress: bool) -> tuple[pd.DataFrame, str]:
    """Each model writes the rows of its cell types (one load each, its partial file beside the first set's
    output); the rows come back in `items` order."""
    parts, backend = [], ""
    for number, (model, cells) in enumerate(models.cells_by_model(items["cell_type"]).items()):
        chosen = items[items["cell_type"].isin(cells)]
        log.info("model %s writes %d rationales for %s", model, len(chosen), ", ".join(cells))
        writer = RationaleWriter.from_config(config, model, prompts=len(chosen))
        partial = first.out.parent / f"rationales.{number}.partial.jsonl"
        written = writer.write_table(chosen, partial.with_suffix(".parquet"), keys=("set", *KEYS),
                                     source=first.teacher_set, progress=progress, write=False, partial_path=partial)
        parts.append(written.set_axis(chosen.index))
        backend = writer.backend
        writer.close()
    return pd.concat(parts).loc[items.index].reset_index(drop=True), backend


def _set_items(item: RationaleSet) -> pd.DataFrame:
    teacher_set = pd.read_parquet(item.teacher_set, columns=[*KEYS, "split", "activity", "level", "card_text"])
    return _with_cards(teacher_set, pd.read_parquet(item.cards, columns=[*KEYS, "card_json"]), item.cards)


def _validated_table(config: Mapping[str, Any], item: RationaleSet, items: pd.DataFrame,
                     generated: pd.DataFrame) -> pd.DataFrame:
    """One set's rationales, validated as written and as the free attempt before guidance (TABLE_COLUMNS)."""
    cards = [parse_card(card_json, item.cards, row) for row, card_json in enumerate(items["card_json"], start=1)]
    validate = rationale_validator(config)
    texts = items["card_text"].tolist()
    final = [validate(text, card, card_text) for text, card, card_text in zip(generated["rationale"], cards, texts)]
    unguided = [validate(free if isinstance(free, str) else text, card, card_text)
                for text, free, card, card_text in zip(generated["rationale"], generated["unguided_text"], cards, texts)]
    return items[[*KEYS, "split", "activity", "level", "card_text"]].assign(
        rationale=generated["rationale"].to_numpy(), n_new_tokens=generated["n_new_tokens"].to_numpy(),
        truncated=generated["truncated"].to_numpy(), guided=generated["guided"].to_numpy(),
        valid=[check.valid for check in final], reject_reason=[check.reason for check in final],
        stated_level=pd.array([check.level for check in final], dtype="Int64"),
        valid_unguided=[check.valid for check in unguided], unguided_reject_reason=[check.reason for check in unguided],
        unguided_stated_level=pd.array([check.level for check in unguided], dtype="Int64"))


def rationale_summary(table: pd.DataFrame, config: Mapping[str, Any], *, backend: str, models: list[str],
                      seconds: float) -> dict[str, Any]:
    """Validity, rejections, level agreement (as written and before guidance) and cost, from the table alone,
    so per-cell-type jobs' tables summarise the same way once merged."""
    guidance = config["generation"]["guidance"]
    return {**_counts(table, "valid", "reject_reason", "stated_level"),
            "guidance": guidance, "guided": int(table["guided"].sum()),
            "unguided": (_counts(table, "valid_unguided", "unguided_reject_reason", "unguided_stated_level")
                         if guidance != "always" else None),
            "backend": backend, "models": models,
            "new_tokens": int(table["n_new_tokens"].sum()), "truncated": int(table["truncated"].sum()),
            "seconds": round(seconds, 3),
            "per_cell_type": {str(cell): _cell_summary(group) for cell, group in table.groupby("cell_type", sort=True)}}


def _counts(table: pd.DataFrame, valid: str, reason: str, stated: str) -> dict[str, Any]:
    """Rows, valid rows, rejections by reason (every reason listed) and how often a stated level agrees with
    the measured one, read from the table's columns."""
    with_level = table.dropna(subset=[stated])
    agree = int((with_level[stated].astype(int) == with_level["level"].astype(int)).sum())
    return {"rows": len(table), "valid": int(table[valid].sum()),
            "rejections": rejection_counts(table[reason]),
            "level_agreement": {"with_level": len(with_level), "agree": agree,
                                "fraction": agree / len(with_level) if len(with_level) else None}}


def _write_set(table: pd.DataFrame, summary: dict[str, Any], out: Path, summary_path: Path) -> None:
    write_parquet(table, out)
    write_json(summary, summary_path)
    log.info("%s: %d of %d self-generated rationales are valid (%s without guidance, %d written again under the "
             "grammar); stated level agrees with the measurement for %s", out.name, summary["valid"],
             summary["rows"], summary["unguided"]["valid"] if summary["unguided"] else "not measured",
             summary["guided"], summary["level_agreement"])


def merge_rationales(config: Mapping[str, Any], tables: Sequence[str | Path], summaries: Sequence[str | Path],
                     teacher_set: str | Path, out: str | Path, summary_path: str | Path) -> dict[str, Any]:
    """One set's rationales from the jobs of its Stage-I models, in the teacher set's row order: every teacher
    row must come from exactly one job, so a missing or doubled cell type is an error, not a gap."""
    parts = [pd.read_parquet(path) for path in tables]
    merged = pd.concat(parts, ignore_index=True)
    order = pd.read_parquet(teacher_set, columns=KEYS)
    doubled = merged.duplicated(KEYS)
    if doubled.any():
        row = merged[doubled].iloc[0]
        raise InputError(f"id {row['id']!r} in {row['cell_type']} comes from two jobs", path=tables[0], column="id")
    joined = order.merge(merged, on=KEYS, how="left", validate="one_to_one", indicator=True)
    missing = joined["_merge"] != "both"
    if missing.any() or len(merged) != len(order):
        cells = sorted(set(order.loc[missing.to_numpy(), "cell_type"]) | set(merged["cell_type"]) - set(order["cell_type"]))
        raise InputError(f"the rationale tables do not cover this set's rows (cell types {', '.join(cells)})",
                         path=teacher_set, column="cell_type")
    table = joined.drop(columns="_merge")
    parts_summaries = [json.loads(Path(path).read_text()) for path in summaries]
    summary = rationale_summary(table, config, backend=parts_summaries[0]["backend"],
                                models=[model for part in parts_summaries for model in part["models"]],
                                seconds=sum(part["seconds"] for part in parts_summaries))
    _write_set(table, summary, Path(out), Path(summary_path))
    return summary


def rationale_validator(config: Mapping[str, Any]) -> Any:
    """`validate_rationale` with the config's format and motif vocabulary, no label (the model never sees one)."""
    reasoning, vocabulary = config["reasoning"], motif_vocabulary(config["motifs"])
    return lambda text, card, card_text=None: validate_rationale(
        text, card, label=None, min_steps=reasoning["min_steps"], max_steps=reasoning["max_steps"],
        n_levels=config["levels"]["n_levels"], motif_vocabulary=vocabulary, card_text=card_text)


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
