"""`digest send --all` on a terminal draws a progress bar; piped, it prints none; a summary line either way."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from delivery_helpers import workspace

REPO = Path(__file__).resolve().parent.parent


def run_send(config: Path, *, terminal: bool) -> tuple[int, str, str]:
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100"}
    command = [sys.executable, "-m", "digest", "--config", str(config), "send", "--all"]
    if not terminal:
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
        return done.returncode, done.stdout, done.stderr
    leader, follower = pty.openpty()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=follower, cwd=REPO, env=env) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closes when the process exits
                break
            if not chunk:
                break
            chunks.append(chunk)
        stdout = process.stdout.read().decode() if process.stdout else ""
        code = process.wait(timeout=120)
    os.close(leader)
    return code, stdout, b"".join(chunks).decode("utf-8", "replace")


def test_a_terminal_gets_a_progress_bar_and_a_summary(tmp_path: Path) -> None:
    workspace(tmp_path, 4, method="maildir")
    code, stdout, terminal = run_send(tmp_path / "config.toml", terminal=True)
    assert code == 0, terminal
    assert "sending" in terminal and "━" in terminal, "the bar was drawn on the terminal"
    assert "\x1b[?25h" in terminal, "the cursor is shown again when the bar goes"
    assert terminal.rstrip().endswith("sent 4, skipped 0, failed 0, stuck 0")
    assert stdout.count("sent: reader") == 4


def test_a_pipe_gets_no_bar_only_the_summary(tmp_path: Path) -> None:
    workspace(tmp_path, 3, method="maildir")
    code, stdout, stderr = run_send(tmp_path / "config.toml", terminal=False)
    assert code == 0, stderr
    assert "\x1b[" not in stderr and "━" not in stderr
    assert stderr.strip().splitlines()[-1] == "sent 3, skipped 0, failed 0, stuck 0"
    assert stdout.count("sent: reader") == 3
