"""The Snakemake workflow as users run it: dry-runs, lint, config validation, real runs on tiny data."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from r3lm.deploy.scorer import R3LM
from r3lm.steps import step_sections

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def gosai_rows() -> Path:
    path = REPO.parent / "shared/data/gosai2024/table_s2_rows.tsv"
    if not path.is_file():
        pytest.skip(f"real Gosai rows not found at {path} (../shared beside the checkout)")
    return path


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/gosai2024.yaml"])
def test_dry_run_plans_the_whole_chain(configfile: str, tmp_path: Path) -> None:
    result = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(REPO / configfile))
    assert result.returncode == 0, result.stderr
    planned = result.stdout + result.stderr
    assert "prepare_data" in planned
    assert "scan_shard" in planned and "build_cards" in planned
    assert ("download_gosai" in planned) == configfile.endswith("gosai2024.yaml")
    assert ("simulate_demo" in planned) == configfile.endswith("config.yaml")
    assert "rule transfer:" not in planned  # no evaluation.transfer entry, no transfer job


def test_a_transfer_entry_plans_its_job_and_feeds_the_report(tmp_path: Path) -> None:
    """One evaluation.transfer entry: a job scoring every bundle of the run (the demo's two LLM modes and two
    baselines) on the other table, guarded by the train and val tables (and test for a cross-validated CNN),
    whose metrics the report reads; a cell type the run's models do not serve stops the planning."""
    other = tmp_path / "joint.tsv"
    other.write_text("name\tseq\tHepG2\tWTC11\n")  # read by the job, not by the plan
    entry = {"name": "joint", "path": str(other), "id_column": "name", "sequence_column": "seq",
             "activity_columns": {"HepG2": "HepG2"}}
    transfer = tmp_path / "transfer.yaml"
    transfer.write_text(yaml.safe_dump({"evaluation": {"transfer": [entry]}}))
    demo = ("-n", "-p", "--directory", str(tmp_path), "--configfile", str(REPO / "config/config.yaml"), str(transfer))
    result = snakemake(*demo)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    planned = result.stdout + result.stderr
    assert "rule transfer:" in planned and "wildcards: transfer=joint" in planned
    command = re.search(r"python -m r3lm step transfer --config .*", planned).group(0)
    for bundle in ("generated_cot", "sequence_only", "motif_ridge", "cnn"):
        assert f" {bundle}=results/demo/runs/main/models/{bundle}" in command
    assert "--seen results/demo/data/train.parquet results/demo/data/val.parquet --in-dataset-metrics" in command
    assert '"max_sequences_per_cell_type": 150' in command and '"disruption"' not in command
    assert re.search(r"r3lm step report .* --transfer results/demo/runs/main/eval/transfer/joint/metrics.tsv --out", planned)
    folds = snakemake(*demo, "--config", 'baselines={"cnn": {"cross_validation": {"folds": 3}}}')
    assert "val.parquet results/demo/data/test.parquet --in-dataset-metrics" in folds.stdout + folds.stderr
    transfer.write_text(yaml.safe_dump({"evaluation": {"transfer": [
        {**entry, "activity_columns": {"HepG2": "HepG2", "WTC11": "WTC11"}}]}}))
    bad = snakemake(*demo)
    assert bad.returncode != 0
    assert "evaluation.transfer[joint].activity_columns.WTC11" in bad.stdout + bad.stderr


