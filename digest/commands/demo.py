"""digest demo."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import click

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


def invocation() -> str:
    """How to run this same `digest` again from a new shell: `digest` when that is on PATH, else its full path
    (after `make demo` it lives in .venv/bin, which a new shell does not have on PATH)."""
    program = Path(sys.argv[0])
    if program.name == "__main__.py":
        return f"{shlex.quote(sys.executable)} -m digest"
    on_path = shutil.which("digest")
    if on_path and program.exists() and Path(on_path).resolve() == program.resolve():
        return "digest"
    return shlex.quote(str(program.resolve())) if program.exists() else "digest"


COMMANDS = [demo]
