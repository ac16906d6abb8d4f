"""How designs are judged: their objective under each oracle (the design oracle, the held-out one and, on the
demo, the truth), against the natural sequences' distribution, with their edits and diversity.

A design counts as working when its MinGap lies above the natural sequences' 99th percentile (Gosai et al.
2024 compared designs with natural elements the same way). The reference is the truth's noiseless activity on
the demo (the simulation's own sequences) and the measured activity elsewhere. A design that only the design
oracle places above that reference, while the held-out oracle does not, is counted as adversarial: it fools
the model it was made on rather than working.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from r3lm.stats import pearson

ORACLES = ("predicted", "heldout", "true")  # the column prefixes: design oracle, held-out oracle, the truth
NATURAL_PERCENTILE = 99


def objective_of(frame: pd.DataFrame, prefix: str, targets: Sequence[str], cell_types: Sequence[str],
                 objective: str) -> np.ndarray:
    """The objective from `<prefix>_<cell type>` columns: MinGap (the weakest target minus the strongest other
    cell type) or the weakest target's activity (`max`)."""
    from r3lm.deploy.specificity import min_gap

    on = frame[[f"{prefix}_{cell}" for cell in targets]].to_numpy(dtype=float)
    if objective == "max":
        return on.min(axis=1)
    return min_gap(on, frame[[f"{prefix}_{cell}" for cell in cell_types if cell not in targets]].to_numpy(dtype=float))


def median_pairwise_hamming(sequences: Sequence[str]) -> float:
    """The median Hamming distance over all pairs of equally long sequences (NaN for fewer than two)."""
    if len(sequences) < 2:
        return float("nan")
    codes = np.frombuffer("".join(sequences).encode(), dtype=np.uint8).reshape(len(sequences), -1)
    upper = np.triu_indices(len(sequences), k=1)
    distances = (codes[:, None, :] != codes[None, :, :]).sum(axis=2)[upper]
    return float(np.median(distances))


def judge_target(designs: pd.DataFrame, natural: pd.DataFrame, targets: Sequence[str], cell_types: Sequence[str],
                 objective: str, reference: str) -> dict[str, Any]:
    """One target's figures: each oracle's median objective on the designs and on the natural sequences, the
    natural reference percentile (from the `reference` oracle or `measured` columns of `natural`), the share of
    designs above it by each oracle, adversarial designs, the two oracles' agreement, edits and diversity."""
    natural_reference = objective_of(natural, reference, targets, cell_types, objective)
    threshold = float(np.nanpercentile(natural_reference, NATURAL_PERCENTILE))
    scores = {prefix: objective_of(designs, prefix, targets, cell_types, objective) for prefix in ORACLES
              if f"{prefix}_{targets[0]}" in designs.columns}
    summary: dict[str, Any] = {
        "designs": len(designs), "reference": reference, f"natural_p{NATURAL_PERCENTILE}": threshold,
        "natural_median": float(np.nanmedian(natural_reference)),
        "median": {prefix: float(np.median(values)) for prefix, values in scores.items()},
        "above_natural": {prefix: float(np.mean(values > threshold)) for prefix, values in scores.items()},
        "edits_median": float(designs["edits"].median()),
        "diversity_median_hamming": median_pairwise_hamming(designs["sequence"].tolist()),
        "length": int(designs["sequence"].str.len().max()),
    }
    if "heldout" in scores:
        summary["adversarial"] = int(((scores["predicted"] > threshold) & (scores["heldout"] <= threshold)).sum())
        summary["oracle_agreement_pearson"] = pearson(scores["predicted"], scores["heldout"])
    return summary


def oracle_agreement_on_natural(natural: pd.DataFrame, cell_types: Sequence[str]) -> dict[str, float]:
    """Per cell type, the Pearson between the design and the held-out oracle on the natural sequences: how far
    the two agree where neither was optimised against."""
    return {cell: pearson(natural[f"predicted_{cell}"].to_numpy(), natural[f"heldout_{cell}"].to_numpy())
            for cell in cell_types}


def activity_columns(prefix: str, activity: np.ndarray, cell_types: Sequence[str]) -> Mapping[str, np.ndarray]:
    """A (rows, cell types) activity matrix as `<prefix>_<cell type>` columns."""
    return {f"{prefix}_{cell}": activity[:, index] for index, cell in enumerate(cell_types)}


def motif_composition(design_hits: pd.DataFrame, design_ids: Sequence[str], natural_hits: pd.DataFrame,
                      natural_ids: Sequence[str], top: int = 8) -> list[dict[str, Any]]:
    """The motifs designs carry more often than natural sequences: per motif the share of designs and of
    natural sequences with at least one hit (scanner columns: seq_id, motif_name), the `top` most enriched."""
    def share(hits: pd.DataFrame, ids: Sequence[str]) -> pd.Series:
        present = hits[hits["seq_id"].isin(set(ids))].drop_duplicates(["seq_id", "motif_name"])
        return present["motif_name"].value_counts() / max(len(ids), 1)

    designed, natural = share(design_hits, design_ids), share(natural_hits, natural_ids)
    table = pd.DataFrame({"designs": designed, "natural": natural}).fillna(0.0)
    table["enrichment"] = table["designs"] - table["natural"]
    chosen = table.sort_values(["enrichment", "designs"], ascending=False).head(top)
    return [{"motif": name, "designs": round(float(row.designs), 3), "natural": round(float(row.natural), 3)}
            for name, row in chosen.iterrows()]


def oracle_columns(frame: pd.DataFrame, cell_types: Sequence[str], bundles: Mapping[str, Any],
                   demo: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """`frame` (with a `sequence` column) with each fast bundle's activity per cell type as `<name>_<cell type>`,
    and with the demo's simulation settings the truth's as `true_<cell type>`."""
    sequences = frame["sequence"].tolist()
    columns: dict[str, Any] = {}
    for name, bundle in bundles.items():
        order = [bundle.cell_types.index(cell) for cell in cell_types]
        columns |= activity_columns(name, np.asarray(bundle.predict(sequences))[:, order], cell_types)
    if demo is not None:
        from r3lm.data.truth import true_activity

        columns |= activity_columns("true", true_activity(sequences, demo)[list(cell_types)].to_numpy(), cell_types)
    return frame.assign(**columns)
