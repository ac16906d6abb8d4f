"""Transfer: a run's models scored on another dataset's table (evaluation.transfer), with the leak guard, the
`r3lm step transfer` command on a fast and an LLM bundle, and the report's section."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import (
    LEFT_ADAPTOR,
    RIGHT_ADAPTOR,
    hepg2_table,
    read_text_table,
    table_config,
    write_text_table,
)
from test_fast_bundle import one_torch_thread, tiny_workflow

from r3lm.cli import main
from r3lm.config import validate_config
from r3lm.data.tables import load_table
from r3lm.deploy import scorer
from r3lm.dna import reverse_complement
from r3lm.errors import InputError
from r3lm.evaluate.metrics import evaluate, write_metrics
from r3lm.evaluate.report import write_report
from r3lm.evaluate.transfer import (
    check_entries,
    draw_rows,
    guard_leaks,
    load_rows,
    run_transfer,
    seen_sequences,
)
from r3lm.stats import pearson

JOINT_ENTRY = {"name": "joint", "id_column": "name", "sequence_column": "seq",
               "activity_columns": {"HepG2": "HepG2", "K562": "K562"},
               "trim": {"left": LEFT_ADAPTOR, "right": RIGHT_ADAPTOR}, "sequence_length": 200}


def transfer_config(entry: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """A validated config with one transfer entry (its defaults filled) and a short bootstrap."""
    return validate_config({"evaluation": {"bootstrap": {"n_boot": 200}, "transfer": [entry]}, **sections})


def _trimmed(sequences: pd.Series) -> pd.Series:
    return sequences.str.slice(len(LEFT_ADAPTOR), -len(RIGHT_ADAPTOR))


def test_the_leak_guard_removes_and_counts_what_the_models_saw_on_either_strand(hepg2_path, joint_path, tmp_path):
    """Real rows: a training table of HepG2 lentiMPRA rows (through the project's loader, as prepare-data reads
    it) and a validation table of 3 more, and a transfer table of joint-library rows of which 4 are elements the
    training table holds, 3 carry a validation element reverse-complemented, and 10 are new to both strands:
    exactly 4 and 3 are removed per cell type."""
    hepg2, joint = read_text_table(hepg2_path), read_text_table(joint_path)
    hepg2_inner, joint_inner = _trimmed(hepg2["seq"]), _trimmed(joint["seq"])
    hepg2_any = set(hepg2_inner) | set(hepg2_inner.map(reverse_complement))
    joint_any = set(joint_inner) | set(joint_inner.map(reverse_complement))
    shared = joint[joint_inner.isin(set(hepg2_inner))].head(4)
    new = joint[~joint_inner.isin(hepg2_any)].head(10)
    # forward rows of elements outside the joint library: no row here is another's reverse complement
    unrelated = hepg2[~hepg2_inner.isin(joint_any) & ~hepg2["seq_id"].str.contains("_Reversed")].head(23)
    write_text_table(pd.concat([hepg2[hepg2_inner.isin(set(_trimmed(shared["seq"])))], unrelated.head(20)]),
                     tmp_path / "hepg2_part.tsv")
    train, _, _ = load_table(table_config(hepg2_table(tmp_path / "hepg2_part.tsv"))["dataset"])
    train.to_parquet(tmp_path / "train.parquet")
    validation = _trimmed(unrelated.tail(3)["seq"])
    pd.DataFrame({"sequence": validation}).to_parquet(tmp_path / "val.parquet")
    flipped = pd.DataFrame({"name": [f"flipped{index}" for index in range(3)],
                            "seq": [LEFT_ADAPTOR + reverse_complement(sequence) + RIGHT_ADAPTOR
                                    for sequence in validation],
                            **{cell: new[cell].head(3).to_numpy() for cell in ("HepG2", "K562", "WTC11")}})
    write_text_table(pd.concat([shared, flipped, new]), tmp_path / "other.tsv")

    config = transfer_config({**JOINT_ENTRY, "path": str(tmp_path / "other.tsv")})
    rows, drops = load_rows(config["evaluation"]["transfer"][0], config["dataset"])
    assert sum(drops.values()) == 0 and len(rows) == 2 * 17
    assert rows["sequence"].str.len().eq(200).all()
    assert set(rows.loc[rows["cell_type"] == "HepG2", "sequence"]) >= set(_trimmed(new["seq"]))
    kept, leaks = guard_leaks(rows, seen_sequences([tmp_path / "train.parquet", tmp_path / "val.parquet"]))
    assert leaks == {"HepG2": {"identical": 4, "reverse_complement": 3},
                     "K562": {"identical": 4, "reverse_complement": 3}}
    assert sorted(set(kept["id"])) == sorted(new["name"])
    expected = new.set_index("name")["K562"].astype(float)
    part = kept[kept["cell_type"] == "K562"].set_index("id")["activity"]
    np.testing.assert_allclose(part.loc[expected.index], expected)

    entry = {**config["evaluation"]["transfer"][0], "max_sequences_per_cell_type": 4}
    drawn = draw_rows(kept, entry, seed=0)
    assert drawn["cell_type"].value_counts().to_dict() == {"HepG2": 4, "K562": 4}
    assert drawn.equals(draw_rows(kept, entry, seed=0))
    assert not drawn.equals(draw_rows(kept, entry, seed=1))
    assert len(draw_rows(kept, {**entry, "max_sequences_per_cell_type": None}, seed=0)) == len(kept)


def test_a_cell_type_the_models_do_not_serve_is_an_error_naming_the_key():
    entry = transfer_config({**JOINT_ENTRY, "path": "joint.tsv",
                             "activity_columns": {"HepG2": "HepG2", "WTC11": "WTC11"}})["evaluation"]["transfer"][0]
    with pytest.raises(InputError) as caught:
        check_entries([entry], {"HepG2", "K562"})
    message = str(caught.value)
    assert "evaluation.transfer[joint].activity_columns.WTC11" in message and "HepG2, K562" in message
    assert "\n" not in message
    with pytest.raises(InputError, match="names 'joint' more than once"):
        check_entries([entry, entry], {"HepG2", "K562", "WTC11"})
    check_entries([entry], {"HepG2", "WTC11"})  # both shared: fine
    with pytest.raises(InputError, match="no evaluation.transfer entry named 'other'"):
        run_transfer(transfer_config(entry), "other", {"cnn": "x"}, [], "p.parquet", "m.tsv", "s.json")


# ------------------------------------------------------------------------------------ the command, end to end
@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny CNN bundle (cell types A and B) scored by `r3lm step transfer` on another table: the tiny dataset's
    test rows, 5 of its training sequences and 2 more reverse-complemented; 40 rows drawn per cell type. The
    run's metrics.tsv gives the in-dataset Pearson."""
    root = tmp_path_factory.mktemp("transfer")
    with one_torch_thread():
        built = tiny_workflow(root / "run")
        test = pd.read_parquet(built["test"])
        train = pd.read_parquet(built["train"])
        wide = test.pivot(index=["id", "sequence"], columns="cell_type", values="activity").reset_index()
        leaked = train.pivot(index=["id", "sequence"], columns="cell_type", values="activity").reset_index().head(7)
        leaked["sequence"] = [*leaked["sequence"].head(5), *leaked["sequence"].tail(2).map(reverse_complement)]
        table = pd.concat([wide, leaked.assign(id="leak_" + leaked["id"])], ignore_index=True)
        write_text_table(table.rename(columns={"A": "act_a", "B": "act_b"}), root / "other.tsv")
        config = transfer_config({"name": "other", "path": str(root / "other.tsv"), "id_column": "id",
                                  "activity_columns": {"A": "act_a", "B": "act_b"},
                                  "max_sequences_per_cell_type": 40})
        metrics = evaluate({"cnn": built["predictions"]}, ["cnn"], built["test"], built["test"],
                           config["evaluation"]["bootstrap"])
        write_metrics(metrics, root / "metrics.tsv", root / "skipped.tsv")
        out = root / "transfer"
        code = main(["step", "transfer", "--config", json.dumps(config), "--name", "other", "--models",
                     f"cnn={built['bundle']}", "--seen", str(built["train"]), str(built["val"]),
                     "--in-dataset-metrics", str(root / "metrics.tsv"), "--predictions", str(out / "predictions.parquet"),
                     "--metrics", str(out / "metrics.tsv"), "--summary", str(out / "summary.json"), "--device", "cpu",
                     "--no-progress"])
    assert code == 0
    return {**built, "root": root, "out": out, "config": config, "in_dataset": metrics}


