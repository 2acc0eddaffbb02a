"""Every command has help text and a README section; the README documents no command that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

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


# --- docs/cli.md: generated from --help (digest/cli_reference.py, `make docs`) ---------------------------------

CLI_REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def test_the_cli_reference_is_up_to_date() -> None:
    from digest.cli_reference import cli_reference

    committed = CLI_REFERENCE.read_text(encoding="utf-8") if CLI_REFERENCE.exists() else ""
    assert committed == cli_reference(), "docs/cli.md is out of date: run make docs"


def test_the_cli_reference_is_every_commands_help_verbatim_whatever_the_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each section is what `digest COMMAND --help` prints at the reference's width, and the reference does not
    change with the terminal's width (COLUMNS) it is generated in."""
    from click.testing import CliRunner

    from digest.cli_reference import WIDTH, cli_reference

    monkeypatch.setenv("COLUMNS", "40")
    reference = cli_reference()
    monkeypatch.setenv("COLUMNS", "250")
    assert cli_reference() == reference
    for args in [[], *([name] for name in commands())]:
        shown = CliRunner().invoke(main, [*args, "--help"], prog_name="digest", terminal_width=WIDTH)
        assert shown.exit_code == 0, shown.output
        title = " ".join(["digest", *args])
        assert f"## `{title}`\n\n```text\n{shown.output.rstrip()}\n```\n" in reference, title
