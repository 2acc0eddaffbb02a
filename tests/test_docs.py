"""Every command has help text and a README section; the README documents no command that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

from digest.cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_command_has_help_and_a_readme_section() -> None:
    for name, command in main.commands.items():
        assert (command.help or "").strip(), f"`digest {name}` has no help text"
        assert f"### `digest {name}" in README, f"`digest {name}` is not documented in README.md"


def test_the_readme_documents_only_commands_that_exist() -> None:
    documented = set(re.findall(r"^### `digest ([a-z-]+)", README, flags=re.M))
    assert documented, "no command sections found in the README"
    assert documented <= set(main.commands), documented - set(main.commands)


def test_every_option_has_help() -> None:
    for name, command in main.commands.items():
        for param in command.params:
            if param.param_type_name == "option":
                assert (getattr(param, "help", None) or "").strip(), f"`digest {name}` option {param.name} has no help"
