"""Stage II: input modes, the optimisation loop (best-validation selection, resume), and a real LoRA run."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from transformers import AutoTokenizer

from r3lm.config import validate_config
from r3lm.errors import InputError
from r3lm.predictions import read_predictions
from r3lm.rationale.format import compose
from r3lm.scaling import ActivityScaler
from r3lm.stage2.inputs import load_mode_rows, render, tokenize_rows
from r3lm.stage2.predict import Stage2Predictor
from r3lm.stage2.run import SetFiles, _set_rows, run_stage2
from r3lm.stage2.train import batch_plan, fit

CELLS = ("K562", "HepG2")


def _card_text(cell: str, sequence: str, motifs: list[str]) -> str:
    lines = "\n".join(f"- {name} (Family: Test, Score: 10.00, Strand: +, Pos: 1-8)" for name in motifs)
    return (f"Context:\n- Cell Type: {cell}\n- GC Content: 0.500\n\nIdentified Motifs:\n{lines}\n\n"
            f"DNA Sequence:\n{sequence} (Total Length: {len(sequence)})")


def _write_set(folder, name: str, n: int, seed: int) -> tuple[str, str, str]:
    """Teacher set, cards and self-generated rationales for n sequences in two cell types: activity rises
    with the number of GATA1 sites on the card."""
    rng = np.random.default_rng(seed)
    teacher, cards, generated = [], [], []
    for index in range(n):
        sequence = "".join(rng.choice(list("ACGT"), size=40))
        sites = int(rng.integers(0, 4))
        motifs = ["GATA1"] * sites + ["CTCF"]
        for cell in CELLS:
            activity = sites + rng.normal(0, 0.1)
            row = {"id": f"{name}{index:03d}", "cell_type": cell, "split": name, "activity": activity,
                   "level": min(sites, 3), "card_text": _card_text(cell, sequence, motifs)}
            teacher.append({**row, "rationale": compose([f"GATA1 appears {sites} times."] * 5,
                                                        f"Activity level: {min(sites, 3)}")})
            cards.append({"id": row["id"], "cell_type": cell, "card_json": json.dumps({"sequence": sequence})})
            generated.append({"id": row["id"], "cell_type": cell, "rationale": f"<think>\n1. {sites} GATA1.\n</think>"})
    paths = tuple(str(folder / f"{name}_{kind}.parquet") for kind in ("teacher", "cards", "generated"))
    for frame, path in zip((teacher, cards, generated), paths, strict=True):
        pd.DataFrame(frame).to_parquet(path, index=False)
    return paths


@pytest.fixture(scope="module")
def stage2_sets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stage2")
    sets = {name: _write_set(folder, name, n, seed) for name, n, seed in (("train", 8, 1), ("val", 4, 2),
                                                                        ("test", 4, 3))}
    summary = folder / "data_summary.json"
    summary.write_text(json.dumps({"levels": {"edges": {cell: [0.5, 1.5, 2.5] for cell in CELLS}}}))
    return folder, sets, summary


def test_each_mode_feeds_its_own_evidence(stage2_sets):
    _, sets, _ = stage2_sets
    teacher, cards, generated = sets["train"]
    oracle = load_mode_rows("oracle_cot", teacher, cards)
    assert oracle["input"][0][-1]["role"] == "assistant"
    assert "Activity level" not in oracle["input"][0][-1]["content"]  # the teacher's answer is stripped
    assert "</think>" in oracle["input"][0][-1]["content"]
    own = load_mode_rows("generated_cot", teacher, cards, generated)
    assert own["input"][0][-1]["content"].startswith("<think>\n1.")
    card_only = load_mode_rows("rcc_only", teacher, cards)
    assert [turn["role"] for turn in card_only["input"][0]] == ["system", "user"]
    assert "Identified Motifs" in card_only["input"][0][1]["content"]
    dna = load_mode_rows("sequence_only", teacher, cards)
    user = dna["input"][0][1]["content"]
    assert "Identified Motifs" not in user and dna["sequence"][0] in user and "K562" in user
    assert oracle[["id", "cell_type"]].equals(dna[["id", "cell_type"]])  # every mode sees the same rows


def test_both_rationale_modes_end_at_think_unless_the_conclusion_is_kept(stage2_sets, tmp_path):
    """The official Stage II input: card, then the rationale up to </think>, in both modes alike; a rationale
    that never closes its reasoning contributes nothing; keep_conclusion keeps the level in both."""
    _, sets, _ = stage2_sets
    teacher, cards, _ = sets["train"]
    rows = pd.read_parquet(teacher)
    written = rows[["id", "cell_type"]].assign(rationale=[
        compose(["GATA1 is on the card."] * 5, "Conclusion: Activity level: 2"), "<think>\n1. cut off mid-step",
        *[compose(["No site."] * 5, "Conclusion: Activity level: 0")] * (len(rows) - 2)])
    generated = tmp_path / "generated.parquet"
    written.to_parquet(generated, index=False)
    answers = {}
    for keep in (False, True):
        for mode, own in (("oracle_cot", None), ("generated_cot", generated)):
            answers[mode, keep] = [turn[-1]["content"] for turn in
                                   load_mode_rows(mode, teacher, cards, own, keep_conclusion=keep)["input"]]
    for mode in ("oracle_cot", "generated_cot"):
        assert all(text.endswith("</think>") for text in answers[mode, False] if text)
        assert all("Activity level" in text for text in answers[mode, True] if "</think>" in text)
    assert answers["generated_cot", False][:2] == [written["rationale"][0].split("\nConclusion")[0], ""]
    assert answers["oracle_cot", True] == rows["rationale"].tolist()


def test_the_official_input_format_is_train_stage2s_plain_text(stage2_sets, smollm2_dir):
    """stage2.input_format: official - the per-cell-line instruction, the card, a newline, the rationale up to
    </think>, a newline; no chat template, and a long input loses its END, as the official tokenizer call does."""
    _, sets, _ = stage2_sets
    teacher, cards, generated = sets["train"]
    prefix = ("You are a computational regulatory genomics expert specializing in {cell} cell line biology. Your task "
              "is to analyze the provided DNA sequence features to predict the gene expression level (0-3).\n"
              "Provide a step-by-step reasoning chain explaining the biological mechanism.\n\n")
    rows = pd.read_parquet(teacher)
    own = pd.read_parquet(generated)
    for mode, rationales in (("oracle_cot", None), ("generated_cot", generated), ("rcc_only", None)):
        texts = load_mode_rows(mode, teacher, cards, rationales, input_format="official")["input"]
        for text, row, written in zip(texts, rows.itertuples(), own["rationale"], strict=True):
            reasoning = {"oracle_cot": row.rationale.split("\n</think>")[0] + "\n</think>",
                         "generated_cot": written, "rcc_only": None}[mode]
            body = row.card_text if reasoning is None else f"{row.card_text}\n{reasoning}".rstrip()
            assert text == prefix.format(cell=row.cell_type) + body + "\n"
    smollm2_tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    text = texts[0]
    ids = smollm2_tokenizer(text, add_special_tokens=False)["input_ids"]
    encoded, truncated = tokenize_rows(smollm2_tokenizer, [text], cutoff_len=len(ids) - 5)
    assert truncated == 1 and encoded[0] == ids[:len(ids) - 5]
    chat = load_mode_rows("rcc_only", teacher, cards)["input"][0]
    full = render(smollm2_tokenizer, chat)
    encoded, _ = tokenize_rows(smollm2_tokenizer, [chat], cutoff_len=len(full) - 5)
    assert encoded[0] == full[5:]  # a chat input keeps its end: the last token is the one the head reads


def test_bad_mode_inputs_are_one_line_errors(stage2_sets, tmp_path):
    _, sets, _ = stage2_sets
    teacher, cards, _ = sets["train"]
    with pytest.raises(InputError, match="needs the Stage-I model's rationales"):
        load_mode_rows("generated_cot", teacher, cards)
    with pytest.raises(InputError, match="unknown Stage II input mode"):
        load_mode_rows("sequence", teacher, cards)
    partial = tmp_path / "cards.parquet"
    pd.read_parquet(cards).iloc[1:].to_parquet(partial, index=False)
    with pytest.raises(InputError, match="no card for id 'train000'") as error:
        load_mode_rows("rcc_only", teacher, partial)
    assert str(partial) in str(error.value)


def test_random_validation_is_the_official_seeded_90_10_split_of_each_cell_types_file(stage2_sets):
    """The official r3lm/train_stage2.py (github DuanYi516/R3LM), given no --val_json, reads one cell line's Stage-II
    file (82k+1k-with-reason-sharegpt.jsonl), shuffles it with DataFrame.sample(frac=1, random_state=42) and trains
    on the first int(0.9 n) rows, validating on the rest. stage2.validation.rows: random gives exactly those rows,
    the file being a cell type's train rows then its val rows; val_split keeps the val set; the paper config takes
    the official split."""
    _, sets, _ = stage2_sets
    files = {name: SetFiles(*paths) for name, paths in sets.items()}
    given = {name: load_mode_rows("rcc_only", *paths) for name, paths in sets.items()}
    rows = _set_rows("rcc_only", files, validate_config({"stage2": {"validation": {"rows": "random"}}})["stage2"])
    for cell in CELLS:
        file = pd.concat([given["train"], given["val"]])
        file = file[file["cell_type"] == cell].reset_index(drop=True)
        shuffled = file.sample(frac=1, random_state=42)["id"].tolist()
        n_train = int(len(file) * 0.9)
        assert rows["train"].loc[rows["train"]["cell_type"] == cell, "id"].tolist() == shuffled[:n_train]
        assert rows["val"].loc[rows["val"]["cell_type"] == cell, "id"].tolist() == shuffled[n_train:]
    assert len(rows["val"]) == 2 * (12 - int(12 * 0.9)) and rows["test"].equals(given["test"])
    kept = _set_rows("rcc_only", files, validate_config({})["stage2"])
    assert all(kept[name].equals(given[name]) for name in given)
    paper = validate_config(yaml.safe_load((Path(__file__).resolve().parents[1] / "config/gosai2024.yaml").read_text()))
    assert paper["stage2"]["validation"] == {"rows": "random", "train_fraction": 0.9, "seed": 42}


def test_batch_plan_is_seeded_and_balances_levels():
    levels = np.array([0] * 90 + [3] * 10)
    first = batch_plan(levels, None, 10, seed=1, epoch=0, balanced=False)
    assert all(np.array_equal(a, b) for a, b in zip(first, batch_plan(levels, None, 10, seed=1, epoch=0,
                                                                       balanced=False), strict=True))
    assert sorted(np.concatenate(first).tolist()) == list(range(100))
    drawn = np.concatenate([np.concatenate(batch_plan(levels, None, 10, seed=1, epoch=epoch, balanced=True))
                            for epoch in range(20)])
    assert 0.4 < np.mean(levels[drawn] == 3) < 0.6  # level 3 is 10% of rows but half the draws
    lengths = list(range(100))
    for batch in batch_plan(levels, lengths, 10, seed=1, epoch=0, balanced=False):
        assert np.ptp(np.asarray(lengths)[batch]) < 100  # grouped by length within windows


def test_the_activity_scaler_z_scores_per_cell_type_and_travels_with_the_model():
    rows = pd.DataFrame({"cell_type": ["A", "A", "A", "B", "B"], "activity": [1.0, 2.0, 3.0, 5.0, 5.0]})
    scaler = ActivityScaler.fit(rows)
    scaled = scaler.transform(rows["activity"], rows["cell_type"])
    assert np.allclose(scaled, [-np.sqrt(1.5), 0, np.sqrt(1.5), 0, 0])  # B is constant: its SD counts as 1
    saved = ActivityScaler.from_json(json.loads(json.dumps(scaler.to_json())))
    assert np.array_equal(saved.inverse(scaled, rows["cell_type"]), rows["activity"])
    wide = ActivityScaler.fit_matrix(["A", "B"], np.array([[1.0, 5.0], [2.0, np.nan], [3.0, 5.0]]))
    assert wide.to_json() == scaler.to_json()
    with pytest.raises(InputError, match="no activity scale for cell type 'C'"):
        scaler.inverse(np.zeros(1), ["C"])


def _linear_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=6)
    train_x, val_x = rng.normal(size=(200, 6)), rng.normal(size=(50, 6))
    return (torch.as_tensor(train_x, dtype=torch.float32), (train_x @ weights).astype(np.float32),
            torch.as_tensor(val_x, dtype=torch.float32), (val_x @ weights).astype(np.float32))


SETTINGS = {"seed": 0, "learning_rate": 0.05, "weight_decay": 0.0, "batch_size": 20, "epochs": 4,
            "scheduler": "cosine", "warmup_ratio": 0.1, "max_grad_norm": 1.0, "balanced_sampling": False,
            "eval_steps": 5, "save_steps": 7}


def _fit(tmp_path, fail_at: int | None = None):
    train_x, train_y, val_x, val_y = _linear_problem()
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 1)
    calls = {"n": 0}

    def predict_batch(indices):
        calls["n"] += 1
        if fail_at is not None and calls["n"] == fail_at:
            raise KeyboardInterrupt  # a killed job
        return model(train_x[torch.as_tensor(indices)]).squeeze(-1)

    return fit(model, predict_batch, train_y, np.zeros(len(train_y), dtype=int),
               lambda: model(val_x).squeeze(-1).numpy(), val_y, SETTINGS, tmp_path, progress=False), model


def test_fit_learns_keeps_the_best_and_resumes_exactly(tmp_path):
    straight, _ = _fit(tmp_path / "straight")
    assert straight.steps == 40 and straight.best_pearson > 0.95
    assert straight.best_pearson == max(entry["val_pearson"] for entry in straight.history)
    assert not (tmp_path / "straight" / "checkpoint").exists()  # removed after success
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "killed", fail_at=20)
    assert (tmp_path / "killed" / "checkpoint" / "state.pt").is_file()  # saved at step 14
    resumed, _ = _fit(tmp_path / "killed")
    assert resumed.resumed_from_step == 14
    assert resumed.best_step == straight.best_step
    for name, value in straight.best_state.items():
        assert torch.allclose(value, resumed.best_state[name], atol=1e-6)


def test_the_loss_meets_predictions_and_targets_on_the_model_s_device(tmp_path, monkeypatch):
    """On a GPU the predictions live on CUDA; the targets must join them there. A 'meta' prediction stands in for
    the GPU (a CPU run cannot show the mismatch otherwise), and the loss records where its inputs are."""
    seen = []
    anchor = torch.nn.Parameter(torch.zeros(()))

    def recording_loss(predicted, target):
        seen.append((predicted.device.type, target.device.type, target.dtype))
        return anchor * 0.0

    monkeypatch.setattr(torch.nn.functional, "mse_loss", recording_loss)
    model = torch.nn.Linear(2, 1)
    fit(model, lambda indices: torch.zeros(len(indices), device="meta"), np.zeros(40, dtype=np.float32),
        np.zeros(40, dtype=int), lambda: np.zeros(10), np.arange(10, dtype=np.float32),
        {**SETTINGS, "epochs": 1}, tmp_path, progress=False)
    assert seen and set(seen) == {("meta", "meta", torch.float32)}


def test_lora_stage2_on_the_real_model(stage2_sets, smollm2_dir, tmp_path):
    """The paper's mode end to end on SmolLM2, on the official plain-text input: LoRA adapters and head train,
    the best validation checkpoint is kept, the predictions, adapter and model card are written, and the
    reloaded model predicts the same from the same input format."""
    _, sets, summary = stage2_sets
    config = validate_config({"stage2": {"training": "lora", "epochs": 1, "batch_size": 4, "eval_steps": 2,
                                         "save_steps": 100, "learning_rate": 1e-3, "per_cell_type": False,
                                         "input_format": "official", "lora": {"r": 4, "alpha": 8}}})
    files = {name: SetFiles(teacher, cards, generated) for name, (teacher, cards, generated) in sets.items()}
    result = run_stage2(config, "generated_cot", smollm2_dir, files, summary, tmp_path / "work", tmp_path / "pred",
                        progress=False)
    table, written = read_predictions(tmp_path / "pred")
    assert written["method"] == "generated_cot" and written["training"] == "lora"
    assert len(table) == 8 and np.isfinite(table["predicted"]).all()
    assert table["rationale"].str.startswith("<think>").all()
    assert result["groups"]["shared"]["steps"] == 4
    model_dir = tmp_path / "work" / "model" / "shared"
    assert (model_dir / "adapter" / "adapter_config.json").is_file() and (model_dir / "head.pt").is_file()
    card = json.loads((model_dir / "stage2.json").read_text())
    assert card["mode"] == "generated_cot" and set(card["standardisation"]) == set(CELLS)
    assert card["input_format"] == "official"
    test_rows = load_mode_rows("generated_cot", *sets["test"])
    reloaded = Stage2Predictor.load(model_dir, device="cpu").predict(test_rows, batch_size=4)
    assert np.allclose(reloaded, table.set_index(["cell_type", "id"]).loc[
        list(zip(test_rows["cell_type"], test_rows["id"])), "predicted"], atol=1e-3)
    curve = pd.read_csv(tmp_path / "work" / "curve.csv")
    assert curve["step"].tolist() == [0, 2, 4]


def test_activation_checkpointing_under_lora_recomputes_and_gives_the_same_gradients(smollm2_dir):
    """stage2.gradient_checkpointing trades compute for memory on a large backbone (README: 42 -> 11 GB per step on
    Qwen3-4B); it must change nothing else: the same adapter gradients, in training mode only."""
    from r3lm.stage2.model import load_backbone

    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}
    input_ids = torch.tensor([[1, 5, 9, 200, 31, 7, 2]])
    gradients, modes = [], []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = load_backbone(smollm2_dir, torch.float32, "cpu", lora=lora, checkpointing=checkpointing).train()
        model(input_ids=input_ids).last_hidden_state[:, -1].pow(2).mean().backward()
        gradients.append({name: parameter.grad.clone() for name, parameter in model.named_parameters()
                          if parameter.requires_grad})
        modes.append(model.base_model.model.is_gradient_checkpointing)
    assert modes == [False, True]
    assert gradients[0].keys() == gradients[1].keys() and len(gradients[0]) > 0
    assert all(torch.allclose(gradients[0][name], gradients[1][name], atol=1e-6) for name in gradients[0])
    assert any(gradient.abs().sum() > 0 for gradient in gradients[1].values())


def _smollm2(smollm2_dir):
    from r3lm.stage2.model import load_backbone

    return load_backbone(smollm2_dir, torch.float32, "cpu")


def test_layer_and_mean_pooling_read_hugging_faces_hidden_states_of_the_real_tokens(smollm2_dir):
    """stage2.layer L is hidden_states[L] of a direct HF call (null: the normed final output); mean pooling is
    the mean over a right-padded row's real tokens, so padding changes nothing."""
    from r3lm.stage2.model import Representation, pad_batch, pooled_states

    model = _smollm2(smollm2_dir)
    rows = [[1, 5, 9, 200, 31, 7], [4, 8, 2]]
    input_ids, mask = pad_batch(rows, pad_token_id=0, device="cpu")
    assert mask.tolist()[1] == [1, 1, 1, 0, 0, 0]
    alone = [model(input_ids=torch.tensor([ids]), output_hidden_states=True) for ids in rows]  # no padding
    for layer, grad in itertools.product((0, 7, 21, -3, -1, None), (True, False)):  # no grad: early exit
        hidden = [out.last_hidden_state[0] if layer is None else out.hidden_states[layer][0] for out in alone]
        with torch.set_grad_enabled(grad):
            mean = pooled_states(model, input_ids, mask, torch.float32, Representation(layer, "mean"))
            last = pooled_states(model, input_ids, mask, torch.float32, Representation(layer, "last_token"))
        assert torch.allclose(mean, torch.stack([states.sum(0) / len(states) for states in hidden]), atol=1e-4)
        assert torch.allclose(last, torch.stack([states[-1] for states in hidden]), atol=1e-4)
    from r3lm.stage2.model import decoder_layers

    above = []
    handle = decoder_layers(model)[21].register_forward_hook(lambda *args: above.append(1))
    with torch.no_grad():
        pooled_states(model, input_ids, mask, torch.float32, Representation(21, "mean"))
    handle.remove()
    assert not above  # layer 21 is the output of decoder layer 20: nothing above it ran
    final = pooled_states(model, input_ids, mask, torch.float32, Representation(None, "mean"))
    assert torch.allclose(final, pooled_states(model, input_ids, mask, torch.float32, Representation(-1, "mean")))
    assert not torch.allclose(final, pooled_states(model, input_ids, mask, torch.float32, Representation(7, "mean")))


