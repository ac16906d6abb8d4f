"""The motif-scanning kernel returns exactly the brute-force hit set: every window inside one
sequence, free of N, whose integer score reaches the threshold, on both strands."""

from __future__ import annotations

import numpy as np
import pytest

from r3lm.motifs import kernel
from r3lm.motifs.kernel import Hits, encode, scan

BASES = np.array(list("ACGT"))


# ----------------------------------------------------------------------------------------------
# Helpers: integer matrices, exact p-value thresholds, brute-force reference


def integer_matrix(counts: np.ndarray, pseudocount: float = 0.1, top: int = 1000) -> np.ndarray:
    """JASPAR counts (4 x W) -> log2-odds vs uniform, shifted to 0 per column, scaled to ints 0..top (W x 4)."""
    probabilities = (counts + pseudocount / 4) / (counts + pseudocount / 4).sum(axis=0, keepdims=True)
    log_odds = np.log2(probabilities / 0.25).T
    log_odds -= log_odds.min(axis=1, keepdims=True)
    return np.rint(log_odds * top / log_odds.max()).astype(np.int32)


def threshold_for_pvalue(matrix: np.ndarray, pvalue: float) -> int | None:
    """Smallest integer t with P(score >= t) <= pvalue under a uniform background (exact DP);
    None if even the best score is more likely than that."""
    distribution = np.ones(1)
    for row in matrix:
        longer = np.zeros(distribution.size + int(row.max()))
        for value in row:
            longer[value:value + distribution.size] += 0.25 * distribution
        distribution = longer
    tail = np.cumsum(distribution[::-1])[::-1]
    reachable = np.flatnonzero(tail <= pvalue * (1 + 1e-9))
    return None if reachable.size == 0 else int(reachable[0])


