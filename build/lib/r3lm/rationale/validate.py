"""Checks a rationale against the format and against its card: the filter for CRE-ReasonBench.

The same checks judge the teacher's rationales (with the label: the stated level must equal it) and
the Stage-I model's own rationales (label=None; level agreement is counted separately).

Reasons, in the order they are tested (the first failing one is reported):
  missing_think, too_few_steps, too_many_steps, missing_level, level_out_of_range,
  motif_not_in_card, number_not_on_card, fact_not_on_card, step_without_evidence, level_mismatch.

Motif mentions (`motif_not_in_card`): every name of the motif vocabulary (e.g. all JASPAR names of
the release) is looked for CASE-SENSITIVELY as a whole token: not preceded or followed by a letter or
digit, longest name first, so "REST" counts but "rest" does not, "SP1" is not found inside "SP140L"
and "FOSL2::JUN" is one mention. Names shorter than 2 characters are ignored. A name directly
followed by "-related", "-like", "-type" or "-family" is a family term, not a motif, and the card's
own family strings are masked first (JASPAR families such as "Jun-related" or "TEF-1-related factors"
contain motif names). A mention is allowed when it names a card motif or one half of a card dimer,
ignoring case (a card listing FOS::JUN may say JUN; "HNF4A" may refer to a card's "Hnf4a").

Numbers (`number_not_on_card`): a number the text presents as one of the card's must be the card's:
  * a score ("Score 16.44", "Score: 16.44") must be a hit's score as printed, and the score of the
    motif named just before it when there is one ("SP1 (Score 15.11", "SP1 (Family: ..., Score: 15.11");
  * a span "a-b" (outside "level 0-3") must have both ends among the hits' coordinates, and so must
    "position N";
  * "GC 0.585", "GC content of 58.5%" must be the card's GC content within rounding.
Statistics from the training evidence (log2 odds ratios, counts, distances, "mean GC 0.51 in high-activity
sequences") are not card numbers.

Facts (`fact_not_on_card`): what the rationale states about its card must be what the card states:
  * a total hit count ("5 hits; top X", "the card lists 5 motif hits") must be the number of motifs listed,
    and a "single site" needs a card that lists exactly one;
  * on a card with an evidence line (rcc.evidence_tags; read back from the card's text): "GC x: below / close
    to / above the mean, favours / works against / hardly shifts activity" must be the line's place and effect;
    "net +N" and its tier ("net +N, mixed", "net mixed") the line's; the card motifs a "For <cell>:" clause
    names must be tagged up, those an "Against:" clause names down, and those "Against: none; X neutral"
    names none (up for "X favour it"); an "In <cell>: up A; down B; neutral C." step must list every side as the
    line does, and a "Layout: ..." step state the line's layout.

Step evidence (`step_without_evidence`): each step must cite at least one element of the card:
  * a card motif name or dimer half (names with a digit or "::" ignore case; purely alphabetic
    names such as REST must keep their case, so ordinary words do not count);
  * a card family (case-sensitive; a hit without a family cites none);
  * a position: a span "a-b" whose ends are both hit coordinates, or "position N" of a hit start/end;
  * a hit score as printed on the card (two decimals);
  * the GC content (as 0.xx/0.xxx within rounding, or as a percentage within 0.5 points);
  * the sequence length ("200 bp", "200-bp", "length 200"), or a stretch of 8+ bases of the sequence;
  * a grammar tag of the card, verbatim (case ignored);
  * on a card without motifs, its empty motif list ("no motifs", "no sites are listed", "up none; down none;
    neutral none", ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import pandas as pd

from r3lm.logs import shortlist
from r3lm.rationale.format import parse
from r3lm.rcc.card import Card
from r3lm.rcc.evidence_tags import (
    DIRECTIONS,
    NEUTRAL,
    StatedEvidence,
    side_names,
    stated_evidence,
)
from r3lm.rcc.hits import FAMILY_SUFFIXES, name_parts

REASONS = ("missing_think", "too_few_steps", "too_many_steps", "missing_level", "level_out_of_range",
           "motif_not_in_card", "number_not_on_card", "fact_not_on_card", "step_without_evidence", "level_mismatch")
MIN_SEQUENCE_CITATION = 8

_TOKEN_START, _TOKEN_END = r"(?<![A-Za-z0-9])", r"(?![A-Za-z0-9])"
_COMPOUND = re.compile(r"[A-Za-z0-9]+(?:(?:::|-)[A-Za-z0-9]+)*")
_JOINER = re.compile(r"(::|-)")
_SPAN = re.compile(r"(?<![A-Za-z\d.])(\d{1,5})\s*(?:-|–|to)\s*(\d{1,5})(?!\d|\.\d)")
_POSITION = re.compile(r"\bpos(?:ition)?s?\.?:?\s*(\d{1,5})\b", re.IGNORECASE)
_DECIMAL = re.compile(r"(?<![\d.])-?\d*\.\d+(?!\d|\.\d)")
_PERCENT = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)\s?%")
_NAMED_SCORE = re.compile(r"([A-Za-z0-9][A-Za-z0-9:.-]*) \((?:[^()]*?, )?Score:? (-?\d+\.\d+)")
_SCORE = re.compile(r"\bScore:? (-?\d+\.\d+)", re.IGNORECASE)
_GC_VALUE = re.compile(r"(?<!mean )(?<!median )(?<!average )\bGC(?: content)?(?: of| is| at|:|=)?\s*(\d+(?:\.\d+)?)\s?(%?)", re.IGNORECASE)
_LEVEL_SPAN = re.compile(r"\blevels?\s*\(?\s*$", re.IGNORECASE)
_BASES = re.compile(f"[ACGT]{{{MIN_SEQUENCE_CITATION},}}")
# a statement of the card's total: a step that opens with it ("5 hits; top X") or "lists 5 (motif) hits"; counts
# within a family or a cluster ("with 2 hits", "3 hits cluster in 100-144") are other facts
_SINGLE_SITE = re.compile(r"\bsingle site\b", re.IGNORECASE)  # how every style states a one-hit card
_HITS = re.compile(r"(?m)(?:^|\blists )(\d+) (?:motif )?hits?\b(?=[;.,]|$| from| across| in \d)")
_GC_PLACE = re.compile(r"\bGC \d?\.\d+:? (below|close to|above) the mean(?:, (favours|works against|hardly shifts) activity)?")
_NET = re.compile(r"\bnet ([+-]\d+)(?:, (strongly positive|positive|mixed|negative)\b)?")
_NET_TIER = re.compile(r"\bnet (strongly positive|positive|mixed|negative)\b")
_NO_MOTIFS = re.compile(r"\b(?:no|zero|without|none of the)\b(?:\s+[\w-]+){0,4}?\s+(?:motifs?|sites?|hits?)\b"
                        r"|\bmotifs?\s*:\s*none\b|\bno\s+identified\b|\bup none; down none; neutral none\b", re.IGNORECASE)


@dataclass(frozen=True)
class Validation:
    valid: bool
    reason: str | None
    level: int | None
    n_steps: int
    cited: tuple[tuple[str, ...], ...]
    unlisted_motifs: tuple[str, ...] = ()
    invented_numbers: tuple[str, ...] = ()
    wrong_facts: tuple[str, ...] = ()


def _compounds(text: str) -> list[list[str]]:
    """The parts and separators of each distinct compound word (letters/digits joined by "::" or "-"),
    e.g. "FOSL2::JUN" -> ["FOSL2", "::", "JUN"]; distinct, because texts repeat most of their words."""
    return [_JOINER.split(word) for word in dict.fromkeys(_COMPOUND.findall(text))]


def _sub_spans(text: str) -> Iterator[str]:
    """Every run of consecutive parts of every compound: each candidate a motif name could be."""
    for pieces in _compounds(text):
        for first in range(0, len(pieces), 2):
            for last in range(first, len(pieces), 2):
                yield "".join(pieces[first:last + 1])


@lru_cache(maxsize=4)
def _check_vocabulary(vocabulary: frozenset[str]) -> None:
    unusual = sorted(name for name in vocabulary if not _COMPOUND.fullmatch(name))
    if unusual:
        raise ValueError(f"motif names must be letters/digits joined by '::' or '-': {shortlist(unusual)}")


def mentioned_motifs(text: str, vocabulary: frozenset[str]) -> list[str]:
    """Vocabulary names in `text` (each once), case-sensitive, leftmost-longest, skipping family terms."""
    _check_vocabulary(vocabulary)
    found: dict[str, None] = {}
    for pieces in _compounds(text):
        first = 0
        while first < len(pieces):
            last = next((last for last in range(len(pieces) - 1, first - 1, -2)
                         if "".join(pieces[first:last + 1]) in vocabulary), None)
            if last is None:
                first += 2
                continue
            name = "".join(pieces[first:last + 1])
            family_term = last + 2 < len(pieces) and pieces[last + 1] == "-" and (
                pieces[last + 2].lower() in FAMILY_SUFFIXES)
            if len(name) >= 2 and not family_term:
                found[name] = None
            first = last + 2
    return list(found)


@cache
def _phrase_pattern(phrase: str, fold: bool) -> re.Pattern[str]:
    """One name or family as a whole token; cached, since cards share their vocabulary."""
    return re.compile(f"{_TOKEN_START}{re.escape(phrase)}{_TOKEN_END}", re.IGNORECASE if fold else 0)


@cache
def _length_pattern(length: int) -> re.Pattern[str]:
    return re.compile(rf"(?<![\d.]){length}\s*-?\s*(?:bp|nt|bases?|base[- ]pairs?)\b|\blength(?: of)?:?\s*{length}\b",
                      re.IGNORECASE)


def _families(card: Card) -> set[str]:
    """Each hit's family string and its parts; nothing for a hit without a family."""
    return {family for hit in card.motifs for family in (hit.family, *hit.families) if family}


