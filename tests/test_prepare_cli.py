"""`r3lm step prepare-data` on real data: exit codes, the one-line error, JSON and YAML configs; config validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import (
    OUTPUT_FILES,
    read_outputs,
    read_text_table,
    write_text_table,
    written_files,
)

from r3lm.cli import main
from r3lm.config import validate_config
from r3lm.errors import InputError

REPO = Path(__file__).resolve().parents[1]
PREFIX = "r3lm step prepare-data: error: "


def wtc11_settings(path: Path, **table: Any) -> dict[str, Any]:
    settings = {"dataset": {"name": "wtc11", "source": "table", "table": {
        "path": str(path), "id_column": "seq_id", "sequence_column": "seq",
        "activity_columns": {"WTC11": "mean_value"}, "trim": {"left": 15, "right": 15}, "sequence_length": 200,
        "split": {"method": "random", "group_regex": "_[FR]$"}, **table}},
        "levels": {}, "sampling": {"test_subset_per_cell_type": 5}}
    return settings


@pytest.fixture
def small_wtc11(wtc11_path: Path, tmp_path: Path) -> Path:
    return write_text_table(read_text_table(wtc11_path).iloc[:80], tmp_path / "wtc11_small.tsv")


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(PREFIX)
    assert captured.out == ""
    return lines[0]


def test_cli_json_config_writes_every_output(small_wtc11: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["step", "prepare-data", "--config", json.dumps(wtc11_settings(small_wtc11)), "--out-dir", str(out)]) == 0
    assert sorted(path.name for path in written_files(out)) == sorted(OUTPUT_FILES)
    tables, summary = read_outputs(out)
    assert summary["dataset"] == "wtc11" and summary["input"] == {"path": str(small_wtc11), "rows": 80}
    assert sum(len(tables[name]) for name in ("train", "val", "test")) == 80
    assert summary["rows"]["test_subset"] == {"WTC11": 5}
    assert "error" not in capsys.readouterr().err


def test_cli_yaml_config_file_gives_the_same_result(small_wtc11: Path, tmp_path: Path) -> None:
    settings = wtc11_settings(small_wtc11)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(settings))
    assert main(["step", "prepare-data", "--config", str(config_file), "--out-dir", str(tmp_path / "yaml")]) == 0
    assert main(["step", "prepare-data", "--config", json.dumps(settings), "--out-dir", str(tmp_path / "json")]) == 0
    for name in ("train", "val", "test", "test_subset"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "yaml" / f"{name}.parquet"),
                                      pd.read_parquet(tmp_path / "json" / f"{name}.parquet"))


def test_cli_gosai_with_input(gosai_rows: Path, tmp_path: Path) -> None:
    settings = json.dumps({"dataset": {"name": "g", "source": "gosai2024"}, "levels": {}, "sampling": {}})
    out = tmp_path / "out"
    assert main(["step", "prepare-data", "--config", settings, "--out-dir", str(out), "--input", str(gosai_rows)]) == 0
    tables, summary = read_outputs(out)
    assert set(tables["test"]["id"]) == {"7:70038969:G:T:A:wC"}
    assert summary["dropped"]["sequence_wrong_length"] == 1


def test_cli_bad_row_is_one_line_naming_file_row_column(small_wtc11: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    frame = read_text_table(small_wtc11)
    frame.loc[9, "seq"] = frame.loc[9, "seq"][:40] + "N" + frame.loc[9, "seq"][41:]
    bad = write_text_table(frame, tmp_path / "bad.tsv")
    out = tmp_path / "out"
    assert main(["step", "prepare-data", "--config", json.dumps(wtc11_settings(bad)), "--out-dir", str(out)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"{PREFIX}{bad}, row 10, column 'seq': sequence has 'N' at position 26")
    assert written_files(out) == []


def test_cli_other_bad_inputs_exit_2(small_wtc11: Path, gosai_rows: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    frame = read_text_table(small_wtc11)
    frame.loc[2, "mean_value"] = "abc"
    bad = write_text_table(frame, tmp_path / "bad.tsv")
    assert main(["step", "prepare-data", "--config", json.dumps(wtc11_settings(bad)), "--out-dir", str(out)]) == 2
    assert f"{bad}, row 3, column 'mean_value': not a number: 'abc'" in one_error_line(capsys)

    missing = json.dumps(wtc11_settings(small_wtc11, activity_columns={"WTC11": "activity"}))
    assert main(["step", "prepare-data", "--config", missing, "--out-dir", str(out)]) == 2
    assert f"{small_wtc11}, column 'activity': missing column(s)" in one_error_line(capsys)

    unknown_key = json.dumps({"dataset": {"name": "x", "sorce": "table"}})
    assert main(["step", "prepare-data", "--config", unknown_key, "--out-dir", str(out)]) == 2
    line = one_error_line(capsys)
    assert "'sorce'" in line and "key 'dataset'" in line

    assert main(["step", "prepare-data", "--config", str(tmp_path / "nope.yaml"), "--out-dir", str(out)]) == 2
    assert "nope.yaml: config file not found" in one_error_line(capsys)

    broken = tmp_path / "broken.yaml"
    broken.write_text("dataset: {name: [\n")
    assert main(["step", "prepare-data", "--config", str(broken), "--out-dir", str(out)]) == 2
    assert f"{broken}: not valid YAML" in one_error_line(capsys)

    gosai = json.dumps({"dataset": {"name": "g", "source": "gosai2024"}, "levels": {}, "sampling": {}})
    assert main(["step", "prepare-data", "--config", gosai, "--out-dir", str(out)]) == 2
    assert "needs its input file (--input)" in one_error_line(capsys)

    cells = json.dumps({"dataset": {"name": "g", "source": "gosai2024", "cell_types": ["K562", "Liver"]},
                        "levels": {}, "sampling": {}})
    assert main(["step", "prepare-data", "--config", cells, "--out-dir", str(out), "--input", str(gosai_rows)]) == 2
    assert "'Liver' in dataset.cell_types" in one_error_line(capsys)
    assert written_files(out) == []


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "r3lm", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=120, check=False)


def test_cli_process_exit_code_and_single_stderr_line(small_wtc11: Path, tmp_path: Path) -> None:
    frame = read_text_table(small_wtc11)
    frame.loc[4, "seq_id"] = frame.loc[1, "seq_id"]
    bad = write_text_table(frame, tmp_path / "dup.tsv")
    result = run_cli("step", "prepare-data", "--config", json.dumps(wtc11_settings(bad)), "--out-dir", "out", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        (f"{PREFIX}{bad}, row 5, column 'seq_id': id {frame.loc[1, 'seq_id']!r} repeats row 2 "
         "(set dataset.on_duplicate_id: drop to keep the first)")]
    assert not (tmp_path / "out").exists()


def test_cli_error_after_progress_logging_is_one_last_line(gosai_rows: Path, tmp_path: Path) -> None:
    """Progress logs go to stderr as they happen; the error is one line, and the last."""
    cells = json.dumps({"dataset": {"name": "g", "source": "gosai2024", "cell_types": ["Liver"]}, "levels": {},
                        "sampling": {}})
    result = run_cli("step", "prepare-data", "--config", cells, "--out-dir", "out", "--input", str(gosai_rows), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert [line for line in lines if "error:" in line] == lines[-1:], result.stderr
    assert "unknown cell type(s) 'Liver'" in lines[-1]


def test_cli_invalid_json_config_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["step", "prepare-data", "--config", "{dataset: oops", "--out-dir", str(tmp_path / "out")]) == 2
    one_error_line(capsys)


def test_cli_yaml_that_is_not_a_mapping_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file = tmp_path / "list.yaml"
    config_file.write_text("- dataset\n- levels\n")
    assert main(["step", "prepare-data", "--config", str(config_file), "--out-dir", str(tmp_path / "out")]) == 2
    assert str(config_file) in one_error_line(capsys)


# ------------------------------------------------------------------ validate_config

@pytest.mark.parametrize(("settings", "key", "word"), [
    ({"datset": {}}, "(top level)", "'datset'"),
    ({"dataset": {"table": {"pth": "x.tsv"}}}, "dataset.table", "'pth'"),
    ({"dataset": {"table": {"trim": {"middle": 3}}}}, "dataset.table.trim", "'middle'"),
    ({"dataset": {"gosai2024": {"split": {"method": "by_chromosome"}}}}, "dataset.gosai2024.split.method",
     "by_chromosome"),
    ({"levels": {"n_levels": 1}}, "levels.n_levels", "1"),
    ({"dataset": {"name": "my data"}}, "dataset.name", "my data"),
    ({"dataset": {"on_invalid_sequence": "skip"}}, "dataset.on_invalid_sequence", "skip"),
    ({"dataset": {"table": {"split": {"val_fraction": 1.5}}}}, "dataset.table.split.val_fraction", "1.5"),
])
def test_validate_config_names_the_bad_key(settings: dict[str, Any], key: str, word: str) -> None:
    with pytest.raises(InputError) as caught:
        validate_config(settings, source="my.yaml")
    message = str(caught.value)
    assert message.startswith(f"my.yaml: invalid value at key '{key}'")
    assert word in message and "\n" not in message


def test_validate_config_fills_defaults_without_touching_the_input() -> None:
    settings = {"dataset": {"source": "table", "table": {"path": "x.tsv"}}}
    config = validate_config(settings)
    assert settings == {"dataset": {"source": "table", "table": {"path": "x.tsv"}}}
    table = config["dataset"]["table"]
    assert table["trim"] == {"left": 0, "right": 0} and table["sequence_length"] is None
    assert table["split"]["method"] == "random" and table["split"]["val_fraction"] == 0.1
    assert config["dataset"]["gosai2024"]["split"]["method"] == "chromosome"
    assert config["dataset"]["gosai2024"]["max_lfcse"] == 1.0
    assert config["dataset"]["on_invalid_sequence"] == "error" and config["dataset"]["on_duplicate_id"] == "error"
    assert config["levels"] == {"n_levels": 4}
    assert config["sampling"]["test_subset_per_cell_type"] == 100


def test_negative_trim_is_rejected() -> None:
    with pytest.raises(InputError, match="dataset.table.trim.left"):
        validate_config({"dataset": {"table": {"trim": {"left": -5}}}})
