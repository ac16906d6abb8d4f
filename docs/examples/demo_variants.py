"""A toy genome and VCF from the demo's held-out sequences, to try `r3lm variants` where there is no genome.

Every test sequence of the demo becomes its own contig, named by its id, between seeded random flanks of
FLANK bp: a variant's window reaches half the model's length (100 bp) past it on either side, so the window
of a variant anywhere in the element stays on the contig. The simulator planted each element's motif sites
and recorded them (data/ground_truth.parquet, 1-based closed coordinates), so we know which bases matter.

For `--elements` elements (seeded), each with a planted activator site that raises activity in the chosen
cell type, the VCF holds six variants: an SNV, a 4-bp insertion and a 4-bp deletion at the middle of the
element's strongest such site, and the same three at a place at least MARGIN bp from every planted site.
The labels table says which is which. With `--random-records N` a second VCF holds N random SNVs and indels
anywhere on the elements (timing, not biology).

    python docs/examples/demo_variants.py --run results/demo --out toy/
    r3lm variants --model results/demo/runs/main/models/cnn --vcf toy/toy_variants.vcf \
        --genome toy/toy_genome.fa --out toy/variants.tsv
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

FLANK = 150  # bp of random sequence either side of an element: more than half a 200-bp window
MARGIN = 5  # bp an "outside" variant keeps from every planted site
INDEL_LENGTH = 4  # bases deleted or inserted
BASES = np.array(list("ACGT"))
RANDOM_KINDS = {"snv": 0.8, "insertion": 0.1, "deletion": 0.1}
RANDOM_MAX_INDEL = 10
SITE_COLUMNS = ["seq_id", "site_index", "tf", "role", "start", "end"]  # planted_sites: then one per cell type


@dataclass(frozen=True)
class ToyVariants:
    genome: Path
    vcf: Path
    labels: Path  # id, element, kind, where, tf, site_start, site_end, contribution
    random_vcf: Path | None


def test_elements(run: Path) -> pd.DataFrame:
    """The held-out sequences (id, sequence), one row each, in id order."""
    test = pd.read_parquet(run / "data" / "test.parquet", columns=["id", "sequence"])
    return test.drop_duplicates("id").sort_values("id", ignore_index=True)


def planted_sites(run: Path, ids: pd.Series) -> pd.DataFrame:
    """One row per planted site of these elements: seq_id, site_index, tf, role, start, end (1-based,
    closed) and the site's contribution to activity in each cell type (one column per cell type)."""
    truth = pd.read_parquet(run / "data" / "ground_truth.parquet")
    truth = truth[truth["seq_id"].isin(set(ids))]
    wide = truth.pivot_table(index=SITE_COLUMNS, columns="cell_type", values="contribution").reset_index()
    wide.columns.name = None
    return wide


def write_genome(elements: pd.DataFrame, path: Path, rng: np.random.Generator) -> dict[str, int]:
    """Each element between random flanks, as its own contig; returns the contig lengths."""
    lengths = {}
    with open(path, "w") as fasta:
        for name, sequence in zip(elements["id"], elements["sequence"], strict=True):
            left, right = ("".join(rng.choice(BASES, FLANK)) for _ in range(2))
            contig = left + sequence + right
            fasta.write(f">{name}\n" + "".join(f"{contig[i:i + 60]}\n" for i in range(0, len(contig), 60)))
            lengths[name] = len(contig)
    return lengths


def record(contig: str, sequence: str, centre: int, kind: str, name: str, rng: np.random.Generator,
           indel_length: int = INDEL_LENGTH) -> tuple[str, int, str, str, str]:
    """A VCF record (CHROM, POS, ID, REF, ALT) at the element's 0-based base `centre`: an SNV of it, an
    insertion right after it, or a deletion of `indel_length` bases around it. Indels keep VCF's anchor base,
    the base before the deleted or inserted ones."""
    anchor = centre - indel_length // 2 - 1 if kind == "deletion" else centre
    base = sequence[anchor]
    if kind == "snv":
        ref, alt = base, str(rng.choice([other for other in "ACGT" if other != base]))
    elif kind == "deletion":
        ref, alt = sequence[anchor:anchor + indel_length + 1], base
    else:
        ref, alt = base, base + "".join(rng.choice(BASES, indel_length))
    return contig, FLANK + anchor + 1, name, ref, alt


