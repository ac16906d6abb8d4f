"""How a subcommand is declared: its arguments above its handler, in one `@command(...)`.

A handler takes the parsed arguments, and with `config=True` also the validated workflow config, which the
dispatcher loads once from `--config` (every such command gets that option, first). A workflow step declares
instead the `sections` of the config it reads: its rule passes exactly those (workflow/rules/common.smk,
`settings`), the dispatcher refuses a config that lacks one, and the handler gets only those.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CONFIG_HELP = "workflow config: a YAML file, or the config as a JSON string (validated either way)"

Argument = tuple[tuple[str, ...], dict[str, Any]]


def arg(*names: str, **options: Any) -> Argument:
    """One `add_argument` call, written down for later."""
    return names, options


@dataclass(frozen=True)
class OneOf:
    """Arguments of which exactly one is given."""

    arguments: tuple[Argument, ...]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: tuple[Argument | OneOf, ...]
    handler: Callable[..., None]
    config: bool
    sections: tuple[str, ...]
    step: bool  # a workflow step: `r3lm step <name>`, apart from the user's commands

    @property
    def prog(self) -> str:
        """How the command is called, as its errors name it."""
        return f"r3lm step {self.name}" if self.step else f"r3lm {self.name}"

    @property
    def takes_config(self) -> bool:
        return self.config or bool(self.sections)

    def add_to(self, subparsers: argparse._SubParsersAction) -> None:
        parser = subparsers.add_parser(self.name, help=self.help)
        if self.takes_config:
            parser.add_argument("--config", required=True, help=CONFIG_HELP)
        for argument in self.arguments:
            if isinstance(argument, OneOf):
                group = parser.add_mutually_exclusive_group(required=True)
                for names, options in argument.arguments:
                    group.add_argument(*names, **options)
            else:
                names, options = argument
                parser.add_argument(*names, **options)


COMMANDS: dict[str, Command] = {}


def command(name: str, help_text: str, *arguments: Argument | OneOf, config: bool = False,
            sections: tuple[str, ...] = (), step: bool = False) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register the decorated handler as subcommand `name`."""
    def register(handler: Callable[..., None]) -> Callable[..., None]:
        if name in COMMANDS:  # `r3lm <name>` and `r3lm step <name>` share this registry
            raise ValueError(f"command {name!r} is declared twice")
        COMMANDS[name] = Command(name, help_text, arguments, handler, config, sections, step)
        return handler
    return register


def step(name: str, help_text: str, *arguments: Argument | OneOf, sections: tuple[str, ...] = ()
         ) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register the decorated handler as workflow step `name` (`r3lm step <name>`), reading config `sections`."""
    return command(name, help_text, *arguments, sections=sections, step=True)

