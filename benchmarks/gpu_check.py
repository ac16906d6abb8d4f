"""One command that runs every GPU path of r3lm once, small, and says what passed.

    python benchmarks/gpu_check.py --out gpu_check/            # on a machine with a CUDA GPU (< 8 min on an H200)
    python benchmarks/gpu_check.py --out gpu_check/ --dry-cpu  # the same steps on the CPU (CI keeps it working)

It travels light: no model download, no JASPAR package, no data. The model is SmolLM2-135M's architecture cut
to 4 layers with seeded random weights and a byte-level BPE tokenizer trained here on synthetic cards; the
cards are synthetic too. Steps, each timed with its peak memory (GPU memory on CUDA, resident memory on the
CPU) and its error's first line when it fails:

  stage1_full, stage1_lora   Stage I in bf16 where the device has it, with activation checkpointing; the full
                             run stops after 2 steps with a checkpoint and a second run resumes it to step 4
  generate_hf, generate_vllm transformers' batched sampling with the rationale grammar as a fallback; vLLM when
                             its build matches the device (skipped with a line when absent or in --dry-cpu)
  stage2_frozen, stage2_lora Stage II on card + rationale inputs, frozen head fit and LoRA
  bundle                     the frozen Stage-II model and the tiny Stage-I model bundled, then scoring new
                             sequences on the device (scan, card, rationale, prediction) at the batch size the
                             bundle picks from the free memory (needs pyjaspar; skipped with a line when absent)
  cnn                        the LegNet baseline on the device
  scan                       the motif scan on the device against the CPU scan, hit for hit (needs pyjaspar;
                             skipped with a line when absent)
  qwen3_4b_stage2, qwen3_4b_stage2_ckpt, qwen3_4b_stage1
                             Qwen3-4B's architecture with random weights: one Stage II LoRA step at the paper
                             config's micro-batch (2 x 2,048 tokens), one with stage2.gradient_checkpointing at
                             the official effective batch in one micro-batch (8 x 2,048), and one full Stage I
                             step (fp32 master weights, fused AdamW, checkpointing), each with the step's peak
                             memory or the out-of-memory it hit (GPU only; skipped in --dry-cpu)

Writes OUT/summary.json: {"device", "torch", "packages", "steps": {name: {"status": pass|fail|skip, "seconds",
"peak_mb", "detail", and "traceback" when it failed}}}; exits 1 when a step failed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import logging
import resource
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from r3lm.config import validate_config
from r3lm.io import write_json
from r3lm.rcc.card import Card
from r3lm.rcc.hits import MotifHit

CELLS = ("K562", "HepG2")
TF_NAMES = ("GATA1", "TAL1::TCF3", "HNF4A", "CEBPB", "SP1", "REST", "FOS::JUN", "ELK1")
CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
                 "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
QWEN3_4B = {"hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "max_position_embeddings": 40960}
PAPER_TOKENS = 2048
PACKAGES = ("transformers", "peft", "accelerate", "vllm", "xgrammar", "pyjaspar")
log = logging.getLogger("gpu_check")


class Skip(Exception):
    """A step that cannot run here, with the reason."""


def synthetic_cards(count: int, seed: int) -> pd.DataFrame:
    """Cards of random 120-bp sequences with 2-4 invented hits, and a compact teacher-style rationale each."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        sequence = "".join(rng.choice(list("ACGT"), size=120))
        hits = tuple(MotifHit(f"MA{k}", name, "Family", "Class", start, start + 9, "+", float(rng.uniform(10, 20)),
                              1e-5) for k, (name, start) in enumerate(zip(
                                  rng.choice(TF_NAMES, size=rng.integers(2, 5), replace=False), (3, 30, 60, 90))))
        cell = CELLS[index % len(CELLS)]
        card = Card(cell, round(float(sum(base in "GC" for base in sequence)) / 120, 3), sequence,
                    tuple(sorted(hits, key=lambda hit: hit.start)))
        level = int(rng.integers(0, 4))
        steps = [f"{hit.name} is a {'strong' if hit.score > 15 else 'weak'} match." for hit in card.motifs]
        steps += [f"GC {card.gc_content:.2f} near the mean."] * (5 - len(steps))
        rationale = ("<think>\n" + "\n".join(f"{n}. {step}" for n, step in enumerate(steps, 1))
                     + f"\n</think>\nConclusion: Activity level: {level}")
        rows.append({"id": f"s{index}", "cell_type": cell, "split": "", "activity": float(rng.normal() + level),
                     "level": level, "card_json": card.to_json(), "card_text": card.to_text(), "sequence": sequence,
                     "rationale": rationale})
    return pd.DataFrame(rows)


