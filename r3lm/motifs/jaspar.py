"""JASPAR matrices from the database that pyjaspar ships (offline), as plain count arrays."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

DEFAULT_RELEASE = "JASPAR2026"
NUCLEOTIDES = "ACGT"


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
    """Latest version of every matrix in the collection, sorted by matrix id for determinism."""
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
