"""The openai teacher against a stub OpenAI-compatible server on 127.0.0.1: retries, concurrency,
the resumable cache, invalid answers, and the API key staying out of every file and log."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from r3lm.config import validate_config
from r3lm.errors import InputError
from r3lm.rcc.card import Card
from r3lm.rcc.hits import MotifHit
from r3lm.reasoning.evidence import Evidence
from r3lm.reasoning.openai_backend import (
    EndpointError,
    OpenAIBackend,
    retry_after_seconds,
)
from r3lm.reasoning.teacher import run_teacher, write_teacher_set
from r3lm.steps.reasoning_steps import write_evidence

KEY_ENV = "R3LM_TEST_OPENAI_KEY"
SECRET = "sk-test-SECRET-0123456789"
VOCABULARY = frozenset({"GATA1::TAL1", "HNF4A", "REST"})
EMPTY_EVIDENCE = Evidence(n_levels=4, pseudocount=1.0, features={}, gc={})


@dataclass
class StubState:
    """What the stub server does and what it saw."""

    fail_first: list[int] = field(default_factory=list)  # statuses for the first requests
    fail_after: int | None = None  # after this many answers, every request gets HTTP 500
    status: int | None = None  # answer every request with this status (and the Authorization header echoed)
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    answered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def canned_answer(prompt: str) -> str:
    """A valid grounded-style rationale built from the prompt: every step cites the card's GC content."""
    if "Cell Type: BadCell" in prompt:
        return "I think this sequence is active. Activity level: 2"
    gc = re.search(r"GC Content: (\d\.\d{3})", prompt).group(1)
    level = re.search(r"is level (\d)", prompt).group(1)
    steps = [f"{i}. Observation {i}: the GC content of {gc} shapes activity." for i in range(1, 6)]
    return "<think>\n" + "\n".join(steps) + f"\n</think>\nConclusion: As measured. Activity level: {level}."


