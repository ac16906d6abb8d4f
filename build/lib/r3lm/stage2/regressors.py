"""The two Stage-II regressors behind one interface (`Regressor`), which is all the optimisation loop, the test
prediction and the model folder see:

* `FrozenHeadRegressor` (`stage2.training: frozen`): the frozen backbone embeds every input once, cached on
  disk, and only the head trains, which turns hours on a CPU into seconds;
* `LoraRegressor` (`lora`, the paper): LoRA adapters on every linear layer train with the head.

Each is built per group (a cell type, or `shared`) from masks that pick the group's rows of each set.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from r3lm.io import atomic_path, write_json
from r3lm.llm.generate import model_fingerprint
from r3lm.stage2.model import (
    FINAL_LAST_TOKEN,
    Representation,
    embed,
    load_backbone,
    pad_batch,
    pooled_states,
    regression_head,
)

log = logging.getLogger(__name__)

Masks = Mapping[str, np.ndarray]  # set name (train, val, test) -> which of its rows belong to the group
Encoded = Mapping[str, list[list[int]]]  # set name -> token ids per row


@dataclass(frozen=True)
class Backbone:
    """Where the backbone comes from, how it runs and what of it the head reads."""

    path: str | Path
    dtype: torch.dtype
    device: str
    pad_token_id: int
    batch_size: int
    representation: Representation = FINAL_LAST_TOKEN


class Regressor(Protocol):
    """One group's model. `model` is what trains and takes the best weights back; `head` has its own learning
    rate; `adapter` is what the model folder keeps beside the head (None: nothing)."""

    model: nn.Module
    head: nn.Module
    adapter: nn.Module | None
    lengths: list[int] | None  # train input lengths, to batch similar lengths (None: nothing is padded)

    def predict(self, name: str, indices: np.ndarray | None = None) -> torch.Tensor:
        """Standardised predictions for a set's rows: all of them, or a batch of them."""


class FrozenHeadRegressor:
    adapter = None
    lengths = None

    def __init__(self, states: Mapping[str, torch.Tensor], hidden_size: int, device: str) -> None:
        self.head = regression_head(hidden_size).to(device)
        self.model = self.head
        self.states = states

    def predict(self, name: str, indices: np.ndarray | None = None) -> torch.Tensor:
        states = self.states[name] if indices is None else self.states[name][torch.as_tensor(indices)]
        return self.head(states).squeeze(-1)


class LoraRegressor:
    def __init__(self, backbone: Backbone, lora: Mapping[str, Any], encoded: Encoded, *,
                 checkpointing: bool = False) -> None:
        self.backbone, self.encoded = backbone, encoded
        self.adapter = load_backbone(backbone.path, backbone.dtype, backbone.device, lora=dict(lora),
                                     checkpointing=checkpointing)
        backbone.representation.check(self.adapter)
        self.head = regression_head(self.adapter.config.hidden_size).to(backbone.device)
        self.model = nn.ModuleDict({"backbone": self.adapter, "head": self.head})
        self.lengths = [len(ids) for ids in encoded["train"]]

    def predict(self, name: str, indices: np.ndarray | None = None) -> torch.Tensor:
        backbone = self.backbone
        if indices is not None:
            input_ids, mask = pad_batch([self.encoded[name][index] for index in indices], backbone.pad_token_id,
                                        backbone.device)
            return self.head(pooled_states(self.adapter, input_ids, mask, backbone.dtype,
                                           backbone.representation)).squeeze(-1)
        states = embed(self.adapter, self.encoded[name], backbone.pad_token_id, backbone.dtype, backbone.device,
                       backbone.batch_size, backbone.representation)
        return self.head(torch.as_tensor(states, device=backbone.device)).squeeze(-1)


def group_regressors(settings: Mapping[str, Any], backbone: Backbone, encoded: Encoded, cache_dir: Path, *,
                     progress: bool) -> Callable[[Masks], Regressor]:
    """A new regressor per group, for `settings['training']`; frozen embeds every set here, once."""
    if settings["training"] == "lora":
        def lora_regressor(masks: Masks) -> Regressor:
            torch.manual_seed(settings["seed"])  # the same adapter initialisation for every group
            return LoraRegressor(backbone, settings["lora"], {
                name: [ids for ids, keep in zip(encoded[name], mask) if keep] for name, mask in masks.items()},
                checkpointing=settings["gradient_checkpointing"])

        return lora_regressor
    model = load_backbone(backbone.path, backbone.dtype, backbone.device)
    backbone.representation.check(model)
    embeddings = {name: _cached_embeddings(
        cache_dir / f"{name}.npy", _token_key(backbone, ids),
        lambda ids=ids, name=name: embed(model, ids, backbone.pad_token_id, backbone.dtype, backbone.device,
                                         backbone.batch_size, backbone.representation, progress=progress,
                                         description=f"embedding {name}"))
        for name, ids in encoded.items()}
    hidden_size = model.config.hidden_size

    def frozen_regressor(masks: Masks) -> Regressor:
        return FrozenHeadRegressor({name: torch.as_tensor(embeddings[name][mask], device=backbone.device)
                                    for name, mask in masks.items()}, hidden_size, backbone.device)

    return frozen_regressor


def _cached_embeddings(cache: Path, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """Embeddings from the cache when the key (model files, dtype, representation, token ids) matches, else
    computed and stored."""
    meta = cache.with_suffix(".json")
    if cache.is_file() and meta.is_file() and json.loads(meta.read_text()).get("key") == key:
        log.info("reusing cached embeddings %s", cache)
        return np.load(cache)
    values = compute()
    with atomic_path(cache) as tmp, open(tmp, "wb") as handle:
        np.save(handle, values)
    write_json({"key": key, "shape": list(values.shape)}, meta)
    return values


def _token_key(backbone: Backbone, encoded: list[list[int]]) -> str:
    """What the embeddings depend on. The default representation adds nothing, so that caches written before
    `stage2.layer` and `stage2.pooling` existed stay valid (embedding real data on a CPU takes hours)."""
    representation = ("" if backbone.representation == FINAL_LAST_TOKEN
                      else f"|{json.dumps(backbone.representation.to_json(), sort_keys=True)}")
    digest = hashlib.sha256(
        f"{model_fingerprint(backbone.path)}|{backbone.path}|{backbone.dtype}{representation}".encode())
    for ids in encoded:
        digest.update(np.asarray(ids, dtype=np.int64).tobytes() + b"|")
    return digest.hexdigest()
