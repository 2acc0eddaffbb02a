"""The `digest` command driven in-process with click's CliRunner: the exit status, stdout and stderr a user
would see, without paying a new interpreter per call. Subprocesses stay for what needs a process of its own
(signals, SIGKILL, a pty, `digest serve`, the packaging test)."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from click.testing import CliRunner

from digest.cli import main


@dataclass(frozen=True)
class Ran:
    """What one command did (named like subprocess.CompletedProcess, so assertions read the same)."""

    returncode: int
    stdout: str
    stderr: str
    stdout_bytes: bytes


def digest(
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str | None] | None = None,
    input: str | bytes | None = None,
) -> Ran:
    """Run `digest ARGS` in this process, in `cwd`, with `env` set (a None value unsets that variable)."""
    runner = CliRunner()
    argv = ["digest", *map(str, args)]  # the command's own argv, not pytest's (digest.cli reads it for -v)
    with (
        contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext(),
        mock.patch.object(sys, "argv", argv),
    ):
        result = runner.invoke(
            main, [str(a) for a in args], env=env, input=input, prog_name="digest", catch_exceptions=False
        )
    return Ran(result.exit_code, result.stdout, result.stderr, result.stdout_bytes)
