"""FIMO's motif statistics (MEME suite 5.x), reimplemented bit for bit in numpy.

FIMO turns a motif into an integer score matrix and a table of p-values once, then scans.
Every step below follows the MEME sources (motif.c, motif-in.c, alphabet.c, pssm.c, fimo.c)
so that a window scored here gets the same score and p-value as in FIMO:

1. Background.  FIMO takes the --bfile frequencies (default NRDB), averages each base with its
   complement when scanning both strands, adds 5e-7 to each and renormalises (`fimo_background`).
2. Pseudocount.  Column probabilities p come from the MEME file; with s = int(nsites) and the
   motif pseudocount a = 0.1 spread by that same background b:  f = (p*s + a*b) / (s + a).
3. Log-odds.  lo = ln(f / b) * 1.44269504 (MEME's my_log2, a truncated 1/ln 2).
4. Scaling.  offset = floor(min lo); scale = floor(1000 / (max lo - offset));
   scaled = (int)((lo - offset) * scale + 0.5).  A window's raw score is
   scaled_total / scale + W * offset, which is the score FIMO reports.
5. P-values.  Exact distribution of the integer window score under the 0-order background,
   by dynamic programming over columns; pv[s] = P(score >= s).  A window passes when
   pv[score] <= threshold (fimo.c; pymemesuite tests '<', identical unless a p-value equals
   the threshold exactly).
6. Reverse strand.  The '-' matrix is the forward one reversed and complemented; with the
   complement-averaged background it has the same values, scale and offset as the matrix FIMO
   builds from the reverse-complement motif, and the same p-value table (FIMO recomputes it and
   sums in another order: equal to ~1e-15 relative; pymemesuite reuses the forward table).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from r3lm.dna import COMPLEMENT_CODES, reverse_complement_matrix
from r3lm.motifs.jaspar import NUCLEOTIDES, Motif

PSSM_RANGE = 1000            # pssm.h: integer range of one scaled column
MEME_LOG2_E = 1.44269504     # utils.h my_log2: ln(x) times this truncated constant
BG_EPSILON = 5e-7            # motif-in.c set_pseudo_bg: pseudocount added to the background
MOTIF_PSEUDOCOUNT = 0.1      # fimo --motif-pseudo default
NRDB_DNA = (0.281774, 0.222020, 0.228876, 0.267330)  # alphabet.c get_nrdb_frequencies


@dataclass(frozen=True)
class ScoredMotif:
    """A motif as FIMO scores it: integer matrices for both strands and the p-value table."""

    motif: Motif
    forward: np.ndarray      # (W, 4) int32 scaled log-odds
    reverse: np.ndarray      # (W, 4) int32, reverse complement: scores the '-' strand of a window
    scale: float
    offset: float
    pvalues: np.ndarray      # pvalues[s] = P(score >= s), s = 0 .. best attainable score
    threshold: int           # smallest integer score with pvalues[score] <= the p-value threshold
    background: np.ndarray   # (4,) the background exactly as FIMO used it (after fimo_background)

    @property
    def width(self) -> int:
        return int(self.forward.shape[0])

    def raw_score(self, scaled: np.ndarray) -> np.ndarray:
        """FIMO's reported score (bits) of integer window totals."""
        return np.asarray(scaled, dtype=np.float64) / self.scale + self.width * self.offset

    def pvalue(self, scaled: np.ndarray) -> np.ndarray:
        """P-values of integer window totals (clamped into the table, as fimo.c does)."""
        index = np.clip(np.asarray(scaled, dtype=np.int64), 0, len(self.pvalues) - 1)
        return self.pvalues[index]


def uniform_background() -> np.ndarray:
    return np.full(4, 0.25)


def nrdb_background() -> np.ndarray:
    """FIMO's default background for DNA (no --bfile): MEME's NRDB base frequencies."""
    return _normalize_subarray(list(NRDB_DNA))


def background_from_sequences(sequences: Iterable[str], pseudocount: float = 0.1,
                              both_strands: bool = True) -> np.ndarray:
    """Base frequencies as `fasta-get-markov -m 0` writes them for `fimo --bfile`.

    FIMO never estimates a background from the sequences it scans; the MEME way is a
    fasta-get-markov file.  That tool counts A/C/G/T (case-insensitive; N and other
    ambiguity codes are skipped), adds each base's complement count unless -norc
    (so the frequencies are strand-symmetric), uses f = (a/4 + n) / (a + total) with a = 0.1,
    and prints 4 significant digits ("%9.3e"); the values returned are those printed numbers.
    """
    lookup = np.full(256, 4, dtype=np.int64)
    for index, base in enumerate(NUCLEOTIDES):
        lookup[ord(base)] = lookup[ord(base.lower())] = index
    counts = np.zeros(5, dtype=np.int64)
    for sequence in sequences:
        codes = lookup[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]
        counts += np.bincount(codes, minlength=5)
    counts = counts[:4]
    total = int(counts.sum())
    if total == 0:
        pseudocount = 1.0
    if both_strands:
        counts = counts + counts[list(COMPLEMENT_CODES)]
        total *= 2
    frequencies = (pseudocount / 4 + counts) / (pseudocount + total)
    return np.array([float(f"{value:.3e}") for value in frequencies])


