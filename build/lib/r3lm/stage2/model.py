"""The Stage-II regressor: an LLM backbone (optionally with LoRA) and a LayerNorm + Linear head that reads one
vector per input, the `Representation`: a layer's hidden states (by default the final, normed output) pooled over
the tokens (by default the last non-padding token's, as in R3LM)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from r3lm.errors import InputError

log = logging.getLogger(__name__)

POOLINGS = ("last_token", "mean")


@dataclass(frozen=True)
class Representation:
    """What the head reads of the backbone: `layer` None is the model's final output (after its final norm, the
    original R3LM); an integer is Hugging Face's `hidden_states[layer]` - 0 the embeddings, L the output of decoder
    layer L (no final norm, except the last, which HF ties to the normed output), negative counting from the end.
    `pooling` last_token reads the last non-padding token; mean averages the non-padding tokens. Why not only the
    default: on MPRA data a ridge on mean-pooled states of SmolLM2-135M's layer 21 (of 30) reached Pearson 0.37 on
    150 held-out sequences, the last layer's last token 0.18."""

    layer: int | None = None
    pooling: str = "last_token"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Representation:
        """From `stage2` settings or a model folder's stage2.json (a folder written before the keys: the default)."""
        return cls(settings.get("layer"), settings.get("pooling", "last_token"))

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "pooling": self.pooling}

    def check(self, backbone: nn.Module, path: str | Path | None = None) -> Representation:
        """Itself, when the backbone has its layer (hidden_states has num_hidden_layers + 1 entries); `path` is
        where the settings came from (a model folder's stage2.json), for the error."""
        count = int(backbone.config.num_hidden_layers)
        if self.layer is not None and not -(count + 1) <= self.layer <= count:
            raise InputError(f"stage2.layer={self.layer} is outside the backbone's hidden states: choose from "
                             f"{-(count + 1)} to {count} (0 = embeddings, {count} = the last layer) or null", path=path)
        if self.pooling not in POOLINGS:
            raise InputError(f"stage2.pooling={self.pooling!r} is not one of {', '.join(POOLINGS)}", path=path)
        return self


FINAL_LAST_TOKEN = Representation()  # the original R3LM's: the final normed output at the last real token


def regression_head(hidden_size: int) -> nn.Module:
    return nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, 1))


def load_tokenizer(path: str | Path) -> Any:
    """The backbone's tokenizer, padding on the right (the head reads the last real token)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), padding_side="right")
    except (OSError, ValueError) as error:
        raise InputError(f"cannot load the Stage II tokenizer: {str(error).splitlines()[0]}", path=path) from error
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_backbone(path: str | Path, dtype: torch.dtype, device: str, lora: dict[str, Any] | None = None, *,
                  checkpointing: bool = False) -> nn.Module:
    """The transformer without its LM head; frozen, or with LoRA on every linear layer (`attach_lora`)."""
    from transformers import AutoModel

    try:
        backbone = AutoModel.from_pretrained(str(path), dtype=dtype)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot load the Stage II backbone: {str(error).splitlines()[0]}", path=path) from error
    backbone.config.use_cache = False
    if lora is None:
        backbone.requires_grad_(False)
        return backbone.to(device)
    return attach_lora(backbone, lora, checkpointing=checkpointing).to(device)


def attach_lora(backbone: nn.Module, lora: dict[str, Any], *, checkpointing: bool) -> nn.Module:
    """LoRA adapters kept in float32 while the frozen weights sit in the compute dtype. `checkpointing`
    recomputes each layer's activations in the backward pass: on Qwen3-4B at 2 x 2,048 tokens it cut the
    step's peak from 42 to 11 GB at 0.72x the speed (measured on an H200, docs/gpu.md "GPU memory")."""
    from peft import LoraConfig, get_peft_model

    if checkpointing:  # non-reentrant: the frozen embeddings' outputs need not require grad
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    backbone = get_peft_model(backbone, LoraConfig(
        r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], target_modules=lora["target_modules"]))
    for parameter in backbone.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    trainable, total = backbone.get_nb_trainable_parameters()
    log.info("LoRA: %d of %d backbone parameters trainable (%.2f%%)%s", trainable, total, 100 * trainable / total,
             ", activation checkpointing" if checkpointing else "")
    return backbone