def test_a_layer_outside_the_backbone_is_a_one_line_error_before_any_embedding(stage2_sets, smollm2_dir,
                                                                                tmp_path):
    """SmolLM2-135M has 30 layers: hidden_states runs from 0 (embeddings) to 30, or -31 to -1."""
    from r3lm.stage2.model import Representation

    model = _smollm2(smollm2_dir)
    for layer in (30, -31, 0, None):
        assert Representation(layer).check(model).layer == layer
    _, sets, summary = stage2_sets
    files = {name: SetFiles(*paths) for name, paths in sets.items()}
    for layer in (31, -32):
        config = validate_config({"stage2": {"training": "frozen", "layer": layer}})
        with pytest.raises(InputError, match=f"stage2.layer={layer} is outside") as caught:
            run_stage2(config, "rcc_only", smollm2_dir, files, summary, tmp_path / "work", tmp_path / "pred",
                       progress=False)
        assert "\n" not in str(caught.value) and "-31 to 30" in str(caught.value)
    assert not (tmp_path / "work" / "embeddings").exists()


def test_changing_the_layer_or_pooling_does_not_reuse_cached_embeddings(smollm2_dir, tmp_path, caplog):
    """The frozen embedding cache is keyed by the representation: a new layer or pooling embeds again, the same
    one again reuses the cache."""
    from r3lm.stage2.model import FINAL_LAST_TOKEN, Representation, embed
    from r3lm.stage2.regressors import Backbone, group_regressors

    encoded = {"train": [[1, 5, 9, 200], [4, 8]], "val": [[7, 7, 3]]}
    masks = {"train": np.array([True, True]), "val": np.array([True])}
    model = _smollm2(smollm2_dir)
    for representation, reused in ((FINAL_LAST_TOKEN, False), (Representation(5), False),
                                   (Representation(5, "mean"), False), (Representation(5, "mean"), True)):
        caplog.clear()
        backbone = Backbone(smollm2_dir, torch.float32, "cpu", 0, 2, representation)
        with caplog.at_level("INFO", logger="r3lm.stage2.regressors"):
            regressor = group_regressors({"training": "frozen"}, backbone, encoded, tmp_path, progress=False)(masks)
        assert ("reusing cached embeddings" in caplog.text) == reused
        direct = embed(model, encoded["train"], 0, torch.float32, "cpu", 2, representation)
        assert np.allclose(regressor.states["train"].numpy(), direct, atol=1e-5)


