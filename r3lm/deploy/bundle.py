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

A baseline becomes a fast bundle (format r3lm-fast-bundle/1, read by r3lm.deploy.fast) the same way:

    <bundle>/
      r3lm_bundle.json       manifest: kind (cnn, motif_ridge), cell types in the model's output order, level
                             edges, training lengths, the baseline's settings; for the ridge the motif and card
                             settings its features are counted with
      model.pt | model.json  the CNN's weights and target scaling (all folds when cross-validated), or the ridge
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from r3lm._version import __version__
from r3lm.baselines.motif_ridge import MODEL_FILE as RIDGE_MODEL_FILE
from r3lm.baselines.motif_ridge import load_motif_ridge
from r3lm.data.levels import assign_levels
from r3lm.errors import InputError, require_file, require_folder
from r3lm.hub import local_copy
from r3lm.io import atomic_dir, write_json
from r3lm.layout import BACKBONE_DIR, LLM_DIR, STAGE2_DIR
from r3lm.llm.base import PROVENANCE_FILE, resolve_base
from r3lm.motifs.dataset import dataset_sequences
from r3lm.motifs.scan import background_for
from r3lm.predictions import level_edges_from_summary
from r3lm.rationale.format import system_prompt
from r3lm.rcc.evidence_tags import EvidenceTags
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
# Fast bundles: a baseline that scores a sequence in milliseconds (r3lm.deploy.fast reads them)
FAST_FORMAT = "r3lm-fast-bundle/1"
FAST_KINDS = ("cnn", "motif_ridge")
FAST_MANIFEST_KEYS = ("format", "kind", "cell_types", "model_file", "levels", "training_data")
MANIFEST_KEYS = ("format", "mode", "cell_types", "groups", "backbone", "rationale_models", "motifs", "background",
                 "rcc", "reasoning", "generation", "levels", "stage2")


class LoadedBundle:
    """What a loaded bundle of either kind reads alike from its manifest, so that the commands built on it
    (predict, variants, mutagenesis) treat an LLM bundle and a fast one the same way."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def kind(self) -> str:
        """What the bundle holds, as logs and titles name it: its baseline (cnn, motif_ridge) or Stage-II mode."""
        return str(self.manifest["kind"] if "kind" in self.manifest else self.manifest["mode"])

    @property
    def cell_types(self) -> list[str]:
        return list(self.manifest["cell_types"])

    @property
    def sequence_length(self) -> int:
        """The longest training sequence: the window a variant is scored in."""
        return int(self.manifest["training_data"]["length_max"])

    def edges(self, cell_type: str) -> list[float]:
        return list(self.manifest["levels"]["edges"][cell_type])

    def levels(self, predicted: np.ndarray, cell_type: str) -> np.ndarray:
        """0 = lowest, on the training data's level edges."""
        return assign_levels(predicted, self.edges(cell_type)).astype(int)

    def check_cell_types(self, cell_types: str | Iterable[str] | None) -> list[str]:
        """The cell types asked for, in the order asked, each once (all of the model's for None)."""
        if cell_types is None:
            return self.cell_types
        chosen = list(dict.fromkeys([cell_types] if isinstance(cell_types, str) else cell_types))
        unknown = [cell for cell in chosen if cell not in self.cell_types]
        if unknown or not chosen:
            raise InputError(f"unknown cell type {unknown[0] if unknown else '(none given)'!r}: this model "
                             f"predicts {', '.join(self.cell_types)}", path=self.folder)
        return chosen


