"""The commands a user runs: check a config, scan sequences or build their cards, predict and explain."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from typing import TYPE_CHECKING, Any

from r3lm.commands import OneOf, arg, command
from r3lm.errors import InputError
from r3lm.io import OutputFile

if TYPE_CHECKING:
    import pandas as pd

    from r3lm.pipeline import SequencePipeline

log = logging.getLogger("r3lm")

SEQUENCE_INPUT = (
    arg("--sequences", required=True, help="FASTA (.fa/.fasta/.fna, optionally .gz) or a table (.tsv/.csv/.parquet)"),
    arg("--out", type=OutputFile, required=True, help="output: .parquet, .tsv, .csv (optionally .gz) or .jsonl"),
    arg("--id-column", default="id", help="table input: the id column (default: id)"),
    arg("--sequence-column", default="sequence", help="table input: the sequence column"),
    arg("--jaspar-release", default=None, help="JASPAR2026 (default) or JASPAR2024"),
    arg("--pvalue", type=float, default=None, help="FIMO p-value threshold (default 5e-5)"),
    arg("--background", choices=["uniform", "nrdb", "input"], default=None,
        help="uniform (default), nrdb (FIMO's default without --bfile) or estimated from the input"),
    arg("--threads", type=int, default=2),
    arg("--device", default="cpu",
        help="cpu (exact k-mer index kernel), or a torch device such as cuda (exact dense kernel)"),
)
MODEL_HELP = "a model folder (results/<dataset>/runs/<run>/models/<mode>)"
CELL_TYPE_HELP = "one of the model's cell types"
BUNDLE_HELP = "a fast bundle (models/cnn, models/motif_ridge) or an LLM bundle (models/<mode>)"


@command("check-config", "validate a config file (YAML, every key with the line of a syntax error, and the "
         "settings that must fit together), as the workflow does before planning", config=True)
def check_config(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.paths import check_plan

    check_plan(config)  # the settings that only fail together, as the workflow checks them
    print(f"{args.config}: valid")


def _sequence_pipeline(args: argparse.Namespace, *, with_grammar: bool | None = None
                       ) -> tuple[SequencePipeline, pd.DataFrame]:
    """The sequences to scan, and a pipeline with the config's `motifs` block (schema defaults) under the
    command-line overrides, its background estimated from them when asked."""
    from r3lm.config import validate_config
    from r3lm.data.sequences import read_sequences
    from r3lm.io import table_kind
    from r3lm.pipeline import SequencePipeline

    table_kind(args.out)
    overrides = {key: value for key, value in (("jaspar_release", args.jaspar_release), ("pvalue", args.pvalue),
                                               ("background", args.background)) if value is not None}
    config = validate_config({"motifs": overrides}, source="command line")
    sequences = read_sequences(args.sequences, id_column=args.id_column, sequence_column=args.sequence_column)
    pipeline = SequencePipeline.from_config(config, sequences["sequence"].tolist(), with_grammar=with_grammar,
                                            threads=args.threads, device=args.device)
    return pipeline, sequences


@command("scan", "FIMO-exact motif scan of sequences against JASPAR", *SEQUENCE_INPUT)
def scan(args: argparse.Namespace) -> None:
    from r3lm.io import write_table

    pipeline, sequences = _sequence_pipeline(args)
    write_table(pipeline.hits(sequences), args.out)


@command("rcc", "Regulatory Context Cards for sequences in one cell type", *SEQUENCE_INPUT,
         arg("--cell-type", required=True, help="cell type named on every card"),
         arg("--grammar-tags", action="store_true", help="add the Grammar Tags line to the card text"))
def rcc(args: argparse.Namespace) -> None:
    from r3lm.io import write_table

    if not args.cell_type.strip():
        raise InputError("--cell-type is empty; give the cell type the cards describe (e.g. K562)")
    pipeline, sequences = _sequence_pipeline(args, with_grammar=args.grammar_tags)
    write_table(pipeline.cards(sequences.assign(cell_type=args.cell_type)), args.out)


def _rank_target(value: str) -> str:
    """`specificity:CELL` -> CELL."""
    kind, _, cell = value.partition(":")
    if kind != "specificity" or not cell:
        raise argparse.ArgumentTypeError(f"expected specificity:CELL_TYPE (e.g. specificity:K562), got {value!r}")
    return cell


@command("predict", "activity, level and rationale for new sequences",
         arg("--model", required=True, help=MODEL_HELP + ", or a fast bundle (models/cnn, models/motif_ridge)"),
         arg("--cell-type", required=True, help=CELL_TYPE_HELP + ", or all: one column set per cell type"),
         OneOf((arg("--fasta", help="FASTA file (optionally .gz)"),
                arg("--table", help="table with id and sequence columns (.tsv, .csv, .parquet)"),
                arg("--bed", help="BED regions (chrom, start, end[, name, score, strand]); needs --genome"))),
         arg("--genome", help="genome FASTA the BED regions refer to (indexed with pyfaidx)"),
         arg("--id-column", default="id", help="--table: the id column (default: id)"),
         arg("--sequence-column", default="sequence", help="--table: the sequence column"),
         arg("--out", type=OutputFile, required=True, help="output: .tsv, .csv, .parquet or .jsonl (text kinds .gz)"),
         arg("--rank-by", type=_rank_target, default=None, metavar="specificity:CELL",
             help="with --cell-type all: add CELL's specificity against the other cell types and sort safest first"),
         arg("--specificity", choices=["min_gap", "mean_gap"], default="min_gap",
             help="min_gap (CODA's MinGap: on-target minus the highest off-target) or mean_gap"),
         arg("--with-card", action="store_true", help="add each sequence's card as a column (LLM bundles)"),
         arg("--batch-size", type=int, default=None, help="default: sized to the device"),
         arg("--device", default="auto", help="auto (a CUDA GPU when present), cpu, cuda, cuda:1, ..."),
         arg("--backend", choices=["auto", "hf", "vllm"], default="auto",
             help="what writes the rationales: auto takes vLLM where it is installed for the device and there are at "
                  "least 32 sequences (it starts in ~30 s on a CPU, then writes ~2x as fast as hf, transformers)"),
         arg("--no-progress", action="store_true"))
def predict(args: argparse.Namespace) -> None:
    from r3lm.data.sequences import read_sequences
    from r3lm.deploy.fast import FastModel
    from r3lm.deploy.scorer import load
    from r3lm.deploy.specificity import rank_by_specificity
    from r3lm.io import table_kind, write_table
    from r3lm.llm.generate import backend_for

    table_kind(args.out)  # an unknown output type fails before any work
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # its INFO lines run to thousands of characters
    if args.rank_by is not None and args.cell_type != "all":
        raise InputError("--rank-by compares cell types: use it with --cell-type all")
    model = load(args.model, device=args.device, batch_size=args.batch_size, backend=args.backend)
    cells = model.check_cell_types(None if args.cell_type == "all" else args.cell_type)
    fast = isinstance(model, FastModel)
    sequences = read_sequences(args.fasta or args.table or args.bed, id_column=args.id_column,
                               sequence_column=args.sequence_column, genome=args.genome, allow_n=fast)
    named = dict(zip(sequences["id"], sequences["sequence"]))
    if not fast:  # nothing is loaded yet: the LLMs load on first use
        model = dataclasses.replace(model, backend=backend_for(args.backend, len(named)))
    progress = not args.no_progress
    if fast:
        table = model.score(named, cells, progress=progress)
    elif args.cell_type == "all":
        table = model.score_cell_types(named, cells, progress=progress)
    else:
        table = model.score(named, args.cell_type, with_card=args.with_card, progress=progress)
    if args.rank_by is not None:
        table = rank_by_specificity(table, args.rank_by, cells, method=args.specificity)
    write_table(table, args.out)
    log.info("wrote %d predictions to %s", len(table), args.out)


@command("variants", "each VCF variant's effect on activity: REF and ALT windows centred on it, per cell type",
         arg("--model", required=True, help=BUNDLE_HELP + "; an LLM bundle adds the motifs gained and lost"),
         arg("--vcf", required=True, help="VCF (.vcf or .vcf.gz); multi-allelic records are split"),
         arg("--genome", required=True, help="the genome FASTA the VCF refers to (indexed with pyfaidx)"),
         arg("--cell-type", default="all", help=CELL_TYPE_HELP + ", or all (default)"),
         arg("--out", type=OutputFile, required=True, help="output: .parquet, .tsv or .csv (text kinds .gz)"),
         arg("--pass-only", action="store_true", help="score only records whose FILTER is PASS or ."),
         arg("--chunk-size", type=int, default=None,
             help="variants per chunk, so memory stays bounded (default: thousands with a fast bundle, tens with an "
                  "LLM bundle)"),
         arg("--regions", nargs="+", default=None, help="only these regions (chr:start-end), read by the index"),
         arg("--rationales", action="store_true",
             help="LLM bundles with a Stage-I model (generated_cot): add ref_rationale and alt_rationale"),
         arg("--batch-size", type=int, default=None),
         arg("--device", default="auto"),
         arg("--no-progress", action="store_true"))
def variants(args: argparse.Namespace) -> None:
    from r3lm.deploy.variants import run_variants

    run_variants(args.model, args.vcf, args.genome, args.out,
                 cell_types=None if args.cell_type == "all" else [args.cell_type], pass_only=args.pass_only,
                 chunk_size=args.chunk_size, regions=args.regions, rationales=args.rationales, device=args.device,
                 batch_size=args.batch_size, progress=not args.no_progress)


@command("mutagenesis", "saturation mutagenesis: every single-base substitution's effect, and a logo",
         arg("--model", required=True,
             help=BUNDLE_HELP + "; an LLM bundle writes a rationale only for mutants whose card changes"),
         OneOf((arg("--sequence", help="the DNA sequence (A, C, G, T)"),
                arg("--fasta", help="FASTA file: its first record, or --id"))),
         arg("--id", default=None, help="--fasta: the record to mutate"),
         arg("--cell-type", default="all", help=CELL_TYPE_HELP + ", or all (default)"),
         arg("--out", type=OutputFile, required=True, help="effects table: .tsv, .csv or .parquet"),
         arg("--logo", type=OutputFile, default=None, help="PNG logo of the mean-centred effects"),
         arg("--batch-size", type=int, default=None),
         arg("--device", default="auto"),
         arg("--no-progress", action="store_true"))
def mutagenesis(args: argparse.Namespace) -> None:
    from r3lm.deploy.mutagenesis import run_mutagenesis

    name, sequence = "query", args.sequence
    if args.fasta is not None:
        from r3lm.data.sequences import read_sequences

        records = read_sequences(args.fasta)
        chosen = records if args.id is None else records[records["id"] == args.id]
        if chosen.empty:
            raise InputError(f"no record {args.id!r} in the FASTA", path=args.fasta)
        name, sequence = chosen["id"].iloc[0], chosen["sequence"].iloc[0]
    run_mutagenesis(args.model, sequence, args.out, cell_types=None if args.cell_type == "all" else [args.cell_type],
                    logo=args.logo, name=name, device=args.device, batch_size=args.batch_size,
                    progress=not args.no_progress)


@command("design", "cell-type-specific designs on a CNN bundle (ledidi, or tangermeme's greedy substitution), "
         "judged by a held-out CNN bundle when given",
         arg("--model", required=True, help="the design oracle: a CNN bundle (models/cnn); design with the CNN and "
                                            "explain with R3LM (r3lm explain)"),
         arg("--target", nargs="+", required=True, help="the target cell type(s)"),
         arg("--objective", choices=["min_gap", "max"], default=None,
             help="min_gap (target minus the highest elsewhere; default) or max (the target's activity)"),
         arg("--starts", default=None, help="natural starts, one design each: FASTA or a table (default: random)"),
         arg("--n", type=int, default=None, help="random starts: how many designs (default: design.n_designs)"),
         arg("--budget", type=int, default=None, help="at most this many edits per design (default: no limit)"),
         arg("--engine", choices=["ledidi", "greedy"], default=None, help="ledidi (default) or greedy"),
         arg("--iterations", type=int, default=None, help="ledidi's steps (default: design.iterations)"),
         arg("--seed", type=int, default=None),
         arg("--heldout", default=None, help="a second CNN bundle that judges the designs (heldout_<cell> columns)"),
         arg("--out", type=OutputFile, required=True, help="the designs: .parquet, .tsv or .csv"),
         arg("--fasta", type=OutputFile, default=None, help="the designs as FASTA too"))
def design(args: argparse.Namespace) -> None:
    from r3lm.config import validate_config
    from r3lm.data.sequences import read_sequences, write_fasta
    from r3lm.deploy.fast import load_fast
    from r3lm.design import design as run_design
    from r3lm.design import engine_settings, load_oracle
    from r3lm.design.judge import oracle_columns
    from r3lm.io import table_kind, write_table

    table_kind(args.out)
    if args.starts is not None and args.n is not None:
        raise InputError("give --starts or --n, not both: natural starts get one design each")
    given = {"objective": args.objective, "engine": args.engine, "iterations": args.iterations,
             "seed": args.seed, "budget": args.budget, "n_designs": args.n}
    settings = validate_config({"design": {key: value for key, value in given.items() if value is not None}},
                               source="command line")["design"]
    oracle = load_oracle(args.model)
    starts = None
    if args.starts is not None:
        records = read_sequences(args.starts, allow_n=False)
        starts = dict(zip(records["id"], records["sequence"], strict=True))
    designs = run_design(oracle, args.target, objective=settings["objective"], engine=settings["engine"],
                         seed=settings["seed"], budget=settings["budget"], settings=engine_settings(settings),
                         starts=starts, n_designs=None if starts is not None else settings["n_designs"])
    if args.heldout is not None:
        designs = oracle_columns(designs, oracle.cell_types, {"heldout": load_fast(args.heldout, device="cpu")})
    write_table(designs, args.out)
    if args.fasta is not None:
        write_fasta(designs["id"].tolist(), designs["sequence"].tolist(), args.fasta)
    log.info("wrote %d designs for %s to %s", len(designs), "+".join(args.target), args.out)


@command("explain", "one sequence's card, rationale and prediction, for a terminal",
         arg("--model", required=True, help=MODEL_HELP),
         arg("--cell-type", required=True, help=CELL_TYPE_HELP),
         arg("--sequence", required=True, help="the DNA sequence (A, C, G, T)"),
         arg("--device", default="auto", help="auto (a CUDA GPU when present), cpu, cuda, ..."))
def explain(args: argparse.Namespace) -> None:
    from r3lm.deploy.scorer import R3LM

    model = R3LM.load(args.model, device=args.device)
    print(model.explain(args.sequence, args.cell_type).to_text())
