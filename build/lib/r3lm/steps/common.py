"""What several steps share: their common arguments, and how NAME=PATH arguments are read."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from r3lm.commands import arg
from r3lm.errors import InputError

if TYPE_CHECKING:
    from r3lm.rcc.evidence_tags import EvidenceTags

NO_PROGRESS = arg("--no-progress", action="store_true")
EVIDENCE_TAGS = arg("--evidence-tags", default=None,
                    help="evidence tags JSON (evidence-tags), when the cards carry them (rcc.evidence_tags)")
PREDICTIONS = arg("--predictions", nargs="+", required=True,
                  help="METHOD=FOLDER per method (a bare folder is named by its last component)")


def named_paths(pairs: Sequence[str] | None, option: str) -> dict[str, str]:
    """NAME=PATH pairs of the command line, in order."""
    named = {}
    for pair in pairs or ():
        name, separator, path = pair.partition("=")
        if not (separator and name and path):
            raise InputError(f"{option} expects NAME=PATH, got {pair!r}")
        named[name] = path
    return named


def predictions_by_method(items: Sequence[str], option: str = "--predictions") -> dict[str, str]:
    """METHOD=FOLDER pairs, or bare folders named by their method."""
    return {**{Path(item).name: item for item in items if "=" not in item},
            **named_paths([item for item in items if "=" in item], option)}


def evidence_tags_of(args: argparse.Namespace) -> EvidenceTags | None:
    """The `--evidence-tags` file's tags, when the step was given one."""
    from r3lm.reasoning.tags import read_evidence_tags

    return read_evidence_tags(args.evidence_tags) if args.evidence_tags else None
