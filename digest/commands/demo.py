"""digest demo."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from digest.cli import invocation
from digest.demo import run_demo


@click.command()
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/demo"),
    show_default=True,
    help="Workspace to (re)create for the demo.",
)
def demo(workdir: Path) -> None:
    """Run the whole pipeline on built-in sample data (no network, no server) and say where the output is."""
    result = run_demo(workdir.resolve(), say=click.echo)
    click.echo(f"\ndemo workspace: {result.workdir}")
    click.echo(f"  config:   {result.workdir / 'config.toml'}")
    click.echo(f"  database: {result.config.paths.database}")
    for label, paths in result.outputs.items():
        for path in paths:
            click.echo(f"  {label + ':':<9} {path}")
    command = f"{invocation()} --config {shlex.quote(str(result.workdir / 'config.toml'))}"
    click.echo(f"\nread the mail:   mutt -f {shlex.quote(str(result.config.delivery.maildir))}")
    click.echo(f"open a preview:  {command} preview ada --open")
    click.echo(f"serve the links: {command} serve   (then: {command} token ada)")


COMMANDS = [demo]