def unlisted_motifs(text: str, card: Card, vocabulary: set[str] | frozenset[str]) -> tuple[str, ...]:
    """Vocabulary names the text mentions that the card does not list (see the module docstring)."""
    masked, lowered = text, text.lower()
    for family in sorted(_families(card), key=len, reverse=True):
        if family.lower() in lowered:
            masked = _phrase_pattern(family, True).sub(lambda match: " " * len(match.group()), masked)
    allowed = frozenset().union(*(name_parts(hit.name) for hit in card.motifs))
    return tuple(dict.fromkeys(name for name in mentioned_motifs(masked, frozenset(vocabulary))
                               if name.upper() not in allowed))


def invented_numbers(text: str, card: Card) -> tuple[str, ...]:
    """Scores, coordinates and GC values the text attributes to the card that the card does not have."""
    scores = {f"{hit.score:.2f}" for hit in card.motifs}
    by_name: dict[str, set[str]] = {}
    for hit in card.motifs:
        by_name.setdefault(hit.name, set()).add(f"{hit.score:.2f}")
    coordinates = {coordinate for hit in card.motifs for coordinate in (hit.start, hit.end)}
    invented = [f"score {value} for {name}" for name, value in _NAMED_SCORE.findall(text)
                if name in by_name and value not in by_name[name]]
    invented += [f"score {value}" for value in _SCORE.findall(text) if value not in scores]
    invented += [f"span {match.group(1)}-{match.group(2)}" for match in _SPAN.finditer(text)
                 if not _LEVEL_SPAN.search(text[:match.start()])
                 and not {int(match.group(1)), int(match.group(2))} <= coordinates]
    invented += [f"position {value}" for value in _POSITION.findall(text) if int(value) not in coordinates]
    for value, percent in _GC_VALUE.findall(text):
        stated = float(value) / 100 if percent else float(value)
        if stated <= 1 and abs(stated - card.gc_content) > (0.0051 if not percent else 0.0051 + 0.005):
            invented.append(f"GC {value}{percent}")
    return tuple(dict.fromkeys(invented))


