"""Which card motifs does a rationale cite, and in which direction does it say each acts?

Citations. `cited_motifs` finds the card's motif names in a rationale (whole names, case-sensitive,
leftmost-longest: "FOSL2::JUND" is one mention and counts neither JUN nor JUND; a name followed by
"-related", "-like", "-type" or "-family" and the card's own family strings are not motif mentions) and
reads the direction each mention claims from cue words in its scope:

* +1: activator, activating, activity-associated, favours, for activity, points to, drives, recruits,
  raises, enhances, boosts, promotes, increases, stimulates, supports activity, unopposed, enriched;
* -1: repressor/represses, counterweight, against (it/activity, or directly before the name), offset by,
  silences, lowers, reduces, decreases, dampens, suppresses, inhibits, limits, opposes, depleted;
* the sides step of a compact rationale ("In HepG2: up A, B; down C; neutral D"): up +1, down -1, neutral 0;
* 0: neutral, uninformative, architectural, chance, insulator, any cue inside a negation ("no", "not",
  "nothing", "without", "neither"... up to the next comma, colon, semicolon or bracket), and any cue in
  a clause hedged as "not significant".

Scope. A rationale is read line by line (the teacher writes one step per line); a line splits into
sentences and a sentence into clauses (";" and contrastive words such as "but", "whereas", "while").
Names listed together ("A, B (+2 more) and C") share one claim. A group takes the first cue after it in
its clause ("A and B favour activity and C works against it"), else the nearest eligible cue before it
(a header such as "Counterweights: A", an attributive cue such as "the activity-associated A", or a cue
attached to the name such as "offset by A"), else the first cue of a following clause that starts with
an anaphor ("A (...); its family is enriched ..."), else the latest header of the line ("Counterweights:",
or a sentence without names such as "Several card motifs point toward K562 activity."), else 0. A motif
mentioned several times gets the majority of its non-zero claims (0 on a tie or when all are 0). These
rules follow the grounded teacher's phrasings (r3lm/reasoning/*_style.py), which the Stage-I model
imitates, and read plain prose the same way.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from r3lm.errors import InputError, require_table_columns
from r3lm.rcc.card import Card
from r3lm.rcc.hits import FAMILY_SEPARATOR, FAMILY_SUFFIXES

# (pattern, sign, attach): "post" cues claim for the names before them, "pre" cues for the name right
# after them, "both" either way. Each starts a word; order matters where patterns overlap (most specific
# first).
_CUES: tuple[tuple[str, int, str], ...] = (
    (r"activity[- ]associated", 1, "both"),
    (r"\b(?:in|de)activat\w*", -1, "post"),
    (r"\b(?:trans|co-?)?activat\w*", 1, "both"),
    (r"\bfavou?r(?:s|ed|ing|able)?\b", 1, "post"),
    (r"\bfor (?:\w+ )?(?:activity|expression|transcription)\b", 1, "post"),
    (r"\bpoint(?:s|ed|ing)? (?:to|toward|towards)\b", 1, "post"),
    (r"\b(?:drive[sn]?|driving|drove)\b", 1, "post"),
    (r"\brecruit(?:s|ed|ing)?\b", 1, "post"),
    (r"\brais(?:e|es|ed|ing)\b", 1, "post"),
    (r"\benhanc(?:e|es|ed|ing)\b", 1, "post"),
    (r"\bboost(?:s|ed|ing)?\b", 1, "post"),
    (r"\bpromot(?:e|es|ed|ing)\b", 1, "post"),
    (r"\bincreas(?:e|es|ed|ing)\b", 1, "post"),
    (r"\bstimulat\w*", 1, "post"),
    (r"\bup-?regulat\w*", 1, "post"),
    (r"\bsupport(?:s|ed|ing)? (?:\w+ )?(?:activity|expression|transcription)\b", 1, "post"),
    (r"\bcontribut\w* to (?:\w+ )?(?:activity|expression|transcription)\b", 1, "post"),
    (r"\bunopposed\b", 1, "post"),
    (r"\benriched\b", 1, "both"),
    (r"\bpositively\b|\bpositive (?:effect|regulator|role|influence|contribution|driver)s?\b", 1, "both"),
    (r"\bwork(?:s|ed|ing)? against\b|\bact(?:s|ed|ing)? against\b", -1, "post"),
    (r"\bagainst (?:it|them|activity|expression|transcription|(?:\w+ )?activity)\b", -1, "post"),
    (r"\boffset by\b", -1, "pre"),
    (r"\bagainst\b", -1, "pre"),
    (r"(?:co-?)?repress\w*", -1, "both"),
    (r"\bcounterweights?\b", -1, "both"),
    (r"\bsilenc\w*", -1, "both"),
    (r"\blower(?:s|ed|ing)\b", -1, "post"),
    (r"\breduc(?:e|es|ed|ing)\b", -1, "post"),
    (r"\bdecreas(?:e|es|ed|ing)\b", -1, "post"),
    (r"\bdampen\w*", -1, "post"),
    (r"\bsuppress\w*", -1, "post"),
    (r"\binhibit\w*", -1, "both"),
    (r"\blimit(?:s|ed|ing)?\b", -1, "post"),
    (r"\boppos(?:e|es|ed|ing)\b", -1, "post"),
    (r"\bdown-?regulat\w*", -1, "post"),
    (r"\bdeplet\w*", -1, "both"),
    (r"\bnegatively\b|\bnegative (?:effect|regulator|role|influence|contribution)s?\b", -1, "both"),
    # the compact rationale's sides step, in the evidence line's words: "In HepG2: up A, B; down C; neutral D"
    (r"(?<=: )up(?= )|(?<=; )up(?= )", 1, "pre"),
    (r"(?<=; )down(?= )", -1, "pre"),
    (r"\bneutral\b", 0, "both"),
    (r"\buninformative\b", 0, "both"),
    (r"\barchitectural\b", 0, "both"),
    (r"\bchance\b", 0, "post"),
    (r"\binsulat\w*", 0, "both"),
)
_CUE = re.compile("(?<![a-z])(?:" + "|".join(f"({pattern})" for pattern, _, _ in _CUES) + ")", re.IGNORECASE)
_NEGATION = re.compile(r"(?:\b(?:no|not|nothing|neither|nor|without|none|never|cannot)\b|n't\b)[^,;:()]*",
                       re.IGNORECASE)
_HEDGE = re.compile(r"\bnot significant\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?]+\s+")
_ABBREVIATIONS = {"e.g", "i.e", "vs", "cf", "approx", "al", "etc", "fig"}
_CONTRAST = re.compile(r";|\b(?:but|whereas|while|although|though|however|yet)\b", re.IGNORECASE)
_LIST_GAP = re.compile(r"(?:\s|,|/|&|\band\b|\bor\b|\be\.g\.|\((?:[^()]|\([^()]*\))*\))*", re.IGNORECASE)
_ATTACHED = re.compile(r"\s*(?:(?:by|the|a|an|of|to|from|with|its|their|site|sites|motif|motifs)\s+)*",
                       re.IGNORECASE)
_ANAPHOR = re.compile(r"\s*(?:its|it|this|these|they|their|which|that|whose)\b", re.IGNORECASE)
_COLON = re.compile(r"(?<!:):(?!:)")
_TAGS = re.compile(r"</?think>")


@dataclass(frozen=True)
class _Cue:
    start: int
    end: int
    sign: int
    attach: str


@dataclass
class _Group:
    """Names listed together, (position, name) each, sharing one claim."""

    names: list[tuple[int, str]]
    start: int
    end: int
    sign: int | None = None


def card_hits(card: Card | Mapping[str, Any] | str) -> list[tuple[str, str, int, int]]:
    """(name, family, start, end) of each card hit, from a Card, its JSON or the parsed JSON."""
    if isinstance(card, Card):
        return [(hit.name, hit.family, hit.start, hit.end) for hit in card.motifs]
    payload = json.loads(card) if isinstance(card, str) else card
    return [(str(hit["name"]), str(hit.get("family", "")), int(hit["start"]), int(hit["end"]))
            for hit in payload["motifs"]]


def _name_pattern(names: Sequence[str]) -> re.Pattern[str] | None:
    names = sorted({name for name in names if len(name) >= 2}, key=lambda name: (-len(name), name))
    if not names:
        return None
    suffixes = "|".join(FAMILY_SUFFIXES)
    return re.compile(rf"(?<![A-Za-z0-9])(?<!::)(?:{'|'.join(map(re.escape, names))})"
                      rf"(?![A-Za-z0-9])(?!::)(?!-\d)(?!-(?:{suffixes})\b)")


def _blank(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """`text` with the spans replaced by spaces (positions are kept)."""
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def _mentions(text: str, hits: Sequence[tuple[str, str, int, int]]) -> tuple[list[tuple[int, int, str]], str]:
    """Card-name mentions (start, end, name) and the text with families, tags and mentions blanked for cues."""
    names = {name for name, _, _, _ in hits}
    families = {part for _, family, _, _ in hits for part in (family, *family.split(FAMILY_SEPARATOR))
                if part and part not in names}
    masked = _blank(text, [match.span() for match in _TAGS.finditer(text)])
    for family in sorted(families, key=len, reverse=True):
        pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(family)}(?![A-Za-z0-9])", re.IGNORECASE)
        masked = _blank(masked, [match.span() for match in pattern.finditer(masked)])
    pattern = _name_pattern(sorted(names))
    found = [(match.start(), match.end(), match.group()) for match in pattern.finditer(masked)] if pattern else []
    return found, _blank(masked, [(start, end) for start, end, _ in found])


def _cues(masked: str) -> list[_Cue]:
    negated = np.zeros(len(masked) + 1, dtype=bool)
    for match in _NEGATION.finditer(masked):
        negated[match.start() + 1:match.end()] = True
    cues = []
    for match in _CUE.finditer(masked):
        _, sign, attach = _CUES[match.lastindex - 1]
        cues.append(_Cue(match.start(), match.end(), 0 if negated[match.start()] else sign, attach))
    return cues


def _pieces(start: int, end: int, text: str, splitter: re.Pattern[str]) -> list[tuple[int, int]]:
    """Split [start, end) of `text` at `splitter` matches (a sentence end stays with its sentence; a contrastive
    word opens the next clause)."""
    pieces, current = [], start
    for match in splitter.finditer(text, start, end):
        if splitter is _SENTENCE_END:
            word = re.search(r"(\S+)$", text[current:match.start()])
            if word and word.group(1).lower().rstrip(".") in _ABBREVIATIONS:
                continue
            cut = match.end()
        else:
            cut = match.start() if match.group() != ";" else match.end()
        if cut > current:
            pieces.append((current, cut))
            current = cut
    if current < end:
        pieces.append((current, end))
    return pieces


def _claims(text: str, hits: Sequence[tuple[str, str, int, int]]) -> list[tuple[str, int]]:
    """(name, claimed sign) for every mention, in text order (see the module docstring for the rules)."""
    mentions, masked = _mentions(text, hits)
    if not mentions:
        return []
    cues = _cues(masked)
    claims: list[tuple[int, str, int]] = []
    offset = 0
    for line in text.split("\n"):
        line_start, line_end = offset, offset + len(line)
        offset = line_end + 1
        headers: list[_Cue] = []
        for sentence in _pieces(line_start, line_end, text, _SENTENCE_END):
            clauses = _pieces(*sentence, text, _CONTRAST)
            in_sentence = [mention for mention in mentions if sentence[0] <= mention[0] < sentence[1]]
            if not in_sentence:
                headers += _clause_cues(cues, masked, *sentence)
                continue
            groups_by_clause = [_groups(text, [m for m in mentions if start <= m[0] < end]) for start, end in clauses]
            for index, ((start, end), groups) in enumerate(zip(clauses, groups_by_clause, strict=True)):
                clause_cues = _clause_cues(cues, masked, start, end)
                _assign(text, groups, clause_cues, start, end)
                follower = clauses[index + 1] if index + 1 < len(clauses) else None
                for group in groups:
                    if group.sign is None and follower and not groups_by_clause[index + 1] and _ANAPHOR.match(
                            text, follower[0]):
                        following = _clause_cues(cues, masked, *follower)
                        group.sign = following[0].sign if following else None
                    if group.sign is None:
                        earlier = [cue for cue in headers if cue.start < group.start]
                        group.sign = earlier[-1].sign if earlier else 0
                    claims += [(position, name, group.sign) for position, name in group.names]
                headers += [cue for cue in clause_cues if _is_header(text, cue, groups, end)]
    return [(name, sign) for _, name, sign in sorted(claims)]


def _clause_cues(cues: Sequence[_Cue], masked: str, start: int, end: int) -> list[_Cue]:
    """The cues of one clause; a clause hedged as "not significant" claims no direction."""
    inside = [cue for cue in cues if start <= cue.start < end]
    if _HEDGE.search(masked, start, end):
        return [_Cue(cue.start, cue.end, 0, cue.attach) for cue in inside]
    return inside


def _groups(text: str, mentions: Sequence[tuple[int, int, str]]) -> list[_Group]:
    """Mentions joined only by list separators ("A, B (+2 more) and C") form one group."""
    groups: list[_Group] = []
    for start, end, name in mentions:
        if groups and _LIST_GAP.fullmatch(text, groups[-1].end, start):
            groups[-1].names.append((start, name))
            groups[-1].end = end
        else:
            groups.append(_Group([(start, name)], start, end))
    return groups


def _assign(text: str, groups: Sequence[_Group], cues: Sequence[_Cue], start: int, end: int) -> None:
    """A group's own claim in its clause: the first cue after it, else an eligible cue before it."""
    floor = start
    for index, group in enumerate(groups):
        following = groups[index + 1] if index + 1 < len(groups) else None
        limit = following.start if following else end
        after = [cue for cue in cues if group.end <= cue.start < limit and cue.attach != "pre" and not (
            following and cue.attach == "both" and _ATTACHED.fullmatch(text, cue.end, following.start))]
        before = [cue for cue in cues if floor <= cue.start and cue.end <= group.start and (
            cue.attach == "both" or _COLON.search(text, cue.end, group.start)
            or (cue.attach == "pre" and _ATTACHED.fullmatch(text, cue.end, group.start)))]
        if after:
            group.sign, floor = after[0].sign, after[0].end
        else:
            group.sign = before[-1].sign if before else None
            floor = group.end


