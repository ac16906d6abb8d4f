"""Speed and exactness of the motif-scanning kernel (`r3lm.motifs.kernel`) on the realistic workload:
every JASPAR2026 CORE vertebrate matrix that can reach p < 5e-5 (both strands), integer log2-odds
(0.1 pseudocount, uniform background, 0..1000 per cell), thresholds by exact DP, over 10,000 random
200 bp sequences (seeded). Prints the time and hits/s of the index kernel (1 and 2 threads), and checks
the hit set against the dense torch conv and a numpy brute force on subsets.

    python benchmarks/scan_kernel.py [--sequences 10000] [--length 200] [--pvalue 5e-5] [--repeats 3]
                                     [--check-sequences 1000] [--brute-sequences 200] [--device cpu]
                                     [--profile]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np

from r3lm.config import validate_config
from r3lm.motifs import kernel
from r3lm.motifs.pssm import uniform_background
from r3lm.motifs.scan import build_motif_set


def workload(pvalue: float) -> tuple[list[np.ndarray], list[int], int]:
    """FIMO's integer matrices (both strands) and thresholds for every reachable JASPAR2026 matrix."""
    settings = {**validate_config({})["motifs"], "pvalue": pvalue}
    motif_set = build_motif_set(settings, uniform_background())
    pairs = [np.stack([m.forward, m.reverse]) for m in motif_set.scored]
    return pairs, [m.threshold for m in motif_set.scored], len(motif_set.skipped)


def brute_force(codes_2d: np.ndarray, pairs: list[np.ndarray], thresholds: list[int]) -> set[tuple]:
    """Every (sequence, matrix, strand, start, score) hit of equal-length N-free sequences, column by column."""
    hits = set()
    n_sequences, length = codes_2d.shape
    for index, (pair, threshold) in enumerate(zip(pairs, thresholds)):
        width = pair.shape[1]
        for strand in (0, 1):
            scores = np.zeros((n_sequences, length - width + 1), dtype=np.int64)
            for column in range(width):
                scores += pair[strand, column][codes_2d[:, column:column + length - width + 1]]
            for sequence, start in zip(*np.nonzero(scores >= threshold)):
                hits.add((int(sequence), index, strand, int(start), int(scores[sequence, start])))
    return hits


def as_set(hits: kernel.Hits) -> set[tuple]:
    return set(zip(hits.sequence.tolist(), hits.matrix.tolist(), hits.strand.tolist(), hits.start.tolist(),
                   hits.score.tolist()))


