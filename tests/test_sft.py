"""Stage I fine-tuning on a tiny random Llama with a ChatML tokenizer trained here, so the tests need no download."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from r3lm.config import validate_config
from r3lm.errors import InputError
from r3lm.llm.base import native_bf16
from r3lm.rationale.format import compose, parse, student_messages
from r3lm.stage1.sft import (
    IGNORE_INDEX,
    PaddingCollator,
    _training_arguments,
    answer_loss,
    encode_conversation,
    last_complete_checkpoint,
    load_sharegpt,
    tokenize_records,
    train_stage1,
)

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CELL_TYPES = ("HepG2", "K562", "SK-N-SH")
# each motif pushes activity up or down in every cell type, so the level (and the rationale) follows from the card
MOTIFS = {"HNF4A": ("Nuclear receptors with C4 zinc fingers", 1), "GATA1": ("C4-type zinc fingers of the GATA type", 1),
          "CEBPB": ("Basic leucine zipper factors", 1), "ZEB1": ("C2H2 zinc finger factors", -1),
          "REST": ("C2H2 zinc finger factors", -1), "SP1": ("C2H2 zinc finger factors", 1)}
LEVEL_NAMES = ("low", "weak", "moderate", "high")
SYSTEM = "You are an expert in regulatory genomics. Reason step by step, then state 'Activity level: N'."


def _record(index: int, rng: random.Random) -> dict[str, Any]:
    """A card and a rationale that states the card's motifs and the level their signs add up to."""
    cell_type = rng.choice(CELL_TYPES)
    names = rng.sample(sorted(MOTIFS), rng.randint(1, 3))
    sequence = "".join(rng.choice("ACGT") for _ in range(24))
    motif_lines = [f"- {name} (Family: {MOTIFS[name][0]}, Score: {rng.uniform(8, 15):.2f}, Strand: +, "
                   f"Pos: {rng.randint(1, 12)}-{rng.randint(13, 24)})" for name in names]
    card = "\n".join(["Context:", f"- Cell Type: {cell_type}", f"- GC Content: {rng.uniform(0.3, 0.7):.3f}",
                      "", "Identified Motifs:", *motif_lines, "", "DNA Sequence:", f"{sequence} (Total Length: 24)"])
    level = min(3, max(0, 1 + sum(MOTIFS[name][1] for name in names)))
    steps = [f"{name} is an {'activator' if MOTIFS[name][1] > 0 else 'repressor'} in {cell_type}." for name in names]
    rationale = compose(steps, f"Conclusion: the motifs set the activity. Activity level: {level} "
                               f"({LEVEL_NAMES[level]}).")
    user = student_messages(card, SYSTEM)[1]["content"]
    return {"id": f"seq{index}", "cell_type": cell_type, "system": SYSTEM,
            "conversations": [{"from": "human", "value": user}, {"from": "gpt", "value": rationale}]}


