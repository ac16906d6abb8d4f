"""A Stage-II model folder (`model/<group>/`): its file names, its writer, and its settings file, which reads
without torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r3lm.errors import InputError
from r3lm.io import atomic_dir, write_json
from r3lm.stage2.inputs import MODES

if TYPE_CHECKING:
    from torch import nn

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


def write_model_folder(folder: Path, settings: dict[str, Any], head: nn.Module, adapter: nn.Module | None) -> None:
    """A self-contained model folder: the head's weights, the LoRA adapter (a PEFT model) when there is one, and
    the settings a prediction needs (REQUIRED_KEYS)."""
    import torch  # here, so that reading a folder does not load torch

    with atomic_dir(folder) as tmp:
        torch.save(head.state_dict(), tmp / HEAD_FILE)
        if adapter is not None:
            adapter.save_pretrained(tmp / ADAPTER_DIR)
        write_json(settings, tmp / MODEL_FILE)
