"""r3lm: reasoning-informed regression for regulatory DNA activity (R3LM, Duan et al., KDD 2026).

For design loops: `r3lm.load(model_dir).score(sequences, cell_type)` (see `r3lm.deploy.scorer`).
"""

from __future__ import annotations

from typing import Any

from r3lm._version import __version__ as __version__

__all__ = ["R3LM", "load", "score"]


def __getattr__(name: str) -> Any:
    """The scoring API imports torch and transformers, so it loads on first use, not with the package."""
    if name in __all__:
        from r3lm.deploy import scorer

        return getattr(scorer, name)
    raise AttributeError(f"module 'r3lm' has no attribute {name!r}")