def reverse_complement(matrix: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(matrix[::-1, ::-1])


def brute_force(sequences: list[str], matrices, thresholds) -> list[tuple[int, int, int, int, int]]:
    """(sequence, start, matrix, strand, score) of every hit, window by window in numpy."""
    hits = []
    for number, sequence in enumerate(sequences):
        codes = np.array([("ACGT".index(base) if base in "ACGT" else 4) for base in sequence.upper()],
                         dtype=np.int64)
        for index, (entry, threshold) in enumerate(zip(matrices, thresholds)):
            entry = np.asarray(entry)
            for strand, weights in enumerate([entry] if entry.ndim == 2 else list(entry)):
                width = weights.shape[0]
                if codes.size < width:
                    continue
                windows = np.lib.stride_tricks.sliding_window_view(codes, width)
                scores = np.asarray(weights, dtype=np.int64)[np.arange(width), np.minimum(windows, 3)].sum(axis=1)
                ok = (windows < 4).all(axis=1) & (scores >= threshold)
                hits += [(number, int(start), index, strand, int(scores[start])) for start in np.flatnonzero(ok)]
    return sorted(hits)


def as_tuples(hits: Hits) -> list[tuple[int, int, int, int, int]]:
    return sorted(zip(hits.sequence.tolist(), hits.start.tolist(), hits.matrix.tolist(),
                      hits.strand.tolist(), hits.score.tolist()))


def run_scan(sequences: list[str], matrices, thresholds, **options) -> Hits:
    codes, starts = encode(sequences)
    return scan(codes, starts, [len(sequence) for sequence in sequences], matrices, thresholds, **options)


def random_sequences(rng: np.random.Generator, count: int, max_length: int, n_rate: float = 0.02) -> list[str]:
    sequences = []
    for _ in range(count):
        length = int(rng.integers(0, max_length + 1))
        letters = BASES[rng.integers(0, 4, size=length)]
        letters[rng.random(length) < n_rate] = "N"
        if length > 10 and rng.random() < 0.2:  # a run of N
            begin = int(rng.integers(0, length - 5))
            letters[begin:begin + 5] = "N"
        sequences.append("".join(letters))
    return sequences


def random_pair(rng: np.random.Generator, width: int, low: int = -50, high: int = 1000) -> np.ndarray:
    forward = rng.integers(low, high, size=(width, 4))
    return np.stack([forward, reverse_complement(forward)])


@pytest.fixture(scope="module")
def jaspar_pairs() -> tuple[list[np.ndarray], list[int]]:
    """JASPAR2026 matrices of many widths (8..33), thresholds at p = 5e-5 (exact DP)."""
    from r3lm.motifs.jaspar import load_motifs

    motifs = load_motifs()
    by_width: dict[int, list] = {}
    for motif in motifs:
        by_width.setdefault(motif.width, []).append(motif)
    pairs, thresholds = [], []
    for width in sorted(by_width):
        for motif in by_width[width][:4]:
            forward = integer_matrix(motif.counts)
            threshold = threshold_for_pvalue(forward, 5e-5)
            if threshold is None:
                continue
            pairs.append(np.stack([forward, reverse_complement(forward)]))
            thresholds.append(threshold)
    assert len(pairs) > 40 and max(pair.shape[1] for pair in pairs) >= 29
    return pairs, thresholds


# ----------------------------------------------------------------------------------------------
# encode


def test_encode_codes_and_offsets():
    codes, starts = encode(["ACGT", "", "acgtnX", "G"])
    assert codes.dtype == np.uint8
    assert starts.tolist() == [0, 5, 6, 13]
    assert codes[0:4].tolist() == [0, 1, 2, 3]
    assert codes[6:12].tolist() == [0, 1, 2, 3, 4, 4]
    assert codes[13] == 2
    # every sequence is followed by an N
    assert codes[4] == 4 and codes[5] == 4 and codes[12] == 4 and codes[14] == 4
    empty_codes, empty_starts = encode([])
    assert empty_codes.size == 0 and empty_starts.size == 0


def test_encode_non_ascii_keeps_offsets():
    codes, starts = encode(["AéC", "T"])
    assert codes[:3].tolist() == [0, 4, 1]
    assert starts.tolist() == [0, 4]


# ----------------------------------------------------------------------------------------------
# Exactness against brute force


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_random_matrices_match_brute_force(threads):
    rng = np.random.default_rng(threads)
    sequences = random_sequences(rng, 60, 90)
    sequences += ["", "A", "ACGTACG", "N" * 30]
    matrices, thresholds = [], []
    for width in [1, 2, 3, 5, 7, 8, 9, 12, 16, 17, 24, 33, 41]:
        pair = random_pair(rng, width)
        lowest, highest = int(pair[0].min(axis=1).sum()), int(pair[0].max(axis=1).sum())
        for fraction in (0.6, 0.85, 0.97):
            matrices.append(pair)
            thresholds.append(int(lowest + fraction * (highest - lowest)))
        matrices += [pair, pair, pair[0]]  # everything, nothing, '+' strand only
        thresholds += [lowest - 5, highest + 1, int(lowest + 0.9 * (highest - lowest))]
    hits = run_scan(sequences, matrices, thresholds, threads=threads)
    expected = brute_force(sequences, matrices, thresholds)
    assert as_tuples(hits) == expected
    assert len(expected) > 1000


def test_threshold_at_minimum_hits_every_clean_window():
    rng = np.random.default_rng(3)
    sequences = random_sequences(rng, 30, 60, n_rate=0.05)
    pair = random_pair(rng, 9, low=-1000, high=1000)
    hits = run_scan(sequences, [pair], [int(pair[0].min(axis=1).sum())])
    clean_windows = sum(
        sum("N" not in sequence[start:start + 9] for start in range(len(sequence) - 8)) for sequence in sequences
    )
    assert len(hits) == 2 * clean_windows
    assert as_tuples(hits) == brute_force(sequences, [pair], [int(pair[0].min(axis=1).sum())])


@pytest.mark.parametrize("dense_fraction, table_us", [(0.0, 0.0), (0.5, 25.0), (np.inf, np.inf)])
def test_jaspar_matrices_match_brute_force(jaspar_pairs, monkeypatch, dense_fraction, table_us):
    """Realistic matrices and p = 5e-5 thresholds, on both seed paths (dense scoring / CSR gather)
    and both verification paths (8-mer block tables / single columns)."""
    monkeypatch.setattr(kernel, "DENSE_FRACTION", dense_fraction)
    monkeypatch.setattr(kernel, "_TABLE_US", table_us)
    pairs, thresholds = jaspar_pairs
    rng = np.random.default_rng(7)
    sequences = random_sequences(rng, 150, 250, n_rate=0.005)
    # Plant every motif's consensus (either strand) so that each has hits, some at the sequence ends.
    for number, pair in enumerate(pairs):
        strand = number % 2
        site = "".join(BASES[pair[strand].argmax(axis=1)])
        sequence = sequences[number % len(sequences)]
        if len(sequence) < len(site):
            continue
        where = [0, len(sequence) - len(site), int(rng.integers(0, len(sequence) - len(site) + 1))][number % 3]
        sequences[number % len(sequences)] = sequence[:where] + site + sequence[where + len(site):]
    hits = run_scan(sequences, pairs, thresholds, threads=2)
    expected = brute_force(sequences, pairs, thresholds)
    assert as_tuples(hits) == expected
    assert len({hit[2] for hit in expected}) > 0.8 * len(pairs)


def test_many_sequences_with_lenient_and_strict_thresholds(jaspar_pairs):
    """A bigger batch (index with ~30 positions per k-mer), p from 1e-2 to 1e-6."""
    pairs, _ = jaspar_pairs
    rng = np.random.default_rng(11)
    sequences = ["".join(row) for row in BASES[rng.integers(0, 4, size=(400, 200))]]
    chosen = pairs[::3]
    matrices, thresholds = [], []
    for pair, pvalue in zip(chosen, [1e-2, 1e-3, 1e-4, 1e-6] * len(chosen)):
        threshold = threshold_for_pvalue(pair[0], pvalue)
        if threshold is not None:
            matrices.append(pair)
            thresholds.append(threshold)
    hits = run_scan(sequences, matrices, thresholds)
    assert as_tuples(hits) == brute_force(sequences, matrices, thresholds)


def test_first_and_last_window_of_each_sequence_are_found():
    rng = np.random.default_rng(5)
    forward = rng.integers(0, 1000, size=(12, 4))
    forward[np.arange(12), rng.integers(0, 4, size=12)] = 5000  # a clear consensus
    pair = np.stack([forward, reverse_complement(forward)])
    site = "".join(BASES[forward.argmax(axis=1)])
    reverse_site = site[::-1].translate(str.maketrans("ACGT", "TGCA"))
    threshold = 12 * 5000
    background = "".join(BASES[rng.integers(0, 4, size=30)])
    sequences = [site, background + site, site + background, reverse_site + background + site,
                 "N" + site, site + "N", site[:-1], background + reverse_site]
    hits = run_scan(sequences, [pair], [threshold])
    found = set(zip(hits.sequence.tolist(), hits.start.tolist(), hits.strand.tolist()))
    assert found == {(0, 0, 0), (1, 30, 0), (2, 0, 0), (3, 0, 1), (3, 42, 0), (4, 1, 0), (5, 0, 0), (7, 30, 1)}
    assert hits.score.tolist() == [threshold] * len(found)
    assert as_tuples(hits) == brute_force(sequences, [pair], [threshold])


def test_windows_never_cross_sequences_in_any_layout():
    """Adjacent, overlapping and unsorted sequences in a caller-made code array."""
    rng = np.random.default_rng(9)
    codes = rng.integers(0, 4, size=300).astype(np.uint8)
    codes[[50, 51, 200]] = 4
    starts = np.array([0, 40, 40, 100, 10, 290, 299, 150])
    lengths = np.array([40, 60, 30, 50, 25, 10, 0, 1])
    pair = random_pair(rng, 10, low=0, high=100)
    lowest, highest = int(pair[0].min(axis=1).sum()), int(pair[0].max(axis=1).sum())
    thresholds = [lowest, (lowest + highest) // 2]
    hits = scan(codes, starts, lengths, [pair, pair], thresholds)
    sequences = ["".join("ACGTN"[code] for code in codes[start:start + length])
                 for start, length in zip(starts, lengths)]
    assert as_tuples(hits) == brute_force(sequences, [pair, pair], thresholds)
    # A sequence ending exactly at the end of the code array, with its last window a hit.
    assert ((hits.sequence == 5) & (hits.start == 0) & (hits.matrix == 0)).sum() == 2
    # Sorted but touching sequences (no N between them).
    starts, lengths = np.array([0, 40, 100, 130]), np.array([40, 60, 30, 170])
    hits = scan(codes, starts, lengths, [pair, pair], thresholds)
    sequences = ["".join("ACGTN"[code] for code in codes[start:start + length])
                 for start, length in zip(starts, lengths)]
    assert as_tuples(hits) == brute_force(sequences, [pair, pair], thresholds)


def test_codes_outside_sequences_and_odd_code_values_are_ignored():
    rng = np.random.default_rng(12)
    codes = rng.integers(0, 4, size=120).astype(np.int16)
    codes[[5, 70]] = 9  # anything but 0..3 is N
    codes[[30]] = -1
    starts, lengths = np.array([2, 60]), np.array([50, 40])
    pair = random_pair(rng, 6, low=0, high=10)
    hits = scan(codes, starts, lengths, [pair], [0])
    sequences = ["".join("ACGT"[code] if 0 <= code < 4 else "N" for code in codes[start:start + length])
                 for start, length in zip(starts, lengths)]
    assert as_tuples(hits) == brute_force(sequences, [pair], [0])


def test_short_empty_and_missing_inputs():
    rng = np.random.default_rng(2)
    pair = random_pair(rng, 10)
    assert len(run_scan(["ACGTACGTA", "", "ACG"], [pair], [-10**6])) == 0
    assert len(run_scan([], [pair], [0])) == 0
    assert len(run_scan(["ACGTACGTACGT"], [], [])) == 0
    hits = run_scan(["ACGTACGTAC"], [pair], [-10**6])  # exactly one window
    assert hits.start.tolist() == [0, 0] and hits.strand.tolist() == [0, 1]


def test_large_scores_use_wide_integers():
    rng = np.random.default_rng(4)
    forward = rng.integers(0, 2**40, size=(14, 4))
    pair = np.stack([forward, reverse_complement(forward)])
    sequences = random_sequences(rng, 20, 80)
    lowest, highest = int(forward.min(axis=1).sum()), int(forward.max(axis=1).sum())
    thresholds = [lowest + (highest - lowest) * 3 // 4]
    hits = run_scan(sequences, [pair], thresholds)
    assert hits.score.dtype == np.int64
    assert as_tuples(hits) == brute_force(sequences, [pair], thresholds)


def test_dense_torch_path_matches_index_on_cpu(jaspar_pairs):
    pairs, thresholds = jaspar_pairs
    rng = np.random.default_rng(8)
    sequences = random_sequences(rng, 80, 220, n_rate=0.01)
    # lenient thresholds so that there are many hits to compare
    lenient = [threshold_for_pvalue(pair[0], 1e-3) for pair in pairs]
    index = run_scan(sequences, pairs + [pairs[0][0]], lenient + [lenient[0]], method="index")
    dense = run_scan(sequences, pairs + [pairs[0][0]], lenient + [lenient[0]], method="dense", device="cpu")
    assert as_tuples(dense) == as_tuples(index)
    assert len(index) > 500
    small = random_sequences(rng, 10, 40)
    matrices = [random_pair(rng, width) for width in (1, 4, 9)]
    thresholds = [0, 500, 4000]
    assert as_tuples(run_scan(small, matrices, thresholds, method="dense")) == \
        brute_force(small, matrices, thresholds)


def test_hits_are_sorted_and_convert_to_records():
    rng = np.random.default_rng(6)
    sequences = random_sequences(rng, 20, 50)
    matrices = [random_pair(rng, 4), random_pair(rng, 9)]
    hits = run_scan(sequences, matrices, [1500, 6000])
    keys = list(zip(hits.sequence.tolist(), hits.start.tolist(), hits.matrix.tolist(), hits.strand.tolist()))
    assert keys == sorted(keys) and len(keys) > 10
    records = hits.to_records()
    assert records.dtype.names == ("sequence", "matrix", "strand", "start", "score")
    assert records["score"].tolist() == hits.score.tolist()
    assert len(Hits.empty()) == 0


def test_bad_inputs_are_rejected():
    codes, starts = encode(["ACGTACGT"])
    with pytest.raises(ValueError, match="thresholds"):
        scan(codes, starts, [8], [np.zeros((3, 4), int)], [])
    with pytest.raises(ValueError, match="integer"):
        scan(codes, starts, [8], [np.zeros((3, 4))], [0])
    with pytest.raises(ValueError, match="shape|columns"):
        scan(codes, starts, [8], [np.zeros((3, 5), int)], [0])
    with pytest.raises(ValueError, match="inside"):
        scan(codes, starts, [20], [np.zeros((3, 4), int)], [0])
    with pytest.raises(ValueError, match="method"):
        scan(codes, starts, [8], [np.zeros((3, 4), int)], [0], method="fast")
