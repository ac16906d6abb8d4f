"""What every style of the grounded teacher shares in writing a reading: which steps a rationale has and
in what order, the seeded choice of phrasing, and the words for sites, drivers and the level."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from r3lm.rationale.format import level_name
from r3lm.rcc.hits import MotifHit
from r3lm.reasoning.reading import CardReading, Composition, SiteReading

SHOWN_SITES = 3
FOUR_LEVEL_WORDS = ("barely active", "weakly active", "moderately active", "highly active")


class StepRenderer(Protocol):
    """One style: a sentence per step of the rationale, each written from the reading alone."""

    reading: CardReading

    def overview(self) -> str: ...

    def activators(self) -> str: ...

    def counterweights(self) -> str | None:
        """None: the style states the sides in another step."""

    def uninformative_sites(self) -> str: ...

    def arrangement(self) -> str: ...

    def site_quality(self) -> str: ...

    def composition(self) -> str: ...

    def absent_sites(self) -> str: ...

    def gc_step(self) -> str: ...

    def balance(self) -> str: ...

    def conclusion(self) -> str: ...

    def arrange(self, steps: list[str], min_steps: int) -> list[str]: ...


@dataclass(frozen=True)
class Phrasing:
    """A reading to write and the seeded stream that picks among a style's phrasings."""

    reading: CardReading
    rng: random.Random

    def pick(self, *options: str) -> str:
        return self.rng.choice(options)

    def arrange(self, steps: list[str], min_steps: int) -> list[str]:
        """The steps as the style lays them out (most keep them as ordered)."""
        return steps


def ordered_steps(renderer: StepRenderer, max_steps: int) -> list[str]:
    """Core steps always; optional ones (lowest priority first to go) only while max_steps allows. The steps
    are written in a fixed order (it fixes the seeded phrasing), which is not their order in the rationale."""
    reading = renderer.reading
    if not reading.card.motifs:
        return [renderer.overview(), renderer.absent_sites(), renderer.composition(), renderer.gc_step(),
                renderer.balance()]
    informative = bool(reading.pro or reading.con or reading.architectural)
    against = renderer.counterweights() if informative else None
    arrangement, quality = renderer.arrangement(), renderer.site_quality() if reading.pro else None
    steps = [renderer.overview(), renderer.activators() if informative else renderer.uninformative_sites(), against,
             arrangement, quality, renderer.gc_step(), renderer.balance()]
    steps = [step for step in steps if step is not None]
    for optional in (quality, against, arrangement):
        if len(steps) > max_steps and optional is not None:
            steps.remove(optional)
    return steps


def span(hit: MotifHit) -> str:
    return f"{hit.start}-{hit.end}"


def stretch(hits: Sequence[MotifHit]) -> str:
    """The positions `hits` (in card order) cover, first start to last end."""
    return f"{hits[0].start}-{max(hit.end for hit in hits)}"


def quoted_run(composition: Composition) -> str:
    return f" ({composition.quoted})" if composition.quoted else ""


def leading_first(reading: CardReading) -> list[SiteReading]:
    """The leading site, then the sites of every other motif: what an uninformative card can name."""
    lead = reading.leading
    return [lead] + [other for other in reading.readings if other.hit.name != lead.hit.name]


def names(readings: Sequence[SiteReading], limit: int = SHOWN_SITES, note: str = "", more: bool = True) -> str:
    """e.g. "A, B and C (+2 more)" (without the count when not `more`); `note` follows the first name,
    e.g. "A (log2 OR +1.20) and B"."""
    unique = list(dict.fromkeys(reading.hit.name for reading in readings))
    shown = unique[:limit]
    shown[0] += note
    text = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
    return text + (f" (+{len(unique) - limit} more)" if more and len(unique) > limit else "")


def verb(readings: Sequence[SiteReading], singular: str, plural: str) -> str:
    """The verb form agreeing with `names(readings)`."""
    return plural if len({reading.hit.name for reading in readings}) > 1 else singular


def drivers(reading: CardReading, phrasing: Mapping[str, str], limit: int, more: bool) -> str:
    """What the conclusion rests on: the leading sites for and against activity, `limit` names a side, in the
    style's `phrasing` of each case (empty, both, pro, con, none)."""
    if not reading.card.motifs:
        case = "empty"
    else:
        case = "both" if reading.pro and reading.con else "pro" if reading.pro else "con" if reading.con else "none"
    return phrasing[case].format(pro=names(reading.pro, limit, more=more) if reading.pro else "",
                                 con=names(reading.con, limit, more=more) if reading.con else "",
                                 sites=names(reading.readings, 2, more=more) if reading.readings else "")


def level_words(level: int, n_levels: int) -> str:
    return FOUR_LEVEL_WORDS[level] if n_levels == 4 else f"in activity {level_name(level, n_levels)}"


def verdict(reading: CardReading) -> tuple[str, str]:
    """The level in words and the closing 'Activity level: N (name).'"""
    level, n_levels = reading.level, reading.n_levels
    return level_words(level, n_levels), f"Activity level: {level} ({level_name(level, n_levels)})."
