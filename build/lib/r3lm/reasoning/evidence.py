"""Training-set evidence the grounded teacher cites: which motifs go with activity, per cell type.

Everything here is computed from the TRAIN cards only, so a rationale for a validation or test
sequence never leans on that sequence's own label.

* Features: a card "carries" a motif family when any of its hits lists it (multi-family hits such
  as "Fos-related; Jun-related" count for each family), and a motif when a hit has that name.
  Families are the unit the paper's card shows; motif names add resolution where a family is too
  broad to carry a signal (a C2H2 zinc-finger family sits on nearly every card). Cards split into
  high activity (level >= n_levels / 2) and low activity (the rest). Per cell type and feature we
  keep the 2 x 2 counts, the log2 odds ratio with a pseudocount in every cell, a two-sided Fisher
  exact p-value, and the mean level of carriers and of the other cards. The call is `enriched` /
  `depleted` when at least `min_count` cards carry the feature and |log2 OR| >= `min_log2_ratio`,
  else `neutral`.
* GC: the Spearman correlation of GC content with level, and the mean GC of high- and low-activity
  cards, so the teacher can say whether GC-rich sequences tend to be more active in this cell type.

All of it lives in one parquet table (`kind` = "family", "motif" or "gc"), read back by
`Evidence.from_table`. The teacher weighs a card with naive-Bayes terms from the same counts
(`log2_likelihood_ratio`): carrying an enriched family, or lacking it, shifts the odds that the
card is a high-activity one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import fisher_exact, spearmanr
from tqdm import tqdm

from r3lm.errors import InputError, require_file
from r3lm.rcc.card import Card, parse_card
from r3lm.reasoning.crossfit import WHOLE_SPLIT

log = logging.getLogger(__name__)

CARD_COLUMNS = ("id", "cell_type", "level", "card_json")
CALLS = ("enriched", "depleted", "neutral")
FEATURE_KINDS = ("family", "motif")
GC_FEATURE = "GC content"


@dataclass(frozen=True)
class FeatureEvidence:
    """One family or motif in one cell type: how often high- and low-activity training cards carry it."""

    cell_type: str
    kind: str
    feature: str
    carriers_high: int
    carriers_low: int
    n_high: int
    n_low: int
    log2_odds_ratio: float
    fisher_p: float
    mean_level_carriers: float
    mean_level_others: float
    call: str

    @property
    def carriers(self) -> int:
        return self.carriers_high + self.carriers_low


@dataclass(frozen=True)
class GcTrend:
    """How GC content goes with activity level among one cell type's training cards."""

    cell_type: str
    n_cards: int
    spearman_rho: float
    spearman_p: float
    mean_gc: float
    sd_gc: float
    mean_gc_high: float
    mean_gc_low: float


