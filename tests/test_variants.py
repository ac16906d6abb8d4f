"""Variants from a VCF scored with a fast bundle: one row per ALT allele and cell type, REF and ALT windows cut
around the variant as the module documents, refusals counted, and bad records stopped in one line. With an LLM
bundle: the motifs each variant gains and loses, and on request both rationales."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_fast_bundle import LENGTH, one_torch_thread, tiny_workflow

from r3lm.cli import main
from r3lm.deploy.fast import FastModel
from r3lm.deploy.scorer import load
from r3lm.deploy.variants import (
    MOTIF_COLUMNS,
    N_IN_WINDOW,
    RATIONALE_COLUMNS,
    VARIANT_COLUMNS,
    VariantReader,
    motif_changes,
    refusal,
    run_variants,
    windows,
)
from r3lm.errors import InputError
from r3lm.rcc.card import Card
from r3lm.rcc.hits import MotifHit

HALF = LENGTH // 2
HEADER = ("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=400>\n##contig=<ID=chr2,length=300>\n"
          '##FILTER=<ID=q10,Description="Quality below 10">\n'
          "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
HEADER_LINES = HEADER.count("\n")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastModel]:
    with one_torch_thread():  # for the module's tests too
        yield tiny_workflow(tmp_path_factory.mktemp("fast"))["model"]


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    rng = np.random.default_rng(3)
    return {"chr1": "".join(rng.choice(list("ACGT"), 400)), "chr2": "".join(rng.choice(list("ACGT"), 300))}


@pytest.fixture(scope="module")
def genome_path(genome: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_genome(tmp_path_factory.mktemp("genome") / "genome.fa", genome)


def _write_genome(path: Path, genome: dict[str, str]) -> Path:
    path.write_text("".join(f">{name}\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n"
                            for name, seq in genome.items()))
    return path


def _other(base: str, step: int = 1) -> str:
    return "ACGT"[("ACGT".index(base) + step) % 4]


def _write_vcf(path: Path, records: list[tuple]) -> Path:
    path.write_text(HEADER + "".join("\t".join(str(field) for field in record) + "\n" for record in records))
    return path


def _records(genome: dict[str, str]) -> list[tuple]:
    """CHROM POS ID REF ALT QUAL FILTER INFO: an SNV, a multi-allelic SNV, a deletion, an insertion, a FILTERed
    SNV, refusals (symbolic, *, breakend, no ALT) and a variant too close to the contig's start."""
    chr1, chr2 = genome["chr1"], genome["chr2"]

    def snv(chrom: str, pos: int, alts: str, name: str = ".", filter_: str = "PASS") -> tuple:
        return (chrom, pos, name, genome[chrom][pos - 1], alts, 50, filter_, ".")

    return [
        snv("chr1", 100, _other(chr1[99]), "rs1"),
        snv("chr1", 150, f"{_other(chr1[149], 1)},{_other(chr1[149], 2)}", "multi"),
        ("chr1", 200, "del", chr1[199:203], chr1[199], 50, "PASS", "."),
        ("chr1", 250, "ins", chr1[249], chr1[249] + "GGGGG", 50, "PASS", "."),
        snv("chr2", 150, _other(chr2[149]), "lowq", "q10"),
        ("chr2", 100, ".", chr2[99], "<DEL>", 50, "PASS", "SVTYPE=DEL"),
        ("chr2", 110, ".", chr2[109], "*", 50, "PASS", "."),
        ("chr2", 120, ".", chr2[119], f"{chr2[119]}[chr1:10[", 50, "PASS", "."),
        ("chr2", 130, ".", chr2[129], ".", 50, "PASS", "."),
        snv("chr2", 10, _other(chr2[9]), "edge"),
    ]


def test_windows_keep_the_left_flank_and_refill_the_right_to_the_model_length():
    segment = "LLLLVRRRRRRRRR"  # variant start at offset 4; enough right flank for any allele
    assert windows(segment, 4, "V", "S", 8) == ("LLLLVRRR", "LLLLSRRR")  # an SNV differs at the offset only
    assert windows(segment, 4, "VR", "V", 8) == ("LLLLVRRR", "LLLLVRRR")  # a deletion pulls in more flank
    assert windows(segment, 4, "V", "VII", 8) == ("LLLLVRRR", "LLLLVIIR")  # an insertion pushes it out
    assert windows(segment, 4, "V", "VIIIIIII", 8)[1] == "LLLLVIII"  # a long insertion is cut itself
    assert windows("LLLLVRR", 4, "V", "S", 8) is None  # the contig ends inside the window


