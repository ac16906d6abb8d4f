"""One path from a DNA sequence to a prediction: motif hits -> Regulatory Context Card -> the Stage-I model's
rationale -> the Stage-II prediction.

`r3lm scan` and `r3lm rcc`, the workflow's shard scans, the disruption check and a deployed bundle all go
through `SequencePipeline`, so a card is made one way wherever it is made: the motif set (release, threshold,
background) is scored once per pipeline and the card settings come from one `rcc` block. Each stage also runs
alone: hits for a scan, cards for a table, rationales for cards, predictions for rows that hold them.

Models load on first use, so a pipeline that only scans never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from r3lm.errors import InputError
from r3lm.layout import BACKBONE_DIR, LLM_DIR
from r3lm.motifs.scan import MotifSet, background_for, build_motif_set, scan_sequences
from r3lm.rcc.build import cards_for_table
from r3lm.rcc.card import CardSettings
from r3lm.rcc.evidence_tags import EvidenceTags
from r3lm.stage1.models import Stage1Models

if TYPE_CHECKING:
    from r3lm.stage1.writer import RationaleWriter
    from r3lm.stage2.predict import Stage2Predictor


BUNDLE_VLLM_GPU_SHARE = 0.5  # of a GPU's memory for a bundle's vLLM engine; the rest for Stage II and its batches


@dataclass
class RationaleStage:
    """Each cell type's Stage-I model writes the rationales of its cards. With `keep_loaded` a writer stays
    for the next call (a bundle in a design loop pays for each load once); otherwise it is freed before the
    next model loads, so one model is in memory at a time."""

    models: Stage1Models
    open_writer: Callable[[str], RationaleWriter]
    keep_loaded: bool = False
    _loaded: dict[str, RationaleWriter] = field(default_factory=dict, repr=False)

    def write(self, cards: Sequence[str], cell_types: Sequence[str], *, progress: bool = False) -> list[str]:
        """One rationale per card, in order, each from its cell type's model."""
        texts = [""] * len(cards)
        for model, cells in self.models.cells_by_model(cell_types).items():
            rows = [row for row, cell in enumerate(cell_types) if cell in cells]
            writer = self._loaded[model] if model in self._loaded else self.open_writer(model)
            if self.keep_loaded:
                self._loaded[model] = writer
            written = writer.write([cards[row] for row in rows], progress=progress)
            for row, generation in zip(rows, written, strict=True):
                texts[row] = generation.text
            if not self.keep_loaded:
                writer.close()
        return texts


