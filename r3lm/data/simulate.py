"""The `demo` dataset: a simulated three-cell-type MPRA whose ground truth is known site by site.

Real MPRA data cannot tell us whether a model (or an LLM rationale) found the right motifs; a
simulation can. The model is small on purpose, each part there so that one kind of claim can be
checked against the truth:

* Background: each sequence gets its own GC content g ~ Uniform(gc_range) and i.i.d. bases with
  P(G) = P(C) = g / 2. GC varies between sequences so a model can learn a shortcut from it, and
  `gc_effect * (gc - 0.5)` (gc of the final sequence) makes that shortcut real but weak, as in
  real reporters, where GC-rich fragments tend to be more active.
* Planted sites: Poisson(mean_sites) per sequence, capped to what fits without overlap; the TF is
  drawn by its catalogue `sampling_weight` (r3lm/data/demo_tfs.yaml), the site is sampled base by
  base from the real JASPAR matrix (smoothed by `site_pseudocount`), put on a random strand at a
  random non-overlapping position. Sampling instead of pasting the consensus gives sites of
  graded affinity, so `strength` (log-odds score rescaled to 0..1 between the worst and best
  possible score, uniform background) is a quantity a model has to estimate, not a constant.
  With `site_pvalue`, a site is redrawn until FIMO (uniform background, its motif pseudocount) would
  report it at that p-value: planted sites are then real binding sites that a scan at that threshold
  can list on the card, so what drives activity is evidence the card can carry. Without it, most
  sampled sites of short matrices stay below a strict threshold and the card shows background hits.
* Cell-type specificity: a site adds `weight[tf][cell type] * strength`. Erythroid TFs act in
  K562, hepatocyte TFs in HepG2, neuroblastoma TFs in SK-N-SH, AP-1/CREB/SP/KLF/ETS everywhere;
  REST represses in K562 and HepG2 but not in SK-N-SH, so the same site has opposite relevance
  across cell types and "motif present" is not the same as "motif matters".
* Cooperativity: for catalogue pairs, two sites whose centres are at most `max_spacing` bp apart
  add a bonus that decays linearly to 0 at `max_spacing` (no jump at the limit) and is scaled
  down when they sit on opposite strands. This is the grammar (spacing, orientation) that a
  bag-of-motifs model cannot represent; each site of the pair is credited half of the bonus.
* Measurement: Gaussian noise with sd `noise_sd` on the additive sum, so that
  activity_noiseless = baseline[cell] + gc_effect * (gc - 0.5) + sum of the site contributions
  holds exactly in the ground truth.

Everything random comes from one numpy Generator seeded with `seed`, drawn in a fixed order, so a
seed and a catalogue determine the data set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from r3lm.errors import InputError
from r3lm.motifs.jaspar import Motif, motifs_by_name
from r3lm.motifs.pssm import ScoredMotif, score_motif, uniform_background

CATALOGUE_PATH = Path(__file__).with_name("demo_tfs.yaml")
ROLES = ("activator", "repressor")
_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
MAX_SITE_DRAWS = 1000  # rounds of redrawing the sites below site_pvalue (the rarest catalogue TF passes ~1 in 8)


@dataclass(frozen=True)
class CatalogueTF:
    jaspar_name: str
    note: str
    role: str
    sampling_weight: float
    weight: dict[str, float]


@dataclass(frozen=True)
class CooperativePair:
    tfs: tuple[str, str]
    note: str
    bonus: dict[str, float]
    max_spacing: float
    opposite_strand_factor: float


@dataclass(frozen=True)
class Catalogue:
    cell_types: tuple[str, ...]
    baseline: dict[str, float]
    transcription_factors: tuple[CatalogueTF, ...]
    cooperative_pairs: tuple[CooperativePair, ...]

    def matrix(self, per_cell_type: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Rows of per-cell-type values as an array with columns in `cell_types` order."""
        return np.array([[row[cell] for cell in self.cell_types] for row in per_cell_type], dtype=np.float64)


