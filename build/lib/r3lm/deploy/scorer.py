"""Predict and explain new sequences with a bundle: the Python API behind `r3lm predict` and `r3lm explain`.

    from r3lm import load
    model = load("results/demo/runs/main/models/generated_cot")
    table = model.score({"wt": "ACGT...", "variant": "ACGA..."}, "HepG2")

Each sequence goes through the steps the model was trained on: a FIMO-exact scan with the bundle's motif
release, threshold and background; its Regulatory Context Card; the Stage-I model's rationale from the card
alone (generated_cot); and the Stage-II regressor, whose activity is placed on the training levels.
Rationales are sampled with the bundle's settings, seeded per batch, so the same input in the same batches
gives the same output.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from r3lm.deploy.bundle import FAST_FORMAT, LoadedBundle, manifest_format, read_manifest
from r3lm.deploy.fast import FastModel, load_fast, named_sequences, warn_on_length
from r3lm.errors import InputError
from r3lm.pipeline import SequencePipeline, bundle_backbone
from r3lm.rationale.claims import cited_motifs
from r3lm.rationale.format import level_name, parse

log = logging.getLogger(__name__)

SCORE_COLUMNS = ["id", "cell_type", "predicted", "level", "rationale", "rationale_level", "drivers"]
CPU_BATCH = 8
MAX_GPU_BATCH = 256
# bytes per token per layer and hidden unit while generating: keys and values cached, activations in flight
GPU_BYTES_PER_TOKEN_UNIT = 16


def auto_batch_size(device: str, hidden_size: int, num_layers: int, tokens: int) -> int:
    """Sequences per batch: a few on a CPU (more only waits longer per bar step), and what half of the free
    GPU memory holds at `tokens` per sequence on a GPU."""
    if not device.startswith("cuda"):
        return CPU_BATCH
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    per_sequence = tokens * hidden_size * num_layers * GPU_BYTES_PER_TOKEN_UNIT
    return int(np.clip(free // 2 // per_sequence, 1, MAX_GPU_BATCH))


@dataclass
class R3LM(LoadedBundle):
    """A loaded bundle. Models load on first use and stay loaded, so a design loop pays for them once.

    `score` runs every step for new sequences; `card_rows`, `write_rationales` and `predict_rows` are the steps
    alone, for callers that decide which rows need a new rationale (variants, mutagenesis)."""

    folder: Path
    manifest: dict[str, Any]
    device: str
    batch_size: int | None = None
    backend: str = "hf"  # writes the rationales (generation.backend's words; `r3lm predict` takes auto)
    _pipeline: SequencePipeline | None = field(default=None, repr=False)

    @classmethod
    def load(cls, folder: str | Path, *, device: str = "auto", batch_size: int | None = None,
             backend: str = "hf") -> R3LM:
        """Check the bundle (every piece present); `device` auto picks a CUDA GPU when there is one,
        `batch_size` None sizes batches to the device, and `backend` writes the rationales: hf, transformers,
        starts fastest (one sequence, as `explain` scores); auto takes vLLM where it is installed for the device,
        which starts in ~30 s on a CPU and then writes twice as fast (a design loop, `r3lm predict`)."""
        import torch

        if batch_size is not None and batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        root = Path(folder)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"device {device} asked for, but no CUDA GPU is visible; use --device cpu or auto")
        return cls(root, read_manifest(root), device, batch_size, backend)

    @property
    def mode(self) -> str:
        return self.manifest["mode"]

    @property
    def writes_rationales(self) -> bool:
        """Whether the bundle has a Stage-I model: generated_cot's regressor reads its rationale, so there every
        prediction needs one; rcc_only and sequence_only predict without."""
        return bool(self.manifest["rationale_models"])

    def score(self, sequences: Iterable[str] | Mapping[str, str] | pd.Series, cell_type: str, *,
              with_card: bool = False, progress: bool = False) -> pd.DataFrame:
        """One row per sequence, in input order: id, cell_type, predicted activity, level (0 = lowest, on the
        training data's levels), rationale and the level it states (None without a rationale), and with
        `with_card` the card text. Plain sequences get ids seq1, seq2, ..."""
        self.check_cell_types(cell_type)
        ids, texts = named_sequences(sequences, allow_n=False)
        self._warn_on_length(ids, texts)
        started = time.perf_counter()
        chunk = self.batch * 4  # a progress step: scan, cards, rationales and regression for this many sequences
        frames = []
        with tqdm(total=len(texts), desc=f"predict {cell_type}", unit="seq", disable=not progress) as bar:
            for first in range(0, len(texts), chunk):
                frames.append(self._score_chunk(ids[first:first + chunk], texts[first:first + chunk], cell_type))
                bar.update(len(frames[-1]))
        table = pd.concat(frames, ignore_index=True)
        seconds = time.perf_counter() - started
        log.info("scored %d sequences for %s with the %s model in %.1f s (%.2f sequences/s, batch %d, %s)",
                 len(table), cell_type, self.mode, seconds, len(table) / max(seconds, 1e-9), self.batch, self.device)
        return table if with_card else table.drop(columns="card")

    def explain(self, sequence: str, cell_type: str) -> Explanation:
        """One sequence's card, rationale (with the level it states) and prediction."""
        row = self.score({"query": sequence}, cell_type, with_card=True).iloc[0]
        stated = row["rationale_level"]
        return Explanation(cell_type=cell_type, mode=self.mode, card=row["card"], rationale=row["rationale"],
                           stated_level=None if pd.isna(stated) else int(stated), predicted=float(row["predicted"]),
                           level=int(row["level"]), n_levels=int(self.manifest["levels"]["n_levels"]),
                           edges=self.edges(cell_type))

    @property
    def batch(self) -> int:
        """Sequences per batch, sized to the device once, on first use, when not given: a design loop then
        reads no config per call."""
        if self.batch_size is None:
            self.batch_size = self._auto_batch()
        return self.batch_size

    @property
    def pipeline(self) -> SequencePipeline:
        """Built on first use, once the batch size is known: the Stage-I model writes in batches of it."""
        if self._pipeline is None:
            self._pipeline = SequencePipeline.from_bundle(self.folder, self.manifest, device=self.device,
                                                          batch_size=self.batch, backend=self.backend)
        return self._pipeline

    def card_rows(self, sequences: Sequence[str], cell_types: Sequence[str]) -> pd.DataFrame:
        """One row per sequence and cell type, sequence by sequence (ids s0, s1, ... by position): sequence,
        cell_type, card_json and card_text; each sequence is scanned once."""
        rows = pd.DataFrame({"id": np.repeat([f"s{index}" for index in range(len(sequences))], len(cell_types)),
                             "sequence": np.repeat(list(sequences), len(cell_types)),
                             "cell_type": np.tile(list(cell_types), len(sequences))})
        cards = self._cards(rows)
        return rows.assign(card_json=cards["card_json"].tolist(), card_text=cards["card_text"].tolist())

    def write_rationales(self, rows: pd.DataFrame, *, progress: bool = False) -> list[str]:
        """A rationale per row of `card_rows`, each by its cell type's Stage-I model."""
        return self._rationales(rows["card_text"].tolist(), rows["cell_type"].tolist(), progress=progress)

    def predict_rows(self, rows: pd.DataFrame) -> np.ndarray:
        """Activity per row of `card_rows` (with `rationale` where the mode reads one), each by its cell type's
        Stage-II model."""
        predicted = np.zeros(len(rows))
        for cell, part in rows.groupby("cell_type", sort=False):
            predicted[rows["cell_type"].to_numpy() == cell] = self.pipeline.predict(part, str(cell), self.batch)
        return predicted

    def _score_chunk(self, ids: list[str], texts: list[str], cell_type: str) -> pd.DataFrame:
        rows = self.card_rows(texts, [cell_type])
        rows["rationale"] = self.write_rationales(rows) if self.writes_rationales else None
        predicted = self.predict_rows(rows)
        stated = [parse(text).level if isinstance(text, str) else None for text in rows["rationale"]]
        return pd.DataFrame({"id": ids, "cell_type": cell_type, "predicted": predicted,
                             "level": self.levels(predicted, cell_type),
                             "rationale": rows["rationale"], "rationale_level": pd.array(stated, dtype="Int64"),
                             "drivers": [_drivers(text, card) for text, card in zip(rows["rationale"],
                                                                                     rows["card_json"], strict=True)],
                             "card": rows["card_text"]})

    def score_cell_types(self, sequences: Iterable[str] | Mapping[str, str] | pd.Series, cell_types: Sequence[str],
                         *, progress: bool = False) -> pd.DataFrame:
        """One row per sequence with `<column>_<cell type>` for each scored column, the shape of a fast bundle's
        table (`r3lm.deploy.fast`), so that specificity reads both alike."""
        wide = None
        for cell in self.check_cell_types(cell_types):
            scored = self.score(sequences, cell, progress=progress).drop(columns="cell_type")
            scored = scored.rename(columns={column: f"{column}_{cell}" for column in scored.columns if column != "id"})
            wide = scored if wide is None else wide.merge(scored, on="id", validate="one_to_one", sort=False)
        return wide

    def _cards(self, rows: pd.DataFrame) -> pd.DataFrame:
        return self.pipeline.cards(rows, progress=False)

    def _rationales(self, cards: list[str], cell_types: list[str], *, progress: bool = False) -> list[str]:
        """Each cell type's Stage-I model writes its cards' (one shared model, or its own with per-cell-type
        Stage I)."""
        return self.pipeline.rationales(cards, cell_types, progress=progress)

    def _auto_batch(self) -> int:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(bundle_backbone(self.folder, self.manifest)))
        tokens = int(self.manifest["stage2"]["cutoff_len"])
        return auto_batch_size(self.device, config.hidden_size, config.num_hidden_layers, tokens)

    def _warn_on_length(self, ids: list[str], texts: list[str]) -> None:
        warn_on_length(self.manifest, ids, texts)


