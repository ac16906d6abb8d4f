"""Stage I training throughput: the workflow's `train_stage1` against a raw training step of the same model.

One run measures three things on the same examples (the demo's teacher rationales, or any ShareGPT folder)
and the same batch size, as non-padding tokens per second of optimizer steps:
  raw fp32   a plain loop: float32 weights, the model's own loss over every position, AdamW;
  raw bf16   the same loop with pure bfloat16 weights (no float32 master copy: the fastest, not the safest);
  workflow   `r3lm.stage1.sft.train_stage1` (Trainer, bf16 autocast over float32 master weights where the
             CPU has native bf16, logits for the answers only), with evaluation and checkpoints out of the way.
The issue's goal is workflow / raw fp32 >= 1.3. Prints one line per measurement and a JSON summary line.

    python benchmarks/stage1.py [--train DIR] [--steps 10] [--batch-size 4] [--model FOLDER]
"""

from __future__ import annotations

import argparse
import glob
import json
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from r3lm.config import validate_config
from r3lm.llm.base import native_bf16, prepare_embedded_model, resolve_base
from r3lm.stage1.sft import load_sharegpt, tokenize_records, train_stage1

DEMO_TRAIN = "results/demo/reasoning/*/sharegpt/stage1_train"


def right_padded(features: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """A plain batch as a textbook loop builds it: right padding, labels over every position."""
    width = max(len(feature["input_ids"]) for feature in features)
    batch = {"input_ids": torch.full((len(features), width), pad_id), "labels": torch.full((len(features), width), -100),
             "attention_mask": torch.zeros((len(features), width), dtype=torch.long)}
    for row, feature in enumerate(features):
        length = len(feature["input_ids"])
        batch["input_ids"][row, :length] = torch.tensor(feature["input_ids"])
        batch["labels"][row, :length] = torch.tensor(feature["labels"])
        batch["attention_mask"][row, :length] = 1
    return batch


def raw_tokens_per_s(model_dir: str, batches: list[dict[str, torch.Tensor]], dtype: torch.dtype) -> float:
    """Optimizer steps over `batches` after one warm-up step; non-padding tokens per second."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).train()
    model.config.use_cache = False
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step(batch: dict[str, torch.Tensor]) -> None:
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step(batches[0])
    started = time.perf_counter()
    for batch in batches[1:]:
        step(batch)
    tokens = sum(int(batch["attention_mask"].sum()) for batch in batches[1:])
    return tokens / (time.perf_counter() - started)


def workflow_tokens_per_s(model_dir: str, records_file: Path, steps: int, batch_size: int, out: Path) -> float:
    config = validate_config({"stage1": {"batch_size": batch_size, "gradient_accumulation": 1,
                                         "gradient_checkpointing": False, "epochs": 1, "learning_rate": 1e-4,
                                         "save_steps": 10 * steps, "eval_steps": 10 * steps}})
    summary = train_stage1(config, model_dir, [records_file], [records_file], out, max_steps=steps)
    return summary["tokens_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default=None, help=f"ShareGPT folder or file (default: {DEMO_TRAIN})")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--model", default=None, help="model folder (default: the embedded SmolLM2-135M-Instruct)")
    args = parser.parse_args()
    model_dir = args.model or str(prepare_embedded_model(
        validate_config({})["llm"], resolve_base(validate_config({})["llm"])))
    train = args.train or next(iter(sorted(glob.glob(DEMO_TRAIN))), None)
    if train is None:
        raise SystemExit(f"no teacher rationales at {DEMO_TRAIN}: run the demo up to its teacher step, or give --train")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    needed = (args.steps + 1) * args.batch_size
    records = load_sharegpt([train])[:needed]
    examples, _ = tokenize_records(records, tokenizer, 2048, split="train")
    batches = [right_padded(examples[start:start + args.batch_size], tokenizer.pad_token_id)
               for start in range(0, len(examples), args.batch_size)]

    results = {"threads": torch.get_num_threads(), "native_bf16": native_bf16("cpu"), "steps": args.steps,
               "batch_size": args.batch_size,
               "raw_fp32": raw_tokens_per_s(model_dir, batches, torch.float32),
               "raw_bf16": raw_tokens_per_s(model_dir, batches, torch.bfloat16)}
    with tempfile.TemporaryDirectory(prefix="r3lm-bench-stage1-") as scratch:
        records_file = Path(scratch) / "train.jsonl"
        lines = [json.dumps(json.loads(line)) for line in Path(records[0]["path"]).read_text().splitlines()[:needed]]
        records_file.write_text("\n".join(lines) + "\n")
        results["workflow"] = workflow_tokens_per_s(model_dir, records_file, args.steps, args.batch_size,
                                                     Path(scratch) / "out")
    for name in ("raw_fp32", "raw_bf16", "workflow"):
        print(f"{name:9s} {results[name]:7.1f} tokens/s")
    results["workflow_over_raw_fp32"] = results["workflow"] / results["raw_fp32"]
    results["workflow_over_raw_bf16"] = results["workflow"] / results["raw_bf16"]
    print(f"workflow / raw fp32 = {results['workflow_over_raw_fp32']:.2f} (goal >= 1.3); "
          f"workflow / raw bf16 = {results['workflow_over_raw_bf16']:.2f}")
    print(json.dumps({key: round(value, 3) if isinstance(value, float) else value for key, value in results.items()}))


if __name__ == "__main__":
    main()
