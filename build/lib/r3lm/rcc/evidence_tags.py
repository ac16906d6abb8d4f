"""Evidence tags (`rcc.evidence_tags`): what a card shows of its cell type's training evidence, so that every
fact a rationale states about the card can be copied from it rather than computed or recalled.

A 135M student reads a card well and reckons badly: on real lentiMPRA cards it stated a wrong hit count in 3
rationales of 4 and placed GC against the mean at chance, while it copied every number the card printed. So
the card prints what the compact rationale says of it: each motif's direction in the cell type, the hit count,
the motifs by direction, their net count and its tier, and where the GC content sits against the cell type's
training mean with what that does to activity. One home for those words: the grounded teacher's reading
(reasoning/reading.py) takes its GC reading and, on tagged cards, its tier from here.

The JSON (`evidence_tags.json`, and a bundle's manifest) is `{"directions": {cell: {motif: up|down}},
"gc": {cell: {mean_gc, sd_gc, spearman_rho}}}`; the older layout `{cell: {motif: up|down}}` reads as
directions without a GC line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from r3lm.rcc.grammar import GrammarSettings, layout, layout_phrase

if TYPE_CHECKING:
    from r3lm.rcc.hits import MotifHit

DIRECTIONS = ("up", "down")  # the motif favours or works against activity in the cell type
NO_DIRECTION = "none"
NEUTRAL = "neutral"  # how the evidence line lists the motifs tagged none, in the teacher's word for them
GC_WEIGHT = 4.0  # the GC term of the teacher's odds: weight x Spearman rho x the card's GC z-score
NO_GC_TREND = 0.05  # |rho| below this: activity does not follow GC in the cell type
# The tier of a card's net count of sites (up minus down), when the card shows it: on the real HepG2 lentiMPRA
# (train split tags, 150 test cards) the net count ranks activity at Spearman 0.44, the teacher's odds at 0.47.
NET_TIERS = ((3, "strongly positive"), (1, "positive"), (0, "mixed"))
BELOW_NET_TIERS = "negative"


class GcScale(Protocol):
    """How activity follows GC among a cell type's training cards (reasoning.evidence.GcTrend is one)."""

    mean_gc: float
    sd_gc: float
    spearman_rho: float


@dataclass(frozen=True)
class GcStats:
    mean_gc: float
    sd_gc: float
    spearman_rho: float


@dataclass(frozen=True)
class GCReading:
    place: str  # below, close to, above (the mean)
    tracks: str
    effect: str  # favours, works against, hardly shifts (activity)


def gc_effect(gc: float, scale: GcScale | None) -> float:
    """The GC term of the teacher's odds: the card's GC z-score (clipped at 2) times rho, weighted."""
    if scale is None or scale.sd_gc <= 0 or abs(scale.spearman_rho) < NO_GC_TREND:
        return 0.0
    z = max(-2.0, min(2.0, (gc - scale.mean_gc) / scale.sd_gc))
    return GC_WEIGHT * scale.spearman_rho * z


def gc_reading(gc: float, scale: GcScale | None) -> GCReading | None:
    """Where the GC content sits against the cell type's mean, how activity tracks GC, and the net effect."""
    if scale is None:
        return None
    place = ("above" if gc > scale.mean_gc + 0.25 * scale.sd_gc
             else "below" if gc < scale.mean_gc - 0.25 * scale.sd_gc else "close to")
    if abs(scale.spearman_rho) < NO_GC_TREND:
        return GCReading(place, "barely tracks", "hardly shifts")
    effect = gc_effect(gc, scale)
    return GCReading(place, "rises with" if scale.spearman_rho > 0 else "falls with",
                     "favours" if effect > 0.1 else "works against" if effect < -0.1 else "hardly shifts")


def net_tier(net: int) -> str:
    return next((tier for cut, tier in NET_TIERS if net >= cut), BELOW_NET_TIERS)


def sides(listed: Mapping[str, Iterable[str]]) -> str:
    """The card's motifs by side, e.g. "up A, B; down none; neutral C": the words of the evidence line, which the
    compact rationale copies (`listed`: the names under up, down and neutral, each once, in the line's order)."""
    return "; ".join(f"{word} {', '.join(listed[word]) or 'none'}" for word in (*DIRECTIONS, NEUTRAL))


