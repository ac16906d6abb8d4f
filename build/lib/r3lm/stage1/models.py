"""Which Stage-I model writes each cell type's rationales: one shared model, or one per cell type.

The official R3LM trains a Stage-I model per cell type on that cell type's rationales, and releases them
as such (DuanYi/R3LM_K562, DuanYi/R3LM_HepG2, DuanYi/R3LM_SKNSH). Every step that runs a Stage-I model
(self-rationales, disruption, bundles) takes the same mapping, written on the command line as one `PATH`
(shared) or as `CELL=PATH` entries; a PATH is a model folder or a hub id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from r3lm.errors import InputError

SHARED = "shared"


@dataclass(frozen=True)
class Stage1Models:
    """Model folder (or hub id) per cell type, or one under SHARED for every cell type."""

    by_group: Mapping[str, str]

    @classmethod
    def parse(cls, entries: Sequence[str], *, option: str = "--model") -> Stage1Models:
        """`[PATH]` (shared) or `[CELL=PATH, ...]`; anything else is an error naming the option."""
        if len(entries) == 1 and "=" not in entries[0]:
            return cls({SHARED: entries[0]})
        pairs = [entry.split("=", 1) for entry in entries]
        bad = next((entry for entry, pair in zip(entries, pairs, strict=True)
                    if len(pair) != 2 or not all(pair)), None)
        if bad is not None:
            raise InputError(f"{option} takes one model PATH or CELL=PATH entries, got {bad!r}")
        groups = [cell for cell, _ in pairs]
        if len(set(groups)) != len(groups) or SHARED in groups:
            raise InputError(f"{option} names a cell type twice or mixes '{SHARED}' with cell types: {groups}")
        return cls(dict(pairs))

    @property
    def shared(self) -> bool:
        return SHARED in self.by_group

    def arguments(self) -> list[str]:
        """The command-line form `parse` reads."""
        if self.shared:
            return [self.by_group[SHARED]]
        return [f"{cell}={path}" for cell, path in sorted(self.by_group.items())]

    def for_cell(self, cell_type: str) -> str:
        if self.shared:
            return self.by_group[SHARED]
        if cell_type not in self.by_group:
            raise InputError(f"no Stage-I model for cell type {cell_type!r} (models for "
                             f"{', '.join(sorted(self.by_group))})")
        return self.by_group[cell_type]

    def cells_by_model(self, cell_types: Iterable[str]) -> dict[str, list[str]]:
        """Each model that serves some of `cell_types`, with them, in a stable order (one load per model)."""
        grouped: dict[str, list[str]] = {}
        for cell in sorted(set(cell_types)):
            grouped.setdefault(self.for_cell(cell), []).append(cell)
        return grouped

    def covers(self, cell_type: str) -> bool:
        return self.shared or cell_type in self.by_group