def _linear_states(seed: int, rows: int, hidden: int = 24) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """States whose LayerNorm output the target is linear in (plus a little noise), and the true weights."""
    rng = np.random.default_rng(seed)
    states = torch.as_tensor(rng.normal(2.0, 3.0, size=(rows, hidden)), dtype=torch.float32)
    normed = torch.nn.functional.layer_norm(states, (hidden,)).double().numpy()
    weights = np.random.default_rng(99).normal(size=hidden)
    return states, (normed @ weights + 0.5 + rng.normal(0, 0.05, rows)).astype(np.float32), weights


def test_the_ridge_head_recovers_a_linear_relation_and_predicts_as_its_closed_form(tmp_path):
    """stage2.frozen.head: ridge - the penalty from cross-validation on the train rows, the Linear layer from the
    closed form on the head's LayerNorm output; the saved LayerNorm + Linear head predicts exactly that."""
    from r3lm.stage2.model import regression_head
    from r3lm.stage2.train import fit_ridge_head, ridge_alpha, ridge_solutions

    train_x, train_y, _ = _linear_states(0, 200)
    val_x, val_y, _ = _linear_states(1, 60)
    alphas = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0]
    torch.manual_seed(0)
    head = regression_head(train_x.shape[1])
    result = fit_ridge_head(head, train_x, train_y, lambda: head(val_x).squeeze(-1).detach().numpy(), val_y, alphas,
                            seed=0)
    assert result.best_pearson > 0.99 and result.alpha <= 1.0 and result.steps == 1 and len(result.history) == 1
    assert torch.equal(head[0].weight, torch.ones(24)) and torch.equal(head[0].bias, torch.zeros(24))
    normed = torch.nn.functional.layer_norm(train_x, (24,)).double().numpy()
    weights, intercepts = ridge_solutions(normed, train_y.astype(float), [result.alpha])
    closed_form = torch.nn.functional.layer_norm(val_x, (24,)).double().numpy() @ weights[0] + intercepts[0]
    saved = regression_head(24)
    torch.save(head.state_dict(), tmp_path / "head.pt")
    saved.load_state_dict(torch.load(tmp_path / "head.pt", weights_only=True))
    with torch.no_grad():
        assert np.allclose(saved(val_x).squeeze(-1).numpy(), closed_form, atol=1e-4)
    noise = np.random.default_rng(5).normal(size=200)
    assert ridge_alpha(normed, noise, alphas, seed=0)[0] >= 1000.0  # nothing to learn: the strongest penalties


def test_lora_reads_the_same_representation_as_the_frozen_backbone(smollm2_dir):
    """At initialisation (LoRA's B is zero) the adapter changes nothing, so the LoRA regressor's full and batch
    predictions equal the frozen head's on the same layer and pooling."""
    from r3lm.stage2.model import Representation, embed
    from r3lm.stage2.regressors import Backbone, LoraRegressor

    encoded = {"train": [[3, 3]], "val": [[1, 5, 9, 200, 31], [4, 8, 2]]}
    backbone = Backbone(smollm2_dir, torch.float32, "cpu", 0, 2, Representation(-8, "mean"))
    lora = LoraRegressor(backbone, {"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": "all-linear"}, encoded)
    lora.model.eval()
    states = embed(_smollm2(smollm2_dir), encoded["val"], 0, torch.float32, "cpu", 2, backbone.representation)
    with torch.no_grad():
        expected = lora.head(torch.as_tensor(states)).squeeze(-1)
        assert torch.allclose(lora.predict("val"), expected, atol=1e-4)
        assert torch.allclose(lora.predict("val", np.array([1, 0])), expected[[1, 0]], atol=1e-4)