def load_catalogue(path: str | Path = CATALOGUE_PATH) -> Catalogue:
    """Read and check the TF catalogue; a wrong sign or a missing cell type would silently bias the truth."""
    raw = yaml.safe_load(Path(path).read_text())
    cell_types = tuple(raw["cell_types"])

    def per_cell(values: Mapping[str, float], what: str) -> dict[str, float]:
        if set(values) != set(cell_types):
            raise ValueError(f"{path}: {what} must give exactly the cell types {list(cell_types)}")
        return {cell: float(values[cell]) for cell in cell_types}

    factors = []
    for entry in raw["transcription_factors"]:
        name = entry["jaspar_name"]
        weight = per_cell(entry["weight"], f"weight of {name}")
        role = entry["role"]
        if role not in ROLES:
            raise ValueError(f"{path}: role of {name} must be one of {ROLES}, not {role!r}")
        sign = 1.0 if role == "activator" else -1.0
        if any(sign * value < 0 for value in weight.values()):
            raise ValueError(f"{path}: {name} has role {role} but a weight of the opposite sign")
        if entry["sampling_weight"] <= 0:
            raise ValueError(f"{path}: sampling_weight of {name} must be positive")
        factors.append(CatalogueTF(name, entry["note"], role, float(entry["sampling_weight"]), weight))
    names = [factor.jaspar_name for factor in factors]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: a TF is listed twice")

    pairs = []
    for entry in raw.get("cooperative_pairs") or []:
        first, second = entry["tfs"]
        for name in (first, second):
            if name not in names:
                raise ValueError(f"{path}: cooperative pair names {name}, which is not in the catalogue")
        if entry["max_spacing"] <= 0:
            raise ValueError(f"{path}: max_spacing of pair {first} + {second} must be positive")
        if not 0 <= entry["opposite_strand_factor"] <= 1:  # same strand is the preferred orientation
            raise ValueError(f"{path}: opposite_strand_factor of pair {first} + {second} must be in 0..1")
        pairs.append(CooperativePair((first, second), entry["note"],
                                     per_cell(entry["bonus"], f"bonus of pair {first} + {second}"),
                                     float(entry["max_spacing"]), float(entry["opposite_strand_factor"])))
    return Catalogue(cell_types, per_cell(raw["baseline"], "baseline"), tuple(factors), tuple(pairs))


def catalogue_motifs(catalogue: Catalogue, release: str) -> list[Motif]:
    """The JASPAR matrix of each catalogue TF, in catalogue order."""
    available = motifs_by_name(release)
    missing = [tf.jaspar_name for tf in catalogue.transcription_factors if tf.jaspar_name not in available]
    if missing:
        raise ValueError(f"demo TF catalogue: {', '.join(missing)} not found in JASPAR release {release}")
    return [available[tf.jaspar_name] for tf in catalogue.transcription_factors]


@dataclass
class Sites:
    """Sites, sorted by sequence and then by position (one entry per site).

    `presence` is each site's probability of being there: None (all 1) for planted sites; below 1 where the
    truth (r3lm/data/truth.py) found overlapping alternatives, of which one layout at a time is real.
    """

    sequence: np.ndarray  # 0-based sequence index
    tf: np.ndarray  # index into the catalogue
    start: np.ndarray  # 0-based start on the + strand
    width: np.ndarray
    minus_strand: np.ndarray
    strength: np.ndarray
    text: np.ndarray  # the site as it reads on the + strand
    presence: np.ndarray | None = None


