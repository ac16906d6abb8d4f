"""Where the workflow writes each stage's results, named by the settings that make them, and the checks across
config sections that must hold before any job runs.

Outputs depend on the settings that make them, so ablations never overwrite each other: changing the motif
p-value gives a new motif, card, reasoning, Stage-I and Stage-II folder, while a new run name (config `run`)
re-evaluates the same models. The workflow (workflow/rules/common.smk) takes every folder from here, and
`r3lm check-config` runs the same checks, so a config that cannot be planned fails there too.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from r3lm.errors import InputError
from r3lm.llm.base import EMBEDDED_NAME
from r3lm.stage1.models import SHARED as SHARED_STAGE1


def slug(name: str) -> str:
    """A model id or folder as one path component: Qwen/Qwen3-4B -> Qwen3-4B."""
    return Path(name.rstrip("/")).name


@dataclass(frozen=True)
class WorkflowPaths:
    """The result folders of one validated config (r3lm.config.validate_config)."""

    config: Mapping[str, Any]

    @property
    def results(self) -> str:
        return f"results/{self.config['dataset']['name']}"

    @property
    def data_dir(self) -> str:
        return f"{self.results}/data"

    @property
    def log_dir(self) -> str:
        return f"{self.results}/logs"

    @property
    def motif_setting(self) -> str:
        motifs = self.config["motifs"]
        return (f"{motifs['jaspar_release']}_{motifs['collection']}_{motifs['tax_group']}"
                f"_p{motifs['pvalue']:g}_{motifs['background']}_pc{motifs['pseudocount']:g}")

    @property
    def motif_dir(self) -> str:
        return f"{self.results}/motifs/{self.motif_setting}"

    @property
    def motif_file(self) -> str:
        motifs = self.config["motifs"]
        return f"resources/motifs/{motifs['jaspar_release']}_{motifs['collection']}_{motifs['tax_group']}.meme"

    @property
    def rcc_dir(self) -> str:
        grammar = "grammar" if self.config["rcc"]["grammar_tags"] else "nogrammar"
        return f"{self.results}/rcc/{self.motif_setting}_{grammar}"

    @property
    def teacher_name(self) -> str:
        reasoning = self.config["reasoning"]
        teacher = reasoning["teacher"]
        if teacher == "openai":
            return f"openai-{slug(reasoning['openai']['model'])}"
        if teacher == "hf":
            return f"hf-{slug(reasoning['hf']['model'] or self.config['llm']['base'])}"
        if teacher == "released":
            return f"released-{slug(reasoning['released']['source'])}"
        return f"{teacher}-{reasoning['detail']}"

    @property
    def reasoning_dir(self) -> str:
        tagged = "_tagged" if self.config["rcc"]["evidence_tags"] else ""
        return f"{self.results}/reasoning/{Path(self.rcc_dir).name}_{self.teacher_name}{tagged}"

    @property
    def evidence_tag_file(self) -> str:
        return f"{self.reasoning_dir}/evidence_tags.json"

    @property
    def text_card_dir(self) -> str:
        """The cards the LLMs read: with rcc.evidence_tags the same tables re-rendered beside the evidence."""
        return f"{self.reasoning_dir}/cards" if self.config["rcc"]["evidence_tags"] else self.rcc_dir

    @property
    def paper_test(self) -> str:
        """The paper protocol's test rows: r3lm's seeded test subset, or the released test set's records."""
        if self.config["reasoning"]["teacher"] == "released":
            return f"{self.reasoning_dir}/test.parquet"
        return f"{self.data_dir}/test_subset.parquet"

    @property
    def pretrained(self) -> Mapping[str, str] | None:
        return self.config["stage1"]["pretrained"]

    @property
    def per_cell_type_stage1(self) -> bool:
        stage1 = self.config["stage1"]
        return stage1["models"] == "per_cell_type" or stage1["pretrained"] is not None

    @property
    def stage1_dir(self) -> str:
        reasoning = Path(self.reasoning_dir).name
        if self.pretrained:  # named by a checksum of the models given, so another set gets its own folder
            checksum = zlib.crc32(json.dumps(self.pretrained, sort_keys=True).encode())
            return f"{self.results}/stage1/{reasoning}_pretrained-{checksum:08x}"
        per_cell_type = "_per-cell-type" if self.per_cell_type_stage1 else ""
        return (f"{self.results}/stage1/{reasoning}_{slug(self.config['llm']['base'])}"
                f"_{self.config['stage1']['method']}{per_cell_type}")

    @cached_property
    def stage1_groups(self) -> list[str]:
        """One shared Stage-I model, or one per cell type (each a group of its own jobs)."""
        return planned_cell_types(self.config) if self.per_cell_type_stage1 else [SHARED_STAGE1]

    def stage1_model(self, group: str) -> str:
        return self.pretrained[group] if self.pretrained else f"{self.stage1_dir}/{group}/model"

    @property
    def base_model(self) -> str:
        """The embedded model's prepared folder, or the user's hub id / folder as given."""
        llm = self.config["llm"]
        return f"{llm['models_dir']}/{EMBEDDED_NAME}" if llm["base"] == EMBEDDED_NAME else llm["base"]

    @property
    def stage2_dir(self) -> str:
        stage2 = self.config["stage2"]
        return f"{self.results}/stage2/{Path(self.stage1_dir).name}_{stage2['backbone']}-backbone_{stage2['training']}"

    @property
    def cnn_dir(self) -> str:
        return f"{self.results}/baselines/cnn"  # the CNN reads sequences only: one model serves every run

    @property
    def ridge_dir(self) -> str:
        return f"{self.results}/baselines/motif_ridge/{Path(self.rcc_dir).name}"

    def prediction_dir(self, method: str) -> str:
        if method == "cnn":
            return f"{self.cnn_dir}/predictions"
        if method == "motif_ridge":
            return f"{self.ridge_dir}/predictions"
        return f"{self.stage2_dir}/{method}/predictions"

    @property
    def heldout_oracle_dir(self) -> str:
        """The held-out oracle reads sequences only, like the CNN: named by its own seeds."""
        heldout = self.config["design"]["heldout_oracle"]
        return (f"{self.results}/design/heldout_oracle_seed{heldout['seed']}_split{heldout['split_seed']}"
                f"_val{heldout['val_fraction']:g}")

    @property
    def run_dir(self) -> str:
        return f"{self.results}/runs/{self.config['run']}"

    @property
    def run_log_dir(self) -> str:
        return f"{self.log_dir}/runs/{self.config['run']}"

    @property
    def citation_truth(self) -> str | None:
        """The simulator knows which planted sites cause activity, so only the demo can score citations."""
        return f"{self.data_dir}/ground_truth.parquet" if self.config["dataset"]["source"] == "demo" else None


