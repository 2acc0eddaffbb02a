"""Ingestion: files, folders and URLs in, papers into the store, once each.

The format of each input is detected from its content, never from its name.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from digest.clock import Clock, utc_now
from digest.errors import IngestError, StoreValueError
from digest.ingest.daily import looks_like_daily, parse_daily
from digest.ingest.feeds import looks_like_html_page, parse_feed
from digest.ingest.jsonlist import parse_json
from digest.ingest.read import fetch_url, read_file
from digest.ingest.text import decode, describe
from digest.paper import Paper
from digest.store import Store, StoredFile


@dataclass
class Rejection:
    path: str
    error: str


@dataclass
class IngestReport:
    files: int = 0
    new: int = 0
    updated: int = 0
    duplicates: int = 0
    entries: int = 0
    unchanged_files: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    # The arXiv lookups that follow the files (digest.enrich): papers that got an arXiv id and link, titles found
    # not to be on arXiv, titles left for the next ingest.
    enriched: int = 0
    not_on_arxiv: int = 0
    lookups_pending: int = 0
    # What went wrong without making the ingest fail (the arXiv API out of reach): one line each, exit status 0.
    notices: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "files": self.files,
            "new": self.new,
            "updated": self.updated,
            "duplicates": self.duplicates,
            "entries": self.entries,
            "unchanged_files": self.unchanged_files,
            "rejected": [{"path": r.path, "error": r.error} for r in self.rejected],
            "enriched": self.enriched,
            "not_on_arxiv": self.not_on_arxiv,
            "lookups_pending": self.lookups_pending,
            "notices": list(self.notices),
        }


def parse_document(data: bytes, source: str, today: date | None = None) -> tuple[list[Paper], list[str]]:
    """Detect the format of one document and read its papers, with one line per entry that could not be read.

    Raises IngestError, and nothing else, when the document as a whole cannot be read: whatever goes wrong inside
    (a parser's own error, deep nesting, a value of a type nobody expected) is that one source's rejection.
    """
    try:
        return _parse_document(data, source, today)
    except IngestError:
        raise
    except Exception as exc:
        raise IngestError(f"{source}: cannot read ({describe(exc)})") from None


def _parse_document(data: bytes, source: str, today: date | None) -> tuple[list[Paper], list[str]]:
    text = decode(data, source)
    head = text.lstrip("\ufeff \t\r\n")
    if head.startswith("<"):
        return parse_feed(data if not text.startswith("\ufeff") else text.encode("utf-8"), text, source)
    if looks_like_html_page(head):
        return parse_feed(data, text, source)
    if head.startswith(("[", "{")):
        return parse_json(head, source)
    papers, problems = parse_daily(text, today)
    if not papers:
        hint = "" if looks_like_daily(text) else " (expected a daily-papers digest, an RSS/Atom feed or a JSON list)"
        first = f": {problems[0].message} at line {problems[0].line}" if problems else ""
        raise IngestError(f"{source}: no papers found{first}{hint}")
    return papers, [f"{source}:{p.line}: {p.message}" for p in problems]


def expand(paths: Iterable[str]) -> list[str]:
    """Folders become their files (recursively, sorted, hidden files skipped); URLs and files stay."""
    result: list[str] = []
    for item in paths:
        if re.match(r"^https?://", item, re.IGNORECASE):
            result.append(item)
            continue
        path = Path(item)
        if path.is_dir():
            result.extend(
                str(p)
                for p in sorted(path.rglob("*"))
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            result.append(item)
    return result


def ingest_sources(
    store: Store,
    sources: Iterable[str],
    *,
    max_bytes: int,
    timeout: float = 20.0,
    clock: Clock = utc_now,
    progress: Callable[[str], None] | None = None,
) -> IngestReport:
    """Ingest every source; one bad source is reported and skipped, the others still go in."""
    report = IngestReport()
    for source in expand(sources):
        if progress:
            progress(source)
        is_url = bool(re.match(r"^https?://", source, re.IGNORECASE))
        label = source if is_url else str(Path(source).resolve())
        signature = None if is_url else file_signature(Path(source))
        known = store.file_hash_by_stat(label, signature) if signature else None
        seen = store.seen_file(known) if known else None
        if seen is not None:  # the very file read before, untouched since: not read again
            _count_unchanged(report, seen)
            continue
        try:
            data = fetch_url(source, max_bytes, timeout) if is_url else read_file(Path(source), max_bytes)
            content_hash = hashlib.sha256(data).hexdigest()
            seen = store.seen_file(content_hash)
            if seen is not None:
                _count_unchanged(report, seen)
                _remember_stat(store, label, signature, content_hash)
                continue
            papers, problems = parse_document(data, source, clock().date())
        except IngestError as exc:
            report.rejected.append(Rejection(source, str(exc)))
            continue
        try:
            counts = store.ingest_file(content_hash, label, papers, clock(), remember=not problems)
        except (ValueError, OverflowError, StoreValueError) as exc:
            # A value the database refuses: the file's transaction is rolled back, the other sources still go in.
            report.rejected.append(Rejection(source, f"{source}: cannot store its papers ({describe(exc)})"))
            continue
        if not problems:
            _remember_stat(store, label, signature, content_hash)
        report.files += 1
        report.entries += len(papers)
        report.new += counts["new"]
        report.updated += counts["updated"]
        report.duplicates += counts["duplicate"]
        report.rejected.extend(Rejection(source, problem) for problem in problems)
    return report


def file_signature(path: Path) -> str | None:
    """What changes whenever a file's content may have: inode, size, modification and change times (ns)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return f"{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}"


def _count_unchanged(report: IngestReport, seen: StoredFile) -> None:
    report.files += 1
    report.unchanged_files += 1
    report.duplicates += seen.entries
    report.entries += seen.entries


# A file changed within this many seconds of being read may change again within the same tick of the file
# system's clock (a few ms on Linux, 2 s on FAT) without its stat showing it: such a file is read again next time.
RACY_SECONDS = 3.0


def _remember_stat(store: Store, label: str, signature: str | None, content_hash: str) -> None:
    """Remember the file's stat for next time, if it did not change while it was read and is not "racy" (changed
    so recently that a rewrite in the same clock tick would leave the same stat: git's rule for its index)."""
    if signature is None or signature != file_signature(Path(label)):
        return
    mtime_ns, ctime_ns = (int(part) for part in signature.split(":")[2:4])
    settled = time.time_ns() - RACY_SECONDS * 1e9  # not the calendar: compared with the file system's own times
    if max(mtime_ns, ctime_ns) < settled:
        store.remember_file_stat(label, signature, content_hash)