def write_bundle(config: Mapping[str, Any], mode: str, stage2_models: str | Path, stage1_models: Stage1Models,
                 data_dir: str | Path, out: str | Path, *, evidence_tags: EvidenceTags | None = None
                 ) -> dict[str, Any]:
    """Gather a Stage-II run's model folders (`model/<group>/`), the Stage-I model(s), the dataset's level
    edges and training lengths and the cards' evidence tags (rcc.evidence_tags) into `out`, atomically;
    returns the manifest."""
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
    levels = _levels(config, data, sorted(groups))
    reasoning = config["reasoning"]
    manifest = {
        "format": FORMAT, "mode": mode, "cell_types": sorted(groups),
        "groups": {cell: f"{STAGE2_DIR}/{group}" for cell, group in sorted(groups.items())},
        "backbone": LLM_DIR if same_as_stage1 else (BACKBONE_DIR if Path(backbone).is_dir() else backbone),
        "rationale_models": ({cell: _rationale_folder(stage1_models, cell) for cell in sorted(groups)}
                             if mode == "generated_cot" else None),
        "base_model": _base_reference(config["llm"], next(iter(stage1.values()))),
        **card_recipe(config, data),
        "evidence_tags": _bundled_tags(config, evidence_tags, sorted(groups)),
        "reasoning": {"prompt": reasoning["prompt"],
                      "system": system_prompt(reasoning["min_steps"], reasoning["max_steps"],
                                              config["levels"]["n_levels"], reasoning["prompt"]),
                      "min_steps": reasoning["min_steps"], "max_steps": reasoning["max_steps"]},
        "generation": {**config["generation"], "dtype": config["generation"]["dtype"] or config["llm"]["dtype"]},
        "levels": levels,
        "stage2": {"training": config["stage2"]["training"], "cutoff_len": config["stage2"]["cutoff_len"],
                   "best_val_pearson": {group: info.get("best_val_pearson") for group, info in infos.items()}},
        "training_data": _training_data(config, data),
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


def card_recipe(config: Mapping[str, Any], data: Path) -> dict[str, Any]:
    """How a sequence becomes a card, as the workflow made them: motif release, threshold and background
    (estimated from the dataset for `input`), and the card settings."""
    motifs = dict(config["motifs"])
    background = background_for(motifs, dataset_sequences(data)["sequence"].tolist()
                                if motifs["background"] == "input" else [])
    return {"motifs": motifs, "background": [float(value) for value in background],
            "rcc": {"grammar_tags": config["rcc"]["grammar_tags"], "grammar": dict(config["rcc"]["grammar"]),
                    "dedup": config["rcc"]["dedup"], "max_motifs": config["rcc"]["max_motifs"]}}


def _bundled_tags(config: Mapping[str, Any], evidence_tags: EvidenceTags | None,
                  cell_types: list[str]) -> dict[str, Any] | None:
    """The tags the training cards showed, for the bundle's cell types; refused when the config and the
    tags given disagree, since new cards would then differ from the ones the models learned from."""
    if config["rcc"]["evidence_tags"] != (evidence_tags is not None):
        raise InputError("rcc.evidence_tags is on but no evidence tags were given (--evidence-tags)"
                         if evidence_tags is None else "evidence tags were given but rcc.evidence_tags is off")
    if evidence_tags is None:
        return None
    missing = sorted(set(cell_types) - set(evidence_tags.cells))
    if missing:
        raise InputError(f"the evidence tags have no entry for {', '.join(missing)}")
    return evidence_tags.subset(cell_types).to_json()


def _levels(config: Mapping[str, Any], data: Path, cell_types: list[str]) -> dict[str, Any]:
    """The training level edges of each cell type the bundle predicts."""
    edges = level_edges_from_summary(data / "summary.json")
    missing = sorted(set(cell_types) - set(edges))
    if missing:
        raise InputError(f"no level edges for {', '.join(missing)}", path=data / "summary.json")
    return {"n_levels": config["levels"]["n_levels"], "edges": {cell: edges[cell] for cell in cell_types}}


def _training_data(config: Mapping[str, Any], data: Path) -> dict[str, Any]:
    """The training lengths: outside them a prediction extrapolates."""
    lengths = pd.read_parquet(data / "train.parquet", columns=["sequence"])["sequence"].str.len()
    return {"dataset": config["dataset"]["name"], "train_rows": len(lengths),
            "length_min": int(lengths.min()), "length_max": int(lengths.max())}


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
    shutil.copytree(source, target, copy_function=_link_file, ignore=shutil.ignore_patterns(".*"))


def _link_file(source: str | Path, target: str | Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def manifest_path(folder: str | Path) -> Path:
    root = require_folder(folder, "model folder")
    path = root / MANIFEST
    if not path.is_file():
        raise InputError(f"not an r3lm model folder: no {MANIFEST} (the workflow writes one per Stage II mode "
                         "under results/<dataset>/runs/<run>/models/)", path=root)
    return path


def manifest_format(folder: str | Path) -> str:
    """Which kind of bundle a folder holds (FORMAT or FAST_FORMAT), read before anything is checked or loaded."""
    return str(read_settings(manifest_path(folder), ("format",))["format"])


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The bundle's manifest, after checking that every piece it names is there (nothing heavy is loaded)."""
    root = Path(folder)
    path = manifest_path(root)
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


def write_baseline_bundle(config: Mapping[str, Any], kind: str, model_dir: str | Path, data_dir: str | Path,
                          out: str | Path) -> dict[str, Any]:
    """A fast bundle from a baseline's folder (the CNN's model.pt, the ridge's model.json, beside their
    predictions and summary.json), with the dataset's level edges and training lengths; returns the manifest.

    CLI (the package_baseline rule): r3lm step package-baseline --config JSON --kind {cnn,motif_ridge}
         --model-dir <baseline predictions folder> --data-dir <dataset folder> --out <bundle folder>
    """
    started = time.perf_counter()
    if kind not in FAST_KINDS:
        raise InputError(f"unknown baseline {kind!r}; bundled baselines: {', '.join(FAST_KINDS)}")
    model_file, cell_types = _baseline_model(kind, Path(model_dir))
    summary = require_file(Path(model_dir) / "summary.json", "baseline summary (written last, on completion)")
    data = Path(data_dir)
    manifest = {
        "format": FAST_FORMAT, "kind": kind, "cell_types": cell_types, "model_file": model_file.name,
        "levels": _levels(config, data, cell_types), "training_data": _training_data(config, data),
        **(card_recipe(config, data) if kind == "motif_ridge" else {}),
        "baseline": {key: value for key, value in json.loads(summary.read_text()).items()
                     if key in ("method", "settings", "val_pearson", "alpha", "best_epoch", "train_sequences")},
        "sources": {"model": str(model_dir), "data": str(data)},
        "r3lm_version": __version__,
    }
    with atomic_dir(out) as tmp:
        _link_file(model_file, tmp / model_file.name)
        write_json(manifest, tmp / MANIFEST)
    log.info("bundled the %s baseline for %s into %s in %.1f s", kind, ", ".join(cell_types), out,
             time.perf_counter() - started)
    return manifest


def _baseline_model(kind: str, model_dir: Path) -> tuple[Path, list[str]]:
    """The baseline's model file and its cell types, in the order of the model's outputs."""
    if kind == "motif_ridge":
        file = model_dir / RIDGE_MODEL_FILE
        return file, sorted(load_motif_ridge(file).cells)
    import torch

    from r3lm.baselines.cnn import MODEL_FILE

    file = require_file(model_dir / MODEL_FILE, "CNN model")
    return file, [str(cell) for cell in torch.load(file, map_location="cpu", weights_only=True)["cell_types"]]


def read_fast_manifest(folder: str | Path) -> dict[str, Any]:
    """A fast bundle's manifest, checked: its model file and the level edges of every cell type are there."""
    root = Path(folder)
    path = manifest_path(root)
    manifest = read_settings(path, FAST_MANIFEST_KEYS)
    if manifest["format"] != FAST_FORMAT:
        raise InputError(f"format {manifest['format']!r} is not {FAST_FORMAT!r}", path=path)
    if manifest["kind"] not in FAST_KINDS:
        raise InputError(f"unknown baseline {manifest['kind']!r} (known: {', '.join(FAST_KINDS)})", path=path)
    require_file(root / manifest["model_file"], f"{manifest['kind']} model file")
    missing = sorted(set(manifest["cell_types"]) - set(manifest["levels"]["edges"]))
    if missing:
        raise InputError(f"no level edges for {', '.join(missing)}", path=path)
    return manifest