def planned_cell_types(config: Mapping[str, Any]) -> list[str]:
    """The cell types, known before any data is read, so that each gets its own Stage-I jobs."""
    dataset = config["dataset"]
    if dataset["cell_types"]:
        return list(dataset["cell_types"])
    if dataset["source"] == "gosai2024":
        from r3lm.data.gosai import CELL_TYPES

        return list(CELL_TYPES)
    if dataset["source"] == "demo":
        from r3lm.data.simulate import load_catalogue

        return list(load_catalogue().cell_types)
    raise InputError("per-cell-type Stage I (stage1.models or stage1.pretrained) needs dataset.cell_types for a "
                     "table source", path="config")


def served_cell_types(config: Mapping[str, Any]) -> list[str]:
    """The cell types the run's models serve, known before any data is read: dataset.cell_types, the source's
    own, or a table's activity columns."""
    dataset = config["dataset"]
    if dataset["source"] == "table" and not dataset["cell_types"]:
        return list(dataset["table"]["activity_columns"])
    return planned_cell_types(config)


def deployable_methods(config: Mapping[str, Any]) -> list[str]:
    """The run's methods a bundle can serve: its Stage-II modes but oracle_cot (it reads the measured level),
    and its baselines."""
    from r3lm.stage2.inputs import DEPLOYABLE_MODES

    modes = [mode for mode in config["stage2"]["modes"] if mode in DEPLOYABLE_MODES]
    return modes + list(config["baselines"]["methods"])


def check_plan(config: Mapping[str, Any]) -> WorkflowPaths:
    """The config's result folders, once the settings that only fail together are known to fit: each check
    names the keys to change."""
    paths = WorkflowPaths(config)
    if config["rcc"]["evidence_tags"] and config["reasoning"]["teacher"] == "released":
        raise InputError("rcc.evidence_tags needs the train split's evidence, which the released teacher sets do "
                         "not use; turn one of them off", path="config")
    missing = [cell for cell in paths.stage1_groups if paths.pretrained is not None and cell not in paths.pretrained]
    if missing:
        raise InputError(f"stage1.pretrained has no model for {', '.join(missing)}", path="config")
    if config["stage2"]["backbone"] == "stage1" and paths.per_cell_type_stage1:
        raise InputError("stage2.backbone: stage1 needs one shared Stage-I model; with a Stage-I model per cell "
                         "type use stage2.backbone: base (the official setting)", path="config")
    _check_transfer(config)
    _check_design(config)
    return paths


def _check_design(config: Mapping[str, Any]) -> None:
    """Design needs the CNN (its oracle), targets the run serves, and for MinGap a cell type to be silent in."""
    design = config["design"]
    if not design["enabled"]:
        return
    if "cnn" not in config["baselines"]["methods"]:
        raise InputError("design.enabled designs on the cnn baseline, which baselines.methods leaves out; add cnn "
                         "or set design.enabled: false", path="config")
    served = served_cell_types(config)
    unknown = [cell for cell in design["targets"] or () if cell not in served]
    if unknown:
        raise InputError(f"design.targets: {', '.join(unknown)} not among the run's cell types "
                         f"({', '.join(served)})", path="config")
    if design["objective"] == "min_gap" and len(served) < 2:
        raise InputError(f"design.objective min_gap needs a second cell type to be silent in; the run serves only "
                         f"{served[0]}: use design.objective: max", path="config")


def _check_transfer(config: Mapping[str, Any]) -> None:
    """A cell type only the other table has, or a run with nothing to score, stops the planning."""
    entries = config["evaluation"]["transfer"]
    if not entries:
        return
    from r3lm.evaluate.transfer import check_entries

    check_entries(entries, served_cell_types(config))
    if not deployable_methods(config):
        raise InputError("evaluation.transfer scores the run's bundles, but it packages none (stage2.modes and "
                         "baselines.methods name no deployable method)", path="config")
