"""Atom feeds: each subscriber's recent picks, and one shared feed of everything ingested.

Feeds are built from the store (the send ledger says what each subscriber was given), so a feed-only
subscriber and an email subscriber read the very same picks. Entry ids never change: a feed reader that has
seen a paper never shows it as new again, however often the feed is rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from feedgen.feed import FeedGenerator

from digest.characters import NOT_XML
from digest.clock import Clock, utc_now
from digest.config import Config
from digest.errors import DigestError
from digest.files import write_atomically
from digest.paper import Paper
from digest.render.text import safe_url
from digest.render.text import teaser as text_teaser
from digest.store import Message, Store, parse_iso
from digest.subscribers import Profile, load_subscribers

if TYPE_CHECKING:  # the report only: importing the sender would load rendering and mail
    from digest.send import SendReport

ALL_FEED = "all"
ALL_FEED_LIMIT = 500
TEASER_CHARS = 300
_URN = "urn:paper-digest"
# XML 1.0 forbids most C0 controls (lxml refuses them outright); C1 controls and the non-characters are
# legal but render as garbage, so both go. Ingestion already cleans text; this guards what it did not see.


def xml_text(text: str) -> str:
    """Text that lxml accepts and a reader shows cleanly: control characters become spaces, runs fold."""
    return re.sub(r"\s+", " ", NOT_XML.sub(" ", text)).strip()


def teaser(abstract: str, limit: int = TEASER_CHARS) -> str:
    """The first ~`limit` characters of the abstract, cut at a word, with an ellipsis if cut (XML-clean)."""
    return text_teaser(xml_text(abstract), limit, whole_sentences=False)


def feed_id(name: str) -> str:
    return f"{_URN}:feed:{quote(name, safe='')}"


def entry_id(subscriber: str | None, paper_id: str) -> str:
    """Stable forever: built from ids only, never from the base URL, a date or a position."""
    if subscriber is None:
        return f"{_URN}:paper:{quote(paper_id, safe='')}"
    return f"{feed_id(subscriber)}:paper:{quote(paper_id, safe='')}"


def _http_url(url: str | None) -> str | None:
    """Only http(s) links reach a feed (a source could carry javascript: or data: URLs), and only XML-safe ones."""
    checked = safe_url(url)
    return checked if checked and not NOT_XML.search(checked) else None


def _moment(text: str | None, fallback: datetime) -> datetime:
    if not text:
        return fallback
    try:
        moment = parse_iso(text)
    except ValueError:
        return fallback
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class FeedItem:
    """One entry: a paper, when it reached the reader, and why it was picked (empty in the shared feed)."""

    paper: Paper
    updated: datetime
    why: str = ""


def subscriber_items(store: Store, subscriber: str, digests: int) -> list[FeedItem]:
    """The papers of the subscriber's last `digests` delivered digests, newest digest first, in digest order.

    The ledger never gives a paper twice to one subscriber; should a hand-settled message ever repeat one,
    the newest delivery wins so that each entry id appears once (feed readers key on it).
    """
    messages: list[Message] = store.recent_digests(subscriber, digests)
    papers = {p.id: p for p in store.get_papers([pick.paper_id for m in messages for pick in m.papers])}
    items: list[FeedItem] = []
    seen: set[str] = set()
    for message in messages:
        delivered = _moment(message.finished_at or message.created_at, datetime(1970, 1, 1, tzinfo=UTC))
        for pick in message.papers:
            paper = papers.get(pick.paper_id)
            if paper is None or pick.paper_id in seen:
                continue
            seen.add(pick.paper_id)
            items.append(FeedItem(paper, delivered, pick.why))
    return items


def all_items(store: Store, limit: int = ALL_FEED_LIMIT) -> list[FeedItem]:
    """The latest `limit` papers ingested, newest first."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return [FeedItem(p, _moment(p.first_seen, epoch)) for p in store.list_papers(limit)]


