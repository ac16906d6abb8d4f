"""Score the variants of a VCF with a fast bundle: each allele's predicted effect on activity, per cell type.

Records are read with cyvcf2 as a stream, `chunk_size` variants at a time, and each chunk is written before
the next is read, so memory stays bounded on a whole-genome VCF. The VCF need not be sorted or indexed; an
index (.tbi or .csi) is read only when `regions` are asked for.

Which records become variants:

* a multi-allelic record becomes one variant per ALT allele;
* with `pass_only`, a record is kept only when its FILTER is PASS or '.' (no filter applied: cyvcf2 reports
  both alike); otherwise FILTER is ignored;
* refused, counted in the log and never scored: symbolic alleles (<DEL>, <INS:ME>, ...), the spanning
  deletion *, breakends (an ALT with [ or ], or a leading or trailing '.'), a record without an ALT allele,
  alleles with letters other than A, C, G, T, N, and variants whose window would run off the contig;
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
from r3lm.deploy.fast import FastModel, load_fast
from r3lm.errors import InputError, require_file
from r3lm.io import atomic_path, table_kind

log = logging.getLogger(__name__)

VARIANT_COLUMNS = ["chrom", "pos", "id", "ref", "alt", "cell_type", "ref_predicted", "alt_predicted", "delta",
                   "ref_level", "alt_level"]
DEFAULT_CHUNK = 4096  # variants per chunk: two windows each, one model call
LISTED_CONTIGS = 5  # how many of the genome's contigs a missing-contig error names
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
                 regions: Sequence[str] | None = None) -> None:
        from cyvcf2 import VCF

        self.vcf, self.genome, self.length, self.pass_only = require_file(vcf, "VCF"), Path(genome), length, pass_only
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
            self.counts.variants += 1
            yield Variant(chrom, int(record.POS), record.ID or ".", ref, alt, *pair)

    def _segment(self, record: Any, number: int, fasta: Any, chrom: str, ref: str,
                 start: int) -> tuple[str | None, int]:
        """The reference around the variant, long enough for any ALT window, after checking REF against it;
        None when the window would start before the contig."""
        where = f"{self._where(number)}, {chrom}:{record.POS}"
        if chrom not in fasta:
            contigs = list(fasta.keys())
            shown = ", ".join(contigs[:LISTED_CONTIGS]) + (", ..." if len(contigs) > LISTED_CONTIGS else "")
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


def score_variants(model: FastModel, variants: Iterable[Variant], cell_types: Sequence[str], *,
                   chunk_size: int = DEFAULT_CHUNK) -> Iterator[pd.DataFrame]:
    """The variant table, chunk by chunk: each chunk's distinct windows in one model call."""
    if chunk_size < 1:
        raise InputError(f"chunk size must be at least 1, got {chunk_size}")
    iterator = iter(variants)
    while chunk := list(islice(iterator, chunk_size)):
        distinct = list(dict.fromkeys(window for variant in chunk for window in (variant.ref_window,
                                                                                  variant.alt_window)))
        index = {window: row for row, window in enumerate(distinct)}
        predicted = model.predict(distinct)
        ref = predicted[[index[variant.ref_window] for variant in chunk]]
        alt = predicted[[index[variant.alt_window] for variant in chunk]]
        yield variant_table(model, chunk, ref, alt, cell_types)


def variant_table(model: FastModel, chunk: Sequence[Variant], ref: np.ndarray, alt: np.ndarray,
                  cell_types: Sequence[str]) -> pd.DataFrame:
    """One row per variant and cell type, variants in input order, cell types in the order asked."""
    columns = [model.cell_types.index(cell) for cell in cell_types]
    ref, alt = ref[:, columns], alt[:, columns]
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
                 cell_types: Sequence[str] | None = None, pass_only: bool = False, chunk_size: int = DEFAULT_CHUNK,
                 regions: Sequence[str] | None = None, device: str = "auto", batch_size: int | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Every scorable variant of `vcf` through a fast bundle into `out` (a table by extension); returns the
    counts and timing that the log line states.

    CLI: r3lm variants --model DIR --vcf FILE.vcf[.gz] --genome GENOME.fa --out FILE.{parquet,tsv,csv}[.gz]
         [--cell-types A B ...] [--pass-only] [--chunk-size 4096] [--regions chr1:1-1000000 ...]
         [--device auto] [--batch-size N] [--no-progress]
    """
    table_kind(out)  # an unknown output type fails before any work
    model = load_fast(model_dir, device=device, batch_size=batch_size)
    chosen = model.check_cell_types(cell_types)
    reader = VariantReader(vcf, genome, model.sequence_length, pass_only=pass_only, regions=regions)
    started = time.perf_counter()
    with table_stream(out) as write, tqdm(desc="variants", unit="variant", disable=not progress) as bar:
        wrote = False
        for chunk in score_variants(model, reader, chosen, chunk_size=chunk_size):
            write(chunk)
            wrote = True
            bar.update(len(chunk) // len(chosen))
        if not wrote:  # a table with its columns, so that the output always reads back
            write(pd.DataFrame({column: pd.Series(dtype=object) for column in VARIANT_COLUMNS}))
    seconds = time.perf_counter() - started
    counts = reader.counts
    skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(counts.skipped.items())) or "none"
    log.info("scored %d variants from %d records in %d cell types with the %s bundle (%d bp windows) in %.1f s "
             "(%.0f variants/s); skipped: %s", counts.variants, counts.records, len(chosen), model.kind,
             model.sequence_length, seconds, counts.variants / max(seconds, 1e-9), skipped)
    return {**counts.summary(), "cell_types": chosen, "window": model.sequence_length,
            "seconds": round(seconds, 3)}
