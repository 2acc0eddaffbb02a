"""docs/cli.md, generated from every command's --help so it cannot drift from the code.

    python -m digest.cli_reference docs/cli.md     # what `make docs` runs; without a path: to stdout

tests/test_docs.py regenerates it in memory and fails when the committed file differs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

from digest.files import write_atomically

# The help is wrapped at this width whatever the terminal (or CI) is: the file must not depend on who made it.
WIDTH = 100

HEADER = """\
# `digest` command reference

<!-- Generated from each command's --help by `make docs` (python -m digest.cli_reference docs/cli.md).
     Do not edit: change the command's help text and regenerate. -->

Every command's `--help`, verbatim. The [README](../README.md) explains what they are for.
"""


def _walk(command: click.Command, ctx: click.Context) -> Iterator[tuple[str, str]]:
    """(the command path, its --help), for this command and every subcommand under it, sorted by name."""
    yield ctx.command_path, command.get_help(ctx).rstrip()
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, click.Context(sub, info_name=name, parent=ctx, **sub.context_settings))


def cli_reference(root: click.Command | None = None, prog_name: str = "digest") -> str:
    """The Markdown reference of `root` (default: the `digest` command) and all its commands."""
    if root is None:
        from digest.cli import main

        root = main
    # As click makes it when the command runs (context_settings: -h as well as --help), at a fixed width.
    settings = {**root.context_settings, "terminal_width": WIDTH, "max_content_width": WIDTH}
    ctx = click.Context(root, info_name=prog_name, **settings)
    pages = list(_walk(root, ctx))
    lines = [HEADER]
    lines += [f"- [`{path}`](#{_anchor(path)})" for path, _ in pages]
    for path, text in pages:
        lines += ["", f"## `{path}`", "", "```text", text, "```"]
    return "\n".join(lines) + "\n"


def _anchor(title: str) -> str:
    """GitHub's anchor for a heading `## \\`digest send\\``: digest-send."""
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    text = cli_reference()
    if args:
        write_atomically(Path(args[0]), text.encode("utf-8"))
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
