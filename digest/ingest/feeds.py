"""RSS 2.0 and Atom through feedparser: arXiv listings (old and new style), arXiv API results, any feed."""

from __future__ import annotations

import re
import time
import xml.sax
from collections.abc import Sequence
from typing import Any

import feedparser

from digest.errors import IngestError
from digest.ingest.text import describe, html_to_text
from digest.paper import Paper, clean_text, make_paper, normalise_doi

# Old arXiv listing titles: "Title. (arXiv:2403.01234v1 [cs.LG])"; sometimes "UPDATED)" at the end.
_OLD_LISTING_TITLE = re.compile(r"^(?P<title>.*?)\.?\s*\(arXiv:(?P<id>[^\s\]]+)\s*\[(?P<cat>[^\]]+)\][^)]*\)\s*$", re.S)
_SUFFIX_MAX = 1_000
# New arXiv listing descriptions: "arXiv:2403.01234v1 Announce Type: new \nAbstract: ..."
_NEW_LISTING = re.compile(
    r"^\s*arXiv:(?P<id>\S+)\s+Announce Type:\s*(?P<type>[\w-]+)\s*Abstract:\s*(?P<abstract>.*)$", re.S | re.I
)
_ROOT_END = re.compile(rb"</\s*(?:[\w-]+:)?(?:rss|feed|RDF)\s*>\s*$")


def looks_like_html_page(head: str) -> bool:
    return bool(re.search(r"<!doctype html|<html[\s>]", head[:2048], re.IGNORECASE))


def _page_title(text: str) -> str:
    match = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.S)
    return clean_text(match.group(1))[:80] if match else ""


def _text_of(detail: Any, fallback: str = "") -> str:
    """A feedparser text construct as plain text: HTML flattened, plain text kept literally."""
    if not detail:
        return clean_text(fallback)
    value = detail.get("value", "") if isinstance(detail, dict) else str(detail)
    kind = detail.get("type", "text/html") if isinstance(detail, dict) else "text/html"
    return html_to_text(value) if "html" in kind else clean_text(value)


def _authors(entry: Any) -> list[str]:
    names: list[str] = []
    for author in entry.get("authors") or []:
        name = author.get("name") if isinstance(author, dict) else None
        if name:
            names.extend(_split_names(html_to_text(name)))
    if not names and entry.get("author"):
        names = _split_names(html_to_text(entry["author"]))
    return list(dict.fromkeys(n for n in names if n))


def _split_names(text: str) -> list[str]:
    # arXiv's dc:creator packs every author into one string: "A. One, B. Two and C. Three".
    parts = re.split(r",\s*|\s+and\s+", text) if ("," in text or " and " in text) else [text]
    return [clean_text(part) for part in parts if clean_text(part)]


def _published(entry: Any) -> str | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            return time.strftime("%Y-%m-%d", parsed)
    return None


def _dois(entry: Any) -> list[str]:
    """Every DOI an entry gives (arXiv API <arxiv:doi>, PRISM, Dublin Core, doi.org links, a DOI as the entry id):
    make_paper keeps the publisher's, and an arXiv DOI (10.48550/arXiv.ID) also gives the arXiv id."""
    candidates = [entry.get(key) for key in ("arxiv_doi", "prism_doi", "dc_identifier")]
    candidates += [
        item.get("href")
        for item in entry.get("links") or []
        if "doi.org/" in item.get("href", "") or item.get("title") == "doi"
    ]
    entry_id = entry.get("id") or ""
    if "doi.org/" in entry_id or entry_id.lower().startswith("doi:"):
        candidates.append(entry_id)
    return [c for c in candidates if isinstance(c, str) and normalise_doi(c)]


def entry_to_paper(entry: Any, feed_authors: Sequence[str] = ()) -> Paper | None:
    title = _text_of(entry.get("title_detail"), entry.get("title", ""))
    summary_detail = entry.get("summary_detail")
    if entry.get("content"):
        summary_detail = entry["content"][0]
    abstract = _text_of(summary_detail, entry.get("summary", ""))
    arxiv: str | None = None
    categories = [t.get("term", "") for t in entry.get("tags") or [] if t.get("term")]
    primary = (entry.get("arxiv_primary_category") or {}).get("term")
    if primary:
        categories.insert(0, primary)

    # The "(arXiv:ID [cat])" suffix is short: match only the end of a long title, since the lazy title group makes
    # the pattern quadratic on a crafted title full of "(arXiv:".
    head, tail = title[:-_SUFFIX_MAX], title[-_SUFFIX_MAX:]
    old = _OLD_LISTING_TITLE.match(tail)
    if old:
        title, arxiv = head + old.group("title"), old.group("id")
        categories.insert(0, old.group("cat").strip())
    new = _NEW_LISTING.match(abstract)
    if new:
        arxiv, abstract = new.group("id"), new.group("abstract")
    link = entry.get("link") or ""
    entry_id = entry.get("id") or ""
    if arxiv is None:
        for candidate in (entry_id, link):
            if "arxiv.org/abs/" in candidate:
                arxiv = candidate
                break
    if not title:
        return None
    return make_paper(
        title=title,
        abstract=abstract,
        authors=_authors(entry) or list(feed_authors),
        url=link or None,
        arxiv=arxiv,
        doi=_dois(entry),
        categories=categories,
        published=_published(entry),
    )


def parse_feed(data: bytes, text: str, source: str) -> tuple[list[Paper], list[str]]:
    """Papers of an RSS/Atom document and per-entry problems; raises IngestError for an unusable file."""
    if looks_like_html_page(text):
        title = _page_title(text)
        raise IngestError(
            f"{source}: is an HTML page, not a feed"
            + (f" (page title {title!r})" if title else "")
            + "; check the URL or file"
        )
    parsed = feedparser.parse(data, sanitize_html=True, resolve_relative_uris=False)
    problem = parsed.get("bozo_exception")
    if parsed.get("bozo") and isinstance(problem, xml.sax.SAXException):
        complete = bool(_ROOT_END.search(data.rstrip()[-200:]))
        if not complete or not parsed.entries:
            line = getattr(problem, "getLineNumber", lambda: None)()
            where = f" at line {line}" if line else ""
            raise IngestError(
                f"{source}: malformed or truncated XML{where} ({problem.getMessage()}); fix or re-download it"
            )
    version = parsed.get("version") or ""
    if not parsed.entries and not version:
        raise IngestError(f"{source}: XML but not an RSS or Atom feed; expected <rss> or <feed>")
    # Atom (RFC 4287, 4.2.1): an entry without <author> has the feed's authors.
    feed_authors = _authors(parsed.feed) if version.startswith("atom") else []
    papers: list[Paper] = []
    problems: list[str] = []
    for number, entry in enumerate(parsed.entries, start=1):
        try:
            paper = entry_to_paper(entry, feed_authors)
        except Exception as exc:  # one entry we cannot read is that entry's problem, never the whole feed's
            problems.append(f"{source}: entry {number}: cannot read ({describe(exc)}); skipped")
            continue
        if paper is None:
            problems.append(f"{source}: entry {number}: has no title; skipped")
        elif not paper.abstract:
            problems.append(f"{source}: entry {number} ({paper.title[:60]!r}): has no abstract or summary; skipped")
        else:
            papers.append(paper)
    return papers, problems
