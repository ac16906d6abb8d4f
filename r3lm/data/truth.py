"""The demo's truth function: the noiseless activity that the simulated MPRA's model gives any sequence.

`r3lm.data.simulate` knows the truth only for the sequences it planted sites in. A designed sequence
has no planted sites, only bases, so here the sites are found again and scored with the simulation's
own code. The same parts give the same numbers:

* Sites: every window that the scan reports on a catalogue matrix, using `site_scorer` (the FIMO
  matrix and threshold at `site_pvalue` that the simulation's rejection step makes every planted
  site reach). So each planted site is found at its start and strand with its exact strength
  (`site_scores`). A window that passes by chance is a site too. Nothing in the bases tells a
  planted site from a chance one, and a TF would bind both.
* Activity: `noiseless_activity`, the simulation's formula: baseline + gc_effect * (gc - 0.5)
  + weight * strength per site + the cooperative pair bonuses (spacing, orientation).

Overlaps. The simulation never lets sites overlap, but reported windows do. A palindromic matrix
hits one site on both strands, a matrix hits shifted windows, and some catalogue matrices read the
same bases: ELK1 and ETS1 share ACCGGAAGT, ATF2 and FOS::JUN share TGACGTCA, ASCL1 and SNAI3 share
the CAGGTG E-box, and SP1 and KLF5 share the GC box. In the last case the bases cannot say which TF
was planted. Keeping one window per overlap (greedy by strength, by log-odds, or by likelihood
including the sampling weights) picks the wrong one of ASCL1 (+1.0 in SK-N-SH) and SNAI3 (-0.6) about
40% of the time, and reached only Pearson 0.945 with activity_noiseless in SK-N-SH on the demo's
6,000 sequences.

So the truth averages over the layouts instead. A layout places as many non-overlapping sites as
fit in each cluster of overlapping windows; a window that overlaps no other is always a site. A
layout's weight is the product, over its sites, of sampling_weight * 2^bits. Since bits =
log2 P(bases | the TF's smoothed matrix) / P(bases | uniform), this is how much likelier the
simulation is to write those bases as that site than as background. Each window gets a `presence`,
the share of the weight held by the layouts that contain it. Its expected contribution is presence
* weight * strength, and a cooperative pair counts with the product of the two presences. That
product is exact between clusters, which are independent. Within one cluster it approximates the
joint probability; two partners that do not overlap but share a cluster need a third window that
bridges them, which is rare. Two overlapping windows are alternatives and never a pair. Left out:
the rejection step's acceptance rate (a matrix that rarely passes is likelier given that it passed),
which changed no Pearson by more than 0.001.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from r3lm.data.simulate import (
    Catalogue,
    Sites,
    catalogue_motifs,
    load_catalogue,
    noiseless_activity,
    site_scorer,
    site_scores,
    sites_frame,
)
from r3lm.errors import InputError
from r3lm.motifs.jaspar import Motif
from r3lm.motifs.kernel import encode, scan


def true_activity(sequences: Sequence[str], settings: Mapping[str, Any],
                  ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Noiseless activity of each sequence (rows; `ids` or 0..n-1) in each cell type (columns) under the
    validated `dataset.demo` settings."""
    return true_activity_and_sites(sequences, settings, ids)[0]