def make_records(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [_record(index, rng) for index in range(count)]


def write_jsonl(records: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer Llama and a byte-level BPE tokenizer (trained on generated records) with a ChatML template."""
    folder = tmp_path_factory.mktemp("tiny_chat_model")
    texts = [f"system\n{SYSTEM}\nuser\n{record['conversations'][0]['value']}\nassistant\n"
             f"{record['conversations'][1]['value']}" for record in make_records(200, seed=99)]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=1024, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        bos_token="<|im_start|>")
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def chat_tokenizer(tiny_chat_model: Path) -> Any:
    return AutoTokenizer.from_pretrained(tiny_chat_model)


@pytest.fixture(scope="session")
def sharegpt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sharegpt")
    return {"train": write_jsonl(make_records(32, seed=1), folder / "train" / "records.jsonl"),
            "val": write_jsonl(make_records(8, seed=2), folder / "val.jsonl")}


def stage1_config(**stage1: Any) -> dict[str, Any]:
    """Settings for a few quick steps on the tiny model: a high learning rate so a short run visibly learns."""
    defaults = {"learning_rate": 3e-3, "batch_size": 4, "gradient_accumulation": 1, "warmup_ratio": 0.1,
                "eval_steps": 8, "save_steps": 8, "epochs": 1}
    return validate_config({"stage1": {**defaults, **stage1}})


# ---- Records ----

def test_load_sharegpt_maps_turns_to_chat_messages(sharegpt: dict[str, Path]) -> None:
    records = load_sharegpt([sharegpt["train"].parent, sharegpt["val"]])  # a directory and a file
    assert len(records) == 32 + 8
    first = records[0]
    assert [message["role"] for message in first["messages"]] == ["system", "user", "assistant"]
    assert first["messages"][0]["content"] == SYSTEM
    assert first["messages"][2]["content"].startswith("<think>\n1. ")
    assert parse(first["messages"][2]["content"]).level is not None
    assert (first["id"], first["path"], first["line"]) == ("seq0", str(sharegpt["train"]), 1)


def test_a_per_cell_type_model_learns_from_its_own_cell_type_alone(tiny_chat_model: Path, sharegpt: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    """stage1-train --cell-type: the official per-cell-type Stage I; records of other cell types are left out."""
    cell = CELL_TYPES[0]
    records = load_sharegpt([sharegpt["train"]], cell_type=cell)
    expected = [record["id"] for record in make_records(32, seed=1) if record["cell_type"] == cell]
    assert [record["id"] for record in records] == expected and 0 < len(expected) < 32
    summary = train_stage1(stage1_config(gradient_checkpointing=False), tiny_chat_model, [sharegpt["train"]],
                           [sharegpt["val"]], tmp_path / cell, max_steps=1, cell_type=cell)
    assert summary["cell_types"] == {cell: len(expected)} and summary["data"]["train"]["records"] == len(expected)
    with pytest.raises(InputError, match="no ShareGPT records for cell type Jurkat"):
        load_sharegpt([sharegpt["train"]], cell_type="Jurkat")


def _turns(human: Any = "card", gpt: Any = "<think>\n1. x\n</think>\nActivity level: 1") -> list[Any]:
    return [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]


@pytest.mark.parametrize(("line", "field", "message"), [
    ('{"conversations": [', None, "not valid JSON"),
    ('["a list"]', None, "JSON object"),
    (json.dumps({"id": "x"}), "conversations", "two turns"),
    (json.dumps({"conversations": _turns()[:1]}), "conversations", "two turns"),
    (json.dumps({"conversations": _turns()[::-1]}), "conversations[0].from", "'human'"),
    (json.dumps({"conversations": _turns(gpt="  ")}), "conversations[1].value", "non-empty string"),
    (json.dumps({"conversations": _turns(human=3)}), "conversations[0].value", "non-empty string"),
    (json.dumps({"conversations": ["text", "text"]}), "conversations[0]", "'from' and 'value'"),
    (json.dumps({"system": ["a"], "conversations": _turns()}), "system", "string"),
])
def test_malformed_record_names_file_line_and_field(tmp_path: Path, line: str, field: str | None,
                                                    message: str) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "ok", "conversations": _turns()})
    path.write_text(f"{good}\n\n{line}\n")  # the blank line is skipped but still counted
    with pytest.raises(InputError) as caught:
        load_sharegpt([path])
    error = caught.value
    assert (error.path, error.row, error.column) == (str(path), 3, field)
    assert str(error).startswith(f"{path}, row 3") and message in str(error)


@pytest.mark.parametrize(("name", "message"), [("missing.jsonl", "no such file"), ("no_jsonl", "no *.jsonl"),
                                               ("blank.jsonl", "no ShareGPT records")])
def test_missing_or_empty_inputs_are_input_errors(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "no_jsonl").mkdir()
    (tmp_path / "blank.jsonl").write_text("\n")
    with pytest.raises(InputError, match=message) as caught:
        load_sharegpt([tmp_path / name])
    assert caught.value.path == str(tmp_path / name)


# ---- Tokenisation ----

def test_labels_cover_exactly_the_assistant_turn(chat_tokenizer: Any, sharegpt: dict[str, Path]) -> None:
    for record in load_sharegpt([sharegpt["val"]])[:5]:
        input_ids, labels = encode_conversation(chat_tokenizer, record)
        assert len(input_ids) == len(labels)
        trained = [index for index, label in enumerate(labels) if label != IGNORE_INDEX]
        first = trained[0]
        assert trained == list(range(first, len(labels)))  # one contiguous span at the end
        assert [input_ids[index] for index in trained] == [labels[index] for index in trained]
        assert chat_tokenizer.decode(labels[first:]) == record["messages"][-1]["content"] + "<|im_end|>"
        prompt = chat_tokenizer.apply_chat_template(record["messages"][:-1], tokenize=False,
                                                    add_generation_prompt=True)
        assert chat_tokenizer.decode(input_ids[:first]) == prompt  # system and user turns: never trained


def test_template_whose_prompt_is_not_a_prefix_is_rejected(tiny_chat_model: Path, sharegpt: dict[str, Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model)
    tokenizer.chat_template = CHATML.replace("<|im_start|>assistant", "<|im_start|>model")
    record = load_sharegpt([sharegpt["val"]])[0]
    with pytest.raises(InputError, match="prefix") as caught:
        encode_conversation(tokenizer, record)
    assert (caught.value.path, caught.value.row) == (str(sharegpt["val"]), 1)


def test_truncated_and_dropped_examples_are_counted(chat_tokenizer: Any, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    records = make_records(6, seed=3)
    records[1]["conversations"][0]["value"] += " padding" * 400  # the prompt alone exceeds the cutoff
    records[2]["conversations"][1]["value"] += " more" * 300  # the answer is cut, but part of it stays
    loaded = load_sharegpt([write_jsonl(records, tmp_path / "r.jsonl")])
    with caplog.at_level(logging.WARNING, logger="r3lm.stage1.sft"):
        examples, counts = tokenize_records(loaded, chat_tokenizer, 256, split="train")
    assert (counts.records, counts.examples, counts.truncated, counts.dropped_no_assistant_tokens) == (6, 5, 2, 1)
    assert all(len(example["input_ids"]) <= 256 for example in examples)
    assert counts.tokens == sum(len(example["input_ids"]) for example in examples)
    assert counts.longest_before_truncation > 256
    assert "truncated 2 of 6" in caplog.text and "dropped 1 of 6" in caplog.text
    with pytest.raises(InputError, match="every train example was dropped"):
        tokenize_records(loaded[1:2], chat_tokenizer, 256, split="train")


def test_collator_pads_left_and_keeps_logits_for_the_answers_only() -> None:
    batch = PaddingCollator(pad_token_id=0, pad_to_multiple_of=4)([
        {"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7]}, {"input_ids": [8, 9], "labels": [IGNORE_INDEX, 9]}])
    assert batch["input_ids"].tolist() == [[0, 5, 6, 7], [0, 0, 8, 9]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 6, 7], [IGNORE_INDEX] * 3 + [9]]
    assert batch["attention_mask"].tolist() == [[0, 1, 1, 1], [0, 0, 1, 1]]
    assert batch["position_ids"].tolist() == [[0, 0, 1, 2], [0, 0, 0, 1]]
    assert batch["logits_to_keep"] == 3  # the columns from the one before the first trained label


def test_answer_loss_equals_the_full_causal_lm_loss(tiny_chat_model: Path) -> None:
    """Keeping logits for the answers only changes no number: same loss as the model's own over all columns."""
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_model).eval()
    generator = torch.Generator().manual_seed(0)
    features = [{"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]}
                for ids, prompt in ((torch.randint(3, 200, (length,), generator=generator).tolist(), prompt)
                                    for length, prompt in ((40, 30), (25, 10), (33, 32)))]
    batch = PaddingCollator(pad_token_id=0)(features)
    with torch.no_grad():
        kept = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     position_ids=batch["position_ids"], logits_to_keep=batch["logits_to_keep"])
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     position_ids=batch["position_ids"], labels=batch["labels"])
    assert kept.logits.shape[1] == batch["logits_to_keep"] == 16  # row 2 is padded by 15 and trains from 25
    assert answer_loss(kept, batch["labels"]).item() == pytest.approx(full.loss.item(), rel=1e-5)


