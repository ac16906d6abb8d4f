"""Scan sequences against a JASPAR release with FIMO's exact statistics, returning FIMO-style hits.

Statistics (`pssm.py`) and the kernel (`kernel.py`) are separate; this module ties them to the
configuration and to tables: which motifs are scanned and which are skipped (and why), the
background, batching with progress and throughput logs, and the hits table with the columns
`seq_id, matrix_id, motif_name, family, class, start, end, strand, score, pvalue` (1-based,
inclusive coordinates; start < end on both strands, as FIMO reports them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from r3lm.motifs.jaspar import Motif, load_motifs
from r3lm.motifs.kernel import encode, scan
from r3lm.motifs.pssm import (
    ScoredMotif,
    background_from_sequences,
    nrdb_background,
    score_motif,
    uniform_background,
)

log = logging.getLogger(__name__)

HIT_COLUMNS = ["seq_id", "matrix_id", "motif_name", "family", "class", "start", "end", "strand", "score", "pvalue"]


@dataclass(frozen=True)
class MotifSet:
    """The motifs a scan uses, with those that can never pass the threshold kept aside."""

    release: str
    pvalue: float
    background: np.ndarray
    scored: tuple[ScoredMotif, ...]
    skipped: tuple[Motif, ...]

    def table(self) -> pd.DataFrame:
        """Every motif of the release, scanned or skipped, for the log and for other tools."""
        rows = [{"matrix_id": m.motif.matrix_id, "name": m.motif.name, "family": m.motif.family,
                 "class": m.motif.tf_class, "width": m.width, "scanned": True, "threshold_score": m.threshold,
                 "note": ""} for m in self.scored]
        rows += [{"matrix_id": m.matrix_id, "name": m.name, "family": m.family, "class": m.tf_class,
                  "width": m.width, "scanned": False, "threshold_score": -1,
                  "note": f"cannot reach p <= {self.pvalue:g}"} for m in self.skipped]
        return pd.DataFrame(rows).sort_values("matrix_id", ignore_index=True)


def background_for(settings: Mapping[str, Any], sequences: Sequence[str]) -> np.ndarray:
    """`uniform`; `nrdb`, FIMO's own default (no --bfile); or `input`, base frequencies of the input on both
    strands (as fasta-get-markov -m 0 makes them)."""
    if settings["background"] == "input":
        return background_from_sequences(sequences)
    return nrdb_background() if settings["background"] == "nrdb" else uniform_background()


def build_motif_set(settings: Mapping[str, Any], background: np.ndarray) -> MotifSet:
    """Score every matrix of the configured release. The unreachable ones are counted at INFO and named one
    per line at DEBUG: hundreds of names on one line drown every command's log (the workflow also lists
    them in motifs.parquet)."""
    motifs = load_motifs(settings["jaspar_release"], settings["collection"], settings["tax_group"])
    scored, skipped = [], []
    for motif in motifs:
        result = score_motif(motif, background, pvalue_threshold=settings["pvalue"],
                             pseudocount=settings["pseudocount"])
        (scored if result is not None else skipped).append(result if result is not None else motif)
    log.info("%s: %d motifs, %d scanned, %d skipped because no window can reach p <= %g (named at --log-level "
             "DEBUG)", settings["jaspar_release"], len(motifs), len(scored), len(skipped), settings["pvalue"])
    for motif in skipped:
        log.debug("skipped %s %s (w=%d): no window can reach p <= %g", motif.matrix_id, motif.name, motif.width,
                  settings["pvalue"])
    return MotifSet(settings["jaspar_release"], settings["pvalue"], background, tuple(scored), tuple(skipped))


def _hits_frame(ids: Sequence[str], motif_set: MotifSet, hits) -> pd.DataFrame:  # hits: kernel.Hits
    """FIMO's reported score and p-value per hit, computed per matrix from the integer score."""
    raw = np.empty(len(hits), dtype=np.float64)
    pvalues = np.empty(len(hits), dtype=np.float64)
    order = np.argsort(hits.matrix, kind="stable")
    bounds = np.searchsorted(hits.matrix[order], np.arange(len(motif_set.scored) + 1))
    for index, motif in enumerate(motif_set.scored):
        rows = order[bounds[index]:bounds[index + 1]]
        if rows.size:
            raw[rows] = motif.raw_score(hits.score[rows])
            pvalues[rows] = motif.pvalue(hits.score[rows])

    def per_matrix(attribute: str) -> np.ndarray:
        return np.array([getattr(m.motif, attribute) for m in motif_set.scored], dtype=object)[hits.matrix]

    widths = np.array([m.width for m in motif_set.scored], dtype=np.int64)
    return pd.DataFrame({
        "seq_id": np.asarray(ids, dtype=object)[hits.sequence],
        "matrix_id": per_matrix("matrix_id"),
        "motif_name": per_matrix("name"),
        "family": per_matrix("family"),
        "class": per_matrix("tf_class"),
        "start": hits.start + 1,
        "end": hits.start + widths[hits.matrix],
        "strand": np.where(hits.strand == 0, "+", "-"),
        "score": raw,
        "pvalue": pvalues,
    })


def scan_sequences(ids: Sequence[str], sequences: Sequence[str], motif_set: MotifSet, *, threads: int = 2,
                   device: str = "cpu", batch_size: int = 20_000, progress: bool = True) -> pd.DataFrame:
    """All hits of `motif_set` in `sequences`, in input order, then by start, strand and matrix."""
    started = time.perf_counter()
    matrices = [(m.forward, m.reverse) for m in motif_set.scored]
    thresholds = [m.threshold for m in motif_set.scored]
    frames = []
    with tqdm(total=len(sequences), desc="scan", unit="seq", disable=not progress, mininterval=2) as bar:
        for first in range(0, len(sequences), batch_size):
            batch = list(sequences[first:first + batch_size])
            codes, starts = encode(batch)
            hits = scan(codes, starts, [len(s) for s in batch], matrices, thresholds, threads=threads, device=device)
            frames.append(_hits_frame(list(ids[first:first + batch_size]), motif_set, hits))
            bar.update(len(batch))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=HIT_COLUMNS)
    seconds = time.perf_counter() - started
    bases = sum(len(s) for s in sequences)
    log.info("scanned %d sequences (%d bp) against %d motifs in %.1f s: %.0f sequences/s, %d hits",
             len(sequences), bases, len(motif_set.scored), seconds, len(sequences) / max(seconds, 1e-9), len(table))
    return table[HIT_COLUMNS]
