"""Sequences for the user-facing commands (scan, rcc, predict): FASTA or a table (optionally gzipped), or BED
regions cut from a genome FASTA."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from r3lm.data.checks import require_columns
from r3lm.data.tables import cut_regions, read_table
from r3lm.errors import InputError, require_file
from r3lm.io import atomic_path

FASTA_SUFFIXES = {".fa", ".fasta", ".fna", ".fas"}
GZIP_MAGIC = b"\x1f\x8b"


def _kind(path: Path) -> str:
    """The file's type suffix, lower case, under an optional .gz."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _gzipped(path: Path) -> bool:
    """By the magic bytes, not the name: a gzip file named .fa is still gzip."""
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def _is_fasta(path: Path) -> bool:
    """A FASTA suffix, or a file of another name whose first non-blank character is '>'."""
    if _kind(path) in FASTA_SUFFIXES:
        return True
    if _kind(path) in {".parquet", ".bed"}:
        return False
    try:
        with (gzip.open if _gzipped(path) else open)(path, "rt") as handle:
            return next((line.lstrip() for line in handle if line.strip()), "").startswith(">")
    except (OSError, UnicodeDecodeError, EOFError):
        return False


def read_fasta(path: Path) -> pd.DataFrame:
    """Records as (id, sequence); the id is the header's first word, as most tools take it."""
    opener = gzip.open if _gzipped(path) else open
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


def write_fasta(ids: Sequence[str], sequences: Sequence[str], path: str | Path,
                descriptions: Sequence[str] | None = None) -> None:
    """Records as FASTA, one line per sequence, written atomically; `read_fasta` reads back the ids."""
    notes = [f" {note}" for note in descriptions] if descriptions is not None else [""] * len(ids)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f">{name}{note}\n{sequence}\n" for name, note, sequence in zip(ids, notes, sequences,
                                                                                            strict=True)))


def read_sequences(path: str | Path, *, id_column: str = "id", sequence_column: str = "sequence",
                   genome: str | Path | None = None, allow_n: bool = True) -> pd.DataFrame:
    """Checked (id, sequence) rows: upper case, only A C G T (and N where `allow_n`), unique ids, at least one.

    A BED file (.bed, optionally .gz) needs `genome`: each region is cut from it, reverse-complemented on
    the '-' strand, and named by its name column or as chrom:start-end(strand).
    """
    file = require_file(path)
    if genome is not None and not _is_bed(file):
        raise InputError("a genome is only read together with BED regions (.bed)", path=file)
    fasta = _is_fasta(file)
    if fasta:
        frame, column = read_fasta(file), "sequence"
    elif _is_bed(file):
        if genome is None:
            raise InputError("BED regions need the genome FASTA they refer to (--genome)", path=file)
        frame, column = read_regions(file, genome), "end"
    else:
        table = read_table(file)
        require_columns(table.columns, [id_column, sequence_column], path=file)
        frame = pd.DataFrame({"id": table[id_column], "sequence": table[sequence_column]})
        column = sequence_column
    if frame.empty:
        raise InputError("no sequences in the file", path=file)
    return check_sequence_frame(frame, allow_n=allow_n, path=file, column=column,
                                id_column="id" if fasta else id_column)


def check_sequence_frame(frame: pd.DataFrame, *, allow_n: bool, path: str | Path | None = None,
                         column: str = "sequence", id_column: str = "id") -> pd.DataFrame:
    """(id, sequence) rows upper-cased and checked: ids present and unique, sequences present and only A C G T
    (and N where `allow_n`). Errors name the 1-based row and the user's column (`id_column`, `column`)."""
    frame = frame.reset_index(drop=True)
    for field, name in (("id", id_column), ("sequence", column)):
        blank = frame[field].isna() | (frame[field].astype(str).str.strip() == "")
        if blank.any():
            position = int(np.flatnonzero(blank.to_numpy())[0])
            what = "the id" if field == "id" else f"sequence {str(frame['id'].iloc[position]).strip()!r}"
            raise InputError(f"{what} is missing or empty", path=path, row=position + 1, column=name)
    frame = frame.assign(id=frame["id"].astype(str).str.strip(),
                         sequence=frame["sequence"].astype(str).str.strip().str.upper())
    alphabet = "ACGTN" if allow_n else "ACGT"
    foreign = ~frame["sequence"].str.fullmatch(f"[{alphabet}]*")
    if foreign.any():
        position = int(np.flatnonzero(foreign.to_numpy())[0])
        value = frame["sequence"].iloc[position]
        at = next(index for index, base in enumerate(value) if base not in alphabet)
        raise InputError(f"sequence {frame['id'].iloc[position]!r} has {value[at]!r} at position {at + 1}; only "
                         f"{', '.join(alphabet[:-1])} and {alphabet[-1]} are allowed", path=path, row=position + 1,
                         column=column)
    repeated = frame["id"].duplicated()
    if repeated.any():
        position = int(np.flatnonzero(repeated.to_numpy())[0])
        first = int(np.flatnonzero((frame["id"] == frame["id"].iloc[position]).to_numpy())[0])
        raise InputError(f"id {frame['id'].iloc[position]!r} repeats row {first + 1}", path=path, row=position + 1,
                         column=id_column)
    return frame


def _is_bed(path: Path) -> bool:
    return _kind(path) == ".bed"


def read_regions(bed: Path, genome: str | Path) -> pd.DataFrame:
    """(id, sequence) for BED regions; a region outside its chromosome or on a missing one is an input error."""
    regions = read_table(bed)
    sequences = cut_regions(regions, genome, path=bed)
    if "name" in regions.columns and (regions["name"].str.strip() != "").all():
        ids = regions["name"].str.strip()
    else:
        strands = regions["strand"] if "strand" in regions.columns else pd.Series("", index=regions.index)
        ids = [f"{chrom}:{start}-{end}{f'({strand})' if strand in '+-' and strand else ''}"
               for chrom, start, end, strand in zip(regions["chrom"], regions["start"], regions["end"], strands)]
    return pd.DataFrame({"id": list(ids), "sequence": sequences.to_numpy()})
