"""The user-facing side: a bundle written from a Stage-II run predicts and explains new sequences (FASTA, table,
BED + genome, the Python API), and bad input stops with exit code 2, one line, and no output written."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import CELLS

import r3lm
from r3lm.cli import main
from r3lm.data.levels import assign_levels
from r3lm.deploy.bundle import MANIFEST, write_bundle
from r3lm.deploy.scorer import R3LM, SCORE_COLUMNS, Explanation, auto_batch_size
from r3lm.errors import InputError
from r3lm.llm.generate import Generation
from r3lm.pipeline import BUNDLE_VLLM_GPU_SHARE
from r3lm.rationale.format import parse
from r3lm.rcc.evidence_tags import CellEvidence, EvidenceTags, GcStats
from r3lm.stage1 import writer
from r3lm.stage1.models import SHARED, Stage1Models
from r3lm.stage2.predict import Stage2Predictor

EDGES = [-0.5, 0.0, 0.5]  # the stage2_trained fixture's level edges


@pytest.fixture(scope="module")
def model(bundle: Path) -> R3LM:
    return R3LM.load(bundle, device="cpu")


@pytest.fixture(scope="module")
def queries(stage2_trained: dict[str, Any]) -> pd.DataFrame:
    """The test sequences with the cards the workflow built for them in HepG2."""
    cards = stage2_trained["cards"]
    return cards[(cards["split"] == "test") & (cards["cell_type"] == "HepG2")].assign(
        sequence=lambda frame: [json.loads(card)["sequence"] for card in frame["card_json"]]).reset_index(drop=True)


@pytest.fixture(scope="module")
def scored(model: R3LM, queries: pd.DataFrame) -> pd.DataFrame:
    return model.score(dict(zip(queries["id"], queries["sequence"])), "HepG2", with_card=True)


def test_the_bundle_is_self_contained(bundle, stage2_trained, smollm2_dir):
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest["mode"] == "generated_cot" and manifest["cell_types"] == list(CELLS)
    assert manifest["backbone"] == "llm" and manifest["rationale_models"] == {cell: "llm" for cell in CELLS}
    assert manifest["levels"]["edges"] == {cell: EDGES for cell in CELLS}
    assert manifest["motifs"]["jaspar_release"] == "JASPAR2026" and manifest["motifs"]["pvalue"] == 5e-5
    assert manifest["background"] == [0.25] * 4 and manifest["base_model"]["provenance"]["wheel_sha256"]
    assert "Activity level: N" in manifest["reasoning"]["system"]
    assert (bundle / "llm/model.safetensors").read_bytes() == (smollm2_dir / "model.safetensors").read_bytes()
    assert (bundle / "stage2/shared/head.pt").is_file()


def test_a_bundle_with_a_stage1_model_per_cell_type_writes_each_rationale_with_its_own(
        stage2_config, stage2_trained, smollm2_dir, queries, tmp_path, monkeypatch):
    """Per-cell-type Stage I: llm/<cell_type>/ per model, the shared Stage-II backbone beside them, and a
    prediction for a cell type loads that cell type's model (a recording stand-in writes the rationale)."""
    models = {}
    for cell in CELLS:  # hard links: two 'different' Stage-I models without copying the weights
        models[cell] = str(shutil.copytree(smollm2_dir, tmp_path / f"stage1_{cell}", copy_function=os.link))
    out = tmp_path / "bundle"
    manifest = write_bundle(stage2_config, "generated_cot", stage2_trained["models"], Stage1Models(models),
                            stage2_trained["data"], out)
    assert manifest["rationale_models"] == {cell: f"llm/{cell}" for cell in CELLS}
    assert manifest["backbone"] == "backbone" and (out / "backbone/config.json").is_file()
    for cell in CELLS:
        assert (out / f"llm/{cell}/model.safetensors").stat().st_ino == (smollm2_dir / "model.safetensors").stat().st_ino
    opened, backends = [], []

    class Recorder:
        @classmethod
        def open(cls, folder, generation, rationale_format, *, dtype, device, gpu_share):
            opened.append(Path(folder).relative_to(out).as_posix())
            backends.append((generation["backend"], gpu_share))
            return cls()

        def write(self, cards, progress=False):
            return [Generation("<think>\n1. x\n</think>\nActivity level: 1", 8, False) for _ in cards]

    monkeypatch.setattr(writer, "RationaleWriter", Recorder)
    model = R3LM.load(out, device="cpu")
    for cell in reversed(CELLS):
        model.score(dict(zip(queries["id"][:1], queries["sequence"][:1])), cell)
    assert opened == [f"llm/{cell}" for cell in reversed(CELLS)]
    # the Python API writes through transformers; `r3lm predict` takes vLLM where installed, given a GPU share,
    # once there are enough sequences to pay for its start (two here), and transformers below that
    from r3lm.llm import generate

    monkeypatch.setattr(generate, "VLLM_PAYS_FROM", 2)
    for count in (1, 2):
        fasta = _fasta(tmp_path / "queries.fa", dict(zip(queries["id"][:count], queries["sequence"][:count])))
        assert main(["predict", "--model", str(out), "--cell-type", CELLS[0], "--fasta", str(fasta), "--out",
                     str(tmp_path / "out.tsv"), "--device", "cpu", "--no-progress"]) == 0
    assert backends == [("hf", BUNDLE_VLLM_GPU_SHARE)] * (len(CELLS) + 1) + [("auto", BUNDLE_VLLM_GPU_SHARE)]


