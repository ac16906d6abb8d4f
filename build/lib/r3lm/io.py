"""Outputs: checked before any work starts, written atomically, so a killed or failed step never leaves a
half-written file behind (and the litter of a killed one is swept by the next run)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r3lm.errors import InputError

CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "r3lm"  # rebuilt when missing

if TYPE_CHECKING:  # the command line imports this module before any work; pandas loads only where used
    import pandas as pd


class OutputFile(str):
    """A command-line path that the command writes as a file (argparse `type`; checked by `check_outputs`)."""


class OutputFolder(str):
    """A command-line path that the command writes as a folder."""


def check_outputs(values: Iterable[Any]) -> None:
    """Before any work: each OutputFile/OutputFolder among `values` can be written, and none of them is one of the
    other values that names an existing file (an input the output would replace)."""
    flat = [item for value in values for item in (value if isinstance(value, list) else [value])]
    inputs = {Path(item).resolve(): item for item in flat
              if isinstance(item, str) and not isinstance(item, OutputFile | OutputFolder) and _is_file(item)}
    for item in flat:
        if isinstance(item, OutputFile | OutputFolder):
            replaced = inputs.get(Path(item).resolve())
            if replaced is not None:
                raise InputError(f"the output would replace the input {replaced}; choose another output path",
                                 path=item)
            _check_writable(Path(item), folder=isinstance(item, OutputFolder))


def _is_file(value: str) -> bool:
    """Whether a command-line value names an existing file (a JSON config string or an id is no path)."""
    try:
        return bool(value) and Path(value).is_file()
    except OSError:  # a name too long for the filesystem
        return False


def _check_writable(target: Path, *, folder: bool) -> None:
    if target.is_dir() and not folder:
        raise InputError("is a folder; give a file path for this output", path=target)
    if target.exists() and not target.is_dir() and folder:
        raise InputError("is a file; this output is a folder", path=target)
    # Creates nothing: the folders are made when the output is written, so a later input error leaves none.
    existing = next(ancestor for ancestor in (target.parent.absolute(), *target.parent.absolute().parents)
                    if ancestor.exists())
    if not existing.is_dir():
        raise InputError(f"cannot create the folder {target.parent}: {existing} is a file", path=target)
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise InputError(f"cannot write into {existing}: {error.strerror or error}", path=target) from error


def _sweep_litter(target: Path) -> None:
    """Remove temporaries of `target` left by a killed process (their names carry the writer's pid)."""
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        pid = stale.name[len(target.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        pass
    return True


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep_litter(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
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
    _sweep_litter(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent))
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
