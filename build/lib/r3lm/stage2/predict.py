"""Predictions from a saved Stage-II model folder (`model/<group>/` of `run_stage2`) for new inputs.

A folder is self-contained: the same chat rendering, cutoff, representation (layer and pooling), head and
per-cell-type de-standardisation that produced its test predictions are rebuilt here, so perturbed inputs (motif
disruption) are scored by exactly the model that was evaluated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from r3lm.errors import InputError
from r3lm.llm.base import resolve_dtype
from r3lm.scaling import ActivityScaler
from r3lm.stage2.folder import ADAPTER_DIR, HEAD_FILE, MODEL_FILE, read_model_info
from r3lm.stage2.inputs import COT_MODES, input_for, tokenize_rows
from r3lm.stage2.model import (
    Representation,
    embed,
    load_backbone,
    load_tokenizer,
    regression_head,
)

log = logging.getLogger(__name__)


@dataclass
class Stage2Predictor:
    """A loaded model folder; `info` is its stage2.json (motif and level settings included)."""

    info: dict[str, Any]
    tokenizer: Any
    backbone: nn.Module
    head: nn.Module
    dtype: torch.dtype
    device: str

    @property
    def representation(self) -> Representation:
        """The layer and pooling the head was trained on (a folder written before they existed: the defaults)."""
        return Representation.from_settings(self.info)

    @property
    def mode(self) -> str:
        return self.info["mode"]

    @property
    def scaler(self) -> ActivityScaler:
        return ActivityScaler.from_json(self.info["standardisation"])

    @property
    def cell_types(self) -> list[str]:
        return sorted(self.scaler.cell_types)

    @classmethod
    def load(cls, model_dir: str | Path, *, device: str = "auto", dtype: str | None = None,
             backbone: str | Path | None = None) -> Stage2Predictor:
        """The frozen backbone (with its LoRA adapter when the folder has one) and the head; `dtype` overrides
        the training dtype (auto, float32, bfloat16, float16), `backbone` the recorded backbone location (a
        bundle carries its own copy)."""
        folder = Path(model_dir)
        info = read_model_info(folder)
        head_path = folder / HEAD_FILE
        if not head_path.is_file():
            raise InputError(f"the Stage II model folder has no {HEAD_FILE}", path=folder)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        compute_dtype = resolve_dtype(dtype or info["dtype"], device)
        backbone_path = str(backbone or info["backbone"])
        tokenizer = load_tokenizer(backbone_path)
        model = load_backbone(backbone_path, compute_dtype, device)
        adapter = folder / ADAPTER_DIR
        if adapter.is_dir():
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False).to(device)
        Representation.from_settings(info).check(model, folder / MODEL_FILE)
        head = regression_head(int(info["hidden_size"]))
        try:
            head.load_state_dict(torch.load(head_path, map_location="cpu", weights_only=True))
        except (RuntimeError, OSError, KeyError) as error:
            raise InputError(f"cannot load the head: {str(error).splitlines()[0]}", path=head_path) from error
        log.info("loaded the Stage II %s model %s (%s%s, %s)", info["mode"], folder, backbone_path,
                 " + LoRA" if adapter.is_dir() else "", compute_dtype)
        return cls(info, tokenizer, model.eval(), head.to(device).eval(), compute_dtype, device)

    @torch.no_grad()
    def predict(self, rows: pd.DataFrame, batch_size: int = 8) -> np.ndarray:
        """Activity per row, on each cell type's measured scale; rows have cell_type, card_text, sequence and,
        in the cot modes, rationale."""
        needed = ["cell_type", "card_text", "sequence", *(["rationale"] if self.mode in COT_MODES else [])]
        missing = [column for column in needed if column not in rows.columns]
        if missing:
            raise InputError(f"Stage II {self.mode} inputs need column(s) {', '.join(missing)}", column=missing[0])
        cells = rows["cell_type"].astype(str)
        unknown = sorted(set(cells) - set(self.cell_types))
        if unknown:
            raise InputError(f"cell type(s) {', '.join(unknown)} not served by this Stage II model (it knows "
                             f"{', '.join(self.cell_types)})", column="cell_type")
        if rows.empty:
            return np.zeros(0)
        rationales = rows["rationale"] if "rationale" in rows.columns else [None] * len(rows)
        inputs = [input_for(self.mode, card_text=card, sequence=sequence, cell_type=cell,
                            rationale=None if pd.isna(rationale) else str(rationale),
                            keep_conclusion=bool(self.info["keep_conclusion"]), input_format=self.info["input_format"])
                  for card, sequence, cell, rationale in zip(rows["card_text"], rows["sequence"], cells, rationales)]
        encoded, truncated = tokenize_rows(self.tokenizer, inputs, int(self.info["cutoff_len"]))
        if truncated:
            log.warning("%d of %d inputs longer than cutoff_len=%d were cut", truncated, len(rows),
                        self.info["cutoff_len"])
        states = embed(self.backbone, encoded, self.tokenizer.pad_token_id, self.dtype, self.device, batch_size,
                       self.representation)
        standardised = self.head(torch.as_tensor(states, device=self.device)).squeeze(-1).float().cpu().numpy()
        return self.scaler.inverse(standardised, cells.to_numpy())