def test_score_rebuilds_the_cards_and_predicts_with_the_stage2_model(model, queries, scored, bundle):
    """The scan and card of a new sequence equal the workflow's, and the activity is the Stage-II model's
    prediction on that card and the generated rationale, on the training levels."""
    assert list(scored.columns) == [*SCORE_COLUMNS, "card"]
    assert scored["id"].tolist() == queries["id"].tolist() and (scored["cell_type"] == "HepG2").all()
    assert scored["card"].tolist() == queries["card_text"].tolist()
    assert scored["rationale"].str.len().gt(0).all()
    direct = Stage2Predictor.load(bundle / "stage2/shared", device="cpu", backbone=bundle / "llm").predict(
        pd.DataFrame({"cell_type": "HepG2", "card_text": scored["card"], "sequence": queries["sequence"],
                      "rationale": scored["rationale"]}))
    assert np.allclose(scored["predicted"], direct, rtol=0, atol=1e-5)
    assert scored["level"].tolist() == assign_levels(scored["predicted"].to_numpy(), EDGES).tolist()
    again = model.score(dict(zip(queries["id"], queries["sequence"])), "HepG2")
    pd.testing.assert_frame_equal(again, scored.drop(columns="card"))  # seeded: the same batch, the same output


def test_the_python_api_scores_variants_for_a_design_loop(bundle, queries):
    wild_type = queries["sequence"].iloc[0]
    variants = {"wild_type": wild_type, "first_half_reversed": wild_type[:30][::-1] + wild_type[30:],
                "poly_a_tail": wild_type[:-10] + "A" * 10}
    ranked = r3lm.score(variants, "K562", model=bundle, device="cpu").sort_values("predicted", ascending=False)
    assert set(ranked["id"]) == set(variants) and ranked["predicted"].is_monotonic_decreasing
    assert ranked["rationale"].notna().all() and r3lm.load(str(bundle), "cpu") is r3lm.load(str(bundle), "cpu")


def _fasta(path: Path, records: dict[str, str], width: int = 50) -> Path:
    """Lines of `width` letters, as genome FASTAs are laid out (pyfaidx relies on it)."""
    path.write_text("".join(f">{name} a description\n" + "".join(
        f"{sequence[start:start + width]}\n" for start in range(0, len(sequence), width))
        for name, sequence in records.items()))
    return path


