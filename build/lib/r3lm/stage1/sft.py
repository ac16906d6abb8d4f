"""Stage I: fine-tune a causal LM on the teacher's ShareGPT rationales, with loss on the assistant turn only.

The model learns to write the teacher's rationale from the card alone (r3lm.rationale.format). Prompts
are rendered with the tokenizer's own chat template, so training sees exactly what generation will
feed the model later. Training runs through transformers' Trainer: full or LoRA fine-tuning,
checkpoints that a killed run resumes from, held-out loss before, during and after training, and
DDP when launched with `accelerate launch` or `torchrun`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from r3lm.errors import InputError
from r3lm.io import atomic_dir, write_json
from r3lm.llm.base import resolve_dtype
from r3lm.stage1.curves import loss_frame, write_loss_curves

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # the label transformers' causal-LM loss skips
SPEAKER_ROLES = {"human": "user", "gpt": "assistant"}
TURN_ORDER = ("human", "gpt")


# ---- Data ----

def _jsonl_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and the *.jsonl files of directories (sorted, so the order is reproducible)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.glob("*.jsonl"))
            if not found:
                raise InputError("the directory holds no *.jsonl files", path=path)
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise InputError("no such file or directory", path=path)
    return files


def _parse_record(line: str, path: Path, line_number: int) -> dict[str, Any]:
    """One ShareGPT record as chat messages; InputError names the file, the line (as row) and the field."""

    def bad(message: str, field: str | None = None) -> InputError:
        return InputError(message, path=path, row=line_number, column=field)

    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise bad(f"not valid JSON ({error.msg} at character {error.pos + 1})") from None
    if not isinstance(record, dict):
        raise bad(f"a record must be a JSON object, found {type(record).__name__}")
    system = record.get("system", "")
    if not isinstance(system, str):
        raise bad(f"must be a string, found {type(system).__name__}", "system")
    turns = record.get("conversations")
    if not isinstance(turns, list) or len(turns) != len(TURN_ORDER):
        raise bad("must be a list of two turns: a 'human' turn (the card), then a 'gpt' turn (the rationale)",
                  "conversations")
    messages = [{"role": "system", "content": system}] if system.strip() else []
    for index, (turn, speaker) in enumerate(zip(turns, TURN_ORDER)):
        field = f"conversations[{index}]"
        if not isinstance(turn, dict):
            raise bad("must be an object with 'from' and 'value'", field)
        if turn.get("from") != speaker:
            raise bad(f"must be {speaker!r}, found {turn.get('from')!r}", f"{field}.from")
        value = turn.get("value")
        if not isinstance(value, str) or not value.strip():
            raise bad("must be a non-empty string", f"{field}.value")
        messages.append({"role": SPEAKER_ROLES[speaker], "content": value})
    return {"id": str(record.get("id", line_number)), "cell_type": record.get("cell_type"), "messages": messages,
            "path": str(path), "line": line_number}


def load_sharegpt(paths: Iterable[str | Path], *, cell_type: str | None = None) -> list[dict[str, Any]]:
    """Records from JSONL files (or directories of *.jsonl): id, cell_type, chat messages, and where each came from;
    only `cell_type`'s records when given (a Stage-I model per cell type learns from its own cell type alone).

    The `system` key becomes the system message; `human` turns become `user`, `gpt` turns `assistant`.
    Blank lines are skipped; anything else malformed is an InputError.
    """
    files = _jsonl_files(paths)
    records = []
    for path in files:
        with path.open(encoding="utf-8") as handle:
            records += [_parse_record(line, path, number) for number, line in enumerate(handle, start=1)
                        if line.strip()]
    if cell_type is not None:
        records = [record for record in records if record["cell_type"] == cell_type]
    if not records:
        raise InputError("no ShareGPT records" + (f" for cell type {cell_type}" if cell_type else ""),
                         path=", ".join(map(str, files)) or "(no files given)")
    return records


# ---- Tokenisation ----

@dataclass
class TokenCounts:
    """What tokenisation did to one split; nothing is dropped or cut without being counted here."""

    records: int = 0
    examples: int = 0
    truncated: int = 0
    dropped_no_assistant_tokens: int = 0
    tokens: int = 0
    assistant_tokens: int = 0
    longest_before_truncation: int = 0


def _token_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    # the template already wrote any BOS/special tokens it wants as text; adding them again would double them
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_conversation(tokenizer: PreTrainedTokenizerBase, record: dict[str, Any]) -> tuple[list[int], list[int]]:
    """input_ids of the whole conversation, and labels that are IGNORE_INDEX everywhere but the assistant turn.

    The assistant turn is what the full rendering adds after the prompt rendered with the generation
    prompt, i.e. exactly the tokens the model must produce at inference; it ends at the end-of-turn
    (eos) token, so template whitespace after it is not trained.
    """
    messages = record["messages"]
    prompt_ids = _token_ids(tokenizer, tokenizer.apply_chat_template(
        messages[:-1], tokenize=False, add_generation_prompt=True))
    full_ids = _token_ids(tokenizer, tokenizer.apply_chat_template(messages, tokenize=False))
    if full_ids[:len(prompt_ids)] != prompt_ids:
        raise InputError("the chat template's prompt (with generation prompt) does not tokenize to a prefix of the "
                         "whole conversation, so the assistant turn cannot be located",
                         path=record["path"], row=record["line"])
    answer = full_ids[len(prompt_ids):]
    if tokenizer.eos_token_id in answer:
        answer = answer[:len(answer) - answer[::-1].index(tokenizer.eos_token_id)]
    return prompt_ids + answer, [IGNORE_INDEX] * len(prompt_ids) + answer


def tokenize_records(records: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, cutoff_len: int,
                     *, split: str) -> tuple[list[dict[str, list[int]]], TokenCounts]:
    """Training examples cut to cutoff_len; those left with no assistant token are dropped, counted and logged."""
    counts = TokenCounts(records=len(records))
    examples = []
    for record in records:
        input_ids, labels = encode_conversation(tokenizer, record)
        counts.longest_before_truncation = max(counts.longest_before_truncation, len(input_ids))
        if len(input_ids) > cutoff_len:
            counts.truncated += 1
            input_ids, labels = input_ids[:cutoff_len], labels[:cutoff_len]
        trained = sum(label != IGNORE_INDEX for label in labels)
        if not trained:
            counts.dropped_no_assistant_tokens += 1
            continue
        examples.append({"input_ids": input_ids, "labels": labels})
        counts.examples += 1
        counts.tokens += len(input_ids)
        counts.assistant_tokens += trained
    if counts.truncated:
        log.warning("%s: truncated %d of %d examples to cutoff_len=%d tokens (longest %d)", split, counts.truncated,
                    counts.records, cutoff_len, counts.longest_before_truncation)
    if counts.dropped_no_assistant_tokens:
        log.warning("%s: dropped %d of %d examples whose prompt alone fills cutoff_len=%d (no assistant token left)",
                    split, counts.dropped_no_assistant_tokens, counts.records, cutoff_len)
    if not examples:
        raise InputError(f"every {split} example was dropped: no assistant token fits in cutoff_len={cutoff_len}",
                         column="stage1.cutoff_len")
    log.info("%s: %d examples, %d tokens (%d assistant tokens trained)", split, counts.examples, counts.tokens,
             counts.assistant_tokens)
    return examples, counts


@dataclass(frozen=True)
class PaddingCollator:
    """Pads a batch to its own longest example on the LEFT; padding is masked and never trained.

    Left padding lines every row's answer up at the right edge, so `logits_to_keep` (the answer span of
    the longest answer, plus one) lets the model skip the vocabulary projection for the prompt: on a
    135M model the 49k-way projection and its softmax are a third of a training step. Positions count
    from each row's first real token, as in generation.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        longest = max(len(feature["input_ids"]) for feature in features)
        if self.pad_to_multiple_of:
            longest = math.ceil(longest / self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), longest), dtype=torch.long)
        for row, feature in enumerate(features):
            start = longest - len(feature["input_ids"])
            input_ids[row, start:] = torch.tensor(feature["input_ids"])
            labels[row, start:] = torch.tensor(feature["labels"])
            attention_mask[row, start:] = 1
        trained_columns = (labels != IGNORE_INDEX).any(dim=0).nonzero()
        first_trained = int(trained_columns[0]) if len(trained_columns) else longest - 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
                "position_ids": (attention_mask.cumsum(dim=1) - 1).clamp(min=0),
                "logits_to_keep": longest - first_trained + 1}


