"""The README's worked examples of `r3lm predict --rank-by`, `r3lm variants` and `r3lm mutagenesis`, and their
three figures, from a finished demo run:

    python docs/examples/user_tools.py --run results/demo --out docs/figures

Each command runs as a user would type it (`python -m r3lm ...`, printed before it runs) on the run's CNN
fast bundle (<run>/runs/main/models/cnn; `--models` points elsewhere). Their tables go to `--work` (a new
temporary folder unless given); the figures to `--out`:

* predict_specificity.png: the held-out designs ranked by their specificity for one cell type;
* variants_delta.png: the effect of SNVs and indels inside and outside planted activator sites;
* mutagenesis_logo.png: the saturation-mutagenesis logo of the element with the strongest specific site.

What the simulator planted (data/ground_truth.parquet) and its noiseless activities (data/test.parquet) are
the truth the figures are read against.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for the sibling script
from demo_variants import SITE_COLUMNS, build, planted_sites, test_elements

DPI = 100
TOP = 5  # designs whose bars are drawn
LABELLED = 10  # designs circled on the scatter
KINDS = ["snv", "insertion", "deletion"]
PLACES = {"site": ("in a planted activator site", "tab:red"), "outside": ("outside planted sites", "tab:grey")}


def r3lm(*arguments: str | Path) -> None:
    command = [sys.executable, "-m", "r3lm", *map(str, arguments), "--no-progress"]
    print("$", shlex.join(["r3lm", *command[3:]]), flush=True)
    subprocess.run(command, check=True)


def save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=DPI)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


def rank_designs(run: Path, model: Path, work: Path, out: Path, cell_type: str) -> None:
    """Every held-out sequence as a candidate design, ranked safest-first for `cell_type`."""
    designs = test_elements(run)
    fasta = work / "designs.fa"
    fasta.write_text("".join(f">{name}\n{sequence}\n" for name, sequence in zip(designs["id"], designs["sequence"],
                                                                                  strict=True)))
    ranked_path = work / f"ranked_{cell_type}.tsv"
    r3lm("predict", "--model", model, "--cell-type", "all", "--fasta", fasta, "--rank-by", f"specificity:{cell_type}",
         "--out", ranked_path)
    ranked = pd.read_csv(ranked_path, sep="\t")
    cells = [column.removeprefix("predicted_") for column in ranked.columns if column.startswith("predicted_")]
    others = [cell for cell in cells if cell != cell_type]
    on_target = ranked[f"predicted_{cell_type}"]
    off_target = ranked[[f"predicted_{cell}" for cell in others]]
    mean_gap = on_target - off_target.mean(axis=1)
    truth = (pd.read_parquet(run / "data" / "test.parquet", columns=["id", "cell_type", "activity_noiseless"])
             .pivot(index="id", columns="cell_type", values="activity_noiseless").loc[ranked["id"]])
    true_gap = (truth[cell_type] - truth[others].max(axis=1)).reset_index(drop=True)  # in ranked's order
    top_by_mean = set(ranked.loc[mean_gap.sort_values(ascending=False).index[:LABELLED], "id"])
    print(f"{len(ranked)} designs; positive MinGap: {(ranked['specificity'] > 0).sum()}; "
          f"top {LABELLED} by MinGap with a positive noiseless MinGap: {(true_gap.iloc[:LABELLED] > 0).sum()}; "
          f"top {LABELLED} shared with mean_gap's: {len(top_by_mean & set(ranked['id'].iloc[:LABELLED]))}; "
          f"positive mean_gap but negative MinGap (one leaky off-target): "
          f"{((mean_gap > 0) & (ranked['specificity'] < 0)).sum()}; "
          f"Spearman(MinGap, noiseless MinGap) = {ranked['specificity'].corr(true_gap, method='spearman'):.2f}")
    print(ranked.head(LABELLED).to_string(index=False, float_format="%.2f"))

    figure = Figure(figsize=(10, 4.2), layout="constrained")
    scatter_axes, bar_axes = figure.subplots(1, 2, width_ratios=[1, 1.15])
    limit = max(abs(ranked["specificity"]).max(), 1e-9)
    points = scatter_axes.scatter(on_target, off_target.max(axis=1), c=ranked["specificity"], cmap="RdBu_r",
                                  vmin=-limit, vmax=limit, s=12, linewidths=0)
    top = ranked.head(LABELLED)
    scatter_axes.scatter(on_target[:LABELLED], off_target.max(axis=1)[:LABELLED], s=60, facecolors="none",
                         edgecolors="black", linewidths=0.8, label=f"top {LABELLED} by MinGap")
    low, high = scatter_axes.get_xlim()
    scatter_axes.plot([low, high], [low, high], color="black", linewidth=0.6, linestyle="--", label="MinGap = 0")
    scatter_axes.set_xlabel(f"predicted activity in {cell_type} (on-target)")
    scatter_axes.set_ylabel(f"highest predicted off-target ({', '.join(others)})")
    scatter_axes.legend(loc="upper left", fontsize=8, frameon=False)
    figure.colorbar(points, ax=scatter_axes, label=f"MinGap for {cell_type}")
    width = 0.8 / len(cells)
    for index, cell in enumerate(cells):
        offsets = np.arange(TOP) + (index - (len(cells) - 1) / 2) * width
        bar_axes.bar(offsets, top[f"predicted_{cell}"].head(TOP), width, label=cell, color=f"C{index}")
        bar_axes.scatter(offsets, truth[cell].iloc[:TOP], marker="_", s=120, color="black", zorder=3,
                         label="simulated (noiseless)" if index == 0 else None)
    bar_axes.set_xticks(np.arange(TOP), [f"#{rank + 1}\n{name}" for rank, name in enumerate(top["id"].head(TOP))],
                        fontsize=8)
    bar_axes.set_ylabel("predicted activity")
    bar_axes.set_title(f"the {TOP} safest {cell_type} designs", fontsize=10)
    bar_axes.legend(fontsize=8, frameon=False, ncols=len(cells) + 1, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    save(figure, out / "predict_specificity.png")


def score_variants(run: Path, model: Path, work: Path, out: Path, cell_type: str) -> None:
    """SNVs and indels in and beside planted activator sites of a toy genome made of held-out elements."""
    toy = build(run, work / "toy", cell_type=cell_type)
    scored_path = work / "variants.tsv"
    r3lm("variants", "--model", model, "--vcf", toy.vcf, "--genome", toy.genome, "--out", scored_path)
    scored = pd.read_csv(scored_path, sep="\t").merge(pd.read_csv(toy.labels, sep="\t"), on="id")
    cells = list(dict.fromkeys(scored["cell_type"]))
    summary = scored.pivot_table(index=["where", "kind"], columns="cell_type", values="delta", aggfunc="median")
    print("median delta per place, kind and cell type:\n" + summary[cells].to_string(float_format="%.3f"))
    print(scored[scored["cell_type"] == cell_type].groupby("where")["delta"].describe().to_string(float_format="%.3f"))

    figure = Figure(figsize=(10, 3.6), layout="constrained")
    rng = np.random.default_rng(0)  # the points' horizontal jitter
    panels = figure.subplots(1, len(cells), sharey=True)
    for axes, cell in zip(panels, cells, strict=True):
        rows = scored[scored["cell_type"] == cell]
        for kind_index, kind in enumerate(KINDS):
            for place_index, (place, (label, colour)) in enumerate(PLACES.items()):
                deltas = rows.loc[(rows["kind"] == kind) & (rows["where"] == place), "delta"]
                centre = kind_index + (place_index - 0.5) * 0.38
                axes.scatter(centre + rng.uniform(-0.1, 0.1, len(deltas)), deltas, s=9, color=colour, alpha=0.7,
                             linewidths=0, label=label if kind_index == 0 else None)
                axes.hlines(deltas.median(), centre - 0.15, centre + 0.15, color="black", linewidth=1.5)
        axes.axhline(0, color="grey", linewidth=0.5)
        axes.set_xticks(range(len(KINDS)), ["SNV", "4-bp insertion", "4-bp deletion"], fontsize=8)
        axes.set_title(cell, fontsize=10)
    panels[0].set_ylabel("delta (ALT - REF predicted activity)")
    panels[0].legend(fontsize=8, frameon=False, loc="lower left")
    figure.suptitle(f"{scored['id'].nunique()} variants in {scored['element'].nunique()} held-out elements, "
                    f"sites chosen for their {cell_type} contribution (bar: median)", fontsize=10)
    save(figure, out / "variants_delta.png")


def mutagenesis(run: Path, model: Path, work: Path, out: Path, cell_type: str) -> None:
    """Every substitution of the held-out element whose strongest site is the most `cell_type`-specific."""
    elements = test_elements(run)
    sites = planted_sites(run, elements["id"])
    others = [cell for cell in sites.columns if cell not in (*SITE_COLUMNS, cell_type)]
    sites["specific"] = sites[cell_type] - sites[others].max(axis=1)
    sites["off_centre"] = abs((sites["start"] + sites["end"]) / 2 - 100)
    best = sites.sort_values(["specific", "off_centre", "seq_id"], ascending=[False, True, True]).iloc[0]
    sequence = elements.set_index("id").loc[best["seq_id"], "sequence"]
    print(f"{best['seq_id']}'s planted sites:\n"
          + sites[sites["seq_id"] == best["seq_id"]].drop(columns=["specific", "off_centre"]).to_string(index=False))
    effects_path, logo = work / "ism.tsv", out / "mutagenesis_logo.png"
    r3lm("mutagenesis", "--model", model, "--sequence", sequence, "--cell-type", cell_type, "--out", effects_path,
         "--logo", logo)
    effects = pd.read_csv(effects_path, sep="\t")
    column = f"effect_{cell_type}"
    inside = effects["position"].between(best["start"], best["end"])
    print(f"mean effect inside {best['tf']} {best['start']}-{best['end']}: {effects.loc[inside, column].mean():.3f}, "
          f"outside: {effects.loc[~inside, column].mean():.3f}; strongest 5:\n"
          + effects.reindex(effects[column].abs().sort_values(ascending=False).index).head(5).to_string(index=False))
    print(f"wrote {logo} ({logo.stat().st_size / 1024:.0f} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("results/demo"), help="a finished demo run")
    parser.add_argument("--out", type=Path, default=Path("docs/figures"), help="folder for the figures")
    parser.add_argument("--models", type=Path, default=None,
                        help="folder with the cnn fast bundle (default: <run>/runs/main/models)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the tables (default: a new temporary)")
    parser.add_argument("--cell-type", default="HepG2", help="the target cell type")
    args = parser.parse_args()
    model = (args.models or args.run / "runs" / "main" / "models") / "cnn"
    work = args.work or Path(tempfile.mkdtemp(prefix="r3lm_user_tools_"))
    for folder in (work, args.out):
        folder.mkdir(parents=True, exist_ok=True)
    print(f"tables in {work}")
    rank_designs(args.run, model, work, args.out, args.cell_type)
    score_variants(args.run, model, work, args.out, args.cell_type)
    mutagenesis(args.run, model, work, args.out, args.cell_type)


if __name__ == "__main__":
    main()
