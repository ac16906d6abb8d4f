"""CRE-ReasonBench: the teacher's rationales for (card, observed level), validated, as tables and SFT data.

The teacher sees the card AND the measured level (format.teacher_messages) and must explain it; the
Stage-I training record pairs the rationale with the STUDENT prompt (the card alone), so the model
learns to reason from the card without the answer. Three teachers share one validation filter:

* grounded (default): offline and deterministic (grounded.py), from the training evidence and roles,
  in the `reasoning.detail` style (full: every statistic; brief: short steps for small models);
* openai: any OpenAI-compatible endpoint (openai_backend.py), cached on disk and resumable;
* hf: a local causal LM sampled with the `generation` settings, retried per card until valid.

A card is tried up to `attempts_per_card` times (grounded: once); the last answer is kept either
way, with its validation, so rejections can be counted and inspected.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from r3lm.errors import InputError, require_file
from r3lm.io import atomic_path, write_json, write_parquet
from r3lm.rationale.format import RationaleFormat, system_prompt, teacher_messages
from r3lm.rationale.validate import (
    Validation,
    motif_vocabulary,
    rejection_counts,
    validate_rationale,
)
from r3lm.rcc.card import parse_card
from r3lm.rcc.grammar import GrammarSettings
from r3lm.reasoning.backend import Checker, TeacherAnswer, TeacherBackend, TeacherJob
from r3lm.reasoning.crossfit import WHOLE_SPLIT, card_folds, cross_fit_folds, fold_of
from r3lm.reasoning.evidence import (
    Evidence,
    check_cards,
    compute_evidence,
    read_evidence_folds,
)
from r3lm.reasoning.grounded import GroundedTeacher
from r3lm.reasoning.roles import RoleTable, load_roles

log = logging.getLogger(__name__)

# Each teacher set and the card table it draws from: the LLM methods are scored on the seeded test subset.
TEACHER_SETS = {"stage1_train": "train", "stage1_val": "val", "stage2_train": "train", "stage2_val": "val",
                "test": "test_subset"}
SET_NAMES = tuple(TEACHER_SETS)
STAGE1_SETS = ("stage1_train", "stage1_val")  # what Stage I learns from
STAGE2_SETS = ("stage2_train", "stage2_val", "test")  # what Stage II trains, selects and is scored on
# The Stage-II set drawn from the same split as each Stage-I set: Stage I never learns from a Stage-II row
STAGE2_COUNTERPARTS = {"stage1_train": "stage2_train", "stage1_val": "stage2_val"}
TEACHER_COLUMNS = ["id", "cell_type", "split", "activity", "level", "card_text", "system", "prompt", "rationale",
                   "valid", "reject_reason", "n_steps", "attempts", "backend"]


def set_tables(teacher: str) -> dict[str, str]:
    """Each teacher set's card table under `reasoning.teacher`. The released test file names its own test sequences,
    drawn apart from r3lm's seeded test subset, so there the test set draws from the whole test split (its rows are
    then the paper protocol's)."""
    return {**TEACHER_SETS, "test": "test"} if teacher == "released" else dict(TEACHER_SETS)


class GroundedBackend:
    name = "grounded"

    def __init__(self, teacher: GroundedTeacher) -> None:
        self.teacher = teacher

    def explain(self, jobs: Sequence[TeacherJob], check: Checker, *, progress: bool) -> list[TeacherAnswer]:
        answers = []
        for job in tqdm(jobs, desc="teacher", unit="card", disable=not progress, mininterval=5):
            text = self.teacher.explain(job.card, job.level, job.card_id)
            answers.append(TeacherAnswer(text, check(job, text), 1))
        return answers

    def stats(self) -> dict[str, Any]:
        return {}


class HFBackend:
    """A local causal LM; each round re-samples only the cards still without a valid answer, with a new seed."""

    name = "hf"

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.attempts = config["reasoning"]["hf"]["attempts_per_card"]
        self.generated = 0

    def explain(self, jobs: Sequence[TeacherJob], check: Checker, *, progress: bool) -> list[TeacherAnswer]:
        from r3lm.llm.base import load_causal_lm, resolve_base
        from r3lm.llm.generate import generate_chats

        llm = self.config["llm"]
        model_path = self.config["reasoning"]["hf"]["model"] or resolve_base(llm)
        model, tokenizer = load_causal_lm(model_path, dtype=llm["dtype"])
        answers: list[TeacherAnswer | None] = [None] * len(jobs)
        pending = list(range(len(jobs)))
        for attempt in range(self.attempts):
            settings = {**self.config["generation"], "seed": self.config["generation"]["seed"] + attempt}
            replies = generate_chats(model, tokenizer, [jobs[index].messages for index in pending], settings,
                                     progress=progress)
            self.generated += len(pending)
            for index, reply in zip(pending, replies, strict=True):
                answers[index] = TeacherAnswer(reply.text, check(jobs[index], reply.text), attempt + 1)
            pending = [index for index in pending if not answers[index].validation.valid]
            log.info("hf teacher attempt %d: %d of %d cards still without a valid rationale", attempt + 1,
                     len(pending), len(jobs))
            if not pending:
                break
        return answers

    def stats(self) -> dict[str, Any]:
        return {"generated": self.generated}