def wrong_facts(text: str, card: Card, card_text: str | None) -> tuple[str, ...]:
    """The rationale's statements about its card that the card contradicts (module docstring, Facts)."""
    wrong = [f"{n} hits, card lists {len(card.motifs)}" for n in _HITS.findall(text) if int(n) != len(card.motifs)]
    if len(card.motifs) != 1 and _SINGLE_SITE.search(text):
        wrong.append(f"a single site, card lists {len(card.motifs)}")
    stated = stated_evidence(card_text) if card_text else None
    if stated is None:
        return tuple(wrong)
    if stated.gc_place is not None:
        wrong += [f"GC {place} the mean, {effect or '...'}" for place, effect in _GC_PLACE.findall(text)
                  if place != stated.gc_place or effect not in ("", stated.gc_effect)]
    wrong += [f"net {net} {tier}".rstrip() for net, tier in _NET.findall(text)
              if int(net) != stated.net or tier not in ("", stated.tier)]
    wrong += [f"net {tier}" for tier in _NET_TIER.findall(text) if tier != stated.tier]
    return tuple(dict.fromkeys(wrong + _misplaced_motifs(text, card, stated)))


def _misplaced_motifs(text: str, card: Card, stated: StatedEvidence) -> list[str]:
    """Card motifs a clause puts on a side their tag does not: "For <cell>:" names activators (up), "Against:"
    counterweights (down), and "Against: none; X neutral" / "X favour it" the rest (none / up)."""
    names = frozenset(hit.name for hit in card.motifs)
    clauses = ((re.escape(f"For {stated.cell_type}:") + r"([^.;]*)", stated.up, "for"),
               (r"Against:(?! none;)([^.;]*)", stated.down, "against"),
               (r"Against: none;([^.;]*) neutral", stated.untagged, "neutral"),
               (r"Against: none;([^.;]*) favour it", stated.up, "favouring"))
    wrong = []
    for pattern, allowed, side in clauses:
        for match in re.finditer(pattern, text):
            wrong += [f"{name} {side}" for name in mentioned_motifs(match.group(1), names) if name not in allowed]
    return wrong + _wrong_sides(text, stated) + _wrong_layout(text, stated)