def test_predict_reads_fasta_table_and_bed_alike(bundle, queries, scored, tmp_path):
    """The same sequences through every input kind give the same predictions (BED '-' regions reverse-complemented)."""
    records = dict(zip(queries["id"], queries["sequence"]))
    fasta = _fasta(tmp_path / "queries.fa", records)
    table = tmp_path / "queries.csv"
    pd.DataFrame({"name": list(records), "dna": list(records.values())}).to_csv(table, index=False)
    complement = str.maketrans("ACGT", "TGCA")
    first, second = queries["sequence"]
    genome = _fasta(tmp_path / "genome.fa", {"chr1": "GATTACA" * 3 + first + "CCCC",
                                             "chr2": "TT" + second.translate(complement)[::-1] + "TT"})
    bed = tmp_path / "regions.bed"
    bed.write_text(f"chr1\t21\t{21 + len(first)}\t{queries['id'].iloc[0]}\t0\t+\n"
                   f"chr2\t2\t{2 + len(second)}\t{queries['id'].iloc[1]}\t0\t-\n")
    runs = {"fasta": ["--fasta", str(fasta)], "table": ["--table", str(table), "--id-column", "name",
                                                        "--sequence-column", "dna"],
            "bed": ["--bed", str(bed), "--genome", str(genome)]}
    outputs = {}
    for kind, source in runs.items():
        out = tmp_path / f"{kind}.parquet"
        assert main(["predict", "--model", str(bundle), "--cell-type", "HepG2", *source, "--out", str(out),
                     "--device", "cpu", "--backend", "hf", "--no-progress",
                     *(["--with-card"] if kind == "bed" else [])]) == 0
        outputs[kind] = pd.read_parquet(out)
    assert outputs["bed"]["card"].tolist() == scored["card"].tolist()
    for kind, table in outputs.items():
        assert table["id"].tolist() == scored["id"].tolist(), kind
        assert np.allclose(table["predicted"], scored["predicted"], atol=1e-5), kind
        assert table["rationale"].tolist() == scored["rationale"].tolist(), kind


