"""Exact, fast motif scanning: every window whose integer score reaches a per-matrix threshold.

The statistics (log-odds, integer scaling, thresholds) live elsewhere; this module only takes
integer score matrices (W x 4, columns A C G T) and integer thresholds, and returns exactly the
windows a brute-force scan would return: window ``[s, s + W)`` of a sequence is a hit on a matrix
``M`` iff it lies inside the sequence, contains only A/C/G/T, and ``sum_j M[j, base[s + j]] >=
threshold``.

API
---
``encode(sequences) -> (codes, starts)``
    One uint8 array (A0 C1 G2 T3, anything else 4 = N); sequence ``i`` is
    ``codes[starts[i]:starts[i] + len(sequences[i])]``; one N separates neighbours and ends the array.
``scan(codes, starts, lengths, matrices, thresholds, *, threads=2, device="cpu", method="auto")``
    ``matrices[i]`` is either one ``(W, 4)`` integer matrix, scanned on the '+' strand only, or a
    ``(forward, reverse)`` pair / ``(2, W, 4)`` array: ``forward`` scores the '+' strand and
    ``reverse`` (the caller's reverse-complement matrix, ``forward[::-1, ::-1]`` for a plain PWM)
    scores the '-' strand of the same window. ``thresholds[i]`` (one integer) applies to both.
    Returns :class:`Hits`, parallel arrays sorted by (sequence, start, matrix, strand); ``start``
    is the 0-based window start in its sequence on both strands.

Method ("index", the CPU default)
---------------------------------
1. Once per call: a private copy of the codes with N outside the sequences and max(W, 8) N of
   padding at both ends (sequences that touch, overlap or are unsorted are copied apart), the run
   of N-free bases starting at every position, the uint16 8-mer code at every position, and a CSR
   index k-mer -> positions of the N-free 8-mers (bincount + stable radix argsort of uint16).
   A window's k-mers all lie inside the window, so none is ever dropped at a sequence end.
2. Per matrix: the seed is the block of 8 contiguous columns with the largest sum of
   (column max - column mean). Its score T[kmer] plus ``rest_max`` (the other columns' maxima)
   bounds every window seeded by that k-mer, so only the k-mers with ``T + rest_max >= threshold``
   can seed hits; they are enumerated from two 256-entry half tables (sorted low half, searchsorted
   per high half), at a cost proportional to their number. Their positions minus the block offset
   (a ragged gather from the CSR index: repeat + arange + take) are the candidate window starts,
   with score T. Where they exceed ``DENSE_FRACTION`` of all positions (wide motifs, weak seed),
   the seed block is instead scored at every window start (one contiguous 65,536-table gather).
3. The other columns are covered by further 8-column blocks (greedy from the left; zero weight on
   columns already counted), verified strongest first. A block adds either ``table[kmer at start +
   offset]`` (a 65,536-entry table, two half tables and one outer sum, built on demand) or, when
   few candidates remain, its columns one by one (``column[code at start + j]``), whichever is
   cheaper. After each block the candidates with ``score + max(columns still to come) < threshold``
   are dropped; after the last, ``score >= threshold`` exactly. An N reads as some base here, so
   windows with an N get arbitrary scores; the final check ``run[start] >= W`` removes exactly them
   (a window inside the layout is inside one sequence iff it is N-free). Scores are int32 (int64
   for huge matrices), so everything is exact.
4. Matrices narrower than 8 use an index with k = their width (built lazily); the seed is then
   their whole score.
5. ``threads`` workers take matrices from a list sorted by width: even workers from the wide end
   (large numpy calls that release the GIL), odd ones from the narrow end (many small calls that
   hold it), so the two overlap; a single shared queue gained nothing on 2 cores. Tables exist only
   while their matrix runs: ~70 MiB peak for 2M positions.

Measured (``benchmarks/scan_kernel.py``, 2-core VM shared with other jobs: 797 JASPAR2026 matrices x
2 strands, widths 8..33, p < 5e-5, 10,000 x 200 bp): 147k hits in ~0.6 s on one thread, ~0.45 s on
two (k = 8 beat k = 7, 9 and 10); the same hit set as the dense conv and a numpy brute force.

Method "dense" (torch, any device, e.g. ``device="cuda"``): one-hot float32 conv1d of all matrices
of one width at a time, keeping windows whose float score is within a margin of the threshold
(wide enough for float32/TF32 rounding, so it does not depend on precision settings) and free of
N, then rescoring those exactly with integer gathers. Correct on CPU too (tested), meant for a GPU.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

N_CODE = 4
INDEX_K = 8
# Choose the dense first block when the seeded candidates exceed this fraction of the positions.
DENSE_FRACTION = 0.5

_LUT = np.full(256, N_CODE, dtype=np.uint8)
for _code, _base in enumerate("ACGT"):
    _LUT[ord(_base)] = _code
    _LUT[ord(_base.lower())] = _code


@dataclass(frozen=True)
class Hits:
    """Equal-length arrays, one entry per hit window."""

    sequence: np.ndarray  # int64, index into the scanned sequences
    matrix: np.ndarray  # int64, index into `matrices`
    strand: np.ndarray  # int8, 0 '+' (forward matrix), 1 '-' (reverse matrix)
    start: np.ndarray  # int64, 0-based window start in its sequence
    score: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.start.size)

    @classmethod
    def empty(cls) -> Hits:
        return cls(*(np.zeros(0, dtype=dtype) for dtype in (np.int64, np.int64, np.int8, np.int64, np.int64)))

    def to_records(self) -> np.ndarray:
        """The same hits as one numpy structured array."""
        records = np.empty(len(self), dtype=[("sequence", np.int64), ("matrix", np.int64), ("strand", np.int8),
                                              ("start", np.int64), ("score", np.int64)])
        for name in records.dtype.names:
            records[name] = getattr(self, name)
        return records


def encode(sequences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``sequences`` into one uint8 code array, each followed by one N.

    Returns ``(codes, starts)``: A0 C1 G2 T3 (either case), anything else 4 (N); sequence ``i`` is
    ``codes[starts[i]:starts[i] + len(sequences[i])]``.
    """
    sequences = list(sequences)
    lengths = np.fromiter((len(sequence) for sequence in sequences), dtype=np.int64, count=len(sequences))
    starts = np.zeros(len(sequences), dtype=np.int64)
    if len(sequences) > 1:
        np.cumsum(lengths[:-1] + 1, out=starts[1:])
    # Non-ASCII characters become one '?' each, so offsets stay character offsets.
    joined = "".join(sequence + "N" for sequence in sequences).encode("ascii", errors="replace")
    codes = _LUT[np.frombuffer(joined, dtype=np.uint8)]
    return codes, starts


