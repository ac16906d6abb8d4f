"""Evidence tags (`rcc.evidence_tags`): each card motif's direction in the card's cell type, read from the
training split, the cell type's GC trend, and the evidence line they give each card (rcc/evidence_tags.py).

Why: the paper's teacher and its 4B student bring from pretraining what a motif does in a cell type. A
135M student fine-tuned on a few hundred rationales cannot: in the demo its lists of activators matched the
teacher's on 2 of 450 test cards, and the level it stated agreed with the measurement at chance (0.24).
With the tags, what the compact teacher's rationale rests on is on the card, so the student learns to read
and weigh evidence rather than to recall it.

A direction is the grounded teacher's reading of a site (`reading.read_site`: curated role plus the TRAIN
split's motif or family enrichment): `up` when it favours activity, `down` when it works against it, `none`
otherwise. It depends on the motif's name and families alone, so one table per cell type covers every
matrix of the release; the workflow writes it as JSON beside the evidence, and a bundle carries it so that
new sequences get the cards the models were trained on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from r3lm.errors import InputError, require_file
from r3lm.logs import shortlist
from r3lm.rcc.card import Card, CardSettings
from r3lm.rcc.evidence_tags import DIRECTIONS, CellEvidence, EvidenceTags
from r3lm.rcc.hits import MotifHit
from r3lm.reasoning.crossfit import WHOLE_SPLIT, card_folds
from r3lm.reasoning.evidence import Evidence
from r3lm.reasoning.reading import pull_order, read_site
from r3lm.reasoning.roles import RoleTable, load_roles

log = logging.getLogger(__name__)

WORDS = {"pro": DIRECTIONS[0], "con": DIRECTIONS[1]}
FOLDS_KEY = "cross_fit_folds"  # the tags JSON's list of each fold's tags


def evidence_tags(motifs: pd.DataFrame, evidence: Evidence, roles: RoleTable) -> EvidenceTags:
    """The direction of every matrix of the motif table (`name`, `family`, `class`) in each cell type the
    evidence covers (every cell type of the train cards has its GC trend there), in the teacher's pull order,
    which the cards' evidence line keeps, and the cell type's GC trend."""
    tags: dict[str, CellEvidence] = {}
    for cell in sorted(evidence.gc):
        readings = {row.name: read_site(MotifHit(row.matrix_id, row.name, row.family, row[3], 1, 1, "+", 0.0, 1.0),
                                        cell, evidence, roles)
                    for row in motifs[["matrix_id", "name", "family", "class"]].itertuples(index=False)}
        directions = {reading.hit.name: WORDS[reading.kind]
                      for reading in sorted(readings.values(), key=pull_order) if reading.kind in WORDS}
        tags[cell] = CellEvidence(directions, evidence.gc[cell])
        log.info("evidence tags for %s: %d of %d motifs up, %d down", cell,
                 sum(word == "up" for word in directions.values()), len(readings),
                 sum(word == "down" for word in directions.values()))
    return EvidenceTags(tags)


def read_evidence_tags(path: str | Path) -> EvidenceTags:
    """The tags of the whole train split: what validation, test and new sequences are described by."""
    return _checked(EvidenceTags.from_json(_payload(path)), path)


def read_fold_tags(path: str | Path) -> list[EvidenceTags]:
    """Cross-fitted (crossfit.py): fold k's train cards are tagged from the evidence without fold k; empty
    when the tags are not cross-fitted."""
    return [_checked(EvidenceTags.from_json(fold), path) for fold in _payload(path).get(FOLDS_KEY, [])]


def _payload(path: str | Path) -> dict[str, Any]:
    return json.loads(require_file(path, "evidence tags").read_text())


def _checked(tags: EvidenceTags, path: str | Path) -> EvidenceTags:
    for cell, evidence in tags.cells.items():
        wrong = sorted(set(evidence.directions.values()) - set(DIRECTIONS))
        if wrong:
            raise InputError(f"evidence tags of {cell}: unknown direction(s) {shortlist(wrong)}", path=path)
    return tags


def tag_cards(cards: pd.DataFrame, settings: CardSettings) -> pd.DataFrame:
    """The same card table with each `card_text` rendered under `settings` (its evidence tags)."""
    return cards.assign(card_text=[settings.text(Card.from_json(card)) for card in cards["card_json"]])


def evidence_tags_payload(config: Mapping[str, Any], motifs: pd.DataFrame, every: dict[int, Evidence]
                          ) -> tuple[EvidenceTags, dict[str, Any]]:
    """The tags of every cell type of the evidence, and their JSON with each fold's tags beside them (FOLDS_KEY)
    when the evidence is cross-fitted (`every`: read_evidence_folds)."""
    roles = load_roles(config["reasoning"]["roles_table"])
    every = dict(every)
    tags = evidence_tags(motifs, every.pop(WHOLE_SPLIT), roles)
    folds = [evidence_tags(motifs, evidence, roles).to_json() for evidence in every.values()]
    return tags, tags.to_json() | ({FOLDS_KEY: folds} if folds else {})


def tag_cards_by_fold(cards: pd.DataFrame, rcc_settings: Mapping[str, Any], tags: EvidenceTags,
                      fold_tags: list[EvidenceTags]) -> pd.DataFrame:
    """One split's cards with the evidence tags in their text: a train card's own fold's tags when they are
    cross-fitted (`fold_tags` not empty), the whole split's otherwise."""
    tags_of = {WHOLE_SPLIT: tags, **dict(enumerate(fold_tags))}
    folds = card_folds(cards, len(fold_tags)) if fold_tags else np.full(len(cards), WHOLE_SPLIT)
    texts = cards["card_text"].copy()
    for fold in np.unique(folds):
        rows = folds == fold
        settings = CardSettings.from_config(rcc_settings, evidence_tags=tags_of[fold])
        texts[rows] = tag_cards(cards[rows], settings)["card_text"].to_numpy()
    return cards.assign(card_text=texts)
