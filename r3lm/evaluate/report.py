"""The evaluation report: summary.md with every table and plain-language notes, and its figures.

The notes are generated from the numbers and say only what the intervals support: a difference is
called a win or a loss only when its paired-bootstrap interval (95% by default) excludes 0; otherwise
the report says the data do not separate the two. Methods that read the teacher's label-informed rationale (oracle_cot)
are marked as upper bounds that cannot be deployed, and are never named the best method.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from r3lm.errors import InputError, require_file
from r3lm.evaluate.figures import empty_figure, figure_link, save_figure
from r3lm.evaluate.metrics import (
    PROTOCOLS,
    Block,
    blocks,
    compare_blocks,
    resolve_settings,
)
from r3lm.io import atomic_path

log = logging.getLogger(__name__)

PROTOCOL_TEXT = {"full": "every test sequence",
                 "paper": "the paper protocol's test subset (sampling.test_subset_per_cell_type random test sequences "
                          "per cell type, the paper's 100; with reasoning.teacher: released, the released test file's)"}
MAX_POINTS = 5000  # per scatter panel; more only blurs the picture and slows the plot
MAX_SETTINGS = 10


def _read_tsv(path: str | Path, what: str) -> pd.DataFrame:
    file = require_file(path, what)
    return pd.read_csv(file, sep="\t")


def _number(value: Any, digits: int = 3, sign: str = "") -> str:
    return "–" if value is None or pd.isna(value) else f"{value:{sign}.{digits}f}"


def _estimate(row: Mapping[str, Any], name: str, digits: int = 3) -> str:
    """"0.712 [0.650, 0.770]" from the columns name, name_lo, name_hi."""
    if pd.isna(row.get(name)):
        return "–"
    return f"{_number(row[name], digits)} [{_number(row[f'{name}_lo'], digits)}, {_number(row[f'{name}_hi'], digits)}]"


def _signed(row: Mapping[str, Any], name: str) -> str:
    """"+0.031 [-0.012, 0.074], p = 0.16"."""
    if pd.isna(row.get(name)):
        return "–"
    return (f"{_number(row[name], sign='+')} [{_number(row[f'{name}_lo'], sign='+')}, "
            f"{_number(row[f'{name}_hi'], sign='+')}], p = {_p_text(row[f'{name}_p'])}")


def _p_text(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |" for row in rows]


def _verdict(row: Mapping[str, Any], name: str, method: str, other: str) -> str:
    """What a paired difference of a higher-is-better metric supports, in words."""
    low, high = row[f"{name}_lo"], row[f"{name}_hi"]
    if pd.isna(low) or pd.isna(high):
        return f"{method} and {other} could not be compared"
    if low > 0:
        return f"{method} is better than {other} (the interval excludes 0)"
    if high < 0:
        return f"{method} is worse than {other} (the interval excludes 0)"
    return f"the data do not separate {method} from {other} (the interval includes 0)"


def _label(method: str, upper_bounds: Collection[str], baselines: Collection[str]) -> str:
    return f"{method} †" if method in upper_bounds else f"{method} (baseline)" if method in baselines else method


# --------------------------------------------------------------------------------------------- sections
def _results_section(metrics: pd.DataFrame, protocol: str, upper_bounds: Collection[str],
                     skipped: pd.DataFrame, figure_names: Mapping[str, str]) -> list[str]:
    lines = [f"## Protocol `{protocol}`: {PROTOCOL_TEXT[protocol]}", ""]
    part = metrics[metrics["protocol"] == protocol]
    if part.empty:
        lines += ["No method covers every row of this protocol for any cell type.", ""]
    baselines = set(part.loc[part["baseline"].astype(bool), "method"])
    for cell_type, rows in part.groupby("cell_type", sort=True):
        reference = next((value for value in rows["reference"] if isinstance(value, str) and value), None)
        delta = f"Δ Pearson vs {reference} [CI], p" if reference else "Δ Pearson vs best baseline"
        lines += [f"### {cell_type} (n = {int(rows['n'].iloc[0])})", ""]
        ordered = rows.sort_values("pearson", ascending=False, na_position="last")
        lines += _table(["method", "Pearson [CI]", "Spearman [CI]", "RMSE [CI]", "R² [CI]",
                         "level accuracy [CI]", delta],
                        [[_label(row["method"], upper_bounds, baselines), _estimate(row, "pearson"),
                          _estimate(row, "spearman"), _estimate(row, "rmse"), _estimate(row, "r2"),
                          _estimate(row, "level_accuracy"),
                          "reference" if row["method"] == reference else _signed(row, "delta_pearson")]
                         for row in ordered.to_dict("records")])
        lines.append("")
    if any(method in upper_bounds for method in part["method"]):
        lines += [("† upper bound, not deployable: it reads the teacher's rationale, which was written knowing "
                  "the measured level."), ""]
    omitted = skipped[skipped["protocol"] == protocol] if not skipped.empty else skipped
    if len(omitted):
        lines += [f"Not scored under `{protocol}` ({len(omitted)}): " + "; ".join(
            f"{row.method} / {row.cell_type}: {row.reason}" for row in omitted.itertuples()) + ".", ""]
    lines += [f"![Predicted vs measured ({protocol})]({figure_names['scatter']})", "",
              f"![Pearson with CI ({protocol})]({figure_names['pearson']})", ""]
    return lines


def _comparison_section(comparisons: pd.DataFrame) -> list[str]:
    if comparisons.empty:
        return []
    lines = ["## The reasoning-conditioned method against its ablations", "",
             ("Paired bootstrap on the same resampled sequences (method minus ablation; for RMSE lower is "
             "better)."), ""]
    lines += _table(["protocol", "cell type", "method − ablation", "n", "Δ Pearson [CI], p",
                     "Δ Spearman [CI], p", "Δ RMSE [CI], p"],
                    [[row["protocol"], row["cell_type"], f"{row['method']} − {row['other']}", int(row["n"]),
                      _signed(row, "delta_pearson"), _signed(row, "delta_spearman"), _signed(row, "delta_rmse")]
                     for row in comparisons.to_dict("records")])
    return [*lines, ""]


def _training_rows(summary: Mapping[str, Any]) -> str:
    rows = summary.get("train_rows", summary.get("train_sequences"))
    if isinstance(rows, Mapping):
        values = {str(key): value for key, value in rows.items() if isinstance(value, int | float)}
        if values:
            return f"{int(sum(values.values())):,} (" + ", ".join(f"{key} {int(value):,}"
                                                                  for key, value in values.items()) + ")"
    return f"{int(rows):,}" if isinstance(rows, int | float) else "–"


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, str | int | float | bool) or value is None:
            flat[f"{prefix}{key}"] = value
    return flat


def _settings_text(summary: Mapping[str, Any]) -> str:
    flat = _flatten(summary.get("settings") or {})
    for key in ("training", "backbone", "family", "epochs_run", "best_epoch", "parameters"):
        if isinstance(summary.get(key), str | int | float):
            flat.setdefault(key, summary[key])
    items = [f"{key}={value}" for key, value in flat.items()]
    return ", ".join(items[:MAX_SETTINGS]) + (f", … (+{len(items) - MAX_SETTINGS})" if len(items) > MAX_SETTINGS
                                               else "") if items else "–"


def _methods_section(summaries: Mapping[str, Mapping[str, Any]], baselines: Collection[str],
                     upper_bounds: Collection[str]) -> list[str]:
    lines = ["## Methods", ""]
    lines += _table(["method", "kind", "training rows", "key settings"],
                    [[method, "upper bound †" if method in upper_bounds else "baseline" if method in baselines
                      else "method", _training_rows(summary), _settings_text(summary)]
                     for method, summary in sorted(summaries.items())])
    return [*lines, ""]


def _faithfulness_section(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    if not tables:
        return []
    lines = ["## Faithfulness", ""]
    for label, table in tables.items():
        lines += [f"### {label}", ""]
        if "claimed_precision" in table.columns:
            lines += [("Citations against the simulator's causal sites: *cited* = every card motif the rationale "
                      "names; *claimed* = those it gives a direction; chance = precision of citing every card "
                      "motif."), ""]
            lines += _table(["cell type", "rationales", "cited", "precision", "recall", "claimed",
                             "claimed precision", "claimed recall", "chance", "direction agreement (n)"],
                            [[row["cell_type"], int(row["rationales"]), int(row["cited"]), _estimate(row, "precision"),
                              _estimate(row, "recall"), int(row["claimed"]), _estimate(row, "claimed_precision"),
                              _estimate(row, "claimed_recall"), _number(row["card_precision"]),
                              f"{_estimate(row, 'direction_agreement')} ({int(row['direction_n'])})"]
                             for row in table.to_dict("records")])
        elif "agreement" in table.columns:
            lines += ["Motif disruption: how often the prediction moves the way the rationale claimed.", ""]
            lines += _table(["cell type", "pairs", "sequences", "changed", "agreement [CI]",
                             "activating (agreement)", "repressive (agreement)"],
                            [[row["cell_type"], int(row["pairs"]), int(row["sequences"]), int(row["changed"]),
                              _estimate(row, "agreement"),
                              f"{int(row['activating'])} ({_number(row['agreement_activating'])})",
                              f"{int(row['repressive'])} ({_number(row['agreement_repressive'])})"]
                             for row in table.to_dict("records")])
        else:
            lines += _table(list(table.columns), [[_number(value) if isinstance(value, float) else str(value)
                                                   for value in row] for row in table.itertuples(index=False)])
        lines.append("")
    return lines


def _transfer_clause(row: Mapping[str, Any]) -> str:
    """How much of its in-dataset Pearson a method keeps in one cell type of another table, from the numbers."""
    here = f"{_estimate(row, 'pearson')} on {row['transfer']}"
    own = row.get("in_dataset_pearson")
    if pd.isna(own):
        return f"in {row['cell_type']} Pearson {here}, with no in-dataset Pearson to compare"
    against = f"against {_number(own)} on its own `{row['in_dataset_protocol']}` test"
    inside = "includes" if row["pearson_lo"] <= own <= row["pearson_hi"] else "excludes"
    if pd.isna(row["pearson"]) or own <= 0:
        return f"in {row['cell_type']} Pearson {here} {against}, where a share is not defined"
    if row["pearson"] <= 0:
        return (f"in {row['cell_type']} none of its in-dataset Pearson is left ({here} {against}; the transfer "
                f"interval {inside} the in-dataset value)")
    return (f"in {row['cell_type']} it keeps {_share(row)} of its in-dataset Pearson ({here} {against}; "
            f"the transfer interval {inside} the in-dataset value)")


def _share(row: Mapping[str, Any]) -> str:
    """The transfer Pearson as a share of the in-dataset one, where both are positive (a share of a negative
    correlation, or a negative share, says nothing)."""
    own, here = row.get("in_dataset_pearson"), row.get("pearson")
    return "–" if pd.isna(own) or pd.isna(here) or own <= 0 or here <= 0 else f"{here / own:.0%}"


def _transfer_section(transfer: pd.DataFrame, baselines: Collection[str]) -> list[str]:
    """Each transfer entry's table of methods x cell types, its leak guard's counts, and one sentence per method."""
    if transfer.empty:
        return []
    lines = ["## Transfer to other tables", "",
             ("Each model of this run scored on another table's rows (every row a test row), after removing the "
              "rows whose sequence, on either strand, the models trained or validated on; Pearson and Spearman "
              "with bootstrap intervals on the same resamples for every method, beside the method's Pearson on "
              "its own test split (`full` where it covers every test row, else `paper`)."), ""]
    for name, rows in transfer.groupby("transfer", sort=True):
        cells = rows.drop_duplicates("cell_type").sort_values("cell_type")
        lines += [f"### {name}", "",
                  "Leak guard and sample: " + "; ".join(
                      f"{row.cell_type}: {int(row.leak_identical)} identical and {int(row.leak_reverse_complement)} "
                      f"reverse-complement rows removed, {int(row.n)} of the {int(row.available)} left scored"
                      for row in cells.itertuples()) + ".", ""]
        ordered = rows.sort_values(["cell_type", "pearson"], ascending=[True, False], na_position="last")
        lines += _table(["method", "cell type", "n", "Pearson [CI]", "Spearman [CI]", "in-dataset Pearson [CI]",
                         "kept"],
                        [[_label(row["method"], (), baselines), row["cell_type"], int(row["n"]),
                          _estimate(row, "pearson"), _estimate(row, "spearman"),
                          f"{_estimate(row, 'in_dataset_pearson')} ({row['in_dataset_protocol']})"
                          if not pd.isna(row["in_dataset_pearson"]) else "–", _share(row)]
                         for row in ordered.to_dict("records")])
        lines.append("")
        for method, part in rows.groupby("method", sort=True):
            clauses = [_transfer_clause(row) for row in part.sort_values("cell_type").to_dict("records")]
            lines.append(f"- {method}: " + "; ".join(clauses) + ".")
        lines.append("")
    return lines


def _read_transfer(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Every transfer metrics table (r3lm step transfer), one after the other."""
    frames = [_read_tsv(path, "transfer metrics table") for path in paths]
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _notes(metrics: pd.DataFrame, comparisons: pd.DataFrame, skipped: pd.DataFrame,
           faithfulness: Mapping[str, pd.DataFrame], reasoning_method: str, upper_bounds: Collection[str]) -> list[str]:
    notes = []
    for (protocol, cell_type), rows in metrics.groupby(["protocol", "cell_type"], sort=True):
        deployable = rows[~rows["method"].isin(upper_bounds)].dropna(subset=["pearson"])
        if deployable.empty:
            continue
        best = deployable.loc[deployable["pearson"].idxmax()]
        text = (f"`{protocol}`, {cell_type}: the highest point Pearson among deployable methods is {best['method']} "
                f"({_estimate(best, 'pearson')})")
        if best["reference"] and isinstance(best["reference"], str) and best["method"] != best["reference"]:
            text += f"; against the best baseline {best['reference']}, {_signed(best, 'delta_pearson')}: " + _verdict(
                best, "delta_pearson", best["method"], best["reference"])
        elif best["method"] == best["reference"]:
            text += ", itself the best baseline"
        notes.append(text + ".")
        for row in rows[rows["method"].isin(upper_bounds)].to_dict("records"):
            notes.append(f"`{protocol}`, {cell_type}: {row['method']} reaches Pearson {_estimate(row, 'pearson')}; "
                         f"it is an upper bound (it reads a rationale written with the measured label), not a "
                         f"deployable method.")
    for row in comparisons.to_dict("records"):
        notes.append(f"`{row['protocol']}`, {row['cell_type']}: {row['method']} − {row['other']} Pearson "
                     f"{_signed(row, 'delta_pearson')}: {_verdict(row, 'delta_pearson', row['method'], row['other'])}.")
    if comparisons.empty and reasoning_method in set(metrics["method"]):
        notes.append(f"No ablation of {reasoning_method} covers the same sequences, so no paired comparison was made.")
    elif reasoning_method not in set(metrics["method"]):
        notes.append(f"{reasoning_method} has no scored predictions.")
    if len(skipped):
        notes.append(f"{len(skipped)} (protocol, cell type, method) combinations were not scored because the "
                     f"predictions do not cover every row (listed under each protocol).")
    for label, table in faithfulness.items():
        overall = table[table["cell_type"] == "all"]
        if overall.empty:
            continue
        row = overall.iloc[0].to_dict()
        if "claimed_precision" in table.columns:
            chance = row["card_precision"]
            above = row["claimed_precision_lo"] > chance if not pd.isna(row["claimed_precision_lo"]) else False
            notes.append(f"{label}: claimed citations are correct {_estimate(row, 'claimed_precision')} of the time "
                         f"against a chance level of {_number(chance)} ("
                         + ("above chance: the interval excludes it" if above
                            else "not distinguishable from chance or below it") + f"); recall "
                         f"{_estimate(row, 'claimed_recall')}; direction agreement "
                         f"{_estimate(row, 'direction_agreement')} over {int(row['direction_n'])} cited causal motifs.")
        elif "agreement" in table.columns:
            notes.append(f"{label}: disrupting a cited motif moved the prediction the claimed way in "
                         f"{_estimate(row, 'agreement')} of {int(row['pairs'])} cases.")
    return ["## Notes", "", *[f"- {note}" for note in notes], ""] if notes else []


