"""The default teacher: offline, deterministic rationales grounded in the card and the training evidence.

Given a card, its observed level, the training evidence (motif and family enrichment, the GC trend
of the cell type) and the curated roles table, it writes 5-7 numbered steps the way a biologist
would argue: what the card lists; which sites favour activity in this cell type (curated activators,
motifs or families enriched among high-activity training sequences, with their counts); which work
against it (repressors, depleted motifs or families) or are architectural; how the sites are
arranged (clusters, spacing, orientation, homotypic repeats); the quality of the key site; the GC
content against the cell type's trend; and how the evidence balances, with a caveat when the card
cannot account for the measurement. Then the conclusion with the level. The steps never state the
level: only the conclusion does, so a Stage-II input stripped of its conclusion (oracle_cot) carries
the teacher's reasoning, not the label.

The balance is a naive-Bayes log2 odds that the card is high-activity: one term per significantly
enriched or depleted family and motif of the cell type (carried or lacking), a +/-0.5 prior per
curated activator or repressor role on the card, and a GC term (Spearman rho times the card's GC
z-score). Its tiers were set on the demo data so that each tier mostly holds the levels it names;
the teacher compares the tier with the observed level and, when they disagree, names what the card
cannot show (unoccupied sites, unlisted repressors or cofactors).

Grounding rules, enforced by construction and checked by validate.py: every step cites a card
element (motif name, family, position, score, GC value, length), and the text never names a motif
that the card does not list: absences are phrased generically ("no curated K562 activator"), and the
roles table's rationales name no TF.

Two styles (`reasoning.detail`) share every decision (which sites favour or oppose activity, the
arrangement, the GC reading, the balance and its tier) and differ only in how the steps are written:
`full` cites every count and statistic (carriers, log2 odds ratios, Fisher p-values, the feature
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
import math
import random
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from r3lm.rcc.card import FAMILY_SEPARATOR, Card, MotifHit
from r3lm.rcc.grammar import GrammarSettings
from r3lm.reasoning.evidence import FEATURE_KINDS, Evidence, FeatureEvidence
from r3lm.reasoning.format import compose, level_name
from r3lm.reasoning.roles import Role, RoleTable

SIGNIFICANT_P = 0.05
STRONG_P = 1e-3
ROLE_PRIOR = 0.5
MAX_DATA_EFFECT = 2.0
GC_WEIGHT = 4.0
# Tiers of the card's net log2 odds of being high-activity (naive-Bayes feature terms + role priors + GC term)
STRONG_ODDS, POSITIVE_ODDS, NEGATIVE_ODDS = 2.0, 0.5, -1.0
NO_GC_TREND = 0.05
SHOWN_SITES = 3
PLURAL = {"family": "families", "motif": "motifs"}
FOUR_LEVEL_WORDS = ("barely active", "weakly active", "moderately active", "highly active")
DETAILS = ("full", "brief", "compact")


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


def _data_effect(evidence: FeatureEvidence | None) -> float:
    """Only a called and nominally significant feature moves a site, by its clipped log2 odds ratio."""
    if evidence is None or evidence.call == "neutral" or evidence.fisher_p >= SIGNIFICANT_P:
        return 0.0
    return max(-MAX_DATA_EFFECT, min(MAX_DATA_EFFECT, evidence.log2_odds_ratio))


def _p_text(pvalue: float) -> str:
    return f"{pvalue:.1e}" if pvalue < STRONG_P else f"{pvalue:.3f}"


def _strength(evidence: FeatureEvidence) -> str:
    """How far to trust the call: its p-value, and for a neutral call why it stayed neutral."""
    if evidence.call == "neutral":
        return "not significant" if evidence.fisher_p >= SIGNIFICANT_P else "significant but below the call's size"
    if evidence.fisher_p < STRONG_P:
        return "strong"
    return "modest" if evidence.fisher_p < SIGNIFICANT_P else "nominal, not significant"


def _span(hit: MotifHit) -> str:
    return f"{hit.start}-{hit.end}"


def _names(readings: Sequence[SiteReading], limit: int = SHOWN_SITES, note: str = "", more: bool = True) -> str:
    """e.g. "A, B and C (+2 more)" (without the count when not `more`); `note` follows the first name,
    e.g. "A (log2 OR +1.20) and B"."""
    names = list(dict.fromkeys(reading.hit.name for reading in readings))
    shown = names[:limit]
    shown[0] += note
    text = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
    return text + (f" (+{len(names) - limit} more)" if more and len(names) > limit else "")


def _verb(readings: Sequence[SiteReading], singular: str, plural: str) -> str:
    """The verb form agreeing with `_names(readings)`."""
    return plural if len({reading.hit.name for reading in readings}) > 1 else singular


def _counts(evidence: FeatureEvidence, cell_type: str) -> str:
    return (f"carried by {evidence.carriers_high:,} of {evidence.n_high:,} high-activity vs "
            f"{evidence.carriers_low:,} of {evidence.n_low:,} low-activity {cell_type} training sequences "
            f"(log2 OR {evidence.log2_odds_ratio:+.2f}, Fisher p = {_p_text(evidence.fisher_p)})")


def level_words(level: int, n_levels: int) -> str:
    return FOUR_LEVEL_WORDS[level] if n_levels == 4 else f"in activity {level_name(level, n_levels)}"


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

    def __post_init__(self) -> None:
        if self.detail not in DETAILS:
            raise ValueError(f"unknown rationale detail {self.detail!r}; expected one of {', '.join(DETAILS)}")

    @cached_property
    def odds(self) -> dict[str, CellOdds]:
        """Per cell type, the naive-Bayes terms of every significantly enriched or depleted family and motif."""
        bases: dict[str, float] = defaultdict(float)
        shifts: dict[str, dict[tuple[str, str], tuple[float, str]]] = defaultdict(dict)
        totals: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
        for (cell, kind, feature), item in self.evidence.features.items():
            if _data_effect(item):
                absent = self.evidence.log2_likelihood_ratio(item, carried=False)
                bases[cell] += absent
                shifts[cell][(kind, feature)] = (self.evidence.log2_likelihood_ratio(item, carried=True) - absent,
                                                 item.call)
                totals[cell][(kind, item.call)] += 1
        return {cell: CellOdds(bases[cell], shifts[cell], totals[cell]) for cell in shifts}

    def read_site(self, hit: MotifHit, cell_type: str) -> SiteReading:
        """The motif's own evidence when it is significant (families can be too broad to show a signal),
        else its most informative family's."""
        role = self.roles.role_for(hit, cell_type)
        own = self.evidence.motif(cell_type, hit.name)
        if own is not None and _data_effect(own):
            evidence: FeatureEvidence | None = own
        else:
            found = [item for family in sorted(hit.families)
                     if (item := self.evidence.family(cell_type, family)) is not None]
            called = [item for item in found if item.call != "neutral"]
            evidence = max(called or found, key=lambda item: (abs(item.log2_odds_ratio), item.carriers), default=None)
        prior = {"activator": ROLE_PRIOR, "repressor": -ROLE_PRIOR}.get(role.role, 0.0) if role else 0.0
        return SiteReading(hit=hit, role=role, evidence=evidence, effect=prior + _data_effect(evidence))

    def explain(self, card: Card, level: int, card_id: str) -> str:
        """The rationale for `card` at its observed `level`; `card_id` only seeds the phrasing."""
        digest = hashlib.sha256(f"{self.seed}\0{card_id}\0{card.cell_type}".encode()).digest()
        writer_class = {"full": _FullWriter, "brief": _BriefWriter, "compact": _CompactWriter}[self.detail]
        writer = writer_class(self, card, level, random.Random(int.from_bytes(digest[:8], "big")))
        return compose(writer.steps(), writer.conclusion())