def answer_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None
                ) -> torch.Tensor:
    """Next-token cross-entropy over the trained tokens, from logits kept for the last columns only.

    The logits cover the last k positions, so they predict the last k - 1 labels. The sum is divided by
    the trained tokens of the whole accumulated batch when Trainer passes that count (each token weighs
    the same whatever its micro-batch), else by this batch's.
    """
    logits = outputs.logits[:, :-1].float()
    targets = labels[:, labels.shape[1] - logits.shape[1]:].to(logits.device)
    total = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                              ignore_index=IGNORE_INDEX, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum()
    return total / count


# ---- Model ----

def _load_tokenizer(model_path: str | Path) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except OSError as error:
        raise InputError(f"cannot load a tokenizer: {error}", path=model_path) from None
    if not tokenizer.chat_template:
        raise InputError("the tokenizer has no chat template (Stage I renders prompts with the model's own)",
                         path=model_path)
    if tokenizer.eos_token_id is None:
        raise InputError("the tokenizer has no eos token to end the assistant turn", path=model_path)
    return tokenizer


def _load_model(model_path: str | Path, settings: dict[str, Any], compute_dtype: torch.dtype) -> PreTrainedModel:
    """The model to train: full fine-tuning keeps float32 master weights (AdamW updates at lr ~1e-5 are below
    bfloat16's resolution) and autocasts; LoRA keeps the frozen base in the compute dtype, adapters in float32."""
    weights_dtype = torch.float32 if settings["method"] == "full" else compute_dtype
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=weights_dtype)
    except OSError as error:
        raise InputError(f"cannot load a causal LM: {error}", path=model_path) from None
    if settings["method"] == "lora":
        from peft import LoraConfig, get_peft_model

        lora = settings["lora"]
        model = get_peft_model(model, LoraConfig(
            task_type="CAUSAL_LM", r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
            target_modules=lora["target_modules"]))  # "all-linear" leaves lm_head out
        trainable, total = model.get_nb_trainable_parameters()
        log.info("LoRA: %d of %d parameters trainable (%.2f%%)", trainable, total, 100 * trainable / total)
    return model


