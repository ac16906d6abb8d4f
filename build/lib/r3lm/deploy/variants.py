"""Score the variants of a VCF with a bundle: each allele's predicted effect on activity, per cell type.

Records are read with cyvcf2 as a stream, `chunk_size` variants at a time, and each chunk is written before
the next is read, so memory stays bounded on a whole-genome VCF. The VCF need not be sorted or indexed; an
index (.tbi or .csi) is read only when `regions` are asked for.

Which records become variants:

* a multi-allelic record becomes one variant per ALT allele;
* with `pass_only`, a record is kept only when its FILTER is PASS or '.' (no filter applied: cyvcf2 reports
  both alike); otherwise FILTER is ignored;
* refused, counted in the log and never scored: symbolic alleles (<DEL>, <INS:ME>, ...), the spanning
  deletion *, breakends (an ALT with [ or ], or a leading or trailing '.'), a record without an ALT allele,
  alleles with letters other than A, C, G, T, N, variants whose window would run off the contig, and, for an
  LLM bundle (trained on fully called sequences, as `r3lm predict` requires), variants with an N in a window;
* bad input stops with an InputError naming the file, the line (the record, with `regions`) and CHROM:POS:
  a contig the genome lacks, a REF that differs from the genome, a record the VCF parser cannot read.

Windows. L is the model's sequence length (its longest training sequence) and h = L // 2. The variant's
start, p = POS - 1 (0-based), sits at offset h in both windows:

* REF window: genome[p - h, p - h + L).
* ALT window: the same left flank genome[p - h, p), then ALT, then the reference after REF (from
  p + len(REF) on), cut to L on the right. A deletion thus pulls in more right flank, an insertion pushes it
  out (an insertion longer than L - h is itself cut). The left flank never moves, so both windows are aligned
  at the variant, and an SNV's windows differ at offset h only. VCF's anchor base of an indel (REF=AT,
  ALT=A) is kept: it is the same base in both windows.

Genome letters other than A, C, G, T (IUPAC codes) are read as N. Output: one row per variant and cell type:
chrom, pos, id, ref, alt, cell_type, ref_predicted, alt_predicted, delta (alt - ref), ref_level, alt_level.

An LLM bundle (r3lm.deploy.scorer) builds both windows' cards and adds two columns, the same in every cell
type: motifs_gained and motifs_lost, "NAME (FAMILY)" entries (" xN" when N copies), comma-separated, empty for
none. They compare how many hits of each motif (name and family) the two cards hold; where a hit sits does
not count, so a motif that an indel merely moves is neither lost nor gained. Only the flank both windows
hold is compared: an insertion of k bp pushes the REF window's last k bases out of the ALT window, so REF hits
ending there are left out, and a k-bp deletion pulls k new bases into the ALT window, so ALT hits ending there
are left out. With `rationales` it adds ref_rationale and alt_rationale, each window's rationale in that cell
type (bundles with a Stage-I model only). Without it, rationales are written only where the mode reads one
(generated_cot), and are not output; rcc_only and sequence_only predict without writing any.
"""

from __future__ import annotations

import gzip
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from itertools import islice, takewhile
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
from tqdm import tqdm

from r3lm.data.tables import open_genome
from r3lm.deploy.fast import FastModel
from r3lm.deploy.scorer import R3LM, load
from r3lm.errors import InputError, require_file
from r3lm.io import atomic_path, table_kind
from r3lm.logs import shortlist
from r3lm.rcc.card import Card

log = logging.getLogger(__name__)

VARIANT_COLUMNS = ["chrom", "pos", "id", "ref", "alt", "cell_type", "ref_predicted", "alt_predicted", "delta",
                   "ref_level", "alt_level"]
