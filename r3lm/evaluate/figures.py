"""How the report writes a figure: atomically, as PNG, linked from the summary by a relative path."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from r3lm.io import atomic_path


def save_figure(figure: Figure, path: Path) -> Path:
    """Write `figure` as PNG to `path` (atomically) and return the path."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return path


def empty_figure(path: Path, message: str) -> Path:
    """A figure that says why there is nothing to draw."""
    figure = Figure(figsize=(6, 2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.axis("off")
    axes.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return save_figure(figure, path)


def figure_link(figure: Path, summary: Path) -> str:
    """The figure's path relative to the summary's folder, as markdown links it."""
    return Path(os.path.relpath(figure.resolve(), summary.parent.resolve())).as_posix()

