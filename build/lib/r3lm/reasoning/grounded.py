"""The default teacher: offline, deterministic rationales grounded in the card and the training evidence.

Given a card, its observed level, the training evidence (motif and family enrichment, the GC trend
of the cell type) and the curated roles table, it writes 5-7 numbered steps the way a biologist
would argue: what the card lists; which sites favour activity in this cell type (curated activators,
motifs or families enriched among high-activity training sequences, with their counts); which work
against it (repressors, depleted motifs or families) or are architectural; how the sites are
arranged (clusters, spacing, orientation, homotypic repeats); the quality of the key site; the GC
content against the cell type's trend; and how the evidence balances. Then the conclusion with the level,
with a caveat when the card cannot account for the measurement. The label reaches only the
conclusion: for a given card the steps are the same at every level, so a Stage-II input stripped of its
conclusion (oracle_cot) carries the teacher's reasoning, not the label.

The balance is a naive-Bayes log2 odds that the card is high-activity (reading.py); the conclusion compares
its tier with the observed level and, when they disagree, names what the card cannot show (unoccupied
sites, unlisted repressors or cofactors).

Grounding rules, enforced by construction and checked by validate.py: every step cites a card
element (motif name, family, position, score, GC value, length), and the text never names a motif
that the card does not list: absences are phrased generically ("no curated K562 activator"), and the
roles table's rationales name no TF.

The styles (`reasoning.detail`) share every decision (which sites favour or oppose activity, the
arrangement, the GC reading, the balance and its tier: one reading of the card, reading.py) and differ only
in how the steps are written (a renderer per style, *_style.py): `full` cites every count and statistic (carriers, log2 odds ratios, Fisher p-values, the feature
tally); `brief` writes each step as one short sentence naming at most three motifs, with a single
statistic (the lead activator's log2 odds ratio), for small students; `compact` writes each step as a
terse note (motif names, GC, the tier; no positions or scores), about 60% of brief's tokens, for a 135M student on a
CPU, where every generated token costs time and the mapping from card to level must be learned from a
few hundred examples.

Phrasing varies by a seeded choice per (seed, card id, cell type), so the set does not read like one
template, yet a rerun gives identical text.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import cached_property

from r3lm.rationale.format import compose
from r3lm.rcc.card import Card
from r3lm.rcc.grammar import GrammarSettings
from r3lm.rcc.hits import MotifHit
from r3lm.reasoning.brief_style import BriefRenderer
from r3lm.reasoning.compact_style import CompactRenderer
from r3lm.reasoning.evidence import Evidence
from r3lm.reasoning.full_style import FullRenderer
from r3lm.reasoning.reading import (
    CardReading,
    CellOdds,
    SiteReading,
    cell_odds,
    read_card,
    read_site,
)
from r3lm.reasoning.roles import RoleTable
from r3lm.reasoning.wording import ordered_steps

RENDERERS = {"full": FullRenderer, "brief": BriefRenderer, "compact": CompactRenderer}
DETAILS = tuple(RENDERERS)


@dataclass(frozen=True)
class GroundedTeacher:
    evidence: Evidence
    roles: RoleTable
    grammar: GrammarSettings
    n_levels: int
    seed: int
    max_steps: int = 7
    detail: str = "full"
    min_steps: int = 5
    tier_by_count: bool = False  # the cards show their evidence line (rcc.evidence_tags): the tier is its tier

    def __post_init__(self) -> None:
        if self.detail not in DETAILS:
            raise ValueError(f"unknown rationale detail {self.detail!r}; expected one of {', '.join(DETAILS)}")

    @cached_property
    def odds(self) -> dict[str, CellOdds]:
        """Per cell type, the naive-Bayes terms of every significantly enriched or depleted family and motif."""
        return cell_odds(self.evidence)

    def read_site(self, hit: MotifHit, cell_type: str) -> SiteReading:
        return read_site(hit, cell_type, self.evidence, self.roles)

    def read(self, card: Card, level: int) -> CardReading:
        """Every decision about `card` at its observed `level`, whatever the style."""
        readings = [self.read_site(hit, card.cell_type) for hit in card.motifs]
        return read_card(card, level, readings, self.odds.get(card.cell_type), self.evidence.gc.get(card.cell_type),
                         self.grammar, self.n_levels, tier_by_count=self.tier_by_count)

    def explain(self, card: Card, level: int, card_id: str) -> str:
        """The rationale for `card` at its observed `level`; `card_id` only seeds the phrasing."""
        digest = hashlib.sha256(f"{self.seed}\0{card_id}\0{card.cell_type}".encode()).digest()
        renderer = RENDERERS[self.detail](self.read(card, level), random.Random(int.from_bytes(digest[:8], "big")))
        steps = renderer.arrange(ordered_steps(renderer, self.max_steps), self.min_steps)
        return compose(steps, renderer.conclusion())