def simulate(settings: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate the MPRA described by the validated `dataset.demo` settings.

    Returns (measurements: one row per sequence and cell type, ground_truth: one row per planted
    site and cell type); see the module docstring for the model.
    """
    catalogue = load_catalogue()
    motifs = catalogue_motifs(catalogue, settings["jaspar_release"])
    n_sequences, length = int(settings["n_sequences"]), int(settings["sequence_length"])
    gc_low, gc_high = (float(value) for value in settings["gc_range"])
    if gc_low > gc_high:
        raise InputError(f"dataset.demo.gc_range must be [low, high], got {[gc_low, gc_high]}")
    widest = max(motif.width for motif in motifs)
    if length < widest:
        raise InputError(f"dataset.demo.sequence_length {length} is shorter than the widest motif ({widest} bp)")

    rng = np.random.default_rng(settings["seed"])
    codes = _background(rng, n_sequences, length, gc_low, gc_high)
    sites = _plant_sites(rng, codes, catalogue, motifs, float(settings["mean_sites"]),
                         float(settings["site_pseudocount"]), settings.get("site_pvalue"))
    gc = ((codes == 1) | (codes == 2)).mean(axis=1)
    noiseless, contribution, cooperative = noiseless_activity(sites, catalogue, gc, float(settings["gc_effect"]))
    n_cells = len(catalogue.cell_types)
    measured = noiseless + rng.normal(0.0, float(settings["noise_sd"]), size=noiseless.shape)

    ids = np.array([f"sim{index:06d}" for index in range(1, n_sequences + 1)], dtype=object)
    sequences = np.array([row.decode() for row in _BASES[codes].view(f"S{length}").ravel().tolist()],
                         dtype=object)
    n_sites = np.bincount(sites.sequence, minlength=n_sequences).astype(np.int64)
    cells = np.array(catalogue.cell_types, dtype=object)
    measurements = pd.DataFrame({
        "id": np.repeat(ids, n_cells),
        "sequence": np.repeat(sequences, n_cells),
        "cell_type": np.tile(cells, n_sequences),
        "activity": measured.ravel(),
        "activity_noiseless": noiseless.ravel(),
        "gc": np.repeat(gc, n_cells),
        "n_sites": np.repeat(n_sites, n_cells),
    })
    return measurements, sites_frame(sites, ids, catalogue, motifs, contribution, cooperative)


def noiseless_activity(sites: Sites, catalogue: Catalogue, gc: np.ndarray,
                       gc_effect: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The additive model without noise, one row per sequence of `gc`: baseline + gc_effect * (gc - 0.5) + the
    sites' contributions. Also returns each site's contribution and cooperative share, as (site, cell type).

    A site adds presence * weight * strength plus its share of the pair bonuses; shared with the truth
    function so that a designed sequence is scored by the very formula the simulation used.
    """
    cooperative = _cooperative_bonus(sites, catalogue)
    weights = catalogue.matrix([tf.weight for tf in catalogue.transcription_factors])
    strength = sites.strength if sites.presence is None else sites.presence * sites.strength
    contribution = weights[sites.tf] * strength[:, None] + cooperative
    site_sum = np.column_stack([np.bincount(sites.sequence, weights=contribution[:, cell], minlength=len(gc))
                                for cell in range(len(catalogue.cell_types))])
    noiseless = catalogue.matrix([catalogue.baseline]) + gc_effect * (gc[:, None] - 0.5) + site_sum
    return noiseless, contribution, cooperative


def _background(rng: np.random.Generator, n_sequences: int, length: int,
                gc_low: float, gc_high: float) -> np.ndarray:
    """Base codes (0..3 = A, C, G, T) with a per-sequence GC content, as an (n, length) uint8 array."""
    gc = rng.uniform(gc_low, gc_high, size=n_sequences)[:, None]
    draws = rng.random((n_sequences, length), dtype=np.float32)
    # Cumulative thresholds for A | C | G | T: (1 - g) / 2, 1 / 2, (1 + g) / 2.
    return ((draws >= (1.0 - gc) / 2.0).astype(np.uint8) + (draws >= 0.5)
            + (draws >= (1.0 + gc) / 2.0)).astype(np.uint8)


def _exclusive_group_cumsum(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Sum of `values` over the earlier entries of the same group (groups are contiguous runs)."""
    total = np.cumsum(values) - values
    first = np.r_[True, group[1:] != group[:-1]] if len(group) else np.zeros(0, dtype=bool)
    return total - np.maximum.accumulate(np.where(first, total, 0))


def _plant_sites(rng: np.random.Generator, codes: np.ndarray, catalogue: Catalogue,
                 motifs: Sequence[Motif], mean_sites: float, pseudocount: float,
                 site_pvalue: float | None = None) -> Sites:
    """Draw sites, write them into `codes` in place, and return them sorted by sequence and position."""
    n_sequences, length = codes.shape
    widths_of_tf = np.array([motif.width for motif in motifs], dtype=np.int64)
    sampling = np.array([tf.sampling_weight for tf in catalogue.transcription_factors])

    sequence = np.repeat(np.arange(n_sequences), rng.poisson(mean_sites, size=n_sequences))
    tf = rng.choice(len(motifs), size=len(sequence), p=sampling / sampling.sum())
    fits = _exclusive_group_cumsum(widths_of_tf[tf], sequence) + widths_of_tf[tf] <= length
    sequence, tf = sequence[fits], tf[fits]
    width = widths_of_tf[tf]

    # Uniform non-overlapping layout: shuffle the sites of each sequence, then spread the free
    # bases as sorted random gaps in front of them.
    layout = np.lexsort((rng.random(len(sequence)), sequence))
    tf, width = tf[layout], width[layout]
    free = length - np.bincount(sequence, weights=width, minlength=n_sequences).astype(np.int64)
    gaps = rng.integers(0, free[sequence] + 1)
    start = gaps[np.lexsort((gaps, sequence))] + _exclusive_group_cumsum(width, sequence)
    minus_strand = rng.random(len(sequence)) < 0.5

    strength = np.zeros(len(sequence))
    text = np.empty(len(sequence), dtype=object)
    for index, motif in enumerate(motifs):
        chosen = np.flatnonzero(tf == index)
        probabilities = _smoothed_probabilities(motif, pseudocount)
        bases = _draw_sites(rng, motif, probabilities, len(chosen), site_pvalue)
        strength[chosen] = site_scores(motif, pseudocount, bases)[1]
        bases = np.where(minus_strand[chosen, None], 3 - bases[:, ::-1], bases).astype(np.uint8)
        codes[sequence[chosen, None], start[chosen, None] + np.arange(motif.width)] = bases
        text[chosen] = [row.decode() for row in _BASES[bases].view(f"S{motif.width}").ravel().tolist()]
    return Sites(sequence, tf, start, width, minus_strand, strength, text)


def _draw_sites(rng: np.random.Generator, motif: Motif, probabilities: np.ndarray, count: int,
                site_pvalue: float | None) -> np.ndarray:
    """`count` sites as (count, width) base codes; with `site_pvalue`, rows are redrawn until the scan would
    report each one at that p-value (rejection sampling keeps the sites' graded affinity above it)."""
    cumulative = np.cumsum(probabilities, axis=0)[None, :3, :]

    def draw(rows: int) -> np.ndarray:
        return (rng.random((rows, motif.width))[:, None, :] > cumulative).sum(axis=1)

    bases = draw(count)
    if site_pvalue is None or count == 0:
        return bases
    scored = site_scorer(motif, site_pvalue)
    columns = np.arange(motif.width)
    for _ in range(MAX_SITE_DRAWS):
        weak = np.flatnonzero(scored.forward[columns, bases].sum(axis=1) < scored.threshold)
        if weak.size == 0:
            return bases
        bases[weak] = draw(weak.size)
    raise InputError(f"demo TF catalogue: sites of {motif.name} ({motif.matrix_id}) drawn from its matrix reach "
                     f"p < {site_pvalue:g} too rarely ({MAX_SITE_DRAWS} draws); raise dataset.demo.site_pvalue")


def site_scorer(motif: Motif, site_pvalue: float) -> ScoredMotif:
    """FIMO's scoring of `motif` at `site_pvalue` (uniform background, its motif pseudocount): a planted site
    is redrawn until it reaches `threshold` on this matrix, and the truth scans with the same one."""
    scored = score_motif(motif, uniform_background(), site_pvalue)
    if scored is None:
        raise InputError(f"demo TF catalogue: {motif.name} ({motif.matrix_id}, {motif.width} bp) cannot reach "
                         f"dataset.demo.site_pvalue {site_pvalue:g}; choose another matrix or a larger p-value")
    return scored


def site_scores(motif: Motif, pseudocount: float, bases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-odds score (bits, against a uniform background) of sites given as (n, width) base codes read in the
    motif's orientation, and `strength`: that score rescaled to 0..1 between the worst and best possible one."""
    log_odds = np.log2(_smoothed_probabilities(motif, pseudocount) / 0.25)
    score = log_odds[bases, np.arange(motif.width)].sum(axis=1)
    worst, best = log_odds.min(axis=0).sum(), log_odds.max(axis=0).sum()
    return score, (score - worst) / (best - worst)


def _smoothed_probabilities(motif: Motif, pseudocount: float) -> np.ndarray:
    """Column frequencies plus `pseudocount` sequences spread evenly over ACGT.

    JASPAR columns hold from hundreds to ~10^5 counts, so the pseudocount is taken relative to one
    frequency-normalised column; otherwise it would smooth some matrices and not others.
    """
    return (motif.frequencies + pseudocount / 4.0) / (1.0 + pseudocount)


def _cooperative_bonus(sites: Sites, catalogue: Catalogue) -> np.ndarray:
    """Each site's share of the pair bonuses, as a (site, cell type) array.

    With `sites.presence`, a pair counts with the product of its sites' presences, and overlapping sites (two
    alternatives for the same bases, never both there) are no pair.
    """
    share = np.zeros((len(sites.sequence), len(catalogue.cell_types)))
    tf_index = {tf.jaspar_name: index for index, tf in enumerate(catalogue.transcription_factors)}
    centre = sites.start + (sites.width - 1) / 2.0
    for pair in catalogue.cooperative_pairs:
        first = np.flatnonzero(sites.tf == tf_index[pair.tfs[0]])
        second = np.flatnonzero(sites.tf == tf_index[pair.tfs[1]])
        candidates = pd.DataFrame({"sequence": sites.sequence[first], "i": first}).merge(
            pd.DataFrame({"sequence": sites.sequence[second], "j": second}), on="sequence")
        i, j = candidates["i"].to_numpy(), candidates["j"].to_numpy()
        if pair.tfs[0] == pair.tfs[1]:  # a homotypic pair: count each couple of sites once
            i, j = i[i < j], j[i < j]
        distance = np.abs(centre[i] - centre[j])
        close = distance <= pair.max_spacing
        i, j, distance = i[close], j[close], distance[close]
        orientation = np.where(sites.minus_strand[i] == sites.minus_strand[j], 1.0, pair.opposite_strand_factor)
        half = 0.5 * orientation * (1.0 - distance / pair.max_spacing)
        if sites.presence is not None:
            apart = (sites.start[i] + sites.width[i] <= sites.start[j]) | (sites.start[j] + sites.width[j] <= sites.start[i])
            half = np.where(apart, half * sites.presence[i] * sites.presence[j], 0.0)
        half = half[:, None] * catalogue.matrix([pair.bonus])
        np.add.at(share, i, half)
        np.add.at(share, j, half)
    return share


def sites_frame(sites: Sites, ids: np.ndarray, catalogue: Catalogue, motifs: Sequence[Motif],
                contribution: np.ndarray, cooperative: np.ndarray) -> pd.DataFrame:
    """One row per site and cell type: the ground truth table's layout (the truth function's sites use it too)."""
    n_cells = len(catalogue.cell_types)
    factors = catalogue.transcription_factors

    def per_tf(values: Sequence[str]) -> np.ndarray:
        return np.repeat(np.array(values, dtype=object)[sites.tf], n_cells)

    # 1-based rank from the 5' end, like the coordinates.
    site_index = _exclusive_group_cumsum(np.ones(len(sites.sequence), dtype=np.int64), sites.sequence) + 1
    return pd.DataFrame({
        "seq_id": np.repeat(ids[sites.sequence], n_cells),
        "site_index": np.repeat(site_index, n_cells).astype(np.int64),
        "tf": per_tf([tf.jaspar_name for tf in factors]),
        "matrix_id": per_tf([motif.matrix_id for motif in motifs]),
        "family": per_tf([motif.family for motif in motifs]),
        "start": np.repeat(sites.start + 1, n_cells).astype(np.int64),
        "end": np.repeat(sites.start + sites.width, n_cells).astype(np.int64),
        "strand": np.repeat(np.where(sites.minus_strand, "-", "+").astype(object), n_cells),
        "site": np.repeat(sites.text, n_cells),
        "strength": np.repeat(sites.strength, n_cells),
        "cell_type": np.tile(np.array(catalogue.cell_types, dtype=object), len(sites.sequence)),
        "role": per_tf([tf.role for tf in factors]),
        "contribution": contribution.ravel(),
        "cooperative_bonus": cooperative.ravel(),
    })
