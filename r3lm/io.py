"""Atomic output writers: a killed or failed step never leaves a half-written file behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.chmod(0o666 & ~_umask())  # mkstemp makes it private; outputs are shared like any other file
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path` that replaces it only if the block succeeds (model folders)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    retired = tmp.with_suffix(".old")
    try:
        yield tmp
        tmp.chmod(0o777 & ~_umask())
        if target.exists():
            os.replace(target, retired)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_json(payload: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    """numpy scalars and paths show up in summaries; store them as plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


TABLE_KINDS = (".parquet", ".tsv", ".txt", ".csv", ".jsonl")


def table_kind(path: str | Path) -> tuple[str, str | None]:
    """(extension, compression) of an output table; unknown kinds are input errors, caught before any work."""
    from r3lm.errors import InputError

    suffixes = [suffix.lower() for suffix in Path(path).suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    kind = suffixes[-2] if compressed and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if kind not in TABLE_KINDS or (compressed and kind == ".parquet"):
        raise InputError(f"unknown output type {''.join(suffixes[-2:]) or '(no extension)'!r}; use "
                         ".parquet, .tsv, .csv or .jsonl (text kinds optionally .gz)", path=path)
    return kind, "gzip" if compressed else None


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """A table by its extension (see `table_kind`)."""
    kind, compression = table_kind(path)
    with atomic_path(path) as tmp:
        if kind == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif kind == ".jsonl":
            frame.to_json(tmp, orient="records", lines=True, compression=compression)
        else:
            frame.to_csv(tmp, sep="," if kind == ".csv" else "\t", index=False, compression=compression)
