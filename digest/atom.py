"""Atom feeds: each subscriber's recent picks, and one shared feed of everything ingested.

Feeds are built from the store (the send ledger says what each subscriber was given), so a feed-only
subscriber and an email subscriber read the very same picks. Entry ids never change: a feed reader that has
seen a paper never shows it as new again, however often the feed is rewritten.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from feedgen.feed import FeedGenerator
from lxml import etree

from digest.characters import NOT_XML
from digest.clock import Clock, utc_now
from digest.config import Config
from digest.errors import DigestError
from digest.files import write_atomically
from digest.links import Links
from digest.paper import Paper
from digest.profile_book import ProfileBook
from digest.render.context import reading_links
from digest.render.text import code_label, safe_url
from digest.render.text import teaser as text_teaser
from digest.store import Message, Store, open_store, parse_iso
from digest.subscribers import Profile

if TYPE_CHECKING:  # the report only: importing the sender would load rendering and mail
    from digest.send import SendReport

ALL_FEED = "all"
ALL_FEED_LIMIT = 500
TEASER_CHARS = 300
_URN = "urn:paper-digest"
_ATOM = "http://www.w3.org/2005/Atom"
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


def next_digest_items(store: Store, config: Config, profile: Profile, now: datetime) -> list[FeedItem]:
    """What the subscriber's next digest would hold (a preview: nothing is written), for a feed that has no
    delivered digest yet. Entries keep the ids they will have once the digest is sent, and are dated by when
    each paper arrived, so rewriting the feed changes nothing until new papers do."""
    from digest.model_cache import model_source  # here: only a never-mailed subscriber's feed needs ranking
    from digest.plan import plan_digest

    plan = plan_digest(store, profile, now, model_source(config.rank.policy(), save=False))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return [FeedItem(s.paper, _moment(s.paper.first_seen, epoch), s.why) for s in plan.picks]


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


def entry_content(item: FeedItem) -> str:
    """An entry's content as HTML (what feed readers show): why it was picked first, the teaser, then the links.
    Every value is escaped and every link is http(s); readers sanitise on top of that."""
    paper = item.paper
    page, pdf, search_only = reading_links(paper)
    label = f"arXiv:{paper.arxiv_id}" if paper.arxiv_id else ("Find on arXiv" if search_only else "Read the paper")
    links = [(page, label)]
    if pdf:
        links.append((pdf, "PDF"))
    links += [(url, f"Code ({code_label(url)})") for url in (_http_url(c) for c in paper.code_links) if url]
    parts = [f"<p><strong>Why:</strong> {html.escape(xml_text(item.why))}</p>"] if item.why else []
    parts.append(f"<p>{html.escape(teaser(paper.abstract) or '(no abstract)')}</p>")
    parts.append(
        "<p>"
        + " &middot; ".join(
            f'<a href="{html.escape(url, quote=True)}">{html.escape(xml_text(text))}</a>' for url, text in links
        )
        + "</p>"
    )
    return "\n".join(parts)


def build_feed(
    name: str,
    title: str,
    subtitle: str,
    items: Sequence[FeedItem],
    *,
    per_subscriber: bool,
    now: datetime,
    self_url: str | None = None,
) -> bytes:
    """An Atom document. Titles, names and the summary go in as type="text" (feedgen escapes them); the content
    is HTML that we built from escaped values (entry_content). A feed never links the reader's settings page: feed
    URLs get pasted into third-party readers, and the settings key (digest.tokens) stays in emails."""
    fg = FeedGenerator()
    fg.id(feed_id(name))
    fg.title(xml_text(title))
    fg.subtitle(xml_text(subtitle))
    checked_self = _http_url(self_url)
    # Atom needs an author for entries that have none (papers without authors).
    fg.author({"name": "paper-digest"})
    fg.generator("paper-digest")
    fg.language("en")
    # The newest delivery dates the feed, so an unchanged feed is byte-for-byte the same on every run.
    fg.updated(max((item.updated for item in items), default=now))
    entry_links: list[list[dict[str, str]]] = []
    for item in items:
        paper = item.paper
        entry = fg.add_entry(order="append")  # feedgen prepends by default; we already sorted newest first
        entry.id(entry_id(name if per_subscriber else None, paper.id or ""))
        entry.title(xml_text(paper.title) or "(untitled)")
        entry.updated(item.updated)
        entry.published(_moment(paper.first_seen, item.updated))
        entry_links.append(_entry_links(paper))
        authors = [xml_text(a) for a in paper.authors]
        for author in (a for a in authors if a):
            entry.author({"name": author})
        for category in paper.categories:
            term = xml_text(category)
            if term:
                entry.category(term=term)
        if item.why:
            entry.summary(xml_text(item.why), type="text")
        entry.content(entry_content(item), type="html")
    feed_links = [{"href": url, "rel": "self", "type": "application/atom+xml"} for url in [checked_self] if url]
    return _with_links(bytes(fg.atom_str(pretty=False, encoding="UTF-8")), feed_links, entry_links)


def _entry_links(paper: Paper) -> list[dict[str, str]]:
    page, pdf, _ = reading_links(paper)
    links = [{"href": url, "rel": "alternate", "type": "text/html"} for url in [_http_url(page)] if url]
    if pdf:
        links.append({"href": pdf, "rel": "related", "type": "application/pdf", "title": "PDF"})
    links += [{"href": url, "rel": "related", "title": "code"} for url in map(_http_url, paper.code_links) if url]
    return links


def _with_links(
    document: bytes, feed_links: Sequence[dict[str, str]], entry_links: Sequence[Sequence[dict[str, str]]]
) -> bytes:
    """The links written here, not by feedgen: feedgen 1.0 drops every attribute of a link but href (rel, type,
    title), which makes a code link or a PDF an entry's "alternate" and loses rel="self"."""
    root = etree.fromstring(document)
    first_entry = root.find(f"{{{_ATOM}}}entry")
    at = root.index(first_entry) if first_entry is not None else len(root)
    for offset, link in enumerate(feed_links):
        root.insert(at + offset, etree.Element(f"{{{_ATOM}}}link", **link))
    for entry, links in zip(root.iterfind(f"{{{_ATOM}}}entry"), entry_links, strict=True):
        for link in links:
            etree.SubElement(entry, f"{{{_ATOM}}}link", **link)
    etree.indent(root, space="  ")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8")) + b"\n"