@dataclass(frozen=True)
class _Inventory:
    """What the card lists: hit and family counts, the most frequent family, the best hit and the covered span."""

    n_hits: int
    n_families: int
    family: str
    count: int
    example: MotifHit
    top: MotifHit
    first: int
    last: int


@dataclass(frozen=True)
class _Pair:
    """The closest activity-associated pair: `gap` < 0 when they overlap."""

    left: MotifHit
    right: MotifHit
    gap: int
    orientation: str
    cooperative: bool


@dataclass(frozen=True)
class _Layout:
    """The arrangement: the dense cluster (empty when none), the closest activity-associated pair and the
    most repeated family (with its hits) when it reaches the grammar's repeat threshold."""

    cluster: list[MotifHit]
    pair: _Pair | None
    homotypic: tuple[str, int, list[MotifHit]] | None


@dataclass(frozen=True)
class _GCReading:
    place: str
    tracks: str
    effect: str


class _Writer:
    """Writes one rationale; holds the card's readings and every decision, so both styles (the subclasses,
    which only render sentences) draw on the same facts."""

    # How the conclusion names its drivers: the phrasing per case and how many names each list shows.
    drivers: ClassVar[dict[str, str]] = {"empty": "no identified motif at all", "both": "{pro} offset by {con}",
               "pro": "{pro} with no repressive counterweight", "con": "{con} without an activity-associated site",
               "none": "only uninformative sites such as {sites}"}
    drivers_limits: ClassVar[dict[str, int]] = {"pro": 2, "con": 2}
    drivers_more: ClassVar[bool] = True

    def __init__(self, teacher: GroundedTeacher, card: Card, level: int, rng: random.Random) -> None:
        self.teacher, self.card, self.level, self.rng = teacher, card, level, rng
        self.cell = card.cell_type
        self.readings = [teacher.read_site(hit, self.cell) for hit in card.motifs]
        by_pull = sorted(self.readings, key=lambda reading: (-abs(reading.effect), reading.hit.start))
        self.pro = [reading for reading in by_pull if reading.kind == "pro"]
        self.con = [reading for reading in by_pull if reading.kind == "con"]
        self.architectural = [reading for reading in by_pull if reading.kind == "architectural"]
        self.neutral = [reading for reading in self.readings if reading.kind == "neutral"]
        self.trend = teacher.evidence.gc.get(self.cell)
        self.gc_effect = self._gc_effect()
        carried = {("family", family) for hit in card.motifs for family in hit.families} | {
            ("motif", hit.name) for hit in card.motifs}
        self.odds = teacher.odds.get(self.cell, CellOdds(base=0.0, shifts={}, totals=Counter()))
        informative = [(feature[0], *self.odds.shifts[feature]) for feature in sorted(carried)
                       if feature in self.odds.shifts]
        feature_odds = self.odds.base + sum(shift for _, shift, _ in informative)
        roles = {id(reading.role): reading.role for reading in self.readings if reading.role is not None}
        role_prior = sum({"activator": ROLE_PRIOR, "repressor": -ROLE_PRIOR}.get(role.role, 0.0)
                         for role in roles.values())
        self.carried = Counter((kind, call) for kind, _, call in informative)
        self.total = feature_odds + role_prior + self.gc_effect

    def pick(self, *options: str) -> str:
        return self.rng.choice(options)

    # ----------------------------------------------------------------------------------------- steps
    def steps(self) -> list[str]:
        """Core steps always; optional ones (lowest priority first to go) only while max_steps allows."""
        if not self.card.motifs:
            return [self.overview(), self.composition(), self.absent_sites(), self.gc_step(), self.balance()]
        informative = bool(self.pro or self.con or self.architectural)
        against = self.counterweights() if informative else None
        arrangement, quality = self.arrangement(), self.site_quality() if self.pro else None
        steps = [self.overview(), self.activators() if informative else self.uninformative_sites(), against,
                 arrangement, quality, self.gc_step(), self.balance()]
        steps = [step for step in steps if step is not None]
        for optional in (quality, against, arrangement):
            if len(steps) > self.teacher.max_steps and optional is not None:
                steps.remove(optional)
        return steps

    # The sentences of each step, per style.
    def overview(self) -> str:
        raise NotImplementedError

    def activators(self) -> str:
        raise NotImplementedError

    def counterweights(self) -> str:
        raise NotImplementedError

    def uninformative_sites(self) -> str:
        raise NotImplementedError

    def arrangement(self) -> str:
        raise NotImplementedError

    def site_quality(self) -> str:
        raise NotImplementedError

    def composition(self) -> str:
        raise NotImplementedError

    def absent_sites(self) -> str:
        raise NotImplementedError

    def gc_step(self) -> str:
        raise NotImplementedError

    def balance(self) -> str:
        raise NotImplementedError

    def conclusion(self) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------- decisions
    def _inventory(self) -> _Inventory:
        motifs = self.card.motifs
        families = Counter(family for hit in motifs for family in hit.family.split(FAMILY_SEPARATOR))
        family, count = min(families.items(), key=lambda item: (-item[1], item[0]))
        return _Inventory(n_hits=len(motifs), n_families=len(families), family=family, count=count,
                          example=next(hit for hit in motifs if family in hit.families),
                          top=max(motifs, key=lambda hit: (hit.score, -hit.start)),
                          first=motifs[0].start, last=max(hit.end for hit in motifs))

    def _leading_reading(self) -> SiteReading:
        """The hit whose evidence leans furthest toward activity: the closest any uninformative site comes."""
        return max(self.readings, key=lambda reading: (
            reading.evidence.log2_odds_ratio if reading.evidence else -math.inf, reading.hit.score,
            -reading.hit.start))

    def _layout(self) -> _Layout:
        motifs, grammar = self.card.motifs, self.teacher.grammar
        cluster = self._densest_window()
        pair = None
        closest = self._closest_pair([reading.hit for reading in self.pro])
        if closest is not None:
            left, right, gap = closest
            orientation = ("tandem" if left.strand == right.strand
                           else "convergent" if left.strand == "+" else "divergent")
            pair = _Pair(left, right, gap, orientation, 0 <= gap <= grammar.pair_max_gap)
        repeated = Counter(family for hit in motifs for family in hit.family.split(FAMILY_SEPARATOR))
        homotypic = [(family, count) for family, count in sorted(repeated.items(), key=lambda item: (-item[1], item[0]))
                     if count >= grammar.repeat_min]
        repeat = None
        if homotypic:
            family, count = homotypic[0]
            repeat = (family, count, [hit for hit in motifs if family in hit.families])
        return _Layout(cluster=cluster if len(cluster) >= grammar.cluster_min_motifs else [], pair=pair,
                       homotypic=repeat)

    def _densest_window(self) -> list[MotifHit]:
        """The most hits inside one cluster window (earliest window on ties)."""
        motifs, window = self.card.motifs, self.teacher.grammar.cluster_window
        best: list[MotifHit] = []
        for first, anchor in enumerate(motifs):
            inside = [hit for hit in motifs[first:] if hit.end - anchor.start < window]
            if len(inside) > len(best):
                best = inside
        return best

    @staticmethod
    def _closest_pair(hits: Sequence[MotifHit]) -> tuple[MotifHit, MotifHit, int] | None:
        """The two nearest non-overlapping sites (the arrangement that could cooperate), else the least
        overlapping pair (gap < 0); earliest on ties."""
        ordered = sorted(hits, key=lambda hit: (hit.start, hit.end))
        pairs = [(right.start - left.end - 1, left, right)
                 for i, left in enumerate(ordered) for right in ordered[i + 1:]]
        if not pairs:
            return None
        gap, left, right = min(pairs, key=lambda item: (item[0] < 0, abs(item[0]), item[1].start, item[2].start))
        return left, right, gap

    def _quality(self) -> tuple[MotifHit, float, bool]:
        """The best-scoring activity-associated hit, the card's median score, and whether it reaches it."""
        lead = max(self.pro, key=lambda reading: (reading.hit.score, -reading.hit.start)).hit
        median = statistics.median(hit.score for hit in self.card.motifs)
        return lead, median, lead.score >= median

    def _composition(self) -> tuple[int, float, int, int]:
        """For a card without motifs: CpG count, CpG observed/expected, and the longest A/T run and its start."""
        sequence = self.card.sequence
        cpg = sequence.count("CG")
        expected = sequence.count("C") * sequence.count("G") / max(len(sequence), 1)
        run, start = _longest_run(sequence, "AT")
        return cpg, cpg / expected if expected else 0.0, run, start

    def _count(self, kind: str, call: str) -> int:
        return self.odds.totals[(kind, call)]

    def _gc_effect(self) -> float:
        trend = self.trend
        if trend is None or trend.sd_gc <= 0 or abs(trend.spearman_rho) < NO_GC_TREND:
            return 0.0
        z = max(-2.0, min(2.0, (self.card.gc_content - trend.mean_gc) / trend.sd_gc))
        return GC_WEIGHT * trend.spearman_rho * z

    def _gc_reading(self) -> _GCReading | None:
        """Where the card's GC sits against the cell type's mean, how activity tracks GC, and the net effect."""
        gc, trend = self.card.gc_content, self.trend
        if trend is None:
            return None
        place = ("above" if gc > trend.mean_gc + 0.25 * trend.sd_gc
                 else "below" if gc < trend.mean_gc - 0.25 * trend.sd_gc else "close to")
        if abs(trend.spearman_rho) < NO_GC_TREND:
            return _GCReading(place, "barely tracks", "hardly shifts")
        return _GCReading(place, "rises with" if trend.spearman_rho > 0 else "falls with",
                          "favours" if self.gc_effect > 0.1 else "works against" if self.gc_effect < -0.1
                          else "hardly shifts")

    def _tier(self) -> str:
        if self.total >= STRONG_ODDS:
            return "strongly positive"
        if self.total >= POSITIVE_ODDS:
            return "positive"
        return "mixed" if self.total > NEGATIVE_ODDS else "negative"

    def consistent(self) -> bool:
        """Does the card's net evidence agree with the observed level (top, upper, lower or bottom)?"""
        tier, top = self._tier(), self.teacher.n_levels - 1
        if self.level == top:
            return tier in ("strongly positive", "positive")
        if self.level == 0:
            return tier in ("mixed", "negative")
        if self.level >= self.teacher.n_levels / 2:
            return tier in ("strongly positive", "positive", "mixed")
        return tier in ("positive", "mixed", "negative")

    def _predicts_higher(self) -> bool:
        """For an inconsistent card: does the evidence point above (True) or below the observed level?"""
        return self._tier() in ("strongly positive", "positive")

    def _drivers(self) -> str:
        """What the conclusion rests on: the leading sites for and against activity."""
        if not self.card.motifs:
            case = "empty"
        else:
            case = "both" if self.pro and self.con else "pro" if self.pro else "con" if self.con else "none"
        limits, more = self.drivers_limits, self.drivers_more
        return self.drivers[case].format(pro=_names(self.pro, limits["pro"], more=more) if self.pro else "",
                                         con=_names(self.con, limits["con"], more=more) if self.con else "",
                                         sites=_names(self.readings, 2, more=more) if self.readings else "")

    def _verdict(self) -> tuple[str, str]:
        """The level in words and the closing 'Activity level: N (name).'"""
        n_levels = self.teacher.n_levels
        return (level_words(self.level, n_levels),
                f"Activity level: {self.level} ({level_name(self.level, n_levels)}).")