def _is_header(text: str, cue: _Cue, groups: Sequence[_Group], end: int) -> bool:
    """A cue that announces what follows: followed by a colon, with no name before it in its clause."""
    colon = _COLON.search(text, cue.end, end)
    return bool(colon) and not any(group.start < colon.start() for group in groups)


def cited_motifs(rationale: str, card: Card | Mapping[str, Any] | str) -> dict[str, int]:
    """The card motifs the rationale names, each with its claimed direction (+1, -1 or 0), in order of first
    mention; `card` is a Card, its JSON text or the parsed JSON."""
    votes: dict[str, Counter[int]] = {}
    for name, sign in _claims(rationale, card_hits(card)):
        votes.setdefault(name, Counter())[sign] += 1
    result = {}
    for name, counted in votes.items():
        positive, negative = counted[1], counted[-1]
        result[name] = 1 if positive > negative else -1 if negative > positive else 0
    return result


def attach_cards(rationales: pd.DataFrame, cards: pd.DataFrame, columns: Sequence[str] = ("card_json",)
                 ) -> pd.DataFrame:
    """The rationale rows with their card's `columns` (card_json, and card_text where wanted), joined on
    (id, cell_type); every row needs a card."""
    columns = list(dict.fromkeys(["card_json", *columns]))
    require_table_columns(cards, ["id", "cell_type", *columns], "the card table")
    keys = ["id", "cell_type"]
    left = rationales.drop(columns=columns, errors="ignore").astype({"id": str, "cell_type": str})
    right = cards[[*keys, *columns]].astype({"id": str, "cell_type": str}).drop_duplicates(keys)
    joined = left.merge(right, on=keys, how="left", validate="many_to_one")
    missing = joined["card_json"].isna()
    if missing.any():
        row = joined[missing].iloc[0]
        raise InputError(f"{int(missing.sum())} rationale(s) have no card, e.g. ({row['id']}, {row['cell_type']})",
                         column="card_json")
    return joined
