"""The design oracle and what a design maximises.

An oracle is a frozen torch module from one-hot DNA (N, 4, L), ACGT order, to activity (N, cell types) in
the measured units, with a `cell_types` list naming its outputs. `Oracle` makes one from the CNN baseline:
its heads predict z-scored activity, so each model's output is mapped back with that model's training mean
and SD (`ActivityScaler`), both strands averaged and cross-validation folds averaged, exactly as
`TrainedCNN.predict` scores a sequence (in bf16 where the CPU or GPU computes it natively, as there).

Objectives, for a set of target cell types T (usually one):

* `min_gap`: the weakest target minus the strongest other cell type (CODA's MinGap, Gosai et al. 2024;
  ledidi's `MinGap` loss), `r3lm.deploy.specificity.min_gap`. Needs a cell type outside T.
* `max`: the weakest target's activity alone (with one target, its activity).

`Objective` wraps an oracle into a module whose one output (N, 1) is the objective, so any engine that
maximises a model's output (tangermeme's `greedy_substitution`, ledidi with a negated loss) optimises it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from r3lm.baselines.cnn import TrainedCNN, load_trained
from r3lm.deploy.specificity import min_gap
from r3lm.errors import InputError, require_file
from r3lm.llm.base import native_bf16

OBJECTIVES = ("min_gap", "max")
_bf16 = cache(native_bf16)  # probed once per device type


class Oracle(nn.Module):
    """Frozen CNN(s) from one-hot (N, 4, L) to activity (N, cell types) in the measured units, differentiable.

    `length` is the one sequence length the models were trained on (None: several or unknown): random
    starts take it by default.
    """

    def __init__(self, models: Sequence[nn.Module], cell_types: Sequence[str], mean: np.ndarray, std: np.ndarray,
                 *, length: int | None = None) -> None:
        super().__init__()
        self.models = nn.ModuleList(models).eval()
        self.requires_grad_(False)
        self.cell_types = list(cell_types)
        self.length = length
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32).reshape(len(models), -1))
        self.register_buffer("std", torch.as_tensor(np.asarray(std), dtype=torch.float32).reshape(len(models), -1))

    def train(self, mode: bool = True) -> Oracle:
        """Always in eval mode: BatchNorm keeps its training statistics whatever a caller restores."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 4, L) one-hot (or relaxed one-hot) -> (N, cell types) activity."""
        x = x.float()
        flipped = x.flip(1, 2)  # the reverse complement: ACGT reversed is TGCA
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=_bf16(x.device.type)):
            strands = [(model(x).float() + model(flipped).float()) / 2 for model in self.models]
        return (torch.stack(strands) * self.std[:, None] + self.mean[:, None]).mean(dim=0)

    @classmethod
    def from_trained(cls, trained: TrainedCNN, *, length: int | None = None) -> Oracle:
        """Args: trained: a loaded model.pt (`load_trained`). length: its training length, if one.

        Returns: the oracle on the model's device."""
        oracle = cls(trained.models, trained.cell_types, np.stack([scaler.mean for scaler in trained.scalers]),
                     np.stack([scaler.std for scaler in trained.scalers]), length=length)
        return oracle.to(trained.device)


def load_oracle(path: str | Path, *, device: str = "cpu") -> Oracle:
    """The design oracle from a CNN fast bundle (folder) or its model.pt.

    Args:
        path: `results/<dataset>/runs/<run>/models/cnn` or a `model.pt` that `run_cnn` wrote.
        device: where the oracle runs ("cpu", "cuda", "auto").

    Returns:
        The oracle; from a bundle, `length` is its training length when all training sequences had one.
    """
    from r3lm.deploy.bundle import FAST_FORMAT, manifest_format, read_fast_manifest

    root = Path(path)
    if root.is_file():
        return Oracle.from_trained(load_trained(root, device))
    if manifest_format(root) != FAST_FORMAT or read_fast_manifest(root)["kind"] != "cnn":
        raise InputError("this bundle cannot take gradients: design with the CNN bundle (models/cnn), and explain "
                         "the designs with R3LM (r3lm explain, r3lm predict)", path=root)
    manifest = read_fast_manifest(root)
    trained = load_trained(require_file(root / manifest["model_file"], "cnn model file"), device)
    lengths = manifest.get("training_data") or {}
    fixed = lengths.get("length_min") if lengths.get("length_min") == lengths.get("length_max") else None
    return Oracle.from_trained(trained, length=fixed)


class Objective(nn.Module):
    """An oracle's objective for a set of targets as a model with one output (N, 1), to be maximised."""

    def __init__(self, oracle: nn.Module, targets: str | Sequence[str], name: str = "min_gap") -> None:
        super().__init__()
        self.oracle, self.name = oracle, name
        self.targets = check_targets(oracle, targets, name)
        self.register_buffer("on_target", torch.tensor([cell in self.targets for cell in oracle.cell_types]))
        self.eval()

    def train(self, mode: bool = True) -> Objective:
        """Always in eval mode, and so the oracle: tangermeme's `predict` restores a model's mode after it
        predicts, and a wrapper left in training mode would put the oracle's BatchNorm on batch statistics."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.oracle(x))[:, None]

    def score(self, activity: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """(N, cell types) activity, torch or numpy -> (N,) objective."""
        on = self.on_target if isinstance(activity, torch.Tensor) else self.on_target.cpu().numpy()
        if self.name == "min_gap":
            return min_gap(activity[:, on], activity[:, ~on])
        targets = activity[:, on]  # max: the weakest target
        return targets.amin(1) if isinstance(targets, torch.Tensor) else targets.min(1)


def check_targets(oracle: nn.Module, targets: str | Sequence[str], name: str) -> list[str]:
    """The target cell types, each once, checked against the oracle and the objective.

    Returns: the targets in the order given."""
    if name not in OBJECTIVES:
        raise InputError(f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES)}")
    cell_types = list(getattr(oracle, "cell_types", []))
    chosen = list(dict.fromkeys([targets] if isinstance(targets, str) else targets))
    unknown = [cell for cell in chosen if cell not in cell_types]
    if unknown or not chosen:
        raise InputError(f"unknown cell type {unknown[0] if unknown else '(none given)'!r}: the oracle predicts "
                         f"{', '.join(cell_types)}", column="target")
    if name == "min_gap" and len(chosen) == len(cell_types):
        raise InputError(f"min_gap needs a cell type besides the targets, but the oracle predicts only "
                         f"{', '.join(cell_types)}; use objective 'max'", column="target")
    return chosen
