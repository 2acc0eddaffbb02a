"""The `digest` command: parses options, calls one library function, prints. No logic lives here."""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from digest import __version__, clock
from digest.config import Config, load_config, resolve_config_path
from digest.errors import DigestError
from digest.profile_book import ProfileBook
from digest.store import Store, open_store
from digest.subscribers import SubscriberSet


@dataclass
class App:
    """What every command needs, loaded once on first use."""

    config_path: Path
    verbose: bool
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def store(self) -> Store:
        return open_store(self.config)

    def subscribers(self, *, report: bool = True, write: bool = True, allow_removals: bool = False) -> SubscriberSet:
        """Every profile (digest.profile_book: the folder synced with the store first; `write=False` for a
        command that writes nothing, such as a preview)."""
        with self.store() as store:
            book = ProfileBook.of(self.config, store)
            loaded = book.load(clock.utc_now(), write=write, allow_removals=allow_removals)
        if report:
            for notice in loaded.notices:
                click.echo(f"notice: {notice}", err=True)
            for error in loaded.errors:
                click.echo(f"warning: {error} (skipped)", err=True)
        return loaded


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


class DigestGroup(click.Group):
    """Turns our own errors into one clean line on stderr (tracebacks only with -v); loads commands lazily."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from digest.commands import COMMAND_MODULES

        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        from digest.commands import load_command

        return load_command(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from digest.commands.COMMAND_SUMMARIES: `digest --help` imports no command."""
        from digest.commands import COMMAND_SUMMARIES

        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, click.Command(name, help=COMMAND_SUMMARIES[name]).get_short_help_str(limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestError as exc:
            if _verbose(ctx):
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # `digest papers | head`: the reader left, nothing to report
            sys.stderr.close()
            ctx.exit(0)
        except Exception as exc:  # a bug of ours: still one line unless asked for more
            if _verbose(ctx):
                traceback.print_exc()
            click.echo(f"error: internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)", err=True)
            ctx.exit(70)


def _verbose(ctx: click.Context) -> bool:
    app = ctx.obj
    return bool(getattr(app, "verbose", False)) or "-v" in sys.argv[1:2] or "--verbose" in sys.argv[1:2]


class _StderrHandler(logging.StreamHandler):
    """Writes each record to sys.stderr as it is then, not as it was at start-up: a program that runs commands
    in-process (click's test runner, an embedding script) swaps stderr per command, and the log must follow."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(verbose: bool) -> None:
    """Log lines on stderr; INFO and up (DEBUG with -v). Idempotent: one handler however often it is called."""
    root = logging.getLogger()
    if not any(isinstance(handler, _StderrHandler) for handler in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("apscheduler", "uvicorn.access", "mail.log", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.NOTSET if verbose else logging.WARNING)


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Configuration file (default: $DIGEST_CONFIG, else ./config.toml).",
)
@click.option("-v", "--verbose", is_flag=True, help="More logging, and tracebacks on errors.")
@click.version_option(__version__, prog_name="digest")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, verbose: bool) -> None:
    """paper-digest: turn the daily flood of research papers into one short, personal email per reader.

    Set DIGEST_NOW (an ISO 8601 timestamp with an offset, e.g. 2027-03-01T07:00:00+00:00) to run any command
    as if it were that instant: backfills, replays, reproducible runs.
    """
    configure_logging(verbose)
    ctx.obj = App(config_path=resolve_config_path(config_path), verbose=verbose)
    clock.fixed_instant()  # an invalid DIGEST_NOW stops every command before it starts (exit 2)


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
