"""FIMO statistics in r3lm.motifs.pssm, proven against FIMO itself (pymemesuite's bindings).

Every window of random and real sequences is scored by brute force with a ScoredMotif (plain numpy
scanner below, both strands) and compared with the hits pymemesuite's FIMO reports: the same hit set
(sequence, start, end, strand), the same p-values and scores.  pymemesuite's scan loop stops one
window early (`range(length - width)`), so the last window of each sequence is left out of the
comparison; the FIMO program itself scans it.  pymemesuite keeps p < threshold where fimo.c keeps
p <= threshold; the tests check that no window sits exactly on the threshold, so both rules agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from r3lm.motifs import pssm
from r3lm.motifs.jaspar import NUCLEOTIDES, Motif, load_motifs
from r3lm.motifs.meme_format import write_meme

THRESHOLD = 5e-5
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_SOURCES = (("agarwal2025/hepg2_lentimpra.tsv", "seq", 150),
                ("gosai2024/table_s2_rows.tsv", "sequence", None))


@pytest.fixture(scope="module")
def motifs() -> tuple[Motif, ...]:
    return load_motifs("JASPAR2026")


@pytest.fixture(scope="module")
def random_sequences() -> list[str]:
    """Skewed composition (so an estimated background differs from uniform), some N and lowercase."""
    rng = np.random.default_rng(7)
    letters = np.array(list("ACGTNacgt"))
    weights = np.array([0.29, 0.19, 0.19, 0.29, 0.002, 0.008, 0.008, 0.008, 0.006])
    return ["".join(rng.choice(letters, size=int(length), p=weights / weights.sum()))
            for length in rng.integers(150, 650, size=30)]


@pytest.fixture(scope="module")
def real_sequences() -> list[str]:
    sequences: list[str] = []
    for relative, column, limit in REAL_SOURCES:
        path = DATA / relative
        if not path.is_file():
            pytest.skip(f"real data not found: {path}")
        values = pd.read_csv(path, sep="\t", usecols=[column])[column].dropna().astype(str)
        sequences += list(values if limit is None else values.iloc[:limit])
    return sequences


# --- brute-force reference scanner --------------------------------------------------------------

def encode(sequences: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(N, Lmax) codes 0-3 for ACGT (any case), 4 for anything else and for padding."""
    lookup = np.full(256, 4, dtype=np.int64)
    for index, base in enumerate(NUCLEOTIDES):
        lookup[ord(base)] = lookup[ord(base.lower())] = index
    lengths = np.array([len(s) for s in sequences])
    codes = np.full((len(sequences), lengths.max()), 4, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        codes[row, :len(sequence)] = lookup[np.frombuffer(sequence.encode("ascii"), np.uint8)]
    return codes, lengths


def reference_hits(scored: pssm.ScoredMotif, codes: np.ndarray, lengths: np.ndarray,
                   skip_last: bool = True) -> dict[tuple[int, int, int, str], tuple[float, float]]:
    """Every window on both strands -> {(seq, start, end, strand): (score, p-value)} of hits.

    Coordinates are 1-based with start < end on both strands, as FIMO reports them.
    """
    width = scored.width
    n_windows = codes.shape[1] - width + 1
    if n_windows <= 0:
        return {}
    totals = {}
    for strand, matrix in (("+", scored.forward), ("-", scored.reverse)):
        table = np.hstack([matrix, np.zeros((width, 1), matrix.dtype)]).astype(np.int64)
        total = np.zeros((codes.shape[0], n_windows), dtype=np.int64)
        for k in range(width):
            total += table[k][codes[:, k:k + n_windows]]
        totals[strand] = total
    invalid = np.cumsum(np.pad(codes == 4, ((0, 0), (1, 0))), axis=1)
    clean = (invalid[:, width:width + n_windows] - invalid[:, :n_windows]) == 0
    last_start = lengths[:, None] - width - (1 if skip_last else 0)
    clean &= np.arange(n_windows)[None, :] <= last_start
    hits = {}
    for strand, total in totals.items():
        pvalues = scored.pvalue(total)
        assert not np.any(clean & (pvalues == THRESHOLD)), "a window sits exactly on the threshold"
        for row, start in zip(*np.nonzero(clean & (pvalues <= THRESHOLD))):
            score = float(scored.raw_score(total[row, start]))
            hits[(int(row), int(start) + 1, int(start) + width, strand)] = (score, float(pvalues[row, start]))
    return hits


# --- pymemesuite side ---------------------------------------------------------------------------

def fimo_hits(pattern) -> dict[tuple[int, int, int, str], tuple[float, float]]:
    return {(int(e.source.name), min(e.start, e.stop), max(e.start, e.stop), e.strand): (e.score, e.pvalue)
            for e in pattern.matched_elements}


def assert_same_hits(ours: dict, theirs: dict, label: str) -> int:
    assert ours.keys() == theirs.keys(), (
        f"{label}: {len(ours.keys() - theirs.keys())} hits only here, "
        f"{len(theirs.keys() - ours.keys())} only in FIMO")
    for key, (score, pvalue) in ours.items():
        fimo_score, fimo_pvalue = theirs[key]
        assert pvalue == pytest.approx(fimo_pvalue, rel=1e-6, abs=0), (label, key)
        assert score == pytest.approx(fimo_score, rel=1e-12, abs=1e-9), (label, key)
    return len(ours)


# (sequences, background, motif step, first motif): every motif once end to end, samples elsewhere;
# pymemesuite needs ~0.3 us per window and strand, which sets the budget.
CASES = [("random", "nrdb_from_meme_file", 1, 0), ("random", "uniform", 3, 0),
         ("random", "estimated", 3, 1), ("real", "uniform", 4, 0), ("real", "estimated", 4, 1),
         ("real", "nrdb_from_meme_file", 4, 2)]


@pytest.mark.parametrize(("sequence_set", "background_kind", "step", "first"), CASES)
def test_hits_match_fimo(motifs, request, tmp_path, sequence_set, background_kind, step, first):
    """Uniform and input-estimated backgrounds feed pymemesuite the pseudocounted matrix directly;
    the NRDB case is FIMO's default run end to end: our MEME file, FIMO's own pseudocount and
    symmetrised NRDB background, versus score_motif(motif, nrdb_background())."""
    pytest.importorskip("pymemesuite")
    from pymemesuite.common import (
        Alphabet,
        Array,
        Background,
        Matrix,
        MotifFile,
        Sequence,
    )
    from pymemesuite.common import Motif as MemeMotif
    from pymemesuite.fimo import FIMO

    sequences = request.getfixturevalue(f"{sequence_set}_sequences")
    sample = motifs[first::step]
    background = {"uniform": pssm.uniform_background(),
                  "estimated": pssm.background_from_sequences(sequences),
                  "nrdb_from_meme_file": pssm.nrdb_background()}[background_kind]
    codes, lengths = encode(sequences)
    fimo = FIMO(both_strands=True, threshold=THRESHOLD)
    dna = Alphabet.dna()
    fimo_sequences = [Sequence(s, name=str(i).encode()) for i, s in enumerate(sequences)]
    if background_kind == "nrdb_from_meme_file":
        write_meme(sample, tmp_path / "motifs.meme")
        with MotifFile(tmp_path / "motifs.meme", symmetrical=True) as motif_file:
            meme_motifs = list(motif_file)
            meme_background = motif_file.background

    fimo_background = pssm.fimo_background(background)
    compared = hits = 0
    for index, motif in enumerate(sample):
        scored = pssm.score_motif(motif, background, THRESHOLD)
        if background_kind == "nrdb_from_meme_file":
            assert meme_motifs[index].accession.decode() == motif.matrix_id
            assert np.array_equal(np.array(list(meme_background.frequencies)), fimo_background)
            pattern = fimo.score_motif(meme_motifs[index], fimo_sequences, meme_background)
        else:
            frequencies = pssm.motif_frequencies(motif, fimo_background)
            meme_motif = MemeMotif(dna, frequencies=Matrix(frequencies.tolist()),
                                   name=motif.name.encode(), accession=motif.matrix_id.encode())
            pattern = fimo.score_motif(meme_motif, fimo_sequences,
                                       Background(dna, Array(fimo_background.tolist())))
        if scored is None:  # unreachable: FIMO finds nothing either
            assert len(pattern.matched_elements) == 0, motif.matrix_id
            continue
        assert np.array_equal(scored.background, fimo_background)
        hits += assert_same_hits(reference_hits(scored, codes, lengths), fimo_hits(pattern),
                                 f"{motif.matrix_id}/{background_kind}/{sequence_set}")
        compared += 1
    print(f"{sequence_set}/{background_kind}: {compared} motifs, {hits} identical hits")
    assert compared >= 0.7 * len(sample) and hits >= 100


def test_pssm_and_pvalue_table_are_fimos(motifs):
    """Matrix, scale, offset and the whole p-value table equal pymemesuite's build_pssm bitwise."""
    pytest.importorskip("pymemesuite")
    from pymemesuite.common import Alphabet, Array, Background, Matrix
    from pymemesuite.common import Motif as MemeMotif

    dna = Alphabet.dna()
    cases = [(pssm.uniform_background(), 0.1), (np.array([0.31, 0.19, 0.22, 0.28]), 0.1),
             (pssm.uniform_background(), 0.0)]  # no pseudocount: MEME's log2(0) quirk (1e-300)
    for background, pseudocount in cases:
        for motif in motifs[::3]:
            scored = pssm.score_motif(motif, background, pvalue_threshold=1.0, pseudocount=pseudocount)
            frequencies = pssm.motif_frequencies(motif, scored.background, pseudocount)
            built = MemeMotif(dna, frequencies=Matrix(frequencies.tolist())).build_pssm(
                Background(dna, Array(scored.background.tolist())))
            assert np.array_equal(np.array([list(row) for row in built.matrix]), scored.forward)
            assert (built.scale, built.offset) == (scored.scale, scored.offset)
            table = np.array(list(built.pvalues))
            assert np.array_equal(table[:len(scored.pvalues)], scored.pvalues)
            assert not table[len(scored.pvalues):].any()


def test_meme_file_pseudocount_is_fimos(motifs, tmp_path):
    """FIMO reading our file applies (p*int(nsites) + 0.1*b)/(int(nsites) + 0.1): same doubles."""
    pytest.importorskip("pymemesuite")
    from pymemesuite.common import MotifFile

    write_meme(motifs, tmp_path / "all.meme")
    for symmetrical in (True, False):
        with MotifFile(tmp_path / "all.meme", symmetrical=symmetrical) as motif_file:
            loaded = list(motif_file)
            background = np.array(list(motif_file.background.frequencies))
        ours = pssm.fimo_background(pssm.nrdb_background(), both_strands=symmetrical)
        assert np.array_equal(background, ours)
        for motif, meme_motif in zip(motifs, loaded, strict=True):
            frequencies = np.array([list(row) for row in meme_motif.frequencies])
            assert np.array_equal(frequencies, pssm.motif_frequencies(motif, ours))


def test_pvalue_tables(motifs):
    for background in (pssm.uniform_background(), pssm.nrdb_background()):
        for motif in motifs:
            scored = pssm.score_motif(motif, background, THRESHOLD)
            if scored is None:
                continue
            table = scored.pvalues
            assert table[0] == pytest.approx(1.0, abs=1e-12) and table[-1] > 0  # FIMO's own rounding
            assert np.all(np.diff(table) <= 0)
            assert len(table) == scored.forward.max(axis=1).sum() + 1
            assert table[scored.threshold] <= THRESHOLD
            assert scored.threshold == 0 or table[scored.threshold - 1] > THRESHOLD
            assert scored.forward.dtype == np.int32 and scored.forward.min() >= 0
            assert np.array_equal(scored.reverse, scored.forward[::-1, ::-1])
            assert np.array_equal(scored.pvalue([-5, 10**9]), table[[0, -1]])


def test_pvalue_table_equals_enumeration(motifs):
    """For short motifs, the DP table equals the exact distribution over all 4**W words."""
    for motif in [m for m in motifs if m.width <= 7][:25]:
        scored = pssm.score_motif(motif, [0.3, 0.2, 0.2, 0.3], pvalue_threshold=1.0)
        background = scored.background
        words = np.indices((4,) * motif.width).reshape(motif.width, -1)
        totals = scored.forward[np.arange(motif.width)[:, None], words].sum(axis=0)
        probabilities = background[words].prod(axis=0)
        pdf = np.bincount(totals, weights=probabilities, minlength=len(scored.pvalues))
        assert np.allclose(np.cumsum(pdf[::-1])[::-1], scored.pvalues, rtol=1e-12, atol=1e-15)


def test_unreachable_motifs(motifs):
    """JASPAR2026 vertebrates: 222 of 1019 are too short for 5e-5 (4**-W > p), and none longer is."""
    rule = {m.matrix_id for m in motifs if pssm.unreachable(m, THRESHOLD)}
    none = {m.matrix_id for m in motifs if pssm.score_motif(m, pssm.uniform_background(), THRESHOLD) is None}
    assert len(motifs) == 1019 and len(rule) == 222
    assert none == rule
    assert all(m.width <= 7 for m in motifs if m.matrix_id in rule)


def test_backgrounds():
    assert np.array_equal(pssm.fimo_background(pssm.uniform_background()), np.full(4, 0.25))
    estimated = pssm.background_from_sequences(["AAAC", "nnGGt", "x"])  # A3 C1 G2 T1, both strands
    total = 2 * 7 + 0.1
    assert np.array_equal(estimated, [float(f"{(0.025 + n) / total:.3e}") for n in (4, 3, 3, 4)])
    assert np.array_equal(pssm.background_from_sequences([""]), np.full(4, 0.25))
    assert np.allclose(pssm.background_from_sequences(["AAAC"], both_strands=False),
                       [(0.025 + n) / 4.1 for n in (3, 1, 0, 0)], rtol=1e-3)
    fimo = pssm.fimo_background([0.4, 0.1, 0.2, 0.3])
    assert fimo.sum() == pytest.approx(1.0) and fimo[0] == fimo[3] and fimo[1] == fimo[2]
    assert np.allclose(pssm.nrdb_background(), [0.281774, 0.222020, 0.228876, 0.267330], atol=1e-9)
    with pytest.raises(ValueError):
        pssm.fimo_background([0.5, 0.5])


def _parse_meme(text: str) -> list[tuple[str, str, int, np.ndarray]]:
    records, lines = [], iter(text.splitlines())
    for line in lines:
        if line.startswith("MOTIF "):
            _, matrix_id, name = line.split()
            header = next(lines).split()
            width, nsites = int(header[header.index("w=") + 1]), int(header[header.index("nsites=") + 1])
            rows = np.array([[float(x) for x in next(lines).split()] for _ in range(width)])
            records.append((matrix_id, name, nsites, rows))
    return records


def test_write_meme_round_trip(motifs, tmp_path):
    path = tmp_path / "motifs.meme"
    write_meme(motifs, path, background=pssm.nrdb_background())
    text = path.read_text()
    assert text.startswith("MEME version 5\n\nALPHABET= ACGT\n\nstrands: + -\n")
    assert "Background letter frequencies\nA 0.281774 C 0.22202 G 0.228876 T 0.26733\n" in text
    records = _parse_meme(text)
    assert len(records) == len(motifs)
    for motif, (matrix_id, name, nsites, rows) in zip(motifs, records):
        assert (matrix_id, name) == (motif.matrix_id, motif.name.replace(" ", "_"))
        assert nsites == int(motif.counts.sum(axis=0).mean() + 0.5)  # half up, as jaspar2meme
        assert np.array_equal(rows, pssm.column_probabilities(motif))  # exact round trip
    assert not list(tmp_path.glob(".*.tmp"))


def test_write_meme_loads_in_fimo(motifs, tmp_path):
    pytest.importorskip("pymemesuite")
    from pymemesuite.common import MotifFile

    write_meme(motifs[:50], tmp_path / "some.meme")
    with MotifFile(tmp_path / "some.meme", pseudocount=0.0) as motif_file:
        loaded = list(motif_file)
    assert [m.accession.decode() for m in loaded] == [m.matrix_id for m in motifs[:50]]
    for motif, meme_motif in zip(motifs[:50], loaded):
        assert np.array_equal(np.array([list(r) for r in meme_motif.frequencies]),
                              pssm.column_probabilities(motif))


def test_scan_cli_equals_fimo_reading_the_meme_file(tmp_path):
    """The check a user makes: the MEME file `r3lm step motif-file` writes, read by pymemesuite's MotifFile
    (FIMO's --motif-pseudo 0.1, both strands) and scored against the background it read with, against
    `r3lm scan --background nrdb` on real lentiMPRA sequences, adaptors trimmed: every hit, score and p-value.

    MotifFile takes no --bfile, so like fimo without one it weights the pseudocount by NRDB (motif-in.c
    set_pseudo_bg): this is FIMO's default run. Scoring that file against a uniform Background instead mixes
    two backgrounds (NRDB in the pseudocount, uniform in the log-odds), which no fimo run does: fimo weights
    the pseudocount by its --bfile (fimo.c), so `fimo --bfile --uniform--` is `r3lm scan --background uniform`.
    """
    pytest.importorskip("pymemesuite")
    from conftest import LEFT_ADAPTOR, RIGHT_ADAPTOR
    from pymemesuite.common import MotifFile, Sequence
    from pymemesuite.fimo import FIMO

    from r3lm.cli import main

    path = DATA / "agarwal2025/hepg2_lentimpra.tsv"
    if not path.is_file():
        pytest.skip(f"real data not found: {path}")
    table = pd.read_csv(path, sep="\t", nrows=100)
    table["seq"] = [s.upper().removeprefix(LEFT_ADAPTOR).removesuffix(RIGHT_ADAPTOR) for s in table["seq"]]
    table.to_csv(tmp_path / "seqs.tsv", sep="\t", index=False)
    config = '{"motifs": {"jaspar_release": "JASPAR2026", "pvalue": 5e-5}}'
    assert main(["step", "motif-file", "--config", config, "--out", str(tmp_path / "motifs.meme")]) == 0
    assert main(["scan", "--sequences", str(tmp_path / "seqs.tsv"), "--id-column", "seq_id", "--sequence-column",
                 "seq", "--pvalue", "5e-5", "--background", "nrdb", "--out", str(tmp_path / "hits.tsv")]) == 0
    lengths = dict(zip(table["seq_id"], table["seq"].str.len()))
    ours = {(row.seq_id, row.matrix_id, row.start, row.end, row.strand): (row.score, row.pvalue)
            for row in pd.read_csv(tmp_path / "hits.tsv", sep="\t").itertuples() if row.end < lengths[row.seq_id]}
    fimo, theirs = FIMO(both_strands=True, threshold=THRESHOLD), {}
    sequences = [Sequence(sequence, name=name.encode()) for name, sequence in zip(table["seq_id"], table["seq"])]
    with MotifFile(tmp_path / "motifs.meme", symmetrical=True, pseudocount=0.1) as motif_file:
        for motif in motif_file:
            for element in fimo.score_motif(motif, sequences, motif_file.background).matched_elements:
                theirs[(element.source.name.decode(), motif.accession.decode(), min(element.start, element.stop),
                        max(element.start, element.stop), element.strand)] = (element.score, element.pvalue)
    assert ours.keys() == theirs.keys() and len(ours) > 1000
    for key, (score, pvalue) in ours.items():
        assert score == pytest.approx(theirs[key][0], abs=1e-6), key
        assert pvalue == pytest.approx(theirs[key][1], rel=1e-6), key
