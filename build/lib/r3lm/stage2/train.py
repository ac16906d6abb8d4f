"""The Stage-II optimisation loop, shared by LoRA training and the frozen-backbone head fit.

MSE on standardised activity; AdamW with cosine decay after warmup; gradient clipping; optional
class-balanced sampling by level; validation Pearson at every eval interval and epoch end, keeping the
best weights; a checkpoint every `save_steps` that a killed run resumes from, bit for bit, because the
batch plan of every epoch is a pure function of (seed, epoch).

`fit_ridge_head` is the frozen backbone's closed-form alternative (`stage2.frozen.head: ridge`): the same head,
its Linear layer solved by cross-validated ridge regression instead of trained.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm
from transformers import get_scheduler

from r3lm.io import atomic_dir
from r3lm.stats import pearson

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "state.pt"


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_pearson: float
    best_step: int
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from_step: int | None = None
    seconds: float = 0.0
    alpha: float | None = None  # the ridge penalty chosen by cross-validation (stage2.frozen.head: ridge)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: parameter.detach().cpu().clone() for name, parameter in model.named_parameters()
            if parameter.requires_grad}


def batch_plan(levels: np.ndarray, lengths: Sequence[int] | None, batch_size: int, *, seed: int, epoch: int,
               balanced: bool) -> list[np.ndarray]:
    """One epoch's batches: shuffled (or drawn with replacement in inverse proportion to each level's count),
    then, with lengths, grouped by length within windows of 50 batches so padding stays small."""
    rng = np.random.default_rng([seed, epoch])
    n = len(levels)
    if balanced:
        _, inverse, counts = np.unique(levels, return_inverse=True, return_counts=True)
        weights = 1.0 / counts[inverse]
        order = rng.choice(n, size=n, replace=True, p=weights / weights.sum())
    else:
        order = rng.permutation(n)
    if lengths is not None:
        window = batch_size * 50
        lengths_array = np.asarray(lengths)
        order = np.concatenate([chunk[np.argsort(-lengths_array[chunk], kind="stable")]
                                for chunk in np.array_split(order, max(1, math.ceil(n / window)))])
    batches = [order[start:start + batch_size] for start in range(0, n, batch_size)]
    return [batches[index] for index in rng.permutation(len(batches))]


def _optimiser(trainable: Sequence[nn.Parameter], head_parameters: Sequence[nn.Parameter],
               settings: dict[str, Any], total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW (the head at its own learning rate when one is set) with warmup and decay over `total_steps`."""
    head_ids = {id(parameter) for parameter in head_parameters}
    groups = [{"params": [p for p in trainable if id(p) not in head_ids], "lr": settings["learning_rate"]},
              {"params": [p for p in trainable if id(p) in head_ids],
               "lr": settings.get("head_learning_rate") or settings["learning_rate"]}]
    optimizer = torch.optim.AdamW([group for group in groups if group["params"]],
                                  weight_decay=settings["weight_decay"])
    scheduler = get_scheduler(settings["scheduler"], optimizer,
                              num_warmup_steps=int(settings["warmup_ratio"] * total_steps),
                              num_training_steps=total_steps)
    return optimizer, scheduler


def _resume(checkpoint: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, label: str
            ) -> FitResult | None:
    """The state of a killed fit, restored into model, optimiser and schedule; None when there is none."""
    if not (checkpoint / CHECKPOINT_FILE).is_file():
        return None
    saved = torch.load(checkpoint / CHECKPOINT_FILE, weights_only=False)
    model.load_state_dict(saved["model"], strict=False)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    result = saved["result"]
    result.resumed_from_step = result.steps
    log.info("%sresuming Stage II from step %d (best val Pearson %.4f)", label, result.steps, result.best_pearson)
    return result