def _wrong_layout(text: str, stated: StatedEvidence) -> list[str]:
    """A "Layout: ..." step must state the line's layout (when the line prints one)."""
    if stated.layout is None:
        return []
    return [f"layout {written}" for written in re.findall(r"(?m)\bLayout: ([^\n]*?)\.?$", text)
            if written != stated.layout]


def _wrong_sides(text: str, stated: StatedEvidence) -> list[str]:
    """An "In <cell>: up A; down B; neutral C." step must list each side exactly as the evidence line does."""
    expected = dict(zip((*DIRECTIONS, NEUTRAL), (stated.up, stated.down, stated.untagged), strict=True))
    pattern = re.escape(f"In {stated.cell_type}: ") + r"up ([^;\n]*); down ([^;\n]*); neutral ([^;\n]*?)\.?$"
    wrong = []
    for match in re.finditer(pattern, text, re.MULTILINE):
        for (side, names), listed in zip(expected.items(), match.groups(), strict=True):
            written = side_names(listed)
            wrong += [f"{name} {side}" for name in written if name not in names]
            wrong += [f"{name} not {side}" for name in names if name not in written]
    return wrong


class CardElements:
    """What a step may cite from one card, compiled once per card."""

    def __init__(self, card: Card) -> None:
        self.card = card
        names = {part for hit in card.motifs for part in (hit.name, *hit.name.split("::")) if len(part) >= 2}
        self.exact_names = {name for name in names if name.isalpha()}
        self.folded_names = {name.upper() for name in names if not name.isalpha()}
        self.families = {family: _phrase_pattern(family, False) for family in sorted(_families(card))}
        self.coordinates = {coordinate for hit in card.motifs for coordinate in (hit.start, hit.end)}
        self.scores = {f"{hit.score:.2f}" for hit in card.motifs}
        self.length = _length_pattern(card.length)
        self.tags = [tag.lower() for tag in card.grammar_tags]

    def cited(self, step: str) -> tuple[str, ...]:
        """Labels of the card elements the step cites (empty when it cites none)."""
        found = [f"motif:{span}" for span in _sub_spans(step)
                 if span in self.exact_names or span.upper() in self.folded_names]
        found += [f"family:{family}" for family, pattern in self.families.items()
                  if family in step and pattern.search(step)]
        found += [f"position:{a}-{b}" for a, b in _SPAN.findall(step)
                  if int(a) in self.coordinates and int(b) in self.coordinates]
        found += [f"position:{value}" for value in _POSITION.findall(step) if int(value) in self.coordinates]
        decimals = _DECIMAL.findall(step)
        found += [f"score:{value}" for value in decimals if value in self.scores]
        if any(abs(float(value) - self.card.gc_content) <= 0.0051 for value in decimals) or any(
                abs(float(value) - 100 * self.card.gc_content) <= 0.51 for value in _PERCENT.findall(step)):
            found.append("gc")
        if self.length.search(step):
            found.append("length")
        found += [f"sequence:{bases}" for bases in _BASES.findall(step) if bases in self.card.sequence]
        lowered = step.lower()
        found += [f"grammar:{tag}" for tag in self.tags if tag in lowered]
        if not self.card.motifs and _NO_MOTIFS.search(step):
            found.append("no_motifs")
        return tuple(dict.fromkeys(found))


