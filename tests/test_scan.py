"""The whole scanner (motif set, kernel, hit table) against pymemesuite's FIMO, the scan/rcc commands,
and sharded scanning.

pymemesuite's scan loop never reaches the last window of a sequence (the FIMO program does), so
the comparison leaves our last-window hits out and says how many it left out.
"""

from __future__ import annotations

import gzip
import json
import logging
import re

import numpy as np
import pandas as pd
import pytest

from r3lm.cli import main
from r3lm.config import validate_config
from r3lm.motifs.dataset import dataset_sequences
from r3lm.motifs.scan import (
    HIT_COLUMNS,
    background_for,
    build_motif_set,
    scan_sequences,
)
from r3lm.steps.motifs_steps import gather_hits, scan_shard, shard_rows

MOTIFS = validate_config({})["motifs"]
LONGEST_LOG_LINE = 300  # characters of a log message, whatever the input's size


@pytest.fixture(scope="module")
def real_sequences(hepg2_path, gosai_rows) -> list[str]:
    hepg2 = pd.read_csv(hepg2_path, sep="\t")["seq"].iloc[:40].tolist()
    gosai = pd.read_csv(gosai_rows, sep="\t")["sequence"].tolist()
    return hepg2 + gosai


def random_sequences(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), size=int(rng.integers(150, 260)), p=[0.3, 0.2, 0.2, 0.3]))
            for _ in range(count)]


def fimo_hit_table(motif_set, ids: list[str], sequences: list[str], every: int) -> pd.DataFrame:
    from pymemesuite.common import Alphabet, Array, Background, Matrix, Sequence
    from pymemesuite.common import Motif as MemeMotif
    from pymemesuite.fimo import FIMO

    from r3lm.motifs.pssm import motif_frequencies

    dna = Alphabet.dna()
    fimo = FIMO(both_strands=True, threshold=motif_set.pvalue)
    fimo_sequences = [Sequence(sequence, name=seq_id.encode()) for seq_id, sequence in zip(ids, sequences)]
    rows = []
    for scored in motif_set.scored[::every]:
        background = Background(dna, Array(scored.background.tolist()))
        meme_motif = MemeMotif(dna, frequencies=Matrix(motif_frequencies(scored.motif, scored.background).tolist()),
                               name=scored.motif.name.encode(), accession=scored.motif.matrix_id.encode())
        for element in fimo.score_motif(meme_motif, fimo_sequences, background).matched_elements:
            rows.append((element.source.name.decode(), scored.motif.matrix_id, min(element.start, element.stop),
                         max(element.start, element.stop), element.strand, element.score, element.pvalue))
    return pd.DataFrame(rows, columns=["seq_id", "matrix_id", "start", "end", "strand", "fimo_score", "fimo_pvalue"])


