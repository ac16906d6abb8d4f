"""Sequences for the user-facing commands (scan, rcc): FASTA (optionally gzipped) or a table."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from r3lm.data.checks import check_unique_ids, require_columns
from r3lm.data.tables import read_table
from r3lm.errors import InputError

FASTA_SUFFIXES = {".fa", ".fasta", ".fna", ".fas"}
_ACGTN = r"[ACGTN]*"


def _is_fasta(path: Path) -> bool:
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in FASTA_SUFFIXES


def read_fasta(path: Path) -> pd.DataFrame:
    """Records as (id, sequence); the id is the header's first word, as most tools take it."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    ids: list[str] = []
    chunks: list[list[str]] = []
    try:
        with opener(path, "rt") as handle:
            for line_number, line in enumerate(handle, start=1):
                line = line.strip()
                if line.startswith(">"):
                    header = line[1:].split()
                    if not header:
                        raise InputError("FASTA header without an id", path=path, row=len(ids) + 1, column="id")
                    ids.append(header[0])
                    chunks.append([])
                elif line:
                    if not ids:
                        raise InputError(f"line {line_number} has sequence before any '>' header; not FASTA",
                                         path=path)
                    chunks[-1].append(line)
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise InputError(f"cannot read FASTA: {error}", path=path) from error
    return pd.DataFrame({"id": ids, "sequence": ["".join(chunk) for chunk in chunks]})


def read_sequences(path: str | Path, *, id_column: str = "id", sequence_column: str = "sequence") -> pd.DataFrame:
    """Checked (id, sequence) rows: upper case, only A C G T N, unique ids, at least one record."""
    file = Path(path)
    if not file.is_file():
        raise InputError("file not found", path=file)
    if _is_fasta(file):
        frame, column = read_fasta(file), "sequence"
    else:
        table = read_table(file)
        require_columns(table.columns, [id_column, sequence_column], path=file)
        frame = pd.DataFrame({"id": table[id_column].astype(str).str.strip(), "sequence": table[sequence_column]})
        column = sequence_column
    if frame.empty:
        raise InputError("no sequences in the file", path=file)
    frame["sequence"] = frame["sequence"].astype(str).str.strip().str.upper()
    rows = pd.Series(np.arange(1, len(frame) + 1), index=frame.index)
    foreign = ~frame["sequence"].str.fullmatch(_ACGTN)
    if foreign.any():
        position = int(np.flatnonzero(foreign.to_numpy())[0])
        value = frame["sequence"].iloc[position]
        letter = next(base for base in value if base not in "ACGTN")
        raise InputError(f"sequence {frame['id'].iloc[position]!r} has {letter!r}; only A, C, G, T and N are allowed",
                         path=file, row=position + 1, column=column)
    empty = frame["sequence"].str.len() == 0
    if empty.any():
        position = int(np.flatnonzero(empty.to_numpy())[0])
        raise InputError(f"sequence {frame['id'].iloc[position]!r} is empty", path=file, row=position + 1, column=column)
    check_unique_ids(frame["id"], path=file, column="id" if _is_fasta(file) else id_column, policy="error",
                     drops=Counter(), row_numbers=rows)
    return frame.reset_index(drop=True)
