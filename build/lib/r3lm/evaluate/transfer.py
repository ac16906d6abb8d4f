"""How each method transfers: the run's models scored on another dataset's table (`evaluation.transfer`).

An entry names a table with the keys of `dataset.table`, read by the same loader (`r3lm.data.tables`), so its
adaptors, lengths and bad rows are handled as the run's own table was. Every row is a test row: there is no
split. Before sampling, rows whose sequence is identical to a sequence the models trained or validated on, or
its reverse complement, are removed and counted (the leak guard): a lentiMPRA table holds each element in both
orientations, and the joint library of Agarwal et al. shares half its elements with the single-cell-type
tables. Then at most `max_sequences_per_cell_type` rows per cell type are drawn (seeded), and every bundle that
serves the cell type predicts them through the code `r3lm predict` runs (`r3lm.deploy.scorer.load`).

Pearson and Spearman get percentile bootstrap intervals from `r3lm.evaluate.metrics`: every method of one
(entry, cell type) sees the same resamples, keyed by (seed, "transfer:<name>", cell type). Activity scales
differ between tables (another assay, another normalisation), so only the rank and linear correlations are
reported, not RMSE, R² or levels. Beside them stands the method's Pearson on its own test split, from the run's
metrics.tsv, so the report can say how much of it each method keeps.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from r3lm.data.prepare import sample_rows
from r3lm.data.tables import read_table, to_long_rows
from r3lm.dna import reverse_complement
from r3lm.errors import InputError, require_file
from r3lm.evaluate.metrics import Block, percentile_interval, resolve_settings
from r3lm.io import write_json, write_parquet, write_table

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["transfer", "method", "cell_type", "id", "measured", "predicted", "rationale"]
METRIC_COLUMNS = ["transfer", "method", "cell_type", "n", "available", "leak_identical", "leak_reverse_complement",
                  "pearson", "pearson_lo", "pearson_hi", "spearman", "spearman_lo", "spearman_hi",
                  "in_dataset_protocol", "in_dataset_n", "in_dataset_pearson", "in_dataset_pearson_lo",
                  "in_dataset_pearson_hi"]
IN_DATASET_PROTOCOLS = ("full", "paper")  # the method's own test: every test row where it covers them
LEAKS = ("identical", "reverse_complement")


def entry_key(entry: Mapping[str, Any]) -> str:
    """How messages name an entry: by its name, which the user wrote, not by its position in the list."""
    return f"evaluation.transfer[{entry['name']}]"


def transfer_entry(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The entry called `name`; a name the config lacks is an error that lists the ones it has."""
    entries = {entry["name"]: entry for entry in config["evaluation"]["transfer"]}
    if name not in entries:
        raise InputError(f"no evaluation.transfer entry named {name!r} (entries: {', '.join(entries) or 'none'})",
                         path="config")
    return dict(entries[name])


def check_entries(entries: Sequence[Mapping[str, Any]], served: Collection[str]) -> None:
    """Each entry's name once, and each of its cell types one the run's models serve: a cell type that only
    the other table measures cannot be scored, and saying so at once beats an empty table after hours."""
    names = Counter(entry["name"] for entry in entries)
    repeated = [name for name, count in names.items() if count > 1]
    if repeated:
        raise InputError(f"evaluation.transfer names {repeated[0]!r} more than once; give each entry its own name",
                         path="config")
    for entry in entries:
        for cell in entry["activity_columns"]:
            if cell not in served:
                raise InputError(f"{entry_key(entry)}.activity_columns.{cell}: the run's models do not serve "
                                 f"{cell!r} (they serve {', '.join(sorted(served))}); map only cell types both "
                                 "share", path="config")


def load_rows(entry: Mapping[str, Any], dataset: Mapping[str, Any]) -> tuple[pd.DataFrame, Counter]:
    """The table in long format (id, sequence, cell_type, activity, source_row), read and checked by the
    project's table loader under the dataset's policies for bad rows; the rows it dropped, by reason."""
    drops: Counter = Counter()
    frame = read_table(entry["path"])
    rows = to_long_rows(frame, path=entry["path"], table=dict(entry), dataset=dict(dataset), drops=drops,
                        id_prefix="row", fold_column=None)
    for reason, count in drops.items():
        if count:
            log.warning("%s: dropped %d row(s) of %s: %s", entry_key(entry), count, entry["path"], reason)
    log.info("%s: %d rows of %s, %d cell-type measurements", entry_key(entry), len(frame), entry["path"], len(rows))
    return rows[["id", "sequence", "cell_type", "activity", "source_row"]].reset_index(drop=True), drops


def seen_sequences(paths: Sequence[str | Path]) -> set[str]:
    """Every sequence of the split tables the models learned from (upper case, as the loaders write them)."""
    seen: set[str] = set()
    for path in paths:
        seen.update(pd.read_parquet(require_file(path, "split table"), columns=["sequence"])["sequence"]
                    .astype(str).str.upper())
    return seen


