"""The built-in demo: the whole pipeline on sample data we wrote ourselves, with no network or server."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path

from digest.clock import utc_now
from digest.config import Config, load_config
from digest.ingest import IngestReport
from digest.service import ingest
from digest.store import open_store

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

[enrich]
arxiv = false  # the demo never touches the network: no arXiv lookups of its sample papers
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
    """Ingest the sample data, preview each subscriber's digest, deliver them into a Maildir and write the
    feeds; returns where every output went."""
    from digest.atom import write_feeds
    from digest.files import write_atomically
    from digest.preview import preview_digest
    from digest.profile_book import ProfileBook
    from digest.render import make_environment
    from digest.service import send

    now = now or utc_now()
    config = prepare_workspace(workdir)
    result = DemoResult(workdir=workdir, config=config, ingest=IngestReport(), papers=0)
    with open_store(config) as store:
        subscribers = ProfileBook.of(config, store).load(now)
        result.ingest = ingest(store, config, [str(config.paths.inbox)], clock=lambda: now)
        result.papers = store.count_papers()
        report = result.ingest
        say(
            f"1. ingest: {report.files} sample file(s), {report.new} new paper(s), {report.duplicates} "
            f"duplicate(s) merged; {result.papers} papers in the store"
        )
        env = make_environment(config.paths.templates)
        previews: list[Path] = []
        say("2. rank + render: a preview of each subscriber's next digest (nothing recorded)")
        for profile in subscribers.profiles:
            for fmt, suffix in (("html", "html"), ("markdown", "md")):
                preview = preview_digest(store, config, env, profile, now, fmt)  # type: ignore[arg-type]
                if preview.output is None:
                    say(f"   {profile.id}: nothing to send ({preview.reason})")
                    break
                path = workdir / "var" / "preview" / f"{profile.id}.{suffix}"
                write_atomically(path, preview.output)
                previews.append(path)
            for pick in preview.composed.plan.picks:
                say(f"   {profile.id}: {pick.score:.2f}  {pick.paper.title[:60]}")
                say(f"   {'':{len(profile.id)}}        why: {pick.why[:100]}")
        result.outputs["preview"] = previews
    sent = send(config, selection="all", clock=lambda: now, subscribers=subscribers)
    say(f"3. deliver: {sent.summary()} (into the Maildir {config.delivery.maildir})")
    result.outputs["maildir"] = [config.delivery.maildir]
    with open_store(config) as store:
        feeds = write_feeds(store, config, subscribers.profiles, config.paths.feeds, now=now)
    say(f"4. feeds: {len(feeds)} Atom feed(s) written")
    result.outputs["feed"] = feeds
    again = send(config, selection="all", clock=lambda: now, subscribers=subscribers)
    say(f"5. send again: {again.summary()}: no paper ever goes to the same reader twice")
    return result
