"""The Stage-II workflow step for one input mode: train (per cell type or shared), keep the best
validation model, predict the test set and write the shared prediction format and a model folder.

`stage2.training: lora` trains LoRA adapters and the head together (the paper); `frozen` embeds every
input once with the frozen backbone, caches the embeddings, and fits only the head, which turns hours on
a CPU into seconds and is the honest cheap variant of the same model.
"""

from __future__ import annotations

import hashlib
import json
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
from r3lm.io import atomic_dir, atomic_path, write_json, write_table
from r3lm.llm.base import resolve_dtype
from r3lm.llm.generate import model_fingerprint
from r3lm.predictions import (
    level_edges_from_summary,
    prediction_table,
    write_predictions,
)
from r3lm.stage2.folder import SHARED
from r3lm.stage2.inputs import COT_MODES, load_mode_rows, tokenize_rows
from r3lm.stage2.model import (
    embed,
    last_token_states,
    load_backbone,
    load_tokenizer,
    pad_batch,
    regression_head,
)
from r3lm.stage2.train import FitResult, fit

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


def _standardiser(train: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Per-cell-type train mean and std: the head predicts standardised activity, so a shared model
    can serve cell types on different scales."""
    stats = {}
    for cell_type, values in train.groupby("cell_type")["activity"]:
        std = float(values.std(ddof=0))
        stats[str(cell_type)] = (float(values.mean()), std if std > 0 else 1.0)
    return stats


def standardise(rows: pd.DataFrame, stats: Mapping[str, tuple[float, float]], *, inverse: np.ndarray | None = None
                 ) -> np.ndarray:
    means = np.array([stats[cell][0] for cell in rows["cell_type"]])
    stds = np.array([stats[cell][1] for cell in rows["cell_type"]])
    if inverse is not None:
        return inverse * stds + means
    return ((rows["activity"].to_numpy(dtype=float) - means) / stds).astype(np.float32)


def _groups(train: pd.DataFrame, per_cell_type: bool) -> list[str]:
    return sorted(train["cell_type"].astype(str).unique()) if per_cell_type else [SHARED]


def _in_group(rows: pd.DataFrame, group: str) -> np.ndarray:
    return np.ones(len(rows), dtype=bool) if group == SHARED else (rows["cell_type"] == group).to_numpy()


def _cached_embeddings(cache: Path, key: str, compute: Any) -> np.ndarray:
    """Embeddings from the cache when the key (model files, dtype, token ids) matches, else computed and stored."""
    meta = cache.with_suffix(".json")
    if cache.is_file() and meta.is_file() and json.loads(meta.read_text()).get("key") == key:
        log.info("reusing cached embeddings %s", cache)
        return np.load(cache)
    values = compute()
    with atomic_path(cache) as tmp, open(tmp, "wb") as handle:
        np.save(handle, values)
    write_json({"key": key, "shape": list(values.shape)}, meta)
    return values


def _token_key(backbone_path: str | Path, dtype: torch.dtype, encoded: list[list[int]]) -> str:
    digest = hashlib.sha256(f"{model_fingerprint(backbone_path)}|{backbone_path}|{dtype}".encode())
    for ids in encoded:
        digest.update(np.asarray(ids, dtype=np.int64).tobytes() + b"|")
    return digest.hexdigest()


def _fit_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The optimiser settings of the chosen training mode (frozen fits only the head, with its own schedule)."""
    if settings["training"] == "frozen":
        return {**settings, **settings["frozen"], "gradient_accumulation": 1, "head_learning_rate": None}
    return dict(settings)


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
    lora = settings["lora"] if settings["training"] == "lora" else None
    tokenizer = load_tokenizer(backbone_path)
    prepared: dict[str, Prepared] = {}
    for name in SETS:
        files = sets[name]
        rows = load_mode_rows(mode, files.teacher_set, files.cards, files.rationales,
                              keep_conclusion=settings["keep_conclusion"], input_format=settings["input_format"])
        if rows.empty:
            raise InputError(f"the Stage II {name} set is empty", path=files.teacher_set)
        encoded, truncated = tokenize_rows(tokenizer, rows["input"].tolist(), settings["cutoff_len"])
        if truncated:
            log.warning("%s: %d of %d inputs longer than stage2.cutoff_len=%d were cut", name, truncated,
                        len(rows), settings["cutoff_len"])
        prepared[name] = Prepared(rows, encoded, truncated)
    stats = _standardiser(prepared["train"].rows)
    unknown = sorted(set(prepared["test"].rows["cell_type"]) - set(stats))
    if unknown:
        raise InputError(f"test cell types {unknown} have no Stage II training rows", path=sets["test"].teacher_set,
                         column="cell_type")
    fit_settings = _fit_settings(settings)
    pad_id = tokenizer.pad_token_id
    batch = settings["batch_size"]
    predicted = np.zeros(len(prepared["test"].rows))
    fits: dict[str, FitResult] = {}
    if lora is None:
        backbone = load_backbone(backbone_path, compute_dtype, device)
        hidden = backbone.config.hidden_size
        embeddings = {name: _cached_embeddings(
            work / "embeddings" / f"{name}.npy", _token_key(backbone_path, compute_dtype, part.encoded),
            lambda part=part, name=name: embed(backbone, part.encoded, pad_id, compute_dtype, device, batch,
                                               progress=progress, description=f"embedding {name}"))
            for name, part in prepared.items()}
    for group in _groups(prepared["train"].rows, settings["per_cell_type"]):
        label = f"[{mode} {group}] "
        group_work = work / "groups" / group
        train_mask = _in_group(prepared["train"].rows, group)
        val_mask = _in_group(prepared["val"].rows, group)
        test_mask = _in_group(prepared["test"].rows, group)
        if not val_mask.any():
            raise InputError(f"no validation rows for {group}", path=sets["val"].teacher_set, column="cell_type")
        targets = standardise(prepared["train"].rows[train_mask], stats)
        val_targets = standardise(prepared["val"].rows[val_mask], stats)
        levels = prepared["train"].rows.loc[train_mask, "level"].to_numpy()
        if lora is None:
            head = regression_head(hidden).to(device)
            inputs = {name: torch.as_tensor(embeddings[name][mask], device=device)
                      for name, mask in (("train", train_mask), ("val", val_mask), ("test", test_mask))}
            model: torch.nn.Module = head

            def predict(name: str, indices: np.ndarray | None = None, inputs: dict = inputs,
                        head: torch.nn.Module = head) -> torch.Tensor:
                states = inputs[name] if indices is None else inputs[name][torch.as_tensor(indices)]
                return head(states).squeeze(-1)

            lengths = None
        else:
            torch.manual_seed(settings["seed"])  # the same adapter initialisation for every group
            group_backbone = load_backbone(backbone_path, compute_dtype, device, lora=lora)
            head = regression_head(group_backbone.config.hidden_size).to(device)
            model = torch.nn.ModuleDict({"backbone": group_backbone, "head": head})
            encoded = {name: [ids for ids, keep in zip(prepared[name].encoded, mask) if keep]
                       for name, mask in (("train", train_mask), ("val", val_mask), ("test", test_mask))}

            def predict(name: str, indices: np.ndarray | None = None, encoded: dict = encoded,
                        head: torch.nn.Module = head, group_backbone: torch.nn.Module = group_backbone
                        ) -> torch.Tensor:
                if indices is not None:
                    input_ids, mask = pad_batch([encoded[name][index] for index in indices], pad_id, device)
                    return head(last_token_states(group_backbone, input_ids, mask, compute_dtype)).squeeze(-1)
                states = embed(group_backbone, encoded[name], pad_id, compute_dtype, device, batch)
                return head(torch.as_tensor(states, device=device)).squeeze(-1)

            lengths = [len(ids) for ids in encoded["train"]]
        result = fit(model, lambda indices: predict("train", indices), targets, levels,
                     lambda: predict("val").float().cpu().numpy(), val_targets, fit_settings, group_work,
                     lengths=lengths, head_parameters=list(head.parameters()), progress=progress, label=label)
        model.load_state_dict(result.best_state, strict=False)
        model.eval()
        with torch.no_grad():
            predicted[test_mask] = predict("test").float().cpu().numpy()
        fits[group] = result
        _save_model(work / "model" / group, mode, backbone_path, head, model if lora else None, config, stats,
                    group, result)
    test_rows = prepared["test"].rows
    activity = standardise(test_rows, stats, inverse=predicted)
    table = prediction_table(test_rows, activity, level_edges_from_summary(data_summary),
                             rationale=test_rows["rationale"].tolist() if mode in COT_MODES else None)
    curves = pd.DataFrame([{"group": group, **entry} for group, result in fits.items() for entry in result.history])
    write_table(curves, work / "curve.csv")
    summary = {
        "method": mode, "family": "llm", "training": settings["training"], "backbone": str(backbone_path),
        "dtype": str(compute_dtype).removeprefix("torch."), "device": device,
        "train_rows": {str(cell): int(count) for cell, count in prepared["train"].rows["cell_type"].value_counts()
                       .sort_index().items()},
        "val_rows": len(prepared["val"].rows), "test_rows": len(test_rows),
        "truncated_inputs": {name: part.truncated for name, part in prepared.items()},
        "groups": {group: {"best_val_pearson": result.best_pearson, "best_step": result.best_step,
                           "steps": result.steps, "resumed_from_step": result.resumed_from_step,
                           "seconds": round(result.seconds, 3)} for group, result in fits.items()},
        "settings": fit_settings | {"mode": mode}, "curve": str(work / "curve.csv"),
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_predictions(table, predictions_dir, summary)
    write_json(summary, work / "summary.json")
    log.info("Stage II %s: %d test predictions in %.1f s (best val Pearson %s)", mode, len(table),
             summary["seconds"], {group: round(result.best_pearson, 4) for group, result in fits.items()})
    return summary


def _save_model(folder: Path, mode: str, backbone_path: str | Path, head: torch.nn.Module,
                lora_model: torch.nn.Module | None, config: Mapping[str, Any], stats: Mapping[str, tuple[float, float]],
                group: str, result: FitResult) -> None:
    """A self-contained model folder: the head, the adapter (LoRA), and what a prediction needs to be
    reproduced (backbone reference, input mode, standardisation, settings)."""
    with atomic_dir(folder) as tmp:
        torch.save(head.state_dict(), tmp / "head.pt")
        if lora_model is not None:
            lora_model["backbone"].save_pretrained(tmp / "adapter")
        write_json({"mode": mode, "backbone": str(backbone_path), "group": group,
                    "cell_types": sorted(stats) if group == SHARED else [group],
                    "standardisation": {cell: {"mean": mean, "std": std} for cell, (mean, std) in stats.items()},
                    "training": config["stage2"]["training"], "cutoff_len": config["stage2"]["cutoff_len"],
                    "keep_conclusion": config["stage2"]["keep_conclusion"],
                    "input_format": config["stage2"]["input_format"],
                    "hidden_size": int(head[0].normalized_shape[0]), "best_val_pearson": result.best_pearson,
                    "best_step": result.best_step, "motifs": dict(config["motifs"]),
                    "levels": dict(config["levels"]),
                    "dtype": config["stage2"]["dtype"] or config["llm"]["dtype"]},
                   tmp / "stage2.json")