# ----------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class _Job:
    matrix: int
    strand: int
    weights: np.ndarray  # (W, 4) int64
    threshold: int


def _jobs(matrices: Sequence[np.ndarray], thresholds: Sequence[int]) -> list[_Job]:
    if len(matrices) != len(thresholds):
        raise ValueError(f"{len(matrices)} matrices but {len(thresholds)} thresholds")
    jobs = []
    for index, (entry, threshold) in enumerate(zip(matrices, thresholds)):
        array = np.asarray(entry)
        if array.ndim == 2:
            strands = [array]
        elif array.ndim == 3 and array.shape[0] == 2:
            strands = [array[0], array[1]]
        else:
            raise ValueError(f"matrix {index}: expected a (W, 4) matrix or a (forward, reverse) pair, "
                             f"got shape {array.shape}")
        if array.shape[-1] != 4 or array.shape[-2] < 1:
            raise ValueError(f"matrix {index}: expected W >= 1 rows of 4 columns (A C G T), got {array.shape}")
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"matrix {index}: integer scores required, got dtype {array.dtype}")
        if int(threshold) != threshold:
            raise ValueError(f"threshold {index}: integer required, got {threshold!r}")
        if np.abs(array.astype(np.float64)).max(axis=-1).sum(axis=-1).max() >= 2.0**55:
            raise ValueError(f"matrix {index}: scores too large (sum of column maxima >= 2**55)")
        for strand, weights in enumerate(strands):
            weights = weights.astype(np.int64)
            jobs.append(_Job(index, strand, weights, int(threshold)))
    return jobs