def span(centre: int, indel_length: int = INDEL_LENGTH) -> slice:
    """The bases any of a place's three variants reads: a deletion's anchor to an insertion's."""
    return slice(centre - indel_length // 2 - 1, centre + indel_length - indel_length // 2)


def curated_variants(elements: pd.DataFrame, sites: pd.DataFrame, cell_type: str, count: int,
                     rng: np.random.Generator) -> tuple[list[tuple[str, int, str, str, str]], pd.DataFrame]:
    """Six variants per chosen element (see the module docstring), and their labels."""
    activators = sites[(sites["role"] == "activator") & (sites[cell_type] > 0)]
    strongest = activators.sort_values([cell_type, "site_index"], ascending=[False, True]).drop_duplicates("seq_id")
    chosen = strongest.iloc[np.sort(rng.choice(len(strongest), size=min(count, len(strongest)), replace=False))]
    sequences = dict(zip(elements["id"], elements["sequence"], strict=True))
    records, labels = [], []
    for site in chosen.itertuples():
        sequence = sequences[site.seq_id]
        middle = (site.start + site.end) // 2 - 1  # 0-based; every span stays inside a site of >= 9 bp
        occupied = np.zeros(len(sequence), dtype=bool)
        for other in sites[sites["seq_id"] == site.seq_id].itertuples():
            occupied[max(other.start - 1 - MARGIN, 0):other.end + MARGIN] = True
        free = [centre for centre in range(INDEL_LENGTH, len(sequence) - INDEL_LENGTH)
                if not occupied[span(centre)].any()]
        places = [("site", middle)] + ([("outside", int(rng.choice(free)))] if free else [])
        for where, centre in places:
            for kind in ("snv", "insertion", "deletion"):
                name = f"{site.seq_id}_{kind}_{where}"
                records.append(record(site.seq_id, sequence, centre, kind, name, rng))
                labels.append({"id": name, "element": site.seq_id, "kind": kind, "where": where, "tf": site.tf,
                               "site_start": site.start, "site_end": site.end,
                               "contribution": getattr(site, cell_type)})
    return records, pd.DataFrame(labels)


def random_variants(elements: pd.DataFrame, count: int,
                    rng: np.random.Generator) -> list[tuple[str, int, str, str, str]]:
    """`count` random SNVs and indels (1-10 bp) on the elements, in contig and position order."""
    kinds = rng.choice(list(RANDOM_KINDS), size=count, p=list(RANDOM_KINDS.values()))
    picks = rng.integers(len(elements), size=count)
    records = []
    for number, (kind, pick) in enumerate(zip(kinds, picks, strict=True)):
        name, sequence = elements["id"].iat[pick], elements["sequence"].iat[pick]
        length = int(rng.integers(1, RANDOM_MAX_INDEL + 1))
        centre = int(rng.integers(length, len(sequence) - length))
        records.append(record(name, sequence, centre, str(kind), f"random{number + 1}", rng, indel_length=length))
    order = {name: index for index, name in enumerate(elements["id"])}
    return sorted(records, key=lambda row: (order[row[0]], row[1]))


def write_vcf(records: list[tuple[str, int, str, str, str]], lengths: dict[str, int], path: Path) -> None:
    header = ["##fileformat=VCFv4.2", *(f"##contig=<ID={name},length={length}>" for name, length in lengths.items()),
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines = [f"{chrom}\t{pos}\t{name}\t{ref}\t{alt}\t.\tPASS\t." for chrom, pos, name, ref, alt in records]
    path.write_text("\n".join(header + lines) + "\n")


def build(run: Path, out: Path, *, cell_type: str = "HepG2", elements: int = 40, random_records: int = 0,
          seed: int = 0) -> ToyVariants:
    """Write toy_genome.fa, toy_variants.vcf, toy_variants_labels.tsv (and random_variants.vcf) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    table = test_elements(run)
    sites = planted_sites(run, table["id"])
    if cell_type not in sites.columns:
        raise SystemExit(f"no cell type {cell_type!r} in {run / 'data' / 'ground_truth.parquet'}")
    genome = out / "toy_genome.fa"
    lengths = write_genome(table, genome, rng)
    records, labels = curated_variants(table, sites, cell_type, elements, rng)
    order = {name: index for index, name in enumerate(table["id"])}
    write_vcf(sorted(records, key=lambda row: (order[row[0]], row[1])), lengths, out / "toy_variants.vcf")
    labels.to_csv(out / "toy_variants_labels.tsv", sep="\t", index=False)
    random_vcf = None
    if random_records:
        random_vcf = out / "random_variants.vcf"
        write_vcf(random_variants(table, random_records, rng), lengths, random_vcf)
    return ToyVariants(genome, out / "toy_variants.vcf", out / "toy_variants_labels.tsv", random_vcf)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("results/demo"), help="the demo's results folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the genome, VCF and labels")
    parser.add_argument("--cell-type", default="HepG2", help="the cell type whose activator sites are hit")
    parser.add_argument("--elements", type=int, default=40, help="elements with six variants each")
    parser.add_argument("--random-records", type=int, default=0, help="random records in random_variants.vcf")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    made = build(args.run, args.out, cell_type=args.cell_type, elements=args.elements,
                 random_records=args.random_records, seed=args.seed)
    print("\n".join(f"{field}: {value}" for field, value in vars(made).items() if value is not None))


if __name__ == "__main__":
    main()
