"""The Stage-I model writing rationales: the one place a card becomes a rationale.

The workflow's own rationales (`stage1/rationales.py`), the disruption check's rewrites and `r3lm predict`
all write through `RationaleWriter`, so the backend, the guidance policy, seeding, batching and resumption
are decided here once. The model sees the card alone, never the label.

Guidance (`generation.guidance`) holds the model to the rationale grammar (`rationale.format`):
`fallback` lets the model write freely and writes again under the grammar only what broke the format,
keeping the free attempt (`unguided_text`) so that summaries count the learned skill and the guided
result apart; `always` constrains every rationale; `off` never does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from r3lm.hub import local_copy
from r3lm.llm.generate import (
    ChatGenerator,
    Generation,
    backend_for,
    generate_to_table,
    open_generator,
)
from r3lm.rationale.format import RationaleFormat


class RationaleWriter:
    """A loaded Stage-I model that writes one rationale per card under the configured guidance."""

    def __init__(self, chat: ChatGenerator, rationale_format: RationaleFormat, guidance: str) -> None:
        self.format, self.guidance, self._chat = rationale_format, guidance, chat
        run_info = {**chat.run_info, "format": vars(rationale_format), "guidance": guidance}
        self.generator = ChatGenerator(chat.backend, self._generate, chat.chunk_size, run_info, chat.close)

    @classmethod
    def open(cls, model_path: str | Path, generation: Mapping[str, Any], rationale_format: RationaleFormat, *,
             dtype: str = "auto", device: str = "auto", gpu_share: float | None = None) -> RationaleWriter:
        """Load the model behind the backend `generation` picks (`gpu_share`: see `open_generator`)."""
        return cls(open_generator(model_path, generation, dtype=dtype, device=device, gpu_share=gpu_share),
                   rationale_format, generation["guidance"])

    @classmethod
    def from_config(cls, config: Mapping[str, Any], model: str | Path, *, device: str = "auto",
                    prompts: int | None = None) -> RationaleWriter:
        """The workflow's writer for a Stage-I model (a folder, or a hub id fetched once): `generation`
        settings, dtype falling back to `llm.dtype`; with the number of `prompts` to write, `auto` takes
        vLLM only where its start pays (`backend_for`)."""
        generation = config["generation"]
        if prompts is not None:
            generation = {**generation, "backend": backend_for(generation["backend"], prompts)}
        return cls.open(local_copy(model, what="the Stage-I model"), generation, RationaleFormat.from_config(config),
                        dtype=generation["dtype"] or config["llm"]["dtype"], device=device)

    @property
    def backend(self) -> str:
        return self._chat.backend

    def close(self) -> None:
        """Stop the backend's engine now (vLLM's engine core), not whenever the writer is collected: the next
        Stage-I model's engine needs the memory."""
        self._chat.close()

    def messages(self, card_text: str) -> list[dict[str, str]]:
        return self.format.messages(card_text)

    def write(self, cards: Sequence[str], *, progress: bool = False) -> list[Generation]:
        """One rationale per card, in order."""
        return self._generate([self.messages(card) for card in cards], progress=progress)

    def write_table(self, items: pd.DataFrame, out_path: str | Path, *, keys: Sequence[str] = ("id", "cell_type"),
                    card_column: str = "card_text", source: str | Path | None = None, progress: bool = True,
                    write: bool = True, partial_path: str | Path | None = None) -> pd.DataFrame:
        """`generate_to_table` over the cards of `items` (resumable): keys, rationale and the generation columns."""
        conversations = items[list(keys)].assign(messages=[self.messages(card) for card in items[card_column]])
        return generate_to_table(conversations, self.generator, out_path, keys=keys, text_column="rationale",
                                 source=source, progress=progress, write=write, partial_path=partial_path)

    def _generate(self, conversations: Sequence[list[dict[str, str]]], *, progress: bool = True,
                  grammar: str | None = None) -> list[Generation]:
        if self.guidance == "always":
            return self._chat.generate(conversations, progress=progress, grammar=self.format.grammar)
        written = self._chat.generate(conversations, progress=progress)
        if self.guidance == "off":
            return written
        broken = [row for row, generation in enumerate(written) if not self.format.well_formed(generation.text)]
        if broken:
            rewritten = self._chat.generate([conversations[row] for row in broken], progress=progress,
                                            grammar=self.format.grammar)
            for row, generation in zip(broken, rewritten):
                written[row] = replace(generation, unguided_text=written[row].text)
        return written
