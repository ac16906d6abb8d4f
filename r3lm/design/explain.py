"""Why a design works, read three ways: what the reasoning model's rationale cites from the card, what the
design oracle's attributions show (saturation mutagenesis of the objective, called into seqlets and matched to
JASPAR by TOMTOM; tangermeme and memelite), and on the demo which sites truly drive it (the simulation's
truth). Side by side they tell whether the reasoning model explains a design the way the truth does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from r3lm.rcc.hits import FAMILY_SEPARATOR, name_parts

SEQLET_THRESHOLD = 0.01  # recursive_seqlets' p-value for a span of attribution to count
TOMTOM_PVALUE = 0.01  # a seqlet is named after its nearest JASPAR motif only below this


def base_contributions(objective: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """(N, L) importance of each design's own base: minus the mean change of the objective when it is
    substituted (tangermeme's centred saturation mutagenesis at the base present)."""
    from tangermeme.saturation_mutagenesis import saturation_mutagenesis

    attributions = saturation_mutagenesis(objective, X, device=X.device, batch_size=256)
    return (attributions * X).sum(dim=1)


def attribution_seqlets(objective: nn.Module, X: torch.Tensor, motif_file: str | Path) -> pd.DataFrame:
    """The seqlets of each design's contributions (example, start, end, attribution), each with its nearest
    JASPAR motif and the TOMTOM p-value (`motif` empty above TOMTOM_PVALUE)."""
    from tangermeme.annotate import annotate_seqlets
    from tangermeme.io import read_meme
    from tangermeme.seqlet import recursive_seqlets

    seqlets = recursive_seqlets(base_contributions(objective, X), threshold=SEQLET_THRESHOLD)
    if len(seqlets) == 0:
        return pd.DataFrame(columns=["example_idx", "start", "end", "attribution", "motif", "tomtom_pvalue"])
    motifs = read_meme(str(motif_file))
    names = list(motifs)
    indexes, pvalues = annotate_seqlets(X, seqlets, motifs, n_nearest=1)
    best, pvalue = indexes[:, 0].numpy(), pvalues[:, 0].numpy()
    seqlets = seqlets.reset_index(drop=True).assign(
        motif=[motif_name(names[index]) if index >= 0 and p < TOMTOM_PVALUE else "" for index, p in zip(best, pvalue,
                                                                                                        strict=True)],
        tomtom_pvalue=pvalue)
    return seqlets


def motif_name(meme_name: str) -> str:
    """`MA0114.5 HNF4A` -> `HNF4A`: the MEME file's name is the matrix id and the TF."""
    return meme_name.split(" ", 1)[-1]


def attributed_motifs(seqlets: pd.DataFrame, design_id: str) -> list[str]:
    """The named seqlets of one design (`id`), strongest attribution first, each name once."""
    mine = seqlets[(seqlets["id"] == design_id) & (seqlets["motif"] != "")]
    return list(dict.fromkeys(mine.sort_values("attribution", ascending=False)["motif"]))


def true_drivers(sites: pd.DataFrame, design_id: str, cell_type: str, *, top: int = 5) -> list[str]:
    """On the demo, the TFs whose sites add most to the design's true activity in `cell_type` (positive
    contributions only), strongest first."""
    mine = sites[(sites["seq_id"] == design_id) & (sites["cell_type"] == cell_type)]
    weight = mine["contribution"] * mine.get("presence", 1.0)
    ranked = mine.assign(weight=weight).groupby("tf")["weight"].sum().sort_values(ascending=False)
    return [tf for tf, value in ranked.head(top).items() if value > 0]


def named_overlap(claimed: Sequence[str], truth: Sequence[str],
                  families: Mapping[str, str] | None = None) -> float | None:
    """The share of `truth`'s TFs that `claimed` names: by JASPAR name (each dimer half on its own, any case),
    or with `families` (motif name -> JASPAR family) by family, since TFs of one family bind the same sites
    and a seqlet or a card line can name any of them. None without truth."""
    if not truth:
        return None
    if families is None:
        said = frozenset().union(*(name_parts(name) for name in claimed))
        return float(np.mean([bool(name_parts(tf) & said) for tf in truth]))
    said = frozenset().union(*(family_set(families.get(name, "")) for name in claimed))
    return float(np.mean([bool(family_set(families.get(tf, "")) & said) for tf in truth]))


def family_set(family: str) -> frozenset[str]:
    """A JASPAR family field as its families (a dimer lists both)."""
    return frozenset(family.split(FAMILY_SEPARATOR)) if family else frozenset()


def explanation_rows(designs: pd.DataFrame, rationales: pd.DataFrame, seqlets: pd.DataFrame,
                     sites: pd.DataFrame | None, families: Mapping[str, str]) -> pd.DataFrame:
    """One row per explained design: the rationale's drivers and level, the attributions' motifs, the truth's
    drivers and how many of them each explanation names. `rationales` and `seqlets` carry the design's `id`."""
    rows: list[dict[str, Any]] = []
    by_id = rationales.set_index("id")
    for design in designs.itertuples(index=False):
        scored = by_id.loc[design.id]
        attributed = attributed_motifs(seqlets, design.id)
        drivers = [name.strip() for name in (scored["drivers"] or "").split(",") if name.strip()]
        truth = true_drivers(sites, design.id, design.target) if sites is not None else []
        rows.append({"id": design.id, "target": design.target, "sequence": design.sequence,
                     "card": scored["card"], "rationale": scored["rationale"],
                     "rationale_level": scored["rationale_level"], "r3lm_predicted": scored["predicted"],
                     "rationale_drivers": drivers, "attribution_motifs": attributed, "true_drivers": truth,
                     "rationale_names_truth": named_overlap(drivers, truth),
                     "attribution_names_truth": named_overlap(attributed, truth),
                     "rationale_families_truth": named_overlap(drivers, truth, families),
                     "attribution_families_truth": named_overlap(attributed, truth, families)})
    return pd.DataFrame(rows)


def top_designs(designs: pd.DataFrame, per_target: int) -> pd.DataFrame:
    """The `per_target` designs with the highest objective under the held-out oracle where there is one
    (the design oracle's own score otherwise), per target."""
    column = "heldout_score" if "heldout_score" in designs else "score"
    return (designs.sort_values(column, ascending=False).groupby("target", sort=False).head(per_target)
            .reset_index(drop=True))
