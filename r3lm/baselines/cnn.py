"""A specialised sequence CNN: the bar a model reading raw DNA sets on the same splits.

The body follows LegNet (Penzar et al. 2023): EfficientNet-style inverted-bottleneck blocks (1x1
expand, depthwise conv, squeeze-and-excitation, 1x1 project, BatchNorm, SiLU, residual), each
after a max pooling. The output follows Malinois (Gosai et al. 2024): one shared body, one head
per cell type, trained jointly with the MSE masked where a cell type was not measured. Sequences are
one-hot (N and the right padding up to the longest sequence are all zeros), trained with random
reverse-complement flips and predicted as the mean over both strands, so a sequence and its reverse
complement get the same prediction, as they should for an enhancer.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from r3lm.baselines.common import (
    ROW_COLUMNS,
    check_cell_types,
    check_sequences,
    finite_or_none,
    pearson,
    read_edges,
    read_rows,
    resolve_settings,
    source,
    write_outputs,
)
from r3lm.data.checks import first_row
from r3lm.errors import InputError
from r3lm.io import atomic_path, write_table

log = logging.getLogger(__name__)

DATA_COLUMNS = [*ROW_COLUMNS, "sequence"]
CURVE_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "val_pearson"]
EXPANSION = 2  # inverted-bottleneck width factor, as in LegNet's blocks
SE_REDUCTION = 4  # squeeze-and-excitation bottleneck: expanded channels / 4
GRAD_CLIP = 1.0
PAD = 4  # the code of N and of padding: both one-hot to all zeros

_CODES = np.full(256, PAD, dtype=np.uint8)
for _code, _base in enumerate(b"ACGT"):
    _CODES[_base] = _code
_COMPLEMENT = torch.tensor([3, 2, 1, 0, PAD])  # A<->T, C<->G, N and padding stay


# ---- Encoding ----

def encode_sequences(sequences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Base codes (rows, longest length) as uint8: A, C, G, T = 0..3, N and right padding = 4; and lengths.

    Codes rather than one-hot keep a large library 4x smaller (x4 bytes for float); one-hot happens
    per batch. Sequences must already be checked to hold only A, C, G, T, N.
    """
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    codes = np.full((len(sequences), int(lengths.max())), PAD, dtype=np.uint8)
    for length in np.unique(lengths):
        index = np.flatnonzero(lengths == length)
        raw = np.frombuffer("".join(sequences[i] for i in index).encode("ascii"), dtype=np.uint8)
        codes[index, :length] = _CODES[raw.reshape(len(index), length)]
    return codes, lengths


