"""Does a rationale cite the motifs that matter, in the right direction?

Citations. `cited_motifs` finds the card's motif names in a rationale (whole names, case-sensitive,
leftmost-longest: "FOSL2::JUND" is one mention and counts neither JUN nor JUND; a name followed by
"-related", "-like", "-type" or "-family" and the card's own family strings are not motif mentions) and
reads the direction each mention claims from cue words in its scope:

* +1: activator, activating, activity-associated, favours, for activity, points to, drives, recruits,
  raises, enhances, boosts, promotes, increases, stimulates, supports activity, unopposed, enriched;
* -1: repressor/represses, counterweight, against (it/activity, or directly before the name), offset by,
  silences, lowers, reduces, decreases, dampens, suppresses, inhibits, limits, opposes, depleted;
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

Ground truth (demo). A cited motif is correct when one of its card hits overlaps a planted site with a
non-zero contribution in that cell type ("causal"); recall counts the causal sites some card hit overlaps
(the only ones a rationale could cite) that a cited motif's hit overlaps. Precision and recall are micro
averages per cell type, for every mention ("cited") and for mentions with a claimed direction
("claimed"); `card_precision` is the precision of citing every card motif, the chance level to beat.
Direction agreement compares a claimed sign with the sign of the overlapped causal contribution.

Disruption. `dinucleotide_shuffle` is the Altschul-Erickson shuffle (a random Eulerian walk through
the dinucleotide graph, its last-exit edges drawn as a random arborescence with Wilson's algorithm):
it keeps every dinucleotide count and the first and last base. `disrupt_span` shuffles one card span
(1-based, inclusive, as on cards); since the span keeps its end bases, the whole sequence keeps its
dinucleotide counts too; `disrupt_motif` does so for every hit of one card motif.
`disruption_agreement` scores how often the prediction moves the way the rationale claimed when a cited
motif is disrupted.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from r3lm.errors import InputError
from r3lm.evaluate.metrics import (
    block_rng,
    percentile_interval,
    resample_counts,
    resolve_settings,
)
from r3lm.io import write_table
from r3lm.rcc.card import FAMILY_SEPARATOR, Card

log = logging.getLogger(__name__)

ALL = "all"
FAMILY_SUFFIXES = ("related", "like", "type", "family")
SHUFFLE_ATTEMPTS = 20

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


def _motifs(card: Card | Mapping[str, Any] | str) -> list[tuple[str, str, int, int]]:
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
    for name, sign in _claims(rationale, _motifs(card)):
        votes.setdefault(name, Counter())[sign] += 1
    result = {}
    for name, counted in votes.items():
        positive, negative = counted[1], counted[-1]
        result[name] = 1 if positive > negative else -1 if negative > positive else 0
    return result


# ------------------------------------------------------------------------------------------ ground truth
_COUNT_COLUMNS = ["cited", "cited_correct", "claimed", "claimed_correct", "causal_on_card", "recalled",
                  "claimed_recalled", "card_motifs", "card_motifs_correct", "direction_n", "direction_agree"]
CITATION_COLUMNS = ["cell_type", "rationales", "cited", "precision", "precision_lo", "precision_hi", "recall",
                    "recall_lo", "recall_hi", "f1", "claimed", "claimed_precision", "claimed_precision_lo",
                    "claimed_precision_hi", "claimed_recall", "claimed_recall_lo", "claimed_recall_hi", "claimed_f1",
                    "card_precision", "causal_on_card", "direction_n", "direction_agreement",
                    "direction_agreement_lo", "direction_agreement_hi"]


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise InputError(f"{what} lacks column(s) {', '.join(missing)}", column=missing[0])


def _overlaps(hits: Sequence[tuple[int, int]], start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Which sites (start/end arrays) any of the hits overlaps (all 1-based inclusive)."""
    covered = np.zeros(len(start), dtype=bool)
    for hit_start, hit_end in hits:
        covered |= (start <= hit_end) & (hit_start <= end)
    return covered


