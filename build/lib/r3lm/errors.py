"""One error type for bad user input, so every entry point can report it the same way."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


class InputError(Exception):
    """Bad input (a file, a row, a field or a config key) reported as one line with exit code 2.

    `row` is the 1-based data row (the header is not counted), so users can find it in a
    spreadsheet or with `sed -n "$((row + 1))p"` on a file with a header line.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.row = row
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [part for part in (
            self.path,
            None if self.row is None else f"row {self.row}",
            None if self.column is None else f"column '{self.column}'",
        ) if part]
        return f"{', '.join(where)}: {self.message}" if where else self.message


def require_file(path: str | Path, what: str = "file") -> Path:
    """`path` as a Path when it is a file; a folder or a missing path is named as what it is."""
    return _require(Path(path), what, folder=False)


def require_folder(path: str | Path, what: str = "folder") -> Path:
    """`path` as a Path when it is a folder; a file or a missing path is named as what it is."""
    return _require(Path(path), what, folder=True)


def _require(path: Path, what: str, *, folder: bool) -> Path:
    if (path.is_file() if folder else path.is_dir()):
        raise InputError(f"is a {'file' if folder else 'folder'}; a {what} is expected here", path=path)
    if not (path.is_dir() if folder else path.is_file()):
        raise InputError(f"{what} not found", path=path)
    return path


def require_table_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise InputError(f"{what} lacks column(s) {', '.join(missing)}", column=missing[0])