def reverse_complement(codes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse complement of each sequence in place of its own length; padding stays on the right.

    Flipping the whole padded row would move the padding to the left, and the network would see a
    different input than the encoded reverse-complement sequence.
    """
    positions = torch.arange(codes.shape[1], device=codes.device)
    last = lengths[:, None] - 1
    index = torch.where(positions < lengths[:, None], last - positions, positions)
    return _COMPLEMENT.to(codes.device)[codes.gather(1, index)]


def one_hot(codes: torch.Tensor) -> torch.Tensor:
    """(batch, length) codes -> (batch, 4, length) float; code 4 (N, padding) is all zeros."""
    return F.one_hot(codes, PAD + 1)[..., :PAD].transpose(1, 2).float()


# ---- Model ----

class SqueezeExcite(nn.Module):
    """Channel re-weighting from the whole sequence: lets a block gate motifs by global context."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(channels, reduced), nn.SiLU(), nn.Linear(reduced, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean(dim=2))[:, :, None]


class EffBlock(nn.Module):
    """LegNet's inverted bottleneck: cheap depthwise conv in a wide space, residual around it."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        inner = channels * EXPANSION
        self.body = nn.Sequential(
            nn.Conv1d(channels, inner, 1, bias=False), nn.BatchNorm1d(inner), nn.SiLU(),
            nn.Conv1d(inner, inner, kernel_size, padding="same", groups=inner, bias=False),
            nn.BatchNorm1d(inner), nn.SiLU(),
            SqueezeExcite(inner, max(inner // SE_REDUCTION, 4)),
            nn.Conv1d(inner, channels, 1, bias=False), nn.BatchNorm1d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SequenceCNN(nn.Module):
    """Stem conv, `blocks` x (max-pool 2, EffBlock), global average pool, one MLP head per cell type.

    Only the stem runs at full resolution: pooling before each block halves the cost of the widest
    layers, which is what makes a few epochs on a CPU take about a minute.
    """

    def __init__(self, n_outputs: int, *, channels: int, blocks: int, kernel_size: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(4, channels, kernel_size, padding="same", bias=False),
                                  nn.BatchNorm1d(channels), nn.SiLU())
        self.body = nn.Sequential(*(nn.Sequential(nn.MaxPool1d(2, ceil_mode=True), EffBlock(channels, kernel_size))
                                    for _ in range(blocks)))
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(channels, channels), nn.SiLU(), nn.Linear(channels, 1))
                                   for _ in range(n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 4, length) one-hot -> (batch, cell types)."""
        pooled = self.body(self.stem(x)).mean(dim=2)
        return torch.cat([head(pooled) for head in self.heads], dim=1)


def predict_codes(model: nn.Module, codes: np.ndarray, lengths: np.ndarray, *, batch_size: int,
                  device: torch.device) -> np.ndarray:
    """Model outputs averaged over both strands, in eval mode: (sequences, cell types)."""
    model.eval()
    outputs = []
    with torch.inference_mode(), _autocast(device):
        for start in range(0, len(codes), batch_size):
            batch = torch.from_numpy(codes[start:start + batch_size]).to(device).long()
            batch_lengths = torch.from_numpy(lengths[start:start + batch_size]).to(device)
            forward = model(one_hot(batch)).float()
            backward = model(one_hot(reverse_complement(batch, batch_lengths))).float()
            outputs.append(((forward + backward) / 2).cpu().numpy())
    return np.concatenate(outputs).astype(np.float64)


def _autocast(device: torch.device) -> torch.autocast:
    """bf16 on CUDA (faster, same range as float32); full precision on CPU, where bf16 convs are slow."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InputError(f"unknown device {name!r}: {error}", column="device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for, but CUDA is not available", column="device")
    return device


# ---- Data ----

@dataclass
class SequenceSet:
    """One row per sequence id, with an activity per cell type (NaN where not measured)."""

    ids: list[str]
    codes: np.ndarray
    lengths: np.ndarray
    activity: np.ndarray  # (sequences, cell types)


def sequence_set(rows: pd.DataFrame, cell_types: Sequence[str]) -> SequenceSet:
    """Pivot long rows (one per sequence and cell type) to sequences; rows of other cell types are ignored."""
    check_sequences(rows)
    repeated = rows.duplicated(["id", "cell_type"])
    if repeated.any():
        position = first_row(repeated)
        raise InputError(f"id {rows['id'].iloc[position]!r} appears twice for cell type "
                         f"{rows['cell_type'].iloc[position]!r}", path=source(rows), row=position + 1, column="id")
    inverse, ids = pd.factorize(rows["id"])
    sequences = rows["sequence"].to_numpy(dtype=object)
    first = np.unique(inverse, return_index=True)[1]  # the first row of each id (codes follow first appearance)
    differs = sequences[first[inverse]] != sequences
    if differs.any():
        position = first_row(differs)
        raise InputError(f"id {rows['id'].iloc[position]!r} has a different sequence than in row "
                         f"{first[inverse[position]] + 1}", path=source(rows), row=position + 1, column="sequence")
    activity = np.full((len(ids), len(cell_types)), np.nan)
    cells = pd.Categorical(rows["cell_type"], categories=list(cell_types)).codes
    known = cells >= 0
    activity[inverse[known], cells[known]] = rows["activity"].to_numpy(float)[known]
    codes, lengths = encode_sequences(list(sequences[first]))
    return SequenceSet(list(ids), codes, lengths, activity)


# ---- Training ----

@dataclass
class CNNFit:
    """The trained model (best epoch's weights) and what is needed to use and report it."""

    model: SequenceCNN
    cell_types: list[str]
    target_mean: np.ndarray
    target_std: np.ndarray
    settings: dict[str, Any]
    device: torch.device
    curve: pd.DataFrame
    best_epoch: int
    best_val_pearson: dict[str, float]
    train_sequences: int

    def predict(self, data: SequenceSet) -> np.ndarray:
        """Activity (sequences, cell types) in the measured units, both strands averaged."""
        standardised = predict_codes(self.model, data.codes, data.lengths, batch_size=self.settings["batch_size"],
                                     device=self.device)
        return standardised * self.target_std + self.target_mean


def _masked_mse(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((predicted - target) ** 2 * mask).sum() / mask.sum().clamp(min=1)


def _standardise(activity: np.ndarray, cell_types: Sequence[str], path: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell-type train mean and SD: puts every head's loss on the same scale."""
    counts = np.isfinite(activity).sum(axis=0)
    if (counts < 2).any():
        raise InputError(f"cell type {cell_types[int(np.argmin(counts))]!r} has fewer than 2 measured train "
                         "activities", path=path, column="activity")
    mean, std = np.nanmean(activity, axis=0), np.nanstd(activity, axis=0)
    return mean, np.where(std > 0, std, 1.0)


def fit_cnn(settings: Mapping[str, Any], train: pd.DataFrame, val: pd.DataFrame, *, progress: bool = True) -> CNNFit:
    """Train on the train rows, keep the epoch with the best mean validation Pearson across cell types."""
    settings = resolve_settings(settings, "cnn")
    device = resolve_device(str(settings["device"]))
    cell_types = sorted(train["cell_type"].unique())
    train_set, val_set = sequence_set(train, cell_types), sequence_set(val, cell_types)
    mean, std = _standardise(train_set.activity, cell_types, source(train))

    torch.manual_seed(settings["seed"])
    rng = np.random.default_rng(settings["seed"])  # batch order and strand flips: the same every run
    model = SequenceCNN(len(cell_types), channels=settings["channels"], blocks=settings["blocks"],
                        kernel_size=settings["kernel_size"]).to(device)
    log.info("CNN: %d parameters, %d train / %d val sequences, cell types %s, device %s, %d CPU threads",
             sum(p.numel() for p in model.parameters()), len(train_set.ids), len(val_set.ids), cell_types, device,
             torch.get_num_threads())
    batch_size, epochs = int(settings["batch_size"]), int(settings["epochs"])
    steps_per_epoch = math.ceil(len(train_set.ids) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["learning_rate"],
                                  weight_decay=settings["weight_decay"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings["learning_rate"],
                                                    total_steps=epochs * steps_per_epoch)
    codes = torch.from_numpy(train_set.codes).to(device)
    lengths = torch.from_numpy(train_set.lengths).to(device)
    measured = np.isfinite(train_set.activity)
    targets = torch.from_numpy(np.where(measured, (train_set.activity - mean) / std, 0.0)).float().to(device)
    mask = torch.from_numpy(measured).float().to(device)
    val_measured = np.isfinite(val_set.activity)
    val_targets = np.where(val_measured, (val_set.activity - mean) / std, 0.0)

    curve, best_state, best_epoch, best_score, best_pearson, step = [], None, 0, -math.inf, {}, 0
    for epoch in range(1, epochs + 1):
        model.train()
        started, total_loss = time.perf_counter(), 0.0
        order = torch.from_numpy(rng.permutation(len(train_set.ids))).to(device)
        flips = torch.from_numpy(rng.random(len(train_set.ids)) < 0.5).to(device)
        with tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False) as bar:
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                batch_codes = codes[batch].long()
                batch_codes = torch.where(flips[batch][:, None], reverse_complement(batch_codes, lengths[batch]),
                                          batch_codes)
                with _autocast(device):
                    predicted = model(one_hot(batch_codes))
                loss = _masked_mse(predicted.float(), targets[batch], mask[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
                optimizer.step()
                scheduler.step()
                step += 1
                batch_loss = loss.item()
                total_loss += batch_loss * len(batch)
                bar.update()
                bar.set_postfix(loss=f"{batch_loss:.3f}")
        seconds = time.perf_counter() - started
        val_predicted = predict_codes(model, val_set.codes, val_set.lengths, batch_size=batch_size, device=device)
        val_loss = float(((val_predicted - val_targets) ** 2 * val_measured).sum() / max(val_measured.sum(), 1))
        per_cell = {cell: pearson(val_set.activity[:, i], val_predicted[:, i]) for i, cell in enumerate(cell_types)}
        finite = [value for value in per_cell.values() if np.isfinite(value)]
        score = float(np.mean(finite)) if finite else math.nan
        curve.append({"epoch": epoch, "step": step, "train_loss": total_loss / len(order), "val_loss": val_loss,
                      "val_pearson": score})
        log.info("epoch %d/%d: train loss %.4f, val loss %.4f, val Pearson %.3f (%s), %.0f sequences/s",
                 epoch, epochs, total_loss / len(order), val_loss, score,
                 ", ".join(f"{cell} {value:.3f}" for cell, value in per_cell.items()), len(order) / seconds)
        if score > best_score:  # NaN never counts as better
            best_state = {name: value.detach().clone() for name, value in model.state_dict().items()}
            best_epoch, best_score, best_pearson = epoch, score, per_cell
        elif settings["patience"] and epoch - best_epoch >= settings["patience"]:
            log.info("no better val Pearson for %d epochs: stopping; best epoch %d", settings["patience"], best_epoch)
            break
    if best_state is None:
        log.warning("validation Pearson undefined at every epoch; keeping the last epoch")
        best_epoch = len(curve)
    else:
        model.load_state_dict(best_state)
    return CNNFit(model, cell_types, mean, std, settings, device, pd.DataFrame(curve, columns=CURVE_COLUMNS),
                  best_epoch, best_pearson, len(train_set.ids))


def _rows_predicted(fit: CNNFit, rows: pd.DataFrame, data: SequenceSet) -> np.ndarray:
    """One prediction per long row: each distinct sequence is predicted once, then looked up by cell type."""
    activity = fit.predict(data)
    sequence_index = pd.Index(data.ids).get_indexer(rows["id"])
    cell_index = pd.Index(fit.cell_types).get_indexer(rows["cell_type"])
    return activity[sequence_index, cell_index]


def run_cnn(settings: Mapping[str, Any], train_path: str | Path, val_path: str | Path,
            test_paths: Sequence[str | Path], summary_path: str | Path, out_dir: str | Path, *,
            progress: bool = True) -> dict[str, Any]:
    """The workflow step: train, then write curve.csv, model.pt and the predictions for every test row."""
    started = time.perf_counter()
    settings = resolve_settings(settings, "cnn")
    train, val = read_rows(train_path, DATA_COLUMNS), read_rows(val_path, DATA_COLUMNS)
    tests = [read_rows(path, DATA_COLUMNS) for path in test_paths]
    if not tests:
        raise InputError("no test tables given")
    cell_types = sorted(train["cell_type"].unique())
    for test in tests:
        check_cell_types(test, cell_types, "train cell types")
    test_sets = [sequence_set(test, cell_types) for test in tests]  # checked before hours of training, not after
    edges = read_edges(summary_path, cell_types)
    fit = fit_cnn(settings, train, val, progress=progress)
    predicted = [_rows_predicted(fit, test, data) for test, data in zip(tests, test_sets)]
    out = Path(out_dir)
    write_table(fit.curve, out / "curve.csv")
    with atomic_path(out / "model.pt") as tmp:
        torch.save({"state_dict": {name: value.cpu() for name, value in fit.model.state_dict().items()},
                    "cell_types": fit.cell_types, "settings": fit.settings,
                    "target_mean": fit.target_mean.tolist(), "target_std": fit.target_std.tolist()}, tmp)
    summary = {
        "method": "cnn",
        "settings": fit.settings,
        "architecture": {"channels": fit.settings["channels"], "blocks": fit.settings["blocks"],
                         "kernel_size": fit.settings["kernel_size"], "expansion": EXPANSION,
                         "se_reduction": SE_REDUCTION, "heads": fit.cell_types},
        "parameters": sum(p.numel() for p in fit.model.parameters()),
        "train_sequences": fit.train_sequences,
        "train_rows": {cell: int(count) for cell, count in train.groupby("cell_type")["activity"].count().items()},
        "epochs_run": len(fit.curve),
        "best_epoch": fit.best_epoch,
        "val_pearson": {cell: finite_or_none(value) for cell, value in fit.best_val_pearson.items()},
        "device": str(fit.device),
        "threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_outputs(tests, predicted, edges, out, summary)
    return summary
