"""A specialised sequence CNN at the field's level: MPRA-LegNet (Agarwal et al., Nature 2025).

The architecture and training recipe are those of the published model (autosome-ru/human_legnet,
`model.py`, `trainer.py` and the settings in `models/example.cfg`), with every size a setting
(`baselines.cnn`, whose defaults are the published ones):

* a stem convolution (64 channels, kernel 5), then per stage an EfficientNetV2-style block (1x1 expand
  x4, depthwise conv, squeeze-and-excitation, 1x1 project, each with BatchNorm and SiLU) whose output is
  concatenated to its input, a convolution mapping the concatenation to the stage's width (80, 96, 112,
  128; kernel 3) and a max pool of 2; a 1x1 "mapper" doubling the width, global average pooling, and an
  MLP head; convolutions initialised He-normal, linear layers N(0, 0.001);
* MSE, AdamW at weight decay 0.1, a one-cycle schedule to 0.01 (30% rising, from 0.01/25), batch 1024,
  25 epochs; reverse-complement augmentation in training and both strands averaged in prediction.

What r3lm changes: one output per cell type (Malinois-style, Gosai et al. 2024), trained jointly with the
MSE masked where a cell type was not measured, on targets standardised per cell type; the epoch of the
best validation Pearson is kept, and training stops early once it has not improved by `min_delta` for
`patience` epochs (LegNet keeps its last epoch). Sequences are one-hot, N and the right padding up to the
longest sequence all zeros.
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
from torch import nn
from tqdm.auto import tqdm

from r3lm.baselines.common import (
    check_cell_types,
    check_sequences,
    finite_or_none,
    read_edges,
    read_group_regex,
    resolve_settings,
    source,
    write_outputs,
)
from r3lm.data.checks import first_row
from r3lm.data.splits import deal_groups, fold_key
from r3lm.dna import encode_sequences, one_hot, reverse_complement_codes
from r3lm.errors import InputError
from r3lm.io import atomic_path, write_table
from r3lm.llm.base import native_bf16
from r3lm.predictions import ROW_COLUMNS, read_rows
from r3lm.scaling import ActivityScaler
from r3lm.stats import pearson

log = logging.getLogger(__name__)

DATA_COLUMNS = [*ROW_COLUMNS, "sequence"]
CURVE_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "val_pearson"]
MIN_FOLDS = 3  # one held out, one validating, at least one training
PEAK_FRACTION = 0.3  # LegNet's one-cycle peaks 30% into training
ARCHITECTURE_KEYS = ("stem_channels", "stem_kernel", "stage_channels", "kernel_size", "expansion")
MODEL_FILE = "model.pt"


# ---- Model ----

class SqueezeExcite(nn.Module):
    """Channel re-weighting from the whole sequence: lets a block gate motifs by global context."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(channels, channels // reduction), nn.SiLU(),
                                  nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean(dim=2))[:, :, None]


def conv_bn_silu(in_channels: int, out_channels: int, kernel_size: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv1d(in_channels, out_channels, kernel_size, padding="same", groups=groups, bias=False),
            nn.BatchNorm1d(out_channels), nn.SiLU()]


class EffBlock(nn.Module):
    """LegNet's inverted bottleneck (1x1 expand, depthwise conv, SE, 1x1 project); its output is concatenated
    to its input, so the next convolution sees both the block's features and what it started from."""

    def __init__(self, channels: int, kernel_size: int, expansion: int) -> None:
        super().__init__()
        inner = channels * expansion
        self.body = nn.Sequential(*conv_bn_silu(channels, inner, 1), *conv_bn_silu(inner, inner, kernel_size, inner),
                                  SqueezeExcite(inner, expansion), *conv_bn_silu(inner, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.body(x), x], dim=1)


