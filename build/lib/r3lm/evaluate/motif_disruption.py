"""Disrupting a cited motif's sites, and scoring whether the prediction moved the way the rationale claimed.

`disrupt_span` shuffles one card span (1-based, inclusive, as on cards) with the dinucleotide shuffle of
`r3lm.dna`; since the span keeps its end bases, the whole sequence keeps its dinucleotide counts
too; `disrupt_motif` does so for every hit of one card motif. `disruption_agreement` scores how often the
prediction moves the way the rationale claimed when a cited motif is disrupted. Running the experiment
(rescan, rebuild the card, predict again) is `r3lm.evaluate.disruption`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from r3lm.dna import dinucleotide_shuffle
from r3lm.errors import InputError, require_table_columns
from r3lm.evaluate.metrics import (
    ALL,
    block_rng,
    percentile_interval,
    resample_counts,
    resolve_settings,
)
from r3lm.rationale.claims import card_hits
from r3lm.rcc.card import Card

log = logging.getLogger(__name__)

SHUFFLE_ATTEMPTS = 20


def disrupt_span(sequence: str, start: int, end: int, rng: np.random.Generator) -> str:
    """`sequence` with positions start..end (1-based, inclusive, as on cards) dinucleotide-shuffled; redrawn
    up to SHUFFLE_ATTEMPTS times when the shuffle returns the span unchanged, then permuted base by base
    (a span may admit a single dinucleotide-preserving order). A homopolymer span cannot change."""
    if not 1 <= start <= end <= len(sequence):
        raise InputError(f"span {start}-{end} is not within the {len(sequence)}-bp sequence")
    span = sequence[start - 1:end]
    for _ in range(SHUFFLE_ATTEMPTS):
        shuffled = dinucleotide_shuffle(span, rng)
        if shuffled != span:
            break
    else:
        for _ in range(SHUFFLE_ATTEMPTS):
            shuffled = "".join(np.asarray(list(span))[rng.permutation(len(span))])
            if shuffled != span:
                break
    return sequence[:start - 1] + shuffled + sequence[end:]


def disrupt_motif(card: Card | Mapping[str, Any] | str, name: str, rng: np.random.Generator) -> str:
    """The card's sequence with every hit of motif `name` disrupted (overlapping hits shuffled as one span)."""
    sequence = card.sequence if isinstance(card, Card) else (json.loads(card) if isinstance(card, str)
                                                              else card)["sequence"]
    spans = sorted((start, end) for hit_name, _, start, end in card_hits(card) if hit_name == name)
    if not spans:
        raise InputError(f"motif {name!r} is not on the card")
    merged = [list(spans[0])]
    for start, end in spans[1:]:
        if start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in merged:
        sequence = disrupt_span(sequence, start, end, rng)
    return sequence


DISRUPTION_COLUMNS = ["cell_type", "pairs", "sequences", "changed", "agreement", "agreement_lo", "agreement_hi",
                      "activating", "agreement_activating", "repressive", "agreement_repressive", "skipped"]


def disruption_agreement(table: pd.DataFrame, settings: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Per cell type and overall: how often disrupting a cited motif moves the prediction the claimed way.

    `table` has cell_type, id, motif, claimed (+1/-1) and delta (new prediction minus original). A change
    smaller than `disruption_tol` counts as none (a disagreement). Rows claiming 0 or with a non-finite delta
    are skipped (counted). The interval resamples sequences, since the motifs of one sequence share its
    prediction."""
    settings = resolve_settings(settings)
    require_table_columns(table, ["cell_type", "id", "motif", "claimed", "delta"], "the disruption table")
    claimed = pd.to_numeric(table["claimed"], errors="coerce").to_numpy(dtype=float)
    delta = pd.to_numeric(table["delta"], errors="coerce").to_numpy(dtype=float)
    usable = np.isin(claimed, (-1.0, 1.0)) & np.isfinite(delta)
    observed = np.where(np.abs(delta) < float(settings["disruption_tol"]), 0.0, np.sign(delta))
    frame = pd.DataFrame({"cell_type": table["cell_type"].astype(str).to_numpy(), "id": table["id"].astype(str),
                          "claimed": claimed, "agree": (observed == claimed).astype(float),
                          "changed": (observed != 0).astype(float), "usable": usable})
    rows = []
    for cell_type in [*sorted(frame["cell_type"].unique()), ALL]:
        part = frame if cell_type == ALL else frame[frame["cell_type"] == cell_type]
        used = part[part["usable"]]
        per_sequence = used.groupby(["cell_type", "id"])[["agree"]].agg(["sum", "size"]).to_numpy(dtype=float)
        agreement, low, high = float("nan"), float("nan"), float("nan")
        if len(used):
            agreement = float(used["agree"].mean())
            rng = block_rng(int(settings["seed"]), "disruption", cell_type)
            with np.errstate(invalid="ignore", divide="ignore"):
                resampled = np.concatenate([(weights @ per_sequence[:, 0]) / (weights @ per_sequence[:, 1])
                                            for weights in resample_counts(len(per_sequence),
                                                                           int(settings["n_boot"]), rng)])
            low, high = percentile_interval(resampled, float(settings["confidence"]))
        activating, repressive = used[used["claimed"] > 0], used[used["claimed"] < 0]
        rows.append({"cell_type": cell_type, "pairs": len(used), "sequences": len(per_sequence),
                     "changed": int(used["changed"].sum()), "agreement": agreement, "agreement_lo": low,
                     "agreement_hi": high, "activating": len(activating),
                     "agreement_activating": activating["agree"].mean() if len(activating) else float("nan"),
                     "repressive": len(repressive),
                     "agreement_repressive": repressive["agree"].mean() if len(repressive) else float("nan"),
                     "skipped": int((~part["usable"]).sum())})
    skipped = int((~usable).sum())
    if skipped:
        log.info("disruption: %d of %d rows skipped (claimed 0 or non-finite delta)", skipped, len(frame))
    return pd.DataFrame(rows, columns=DISRUPTION_COLUMNS)