def test_refusals_name_what_cannot_be_scored():
    assert refusal("A") is None and refusal("ACGTN") is None
    assert refusal("<DEL>") == "symbolic allele" and refusal("<INS:ME:ALU>") == "symbolic allele"
    assert refusal("*") == "spanning deletion (*)"
    assert {refusal(alt) for alt in ("A[chr1:10[", "]chr1:5]A", ".A", "A.")} == {"breakend"}
    assert refusal("AXG") == "letters other than ACGTN"


def test_every_alt_allele_is_scored_in_windows_centred_on_the_variant(model, genome, genome_path, tmp_path, caplog):
    vcf = _write_vcf(tmp_path / "calls.vcf", _records(genome))
    with caplog.at_level(logging.INFO, logger="r3lm.deploy.variants"):
        summary = run_variants(model.folder, vcf, genome_path, tmp_path / "effects.tsv", chunk_size=2, device="cpu",
                               progress=False)
    table = pd.read_csv(tmp_path / "effects.tsv", sep="\t", keep_default_na=False)
    assert list(table.columns) == VARIANT_COLUMNS
    assert summary["records"] == 10 and summary["variants"] == 6  # SNV, 2 alleles, deletion, insertion, FILTERed
    assert summary["skipped"] == {"symbolic allele": 1, "spanning deletion (*)": 1, "breakend": 1, "no ALT allele": 1,
                                  "window off the contig end": 1}
    assert len(table) == 6 * 2 and table["cell_type"].tolist() == ["A", "B"] * 6
    assert table["id"].tolist()[::2] == ["rs1", "multi", "multi", "del", "ins", "lowq"]
    assert "scored 6 variants from 10 records" in caplog.text and "variants/s" in caplog.text
    chr1 = genome["chr1"]
    deletion = table[table["id"] == "del"]
    expected_ref = chr1[199 - HALF:199 - HALF + LENGTH]
    expected_alt = (chr1[199 - HALF:199] + chr1[199] + chr1[203:])[:LENGTH]
    np.testing.assert_allclose(deletion["ref_predicted"], model.predict([expected_ref])[0], rtol=1e-5)
    np.testing.assert_allclose(deletion["alt_predicted"], model.predict([expected_alt])[0], rtol=1e-5)
    np.testing.assert_allclose(table["delta"], table["alt_predicted"] - table["ref_predicted"], atol=1e-9)
    for cell in ("A", "B"):
        rows = table[table["cell_type"] == cell]
        np.testing.assert_array_equal(rows["alt_level"], model.levels(rows["alt_predicted"].to_numpy(), cell))


def test_pass_only_drops_filtered_records(model, genome, genome_path, tmp_path):
    vcf = _write_vcf(tmp_path / "calls.vcf", _records(genome))
    summary = run_variants(model.folder, vcf, genome_path, tmp_path / "effects.parquet", cell_types=["B"],
                           pass_only=True, device="cpu", progress=False)
    table = pd.read_parquet(tmp_path / "effects.parquet")
    assert summary["variants"] == 5 and summary["skipped"]["FILTER not PASS"] == 1
    assert main(["variants", "--model", str(model.folder), "--vcf", str(vcf), "--genome", str(genome_path),
                 "--cell-type", "B", "--pass-only", "--out", str(tmp_path / "cli.parquet"), "--device", "cpu",
                 "--no-progress"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "cli.parquet"), table)
    assert "lowq" not in set(table["id"]) and set(table["cell_type"]) == {"B"}


def test_the_reader_streams_without_reading_ahead(genome, genome_path, tmp_path):
    records = _records(genome)[:4]
    reader = VariantReader(_write_vcf(tmp_path / "calls.vcf", records), genome_path, LENGTH, pass_only=False)
    stream = iter(reader)
    first = next(stream)
    assert (first.id, reader.counts.records) == ("rs1", 1)
    assert first.ref_window[HALF] == first.ref and first.alt_window[HALF] == first.alt


