"""The report's design section: per target cell type, the designs' objective under each oracle against the
natural sequences, the share above the natural 99th percentile, adversarial designs, edits, diversity and the
motifs designs carry (`r3lm step design` wrote them: designs.parquet, natural.parquet, summary.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from r3lm.design.judge import NATURAL_PERCENTILE, objective_of
from r3lm.errors import require_file
from r3lm.evaluate.figures import figure_link, save_figure

ORACLE_NAMES = {"predicted": "design oracle", "heldout": "held-out oracle", "true": "truth", "measured": "measured",
                "noiseless": "noiseless (simulation)"}


def design_section(design_dir: str | Path, figure_path: Path, summary_file: Path) -> tuple[list[str], Path]:
    """The section's markdown lines and the figure it wrote (at `figure_path`)."""
    folder = Path(design_dir)
    summary = json.loads(require_file(folder / "summary.json", "design summary").read_text())
    designs = pd.read_parquet(folder / "designs.parquet")
    natural = pd.read_parquet(folder / "natural.parquet")
    figure = _distribution_figure(summary, designs, natural, figure_path)
    lines = ["## Design", "", _design_intro(summary), "", _design_table(summary), "",
             f"![Design objective by oracle]({figure_link(figure, summary_file)})", ""]
    lines += _agreement_lines(summary) + _motif_lines(summary)
    logos = sorted((folder / "logos").glob("*.png"))
    if logos:
        lines += ["The top design of each target, as the design oracle reads it (saturation mutagenesis):", ""]
        lines += [f"![{logo.stem} top design]({figure_link(logo, summary_file)})" for logo in logos] + [""]
    if (folder / "explained.parquet").is_file():
        lines += _explained_lines(pd.read_parquet(folder / "explained.parquet"))
    return lines, figure


def _design_intro(summary: dict[str, Any]) -> str:
    objective = "MinGap (the target's activity minus the highest elsewhere)" if summary["objective"] == "min_gap" \
        else "the target's activity"
    start = "random starts" if summary["start"] == "random" else "natural starts"
    budget = f", at most {summary['budget']} edits" if summary["budget"] is not None else ""
    return (f"Designs maximise {objective} under the run's CNN (the design oracle), with {summary['engine']} from "
            f"{start}{budget}. A second CNN, trained on another seed and division of the data, never seen by the "
            f"design (the held-out oracle), judges each one; the reference is the {NATURAL_PERCENTILE}th percentile "
            "of the natural sequences' objective (their noiseless activity on the demo, measured elsewhere). A design is "
            "adversarial when only the design oracle places it above that reference.")


def _design_table(summary: dict[str, Any]) -> str:
    header = ("| target | designs | natural p99 | median: design oracle | held-out | truth | above p99: held-out "
              "| truth | adversarial | oracles agree (r) | edits | pairwise distance |")
    rows = [header, "|" + "---|" * 12]
    for target, figures in summary["targets"].items():
        median, above = figures["median"], figures["above_natural"]
        rows.append(
            f"| {target} | {figures['designs']} | {figures[f'natural_p{NATURAL_PERCENTILE}']:.2f} "
            f"| {median['predicted']:.2f} | {_number(median.get('heldout'))} | {_number(median.get('true'))} "
            f"| {_share(above.get('heldout'))} | {_share(above.get('true'))} | {figures.get('adversarial', '')} "
            f"| {_number(figures.get('oracle_agreement_pearson'))} | {figures['edits_median']:.0f} "
            f"| {figures['diversity_median_hamming']:.0f} of {figures['length']} |")
    return "\n".join(rows)


def _agreement_lines(summary: dict[str, Any]) -> list[str]:
    natural = ", ".join(f"{cell} {value:.2f}" for cell, value in summary["oracle_agreement_natural_pearson"].items())
    lines = [f"On the {summary['natural_sequences']:,} natural sequences the two oracles agree at Pearson {natural}."]
    if "truth_vs_noiseless_pearson" in summary:
        truth = ", ".join(f"{cell} {value:.3f}" for cell, value in summary["truth_vs_noiseless_pearson"].items())
        lines.append(f"The truth function reproduces the simulation's noiseless activity at Pearson {truth}.")
    return [" ".join(lines), ""]


