"""Saturation mutagenesis with a fast bundle: every single-base substitution of one sequence, scored.

A sequence of length L has 3 L substitutions (each position to each of its three other bases). They are
predicted with the wild type in chunks, every cell type in one call per chunk, into a table with one row per
substitution: position (1-based), ref, alt, and per cell type effect_<cell type> = mutant - wild type.

The logo (logomaker, drawn on an Agg canvas: no display needed) shows per position the four bases' effects,
the wild-type base at 0, minus their mean. A base above the line raises activity against the average base
there; where every substitution hurts, the wild-type base stands tall, which is how a motif the model relies
on shows. One panel per cell type.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from r3lm.deploy.fast import FastModel, load_fast, named_sequences
from r3lm.errors import InputError
from r3lm.io import atomic_path, table_kind, write_table

log = logging.getLogger(__name__)

BASES = "ACGT"
MUTANT_CHUNK = 4096  # mutants per model call and progress step
LOGO_INCHES_PER_BASE = 0.12
LOGO_WIDTH_RANGE = (6.0, 48.0)  # inches: a 200-bp logo is 24 wide; longer ones are squeezed
LOGO_DPI = 110


def effect_column(cell_type: str) -> str:
    return f"effect_{cell_type}"


def substitutions(sequence: str) -> pd.DataFrame:
    """position (1-based), ref, alt and the mutant sequence, position by position, alt in A, C, G, T order."""
    rows = [(position + 1, ref, alt, f"{sequence[:position]}{alt}{sequence[position + 1:]}")
            for position, ref in enumerate(sequence) for alt in BASES if alt != ref]
    return pd.DataFrame(rows, columns=["position", "ref", "alt", "sequence"])


def saturation_mutagenesis(model: FastModel, sequence: str, cell_types: str | Iterable[str] | None = None, *,
                           progress: bool = False) -> tuple[pd.DataFrame, dict[str, float]]:
    """The 3 L substitutions' effects in the chosen cell types, and the wild type's predictions."""
    chosen = model.check_cell_types(cell_types)
    _, (wild_type,) = named_sequences([sequence], allow_n=False)  # an N has no substitutions to weigh
    mutants = substitutions(wild_type)
    started = time.perf_counter()
    predicted = [model.predict([wild_type])]
    with tqdm(total=len(mutants), desc="mutagenesis", unit="mutant", disable=not progress) as bar:
        for first in range(0, len(mutants), MUTANT_CHUNK):
            predicted.append(model.predict(mutants["sequence"].iloc[first:first + MUTANT_CHUNK].tolist()))
            bar.update(len(predicted[-1]))
    matrix = np.concatenate(predicted)
    columns = [model.cell_types.index(cell) for cell in chosen]
    effects = matrix[1:, columns] - matrix[0, columns]
    table = mutants.drop(columns="sequence").assign(**{effect_column(cell): effects[:, i]
                                                       for i, cell in enumerate(chosen)})
    seconds = time.perf_counter() - started
    log.info("scored %d substitutions of a %d-bp sequence in %d cell types in %.2f s (%.0f mutants/s)",
             len(table), len(wild_type), len(chosen), seconds, len(table) / max(seconds, 1e-9))
    return table, {cell: float(matrix[0, index]) for cell, index in zip(chosen, columns, strict=True)}


def centred_effects(table: pd.DataFrame, cell_type: str) -> pd.DataFrame:
    """(positions, A C G T): each base's effect at each position, the wild-type base at 0, minus the
    position's mean over the four."""
    effects = table.pivot(index="position", columns="alt", values=effect_column(cell_type))
    effects = effects.reindex(columns=list(BASES)).fillna(0.0)  # the wild-type base: no change
    return effects.sub(effects.mean(axis=1), axis=0)


def draw_logo(table: pd.DataFrame, cell_types: Sequence[str], out: str | Path, *, title: str = "") -> Path:
    """The mean-centred effects as a logo per cell type, one PNG."""
    import logomaker
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    length = int(table["position"].max())
    width = float(np.clip(length * LOGO_INCHES_PER_BASE, *LOGO_WIDTH_RANGE))
    figure = Figure(figsize=(width, 1.8 * len(cell_types) + 0.4), layout="constrained")
    FigureCanvasAgg(figure)
    for axes, cell in zip(figure.subplots(len(cell_types), 1, squeeze=False)[:, 0], cell_types, strict=True):
        logomaker.Logo(centred_effects(table, cell), ax=axes, color_scheme="classic")
        axes.axhline(0, color="grey", linewidth=0.5)
        axes.set_ylabel(f"{cell}\neffect - mean")
    axes.set_xlabel("position (bp)")
    if title:
        figure.suptitle(title)
    path = Path(out)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=LOGO_DPI)
    return path


def run_mutagenesis(model_dir: str | Path, sequence: str, out: str | Path, *, cell_types: Sequence[str] | None = None,
                    logo: str | Path | None = None, name: str = "query", device: str = "auto",
                    batch_size: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Saturation mutagenesis of `sequence` into the table `out` (by extension) and, with `logo`, a PNG;
    returns the wild type's predictions and the strongest substitution per cell type.

    CLI: r3lm mutagenesis --model DIR (--sequence ACGT... | --fasta FILE [--id NAME]) --out FILE.{tsv,parquet,csv}
         [--logo FILE.png] [--cell-types A B ...] [--device auto] [--batch-size N] [--no-progress]
         (the CLI reads --fasta with r3lm.data.sequences.read_sequences and passes the chosen record, its id
         as `name`)
    """
    table_kind(out)  # an unknown output type fails before any work
    if logo is not None and Path(logo).suffix.lower() != ".png":
        raise InputError("the logo is written as PNG: give it a .png name", path=logo)
    model = load_fast(model_dir, device=device, batch_size=batch_size)
    chosen = model.check_cell_types(cell_types)
    table, wild_type = saturation_mutagenesis(model, sequence, chosen, progress=progress)
    write_table(table, out)
    if logo is not None:
        draw_logo(table, chosen, logo, title=f"{name}: saturation mutagenesis ({model.kind})")
    strongest = {cell: table.loc[table[effect_column(cell)].abs().idxmax(), ["position", "ref", "alt",
                                                                              effect_column(cell)]].tolist()
                 for cell in chosen}
    return {"wild_type": wild_type, "strongest": strongest, "substitutions": len(table)}
