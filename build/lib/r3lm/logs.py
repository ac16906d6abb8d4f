"""Bounded lists for log lines and one-line errors: a line stays readable whatever the input's size."""

from __future__ import annotations

from collections.abc import Sequence

LISTED = 5  # how many items a line names before it counts the rest


def shortlist(items: Sequence[str], limit: int = LISTED) -> str:
    """`a, b, c`, or the first `limit` and how many more: a list of ids, motifs or contigs can run to
    thousands, and one log line holding it all is one nobody reads."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