def profile(codes, starts, lengths, pairs, thresholds) -> None:
    """Single-thread phase breakdown, by motif width."""
    clock = time.perf_counter
    begin = clock()
    jobs = kernel._jobs(pairs, thresholds)
    work, _ = kernel._layout(codes, starts, lengths, pad=max(34, kernel.INDEX_K))
    layout = clock()
    index = kernel._Index(work)
    positions, counts, _ = index.csr(kernel.INDEX_K)
    built = clock()
    print(f"  layout {layout - begin:.3f} s, k-mer codes + CSR index {built - layout:.3f} s")
    rows = []
    for job in jobs:
        start = clock()
        plan = kernel._plan(job)
        planned = clock()
        found = kernel._run_plan(plan, index)
        done = clock()
        seeds, _ = kernel._seeds(plan)
        rows.append((job.weights.shape[0], planned - start, done - planned, counts[seeds].sum(), len(plan.stages),
                     found[0].size))
    rows = np.array(rows, dtype=np.float64)
    print(f"  {'widths':>8} {'jobs':>5} {'plan s':>7} {'run s':>7} {'candidates':>11} {'stages':>6} {'hits':>7}")
    for low, high in [(8, 9), (9, 11), (11, 13), (13, 16), (16, 20), (20, 40)]:
        part = rows[(rows[:, 0] >= low) & (rows[:, 0] < high)]
        if part.size:
            print(f"  {f'{low}-{high - 1}':>8} {len(part):5d} {part[:, 1].sum():7.3f} {part[:, 2].sum():7.3f} "
                  f"{part[:, 3].sum():11.0f} {part[:, 4].mean():6.1f} {part[:, 5].sum():7.0f}")
    print(f"  {'all':>8} {len(rows):5d} {rows[:, 1].sum():7.3f} {rows[:, 2].sum():7.3f} {rows[:, 3].sum():11.0f}"
          f" {rows[:, 4].mean():6.1f} {rows[:, 5].sum():7.0f}   (candidates / positions = "
          f"{rows[:, 3].sum() / positions.size:.1f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=10_000)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--pvalue", type=float, default=5e-5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check-sequences", type=int, default=1000, help="subset compared with the dense conv")
    parser.add_argument("--brute-sequences", type=int, default=200, help="subset compared with numpy brute force")
    parser.add_argument("--device", default="cpu", help="torch device of the dense conv (cuda to time it on a GPU)")
    parser.add_argument("--profile", action="store_true", help="single-thread phase breakdown")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    pairs, thresholds, skipped = workload(args.pvalue)
    widths = np.array([pair.shape[1] for pair in pairs])
    print(f"workload: {len(pairs)} JASPAR matrices x 2 strands (skipped {skipped} that cannot reach "
          f"p < {args.pvalue:g}), widths {widths.min()}..{widths.max()}, mean {widths.mean():.1f}, "
          f"{widths.sum()} columns per strand; built in {time.perf_counter() - start:.1f} s")

    rng = np.random.default_rng(args.seed)
    codes_2d = rng.integers(0, 4, size=(args.sequences, args.length), dtype=np.uint8)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)[codes_2d]
    sequences = [row.tobytes().decode("ascii") for row in letters]
    lengths = np.full(args.sequences, args.length)
    positions = args.sequences * args.length
    print(f"sequences: {args.sequences} x {args.length} bp random (seed {args.seed}) = {positions:,} positions")

    results = {}
    for threads in (1, 2):
        times = []
        for _ in range(args.repeats):
            begin = time.perf_counter()
            codes, starts = kernel.encode(sequences)
            encoded = time.perf_counter()
            hits = kernel.scan(codes, starts, lengths, pairs, thresholds, threads=threads)
            times.append((encoded - begin, time.perf_counter() - encoded))
        first, best = sum(times[0]), min(sum(pair) for pair in times)
        results[threads] = {"first_s": first, "best_s": best, "encode_s": min(t[0] for t in times),
                            "hits": len(hits)}
        print(f"index kernel, {threads} thread(s): {len(hits):,} hits; total (encode + scan) first "
              f"{first:.2f} s, best {best:.2f} s of {args.repeats}; encode {results[threads]['encode_s']:.2f} s; "
              f"{len(hits) / best:,.0f} hits/s, {positions * 2 * len(pairs) / best / 1e6:,.0f} M window-scores/s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")

    if args.profile:
        print("profile (1 thread):")
        profile(codes, starts, lengths, pairs, thresholds)

    ok = True
    if args.check_sequences:
        subset = sequences[:args.check_sequences]
        codes, starts = kernel.encode(subset)
        begin = time.perf_counter()
        index_hits = kernel.scan(codes, starts, lengths[:len(subset)], pairs, thresholds)
        index_time = time.perf_counter() - begin
        begin = time.perf_counter()
        dense_hits = kernel.scan(codes, starts, lengths[:len(subset)], pairs, thresholds, method="dense",
                                 device=args.device)
        dense_time = time.perf_counter() - begin
        same = as_set(index_hits) == as_set(dense_hits)
        ok &= same
        print(f"check vs dense torch conv ({args.device}) on {len(subset)} sequences: index {len(index_hits)} hits "
              f"in {index_time:.2f} s, dense {len(dense_hits)} hits in {dense_time:.2f} s: "
              f"{'identical' if same else 'DIFFERENT'}")
    if args.brute_sequences:
        subset = sequences[:args.brute_sequences]
        codes, starts = kernel.encode(subset)
        begin = time.perf_counter()
        expected = brute_force(codes_2d[:len(subset)], pairs, thresholds)
        brute_time = time.perf_counter() - begin
        found = as_set(kernel.scan(codes, starts, lengths[:len(subset)], pairs, thresholds))
        same = found == expected
        ok &= same
        print(f"check vs numpy brute force on {len(subset)} sequences: {len(expected)} hits in {brute_time:.2f} s, "
              f"kernel {len(found)}: {'identical' if same else 'DIFFERENT'}")
    print(json.dumps({"matrices": len(pairs), "positions": positions, "threads": results, "exact": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
