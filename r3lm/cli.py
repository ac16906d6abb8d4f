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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="r3lm", description=__doc__)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = "workflow config: a YAML file, or the config as a JSON string (validated either way)"

    download = commands.add_parser("download", help="resumable download with a recorded SHA-256")
    download.add_argument("--url", action="append", required=True, help="URL to try (repeat for mirrors, in order)")
    download.add_argument("--out", required=True, help="destination file")
    download.add_argument("--sha256", default=None, help="expected checksum (optional)")
    download.add_argument("--no-progress", action="store_true", help="no progress bar")
    download.set_defaults(handler=_download)

    simulate = commands.add_parser("simulate", help="simulate the demo MPRA from JASPAR matrices")
    simulate.add_argument("--config", required=True, help=config_help)
    simulate.add_argument("--out", required=True, help="measurements parquet")
    simulate.add_argument("--ground-truth", required=True, help="planted sites and their contributions (parquet)")
    simulate.set_defaults(handler=_simulate)

    prepare = commands.add_parser("prepare-data", help="filter, split, level and sample a dataset")
    prepare.add_argument("--config", required=True, help=config_help)
    prepare.add_argument("--out-dir", required=True, help="folder for {train,val,test,test_subset}.parquet")
    prepare.add_argument("--input", default=None, help="the source file (Gosai table or simulated demo)")
    prepare.set_defaults(handler=_prepare_data)
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
