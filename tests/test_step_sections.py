"""A workflow step reads only the config sections it declares with its command, refuses a config that lacks
one, and its rule passes exactly those (issue 27: a result must follow from the config that is written down)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r3lm.cli import main
from r3lm.commands import COMMANDS, OneOf
from r3lm.config import load_config
from r3lm.steps import step_sections

STEPS = sorted(name for name, command in COMMANDS.items() if command.sections)


def placeholder_arguments(name: str, folder: Path) -> list[str]:
    """A value for every required argument of step `name`: the config is checked before any is read."""
    argv: list[str] = []
    for argument in COMMANDS[name].arguments:
        names, options = argument.arguments[0] if isinstance(argument, OneOf) else argument
        positional = not names[0].startswith("-")
        if not (positional or options.get("required") or isinstance(argument, OneOf)):
            continue
        value = str(options["choices"][0]) if "choices" in options else (
            "0" if options.get("type") is int else str(folder / names[0].strip("-").replace("-", "_")))
        values = [value] * (options["nargs"] if isinstance(options.get("nargs"), int) else 1)
        argv += values if positional else [names[0], *values]
    return argv


def test_every_config_step_declares_its_sections() -> None:
    """Steps take a config only through declared sections (check-config alone reads a whole file)."""
    whole = sorted(name for name, command in COMMANDS.items() if command.config)
    assert whole == ["check-config"] and len(STEPS) >= 20


@pytest.mark.parametrize("name", STEPS)
def test_a_step_refuses_a_config_without_one_of_its_sections(name: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    sections = step_sections(name)
    dropped = sections[-1]
    config = json.dumps({section: {} for section in sections if section != dropped})
    assert main(["step", name, "--config", config, *placeholder_arguments(name, tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [(f"r3lm step {name}: error: settings: step {name} reads config section(s) {dropped}, which were "
                      "not given (a step's sections are declared with its command in r3lm/steps/)")]
    assert list(tmp_path.iterdir()) == []


def test_a_step_gets_only_its_sections(tmp_path: Path) -> None:
    """Reading an undeclared section is a declaration bug, named as such, not a silent schema default; a YAML
    file is a user's whole config (its defaults included), cut to the step's sections."""
    config = load_config(json.dumps({"rcc": {"max_motifs": 3}, "motifs": {}}), ("rcc",), "build-cards")
    assert list(config) == ["rcc"] and config["rcc"]["max_motifs"] == 3
    with pytest.raises(KeyError, match="step build-cards reads config section 'motifs' without declaring it"):
        config["motifs"]
    file = tmp_path / "mine.yaml"
    file.write_text("rcc: {max_motifs: 4}\n")
    from_file = load_config(file, ("rcc", "levels"), "tag-cards")
    assert list(from_file) == ["rcc", "levels"] and from_file["rcc"]["max_motifs"] == 4
