"""The curated TF-cell-type roles table (roles.yaml beside this module, or a user's own file).

Matching a card motif: its name is split into dimer halves ("FOSL2::JUN" -> FOSL2, JUN) and compared
case-insensitively with an entry's `tfs` (so "Hnf4a" matches HNF4A); failing that, its JASPAR
families are compared with the entry's `families`. An entry for the card's cell type wins over an
`any` entry; among equals the first entry in the file wins, so the table's order is its priority.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from r3lm.errors import InputError, require_file
from r3lm.rcc.hits import MotifHit, name_parts

PACKAGED_ROLES = Path(__file__).with_name("roles.yaml")
ROLE_KINDS = ("activator", "repressor", "architectural")
ANY_CELL_TYPE = "any"
@dataclass(frozen=True)
class Role:
    tfs: frozenset[str]
    families: frozenset[str]
    exclude: frozenset[str]
    cell_type: str
    role: str
    rationale: str
    sources: tuple[str, ...]

    def matches(self, hit: MotifHit) -> bool:
        if hit.name.upper() in self.exclude:
            return False
        return bool(name_parts(hit.name) & self.tfs) or bool(hit.families & self.families)


@dataclass(frozen=True)
class RoleTable:
    roles: tuple[Role, ...]
    sources: dict[str, str]
    _matches: dict[tuple[str, str, str], Role | None] = field(default_factory=dict, compare=False, repr=False)

    def role_for(self, hit: MotifHit, cell_type: str) -> Role | None:
        """The cell type's own entry if one matches, else a matching `any` entry, else None (memoised: cards
        share their motifs)."""
        key = (hit.name, hit.family, cell_type)
        if key not in self._matches:
            self._matches[key] = next((role for wanted in (cell_type, ANY_CELL_TYPE) for role in self.roles
                                       if role.cell_type == wanted and role.matches(hit)), None)
        return self._matches[key]


def _field(entry: dict[str, Any], name: str, path: Path, row: int) -> Any:
    if name not in entry:
        raise InputError(f"role entry lacks '{name}'", path=path, row=row, column=name)
    return entry[name]


def _names(value: Any, name: str, path: Path, row: int) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise InputError(f"'{name}' must be a list of non-empty names", path=path, row=row, column=name)
    return frozenset(value)


def _parse_role(entry: Any, sources: dict[str, str], path: Path, row: int) -> Role:
    if not isinstance(entry, dict):
        raise InputError("a role entry must be a mapping", path=path, row=row)
    unknown = sorted(set(entry) - {"tfs", "families", "exclude", "cell_type", "role", "rationale", "source"})
    if unknown:
        raise InputError(f"unknown key(s) {', '.join(unknown)}", path=path, row=row, column=unknown[0])
    tfs = frozenset(name.upper() for name in _names(entry.get("tfs"), "tfs", path, row))
    families = _names(entry.get("families"), "families", path, row)
    if not tfs and not families:
        raise InputError("a role entry needs 'tfs' or 'families'", path=path, row=row, column="tfs")
    role = _field(entry, "role", path, row)
    if role not in ROLE_KINDS:
        raise InputError(f"role {role!r} is not one of {', '.join(ROLE_KINDS)}", path=path, row=row, column="role")
    cell_type, rationale = _field(entry, "cell_type", path, row), _field(entry, "rationale", path, row)
    for name, value in (("cell_type", cell_type), ("rationale", rationale)):
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"'{name}' must be non-empty text", path=path, row=row, column=name)
    cited = _field(entry, "source", path, row)
    cited = [cited] if isinstance(cited, str) else cited
    if not isinstance(cited, list) or not cited or any(key not in sources for key in cited):
        raise InputError(f"'source' must list keys of the file's 'sources' mapping, got {cited!r}", path=path,
                         row=row, column="source")
    return Role(tfs=tfs, families=families,
                exclude=frozenset(name.upper() for name in _names(entry.get("exclude"), "exclude", path, row)),
                cell_type=cell_type, role=role, rationale=rationale.strip(), sources=tuple(cited))


def load_roles(path: str | Path | None = None) -> RoleTable:
    """The table at `path` (None = the packaged one); `row` in errors is the 1-based entry of `roles`."""
    file = require_file(PACKAGED_ROLES if path is None else path, "roles table")
    try:
        payload = yaml.safe_load(file.read_text())
    except yaml.YAMLError as error:
        raise InputError(f"not valid YAML: {error}".replace("\n", " "), path=file) from error
    if not isinstance(payload, dict) or not isinstance(payload.get("roles"), list):
        raise InputError("expected a mapping with a 'roles' list (and a 'sources' mapping)", path=file,
                         column="roles")
    sources = payload.get("sources") or {}
    if not isinstance(sources, dict) or not all(isinstance(text, str) for text in sources.values()):
        raise InputError("'sources' must map keys to reference text", path=file, column="sources")
    entries: Sequence[Any] = payload["roles"]
    return RoleTable(roles=tuple(_parse_role(entry, sources, file, row) for row, entry in enumerate(entries, 1)),
                     sources=dict(sources))
