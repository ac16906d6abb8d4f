"""Load and validate the workflow configuration; the JSON schema is the one home of every default."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import best_match

from r3lm.errors import InputError, require_file

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


def _with_defaults(validator_class: type) -> type:
    """A validator that fills `default` values while it validates (nested objects too)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # type: ignore[no-untyped-def]
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


_DefaultingValidator = _with_defaults(Draft202012Validator)


def _coerce_text(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """Turn text into the schema's number/boolean/null where unambiguous.

    `snakemake --config 'rcc={grammar_tags: true}'` parses nested values with YAML's BaseLoader,
    so every scalar arrives as text; ablation overrides must still validate.
    """
    if "$ref" in schema:
        referenced = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
        schema = {**referenced, **schema,
                  "properties": {**referenced.get("properties", {}), **schema.get("properties", {})}}
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {key: _coerce_text(item, properties.get(key, extra if isinstance(extra, dict) else {}), root)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_coerce_text(item, schema.get("items", {}), root) for item in value]
    if not isinstance(value, str):
        return value
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if "string" in types or not types:
        return value
    text = value.strip()
    if "null" in types and text.lower() in {"null", "none", "~"}:
        return None
    if "boolean" in types and text.lower() in {"true", "false"}:
        return text.lower() == "true"
    for kind, parse in (("integer", int), ("number", float)):
        if kind in types:
            try:
                return parse(text)
            except ValueError:
                pass
    return value


def load_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def validate_config(config: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """Return a validated copy of `config` with defaults filled; raise InputError naming the bad key."""
    if not isinstance(config, Mapping):
        raise InputError(f"the config must be a mapping of keys to values, not a {type(config).__name__}", path=source)
    schema = load_schema()
    filled = _coerce_text(copy.deepcopy(dict(config)), schema, schema)
    error = best_match(_DefaultingValidator(schema).iter_errors(filled))
    if error is not None:
        key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise InputError(f"invalid value at key '{key}': {error.message}", path=source)
    return filled


JSON_SOURCE = "settings"  # how errors name a config given as a JSON string


def load_config(path: str | Path, sections: Sequence[str] = (), step: str = "") -> dict[str, Any]:
    """Read a YAML config file, or a JSON string when `path` starts with '{'. With `sections` (a workflow
    step's) the step gets only those, and a JSON string (what its rule passes) must give every one: a result
    follows from the config its rule passed, never from a schema default standing in for a section the rule
    left out. A YAML file is a whole config, its defaults included, as the workflow reads it."""
    raw, source = _read_config(path)
    config = validate_config(raw, source=source)
    missing = [section for section in sections if section not in raw] if source == JSON_SOURCE else []
    if missing:
        raise InputError(f"step {step} reads config section(s) {', '.join(missing)}, which were not given "
                         f"(a step's sections are declared with its command in r3lm/steps/)", path=source)
    return StepConfig(step, {section: config[section] for section in sections}) if sections else config


class StepConfig(dict):
    """A step's config sections; reading another one is a bug in the step's declaration, named as such."""

    def __init__(self, step: str, sections: Mapping[str, Any]) -> None:
        super().__init__(sections)
        self.step = step

    def __missing__(self, section: str) -> Any:
        raise KeyError(f"step {self.step} reads config section {section!r} without declaring it "
                       f"(declared: {', '.join(self)})")


def _read_config(path: str | Path) -> tuple[dict[str, Any], str]:
    text = str(path)
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text), JSON_SOURCE
        except json.JSONDecodeError as error:
            raise InputError(f"the config string is not valid JSON: {error}", path=JSON_SOURCE) from error
    file = require_file(path, "config file")
    try:
        return yaml.safe_load(file.read_text()) or {}, str(file)
    except yaml.YAMLError as error:
        raise InputError(_yaml_problem(error), path=file) from error


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line with the 1-based line and column of the problem, which the YAML parser reports over several."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(error, "context", None)
    return f"not valid YAML{where}: {problem}" + (f" ({context})" if context else "")
