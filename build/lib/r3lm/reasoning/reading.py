"""The grounded teacher's reading of a card: every decision its rationale rests on, made once per card.

A reading says which sites favour activity in the card's cell type (curated activators, motifs or families
enriched among high-activity training sequences), which work against it (repressors, depleted features),
which are architectural or neutral; what the card lists and how its sites are arranged; the quality of
the key site; the sequence's composition and its GC against the cell type's trend; and the balance: a
naive-Bayes log2 odds that the card is high-activity, its tier and whether the tier agrees with the
observed level. Every style writes the same reading, so the styles differ only in wording.

The odds: one term per significantly enriched or depleted family and motif of the cell type (carried or
lacking), a +/-0.5 prior per curated activator or repressor role on the card, and a GC term (Spearman rho
times the card's GC z-score). The tiers were set on the demo data so that each tier mostly holds the
levels it names.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from r3lm.rcc.card import Card
from r3lm.rcc.evidence_tags import GCReading, gc_effect, gc_reading, net_tier
from r3lm.rcc.grammar import GrammarSettings, Layout, layout
from r3lm.rcc.hits import MotifHit
from r3lm.reasoning.evidence import Evidence, FeatureEvidence, GcTrend
from r3lm.reasoning.roles import Role, RoleTable

SIGNIFICANT_P = 0.05
ROLE_PRIOR = 0.5
MAX_DATA_EFFECT = 2.0
# Tiers of the card's net log2 odds of being high-activity (naive-Bayes feature terms + role priors + GC term)
STRONG_ODDS, POSITIVE_ODDS, NEGATIVE_ODDS = 2.0, 0.5, -1.0
QUOTED_RUN = 8
TIERS = ("negative", "mixed", "positive", "strongly positive")  # lowest first


@dataclass(frozen=True)
class CellOdds:
    """A cell type's naive-Bayes terms: `base` with every informative feature absent; carrying one adds its
    shift (log2 LR carried minus absent); `totals` counts the informative features by (kind, call)."""

    base: float
    shifts: dict[tuple[str, str], tuple[float, str]]
    totals: Counter[tuple[str, str]]


@dataclass(frozen=True)
class SiteReading:
    """One card hit read in the card's cell type: its curated role, its own or its family's training evidence,
    and its pull (role prior plus data effect; > 0 favours activity)."""

    hit: MotifHit
    role: Role | None
    evidence: FeatureEvidence | None
    effect: float

    @property
    def kind(self) -> str:
        if self.effect > 0:
            return "pro"
        if self.effect < 0:
            return "con"
        return "architectural" if self.role is not None and self.role.role == "architectural" else "neutral"


@dataclass(frozen=True)
class Inventory:
    """What the card lists: hit and family counts, the most frequent family (None when no hit has one) with its
    hit count and an example, the best hit and the covered span."""

    n_hits: int
    n_families: int
    family: str | None
    count: int
    example: MotifHit | None
    top: MotifHit
    first: int
    last: int


@dataclass(frozen=True)
class Quality:
    """The best-scoring activity-associated hit, the card's median score, and whether the lead reaches it."""

    lead: MotifHit
    median: float
    strong: bool


@dataclass(frozen=True)
class Composition:
    """The sequence's own features, for a card without motifs: CpG count, CpG observed/expected, and the
    longest A/T run, quoted when it is long enough to stand out ("" otherwise)."""

    cpg: int
    ratio: float
    run: int
    quoted: str


