"""Explanation faithfulness by motif disruption: does the prediction move the way the rationale says?

For a seeded sample of test rows whose rationale gives a cited card motif a direction (`cited_motifs`),
each such motif's sites are dinucleotide-shuffled (`disrupt_motif`), the new sequence is rescanned with
the model's own motif settings, its card rebuilt with the card table's rcc settings, and the Stage-II
model predicts again; delta = disrupted - original prediction, both from the same loaded model.

The unmodified sequences go through the same rescan and rebuild first and must give back their stored
cards exactly; otherwise the settings differ from those the cards were built with, and a delta would mix
the disruption with a different card.

The claims tested are those of the rationales in `predictions_dir` (a cot method's predictions); the model
perturbed may be that method's or another (rcc_only: does the card alone move the same way?). With the
original rationale kept, only the sequence and card change; with `regenerate` (generated_cot only), the
Stage-I model writes a new rationale for the new card, so the delta also holds the rationale's resampling.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from r3lm.errors import InputError
from r3lm.evaluate.metrics import block_rng
from r3lm.evaluate.motif_disruption import disrupt_motif, disruption_agreement
from r3lm.io import table_kind, write_table
from r3lm.motifs.dataset import dataset_sequences
from r3lm.pipeline import SequencePipeline
from r3lm.predictions import read_predictions
from r3lm.rationale.claims import attach_cards, cited_motifs
from r3lm.rcc.evidence_tags import EvidenceTags
from r3lm.stage1.models import Stage1Models
from r3lm.stage2.folder import SHARED, read_model_info
from r3lm.stage2.predict import Stage2Predictor

log = logging.getLogger(__name__)

TABLE_COLUMNS = ["cell_type", "id", "motif", "claimed", "original", "disrupted", "delta"]
REPRODUCTION_TOL = 1e-3  # beyond it the reloaded model is not the one that wrote the predictions (dtype, device)


def run_disruption(config: Mapping[str, Any], model_dirs: Mapping[str, str | Path], predictions_dir: str | Path,
                   cards_path: str | Path, out_table: str | Path, out_summary: str | Path, *,
                   stage1_models: Stage1Models | None = None, regenerate: bool = False, max_sequences: int = 100,
                   seed: int = 0, data_dir: str | Path | None = None, settings: Mapping[str, Any] | None = None,
                   evidence_tags: EvidenceTags | None = None, progress: bool = True
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Disrupt every directionally cited motif of up to `max_sequences` rows per cell type; write the pair
    table (TABLE_COLUMNS) and its `disruption_agreement` summary, and return both.

    `config` is the validated workflow config (rcc, generation, reasoning, levels, llm, stage2.batch_size);
    `model_dirs` maps a cell type, or 'shared', to a Stage-II model folder; `data_dir` (the prepared dataset)
    is needed only for `motifs.background: input`; `settings` are the evaluation settings; `evidence_tags`
    those the cards were rendered with (rcc.evidence_tags).
    """
    started = time.perf_counter()
    if max_sequences < 1:
        raise InputError(f"max_sequences must be at least 1, got {max_sequences}")
    for path in (out_table, out_summary):
        table_kind(path)  # an unknown output type fails before any work
    infos = {group: read_model_info(path) for group, path in model_dirs.items()}
    mode, motifs = _shared_settings(infos, model_dirs)
    if regenerate and (mode != "generated_cot" or stage1_models is None):
        raise InputError("regenerate needs generated_cot models and the Stage-I models (stage1_models); "
                         f"got {mode} and {stage1_models}")
    table, summary = read_predictions(predictions_dir)
    if "rationale" not in table.columns:
        raise InputError("no rationales to test: pass a cot method's predictions", path=predictions_dir,
                         column="rationale")
    rows = attach_cards(table, pd.read_parquet(cards_path), columns=("card_json", "card_text"))
    rows["sequence"] = [json.loads(card)["sequence"] for card in rows["card_json"]]
    groups = _groups(sorted(rows["cell_type"].unique()), infos)
    chosen, pairs = _sample(rows, max_sequences, seed)
    claimed = pairs[pairs["claimed"] != 0].reset_index(drop=True)
    claimed["sequence"] = [disrupt_motif(card, motif, block_rng(seed, "disrupt", cell, key, motif))
                           for card, motif, cell, key in zip(claimed["card_json"], claimed["motif"],
                                                             claimed["cell_type"], claimed["id"])]
    claimed["card_text"] = _rebuilt_cards(config, motifs, chosen, claimed, cards_path, data_dir, progress,
                                          evidence_tags=evidence_tags)
    if regenerate:
        claimed["rationale"] = _regenerate(config, stage1_models, claimed, progress)
    original = pd.Series(np.nan, index=chosen.index)
    claimed["disrupted"] = np.nan
    batch_size = int(config["stage2"]["batch_size"])
    for group in sorted(set(groups.values())):
        cells = [cell for cell, served_by in groups.items() if served_by == group]
        in_chosen, in_claimed = chosen["cell_type"].isin(cells), claimed["cell_type"].isin(cells)
        if not in_chosen.any():
            continue
        predictor = Stage2Predictor.load(model_dirs[group])
        inputs = pd.concat([chosen[in_chosen], claimed[in_claimed]], ignore_index=True)
        predicted = predictor.predict(inputs, batch_size)
        original[in_chosen] = predicted[:int(in_chosen.sum())]
        claimed.loc[in_claimed, "disrupted"] = predicted[int(in_chosen.sum()):]
        del predictor  # one backbone in memory at a time
    if summary.get("method") == mode and len(chosen):
        gap = float(np.max(np.abs(original.to_numpy() - chosen["predicted"].to_numpy(dtype=float))))
        log.log(logging.WARNING if gap > REPRODUCTION_TOL else logging.INFO, "disruption: the reloaded %s model's "
                "original predictions differ from the written ones by at most %.2g", mode, gap)
    result = _pair_table(pairs, chosen.assign(original=original), claimed)
    agreement = disruption_agreement(result, settings)
    write_table(result, out_table)
    write_table(agreement, out_summary)
    overall = agreement.iloc[-1]
    log.info("disruption (%s model, %s rationales): %d sequences, %d motifs cited, %d disrupted, %d skipped "
             "(no claimed direction); agreement %.3f in %.1f s", mode, "regenerated" if regenerate else "original",
             len(chosen), len(result), len(claimed), int((result["claimed"] == 0).sum()), overall["agreement"],
             time.perf_counter() - started)
    return result, agreement


