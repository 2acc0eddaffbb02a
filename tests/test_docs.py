"""Every command has help text and a README section; the README documents no command that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

import click

from digest.cli import main


def commands() -> dict[str, click.Command]:
    ctx = click.Context(main)
    found = {name: main.get_command(ctx, name) for name in main.list_commands(ctx)}
    assert all(found.values()), [name for name, command in found.items() if command is None]
    return found  # type: ignore[return-value]


README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_command_has_help_and_a_readme_section() -> None:
    for name, command in commands().items():
        assert (command.help or "").strip(), f"`digest {name}` has no help text"
        assert f"### `digest {name}" in README, f"`digest {name}` is not documented in README.md"


def test_the_readme_documents_only_commands_that_exist() -> None:
    documented = set(re.findall(r"^### `digest ([a-z-]+)", README, flags=re.M))
    assert documented, "no command sections found in the README"
    assert documented <= set(commands()), documented - set(commands())


def test_every_option_has_help() -> None:
    for name, command in commands().items():
        for param in command.params:
            if param.param_type_name == "option":
                assert (getattr(param, "help", None) or "").strip(), f"`digest {name}` option {param.name} has no help"


def test_every_command_a_module_defines_is_reachable() -> None:
    import importlib

    from digest.commands import COMMAND_MODULES

    for module_name in set(COMMAND_MODULES.values()):
        module = importlib.import_module(f"digest.commands.{module_name}")
        for command in module.COMMANDS:
            assert COMMAND_MODULES.get(command.name or "") == module_name, f"{command.name} is not registered"
