"""The Stage-II workflow step for one input mode: train (per cell type or shared), keep the best
validation model, predict the test set and write the shared prediction format and a model folder per group.

`stage2.training` picks the regressor (stage2/regressors.py): `lora` trains LoRA adapters and the head
together (the paper); `frozen` fits only the head on cached embeddings of the frozen backbone, which turns
hours on a CPU into seconds and is the honest cheap variant of the same model; its head is trained
(`stage2.frozen.head: adam`) or solved by cross-validated ridge (`ridge`). `stage2.layer` and `stage2.pooling`
pick what the head reads in either training (stage2/model.py `Representation`). `stage2.validation` picks the
rows the best model is chosen on: the val set, or (`random`, the official code's) a seeded share of the train and
val rows pooled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from r3lm.errors import InputError
from r3lm.io import write_json, write_table
from r3lm.llm.base import resolve_dtype
from r3lm.predictions import (
    level_edges_from_summary,
    prediction_table,
    write_predictions,
)
from r3lm.scaling import ActivityScaler
from r3lm.stage2.folder import SHARED, write_model_folder
from r3lm.stage2.inputs import COT_MODES, load_mode_rows, tokenize_rows
from r3lm.stage2.model import Representation, load_tokenizer
from r3lm.stage2.regressors import (
    Backbone,
    FrozenHeadRegressor,
    Regressor,
    group_regressors,
)
from r3lm.stage2.train import FitResult, fit, fit_ridge_head

log = logging.getLogger(__name__)

SETS = ("train", "val", "test")


@dataclass(frozen=True)
class SetFiles:
    teacher_set: str | Path
    cards: str | Path
    rationales: str | Path | None = None


@dataclass
class Prepared:
    rows: pd.DataFrame
    encoded: list[list[int]]
    truncated: int


def random_validation(train: pd.DataFrame, val: pd.DataFrame, train_fraction: float, seed: int
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The official train_stage2.py's validation rows (stage2.validation.rows: random): per cell type, as it reads
    one file per cell line, the train rows then the val rows shuffled with `seed`; the first int(n x train_fraction)
    train and the rest validate."""
    pool = pd.concat([train, val], ignore_index=True)
    if pool.empty:
        return pool, pool
    train_parts, val_parts = [], []
    for _, rows in pool.groupby("cell_type", sort=True):
        shuffled = rows.reset_index(drop=True).sample(frac=1, random_state=seed)
        n_train = int(len(shuffled) * train_fraction)
        train_parts.append(shuffled.iloc[:n_train])
        val_parts.append(shuffled.iloc[n_train:])
    return pd.concat(train_parts, ignore_index=True), pd.concat(val_parts, ignore_index=True)