# ---- Training ----

def _check_outputs(out: Path, summary: dict[str, Any], steps: int, *, min_drop: float = 0.5) -> pd.DataFrame:
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    curves = pd.read_csv(out / "loss.csv")
    assert list(curves.columns) == ["step", "epoch", "split", "loss", "learning_rate"]
    train, val = curves[curves["split"] == "train"], curves[curves["split"] == "val"]
    assert train["step"].tolist() == list(range(1, steps + 1))
    assert val["step"].iloc[0] == 0 and val["step"].iloc[-1] == steps  # held-out loss before and after
    assert summary["held_out_loss"] == {"before": val["loss"].iloc[0], "after": val["loss"].iloc[-1]}
    assert summary["held_out_loss"]["after"] < summary["held_out_loss"]["before"] - min_drop
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["steps"] == steps and summary["data"]["train"]["examples"] == 32
    assert summary["tokens_per_second"] > 0
    assert not [path.name for path in out.iterdir() if path.name.startswith(".")]  # no temporary leftovers

    model = AutoModelForCausalLM.from_pretrained(out / "model")
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    prompt = tokenizer.apply_chat_template(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Context:\n- Cell Type: K562"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    generated = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]
    return curves


def test_min_steps_floors_what_the_epochs_give_and_says_so(tiny_chat_model: Path, sharegpt: dict[str, Path],
                                                           tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """stage1.min_steps: one cell type's 8 records at batch 4 give 2 steps an epoch; the floor trains 5 (2.5
    epochs) and warns what to change; an epoch count that reaches the floor is left alone."""
    records = load_sharegpt([sharegpt["train"]], cell_type=CELL_TYPES[0])
    per_epoch = -(-len(records) // 4)
    with caplog.at_level("WARNING", logger="r3lm.stage1.sft"):
        summary = train_stage1(stage1_config(gradient_checkpointing=False, min_steps=per_epoch + 3), tiny_chat_model,
                               [sharegpt["train"]], [sharegpt["val"]], tmp_path / "floor", cell_type=CELL_TYPES[0])
    assert summary["steps"] == per_epoch + 3 and summary["epochs"] > 1
    assert f"fewer than stage1.min_steps={per_epoch + 3}" in caplog.text and "reasoning.sets.stage1_train" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="r3lm.stage1.sft"):
        summary = train_stage1(stage1_config(gradient_checkpointing=False, min_steps=per_epoch, epochs=1),
                               tiny_chat_model, [sharegpt["train"]], [sharegpt["val"]], tmp_path / "epochs",
                               cell_type=CELL_TYPES[0])
    assert summary["steps"] == per_epoch and "min_steps" not in caplog.text


def test_the_paper_config_clips_stage1_gradients_at_200_as_the_official_stage1_sft_yaml(tmp_path: Path) -> None:
    """The official configs/stage1_sft.yaml (github DuanYi516/R3LM) trains Stage I with max_grad_norm: 200.0. The
    paper config's stage1 block says so, and the Trainer Stage I builds clips at stage1.max_grad_norm, never at
    stage2's (the demo's stage1 keeps the schema's 1.0 whatever stage2 says)."""
    paper = validate_config(yaml.safe_load((Path(__file__).resolve().parents[1] / "config/gosai2024.yaml").read_text()))
    assert _training_arguments(paper["stage1"], tmp_path, torch.float32, None).max_grad_norm == 200.0
    demo = validate_config({"stage2": {"max_grad_norm": 200.0}})
    assert _training_arguments(demo["stage1"], tmp_path, torch.float32, None).max_grad_norm == 1.0


def test_full_fine_tuning_lowers_held_out_loss(tiny_chat_model: Path, sharegpt: dict[str, Path],
                                               tmp_path: Path) -> None:
    out = tmp_path / "full"
    # activation checkpointing is covered by the LoRA test, where it needs input gradients to work
    summary = train_stage1(stage1_config(gradient_checkpointing=False), tiny_chat_model, [sharegpt["train"]],
                           [sharegpt["val"]], out, max_steps=12)
    _check_outputs(out, summary, steps=12)
    expected_dtype = "bfloat16" if native_bf16("cpu") else "float32"  # auto: what this CPU computes natively
    assert summary["method"] == "full" and summary["dtype"] == expected_dtype and summary["resumed_from_step"] is None
    assert not (out / "adapter").exists()
    assert not (out / "checkpoints").exists()  # removed once the run finished (keep_checkpoints: false)


def test_lora_lowers_held_out_loss_and_writes_adapter(tiny_chat_model: Path, sharegpt: dict[str, Path],
                                                      tmp_path: Path) -> None:
    out = tmp_path / "lora"
    config = stage1_config(method="lora", learning_rate=5e-3, lora={"r": 16, "alpha": 32, "dropout": 0.0})
    summary = train_stage1(config, tiny_chat_model, [sharegpt["train"]], [sharegpt["val"]], out, max_steps=12)
    # adapters on a random base (frozen embeddings and lm_head) learn more slowly than full fine-tuning
    _check_outputs(out, summary, steps=12, min_drop=0.25)
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and "lm_head" not in adapter["target_modules"]
    merged = AutoModelForCausalLM.from_pretrained(out / "model")
    assert not any("lora" in name for name in merged.state_dict())  # merged into a plain model


def test_rerun_resumes_from_the_last_checkpoint(tiny_chat_model: Path, sharegpt: dict[str, Path],
                                                tmp_path: Path) -> None:
    out = tmp_path / "resume"
    # a finished run extended to more steps resumes like a killed one (keep_checkpoints keeps its last state)
    config = stage1_config(save_steps=4, eval_steps=4, gradient_checkpointing=False, keep_checkpoints=True)
    first = train_stage1(config, tiny_chat_model, [sharegpt["train"]], [sharegpt["val"]], out, max_steps=8)
    first_curves = pd.read_csv(out / "loss.csv")
    assert last_complete_checkpoint(out / "checkpoints", prune_incomplete=False).name == "checkpoint-8"
    (out / "checkpoints" / "checkpoint-12").mkdir()  # a save that a kill interrupted: ignored and removed

    second = train_stage1(config, tiny_chat_model, [sharegpt["train"]], [sharegpt["val"]], out, max_steps=12)
    assert second["resumed_from_step"] == 8 and second["steps"] == 12
    assert second["tokens_trained_this_run"] < first["tokens_trained_this_run"]  # 4 steps, not 12
    state = json.loads((out / "checkpoints" / "checkpoint-12" / "trainer_state.json").read_text())
    assert state["global_step"] == 12
    curves = _check_outputs(out, second, steps=12)
    # the history before the checkpoint is the first run's, not a restart
    assert curves[curves["step"] <= 8].equals(first_curves)
    assert second["held_out_loss"]["before"] == first["held_out_loss"]["before"]
