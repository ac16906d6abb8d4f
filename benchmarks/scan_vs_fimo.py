"""r3lm's scanner against pymemesuite's FIMO on the issue's workload, as a ratio in one run.

Workload: every JASPAR2026 CORE vertebrate matrix over 10,000 random 200 bp sequences (seeded),
uniform background, p < 5e-5, both strands. pymemesuite scans all 1019 matrices, as FIMO would;
r3lm skips the 222 that cannot reach the threshold, so pymemesuite's time on the 797 reachable
ones is printed too. Hits are compared (pymemesuite never scans a sequence's last window, so those
are left out of the comparison). Also projects r3lm's time for the ~800k Gosai sequences.

r3lm is timed twice: the scan alone in this process, and as a user runs it, `r3lm scan` on a FASTA of the
same sequences to a parquet file in a fresh process (start-up, imports, motif set, scan, writing); the
issue's goal is the whole process at >= 30x FIMO's time on every matrix.

    python benchmarks/scan_vs_fimo.py [--sequences 10000] [--threads 2] [--skip-fimo]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from r3lm.config import validate_config
from r3lm.motifs.pssm import motif_frequencies
from r3lm.motifs.scan import build_motif_set, scan_sequences

GOSAI_SEQUENCES = 800_000


def random_sequences(count: int, length: int = 200, seed: int = 0) -> list[str]:
    codes = np.frombuffer(b"ACGT", dtype=np.uint8)[np.random.default_rng(seed).integers(0, 4, (count, length))]
    return codes.view(f"S{length}").ravel().astype(str).tolist()


def time_fimo(motif_set, ids: list[str], sequences: list[str]) -> tuple[float, float, set]:
    """Seconds for all matrices, seconds for the reachable ones, and the hit keys."""
    from pymemesuite.common import Alphabet, Array, Background, Matrix, Sequence
    from pymemesuite.common import Motif as MemeMotif
    from pymemesuite.fimo import FIMO

    dna = Alphabet.dna()
    fimo = FIMO(both_strands=True, threshold=motif_set.pvalue)
    background = Background(dna, Array(motif_set.scored[0].background.tolist()))
    fimo_sequences = [Sequence(sequence, name=seq_id.encode()) for seq_id, sequence in zip(ids, sequences)]
    reachable = {m.motif.matrix_id for m in motif_set.scored}
    every = [m.motif for m in motif_set.scored] + list(motif_set.skipped)
    keys, total, on_reachable = set(), 0.0, 0.0
    for motif in every:
        frequencies = motif_frequencies(motif, motif_set.scored[0].background)
        meme_motif = MemeMotif(dna, frequencies=Matrix(frequencies.tolist()), name=motif.name.encode(),
                               accession=motif.matrix_id.encode())
        started = time.perf_counter()
        pattern = fimo.score_motif(meme_motif, fimo_sequences, background)
        seconds = time.perf_counter() - started
        total += seconds
        if motif.matrix_id in reachable:
            on_reachable += seconds
        keys |= {(e.source.name.decode(), motif.matrix_id, min(e.start, e.stop), e.strand)
                 for e in pattern.matched_elements}
    return total, on_reachable, keys


def time_whole_process(ids: list[str], sequences: list[str], threads: int) -> float:
    """Wall seconds of `python -m r3lm scan` from a FASTA to a parquet file, in a fresh process."""
    with tempfile.TemporaryDirectory() as folder:
        fasta = Path(folder) / "sequences.fa"
        fasta.write_text("".join(f">{seq_id}\n{sequence}\n" for seq_id, sequence in zip(ids, sequences)))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "r3lm", "scan", "--sequences", str(fasta), "--out",
                        str(Path(folder) / "hits.parquet"), "--threads", str(threads)], check=True,
                       capture_output=True)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-fimo", action="store_true", help="time r3lm only")
    args = parser.parse_args()
    sequences = random_sequences(args.sequences)
    ids = [f"s{i}" for i in range(len(sequences))]
    settings = validate_config({})["motifs"]

    started = time.perf_counter()
    motif_set = build_motif_set(settings, np.full(4, 0.25))
    setup = time.perf_counter() - started
    scan_sequences(ids[:100], sequences[:100], motif_set, threads=args.threads, progress=False)  # warm caches
    started = time.perf_counter()
    hits = scan_sequences(ids, sequences, motif_set, threads=args.threads, progress=False)
    ours = time.perf_counter() - started
    print(f"r3lm: {len(motif_set.scored)} matrices scanned ({len(motif_set.skipped)} unreachable skipped), "
          f"motif set built in {setup:.2f} s; scan {ours:.2f} s, {len(hits):,} hits, "
          f"{args.sequences / ours:,.0f} sequences/s")
    print(f"projected for {GOSAI_SEQUENCES:,} Gosai sequences: {GOSAI_SEQUENCES / args.sequences * ours / 60:.1f} min "
          f"on {args.threads} cores (in one job; shards divide it)")
    whole = time_whole_process(ids, sequences, args.threads)
    print(f"r3lm scan as a whole process (python -m r3lm scan, FASTA to parquet): {whole:.2f} s")
    if args.skip_fimo:
        return
    fimo_all, fimo_reachable, fimo_keys = time_fimo(motif_set, ids, sequences)
    lengths = {seq_id: len(sequence) for seq_id, sequence in zip(ids, sequences)}
    ours_keys = {(row.seq_id, row.matrix_id, row.start, row.strand) for row in hits.itertuples()
                 if row.end != lengths[row.seq_id]}
    print(f"pymemesuite FIMO: {fimo_all:.1f} s on all {len(motif_set.scored) + len(motif_set.skipped)} matrices, "
          f"{fimo_reachable:.1f} s on the {len(motif_set.scored)} reachable ones, {len(fimo_keys):,} hits")
    print(f"identical hit sets (last windows aside): {ours_keys == fimo_keys}")
    print(f"speed-up: {fimo_all / ours:.1f}x against FIMO on the whole set, "
          f"{fimo_reachable / ours:.1f}x on the reachable matrices alone; "
          f"{fimo_all / whole:.1f}x as a whole process")


if __name__ == "__main__":
    main()