def _set_rows(mode: str, sets: Mapping[str, SetFiles], settings: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """Each set's rows, the validation rows chosen by stage2.validation (see the schema)."""
    rows = {name: load_mode_rows(mode, files.teacher_set, files.cards, files.rationales,
                                 keep_conclusion=settings["keep_conclusion"], input_format=settings["input_format"])
            for name, files in sets.items()}
    validation = settings["validation"]
    if validation["rows"] == "random":
        rows["train"], rows["val"] = random_validation(rows["train"], rows["val"], validation["train_fraction"],
                                                       validation["seed"])
    return rows


def _prepare(name: str, rows: pd.DataFrame, files: SetFiles, tokenizer: Any, settings: Mapping[str, Any]
             ) -> Prepared:
    if rows.empty:
        raise InputError(f"the Stage II {name} set is empty", path=files.teacher_set)
    encoded, truncated = tokenize_rows(tokenizer, rows["input"].tolist(), settings["cutoff_len"])
    if truncated:
        log.warning("%s: %d of %d inputs longer than stage2.cutoff_len=%d were cut", name, truncated,
                    len(rows), settings["cutoff_len"])
    return Prepared(rows, encoded, truncated)


def _scaled_targets(rows: pd.DataFrame, scaler: ActivityScaler) -> np.ndarray:
    """What the head learns: z-scored activity (a shared model serves cell types on different scales)."""
    return scaler.transform(rows["activity"], rows["cell_type"]).astype(np.float32)


def _groups(train: pd.DataFrame, per_cell_type: bool) -> list[str]:
    return sorted(train["cell_type"].astype(str).unique()) if per_cell_type else [SHARED]


def _in_group(rows: pd.DataFrame, group: str) -> np.ndarray:
    return np.ones(len(rows), dtype=bool) if group == SHARED else (rows["cell_type"] == group).to_numpy()


def _fit_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The optimiser settings of the chosen training mode (frozen fits only the head, with its own schedule)."""
    if settings["training"] == "frozen":
        return {**settings, **settings["frozen"], "gradient_accumulation": 1, "head_learning_rate": None}
    return dict(settings)


def _fit_group(regressor: Regressor, train: pd.DataFrame, val: pd.DataFrame, scaler: ActivityScaler,
               settings: Mapping[str, Any], work: Path, *, progress: bool, label: str) -> FitResult:
    """Train one group's regressor (or solve its head, frozen with head: ridge) and leave it in eval mode with its
    best validation weights."""
    if isinstance(regressor, FrozenHeadRegressor) and settings.get("head") == "ridge":
        result = fit_ridge_head(regressor.head, regressor.states["train"], _scaled_targets(train, scaler),
                                lambda: regressor.predict("val").float().cpu().numpy(), _scaled_targets(val, scaler),
                                settings["ridge_alphas"], settings["seed"], label)
        regressor.model.eval()
        return result
    result = fit(regressor.model, lambda indices: regressor.predict("train", indices), _scaled_targets(train, scaler),
                 train["level"].to_numpy(), lambda: regressor.predict("val").float().cpu().numpy(),
                 _scaled_targets(val, scaler), settings, work, lengths=regressor.lengths,
                 head_parameters=list(regressor.head.parameters()), progress=progress, label=label)
    regressor.model.load_state_dict(result.best_state, strict=False)
    regressor.model.eval()
    return result


def _model_settings(config: Mapping[str, Any], mode: str, backbone_path: str | Path, group: str,
                    scaler: ActivityScaler, regressor: Regressor, result: FitResult) -> dict[str, Any]:
    """What a prediction needs to be reproduced from the model folder alone."""
    settings = config["stage2"]
    return {"mode": mode, "backbone": str(backbone_path), "group": group,
            "cell_types": sorted(scaler.cell_types) if group == SHARED else [group],
            "standardisation": scaler.to_json(), "training": settings["training"],
            "cutoff_len": settings["cutoff_len"], "keep_conclusion": settings["keep_conclusion"],
            "input_format": settings["input_format"], "hidden_size": int(regressor.head[0].normalized_shape[0]),
            **Representation.from_settings(settings).to_json(),
            "head": settings["frozen"]["head"] if settings["training"] == "frozen" else "adam",
            "ridge_alpha": result.alpha, "best_val_pearson": result.best_pearson, "best_step": result.best_step,
            "motifs": dict(config["motifs"]), "levels": dict(config["levels"]),
            "dtype": settings["dtype"] or config["llm"]["dtype"]}


def run_stage2(config: Mapping[str, Any], mode: str, backbone_path: str | Path, sets: Mapping[str, SetFiles],
               data_summary: str | Path, work_dir: str | Path, predictions_dir: str | Path, *,
               progress: bool = True) -> dict[str, Any]:
    """Train on sets['train'], select on sets['val'], predict sets['test']; returns the summary."""
    started = time.perf_counter()
    settings = config["stage2"]
    work = Path(work_dir)
    missing = [name for name in SETS if name not in sets]
    if missing:
        raise InputError(f"Stage II needs the sets {', '.join(SETS)}; missing {', '.join(missing)}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    compute_dtype = resolve_dtype(settings["dtype"] or config["llm"]["dtype"], device)
    torch.manual_seed(settings["seed"])
    tokenizer = load_tokenizer(backbone_path)
    rows = _set_rows(mode, {name: sets[name] for name in SETS}, settings)
    prepared = {name: _prepare(name, rows[name], sets[name], tokenizer, settings) for name in SETS}
    scaler = ActivityScaler.fit(prepared["train"].rows)
    unknown = sorted(set(prepared["test"].rows["cell_type"]) - set(scaler.cell_types))
    if unknown:
        raise InputError(f"test cell types {unknown} have no Stage II training rows", path=sets["test"].teacher_set,
                         column="cell_type")
    fit_settings = _fit_settings(settings)
    backbone = Backbone(backbone_path, compute_dtype, device, tokenizer.pad_token_id, settings["batch_size"],
                        Representation.from_settings(settings))
    new_regressor = group_regressors(settings, backbone, {name: part.encoded for name, part in prepared.items()},
                                     work / "embeddings", progress=progress)
    predicted = np.zeros(len(prepared["test"].rows))
    fits: dict[str, FitResult] = {}
    for group in _groups(prepared["train"].rows, settings["per_cell_type"]):
        masks = {name: _in_group(part.rows, group) for name, part in prepared.items()}
        if not masks["val"].any():
            raise InputError(f"no validation rows for {group}", path=sets["val"].teacher_set, column="cell_type")
        regressor = new_regressor(masks)
        fits[group] = _fit_group(regressor, prepared["train"].rows[masks["train"]], prepared["val"].rows[masks["val"]],
                                 scaler, fit_settings, work / "groups" / group, progress=progress,
                                 label=f"[{mode} {group}] ")
        with torch.no_grad():
            predicted[masks["test"]] = regressor.predict("test").float().cpu().numpy()
        write_model_folder(work / "model" / group, _model_settings(config, mode, backbone_path, group, scaler,
                                                                   regressor, fits[group]),
                           regressor.head, regressor.adapter)
    test_rows = prepared["test"].rows
    table = prediction_table(test_rows, scaler.inverse(predicted, test_rows["cell_type"]),
                             level_edges_from_summary(data_summary),
                             rationale=test_rows["rationale"].tolist() if mode in COT_MODES else None)
    curves = pd.DataFrame([{"group": group, **entry} for group, result in fits.items() for entry in result.history])
    write_table(curves, work / "curve.csv")
    summary = _summary(mode, settings, backbone, prepared, fits, fit_settings, work) | {
        "seconds": round(time.perf_counter() - started, 3)}
    write_predictions(table, predictions_dir, summary)
    write_json(summary, work / "summary.json")
    log.info("Stage II %s: %d test predictions in %.1f s (best val Pearson %s)", mode, len(table),
             summary["seconds"], {group: round(result.best_pearson, 4) for group, result in fits.items()})
    return summary


def _summary(mode: str, settings: Mapping[str, Any], backbone: Backbone, prepared: Mapping[str, Prepared],
             fits: Mapping[str, FitResult], fit_settings: Mapping[str, Any], work: Path) -> dict[str, Any]:
    """What was trained on and how, for the report (the caller adds the run time)."""
    return {
        "method": mode, "family": "llm", "training": settings["training"], "backbone": str(backbone.path),
        "dtype": str(backbone.dtype).removeprefix("torch."), "device": backbone.device,
        "train_rows": {str(cell): int(count) for cell, count in prepared["train"].rows["cell_type"].value_counts()
                       .sort_index().items()},
        "val_rows": len(prepared["val"].rows), "test_rows": len(prepared["test"].rows),
        "truncated_inputs": {name: part.truncated for name, part in prepared.items()},
        "groups": {group: {"best_val_pearson": result.best_pearson, "best_step": result.best_step,
                           "steps": result.steps, "resumed_from_step": result.resumed_from_step,
                           "ridge_alpha": result.alpha, "seconds": round(result.seconds, 3)}
                   for group, result in fits.items()},
        "settings": fit_settings | {"mode": mode}, "curve": str(work / "curve.csv"),
    }