MOTIF_COLUMNS = ["motifs_gained", "motifs_lost"]  # LLM bundles: motifs the ALT card has more, and fewer, of
RATIONALE_COLUMNS = ["ref_rationale", "alt_rationale"]  # LLM bundles, on request
DEFAULT_CHUNK = 4096  # variants per chunk with a fast bundle: two windows each, one model call
LLM_CHUNK = 64  # with an LLM bundle, where each window costs a Stage-II pass (and a rationale in generated_cot)
N_IN_WINDOW = "N in a window (LLM bundles read A, C, G, T only)"
_NOT_ACGTN = re.compile(r"[^ACGTN]")
_ALLELE = re.compile(r"[ACGTN]+")


@dataclass(frozen=True)
class Variant:
    chrom: str
    pos: int  # 1-based, as in the VCF
    id: str
    ref: str
    alt: str
    ref_window: str
    alt_window: str


@dataclass
class VariantCounts:
    """What the stream read, scored and refused (refusals per ALT allele, by reason)."""

    records: int = 0
    variants: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        return {"records": self.records, "variants": self.variants, "skipped": dict(sorted(self.skipped.items()))}


def refusal(alt: str) -> str | None:
    """Why an ALT allele is no sequence to score, or None when it is one."""
    if alt.startswith("<"):
        return "symbolic allele"
    if alt == "*":
        return "spanning deletion (*)"
    if "[" in alt or "]" in alt or alt.startswith(".") or alt.endswith("."):
        return "breakend"
    return None if _ALLELE.fullmatch(alt) else "letters other than ACGTN"


def windows(segment: str, offset: int, ref: str, alt: str, length: int) -> tuple[str, str] | None:
    """The REF and ALT windows (see the module docstring) from a reference `segment` whose position
    `offset` is the variant's start; None when the segment is too short for either."""
    ref_window = segment[:length]
    alt_window = (segment[:offset] + alt + segment[offset + len(ref):])[:length]
    if len(ref_window) < length or len(alt_window) < length:
        return None
    return ref_window, alt_window


class VariantReader:
    """The VCF's scorable variants with their windows cut from the genome, as a stream."""

    def __init__(self, vcf: str | Path, genome: str | Path, length: int, *, pass_only: bool,
                 regions: Sequence[str] | None = None, allow_n: bool = True) -> None:
        from cyvcf2 import VCF

        self.vcf, self.genome, self.length, self.pass_only = require_file(vcf, "VCF"), Path(genome), length, pass_only
        self.allow_n = allow_n
        self.regions = list(regions or [])
        self.counts = VariantCounts()
        try:
            self.reader = VCF(str(self.vcf), lazy=True)
        except OSError as error:
            raise InputError(f"cannot read the VCF: {error}", path=self.vcf) from None
        if self.regions and not any(Path(f"{self.vcf}{suffix}").is_file() for suffix in (".tbi", ".csi")):
            raise InputError(f"reading regions ({', '.join(self.regions)}) needs the VCF's index (.tbi or .csi): "
                             "bgzip the VCF and run `bcftools index -t` (or `tabix -p vcf`) on it, or leave out "
                             "the regions", path=self.vcf)
        self.header_lines = None if self.regions else _header_lines(self.vcf)

    def __iter__(self) -> Iterator[Variant]:
        with open_genome(self.genome) as fasta:
            for number, record in enumerate(self._records(), start=1):
                self.counts.records += 1
                yield from self._variants(record, number, fasta)

    def _records(self) -> Iterator[Any]:
        """Every record, or those in `regions` (which need the VCF's index); a record the parser cannot read
        stops the stream with the line before it."""
        sources: Iterable[Any] = [self.reader(region) for region in self.regions] if self.regions else [self.reader]
        for source in sources:
            iterator = iter(source)
            while True:
                try:
                    record = next(iterator)
                except StopIteration:
                    break
                except Exception as error:  # noqa: BLE001 - cyvcf2 raises a bare Exception on a bad line
                    raise InputError(f"cannot parse the record after {self._where(self.counts.records)} "
                                     f"({str(error).splitlines()[0]})", path=self.vcf) from None
                yield record

    def _where(self, number: int) -> str:
        """A record's place for messages: its line, or its number where lines do not apply (regions, BCF)."""
        return f"record {number}" if self.header_lines is None else f"line {self.header_lines + number}"

    def _variants(self, record: Any, number: int, fasta: Any) -> Iterator[Variant]:
        alts = list(record.ALT)
        if not alts:
            self.counts.skipped["no ALT allele"] += 1
            return
        if self.pass_only and record.FILTER is not None:
            self.counts.skipped["FILTER not PASS"] += len(alts)
            return
        scorable = []
        for alt in alts:
            reason = refusal(alt.upper())
            if reason:
                self.counts.skipped[reason] += 1
            else:
                scorable.append(alt.upper())
        if not scorable:
            return
        chrom, ref, start = str(record.CHROM), str(record.REF).upper(), int(record.start)
        segment, offset = self._segment(record, number, fasta, chrom, ref, start)
        for alt in scorable:
            pair = windows(segment, offset, ref, alt, self.length) if segment is not None else None
            if pair is None:
                self.counts.skipped["window off the contig end"] += 1
                continue
            if not self.allow_n and any("N" in window for window in pair):
                self.counts.skipped[N_IN_WINDOW] += 1
                continue
            self.counts.variants += 1
            yield Variant(chrom, int(record.POS), record.ID or ".", ref, alt, *pair)

    def _segment(self, record: Any, number: int, fasta: Any, chrom: str, ref: str,
                 start: int) -> tuple[str | None, int]:
        """The reference around the variant, long enough for any ALT window, after checking REF against it;
        None when the window would start before the contig."""
        where = f"{self._where(number)}, {chrom}:{record.POS}"
        if chrom not in fasta:
            shown = shortlist(list(fasta.keys()))
            raise InputError(f"{where}: contig {chrom!r} is not in the genome {self.genome} ({shown}); is the VCF "
                             "on this genome build and naming?", path=self.vcf)
        contig = fasta[chrom]
        found = contig[start:start + len(ref)]
        if not _ALLELE.fullmatch(ref) or found != ref:
            raise InputError(f"{where}: REF {ref} differs from the genome's {found or '(past the contig end)'}; "
                             "is the VCF on this genome build?", path=self.vcf)
        offset = self.length // 2
        if start < offset:
            return None, offset
        segment = contig[start - offset:start - offset + self.length + len(ref)]
        return _NOT_ACGTN.sub("N", segment), offset