@dataclass(frozen=True)
class CardReading:
    """Every decision about one card at its observed level; `pro` and `con` lead with the strongest pull.
    `inventory` and `leading` are None for a card without motifs, `quality` when no site favours activity,
    `gc` when the cell type has no GC trend."""

    card: Card
    level: int
    n_levels: int
    grammar: GrammarSettings
    readings: tuple[SiteReading, ...]
    pro: tuple[SiteReading, ...]
    con: tuple[SiteReading, ...]
    architectural: tuple[SiteReading, ...]
    neutral: tuple[SiteReading, ...]
    leading: SiteReading | None
    inventory: Inventory | None
    layout: Layout
    quality: Quality | None
    composition: Composition
    trend: GcTrend | None
    gc: GCReading | None
    totals: Counter[tuple[str, str]]
    carried: Counter[tuple[str, str]]
    tier: str
    consistent: bool
    predicts_higher: bool
    net_count: int | None = None  # sites for minus sites against, when the tier follows it (tier_by_count)

    @property
    def net(self) -> str:
        """The balance as a rationale states it: the tier, after the net count it follows when there is one."""
        return self.tier if self.net_count is None else f"{self.net_count:+d}, {self.tier}"

    @property
    def cell(self) -> str:
        return self.card.cell_type

    @property
    def tier_level(self) -> int:
        """The level the tier names, spread over the levels from the lowest (negative) to the highest (strongly
        positive): the level a rationale concluding from its own balance would state."""
        rank = TIERS.index(self.tier)
        return round(rank * (self.n_levels - 1) / (len(TIERS) - 1))


def data_effect(evidence: FeatureEvidence | None) -> float:
    """Only a called and nominally significant feature moves a site, by its clipped log2 odds ratio."""
    if evidence is None or evidence.call == "neutral" or evidence.fisher_p >= SIGNIFICANT_P:
        return 0.0
    return max(-MAX_DATA_EFFECT, min(MAX_DATA_EFFECT, evidence.log2_odds_ratio))


def _role_prior(role: Role | None) -> float:
    return {"activator": ROLE_PRIOR, "repressor": -ROLE_PRIOR}.get(role.role, 0.0) if role else 0.0


def cell_odds(evidence: Evidence) -> dict[str, CellOdds]:
    """Per cell type, the naive-Bayes terms of every significantly enriched or depleted family and motif."""
    bases: dict[str, float] = defaultdict(float)
    shifts: dict[str, dict[tuple[str, str], tuple[float, str]]] = defaultdict(dict)
    totals: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for (cell, kind, feature), item in evidence.features.items():
        if data_effect(item):
            absent = evidence.log2_likelihood_ratio(item, carried=False)
            bases[cell] += absent
            shifts[cell][(kind, feature)] = (evidence.log2_likelihood_ratio(item, carried=True) - absent, item.call)
            totals[cell][(kind, item.call)] += 1
    return {cell: CellOdds(bases[cell], shifts[cell], totals[cell]) for cell in shifts}


def read_site(hit: MotifHit, cell_type: str, evidence: Evidence, roles: RoleTable) -> SiteReading:
    """The motif's own evidence when it is significant (families can be too broad to show a signal),
    else its most informative family's."""
    role = roles.role_for(hit, cell_type)
    own = evidence.motif(cell_type, hit.name)
    if own is not None and data_effect(own):
        chosen: FeatureEvidence | None = own
    else:
        found = [item for family in sorted(hit.families) if (item := evidence.family(cell_type, family)) is not None]
        called = [item for item in found if item.call != "neutral"]
        chosen = max(called or found, key=lambda item: (abs(item.log2_odds_ratio), item.carriers), default=None)
    return SiteReading(hit=hit, role=role, evidence=chosen, effect=_role_prior(role) + data_effect(chosen))


def pull_order(reading: SiteReading) -> tuple[float, str, int]:
    """Strongest pull first, ties by motif name (then position): a motif's rank in its cell type does not depend
    on the card, so the evidence tags can list a card's sites in the order the teacher names them."""
    return -abs(reading.effect), reading.hit.name, reading.hit.start