def test_the_command_writes_predictions_metrics_and_every_count(scored):
    predictions = pd.read_parquet(scored["out"] / "predictions.parquet")
    metrics = pd.read_csv(scored["out"] / "metrics.tsv", sep="\t")
    summary = json.loads((scored["out"] / "summary.json").read_text())
    assert list(predictions.columns) == ["transfer", "method", "cell_type", "id", "measured", "predicted", "rationale"]
    assert predictions.groupby("cell_type").size().to_dict() == {"A": 40, "B": 40}
    assert not predictions["id"].str.startswith("leak_").any() and predictions["rationale"].isna().all()
    for cell in ("A", "B"):
        assert summary["cell_types"][cell] == {"measured": 107, "leak": {"identical": 5, "reverse_complement": 2},
                                               "available": 100, "scored": 40}
    assert metrics[["method", "cell_type", "n", "available", "leak_identical", "leak_reverse_complement"]].to_dict(
        "records") == [{"method": "cnn", "cell_type": cell, "n": 40, "available": 100, "leak_identical": 5,
                        "leak_reverse_complement": 2} for cell in ("A", "B")]


def test_its_pearson_is_the_direct_correlation_of_what_the_bundle_predicts(scored):
    predictions = pd.read_parquet(scored["out"] / "predictions.parquet")
    metrics = pd.read_csv(scored["out"] / "metrics.tsv", sep="\t").set_index("cell_type")
    model = scorer.load(str(scored["bundle"]), "cpu")
    for cell, part in predictions.groupby("cell_type"):
        table = pd.read_csv(scored["root"] / "other.tsv", sep="\t").set_index("id").loc[part["id"]]
        direct = model.score(pd.Series(table["sequence"].to_numpy(), index=part["id"].to_numpy()), [cell])
        np.testing.assert_allclose(part["predicted"], direct[f"predicted_{cell}"], rtol=1e-5)
        np.testing.assert_allclose(part["measured"], table[f"act_{cell.lower()}"])
        row = metrics.loc[cell]
        assert row["pearson"] == pytest.approx(pearson(part["measured"], part["predicted"]), abs=1e-9)
        assert row["spearman"] == pytest.approx(part["measured"].corr(part["predicted"], method="spearman"), abs=1e-9)
        assert row["pearson_lo"] <= row["pearson"] <= row["pearson_hi"]
        own = scored["in_dataset"].query("protocol == 'full' and cell_type == @cell").iloc[0]
        assert row["in_dataset_protocol"] == "full" and row["in_dataset_pearson"] == pytest.approx(own["pearson"])