@pytest.mark.parametrize(("record", "message"), [
    (("chr1", 120, ".", "N", "A", 50, "PASS", "."), None),  # REF replaced below by a base the genome lacks
    (("chr3", 120, ".", "A", "C", 50, "PASS", "."), "contig 'chr3' is not in the genome"),
])
def test_bad_records_stop_in_one_line_naming_file_line_and_position(model, genome, genome_path, tmp_path, record,
                                                                     message):
    if message is None:
        record = (*record[:3], _other(genome["chr1"][119]), *record[4:])
        message = f"REF {record[3]} differs from the genome's {genome['chr1'][119]}"
    vcf = _write_vcf(tmp_path / "bad.vcf", [_records(genome)[0], record])
    out = tmp_path / "effects.tsv"
    with pytest.raises(InputError) as caught:
        run_variants(model.folder, vcf, genome_path, out, device="cpu", progress=False)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(f"{vcf}: line {HEADER_LINES + 2}, {record[0]}:120: {message}")
    assert not out.exists()


def test_a_filtered_or_symbolic_record_on_a_missing_contig_is_no_error(model, genome, genome_path, tmp_path):
    vcf = _write_vcf(tmp_path / "calls.vcf", [("chrUn", 5, ".", "A", "C", 50, "q10", "."),
                                              ("chrUn", 9, ".", "A", "<INV>", 50, "PASS", ".")])
    summary = run_variants(model.folder, vcf, genome_path, tmp_path / "effects.tsv", pass_only=True, device="cpu",
                           progress=False)
    assert summary["variants"] == 0 and list(pd.read_csv(tmp_path / "effects.tsv", sep="\t").columns) == \
        VARIANT_COLUMNS


def test_regions_need_an_index_and_a_malformed_line_is_named(model, genome, genome_path, tmp_path):
    vcf = _write_vcf(tmp_path / "calls.vcf", _records(genome)[:2])
    with pytest.raises(InputError, match=r"reading regions \(chr1:1-200\) needs the VCF's index \(\.tbi or \.csi\)"):
        run_variants(model.folder, vcf, genome_path, tmp_path / "a.tsv", regions=["chr1:1-200"], device="cpu",
                     progress=False)
    broken = tmp_path / "broken.vcf"
    broken.write_text(vcf.read_text() + "chr1\tnot-a-number\t.\tA\tC\t50\tPASS\t.\n")
    with pytest.raises(InputError, match=rf"cannot parse the record after line {HEADER_LINES + 2} "):
        run_variants(model.folder, broken, genome_path, tmp_path / "b.tsv", device="cpu", progress=False)


# Every single-base change of these FEV and GATA4 sites removes them from a card. Overlapping by one base, the
# sites cannot both be whole: with T there FEV is, with C GATA4 is, so that SNV loses one and gains the other.
FEV, FEV_ENTRY = "ACCGGAAGT", "FEV (Ets-related)"
GATA4, GATA4_ENTRY = "CCTTATCT", "GATA4 (C4-GATA-related)"
SNV_POS, DELETION_POS = 60, 160  # 1-based; a whole FEV site starts 10 bp after the deletion


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """A 400-bp contig with FEV at 52-60 and a GATA4 site broken by that T at 60-67, FEV at 170-178 and an N at
    350; a VCF with the SNV T60C, a 3-bp deletion at 160, a symbolic allele and an SNV near the N."""
    chrom = "".join(np.random.default_rng(7).choice(list("ACGT"), 400))
    chrom = chrom[:51] + FEV + GATA4[1:] + chrom[67:169] + FEV + chrom[178:349] + "N" + chrom[350:]
    root = tmp_path_factory.mktemp("planted")
    deleted = chrom[DELETION_POS - 1:DELETION_POS + 3]
    records = [("chr1", SNV_POS, "fev_to_gata4", "T", "C", 50, "PASS", "."),
               ("chr1", DELETION_POS, "moves_fev", deleted, deleted[0], 50, "PASS", "."),
               ("chr1", 100, "symbolic", chrom[99], "<DEL>", 50, "PASS", "."),
               ("chr1", 330, "near_n", chrom[329], _other(chrom[329]), 50, "PASS", ".")]
    return {"vcf": _write_vcf(root / "planted.vcf", records), "records": records, "chrom": chrom,
            "genome": _write_genome(root / "planted.fa", {"chr1": chrom})}