def make_backend(config: Mapping[str, Any], evidence: Evidence, *, roles: RoleTable | None = None,
                 cache_dir: str | Path | None = None) -> TeacherBackend:
    """The configured teacher; `cache_dir` keeps the openai teacher's responses (None = no cache)."""
    settings = config["reasoning"]
    if settings["teacher"] == "grounded":
        return GroundedBackend(GroundedTeacher(
            evidence=evidence, roles=roles or load_roles(settings["roles_table"]),
            grammar=GrammarSettings.from_config(config["rcc"]["grammar"]), n_levels=config["levels"]["n_levels"],
            seed=settings["seed"], max_steps=settings["max_steps"], detail=settings["detail"],
            min_steps=settings["min_steps"], tier_by_count=config["rcc"]["evidence_tags"]))
    if settings["teacher"] == "openai":
        from r3lm.reasoning.openai_backend import OpenAIBackend

        return OpenAIBackend(settings["openai"], cache_dir=cache_dir, seed=settings["seed"])
    return HFBackend(config)


def select_set(cards: pd.DataFrame, per_cell_type: int | None, seed: int) -> pd.DataFrame:
    """Up to `per_cell_type` cards per cell type (None = all), in their original order, keeping the index
    labels (so errors can name the file's row).

    Sampling is stratified by level (quotas proportional to the level counts, largest remainder), so
    a teacher set keeps the split's level balance exactly rather than by chance; each cell type draws
    from its own seeded stream, so adding a cell type does not change the others' selection.
    """
    if per_cell_type is None:
        return cards
    chosen: list[np.ndarray] = []
    for cell_type, group in cards.groupby("cell_type", sort=True):
        if len(group) <= per_cell_type:
            if len(group) < per_cell_type:
                log.warning("%s: the split holds %d cards, fewer than the %d reasoning.sets asks for: all are used "
                            "(lower the set size, or let the split give it more rows)", cell_type, len(group),
                            per_cell_type)
            chosen.append(group.index.to_numpy())
            continue
        rng = np.random.default_rng([seed, zlib.crc32(str(cell_type).encode())])
        counts = group["level"].value_counts().sort_index()
        shares = counts.to_numpy() * per_cell_type / len(group)
        quotas = np.floor(shares).astype(int)
        by_remainder = np.argsort(-(shares - quotas), kind="stable")
        quotas[by_remainder[:per_cell_type - quotas.sum()]] += 1
        for level, quota in zip(counts.index, quotas, strict=True):
            rows = group.index[group["level"] == level].to_numpy()
            chosen.append(rng.choice(rows, size=quota, replace=False))
    return cards.loc[np.sort(np.concatenate(chosen))]


def agreeing_cards(cards: pd.DataFrame, backend: TeacherBackend, cards_path: str | Path, how: str) -> pd.DataFrame:
    """The cards whose grounded reading agrees with their measured level (reasoning.stage1_agreeing): `bracket`,
    the tier fits the level's bracket (top, upper, lower, bottom); `level`, the level is the one the tier names.

    Why: the teacher concludes with the measured level, which a card's evidence predicts only loosely; a small
    student trained on every card learns the levels' marginal instead of reading the evidence (on the HepG2
    lentiMPRA it stated level 2 for 112 of 150 test cards at temperature 0.3). Trained on the rationales whose
    reasoning supports their level, as CRE-ReasonBench keeps the rationales that explain their label, its
    stated level can follow the evidence it states. With `bracket` a net-0 card still concludes 0, 1 or 2, and
    on the WTC11 lentiMPRA the student's level ignored its own net reading ("net -2, negative" ... level 3)."""
    if not isinstance(backend, GroundedBackend):
        raise InputError("reasoning.stage1_agreeing reads the grounded teacher's reading: it needs "
                         "reasoning.teacher: grounded")
    readings = [backend.teacher.read(parse_card(card_json, cards_path, row), int(level))
                for row, card_json, level in zip(range(1, len(cards) + 1), cards["card_json"], cards["level"])]
    agrees = [reading.consistent if how == "bracket" else reading.tier_level == reading.level
              for reading in readings]
    kept = cards[agrees]
    log.info("reasoning.stage1_agreeing (%s): %d of %d cards have a reading that agrees with their level (%s)",
             how, len(kept), len(cards), kept["level"].value_counts().sort_index().to_dict())
    return kept