def test_the_report_gets_a_transfer_section_with_a_sentence_per_method(scored, tmp_path):
    metrics = pd.read_csv(scored["out"] / "metrics.tsv", sep="\t").set_index("cell_type")
    assert main(["step", "report", "--config", json.dumps(scored["config"]), "--metrics", str(scored["root"] / "metrics.tsv"),
                 "--skipped", str(scored["root"] / "skipped.tsv"), "--predictions", f"cnn={scored['predictions']}",
                 "--test", str(scored["test"]), "--test-subset", str(scored["test"]),
                 "--transfer", str(scored["out"] / "metrics.tsv"), "--out", str(tmp_path / "summary.md"),
                 "--figure-dir", str(tmp_path)]) == 0
    text = (tmp_path / "summary.md").read_text()
    section = text.split("## Transfer to other tables", 1)[1]
    assert "### other" in section
    assert "A: 5 identical and 2 reverse-complement rows removed, 40 of the 100 left scored" in section
    for cell in ("A", "B"):
        row = metrics.loc[cell]
        share = f"{row['pearson'] / row['in_dataset_pearson']:.0%}"
        assert f"| cnn (baseline) | {cell} | 40 | {row['pearson']:.3f} [" in section
        assert f"in {cell} it keeps {share} of its in-dataset Pearson ({row['pearson']:.3f} [" in section
    assert section.count("\n- cnn: ") == 1
    plain = write_report(metrics_path=scored["root"] / "metrics.tsv", prediction_dirs={"cnn": scored["predictions"]},
                         test_path=scored["test"], test_subset_path=scored["test"], summary_path=tmp_path / "plain.md",
                         figure_dir=tmp_path / "plain", settings={"n_boot": 200})[0]
    assert "Transfer to other tables" not in plain.read_text()


def test_an_llm_bundle_is_scored_through_the_predict_path_with_its_rationales(bundle, stage2_trained, tmp_path):
    """The conftest's generated_cot bundle (HepG2, K562; 60 bp): two drawn rows of three, each with the rationale
    and the prediction `r3lm predict` gives it."""
    rng = np.random.default_rng(3)
    seen = pd.read_parquet(stage2_trained["data"] / "train.parquet")["sequence"].iloc[0]
    sequences = ["".join(rng.choice(list("ACGT"), 60)) for _ in range(3)] + [seen]
    write_text_table(pd.DataFrame({"id": ["n1", "n2", "n3", "seen"], "sequence": sequences,
                                   "hepg2": [0.1, 0.7, -0.2, 0.4]}), tmp_path / "other.tsv")
    config = transfer_config({"name": "tiny", "path": str(tmp_path / "other.tsv"), "id_column": "id",
                              "activity_columns": {"HepG2": "hepg2"}, "max_sequences_per_cell_type": 2})
    metrics = run_transfer(config, "tiny", {"generated_cot": bundle}, [stage2_trained["data"] / "train.parquet"],
                           tmp_path / "p.parquet", tmp_path / "m.tsv", tmp_path / "s.json", device="cpu")
    predictions = pd.read_parquet(tmp_path / "p.parquet")
    assert metrics[["method", "cell_type", "n", "leak_identical"]].to_dict("records") == [
        {"method": "generated_cot", "cell_type": "HepG2", "n": 2, "leak_identical": 1}]
    assert predictions["rationale"].str.startswith("<think>").all() and "seen" not in set(predictions["id"])
    direct = scorer.load(str(bundle), "cpu").score(dict(zip(predictions["id"], [
        sequences[["n1", "n2", "n3"].index(name)] for name in predictions["id"]])), "HepG2")
    np.testing.assert_allclose(predictions["predicted"], direct["predicted"], rtol=1e-5)
    assert predictions["rationale"].tolist() == direct["rationale"].tolist()