def build_feed(
    name: str,
    title: str,
    subtitle: str,
    items: Sequence[FeedItem],
    *,
    per_subscriber: bool,
    now: datetime,
) -> bytes:
    """An Atom document. All text goes in as type="text": feedgen escapes it, and no reader renders it as HTML."""
    fg = FeedGenerator()
    fg.id(feed_id(name))
    fg.title(xml_text(title))
    fg.subtitle(xml_text(subtitle))
    # Atom needs an author for entries that have none (papers without authors).
    fg.author({"name": "paper-digest"})
    fg.generator("paper-digest")
    fg.language("en")
    # The newest delivery dates the feed, so an unchanged feed is byte-for-byte the same on every run.
    fg.updated(max((item.updated for item in items), default=now))
    for item in items:
        paper = item.paper
        entry = fg.add_entry(order="append")  # feedgen prepends by default; we already sorted newest first
        entry.id(entry_id(name if per_subscriber else None, paper.id or ""))
        entry.title(xml_text(paper.title) or "(untitled)")
        entry.updated(item.updated)
        entry.published(_moment(paper.first_seen, item.updated))
        link = _http_url(paper.url)
        if link:
            entry.link(href=link, rel="alternate", type="text/html")
        for code in paper.code_links:
            code_url = _http_url(code)
            if code_url:
                entry.link(href=code_url, rel="related", title="code")
        authors = [xml_text(a) for a in paper.authors]
        for author in (a for a in authors if a):
            entry.author({"name": author})
        for category in paper.categories:
            term = xml_text(category)
            if term:
                entry.category(term=term)
        if item.why:
            entry.summary(xml_text(item.why), type="text")
        entry.content(teaser(paper.abstract) or "(no abstract)", type="text")
    return bytes(fg.atom_str(pretty=True, encoding="UTF-8"))


def subscriber_feed(store: Store, config: Config, subscriber: str, display_name: str, now: datetime) -> bytes:
    items = subscriber_items(store, subscriber, config.schedule.feeds_recent_digests)
    return build_feed(
        subscriber,
        f"paper-digest: {display_name}",
        f"Papers picked for {display_name} in their last {config.schedule.feeds_recent_digests} digest(s)",
        items,
        per_subscriber=True,
        now=now,
    )


def all_papers_feed(store: Store, now: datetime, limit: int = ALL_FEED_LIMIT) -> bytes:
    return build_feed(
        ALL_FEED,
        "paper-digest: all papers",
        f"The latest {limit} papers ingested, newest first",
        all_items(store, limit),
        per_subscriber=False,
        now=now,
    )


def feed_path(output_dir: Path, name: str) -> Path:
    return output_dir / f"{name}.xml"


def write_feeds(
    store: Store,
    config: Config,
    subscribers: Iterable[Profile | str],
    output_dir: Path,
    *,
    include_all: bool = True,
    now: datetime,
) -> list[Path]:
    """Write each subscriber's feed (and all.xml) into output_dir; returns the paths written.

    A bare id stands for a subscriber whose profile is gone: their feed still shows what they were sent.
    """
    written: list[Path] = []
    for subscriber in subscribers:
        ident, name = (subscriber, subscriber) if isinstance(subscriber, str) else (subscriber.id, subscriber.name)
        if ident == ALL_FEED:
            raise DigestError(f"subscriber id {ALL_FEED!r} is reserved for the shared feed; rename {ALL_FEED}.toml")
        path = feed_path(output_dir, ident)
        write_atomically(path, subscriber_feed(store, config, ident, name, now))
        written.append(path)
    if include_all:
        path = feed_path(output_dir, ALL_FEED)
        write_atomically(path, all_papers_feed(store, now))
        written.append(path)
    return written


def refresh_after_send(config: Config, report: SendReport, *, clock: Clock = utc_now) -> list[str]:
    """Called by `digest run` after each send: rewrite the feeds of those just sent to, and all.xml.

    A dry run wrote nothing to the ledger, so nothing is refreshed.
    """
    if report.dry_run:
        return []
    sent = [item.subscriber for item in report.sent]
    # Display names come from the profiles: loaded only when someone was sent to (all.xml needs none).
    known = {p.id: p for p in load_subscribers(config.paths.subscribers).profiles} if sent else {}
    profiles = [known.get(name, name) for name in dict.fromkeys(sent)]
    with Store(config.paths.database) as store:
        paths = write_feeds(store, config, profiles, config.paths.feeds, now=clock())
    return [str(path) for path in paths]
