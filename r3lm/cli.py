"""The `r3lm` command line: every workflow rule is one of these subcommands."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from r3lm.errors import InputError

log = logging.getLogger("r3lm")


def _download(args: argparse.Namespace) -> None:
    from r3lm.data.download import download

    download(args.url, args.out, sha256=args.sha256, progress=not args.no_progress)


def _simulate(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.data.simulate import write_simulation

    write_simulation(load_config(args.config)["dataset"]["demo"], args.out, args.ground_truth)


def _prepare_data(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.data.prepare import prepare_dataset

    prepare_dataset(load_config(args.config), args.out_dir, source_path=args.input)


def _motif_settings(args: argparse.Namespace) -> dict:
    """The config's `motifs` block (schema defaults) with the command-line overrides."""
    from r3lm.config import validate_config

    overrides = {key: value for key, value in (("jaspar_release", args.jaspar_release), ("pvalue", args.pvalue),
                                               ("background", args.background)) if value is not None}
    return validate_config({"motifs": overrides}, source="command line")


def _scan_file(args: argparse.Namespace) -> tuple:
    from r3lm.data.sequences import read_sequences
    from r3lm.io import table_kind
    from r3lm.motifs.scan import background_for, build_motif_set, scan_sequences

    table_kind(args.out)
    config = _motif_settings(args)
    sequences = read_sequences(args.sequences, id_column=args.id_column, sequence_column=args.sequence_column)
    settings = config["motifs"]
    motif_set = build_motif_set(settings, background_for(settings, sequences["sequence"].tolist()))
    hits = scan_sequences(sequences["id"].tolist(), sequences["sequence"].tolist(), motif_set, threads=args.threads,
                          device=args.device)
    return config, sequences, hits


def _scan(args: argparse.Namespace) -> None:
    from r3lm.io import write_table

    _, _, hits = _scan_file(args)
    write_table(hits, args.out)


def _rcc(args: argparse.Namespace) -> None:
    from r3lm.io import write_table
    from r3lm.rcc.build import cards_for_table
    from r3lm.rcc.grammar import GrammarSettings

    config, sequences, hits = _scan_file(args)
    cards = cards_for_table(sequences.assign(cell_type=args.cell_type), hits,
                            GrammarSettings.from_config(config["rcc"]["grammar"]), with_grammar=args.grammar_tags)
    write_table(cards, args.out)


def _scan_shard(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.motifs.shards import scan_shard

    scan_shard(load_config(args.config), args.data_dir, args.shard, args.out, threads=args.threads)


def _gather_hits(args: argparse.Namespace) -> None:
    from r3lm.motifs.shards import gather_hits

    gather_hits(args.shard_files, args.out)


def _motif_table(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.motifs.shards import write_motif_table

    write_motif_table(load_config(args.config), args.data_dir, args.out)


def _motif_file(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.motifs.shards import write_motif_file

    write_motif_file(load_config(args.config), args.out)


def _build_cards(args: argparse.Namespace) -> None:
    from r3lm.config import load_config
    from r3lm.rcc.build import write_cards

    write_cards(load_config(args.config), args.table, args.hits, args.out)


def _add_sequence_input(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sequences", required=True,
                        help="FASTA (.fa/.fasta/.fna, optionally .gz) or a table (.tsv/.csv/.parquet)")
    parser.add_argument("--out", required=True, help="output: .parquet, .tsv, .csv (optionally .gz) or .jsonl")
    parser.add_argument("--id-column", default="id", help="table input: the id column (default: id)")
    parser.add_argument("--sequence-column", default="sequence", help="table input: the sequence column")
    parser.add_argument("--jaspar-release", default=None, help="JASPAR2026 (default) or JASPAR2024")
    parser.add_argument("--pvalue", type=float, default=None, help="FIMO p-value threshold (default 5e-5)")
    parser.add_argument("--background", choices=["uniform", "input"], default=None,
                        help="uniform (default) or estimated from the input sequences")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu",
                        help="cpu (exact k-mer index kernel), or a torch device such as cuda (exact dense kernel)")


CONFIG_HELP = "workflow config: a YAML file, or the config as a JSON string (validated either way)"


def _subcommand(commands: argparse._SubParsersAction, name: str, help_text: str,
                handler: Callable[[argparse.Namespace], None], *, config: bool) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text)
    if config:
        parser.add_argument("--config", required=True, help=CONFIG_HELP)
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="r3lm", description=__doc__)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    download = _subcommand(commands, "download", "resumable download with a recorded SHA-256", _download, config=False)
    download.add_argument("--url", action="append", required=True, help="URL to try (repeat for mirrors, in order)")
    download.add_argument("--out", required=True, help="destination file")
    download.add_argument("--sha256", default=None, help="expected checksum (optional)")
    download.add_argument("--no-progress", action="store_true", help="no progress bar")

    simulate = _subcommand(commands, "simulate", "simulate the demo MPRA from JASPAR matrices", _simulate, config=True)
    simulate.add_argument("--out", required=True, help="measurements parquet")
    simulate.add_argument("--ground-truth", required=True, help="planted sites and their contributions (parquet)")

    prepare = _subcommand(commands, "prepare-data", "filter, split, level and sample a dataset", _prepare_data, config=True)
    prepare.add_argument("--out-dir", required=True, help="folder for {train,val,test,test_subset}.parquet")
    prepare.add_argument("--input", default=None, help="the source file (Gosai table or simulated demo)")

    scan = _subcommand(commands, "scan", "FIMO-exact motif scan of sequences against JASPAR", _scan, config=False)
    _add_sequence_input(scan)

    rcc = _subcommand(commands, "rcc", "Regulatory Context Cards for sequences in one cell type", _rcc, config=False)
    _add_sequence_input(rcc)
    rcc.add_argument("--cell-type", required=True, help="cell type named on every card")
    rcc.add_argument("--grammar-tags", action="store_true", help="add the Grammar Tags line to the card text")

    shard = _subcommand(commands, "scan-shard", "workflow step: scan one shard of a prepared dataset", _scan_shard, config=True)
    shard.add_argument("--data-dir", required=True, help="the prepared dataset's folder")
    shard.add_argument("--shard", type=int, required=True, help="0-based shard index (of motifs.shards)")
    shard.add_argument("--out", required=True, help="hits parquet")
    shard.add_argument("--threads", type=int, default=1)

    gather = _subcommand(commands, "gather-hits", "workflow step: concatenate shard hits", _gather_hits, config=False)
    gather.add_argument("--out", required=True, help="hits parquet")
    gather.add_argument("shard_files", nargs="+", help="shard hit tables")

    motif_table = _subcommand(commands, "motif-table", "workflow step: scanned and skipped motifs", _motif_table, config=True)
    motif_table.add_argument("--data-dir", required=True, help="the prepared dataset's folder (input background)")
    motif_table.add_argument("--out", required=True, help="motif table parquet")

    motif_file = _subcommand(commands, "motif-file", "the configured JASPAR set as a MEME-format file", _motif_file, config=True)
    motif_file.add_argument("--out", required=True, help="MEME-format motif file")

    cards = _subcommand(commands, "build-cards", "workflow step: cards for one split table", _build_cards, config=True)
    cards.add_argument("--table", required=True, help="a split table of the prepared dataset")
    cards.add_argument("--hits", required=True, help="the dataset's gathered hits")
    cards.add_argument("--out", required=True, help="cards parquet")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler: Callable[[argparse.Namespace], None] = args.handler
    try:
        handler(args)
    except InputError as error:
        print(f"r3lm {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