def run_teacher(config: Mapping[str, Any], cards: pd.DataFrame, evidence: Evidence | None, *,
                backend: TeacherBackend | None = None, vocabulary: frozenset[str] | None = None,
                cards_path: str | Path | None = None, progress: bool = True) -> pd.DataFrame:
    """Rationales for every card, validated against the card (and its label under `reasoning.label_filter`)
    (TEACHER_COLUMNS). `evidence` builds the configured backend; a given `backend` needs none."""
    settings, n_levels = config["reasoning"], config["levels"]["n_levels"]
    check_cards(cards, n_levels, cards_path)
    backend = backend or make_backend(config, evidence)
    vocabulary = vocabulary if vocabulary is not None else motif_vocabulary(config["motifs"])
    system = system_prompt(settings["min_steps"], settings["max_steps"], n_levels)
    rows = (cards.index + 1 if pd.api.types.is_integer_dtype(cards.index) else range(1, len(cards) + 1))
    jobs = [TeacherJob(card_id=str(card_id), card=parse_card(card_json, cards_path, int(row)), level=int(level),
                       messages=teacher_messages(card_text, int(level), n_levels, system), card_text=card_text)
            for row, card_id, card_json, card_text, level in zip(
                rows, cards["id"], cards["card_json"], cards["card_text"], cards["level"])]

    def check(job: TeacherJob, text: str) -> Validation:
        return validate_rationale(text, job.card, label=job.level if settings["label_filter"] else None,
                                  min_steps=settings["min_steps"],
                                  max_steps=settings["max_steps"], n_levels=n_levels, motif_vocabulary=vocabulary,
                                  card_text=job.card_text)

    answers = backend.explain(jobs, check, progress=progress)
    frame = pd.DataFrame({
        "id": cards["id"].to_numpy(), "cell_type": cards["cell_type"].to_numpy(),
        "split": cards["split"].to_numpy() if "split" in cards else None,
        "activity": cards["activity"].to_numpy() if "activity" in cards else np.nan,
        "level": cards["level"].astype(int).to_numpy(), "card_text": cards["card_text"].to_numpy(),
        "system": system, "prompt": [job.messages[1]["content"] for job in jobs],
        "rationale": [answer.text for answer in answers],
        "valid": [answer.validation.valid for answer in answers],
        "reject_reason": [answer.validation.reason for answer in answers],
        "n_steps": [answer.validation.n_steps for answer in answers],
        "attempts": [answer.attempts for answer in answers], "backend": backend.name})
    log.info("%s teacher: %d of %d rationales valid", backend.name, int(frame["valid"].sum()), len(frame))
    return frame[TEACHER_COLUMNS]


def teacher_summary(frame: pd.DataFrame, *, seconds: float, backend_stats: Mapping[str, Any],
                    set_name: str | None = None) -> dict[str, Any]:
    """Rows, valid rows, rejections by reason, per-cell-type counts and level distribution of valid rows."""
    counts: dict[str, Any] = {"rows": len(frame), "valid": int(frame["valid"].sum())}
    rejections = rejection_counts(frame["reject_reason"])
    valid = frame[frame["valid"]]
    return {
        "set": set_name, "backend": frame["backend"].iloc[0] if len(frame) else None, **counts,
        "valid_fraction": counts["valid"] / counts["rows"] if counts["rows"] else None,
        "rejections": rejections,
        "per_cell_type": {str(cell): {"rows": len(group), "valid": int(group["valid"].sum())}
                          for cell, group in frame.groupby("cell_type", sort=True)},
        "level_distribution": {str(cell): {str(level): int(count) for level, count in
                                           group["level"].value_counts().sort_index().items()}
                               for cell, group in valid.groupby("cell_type", sort=True)},
        "mean_attempts": float(frame["attempts"].mean()) if len(frame) else None,
        "seconds": round(seconds, 3), "backend_stats": dict(backend_stats)}