class LegNet(nn.Module):
    """Stem, stages of (EffBlock, conv to the stage width, max pool 2), mapper, average pool, MLP head with one
    output per cell type."""

    def __init__(self, n_outputs: int, *, stem_channels: int, stem_kernel: int, stage_channels: Sequence[int],
                 kernel_size: int, expansion: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn_silu(4, stem_channels, stem_kernel))
        stages, width = [], stem_channels
        for out_channels in stage_channels:  # ceil: a short sequence never pools to length 0
            stages.append(nn.Sequential(EffBlock(width, kernel_size, expansion),
                                        *conv_bn_silu(2 * width, out_channels, kernel_size),
                                        nn.MaxPool1d(2, ceil_mode=True)))
            width = out_channels
        self.stages = nn.Sequential(*stages)
        self.mapper = nn.Sequential(nn.BatchNorm1d(width), nn.Conv1d(width, 2 * width, 1))
        self.head = nn.Sequential(nn.Linear(2 * width, 2 * width), nn.BatchNorm1d(2 * width), nn.SiLU(),
                                  nn.Linear(2 * width, n_outputs))
        self.apply(_initialise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 4, length) one-hot -> (batch, cell types)."""
        return self.head(self.mapper(self.stages(self.stem(x))).mean(dim=2))

    @classmethod
    def from_settings(cls, n_outputs: int, settings: Mapping[str, Any]) -> LegNet:
        return cls(n_outputs, stem_channels=settings["stem_channels"], stem_kernel=settings["stem_kernel"],
                   stage_channels=settings["stage_channels"], kernel_size=settings["kernel_size"],
                   expansion=settings["expansion"])


def _initialise(module: nn.Module) -> None:
    """LegNet's initialisation: He-normal convolutions, BatchNorm at identity, near-zero linear layers."""
    if isinstance(module, nn.Conv1d):
        module.weight.data.normal_(0, math.sqrt(2 / (module.kernel_size[0] * module.out_channels)))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm1d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        module.weight.data.normal_(0, 0.001)
        nn.init.zeros_(module.bias)


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
            backward = model(one_hot(reverse_complement_codes(batch, batch_lengths))).float()
            outputs.append(((forward + backward) / 2).cpu().numpy())
    return np.concatenate(outputs).astype(np.float64)


def _autocast(device: torch.device) -> torch.autocast:
    """bf16 where the hardware computes it natively (a recent GPU, or a CPU with AMX or AVX512-BF16: LegNet
    trains 1.9x faster on 2 AMX cores), full precision elsewhere, where emulated bf16 is slower."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=native_bf16(str(device)))


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


@dataclass
class TrainedCNN:
    """A saved model.pt ready to predict new sequences: one model, or its cross-validation folds averaged."""

    models: list[LegNet]
    scalers: list[ActivityScaler]  # each model's training z-scores, to map its output back to activity
    cell_types: list[str]
    batch_size: int
    device: torch.device

    def predict(self, sequences: Sequence[str]) -> np.ndarray:
        """Activity (sequences, cell types) in the measured units. Each length is predicted apart: padding
        enters the average pool, so a sequence's prediction would otherwise depend on the longest beside it."""
        lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
        predicted = np.empty((len(sequences), len(self.cell_types)))
        for length in np.unique(lengths):
            index = np.flatnonzero(lengths == length)
            codes, code_lengths = encode_sequences([sequences[i] for i in index])
            predicted[index] = np.mean([
                predict_codes(model, codes, code_lengths, batch_size=self.batch_size, device=self.device) * scaler.std
                + scaler.mean for model, scaler in zip(self.models, self.scalers, strict=True)], axis=0)
        return predicted