class _FullWriter(_Writer):
    """Every count and statistic: carriers, odds ratios, Fisher p-values, the feature tally."""

    def overview(self) -> str:
        card, length = self.card, self.card.length
        if not card.motifs:
            return self.pick(
                f"The card lists no motif hits anywhere in the {length}-bp sequence, so no transcription-factor "
                f"site can be invoked and the reading must rest on composition (GC content {card.gc_content:.3f}).",
                f"No identified motifs: none of the scanned matrices passes the threshold on this {length}-bp "
                f"sequence, leaving its composition (GC {card.gc_content:.3f}) as the main evidence.")
        inventory = self._inventory()
        family, count, example, top = inventory.family, inventory.count, inventory.example, inventory.top
        first, last, n_families = inventory.first, inventory.last, inventory.n_families
        hits = f"{inventory.n_hits} motif hit{'s' if inventory.n_hits > 1 else ''}"
        return self.pick(
            f"The card lists {hits} from {n_families} TF famil{'ies' if n_families > 1 else 'y'} between "
            f"positions {first}-{last} of the {length}-bp sequence; the most frequent family is {family} "
            f"({count} hit{'s' if count > 1 else ''}, e.g. {example.name} at {_span(example)}).",
            f"{hits[0].upper()}{hits[1:]} cover positions {first}-{last} of this {length}-bp sequence, from "
            f"{n_families} famil{'ies' if n_families > 1 else 'y'}; {family} is the most represented "
            f"({count}), and the highest-scoring hit is {top.name} (Score {top.score:.2f}, Pos {_span(top)}).",
            f"Inventory: {hits} across {first}-{last} of {length} bp. The best match is {top.name} "
            f"({top.family}, Score {top.score:.2f}, {top.strand} strand, Pos {_span(top)}); the most common "
            f"family is {family} with {count} hit{'s' if count > 1 else ''}.")

    def _site(self, reading: SiteReading) -> str:
        """One site with its curated role and its own or its family's training evidence."""
        hit, role, evidence = reading.hit, reading.role, reading.evidence
        text = f"{hit.name} ({hit.family}, {hit.strand} strand, Pos {_span(hit)})"
        if role is not None:
            scope = f"a curated {self.cell} {role.role}" if role.cell_type == self.cell else f"a general {role.role}"
            text += f" is {scope}: {role.rationale}"
        if evidence is None:
            return f"{text}; no {self.cell} training evidence covers its family"
        detail = self.pick(_counts(evidence, self.cell),
                           f"{_counts(evidence, self.cell)}; carriers average level "
                           f"{evidence.mean_level_carriers:.2f} vs {evidence.mean_level_others:.2f}")
        subject = f"{hit.name} itself" if evidence.kind == "motif" else f"its family {evidence.feature}"
        return f"{text}; {subject} is {evidence.call} in {self.cell} training data ({_strength(evidence)}), {detail}"

    def activators(self) -> str:
        if not self.pro:
            reading = self._leading_reading()
            return self.pick(
                f"No card motif is a curated {self.cell} activator or is significantly enriched, by itself or through "
                f"its family, among high-activity {self.cell} training sequences; the closest candidate is "
                f"{self._site(reading)}.",
                f"Nothing on the card reads as a {self.cell} activator: {self._site(reading)}.")
        shown = self.pro[:2]
        rest = self.pro[2:]
        text = self.pick(f"Sites favouring activity in {self.cell}: ",
                         f"Several card motifs point toward {self.cell} activity. ",
                         f"Activity-associated evidence for {self.cell}: ") if len(self.pro) > 1 else ""
        text += ". ".join(self._site(reading) for reading in shown)
        if rest:
            text += f". Further activity-associated hits: {_names(rest)}"
        return text + "."

    def counterweights(self) -> str:
        against = self.con + self.architectural
        if not against:
            others = self.neutral or self.pro
            label = ("carry neutral" if self.neutral
                     else "are all among the activity-associated sites, with no opposing")
            return self.pick(
                f"No card motif is a curated repressor or is depleted, by itself or through its family, among "
                f"high-activity {self.cell} training sequences; the other hits ({_names(others)}) {label} "
                f"{self.cell} evidence.",
                f"Nothing on the card works against activity: there is no repressor site and no depleted family, "
                f"and {_names(others)} {label} {self.cell} evidence.")
        parts = [self._site(reading) for reading in against[:2]]
        text = self.pick("Against activity: ", "Counterweights: ", "Sites that can limit activity: ")
        text += ". ".join(parts)
        if len(against) > 2:
            text += f". Also {_names(against[2:])}"
        return text + "."

    def uninformative_sites(self) -> str:
        reading = self._leading_reading()
        others = [other for other in self.readings if other.hit.name != reading.hit.name]
        tail = f"; the other hits ({_names(others)}) are equally uninformative" if others else ""
        return self.pick(
            f"Neither a curated {self.cell} activator or repressor nor a motif or family with significant "
            f"{self.cell} training evidence is on the card: {self._site(reading)}{tail}.",
            f"The listed sites carry little {self.cell} information: {self._site(reading)}{tail}, consistent with "
            f"chance-level matches.")

    def arrangement(self) -> str:
        motifs, grammar = self.card.motifs, self.teacher.grammar
        if len(motifs) == 1:
            hit = motifs[0]
            return (f"With a single site ({hit.name}, {hit.strand} strand, Pos {_span(hit)}) there is no "
                    f"combinatorial grammar; any activity must come from that one site or from features the card "
                    f"does not list.")
        layout, facts = self._layout(), []
        cluster = layout.cluster
        if cluster:
            facts.append(self.pick(
                f"{len(cluster)} motifs crowd into {cluster[0].start}-{max(hit.end for hit in cluster)}, a dense "
                f"cluster of the kind that marks enhancer modules",
                f"a cluster of {len(cluster)} hits sits in {cluster[0].start}-{max(hit.end for hit in cluster)}, "
                f"which favours cooperative occupancy"))
        else:
            facts.append(f"the hits are spread over {motifs[0].start}-{max(hit.end for hit in motifs)} with no "
                         f"dense cluster ({grammar.cluster_min_motifs} or more within {grammar.cluster_window} bp)")
        pair = layout.pair
        if pair is not None:
            left, right, gap = pair.left, pair.right, pair.gap
            if gap < 0:
                facts.append(f"the activity-associated {left.name} ({_span(left)}) and {right.name} "
                             f"({_span(right)}) overlap, so they compete for one stretch rather than cooperate")
            else:
                close = ("close enough for cooperative binding" if pair.cooperative
                         else "too far apart to suggest direct cooperation")
                distance = "directly adjacent" if gap == 0 else f"{gap} bp apart"
                facts.append(f"the closest activity-associated pair, {left.name} ({_span(left)}) and {right.name} "
                             f"({_span(right)}), is {distance} in {pair.orientation} orientation, {close}")
        if layout.homotypic is not None:
            family, count, hits = layout.homotypic
            spans = ", ".join(_span(hit) for hit in hits)
            facts.append(f"{family} recurs x{count} ({spans}), a homotypic repeat that raises the chance of occupancy")
        text = "; ".join(facts)
        return self.pick("Arrangement: ", "Motif grammar: ", "Spatial layout: ") + text + "."

    def site_quality(self) -> str:
        lead, median, strong = self._quality()
        verdict = (self.pick("a comparatively strong match that is likely occupied",
                             "one of the card's better matches, so occupancy is plausible") if strong
                   else self.pick("weaker than most hits on the card, so its occupancy is uncertain",
                                  "a modest match, which tempers how much it can contribute"))
        return (f"Site quality: the best-scoring activity-associated hit is {lead.name} (Score {lead.score:.2f}, "
                f"Pos {_span(lead)}), against a card median of {median:.2f}; it is {verdict}.")

    def composition(self) -> str:
        """For a card without motifs: CpG density and the longest A/T run, the sequence's own features."""
        cpg, ratio, run, start = self._composition()
        shown = f" ({self.card.sequence[start:start + run]})" if run >= 8 else ""
        return (f"Composition: at GC {self.card.gc_content:.3f} the sequence carries {cpg} CpG dinucleotide"
                f"{'s' if cpg != 1 else ''} (observed/expected {ratio:.2f}) and its longest A/T-only stretch is "
                f"{run} bp{shown}, features a scan for TF motifs does not capture.")

    def absent_sites(self) -> str:
        families, motifs = self._count("family", "enriched"), self._count("motif", "enriched")
        return self.pick(
            f"With no motifs listed, none of the {families} families and {motifs} motifs significantly enriched "
            f"among high-activity {self.cell} training sequences has a site here, and no repressor site is "
            f"present either.",
            f"Because no sites are identified, the {self.card.length}-bp sequence offers no binding platform for "
            f"{self.cell} activators ({families} enriched families and {motifs} enriched motifs in training) and "
            f"no repressor site.")

    def gc_step(self) -> str:
        gc, trend, reading = self.card.gc_content, self.trend, self._gc_reading()
        if trend is None or reading is None:
            return (f"GC content is {gc:.3f}; no {self.cell} training trend is available, so composition is not "
                    f"weighed.")
        place, tracks, effect = reading.place, reading.tracks, reading.effect
        stats = (f"Spearman rho {trend.spearman_rho:+.2f}; mean GC {trend.mean_gc_high:.3f} in high- vs "
                 f"{trend.mean_gc_low:.3f} in low-activity sequences")
        return self.pick(
            f"GC content is {gc:.3f}, {place} the {self.cell} training mean of {trend.mean_gc:.3f}; across "
            f"{self.cell} training sequences activity {tracks} GC ({stats}), so this composition {effect} activity.",
            f"Composition: the GC fraction of {gc:.3f} is {place} the {self.cell} average ({trend.mean_gc:.3f}). "
            f"In {self.cell} training data activity {tracks} GC ({stats}); here it {effect} activity.")

    def _carried_parts(self, call: str) -> str:
        """e.g. "3 of the 11 enriched families and 2 of the 40 enriched motifs", or "none of the 2 depleted
        families or the 23 depleted motifs" (kinds the cell type has none of are left out; "" when none)."""
        kinds = [kind for kind in FEATURE_KINDS if self._count(kind, call)]
        if kinds and not any(self.carried[(kind, call)] for kind in kinds):
            return "none of the " + " or the ".join(f"{self._count(kind, call)} {call} {PLURAL[kind]}"
                                                    for kind in kinds)
        return " and ".join(f"{self.carried[(kind, call)]} of the {self._count(kind, call)} {call} {PLURAL[kind]}"
                            for kind in kinds)

    def _tally(self) -> str:
        """How many of the cell type's significant features the card carries, without naming absent ones."""
        enriched, depleted = self._carried_parts("enriched"), self._carried_parts("depleted")
        if not enriched and not depleted:
            return f"No family or motif is significantly enriched or depleted in {self.cell} training data."
        if enriched and depleted:
            contrast = enriched.startswith("none") != depleted.startswith("none")
            return (f"Of the {self.cell} training features, the card carries {enriched}, "
                    f"{'but' if contrast else 'and'} {depleted}.")
        missing = "depleted" if enriched else "enriched"
        return (f"Of the {self.cell} training features, the card carries {enriched or depleted}; no family or motif "
                f"is significantly {missing}.")

    def _weighed(self) -> str:
        gc = self.card.gc_content
        if not self.card.motifs:
            return f"No site is listed, so only the composition (GC {gc:.3f}) counts"
        pro = (f"{_names(self.pro)} {_verb(self.pro, 'favours', 'favour')} activity" if self.pro
               else "no site favours activity")
        con = (f"{_names(self.con)} {_verb(self.con, 'works', 'work')} against it" if self.con
               else "none opposes it")
        return f"At GC {gc:.3f}, {pro} and {con}"

    def balance(self) -> str:
        tier, weighed, tally = self._tier(), self._weighed(), self._tally()
        if self.consistent():
            return f"{weighed}. {tally} " + self.pick(f"On balance the evidence is {tier}.",
                                                      f"The evidence is therefore {tier}.")
        if self._predicts_higher():
            why = self.pick("the activity-associated sites may be weak matches that are not occupied, or repressive "
                            "features not on the card may dominate",
                            "enrichment of a family among training sequences does not guarantee that this particular "
                            "site is bound, and the card cannot show chromatin state or unlisted repressors")
        else:
            why = self.pick("activity likely comes from features the card does not capture, such as sites below "
                            "the scan threshold or unlisted cofactors",
                            "sub-threshold sites or sequence context outside the scanned motifs probably contribute")
        return f"{weighed}. {tally} The evidence is {tier}, but it may not tell the whole story: {why}."

    def conclusion(self) -> str:
        words, verdict = self._verdict()
        if self.consistent():
            return f"Conclusion: Given {self._drivers()}, this sequence is {words} in {self.cell}. {verdict}"
        return (f"Conclusion: The card explains this sequence's {self.cell} activity only partly "
                f"({self._drivers()}); taking the measurement as given, it is {words}. {verdict}")