def guard_leaks(rows: pd.DataFrame, seen: set[str]) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """The rows whose sequence the models never saw on either strand, and per cell type how many were removed
    as identical to a seen sequence or as its reverse complement (an identical one counts as identical)."""
    identical = rows["sequence"].isin(seen).to_numpy()
    flipped = ~identical & rows["sequence"].map(reverse_complement).isin(seen).to_numpy()
    counts = {str(cell): {"identical": int(identical[index].sum()), "reverse_complement": int(flipped[index].sum())}
              for cell, index in rows.groupby("cell_type", sort=False).indices.items()}
    return rows[~(identical | flipped)].reset_index(drop=True), counts


def draw_rows(rows: pd.DataFrame, entry: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """At most max_sequences_per_cell_type rows per cell type, seeded by sampling.seed and the entry's name,
    so adding another entry changes no draw."""
    stream = zlib.crc32(f"transfer:{entry['name']}".encode())
    return sample_rows(rows, entry["max_sequences_per_cell_type"], seed=seed, stream=stream,
                       cell_types=list(entry["activity_columns"])).reset_index(drop=True)


def predict_bundle(method: str, folder: str | Path, rows: pd.DataFrame, cell: str, *, device: str,
                   batch_size: int | None, progress: bool) -> pd.DataFrame:
    """One method's predictions of `rows` (one cell type) through the bundle, as `r3lm predict` makes them; an
    LLM bundle's rationale is kept."""
    from r3lm.deploy.fast import FastModel, predicted_column
    from r3lm.deploy.scorer import load

    model = load(str(folder), device, batch_size)
    named = pd.Series(rows["sequence"].to_numpy(), index=rows["id"].to_numpy())
    if isinstance(model, FastModel):
        scored = model.score(named, [cell], progress=progress)
        predicted, rationale = scored[predicted_column(cell)].to_numpy(dtype=float), None
    else:
        scored = model.score(named, cell, progress=progress)
        predicted, rationale = scored["predicted"].to_numpy(dtype=float), scored["rationale"].to_numpy()
    return pd.DataFrame({"method": method, "cell_type": cell, "id": rows["id"].to_numpy(),
                         "measured": rows["activity"].to_numpy(dtype=float), "predicted": predicted,
                         "rationale": rationale})


def served_cell_types(bundles: Mapping[str, str | Path]) -> dict[str, list[str]]:
    """Each bundle's cell types, from its manifest alone (nothing is loaded)."""
    from r3lm.deploy.bundle import manifest_path

    return {method: list(json.loads(manifest_path(folder).read_text())["cell_types"])
            for method, folder in bundles.items()}


def in_dataset_pearson(path: str | Path | None) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (method, cell type), its Pearson on its own test split from the run's metrics.tsv: the full split
    where the method covers it, else the paper protocol's subset (the LLM methods' usual protocol)."""
    if path is None:
        return {}
    table = pd.read_csv(require_file(path, "metrics table"), sep="\t")
    missing = [column for column in ("method", "cell_type", "protocol", "n", "pearson", "pearson_lo", "pearson_hi")
               if column not in table.columns]
    if missing:
        raise InputError(f"the metrics table lacks column {missing[0]!r}", path=path, column=missing[0])
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for protocol in reversed(IN_DATASET_PROTOCOLS):  # the preferred protocol is written last and wins
        for row in table[table["protocol"] == protocol].to_dict("records"):
            found[(str(row["method"]), str(row["cell_type"]))] = {
                "in_dataset_protocol": protocol, "in_dataset_n": int(row["n"]),
                **{f"in_dataset_{name}": float(row[name]) for name in ("pearson", "pearson_lo", "pearson_hi")}}
    return found


def score_block(name: str, cell: str, predictions: pd.DataFrame, settings: Mapping[str, Any]
                ) -> dict[str, dict[str, float]]:
    """Pearson and Spearman with intervals per method on one cell type's rows, every method on the same
    resamples. Levels mean nothing across tables, so the Block's level arrays are zeros and its level accuracy
    is not reported."""
    methods = sorted(predictions["method"].unique())
    wide = predictions.pivot(index="id", columns="method", values="predicted").sort_index()
    measured = predictions.drop_duplicates("id").set_index("id")["measured"].reindex(wide.index).to_numpy()
    zeros = np.zeros(len(wide), dtype=int)
    if len(wide) < 2:  # a correlation needs two rows
        return {method: {key: float("nan") for key in ("pearson", "pearson_lo", "pearson_hi", "spearman",
                                                        "spearman_lo", "spearman_hi")} for method in methods}
    block = Block(f"transfer:{name}", cell, measured, zeros, {method: wide[method].to_numpy() for method in methods},
                  {method: zeros for method in methods})
    point, resampled = block.bootstrap(methods, settings)
    confidence = float(settings["confidence"])
    scores = {}
    for method in methods:
        scores[method] = {}
        for metric in ("pearson", "spearman"):
            low, high = percentile_interval(resampled[method][metric], confidence)
            scores[method].update({metric: point[method][metric], f"{metric}_lo": low, f"{metric}_hi": high})
    return scores


def transfer_metrics(name: str, predictions: pd.DataFrame, available: Mapping[str, int],
                     leaks: Mapping[str, Mapping[str, int]], in_dataset: Mapping[tuple[str, str], Mapping[str, Any]],
                     settings: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (method, cell type) scored (METRIC_COLUMNS)."""
    rows = []
    for cell, part in predictions.groupby("cell_type", sort=True):
        for method, scores in score_block(name, str(cell), part, settings).items():
            rows.append({"transfer": name, "method": method, "cell_type": cell,
                         "n": int((part["method"] == method).sum()), "available": available[str(cell)],
                         "leak_identical": leaks[str(cell)]["identical"],
                         "leak_reverse_complement": leaks[str(cell)]["reverse_complement"], **scores,
                         **in_dataset.get((method, str(cell)), {})})
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def run_transfer(config: Mapping[str, Any], name: str, bundles: Mapping[str, str | Path], seen: Sequence[str | Path],
                 out_predictions: str | Path, out_metrics: str | Path, out_summary: str | Path, *,
                 in_dataset_metrics: str | Path | None = None, device: str = "auto", batch_size: int | None = None,
                 progress: bool = False) -> pd.DataFrame:
    """Load the entry's table, remove what the models saw, sample, predict with every bundle, score; writes the
    predictions parquet, the metrics TSV and a summary JSON of every count, and returns the metrics.

    CLI (the transfer rule): r3lm step transfer --config JSON --name NAME --models METHOD=BUNDLE ... --seen
         train.parquet val.parquet [--in-dataset-metrics metrics.tsv] --predictions P --metrics M --summary S
    """
    settings = resolve_settings(config["evaluation"]["bootstrap"])
    entry = transfer_entry(config, name)
    if not bundles:
        raise InputError(f"{entry_key(entry)}: no model to score (the run packages no bundle)", path="config")
    serving = served_cell_types(bundles)
    check_entries([entry], {cell for cells in serving.values() for cell in cells})
    in_dataset = in_dataset_pearson(in_dataset_metrics)
    rows, drops = load_rows(entry, config["dataset"])
    cells = list(entry["activity_columns"])
    measured = rows["cell_type"].value_counts()
    kept, leaks = guard_leaks(rows, seen_sequences(seen))
    for cell in cells:
        leaks.setdefault(cell, {leak: 0 for leak in LEAKS})
        log.info("%s %s: %d rows measured; leak guard removed %d identical and %d reverse-complement sequences",
                 entry_key(entry), cell, int(measured.get(cell, 0)), leaks[cell]["identical"],
                 leaks[cell]["reverse_complement"])
    available = {cell: int((kept["cell_type"] == cell).sum()) for cell in cells}
    drawn = draw_rows(kept, entry, int(config["sampling"]["seed"]))
    parts, skipped = [], []
    for method, folder in bundles.items():
        for cell in cells:
            part = drawn[drawn["cell_type"] == cell]
            if cell not in serving[method]:
                skipped.append({"method": method, "cell_type": cell, "reason": "the bundle does not serve it"})
            elif part.empty:
                skipped.append({"method": method, "cell_type": cell, "reason": "no row left after the leak guard"})
            else:
                parts.append(predict_bundle(method, folder, part, cell, device=device, batch_size=batch_size,
                                            progress=progress))
    for item in skipped:
        log.warning("%s: %s / %s not scored: %s", entry_key(entry), item["method"], item["cell_type"], item["reason"])
    predictions = (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PREDICTION_COLUMNS[1:]))
    predictions.insert(0, "transfer", name)
    metrics = transfer_metrics(name, predictions, available, leaks, in_dataset, settings)
    write_parquet(predictions[PREDICTION_COLUMNS], out_predictions)
    write_table(metrics, out_metrics)
    write_json({"transfer": name, "path": str(entry["path"]), "seen_tables": [str(path) for path in seen],
                "dropped": {reason: count for reason, count in drops.items() if count},
                "max_sequences_per_cell_type": entry["max_sequences_per_cell_type"],
                "seed": int(config["sampling"]["seed"]),
                "cell_types": {cell: {"measured": int(measured.get(cell, 0)), "leak": leaks[cell],
                                      "available": available[cell],
                                      "scored": int((drawn["cell_type"] == cell).sum())} for cell in cells},
                "methods": {method: sorted(set(predictions.loc[predictions["method"] == method, "cell_type"]))
                            for method in bundles},
                "skipped": skipped}, out_summary)
    log.info("%s: %d predictions by %d method(s), %d (method, cell type) scored", entry_key(entry),
             len(predictions), len(bundles), len(metrics))
    return metrics
