"""`design`: checked inputs in, one engine run, a table of designs out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from tangermeme.predict import predict
from torch import nn

from r3lm.deploy.fast import predicted_column
from r3lm.design.engines import (
    GreedySettings,
    LedidiSettings,
    greedy_design,
    ledidi_design,
)
from r3lm.design.objective import Objective
from r3lm.design.starts import Sequences, decode, natural_starts, random_starts
from r3lm.errors import InputError

ENGINES = ("ledidi", "greedy")
SCORE_BATCH = 512


def design(oracle: nn.Module, target: str | Sequence[str], *, objective: str = "min_gap",
           starts: Sequences | None = None, n_designs: int | None = None, length: int | None = None,
           budget: int | None = None, engine: str = "ledidi", seed: int = 0,
           settings: LedidiSettings | GreedySettings | None = None) -> pd.DataFrame:
    """Design sequences that maximise `objective` for `target` under `oracle`, one per start.

    Args:
        oracle: a torch module from one-hot (N, 4, L) to activity (N, cell types), with `cell_types`
            (`load_oracle`); ledidi needs its gradient.
        target: a cell type, or a set of them (min_gap: the weakest of them against the strongest other).
        objective: "min_gap" or "max" (see `r3lm.design.objective`).
        starts: natural starts (a list, or a mapping / Series from id to sequence), all ACGT and of one
            length; None: `n_designs` random starts of `length` (default: the oracle's training length).
        n_designs: how many random starts; only without `starts`.
        length: the random starts' length.
        budget: at most this many edits per design (None: unlimited).
        engine: "ledidi" (gradient, default) or "greedy" (tangermeme greedy substitution).
        seed: seeds the random starts and ledidi's draws; the same seed gives the same designs.
        settings: the engine's knobs (`LedidiSettings` or `GreedySettings`); None: the defaults.

    Returns:
        One row per design, in start order: id, start_id, target (a set joined by "+"), objective, engine,
        sequence, start, edits (Hamming distance to the start), score and start_score (the objective), and
        predicted_<cell type> (activity) for every cell type of the oracle.
    """
    check_oracle(oracle)
    check_choice(engine, settings, budget)
    device = _device(oracle)
    model = Objective(oracle, target, objective).to(device)
    if starts is None:
        ids, X = random_starts(n_designs, length or getattr(oracle, "length", None), seed)
    elif n_designs is not None:
        raise InputError("give starts or n_designs, not both: natural starts get one design each")
    else:
        ids, X = natural_starts(starts, getattr(oracle, "length", None))
    X = X.to(device)
    if engine == "ledidi":
        check_gradients(model, X[:1])
        with torch.enable_grad():
            designs = ledidi_design(model, X, budget=budget, seed=seed, settings=settings or LedidiSettings())
    else:
        designs = greedy_design(model, X, budget=budget, settings=settings or GreedySettings())
    return design_table(model, ids, X, designs, engine)


def engine_settings(settings: Mapping[str, Any]) -> LedidiSettings | GreedySettings:
    """The engine's knobs from the `design` section: ledidi's iterations (the rest are tuned defaults)."""
    return LedidiSettings(iterations=settings["iterations"]) if settings["engine"] == "ledidi" else GreedySettings()


def check_oracle(oracle: object) -> None:
    """An oracle is a torch module naming its outputs in `cell_types`."""
    if not isinstance(oracle, nn.Module) or not isinstance(getattr(oracle, "cell_types", None), list):
        raise InputError(f"the oracle must be a torch module with a cell_types list (load_oracle gives one), "
                         f"not {type(oracle).__name__}")


def check_choice(engine: str, settings: object, budget: object) -> None:
    """A known engine, its own settings, and a budget of None or a whole number of edits, at least 0."""
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    expected = LedidiSettings if engine == "ledidi" else GreedySettings
    if settings is not None and not isinstance(settings, expected):
        raise InputError(f"the {engine} engine takes {expected.__name__}, not {type(settings).__name__}")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
        raise InputError(f"the edit budget must be a whole number of edits, 0 or more, got {budget!r}")


def check_gradients(model: nn.Module, x: torch.Tensor) -> None:
    """ledidi follows the oracle's gradient: its output must depend differentiably on its input."""
    with torch.enable_grad():
        probe = x.detach().float().requires_grad_(True)
        output = model(probe)
    if not output.requires_grad:
        raise InputError("the oracle cannot take gradients (its output is detached from its input); "
                         "use engine='greedy' or a differentiable oracle")


def _device(oracle: nn.Module) -> torch.device:
    tensor = next(iter([*oracle.parameters(), *oracle.buffers()]), None)
    return torch.device("cpu") if tensor is None else tensor.device


def design_table(model: Objective, ids: list[str], X: torch.Tensor, designs: torch.Tensor,
                 engine: str) -> pd.DataFrame:
    """The designs and their starts scored by the oracle, one row each (see `design`)."""
    device = X.device
    activity = predict(model.oracle, designs, batch_size=SCORE_BATCH, device=device).numpy()
    start_activity = predict(model.oracle, X, batch_size=SCORE_BATCH, device=device).numpy()
    label = "+".join(model.targets)
    table = pd.DataFrame({
        "id": [f"{name}_{label}" for name in ids], "start_id": ids, "target": label, "objective": model.name,
        "engine": engine, "sequence": decode(designs), "start": decode(X),
        "edits": (designs != X).any(dim=1).sum(dim=1).cpu().numpy(),
        "score": model.score(activity), "start_score": model.score(start_activity)})
    for index, cell in enumerate(model.oracle.cell_types):
        table[predicted_column(cell)] = activity[:, index]
    return table
