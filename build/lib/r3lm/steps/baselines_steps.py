"""Stage baselines (workflow/rules/baselines.smk): the motif-count ridge and the sequence CNN, and their fast
bundles."""

from __future__ import annotations

import argparse
from typing import Any

from r3lm.commands import arg, step
from r3lm.io import OutputFolder
from r3lm.steps.common import NO_PROGRESS

BASELINE_ARGUMENTS = (
    arg("--train", required=True, help="train table (cards for the ridge, data for the CNN)"),
    arg("--val", required=True, help="validation table of the same kind"),
    arg("--test", nargs="+", required=True, help="tables to predict"),
    arg("--data-summary", required=True, help="the dataset's summary.json (level edges)"),
    arg("--out-dir", type=OutputFolder, required=True, help="predictions folder (<cell_type>.parquet, summary.json)"),
    NO_PROGRESS,
)


@step("baseline-ridge", "baseline: motif-count ridge regression on the cards; predicts every test row",
      *BASELINE_ARGUMENTS, sections=("baselines",))
def baseline_ridge(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.baselines.motif_ridge import run_motif_ridge

    run_motif_ridge(config["baselines"]["motif_ridge"], args.train, args.val, args.test, args.data_summary,
                    args.out_dir)


@step("baseline-cnn", "baseline: a LegNet/Malinois-style sequence CNN; predicts every test row",
      *BASELINE_ARGUMENTS, sections=("baselines",))
def baseline_cnn(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.baselines.cnn import run_cnn

    run_cnn(config["baselines"]["cnn"], args.train, args.val, args.test, args.data_summary, args.out_dir,
            progress=not args.no_progress)


@step("package-baseline", "a fast bundle (the CNN or the motif ridge) for predict, variants and "
      "mutagenesis",
      arg("--kind", required=True, choices=["cnn", "motif_ridge"]),
      arg("--model-dir", required=True, help="the baseline's predictions folder (its model file and summary)"),
      arg("--data-dir", required=True, help="the prepared dataset (level edges, training lengths)"),
      arg("--out", type=OutputFolder, required=True, help="the bundle folder to write"),
      sections=("levels", "dataset", "motifs", "rcc"))
def package_baseline(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.deploy.bundle import write_baseline_bundle

    write_baseline_bundle(config, args.kind, args.model_dir, args.data_dir, args.out)