def _layout(codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray, pad: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """A private code array with N everywhere outside the sequences, at least one N between
    neighbours and ``pad`` N at both ends; returns it and each sequence's offset in it."""
    codes = np.asarray(codes)
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if codes.ndim != 1:
        raise ValueError("codes must be one-dimensional")
    if starts.size != lengths.size:
        raise ValueError(f"{starts.size} starts but {lengths.size} lengths")
    if (lengths < 0).any() or (starts < 0).any() or (starts + lengths > codes.size).any():
        raise ValueError("every sequence must lie inside codes")
    if codes.dtype != np.uint8 or codes.max(initial=0) > N_CODE:
        if not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
        codes = np.where((codes >= 0) & (codes < N_CODE), codes, N_CODE).astype(np.uint8)
    nonempty = np.flatnonzero(lengths > 0)
    s, e = starts[nonempty], starts[nonempty] + lengths[nonempty]
    separated = bool(np.all(s[1:] > e[:-1]))
    if separated:
        inside = np.bincount(s, minlength=codes.size + 1) - np.bincount(e, minlength=codes.size + 1)
        inside = np.cumsum(inside[:-1]) > 0
        work = np.full(codes.size + 2 * pad, N_CODE, dtype=np.uint8)
        work[pad:pad + codes.size] = np.where(inside, codes, N_CODE)
        return work, starts + pad
    # Overlapping, adjacent or unsorted sequences: copy them one after the other.
    new_starts = np.zeros(starts.size, dtype=np.int64)
    if starts.size:
        np.cumsum(lengths[:-1] + 1, out=new_starts[1:])
    new_starts += pad
    total = int(new_starts[-1] + lengths[-1]) if starts.size else pad
    work = np.full(total + pad + 1, N_CODE, dtype=np.uint8)
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    source = np.repeat(starts, lengths) + within
    destination = np.repeat(new_starts, lengths) + within
    work[destination] = codes[source]
    return work, new_starts


# ----------------------------------------------------------------------------------------------
# The k-mer index


class _Index:
    """k-mer codes of one padded code array and their CSR position index (built lazily per k),
    and the run of N-free bases starting at every position."""

    def __init__(self, work: np.ndarray) -> None:
        self.work = work
        n = work.size
        # run[p] = number of bases from p up to the next N (the layout ends with N, so one exists).
        next_n = np.where(work == N_CODE, np.arange(n, dtype=np.int64), n)
        np.minimum.accumulate(next_n[::-1], out=next_n[::-1])
        next_n -= np.arange(n, dtype=np.int64)
        self.run = next_n.astype(np.int32) if n < 2**31 else next_n
        self._kmers: dict[int, np.ndarray] = {}
        self._csr: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def kmers(self, k: int) -> np.ndarray:
        """uint16 (k <= 8) code of the k-mer starting at every position (base 4, first base most significant);
        only meaningful where ``run >= k`` (elsewhere N counts as T, and the last k - 1 are 0)."""
        if k not in self._kmers:
            work = self.work
            m = work.size - k + 1
            kmers = np.zeros(work.size, dtype=np.uint16 if k <= 8 else np.uint32)
            if m > 0:
                values = (work & np.uint8(3)).astype(kmers.dtype)
                code = kmers[:m]
                code[:] = values[:m]
                for j in range(1, k):
                    code <<= 2
                    code |= values[j:j + m]
            self._kmers[k] = kmers
        return self._kmers[k]

    def csr(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions sorted by k-mer, counts per k-mer, offsets per k-mer) of the N-free k-mers."""
        if k not in self._csr:
            kmers = self.kmers(k)
            valid = np.flatnonzero(self.run >= k).astype(np.int32 if kmers.size < 2**31 else np.int64)
            values = np.take(kmers, valid)
            order = np.argsort(values, kind="stable")  # a radix sort for uint16
            positions = np.take(valid, order)
            counts = np.bincount(values, minlength=4**k)
            offsets = np.zeros(4**k + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            self._csr[k] = (positions, counts, offsets)
        return self._csr[k]


# ----------------------------------------------------------------------------------------------
# Per-matrix plan


def _block_table(weights: np.ndarray, offset: int, k: int, columns: np.ndarray, dtype) -> np.ndarray:
    """Score of columns ``offset + j`` (only those with ``columns[j]``) on every k-mer; k-mer digits
    are base 4, first column most significant. Two half tables and one outer sum."""
    block = weights[offset:offset + k] * columns[:, None]
    half = k // 2
    high = _small_table(block[:half]).astype(dtype)
    low = _small_table(block[half:]).astype(dtype)
    table = np.empty(4**k, dtype=dtype)
    np.add(high[:, None], low[None, :], out=table.reshape(high.size, low.size))
    return table


def _small_table(block: np.ndarray) -> np.ndarray:
    """Score of the h columns of ``block`` on all 4**h h-mers (first column most significant)."""
    return block.ravel()[_digit_positions(block.shape[0])].sum(axis=1)


_DIGITS: dict[int, np.ndarray] = {}


def _digit_positions(h: int) -> np.ndarray:
    """(4**h, h) positions into a flattened (h, 4) block: column j, base = digit j of the h-mer."""
    if h not in _DIGITS:
        shifts = 2 * np.arange(h - 1, -1, -1)
        digits = (np.arange(4**h)[:, None] >> shifts[None, :]) & 3
        _DIGITS[h] = (digits + 4 * np.arange(h)[None, :]).astype(np.intp)
    return _DIGITS[h]


@dataclass
class _Plan:
    job: _Job
    k: int
    offset: int  # first column of the seed block
    seed_high: np.ndarray  # seed block score of the first k // 2 columns on every (k // 2)-mer
    seed_low: np.ndarray  # ... and of the other columns on every (k - k // 2)-mer
    seed_need: int  # a candidate survives the seed iff its seed score >= seed_need
    stages: list  # (offset, columns, need): add the block's columns, keep score >= need
    dtype: type
    columns: np.ndarray  # (W, 5) weights, code 4 (N) scoring 0, for column stages


def _plan(job: _Job) -> _Plan | None:
    """Seed block, its table and the verification stages of one matrix (None: threshold unreachable).

    Windows with an N get arbitrary scores here (an N reads as T in a k-mer, 0 in a column) and
    are removed at the end by the run-length check; every N-free window's score is exact."""
    weights = job.weights
    width = weights.shape[0]
    column_max = weights.max(axis=1)
    if job.threshold > column_max.sum():
        return None
    # A threshold below the lowest score admits every N-free window; clamping keeps the arithmetic
    # inside the score range.
    threshold = max(job.threshold, int(weights.min(axis=1).sum()))
    bound = int(np.abs(weights).max(axis=1).sum())
    dtype = np.int32 if bound < 2**30 else np.int64
    k = min(INDEX_K, width)
    power = (column_max - weights.mean(axis=1)).astype(np.float64)
    window_power = np.convolve(power, np.ones(k), mode="valid")
    offset = int(np.argmax(window_power))
    covered = np.zeros(width, dtype=bool)
    covered[offset:offset + k] = True
    seed_high = _small_table(weights[offset:offset + k // 2]).astype(dtype)
    seed_low = _small_table(weights[offset + k // 2:offset + k]).astype(dtype)
    # Cover the other columns with k-wide blocks (greedy from the left; zero weight on columns
    # already counted); verify the most discriminating first.
    blocks = []
    while not covered.all():
        first = int(np.argmin(covered))
        start = min(first, width - k)
        columns = ~covered[start:start + k]
        covered[start:start + k] = True
        blocks.append((start, columns, float(power[start:start + k][columns].sum())))
    blocks.sort(key=lambda block: -block[2])
    remaining = int(column_max.sum() - column_max[offset:offset + k].sum())
    seed_need = threshold - remaining
    stages = []
    for start, columns, _ in blocks:
        remaining -= int(column_max[start:start + k][columns].sum())
        stages.append((start, columns, threshold - remaining))
    with_n = np.zeros((width, 5), dtype=dtype)
    with_n[:, :4] = weights
    return _Plan(job, k, offset, seed_high, seed_low, seed_need, stages, dtype, with_n)


def _seeds(plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
    """The k-mers whose seed score reaches ``seed_need``, and their scores, from the two half
    tables (sorted low half + searchsorted per high half): cost ~ the number of seeds."""
    high, low = plan.seed_high, plan.seed_low
    order = np.argsort(low, kind="stable")
    low_sorted = low[order]
    first = np.searchsorted(low_sorted, plan.seed_need - high, side="left")
    count = low.size - first
    total = int(count.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=plan.dtype)
    high_part = np.repeat(np.arange(high.size), count)
    low_part = order[np.arange(total) + np.repeat(first - np.cumsum(count) + count, count)]
    kmers = (high_part << (2 * (plan.k - plan.k // 2))) | low_part
    return kmers, high[high_part] + low[low_part]


# A block stage costs about one table build (~25 us, 65,536 adds) plus one k-mer and one table gather
# per candidate; a column stage about 4 us plus a code and a column gather per candidate and column.
_TABLE_US = 25.0
_COLUMN_US = 4.0
_GATHER_US = 0.003


def _run_plan(plan: _Plan, index: _Index) -> tuple[np.ndarray, np.ndarray]:
    """Global window starts (in the padded layout) and scores of one matrix's hits."""
    k = plan.k
    width = plan.job.weights.shape[0]
    kmers = index.kmers(k)
    positions, counts, offsets = index.csr(k)
    index_type = positions.dtype.type
    nothing = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    seeds, seed_scores = _seeds(plan)
    if seeds.size == 0:
        return nothing
    seed_counts = counts[seeds]
    total = int(seed_counts.sum())
    if total == 0:
        return nothing
    if total > DENSE_FRACTION * positions.size:
        # Weak seed: score its block at every window start (contiguous, so cache friendly).
        n_windows = kmers.size - width + 1
        seed_table = _block_table(plan.job.weights, plan.offset, k, np.ones(k, dtype=bool), plan.dtype)
        score = np.take(seed_table, kmers[plan.offset:plan.offset + n_windows])
        starts = np.flatnonzero(score >= plan.seed_need).astype(positions.dtype)
        score = np.take(score, starts)
    elif seeds.size == 1:
        first = int(offsets[seeds[0]])
        starts = positions[first:first + total] - index_type(plan.offset)
        score = np.full(total, seed_scores[0], dtype=plan.dtype)
    else:
        # Ragged gather of the seed k-mers' position lists from the CSR index.
        shift = (offsets[seeds] - np.cumsum(seed_counts) + seed_counts).astype(positions.dtype)
        take = np.repeat(shift, seed_counts)
        take += np.arange(total, dtype=positions.dtype)
        starts = np.take(positions, take)
        starts -= index_type(plan.offset)
        score = np.repeat(seed_scores, seed_counts)
    for offset, columns, need in plan.stages:
        if starts.size == 0:
            break
        chosen = np.flatnonzero(columns)
        if chosen.size * (_COLUMN_US + _GATHER_US * starts.size) < _TABLE_US + _GATHER_US * starts.size:
            for column in chosen + offset:
                score += np.take(plan.columns[column], np.take(index.work[column:], starts))
        else:
            table = _block_table(plan.job.weights, offset, k, columns, plan.dtype)
            score += np.take(table, np.take(kmers[offset:], starts))
        keep = np.flatnonzero(score >= need)
        starts = np.take(starts, keep)
        score = np.take(score, keep)
    # Exactly the N-free windows remain (a window lies inside one sequence iff it is N-free).
    keep = np.flatnonzero(np.take(index.run, starts) >= width)
    return np.take(starts, keep).astype(np.int64), np.take(score, keep).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Entry point


def scan(codes: np.ndarray, starts: Sequence[int] | np.ndarray, lengths: Sequence[int] | np.ndarray,
         matrices: Sequence[np.ndarray], thresholds: Sequence[int], *, threads: int = 2,
         device: str = "cpu", method: str = "auto") -> Hits:
    """Every window (both strands for paired matrices) scoring >= its matrix's threshold.

    ``codes``/``starts`` as from :func:`encode`; ``lengths[i]`` is sequence ``i``'s length. See the
    module docstring for ``matrices``. ``method``: "index" (numpy, CPU), "dense" (torch on
    ``device``), "auto" (index on "cpu", dense elsewhere).
    """
    jobs = _jobs(matrices, thresholds)
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if method == "auto":
        method = "index" if str(device) == "cpu" else "dense"
    if method not in ("index", "dense"):
        raise ValueError(f"unknown method {method!r}")
    if not jobs or starts.size == 0:
        return Hits.empty()
    max_width = max(job.weights.shape[0] for job in jobs)
    work, work_starts = _layout(codes, starts, lengths, pad=max(max_width, INDEX_K))
    if method == "dense":
        results = _scan_dense(work, jobs, device)
    else:
        results = _scan_index(work, jobs, threads)
    return _collect(results, jobs, work_starts, lengths)


def _scan_index(work: np.ndarray, jobs: list[_Job], threads: int) -> list[tuple[np.ndarray, np.ndarray]]:
    index = _Index(work)
    for k in sorted({min(INDEX_K, job.weights.shape[0]) for job in jobs}):
        index.csr(k)  # build before the threads start
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    results: list[tuple[np.ndarray, np.ndarray]] = [empty] * len(jobs)
    # Wide matrices spend their time in large numpy calls that release the GIL; narrow ones in many
    # small calls that hold it. With the jobs sorted by width, even workers pull from the wide end
    # and odd ones from the narrow end, so the GIL-bound work overlaps the GIL-free work (1.5x on 2
    # cores, where a single shared queue gained nothing: two threads of narrow jobs just queue on
    # the GIL).
    order = sorted(range(len(jobs)), key=lambda number: -jobs[number].weights.shape[0])
    lock = threading.Lock()
    bounds = [0, len(order)]  # next from the wide end, one past the next from the narrow end

    def worker(from_wide_end: bool) -> None:
        while True:
            with lock:
                if bounds[0] >= bounds[1]:
                    return
                if from_wide_end:
                    number = order[bounds[0]]
                    bounds[0] += 1
                else:
                    bounds[1] -= 1
                    number = order[bounds[1]]
            plan = _plan(jobs[number])  # built here, so only a few plans' tables exist at once
            if plan is not None:
                results[number] = _run_plan(plan, index)

    threads = max(1, min(int(threads), len(jobs)))
    if threads == 1:
        worker(True)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for future in [pool.submit(worker, number % 2 == 0) for number in range(threads)]:
                future.result()
    return results


def _collect(results, jobs: list[_Job], work_starts: np.ndarray, lengths: np.ndarray) -> Hits:
    sizes = np.array([result[0].size for result in results], dtype=np.int64)
    if sizes.sum() == 0:
        return Hits.empty()
    positions = np.concatenate([result[0] for result in results])
    score = np.concatenate([result[1] for result in results])
    matrix = np.repeat(np.array([job.matrix for job in jobs], dtype=np.int64), sizes)
    strand = np.repeat(np.array([job.strand for job in jobs], dtype=np.int8), sizes)
    # Map layout positions back to sequences (only non-empty sequences can hold a window).
    nonempty = np.flatnonzero(lengths > 0)
    order = nonempty[np.argsort(work_starts[nonempty], kind="stable")]
    slot = np.searchsorted(work_starts[order], positions, side="right") - 1
    sequence = order[slot]
    start = positions - work_starts[sequence]
    final = np.lexsort((strand, matrix, start, sequence))
    return Hits(sequence[final], matrix[final], strand[final], start[final], score[final])


# ----------------------------------------------------------------------------------------------
# Dense torch path


def _scan_dense(work: np.ndarray, jobs: list[_Job], device: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Dense torch scan: float32 one-hot conv1d of all matrices of one width at a time.

    The conv only preselects: a window passes if its float score is within a margin (covering
    TF32/float32 rounding, so the result does not depend on the precision settings) of the
    threshold; passing windows are then rescored exactly with integer gathers.
    """
    import torch

    device = torch.device(device)
    n = work.size
    codes = torch.from_numpy(work.astype(np.int64)).to(device)
    onehot = torch.zeros(4, n, dtype=torch.float32, device=device)
    clean = codes < N_CODE
    onehot[codes.clamp(max=3), torch.arange(n, device=device)] = clean.to(torch.float32)
    bad = torch.zeros(n + 1, dtype=torch.int64, device=device)
    bad[1:] = torch.cumsum((~clean).to(torch.int64), dim=0)
    results: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0, np.int64), np.zeros(0, np.int64))] * len(jobs)
    by_width: dict[int, list[int]] = {}
    for number, job in enumerate(jobs):
        if job.threshold <= job.weights.max(axis=1).sum():
            by_width.setdefault(job.weights.shape[0], []).append(number)
    for width, numbers in sorted(by_width.items()):
        n_windows = n - width + 1
        if n_windows <= 0:
            continue
        weights = np.stack([jobs[number].weights for number in numbers])  # (G, W, 4) int64
        exact = torch.from_numpy(weights).to(device)
        kernel = exact.to(torch.float32).permute(0, 2, 1).contiguous()  # (G, 4, W)
        thresholds = torch.tensor([jobs[number].threshold for number in numbers], dtype=torch.int64, device=device)
        bound = np.abs(weights).max(axis=2).sum(axis=1)
        margin = torch.from_numpy(np.ceil(bound * 2.0**-8) + 1).to(device)
        cutoff = (thresholds.to(torch.float64) - margin).to(torch.float32)
        window_ok = (bad[width:width + n_windows] - bad[:n_windows]) == 0
        chunk = max(1 << 16, (1 << 25) // len(numbers))
        found_group, found_start = [], []
        for begin in range(0, n_windows, chunk):
            end = min(n_windows, begin + chunk)
            scores = torch.nn.functional.conv1d(onehot[None, :, begin:end + width - 1], kernel)[0]
            passing = (scores >= cutoff[:, None]) & window_ok[None, begin:end]
            group, start = torch.nonzero(passing, as_tuple=True)
            found_group.append(group)
            found_start.append(start + begin)
        group = torch.cat(found_group)
        start = torch.cat(found_start)
        # Exact integer rescoring of the preselected windows.
        columns = torch.arange(width, device=device)
        window_codes = codes[start[:, None] + columns[None, :]]  # (C, W), all < 4 here
        score = exact[group[:, None], columns[None, :], window_codes].sum(dim=1)
        keep = score >= thresholds[group]
        group, start, score = group[keep].cpu().numpy(), start[keep].cpu().numpy(), score[keep].cpu().numpy()
        for slot, number in enumerate(numbers):
            mine = group == slot
            results[number] = (start[mine].astype(np.int64), score[mine].astype(np.int64))
    return results
