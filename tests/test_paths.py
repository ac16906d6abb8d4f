"""Result folders named by the settings that make them, and the checks across sections (r3lm/paths.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from r3lm.cli import main
from r3lm.config import validate_config
from r3lm.errors import InputError
from r3lm.paths import WorkflowPaths, check_plan, planned_cell_types, served_cell_types

DEMO = {"dataset": {"name": "demo", "source": "demo"}}


def paths_of(overrides: dict[str, Any]) -> WorkflowPaths:
    return check_plan(validate_config(overrides))


def folders(paths: WorkflowPaths) -> dict[str, str]:
    return {name: getattr(paths, name) for name in ("motif_dir", "rcc_dir", "reasoning_dir", "stage1_dir",
                                                     "stage2_dir", "ridge_dir", "cnn_dir", "run_dir")}


def test_the_demo_folders_are_named_by_their_settings() -> None:
    paths = paths_of(DEMO)
    assert paths.motif_dir == "results/demo/motifs/JASPAR2026_CORE_vertebrates_p5e-05_uniform_pc0.1"
    assert paths.rcc_dir == "results/demo/rcc/JASPAR2026_CORE_vertebrates_p5e-05_uniform_pc0.1_nogrammar"
    assert paths.reasoning_dir.endswith("_nogrammar_grounded-full")
    assert paths.stage1_dir.startswith(f"results/demo/stage1/{Path(paths.reasoning_dir).name}_smollm2-135m-instruct_")
    assert paths.stage2_dir.startswith(f"results/demo/stage2/{Path(paths.stage1_dir).name}_")
    assert paths.stage1_groups == ["shared"]
    assert paths.citation_truth == "results/demo/data/ground_truth.parquet"
    assert paths.prediction_dir("cnn") == "results/demo/baselines/cnn/predictions"
    assert paths.prediction_dir("generated_cot") == f"{paths.stage2_dir}/generated_cot/predictions"


@pytest.mark.parametrize(("change", "first_moved"), [
    ({"motifs": {"pvalue": 1e-4}}, "motif_dir"),
    ({"rcc": {"grammar_tags": True}}, "rcc_dir"),
    ({"reasoning": {"detail": "brief"}}, "reasoning_dir"),
    ({"rcc": {"evidence_tags": True}}, "reasoning_dir"),
    ({"stage1": {"method": "lora"}}, "stage1_dir"),
    ({"stage1": {"models": "per_cell_type"}, "stage2": {"backbone": "base"}}, "stage1_dir"),
    ({"stage2": {"training": "frozen"}}, "stage2_dir"),
    ({"run": "ablation"}, "run_dir"),
])
def test_an_ablation_moves_its_stage_and_every_later_one_and_no_earlier_one(change: dict[str, Any],
                                                                           first_moved: str) -> None:
    """Changing one setting gives new folders from its stage on, so no ablation overwrites another's results."""
    before = folders(paths_of(DEMO))
    after = folders(paths_of({**DEMO, **change}))
    order = ["motif_dir", "rcc_dir", "reasoning_dir", "stage1_dir", "stage2_dir"]
    moved = {name for name in before if before[name] != after[name]}
    assert first_moved in moved
    if first_moved in order:
        assert set(order[order.index(first_moved):]) <= moved
        assert not moved & set(order[:order.index(first_moved)])
    assert "cnn_dir" not in moved  # the CNN reads sequences only: one model serves every setting


def test_pretrained_models_get_a_folder_per_set_of_models() -> None:
    one = {"HepG2": "a/HepG2", "K562": "a/K562", "SKNSH": "a/SKNSH"}
    base = {"backbone": "base"}
    first = paths_of({**DEMO, "stage1": {"pretrained": one}, "stage2": base})
    second = paths_of({**DEMO, "stage1": {"pretrained": {**one, "K562": "b/K562"}}, "stage2": base})
    assert "_pretrained-" in first.stage1_dir and first.stage1_dir != second.stage1_dir
    assert first.stage1_model("K562") == "a/K562" and sorted(first.stage1_groups) == sorted(one)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"rcc": {"evidence_tags": True}, "reasoning": {"teacher": "released"}},
     "rcc.evidence_tags needs the train split's evidence"),
    ({"stage1": {"pretrained": {"K562": "a/K562"}}, "stage2": {"backbone": "base"}},
     "stage1.pretrained has no model for HepG2, SKNSH"),
    ({"stage1": {"models": "per_cell_type"}, "stage2": {"backbone": "stage1"}},
     "stage2.backbone: stage1 needs one shared Stage-I model"),
    ({"stage1": {"models": "per_cell_type"}, "dataset": {"name": "mine", "source": "table",
                                                        "table": {"path": "x.tsv"}}},
     "needs dataset.cell_types for a table source"),
])
def test_settings_that_cannot_work_together_stop_the_plan_and_check_config(
        overrides: dict[str, Any], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = {**DEMO, **overrides}
    with pytest.raises(InputError, match=message.replace(".", r"\.")):
        check_plan(validate_config(config))
    path = tmp_path / "config.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config))
    assert main(["check-config", "--config", str(path)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]


def test_check_config_accepts_the_shipped_configs(capsys: pytest.CaptureFixture[str]) -> None:
    for config in sorted(Path("config").glob("*.yaml")):
        assert main(["check-config", "--config", str(config)]) == 0, config
        assert capsys.readouterr().out.strip() == f"{config}: valid"


def test_cell_types_are_known_before_any_data_is_read() -> None:
    assert planned_cell_types(validate_config(DEMO)) == ["K562", "HepG2", "SKNSH"]
    assert planned_cell_types(validate_config({"dataset": {"source": "gosai2024"}})) == ["K562", "HepG2", "SKNSH"]
    table = validate_config({"dataset": {"name": "t", "source": "table",
                                         "table": {"path": "x.tsv", "activity_columns": {"HepG2": "hepg2"}}}})
    assert served_cell_types(table) == ["HepG2"]