@dataclass(frozen=True)
class Evidence:
    """The lookup the teacher reads: feature evidence by (cell type, kind, feature), the GC trend by cell type."""

    n_levels: int
    pseudocount: float
    features: Mapping[tuple[str, str, str], FeatureEvidence]
    gc: Mapping[str, GcTrend]

    def family(self, cell_type: str, family: str) -> FeatureEvidence | None:
        return self.features.get((cell_type, "family", family))

    def motif(self, cell_type: str, name: str) -> FeatureEvidence | None:
        return self.features.get((cell_type, "motif", name))

    def called(self, cell_type: str, kind: str, call: str) -> list[FeatureEvidence]:
        """Features of this kind with this call in the cell type, strongest effect first."""
        rows = [item for (cell, item_kind, _), item in self.features.items()
                if cell == cell_type and item_kind == kind and item.call == call]
        return sorted(rows, key=lambda item: (-abs(item.log2_odds_ratio), item.feature))

    def log2_likelihood_ratio(self, item: FeatureEvidence, carried: bool) -> float:
        """log2 P(carries or lacks the feature | high) / P(same | low): a naive-Bayes term for one card."""
        high = item.carriers_high if carried else item.n_high - item.carriers_high
        low = item.carriers_low if carried else item.n_low - item.carriers_low
        return math.log2((high + self.pseudocount) / (item.n_high + 2 * self.pseudocount)) - math.log2(
            (low + self.pseudocount) / (item.n_low + 2 * self.pseudocount))

    def table(self) -> pd.DataFrame:
        """The parquet layout: feature rows, then one `gc` row per cell type (unused columns empty)."""
        rows = [asdict(item) for item in self.features.values()]
        rows += [{"kind": "gc", "feature": GC_FEATURE, **asdict(item)} for item in self.gc.values()]
        frame = pd.DataFrame(rows, columns=TABLE_COLUMNS).assign(n_levels=self.n_levels, pseudocount=self.pseudocount)
        for column in INTEGER_COLUMNS:
            frame[column] = frame[column].astype("Int64")
        return frame.sort_values(["cell_type", "kind", "feature"], ignore_index=True)

    @classmethod
    def from_table(cls, frame: pd.DataFrame, path: str | Path | None = None) -> Evidence:
        missing = [column for column in (*TABLE_COLUMNS, "n_levels", "pseudocount") if column not in frame.columns]
        if missing:
            raise InputError(f"not an evidence table: missing column(s) {', '.join(missing)}", path=path,
                             column=missing[0])
        if frame.empty:
            raise InputError("the evidence table is empty", path=path)
        features: dict[tuple[str, str, str], FeatureEvidence] = {}
        gc: dict[str, GcTrend] = {}
        for row_number, row in enumerate(frame.to_dict("records"), start=1):
            if row["kind"] in FEATURE_KINDS:
                item = FeatureEvidence(**{name: _plain(row[name]) for name in FeatureEvidence.__dataclass_fields__})
                if item.call not in CALLS:
                    raise InputError(f"unknown call {item.call!r}; expected one of {', '.join(CALLS)}", path=path,
                                     row=row_number, column="call")
                features[(item.cell_type, item.kind, item.feature)] = item
            elif row["kind"] == "gc":
                gc[row["cell_type"]] = GcTrend(**{name: _plain(row[name]) for name in GcTrend.__dataclass_fields__})
            else:
                raise InputError(f"unknown kind {row['kind']!r}; expected family, motif or gc", path=path,
                                 row=row_number, column="kind")
        return cls(n_levels=int(frame["n_levels"].iloc[0]), pseudocount=float(frame["pseudocount"].iloc[0]),
                   features=features, gc=gc)


TABLE_COLUMNS = list(dict.fromkeys([*FeatureEvidence.__dataclass_fields__, *GcTrend.__dataclass_fields__]))
INTEGER_COLUMNS = ("carriers_high", "carriers_low", "n_high", "n_low", "n_cards")


def _plain(value: object) -> object:
    """Parquet gives numpy scalars; the dataclasses hold plain Python numbers."""
    return value.item() if hasattr(value, "item") else value


def log2_odds_ratio(carriers_high: int, n_high: int, carriers_low: int, n_low: int, pseudocount: float) -> float:
    """log2 of (carriers/non-carriers among high) over (carriers/non-carriers among low), pseudocount in each cell."""
    high = (carriers_high + pseudocount) / (n_high - carriers_high + pseudocount)
    low = (carriers_low + pseudocount) / (n_low - carriers_low + pseudocount)
    return math.log2(high / low)


def check_cards(cards: pd.DataFrame, n_levels: int, path: str | Path | None = None) -> None:
    """Columns present, levels known and in range: the evidence and the teacher both need labels."""
    missing = [column for column in CARD_COLUMNS if column not in cards.columns]
    if missing:
        raise InputError(f"not a card table: missing column(s) {', '.join(missing)}", path=path, column=missing[0])
    levels = pd.to_numeric(cards["level"], errors="coerce")
    bad = levels.isna() | (levels < 0) | (levels >= n_levels) | (levels != levels.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"level {cards['level'].iloc[row]!r} is not an integer in 0..{n_levels - 1}", path=path,
                         row=row + 1, column="level")


def card_features(card: Card) -> list[tuple[str, str]]:
    """The (kind, feature) pairs a card carries, each once."""
    families = {family for hit in card.motifs for family in hit.families}
    return [("family", family) for family in sorted(families)] + [
        ("motif", name) for name in sorted({hit.name for hit in card.motifs})]