# ---- Checkpoints and outputs ----

def last_complete_checkpoint(folder: Path, *, prune_incomplete: bool) -> Path | None:
    """The newest checkpoint that Trainer finished writing (trainer_state.json is written last).

    A run killed while saving leaves a partial folder; with `prune_incomplete` (the main process only)
    it is removed so it can neither be resumed from nor confuse checkpoint rotation.
    """
    if not folder.is_dir():
        return None
    complete: dict[int, Path] = {}
    for candidate in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = candidate.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")
        if not (candidate.is_dir() and step.isdigit()):
            continue
        if (candidate / TRAINER_STATE_NAME).is_file():
            complete[int(step)] = candidate
        elif prune_incomplete:
            log.warning("removing incomplete checkpoint %s (the run was killed while saving it)", candidate)
            shutil.rmtree(candidate, ignore_errors=True)
    return complete[max(complete)] if complete else None


def _save_models(model: Any, tokenizer: PreTrainedTokenizerBase, out_dir: Path, method: str,
                 compute_dtype: torch.dtype) -> None:
    """model/ (a plain HF folder; LoRA merged into it) and, for LoRA, adapter/."""
    if method == "lora":
        with atomic_dir(out_dir / "adapter") as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        model = model.merge_and_unload()
    model = model.to(compute_dtype)  # full fine-tuning trained float32 master weights; ship the compute dtype
    model.config.use_cache = True  # Trainer turns the KV cache off for training; generation wants it
    with atomic_dir(out_dir / "model") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


