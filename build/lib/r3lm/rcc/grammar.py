"""Grammar tags: short, rule-based statements about a card's motif arrangement.

Rules (thresholds are `rcc.grammar` config keys):
* GC prior: `GC-rich` when GC >= gc_rich, `AT-rich` when GC <= at_rich (nothing in between).
* Motif cluster: at least `cluster_min_motifs` hits inside `cluster_window` bp (greedy, left to
  right, non-overlapping clusters), a hallmark of enhancer-like modules.
* Repeated family: a TF family hit at least `repeat_min` times (homotypic sites).
* Pair arrangement: two hits of different families whose gap is at most `pair_max_gap` bp, with
  their orientation (`tandem` on the same strand; `convergent` +/-; `divergent` -/+) and spacing;
  the `max_pairs` closest pairs are listed. Overlapping hits have a negative gap ("overlapping").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from r3lm.rcc.hits import MotifHit


@dataclass(frozen=True)
class GrammarSettings:
    """The `rcc.grammar` config block (its defaults live in the config schema)."""

    gc_rich: float
    at_rich: float
    cluster_window: int
    cluster_min_motifs: int
    repeat_min: int
    pair_max_gap: int
    max_pairs: int

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> GrammarSettings:
        return cls(**{key: settings[key] for key in cls.__dataclass_fields__})


def _gc_tags(gc: float, settings: GrammarSettings) -> list[str]:
    if gc >= settings.gc_rich:
        return [f"GC-rich ({gc:.2f})"]
    if gc <= settings.at_rich:
        return [f"AT-rich ({gc:.2f})"]
    return []


def _cluster_tags(motifs: Sequence[MotifHit], settings: GrammarSettings) -> list[str]:
    tags, first = [], 0
    while first < len(motifs):
        last = first
        while last + 1 < len(motifs) and motifs[last + 1].end - motifs[first].start < settings.cluster_window:
            last += 1
        if last - first + 1 >= settings.cluster_min_motifs:
            tags.append(f"motif cluster: {last - first + 1} motifs in {motifs[first].start}-"
                        f"{max(hit.end for hit in motifs[first:last + 1])}")
            first = last + 1
        else:
            first += 1
    return tags


def _repeat_tags(motifs: Sequence[MotifHit], settings: GrammarSettings) -> list[str]:
    counts = Counter(family for hit in motifs for family in sorted(hit.families))
    return [f"repeated family: {family} x{count}" for family, count in sorted(counts.items())
            if count >= settings.repeat_min]


def _pair_tags(motifs: Sequence[MotifHit], settings: GrammarSettings) -> list[str]:
    pairs = []
    for i, left in enumerate(motifs):
        for right in motifs[i + 1:]:
            gap = right.start - left.end - 1
            if gap > settings.pair_max_gap:
                break
            if left.families & right.families:
                continue
            orientation = _orientation(left, right)
            spacing = f"{gap} bp apart" if gap >= 0 else "overlapping"
            pairs.append((gap, left.start, f"{left.name} + {right.name}: {orientation}, {spacing}"))
    return [text for _, _, text in sorted(pairs)[: settings.max_pairs]]


def _orientation(left: MotifHit, right: MotifHit) -> str:
    """Two hits' orientation, the left one first: tandem on the same strand, convergent +/-, divergent -/+."""
    return "tandem" if left.strand == right.strand else "convergent" if left.strand == "+" else "divergent"


def grammar_tags(motifs: Sequence[MotifHit], gc: float, settings: GrammarSettings) -> tuple[str, ...]:
    """Tags in a fixed order (GC, clusters, repeats, pairs); `motifs` must be sorted by start."""
    return tuple(_gc_tags(gc, settings) + _cluster_tags(motifs, settings) + _repeat_tags(motifs, settings)
                 + _pair_tags(motifs, settings))


@dataclass(frozen=True)
class Pair:
    """The closest activity-associated pair: `gap` < 0 when they overlap."""

    left: MotifHit
    right: MotifHit
    gap: int
    orientation: str
    cooperative: bool


@dataclass(frozen=True)
class Layout:
    """The arrangement: the dense cluster (empty when none), the closest activity-associated pair and the
    most repeated family (with its hits) when it reaches the grammar's repeat threshold."""

    cluster: list[MotifHit]
    pair: Pair | None
    homotypic: tuple[str, int, list[MotifHit]] | None


def layout(motifs: Sequence[MotifHit], pro: Sequence[MotifHit], grammar: GrammarSettings) -> Layout:
    """The arrangement of `motifs` (by position), its pair drawn from the activity-associated `pro` hits."""
    cluster = _densest_window(motifs, grammar.cluster_window)
    pair = None
    closest = _closest_pair(pro)
    if closest is not None:
        left, right, gap = closest
        pair = Pair(left, right, gap, _orientation(left, right), 0 <= gap <= grammar.pair_max_gap)
    repeated = Counter(family for hit in motifs for family in hit.families)
    homotypic = [(family, count) for family, count in sorted(repeated.items(), key=lambda item: (-item[1], item[0]))
                 if count >= grammar.repeat_min]
    repeat = None
    if homotypic:
        family, count = homotypic[0]
        repeat = (family, count, [hit for hit in motifs if family in hit.families])
    return Layout(cluster=cluster if len(cluster) >= grammar.cluster_min_motifs else [], pair=pair, homotypic=repeat)


def _densest_window(motifs: Sequence[MotifHit], window: int) -> list[MotifHit]:
    """The most hits inside one cluster window (earliest window on ties)."""
    best: list[MotifHit] = []
    for first, anchor in enumerate(motifs):
        inside = [hit for hit in motifs[first:] if hit.end - anchor.start < window]
        if len(inside) > len(best):
            best = inside
    return best


def _closest_pair(hits: Sequence[MotifHit]) -> tuple[MotifHit, MotifHit, int] | None:
    """The two nearest non-overlapping sites (the arrangement that could cooperate), else the least
    overlapping pair (gap < 0); earliest on ties."""
    ordered = sorted(hits, key=lambda hit: (hit.start, hit.end, hit.name))  # whatever order `hits` come in
    pairs = [(right.start - left.end - 1, left, right) for i, left in enumerate(ordered) for right in ordered[i + 1:]]
    if not pairs:
        return None
    gap, left, right = min(pairs, key=lambda item: (item[0] < 0, abs(item[0]), item[1].start, item[2].start))
    return left, right, gap


def layout_phrase(motifs: Sequence[MotifHit], arrangement: Layout) -> str:
    """The arrangement in the words a compact rationale states it and a card's evidence line prints it, e.g.
    "no cluster, A and B spread out" (`motifs`: the card's, by position; at least one)."""
    if len(motifs) == 1:
        return f"single site {motifs[0].name}"
    pair = arrangement.pair
    if pair is not None:
        both = f"{pair.left.name} and {pair.right.name}"
        return (f"{both} overlap" if pair.gap < 0
                else f"{both} close, cooperative" if pair.cooperative else f"{both} far apart")
    if arrangement.cluster:
        return f"cluster around {arrangement.cluster[0].name}"
    return f"no cluster, {' and '.join(list(dict.fromkeys(hit.name for hit in motifs))[:2])} spread out"