def _shared_settings(infos: Mapping[str, Mapping[str, Any]], model_dirs: Mapping[str, str | Path]
                     ) -> tuple[str, dict[str, Any]]:
    """The input mode and motif settings every model folder shares."""
    if not infos:
        raise InputError("no Stage II model folders given")
    for group, info in infos.items():
        if "motifs" not in info:
            raise InputError("stage2.json lacks the motif settings", path=Path(model_dirs[group]) / "stage2.json")
    modes = {info["mode"] for info in infos.values()}
    motif_settings = {repr(sorted(info["motifs"].items())) for info in infos.values()}
    if len(modes) > 1 or len(motif_settings) > 1:
        raise InputError(f"the model folders mix input modes or motif settings ({', '.join(sorted(modes))})")
    first = next(iter(infos.values()))
    return first["mode"], dict(first["motifs"])


def _groups(cell_types: list[str], infos: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The model folder serving each cell type: its own, else the shared one."""
    groups = {}
    for cell in cell_types:
        group = cell if cell in infos else SHARED
        if group not in infos or cell not in infos[group]["standardisation"]:
            raise InputError(f"no Stage II model folder serves cell type {cell!r} (given: {', '.join(infos)})",
                             column="cell_type")
        groups[cell] = group
    return groups


def _sample(rows: pd.DataFrame, max_sequences: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Up to `max_sequences` rows per cell type whose rationale claims a direction for a card motif, drawn in a
    seeded order (uniform among such rows), and one (row, cited motif, claim) record per citation."""
    chosen, pairs = [], []
    for cell, part in rows.groupby("cell_type", sort=True):
        order = block_rng(seed, "disruption", str(cell)).permutation(len(part))
        examined = used = 0
        for position in order:
            if used == max_sequences:
                break
            row = part.iloc[position]
            examined += 1
            claims = cited_motifs("" if pd.isna(row["rationale"]) else str(row["rationale"]), row["card_json"])
            if not any(claims.values()):
                continue
            used += 1
            chosen.append(row)
            pairs += [{"cell_type": cell, "id": row["id"], "motif": motif, "claimed": sign,
                       "card_json": row["card_json"], "rationale": row["rationale"]}
                      for motif, sign in claims.items()]
        cited = [pair for pair in pairs if pair["cell_type"] == cell]
        log.log(logging.INFO if used else logging.WARNING, "disruption %s: %d rows examined, %d used (the rest "
                "claim no direction for a card motif); %d motifs cited, %d with a claimed direction, %d skipped (no "
                "claimed direction)", cell, examined, used, len(cited), sum(pair["claimed"] != 0 for pair in cited),
                sum(pair["claimed"] == 0 for pair in cited))
    columns = ["cell_type", "id", "motif", "claimed", "card_json", "rationale"]
    return (pd.DataFrame(chosen).reset_index(drop=True) if chosen else rows.iloc[:0].reset_index(drop=True),
            pd.DataFrame(pairs, columns=columns))


def _rebuilt_cards(config: Mapping[str, Any], motifs: Mapping[str, Any], chosen: pd.DataFrame,
                   claimed: pd.DataFrame, cards_path: str | Path, data_dir: str | Path | None,
                   progress: bool, *, evidence_tags: EvidenceTags | None = None) -> list[str]:
    """Card texts of the disrupted sequences, after checking that the same rescan and rebuild give the chosen
    rows back their stored cards."""
    if motifs["background"] == "input" and data_dir is None:
        raise InputError("motifs.background is input: the rescan needs the prepared dataset folder (data_dir)")
    background = dataset_sequences(data_dir)["sequence"].tolist() if motifs["background"] == "input" else None
    frame = pd.DataFrame({"sequence": [*chosen["sequence"], *claimed["sequence"]],
                          "cell_type": [*chosen["cell_type"], *claimed["cell_type"]]})
    frame["id"] = [f"s{index}" for index in range(len(frame))]
    pipeline = SequencePipeline.from_config({**config, "motifs": motifs}, background, evidence_tags=evidence_tags)
    cards = pipeline.cards(frame, progress=progress)["card_text"].tolist()
    rcc = config["rcc"]
    differ = [index for index, text in enumerate(chosen["card_text"]) if cards[index] != text]
    if differ:
        row = chosen.iloc[differ[0]]
        raise InputError(f"{len(differ)} of {len(chosen)} stored cards (e.g. id {row['id']!r} in "
                         f"{row['cell_type']!r}) differ from a rescan with the model's motif settings, "
                         f"rcc.grammar_tags={rcc['grammar_tags']}, rcc.evidence_tags={rcc['evidence_tags']}, "
                         f"rcc.max_motifs={rcc['max_motifs']} and rcc.dedup={rcc['dedup']}: the cards were built "
                         "with other settings", path=cards_path)
    return cards[len(chosen):]


def _regenerate(config: Mapping[str, Any], stage1_models: Stage1Models, claimed: pd.DataFrame,
                progress: bool) -> list[str]:
    """The rationale for each claimed row's disrupted card, written by its cell type's Stage-I model as
    `write_self_rationales` writes them.

    On a GPU through transformers: vLLM would reserve most of the GPU that the Stage-II backbone needs
    beside it. On a CPU its KV cache is sized to the batch, and it writes four times faster.
    """
    import torch

    generation = config["generation"] | ({"backend": "hf"} if torch.cuda.is_available() else {})
    pipeline = SequencePipeline.from_config({**config, "generation": generation}, stage1_models=stage1_models)
    return pipeline.rationales(claimed["card_text"].tolist(), claimed["cell_type"].tolist(), progress=progress)


def _pair_table(pairs: pd.DataFrame, chosen: pd.DataFrame, claimed: pd.DataFrame) -> pd.DataFrame:
    """One row per cited motif; those without a claimed direction keep no disrupted prediction (skipped)."""
    keys = ["cell_type", "id"]
    table = pairs.drop(columns=["card_json", "rationale"]).merge(chosen[[*keys, "original"]], on=keys, how="left")
    table = table.merge(claimed[[*keys, "motif", "disrupted"]], on=[*keys, "motif"], how="left")
    table["delta"] = table["disrupted"] - table["original"]
    return table.astype({"claimed": int, "original": float, "disrupted": float})[TABLE_COLUMNS]
