"""Saturation mutagenesis with a bundle: every single-base substitution of one sequence, scored.

A sequence of length L has 3 L substitutions (each position to each of its three other bases). The output
has one row per substitution: position (1-based), ref, alt, and per cell type effect_<cell type> = mutant -
wild type. A fast bundle (CNN, motif ridge) predicts them with the wild type in chunks, every cell type in
one call per chunk.

An LLM bundle (r3lm.deploy.scorer) would need 3 L rationales; it writes only those whose card changes. The
wild type is scored once (card, rationale, prediction), and every mutant gets its own card (the motif scan is
cheap). A mutant whose card shows the wild type's motifs (the same Identified Motifs lines: name, family,
score to two decimals, strand and position; and the same grammar tags where the card text shows them) reuses
the wild type's rationale: its card differs only in the one base of its DNA line and in the GC content line,
which no rationale step is about. A mutant whose motifs change (a site lost, gained or scored differently)
gets a fresh rationale. Every mutant is predicted anew either way, because the Stage-II regressor reads the
card text with its DNA sequence (sequence_only reads the sequence alone), so the one base changes its input
even where the motifs stay. A `rationale` column says which: reused or rescored (bundles with a Stage-I
model, i.e. generated_cot; rcc_only and sequence_only write no rationale and only predict each mutant).
benchmarks/mutagenesis.py measures how many mutants change the card, and the time saved.

The logo (logomaker, drawn on an Agg canvas: no display needed) shows per position the four bases' effects,
the wild-type base at 0, minus their mean. A base above the line raises activity against the average base
there; where every substitution hurts, the wild-type base stands tall, which is how a motif the model relies
on shows. One panel per cell type.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from r3lm.deploy.fast import FastModel, named_sequences
from r3lm.deploy.scorer import R3LM, load
from r3lm.errors import InputError
from r3lm.io import atomic_path, table_kind, write_table
from r3lm.rcc.card import Card

log = logging.getLogger(__name__)

BASES = "ACGT"
MUTANT_CHUNK = 4096  # mutants per model call and progress step (fast bundles)
RATIONALE_COLUMN = "rationale"  # LLM bundles with a Stage-I model: REUSED or RESCORED
REUSED, RESCORED = "reused", "rescored"
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


def saturation_mutagenesis(model: FastModel | R3LM, sequence: str, cell_types: str | Iterable[str] | None = None, *,
                           progress: bool = False) -> tuple[pd.DataFrame, dict[str, float]]:
    """The 3 L substitutions' effects in the chosen cell types, and the wild type's predictions."""
    chosen = model.check_cell_types(cell_types)
    _, (wild_type,) = named_sequences([sequence], allow_n=False)  # an N has no substitutions to weigh
    mutants = substitutions(wild_type)
    started = time.perf_counter()
    sequences = [wild_type, *mutants["sequence"]]
    marks = None
    if isinstance(model, FastModel):
        matrix = _fast_predictions(model, sequences, progress=progress)
        matrix = matrix[:, [model.cell_types.index(cell) for cell in chosen]]
    else:
        matrix, marks = llm_predictions(model, sequences, chosen, reuse=True, progress=progress)
    effects = matrix[1:] - matrix[0]
    table = mutants.drop(columns="sequence").assign(**{effect_column(cell): effects[:, i]
                                                       for i, cell in enumerate(chosen)})
    if marks is not None:
        table[RATIONALE_COLUMN] = marks
    seconds = time.perf_counter() - started
    reused = "" if marks is None else f"; {marks.count(REUSED)} reused the wild type's rationale"
    log.info("scored %d substitutions of a %d-bp sequence in %d cell types with the %s bundle in %.2f s "
             "(%.2f mutants/s)%s", len(table), len(wild_type), len(chosen), model.kind, seconds,
             len(table) / max(seconds, 1e-9), reused)
    return table, {cell: float(matrix[0, i]) for i, cell in enumerate(chosen)}


def _fast_predictions(model: FastModel, sequences: list[str], *, progress: bool) -> np.ndarray:
    """(sequences, the model's cell types), in chunks of MUTANT_CHUNK."""
    predicted = []
    with tqdm(total=len(sequences), desc="mutagenesis", unit="mutant", disable=not progress) as bar:
        for first in range(0, len(sequences), MUTANT_CHUNK):
            predicted.append(model.predict(sequences[first:first + MUTANT_CHUNK]))
            bar.update(len(predicted[-1]))
    return np.concatenate(predicted)


def llm_predictions(model: R3LM, sequences: list[str], cell_types: Sequence[str], *, reuse: bool,
                    progress: bool) -> tuple[np.ndarray, list[str] | None]:
    """(sequences, cell types) activity for the wild type (first) and its mutants, and per mutant whether it
    reused the wild type's rationale (None for a bundle without a Stage-I model); see the module docstring.
    With `reuse` False every mutant gets its own rationale: the costly reference that benchmarks/mutagenesis.py
    times the reuse against."""
    rows, changed = card_changes(model, sequences, cell_types)
    rescored = [not reuse or change for change in changed]
    if model.writes_rationales:
        write = np.repeat([True, *rescored], len(cell_types))  # the wild type and each changed mutant
        rationales = np.empty(len(rows), dtype=object)
        rationales[write] = model.write_rationales(rows[write], progress=progress)
        rows["rationale"] = np.where(write, rationales, np.tile(rationales[:len(cell_types)], len(sequences)))
    step = model.batch * 4 * len(cell_types)  # rows per progress step
    predicted = []
    with tqdm(total=len(sequences), desc="mutagenesis", unit="mutant", disable=not progress) as bar:
        for first in range(0, len(rows), step):
            predicted.append(model.predict_rows(rows.iloc[first:first + step]))
            bar.update(len(predicted[-1]) // len(cell_types))
    marks = [RESCORED if changed else REUSED for changed in rescored] if model.writes_rationales else None
    return np.concatenate(predicted).reshape(len(sequences), len(cell_types)), marks


def card_changes(model: R3LM, sequences: list[str], cell_types: Sequence[str]) -> tuple[pd.DataFrame, list[bool]]:
    """`card_rows` of the wild type (first) and its mutants, and per mutant whether its card shows other motifs
    than the wild type's (`rationale_view`)."""
    rows = model.card_rows(sequences, cell_types)
    with_grammar = model.pipeline.card_settings.with_grammar
    views = [rationale_view(Card.from_json(text), with_grammar=with_grammar)
             for text in rows["card_json"].iloc[::len(cell_types)]]
    return rows, [view != views[0] for view in views[1:]]


def rationale_view(card: Card, *, with_grammar: bool) -> tuple[str, ...]:
    """What a rationale is written about on a card, short of the sequence and its GC content: the motif lines,
    and the grammar tags where the card text shows them."""
    return (*card.motif_lines(), *(card.grammar_tags if with_grammar else ()))


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
    """Saturation mutagenesis of `sequence` through a bundle (fast or LLM) into the table `out` (by extension)
    and, with `logo`, a PNG; returns the wild type's predictions, the strongest substitution per cell type and,
    for an LLM bundle with a Stage-I model, how many mutants reused the wild type's rationale.

    CLI: r3lm mutagenesis --model DIR (--sequence ACGT... | --fasta FILE [--id NAME]) --out FILE.{tsv,parquet,csv}
         [--logo FILE.png] [--cell-types A B ...] [--device auto] [--batch-size N] [--no-progress]
         (the CLI reads --fasta with r3lm.data.sequences.read_sequences and passes the chosen record, its id
         as `name`)
    """
    table_kind(out)  # an unknown output type fails before any work
    if logo is not None and Path(logo).suffix.lower() != ".png":
        raise InputError("the logo is written as PNG: give it a .png name", path=logo)
    model = load(str(model_dir), device, batch_size)
    chosen = model.check_cell_types(cell_types)
    table, wild_type = saturation_mutagenesis(model, sequence, chosen, progress=progress)
    write_table(table, out)
    if logo is not None:
        draw_logo(table, chosen, logo, title=f"{name}: saturation mutagenesis ({model.kind})")
    strongest = {cell: table.loc[table[effect_column(cell)].abs().idxmax(), ["position", "ref", "alt",
                                                                              effect_column(cell)]].tolist()
                 for cell in chosen}
    summary = {"wild_type": wild_type, "strongest": strongest, "substitutions": len(table)}
    if RATIONALE_COLUMN in table.columns:
        summary["rationales"] = dict(Counter(table[RATIONALE_COLUMN]))
    return summary
