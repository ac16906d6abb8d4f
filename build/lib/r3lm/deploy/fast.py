"""Fast bundles: the CNN and motif-ridge baselines as deployable models, for scoring at scale.

    from r3lm import load
    model = load("results/demo/runs/main/models/cnn")
    table = model.score({"wt": "ACGT...", "variant": "ACGA..."})  # every cell type; or a list of them

`score` returns one row per sequence, in input order: id, then `predicted_<cell type>` and `level_<cell type>`
(0 = lowest, on the training data's level edges) per cell type. The CNN scores every cell type in one forward
pass, both strands averaged; the ridge scans each sequence once with the bundle's motif release, threshold and
background, and applies every cell type's ridge to its card's motif counts. `predict` is the bare matrix
(sequences x cell types, in `cell_types` order) that variant scoring and mutagenesis build on.

Both kinds read A, C, G, T and N (an N is all zeros to the CNN, a position no motif matches to the scan).
Predictions of an LLM bundle need a card (and in generated_cot a rationale) per sequence and cell type; that
path stays r3lm.deploy.scorer's, whose steps variant scoring and mutagenesis run for an LLM bundle instead.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from r3lm.baselines.motif_ridge import card_features, load_motif_ridge
from r3lm.data.sequences import check_sequence_frame
from r3lm.deploy.bundle import LoadedBundle, read_fast_manifest
from r3lm.errors import InputError
from r3lm.logs import shortlist
from r3lm.pipeline import SequencePipeline

log = logging.getLogger(__name__)

SCORE_CHUNK = 4096  # sequences per progress step


PREDICTED_PREFIX = "predicted_"


def predicted_column(cell_type: str) -> str:
    return f"{PREDICTED_PREFIX}{cell_type}"


def level_column(cell_type: str) -> str:
    return f"level_{cell_type}"


class FastModel(LoadedBundle, ABC):
    """A loaded fast bundle: a model from sequences to activity in every cell type it was trained on."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder, self.manifest = folder, manifest

    @abstractmethod
    def predict(self, sequences: Sequence[str]) -> np.ndarray:
        """Activity (sequences, `cell_types`) for checked upper-case sequences of A, C, G, T and N."""

    def score(self, sequences: Iterable[str] | Mapping[str, str] | pd.Series,
              cell_types: str | Iterable[str] | None = None, *, progress: bool = False) -> pd.DataFrame:
        """One row per sequence: id, and per cell type its predicted activity and level. Plain sequences get
        ids seq1, seq2, ..."""
        chosen = self.check_cell_types(cell_types)
        ids, texts = named_sequences(sequences, allow_n=True)
        warn_on_length(self.manifest, ids, texts)
        started = time.perf_counter()
        parts = []
        with tqdm(total=len(texts), desc=f"predict ({self.kind})", unit="seq", disable=not progress) as bar:
            for first in range(0, len(texts), SCORE_CHUNK):
                parts.append(self.predict(texts[first:first + SCORE_CHUNK]))
                bar.update(len(parts[-1]))
        seconds = time.perf_counter() - started
        log.info("scored %d sequences in %d cell types with the %s bundle in %.2f s (%.0f sequences/s)",
                 len(texts), len(chosen), self.kind, seconds, len(texts) / max(seconds, 1e-9))
        return self.score_table(ids, np.concatenate(parts), chosen)

    def score_table(self, ids: Sequence[str], predicted: np.ndarray, cell_types: Sequence[str]) -> pd.DataFrame:
        """`predict`'s matrix as the score table: the chosen cell types' activities and levels."""
        columns: dict[str, Any] = {"id": list(ids)}
        for cell in cell_types:
            values = predicted[:, self.cell_types.index(cell)]
            columns[predicted_column(cell)] = values
            columns[level_column(cell)] = self.levels(values, cell)
        return pd.DataFrame(columns)


class CNNBundle(FastModel):
    """LegNet with one output per cell type: every cell type from one forward pass per strand."""

    def __init__(self, folder: Path, manifest: dict[str, Any], device: str, batch_size: int | None) -> None:
        # torch loads with the model, not with this module
        from r3lm.baselines.cnn import load_trained

        super().__init__(folder, manifest)
        self.model = load_trained(folder / manifest["model_file"], device)
        if self.model.cell_types != self.cell_types:
            raise InputError(f"the model predicts {self.model.cell_types}, the manifest says {self.cell_types}",
                             path=folder)
        self.model.batch_size = batch_size or self.model.batch_size

    def predict(self, sequences: Sequence[str]) -> np.ndarray:
        return self.model.predict(list(sequences))


class RidgeBundle(FastModel):
    """The motif-count ridge: a sequence's card is built once and every cell type's ridge reads its counts."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        super().__init__(folder, manifest)
        self.model = load_motif_ridge(folder / manifest["model_file"])
        self.pipeline = SequencePipeline.from_recipe(manifest)  # its motif set is scored on first use, then kept

    def predict(self, sequences: Sequence[str]) -> np.ndarray:
        rows = pd.DataFrame({"id": [f"s{index}" for index in range(len(sequences))], "sequence": list(sequences),
                             "cell_type": self.cell_types[0]})  # a card's motifs do not depend on its cell type
        features = card_features(self.pipeline.cards(rows, progress=False)).matrix(self.model.families)
        return np.column_stack([self.model.cells[cell].predict(features) for cell in self.cell_types])


def load_fast(folder: str | Path, *, device: str = "auto", batch_size: int | None = None) -> FastModel:
    """A fast bundle (checked: manifest, model file, level edges), loaded; `device` and `batch_size` apply to
    the CNN (None: the batch it was trained with)."""
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    root = Path(folder)
    manifest = read_fast_manifest(root)
    if manifest["kind"] == "cnn":
        return CNNBundle(root, manifest, device, batch_size)
    return RidgeBundle(root, manifest)


def named_sequences(sequences: Iterable[str] | Mapping[str, str] | pd.Series, *,
                    allow_n: bool) -> tuple[list[str], list[str]]:
    """(ids, upper-case sequences), checked: a model reads A, C, G and T only (and N where `allow_n`)."""
    if isinstance(sequences, str):
        raise InputError("pass a list of sequences (or a mapping from id to sequence), not one string")
    if isinstance(sequences, (pd.Series, Mapping)):
        pairs = [(str(key), value) for key, value in sequences.items()]
    else:
        pairs = [(f"seq{index}", value) for index, value in enumerate(sequences, start=1)]
    if not pairs:
        raise InputError("no sequences to score")
    frame = check_sequence_frame(pd.DataFrame(pairs, columns=["id", "sequence"]), allow_n=allow_n)
    return frame["id"].tolist(), frame["sequence"].tolist()


def warn_on_length(manifest: Mapping[str, Any], ids: list[str], texts: list[str]) -> None:
    """Name the sequences outside the bundle's training lengths: their predictions extrapolate."""
    trained = manifest.get("training_data") or {}
    low, high = trained.get("length_min"), trained.get("length_max")
    if low is None:
        return
    outside = [f"{name} ({len(text)} bp)" for name, text in zip(ids, texts, strict=True)
               if not low <= len(text) <= high]
    if outside:
        log.warning("%d of %d sequences are outside the training lengths %d-%d bp, so their predictions "
                    "extrapolate: %s", len(outside), len(texts), low, high, shortlist(outside))
