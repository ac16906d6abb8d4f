"""Config overrides as snakemake --config delivers them: nested values arrive as text."""

from __future__ import annotations

import pytest

from r3lm.config import validate_config
from r3lm.errors import InputError


def test_text_from_snakemake_config_is_coerced_to_the_schema_types() -> None:
    config = validate_config({
        "motifs": {"pvalue": "1e-4", "shards": "3", "jaspar_release": "JASPAR2024"},
        "rcc": {"grammar_tags": "true", "grammar": {"gc_rich": "0.7"}},
        "dataset": {"cell_types": ["7"], "demo": {"gc_range": ["0.2", "0.8"], "split": {"seed": "3"}}},
        "sampling": {"train_per_cell_type": "null", "val_per_cell_type": "50"},
    })
    assert config["motifs"]["pvalue"] == 1e-4 and config["motifs"]["shards"] == 3
    assert config["rcc"]["grammar_tags"] is True and config["rcc"]["grammar"]["gc_rich"] == 0.7
    assert config["dataset"]["cell_types"] == ["7"]  # strings stay strings
    assert config["dataset"]["demo"]["gc_range"] == [0.2, 0.8]
    assert config["dataset"]["demo"]["split"]["seed"] == 3  # through the shared split definition
    assert config["sampling"]["train_per_cell_type"] is None and config["sampling"]["val_per_cell_type"] == 50


@pytest.mark.parametrize(("override", "key"), [
    ({"rcc": {"grammar_tags": "yes please"}}, "rcc.grammar_tags"),
    ({"motifs": {"shards": "2.5"}}, "motifs.shards"),
    ({"motifs": {"background": "markov"}}, "motifs.background"),
])
def test_text_that_does_not_fit_is_still_an_error_naming_the_key(override: dict, key: str) -> None:
    with pytest.raises(InputError, match=f"key '{key}'"):
        validate_config(override)


@pytest.mark.usefixtures("shared")  # the tables they read lie in ../shared, beside the checkout
@pytest.mark.parametrize("name", ["lentimpra", "lentimpra_wtc11"])
def test_the_shipped_real_data_configs_validate_and_differ_only_in_their_data(name: str) -> None:
    """config/lentimpra*.yaml: valid against the schema, reading the shared lentiMPRA tables; the WTC11 file has
    the HepG2 file's settings, its own table and the transfer's cell type."""
    from pathlib import Path

    import yaml

    folder = Path(__file__).resolve().parents[1] / "config"
    config = validate_config(yaml.safe_load((folder / f"{name}.yaml").read_text()))
    hepg2 = validate_config(yaml.safe_load((folder / "lentimpra.yaml").read_text()))
    assert Path(folder.parent, config["dataset"]["table"]["path"]).is_file()
    # one cell type: the Stage-I set itself gives the step floor at batch 4, so the floor adds no repeat
    steps = config["reasoning"]["sets"]["stage1_train"] * config["stage1"]["epochs"] // config["stage1"]["batch_size"]
    assert config["reasoning"]["stage1_agreeing"] == "level" and steps == config["stage1"]["min_steps"] == 72
    for section in ("rcc", "reasoning", "stage1", "stage2", "generation", "motifs", "sampling"):
        assert config[section] == hepg2[section], section
    (cell,) = config["dataset"]["table"]["activity_columns"]
    assert config["evaluation"]["transfer"][0]["activity_columns"] == {cell: cell}