def test_every_rule_passes_the_sections_its_step_declares(tmp_path: Path) -> None:
    """The override of issue 27: cards built with rcc.grammar.cluster_window 77 are reasoned about with 77 (the
    teacher's rule once passed no rcc, and the step filled in the schema's 50); each step's --config holds
    exactly the sections its command declares (transfer: parts of them, tests/test_step_sections.py)."""
    result = snakemake("-n", "-p", "--directory", str(tmp_path), "--configfile", str(REPO / "config/config.yaml"),
                       "--config", 'rcc={"grammar": {"cluster_window": 77}}')
    assert result.returncode == 0, result.stderr[-3000:]
    commands = re.findall(r"python -m r3lm (?:--gpus \d+ )?step ([a-z0-9-]+) --config '(\{.*?\})'", result.stdout)
    assert {name for name, _ in commands} >= {"teacher", "build-cards", "self-rationales", "stage2", "report"}
    for name, settings in commands:
        assert set(json.loads(settings)) == set(step_sections(name)), name
        if "rcc" in step_sections(name):
            assert json.loads(settings)["rcc"]["grammar"]["cluster_window"] == 77, name


def test_paper_config_replaces_the_demo_settings_and_trains_stage2_on_the_base_model(tmp_path: Path) -> None:
    """A --configfile replaces the demo's settings (snakemake would merge it over them): the paper run scans at
    p < 5e-5 with the full rationale style, and Stage II (LoRA) sits on the base model as in the official code."""
    result = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(REPO / "config/gosai2024.yaml"))
    assert result.returncode == 0, result.stderr
    planned = result.stdout + result.stderr
    assert "_p5e-05_" in planned and "grounded-full" in planned and "_p1e-05_" not in planned
    stage2_jobs = [job for job in planned.split("rule ")[1:] if job.startswith("stage2:")]
    assert len(stage2_jobs) == 4
    for job in stage2_jobs:
        inputs = job.split("output:")[0]
        assert "base-backbone_lora" in job and not re.search(r"/stage1/[^,\s]*/model\b", inputs)


def test_paper_config_trains_and_uses_a_stage1_model_per_cell_type(tmp_path: Path) -> None:
    """The official setting: one Stage-I training job and one rationale job per cell type (each job generating
    with its own cell type's model), merged per Stage-II set; a stage1 Stage-II backbone cannot be per cell type."""
    result = snakemake("-n", "-p", "--directory", str(tmp_path), "--configfile", str(REPO / "config/gosai2024.yaml"))
    assert result.returncode == 0, result.stderr
    planned = result.stdout + result.stderr
    jobs = planned.split("\nrule ")
    training = sorted(re.search(r"wildcards: group=(\w+)", job).group(1) for job in jobs if job.startswith("stage1_train:"))
    assert training == ["HepG2", "K562", "SKNSH"]
    for cell in training:
        assert "stage1-train --config" in planned and f"--cell-type {cell} --out-dir" in planned
        assert re.search(rf"self-rationales .*--model {cell}=\S*_per-cell-type/{cell}/model --teacher-set", planned)
    assert sum(job.startswith("merge_rationales:") for job in jobs) == 3
    # every GPU step holds its GPUs: r3lm --gpus hides the others and stops at once where torch cannot use them
    for step in ("stage1-train", "self-rationales", "stage2", "disruption"):
        assert re.search(rf"python -m r3lm --gpus 1 step {step} --config", planned), step
    two = snakemake("-n", "-p", "--directory", str(tmp_path), "--configfile", str(REPO / "config/gosai2024.yaml"),
                    "--config", 'stage1={"gpus": 2, "models": "per_cell_type"}')
    assert re.search(r"accelerate launch --multi_gpu --num_processes 2 --main_process_port \$\(python -c .*\) "
                     r"-m r3lm --gpus 2 step stage1-train", two.stdout + two.stderr)
    bad = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(REPO / "config/gosai2024.yaml"),
                    "--config", 'stage2={"backbone": "stage1"}')
    assert bad.returncode != 0 and "stage2.backbone: stage1 needs one shared Stage-I model" in bad.stdout + bad.stderr