def _header_lines(vcf: Path) -> int | None:
    """How many header lines precede the first record of a (b)gzipped or plain VCF; None for a BCF."""
    with open(vcf, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open if compressed else open)(vcf, "rt") as handle:
            return sum(1 for _ in takewhile(lambda line: line.startswith("#"), handle))
    except (UnicodeDecodeError, OSError):  # binary: BCF
        return None


def score_variants(model: FastModel | R3LM, variants: Iterable[Variant], cell_types: Sequence[str], *,
                   chunk_size: int | None = None, rationales: bool = False) -> Iterator[pd.DataFrame]:
    """The variant table, chunk by chunk (None: the bundle kind's default size): each chunk's distinct windows
    scored together, a fast bundle's in one model call."""
    size = chunk_size if chunk_size is not None else DEFAULT_CHUNK if isinstance(model, FastModel) else LLM_CHUNK
    if size < 1:
        raise InputError(f"chunk size must be at least 1, got {size}")
    iterator = iter(variants)
    while chunk := list(islice(iterator, size)):
        distinct = list(dict.fromkeys(window for variant in chunk for window in (variant.ref_window,
                                                                                  variant.alt_window)))
        index = {window: row for row, window in enumerate(distinct)}
        ref_rows = [index[variant.ref_window] for variant in chunk]
        alt_rows = [index[variant.alt_window] for variant in chunk]
        if isinstance(model, FastModel):
            predicted = model.predict(distinct)[:, [model.cell_types.index(cell) for cell in cell_types]]
            yield variant_table(model, chunk, predicted[ref_rows], predicted[alt_rows], cell_types)
        else:
            yield llm_variant_table(model, chunk, distinct, (ref_rows, alt_rows), cell_types, rationales=rationales)