@dataclass
class SequencePipeline:
    """Built once, from a workflow config (`from_config`) or a bundle (`from_bundle`)."""

    motif_settings: Mapping[str, Any]
    background: np.ndarray | None  # None: `background: input` without the sequences to estimate it from
    card_settings: CardSettings
    rationale_stage: RationaleStage | None = None
    stage2_folders: Mapping[str, Path] = field(default_factory=dict)  # cell type -> Stage-II model folder
    open_predictor: Callable[[Path], Stage2Predictor] | None = None
    threads: int = 2
    scan_device: str = "cpu"
    _motif_set: MotifSet | None = field(default=None, repr=False)
    _predictors: dict[Path, Stage2Predictor] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], background_sequences: Sequence[str] | None = None, *,
                    with_grammar: bool | None = None, stage1_models: Stage1Models | None = None, threads: int = 2,
                    device: str = "cpu", evidence_tags: EvidenceTags | None = None) -> SequencePipeline:
        """The workflow's `motifs` and `rcc` settings (`with_grammar` overrides rcc.grammar_tags; the cards show
        `evidence_tags` when given) and its `generation` settings for `stage1_models`; `background_sequences`
        are needed for `background: input` only, and `device` is where the scan runs."""
        motifs = config["motifs"]
        background = (None if background_sequences is None and motifs["background"] == "input"
                      else background_for(motifs, background_sequences or []))
        rationales = None
        if stage1_models is not None:
            from r3lm.stage1.writer import RationaleWriter

            rationales = RationaleStage(stage1_models, partial(RationaleWriter.from_config, config))
        return cls(motifs, background, CardSettings.from_config(config["rcc"], with_grammar=with_grammar,
                                                                evidence_tags=evidence_tags),
                   rationales, threads=threads, scan_device=device)

    @classmethod
    def from_bundle(cls, folder: Path, manifest: Mapping[str, Any], *, device: str, batch_size: int,
                    backend: str = "hf") -> SequencePipeline:
        """A bundle's own settings and models (`deploy.bundle`), kept loaded once loaded; rationales are written
        through `backend` (generation.backend's words: `auto` takes vLLM where it is installed for the device).
        vLLM starts ~20 s later on a CPU and then writes twice as fast as transformers at batch 8 (docs/usage.md);
        on a GPU it is given BUNDLE_VLLM_GPU_SHARE, so the Stage-II backbone has room beside it."""
        from r3lm.stage2.predict import Stage2Predictor

        rationales = None
        if manifest["rationale_models"]:
            from r3lm.rationale.format import RationaleFormat
            from r3lm.stage1.writer import RationaleWriter

            generation = {**manifest["generation"], "backend": backend}
            reasoning = manifest["reasoning"]
            rationale_format = RationaleFormat(reasoning["system"], reasoning["min_steps"], reasoning["max_steps"],
                                               int(manifest["levels"]["n_levels"]), reasoning["prompt"])

            def open_writer(model: str) -> RationaleWriter:
                return RationaleWriter.open(folder / model, {**generation, "batch_size": batch_size},
                                            rationale_format, dtype=generation["dtype"], device=device,
                                            gpu_share=BUNDLE_VLLM_GPU_SHARE)

            rationales = RationaleStage(Stage1Models(manifest["rationale_models"]), open_writer, keep_loaded=True)
        return replace(cls.from_recipe(manifest), rationale_stage=rationales,
                       stage2_folders={cell: folder / group for cell, group in manifest["groups"].items()},
                       open_predictor=partial(Stage2Predictor.load, device=device,
                                              backbone=bundle_backbone(folder, manifest)))

    @classmethod
    def from_recipe(cls, manifest: Mapping[str, Any]) -> SequencePipeline:
        """Cards made as a bundle's training cards were (its motifs, background, rcc settings and evidence tags),
        no models: what a card-reading baseline such as the motif ridge needs."""
        tags = manifest.get("evidence_tags")
        return cls(manifest["motifs"], np.asarray(manifest["background"]),
                   CardSettings.from_config(manifest["rcc"], evidence_tags=tags and EvidenceTags.from_json(tags)))

    @property
    def motif_set(self) -> MotifSet:
        """Scored on first use: scoring every matrix of a release takes seconds."""
        if self._motif_set is None:
            if self.background is None:
                raise InputError("motifs.background is input: the scan needs the sequences to estimate it from")
            self._motif_set = build_motif_set(self.motif_settings, self.background)
        return self._motif_set

    def hits(self, table: pd.DataFrame, *, progress: bool = True) -> pd.DataFrame:
        """The motif hits (`HIT_COLUMNS`) of a table's `id` and `sequence` columns."""
        return scan_sequences(table["id"].tolist(), table["sequence"].tolist(), self.motif_set,
                              threads=self.threads, device=self.scan_device, progress=progress)

    def cards(self, table: pd.DataFrame, *, progress: bool = True) -> pd.DataFrame:
        """One card per (`id`, `sequence`, `cell_type`) row (`cards_for_table`); a sequence in several cell types
        is scanned once."""
        hits = self.hits(table.drop_duplicates("id"), progress=progress)
        return cards_for_table(table, hits, self.card_settings, progress=progress)

    def rationales(self, cards: Sequence[str], cell_types: Sequence[str], *, progress: bool = False) -> list[str]:
        """One rationale per card text, each from its cell type's Stage-I model."""
        if self.rationale_stage is None:
            raise InputError("no Stage-I model to write rationales with")
        return self.rationale_stage.write(cards, cell_types, progress=progress)

    def predict(self, rows: pd.DataFrame, cell_type: str, batch_size: int) -> np.ndarray:
        """The cell type's Stage-II prediction for rows with their card (and rationale in the cot modes)."""
        if self.open_predictor is None:
            raise InputError("no Stage II model to predict with")
        folder = self.stage2_folders[cell_type]
        if folder not in self._predictors:
            self._predictors[folder] = self.open_predictor(folder)
        return self._predictors[folder].predict(rows, batch_size)


def bundle_backbone(folder: Path, manifest: Mapping[str, Any]) -> Path | str:
    """The Stage-II backbone: a folder inside the bundle, or the hub id it records."""
    backbone = manifest["backbone"]
    return folder / backbone if backbone in (LLM_DIR, BACKBONE_DIR) else backbone
