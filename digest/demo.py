"""The built-in demo: the whole pipeline on sample data we wrote ourselves, with no network or server."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from digest.config import Config, load_config
from digest.ingest import IngestReport, ingest_sources
from digest.store import Store

DEMO_CONFIG = """\
# Written by `digest demo`: the sample workspace. Delivery goes to a local Maildir, no server needed.
[paths]
inbox = "inbox"
subscribers = "subscribers"
templates = "templates"
database = "var/digest.db"
feeds = "var/feeds"

[delivery]
method = "maildir"
maildir = "var/maildir"

[smtp]
from = "paper-digest demo <digest@demo.invalid>"

[web]
base_url = "http://127.0.0.1:8080"
"""


@dataclass
class DemoResult:
    workdir: Path
    config: Config
    ingest: IngestReport
    papers: int
    outputs: dict[str, list[Path]] = field(default_factory=dict)


def prepare_workspace(workdir: Path) -> Config:
    """A fresh workspace: sample inbox and subscribers copied from the package, old state removed."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    data = resources.files("digest") / "demo_data"
    for folder in ("inbox", "subscribers"):
        target = workdir / folder
        target.mkdir()
        for item in (data / folder).iterdir():
            if item.is_file():
                (target / item.name).write_bytes(item.read_bytes())
    (workdir / "templates").mkdir()
    (workdir / "config.toml").write_text(DEMO_CONFIG, encoding="utf-8")
    return load_config(workdir / "config.toml")


def run_demo(workdir: Path, *, now: datetime | None = None, say: Callable[[str], None] = print) -> DemoResult:
    """Ingest the sample data and run every stage that exists on it; returns where the output went."""
    now = now or datetime.now(UTC)
    config = prepare_workspace(workdir)
    with Store(config.paths.database) as store:
        report = ingest_sources(
            store, [str(config.paths.inbox)], max_bytes=int(config.ingest.max_file_mb * 1e6), clock=lambda: now
        )
        count = store.count_papers()
        say(
            f"ingested {report.files} sample file(s): {report.new} new paper(s), {report.duplicates} duplicate(s), "
            f"{report.updated} updated; {count} in the store"
        )
        for paper in store.list_papers():
            say(f"  {paper.id:<16} {paper.title[:70]}")
    return DemoResult(workdir=workdir, config=config, ingest=report, papers=count)