def variant_table(model: FastModel | R3LM, chunk: Sequence[Variant], ref: np.ndarray, alt: np.ndarray,
                  cell_types: Sequence[str]) -> pd.DataFrame:
    """One row per variant and cell type, variants in input order, cell types in the order asked (the columns
    of `ref` and `alt`)."""
    repeat = len(cell_types)
    table = pd.DataFrame({
        "chrom": np.repeat([variant.chrom for variant in chunk], repeat),
        "pos": np.repeat([variant.pos for variant in chunk], repeat).astype(np.int64),
        "id": np.repeat([variant.id for variant in chunk], repeat),
        "ref": np.repeat([variant.ref for variant in chunk], repeat),
        "alt": np.repeat([variant.alt for variant in chunk], repeat),
        "cell_type": np.tile(list(cell_types), len(chunk)),
        "ref_predicted": ref.ravel(), "alt_predicted": alt.ravel(), "delta": (alt - ref).ravel(),
    })
    for side, values in (("ref", ref), ("alt", alt)):
        table[f"{side}_level"] = np.column_stack([model.levels(values[:, i], cell)
                                                  for i, cell in enumerate(cell_types)]).ravel().astype(np.int64)
    return table[VARIANT_COLUMNS]


def llm_variant_table(model: R3LM, chunk: Sequence[Variant], distinct: Sequence[str],
                      rows: tuple[Sequence[int], Sequence[int]], cell_types: Sequence[str], *,
                      rationales: bool) -> pd.DataFrame:
    """`variant_table` through an LLM bundle, with the motifs gained and lost (and the rationales when asked);
    `rows` are each variant's REF and ALT rows in the `distinct` windows."""
    cards = model.card_rows(distinct, cell_types)  # window by window, the cell types inside
    if rationales or model.writes_rationales:
        cards["rationale"] = model.write_rationales(cards)
    predicted = model.predict_rows(cards).reshape(len(distinct), len(cell_types))
    ref_rows, alt_rows = rows
    table = variant_table(model, chunk, predicted[ref_rows], predicted[alt_rows], cell_types)
    motifs = [Card.from_json(text) for text in cards["card_json"].iloc[::len(cell_types)]]
    changes = [motif_changes(motifs[ref], motifs[alt], len(variant.alt) - len(variant.ref))
               for variant, ref, alt in zip(chunk, ref_rows, alt_rows, strict=True)]
    for column, values in zip(MOTIF_COLUMNS, zip(*changes, strict=True), strict=True):
        table[column] = np.repeat(list(values), len(cell_types))
    if rationales:
        texts = cards["rationale"].to_numpy().reshape(len(distinct), len(cell_types))
        table["ref_rationale"], table["alt_rationale"] = texts[ref_rows].ravel(), texts[alt_rows].ravel()
    return table


def motif_changes(ref_card: Card, alt_card: Card, shift: int) -> tuple[str, str]:
    """(gained, lost) from a variant's REF card to its ALT card, `shift` = len(ALT) - len(REF): motif counts by
    name and family over the flank both windows hold (see the module docstring)."""
    length = ref_card.length
    ref = _motif_counts(ref_card, last_end=length - max(shift, 0))
    alt = _motif_counts(alt_card, last_end=length - max(-shift, 0))
    return _motif_list(alt - ref), _motif_list(ref - alt)


def _motif_counts(card: Card, *, last_end: int) -> Counter[tuple[str, str]]:
    return Counter((hit.name, hit.family) for hit in card.motifs if hit.end <= last_end)


def _motif_list(counts: Counter[tuple[str, str]]) -> str:
    return ", ".join(name + (f" ({family})" if family else "") + (f" x{count}" if count > 1 else "")
                     for (name, family), count in sorted(counts.items()))


def variant_columns(model: FastModel | R3LM, *, rationales: bool) -> list[str]:
    """The output's columns: a fast bundle's, and an LLM bundle's additions."""
    if isinstance(model, FastModel):
        return VARIANT_COLUMNS
    return [*VARIANT_COLUMNS, *MOTIF_COLUMNS, *(RATIONALE_COLUMNS if rationales else [])]


