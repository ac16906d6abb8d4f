"""The rationale format every part of r3lm reads and writes.

The reasoning sits inside <think>...</think> as numbered steps; the conclusion follows and states
the activity level, so Stage II can keep the reasoning and strip the conclusion:

    <think>
    1. ...
    2. ...
    </think>
    Conclusion: ... Activity level: 2 (moderate).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_STEP = re.compile(r"^\s*(\d+)[.)]\s+(.*\S)\s*$")
_LEVEL = re.compile(r"activity level\s*[:=]?\s*(\d+)", re.IGNORECASE)

SYSTEM_PROMPT = (
    "You are an expert in regulatory genomics. Given a Regulatory Context Card for a DNA sequence "
    "tested in a massively parallel reporter assay, reason step by step about how its transcription "
    "factor motifs, their families and arrangement, and its GC content act in the stated cell type. "
    "Write {min_steps} to {max_steps} numbered steps inside <think></think>, each citing evidence from "
    "the card, then a conclusion that states the activity level as 'Activity level: N' "
    "(0 = lowest to {top} = highest)."
)


# The official build_rcc.py's system prompt, which the released Stage-I models were trained on (with the card
# alone as the user turn): the format is learned from the rationales, not asked for.
OFFICIAL_SYSTEM_PROMPT = (
    "You are a computational regulatory genomics expert specializing in {{cell_type}} cell line biology. Your "
    "task is to analyze the provided DNA sequence features and transcription factor (TF) motifs to predict "
    "the gene expression level (0-{top}).\nProvide a step-by-step reasoning chain explaining the biological "
    "mechanism."
)
_CELL_TYPE_LINE = re.compile(r"^- Cell Type: (.+)$", re.MULTILINE)
STUDENT_REQUEST = "Explain the regulatory activity of this sequence."


def level_name(level: int, n_levels: int) -> str:
    """Words for a level: the paper's four, or generic quantile names for other level counts."""
    if n_levels == 4:
        return ("low", "weak", "moderate", "high")[level]
    return f"quantile {level + 1} of {n_levels}"


def system_prompt(min_steps: int, max_steps: int, n_levels: int, prompt: str = "r3lm") -> str:
    """r3lm's (the format spelled out), or the official one as a template over `{cell_type}`."""
    template = OFFICIAL_SYSTEM_PROMPT if prompt == "official" else SYSTEM_PROMPT
    return template.format(min_steps=min_steps, max_steps=max_steps, top=n_levels - 1)


def student_messages(card_text: str, system: str, prompt: str = "r3lm") -> list[dict[str, str]]:
    """What the Stage-I model sees: the card alone, never the label. r3lm: `system` and a request after the
    card; official: `system` filled with the card's cell type, and the card as the whole user turn."""
    if prompt != "official":
        return [{"role": "system", "content": system}, {"role": "user", "content": f"{card_text}\n\n{STUDENT_REQUEST}"}]
    cell_type = _CELL_TYPE_LINE.search(card_text)
    if cell_type is None:
        raise ValueError("the card names no cell type ('- Cell Type: ...' line)")
    return [{"role": "system", "content": system.format(cell_type=cell_type.group(1))},
            {"role": "user", "content": card_text}]


def teacher_messages(card_text: str, level: int, n_levels: int, system: str) -> list[dict[str, str]]:
    """What the teacher sees: the card and the observed level it must explain."""
    return [{"role": "system", "content": system},
            {"role": "user", "content": (
                f"{card_text}\n\nThe measured activity of this sequence in this cell type is level {level} "
                f"({level_name(level, n_levels)}) of 0-{n_levels - 1}. Explain mechanistically why, citing only "
                f"evidence on the card, and end with 'Activity level: {level}'.")}]


def rationale_grammar(min_steps: int, max_steps: int, n_levels: int) -> str:
    """The format above as an EBNF grammar (xgrammar's dialect, which vLLM's structured outputs take too).

    It fixes the frame and leaves the content free: `<think>`, steps numbered 1 to min_steps and
    optionally on to max_steps, each one line, `</think>`, then a one-line conclusion that states
    'Activity level: N' with N a valid level. Grammar cannot ground a claim; the validator still does.
    """
    steps = [f'"{number}. " step' for number in range(1, max_steps + 1)]
    optional = "".join(f" ({step}" for step in steps[min_steps:]) + ")?" * (max_steps - min_steps)
    return (f'root ::= "{THINK_OPEN}\\n" {" ".join(steps[:min_steps])}{optional} "{THINK_CLOSE}\\n" conclusion\n'
            'step ::= [^\\n<]+ "\\n"\n'
            f'conclusion ::= "Conclusion: " [^\\n]* "Activity level: " [0-{n_levels - 1}] [^\\n]{{0,40}}\n')


def is_well_formed(text: str, min_steps: int, max_steps: int, n_levels: int) -> bool:
    """The frame the grammar enforces: think block, step count and a level in range (content aside)."""
    parsed = parse(text)
    return (parsed.has_think and min_steps <= len(parsed.steps) <= max_steps and parsed.level is not None
            and 0 <= parsed.level < n_levels)


@dataclass(frozen=True)
class RationaleFormat:
    """What a rationale must look like: the prompt that asks for it (`reasoning.prompt`: r3lm's or the
    official one) and the frame the grammar enforces."""

    system: str
    min_steps: int
    max_steps: int
    n_levels: int
    prompt: str = "r3lm"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RationaleFormat:
        reasoning, n_levels = config["reasoning"], config["levels"]["n_levels"]
        return cls(system_prompt(reasoning["min_steps"], reasoning["max_steps"], n_levels, reasoning["prompt"]),
                   reasoning["min_steps"], reasoning["max_steps"], n_levels, reasoning["prompt"])

    def messages(self, card_text: str) -> list[dict[str, str]]:
        return student_messages(card_text, self.system, self.prompt)

    @property
    def grammar(self) -> str:
        return rationale_grammar(self.min_steps, self.max_steps, self.n_levels)

    def well_formed(self, text: str) -> bool:
        return is_well_formed(text, self.min_steps, self.max_steps, self.n_levels)


def compose(steps: list[str], conclusion: str) -> str:
    body = "\n".join(f"{number}. {step}" for number, step in enumerate(steps, start=1))
    return f"{THINK_OPEN}\n{body}\n{THINK_CLOSE}\n{conclusion}"


@dataclass(frozen=True)
class ParsedRationale:
    steps: tuple[str, ...]
    conclusion: str
    level: int | None
    has_think: bool


def parse(text: str) -> ParsedRationale:
    """Steps from inside <think> (or the whole text when the block is missing) and the concluding level."""
    opened, closed = text.find(THINK_OPEN), text.find(THINK_CLOSE)
    has_think = 0 <= opened < closed
    reasoning = text[opened + len(THINK_OPEN):closed] if has_think else text
    conclusion = text[closed + len(THINK_CLOSE):].strip() if has_think else ""
    steps = tuple(match.group(2) for line in reasoning.splitlines() if (match := _STEP.match(line)))
    levels = _LEVEL.findall(conclusion)
    return ParsedRationale(steps=steps, conclusion=conclusion, level=int(levels[-1]) if levels else None,
                           has_think=has_think)


def strip_conclusion(text: str) -> str:
    """The reasoning up to and including `</think>`, as the official Stage II reads it: the conclusion (the
    answer) goes, and a rationale that never closes its reasoning contributes nothing."""
    closed = text.find(THINK_CLOSE)
    return text[:closed + len(THINK_CLOSE)] if closed >= 0 else ""