def fit(model: nn.Module, predict_batch: Callable[[np.ndarray], torch.Tensor], targets: np.ndarray,
        levels: np.ndarray, predict_val: Callable[[], np.ndarray], val_targets: np.ndarray,
        settings: dict[str, Any], work_dir: Path, *, lengths: Sequence[int] | None = None,
        head_parameters: Sequence[nn.Parameter] = (), progress: bool = True, label: str = "") -> FitResult:
    """Train `model`'s trainable parameters; `predict_batch(indices)` returns standardised predictions with
    gradients, `predict_val()` the validation predictions without. Returns the best-validation weights."""
    started = time.perf_counter()
    seed, accumulation = settings["seed"], settings.get("gradient_accumulation", 1)
    torch.manual_seed(seed)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    batches_per_epoch = math.ceil(len(targets) / settings["batch_size"])
    steps_per_epoch = math.ceil(batches_per_epoch / accumulation)
    total_steps = max(1, steps_per_epoch * settings["epochs"])
    optimizer, scheduler = _optimiser(trainable, head_parameters, settings, total_steps)
    target_tensor = torch.as_tensor(targets, dtype=torch.float32)
    checkpoint = work_dir / "checkpoint"
    result = _resume(checkpoint, model, optimizer, scheduler, label) or FitResult(
        best_state=trainable_state(model), best_pearson=-math.inf, best_step=0, steps=0)

    def evaluate(epoch: float, train_loss: float | None) -> None:
        model.eval()
        with torch.no_grad():
            predicted = predict_val()
        model.train()
        score = pearson(val_targets, predicted)
        val_loss = float(np.mean((predicted - val_targets) ** 2))
        result.history.append({"step": result.steps, "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                               "val_pearson": score})
        improved = not math.isnan(score) and score > result.best_pearson
        if improved:
            result.best_pearson, result.best_step, result.best_state = score, result.steps, trainable_state(model)
        # a frozen-backbone fit evaluates hundreds of times: log improvements and about 20 lines in all
        level = logging.INFO if improved or result.steps % max(1, total_steps // 20) == 0 else logging.DEBUG
        log.log(level, "%sstep %d (epoch %.2f): val loss %.4f, val Pearson %.4f (best %.4f at step %d)", label,
                 result.steps, epoch, val_loss, score, result.best_pearson, result.best_step)

    def save() -> None:
        with atomic_dir(checkpoint) as tmp:
            torch.save({"model": trainable_state(model), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "result": result}, tmp / CHECKPOINT_FILE)

    model.train()
    if result.steps == 0:
        evaluate(0.0, None)
    bar = tqdm(total=total_steps, initial=result.steps, desc=f"{label}Stage II", unit="step", disable=not progress)
    running: list[float] = []
    while result.steps < total_steps:
        epoch = result.steps // steps_per_epoch
        plan = batch_plan(levels, lengths, settings["batch_size"], seed=seed, epoch=epoch,
                          balanced=settings["balanced_sampling"])
        done_in_epoch = result.steps - epoch * steps_per_epoch
        for step_batches in range(done_in_epoch, steps_per_epoch):
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            chunk = plan[step_batches * accumulation:(step_batches + 1) * accumulation]
            for indices in chunk:
                predicted = predict_batch(indices)  # on the model's device: the targets go there (a GPU)
                loss = nn.functional.mse_loss(predicted.float(), target_tensor[indices].to(predicted.device)) \
                    * len(indices)
                (loss / sum(len(part) for part in chunk)).backward()
                step_loss += loss.item()
            nn.utils.clip_grad_norm_(trainable, settings["max_grad_norm"])
            optimizer.step()
            scheduler.step()
            result.steps += 1
            running.append(step_loss / sum(len(part) for part in chunk))
            bar.update(1)
            at_epoch_end = step_batches == steps_per_epoch - 1
            if result.steps % settings["eval_steps"] == 0 or at_epoch_end:
                evaluate(result.steps / steps_per_epoch, float(np.mean(running)))
                running = []
            if result.steps % settings["save_steps"] == 0 and result.steps < total_steps:
                save()
    bar.close()
    shutil.rmtree(checkpoint, ignore_errors=True)
    result.seconds = time.perf_counter() - started
    return result


def ridge_solutions(x: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Ridge weights (alphas, features) and intercepts (alphas,) in x's own units, for every alpha from one SVD.

    The columns are standardised first (so one penalty treats every feature alike; a constant column gets
    weight 0) and the standardisation is folded back into the weights and intercept; the intercept is not
    penalised."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    u, singular, vt = np.linalg.svd((x - mean) / scale, full_matrices=False)
    projected = u.T @ (y - y.mean())
    shrunk = singular / (singular ** 2 + np.asarray(alphas, dtype=float)[:, None])  # (alphas, rank)
    weights = (shrunk * projected) @ vt / scale
    return weights, y.mean() - weights @ mean


def ridge_alpha(x: np.ndarray, y: np.ndarray, alphas: Sequence[float], seed: int) -> tuple[float, np.ndarray]:
    """The penalty with the smallest out-of-fold MSE over k = min(5, rows) seeded folds, and every penalty's MSE.

    MSE of the pooled out-of-fold predictions rather than Pearson: it is defined for folds of one row (few train
    rows), and it is not fooled at large penalties, where the weights vanish and a pooled Pearson measures only
    the folds' differing intercepts. Ties go to the smallest penalty."""
    alphas = sorted(alphas)
    folds = min(5, len(y))
    if folds < 2:
        return alphas[-1], np.full(len(alphas), np.nan)
    held_out = np.zeros((len(alphas), len(y)))
    for held in np.array_split(np.random.default_rng(seed).permutation(len(y)), folds):
        keep = np.ones(len(y), dtype=bool)
        keep[held] = False
        weights, intercepts = ridge_solutions(x[keep], y[keep], alphas)
        held_out[:, held] = weights @ x[held].T + intercepts[:, None]
    errors = np.mean((held_out - y) ** 2, axis=1)
    return alphas[int(np.argmin(errors))], errors


@torch.no_grad()
def fit_ridge_head(head: nn.Sequential, train_states: torch.Tensor, targets: np.ndarray,
                   predict_val: Callable[[], np.ndarray], val_targets: np.ndarray, alphas: Sequence[float],
                   seed: int, label: str = "") -> FitResult:
    """The head's Linear layer solved by ridge on its own LayerNorm's output (at its identity initialisation), so
    the head keeps its format and predicts as saved; the penalty by cross-validation on the train rows
    (`ridge_alpha`), the val rows scored once. Seconds instead of the gradient fit's hundreds of epochs, and on
    a few hundred rows of high-dimensional states it does not depend on a learning rate or an epoch count."""
    started = time.perf_counter()
    features = head[0](train_states).double().cpu().numpy()
    y = np.asarray(targets, dtype=float)
    alpha, errors = ridge_alpha(features, y, alphas, seed)
    weights, intercepts = ridge_solutions(features, y, [alpha])
    linear = head[1]
    linear.weight.copy_(torch.as_tensor(weights, dtype=linear.weight.dtype))
    linear.bias.copy_(torch.as_tensor(intercepts, dtype=linear.bias.dtype))
    predicted = predict_val()
    score = pearson(val_targets, predicted)
    train_loss = float(np.mean((features @ weights[0] + intercepts[0] - y) ** 2))
    log.info("%sridge head: alpha %g (out-of-fold MSE %s), val Pearson %.4f", label, alpha,
             ", ".join(f"{value:.3f}" for value in errors), score)
    history = [{"step": 1, "epoch": 1.0, "train_loss": train_loss,
                "val_loss": float(np.mean((predicted - val_targets) ** 2)), "val_pearson": score, "alpha": alpha}]
    return FitResult(trainable_state(head), score, 1, 1, history, seconds=time.perf_counter() - started, alpha=alpha)