def sharegpt_records(frame: pd.DataFrame, student: RationaleFormat) -> dict[str, list[dict[str, Any]]]:
    """Valid rows as LLaMA-Factory ShareGPT records per cell type, in the STUDENT's prompt (never the teacher's,
    which holds the label)."""
    records: dict[str, list[dict[str, Any]]] = {str(cell): [] for cell in sorted(frame["cell_type"].unique())}
    for row in frame[frame["valid"]].itertuples(index=False):
        system, human = (message["content"] for message in student.messages(row.card_text))
        records[str(row.cell_type)].append({
            "id": str(row.id), "cell_type": str(row.cell_type), "level": int(row.level), "system": system,
            "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": row.rationale}]})
    return records


def write_sharegpt(frame: pd.DataFrame, directory: str | Path, student: RationaleFormat) -> list[Path]:
    """`<cell_type>.jsonl` per cell type of the set (empty when none is valid); stale .jsonl files go."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for cell_type, records in sharegpt_records(frame, student).items():
        path = folder / f"{cell_type}.jsonl"
        with atomic_path(path) as tmp:
            tmp.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
        if not records:
            log.warning("%s: no valid rationale, so %s is empty", cell_type, path)
        written.append(path)
    for stale in sorted(set(folder.glob("*.jsonl")) - set(written)):
        log.info("removing %s, left from an earlier run", stale)
        stale.unlink()
    return written


def save_teacher_set(config: Mapping[str, Any], frame: pd.DataFrame, summary: dict[str, Any],
                     out_parquet: str | Path, sharegpt_dir: str | Path, summary_path: str | Path) -> dict[str, Any]:
    """A teacher set's outputs, whichever teacher wrote it: the table (every row), the ShareGPT files (valid rows,
    in the student's prompt) and the summary, which names the filter that ran; returns the summary."""
    summary = summary | {"label_filter": config["reasoning"]["label_filter"]}
    write_parquet(frame, out_parquet)
    write_sharegpt(frame, sharegpt_dir, RationaleFormat.from_config(config))
    write_json(summary, summary_path)
    return summary


def read_cards(path: str | Path) -> pd.DataFrame:
    file = require_file(path, "card table")
    return pd.read_parquet(file)


def stage2_rows(cards: pd.DataFrame, config: Mapping[str, Any], set_name: str) -> pd.Index:
    """The index of the cards (one split's table) that Stage-II set `set_name` draws, empty when it takes every
    card (size null, the paper's Stage II): then nothing can be kept apart from it."""
    settings = config["reasoning"]
    if settings["sets"][set_name] is None:
        log.warning("reasoning.sets.%s takes every card, so its rows cannot be kept out of the Stage-I sets (give it "
                    "a size to keep them apart); the evidence is cross-fitted instead", set_name)
        return cards.index[:0]
    return select_set(cards, settings["sets"][set_name], settings["seed"]).index


def evidence_cards(cards: pd.DataFrame, config: Mapping[str, Any]) -> pd.DataFrame:
    """The train cards the evidence is computed from: without the Stage-II training rows when
    reasoning.evidence.exclude_stage2_train, so no Stage-II row's evidence tags (or the grounded teacher's
    statistics about it) come from its own label."""
    if not config["reasoning"]["evidence"]["exclude_stage2_train"]:
        return cards
    held_out = stage2_rows(cards, config, "stage2_train")
    log.info("evidence: %d of %d train cards, without the %d Stage-II training rows", len(cards) - len(held_out),
             len(cards), len(held_out))
    return cards.drop(index=held_out)


def evidence_folds(config: Mapping[str, Any], cards: pd.DataFrame, path: str | Path) -> tuple[Evidence, pd.DataFrame]:
    """Family and GC evidence from the train `cards` (read from `path`), and its table: the whole split's
    (`fold` WHOLE_SPLIT), and when cross-fitted (crossfit.py) the evidence without each fold beside it."""
    settings = config["reasoning"]["evidence"]
    cards = evidence_cards(cards, config)

    def evidence_of(rows: pd.DataFrame, progress: bool = True) -> Evidence:
        return compute_evidence(rows, n_levels=config["levels"]["n_levels"], min_count=settings["min_count"],
                                pseudocount=settings["pseudocount"], min_log2_ratio=settings["min_log2_ratio"],
                                path=path, progress=progress)

    evidence = evidence_of(cards)
    tables = [evidence.table().assign(fold=WHOLE_SPLIT)]
    n_folds = cross_fit_folds(config)
    if n_folds:
        folds = fold_of(cards["id"], n_folds)
        log.info("evidence cross-fitted over %d folds of the train cards (%s cards per fold)", n_folds,
                 np.bincount(folds, minlength=n_folds).tolist())
        tables += [evidence_of(cards[folds != fold], progress=False).table().assign(fold=fold)
                   for fold in range(n_folds)]
    return evidence, pd.concat(tables, ignore_index=True)