def make_handler(state: StubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep the test output quiet
            pass

        def reply(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                index = len(state.requests)
                state.requests.append({"path": self.path, "authorization": self.headers.get("Authorization"),
                                       "body": body})
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                time.sleep(state.delay)
                with state.lock:
                    failing = state.fail_after is not None and state.answered >= state.fail_after
                    if not failing and index >= len(state.fail_first) and state.status is None:
                        state.answered += 1
                if state.status is not None:
                    self.reply(state.status, {"error": f"bad key {self.headers.get('Authorization')}"})
                elif index < len(state.fail_first):
                    self.reply(state.fail_first[index], {"error": "busy"}, {"Retry-After": "0"})
                elif failing:
                    self.reply(500, {"error": "down"})
                else:
                    answer = canned_answer(body["messages"][-1]["content"])
                    self.reply(200, {"id": f"c{index}", "object": "chat.completion", "model": body["model"],
                                     "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                                  "finish_reason": "stop"}]})
            finally:
                with state.lock:
                    state.in_flight -= 1

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, StubState]]:
    state = StubState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)


def openai_config(base_url: str, **openai: Any) -> dict[str, Any]:
    settings = {"base_url": base_url, "model": "stub-model", "api_key_env": KEY_ENV, "max_retries": 3,
                "backoff_seconds": 0.001, "concurrency": 3, "timeout_seconds": 10, "attempts_per_card": 3, **openai}
    return validate_config({"reasoning": {"teacher": "openai", "openai": settings}})


def cards(n: int = 12, bad: int = 0) -> pd.DataFrame:
    """n small cards over two cell types (the last `bad` in BadCell, which the stub answers badly)."""
    rows = []
    for i in range(n):
        cell = "BadCell" if i >= n - bad else ("K562" if i % 2 else "HepG2")
        sequence = ("ACGT" * 50)[: 100 + i] + "G" * (i % 5)
        hit = MotifHit("MA0140.3", "GATA1::TAL1", "C4-GATA-related; Tal-related", "c", 5, 21, "+", 14.2, 1e-6)
        gc = (sequence.count("G") + sequence.count("C")) / len(sequence)
        card = Card(cell, gc, sequence, (hit,) if i % 3 else ())
        rows.append({"id": f"seq{i}", "cell_type": cell, "split": "train", "activity": i / n, "level": i % 4,
                     "card_json": card.to_json(), "card_text": card.to_text()})
    return pd.DataFrame(rows)


def backend(config: dict[str, Any], cache_dir: Path | None) -> OpenAIBackend:
    return OpenAIBackend(config["reasoning"]["openai"], cache_dir=cache_dir, seed=0)


def run(config: dict[str, Any], table: pd.DataFrame, cache_dir: Path | None) -> tuple[pd.DataFrame, OpenAIBackend]:
    teacher = backend(config, cache_dir)
    frame = run_teacher(config, table, EMPTY_EVIDENCE, backend=teacher, vocabulary=VOCABULARY, progress=False)
    return frame, teacher


def test_valid_answers_with_retries_on_500_and_429(server: tuple[str, StubState], tmp_path: Path) -> None:
    url, state = server
    state.fail_first = [500, 429]
    frame, teacher = run(openai_config(url), cards(6), tmp_path / "cache")
    assert frame["valid"].all() and (frame["attempts"] == 1).all() and (frame["backend"] == "openai").all()
    assert len(state.requests) == 6 + 2
    assert teacher.stats() == {"requests": 8, "cache_hits": 0, "retries": 2, "answers": 6}
    request = state.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "stub-model" and request["body"]["temperature"] == 0.7
    assert request["body"]["messages"][0]["role"] == "system" and "measured activity" in \
        request["body"]["messages"][1]["content"]


def test_concurrency_limit_is_respected(server: tuple[str, StubState], tmp_path: Path) -> None:
    url, state = server
    state.delay = 0.05
    frame, _ = run(openai_config(url, concurrency=3), cards(12), None)
    assert frame["valid"].all() and len(state.requests) == 12
    assert 2 <= state.max_in_flight <= 3


def test_cache_makes_a_rerun_free(server: tuple[str, StubState], tmp_path: Path) -> None:
    url, state = server
    config = openai_config(url)
    first, _ = run(config, cards(8), tmp_path / "cache")
    assert len(state.requests) == 8 and len(list((tmp_path / "cache").rglob("*.json"))) == 8
    second, teacher = run(config, cards(8), tmp_path / "cache")
    assert len(state.requests) == 8 and teacher.stats()["cache_hits"] == 8
    assert second["rationale"].tolist() == first["rationale"].tolist()


def test_killed_run_resumes_with_only_the_missing_requests(server: tuple[str, StubState], tmp_path: Path) -> None:
    url, state = server
    state.fail_after = 5
    config = openai_config(url, max_retries=0, concurrency=1)
    with pytest.raises(EndpointError, match="HTTP 500"):
        run(config, cards(12), tmp_path / "cache")
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 5
    state.fail_after, state.requests = None, []
    frame, teacher = run(config, cards(12), tmp_path / "cache")
    assert frame["valid"].all()
    assert len(state.requests) == 12 - 5 and teacher.stats()["cache_hits"] == 5


def test_invalid_answers_are_retried_then_rejected(server: tuple[str, StubState], tmp_path: Path) -> None:
    url, state = server
    frame, teacher = run(openai_config(url, attempts_per_card=3), cards(10, bad=2), tmp_path / "cache")
    bad = frame[frame["cell_type"] == "BadCell"]
    assert len(bad) == 2 and not bad["valid"].any() and (bad["reject_reason"] == "missing_think").all()
    assert (bad["attempts"] == 3).all() and frame.loc[frame["cell_type"] != "BadCell", "valid"].all()
    assert len(state.requests) == 8 + 2 * 3 and teacher.stats()["requests"] == 8 + 2 * 3
    attempts = {json.dumps(r["body"]["messages"]) for r in state.requests}
    assert len(attempts) == 10  # the same prompt again: each attempt has its own cache entry, not its own prompt
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 8 + 2 * 3


def test_key_is_sent_but_never_written_or_logged(server: tuple[str, StubState], tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    url, state = server
    state.fail_first = [503]
    config = openai_config(url)
    cards_path, out = tmp_path / "cards.parquet", tmp_path / "out"
    cards(6, bad=1).to_parquet(cards_path)
    caplog.set_level(logging.DEBUG)
    write_evidence(config, cards_path, out / "evidence.parquet")
    summary = write_teacher_set(config, cards_path, out / "evidence.parquet", out / "teacher.parquet",
                                out / "sharegpt", out / "summary.json", progress=False)
    assert {request["authorization"] for request in state.requests} == {f"Bearer {SECRET}"}
    assert summary["valid"] == 5 and summary["rejections"]["missing_think"] == 1
    assert summary["backend_stats"]["requests"] == 5 + 3 + 1  # 5 good cards, 3 tries of the bad one, one 503
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(".teacher_cache" in str(path) for path in written)  # the default cache beside the table
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in caplog.text and "retry 1 of 3" in caplog.text


def test_a_rejected_key_fails_at_once_and_is_redacted(server: tuple[str, StubState]) -> None:
    url, state = server
    state.status = 401
    with pytest.raises(EndpointError) as caught:
        run(openai_config(url), cards(3), None)
    assert "HTTP 401" in str(caught.value) and "[redacted]" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert len(state.requests) <= 3  # one per card at most: no retries on 4xx


def test_missing_key_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(InputError, match=KEY_ENV):
        backend(openai_config("http://127.0.0.1:9/v1"), None)


def test_unreachable_endpoint_retries_then_fails() -> None:
    teacher = backend(openai_config("http://127.0.0.1:9/v1", max_retries=2, timeout_seconds=2), None)
    with pytest.raises(EndpointError, match="after 3 attempt"):
        teacher.complete([{"role": "user", "content": "hi"}], 0)
    assert teacher.stats()["requests"] == 3 and teacher.stats()["retries"] == 2


def test_retry_after_values() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("0") == 0.0 and retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert retry_after_seconds("86400") == 300.0 and retry_after_seconds("-3") == 0.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None


def test_cache_key_covers_the_request_but_not_the_key(tmp_path: Path) -> None:
    config = openai_config("http://127.0.0.1:9/v1")
    teacher = backend(config, tmp_path)
    messages = [{"role": "user", "content": "x"}]
    assert teacher.cache_key(messages, 0) != teacher.cache_key(messages, 1)
    assert teacher.cache_key(messages, 0) != backend(openai_config("http://127.0.0.1:9/v1", temperature=0.1),
                                                     tmp_path).cache_key(messages, 0)
    assert SECRET not in repr(teacher)