@dataclass(frozen=True)
class CellEvidence:
    """One cell type's tags: motif name -> up or down (any other motif: none), strongest pull first, and its GC
    trend (None: the card states no GC reading)."""

    directions: Mapping[str, str]
    gc: GcScale | None = None

    def direction(self, motif: str) -> str:
        return self.directions.get(motif, NO_DIRECTION)

    def net(self, motifs: Iterable[str]) -> int:
        """Sites for minus sites against, over the card's sites (a motif listed twice counts twice)."""
        words = [self.direction(motif) for motif in motifs]
        return words.count(DIRECTIONS[0]) - words.count(DIRECTIONS[1])

    def line(self, cell_type: str, hits: Sequence[MotifHit], gc: float, gc_text: str,
             grammar: GrammarSettings | None = None) -> str:
        """The card's evidence line: hit count; its motifs up and down in pull order and the untagged ones
        (neutral) in the card's order (`hits`: by position, as the teacher names them); net count and tier; the
        arrangement (with `grammar`: what the student cannot work out from positions, it copies); GC against
        the mean."""
        motifs = [hit.name for hit in hits]
        rank = {name: index for index, name in enumerate(self.directions)}
        listed = {word: sorted({name for name in motifs if self.direction(name) == word}, key=rank.get)
                  for word in DIRECTIONS}
        listed[NEUTRAL] = list(dict.fromkeys(name for name in motifs if self.direction(name) == NO_DIRECTION))
        net = self.net(motifs)
        parts = [f"{len(motifs)} hit{'s' if len(motifs) != 1 else ''}", sides(listed), f"net {net:+d}, {net_tier(net)}"]
        if grammar is not None and hits:
            up = [hit for hit in hits if self.direction(hit.name) == DIRECTIONS[0]]
            parts.append(f"layout: {layout_phrase(hits, layout(hits, up, grammar))}")
        reading = gc_reading(gc, self.gc)
        if reading is not None:
            parts.append(f"GC {gc_text}: {reading.place} the mean, {reading.effect} activity")
        return f"{cell_type} evidence: " + "; ".join(parts) + "."


@dataclass(frozen=True)
class EvidenceTags:
    """Every cell type's tags, as the cards of a run (and of its bundles) show them."""

    cells: Mapping[str, CellEvidence] = field(default_factory=dict)

    def __contains__(self, cell_type: object) -> bool:
        return cell_type in self.cells

    def get(self, cell_type: str) -> CellEvidence:
        """A cell type without tags reads every motif as none and states no GC reading."""
        return self.cells.get(cell_type, CellEvidence({}))

    def subset(self, cell_types: Iterable[str]) -> EvidenceTags:
        return EvidenceTags({cell: self.cells[cell] for cell in cell_types})

    def to_json(self) -> dict[str, Any]:
        return {"directions": {cell: dict(evidence.directions) for cell, evidence in self.cells.items()},
                "gc": {cell: {"mean_gc": evidence.gc.mean_gc, "sd_gc": evidence.gc.sd_gc,
                              "spearman_rho": evidence.gc.spearman_rho}
                       for cell, evidence in self.cells.items() if evidence.gc is not None}}

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> EvidenceTags:
        """Both layouts (module docstring); the caller checks the words."""
        if not isinstance(payload.get("directions"), Mapping):
            return cls({cell: CellEvidence(dict(directions)) for cell, directions in payload.items()})
        gc = payload.get("gc") or {}
        return cls({cell: CellEvidence(dict(directions), GcStats(**gc[cell]) if cell in gc else None)
                    for cell, directions in payload["directions"].items()})


@dataclass(frozen=True)
class StatedEvidence:
    """What a card's evidence line states, read back from the card's text (what the model read)."""

    cell_type: str
    hits: int
    up: tuple[str, ...]
    down: tuple[str, ...]
    untagged: tuple[str, ...]
    net: int
    tier: str
    layout: str | None
    gc_place: str | None
    gc_effect: str | None


_LINE = re.compile(r"^(?P<cell>\S+) evidence: (?P<hits>\d+) hits?; up (?P<up>[^;]*); down (?P<down>[^;]*); "
                   r"neutral (?P<none>[^;]*); net (?P<net>[+-]\d+), (?P<tier>[a-z ]+?)(?:; layout: (?P<layout>[^;]*))?(?:; GC [\d.]+: (?P<place>below|close to|above) "
                   r"the mean, (?P<effect>favours|works against|hardly shifts) activity)?\.$", re.MULTILINE)


def side_names(listed: str) -> tuple[str, ...]:
    """The names of one side as `sides` writes them ("A, B" or "none")."""
    return () if listed == "none" else tuple(listed.split(", "))


def stated_evidence(card_text: str) -> StatedEvidence | None:
    """The evidence line of a card's text (`CellEvidence.line`), None when it has none."""
    match = _LINE.search(card_text)
    if match is None:
        return None
    return StatedEvidence(match["cell"], int(match["hits"]), side_names(match["up"]), side_names(match["down"]),
                          side_names(match["none"]), int(match["net"]), match["tier"], match["layout"], match["place"],
                          match["effect"])