def load_trained(path: str | Path, device: str = "auto") -> TrainedCNN:
    """The model.pt that `run_cnn` writes, on `device`, in eval mode."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    records = saved.get("folds", [saved])
    torch_device = resolve_device(device)
    models = []
    for record in records:
        model = LegNet.from_settings(len(saved["cell_types"]), saved["settings"])
        model.load_state_dict(record["state_dict"])
        models.append(model.to(torch_device).eval())
    cell_types = list(saved["cell_types"])
    scalers = [ActivityScaler.from_moments(cell_types, record["target_mean"], record["target_std"])
               for record in records]
    return TrainedCNN(models, scalers, cell_types, int(saved["settings"]["batch_size"]), torch_device)


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

    model: LegNet
    cell_types: list[str]
    scaler: ActivityScaler  # the heads predict z-scored activity
    settings: dict[str, Any]
    device: torch.device
    curve: pd.DataFrame
    best_epoch: int
    best_val_pearson: dict[str, float]
    train_sequences: int
    stopped_by: str  # "patience" (the criterion) or "epoch cap"

    def predict(self, data: SequenceSet) -> np.ndarray:
        """Activity (sequences, cell types) in the measured units, both strands averaged."""
        standardised = predict_codes(self.model, data.codes, data.lengths, batch_size=self.settings["batch_size"],
                                     device=self.device)
        return self.scaler.inverse(standardised, self.cell_types)


def _masked_mse(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((predicted - target) ** 2 * mask).sum() / mask.sum().clamp(min=1)


def _fit_scaler(activity: np.ndarray, cell_types: Sequence[str], path: str) -> ActivityScaler:
    """Per-cell-type train mean and SD: puts every head's loss on the same scale."""
    counts = np.isfinite(activity).sum(axis=0)
    if (counts < 2).any():
        raise InputError(f"cell type {cell_types[int(np.argmin(counts))]!r} has fewer than 2 measured train "
                         "activities", path=path, column="activity")
    return ActivityScaler.fit_matrix(cell_types, activity)


def _scaled_targets(data: SequenceSet, scaler: ActivityScaler) -> np.ndarray:
    """Z-scored activity (its columns are the scaler's cell types), 0 where not measured (the loss masks it)."""
    return np.where(np.isfinite(data.activity), scaler.transform(data.activity, scaler.cell_types), 0.0)


@dataclass
class _Batches:
    """The training set on the device, with its standardised targets and which of them were measured."""

    codes: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor

    @classmethod
    def of(cls, data: SequenceSet, scaler: ActivityScaler, device: torch.device) -> _Batches:
        return cls(torch.from_numpy(data.codes).to(device), torch.from_numpy(data.lengths).to(device),
                   torch.from_numpy(_scaled_targets(data, scaler)).float().to(device),
                   torch.from_numpy(np.isfinite(data.activity)).float().to(device))


def fit_cnn(settings: Mapping[str, Any], train: pd.DataFrame, val: pd.DataFrame, *, progress: bool = True) -> CNNFit:
    """Train on the train rows and keep the epoch with the best mean validation Pearson across cell types;
    stop once, past the learning-rate peak, it has not improved by `min_delta` for `patience` epochs (or at
    the `epochs` cap, logged as such)."""
    settings = resolve_settings(settings, "cnn")
    device = resolve_device(str(settings["device"]))
    cell_types = sorted(train["cell_type"].unique())
    train_set, val_set = sequence_set(train, cell_types), sequence_set(val, cell_types)
    scaler = _fit_scaler(train_set.activity, cell_types, source(train))
    torch.manual_seed(settings["seed"])
    rng = np.random.default_rng(settings["seed"])  # batch order and strand flips: the same every run
    model = LegNet.from_settings(len(cell_types), settings).to(device)
    log.info("CNN: %d parameters, %d train / %d val sequences, cell types %s, device %s, %d CPU threads",
             sum(p.numel() for p in model.parameters()), len(train_set.ids), len(val_set.ids), cell_types, device,
             torch.get_num_threads())
    batches = _Batches.of(train_set, scaler, device)
    steps_per_epoch = math.ceil(len(train_set.ids) / settings["batch_size"])
    optimizer, scheduler = _one_cycle(model, settings, steps_per_epoch)
    curve, best_state, best_epoch, best_score, best_pearson = [], None, 0, -math.inf, {}
    stopping = _Stopping(settings)
    for epoch in range(1, settings["epochs"] + 1):
        started = time.perf_counter()
        train_loss = _train_epoch(model, batches, optimizer, scheduler, rng, settings, epoch, progress)
        seconds = time.perf_counter() - started
        val_loss, per_cell = _validate(model, val_set, scaler, cell_types, settings["batch_size"], device)
        finite = [value for value in per_cell.values() if np.isfinite(value)]
        score = float(np.mean(finite)) if finite else math.nan
        curve.append({"epoch": epoch, "step": epoch * steps_per_epoch,
                      "train_loss": train_loss, "val_loss": val_loss, "val_pearson": score})
        log.info("epoch %d/%d: train loss %.4f, val loss %.4f, val Pearson %.4f (%s), %.0f sequences/s", epoch,
                 settings["epochs"], train_loss, val_loss, score,
                 ", ".join(f"{cell} {value:.3f}" for cell, value in per_cell.items()), len(train_set.ids) / seconds)
        if score > best_score:  # NaN never counts as better
            best_state = {name: value.detach().clone() for name, value in model.state_dict().items()}
            best_epoch, best_score, best_pearson = epoch, score, per_cell
        if stopping.should_stop(epoch, score):
            log.info("val Pearson has not improved by %g for %d epochs: stopping; best epoch %d",
                     settings["min_delta"], settings["patience"], best_epoch)
            break
    else:
        if settings["patience"]:
            log.warning("stopped at the epoch cap (%d) while the val Pearson still rose within the last %d epochs: "
                        "raise baselines.cnn.epochs", settings["epochs"], settings["patience"])
    if best_state is None:
        log.warning("validation Pearson undefined at every epoch; keeping the last epoch")
        best_epoch = len(curve)
    else:
        model.load_state_dict(best_state)
    return CNNFit(model, cell_types, scaler, settings, device, pd.DataFrame(curve, columns=CURVE_COLUMNS),
                  best_epoch, best_pearson, len(train_set.ids), stopping.reason)


