"""Prediction metrics per (protocol, cell type, method) with bootstrap intervals and paired comparisons.

Protocols: `full` scores every test row; `paper` scores the rows of test_subset (the paper's 100 random
test sequences per cell type; with the released data, the released test set). A method is reported under a protocol and cell type only when its
predictions cover every row of it with a finite value, so the methods of one table are always scored
on the same sequences; every omission is counted and kept with its reason (`metrics.attrs["skipped"]`).

Intervals are percentile bootstrap intervals. A resample is held as per-row counts, so a resample's
statistic is the count-weighted statistic of the original rows: a batch of resamples reduces to one
matrix product (Pearson, RMSE, R², level accuracy) or to tie-aware ranks rebuilt from cumulative counts
(Spearman), with no copy of the data per resample. Every method of one (protocol, cell type) sees the
same resamples, drawn from a generator keyed by (seed, protocol, cell type); that makes the paired
differences (method minus reference) exact paired bootstraps on the same sequences (both methods cover
every row of the block, so the ids common to both are the block's rows), and the reference is the
baseline with the best point Pearson in that protocol and cell type.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from r3lm.errors import InputError
from r3lm.io import write_table
from r3lm.predictions import ROW_COLUMNS, read_predictions, read_rows

log = logging.getLogger(__name__)

ALL = "all"  # the cell_type of a table's overall row
METRICS = ("pearson", "spearman", "rmse", "r2", "level_accuracy")
PAIRED_METRICS = ("pearson", "spearman", "rmse")
PROTOCOLS = ("full", "paper")
CHUNK_ELEMENTS = 2_000_000  # resample-count entries per batch: bounds memory on 100k-row test sets
METRIC_COLUMNS = ["cell_type", "method", "protocol", "baseline", "n",
                  *[f"{metric}{part}" for metric in METRICS for part in ("", "_lo", "_hi")], "reference",
                  *[f"delta_{metric}{part}" for metric in PAIRED_METRICS for part in ("", "_lo", "_hi", "_p")]]
SKIPPED_COLUMNS = ["protocol", "cell_type", "method", "rows_needed", "rows_covered", "reason"]
COMPARISON_COLUMNS = ["protocol", "cell_type", "method", "other", "n",
                      *[f"delta_{metric}{part}" for metric in PAIRED_METRICS for part in ("", "_lo", "_hi", "_p")]]


def resolve_settings(settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults overlaid with `settings`; unknown keys and impossible values are input errors."""
    from r3lm.config import validate_config

    defaults = validate_config({})["evaluation"]["bootstrap"]  # the schema is the defaults' one home
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise InputError(f"unknown evaluation setting(s) {unknown}; known: {sorted(defaults)}", column=unknown[0])
    resolved = {**defaults, **settings}
    if not isinstance(resolved["n_boot"], int) or resolved["n_boot"] < 1:
        raise InputError(f"n_boot must be a positive integer, got {resolved['n_boot']!r}", column="n_boot")
    if not isinstance(resolved["seed"], int) or resolved["seed"] < 0:
        raise InputError(f"seed must be a non-negative integer, got {resolved['seed']!r}", column="seed")
    if not 0 < float(resolved["confidence"]) < 1:
        raise InputError(f"confidence must lie strictly between 0 and 1, got {resolved['confidence']!r}",
                         column="confidence")
    if float(resolved["disruption_tol"]) < 0:
        raise InputError(f"disruption_tol must be >= 0, got {resolved['disruption_tol']!r}", column="disruption_tol")
    return resolved


def block_rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator per (seed, protocol, cell type): a block's resamples do not depend on which other blocks or
    methods exist, so reruns and partial reruns agree."""
    return np.random.default_rng([seed, *(zlib.crc32(key.encode()) for key in keys)])


def resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Bootstrap resamples of n rows as (batch, n) float count matrices: row j drawn k times has weight k."""
    batch = max(1, CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, n_boot, batch):
        size = min(batch, n_boot - start)
        draws = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        yield np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)