def compute_evidence(cards: pd.DataFrame, *, n_levels: int, min_count: int, pseudocount: float,
                     min_log2_ratio: float, path: str | Path | None = None, progress: bool = True) -> Evidence:
    """Family and motif enrichment and the GC trend per cell type, from training cards."""
    check_cards(cards, n_levels, path)
    levels = cards["level"].astype(int).to_numpy()
    high = levels >= n_levels / 2
    parsed = [parse_card(text, path, row) for row, text in enumerate(
        tqdm(cards["card_json"], desc="evidence", unit="card", disable=not progress, mininterval=5), start=1)]
    carried = pd.DataFrame([(row, kind, feature) for row, card in enumerate(parsed)
                            for kind, feature in card_features(card)], columns=["row", "kind", "feature"])
    carrier_rows = carried["row"].to_numpy(dtype=int)
    carried = carried.assign(cell_type=cards["cell_type"].to_numpy()[carrier_rows], high=high[carrier_rows],
                             level=levels[carrier_rows])
    gc_values = np.array([card.gc_content for card in parsed])
    features: dict[tuple[str, str, str], FeatureEvidence] = {}
    gc: dict[str, GcTrend] = {}
    for cell_type in sorted(cards["cell_type"].unique()):
        rows = (cards["cell_type"] == cell_type).to_numpy()
        n_high, n_low = int(high[rows].sum()), int((~high[rows]).sum())
        level_sum, n_cards = int(levels[rows].sum()), int(rows.sum())
        per_feature = carried[carried["cell_type"] == cell_type].groupby(["kind", "feature"]).agg(
            carriers_high=("high", "sum"), carriers=("high", "size"), level_sum=("level", "sum"))
        for (kind, feature), counts in per_feature.iterrows():
            carriers_high = int(counts["carriers_high"])
            carriers_low = int(counts["carriers"]) - carriers_high
            ratio = log2_odds_ratio(carriers_high, n_high, carriers_low, n_low, pseudocount)
            _, pvalue = fisher_exact([[carriers_high, n_high - carriers_high], [carriers_low, n_low - carriers_low]])
            call = "neutral"
            if carriers_high + carriers_low >= min_count and abs(ratio) >= min_log2_ratio:
                call = "enriched" if ratio > 0 else "depleted"
            others = n_cards - int(counts["carriers"])
            features[(cell_type, kind, feature)] = FeatureEvidence(
                cell_type=cell_type, kind=kind, feature=feature, carriers_high=carriers_high,
                carriers_low=carriers_low, n_high=n_high, n_low=n_low, log2_odds_ratio=ratio, fisher_p=float(pvalue),
                mean_level_carriers=float(counts["level_sum"] / counts["carriers"]),
                mean_level_others=(level_sum - float(counts["level_sum"])) / others if others else float("nan"),
                call=call)
        gc[cell_type] = _gc_trend(cell_type, gc_values[rows], levels[rows], high[rows])
    evidence = Evidence(n_levels=n_levels, pseudocount=pseudocount, features=features, gc=gc)
    for cell_type, trend in gc.items():
        log.info("%s: %d training cards; %d enriched and %d depleted families, %d enriched and %d depleted motifs; "
                 "GC-level Spearman rho %+.3f", cell_type, trend.n_cards,
                 *(len(evidence.called(cell_type, kind, call)) for kind in FEATURE_KINDS
                   for call in ("enriched", "depleted")), trend.spearman_rho)
    return evidence


def _gc_trend(cell_type: str, gc_values: np.ndarray, levels: np.ndarray, high: np.ndarray) -> GcTrend:
    """Spearman rho is NaN-free: a constant column (one level, or equal GC everywhere) counts as no trend."""
    if len(gc_values) > 2 and np.ptp(gc_values) > 0 and np.ptp(levels) > 0:
        rho, pvalue = spearmanr(gc_values, levels)
    else:
        rho, pvalue = 0.0, 1.0
    return GcTrend(cell_type=cell_type, n_cards=len(gc_values), spearman_rho=float(rho), spearman_p=float(pvalue),
                   mean_gc=float(gc_values.mean()), sd_gc=float(gc_values.std()),
                   mean_gc_high=float(gc_values[high].mean()) if high.any() else float("nan"),
                   mean_gc_low=float(gc_values[~high].mean()) if (~high).any() else float("nan"))


def read_evidence(path: str | Path) -> Evidence:
    """The evidence of the whole train split."""
    return read_evidence_folds(path)[WHOLE_SPLIT]


def read_evidence_folds(path: str | Path) -> dict[int, Evidence]:
    """Every evidence the table holds, read once: WHOLE_SPLIT, and when cross-fitted (crossfit.py) fold k's,
    computed from the train cards outside fold k."""
    file = require_file(path, "evidence table")
    frame = pd.read_parquet(file)
    if "fold" not in frame:
        return {WHOLE_SPLIT: Evidence.from_table(frame, file)}
    return {int(fold): Evidence.from_table(rows, file) for fold, rows in frame.groupby("fold", sort=True)}
