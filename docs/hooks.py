"""MkDocs hook: pages written at every build from their one source, so none is a copy to keep in step.

- `index.md` is the repository's README.md, its links made relative to docs/;
- `configuration.md` is the configuration reference written from the schema (r3lm/config_reference.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

from r3lm.config_reference import reference_markdown

README = Path(__file__).resolve().parents[1] / "README.md"
CONFIGURATION_ITEM = "- Configuration: every key"


def site_home(readme: str) -> str:
    """The README as the site's first page: links into docs/ resolve from docs/, the reference is linked."""
    return readme.replace("](docs/", "](").replace(CONFIGURATION_ITEM, "- [Configuration](configuration.md): every key")


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "index.md", content=site_home(README.read_text())))
    files.append(File.generated(config, "configuration.md", content=reference_markdown()))
    return files