def true_sites(sequences: Sequence[str], settings: Mapping[str, Any],
               ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The sites that drive `true_activity`, one row per site and cell type, laid out like the simulation's
    ground truth table plus `presence` (1 unless overlapping alternatives share the bases)."""
    return true_activity_and_sites(sequences, settings, ids)[1]


def true_activity_and_sites(sequences: Sequence[str], settings: Mapping[str, Any],
                            ids: Sequence[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both `true_activity` and `true_sites` from a single scan."""
    sequences = _checked(sequences)
    catalogue = load_catalogue()
    motifs = catalogue_motifs(catalogue, settings["jaspar_release"])
    sites = find_sites(sequences, catalogue, motifs, settings)
    gc = np.array([(sequence.count("C") + sequence.count("G")) / len(sequence) for sequence in sequences])
    activity, contribution, cooperative = noiseless_activity(sites, catalogue, gc, float(settings["gc_effect"]))
    index = pd.RangeIndex(len(sequences)) if ids is None else pd.Index(list(ids), name="id")
    table = sites_frame(sites, np.asarray(index, dtype=object), catalogue, motifs, contribution, cooperative)
    table.insert(table.columns.get_loc("strength") + 1, "presence",
                 np.repeat(sites.presence, len(catalogue.cell_types)))
    return pd.DataFrame(activity, index=index, columns=list(catalogue.cell_types)), table


def find_sites(sequences: Sequence[str], catalogue: Catalogue, motifs: Sequence[Motif],
               settings: Mapping[str, Any]) -> Sites:
    """The catalogue's sites in upper-case A/C/G/T `sequences`, each with its strength and presence."""
    if settings.get("site_pvalue") is None:
        raise InputError("the demo's truth needs dataset.demo.site_pvalue: without it, planted sites need not "
                         "pass any scan threshold, so a scan cannot find them again")
    scorers = [site_scorer(motif, float(settings["site_pvalue"])) for motif in motifs]
    codes, starts = encode(sequences)
    hits = scan(codes, starts, [len(sequence) for sequence in sequences],
                [(scorer.forward, scorer.reverse) for scorer in scorers], [scorer.threshold for scorer in scorers])
    width = np.array([motif.width for motif in motifs], dtype=np.int64)[hits.matrix]
    bits, strength = np.zeros(len(hits)), np.zeros(len(hits))
    for index, motif in enumerate(motifs):
        rows = np.flatnonzero(hits.matrix == index)
        window = codes[(starts[hits.sequence[rows]] + hits.start[rows])[:, None] + np.arange(motif.width)]
        bases = np.where(hits.strand[rows, None] == 1, 3 - window[:, ::-1], window)  # in the motif's orientation
        bits[rows], strength[rows] = site_scores(motif, float(settings["site_pseudocount"]), bases)
    sampling = np.log([tf.sampling_weight for tf in catalogue.transcription_factors])[hits.matrix]
    presence = layout_presence(hits.sequence, hits.start, hits.start + width, sampling + bits * np.log(2.0))
    keep = np.flatnonzero(presence > 0)
    text = np.array([sequences[row][first:first + size] for row, first, size
                     in zip(hits.sequence[keep], hits.start[keep], width[keep], strict=True)], dtype=object)
    return Sites(hits.sequence[keep], hits.matrix[keep], hits.start[keep], width[keep], hits.strand[keep] == 1,
                 strength[keep], text, presence[keep])


def layout_presence(sequence: np.ndarray, start: np.ndarray, end: np.ndarray, log_weight: np.ndarray) -> np.ndarray:
    """Each window's share of the layout weight in its cluster of overlapping windows (see the module docstring).

    Windows are sorted by sequence and then start; `end` is exclusive. A lone window gets exactly 1.
    """
    presence = np.ones(len(start))
    if len(start) == 0:
        return presence
    span = int(end.max()) + 1  # one offset per sequence keeps clusters from running across sequences
    reach = np.maximum.accumulate(sequence * span + end)
    edges = np.flatnonzero(np.r_[True, sequence[1:] * span + start[1:] >= reach[:-1], True])
    for first, last in pairwise(edges):
        if last - first > 1:
            presence[first:last] = _cluster_presence(start[first:last], end[first:last], log_weight[first:last])
    return presence


def _cluster_presence(start: np.ndarray, end: np.ndarray, log_weight: np.ndarray) -> np.ndarray:
    """Forward-backward over one cluster: the layouts left of a window times those right of it."""
    by_end, by_start = np.argsort(end, kind="stable"), np.argsort(start, kind="stable")
    before = np.searchsorted(end[by_end], start, side="right")  # windows ending at or before each start
    after = len(start) - np.searchsorted(start[by_start], end, side="left")  # windows starting at or after each end
    left_count, left = _sweep(by_end, before, log_weight)
    right_count, right = _sweep(by_start[::-1], after, log_weight)
    most = left_count[before] + 1 + right_count[after] == left_count[-1]
    return np.where(most, np.exp(left[before] + log_weight + right[after] - left[-1]), 0.0)


def _sweep(order: np.ndarray, compatible: np.ndarray, log_weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For the first k windows of `order` (k = 0..n): the most sites that fit, and the log of the summed weight of
    the layouts with that many. Window w joins the layouts of the first `compatible[w]` windows of `order`."""
    count = np.zeros(len(order) + 1, dtype=np.int64)
    total = np.zeros(len(order) + 1)
    for k, window in enumerate(order):
        with_it = (count[compatible[window]] + 1, total[compatible[window]] + log_weight[window])
        without = (count[k], total[k])
        if with_it[0] == without[0]:
            count[k + 1], total[k + 1] = without[0], np.logaddexp(without[1], with_it[1])
        else:
            count[k + 1], total[k + 1] = max(with_it, without)
    return count, total


def _checked(sequences: Sequence[str]) -> list[str]:
    """Upper-case copies; the model knows A, C, G and T only (an N has no GC content and no site)."""
    sequences = [sequence.upper() for sequence in sequences]
    letters = set().union(*map(set, sequences)) if sequences else set()
    if letters - set("ACGT") or not all(sequences):
        raise InputError(f"the demo's truth scores non-empty A/C/G/T sequences; found {sorted(letters - set('ACGT'))}"
                         " or an empty sequence")
    return sequences
