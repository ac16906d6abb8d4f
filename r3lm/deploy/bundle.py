"""A self-contained model folder ("bundle") for one trained Stage-II input mode.

Everything a prediction needs travels in the folder, so a result can be reproduced from it alone:

    <bundle>/
      r3lm_bundle.json       manifest: mode, cell types, level edges, motif release/threshold/background,
                             card settings, the rationale prompt and sampling, base-model reference, provenance
      llm/                   the Stage-I model: writes rationales (generated_cot), and the Stage-II backbone when
                             stage2.backbone is stage1; llm/<cell_type>/ per cell type with per-cell-type Stage I
      backbone/              the Stage-II backbone when it is not the Stage-I model (stage2.backbone: base)
      stage2/<group>/        head.pt, stage2.json and (LoRA) adapter/ per cell type, or one `shared` group

Model weights are hard-linked from the workflow's outputs where the filesystem allows (no second copy on
disk) and copied otherwise. A hub-id backbone is recorded as a reference that transformers fetches.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from r3lm import __version__
from r3lm.errors import InputError, require_folder
from r3lm.hub import local_copy
from r3lm.io import atomic_dir, write_json
from r3lm.llm.base import PROVENANCE_FILE, resolve_base
from r3lm.motifs.scan import background_for
from r3lm.motifs.shards import dataset_sequences
from r3lm.predictions import level_edges_from_summary
from r3lm.reasoning.format import system_prompt
from r3lm.stage1.models import Stage1Models
from r3lm.stage2.folder import (
    HEAD_FILE,
    MODEL_FILE,
    SHARED,
    read_model_info,
    read_settings,
)
from r3lm.stage2.inputs import DEPLOYABLE_MODES

log = logging.getLogger(__name__)

MANIFEST = "r3lm_bundle.json"
FORMAT = "r3lm-bundle/2"  # /2: a rationale model per cell type
LLM_DIR, BACKBONE_DIR, STAGE2_DIR = "llm", "backbone", "stage2"
MANIFEST_KEYS = ("format", "mode", "cell_types", "groups", "backbone", "rationale_models", "motifs", "background",
                 "rcc", "reasoning", "generation", "levels", "stage2")


def write_bundle(config: Mapping[str, Any], mode: str, stage2_models: str | Path, stage1_models: Stage1Models,
                 data_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Gather a Stage-II run's model folders (`model/<group>/`), the Stage-I model(s) and the dataset's level
    edges and training lengths into `out`, atomically; returns the manifest."""
    started = time.perf_counter()
    if mode not in DEPLOYABLE_MODES:
        raise InputError(f"{mode} cannot be bundled: it reads the teacher's rationale, written from the measured "
                         f"level (deployable modes: {', '.join(DEPLOYABLE_MODES)})")
    models = Path(stage2_models)
    group_dirs = sorted(folder for folder in models.iterdir() if folder.is_dir()) if models.is_dir() else []
    if not group_dirs:
        raise InputError("no Stage II model folders inside", path=models)
    infos = {folder.name: read_model_info(folder) for folder in group_dirs}
    backbones = {info["backbone"] for info in infos.values()}
    modes = {info["mode"] for info in infos.values()}
    if modes != {mode} or len(backbones) != 1:
        raise InputError(f"the model folders hold modes {sorted(modes)} and backbones {sorted(backbones)}; "
                         f"a bundle is one mode on one backbone", path=models)
    backbone = backbones.pop()
    groups = {cell: group for group, info in infos.items() for cell in (info["cell_types"] if group == SHARED
                                                                         else [group])}
    stage1 = {folder: Path(local_copy(model, what="the Stage-I model")) for folder, model in
              _rationale_folders(stage1_models, groups).items()}
    same_as_stage1 = stage1_models.shared and Path(backbone).resolve() == stage1[LLM_DIR].resolve()
    data = Path(data_dir)
    edges = level_edges_from_summary(data / "summary.json")
    missing = sorted(set(groups) - set(edges))
    if missing:
        raise InputError(f"no level edges for {', '.join(missing)}", path=data / "summary.json")
    motifs = dict(config["motifs"])
    background = background_for(motifs, dataset_sequences(data)["sequence"].tolist()
                                if motifs["background"] == "input" else [])
    lengths = pd.read_parquet(data / "train.parquet", columns=["sequence"])["sequence"].str.len()
    reasoning = config["reasoning"]
    manifest = {
        "format": FORMAT, "mode": mode, "cell_types": sorted(groups),
        "groups": {cell: f"{STAGE2_DIR}/{group}" for cell, group in sorted(groups.items())},
        "backbone": LLM_DIR if same_as_stage1 else (BACKBONE_DIR if Path(backbone).is_dir() else backbone),
        "rationale_models": ({cell: _rationale_folder(stage1_models, cell) for cell in sorted(groups)}
                             if mode == "generated_cot" else None),
        "base_model": _base_reference(config["llm"], next(iter(stage1.values()))),
        "motifs": motifs, "background": [float(value) for value in background],
        "rcc": {"grammar_tags": config["rcc"]["grammar_tags"], "grammar": dict(config["rcc"]["grammar"]),
                "dedup": config["rcc"]["dedup"]},
        "reasoning": {"prompt": reasoning["prompt"],
                      "system": system_prompt(reasoning["min_steps"], reasoning["max_steps"],
                                              config["levels"]["n_levels"], reasoning["prompt"]),
                      "min_steps": reasoning["min_steps"], "max_steps": reasoning["max_steps"]},
        "generation": {**config["generation"], "dtype": config["generation"]["dtype"] or config["llm"]["dtype"]},
        "levels": {"n_levels": config["levels"]["n_levels"], "edges": {cell: edges[cell] for cell in sorted(groups)}},
        "stage2": {"training": config["stage2"]["training"], "cutoff_len": config["stage2"]["cutoff_len"],
                   "best_val_pearson": {group: info.get("best_val_pearson") for group, info in infos.items()}},
        "training_data": {"dataset": config["dataset"]["name"], "train_rows": len(lengths),
                          "length_min": int(lengths.min()), "length_max": int(lengths.max())},
        "sources": {"stage1_models": stage1_models.arguments(), "stage2_models": str(models), "data": str(data)},
        "r3lm_version": __version__,
    }
    with atomic_dir(out) as tmp:
        if manifest["rationale_models"] or same_as_stage1:
            for folder, source in stage1.items():
                _link_tree(source, tmp / folder)
        if manifest["backbone"] == BACKBONE_DIR:
            _link_tree(Path(backbone), tmp / BACKBONE_DIR)
        for folder in group_dirs:
            shutil.copytree(folder, tmp / STAGE2_DIR / folder.name)
        write_json(manifest, tmp / MANIFEST)
    log.info("bundled the %s model for %s into %s in %.1f s", mode, ", ".join(manifest["cell_types"]), out,
             time.perf_counter() - started)
    return manifest


