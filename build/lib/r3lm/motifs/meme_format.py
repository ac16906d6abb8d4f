"""Write motifs as a MEME-format text file that FIMO (and the rest of the MEME suite) reads.

Probabilities are written with the shortest decimal that reads back as the same double, so a
FIMO run on this file sees exactly the numbers `r3lm.motifs.pssm` scores with.  nsites is the
mean column sum rounded (MEME's jaspar2meme rule), which FIMO's pseudocount is weighted by.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from r3lm.io import atomic_path
from r3lm.motifs.jaspar import NUCLEOTIDES, Motif
from r3lm.motifs.pssm import column_probabilities, site_count, uniform_background


def _number(value: float) -> str:
    """Shortest round-trip decimal, without exponent ('0.25', '0', '0.0012345')."""
    return np.format_float_positional(float(value), unique=True, trim="-")


def _token(text: str) -> str:
    """MEME splits the MOTIF line on whitespace, so names must be one token."""
    return re.sub(r"\s+", "_", text.strip()) or "unnamed"


def write_meme(motifs: Sequence[Motif], path: str | Path,
               background: np.ndarray | None = None) -> None:
    """Write `motifs` (JASPAR counts) as letter-probability matrices in one MEME file."""
    background = uniform_background() if background is None else np.asarray(background, float)
    lines = [
        "MEME version 5",
        "",
        f"ALPHABET= {NUCLEOTIDES}",
        "",
        "strands: + -",
        "",
        "Background letter frequencies",
        " ".join(f"{base} {_number(value)}" for base, value in zip(NUCLEOTIDES, background)),
        "",
    ]
    for motif in motifs:
        probabilities = column_probabilities(motif)
        lines.append(f"MOTIF {_token(motif.matrix_id)} {_token(motif.name)}")
        lines.append(f"letter-probability matrix: alength= 4 w= {motif.width} "
                     f"nsites= {site_count(motif)} E= 0")
        lines.extend(" ".join(_number(value) for value in row) for row in probabilities)
        lines.append("")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
