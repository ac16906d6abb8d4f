"""Cards for every row of a dataset table, from the sequences' motif hits (scanned once per sequence)."""

from __future__ import annotations

import logging
import time

import pandas as pd
from tqdm import tqdm

from r3lm.motifs.scan import HIT_COLUMNS
from r3lm.rcc.card import CardSettings, card_from_sites, deduplicate
from r3lm.rcc.hits import MotifHit

log = logging.getLogger(__name__)


def hits_by_sequence(hits: pd.DataFrame) -> dict[str, list[MotifHit]]:
    """Group a hits table (the scanner's columns) into MotifHit lists keyed by sequence id."""
    grouped: dict[str, list[MotifHit]] = {}
    for row in hits[HIT_COLUMNS].itertuples(index=False):
        grouped.setdefault(row.seq_id, []).append(MotifHit(
            matrix_id=row.matrix_id, name=row.motif_name, family=row.family, tf_class=row[4],
            start=int(row.start), end=int(row.end), strand=row.strand, score=float(row.score),
            pvalue=float(row.pvalue)))
    return grouped


def cards_for_table(table: pd.DataFrame, hits: pd.DataFrame, settings: CardSettings, *,
                    progress: bool = True) -> pd.DataFrame:
    """One card per (sequence, cell type) row: the row's identifying columns plus the card as JSON and text."""
    started = time.perf_counter()
    grouped = hits_by_sequence(hits[hits["seq_id"].isin(set(table["id"]))])
    json_cards, text_cards, motif_counts, left_off = [], [], [], []
    rows = zip(table["id"], table["sequence"], table["cell_type"])
    for seq_id, sequence, cell_type in tqdm(rows, total=len(table), desc="cards", unit="card", disable=not progress,
                                            mininterval=5):
        sites = deduplicate(grouped.get(seq_id, ()), settings.dedup)
        card = card_from_sites(sequence, cell_type, sites, settings)
        left_off.append(len(sites) - len(card.motifs))
        json_cards.append(card.to_json())
        text_cards.append(settings.text(card))
        motif_counts.append(len(card.motifs))
    keep = [column for column in ("id", "cell_type", "split", "activity", "level") if column in table.columns]
    cards = table[keep].reset_index(drop=True).assign(n_motifs=motif_counts, card_json=json_cards, card_text=text_cards)
    seconds = time.perf_counter() - started
    log.info("built %d cards in %.1f s (%.0f cards/s), %.2f motifs per card after deduplication",
             len(cards), seconds, len(cards) / max(seconds, 1e-9), cards["n_motifs"].mean() if len(cards) else 0.0)
    if any(left_off):
        log.info("rcc.max_motifs=%d left %d weaker sites off %d cards", settings.max_motifs, sum(left_off),
                 sum(count > 0 for count in left_off))
    return cards


