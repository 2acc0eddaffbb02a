"""The README's "Your own digest" steps, run as written: each `digest` line of its two shell blocks, in order, in
an empty folder. Only what cannot run in a test is replaced, and said so: `pip install` (the package is already
installed), the digest file from ~/Downloads (our own sample text), `--open` (no browser) and the daemon
(`digest run` becomes one cycle, `digest run --once`)."""

from __future__ import annotations

import mailbox
import re
import shlex
from pathlib import Path

from cli import digest
from conftest import REPO
from sample_digest import sample_paper

README = (REPO / "README.md").read_text(encoding="utf-8")


def _steps() -> list[str]:
    section = README.split("## Your own digest", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2, "the section's two shell blocks (install + init, then the steps) have moved"
    lines = [line.split("  #", 1)[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line]


def _daily_digest(path: Path) -> None:
    """A daily-papers text digest of our own invented papers, in the spaced layout."""
    entries = [sample_paper(i).paper for i in range(10)]
    body = "\n\n".join(f"{p.title}\n\n{p.abstract}" for p in entries)
    path.write_text(f"Daily Papers\n\nNov 19\n\n{body}\n", encoding="utf-8")


def test_the_readme_steps_work_as_written(tmp_path: Path) -> None:
    steps = _steps()
    assert steps[0].startswith("pip install") and steps[2].startswith("digest init mydigest")
    cwd = tmp_path
    ran = []
    for line in steps:
        words = shlex.split(line)
        if words[0] == "pip":
            continue
        if words[0] == "cd":
            cwd = cwd / words[1]
            continue
        if words[0] == "cp":
            _daily_digest(cwd / words[-1] / "daily-papers.txt")
            continue
        assert words[0] == "digest", line
        args = [w for w in words[1:] if w != "--open"]
        if args == ["run"]:
            args = ["run", "--once"]
        if args[0] == "init":
            args.append("--yes")  # no terminal here; every value is on the line already
        result = digest(*args, cwd=cwd)
        assert result.returncode == 0, f"{line}: {result.stderr}"
        ran.append((args[0], result))
    commands = [name for name, _ in ran]
    assert commands == ["init", "ingest", "preview", "send", "run"]
    titles = [sample_paper(i).paper.title for i in range(10)]
    preview = dict(ran)["preview"].stdout
    assert any(title in preview for title in titles)
    (message,) = list(mailbox.Maildir(cwd / "var" / "maildir", create=False))  # send sent it; run found nothing new
    assert str(message["To"]) == "Ada Lovelace <ada@example.org>"
    assert any(title.split(":")[0][:40] in " ".join(str(message["Subject"]).split()) for title in titles)
