"""What the Stage-II regressor reads, per input mode.

Every mode is rendered with the backbone's own chat template, so the Stage-I model sees the same
conversation shape it was trained on:
- `generated_cot`: the card, then the Stage-I model's own rationale as the assistant turn (deployable:
  the rationale was written from the card alone);
- `oracle_cot`: the card, then the teacher's rationale (the teacher saw the label, so this is an upper
  bound and never a deployable result);
- `rcc_only`: the card alone;
- `sequence_only`: the cell type and the raw DNA, the raw-sequence LLM baseline.

Both rationale modes end the same way: by default the rationale stops at `</think>` (the official code
strips the conclusion in both), so neither hands the regressor a stated level; `stage2.keep_conclusion`
keeps it in both, for the ablation.

`stage2.input_format: official` writes instead what the official train_stage2.py reads: plain text (its
per-cell-line instruction, the card, a newline, the rationale, a newline, no chat template), cut at its end
when too long, as the official tokenizer call does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from r3lm.errors import InputError
from r3lm.predictions import ROW_COLUMNS
from r3lm.rationale.format import strip_conclusion

MODES = ("generated_cot", "oracle_cot", "rcc_only", "sequence_only")
COT_MODES = ("generated_cot", "oracle_cot")
# The teacher saw the measured level when it wrote oracle_cot's rationales: no new sequence has one.
DEPLOYABLE_MODES = tuple(mode for mode in MODES if mode != "oracle_cot")
KEYS = ["id", "cell_type"]

# train_stage2.py's _default_prompt_prefix, word for word.
OFFICIAL_PREFIX = (
    "You are a computational regulatory genomics expert specializing in {cell_type} cell line biology. Your task "
    "is to analyze the provided DNA sequence features to predict the gene expression level (0-3).\n"
    "Provide a step-by-step reasoning chain explaining the biological mechanism.\n\n"
)
RegressionInput = list[dict[str, str]] | str  # chat messages, or the official plain text

REGRESSION_SYSTEM = (
    "You are an expert in regulatory genomics. Judge how active this DNA sequence is as an enhancer in "
    "the stated cell type of a massively parallel reporter assay."
)


def input_for(mode: str, *, card_text: str, sequence: str, cell_type: str, rationale: str | None,
              keep_conclusion: bool, input_format: str = "chat") -> RegressionInput:
    """What the regressor reads for one row: chat messages, or (official) input_assembly.py's text."""
    user = f"Cell type: {cell_type}\nDNA Sequence:\n{sequence}" if mode == "sequence_only" else card_text
    answer = None
    if mode in COT_MODES:
        text = rationale or ""
        answer = text if keep_conclusion else strip_conclusion(text)
    if input_format == "official":
        body = f"{user}\n{answer.lstrip()}".rstrip() if answer is not None else user
        return f"{OFFICIAL_PREFIX.format(cell_type=cell_type)}{body}\n"
    messages = [{"role": "system", "content": REGRESSION_SYSTEM}, {"role": "user", "content": user}]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def _join(left: pd.DataFrame, right: pd.DataFrame, right_path: str | Path, what: str) -> pd.DataFrame:
    """Left rows with the right table's columns; every left row must find exactly one match."""
    joined = left.merge(right, on=KEYS, how="left", validate="one_to_one", indicator=True)
    missing = joined["_merge"] != "both"
    if missing.any():
        row = joined[missing].iloc[0]
        raise InputError(f"no {what} for id {row['id']!r} in cell type {row['cell_type']!r} "
                         f"({int(missing.sum())} rows lack one)", path=right_path, column="id")
    return joined.drop(columns="_merge")


def load_mode_rows(mode: str, teacher_set_path: str | Path, cards_path: str | Path,
                   rationales_path: str | Path | None = None, *, keep_conclusion: bool = False,
                   input_format: str = "chat") -> pd.DataFrame:
    """One set's rows (ROW_COLUMNS) with the `input` and `rationale` the mode feeds the regressor.

    The teacher set decides which rows a Stage-II set holds, so every mode trains and predicts on
    exactly the same sequences.
    """
    if mode not in MODES:
        raise InputError(f"unknown Stage II input mode {mode!r} (choose from {', '.join(MODES)})")
    rows = pd.read_parquet(teacher_set_path, columns=[*ROW_COLUMNS, "card_text", "rationale"])
    rows = rows.rename(columns={"rationale": "teacher_rationale"})
    cards = pd.read_parquet(cards_path, columns=[*KEYS, "card_json"])
    rows = _join(rows, cards, cards_path, "card")
    rows["sequence"] = [json.loads(card)["sequence"] for card in rows.pop("card_json")]
    if mode == "generated_cot":
        if rationales_path is None:
            raise InputError("generated_cot needs the Stage-I model's rationales (--rationales)")
        generated = pd.read_parquet(rationales_path, columns=[*KEYS, "rationale"])
        rows = _join(rows, generated, rationales_path, "self-generated rationale")
    elif mode == "oracle_cot":
        rows["rationale"] = rows["teacher_rationale"]
    else:
        rows["rationale"] = None
    rows["input"] = [input_for(mode, card_text=card, sequence=sequence, cell_type=cell, rationale=rationale,
                               keep_conclusion=keep_conclusion, input_format=input_format)
                     for card, sequence, cell, rationale in zip(rows["card_text"], rows["sequence"],
                                                                rows["cell_type"], rows["rationale"])]
    return rows[[*ROW_COLUMNS, "sequence", "card_text", "rationale", "input"]].reset_index(drop=True)


def render(tokenizer, regression_input: RegressionInput) -> list[int]:
    """Token ids of one input. Plain text is tokenised as is (no special tokens, as the official code); a
    conversation without an answer ends with the assistant prompt, so the last token is the same template
    token in every mode."""
    if isinstance(regression_input, str):
        return list(tokenizer(regression_input, add_special_tokens=False)["input_ids"])
    answered = regression_input[-1]["role"] == "assistant"
    ids = tokenizer.apply_chat_template(regression_input, tokenize=True, add_generation_prompt=not answered)
    return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


def tokenize_rows(tokenizer, inputs: list[RegressionInput], cutoff_len: int) -> tuple[list[list[int]], int]:
    """Token ids per input and how many were cut: a conversation loses its start (the end holds the rationale
    and the last token the head reads); official plain text loses its end, as the official code cuts it."""
    encoded, truncated = [], 0
    for regression_input in inputs:
        ids = render(tokenizer, regression_input)
        if len(ids) > cutoff_len:
            ids = ids[:cutoff_len] if isinstance(regression_input, str) else ids[-cutoff_len:]
            truncated += 1
        encoded.append(ids)
    return encoded, truncated
