"""Row-level checks shared by every source: sequences, ids, numbers, chromosomes.

Each check either raises an InputError naming file, row and column, or (where a config policy
allows it) returns a mask of rows to drop; callers count every drop by reason.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from r3lm.errors import InputError

_ACGT = re.compile(r"[ACGT]+")
_MISSING_TEXT = {"", "na", "nan", "none", "null"}


def first_row(mask: pd.Series | np.ndarray) -> int:
    """Position (0-based) of the first True."""
    return int(np.flatnonzero(np.asarray(mask))[0])


def apply_policy(bad: pd.Series, *, policy: str, reason: str, drops: Counter, error: InputError) -> pd.Series:
    """Either stop on the first bad row or return the rows to keep, counting the drops."""
    if not bad.any():
        return ~bad
    if policy == "error":
        raise error
    drops[reason] += int(bad.sum())
    return ~bad


def check_sequences(sequences: pd.Series, *, path: str | Path, column: str, policy: str,
                    drops: Counter, length: int | None = None,
                    row_numbers: pd.Series | None = None) -> pd.Series:
    """Keep-mask for sequences of A, C, G, T only (N included in 'other') and the expected length.

    Sequences must already be upper case; `row_numbers` maps positions to the file's 1-based rows.
    """
    rows = row_numbers if row_numbers is not None else pd.Series(np.arange(1, len(sequences) + 1), index=sequences.index)
    not_acgt = ~sequences.str.fullmatch(_ACGT).fillna(False).astype(bool)
    if not_acgt.any():
        position = first_row(not_acgt)
        value = sequences.iloc[position]
        detail = "is empty" if not value else f"has {_first_foreign(value)!r} at position {_first_foreign_at(value)}"
        keep = apply_policy(not_acgt, policy=policy, reason="sequence_not_acgt", drops=drops, error=InputError(
            f"sequence {detail}; only A, C, G, T are allowed (set dataset.on_invalid_sequence: drop to drop such rows)",
            path=path, row=int(rows.iloc[position]), column=column))
    else:
        keep = ~not_acgt
    if length is not None:
        wrong = keep & (sequences.str.len() != length)
        if wrong.any():
            position = first_row(wrong)
            keep &= apply_policy(wrong, policy=policy, reason="sequence_wrong_length", drops=drops, error=InputError(
                f"sequence is {len(sequences.iloc[position])} bp, expected {length} bp "
                "(set dataset.on_invalid_sequence: drop to drop such rows)",
                path=path, row=int(rows.iloc[position]), column=column))
    return keep


def _first_foreign_at(sequence: str) -> int:
    return next(i for i, base in enumerate(sequence, start=1) if base not in "ACGT")


def _first_foreign(sequence: str) -> str:
    return sequence[_first_foreign_at(sequence) - 1]


def check_unique_ids(ids: pd.Series, *, path: str | Path, column: str, policy: str, drops: Counter,
                     row_numbers: pd.Series) -> pd.Series:
    """Keep-mask without repeated ids (the first occurrence stays)."""
    repeated = ids.duplicated(keep="first")
    if not repeated.any():
        return ~repeated
    position = first_row(repeated)
    original = first_row(ids == ids.iloc[position])
    return apply_policy(repeated, policy=policy, reason="duplicate_id", drops=drops, error=InputError(
        f"id {ids.iloc[position]!r} repeats row {int(row_numbers.iloc[original])} "
        "(set dataset.on_duplicate_id: drop to keep the first)",
        path=path, row=int(row_numbers.iloc[position]), column=column))


def parse_numbers(values: pd.Series, *, path: str | Path, column: str, row_numbers: pd.Series) -> pd.Series:
    """Floats with missing values as NaN; other non-numeric text and infinities are errors."""
    if pd.api.types.is_numeric_dtype(values):
        numbers, unparsable = values.astype(float), pd.Series(False, index=values.index)
    else:
        text = values.astype("string").str.strip()
        missing = text.isna() | text.str.lower().isin(_MISSING_TEXT)
        numbers = pd.to_numeric(text.where(~missing), errors="coerce").astype(float)
        unparsable = numbers.isna() & ~missing
    for bad, problem in ((unparsable, "not a number"), (pd.Series(np.isinf(numbers), index=values.index), "not a finite number")):
        if bad.any():
            position = first_row(bad)
            raise InputError(f"{problem}: {values.iloc[position]!r}", path=path,
                             row=int(row_numbers.iloc[position]), column=column)
    return numbers


def normalize_chromosome(value: object) -> str | None:
    """'7', 'chr7', 'Chr7' -> 'chr7'; 'x' -> 'chrX'; missing -> None, so config lists and data agree."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    if text.lower() in _MISSING_TEXT:
        return None
    core = text[3:] if text.lower().startswith("chr") else text
    if core.lower() in {"x", "y", "m", "mt"}:
        core = {"mt": "M"}.get(core.lower(), core.upper())
    return f"chr{core}"


def require_columns(columns: pd.Index, needed: list[str], *, path: str | Path) -> None:
    missing = [name for name in needed if name not in columns]
    if missing:
        raise InputError(f"missing column(s) {', '.join(map(repr, missing))}; the table has "
                         f"{', '.join(map(repr, columns))}", path=path, column=missing[0])
