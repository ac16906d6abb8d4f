"""Stage design (workflow/rules/design.smk): the held-out oracle, and designs for each target cell type judged
by it (and on the demo by the truth)."""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r3lm.commands import arg, step
from r3lm.errors import InputError
from r3lm.io import OutputFile, OutputFolder, write_json, write_parquet
from r3lm.steps.common import NO_PROGRESS

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


@step("heldout-oracle", "the held-out oracle: a CNN on another seed and division of train and val, bundled",
      arg("--train", required=True, help="the train split"),
      arg("--val", required=True, help="the validation split"),
      arg("--test", required=True, help="the test split (predicted, for the oracles' agreement)"),
      arg("--data-dir", required=True, help="the prepared dataset (level edges, training lengths)"),
      arg("--out-dir", type=OutputFolder, required=True, help="model/ (the CNN, its predictions) and bundle/"),
      NO_PROGRESS, sections=("baselines", "design", "levels", "dataset", "motifs", "rcc"))
def heldout_oracle(args: argparse.Namespace, config: dict[str, Any]) -> None:
    import pandas as pd

    from r3lm.baselines.cnn import run_cnn
    from r3lm.baselines.common import read_group_regex, resolve_settings
    from r3lm.deploy.bundle import write_baseline_bundle
    from r3lm.design.heldout import heldout_division, heldout_settings

    settings = config["design"]["heldout_oracle"]
    train, val = heldout_division(pd.read_parquet(args.train), pd.read_parquet(args.val),
                                  split_seed=settings["split_seed"], val_fraction=settings["val_fraction"],
                                  group_regex=read_group_regex(Path(args.data_dir) / "summary.json"))
    log.info("held-out oracle: %d training and %d stopping sequences (split seed %d), training seed %d",
             train["id"].nunique(), val["id"].nunique(), settings["split_seed"], settings["seed"])
    out = Path(args.out_dir)
    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / "train.parquet", Path(folder) / "val.parquet"]
        for table, path in zip((train, val), paths, strict=True):
            table.to_parquet(path, index=False)
        cnn = heldout_settings(resolve_settings(config["baselines"]["cnn"], "cnn"), settings["seed"])
        run_cnn(cnn, *paths, [args.test], Path(args.data_dir) / "summary.json", out / "model",
                progress=not args.no_progress)
    write_baseline_bundle(config, "cnn", out / "model", args.data_dir, out / "bundle")


@step("designs", "designs for each target cell type, judged by the held-out oracle (and on the demo the truth)",
      arg("--oracle", required=True, help="the design oracle: the run's CNN bundle"),
      arg("--heldout", required=True, help="the held-out oracle's bundle (heldout-oracle)"),
      arg("--natural", required=True,
          help="the natural sequences: the demo's simulated.parquet, else the test split (and natural starts)"),
      arg("--out-dir", type=OutputFolder, required=True,
          help="designs.parquet, designs.fa, natural.parquet, summary.json, logos/<target>.png"),
      sections=("design", "dataset", "motifs"))
def design_step(args: argparse.Namespace, config: dict[str, Any]) -> None:
    write_designs(config, args.oracle, args.heldout, args.natural, args.out_dir)


