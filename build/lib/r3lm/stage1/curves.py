"""The Stage-I loss curves: a table of train and held-out loss per step, and its plot."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from r3lm.io import atomic_path, write_table

LOSS_COLUMNS = ["step", "epoch", "split", "loss", "learning_rate"]


def loss_frame(log_history: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Train and held-out (val) loss rows from a Trainer's log history.

    A resumed run evaluates again at the step it resumes from, so a (split, step) pair can repeat;
    the later row wins (same weights, same loss).
    """
    rows = []
    for entry in log_history:
        if "loss" in entry:
            rows.append({"step": entry["step"], "epoch": entry.get("epoch"), "split": "train",
                         "loss": entry["loss"], "learning_rate": entry.get("learning_rate")})
        elif "eval_loss" in entry:
            rows.append({"step": entry["step"], "epoch": entry.get("epoch"), "split": "val",
                         "loss": entry["eval_loss"], "learning_rate": None})
    frame = pd.DataFrame(rows, columns=LOSS_COLUMNS)
    frame = frame.drop_duplicates(["split", "step"], keep="last")
    return frame.sort_values(["step", "split"], kind="stable").reset_index(drop=True)


def write_loss_curves(frame: pd.DataFrame, csv_path: str | Path, png_path: str | Path) -> None:
    """loss.csv and loss.png, each written atomically."""
    write_table(frame, csv_path)
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(figure)  # an Agg canvas of its own: no global pyplot state or display needed
    axes = figure.add_subplot()
    train, val = frame[frame["split"] == "train"], frame[frame["split"] == "val"]
    axes.plot(train["step"], train["loss"], linewidth=0.8, alpha=0.8, label="train")
    axes.plot(val["step"], val["loss"], marker="o", markersize=3, label="held-out")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss (assistant tokens)")
    axes.set_title("Stage I fine-tuning")
    axes.grid(alpha=0.3)
    axes.legend()
    with atomic_path(png_path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