class _ProgressLog(TrainerCallback):
    """Logs held-out loss and training throughput at every evaluation (Trainer's tqdm shows the steps), and
    counts the evaluation time, which Trainer's train_runtime includes but training throughput must not."""

    def __init__(self) -> None:
        self.started, self.tokens_at_start, self.eval_seconds = time.perf_counter(), 0, 0.0

    def on_train_begin(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:
        self.started, self.tokens_at_start = time.perf_counter(), state.num_input_tokens_seen

    def on_evaluate(self, args: TrainingArguments, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **kwargs: Any) -> None:
        if metrics:
            self.eval_seconds += metrics.get("eval_runtime", 0.0)
        if state.is_world_process_zero and metrics:
            seconds = time.perf_counter() - self.started - self.eval_seconds
            log.info("step %d of %d: held-out loss %.4f; %.0f training tokens/s so far", state.global_step,
                     state.max_steps, metrics["eval_loss"],
                     (state.num_input_tokens_seen - self.tokens_at_start) / max(seconds, 1e-9))


def _training_arguments(settings: dict[str, Any], checkpoints: Path, compute_dtype: torch.dtype,
                        max_steps: int | None) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=settings["epochs"],
        max_steps=max_steps if max_steps is not None else -1,
        per_device_train_batch_size=settings["batch_size"],
        per_device_eval_batch_size=settings["batch_size"],
        gradient_accumulation_steps=settings["gradient_accumulation"],
        learning_rate=settings["learning_rate"],
        lr_scheduler_type=settings["scheduler"],
        # a float below 1 is read as a fraction of all steps; 1.0 itself would mean a single step
        warmup_steps=min(settings["warmup_ratio"], 1 - 1e-9),
        weight_decay=settings["weight_decay"],
        max_grad_norm=settings["max_grad_norm"],
        bf16=compute_dtype == torch.bfloat16,
        fp16=compute_dtype == torch.float16,
        gradient_checkpointing=settings["gradient_checkpointing"],  # transformers 5.20+ also calls it activation_checkpointing
        train_sampling_strategy="group_by_length",
        logging_strategy="steps",
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=settings["eval_steps"],
        eval_on_start=True,
        prediction_loss_only=True,
        save_strategy="steps",
        save_steps=settings["save_steps"],
        save_total_limit=1,  # only the newest checkpoint is needed to resume; full-model checkpoints are large
        seed=settings["seed"],
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),  # lets Trainer autocast to bfloat16 on a CPU too
        ddp_find_unused_parameters=False,
        disable_tqdm=False,
        report_to="none",
    )


def _step_floor(n_examples: int, args: TrainingArguments, settings: dict[str, Any]) -> int:
    """-1 (the epochs decide) when they give at least stage1.min_steps optimizer steps, else min_steps: the
    format is learned in steps, not epochs, and a table with one cell type has a third of the demo's
    rationales per epoch (12 steps where the demo has 36: 46% of the rationales were then valid)."""
    per_epoch = math.ceil(math.ceil(n_examples / (args.per_device_train_batch_size * args.world_size))
                          / args.gradient_accumulation_steps)
    planned = math.ceil(per_epoch * settings["epochs"])
    if planned >= settings["min_steps"]:
        return -1
    log.warning("stage1.epochs=%s over %d examples gives %d optimizer steps, fewer than stage1.min_steps=%d: "
                "training %d steps (%.1f epochs); more rationales (reasoning.sets.stage1_train) would teach more "
                "than repeating these", settings["epochs"], n_examples, planned, settings["min_steps"],
                settings["min_steps"], settings["min_steps"] / max(per_epoch, 1))
    return settings["min_steps"]


def _progress_summary(state: Any, curves: pd.DataFrame, progress: _ProgressLog, train_seconds: float,
                      resumed_from: int | None) -> dict[str, Any]:
    """How far training went (steps, epochs, tokens and their rate) and the held-out loss before and after."""
    held_out = curves[curves["split"] == "val"]
    before = held_out.loc[held_out["step"] == 0, "loss"]
    train_tokens = state.num_input_tokens_seen - progress.tokens_at_start
    return {
        "steps": state.global_step,
        "max_steps": state.max_steps,
        "epochs": state.epoch,
        "resumed_from_step": resumed_from,
        "held_out_loss": {"before": float(before.iloc[0]) if len(before) else None,
                          "after": float(held_out["loss"].iloc[-1])},
        "final_train_loss": float(curves.loc[curves["split"] == "train", "loss"].iloc[-1])
        if (curves["split"] == "train").any() else None,
        "tokens_trained_this_run": train_tokens,
        "train_seconds": train_seconds,
        "eval_seconds": progress.eval_seconds,
        "tokens_per_second": train_tokens / max(train_seconds, 1e-9),
    }