def teacher_backends(config: Mapping[str, Any], cards: pd.DataFrame, evidence_path: str | Path, *,
                     cache_dir: str | Path) -> list[tuple[pd.Index, TeacherBackend]]:
    """The backend that writes each card's rationale: one for every card, or, with cross-fitted evidence and
    the grounded teacher (the one that reads it), one per fold of the train cards and one for the rest."""
    every = read_evidence_folds(evidence_path)
    evidence = every[WHOLE_SPLIT]
    if evidence.n_levels != config["levels"]["n_levels"]:
        raise InputError(f"the evidence was computed for {evidence.n_levels} levels but levels.n_levels is "
                         f"{config['levels']['n_levels']}; recompute it", path=evidence_path, column="n_levels")
    if len(every) == 1 or config["reasoning"]["teacher"] != "grounded":
        return [(cards.index, make_backend(config, evidence, cache_dir=cache_dir))]
    folds = card_folds(cards, len(every) - 1)
    return [(cards.index[folds == fold], make_backend(config, fold_evidence))
            for fold, fold_evidence in every.items() if (folds == fold).any()]


def by_backend(cards: pd.DataFrame, backends: Sequence[tuple[pd.Index, TeacherBackend]],
               apply: Callable[[pd.DataFrame, TeacherBackend], pd.DataFrame]) -> pd.DataFrame:
    """`apply` on each backend's share of `cards`, the results back in the cards' order (their index)."""
    shares = [(cards.loc[cards.index.intersection(rows)], backend) for rows, backend in backends]
    shares = [(part, backend) for part, backend in shares if len(part)] or [(cards, backends[0][1])]
    return pd.concat([apply(part, backend) for part, backend in shares]).sort_index()


def write_teacher_set(config: Mapping[str, Any], cards_path: str | Path, evidence_path: str | Path,
                      out_parquet: str | Path, sharegpt_dir: str | Path, summary_path: str | Path, *,
                      set_name: str | None = None, cache_dir: str | Path | None = None,
                      progress: bool = True) -> dict[str, Any]:
    """The workflow step for one teacher set: select the cards (`reasoning.sets[set_name]` per cell type,
    None = all), run the teacher, write the table (all rows), the ShareGPT files (valid rows) and a summary.

    The openai teacher caches responses in `cache_dir` (default: a hidden folder beside `out_parquet`),
    so a rerun after a kill requests only the cards it has not seen.
    """
    settings = config["reasoning"]
    if set_name is not None and set_name not in SET_NAMES:
        raise InputError(f"unknown teacher set {set_name!r}; expected one of {', '.join(SET_NAMES)}")
    per_cell_type = settings["sets"][set_name] if set_name is not None else None
    cards = read_cards(cards_path)
    check_cards(cards, config["levels"]["n_levels"], cards_path)
    out = Path(out_parquet)
    backends = teacher_backends(config, cards, evidence_path,
                                cache_dir=cache_dir if cache_dir is not None else out.parent / f".{out.stem}_cache")
    if set_name in STAGE2_COUNTERPARTS:
        stage2 = stage2_rows(cards, config, STAGE2_COUNTERPARTS[set_name])
        log.info("teacher set %s: the %d cards of %s are not drawn", set_name, len(stage2), STAGE2_COUNTERPARTS[set_name])
        cards = cards.drop(index=stage2)
    if settings["stage1_agreeing"] != "none" and set_name in STAGE1_SETS:
        cards = by_backend(cards, backends, lambda part, backend: agreeing_cards(
            part, backend, cards_path, settings["stage1_agreeing"]))
    selected = select_set(cards, per_cell_type, settings["seed"])
    log.info("teacher set %s: %d of %d cards (%s per cell type), %s teacher", set_name or out.stem, len(selected),
             len(cards), per_cell_type or "all", backends[0][1].name)
    started = time.perf_counter()
    frame = by_backend(selected, backends, lambda part, backend: run_teacher(
        config, part, None, backend=backend, cards_path=cards_path, progress=progress).set_axis(part.index))
    frame = frame.reset_index(drop=True)
    summary = teacher_summary(frame, seconds=time.perf_counter() - started, backend_stats=backends[0][1].stats(),
                              set_name=set_name)
    summary = save_teacher_set(config, frame, summary, out, sharegpt_dir, summary_path)
    log.info("teacher set %s: %d of %d valid in %.1f s; rejections %s", set_name or out.stem, summary["valid"],
             summary["rows"], summary["seconds"], {k: v for k, v in summary["rejections"].items() if v})
    return summary