# ---------------------------------------------------------------------------------------------- figures
def _scatter_figure(found: Sequence[Block], protocol: str, path: Path, seed: int) -> Path:
    chosen = [block for block in found if block.protocol == protocol and block.predicted]
    methods = sorted({method for block in chosen for method in block.predicted})
    if not methods:
        return empty_figure(path, f"No method covers every row of protocol '{protocol}'.")
    figure = Figure(figsize=(3.0 * len(chosen) + 0.5, 2.7 * len(methods) + 0.5), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(len(methods), len(chosen), squeeze=False)
    for column, block in enumerate(chosen):
        shown = np.arange(len(block.measured))
        if len(shown) > MAX_POINTS:
            shown = np.sort(np.random.default_rng(seed).choice(shown, MAX_POINTS, replace=False))
        for row, method in enumerate(methods):
            axes = grid[row][column]
            if method not in block.predicted:
                axes.axis("off")
                axes.text(0.5, 0.5, "not scored", ha="center", va="center", transform=axes.transAxes)
                continue
            predicted = block.predicted[method]
            axes.scatter(block.measured[shown], predicted[shown], s=4, alpha=0.35, linewidths=0, rasterized=True)
            low = min(block.measured.min(), predicted.min())
            high = max(block.measured.max(), predicted.max())
            axes.plot([low, high], [low, high], color="grey", linewidth=0.7, linestyle="--")
            r = np.corrcoef(block.measured, predicted)[0, 1] if np.ptp(predicted) > 0 else float("nan")
            axes.set_title(f"{method} · {block.cell_type}\nr = {_number(r)}, n = {len(block.measured):,}",
                           fontsize=8)
            axes.tick_params(labelsize=7)
            if row == len(methods) - 1:
                axes.set_xlabel("measured", fontsize=8)
            if column == 0:
                axes.set_ylabel("predicted", fontsize=8)
    figure.suptitle(f"Predicted vs measured, protocol '{protocol}'"
                    + (f" (at most {MAX_POINTS:,} points per panel)" if any(len(block.measured) > MAX_POINTS
                                                                           for block in chosen) else ""), fontsize=10)
    return save_figure(figure, path)


def _forest_figure(metrics: pd.DataFrame, protocol: str, path: Path, upper_bounds: Collection[str]) -> Path:
    part = metrics[metrics["protocol"] == protocol]
    if part.empty:
        return empty_figure(path, f"No method covers every row of protocol '{protocol}'.")
    cells, methods = sorted(part["cell_type"].unique()), sorted(part["method"].unique())
    figure = Figure(figsize=(3.2 * len(cells) + 1.5, 0.45 * len(methods) + 1.4), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(1, len(cells), squeeze=False, sharey=True)[0]
    for axes, cell_type in zip(grid, cells, strict=True):
        for position, method in enumerate(methods):
            row = part[(part["cell_type"] == cell_type) & (part["method"] == method)]
            if row.empty or pd.isna(row["pearson"].iloc[0]):
                continue
            row = row.iloc[0]
            color = "tab:grey" if method in upper_bounds else "tab:orange" if row["baseline"] else "tab:blue"
            error = [[max(row["pearson"] - row["pearson_lo"], 0)], [max(row["pearson_hi"] - row["pearson"], 0)]]
            axes.errorbar(row["pearson"], position, xerr=error, fmt="o", color=color, capsize=3,
                          markerfacecolor="white" if method in upper_bounds else color)
        axes.set_title(cell_type, fontsize=9)
        axes.set_xlabel("Pearson r (CI)", fontsize=8)
        axes.grid(axis="x", alpha=0.3)
        axes.tick_params(labelsize=8)
    grid[0].set_yticks(range(len(methods)), [f"{method} †" if method in upper_bounds else method
                                             for method in methods])
    grid[0].invert_yaxis()
    figure.suptitle(f"Pearson by method, protocol '{protocol}' (orange: baselines; hollow: upper bounds)",
                    fontsize=10)
    return save_figure(figure, path)


def _curve_frame(path: str | Path) -> pd.DataFrame:
    """A training curve as (series, step, value, kind) rows from Stage I's loss.csv (step, split, loss) or a
    method's curve.csv (step or epoch, train_loss, val_loss, val_pearson, optional group)."""
    frame = pd.read_csv(path)
    if "split" in frame.columns and "loss" in frame.columns:
        return pd.DataFrame({"series": frame["split"].astype(str) + " loss", "step": frame["step"],
                             "value": frame["loss"], "kind": "loss"})
    x = "step" if "step" in frame.columns else "epoch"
    if x not in frame.columns:
        raise InputError("a training curve needs a step or epoch column", path=path)
    group = frame["group"].astype(str) + " " if "group" in frame.columns else ""
    parts = [pd.DataFrame({"series": group + name.replace("_", " "), "step": frame[x], "value": frame[name],
                           "kind": "pearson" if name == "val_pearson" else "loss"})
             for name in ("train_loss", "val_loss", "val_pearson") if name in frame.columns]
    if not parts:
        raise InputError("a training curve needs loss or val_pearson columns", path=path)
    return pd.concat(parts, ignore_index=True)


def _curves_figure(curves: Mapping[str, str | Path], path: Path) -> Path:
    if not curves:
        return empty_figure(path, "No training curves were given.")
    frames = {label: _curve_frame(file) for label, file in curves.items()}
    figure = Figure(figsize=(10, 3.0 * len(frames)), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(len(frames), 2, squeeze=False)
    for (label, frame), (loss_axes, pearson_axes) in zip(frames.items(), grid, strict=True):
        for kind, axes in (("loss", loss_axes), ("pearson", pearson_axes)):
            part = frame[frame["kind"] == kind].dropna(subset=["value"])
            for series, rows in part.groupby("series", sort=True):
                axes.plot(rows["step"], rows["value"], marker="o" if len(rows) < 30 else None, markersize=3,
                          linewidth=1, label=series)
            if part.empty:
                missing = "no validation Pearson recorded" if kind == "pearson" else "no loss recorded"
                axes.text(0.5, 0.5, missing, ha="center", va="center", transform=axes.transAxes)
            else:
                axes.legend(fontsize=7)
            axes.set_title(f"{label}: {'loss' if kind == 'loss' else 'validation Pearson'}", fontsize=9)
            axes.set_xlabel("step", fontsize=8)
            axes.grid(alpha=0.3)
    return save_figure(figure, path)


# ----------------------------------------------------------------------------------------------- report
DESIGN_FIGURE = "design_objective.png"  # always written, so the workflow can declare it


def write_report(*, metrics_path: str | Path, prediction_dirs: Mapping[str, str | Path], test_path: str | Path,
                 test_subset_path: str | Path, summary_path: str | Path, figure_dir: str | Path,
                 skipped_path: str | Path | None = None, faithfulness: Mapping[str, str | Path] | None = None,
                 curves: Mapping[str, str | Path] | None = None, transfer: Sequence[str | Path] = (),
                 design: str | Path | None = None, reasoning_method: str = "generated_cot",
                 ablations: Sequence[str] = ("rcc_only", "sequence_only"),
                 upper_bounds: Collection[str] = ("oracle_cot",),
                 settings: Mapping[str, Any] | None = None) -> list[Path]:
    """summary.md and its figures (scatter_<protocol>.png, pearson_<protocol>.png, training_curves.png in
    `figure_dir`), each written atomically; returns the files written.

    `faithfulness` maps a heading to a citation (`citation_faithfulness`) or disruption
    (`disruption_agreement`) TSV; `curves` maps a heading to a loss.csv or curve.csv. The comparisons of
    `reasoning_method` against each of `ablations` use the same resamples (and `settings`) as metrics.tsv.
    `transfer` lists the metrics TSVs of `r3lm step transfer`; with any, the summary gets a "Transfer to other tables"
    section; `design` (the design step's folder) adds a "Design" section.
    """
    settings = resolve_settings(settings)
    metrics = _read_tsv(metrics_path, "metrics table")
    metrics["baseline"] = metrics["baseline"].astype(str).str.lower().eq("true")
    metrics["reference"] = metrics["reference"].fillna("").astype(str)
    skipped = _read_tsv(skipped_path, "skipped table") if skipped_path is not None else pd.DataFrame()
    tables = {label: _read_tsv(path, f"faithfulness table {label!r}") for label, path in (faithfulness or {}).items()}
    transferred = _read_transfer(transfer)
    summaries = {}
    for method, folder in prediction_dirs.items():
        summary_file = Path(folder) / "summary.json"
        if not summary_file.is_file():
            raise InputError("no summary.json: the method's predictions are incomplete", path=folder)
        summaries[method] = json.loads(summary_file.read_text())
    found, _ = blocks(prediction_dirs, test_path, test_subset_path)
    pairs = [(reasoning_method, ablation) for ablation in ablations]
    comparisons = compare_blocks(found, pairs, settings)
    baselines = set(metrics.loc[metrics["baseline"], "method"])

    figures = Path(figure_dir)
    summary_file = Path(summary_path)
    written: list[Path] = []
    names: dict[str, dict[str, str]] = {}
    for protocol in PROTOCOLS:
        scatter = _scatter_figure(found, protocol, figures / f"scatter_{protocol}.png", int(settings["seed"]))
        forest = _forest_figure(metrics, protocol, figures / f"pearson_{protocol}.png", upper_bounds)
        written += [scatter, forest]
        names[protocol] = {"scatter": figure_link(scatter, summary_file), "pearson": figure_link(forest, summary_file)}
    training = _curves_figure(curves or {}, figures / "training_curves.png")
    written.append(training)

    lines = ["# R3LM evaluation", "",
             (f"Point estimates with {settings['confidence']:.0%} percentile bootstrap intervals "
             f"({settings['n_boot']:,} resamples of sequences, seed {settings['seed']}); differences are paired "
             "bootstraps on the same resampled sequences. Under each protocol a method is scored only where its "
             "predictions cover every sequence, so every row of a table uses the same sequences."), ""]
    lines += _notes(metrics, comparisons, skipped, tables, reasoning_method, upper_bounds)
    for protocol in PROTOCOLS:
        lines += _results_section(metrics, protocol, upper_bounds, skipped, names[protocol])
    lines += _comparison_section(comparisons)
    lines += _methods_section(summaries, baselines, upper_bounds)
    lines += _transfer_section(transferred, baselines)
    lines += _faithfulness_section(tables)
    if design is None:
        written.append(empty_figure(figures / DESIGN_FIGURE, "No designs (design.enabled is false)."))
    else:
        from r3lm.evaluate.design_report import design_section

        design_lines, design_figure = design_section(design, figures / DESIGN_FIGURE, summary_file)
        lines += design_lines
        written.append(design_figure)
    lines += ["## Training curves", "", f"![Training curves]({figure_link(training, summary_file)})", ""]
    with atomic_path(summary_file) as tmp:
        tmp.write_text("\n".join(lines))
    log.info("report: %s and %d figures", summary_file, len(written))
    return [summary_file, *written]