def test_pretrained_stage1_models_plan_no_stage1_training(tmp_path: Path) -> None:
    """stage1.pretrained: the released checkpoints (hub ids here) write the rationales; nothing trains Stage I,
    and a cell type without a model is an error at planning time."""
    released = {"K562": "DuanYi/R3LM_K562", "HepG2": "DuanYi/R3LM_HepG2", "SKNSH": "DuanYi/R3LM_SKNSH"}
    result = snakemake("-n", "-p", "--directory", str(tmp_path), "--configfile", str(REPO / "config/gosai2024.yaml"),
                       "--config", f"stage1={json.dumps({'pretrained': released})}")
    assert result.returncode == 0, result.stderr
    planned = result.stdout + result.stderr
    assert "rule stage1_train" not in planned and "stage1-train" not in planned and "self_rationales" in planned
    for cell, hub_id in released.items():
        assert f"--model {cell}={hub_id} --teacher-set" in planned
    assert "--stage1-model K562=DuanYi/R3LM_K562 HepG2=DuanYi/R3LM_HepG2 SKNSH=DuanYi/R3LM_SKNSH" in planned
    released_run = snakemake("-n", "-p", "--directory", str(tmp_path), "--configfile",
                             str(REPO / "config/gosai2024.yaml"), "--config",
                             f"stage1={json.dumps({'pretrained': released})}", 'reasoning={"teacher": "released"}')
    assert released_run.returncode == 0, released_run.stdout + released_run.stderr
    planned = released_run.stdout + released_run.stderr
    jobs = {job.split(":")[0] for job in planned.split("\nrule ")[1:]}
    assert "released_sets" in jobs and not jobs & {"teacher", "family_evidence", "stage1_train"}
    assert "_released-Cre-ReasonBench" in planned and "r3lm step released --config" in planned
    partial = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(REPO / "config/gosai2024.yaml"),
                        "--config", f"stage1={json.dumps({'pretrained': {'K562': released['K562']}})}")
    assert partial.returncode != 0 and "stage1.pretrained has no model for HepG2, SKNSH" in partial.stdout + partial.stderr


def test_ablation_overrides_get_their_own_outputs(tmp_path: Path) -> None:
    """The README's ablation recipes: each override lands in folders of its own, from cards to report."""
    result = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(REPO / "config/config.yaml"),
                       "--config", "run=ablation", 'motifs={"pvalue": 1e-4, "jaspar_release": "JASPAR2024", "shards": 3}',
                       'rcc={"grammar_tags": true}', 'llm={"base": "HuggingFaceTB/SmolLM2-360M-Instruct"}')
    assert result.returncode == 0, result.stdout + result.stderr
    planned = result.stdout + result.stderr
    setting = "JASPAR2024_CORE_vertebrates_p0.0001_uniform_pc0.1"
    assert f"results/demo/motifs/{setting}/shards/0002.parquet" in planned
    assert f"results/demo/rcc/{setting}_grammar/train.parquet" in planned
    assert "resources/motifs/JASPAR2024_CORE_vertebrates.meme" in planned
    stage1 = f"results/demo/stage1/{setting}_grammar_grounded-compact_tagged_SmolLM2-360M-Instruct_full"
    stage2 = stage1.replace("/stage1/", "/stage2/") + "_stage1-backbone_frozen"
    assert f"{stage1}/shared/model" in planned and f"{stage2}/sequence_only/predictions" in planned
    assert f"results/demo/baselines/motif_ridge/{setting}_grammar/predictions" in planned
    assert "results/demo/runs/ablation/report/summary.md" in planned
    assert "results/demo/runs/ablation/models/generated_cot" in planned and "runs/main" not in planned
    assert "prepare_base_model" not in planned  # a hub model is fetched by transformers, not prepared


