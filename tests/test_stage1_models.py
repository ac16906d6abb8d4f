"""Which Stage-I model serves each cell type, and how a released checkpoint's hub id resolves offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from r3lm.errors import InputError
from r3lm.hub import local_copy
from r3lm.stage1.models import SHARED, Stage1Models

REPO = Path(__file__).resolve().parents[1]


def test_one_path_is_shared_and_cell_entries_map_each_cell_type() -> None:
    shared = Stage1Models.parse(["results/stage1/shared/model"])
    assert shared.shared and shared.for_cell("K562") == shared.for_cell("HepG2") == "results/stage1/shared/model"
    assert shared.cells_by_model(["K562", "HepG2", "K562"]) == {"results/stage1/shared/model": ["HepG2", "K562"]}
    per_cell = Stage1Models.parse(["K562=DuanYi/R3LM_K562", "HepG2=/models/hepg2"])
    assert not per_cell.shared and per_cell.for_cell("HepG2") == "/models/hepg2"
    assert per_cell.cells_by_model(["K562", "HepG2"]) == {"/models/hepg2": ["HepG2"], "DuanYi/R3LM_K562": ["K562"]}
    assert Stage1Models.parse(per_cell.arguments()) == per_cell and shared.arguments() == [shared.by_group[SHARED]]
    assert per_cell.covers("K562") and not per_cell.covers("SKNSH") and shared.covers("SKNSH")
    with pytest.raises(InputError, match="no Stage-I model for cell type 'SKNSH'"):
        per_cell.for_cell("SKNSH")


@pytest.mark.parametrize("entries", [["a", "b"], ["K562=a", "=b"], ["K562=a", "K562=b"], ["shared=a", "K562=b"]])
def test_malformed_model_arguments_are_errors(entries: list[str]) -> None:
    with pytest.raises(InputError, match="--model"):
        Stage1Models.parse(entries)


def test_a_model_folder_is_used_as_given_and_a_bad_name_is_an_error(tmp_path: Path) -> None:
    assert local_copy(tmp_path) == str(tmp_path)
    with pytest.raises(InputError, match="neither a folder nor a hub id"):
        local_copy(tmp_path / "missing")
    with pytest.raises(InputError, match="neither a folder nor a hub id"):
        local_copy("R3LM_K562")


def test_a_released_checkpoint_offline_fails_at_once_with_one_line_that_says_what_to_do(tmp_path: Path) -> None:
    """No network and nothing in the Hugging Face cache: one line naming the model and the way round it."""
    code = "from r3lm.hub import local_copy; local_copy('DuanYi/R3LM_K562', what='the Stage-I model')"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env,
                            timeout=60)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0
    assert "cannot download the Stage-I model DuanYi/R3LM_K562" in last
    assert "hf download DuanYi/R3LM_K562 --local-dir DIR" in last and "give that folder" in last