class _BriefWriter(_Writer):
    """The same decisions in one short sentence per step: at most three motif names a step and a single
    statistic (the lead activator's log2 odds ratio)."""

    drivers: ClassVar[dict[str, str]] = {
        "empty": "no identified motif", "both": "{pro} against {con}", "pro": "{pro}, unopposed",
        "con": "{con} with no activator", "none": "only neutral sites such as {sites}"}
    drivers_limits: ClassVar[dict[str, int]] = {"pro": 1, "con": 1}
    drivers_more: ClassVar[bool] = False

    def overview(self) -> str:
        length = self.card.length
        if not self.card.motifs:
            return self.pick(f"No motif hits are listed on this {length}-bp sequence.",
                             f"No identified motifs on the {length}-bp sequence.")
        inventory = self._inventory()
        hits = f"{inventory.n_hits} hit{'s' if inventory.n_hits > 1 else ''}"
        families = f"{inventory.n_families} famil{'ies' if inventory.n_families > 1 else 'y'}"
        span = f"{inventory.first}-{inventory.last}"
        return self.pick(f"Positions {span} hold {hits} from {families}.",
                         f"The {length}-bp card lists {hits} in {span}.",
                         f"{hits} in {span}; the best match is {inventory.top.name}.")

    def _lead_note(self, reading: SiteReading) -> str:
        """The one statistic: the lead's own or its family's log2 odds ratio, else its curated role."""
        evidence, role = reading.evidence, reading.role
        if evidence is not None and _data_effect(evidence):
            scope = "" if evidence.kind == "motif" else "family "
            return f" ({scope}log2 OR {evidence.log2_odds_ratio:+.2f})"
        if role is not None:
            return f" (curated {self.cell} {role.role})" if role.cell_type == self.cell else f" (known {role.role})"
        return ""

    def activators(self) -> str:
        if not self.pro:
            name = self._leading_reading().hit.name
            return self.pick(f"No site favours {self.cell} activity; {name} comes closest.",
                             f"Nothing reads as a {self.cell} activator; the closest is {name}.")
        names = _names(self.pro, 2, note=self._lead_note(self.pro[0]))
        verb = _verb(self.pro, "s", "")
        return self.pick(f"{names} favour{verb} {self.cell} activity.",
                         f"Activity-associated in {self.cell}: {names}.",
                         f"{names} point{verb} to {self.cell} activity.")

    def counterweights(self) -> str:
        if not (self.con or self.architectural):
            if self.neutral:
                names = _names(self.neutral, 2, more=False)
                return self.pick(f"No site opposes it; {names} {_verb(self.neutral, 'is', 'are')} neutral.",
                                 f"No repressor or depleted site; {names} carry no {self.cell} signal.")
            return f"No site opposes it; all hits, e.g. {_names(self.pro, 2, more=False)}, favour it."
        parts = []
        if self.con:
            parts.append(f"{_names(self.con, 2)} {_verb(self.con, 'works', 'work')} against activity")
        if self.architectural:
            parts.append(f"{_names(self.architectural, 1)} {_verb(self.architectural, 'is', 'are')} architectural")
        return self.pick("", "Counterweights: ") + "; ".join(parts) + "."

    def uninformative_sites(self) -> str:
        reading = self._leading_reading()
        sites = [reading] + [other for other in self.readings if other.hit.name != reading.hit.name]
        names = _names(sites, 2, more=False)
        return self.pick(f"No site carries {self.cell} evidence; {names} {_verb(sites, 'looks', 'look')} like chance "
                         f"matches.",
                         f"{names} {_verb(sites, 'carries', 'carry')} no {self.cell} activator or repressor signal.")

    def arrangement(self) -> str:
        motifs = self.card.motifs
        if len(motifs) == 1:
            hit = motifs[0]
            return f"A single site ({hit.name}, {_span(hit)}) gives no combinatorial grammar."
        layout = self._layout()
        if layout.cluster:
            cluster = f"{layout.cluster[0].start}-{max(hit.end for hit in layout.cluster)}"
            facts = [self.pick(f"Positions {cluster} hold a cluster of {len(layout.cluster)} hits",
                               f"{len(layout.cluster)} hits cluster in {cluster} bp")]
        else:
            facts = [f"The hits spread over {motifs[0].start}-{max(hit.end for hit in motifs)} with no dense cluster"]
        pair = layout.pair
        if pair is not None:
            both = f"{pair.left.name} and {pair.right.name}"
            if pair.gap < 0:
                facts.append(f"{both} overlap and compete")
            elif pair.cooperative:
                distance = "adjacent" if pair.gap == 0 else f"{pair.gap} bp apart"
                facts.append(f"{both}, {distance} ({pair.orientation}), can cooperate")
            else:
                facts.append(f"{both} are too far apart ({pair.gap} bp) to cooperate")
        elif layout.homotypic is not None:
            family, count, _ = layout.homotypic
            facts.append(f"{family} recurs x{count}")
        return "; ".join(facts) + "."

    def site_quality(self) -> str:
        lead, _, strong = self._quality()
        site = f"{lead.name} (Score {lead.score:.2f})"
        if strong:
            return self.pick(f"{site} is the best activating match, likely occupied.",
                             f"{site}, the top activating site, is a strong match.")
        return self.pick(f"{site} is the best activating match but weak, so occupancy is uncertain.",
                         f"{site}, the top activating site, scores below the card median.")

    def composition(self) -> str:
        cpg, _, run, start = self._composition()
        shown = f" ({self.card.sequence[start:start + run]})" if run >= 8 else ""
        return (f"At GC {self.card.gc_content:.3f} it has {cpg} CpG{'s' if cpg != 1 else ''} and a longest A/T run "
                f"of {run} bp{shown}.")

    def absent_sites(self) -> str:
        return self.pick(f"With no sites, no {self.cell} activator or repressor can bind.",
                         f"No sites means no binding platform for {self.cell} activators.")

    def gc_step(self) -> str:
        gc, reading = f"{self.card.gc_content:.3f}", self._gc_reading()
        if reading is None:
            return f"GC is {gc}; no {self.cell} trend is known, so it is not weighed."
        return self.pick(f"GC {gc} is {reading.place} the {self.cell} mean and {reading.effect} activity.",
                         f"GC {gc}, {reading.place} the {self.cell} mean, {reading.effect} activity.")

    def balance(self) -> str:
        tier, gc = self._tier(), f"{self.card.gc_content:.3f}"
        weighed = f"GC {gc}" if self.card.motifs else f"GC {gc} alone"
        if self.consistent():
            return self.pick(f"Net evidence with {weighed}: {tier}.",
                             f"On balance, with {weighed}, the evidence is {tier}.")
        why = (self.pick("its sites may be unoccupied", "unlisted repressors may dominate") if self._predicts_higher()
               else self.pick("unlisted weak sites may help", "context outside the motifs may help"))
        return f"Net evidence with {weighed}: {tier}, though {why}."

    def conclusion(self) -> str:
        words, verdict = self._verdict()
        if self.consistent():
            return f"Conclusion: Given {self._drivers()}, it is {words} in {self.cell}. {verdict}"
        return f"Conclusion: With {self._drivers()}, the card explains it only partly; it is {words}. {verdict}"


