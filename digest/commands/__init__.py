"""CLI commands, one module per domain; each only wires options to one library call.

Commands are imported on first use: `digest ingest` should not pay for loading scikit-learn.
"""

from __future__ import annotations

import importlib

import click

# command name -> the module (under digest.commands) that defines it in its COMMANDS list
COMMAND_MODULES: dict[str, str] = {
    "ingest": "ingest",
    "papers": "ingest",
    "subscribers": "subscribers",
    "rank": "rank",
    "feedback": "rank",
    "preview": "preview",
    "send": "send",
    "history": "send",
    "run": "send",
    "feeds": "feeds",
    "serve": "feeds",
    "token": "feeds",
    "resume": "feeds",
    "demo": "demo",
}


def load_command(name: str) -> click.Command | None:
    module_name = COMMAND_MODULES.get(name)
    if module_name is None:
        return None
    module = importlib.import_module(f"digest.commands.{module_name}")
    for command in module.COMMANDS:
        if command.name == name:
            return command
    raise LookupError(f"digest.commands.{module_name} does not define the command {name!r}")
