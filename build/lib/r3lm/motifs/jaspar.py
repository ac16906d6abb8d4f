"""JASPAR matrices from the database that pyjaspar ships (offline), as plain count arrays."""

from __future__ import annotations

import importlib.metadata
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from r3lm.io import CACHE_ROOT, write_json

log = logging.getLogger(__name__)

DEFAULT_RELEASE = "JASPAR2026"
NUCLEOTIDES = "ACGT"
JASPAR_CACHE = CACHE_ROOT / "jaspar"


@dataclass(frozen=True)
class Motif:
    """One JASPAR matrix; `counts` is 4 x width in A, C, G, T order; `family` and `tf_class` are "" where JASPAR
    gives none (the official jaspar_metadata.py's empty annotation: its card then reads `Family: `)."""

    matrix_id: str
    name: str
    family: str
    tf_class: str
    counts: np.ndarray

    @property
    def width(self) -> int:
        return int(self.counts.shape[1])

    @property
    def frequencies(self) -> np.ndarray:
        """4 x width letter frequencies: each column's counts over its own sum (columns may differ)."""
        return self.counts / self.counts.sum(axis=0, keepdims=True)


@lru_cache(maxsize=4)
def load_motifs(release: str = DEFAULT_RELEASE, collection: str = "CORE",
                tax_group: str = "vertebrates") -> tuple[Motif, ...]:
    """Latest version of every matrix in the collection, sorted by matrix id for determinism.

    Read from pyjaspar's database once per pyjaspar version (2.4 s: it builds a Biopython motif per matrix)
    and from a JSON copy under JASPAR_CACHE after that (0.02 s): every scan, card and `explain` starts here."""
    path = JASPAR_CACHE / f"{release}_{collection}_{tax_group}_pyjaspar-{importlib.metadata.version('pyjaspar')}.json"
    motifs = _read_cached(path)
    if motifs is None:
        motifs = _fetch_motifs(release, collection, tax_group)
        try:
            write_json([{**vars(motif), "counts": motif.counts.tolist()} for motif in motifs], path)
        except OSError as error:  # a read-only home: every call reads the database instead
            log.debug("JASPAR cache not written (%s): %s", path, error)
    return motifs


def _read_cached(path: Path) -> tuple[Motif, ...] | None:
    """The cached matrices, or None when there is no readable copy (a damaged one is rebuilt)."""
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text())
        return tuple(Motif(**{**row, "counts": np.array(row["counts"], dtype=np.float64)}) for row in rows)
    except (ValueError, TypeError, KeyError) as error:
        log.warning("the JASPAR cache %s is damaged (%s); reading the database again", path, error)
        return None


def _fetch_motifs(release: str, collection: str, tax_group: str) -> tuple[Motif, ...]:
    from pyjaspar import jaspardb

    try:
        database = jaspardb(release=release)
    except Exception as error:  # pyjaspar raises a bare Exception for unknown releases
        raise ValueError(f"unknown JASPAR release {release!r}: {error}") from error
    records = database.fetch_motifs(collection=collection, tax_group=[tax_group])
    motifs = [
        Motif(
            matrix_id=record.matrix_id,
            name=record.name,
            family="; ".join(record.tf_family),  # "" when JASPAR names none, as the official metadata
            tf_class="; ".join(record.tf_class),
            counts=np.array([record.counts[base] for base in NUCLEOTIDES], dtype=np.float64),
        )
        for record in records
    ]
    return tuple(sorted(motifs, key=lambda motif: motif.matrix_id))


def motifs_by_name(release: str = DEFAULT_RELEASE) -> dict[str, Motif]:
    return {motif.name: motif for motif in load_motifs(release)}
