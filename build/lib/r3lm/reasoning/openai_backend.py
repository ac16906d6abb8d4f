"""The openai teacher: any OpenAI-compatible /chat/completions endpoint, standard library only.

* The API key comes from the environment variable `api_key_env` names; it is sent as a Bearer header
  and never logged, cached or written (it is also redacted from any error or response text).
* Retries: connection errors, timeouts, 429 and 5xx are retried up to `max_retries` times, waiting
  Retry-After when the server sends it, else `backoff_seconds * 2**retry` with up to 25 % jitter (seeded
  by the request, so reruns wait alike); any other 4xx fails at once (a bad key or model will not heal).
  A request that still fails stops the run with EndpointError: what was answered stays cached.
* Cache: each response body is stored under `cache_dir` as `<sha[:2]>/<sha>.json`, where sha is the
  SHA-256 of (model, messages, temperature, max_tokens, attempt index), written atomically, so a
  rerun after a kill requests only what is missing, and the attempt index gives each retry of an
  invalid answer its own entry.
* Concurrency: `concurrency` worker threads, one card each; a card's attempts run in sequence, up to
  `attempts_per_card`, until one validates.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from r3lm.errors import InputError
from r3lm.io import atomic_path
from r3lm.reasoning.backend import Checker, TeacherAnswer, TeacherJob

log = logging.getLogger(__name__)

JITTER = 0.25
MAX_RETRY_AFTER = 300.0
ERROR_EXCERPT = 300
REDACTED = "[redacted]"


class EndpointError(RuntimeError):
    """The endpoint failed for good: a non-retryable status, or still failing after every retry."""


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds (it may be a number of seconds or an HTTP date), capped; None if absent or unreadable."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class OpenAIBackend:
    name = "openai"

    def __init__(self, settings: Mapping[str, Any], *, cache_dir: str | Path | None, seed: int = 0,
                 environ: Mapping[str, str] | None = None) -> None:
        variable = settings["api_key_env"]
        key = (os.environ if environ is None else environ).get(variable, "").strip()
        if not key:
            raise InputError(f"the openai teacher reads its API key from the environment variable {variable}, "
                             f"which is not set (export {variable}=...)", column="reasoning.openai.api_key_env")
        self._key = key
        self.url = settings["base_url"].rstrip("/") + "/chat/completions"
        self.model = settings["model"]
        self.temperature = settings["temperature"]
        self.max_tokens = settings["max_tokens"]
        self.max_retries = settings["max_retries"]
        self.backoff_seconds = settings["backoff_seconds"]
        self.concurrency = settings["concurrency"]
        self.timeout = settings["timeout_seconds"]
        self.attempts = settings["attempts_per_card"]
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.seed = seed
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAIBackend(url={self.url!r}, model={self.model!r})"

    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {name: self._counts[name] for name in ("requests", "cache_hits", "retries", "answers")}

    def redact(self, text: str) -> str:
        return text.replace(self._key, REDACTED)

    def cache_key(self, messages: Sequence[Mapping[str, str]], attempt: int) -> str:
        identity = {"model": self.model, "messages": list(messages), "temperature": self.temperature,
                    "max_tokens": self.max_tokens, "attempt": attempt}
        return hashlib.sha256(json.dumps(identity, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _cache_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / key[:2] / f"{key}.json"

    def _cached(self, key: str) -> dict[str, Any] | None:
        path = self._cache_path(key)
        if path is None or not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            log.warning("ignoring unreadable cache entry %s: %s", path, error)
            return None

    def complete(self, messages: Sequence[Mapping[str, str]], attempt: int) -> str:
        """The assistant's text for `messages` (attempt index `attempt`), from the cache or the endpoint."""
        key = self.cache_key(messages, attempt)
        body = self._cached(key)
        if body is not None:
            self._count("cache_hits")
        else:
            body = self._request(messages, key)
            path = self._cache_path(key)
            if path is not None:
                with atomic_path(path) as tmp:
                    tmp.write_text(json.dumps(body, ensure_ascii=False))
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str):
            log.warning("response without choices[0].message.content (cache key %s); counted as an empty answer", key)
            return ""
        return content

    def _backoff(self, retry: int, key: str) -> float:
        jitter = random.Random(f"{self.seed}:{key}:{retry}").random() * JITTER
        return self.backoff_seconds * 2**retry * (1 + jitter)

    def _request(self, messages: Sequence[Mapping[str, str]], key: str) -> dict[str, Any]:
        payload = json.dumps({"model": self.model, "messages": list(messages), "temperature": self.temperature,
                              "max_tokens": self.max_tokens}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "Authorization": f"Bearer {self._key}"}
        for retry in range(self.max_retries + 1):
            wait = None
            self._count("requests")
            try:
                request = urllib.request.Request(self.url, data=payload, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    text = self.redact(response.read().decode("utf-8", errors="replace"))
                try:
                    return json.loads(text)
                except ValueError:
                    problem = f"the response is not JSON: {text[:ERROR_EXCERPT]!r}"
            except urllib.error.HTTPError as error:
                detail = self.redact(error.read().decode("utf-8", errors="replace"))[:ERROR_EXCERPT]
                problem = f"HTTP {error.code}: {detail}"
                if error.code != 429 and error.code < 500:
                    raise EndpointError(f"{self.url} answered {problem}") from None
                wait = retry_after_seconds(error.headers.get("Retry-After"))
            except (http.client.HTTPException, OSError) as error:
                problem = self.redact(f"{type(error).__name__}: {error}")
            if retry == self.max_retries:
                break
            self._count("retries")
            delay = wait if wait is not None else self._backoff(retry, key)
            log.warning("request to %s failed (%s); retry %d of %d in %.2f s", self.url, problem, retry + 1,
                        self.max_retries, delay)
            time.sleep(delay)
        raise EndpointError(f"{self.url} failed after {self.max_retries + 1} attempt(s): {problem}")

    def _explain_one(self, job: TeacherJob, check: Checker) -> TeacherAnswer:
        for attempt in range(1, self.attempts + 1):
            text = self.complete(job.messages, attempt - 1)
            validation = check(job, text)
            if validation.valid:
                break
            log.debug("card %s attempt %d rejected: %s", job.card_id, attempt, validation.reason)
        self._count("answers")
        return TeacherAnswer(text, validation, attempt)

    def explain(self, jobs: Sequence[TeacherJob], check: Checker, *, progress: bool) -> list[TeacherAnswer]:
        answers: list[TeacherAnswer | None] = [None] * len(jobs)
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai") as pool:
            futures = {pool.submit(self._explain_one, job, check): index for index, job in enumerate(jobs)}
            try:
                for future in tqdm(as_completed(futures), total=len(futures), desc="teacher", unit="card",
                                   disable=not progress, mininterval=5):
                    answers[futures[future]] = future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        log.info("openai teacher: %s", self.stats())
        return answers