class _CompactWriter(_BriefWriter):
    """The same decisions as terse notes, one phrasing each and few digits (a 135M tokenizer spends a token
    per digit): names carry the evidence; GC is the one number. The GC reading and the balance share a step."""

    def pick(self, *options: str) -> str:
        return options[0]

    def steps(self) -> list[str]:
        steps = super().steps()
        return steps[:-2] + [f"{steps[-2][:-1]}; net {self._tier()}."] if len(steps) > self.teacher.min_steps \
            else steps

    def overview(self) -> str:
        if not self.card.motifs:
            return f"No motifs on the {self.card.length}-bp sequence."
        inventory = self._inventory()
        return f"{inventory.n_hits} hit{'s' if inventory.n_hits > 1 else ''}; top {inventory.top.name}."

    def activators(self) -> str:
        if not self.pro:
            return f"No {self.cell} activator; closest {self._leading_reading().hit.name}."
        return f"For {self.cell}: {_names(self.pro, 2)}."

    def counterweights(self) -> str:
        if not (self.con or self.architectural):
            others = self.neutral or self.pro
            return f"Against: none; {_names(others, 2, more=False)} {'neutral' if self.neutral else 'favour it'}."
        parts = [f"Against: {_names(self.con, 2)}"] if self.con else ["Against: none"]
        if self.architectural:
            parts.append(f"{_names(self.architectural, 1)} architectural")
        return "; ".join(parts) + "."

    def uninformative_sites(self) -> str:
        lead = self._leading_reading()
        sites = [lead] + [other for other in self.readings if other.hit.name != lead.hit.name]
        return f"{_names(sites, 2, more=False)}: no {self.cell} signal."

    def arrangement(self) -> str:
        motifs, layout = self.card.motifs, self._layout()
        if len(motifs) == 1:
            return f"Single site {motifs[0].name}."
        pair = layout.pair
        if pair is not None:
            both = f"{pair.left.name} and {pair.right.name}"
            return (f"{both} overlap." if pair.gap < 0
                    else f"{both} close, cooperative." if pair.cooperative else f"{both} far apart.")
        if layout.cluster:
            return f"Cluster of {len(layout.cluster)} around {layout.cluster[0].name}."
        return f"No cluster; {_names(self.readings, 2, more=False)} spread out."

    def site_quality(self) -> str:
        lead, _, strong = self._quality()
        return f"{lead.name} is a {'strong' if strong else 'weak'} match."

    def composition(self) -> str:
        cpg = self._composition()[0]
        return f"GC {self.card.gc_content:.2f} with {cpg} CpG{'s' if cpg != 1 else ''}."

    def absent_sites(self) -> str:
        return f"No sites for {self.cell} activators or repressors."

    def gc_step(self) -> str:
        gc, reading = f"{self.card.gc_content:.2f}", self._gc_reading()
        if reading is None:
            return f"GC {gc}: no {self.cell} trend known."
        return f"GC {gc}: {reading.place} the mean, {reading.effect} activity."

    def balance(self) -> str:
        return f"Net with GC {self.card.gc_content:.2f}: {self._tier()}."

    def conclusion(self) -> str:
        return f"Conclusion: {self._verdict()[1]}"


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
