"""CRE-ReasonBench as its authors released it (hub dataset DuanYi/Cre-ReasonBench): read, not written.

The layout (the official hf_assets.py and dataset_info.json): one folder per cell type, each with three
ShareGPT JSONL files whose records hold `messages` (system; user = the card; assistant = the rationale):

    <cell>/1000-reason-sharegpt-short-conclu.jsonl   Stage-I supervision, human-reviewed
    <cell>/82k+1k-with-reason-sharegpt.jsonl         Stage-II training; train_stage2.py shuffles it (seed 42)
                                                     and keeps 90% for training, 10% for validation
                                                     (stage2.validation.rows: random does the same)
    <cell>/100-as-test-sharegpt-with+reason.jsonl    the test sequences: the paper protocol's test set here

Every record is matched to this dataset by (cell type, sequence), so activities, levels and splits stay
r3lm's, and its card is compared with the one r3lm builds for that sequence. The rationales then pass the
teacher's format filter like any teacher's. The test file's records, wherever they fall in r3lm's test split,
are the test set (r3lm's own seeded test subset, drawn independently, would barely overlap them). Nothing goes
silently: records not in the dataset, training records in r3lm's test split, test records outside it and cards
that differ are counted in `released.summary.json` (a differing card is kept, with r3lm's card downstream, and
flagged).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from r3lm.errors import InputError
from r3lm.hub import local_copy
from r3lm.io import write_json
from r3lm.reasoning.backend import Checker, TeacherAnswer, TeacherJob
from r3lm.reasoning.teacher import (
    SET_NAMES,
    TEACHER_COLUMNS,
    run_teacher,
    save_teacher_set,
    select_set,
    teacher_summary,
)

log = logging.getLogger(__name__)

KINDS = ("stage1", "stage2", "test")
_SEQUENCE_LINE = re.compile(r"^([ACGTNacgtn]+) \(Total Length: \d+\)$", re.MULTILINE)
RECORD_COLUMNS = ["cell_type", "kind", "path", "line", "card", "rationale"]


def read_released(folder: str | Path, files: Mapping[str, str], cell_types: Sequence[str]) -> pd.DataFrame:
    """Every record of the cell types' folders (RECORD_COLUMNS plus sequence); a missing file or a record
    without a card or rationale is an error naming the file and line."""
    root = Path(folder)
    frames = []
    for cell in cell_types:
        for kind in KINDS:
            path = root / cell / files[kind]
            if not path.is_file():
                raise InputError(f"no {kind} file for {cell} in the released layout", path=path)
            frames.append(pd.DataFrame(_records(path), columns=RECORD_COLUMNS[2:]).assign(cell_type=cell, kind=kind))
    records = pd.concat(frames, ignore_index=True)[RECORD_COLUMNS]
    records["sequence"] = [_sequence(card, path, line) for card, path, line in
                           zip(records["card"], records["path"], records["line"])]
    return records


def _records(path: Path) -> list[tuple[str, int, str, str]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"not JSON: {error.msg}", path=path, row=number) from None
            turns = {turn.get("role"): turn.get("content") for turn in record.get("messages") or []
                     if isinstance(turn, dict)}
            for role in ("user", "assistant"):
                if not isinstance(turns.get(role), str) or not turns[role].strip():
                    raise InputError(f"no {role} message", path=path, row=number, column="messages")
            rows.append((str(path), number, turns["user"], turns["assistant"]))
    return rows


def _sequence(card: str, path: str, line: int) -> str:
    found = _SEQUENCE_LINE.findall(card)
    if not found:
        raise InputError("the user message has no 'SEQUENCE (Total Length: N)' line: not a card",
                         path=path, row=line, column="messages")
    return found[-1].upper()


def match_records(records: pd.DataFrame, cards: pd.DataFrame) -> pd.DataFrame:
    """Each record with its dataset row (id, split, level, card), or `status` saying why it has none."""
    sequences = [json.loads(card)["sequence"].upper() for card in cards["card_json"]]
    known = cards.assign(sequence=sequences)
    repeated = known.duplicated(["cell_type", "sequence"])
    if repeated.any():  # the same sequence under two ids: its records go to the first
        log.warning("%d dataset rows repeat a sequence of their cell type; released records match the first",
                    int(repeated.sum()))
    known = known[~repeated]
    matched = records.merge(known, on=["cell_type", "sequence"], how="left", suffixes=("", "_r3lm"))
    matched["card_matches"] = matched["card"] == matched["card_text"]
    in_test = matched["split"] == "test"
    status = np.select(
        [matched["id"].isna(), (matched["kind"] != "test") & in_test, (matched["kind"] == "test") & ~in_test],
        ["not_in_dataset", "training_record_in_test_split", "test_record_outside_test_split"], default="used")
    return matched.assign(status=status)


def assign_sets(matched: pd.DataFrame, settings: Mapping[str, Any], seed: int) -> pd.Series:
    """The teacher set of each used record (None otherwise).

    Stage I: r3lm's val split is the held-out set; a cell type without one holds out `sets.stage1_val` of its
    training records (seeded). Stage II: by r3lm's split too, as any teacher's Stage-II sets; Stage II itself
    validates on them or, as train_stage2.py, on a seeded share of both (stage2.validation). Test: the test file.
    """
    sets = settings["sets"]
    assigned = pd.Series(None, index=matched.index, dtype=object)
    used = matched["status"] == "used"
    for cell, group in matched.groupby("cell_type", sort=True):
        stage2 = group[group["kind"] == "stage2"]
        assigned[stage2.index] = np.where(stage2["split"] == "val", "stage2_val", "stage2_train")
        assigned[group.index[group["kind"] == "test"]] = "test"
        stage1 = group[(group["kind"] == "stage1") & used[group.index]]
        assigned[stage1.index] = np.where(stage1["split"] == "val", "stage1_val", "stage1_train")
        if len(stage1) > 1 and not (stage1["split"] == "val").any():
            held = select_set(stage1, min(sets["stage1_val"] or max(1, len(stage1) // 10), len(stage1) - 1), seed)
            assigned[held.index] = "stage1_val"
            log.info("%s: no released Stage-I record is in the val split; %d held out for validation", cell, len(held))
    return assigned.where(used, None)


class ReleasedAnswers:
    """A teacher backend that answers the cards, in order, with their released rationales (one attempt each,
    validated as any teacher's)."""

    name = "released"

    def __init__(self, rationales: Sequence[str]) -> None:
        self.rationales = list(rationales)

    def explain(self, jobs: Sequence[TeacherJob], check: Checker, *, progress: bool) -> list[TeacherAnswer]:
        return [TeacherAnswer(text, check(job, text), 1) for job, text in zip(jobs, self.rationales, strict=True)]

    def stats(self) -> dict[str, Any]:
        return {"rationales": len(self.rationales)}


def write_released_sets(config: Mapping[str, Any], card_paths: Mapping[str, str | Path], out_dir: str | Path, *,
                        progress: bool = True) -> dict[str, Any]:
    """The workflow step: the five teacher sets from the released files, in the teacher's outputs
    (`<set>.parquet`, `sharegpt/<set>/`, `<set>.summary.json`), and `released.summary.json`."""
    started = time.perf_counter()
    settings = config["reasoning"]
    cards = _dataset_cards(card_paths)
    folder = local_copy(settings["released"]["source"], what="CRE-ReasonBench", repo_type="dataset")
    files = {kind: settings["released"][f"{kind}_file"] for kind in KINDS}
    records = read_released(folder, files, sorted(cards["cell_type"].unique()))
    matched = match_records(records, cards)
    matched["set"] = assign_sets(matched, settings, settings["seed"])
    out = Path(out_dir)
    for set_name in SET_NAMES:
        chosen = select_set(matched[matched["set"] == set_name], settings["sets"][set_name], settings["seed"])
        _write_set(config, chosen, set_name, out, progress)
    summary = released_summary(matched, source=str(settings["released"]["source"]), folder=folder,
                               seconds=time.perf_counter() - started)
    write_json(summary, out / "released.summary.json")
    log.info("released CRE-ReasonBench: %d records, %s", len(matched), summary["status"])
    return summary


def _dataset_cards(card_paths: Mapping[str, str | Path]) -> pd.DataFrame:
    """The dataset's cards of every split."""
    return pd.concat([pd.read_parquet(card_paths[name]) for name in ("train", "val", "test")], ignore_index=True)


def _write_set(config: Mapping[str, Any], chosen: pd.DataFrame, set_name: str, out: Path, progress: bool) -> None:
    started = time.perf_counter()
    backend = ReleasedAnswers(chosen["rationale"].tolist())
    table = run_teacher(config, chosen.reset_index(drop=True), None, backend=backend, progress=progress)
    table = table.assign(card_matches=chosen["card_matches"].to_numpy(), source=[
        f"{path}:{line}" for path, line in zip(chosen["path"], chosen["line"])])[[*TEACHER_COLUMNS, "card_matches",
                                                                                 "source"]]
    summary = teacher_summary(table, seconds=time.perf_counter() - started, backend_stats=backend.stats(),
                              set_name=set_name) | {"card_mismatches": int((~table["card_matches"]).sum())}
    save_teacher_set(config, table, summary, out / f"{set_name}.parquet", out / "sharegpt" / set_name,
                     out / f"{set_name}.summary.json")


def released_summary(matched: pd.DataFrame, *, source: str, folder: str, seconds: float) -> dict[str, Any]:
    """Counts per cell type and file of every record's fate, card mismatches with examples, and set sizes."""
    def per_cell_kind(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
        return {str(cell): {str(kind): int(count) for kind, count in group["kind"].value_counts().sort_index().items()}
                for cell, group in frame.groupby("cell_type", sort=True)}

    found = matched[matched["status"] != "not_in_dataset"]
    differing = found[~found["card_matches"].astype(bool)]
    return {"source": source, "folder": folder, "records": per_cell_kind(matched),
            "status": {str(status): int(count) for status, count in matched["status"].value_counts().sort_index().items()},
            "by_status": {str(status): per_cell_kind(group) for status, group in matched.groupby("status", sort=True)},
            "card_mismatches": per_cell_kind(differing),
            "card_mismatch_examples": [f"{path}:{line}" for path, line in zip(differing["path"].head(5),
                                                                               differing["line"].head(5))],
            "sets": {str(name): int(count) for name, count in matched["set"].value_counts().sort_index().items()},
            "seconds": round(seconds, 3)}
