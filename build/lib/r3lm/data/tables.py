"""Bring your own MPRA: a tsv/csv/parquet table, or BED regions cut from a genome FASTA.

The result is the long format every source ends in: one row per (sequence, cell type) with
`id, sequence, cell_type, activity, chrom, fold, from_test_file`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from r3lm.data.checks import (
    apply_policy,
    check_sequences,
    check_unique_ids,
    normalize_chromosome,
    parse_numbers,
    require_columns,
)
from r3lm.dna import reverse_complement
from r3lm.errors import InputError, require_file
from r3lm.io import CACHE_ROOT

log = logging.getLogger(__name__)

BED_COLUMNS = ["chrom", "start", "end", "name", "score", "strand"]
BED_META_LINES = ("track", "browser")
GENOME_INDEX_CACHE = CACHE_ROOT / "faidx"


def read_table(path: str | Path) -> pd.DataFrame:
    """Every column as text (ids like '007' stay intact), by file extension; empty tables are errors."""
    file = require_file(path)
    suffixes = [suffix.lower() for suffix in file.suffixes]
    kind = suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    try:
        if kind == ".parquet":
            frame = pd.read_parquet(file)
        elif kind in {".tsv", ".txt", ".csv"}:
            frame = pd.read_csv(file, sep="," if kind == ".csv" else "\t", dtype=str, keep_default_na=False)
        elif kind == ".bed":
            frame = _read_bed(file)
        else:
            raise InputError(f"unknown table type {kind or '(no extension)'!r}; use .tsv, .txt, .csv, "
                             ".parquet or .bed (optionally .gz)", path=file)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"cannot read table: {str(error).splitlines()[0]}", path=file) from error
    if frame.empty:
        raise InputError("table is empty (no data rows)", path=file)
    return frame.reset_index(drop=True)


def _read_bed(file: Path) -> pd.DataFrame:
    """BED is headerless unless its first data line is a '#' line: then that line names the columns. UCSC
    `track` and `browser` lines are skipped (and counted), as bedtools does."""
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rt") as handle:
        lines = handle.readlines()
    kept = [line for line in lines if not line.startswith(BED_META_LINES)]
    if len(kept) < len(lines):
        log.info("%s: skipped %d UCSC track/browser line(s)", file, len(lines) - len(kept))
    if kept and kept[0].startswith("#"):
        names = kept[0][1:].rstrip("\n").split("\t")
        return pd.read_csv(io.StringIO("".join(kept[1:])), sep="\t", dtype=str, keep_default_na=False, header=None,
                           names=names)
    frame = pd.read_csv(io.StringIO("".join(kept)), sep="\t", dtype=str, keep_default_na=False, header=None,
                        comment="#")
    frame.columns = BED_COLUMNS[: frame.shape[1]] + [f"column{i}" for i in range(7, frame.shape[1] + 1)]
    return frame


def cut_regions(frame: pd.DataFrame, genome: str | Path, *, path: str | Path) -> pd.Series:
    """Sequences for BED rows (0-based, end-exclusive); '-' strand rows are reverse-complemented."""
    require_columns(frame.columns, ["chrom", "start", "end"], path=path)
    rows = pd.Series(np.arange(1, len(frame) + 1), index=frame.index)
    starts = parse_numbers(frame["start"], path=path, column="start", row_numbers=rows)
    ends = parse_numbers(frame["end"], path=path, column="end", row_numbers=rows)
    strands = frame["strand"] if "strand" in frame.columns else pd.Series("+", index=frame.index)
    sequences = []
    with open_genome(genome) as fasta:
        for position, (chrom, start, end, strand) in enumerate(zip(frame["chrom"], starts, ends, strands)):
            row = position + 1
            if chrom not in fasta:
                raise InputError(f"chromosome {chrom!r} is not in the genome {genome}", path=path, row=row, column="chrom")
            if not (0 <= start < end <= len(fasta[chrom])) or start != int(start) or end != int(end):
                raise InputError(f"region {chrom}:{start:g}-{end:g} is not within {chrom} (length "
                                 f"{len(fasta[chrom])}) or is empty", path=path, row=row, column="end")
            sequence = fasta[chrom][int(start):int(end)]
            sequences.append(reverse_complement(sequence) if strand == "-" else sequence)
    return pd.Series(sequences, index=frame.index, dtype=object)


def open_genome(genome: str | Path) -> Any:  # pyfaidx.Fasta, imported on use
    """Upper-case raw strings by contig; an unreadable FASTA is an input error."""
    from pyfaidx import Fasta, FastaIndexingError

    try:
        return Fasta(str(genome), as_raw=True, sequence_always_upper=True, indexname=_genome_index(Path(genome)))
    except (FastaIndexingError, OSError, ValueError) as error:
        raise InputError(f"cannot read genome FASTA: {error}", path=genome) from error


def _genome_index(genome: Path) -> str:
    """The genome's own `.fai` when it has one or its folder is writable; else one built in r3lm's cache,
    named by the genome's path, size and time, so a read-only genome needs no action from the user."""
    beside = Path(f"{genome}.fai")
    if beside.exists() or not genome.is_file() or os.access(genome.parent, os.W_OK):
        return str(beside)
    stat = genome.stat()
    key = hashlib.sha256(f"{genome.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    GENOME_INDEX_CACHE.mkdir(parents=True, exist_ok=True)
    cached = GENOME_INDEX_CACHE / f"{genome.name}.{key}.fai"
    if not cached.exists():
        log.info("%s has no .fai and its folder is read-only: indexing it into %s", genome, cached)
    return str(cached)


def trim_adaptors(sequences: pd.Series, trim: dict[str, Any], *, path: str | Path, column: str, policy: str,
                  drops: Counter, row_numbers: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Cut fixed adaptors (given as lengths or as exact sequences that must be present)."""
    left, right = trim.get("left", 0), trim.get("right", 0)
    keep = pd.Series(True, index=sequences.index)
    for side, adaptor in (("left", left), ("right", right)):
        if isinstance(adaptor, str):
            adaptor = adaptor.upper()
            present = sequences.str.startswith(adaptor) if side == "left" else sequences.str.endswith(adaptor)
            missing = keep & ~present
            if missing.any():
                position = int(np.flatnonzero(missing.to_numpy())[0])
                keep &= apply_policy(missing, policy=policy, reason=f"adaptor_{side}_missing", drops=drops,
                                     error=InputError(f"sequence does not {'start' if side == 'left' else 'end'} "
                                                      f"with the {side} adaptor {adaptor}", path=path,
                                                      row=int(row_numbers.iloc[position]), column=column))
    n_left = len(left) if isinstance(left, str) else int(left)
    n_right = len(right) if isinstance(right, str) else int(right)
    if n_left == 0 and n_right == 0:
        return sequences, keep
    too_short = keep & (sequences.str.len() <= n_left + n_right)
    if too_short.any():
        position = int(np.flatnonzero(too_short.to_numpy())[0])
        keep &= apply_policy(too_short, policy=policy, reason="shorter_than_adaptors", drops=drops, error=InputError(
            f"sequence of {len(sequences.iloc[position])} bp is not longer than the adaptors "
            f"({n_left} + {n_right} bp)", path=path, row=int(row_numbers.iloc[position]), column=column))
    trimmed = sequences.str.slice(n_left, None if n_right == 0 else -n_right)
    return trimmed, keep


def to_long_rows(frame: pd.DataFrame, *, path: str | Path, table: dict[str, Any], dataset: dict[str, Any],
                 drops: Counter, id_prefix: str, fold_column: str | None) -> pd.DataFrame:
    """Checked long rows from one wide table: ids, trimmed sequences, one activity row per cell type."""
    activity_columns: dict[str, str] = table["activity_columns"]
    if not activity_columns:
        raise InputError("dataset.table.activity_columns is empty: map at least one cell type to a column",
                         path="config")
    sequence_column = table["sequence_column"]
    needed = [*activity_columns.values()]
    needed += [name for name in (table["id_column"], table["chromosome_column"], fold_column) if name]
    if not table.get("genome"):
        needed.append(sequence_column)
    require_columns(frame.columns, needed, path=path)

    rows = pd.Series(np.arange(1, len(frame) + 1), index=frame.index)
    if table.get("genome"):
        sequences = cut_regions(frame, table["genome"], path=path)
        sequence_column = "chrom/start/end"
    else:
        sequences = frame[sequence_column].astype(str).str.strip().str.upper()
    policy = dataset["on_invalid_sequence"]
    sequences, keep = trim_adaptors(sequences, table["trim"], path=path, column=sequence_column, policy=policy,
                                    drops=drops, row_numbers=rows)
    keep &= check_sequences(sequences[keep], path=path, column=sequence_column, policy=policy, drops=drops,
                            length=table["sequence_length"], row_numbers=rows[keep]).reindex(keep.index, fill_value=False)
    if table["id_column"]:
        ids = frame[table["id_column"]].astype(str).str.strip()
        keep &= check_unique_ids(ids[keep], path=path, column=table["id_column"], policy=dataset["on_duplicate_id"],
                                 drops=drops, row_numbers=rows[keep]).reindex(keep.index, fill_value=False)
    else:
        ids = id_prefix + rows.astype(str)
    wide = pd.DataFrame({"id": ids, "sequence": sequences, "source_row": rows})
    wide["chrom"] = frame[table["chromosome_column"]].map(normalize_chromosome) if table["chromosome_column"] else None
    wide["fold"] = frame[fold_column].astype(str).str.strip() if fold_column else None
    long_parts = []
    for cell_type, column in activity_columns.items():
        part = wide.copy()
        part["cell_type"] = cell_type
        part["activity"] = parse_numbers(frame[column], path=path, column=column, row_numbers=rows)
        part = part[keep]
        missing = part["activity"].isna()
        if missing.any():
            drops[f"missing_activity:{cell_type}"] += int(missing.sum())
        long_parts.append(part[~missing])
    long = pd.concat(long_parts, ignore_index=True)
    if long.empty:
        raise InputError(f"no usable rows: every one of the {len(frame)} rows was dropped "
                         f"({', '.join(f'{reason}: {count}' for reason, count in drops.items() if count)})", path=path)
    return long


def load_table(dataset: dict[str, Any]) -> tuple[pd.DataFrame, Counter, dict[str, Any]]:
    """Long rows from `dataset.table` (plus its optional separate test file), drops, and input facts."""
    table = dataset["table"]
    if not table["path"]:
        raise InputError("dataset.table.path is not set", path="config")
    drops: Counter = Counter()
    fold_column = table["split"]["fold_column"] if table["split"]["method"] == "fold" else None
    main_frame = read_table(table["path"])
    main = to_long_rows(main_frame, path=table["path"], table=table, dataset=dataset, drops=drops,
                        id_prefix="row", fold_column=fold_column)
    main["from_test_file"] = False
    inputs = {"path": str(table["path"]), "rows": len(main_frame)}
    parts = [main]
    if table["test_path"]:
        test_frame = read_table(table["test_path"])
        test = to_long_rows(test_frame, path=table["test_path"], table=table, dataset=dataset,
                            drops=drops, id_prefix="test_row", fold_column=fold_column)
        test["from_test_file"] = True
        clash = test["id"].isin(set(main["id"]))
        if clash.any():
            position = int(np.flatnonzero(clash.to_numpy())[0])
            raise InputError(f"id {test['id'].iloc[position]!r} is also in {table['path']}", path=table["test_path"],
                             row=int(test["source_row"].iloc[position]), column=table["id_column"] or "id")
        inputs["test_path"] = str(table["test_path"])
        inputs["test_rows"] = len(test_frame)
        parts.append(test)
    frame = pd.concat(parts, ignore_index=True)
    log.info("read %d rows (%d cell-type measurements) from %s", inputs["rows"], len(frame), table["path"])
    return frame, drops, inputs