def _motif_lines(summary: dict[str, Any]) -> list[str]:
    lines = ["What the designs carry more often than natural sequences (share of sequences with a hit):", ""]
    for target, figures in summary["targets"].items():
        motifs = ", ".join(f"{entry['motif']} {entry['designs']:.0%} (natural {entry['natural']:.0%})"
                           for entry in figures.get("motifs", []))
        lines.append(f"- {target}: {motifs or 'no motif hits'}")
    return [*lines, ""]


def _explained_lines(explained: pd.DataFrame) -> list[str]:
    """The top designs read three ways: the rationale's drivers, the attributions' motifs, the truth's."""
    lines = ["### The top designs explained", "",
             ("Per design: the motifs its R3LM rationale says drive activity, the JASPAR motifs its CNN attributions "
             "match (saturation mutagenesis seqlets, TOMTOM), and on the demo the TFs whose sites truly add most "
             "to its activity, with the share of those each explanation names."), ""]
    for row in explained.itertuples(index=False):
        truth = list(row.true_drivers)
        lines += [(f"**{row.id}** (target {row.target}; R3LM predicts {row.r3lm_predicted:.2f}, "
                  f"its rationale states level {row.rationale_level})"), "",
                  f"- rationale cites as drivers: {', '.join(row.rationale_drivers) or 'none'}"
                  + (_named(row.rationale_names_truth, row.rationale_families_truth) if truth else ""),
                  f"- attributions match: {', '.join(row.attribution_motifs) or 'none'}"
                  + (_named(row.attribution_names_truth, row.attribution_families_truth) if truth else "")]
        lines += [f"- truly driven by: {', '.join(truth)}"] if truth else []
        lines += ["", "> " + str(row.rationale).replace("\n", "\n> "), ""]
    return lines


def _named(by_name: float, by_family: float) -> str:
    return f" (names {by_name:.0%} of the truth's TFs; {by_family:.0%} by JASPAR family)"


def _distribution_figure(summary: dict[str, Any], designs: pd.DataFrame, natural: pd.DataFrame, path: Path) -> Path:
    """Per target, the objective of natural sequences and of designs under each oracle (box plots), with the
    natural reference percentile as a line."""
    targets, cells = list(summary["targets"]), summary["cell_types"]
    figure = Figure(figsize=(4.2 * len(targets), 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    for axes, target in zip(np.atleast_1d(figure.subplots(1, len(targets))), targets, strict=True):
        mine = designs[designs["target"] == target]
        reference = summary["targets"][target]["reference"]
        boxes = {f"natural\n{ORACLE_NAMES[reference]}": objective_of(natural, reference, [target], cells,
                                                                     summary["objective"])}
        boxes |= {f"designs\n{ORACLE_NAMES[prefix]}": objective_of(mine, prefix, [target], cells, summary["objective"])
                  for prefix in ("predicted", "heldout", "true") if f"{prefix}_{target}" in mine}
        values = [values[np.isfinite(values)] for values in boxes.values()]
        axes.boxplot(values, tick_labels=list(boxes), showfliers=False)
        axes.axhline(summary["targets"][target][f"natural_p{NATURAL_PERCENTILE}"], color="grey", linestyle="--",
                     linewidth=1, label=f"natural p{NATURAL_PERCENTILE}")
        axes.set_title(target)
        axes.set_ylabel("MinGap" if summary["objective"] == "min_gap" else "activity")
        axes.tick_params(axis="x", labelsize=7)
        axes.legend(fontsize=7, loc="lower right")
    return save_figure(figure, path)


def _number(value: float | None) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.2f}"


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"