def fimo_background(frequencies: Iterable[float], both_strands: bool = True) -> np.ndarray:
    """The background FIMO actually uses after reading --bfile (motif-in.c set_pseudo_bg).

    Both-strand scans average each base with its complement; then every base gets 5e-7 and the
    vector is renormalised.  Float operations are done in MEME's order so the result is bitwise
    identical (it matters: log-odds are rounded to integers).
    """
    values = [float(value) for value in frequencies]
    if len(values) != 4 or min(values) < 0 or sum(values) <= 0:
        raise ValueError(f"background must be 4 non-negative frequencies, got {values}")
    if both_strands:
        for base, partner in ((0, 3), (1, 2)):
            values[base] = values[partner] = (values[base] + values[partner]) / 2.0
    total = BG_EPSILON * 4
    for value in values:
        total += value
    return _normalize_subarray([(value + BG_EPSILON) / total for value in values])


def _normalize_subarray(values: list[float]) -> np.ndarray:
    """array.c normalize_subarray with zero tolerance: divide by the sum unless it is exactly 1."""
    total = 0.0
    for value in values:
        total += value
    if total != 1.0:
        values = [value / total for value in values]
    return np.array(values, dtype=np.float64)


def site_count(motif: Motif) -> int:
    """nsites of the MEME file: the mean column sum rounded, as MEME's jaspar2meme does.

    FIMO spreads its pseudocount against int(nsites); JASPAR columns do not always sum to the
    same total (528 of 1019 in JASPAR2026 vary), so one representative count is needed.
    """
    return int(float(motif.counts.sum(axis=0).mean()) + 0.5)


def column_probabilities(motif: Motif) -> np.ndarray:
    """(W, 4) letter probabilities, each column's counts over its own sum (what write_meme writes)."""
    return np.ascontiguousarray(motif.frequencies.T)


def motif_frequencies(motif: Motif, background: np.ndarray,
                      pseudocount: float = MOTIF_PSEUDOCOUNT) -> np.ndarray:
    """(W, 4) frequencies after FIMO's motif pseudocount (motif.c apply_pseudocount_to_motif).

    f = (p * s + a * b) / (s + a) with s = int(nsites); `background` is used as given
    (pass it through `fimo_background` first to match FIMO).
    """
    probabilities = column_probabilities(motif)
    if pseudocount == 0:
        return probabilities
    sites = float(site_count(motif))
    background = np.asarray(background, dtype=np.float64)
    return (probabilities * sites + pseudocount * background[None, :]) / (sites + pseudocount)


def unreachable(motif: Motif, threshold: float) -> bool:
    """Cheap rule: even one exact best word under a uniform background is too likely."""
    return 4.0 ** -motif.width > threshold


def score_motif(motif: Motif, background: np.ndarray, pvalue_threshold: float = 5e-5,
                pseudocount: float = MOTIF_PSEUDOCOUNT) -> ScoredMotif | None:
    """Build FIMO's scaled matrices and p-value table; None if no window can pass the threshold."""
    bg = fimo_background(background)
    frequencies = motif_frequencies(motif, bg, pseudocount)
    log_odds = np.array([[_meme_log2(frequencies[i, a] / bg[a]) for a in range(4)]
                         for i in range(frequencies.shape[0])])
    small, large = float(log_odds.min()), float(log_odds.max())
    if large == small:
        small = large - 1
    offset = math.floor(small)
    scale = math.floor(PSSM_RANGE / (large - offset))
    forward = np.floor((log_odds - offset) * scale + 0.5).astype(np.int32)
    pvalues = _pvalue_table(forward, bg)
    passing = np.flatnonzero(pvalues <= pvalue_threshold)
    if passing.size == 0:
        return None
    return ScoredMotif(motif=motif, forward=forward,
                       reverse=reverse_complement_matrix(forward),
                       scale=float(scale), offset=float(offset), pvalues=pvalues,
                       threshold=int(passing[0]), background=bg)


def _meme_log2(odds: float) -> float:
    """utils.h my_log2: C log times a truncated 1/ln 2; a zero (pseudocount 0) gives 1e-300, not -inf."""
    return math.log(odds) * MEME_LOG2_E if odds > 0 else 1e-300


def _pvalue_table(matrix: np.ndarray, background: np.ndarray) -> np.ndarray:
    """pssm.c get_pv_lookup: pdf of the window total column by column, then 1 - cdf.

    Additions happen in the same order as MEME's loops, so the table is bitwise identical.
    """
    best = int(matrix.max(axis=1).sum())
    pdf = np.zeros(best + 1)
    pdf[0] = 1.0
    reach = 0
    for row in matrix:
        new = np.zeros(best + 1)
        for letter in range(4):
            shift = int(row[letter])
            new[shift:shift + reach + 1] += pdf[:reach + 1] * background[letter]
        reach += int(row.max())
        pdf = new
    return np.minimum(1.0, np.cumsum(pdf[::-1])[::-1])