class _Stopping:
    """Early stopping: no val Pearson gain above `min_delta` for `patience` epochs, counted from the one-cycle's
    learning-rate peak on (the rise to it is noisy by design); `patience` 0 runs to the cap."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.patience, self.min_delta = settings["patience"], settings["min_delta"]
        self.peak_epoch = math.ceil(PEAK_FRACTION * settings["epochs"])
        self.best, self.last_gain, self.reason = -math.inf, 0, "epoch cap"

    def should_stop(self, epoch: int, score: float) -> bool:
        if score > self.best + self.min_delta or (self.last_gain == 0 and np.isfinite(score)):
            self.best, self.last_gain = score, epoch
        if self.patience and epoch - max(self.last_gain, self.peak_epoch) >= self.patience:
            self.reason = "patience"
        return self.reason == "patience"


def _one_cycle(model: nn.Module, settings: Mapping[str, Any], steps_per_epoch: int) -> tuple[Any, Any]:
    """LegNet's optimiser: AdamW from learning_rate / 25 up to learning_rate over 30% of the steps, then down."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["learning_rate"] / 25,
                                  weight_decay=settings["weight_decay"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings["learning_rate"],
                                                    pct_start=PEAK_FRACTION,
                                                    three_phase=False, cycle_momentum=False,
                                                    total_steps=settings["epochs"] * steps_per_epoch)
    return optimizer, scheduler


