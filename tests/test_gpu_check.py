"""The one-command GPU check runs end to end on the CPU (--dry-cpu), so it still works the day a GPU runs it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def load_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dry_cpu_check_passes_every_step_it_can_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gpu_check = load_check()
    assert gpu_check.main(["--out", str(tmp_path), "--dry-cpu"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    steps = summary["steps"]
    assert summary["device"] == "cpu" and list(steps) == [
        "tiny_model", "stage1_full", "stage1_lora", "generate_hf", "generate_vllm", "stage2_frozen", "stage2_lora",
        "bundle", "cnn", "scan", "qwen3_4b_stage2", "qwen3_4b_stage2_ckpt", "qwen3_4b_stage1"]
    skipped = {name for name, step in steps.items() if step["status"] == "skip"}
    assert skipped == {"generate_vllm", "qwen3_4b_stage2", "qwen3_4b_stage2_ckpt", "qwen3_4b_stage1"}, steps
    assert all(step["status"] == "pass" for name, step in steps.items() if name not in skipped), steps
    assert "resumed at step 2" in steps["stage1_full"]["detail"] and "resumed at step 2" in steps["stage1_lora"]["detail"]
    assert "identical on cpu" in steps["scan"]["detail"]
    assert "8 sequences scored on cpu, automatic batch size 8" == steps["bundle"]["detail"]
    assert all(step["seconds"] >= 0 and step["peak_mb"] > 0 for name, step in steps.items() if name not in skipped)
    assert "13 of 13 steps passed or skipped" in capsys.readouterr().out


def test_without_a_gpu_the_real_check_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    gpu_check = load_check()
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err and not (tmp_path / "summary.json").exists()