def test_explain_prints_the_card_rationale_and_prediction(bundle, queries, scored, capsys):
    sequence = queries["sequence"].iloc[0]
    assert main(["explain", "--model", str(bundle), "--cell-type", "HepG2", "--sequence", sequence.lower(),
                 "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    first, scale, agreement = text.splitlines()[:3]
    predicted = re.fullmatch(r"Stage II prediction for HepG2: activity (\S+), level (\d) of 0-3 \(\w+\)", first)
    assert predicted, first
    level = int(predicted.group(2))
    assert level == int(assign_levels(np.array([float(predicted.group(1))]), EDGES)[0])
    assert scale == "Levels on the training data: L0 < -0.5 | L1 < 0 | L2 < 0.5 | L3"
    assert queries["card_text"].iloc[0] in text and "== Rationale ==" in text
    stated = parse(text.split("== Rationale ==\n", 1)[1]).level
    assert agreement.startswith("The rationale states " + ("no level" if stated is None else f"level {stated} "))
    assert ("they disagree" in agreement) == (stated is not None and stated != level), agreement


RATIONALE = "<think>\n1. The card shows GATA1.\n</think>\nActivity level: N"
DISAGREE = "they disagree, and the prediction is Stage II's."


@pytest.mark.parametrize(("stated", "line", "agrees"), [
    (0, f"The rationale states level 0 (low); Stage II predicts level 2 (moderate): {DISAGREE}", False),
    (2, "The rationale states level 2 (moderate), as Stage II predicts.", True),
    (None, "The rationale states no level; Stage II predicts level 2 (moderate).", None),
    (7, f"The rationale states level 7 (not one of 0-3); Stage II predicts level 2 (moderate): {DISAGREE}", False),
])
def test_explain_labels_the_prediction_and_says_whether_the_rationale_agrees(stated, line, agrees):
    """The rationale's conclusion comes last and can differ from Stage II's level: the header says which is the
    prediction and whether the two agree."""
    explanation = Explanation(cell_type="K562", mode="generated_cot", card="Context:", rationale=RATIONALE,
                              stated_level=stated, predicted=0.978, level=2, n_levels=4, edges=[0.241, 0.832, 1.52])
    lines = explanation.to_text().splitlines()
    assert lines[:3] == ["Stage II prediction for K562: activity 0.978, level 2 of 0-3 (moderate)",
                         "Levels on the training data: L0 < 0.241 | L1 < 0.832 | L2 < 1.52 | L3", line]
    assert explanation.agrees is agrees


def test_explain_without_a_rationale_compares_nothing():
    explanation = Explanation(cell_type="K562", mode="rcc_only", card="Context:", rationale=None, stated_level=None,
                              predicted=0.978, level=2, n_levels=4, edges=[0.241, 0.832, 1.52])
    text = explanation.to_text()
    assert text.splitlines()[2] == "Model: rcc_only" and "rationale states" not in text
    assert text.endswith("(this model reads no rationale)") and explanation.agrees is None


@pytest.mark.parametrize(("case", "sequence", "cell", "message"), [
    ("empty sequence", " ", "HepG2", r"sequence 'query' is missing or empty"),
    ("other letters", "ACGTUACGT", "HepG2", r"sequence 'query' has 'U' at position 5"),
    ("N", "ACGTNACGT", "HepG2", r"sequence 'query' has 'N' at position 5; only A, C, G and T are allowed"),
    ("unknown cell type", "ACGTACGT", "", r"unknown cell type '': this model predicts HepG2, K562"),
    ("model path is a file", "ACGTACGT", "HepG2", r"r3lm_bundle.json: is a file; a model folder is expected here"),
])
def test_explain_refuses_bad_input_in_one_line(bundle, capsys, case, sequence, cell, message):
    model = bundle / MANIFEST if case == "model path is a file" else bundle
    assert main(["explain", "--model", str(model), "--cell-type", cell, "--sequence", sequence, "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    error = captured.err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("r3lm explain: error: ") and not captured.out
    assert re.search(message, error), error


def _broken_bundle(bundle: Path, tmp_path: Path, piece: str) -> Path:
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    target = copy / piece
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    return copy


@pytest.mark.parametrize(("case", "message"), [
    ("N in a sequence", (r"queries.fa, row 2, column 'sequence': sequence 'b' has 'N' at position 3; only A, C, G "
                        r"and T are allowed")),
    ("other letters", r"row 1, column 'sequence': sequence 'a' has 'U' at position 1"),
    ("empty FASTA", r"queries.fa: no sequences in the file"),
    ("unknown cell type", r"unknown cell type 'WTC11': this model predicts HepG2, K562"),
    ("no head", r"stage2/shared: the HepG2 model lacks head.pt"),
    ("no weights", r"llm: the model folder has no weights"),
    ("no manifest", r"not an r3lm model folder: no r3lm_bundle.json"),
    ("region off the chromosome", r"regions.bed, row 1, column 'end': region chr1:5-500 is not within chr1"),
    ("unknown chromosome", r"regions.bed, row 1, column 'chrom': chromosome 'chrX' is not in the genome"),
    ("BED without genome", r"regions.bed: BED regions need the genome FASTA"),
    ("unknown output type", r"out.xlsx: unknown output type '.xlsx'"),
    ("a GPU that is not there", r"device cuda:3 asked for, but no CUDA GPU is visible"),
    ("model path is a file", r"r3lm_bundle.json: is a file; a model folder is expected here"),
    ("no tokenizer", r"llm: the model folder has no tokenizer \(tokenizer.json\)"),
    ("input is a folder", r"queries.fa: is a folder; a file is expected here"),
    ("output is a folder", r"out.tsv: is a folder; give a file path for this output"),
    ("output is the input", r"queries.tsv: the output would replace the input"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(bundle, tmp_path, capsys, monkeypatch, case, message):
    fasta = _fasta(tmp_path / "queries.fa", {"a": "ACGTACGTAC" * 3, "b": "ACNTACGTAC" * 3})
    source, model, cell, out = ["--fasta", str(fasta)], bundle, "HepG2", tmp_path / "out.tsv"
    genome = _fasta(tmp_path / "genome.fa", {"chr1": "ACGT" * 50})
    bed = tmp_path / "regions.bed"
    if case == "other letters":
        fasta = _fasta(fasta, {"a": "UCGTACGTAC" * 3})
    elif case == "empty FASTA":
        fasta.write_text("")
    elif case == "unknown cell type":
        cell = "WTC11"
    elif case in ("no head", "no weights", "no manifest", "no tokenizer"):
        model = _broken_bundle(bundle, tmp_path, {"no head": "stage2/shared/head.pt",
                                                  "no weights": "llm/model.safetensors",
                                                  "no manifest": MANIFEST, "no tokenizer": "llm/tokenizer.json"}[case])
    elif case == "model path is a file":
        model = bundle / MANIFEST
    elif case == "input is a folder":
        fasta.unlink()
        fasta.mkdir()
    elif case == "output is the input":
        out = tmp_path / "queries.tsv"
        source = ["--table", str(out)]
    elif case in ("region off the chromosome", "unknown chromosome", "BED without genome"):
        bed.write_text("chrX\t5\t40\n" if case == "unknown chromosome" else "chr1\t5\t500\n")
        source = ["--bed", str(bed)] + ([] if case == "BED without genome" else ["--genome", str(genome)])
    elif case == "unknown output type":
        out = tmp_path / "out.xlsx"
    device = "cpu"
    if case == "a GPU that is not there":
        device = "cuda:3"
        monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # also on a machine with GPUs
    if case == "output is a folder":
        out.mkdir()
    elif out.suffix == ".tsv":
        out.write_text("an earlier result\n")  # an earlier result stays as it was
    code = main(["predict", "--model", str(model), "--cell-type", cell, *source, "--out", str(out),
                 "--device", device, "--no-progress"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and error.startswith("r3lm predict: error: ")
    assert re.search(message, error), error
    assert out.is_dir() or ((out.read_text() == "an earlier result\n") if out.suffix == ".tsv" else not out.exists())
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []


def test_ctrl_c_during_predict_is_one_line_and_writes_nothing(bundle, tmp_path, capsys, monkeypatch):
    fasta = _fasta(tmp_path / "queries.fa", {"a": "ACGTACGTAC" * 3})

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(R3LM, "score", interrupted)
    code = main(["predict", "--model", str(bundle), "--cell-type", "HepG2", "--fasta", str(fasta), "--out",
                 str(tmp_path / "out.tsv"), "--device", "cpu", "--no-progress"])
    assert code == 130 and capsys.readouterr().err.strip() == "r3lm predict: interrupted; no output was left half-written"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["queries.fa"]


def test_the_length_warning_names_the_sequences(model, caplog):
    trained = model.manifest["training_data"]
    short, fine = "ACGT" * 3, "ACGT" * ((trained["length_min"] + 3) // 4)
    assert len(short) < trained["length_min"] <= len(fine) <= trained["length_max"]
    with caplog.at_level("WARNING"):
        model._warn_on_length(["fine", *(f"short{index}" for index in range(7))], [fine, *[short] * 7])
    assert ("7 of 8 sequences are outside the training lengths" in caplog.text
            and "short0 (12 bp), short1 (12 bp)" in caplog.text and "and 2 more" in caplog.text)
    assert "fine" not in caplog.text


def test_score_refuses_bad_sequences_and_ids(model):
    with pytest.raises(InputError, match="sequence 'seq2' is missing or empty"):
        model.score(["ACGT", ""], "HepG2")
    with pytest.raises(InputError, match="not one string"):
        model.score("ACGTACGT", "HepG2")
    with pytest.raises(InputError, match="row 2, column 'id': id 'x' repeats row 1"):
        model.score(pd.Series(["ACGT", "ACGA"], index=["x", "x"]), "HepG2")


def test_a_bundle_needs_a_deployable_mode_level_edges_and_a_model_per_cell_type(stage2_config, stage2_trained,
                                                                                smollm2_dir, tmp_path):
    shared = Stage1Models({SHARED: str(smollm2_dir)})
    with pytest.raises(InputError, match="oracle_cot cannot be bundled"):
        write_bundle(stage2_config, "oracle_cot", stage2_trained["models"], shared, stage2_trained["data"],
                     tmp_path / "oracle")
    data = shutil.copytree(stage2_trained["data"], tmp_path / "data")
    (data / "summary.json").write_text(json.dumps({"levels": {"edges": {"HepG2": EDGES}}}))
    with pytest.raises(InputError, match="no level edges for K562"):
        write_bundle(stage2_config, "generated_cot", stage2_trained["models"], shared, data, tmp_path / "out")
    with pytest.raises(InputError, match="no Stage-I model for cell type 'K562'"):
        write_bundle(stage2_config, "generated_cot", stage2_trained["models"],
                     Stage1Models({"HepG2": str(smollm2_dir)}), stage2_trained["data"], tmp_path / "out")
    assert not (tmp_path / "oracle").exists() and not (tmp_path / "out").exists()
    tagged = {**stage2_config, "rcc": {**stage2_config["rcc"], "evidence_tags": True}}
    with pytest.raises(InputError, match="rcc.evidence_tags is on but no evidence tags were given"):
        write_bundle(tagged, "generated_cot", stage2_trained["models"], shared, stage2_trained["data"], tmp_path / "out")
    with pytest.raises(InputError, match="no entry for K562"):
        write_bundle(tagged, "generated_cot", stage2_trained["models"], shared, stage2_trained["data"],
                     tmp_path / "out", evidence_tags=EvidenceTags({"HepG2": CellEvidence({"HNF4A": "up"})}))
    with pytest.raises(InputError, match="rcc.evidence_tags is off"):
        write_bundle(stage2_config, "generated_cot", stage2_trained["models"], shared, stage2_trained["data"],
                     tmp_path / "out", evidence_tags=EvidenceTags({"HepG2": CellEvidence({"HNF4A": "up"})}))
    assert not (tmp_path / "out").exists()


def test_a_bundle_cards_new_sequences_with_the_evidence_tags_its_models_were_trained_on(
        stage2_config, stage2_trained, smollm2_dir, tmp_path):
    tags = EvidenceTags({"HepG2": CellEvidence({"HNF4A": "up", "HNF1A": "up", "REST": "down"}, GcStats(0.45, 0.05, 0.2)),
                         "K562": CellEvidence({"GATA1": "up"})})
    config = {**stage2_config, "rcc": {**stage2_config["rcc"], "evidence_tags": True}}
    manifest = write_bundle(config, "generated_cot", stage2_trained["models"], Stage1Models({SHARED: str(smollm2_dir)}),
                            stage2_trained["data"], tmp_path / "bundle", evidence_tags=tags)
    assert EvidenceTags.from_json(manifest["evidence_tags"]) == tags
    sequence = "TTGGACTTTGGACTAAAGTCCAAAGTCCA" * 6  # HNF4A's direct repeats
    card = R3LM.load(tmp_path / "bundle", device="cpu").pipeline.cards(
        pd.DataFrame({"id": ["s"], "sequence": [sequence], "cell_type": ["HepG2"]}), progress=False)["card_text"][0]
    motif_lines = [line for line in card.splitlines() if line.startswith("- ") and "Family:" in line]
    assert motif_lines and all(line.endswith(("HepG2: up)", "HepG2: down)", "HepG2: none)")) for line in motif_lines)
    up = [line[2:].split(" (")[0] for line in motif_lines if line.endswith("HepG2: up)")]
    hits, listed = re.search(r"HepG2 evidence: (\d+) hits?; up (.+); down .+; GC [\d.]+: \w", card).groups()
    assert sorted(listed.split(", ")) == (sorted(set(up)) or ["none"]) and int(hits) == len(motif_lines)
    assert listed.split(", ") == [name for name in tags.get("HepG2").directions if name in set(up)] or not up


def test_batches_fit_half_the_free_gpu_memory(monkeypatch):
    """SmolLM2 (576 wide, 30 layers) at 2,048 tokens needs ~566 MB per sequence: 8 GB free holds 7 in half."""
    monkeypatch.setattr("torch.cuda.mem_get_info", lambda device: (8 * 10**9, 80 * 10**9))
    assert auto_batch_size("cuda", 576, 30, 2048) == 7
    monkeypatch.setattr("torch.cuda.mem_get_info", lambda device: (10**8, 80 * 10**9))
    assert auto_batch_size("cuda:1", 576, 30, 2048) == 1
    assert auto_batch_size("cpu", 576, 30, 2048) == 8