def read_card(card: Card, level: int, readings: Sequence[SiteReading], odds: CellOdds | None, trend: GcTrend | None,
              grammar: GrammarSettings, n_levels: int, *, tier_by_count: bool = False) -> CardReading:
    """The reading of `card` (its hits read as `readings`) against its cell type's `odds` (None: the cell type
    has no significant feature) and GC `trend`. `tier_by_count`: the card shows its evidence line
    (rcc.evidence_tags), and the tier is the one that line states for its net count, so a rationale's tier is
    the card's."""
    if odds is None:
        odds = CellOdds(base=0.0, shifts={}, totals=Counter())
    by_pull = sorted(readings, key=pull_order)
    pro = tuple(reading for reading in by_pull if reading.kind == "pro")
    gc_term = gc_effect(card.gc_content, trend)
    carried = {("family", family) for hit in card.motifs for family in hit.families} | {
        ("motif", hit.name) for hit in card.motifs}
    informative = [(feature[0], *odds.shifts[feature]) for feature in sorted(carried) if feature in odds.shifts]
    feature_odds = odds.base + sum(shift for _, shift, _ in informative)
    roles = {id(reading.role): reading.role for reading in readings if reading.role is not None}
    total = feature_odds + sum(_role_prior(role) for role in roles.values()) + gc_term
    net = sum(reading.kind == "pro" for reading in readings) - sum(reading.kind == "con" for reading in readings)
    tier = net_tier(net) if tier_by_count else _tier(total)
    return CardReading(
        card=card, level=level, n_levels=n_levels, grammar=grammar, readings=tuple(readings), pro=pro,
        con=tuple(reading for reading in by_pull if reading.kind == "con"),
        architectural=tuple(reading for reading in by_pull if reading.kind == "architectural"),
        neutral=tuple(reading for reading in readings if reading.kind == "neutral"),
        leading=_leading(readings), inventory=_inventory(card.motifs) if card.motifs else None,
        layout=layout(card.motifs, [reading.hit for reading in pro], grammar),
        quality=_quality(pro, card.motifs) if pro else None, composition=_composition(card.sequence),
        trend=trend, gc=gc_reading(card.gc_content, trend), totals=odds.totals,
        carried=Counter((kind, call) for kind, _, call in informative), tier=tier,
        consistent=_consistent(tier, level, n_levels), predicts_higher=tier in ("strongly positive", "positive"),
        net_count=net if tier_by_count else None)


def _inventory(motifs: Sequence[MotifHit]) -> Inventory:
    families = Counter(family for hit in motifs for family in hit.families)
    family, count = min(families.items(), key=lambda item: (-item[1], item[0])) if families else (None, 0)
    return Inventory(n_hits=len(motifs), n_families=len(families), family=family, count=count,
                     example=next((hit for hit in motifs if family in hit.families), None),
                     top=max(motifs, key=lambda hit: (hit.score, -hit.start)),
                     first=motifs[0].start, last=max(hit.end for hit in motifs))


def _leading(readings: Sequence[SiteReading]) -> SiteReading | None:
    """The hit whose evidence leans furthest toward activity: the closest any uninformative site comes."""
    return max(readings, key=lambda reading: (
        reading.evidence.log2_odds_ratio if reading.evidence else -math.inf, reading.hit.score,
        -reading.hit.start), default=None)


def _quality(pro: Sequence[SiteReading], motifs: Sequence[MotifHit]) -> Quality:
    lead = max(pro, key=lambda reading: (reading.hit.score, -reading.hit.start)).hit
    median = statistics.median(hit.score for hit in motifs)
    return Quality(lead, median, lead.score >= median)


def _composition(sequence: str) -> Composition:
    cpg = sequence.count("CG")
    expected = sequence.count("C") * sequence.count("G") / max(len(sequence), 1)
    run, start = _longest_run(sequence, "AT")
    quoted = sequence[start:start + run] if run >= QUOTED_RUN else ""
    return Composition(cpg, cpg / expected if expected else 0.0, run, quoted)


def _longest_run(sequence: str, letters: str) -> tuple[int, int]:
    """Length and 0-based start of the longest stretch made only of `letters`."""
    best, best_start, current, start = 0, 0, 0, 0
    for index, base in enumerate(sequence):
        if base in letters:
            if current == 0:
                start = index
            current += 1
            if current > best:
                best, best_start = current, start
        else:
            current = 0
    return best, best_start


def _tier(total: float) -> str:
    if total >= STRONG_ODDS:
        return "strongly positive"
    if total >= POSITIVE_ODDS:
        return "positive"
    return "mixed" if total > NEGATIVE_ODDS else "negative"


def _consistent(tier: str, level: int, n_levels: int) -> bool:
    """Does the card's net evidence agree with the observed level (top, upper, lower or bottom)?"""
    if level == n_levels - 1:
        return tier in ("strongly positive", "positive")
    if level == 0:
        return tier in ("mixed", "negative")
    if level >= n_levels / 2:
        return tier in ("strongly positive", "positive", "mixed")
    return tier in ("positive", "mixed", "negative")