def test_motif_changes_count_motifs_by_name_and_family_where_both_windows_reach():
    def card(*hits: tuple[str, int]) -> Card:
        return Card("HepG2", 0.5, "A" * 60, tuple(MotifHit("MA1", name, "Fam", "C", start, start + 7, "+", 10.0, 1e-5)
                                                 for name, start in hits))

    assert motif_changes(card(("X", 40), ("Y", 10)), card(("X", 37), ("Z", 10)), -3) == ("Z (Fam)", "Y (Fam)")
    assert motif_changes(card(("X", 5), ("X", 20)), card(("X", 5)), 0) == ("", "X (Fam)")
    assert motif_changes(card(), card(("X", 5), ("X", 20)), 0) == ("X (Fam) x2", "")
    familyless = Card("HepG2", 0.5, "A" * 60, (MotifHit("MA2538.1", "CGGBP1", "", "", 5, 12, "+", 10.0, 1e-5),))
    assert motif_changes(card(), familyless, 0) == ("CGGBP1", "")  # a hit without a family shows no "()"
    # a 4-bp insertion pushes a REF hit ending at 58 out of the ALT window; a 4-bp deletion pulls one in
    assert motif_changes(card(("X", 51)), card(), 4) == ("", "")
    assert motif_changes(card(), card(("X", 51)), -4) == ("", "")
    assert motif_changes(card(("X", 49)), card(), 4) == ("", "X (Fam)")


def test_an_llm_bundle_names_the_motifs_each_variant_gains_and_loses_and_both_rationales(bundle, planted, tmp_path):
    """One run through the CLI (each window's rationale costs seconds on a CPU): the SNV loses FEV and gains
    GATA4, the deletion moves the FEV site after it, which is no change."""
    out = tmp_path / "effects.tsv"
    with one_torch_thread():
        assert main(["variants", "--model", str(bundle), "--vcf", str(planted["vcf"]), "--genome",
                     str(planted["genome"]), "--cell-type", "HepG2", "--rationales", "--out", str(out), "--device",
                     "cpu", "--no-progress"]) == 0
    table = pd.read_csv(out, sep="\t", keep_default_na=False)
    assert list(table.columns) == [*VARIANT_COLUMNS, *MOTIF_COLUMNS, *RATIONALE_COLUMNS]
    assert table["id"].tolist() == ["fev_to_gata4", "moves_fev"]
    snv, deletion = ({column: set(row[column].split(", ")) for column in MOTIF_COLUMNS} for _, row in table.iterrows())
    assert FEV_ENTRY in snv["motifs_lost"] and GATA4_ENTRY in snv["motifs_gained"]
    assert FEV_ENTRY not in snv["motifs_gained"] | deletion["motifs_gained"] | deletion["motifs_lost"]
    assert table[RATIONALE_COLUMNS].map(len).gt(0).all().all()
    np.testing.assert_allclose(table["delta"], table["alt_predicted"] - table["ref_predicted"], atol=1e-9)
    chrom, start = planted["chrom"], DELETION_POS - 1 - HALF  # both windows hold the site, 3 bp apart
    cards = load(str(bundle), "cpu").card_rows(
        [chrom[start:start + LENGTH], (chrom[start:DELETION_POS] + chrom[DELETION_POS + 3:])[:LENGTH]], ["HepG2"])
    fev = [[hit.start for hit in Card.from_json(text).motifs if hit.name == "FEV"] for text in cards["card_json"]]
    assert fev[1] and fev[0] == [position + 3 for position in fev[1]]


def test_without_rationales_an_llm_bundle_adds_only_the_motif_columns_and_skips_windows_with_n(
        bundle, planted, model, genome, genome_path, tmp_path):
    unscored = _write_vcf(tmp_path / "unscored.vcf", planted["records"][2:])  # nothing to score: no model call
    summary = run_variants(bundle, unscored, planted["genome"], tmp_path / "empty.tsv", device="cpu", progress=False)
    assert summary["variants"] == 0 and summary["skipped"] == {"symbolic allele": 1, N_IN_WINDOW: 1}
    assert list(pd.read_csv(tmp_path / "empty.tsv", sep="\t").columns) == [*VARIANT_COLUMNS, *MOTIF_COLUMNS]
    with pytest.raises(InputError, match="the cnn bundle has no Stage-I model"):
        run_variants(model.folder, _write_vcf(tmp_path / "calls.vcf", _records(genome)[:1]), genome_path,
                     tmp_path / "fast.tsv", rationales=True, device="cpu")