def pad_batch(sequences: list[list[int]], pad_token_id: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask, as long as the batch's longest input (dynamic padding)."""
    longest = max(map(len, sequences))
    input_ids = torch.full((len(sequences), longest), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        mask[row, :len(ids)] = 1
    return input_ids.to(device), mask.to(device)


def pooled_states(backbone: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  compute_dtype: torch.dtype, representation: Representation = FINAL_LAST_TOKEN) -> torch.Tensor:
    """Float32 representation of each row (rows, hidden); right padding, so real tokens are where mask is 1."""
    device_type = input_ids.device.type
    autocast = (torch.autocast(device_type, dtype=compute_dtype) if compute_dtype != torch.float32
                else nullcontext())
    stop_after = _early_exit_layer(backbone, representation)
    with autocast:
        if stop_after is not None:
            hidden = _run_through(backbone, input_ids, attention_mask, stop_after)
        elif representation.layer is None:
            hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        else:
            hidden = backbone(input_ids=input_ids, attention_mask=attention_mask,
                              output_hidden_states=True).hidden_states[representation.layer]
    if representation.pooling == "mean":
        weights = attention_mask.unsqueeze(-1).float()
        return (hidden.float() * weights).sum(dim=1) / weights.sum(dim=1)
    last = attention_mask.sum(dim=1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()


class _LayerReached(Exception):
    """Raised by a forward hook once the representation's layer has run, carrying its output."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__()
        self.hidden = hidden


def decoder_layers(backbone: nn.Module) -> nn.ModuleList:
    """The backbone's stack of decoder layers (through a PEFT wrapper too): the ModuleList as long as the
    config's num_hidden_layers."""
    count = int(backbone.config.num_hidden_layers)
    for module in backbone.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise InputError(f"cannot find the {count} decoder layers of the Stage II backbone")


def _early_exit_layer(backbone: nn.Module, representation: Representation) -> int | None:
    """The decoder layer (0-based) whose output is the representation, when the layers above it can be
    skipped: inference only (no graph to keep), and a layer below the last (HF's last entry is normed). On
    SmolLM2's layer 21 of 30 that skips 30% of Stage II's forward passes, with the same numbers."""
    count = int(backbone.config.num_hidden_layers)
    if torch.is_grad_enabled() or representation.layer is None:
        return None
    layer = representation.layer % (count + 1)  # hidden_states index: 0 embeddings, L the output of layer L
    return layer - 1 if 0 < layer < count else None


def _run_through(backbone: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 layer: int) -> torch.Tensor:
    """The output of decoder layer `layer`, the layers above it never run."""
    def stop(module: nn.Module, args: Any, output: Any) -> None:
        raise _LayerReached(output[0] if isinstance(output, tuple) else output)

    handle = decoder_layers(backbone)[layer].register_forward_hook(stop)
    try:
        backbone(input_ids=input_ids, attention_mask=attention_mask)
    except _LayerReached as reached:
        return reached.hidden
    finally:
        handle.remove()
    raise RuntimeError(f"the backbone's forward pass never reached decoder layer {layer}")


def length_sorted_batches(lengths: list[int], batch_size: int) -> Iterator[np.ndarray]:
    """Index batches, longest first, so padding is small and a memory problem shows up at once."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


@torch.no_grad()
def embed(backbone: nn.Module, encoded: list[list[int]], pad_token_id: int, compute_dtype: torch.dtype,
          device: str, batch_size: int, representation: Representation = FINAL_LAST_TOKEN, *, progress: bool = False,
          description: str = "embedding") -> np.ndarray:
    """The representation of every input, in input order (n, hidden)."""
    backbone.eval()
    out: np.ndarray | None = None
    bar = tqdm(total=len(encoded), desc=description, unit="input", disable=not progress)
    for batch in length_sorted_batches([len(ids) for ids in encoded], batch_size):
        input_ids, mask = pad_batch([encoded[index] for index in batch], pad_token_id, device)
        states = pooled_states(backbone, input_ids, mask, compute_dtype, representation).cpu().numpy()
        if out is None:
            out = np.zeros((len(encoded), states.shape[1]), dtype=np.float32)
        out[batch] = states
        bar.update(len(batch))
    bar.close()
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)