def citation_counts(rationale: str, card_json: str, sites: pd.DataFrame) -> dict[str, int]:
    """One rationale's counts against the planted sites of its sequence and cell type (columns start, end,
    contribution)."""
    hits = _motifs(card_json)
    claims = cited_motifs(rationale, card_json)
    causal = sites[sites["contribution"].to_numpy() != 0]
    start, end = causal["start"].to_numpy(), causal["end"].to_numpy()
    contribution = causal["contribution"].to_numpy(dtype=float)
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for name, _, hit_start, hit_end in hits:
        spans[name].append((hit_start, hit_end))
    touched = {name: _overlaps(name_spans, start, end) for name, name_spans in spans.items()}
    on_card = np.logical_or.reduce([*touched.values(), np.zeros(len(start), dtype=bool)])
    claimed = {name: sign for name, sign in claims.items() if sign != 0}

    def recalled(names: Mapping[str, int]) -> int:
        return int(np.logical_or.reduce([touched[name] for name in names] + [np.zeros(len(start), bool)]).sum())

    agree = [np.sign(contribution[touched[name]].sum()) == sign for name, sign in claimed.items()
             if touched[name].any()]
    return {"cited": len(claims), "cited_correct": sum(bool(touched[name].any()) for name in claims),
            "claimed": len(claimed), "claimed_correct": sum(bool(touched[name].any()) for name in claimed),
            "causal_on_card": int(on_card.sum()), "recalled": recalled(claims), "claimed_recalled": recalled(claimed),
            "card_motifs": len(spans), "card_motifs_correct": sum(bool(mask.any()) for mask in touched.values()),
            "direction_n": len(agree), "direction_agree": int(sum(agree))}


def _micro(counts: pd.DataFrame, weights: Sequence[np.ndarray], confidence: float, numerator: str,
           denominator: str) -> tuple[float, float, float]:
    """A micro ratio (sum of numerators over sum of denominators) and its bootstrap interval over rows."""
    top, bottom = counts[numerator].to_numpy(dtype=float), counts[denominator].to_numpy(dtype=float)
    point = top.sum() / bottom.sum() if bottom.sum() else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        resampled = np.concatenate([(batch @ top) / (batch @ bottom) for batch in weights]) if weights else np.array([])
    return (point, *percentile_interval(resampled, confidence))


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else float("nan")


