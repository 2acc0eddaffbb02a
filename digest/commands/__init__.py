"""CLI commands, one module per domain; each only wires options to one library call."""

from __future__ import annotations

import importlib

import click

# Modules are listed here so that a new domain adds one line; a module missing while another
# issue is in flight must not break the CLI, so each is imported by name.
_MODULES = ["ingest", "subscribers", "rank", "preview", "send", "feeds", "demo"]


def _load() -> list[click.Command]:
    commands: list[click.Command] = []
    for name in _MODULES:
        try:
            module = importlib.import_module(f"digest.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"digest.commands.{name}":
                continue
            raise
        commands.extend(getattr(module, "COMMANDS"))
    return commands


COMMANDS = _load()