@dataclass(frozen=True)
class Ranking:
    """Tie groups of one vector, so that its average ranks in any resample come from cumulative counts."""

    order: np.ndarray
    starts: np.ndarray
    group: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray) -> Ranking:
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        new = np.r_[True, ordered[1:] != ordered[:-1]]
        group = np.empty(len(values), dtype=np.int64)
        group[order] = np.cumsum(new) - 1
        return cls(order=order, starts=np.flatnonzero(new), group=group)

    def ranks(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per tie group and resample: its count and its average rank centred on (n + 1) / 2, (batch, groups)
        each; a group's rank is the count of smaller values plus (count + 1) / 2."""
        counts = weights[:, self.order]
        if len(self.starts) < weights.shape[1]:
            counts = np.add.reduceat(counts, self.starts, axis=1)
        ranks = np.cumsum(counts, axis=1)
        ranks -= (counts - 1.0) / 2.0 + (weights.shape[1] + 1) / 2.0
        return counts, ranks


def weighted_spearman(weights: np.ndarray, first_ranks: tuple[np.ndarray, np.ndarray], first_rows: np.ndarray,
                      second: Ranking) -> np.ndarray:
    """Spearman rho per resample as the Pearson r of the resample's average ranks. Centred ranks have
    weighted mean 0, so only the cross term needs ranks per row (`first_rows`, shared by every method); the
    spreads are sums over tie groups. NaN where a side is constant."""
    counts, ranks = first_ranks
    second_counts, second_ranks = second.ranks(weights)
    spread = np.einsum("ij,ij,ij->i", counts, ranks, ranks) * np.einsum("ij,ij,ij->i", second_counts,
                                                                         second_ranks, second_ranks)
    cross = np.einsum("ij,ij,ij->i", weights, first_rows, np.take(second_ranks, second.group, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(spread > 0, np.clip(cross / np.sqrt(np.where(spread > 0, spread, 1.0)), -1.0, 1.0), np.nan)


def weighted_pearson(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Count-weighted Pearson r per resample (one matrix product); NaN where a side is constant. Centre x and
    y beforehand: the sums then do not cancel."""
    total = weights.sum(axis=1)
    sx, sy, sxx, syy, sxy = (weights @ np.column_stack([x, y, x * x, y * y, x * y])).T
    covariance = sxy - sx * sy / total
    variance = (sxx - sx * sx / total) * (syy - sy * sy / total)
    scale = np.sqrt(np.maximum(variance, 0.0))
    tiny = variance <= 1e-12 * ((sxx + 1e-300) * (syy + 1e-300))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tiny, np.nan, np.clip(covariance / np.where(tiny, 1.0, scale), -1.0, 1.0))


def statistics(weights: np.ndarray, measured: np.ndarray, predicted: np.ndarray, correct: np.ndarray,
               measured_ranks: tuple[np.ndarray, np.ndarray], measured_rows: np.ndarray,
               predicted_ranking: Ranking) -> dict[str, np.ndarray]:
    """Every metric of one method for each weighted resample (a row of `weights`); the measured values' ranks
    in these resamples (per group and per row, see `weighted_spearman`) are shared by every method."""
    total = weights.sum(axis=1)
    y, p = measured - measured.mean(), predicted - predicted.mean()
    error = measured - predicted
    sy, syy, sres, hits = (weights @ np.column_stack([y, y * y, error * error, correct.astype(float)])).T
    total_ss = syy - sy * sy / total
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(total_ss > 0, 1.0 - sres / np.where(total_ss > 0, total_ss, 1.0), np.nan)
    return {
        "pearson": weighted_pearson(weights, y, p),
        "spearman": weighted_spearman(weights, measured_ranks, measured_rows, predicted_ranking),
        "rmse": np.sqrt(sres / total),
        "r2": r2,
        "level_accuracy": hits / total,
    }


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_p(deltas: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a difference: twice the smaller share of resamples on either side of
    zero (with the +1 correction, so it is never 0)."""
    finite = deltas[np.isfinite(deltas)]
    if not len(finite):
        return float("nan")
    tail = min(int((finite <= 0).sum()), int((finite >= 0).sum()))
    return min(1.0, 2.0 * (tail + 1) / (len(finite) + 1))


@dataclass
class Block:
    """One protocol and cell type: its rows (sorted by id) and each covering method's aligned predictions."""

    protocol: str
    cell_type: str
    measured: np.ndarray
    level: np.ndarray
    predicted: dict[str, np.ndarray]
    predicted_level: dict[str, np.ndarray]

    def bootstrap(self, methods: Sequence[str], settings: Mapping[str, Any] | None = None
                  ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, np.ndarray]]]:
        """Point metrics and the per-resample metrics of `methods`, all on the block's shared resamples."""
        settings = resolve_settings(settings)
        measured_ranking = Ranking.of(self.measured)
        inputs = {method: (self.predicted[method], self.predicted_level[method] == self.level,
                           Ranking.of(self.predicted[method])) for method in methods}

        def evaluate_batch(weights: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
            measured_ranks = measured_ranking.ranks(weights)
            rows = np.take(measured_ranks[1], measured_ranking.group, axis=1)
            return {method: statistics(weights, self.measured, predicted, correct, measured_ranks, rows, ranking)
                    for method, (predicted, correct, ranking) in inputs.items()}

        point = {method: {name: float(values[0]) for name, values in by_name.items()}
                 for method, by_name in evaluate_batch(np.ones((1, len(self.measured)))).items()}
        batches: dict[str, dict[str, list[np.ndarray]]] = {method: {name: [] for name in METRICS} for method in methods}
        rng = block_rng(int(settings["seed"]), self.protocol, self.cell_type)
        for weights in resample_counts(len(self.measured), int(settings["n_boot"]), rng):
            for method, by_name in evaluate_batch(weights).items():
                for name, values in by_name.items():
                    batches[method][name].append(values)
        resampled = {method: {name: np.concatenate(parts) for name, parts in by_name.items()}
                     for method, by_name in batches.items()}
        return point, resampled


def _delta(point: Mapping[str, Mapping[str, float]], resampled: Mapping[str, Mapping[str, np.ndarray]],
           method: str, other: str, confidence: float) -> dict[str, float]:
    row = {}
    for metric in PAIRED_METRICS:
        deltas = resampled[method][metric] - resampled[other][metric]
        low, high = percentile_interval(deltas, confidence)
        row.update({f"delta_{metric}": point[method][metric] - point[other][metric], f"delta_{metric}_lo": low,
                    f"delta_{metric}_hi": high, f"delta_{metric}_p": bootstrap_p(deltas)})
    return row


def _read_protocol_rows(path: str | Path, protocol: str) -> pd.DataFrame:
    rows = read_rows(path, ROW_COLUMNS)
    duplicated = rows.duplicated(["id", "cell_type"])
    if duplicated.any():
        position = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise InputError(f"{protocol} rows repeat (id, cell_type) {rows['id'].iloc[position]!r}, "
                         f"{rows['cell_type'].iloc[position]!r}", path=path, row=position + 1, column="id")
    return rows


def _by_cell_type(method: str, path: str | Path) -> dict[str, pd.DataFrame]:
    """A method's predictions per cell type, indexed by id (a repeated id is an error, not a choice)."""
    table, _ = read_predictions(path)
    table = table.assign(id=table["id"].astype(str), cell_type=table["cell_type"].astype(str))
    repeated = table.duplicated(["id", "cell_type"])
    if repeated.any():
        row = table[repeated].iloc[0]
        raise InputError(f"method {method} predicts ({row['id']}, {row['cell_type']}) more than once", path=path)
    return {str(cell): group.set_index("id") for cell, group in table.groupby("cell_type", sort=True)}


def blocks(prediction_dirs: Mapping[str, str | Path], test_path: str | Path, test_subset_path: str | Path
           ) -> tuple[list[Block], pd.DataFrame]:
    """Every (protocol, cell type) with the methods that cover it, and the omissions with their reasons."""
    tables = {method: _by_cell_type(method, path) for method, path in prediction_dirs.items()}
    protocols = {"full": _read_protocol_rows(test_path, "full"),
                 "paper": _read_protocol_rows(test_subset_path, "paper")}
    found, skipped = [], []
    for protocol, rows in protocols.items():
        for cell_type, target in rows.groupby("cell_type", sort=True):
            target = target.sort_values("id", kind="stable")
            ids, measured = target["id"].to_numpy(), target["activity"].to_numpy(dtype=float)
            block = Block(protocol, str(cell_type), measured, target["level"].to_numpy(dtype=int), {}, {})
            for method, per_cell in tables.items():
                predictions = per_cell.get(str(cell_type))
                if predictions is None:
                    skipped.append((protocol, cell_type, method, len(ids), 0, "no predictions for this cell type"))
                    continue
                aligned = predictions.reindex(ids)
                listed = np.isin(ids, predictions.index)
                finite = np.isfinite(aligned["predicted"].to_numpy(dtype=float))
                if not finite.all():
                    reason = f"covers {int(finite.sum())} of {len(ids)} rows ({int((~listed).sum())} missing"
                    reason += f", {int((listed & ~finite).sum())} non-finite)" if (listed & ~finite).any() else ")"
                    skipped.append((protocol, cell_type, method, len(ids), int(finite.sum()), reason))
                    continue
                if not np.allclose(aligned["measured"].to_numpy(dtype=float), measured, rtol=1e-5, atol=1e-6):
                    raise InputError(f"method {method}: measured values differ from the {protocol} table for "
                                     f"{cell_type}; were its predictions made on another data set?",
                                     path=prediction_dirs[method], column="measured")
                block.predicted[method] = aligned["predicted"].to_numpy(dtype=float)
                block.predicted_level[method] = aligned["predicted_level"].to_numpy(dtype=int)
            found.append(block)
    return found, pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)


def evaluate(prediction_dirs: Mapping[str, str | Path], baselines: Collection[str], test_path: str | Path,
             test_subset_path: str | Path, settings: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per (cell type, method, protocol) the method covers (METRIC_COLUMNS); the omissions are in
    `attrs["skipped"]` (SKIPPED_COLUMNS)."""
    settings = resolve_settings(settings)
    unknown = sorted(set(baselines) - set(prediction_dirs))
    if unknown:
        raise InputError(f"baseline(s) {unknown} have no predictions; methods: {sorted(prediction_dirs)}")
    found, skipped = blocks(prediction_dirs, test_path, test_subset_path)
    confidence = float(settings["confidence"])
    rows = []
    for block in found:
        methods = sorted(block.predicted)
        if not methods:
            continue
        point, resampled = block.bootstrap(methods, settings)
        candidates = [method for method in methods if method in baselines and np.isfinite(point[method]["pearson"])]
        reference = max(candidates, key=lambda method: point[method]["pearson"], default=None)
        if reference is None:
            log.info("%s %s: no baseline covers it, so no reference comparison", block.protocol, block.cell_type)
        for method in methods:
            row: dict[str, Any] = {"cell_type": block.cell_type, "method": method, "protocol": block.protocol,
                                   "baseline": method in baselines, "n": len(block.measured),
                                   "reference": reference or ""}
            for metric in METRICS:
                low, high = percentile_interval(resampled[method][metric], confidence)
                row.update({metric: point[method][metric], f"{metric}_lo": low, f"{metric}_hi": high})
            if reference is not None and method != reference:
                row.update(_delta(point, resampled, method, reference, confidence))
            rows.append(row)
    metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    metrics.attrs["skipped"] = skipped
    _log_summary(metrics, skipped)
    return metrics


def _log_summary(metrics: pd.DataFrame, skipped: pd.DataFrame) -> None:
    for protocol in PROTOCOLS:
        reported = metrics[metrics["protocol"] == protocol]
        omitted = skipped[skipped["protocol"] == protocol]
        log.info("protocol %s: %d (cell type, method) rows scored, %d skipped", protocol, len(reported), len(omitted))
        for row in omitted.itertuples():
            log.info("  skipped %s / %s: %s", row.method, row.cell_type, row.reason)


def compare_blocks(found: Sequence[Block], pairs: Sequence[tuple[str, str]],
                   settings: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Paired bootstrap of method minus other for chosen pairs (e.g. the method against its ablations), on
    the same resamples as `evaluate`, wherever both cover a block (COMPARISON_COLUMNS)."""
    settings = resolve_settings(settings)
    rows = []
    for block in found:
        present = [(method, other) for method, other in pairs if method in block.predicted and other in block.predicted]
        if not present:
            continue
        point, resampled = block.bootstrap(sorted({method for pair in present for method in pair}), settings)
        rows += [{"protocol": block.protocol, "cell_type": block.cell_type, "method": method, "other": other,
                  "n": len(block.measured),
                  **_delta(point, resampled, method, other, float(settings["confidence"]))}
                 for method, other in present]
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def write_metrics(metrics: pd.DataFrame, path: str | Path, skipped_path: str | Path | None = None) -> None:
    """metrics.tsv (and the omissions beside it when `skipped_path` is given), each written atomically."""
    write_table(metrics, path)
    if skipped_path is not None:
        write_table(metrics.attrs.get("skipped", pd.DataFrame(columns=SKIPPED_COLUMNS)), skipped_path)