def _rationale_folder(stage1_models: Stage1Models, cell_type: str) -> str:
    return LLM_DIR if stage1_models.shared else f"{LLM_DIR}/{cell_type}"


def _rationale_folders(stage1_models: Stage1Models, groups: Mapping[str, str]) -> dict[str, str]:
    """The bundle folder of each Stage-I model its cell types need, and the model that goes there."""
    return {_rationale_folder(stage1_models, cell): stage1_models.for_cell(cell) for cell in sorted(groups)}


def _base_reference(llm: Mapping[str, Any], stage1: Path) -> dict[str, Any]:
    """Which base LLM the Stage-I model was fine-tuned from, with the provenance of the prepared folder (the
    embedded model's wheel and its SHA-256), found in the base folder or, unchanged, in the Stage-I folder."""
    source = resolve_base(dict(llm))
    provenance = next((folder / PROVENANCE_FILE for folder in (Path(source), stage1)
                       if (folder / PROVENANCE_FILE).is_file()), None)
    return {"name": llm["base"], "source": source,
            "provenance": json.loads(provenance.read_text()) if provenance else None}


def _link_tree(source: Path, target: Path) -> None:
    """Hard links where the filesystem allows (same device), copies elsewhere."""
    require_folder(source, "model folder")

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy, ignore=shutil.ignore_patterns(".*"))


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The bundle's manifest, after checking that every piece it names is there (nothing heavy is loaded)."""
    root = Path(folder)
    path = root / MANIFEST
    require_folder(root, "model folder")
    if not path.is_file():
        raise InputError(f"not an r3lm model folder: no {MANIFEST} (the workflow writes one per Stage II mode "
                         "under results/<dataset>/runs/<run>/models/)", path=root)
    manifest = read_settings(path, MANIFEST_KEYS)
    if manifest["format"] != FORMAT:
        raise InputError(f"format {manifest['format']!r} is not {FORMAT!r}: written by another r3lm version",
                         path=path)
    if manifest["mode"] not in DEPLOYABLE_MODES:
        raise InputError(f"mode {manifest['mode']!r} cannot predict new sequences", path=path)
    for piece in {*(manifest["rationale_models"] or {}).values(), manifest["backbone"]} - {None}:
        if piece.split("/")[0] in (LLM_DIR, BACKBONE_DIR):
            _require_model_dir(root / piece)
    for cell, group in manifest["groups"].items():
        for name in (MODEL_FILE, HEAD_FILE):
            if not (root / group / name).is_file():
                raise InputError(f"the {cell} model lacks {name}", path=root / group)
        if cell not in manifest["levels"]["edges"]:
            raise InputError(f"no level edges for {cell}", path=path)
    return manifest


def _require_model_dir(folder: Path) -> None:
    """Everything transformers reads from a model folder, named here: its own message would be cut to a line."""
    for name in ("config.json", "tokenizer_config.json"):
        if not (folder / name).is_file():
            raise InputError(f"the model folder lacks {name}", path=folder)
    if not (folder / "tokenizer.json").is_file() and not any(folder.glob("*.model")) \
            and not (folder / "vocab.json").is_file():
        raise InputError("the model folder has no tokenizer (tokenizer.json)", path=folder)
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise InputError("the model folder has no weights (*.safetensors)", path=folder)