def citation_faithfulness(rationales: pd.DataFrame, ground_truth: pd.DataFrame,
                          settings: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Per cell type and overall ("all"): citation precision/recall against the planted causal sites, with
    bootstrap intervals over rationales (CITATION_COLUMNS). `rationales` has id, cell_type, rationale and the
    card's card_json (see `attach_cards`); `ground_truth` is the simulator's site table."""
    settings = resolve_settings(settings)
    _require(rationales, ["id", "cell_type", "rationale", "card_json"], "the rationale table")
    _require(ground_truth, ["seq_id", "cell_type", "start", "end", "contribution"], "the ground-truth table")
    keys = set(zip(rationales["id"].astype(str), rationales["cell_type"].astype(str), strict=True))
    relevant = ground_truth[[key in keys for key in zip(ground_truth["seq_id"].astype(str),
                                                        ground_truth["cell_type"].astype(str), strict=True)]]
    sites = {key: relevant.iloc[index] for key, index in relevant.groupby(["seq_id", "cell_type"]).indices.items()}
    empty = ground_truth.iloc[:0]
    counts = pd.DataFrame([citation_counts("" if pd.isna(row.rationale) else str(row.rationale), row.card_json,
                                           sites.get((str(row.id), str(row.cell_type)), empty))
                           for row in rationales.itertuples()], columns=_COUNT_COLUMNS)
    counts["cell_type"] = rationales["cell_type"].astype(str).to_numpy()
    rows = []
    for cell_type in [*sorted(counts["cell_type"].unique()), ALL]:
        part = counts if cell_type == ALL else counts[counts["cell_type"] == cell_type]
        rng = block_rng(int(settings["seed"]), "citation", cell_type)
        weights = list(resample_counts(len(part), int(settings["n_boot"]), rng)) if len(part) else []
        ratio = partial(_micro, part, weights, float(settings["confidence"]))
        precision, recall = ratio("cited_correct", "cited"), ratio("recalled", "causal_on_card")
        claimed_precision = ratio("claimed_correct", "claimed")
        claimed_recall = ratio("claimed_recalled", "causal_on_card")
        direction = ratio("direction_agree", "direction_n")
        card = part["card_motifs"].sum()
        rows.append({"cell_type": cell_type, "rationales": len(part), "cited": int(part["cited"].sum()),
                     **dict(zip(("precision", "precision_lo", "precision_hi"), precision, strict=True)),
                     **dict(zip(("recall", "recall_lo", "recall_hi"), recall, strict=True)),
                     "f1": _f1(precision[0], recall[0]), "claimed": int(part["claimed"].sum()),
                     **dict(zip(("claimed_precision", "claimed_precision_lo", "claimed_precision_hi"),
                                claimed_precision, strict=True)),
                     **dict(zip(("claimed_recall", "claimed_recall_lo", "claimed_recall_hi"), claimed_recall,
                                strict=True)),
                     "claimed_f1": _f1(claimed_precision[0], claimed_recall[0]),
                     "card_precision": part["card_motifs_correct"].sum() / card if card else float("nan"),
                     "causal_on_card": int(part["causal_on_card"].sum()), "direction_n": int(part["direction_n"].sum()),
                     **dict(zip(("direction_agreement", "direction_agreement_lo", "direction_agreement_hi"),
                                direction, strict=True))})
    return pd.DataFrame(rows, columns=CITATION_COLUMNS)


def attach_cards(rationales: pd.DataFrame, cards: pd.DataFrame, columns: Sequence[str] = ("card_json",)
                 ) -> pd.DataFrame:
    """The rationale rows with their card's `columns` (card_json, and card_text where wanted), joined on
    (id, cell_type); every row needs a card."""
    columns = list(dict.fromkeys(["card_json", *columns]))
    _require(cards, ["id", "cell_type", *columns], "the card table")
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



def write_citation_faithfulness(rationales_path: str | Path, cards_path: str | Path, ground_truth_path: str | Path,
                                out_path: str | Path, settings: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The workflow step: a rationale table scored against the simulator's planted sites, as TSV."""
    rationales = pd.read_parquet(rationales_path, columns=["id", "cell_type", "rationale"])
    cards = pd.read_parquet(cards_path, columns=["id", "cell_type", "card_json"])
    table = citation_faithfulness(attach_cards(rationales, cards), pd.read_parquet(ground_truth_path), settings)
    write_table(table, out_path)
    return table

# -------------------------------------------------------------------------------------------- disruption
def dinucleotide_shuffle(sequence: str, rng: np.random.Generator) -> str:
    """A uniformly random sequence with exactly the same dinucleotide counts (and first and last letter)."""
    if len(sequence) < 3:
        return sequence
    successors: dict[str, list[str]] = defaultdict(list)
    for left, right in pairwise(sequence):
        successors[left].append(right)
    root = sequence[-1]
    last_exit: dict[str, int] = {}
    in_tree = {root}
    for vertex in sorted(successors):
        current = vertex
        while current not in in_tree:  # loop-erased random walk toward the root (Wilson's algorithm)
            last_exit[current] = int(rng.integers(len(successors[current])))
            current = successors[current][last_exit[current]]
        current = vertex
        while current not in in_tree:
            in_tree.add(current)
            current = successors[current][last_exit[current]]
    orders: dict[str, list[str]] = {}
    for vertex, edges in successors.items():
        if vertex in last_exit:
            kept = edges[last_exit[vertex]]
            rest = edges[:last_exit[vertex]] + edges[last_exit[vertex] + 1:]
            orders[vertex] = [rest[index] for index in rng.permutation(len(rest))] + [kept]
        else:
            orders[vertex] = [edges[index] for index in rng.permutation(len(edges))]
    position = dict.fromkeys(orders, 0)
    letters = [sequence[0]]
    for _ in range(len(sequence) - 1):
        current = letters[-1]
        letters.append(orders[current][position[current]])
        position[current] += 1
    return "".join(letters)


def disrupt_span(sequence: str, start: int, end: int, rng: np.random.Generator) -> str:
    """`sequence` with positions start..end (1-based, inclusive, as on cards) dinucleotide-shuffled; redrawn
    up to SHUFFLE_ATTEMPTS times when the shuffle returns the span unchanged, then permuted base by base
    (a span may admit a single dinucleotide-preserving order). A homopolymer span cannot change."""
    if not 1 <= start <= end <= len(sequence):
        raise InputError(f"span {start}-{end} is not within the {len(sequence)}-bp sequence")
    span = sequence[start - 1:end]
    for _ in range(SHUFFLE_ATTEMPTS):
        shuffled = dinucleotide_shuffle(span, rng)
        if shuffled != span:
            break
    else:
        for _ in range(SHUFFLE_ATTEMPTS):
            shuffled = "".join(np.asarray(list(span))[rng.permutation(len(span))])
            if shuffled != span:
                break
    return sequence[:start - 1] + shuffled + sequence[end:]


def disrupt_motif(card: Card | Mapping[str, Any] | str, name: str, rng: np.random.Generator) -> str:
    """The card's sequence with every hit of motif `name` disrupted (overlapping hits shuffled as one span)."""
    sequence = card.sequence if isinstance(card, Card) else (json.loads(card) if isinstance(card, str)
                                                              else card)["sequence"]
    spans = sorted((start, end) for hit_name, _, start, end in _motifs(card) if hit_name == name)
    if not spans:
        raise InputError(f"motif {name!r} is not on the card")
    merged = [list(spans[0])]
    for start, end in spans[1:]:
        if start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in merged:
        sequence = disrupt_span(sequence, start, end, rng)
    return sequence


DISRUPTION_COLUMNS = ["cell_type", "pairs", "sequences", "changed", "agreement", "agreement_lo", "agreement_hi",
                      "activating", "agreement_activating", "repressive", "agreement_repressive", "skipped"]


def disruption_agreement(table: pd.DataFrame, settings: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Per cell type and overall: how often disrupting a cited motif moves the prediction the claimed way.

    `table` has cell_type, id, motif, claimed (+1/-1) and delta (new prediction minus original). A change
    smaller than `disruption_tol` counts as none (a disagreement). Rows claiming 0 or with a non-finite delta
    are skipped (counted). The interval resamples sequences, since the motifs of one sequence share its
    prediction."""
    settings = resolve_settings(settings)
    _require(table, ["cell_type", "id", "motif", "claimed", "delta"], "the disruption table")
    claimed = pd.to_numeric(table["claimed"], errors="coerce").to_numpy(dtype=float)
    delta = pd.to_numeric(table["delta"], errors="coerce").to_numpy(dtype=float)
    usable = np.isin(claimed, (-1.0, 1.0)) & np.isfinite(delta)
    observed = np.where(np.abs(delta) < float(settings["disruption_tol"]), 0.0, np.sign(delta))
    frame = pd.DataFrame({"cell_type": table["cell_type"].astype(str).to_numpy(), "id": table["id"].astype(str),
                          "claimed": claimed, "agree": (observed == claimed).astype(float),
                          "changed": (observed != 0).astype(float), "usable": usable})
    rows = []
    for cell_type in [*sorted(frame["cell_type"].unique()), ALL]:
        part = frame if cell_type == ALL else frame[frame["cell_type"] == cell_type]
        used = part[part["usable"]]
        per_sequence = used.groupby(["cell_type", "id"])[["agree"]].agg(["sum", "size"]).to_numpy(dtype=float)
        agreement, low, high = float("nan"), float("nan"), float("nan")
        if len(used):
            agreement = float(used["agree"].mean())
            rng = block_rng(int(settings["seed"]), "disruption", cell_type)
            with np.errstate(invalid="ignore", divide="ignore"):
                resampled = np.concatenate([(weights @ per_sequence[:, 0]) / (weights @ per_sequence[:, 1])
                                            for weights in resample_counts(len(per_sequence),
                                                                           int(settings["n_boot"]), rng)])
            low, high = percentile_interval(resampled, float(settings["confidence"]))
        activating, repressive = used[used["claimed"] > 0], used[used["claimed"] < 0]
        rows.append({"cell_type": cell_type, "pairs": len(used), "sequences": len(per_sequence),
                     "changed": int(used["changed"].sum()), "agreement": agreement, "agreement_lo": low,
                     "agreement_hi": high, "activating": len(activating),
                     "agreement_activating": activating["agree"].mean() if len(activating) else float("nan"),
                     "repressive": len(repressive),
                     "agreement_repressive": repressive["agree"].mean() if len(repressive) else float("nan"),
                     "skipped": int((~part["usable"]).sum())})
    skipped = int((~usable).sum())
    if skipped:
        log.info("disruption: %d of %d rows skipped (claimed 0 or non-finite delta)", skipped, len(frame))
    return pd.DataFrame(rows, columns=DISRUPTION_COLUMNS)
