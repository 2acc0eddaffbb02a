"""Turn pydantic's validation errors into one line a person can act on."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from digest.errors import ConfigError


def _where(loc: tuple[Any, ...]) -> str:
    """("smtp", "port") -> "[smtp] port"; ("interests", "keywords", 2) -> "[interests] keywords[2]"."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    index = "".join(f"[{p}]" for p in loc if isinstance(p, int))
    if not parts:
        return ""  # a check of the whole table: its message names the keys
    if len(parts) == 1:
        return f"{parts[0]}{index}"
    return f"[{'.'.join(parts[:-1])}] {parts[-1]}{index}"


# pydantic's wording for the common type errors, said the way a person editing a TOML file thinks of it.
_PLAIN = {
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": 'must be a list, like ["a", "b"]',
    "tuple_type": 'must be a list, like ["a", "b"]',
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "path_type": "must be a path, as a string",
}


def _explain(error: ErrorDetails, allowed: list[str]) -> str:
    kind = error["type"]
    got = error.get("input")
    if kind == "extra_forbidden":
        hint = f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""
        return f"is not a known key{hint}; remove it or fix its spelling"
    if kind == "missing":
        return "is required"
    message = _PLAIN.get(kind) or error["msg"]
    message = message.replace("Input should be", "must be").replace("Value error, ", "")
    message = message[0].lower() + message[1:] if message else message
    if isinstance(got, (str, int, float, bool)) and "(got " not in message:
        return f"{message} (got {got!r})"
    return message


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
    fields = getattr(current, "model_fields", {})
    return [f.alias or name for name, f in fields.items() if not f.exclude]


# Problems listed one per line; beyond this many, the rest are counted.
MAX_PROBLEMS = 5


def format_validation_error(source: str, model: type[BaseModel], exc: ValidationError) -> str:
    """One line per problem (up to MAX_PROBLEMS), each naming the file, the key and what is expected."""
    errors = exc.errors()
    lines = []
    for error in errors[:MAX_PROBLEMS]:
        where = _where(error["loc"])
        lines.append(f"{source}: {where + ' ' if where else ''}{_explain(error, _allowed_keys(model, error['loc']))}")
    rest = len(errors) - MAX_PROBLEMS
    if rest > 0:
        lines[-1] += f" (and {rest} more problem{'s' if rest > 1 else ''})"
    return "\n".join(lines)


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file or raise ConfigError naming the file and line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; create it or pass another path") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text; save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
