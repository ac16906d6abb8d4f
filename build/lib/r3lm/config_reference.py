"""The configuration reference, written from the schema: every key, its default and what it does.

Why generated: the schema (`workflow/schemas/config.schema.yaml`) is the one home of every default and every
key's description, so a page copied by hand drifts from it; the documentation site renders this text
(`docs/hooks.py`), and a test holds it to every key of the schema.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from r3lm.config import load_schema

INTRO = """# Configuration

`config/config.yaml` is the embedded demo and the default; `config/gosai2024.yaml` reproduces the paper on the
Gosai et al. 2024 MPRA and `config/lentimpra.yaml` runs a real lentiMPRA table. Pass another file with
`--configfile FILE`, or single keys with `--config`. The workflow validates the config against
`workflow/schemas/config.schema.yaml` when it starts (an unknown key or a bad value stops it with one line
naming the key) and fills every default from that schema, the one place where defaults live; `r3lm
check-config FILE` validates a file the same way. `--config` merges into a section: `--config
'motifs={"pvalue": 1e-4}'` changes that key and keeps the section's others.

This page is written from the schema when the site is built.
"""
SHARED = {"split": "every source's `split` block (`dataset.<source>.split`)",
          "table_columns": "a table's columns: `dataset.table` and each `evaluation.transfer` entry"}


def reference_markdown(schema: Mapping[str, Any] | None = None) -> str:
    """The whole page: a section per top-level key, then the blocks several sections share ($defs)."""
    schema = schema or load_schema()
    parts = [INTRO]
    for name, node in schema["properties"].items():
        parts.append(_section(f"## `{name}`", node, name))
    for name, node in schema["$defs"].items():
        parts.append(_section(f"## `{name}`: {SHARED.get(name, 'a shared block')}", node, name))
    return "\n".join(parts)


def _section(heading: str, node: Mapping[str, Any], prefix: str) -> str:
    lines = [heading, ""]
    if node.get("description") and "properties" in node:  # a plain value's description is its row's
        lines += [_text(node["description"]), ""]
    rows = list(_leaves(node, prefix))
    if rows:
        lines += ["| key | default | meaning |", "|---|---|---|"]
        lines += [f"| `{key}` | {default} | {_cell(text)} |" for key, default, text in rows]
        lines.append("")
    return "\n".join(lines)


def _leaves(node: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, str, str]]:
    """(key, default, description) of every key under `node`; a shared block ($ref) is named, not repeated."""
    if "properties" not in node:  # a top-level key that is itself a value (run)
        yield prefix, _default(node), node.get("description", "")
        return
    for name, sub in node["properties"].items():
        key = f"{prefix}.{name}"
        reference = sub.get("$ref") or next((part["$ref"] for part in sub.get("allOf", []) if "$ref" in part), None)
        if reference:  # its own keys (a source's split method) are listed after it
            block = reference.rsplit("/", 1)[-1]
            yield key, "", f"{sub.get('description', '')} The keys of the `{block}` block below, and:".strip()
            yield from _leaves(sub, key) if "properties" in sub else iter(())
            continue
        if "properties" in sub:
            yield key, "", sub.get("description", "")
            yield from _leaves(sub, key)
        elif sub.get("type") == "array" and "properties" in sub.get("items", {}):
            yield key, _default(sub), sub.get("description", "")
            entry = sub["items"]
            if "$ref" in entry:
                yield f"{key}[]", "", f"each entry: the keys of the `{entry['$ref'].rsplit('/', 1)[-1]}` block below, and:"
            yield from _leaves(entry, f"{key}[]")
        else:
            yield key, _default(sub), sub.get("description", "")


def _default(node: Mapping[str, Any]) -> str:
    if "default" not in node:
        return "(required)" if node.get("type") else ""
    return f"`{yaml.safe_dump(node['default'], default_flow_style=True, width=10_000).strip().removesuffix('...').strip()}`"


def _text(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    return _text(text).replace("|", "\\|")


if __name__ == "__main__":
    print(reference_markdown())