def validate_rationale(text: str, card: Card, *, label: int | None, min_steps: int, max_steps: int, n_levels: int,
                       motif_vocabulary: set[str] | frozenset[str] | None, card_text: str | None = None) -> Validation:
    """The first failing check (module docstring), or valid; `cited` lists each step's card elements; `card_text`
    is the card as the writer read it, whose evidence line (when it has one) states facts too."""
    parsed = parse(text)
    elements = CardElements(card)
    cited = tuple(elements.cited(step) for step in parsed.steps)
    unlisted = unlisted_motifs(text, card, motif_vocabulary) if motif_vocabulary else ()
    invented = invented_numbers(text, card)
    facts = wrong_facts("\n".join(parsed.steps), card, card_text)
    checks = (
        ("missing_think", not parsed.has_think),
        ("too_few_steps", len(parsed.steps) < min_steps),
        ("too_many_steps", len(parsed.steps) > max_steps),
        ("missing_level", parsed.level is None),
        ("level_out_of_range", parsed.level is not None and not 0 <= parsed.level < n_levels),
        ("motif_not_in_card", bool(unlisted)),
        ("number_not_on_card", bool(invented)),
        ("fact_not_on_card", bool(facts)),
        ("step_without_evidence", not all(cited)),
        ("level_mismatch", label is not None and parsed.level != label),
    )
    reason = next((name for name, failed in checks if failed), None)
    return Validation(valid=reason is None, reason=reason, level=parsed.level, n_steps=len(parsed.steps),
                      cited=cited, unlisted_motifs=unlisted, invented_numbers=invented,
                      wrong_facts=facts)


def rejection_counts(reasons: pd.Series) -> dict[str, int]:
    """Rejections by reason, every reason listed (0 where none), from a column of reasons (None = valid)."""
    counts = reasons.dropna().value_counts()
    return {reason: int(counts.get(reason, 0)) for reason in REASONS}


def motif_vocabulary(motif_settings: Mapping[str, Any]) -> frozenset[str]:
    """Every motif name of the configured JASPAR release (`config["motifs"]`): what `motif_not_in_card` checks."""
    from r3lm.motifs.jaspar import load_motifs

    return frozenset(motif.name for motif in load_motifs(motif_settings["jaspar_release"],
                                                         motif_settings["collection"], motif_settings["tax_group"]))