@dataclass(frozen=True)
class Explanation:
    """One sequence's prediction and the reasoning beside it. `predicted` and `level` are Stage II's, the
    prediction; `stated_level` is the level the Stage-I rationale concludes from the card (None when it states
    none), a call of its own that can disagree with the prediction."""

    cell_type: str
    mode: str
    card: str
    rationale: str | None
    stated_level: int | None
    predicted: float
    level: int
    n_levels: int
    edges: list[float]

    @property
    def agrees(self) -> bool | None:
        """Whether the rationale states the predicted level; None when there is no stated level to compare."""
        return None if self.stated_level is None else self.stated_level == self.level

    def to_text(self) -> str:
        """Readable in a terminal: the prediction first, labelled as Stage II's, then whether the rationale's
        own level agrees with it, then the card and the reasoning."""
        bounds = [f"{edge:.3g}" for edge in self.edges]
        scale = " | ".join(f"L{level}" + (f" < {bounds[level]}" if level < len(bounds) else "")
                           for level in range(self.n_levels))
        lines = [(f"Stage II prediction for {self.cell_type}: activity {self.predicted:.3f}, level {self.level} of "
                  f"0-{self.n_levels - 1} ({level_name(self.level, self.n_levels)})"),
                 f"Levels on the training data: {scale}"]
        lines += [self._agreement()] if self.rationale is not None else []
        lines += [f"Model: {self.mode}", "", "== Regulatory Context Card ==", self.card, ""]
        lines += ["== Rationale ==", self.rationale] if self.rationale is not None else \
            ["(this model reads no rationale)"]
        return "\n".join(lines)

    def _agreement(self) -> str:
        """The rationale's level beside the prediction's, said plainly when they differ: a reader who meets
        the rationale's conclusion last would otherwise take it for the prediction."""
        predicted = f"Stage II predicts level {self._words(self.level)}"
        if self.stated_level is None:
            return f"The rationale states no level; {predicted}."
        if self.agrees:
            return f"The rationale states level {self._words(self.stated_level)}, as Stage II predicts."
        return (f"The rationale states level {self._words(self.stated_level)}; {predicted}: they disagree, and the "
                "prediction is Stage II's.")

    def _words(self, level: int) -> str:
        """`2 (moderate)`; a stated level off the scale (the rationale wrote it) says so rather than failing."""
        known = 0 <= level < self.n_levels
        return f"{level} ({level_name(level, self.n_levels) if known else f'not one of 0-{self.n_levels - 1}'})"