def _train_epoch(model: nn.Module, batches: _Batches, optimizer: Any, scheduler: Any, rng: np.random.Generator,
                 settings: Mapping[str, Any], epoch: int, progress: bool) -> float:
    """One pass in a seeded order, each sequence on a random strand; returns the mean training loss."""
    model.train()
    device, batch_size, count = batches.codes.device, settings["batch_size"], len(batches.codes)
    order = torch.from_numpy(rng.permutation(count)).to(device)
    flips = torch.from_numpy(rng.random(count) < 0.5).to(device)
    total = 0.0
    with tqdm(total=math.ceil(count / batch_size), desc=f"epoch {epoch}/{settings['epochs']}", disable=not progress,
              leave=False) as bar:
        for start in range(0, count, batch_size):
            batch = order[start:start + batch_size]
            codes = batches.codes[batch].long()
            codes = torch.where(flips[batch][:, None], reverse_complement_codes(codes, batches.lengths[batch]), codes)
            with _autocast(device):
                predicted = model(one_hot(codes))
            loss = _masked_mse(predicted.float(), batches.targets[batch], batches.mask[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(batch)
            bar.update()
    return total / count


def _validate(model: nn.Module, data: SequenceSet, scaler: ActivityScaler, cell_types: Sequence[str],
              batch_size: int, device: torch.device) -> tuple[float, dict[str, float]]:
    """Validation MSE on the standardised scale and Pearson per cell type (both strands averaged)."""
    predicted = predict_codes(model, data.codes, data.lengths, batch_size=batch_size, device=device)
    measured = np.isfinite(data.activity)
    targets = _scaled_targets(data, scaler)
    loss = float(((predicted - targets) ** 2 * measured).sum() / max(measured.sum(), 1))
    return loss, {cell: pearson(data.activity[:, i], predicted[:, i]) for i, cell in enumerate(cell_types)}


def _rows_predicted(fit: CNNFit, rows: pd.DataFrame, data: SequenceSet) -> np.ndarray:
    """One prediction per long row: each distinct sequence is predicted once, then looked up by cell type."""
    activity = fit.predict(data)
    sequence_index = pd.Index(data.ids).get_indexer(rows["id"])
    cell_index = pd.Index(fit.cell_types).get_indexer(rows["cell_type"])
    return activity[sequence_index, cell_index]


def assign_folds(rows: pd.DataFrame, folds: int, seed: int, group_regex: str | None = None) -> tuple[pd.Series, str]:
    """A fold (0..k-1) per row, the same for every row of a sequence, and where it came from: the data's own
    `fold` column where every row has one (the `table` source keeps it), else sequence groups (`group_regex`,
    the data split's) dealt at random into `folds` equal parts."""
    if "fold" in rows.columns and (rows["fold"].astype(str).str.strip() != "").all():
        labels = sorted(rows["fold"].map(fold_key).unique(), key=lambda label: (len(label), label))
        if len(labels) < MIN_FOLDS:
            raise InputError(f"cross-validation needs at least {MIN_FOLDS} folds (held out, validation, training); "
                             f"the data's fold column has {len(labels)}", path=source(rows), column="fold")
        return rows["fold"].map(fold_key).map({label: index for index, label in enumerate(labels)}), "data"
    return deal_groups(rows["id"], group_regex, seed) % folds, "random"


def cross_validate(settings: Mapping[str, Any], rows: pd.DataFrame, folds: pd.Series, *,
                   progress: bool = True) -> tuple[np.ndarray, pd.DataFrame, list[CNNFit]]:
    """Out-of-fold predictions for every row, MPRA-LegNet's protocol: fold k is predicted by a model trained
    on the other folds with fold k+1 validating, so every sequence is scored by a model that never saw it.
    Returns the predictions, the curves (with a `fold` column) and the fits."""
    count = int(folds.max()) + 1
    predicted, curves, fits = np.full(len(rows), np.nan), [], []
    for fold in range(count):
        held_out, validating = folds == fold, folds == (fold + 1) % count
        log.info("CNN cross-validation: fold %d of %d (%d rows held out)", fold + 1, count, int(held_out.sum()))
        fit = fit_cnn(settings, rows[~held_out & ~validating], rows[validating], progress=progress)
        held = rows[held_out]
        predicted[held_out.to_numpy()] = _rows_predicted(fit, held, sequence_set(held, fit.cell_types))
        curves.append(fit.curve.assign(fold=fold + 1))
        fits.append(fit)
    return predicted, pd.concat(curves, ignore_index=True), fits


def run_cnn(settings: Mapping[str, Any], train_path: str | Path, val_path: str | Path,
            test_paths: Sequence[str | Path], summary_path: str | Path, out_dir: str | Path, *,
            progress: bool = True) -> dict[str, Any]:
    """The workflow step: train (or cross-validate, with `cross_validation.folds`), then write curve.csv,
    model.pt and the predictions for every test row."""
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
    out = Path(out_dir)
    if settings["cross_validation"]["folds"]:
        predicted, curve, fits, extra = _cross_validated(settings, train, val, tests, out,
                                                         read_group_regex(summary_path), progress=progress)
    else:
        fit = fit_cnn(settings, train, val, progress=progress)
        predicted = [_rows_predicted(fit, test, data) for test, data in zip(tests, test_sets, strict=True)]
        curve, fits, extra = fit.curve, [fit], {"stopped_by": fit.stopped_by, "best_epoch": fit.best_epoch,
                                              "val_pearson": {cell: finite_or_none(value)
                                                              for cell, value in fit.best_val_pearson.items()}}
    write_table(curve, out / "curve.csv")
    records = [{"state_dict": {name: value.cpu() for name, value in fit.model.state_dict().items()},
                "target_mean": fit.scaler.mean.tolist(), "target_std": fit.scaler.std.tolist()} for fit in fits]
    # one model, or one per fold; through a handle, so the archive's inner folder is torch's fixed name and not
    # the temporary file's: a rerun writes the same bytes
    with atomic_path(out / MODEL_FILE) as tmp, open(tmp, "wb") as handle:
        torch.save({**(records[0] if len(records) == 1 else {"folds": records}),
                    "cell_types": fits[0].cell_types, "settings": fits[0].settings}, handle)
    summary = {
        "method": "cnn",
        "settings": fits[0].settings,
        "architecture": {"name": "LegNet", "heads": fits[0].cell_types,
                         **{key: fits[0].settings[key] for key in ARCHITECTURE_KEYS}},
        "parameters": sum(p.numel() for p in fits[0].model.parameters()),
        "train_sequences": [fit.train_sequences for fit in fits] if len(fits) > 1 else fits[0].train_sequences,
        "train_rows": {cell: int(count) for cell, count in train.groupby("cell_type")["activity"].count().items()},
        "epochs_run": [len(fit.curve) for fit in fits] if len(fits) > 1 else len(curve),
        **extra,
        "device": str(fits[0].device),
        "threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_outputs(tests, predicted, edges, out, summary)
    return summary


def _cross_validated(settings: Mapping[str, Any], train: pd.DataFrame, val: pd.DataFrame,
                     tests: Sequence[pd.DataFrame], out: Path, group_regex: str | None, *, progress: bool
                     ) -> tuple[list[np.ndarray], pd.DataFrame, list[CNNFit], dict[str, Any]]:
    """Cross-validation over every row of the split tables (their split is ignored): the test rows get their
    out-of-fold predictions, and oof.parquet holds every row's, the figure MPRA-LegNet reports."""
    rows = pd.concat([train, val, *tests], ignore_index=True).drop_duplicates(["id", "cell_type"],
                                                                              ignore_index=True)
    rows.attrs["path"] = source(train)
    folds, fold_source = assign_folds(rows, settings["cross_validation"]["folds"],
                                      settings["cross_validation"]["seed"], group_regex)
    predicted, curve, fits = cross_validate(settings, rows, folds, progress=progress)
    oof = rows[["id", "cell_type", "split", "activity"]].assign(fold=folds.to_numpy() + 1, predicted=predicted)
    write_table(oof, out / "oof.parquet")
    lookup = pd.Series(predicted, index=pd.MultiIndex.from_frame(rows[["id", "cell_type"]]))
    on_tests = [lookup.reindex(pd.MultiIndex.from_frame(test[["id", "cell_type"]])).to_numpy() for test in tests]
    extra = {"cross_validation": {
        "folds": int(folds.max()) + 1, "fold_source": fold_source,
        "rows": len(rows), "stopped_by": [fit.stopped_by for fit in fits],
        "best_epoch": [fit.best_epoch for fit in fits],
        "val_pearson": [{cell: finite_or_none(value) for cell, value in fit.best_val_pearson.items()} for fit in fits],
        "oof_pearson": {cell: finite_or_none(pearson(group["activity"].to_numpy(), group["predicted"].to_numpy()))
                        for cell, group in oof.groupby("cell_type")}}}
    log.info("cross-validation over %d %s folds: out-of-fold Pearson %s", extra["cross_validation"]["folds"],
             fold_source, extra["cross_validation"]["oof_pearson"])
    return on_tests, curve, fits, extra
