"""Stage rcc (workflow/rules/rcc.smk): one Regulatory Context Card per row of a split table."""

from __future__ import annotations

import argparse
from typing import Any

from r3lm.commands import arg, step
from r3lm.io import OutputFile, write_parquet


@step("build-cards", "cards for one split table",
      arg("--table", required=True, help="a split table of the prepared dataset"),
      arg("--hits", required=True, help="the dataset's gathered hits"),
      arg("--out", type=OutputFile, required=True, help="cards parquet"),
      sections=("rcc",))
def build_cards(args: argparse.Namespace, config: dict[str, Any]) -> None:
    import pandas as pd

    from r3lm.rcc.build import cards_for_table
    from r3lm.rcc.card import CardSettings

    cards = cards_for_table(pd.read_parquet(args.table), pd.read_parquet(args.hits),
                            CardSettings.from_config(config["rcc"]))
    write_parquet(cards, args.out)