def feed_self_url(store: Store, config: Config, name: str) -> str | None:
    """The feed's own address under `digest serve` (Atom's rel="self"), once the subscriber has a token."""
    if not config.web.base_url:
        return None
    token = store.subscriber_state(name).token if name != ALL_FEED else None
    if name != ALL_FEED and not token:
        return None
    return Links(config.web.base_url, token or "", name).feed() if token else f"{config.web.base_url}/feeds/all.xml"


def subscriber_feed(
    store: Store,
    config: Config,
    subscriber: str,
    display_name: str,
    now: datetime,
    *,
    profile: Profile | None = None,
    self_url: str | None = None,
) -> bytes:
    """The subscriber's feed: the papers of their last digests; before their first digest (given their
    profile), what that digest would hold, so a new reader does not open an empty feed."""
    digests = config.schedule.feeds_recent_digests
    items = subscriber_items(store, subscriber, digests)
    subtitle = f"Papers picked for {display_name} in their last {digests} digest(s)"
    if not items and profile is not None and not store.recent_digests(subscriber, 1):
        items = next_digest_items(store, config, profile, now)
        subtitle = f"What the next digest of {display_name} would hold (nothing has been sent yet)"
    return build_feed(
        subscriber,
        f"paper-digest: {display_name}",
        subtitle,
        items,
        per_subscriber=True,
        now=now,
        self_url=self_url if self_url is not None else feed_self_url(store, config, subscriber),
    )


def all_papers_feed(store: Store, now: datetime, limit: int = ALL_FEED_LIMIT, *, self_url: str | None = None) -> bytes:
    return build_feed(
        ALL_FEED,
        "paper-digest: all papers",
        f"The latest {limit} papers ingested, newest first",
        all_items(store, limit),
        per_subscriber=False,
        now=now,
        self_url=self_url,
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
        profile = subscriber if isinstance(subscriber, Profile) else None
        write_atomically(path, subscriber_feed(store, config, ident, name, now, profile=profile))
        written.append(path)
    if include_all:
        path = feed_path(output_dir, ALL_FEED)
        write_atomically(path, all_papers_feed(store, now, self_url=feed_self_url(store, config, ALL_FEED)))
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
    with open_store(config) as store:
        known = {p.id: p for p in ProfileBook.of(config, store).load(clock()).profiles} if sent else {}
        profiles = [known.get(name, name) for name in dict.fromkeys(sent)]
        paths = write_feeds(store, config, profiles, config.paths.feeds, now=clock())
    return [str(path) for path in paths]
