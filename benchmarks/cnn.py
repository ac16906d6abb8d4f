"""The CNN baseline on real lentiMPRA data: validation and held-out test Pearson against epochs and wall time.

Data (`../shared/data/agarwal2025/`, Agarwal et al. 2025): `hepg2_lentimpra.tsv` trains (adaptors trimmed,
both orientations of an element kept together, a seeded 10% of the elements for validation); the test set is
the HepG2 column of `joint_library_3cell.tsv`, less every element the training table holds (in either
orientation), so no test element was seen in training. Every model is scored on the same test rows.

    python benchmarks/cnn.py run --settings '{}' --out legnet.json          # r3lm's default (MPRA-LegNet)
    PYTHONPATH=<older checkout> python benchmarks/cnn.py run --settings '{}' --out old.json
    python benchmarks/cnn.py compare legnet.json old.json                    # paired bootstrap of test Pearson
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

# r3lm from the checkout on the path (PYTHONPATH), so an older checkout can be measured the same way
from r3lm.baselines.cnn import encode_sequences, fit_cnn, predict_codes

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "agarwal2025"
ADAPTOR = 15  # AGGACCGGATCAACT ... CATTGCGTGAACCGA around each 200 bp element
COMPLEMENT = str.maketrans("ACGT", "TGCA")


def element(seq_id: str) -> str:
    """Both orientations of an element share it: the reversed row's id carries a suffix."""
    return seq_id.split("_Reversed")[0].removesuffix("_R")


def load_splits(seed: int = 0, val_fraction: float = 0.1) -> dict[str, pd.DataFrame]:
    """Long rows (id, cell_type, split, activity, sequence) for train, val and the held-out test."""
    table = pd.read_csv(DATA / "hepg2_lentimpra.tsv", sep="\t")
    table = pd.DataFrame({"id": table["seq_id"], "sequence": table["seq"].str[ADAPTOR:-ADAPTOR],
                          "activity": table["mean_value"], "cell_type": "HepG2"})
    elements = table["id"].map(element)
    rng = np.random.default_rng(seed)
    names = np.array(sorted(elements.unique()))
    val_names = set(rng.choice(names, size=round(len(names) * val_fraction), replace=False))
    table["split"] = np.where(elements.isin(val_names), "val", "train")
    seen = set(table["sequence"]) | {sequence.translate(COMPLEMENT)[::-1] for sequence in table["sequence"]}
    joint = pd.read_csv(DATA / "joint_library_3cell.tsv", sep="\t").dropna(subset=["HepG2"])
    test = pd.DataFrame({"id": joint["name"], "sequence": joint["seq"].str[ADAPTOR:-ADAPTOR],
                         "activity": joint["HepG2"], "cell_type": "HepG2", "split": "test"})
    test = test[~test["sequence"].isin(seen)].reset_index(drop=True)
    return {"train": table[table["split"] == "train"].reset_index(drop=True),
            "val": table[table["split"] == "val"].reset_index(drop=True), "test": test}


def run(settings: dict, out: Path) -> dict:
    splits = load_splits()
    started = time.perf_counter()
    fit = fit_cnn({"device": "cpu", **settings}, splits["train"], splits["val"], progress=False)
    seconds = time.perf_counter() - started
    codes, lengths = encode_sequences(splits["test"]["sequence"].tolist())
    standardised = predict_codes(fit.model, codes, lengths, batch_size=256, device=torch.device("cpu"))[:, 0]
    predicted = fit.scaler.inverse(standardised, fit.cell_types[:1])
    test_pearson = float(np.corrcoef(predicted, splits["test"]["activity"])[0, 1])
    result = {"settings": fit.settings, "train_sequences": len(splits["train"]), "val_sequences": len(splits["val"]),
              "test_sequences": len(splits["test"]), "epochs_run": len(fit.curve), "best_epoch": fit.best_epoch,
              "stopped_by": getattr(fit, "stopped_by", None),
              "val_pearson": float(fit.curve["val_pearson"].max()), "test_pearson": test_pearson,
              "train_seconds": round(seconds, 1), "threads": torch.get_num_threads(),
              "curve": fit.curve.to_dict(orient="list"),
              "test_ids": splits["test"]["id"].tolist(), "test_predicted": predicted.tolist()}
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({key: value for key, value in result.items() if not key.startswith(("test_ids", "test_pred",
                                                                                           "curve"))}, indent=1))
    return result


def compare(new: Path, old: Path, n_boot: int = 2000, seed: int = 0) -> dict:
    """Test Pearson of both and the paired bootstrap interval of their difference (same resampled rows)."""
    first, second = json.loads(new.read_text()), json.loads(old.read_text())
    if first["test_ids"] != second["test_ids"]:
        raise SystemExit("the two runs scored different test rows")
    measured = load_splits()["test"].set_index("id").loc[first["test_ids"], "activity"].to_numpy()
    a, b = np.asarray(first["test_predicted"]), np.asarray(second["test_predicted"])
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(n_boot):
        rows = rng.integers(0, len(measured), len(measured))
        differences.append(np.corrcoef(a[rows], measured[rows])[0, 1] - np.corrcoef(b[rows], measured[rows])[0, 1])
    low, high = np.percentile(differences, [2.5, 97.5])
    summary = {"new_test_pearson": first["test_pearson"], "old_test_pearson": second["test_pearson"],
               "difference": first["test_pearson"] - second["test_pearson"], "ci95": [float(low), float(high)],
               "new_seconds": first["train_seconds"], "old_seconds": second["train_seconds"]}
    print(json.dumps(summary, indent=1))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    runner = commands.add_parser("run", help="train on the HepG2 table, score the held-out test")
    runner.add_argument("--settings", default="{}", help="baselines.cnn settings as JSON (over the defaults)")
    runner.add_argument("--out", type=Path, required=True)
    comparer = commands.add_parser("compare", help="paired bootstrap of two runs' test Pearson")
    comparer.add_argument("new", type=Path)
    comparer.add_argument("old", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run(json.loads(args.settings), args.out)
    else:
        compare(args.new, args.old)


if __name__ == "__main__":
    main()