@pytest.mark.parametrize("background", ["uniform", "input"])
@pytest.mark.parametrize("kind", ["real", "random"])
def test_scanner_hits_equal_fimo(kind: str, background: str, request) -> None:
    pytest.importorskip("pymemesuite")
    sequences = request.getfixturevalue("real_sequences") if kind == "real" else random_sequences(40, seed=3)
    ids = [f"s{i}" for i in range(len(sequences))]
    settings = {**MOTIFS, "background": background}
    motif_set = build_motif_set(settings, background_for(settings, sequences))
    every = 3
    ours = scan_sequences(ids, sequences, motif_set, progress=False)
    sampled = {m.motif.matrix_id for m in motif_set.scored[::every]}
    ours = ours[ours["matrix_id"].isin(sampled)]
    lengths = dict(zip(ids, map(len, sequences)))
    last_window = ours["end"] == ours["seq_id"].map(lengths)
    ours = ours[~last_window]
    theirs = fimo_hit_table(motif_set, ids, sequences, every)
    key = ["seq_id", "matrix_id", "start", "end", "strand"]
    merged = ours.merge(theirs, on=key, how="outer", indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"].head()
    assert len(merged) > 100, f"only {len(merged)} hits compared"
    np.testing.assert_allclose(merged["pvalue"], merged["fimo_pvalue"], rtol=1e-6, atol=0)
    np.testing.assert_allclose(merged["score"], merged["fimo_score"], rtol=1e-12, atol=1e-9)
    print(f"{kind}/{background}: {len(merged)} identical hits, {int(last_window.sum())} last-window hits left out")


def test_hits_are_ordered_and_shaped_like_fimo(real_sequences) -> None:
    motif_set = build_motif_set(MOTIFS, background_for(MOTIFS, real_sequences))
    hits = scan_sequences([f"s{i:02d}" for i in range(len(real_sequences))], real_sequences, motif_set,
                          progress=False)
    assert list(hits.columns) == HIT_COLUMNS
    assert (hits["start"] >= 1).all() and (hits["start"] < hits["end"]).all()
    assert set(hits["strand"]) == {"+", "-"}
    assert (hits["pvalue"] <= MOTIFS["pvalue"]).all()
    assert hits["seq_id"].is_monotonic_increasing
    skipped = {m.matrix_id for m in motif_set.skipped}
    assert len(skipped) == 222 and not skipped & set(hits["matrix_id"])


def test_sharded_scan_equals_one_scan(tmp_path) -> None:
    sequences = random_sequences(60, seed=5)
    table = pd.DataFrame({"id": [f"r{i:03d}" for i in range(60)], "sequence": sequences})
    data = tmp_path / "data"
    data.mkdir()
    for split, rows in (("train", slice(0, 40)), ("val", slice(40, 50)), ("test", slice(50, 60))):
        part = table.iloc[rows]
        pd.concat([part.assign(cell_type="K562"), part.assign(cell_type="HepG2")]).to_parquet(data / f"{split}.parquet")
    config = validate_config({"motifs": {"shards": 3, "background": "input"}})
    for shard in range(3):
        scan_shard(config, data, shard, tmp_path / f"shard{shard}.parquet", threads=1)
    gather_hits([tmp_path / f"shard{shard}.parquet" for shard in range(3)], tmp_path / "hits.parquet")
    gathered = pd.read_parquet(tmp_path / "hits.parquet")
    unique = dataset_sequences(data)
    assert len(unique) == 60
    motif_set = build_motif_set(config["motifs"], background_for(config["motifs"], unique["sequence"].tolist()))
    direct = scan_sequences(unique["id"].tolist(), unique["sequence"].tolist(), motif_set, progress=False)
    pd.testing.assert_frame_equal(gathered, direct)


def test_shard_rows_cover_every_row_once() -> None:
    for n_rows in (0, 1, 7, 100):
        for shards in (1, 3, 8):
            covered = [i for shard in range(shards) for i in range(n_rows)[shard_rows(n_rows, shard, shards)]]
            assert covered == list(range(n_rows))


# ---------------------------------------------------------------- commands


@pytest.fixture
def fasta(tmp_path):
    path = tmp_path / "seqs.fa.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(">enh1 strong GATA/AP-1\nTTGATAAGGCGTGACTCATCCGGAAGTGCCACGTG\nGGGCGGGGCC\n>enh2\nNNNNACGTACGT\n")
    return path


def test_scan_command_fasta_to_tsv_and_parquet(fasta, tmp_path, capsys) -> None:
    assert main(["--log-level", "WARNING", "scan", "--sequences", str(fasta), "--out", str(tmp_path / "h.tsv")]) == 0
    tsv = pd.read_csv(tmp_path / "h.tsv", sep="\t")
    assert list(tsv.columns) == HIT_COLUMNS
    assert set(tsv["seq_id"]) == {"enh1"}
    assert main(["--log-level", "WARNING", "scan", "--sequences", str(fasta), "--out", str(tmp_path / "h.parquet"),
                 "--jaspar-release", "JASPAR2024", "--pvalue", "1e-4", "--background", "input"]) == 0
    looser = pd.read_parquet(tmp_path / "h.parquet")
    assert len(looser) > len(tsv) and looser["matrix_id"].str.startswith("MA").all()


def test_a_scan_logs_short_lines_and_counts_the_skipped_motifs(real_sequences, tmp_path, caplog) -> None:
    """The skipped motifs once filled one INFO line of ~8,000 characters on every scan, predict and explain:
    now INFO counts them and DEBUG names each on its own line, and no line outgrows a terminal's few rows."""
    fasta = tmp_path / "real.fa"
    fasta.write_text("".join(f">real{index}\n{sequence}\n" for index, sequence in enumerate(real_sequences)))
    with caplog.at_level(logging.DEBUG, logger="r3lm"):
        assert main(["scan", "--sequences", str(fasta), "--out", str(tmp_path / "h.tsv")]) == 0
    info = [record.getMessage() for record in caplog.records if record.levelno >= logging.INFO]
    debug = [record.getMessage() for record in caplog.records if record.levelno == logging.DEBUG]
    assert any(message.startswith(f"scanned {len(real_sequences)} sequences") for message in info)
    assert max(map(len, info + debug)) < LONGEST_LOG_LINE, max(info + debug, key=len)
    counted = re.search(r"(\d+) skipped because no window can reach p <= 5e-05", "\n".join(info))
    named = [message for message in debug if message.startswith("skipped MA")]
    assert counted and int(counted.group(1)) == len(named) > 0


def test_scan_command_reads_tables_with_named_columns(tmp_path) -> None:
    table = tmp_path / "t.csv"
    pd.DataFrame({"name": ["a", "b"], "dna": ["TTGATAAGGCGTGACTCATCC", "acgtacgtacgtgggcggggc"]}).to_csv(table, index=False)
    assert main(["--log-level", "WARNING", "scan", "--sequences", str(table), "--out", str(tmp_path / "h.tsv"),
                 "--id-column", "name", "--sequence-column", "dna"]) == 0
    assert set(pd.read_csv(tmp_path / "h.tsv", sep="\t")["seq_id"]) <= {"a", "b"}


def test_rcc_command_writes_cards(fasta, tmp_path) -> None:
    out = tmp_path / "cards.jsonl"
    assert main(["--log-level", "WARNING", "rcc", "--sequences", str(fasta), "--cell-type", "K562",
                 "--out", str(out), "--grammar-tags"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [record["id"] for record in records] == ["enh1", "enh2"]
    first = records[0]["card_text"]
    assert first.startswith("Context:\n- Cell Type: K562\n- GC Content: ")
    assert "- Grammar Tags: " in first and "(Total Length: 45)" in first
    assert "Identified Motifs:\n\nDNA Sequence:\n" in records[1]["card_text"]
    assert json.loads(records[0]["card_json"])["cell_type"] == "K562"


@pytest.mark.parametrize(("name", "content", "message"), [
    ("seqs.fa", ">a\nACGU\n", "row 1, column 'sequence': sequence 'a' has 'U'"),
    ("seqs.fa", "", "no sequences in the file"),
    ("seqs.fa", ">a\n\n>b\nACGT\n", "row 1, column 'sequence': sequence 'a' is missing or empty"),
    ("seqs.fa", "ACGT\n", "before any '>' header"),
    ("seqs.fa", ">a\nACGT\n>a\nACGT\n", "row 2, column 'id': id 'a' repeats row 1"),
    ("seqs.tsv", "id\tsequence\n", "table is empty"),
    ("seqs.tsv", "id\tseq\nx\tACGT\n", "missing column(s) 'sequence'"),
    ("seqs.xlsx", "whatever", "unknown table type '.xlsx'"),
])
def test_scan_command_bad_input_is_one_line_exit_2(tmp_path, capsys, name, content, message) -> None:
    path = tmp_path / name
    path.write_text(content)
    out = tmp_path / "hits.tsv"
    assert main(["scan", "--sequences", str(path), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("r3lm scan: error: ") and str(path) in error and message in error
    assert not out.exists()


def test_scan_command_rejects_an_unknown_output_type_before_scanning(fasta, tmp_path, capsys) -> None:
    assert main(["scan", "--sequences", str(fasta), "--out", str(tmp_path / "hits.xlsx")]) == 2
    assert "unknown output type '.xlsx'" in capsys.readouterr().err


def test_jaspar_matrices_are_cached_exactly_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch, caplog) -> None:
    """The first read goes to pyjaspar's database and leaves a JSON copy; later reads take the copy, with the
    same matrices bit for bit; a damaged copy is read from the database again and rewritten."""
    from r3lm.motifs import jaspar

    monkeypatch.setattr(jaspar, "JASPAR_CACHE", tmp_path / "jaspar")
    jaspar.load_motifs.cache_clear()
    fresh = jaspar.load_motifs("JASPAR2024")
    [copy] = (tmp_path / "jaspar").iterdir()
    assert copy.name.startswith("JASPAR2024_CORE_vertebrates_pyjaspar-") and len(fresh) == 879

    def same(left, right) -> bool:
        return len(left) == len(right) and all(
            (a.matrix_id, a.name, a.family, a.tf_class) == (b.matrix_id, b.name, b.family, b.tf_class)
            and np.array_equal(a.counts, b.counts) for a, b in zip(left, right))

    jaspar.load_motifs.cache_clear()
    monkeypatch.setattr(jaspar, "_fetch_motifs", lambda *args: pytest.fail("read the database, not the copy"))
    assert same(jaspar.load_motifs("JASPAR2024"), fresh)
    monkeypatch.undo()
    monkeypatch.setattr(jaspar, "JASPAR_CACHE", tmp_path / "jaspar")
    copy.write_text('[{"matrix_id": "MA0001.1"')
    jaspar.load_motifs.cache_clear()
    with caplog.at_level(logging.WARNING):
        assert same(jaspar.load_motifs("JASPAR2024"), fresh)
    assert "damaged" in caplog.text and json.loads(copy.read_text())[0]["matrix_id"] == fresh[0].matrix_id
    jaspar.load_motifs.cache_clear()
