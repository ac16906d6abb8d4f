"""What a teacher backend is: the jobs it is given, the answers it returns, the check each answer must pass.

The teachers (grounded, hf, openai, released) and the code that drives them (`teacher.py`) meet here, so a
backend module imports this one and never the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from r3lm.rationale.validate import Validation
from r3lm.rcc.card import Card


@dataclass(frozen=True)
class TeacherJob:
    """One card to explain: `messages` is the teacher's prompt (card and observed level), `card_text` the card as
    shown there (its evidence line states facts a rationale must keep)."""

    card_id: str
    card: Card
    level: int
    messages: list[dict[str, str]]
    card_text: str = ""


@dataclass(frozen=True)
class TeacherAnswer:
    text: str
    validation: Validation
    attempts: int


Checker = Callable[[TeacherJob, str], Validation]


class TeacherBackend(Protocol):
    name: str

    def explain(self, jobs: Sequence[TeacherJob], check: Checker, *, progress: bool) -> list[TeacherAnswer]:
        """One answer per job, in order: the first that `check` accepts, else the last attempt."""

    def stats(self) -> dict[str, Any]:
        """Backend counters for the summary (requests, cache hits, ...)."""