class _ChunkWriter:
    """Appends chunks to one table file: parquet row groups, or text (`handle`) with the header once."""

    def __init__(self, path: Path, kind: str, handle: TextIO | None) -> None:
        self.path, self.kind, self.handle = path, kind, handle
        self.parquet: Any = None

    def write(self, frame: pd.DataFrame) -> None:
        if self.handle is None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            batch = pa.Table.from_pandas(frame, preserve_index=False)
            self.parquet = self.parquet or pq.ParquetWriter(self.path, batch.schema)
            self.parquet.write_table(batch)
        elif self.kind == ".jsonl":
            self.handle.write("".join(f"{line}\n" for line in frame.to_json(orient="records", lines=True).splitlines()))
        else:
            self.handle.write(frame.to_csv(sep="," if self.kind == ".csv" else "\t", index=False,
                                           header=self.handle.tell() == 0))

    def close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()


@contextmanager
def table_stream(path: str | Path) -> Iterator[Callable[[pd.DataFrame], None]]:
    """A write(frame) that appends chunks to a table of `path`'s kind (.parquet, .tsv, .csv, .jsonl; text
    kinds optionally .gz); the file appears only once the block succeeds."""
    kind, compression = table_kind(path)
    with atomic_path(path) as tmp, ExitStack() as stack:
        opener = gzip.open if compression else open
        handle = None if kind == ".parquet" else stack.enter_context(opener(tmp, "wt"))
        writer = _ChunkWriter(tmp, kind, handle)
        stack.callback(writer.close)
        yield writer.write


def run_variants(model_dir: str | Path, vcf: str | Path, genome: str | Path, out: str | Path, *,
                 cell_types: Sequence[str] | None = None, pass_only: bool = False, chunk_size: int | None = None,
                 regions: Sequence[str] | None = None, rationales: bool = False, device: str = "auto",
                 batch_size: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Every scorable variant of `vcf` through a bundle (fast or LLM) into `out` (a table by extension);
    returns the counts and timing that the log line states.

    CLI: r3lm variants --model DIR --vcf FILE.vcf[.gz] --genome GENOME.fa --out FILE.{parquet,tsv,csv}[.gz]
         [--cell-types A B ...] [--pass-only] [--chunk-size N] [--regions chr1:1-1000000 ...] [--rationales]
         [--device auto] [--batch-size N] [--no-progress]
    """
    table_kind(out)  # an unknown output type fails before any work
    model = load(str(model_dir), device, batch_size)
    if rationales and not (isinstance(model, R3LM) and model.writes_rationales):
        raise InputError(f"rationales asked for, but the {model.kind} bundle has no Stage-I model to write them "
                         "(a generated_cot bundle has one)", path=model_dir)
    chosen = model.check_cell_types(cell_types)
    reader = VariantReader(vcf, genome, model.sequence_length, pass_only=pass_only, regions=regions,
                           allow_n=isinstance(model, FastModel))
    started = time.perf_counter()
    with table_stream(out) as write, tqdm(desc="variants", unit="variant", disable=not progress) as bar:
        wrote = False
        for chunk in score_variants(model, reader, chosen, chunk_size=chunk_size, rationales=rationales):
            write(chunk)
            wrote = True
            bar.update(len(chunk) // len(chosen))
        if not wrote:  # a table with its columns, so that the output always reads back
            write(pd.DataFrame({column: pd.Series(dtype=object)
                                for column in variant_columns(model, rationales=rationales)}))
    seconds = time.perf_counter() - started
    counts = reader.counts
    skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(counts.skipped.items())) or "none"
    log.info("scored %d variants from %d records in %d cell types with the %s bundle (%d bp windows) in %.1f s "
             "(%.2f variants/s); skipped: %s", counts.variants, counts.records, len(chosen), model.kind,
             model.sequence_length, seconds, counts.variants / max(seconds, 1e-9), skipped)
    return {**counts.summary(), "cell_types": chosen, "window": model.sequence_length,
            "seconds": round(seconds, 3)}