def write_designs(config: Mapping[str, Any], oracle_path: str | Path, heldout_path: str | Path,
                  natural_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Design for every target, score designs and natural sequences with every oracle, judge, write."""
    import pandas as pd

    from r3lm.data.sequences import write_fasta
    from r3lm.deploy.fast import load_fast
    from r3lm.design import design, engine_settings, load_oracle
    from r3lm.design.judge import oracle_columns

    settings, started = config["design"], time.perf_counter()
    oracle = load_oracle(oracle_path)
    bundles = {"predicted": load_fast(oracle_path, device="cpu"), "heldout": load_fast(heldout_path, device="cpu")}
    targets = settings["targets"] or list(oracle.cell_types)
    natural = natural_sequences(pd.read_parquet(natural_path), oracle.cell_types)
    designs = pd.concat([design(oracle, target, objective=settings["objective"], engine=settings["engine"],
                                seed=settings["seed"] + index, budget=settings["budget"],
                                settings=engine_settings(settings), **_starts(settings, natural, index))
                         for index, target in enumerate(targets)], ignore_index=True)
    log.info("%d designs for %s in %.0f s", len(designs), ", ".join(targets), time.perf_counter() - started)
    truth = _truth(config)
    designs = oracle_columns(designs, oracle.cell_types, {"heldout": bundles["heldout"]}, truth)
    natural = oracle_columns(natural, oracle.cell_types, bundles, truth)
    designs = _with_scores(designs, oracle.cell_types, settings["objective"])
    summary = judgement(config, designs, natural, targets, oracle.cell_types, with_truth=truth is not None)
    _add_motifs(config["motifs"], summary, designs, natural)
    out = Path(out_dir)
    write_parquet(designs, out / "designs.parquet")
    write_parquet(natural, out / "natural.parquet")
    write_fasta(designs["id"].tolist(), designs["sequence"].tolist(), out / "designs.fa",
                [f"target={row.target} edits={row.edits}" for row in designs.itertuples()])
    _draw_logos(bundles["predicted"], designs, oracle.cell_types, out / "logos")
    write_json(summary, out / "summary.json")
    return summary


def _draw_logos(bundle: Any, designs: pd.DataFrame, cell_types: Sequence[str], folder: Path) -> None:
    """Each target's top design (by the held-out oracle) as a saturation-mutagenesis logo in every cell type:
    which bases make it active in its target and silent elsewhere."""
    from r3lm.deploy.mutagenesis import draw_logo, saturation_mutagenesis
    from r3lm.design.explain import top_designs

    for row in top_designs(designs, 1).itertuples(index=False):
        table, _ = saturation_mutagenesis(bundle, row.sequence, list(cell_types))
        draw_logo(table, list(cell_types), folder / f"{row.target}.png",
                  title=f"{row.id}: the top {row.target} design (design oracle, effect of each substitution)")


def _truth(config: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The demo's simulation settings, which the truth scores any sequence under; None for real data, and for a
    demo simulated without site_pvalue (its planted sites need not pass any scan, so none can find them)."""
    dataset = config["dataset"]
    if dataset["source"] != "demo":
        return None
    if dataset["demo"]["site_pvalue"] is None:
        log.warning("dataset.demo.site_pvalue is not set, so the truth cannot score designs: they are judged by the "
                    "held-out oracle against the simulation's noiseless activity")
        return None
    return dataset["demo"]


def natural_sequences(rows: pd.DataFrame, cell_types: Sequence[str]) -> pd.DataFrame:
    """One row per natural sequence: id, sequence, and the measured activity per cell type (`measured_<cell>`),
    with the simulation's noiseless activity beside it on the demo (`noiseless_<cell>`)."""
    wide = rows.pivot_table(index="id", columns="cell_type", values="activity", aggfunc="mean")
    table = rows.drop_duplicates("id").set_index("id")[["sequence"]]
    for cell in cell_types:
        table[f"measured_{cell}"] = wide[cell] if cell in wide else float("nan")
    if "activity_noiseless" in rows:
        noiseless = rows.pivot_table(index="id", columns="cell_type", values="activity_noiseless")
        for cell in cell_types:
            table[f"noiseless_{cell}"] = noiseless[cell]
    return table.reset_index()


def _starts(settings: Mapping[str, Any], natural: pd.DataFrame, index: int) -> dict[str, Any]:
    """Random starts, or `n_designs` natural sequences drawn with the design seed (one draw per target)."""
    if settings["start"] == "random":
        return {"n_designs": settings["n_designs"]}
    if settings["n_designs"] > len(natural):
        raise InputError(f"design.n_designs {settings['n_designs']} is more than the {len(natural)} natural "
                         "sequences to start from", path="config")
    drawn = natural.sample(settings["n_designs"], random_state=settings["seed"] + index)
    return {"starts": dict(zip(drawn["id"], drawn["sequence"], strict=True))}


def _with_scores(designs: pd.DataFrame, cell_types: Sequence[str], objective: str) -> pd.DataFrame:
    """Each design's objective under the held-out oracle and, on the demo, the truth (`score` is the design
    oracle's)."""
    import pandas as pd

    from r3lm.design.judge import objective_of

    parts = []
    for target, rows in designs.groupby("target", sort=False):
        scores = {f"{prefix}_score": objective_of(rows, prefix, target.split("+"), cell_types, objective)
                  for prefix in ("heldout", "true") if f"{prefix}_{cell_types[0]}" in rows}
        parts.append(rows.assign(**scores))
    return pd.concat(parts).loc[designs.index]


def _add_motifs(settings: Mapping[str, Any], summary: dict[str, Any], designs: pd.DataFrame,
                natural: pd.DataFrame) -> None:
    """Each target's motif composition: what its designs carry more often than natural sequences."""
    from r3lm.design.judge import motif_composition
    from r3lm.motifs.scan import background_for, build_motif_set, scan_sequences

    motif_set = build_motif_set(settings, background_for(settings, natural["sequence"].tolist()))
    ids = [*designs["id"], *natural["id"]]
    hits = scan_sequences(ids, [*designs["sequence"], *natural["sequence"]], motif_set, progress=False)
    natural_hits = hits[hits["seq_id"].isin(set(natural["id"]))]
    for target, rows in designs.groupby("target"):
        summary["targets"][target]["motifs"] = motif_composition(hits, rows["id"].tolist(), natural_hits,
                                                                 natural["id"].tolist())


def judgement(config: Mapping[str, Any], designs: pd.DataFrame, natural: pd.DataFrame, targets: Sequence[str],
              cell_types: Sequence[str], *, with_truth: bool) -> dict[str, Any]:
    """The design summary: per target the judge's figures, the oracles' agreement on natural sequences and,
    on the demo, how well the truth function reproduces the simulation's noiseless activity."""
    from r3lm.design.judge import judge_target, oracle_agreement_on_natural
    from r3lm.stats import pearson

    settings = config["design"]
    demo = config["dataset"]["source"] == "demo"
    summary: dict[str, Any] = {
        "objective": settings["objective"], "engine": settings["engine"], "start": settings["start"],
        "budget": settings["budget"], "seed": settings["seed"], "cell_types": list(cell_types),
        "natural_sequences": len(natural),
        "oracle_agreement_natural_pearson": oracle_agreement_on_natural(natural, cell_types),
        "targets": {target: judge_target(designs[designs["target"] == target], natural, [target], cell_types,
                                         settings["objective"], "noiseless" if demo else "measured")
                    for target in targets},
    }
    if with_truth:
        summary["truth_vs_noiseless_pearson"] = {
            cell: pearson(natural[f"noiseless_{cell}"].to_numpy(), natural[f"true_{cell}"].to_numpy())
            for cell in cell_types}
    return summary


@step("explain-designs", "the top designs explained by the reasoning model, the CNN's attributions and the truth",
      arg("--designs", required=True, help="designs.parquet (r3lm step design)"),
      arg("--model", required=True, help="the reasoning model's bundle (models/generated_cot)"),
      arg("--oracle", required=True, help="the design oracle: the run's CNN bundle"),
      arg("--motif-file", required=True, help="the JASPAR release as a MEME file (motif-file), for TOMTOM"),
      arg("--out", type=OutputFile, required=True, help="explained.parquet"),
      sections=("design", "dataset", "motifs"))
def explain_designs_step(args: argparse.Namespace, config: dict[str, Any]) -> None:
    explain_designs(config, args.designs, args.model, args.oracle, args.motif_file, args.out)


def explain_designs(config: Mapping[str, Any], designs_path: str | Path, model_path: str | Path,
                    oracle_path: str | Path, motif_file: str | Path, out: str | Path) -> pd.DataFrame:
    """The `design.explain_top` best designs per target (by the held-out oracle) with the three readings."""
    import pandas as pd

    from r3lm.deploy.scorer import load
    from r3lm.design import load_oracle
    from r3lm.design.explain import attribution_seqlets, explanation_rows, top_designs
    from r3lm.design.objective import Objective
    from r3lm.design.starts import natural_starts

    top = top_designs(pd.read_parquet(designs_path), config["design"]["explain_top"])
    model, oracle = load(model_path), load_oracle(oracle_path)
    rationales = pd.concat([model.score(dict(zip(rows["id"], rows["sequence"], strict=True)), target, with_card=True)
                            for target, rows in top.groupby("target", sort=False)], ignore_index=True)
    seqlets = []
    for target, rows in top.groupby("target", sort=False):
        _, X = natural_starts(rows["sequence"].tolist(), None)
        found = attribution_seqlets(Objective(oracle, target.split("+"), config["design"]["objective"]), X, motif_file)
        seqlets.append(found.assign(id=rows["id"].to_numpy()[found["example_idx"].to_numpy(dtype=int)]))
    sites, truth = None, _truth(config)
    if truth is not None:
        from r3lm.data.truth import true_sites

        sites = true_sites(top["sequence"].tolist(), truth, top["id"].tolist())
    from r3lm.motifs.jaspar import motifs_by_name

    families = {name: motif.family for name, motif in motifs_by_name(config["motifs"]["jaspar_release"]).items()}
    explained = explanation_rows(top, rationales, pd.concat(seqlets, ignore_index=True), sites, families)
    write_parquet(explained, out)
    log.info("explained %d designs", len(explained))
    return explained