def tiny_model(folder: Path, cards: pd.DataFrame) -> Path:
    """SmolLM2-135M's shapes at 4 layers, seeded random weights, and a BPE tokenizer trained on the cards."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    texts = list(cards["card_text"]) + list(cards["rationale"]) + ["system user assistant"] * 10
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=1024, special_tokens=specials,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        bos_token="<|im_start|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=576, intermediate_size=1536, num_hidden_layers=4,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def sharegpt(cards: pd.DataFrame, path: Path) -> Path:
    records = [{"cell_type": row.cell_type, "system": "Explain the card.", "conversations": [
        {"from": "human", "value": row.card_text}, {"from": "gpt", "value": row.rationale}]} for row in cards.itertuples()]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


class Check:
    """The steps and their records; each step gets the work folder and returns a one-line detail."""

    def __init__(self, out: Path, device: str) -> None:
        self.out, self.device, self.steps = out, device, {}
        self.cards = synthetic_cards(48, seed=0)
        self.model: Path | None = None

    def splits(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """32 training, 8 validation and 8 test cards."""
        return self.cards[:32], self.cards[32:40], self.cards[40:]

    def config(self, **sections: Any) -> dict[str, Any]:
        return validate_config(sections)

    def run(self, name: str, step: Callable[[Path], str]) -> None:
        work = self.out / name
        work.mkdir(parents=True, exist_ok=True)
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        try:
            record = {"status": "pass", "detail": step(work)}
        except Skip as reason:
            record = {"status": "skip", "detail": str(reason)}
        except Exception as error:  # noqa: BLE001 - every failure is recorded, and the check goes on
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            record = {"status": "fail", "detail": f"{type(error).__name__}: {message}",
                      "traceback": traceback.format_exc(limit=-8)}
        peak = (torch.cuda.max_memory_allocated() if self.device == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        self.steps[name] = {**record, "seconds": round(time.perf_counter() - started, 2),
                            "peak_mb": round(peak / 2**20, 1)}
        log.info("%-16s %-4s %6.1f s %9.1f MB  %s", name, record["status"], self.steps[name]["seconds"],
                 self.steps[name]["peak_mb"], record["detail"])

    # ---- steps -----------------------------------------------------------------------------------
    def build_model(self, work: Path) -> str:
        self.model = tiny_model(work / "model", self.cards)
        return "4-layer SmolLM2 shapes, random weights, 1k BPE vocabulary"

    def stage1(self, method: str, work: Path) -> str:
        from r3lm.stage1.sft import train_stage1

        train, val = sharegpt(self.cards[:16], work / "train.jsonl"), sharegpt(self.cards[40:44], work / "val.jsonl")
        config = self.config(stage1={"method": method, "batch_size": 2, "gradient_checkpointing": True,
                                     "save_steps": 2, "eval_steps": 4, "keep_checkpoints": True,
                                     "learning_rate": 1e-3, "cutoff_len": 384})
        first = train_stage1(config, self.model, [train], [val], work / "out", max_steps=2)
        resumed = train_stage1(config, self.model, [train], [val], work / "out", max_steps=4)
        if resumed["resumed_from_step"] != 2 or resumed["steps"] != 4:
            raise RuntimeError(f"the second run did not resume at step 2 ({resumed['resumed_from_step']})")
        return (f"{first['dtype']}, held-out loss {first['held_out_loss']['before']:.3f} -> "
                f"{resumed['held_out_loss']['after']:.3f}, resumed at step 2, {resumed['tokens_per_second']:.0f} tokens/s")

    def generate(self, backend: str, work: Path) -> str:
        from r3lm.llm.generate import choose_backend, open_generator

        settings = self.config(generation={"backend": backend, "max_new_tokens": 24, "batch_size": 4,
                                           "max_model_len": 1024})["generation"]
        if backend == "vllm":
            try:
                choose_backend("vllm", self.device)
            except Exception as error:
                raise Skip(str(error).splitlines()[0]) from error
        generator = open_generator(self.model, settings, device=self.device)
        chats = [[{"role": "user", "content": text}] for text in self.cards["card_text"][:4]]
        replies = generator.generate(chats, progress=False)
        tokens = sum(reply.n_new_tokens for reply in replies)
        return f"{generator.backend}: {len(replies)} replies, {tokens} new tokens"

    def stage2(self, training: str, work: Path) -> str:
        from r3lm.stage2.run import SetFiles, run_stage2

        sets = {}
        for split, part in zip(("train", "val", "test"), self.splits(), strict=True):
            paths = [work / f"{name}_{split}.parquet" for name in ("teacher", "cards", "rationales")]
            part = part.assign(split=split)
            part.drop(columns=["card_json", "sequence"]).to_parquet(paths[0], index=False)
            part[["id", "cell_type", "card_json", "card_text"]].to_parquet(paths[1], index=False)
            part[["id", "cell_type", "rationale"]].to_parquet(paths[2], index=False)
            sets[split] = SetFiles(*paths)
        write_json({"levels": {"edges": {cell: [0.5, 1.5, 2.5] for cell in CELLS}}}, work / "summary.json")
        config = self.config(stage2={"training": training, "cutoff_len": 256, "epochs": 1, "batch_size": 4,
                                     "frozen": {"epochs": 3}, "eval_steps": 4})
        summary = run_stage2(config, "generated_cot", self.model, sets, work / "summary.json", work / "work",
                             work / "predictions", progress=False)
        return f"{training} on {summary.get('device', self.device)}, {len(self.cards) - 40} test rows predicted"

    def bundle(self, work: Path) -> str:
        from r3lm.deploy.bundle import write_bundle
        from r3lm.deploy.scorer import R3LM
        from r3lm.layout import SPLITS
        from r3lm.stage1.models import SHARED, Stage1Models

        if importlib.util.find_spec("pyjaspar") is None:
            raise Skip("no JASPAR matrices here (pyjaspar absent): a bundle scans every new sequence")
        models = self.out / "stage2_frozen" / "work" / "model"
        if not models.is_dir():
            raise RuntimeError("stage2_frozen wrote no model to bundle")
        data = work / "data"
        data.mkdir(exist_ok=True)
        for split, part in zip(SPLITS, self.splits(), strict=True):
            part[["id", "cell_type", "sequence", "activity"]].to_parquet(data / f"{split}.parquet", index=False)
        shutil.copy(self.out / "stage2_frozen" / "summary.json", data / "summary.json")
        config = self.config(generation={"max_new_tokens": 24}, stage2={"cutoff_len": 256})
        write_bundle(config, "generated_cot", models, Stage1Models({SHARED: str(self.model)}), data, work / "bundle")
        model = R3LM.load(work / "bundle", device=self.device)
        queries = self.cards[40:]
        scored = model.score(dict(zip(queries["id"], queries["sequence"])), "K562")
        if len(scored) != len(queries) or not np.isfinite(scored["predicted"]).all():
            raise RuntimeError(f"{len(scored)} predictions for {len(queries)} sequences, or some not finite")
        return f"{len(scored)} sequences scored on {model.device}, automatic batch size {model.batch_size}"

    def cnn(self, work: Path) -> str:
        from r3lm.baselines.cnn import fit_cnn

        rows = self.cards.assign(split="train")
        fit = fit_cnn({"stem_channels": 16, "stage_channels": [16, 16], "expansion": 2, "epochs": 3,
                       "batch_size": 16, "patience": 0, "device": self.device}, rows[:40], rows[40:], progress=False)
        return f"{fit.device}, {len(fit.curve)} epochs"

    def scan(self, work: Path) -> str:
        try:
            from r3lm.motifs.scan import background_for, build_motif_set, scan_sequences
            motifs = self.config()["motifs"]
            motif_set = build_motif_set(motifs, background_for(motifs, []))
        except ImportError as error:
            raise Skip(f"no JASPAR matrices here ({error})") from error
        ids, sequences = list(self.cards["id"]), list(self.cards["sequence"])
        on_cpu = scan_sequences(ids, sequences, motif_set, device="cpu", progress=False)
        on_device = scan_sequences(ids, sequences, motif_set, device=self.device, progress=False)
        keys = ["seq_id", "matrix_id", "start", "strand"]
        same = on_cpu.sort_values(keys).reset_index(drop=True).equals(on_device.sort_values(keys).reset_index(drop=True))
        if not same:
            raise RuntimeError(f"{len(on_device)} hits on {self.device} against {len(on_cpu)} on the CPU differ")
        return f"{len(on_cpu)} hits, identical on {self.device} and the CPU"

    def qwen3_4b(self, stage: int, batch: int, work: Path, *, checkpointing: bool = False) -> str:
        """Stage II as r3lm runs it (bf16 base, the config's LoRA through `attach_lora`, the last token's state);
        Stage I as Trainer runs it (fp32 master weights, bf16 autocast, checkpointing, fused AdamW)."""
        if self.device != "cuda":
            raise Skip("a GPU-only measurement")
        from transformers import Qwen3Config, Qwen3ForCausalLM

        from r3lm.stage2.model import attach_lora

        with torch.device("cuda"):
            model = Qwen3ForCausalLM(Qwen3Config(**QWEN3_4B)).to(torch.bfloat16 if stage == 2 else torch.float32)
        tokens = torch.randint(0, QWEN3_4B["vocab_size"], (batch, PAPER_TOKENS), device="cuda")
        torch.cuda.reset_peak_memory_stats()  # the step's peak, not the float32 construction's
        try:
            if stage == 2:
                model.model.config.use_cache = False
                model = attach_lora(model.model, self.config()["stage2"]["lora"], checkpointing=checkpointing)
                loss = model(input_ids=tokens).last_hidden_state[:, -1].float().pow(2).mean()
            else:
                model.gradient_checkpointing_enable()
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = model(input_ids=tokens, labels=tokens).loss
            loss.backward()
            if stage == 1:
                torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True).step()  # Trainer's default optimiser
            torch.cuda.synchronize()
        except torch.cuda.OutOfMemoryError as error:
            raise RuntimeError(f"out of memory: {str(error).splitlines()[0]}") from error
        finally:
            del model
            torch.cuda.empty_cache()
        return f"one step at {batch} x {PAPER_TOKENS} tokens" + (", activation checkpointing" if checkpointing else "")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for summary.json and each step's files")
    parser.add_argument("--dry-cpu", action="store_true", help="run every step on the CPU (no vLLM, no Qwen3-4B)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("r3lm", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    device = "cpu" if args.dry_cpu else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU is visible to torch; use --dry-cpu to check the CPU path", file=sys.stderr)
        return 2
    out = Path(args.out)
    check = Check(out, device)
    check.run("tiny_model", check.build_model)
    check.run("stage1_full", lambda work: check.stage1("full", work))
    check.run("stage1_lora", lambda work: check.stage1("lora", work))
    check.run("generate_hf", lambda work: check.generate("hf", work))
    if args.dry_cpu:
        check.steps["generate_vllm"] = {"status": "skip", "detail": "--dry-cpu", "seconds": 0.0, "peak_mb": 0.0}
    else:
        check.run("generate_vllm", lambda work: check.generate("vllm", work))
    check.run("stage2_frozen", lambda work: check.stage2("frozen", work))
    check.run("stage2_lora", lambda work: check.stage2("lora", work))
    check.run("bundle", check.bundle)
    check.run("cnn", check.cnn)
    check.run("scan", check.scan)
    check.run("qwen3_4b_stage2", lambda work: check.qwen3_4b(2, 2, work))
    check.run("qwen3_4b_stage2_ckpt", lambda work: check.qwen3_4b(2, 8, work, checkpointing=True))
    check.run("qwen3_4b_stage1", lambda work: check.qwen3_4b(1, 1, work))
    write_json({"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
                "packages": {name: _version(name) for name in PACKAGES}, "steps": check.steps}, out / "summary.json")
    failed = [name for name, step in check.steps.items() if step["status"] == "fail"]
    print(f"gpu_check: {len(check.steps) - len(failed)} of {len(check.steps)} steps passed or skipped"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