def test_one_input_mode_reruns_alone_through_its_model_folder(tmp_path: Path) -> None:
    result = snakemake("results/demo/runs/main/models/rcc_only", "-n", "--directory", str(tmp_path),
                       "--configfile", str(REPO / "config/config.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    planned = result.stdout + result.stderr
    assert "rcc_only/model" in planned
    assert not any(f"{mode}/model" in planned for mode in ("generated_cot", "oracle_cot", "sequence_only"))
    assert "rule report" not in planned and "rule cnn" not in planned


def test_lint_is_clean() -> None:
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


SLURM_PROFILE = REPO / "workflow/profiles/slurm"


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/gosai2024.yaml"])
def test_slurm_profile_dry_runs(configfile: str, tmp_path: Path) -> None:
    # A dry run plans with the SLURM executor's settings but submits nothing: no sbatch needed.
    result = snakemake("-n", "--profile", str(SLURM_PROFILE), "--jobs", "8", "--directory", str(tmp_path),
                       "--configfile", str(REPO / configfile))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    planned = result.stdout + result.stderr
    assert "stage1_train" in planned and "scan_shard" in planned
    # The profile's per-rule resources reach the jobs (stage1_train: 2 days).
    assert re.search(r"rule stage1_train:(?:\n .*)*\n\s+resources: .*runtime=2880", planned), planned[-3000:]


def test_slurm_profile_names_only_existing_rules() -> None:
    # A renamed rule must not silently lose its cluster resources.
    rules = set(re.findall(r"^\s*rule (\w+):", "".join(
        path.read_text() for path in [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]),
        flags=re.MULTILINE))
    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    for key in ("set-resources", "set-threads"):
        assert set(profile[key]) <= rules, f"{key} names unknown rules: {set(profile[key]) - rules}"
    # The rules' `gpu` resource already becomes sbatch --gpus=N; a gres on top would ask twice.
    for resources in [profile["default-resources"], *profile["set-resources"].values()]:
        assert "gres" not in resources


def test_invalid_config_stops_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"dataset": {"table": {"split": {"method": "by_moon_phase"}}}}))
    result = snakemake("-n", "--configfile", str(bad))
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "invalid value at key 'dataset.table.split.method'" in message
    assert "by_moon_phase" in message


