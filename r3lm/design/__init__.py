"""Cell-type-specific enhancer design on a frozen oracle (issue 32; Gosai et al. 2024 style).

    from r3lm.design import design, load_oracle
    oracle = load_oracle("results/demo/runs/main/models/cnn")
    table = design(oracle, "HepG2", n_designs=100, seed=0)                  # de novo, ledidi, MinGap
    edited = design(oracle, "HepG2", starts=natural, budget=5)              # at most 5 edits each
    greedy = design(oracle, "HepG2", starts=natural, budget=5, engine="greedy")

The oracle (`objective.Oracle`) is the CNN baseline in the activity scale; the objectives are MinGap and
the target's activity (`objective`); the engines are ledidi and tangermeme's greedy substitution
(`engines`), each also callable as `f(model, X, ...)` on one-hot tensors.
"""

from __future__ import annotations

from r3lm.design.engines import (
           GreedySettings,
           LedidiSettings,
           cap_edits,
           greedy_design,
           ledidi_design,
)
from r3lm.design.objective import OBJECTIVES, Objective, Oracle, load_oracle
from r3lm.design.run import ENGINES, design, engine_settings

__all__ = ["ENGINES", "OBJECTIVES", "GreedySettings", "LedidiSettings", "Objective", "Oracle", "cap_edits",
           "design", "engine_settings", "greedy_design", "ledidi_design", "load_oracle"]