def _drivers(rationale: str | None, card_json: str) -> str | None:
    """The card motifs the rationale says favour activity, comma-separated: what drives its call."""
    if not isinstance(rationale, str):
        return None
    return ", ".join(name for name, sign in cited_motifs(rationale, card_json).items() if sign > 0)


@lru_cache(maxsize=4)
def load(folder: str | Path, device: str = "auto", batch_size: int | None = None,
         backend: str = "hf") -> R3LM | FastModel:
    """A bundle, loaded once per (folder, device, batch size, backend) and then reused: an LLM bundle as `R3LM`
    (`backend`: see `R3LM.load`), a baseline's fast bundle (CNN, motif ridge) as `r3lm.deploy.fast.FastModel`,
    by its manifest's format."""
    if manifest_format(folder) == FAST_FORMAT:
        return load_fast(folder, device=device, batch_size=batch_size)
    return R3LM.load(folder, device=device, batch_size=batch_size, backend=backend)


def score(sequences: Iterable[str] | Mapping[str, str] | pd.Series, cell_type: str, *, model: str | Path,
          with_card: bool = False, device: str = "auto") -> pd.DataFrame:
    """Predictions and rationales for `sequences` in `cell_type` (see `R3LM.score`), batched; a fast bundle
    has no card or rationale and answers with its score table (see `FastModel.score`)."""
    loaded = load(str(model), device)
    if isinstance(loaded, FastModel):
        if with_card:
            raise InputError(f"the {loaded.kind} bundle builds no cards: score without with_card", path=model)
        return loaded.score(sequences, cell_type)
    return loaded.score(sequences, cell_type, with_card=with_card)