def train_stage1(config: dict[str, Any], model_path: str | Path, train_files: list[str | Path],
                 val_files: list[str | Path], out_dir: str | Path, *, max_steps: int | None = None,
                 cell_type: str | None = None) -> dict[str, Any]:
    """Fine-tune `model_path` on the train records; write model/, adapter/ (LoRA), loss.csv, loss.png, summary.json.

    `config` is the validated workflow config (stage1 and llm.dtype are read). `max_steps` caps the
    optimizer steps (else stage1.epochs decide); `cell_type` keeps that cell type's records only. Rerunning after a
    kill resumes from the newest checkpoint in out_dir/checkpoints. Only the main process writes outputs; every process returns the summary.
    """
    started = time.perf_counter()
    settings = config["stage1"]
    if max_steps is not None and max_steps < 1:
        raise InputError(f"max_steps must be at least 1, got {max_steps}")
    out_dir = Path(out_dir)
    checkpoints = out_dir / "checkpoints"
    compute_dtype = resolve_dtype(config["llm"]["dtype"], "cuda" if torch.cuda.is_available() else "cpu")

    tokenizer = _load_tokenizer(model_path)
    train_records = load_sharegpt(train_files, cell_type=cell_type)
    val_records = load_sharegpt(val_files, cell_type=cell_type)
    train_examples, train_counts = tokenize_records(train_records, tokenizer, settings["cutoff_len"], split="train")
    val_examples, val_counts = tokenize_records(val_records, tokenizer, settings["cutoff_len"], split="val")

    set_seed(settings["seed"])  # before the model: LoRA's adapter initialisation is random
    model = _load_model(model_path, settings, compute_dtype)
    args = _training_arguments(settings, checkpoints, compute_dtype, max_steps)
    if max_steps is None and settings["min_steps"] is not None:
        args.max_steps = _step_floor(len(train_examples), args, settings)
    progress = _ProgressLog()
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trainer = Trainer(
        model=model, args=args, train_dataset=train_examples, eval_dataset=val_examples, processing_class=tokenizer,
        data_collator=PaddingCollator(pad_token_id, pad_to_multiple_of=8 if torch.cuda.is_available() else None),
        compute_loss_func=answer_loss, callbacks=[progress])

    checkpoint = last_complete_checkpoint(checkpoints, prune_incomplete=trainer.is_world_process_zero())
    resumed_from = int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint else None
    if checkpoint:
        log.info("resuming from %s (step %d)", checkpoint, resumed_from)
    log.info("Stage I (%s, %s) on %d device(s): %d train and %d held-out examples", settings["method"],
             str(compute_dtype).removeprefix("torch."), args.world_size, len(train_examples), len(val_examples))
    metrics = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None).metrics
    train_seconds = metrics["train_runtime"] - progress.eval_seconds
    state = trainer.state
    if not any("eval_loss" in entry and entry["step"] == state.global_step for entry in state.log_history):
        trainer.evaluate()

    curves = loss_frame(state.log_history)
    summary = {
        "method": settings["method"],
        "base_model": str(model_path),
        "train_files": [str(path) for path in train_files],
        "val_files": [str(path) for path in val_files],
        "cell_types": dict(Counter(str(record["cell_type"]) for record in train_records)),
        "data": {"train": asdict(train_counts), "val": asdict(val_counts)},
        **_progress_summary(state, curves, progress, train_seconds, resumed_from),
        "dtype": str(compute_dtype).removeprefix("torch."),
        "devices": args.world_size,
        "settings": {**settings, "max_steps": max_steps},
    }
    log.info("trained to step %d (%d this run) at %.0f tokens/s; held-out loss %s -> %.4f", state.global_step,
             state.global_step - (resumed_from or 0), summary["tokens_per_second"],
             "n/a" if summary["held_out_loss"]["before"] is None else f"{summary['held_out_loss']['before']:.4f}",
             summary["held_out_loss"]["after"])
    if trainer.is_world_process_zero():
        _save_models(trainer.model, tokenizer, out_dir, settings["method"], compute_dtype)
        write_loss_curves(curves, out_dir / "loss.csv", out_dir / "loss.png")
    summary["seconds"] = time.perf_counter() - started
    if trainer.is_world_process_zero():
        write_json(summary, out_dir / "summary.json")  # last: its presence marks a finished run
        if not settings["keep_checkpoints"]:
            shutil.rmtree(checkpoints, ignore_errors=True)  # a 4B model's checkpoint with optimizer state is ~48 GB
    trainer.accelerator.wait_for_everyone()
    return summary
