"""Citation faithfulness on simulated data: do the motifs a rationale cites overlap the planted causal sites?

Ground truth (demo). A cited motif is correct when one of its card hits overlaps a planted site with a
non-zero contribution in that cell type ("causal"); recall counts the causal sites some card hit overlaps
(the only ones a rationale could cite) that a cited motif's hit overlaps. Precision and recall are micro
averages per cell type, for every mention ("cited") and for mentions with a claimed direction
("claimed"); `card_precision` is the precision of citing every card motif, the chance level to beat.
Direction agreement compares a claimed sign with the sign of the overlapped causal contribution.

The claims are read by `r3lm.rationale.claims`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from r3lm.errors import require_table_columns
from r3lm.evaluate.metrics import (
    ALL,
    block_rng,
    percentile_interval,
    resample_counts,
    resolve_settings,
)
from r3lm.rationale.claims import card_hits, cited_motifs

_COUNT_COLUMNS = ["cited", "cited_correct", "claimed", "claimed_correct", "causal_on_card", "recalled",
                  "claimed_recalled", "card_motifs", "card_motifs_correct", "direction_n", "direction_agree"]
CITATION_COLUMNS = ["cell_type", "rationales", "cited", "precision", "precision_lo", "precision_hi", "recall",
                    "recall_lo", "recall_hi", "f1", "claimed", "claimed_precision", "claimed_precision_lo",
                    "claimed_precision_hi", "claimed_recall", "claimed_recall_lo", "claimed_recall_hi", "claimed_f1",
                    "card_precision", "causal_on_card", "direction_n", "direction_agreement",
                    "direction_agreement_lo", "direction_agreement_hi"]


def _overlaps(hits: Sequence[tuple[int, int]], start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Which sites (start/end arrays) any of the hits overlaps (all 1-based inclusive)."""
    covered = np.zeros(len(start), dtype=bool)
    for hit_start, hit_end in hits:
        covered |= (start <= hit_end) & (hit_start <= end)
    return covered


def citation_counts(rationale: str, card_json: str, sites: pd.DataFrame) -> dict[str, int]:
    """One rationale's counts against the planted sites of its sequence and cell type (columns start, end,
    contribution)."""
    hits = card_hits(card_json)
    claims = cited_motifs(rationale, card_json)
    causal = sites[sites["contribution"].to_numpy() != 0]
    start, end = causal["start"].to_numpy(), causal["end"].to_numpy()
    contribution = causal["contribution"].to_numpy(dtype=float)
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for name, _, hit_start, hit_end in hits:
        spans[name].append((hit_start, hit_end))
    touched = {name: _overlaps(name_spans, start, end) for name, name_spans in spans.items()}
    on_card = np.logical_or.reduce([*touched.values(), np.zeros(len(start), dtype=bool)])
    claimed = {name: sign for name, sign in claims.items() if sign != 0}

    def recalled(names: Mapping[str, int]) -> int:
        return int(np.logical_or.reduce([touched[name] for name in names] + [np.zeros(len(start), bool)]).sum())

    agree = [np.sign(contribution[touched[name]].sum()) == sign for name, sign in claimed.items()
             if touched[name].any()]
    return {"cited": len(claims), "cited_correct": sum(bool(touched[name].any()) for name in claims),
            "claimed": len(claimed), "claimed_correct": sum(bool(touched[name].any()) for name in claimed),
            "causal_on_card": int(on_card.sum()), "recalled": recalled(claims), "claimed_recalled": recalled(claimed),
            "card_motifs": len(spans), "card_motifs_correct": sum(bool(mask.any()) for mask in touched.values()),
            "direction_n": len(agree), "direction_agree": int(sum(agree))}


def _micro(counts: pd.DataFrame, weights: Sequence[np.ndarray], confidence: float, numerator: str,
           denominator: str) -> tuple[float, float, float]:
    """A micro ratio (sum of numerators over sum of denominators) and its bootstrap interval over rows."""
    top, bottom = counts[numerator].to_numpy(dtype=float), counts[denominator].to_numpy(dtype=float)
    point = top.sum() / bottom.sum() if bottom.sum() else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        resampled = np.concatenate([(batch @ top) / (batch @ bottom) for batch in weights]) if weights else np.array([])
    return (point, *percentile_interval(resampled, confidence))


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else float("nan")


def citation_faithfulness(rationales: pd.DataFrame, ground_truth: pd.DataFrame,
                          settings: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Per cell type and overall ("all"): citation precision/recall against the planted causal sites, with
    bootstrap intervals over rationales (CITATION_COLUMNS). `rationales` has id, cell_type, rationale and the
    card's card_json (see `attach_cards`); `ground_truth` is the simulator's site table."""
    settings = resolve_settings(settings)
    require_table_columns(rationales, ["id", "cell_type", "rationale", "card_json"], "the rationale table")
    require_table_columns(ground_truth, ["seq_id", "cell_type", "start", "end", "contribution"],
                          "the ground-truth table")
    keys = set(zip(rationales["id"].astype(str), rationales["cell_type"].astype(str), strict=True))
    relevant = ground_truth[[key in keys for key in zip(ground_truth["seq_id"].astype(str),
                                                        ground_truth["cell_type"].astype(str), strict=True)]]
    sites = {key: relevant.iloc[index] for key, index in relevant.groupby(["seq_id", "cell_type"]).indices.items()}
    empty = ground_truth.iloc[:0]
    counts = pd.DataFrame([citation_counts("" if pd.isna(row.rationale) else str(row.rationale), row.card_json,
                                           sites.get((str(row.id), str(row.cell_type)), empty))
                           for row in rationales.itertuples()], columns=_COUNT_COLUMNS)
    counts["cell_type"] = rationales["cell_type"].astype(str).to_numpy()
    rows = []
    for cell_type in [*sorted(counts["cell_type"].unique()), ALL]:
        part = counts if cell_type == ALL else counts[counts["cell_type"] == cell_type]
        rng = block_rng(int(settings["seed"]), "citation", cell_type)
        weights = list(resample_counts(len(part), int(settings["n_boot"]), rng)) if len(part) else []
        ratio = partial(_micro, part, weights, float(settings["confidence"]))
        precision, recall = ratio("cited_correct", "cited"), ratio("recalled", "causal_on_card")
        claimed_precision = ratio("claimed_correct", "claimed")
        claimed_recall = ratio("claimed_recalled", "causal_on_card")
        direction = ratio("direction_agree", "direction_n")
        card = part["card_motifs"].sum()
        rows.append({"cell_type": cell_type, "rationales": len(part), "cited": int(part["cited"].sum()),
                     **dict(zip(("precision", "precision_lo", "precision_hi"), precision, strict=True)),
                     **dict(zip(("recall", "recall_lo", "recall_hi"), recall, strict=True)),
                     "f1": _f1(precision[0], recall[0]), "claimed": int(part["claimed"].sum()),
                     **dict(zip(("claimed_precision", "claimed_precision_lo", "claimed_precision_hi"),
                                claimed_precision, strict=True)),
                     **dict(zip(("claimed_recall", "claimed_recall_lo", "claimed_recall_hi"), claimed_recall,
                                strict=True)),
                     "claimed_f1": _f1(claimed_precision[0], claimed_recall[0]),
                     "card_precision": part["card_motifs_correct"].sum() / card if card else float("nan"),
                     "causal_on_card": int(part["causal_on_card"].sum()), "direction_n": int(part["direction_n"].sum()),
                     **dict(zip(("direction_agreement", "direction_agreement_lo", "direction_agreement_hi"),
                                direction, strict=True))})
    return pd.DataFrame(rows, columns=CITATION_COLUMNS)