def test_gosai_runs_end_to_end_from_a_file_url(tmp_path: Path, gosai_rows: Path) -> None:
    config = tmp_path / "gosai.yaml"
    config.write_text(yaml.safe_dump({"dataset": {
        "name": "gosai_sample", "source": "gosai2024", "gosai2024": {"urls": [gosai_rows.as_uri()]}}}))
    result = snakemake("results/gosai_sample/data/summary.json", "--cores", "1", "--directory", str(tmp_path),
                       "--configfile", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    downloaded = tmp_path / "resources/gosai2024/DATA-Table_S2__MPRA_dataset.txt"
    assert downloaded.read_bytes() == gosai_rows.read_bytes()
    assert (tmp_path / "resources/gosai2024/DATA-Table_S2__MPRA_dataset.txt.sha256").is_file()
    data = tmp_path / "results/gosai_sample/data"
    summary = json.loads((data / "summary.json").read_text())
    assert summary["dropped"]["sequence_wrong_length"] == 1
    test = pd.read_parquet(data / "test.parquet")
    assert set(test["id"]) == {"7:70038969:G:T:A:wC"}
    assert (tmp_path / "results/gosai_sample/logs/prepare_data.log").stat().st_size > 0


def test_demo_runs_end_to_end_on_a_tiny_config(tmp_path: Path, smollm2_dir: Path) -> None:
    """The whole chain (data, scan, cards, teacher, Stage I, self-generated rationales, Stage II, baselines,
    metrics, faithfulness, report, model folders, and a prediction from one) at toy scale, with the real
    SmolLM2. Two Stage II modes keep it short: the others differ only in their inputs (test_stage2.py)."""
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump({
        "dataset": {"name": "tiny", "demo": {"n_sequences": 300}},
        "sampling": {"test_subset_per_cell_type": 2},
        "llm": {"base": str(smollm2_dir)},
        "rcc": {"evidence_tags": True},
        "reasoning": {"detail": "brief",
                      "sets": {"stage1_train": 1, "stage1_val": 1, "stage2_train": 3, "stage2_val": 2}},
        "stage1": {"epochs": 1, "batch_size": 2, "gradient_accumulation": 1, "learning_rate": 1e-4,
                   "gradient_checkpointing": False, "cutoff_len": 2048},
        "generation": {"batch_size": 4, "max_new_tokens": 8, "dtype": "bfloat16"},
        "stage2": {"modes": ["generated_cot", "rcc_only"], "training": "frozen", "dtype": "bfloat16",
                   "frozen": {"epochs": 20}},
        "baselines": {"cnn": {"epochs": 1, "stem_channels": 8, "stage_channels": [8], "expansion": 2,
                              "batch_size": 64}},
        "evaluation": {"bootstrap": {"n_boot": 200}, "disruption": {"max_sequences": 1}},
        "design": {"n_designs": 2, "iterations": 10, "explain_top": 0}}))
    result = snakemake("--cores", "2", "--directory", str(tmp_path), "--configfile", str(config), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    data = tmp_path / "results/tiny/data"
    tables = {name: pd.read_parquet(data / f"{name}.parquet") for name in ("train", "val", "test", "test_subset")}
    assert sum(table["id"].nunique() for name, table in tables.items() if name != "test_subset") == 300
    assert set(tables["train"]["cell_type"]) == {"K562", "HepG2", "SKNSH"}
    assert tables["test_subset"].groupby("cell_type").size().eq(2).all()
    assert (data / "ground_truth.parquet").is_file()
    setting = "JASPAR2026_CORE_vertebrates_p5e-05_uniform_pc0.1"
    meme = (tmp_path / "resources/motifs/JASPAR2026_CORE_vertebrates.meme").read_text()
    assert meme.startswith("MEME version 5") and meme.count("\nMOTIF ") == 1019
    motif_table = pd.read_parquet(tmp_path / f"results/tiny/motifs/{setting}/motifs.parquet")
    assert (~motif_table["scanned"]).sum() == 222
    hits = pd.read_parquet(tmp_path / f"results/tiny/motifs/{setting}/hits.parquet")
    assert set(hits["seq_id"]) <= set(pd.concat(tables.values())["id"])
    assert not (tmp_path / f"results/tiny/motifs/{setting}/shards").exists() or not any(
        (tmp_path / f"results/tiny/motifs/{setting}/shards").iterdir())  # shard files are temporary
    cards = pd.read_parquet(tmp_path / f"results/tiny/rcc/{setting}_nogrammar/test.parquet")
    assert len(cards) == len(tables["test"])
    assert cards["card_text"].str.startswith("Context:\n- Cell Type: ").all()
    assert (cards["n_motifs"] > 0).mean() > 0.9

    reasoning = tmp_path / f"results/tiny/reasoning/{setting}_nogrammar_grounded-brief_tagged"
    tags = json.loads((reasoning / "evidence_tags.json").read_text())
    assert set(tags["directions"]) == set(tags["gc"]) == {"K562", "HepG2", "SKNSH"}  # the LLMs read re-rendered cards
    tagged = pd.read_parquet(reasoning / "cards/test_subset.parquet")  # the tables the LLMs read are re-rendered
    untagged = pd.read_parquet(tmp_path / f"results/tiny/rcc/{setting}_nogrammar/test_subset.parquet")
    assert tagged.drop(columns="card_text").equals(untagged.drop(columns="card_text"))
    assert tagged["card_text"].str.contains(r"\n(?:K562|HepG2|SKNSH) evidence: \d+ hits?; up [^;\n]+; down [^;\n]+; neutral [^;\n]+; "
                                            r"net [+-]\d+, [a-z ]+(?:; layout: [^;\n]+)?; GC [\d.]+: [a-z ]+ the mean, "
                                            r"[a-z ]+ activity\.\n").all()
    assert tagged["card_text"].str.contains("; layout: ").any()  # the arrangement, for the student to copy
    teacher = pd.read_parquet(reasoning / "stage1_train.parquet")
    assert teacher.groupby("cell_type").size().eq(1).all() and teacher["valid"].all()
    info = json.loads((reasoning / "sharegpt/dataset_info.json").read_text())
    assert info["stage1_train_K562"]["file_name"] == "stage1_train/K562.jsonl"
    stage1 = tmp_path / f"results/tiny/stage1/{reasoning.name}_{smollm2_dir.name}_full"
    summary = json.loads((stage1 / "shared/summary.json").read_text())
    assert summary["steps"] == 2 and summary["data"]["train"]["examples"] == 3
    assert (stage1 / "shared/model/config.json").is_file() and (stage1 / "shared/loss.png").is_file()
    for name, per_cell_type in (("stage2_train", 3), ("stage2_val", 2), ("test", 2)):
        rationales = pd.read_parquet(stage1 / f"rationales/{name}.parquet")
        assert rationales.groupby("cell_type").size().eq(per_cell_type).all()
        assert (rationales["n_new_tokens"] <= 8).all() and rationales["rationale"].str.len().gt(0).all()
        generated = json.loads((stage1 / f"rationales/{name}.summary.json").read_text())
        assert generated["rows"] == 3 * per_cell_type  # 8 tokens are too few for a valid rationale:
        assert generated["rejections"]["missing_think"] + generated["rejections"]["too_few_steps"] == \
            generated["rows"] - generated["valid"]

    results = tmp_path / "results/tiny"
    stage2 = results / f"stage2/{stage1.name}_stage1-backbone_frozen"
    folders = {"motif_ridge": results / f"baselines/motif_ridge/{setting}_nogrammar/predictions",
               "cnn": results / "baselines/cnn/predictions",
               **{mode: stage2 / mode / "predictions" for mode in ("generated_cot", "rcc_only")}}
    predictions = {method: pd.read_parquet(folder / "HepG2.parquet") for method, folder in folders.items()}
    assert len(predictions["cnn"]) == len(predictions["motif_ridge"]) == (tables["test"]["cell_type"] == "HepG2").sum()
    assert all(len(predictions[mode]) == 2 for mode in ("generated_cot", "rcc_only"))
    assert "rationale" in predictions["generated_cot"] and "rationale" not in predictions["rcc_only"]
    run = results / "runs/main"
    metrics = pd.read_csv(run / "eval/metrics.tsv", sep="\t")
    full = metrics[metrics["protocol"] == "full"]
    assert set(full["method"]) == {"motif_ridge", "cnn"}  # the LLM methods cover only the test subset
    paper = metrics[metrics["protocol"] == "paper"]
    assert set(paper["method"]) == set(predictions) and (paper["n"] == 2).all()
    assert {"pearson_lo", "pearson_hi", "spearman", "rmse", "delta_pearson"} <= set(metrics.columns)
    citation = pd.read_csv(run / "eval/citation_teacher.tsv", sep="\t")
    assert "all" in set(citation["cell_type"])
    disruption = pd.read_csv(run / "eval/disruption.tsv", sep="\t")
    assert {"cell_type", "id", "motif", "claimed", "delta"} <= set(disruption.columns)
    summary = (run / "report/summary.md").read_text()
    assert "generated_cot" in summary and "motif_ridge" in summary
    for figure in ("scatter_full", "scatter_paper", "pearson_full", "pearson_paper", "training_curves",
                   "design_objective"):
        assert (run / f"report/{figure}.png").read_bytes().startswith(b"\x89PNG")

    # designs for every cell type, judged by the held-out oracle and the truth, the best explained three ways
    designs = pd.read_parquet(run / "design/designs.parquet")
    assert designs.groupby("target").size().to_dict() == {"HepG2": 2, "K562": 2, "SKNSH": 2}
    assert {"heldout_HepG2", "heldout_score"} <= set(designs.columns)
    judged = json.loads((run / "design/summary.json").read_text())
    assert set(judged["targets"]) == {"HepG2", "K562", "SKNSH"}
    assert judged["targets"]["K562"]["reference"] == "noiseless"  # the simulation's own noiseless activity
    # the tiny demo plants sites without site_pvalue, so no scan can find them again: no truth to judge by
    assert "truth_vs_noiseless_pearson" not in judged and "true_score" not in designs
    assert not (run / "design/explained.parquet").exists()  # explain_top 0 (its parts: test_design_workflow.py)
    assert "## Design" in summary and sorted(path.name for path in (run / "design/logos").glob("*.png")) == [
        "HepG2.png", "K562.png", "SKNSH.png"]

    # every deployable mode and both fast baselines are bundled; a bundle predicts from a FASTA on its own
    assert sorted(path.name for path in (run / "models").iterdir()) == ["cnn", "generated_cot", "motif_ridge",
                                                                         "rcc_only"]
    bundle = run / "models/generated_cot"
    manifest = json.loads((bundle / "r3lm_bundle.json").read_text())
    assert manifest["levels"]["edges"]["HepG2"] == json.loads((data / "summary.json").read_text())[
        "levels"]["edges"]["HepG2"]
    assert manifest["motifs"]["pvalue"] == 5e-5 and manifest["backbone"] == "llm"
    assert set(manifest["rationale_models"].values()) == {"llm"}
    assert manifest["evidence_tags"]["directions"]["HepG2"] == tags["directions"]["HepG2"]
    assert manifest["evidence_tags"]["gc"]["HepG2"] == tags["gc"]["HepG2"]
    assert (bundle / "llm/model.safetensors").stat().st_ino == (stage1 / "shared/model/model.safetensors").stat().st_ino
    queries = tables["test"].drop_duplicates("id").head(2)
    fasta = tmp_path / "queries.fa"
    fasta.write_text("".join(f">{row.id}\n{row.sequence}\n" for row in queries.itertuples()))
    predicted = subprocess.run([sys.executable, "-m", "r3lm", "predict", "--model", str(bundle), "--cell-type",
                                "HepG2", "--fasta", str(fasta), "--out", str(tmp_path / "predicted.tsv"),
                                "--no-progress"], capture_output=True, text=True, timeout=300, check=False)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    table = pd.read_csv(tmp_path / "predicted.tsv", sep="\t")
    assert table["id"].tolist() == queries["id"].tolist() and table["level"].between(0, 3).all()
    assert table["rationale"].str.len().gt(0).all()
    explained = R3LM.load(bundle, device="cpu").explain(queries["sequence"].iloc[0], "HepG2")
    assert "\nHepG2 evidence: " in explained.card and ", HepG2: " in explained.card
    fast = subprocess.run([sys.executable, "-m", "r3lm", "predict", "--model", str(run / "models/cnn"), "--cell-type",
                           "all", "--fasta", str(fasta), "--out", str(tmp_path / "cnn.tsv"), "--no-progress"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert fast.returncode == 0, fast.stderr[-3000:]
    cnn_table = pd.read_csv(tmp_path / "cnn.tsv", sep="\t")
    assert cnn_table["id"].tolist() == queries["id"].tolist()
    assert {f"predicted_{cell}" for cell in ("K562", "HepG2", "SKNSH")} <= set(cnn_table.columns)


def test_ci_runs_the_readme_test_commands() -> None:
    """.ci/run runs the README's test block, line for line, after moving to the repository."""
    ci_lines = (REPO / ".ci/run").read_text().strip().splitlines()
    ci_commands = ci_lines[ci_lines.index('cd "$(dirname "$0")/.."') + 1:]
    readme_blocks = [block.splitlines() for block in re.findall(r"```bash\n(.+?)\n```", (REPO / "README.md").read_text(),
                                                                 flags=re.DOTALL)]
    assert ci_commands in readme_blocks and ci_commands[-1] == "pytest"
