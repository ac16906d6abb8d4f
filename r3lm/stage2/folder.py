"""A Stage-II model folder (`model/<group>/`): its file names and its settings file, readable without torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from r3lm.errors import InputError
from r3lm.stage2.inputs import MODES

MODEL_FILE, HEAD_FILE, ADAPTER_DIR = "stage2.json", "head.pt", "adapter"
REQUIRED_KEYS = ("mode", "backbone", "standardisation", "cutoff_len", "keep_conclusion", "input_format",
                 "hidden_size", "dtype")
SHARED = "shared"  # the group of a model that serves every cell type (stage2.per_cell_type: false)


def read_settings(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    """A model's JSON settings file with the keys a prediction needs; a broken one is an input error."""
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"not valid JSON: {error}", path=path) from error
    missing = [key for key in required if key not in settings]
    if missing:
        raise InputError(f"lacks the key(s) {', '.join(missing)}", path=path)
    return settings


def read_model_info(model_dir: str | Path) -> dict[str, Any]:
    """A model folder's stage2.json, checked for what a prediction needs (cheap: nothing is loaded)."""
    folder = Path(model_dir)
    path = folder / MODEL_FILE
    if not path.is_file():
        raise InputError(f"not a Stage II model folder: no {MODEL_FILE}", path=folder)
    info = read_settings(path, REQUIRED_KEYS)
    if info["mode"] not in MODES:
        raise InputError(f"unknown Stage II input mode {info['mode']!r} (choose from {', '.join(MODES)})", path=path)
    return info
