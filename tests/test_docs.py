"""The documentation: the README read in one sitting, the site built with warnings as errors, and the
configuration reference written from the schema, every key in it with what it does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from r3lm.config import load_schema
from r3lm.config_reference import reference_markdown

REPO = Path(__file__).resolve().parents[1]


def schema_keys(node: dict, prefix: str) -> list[tuple[str, dict]]:
    """Every key under `node` with its schema, as the reference names it (a list's entries as `key[].field`)."""
    keys = []
    for name, sub in node.get("properties", {}).items():
        key = f"{prefix}.{name}" if prefix else name
        keys.append((key, sub))
        keys += schema_keys(sub, key)
        if "properties" in sub.get("items", {}):
            keys += schema_keys(sub["items"], f"{key}[]")
    return keys


def test_the_configuration_reference_has_every_key_of_the_schema_with_its_meaning() -> None:
    schema = load_schema()
    page = reference_markdown(schema)
    keys = schema_keys(schema, "") + [key for name, block in schema["$defs"].items() for key in schema_keys(block, name)]
    rows = dict(re.findall(r"^\| `([^`]+)` \| [^|]*\| (.*) \|$", page, flags=re.MULTILINE))
    sections = [name for name, sub in schema["properties"].items() if "properties" in sub]  # a heading each
    assert [name for name in sections if f"\n## `{name}`\n" not in page] == []
    assert [key for key, _ in keys if key not in rows and key not in sections] == []
    assert [key for key, sub in keys if not sub.get("description")] == []  # the schema says what each key does
    assert rows["motifs.pvalue"].startswith(" ".join(schema["properties"]["motifs"]["properties"]["pvalue"]
                                                     ["description"].split())[:40])
    default = re.search(r"^\| `motifs.pvalue` \| `([^`]+)` \|", page, flags=re.MULTILINE).group(1)
    assert float(default) == schema["properties"]["motifs"]["properties"]["pvalue"]["default"]


def test_the_readme_is_read_in_one_sitting_and_its_links_resolve() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    targets = re.findall(r"\]\(((?!https?://)[^)#]+)\)", readme)
    assert targets and [target for target in targets if not (REPO / target).exists()] == []


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "NO_MKDOCS_2_WARNING": "1"},
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    configuration = (tmp_path / "site/configuration/index.html").read_text()
    assert "motifs.pvalue" in configuration and "reasoning.evidence.cross_fit_folds" in configuration
    home = (tmp_path / "site/index.html").read_text()
    assert 'href="usage/"' in home and 'href="configuration/"' in home  # the README's links, made the site's
