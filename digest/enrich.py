"""Filling in what a source left out: a paper stored with no arXiv id and no link (a daily-papers digest gives only
title and abstract) is looked up on the arXiv API by its title.

- Titles go `[enrich] batch` to a request (`ti:"..." OR ti:"..."`), requests at least `[enrich] min_interval`
  seconds apart (arXiv asks for 3), at most `[enrich] max_lookups` titles per ingest (the rest at the next one).
- A match counts only when the normalised titles are equal (digest.paper.title_key): a near miss is another paper.
  The answer goes through the same cleaning as every source (the feed reader, then make_paper); the links are
  built from the arXiv id, never taken from the answer.
- Every answer is kept in the store, "not on arXiv" included, so no title is ever asked twice. A failure (no
  connection, a timeout, HTTP 429 or 5xx, an answer we cannot read) is not an answer: nothing is kept, the run
  stops asking (one notice, not one timeout per title) and the next ingest asks again.
- `DIGEST_ENRICH=off` turns the lookups off for one run (the tests' switch: no test reaches the network).

The network (`Fetch`), the monotonic clock and sleep are injected, so tests drive a local server or none, and check
the spacing of requests without waiting.
"""

from __future__ import annotations

import http.client
import logging
import os
import time
import urllib.error
import xml.sax
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import urlencode

import feedparser

from digest.clock import Clock, utc_now
from digest.config import Enrich
from digest.errors import ConfigError, IngestError
from digest.ingest.feeds import entry_to_paper  # the feed reader's entry -> Paper: the same cleaning as a feed
from digest.ingest.read import Deadline, Redirected, get_url  # the whole-exchange deadline of every other fetch
from digest.ingest.text import one_line
from digest.paper import Paper, title_key
from digest.store.records import ArxivMatch

log = logging.getLogger(__name__)

ENV_VAR = "DIGEST_ENRICH"
MAX_ANSWER_BYTES = 10_000_000
# Results asked per title of a request. A title is usually found among the first few results for its phrase; an
# answer cut short by this limit settles only the titles it contains, and the others are asked again one by one.
RESULTS_PER_TITLE = 5
# A search phrase longer than this is cut at a word: a phrase matches titles that contain it, so a prefix still
# finds the paper (the match is then checked on the whole title), and the request line stays short.
PHRASE_MAX = 200
# Say that the lookups will take a while when they will (a first ingest of a backlog takes minutes at 3 s apart).
ANNOUNCE_AFTER_SECONDS = 10.0

# (url, timeout in seconds) -> the answer's bytes; raises LookupUnavailable for anything that is not an answer.
Fetch = Callable[[str, float], bytes]


class LookupUnavailable(Exception):
    """The arXiv API gave no usable answer (unreachable, too slow, busy, refusing, or an answer we cannot read).
    Not an answer about any title: nothing is remembered, and the titles are asked again at the next ingest."""


def lookups_enabled(settings: Enrich) -> bool:
    """`[enrich] arxiv`, unless DIGEST_ENRICH=off turns the lookups off for this run."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value and value != "off":
        raise ConfigError(
            f'{ENV_VAR}={value!r}: only "off" is understood (no arXiv lookups for this run); unset it to follow'
            " [enrich] arxiv"
        )
    return settings.arxiv and value != "off"


def http_fetch(url: str, timeout: float) -> bytes:
    """GET `url`: the whole exchange within `timeout` seconds, at most MAX_ANSWER_BYTES, no redirect followed.
    Every failure is a LookupUnavailable saying why in one line."""
    deadline = Deadline(timeout)
    try:
        return get_url(url, deadline, MAX_ANSWER_BYTES, url)
    except Redirected as redirect:
        target = one_line(redirect.location or "nowhere", 200)
        raise LookupUnavailable(f"redirected to {target}; set [enrich] api_url to the final URL") from None
    except TimeoutError:
        raise LookupUnavailable(f"no answer within {timeout:g} s") from None
    except urllib.error.HTTPError as exc:
        exc.close()
        raise LookupUnavailable(f"HTTP {exc.code} {one_line(exc.reason)}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise LookupUnavailable(f"no answer within {timeout:g} s") from None
        raise LookupUnavailable(f"cannot connect ({one_line(exc.reason)})") from None
    except IngestError:  # the only one _get raises itself: the answer is too large
        raise LookupUnavailable(f"an answer larger than {MAX_ANSWER_BYTES / 1e6:g} MB") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise LookupUnavailable(f"cannot fetch ({one_line(exc) or type(exc).__name__})") from None


class Spacing:
    """At least `interval` seconds from the end of one request to the start of the next. Measured from the end, so
    that a slow answer followed by a quick connection cannot bring two requests closer than the interval at the
    server."""

    def __init__(self, interval: float, monotonic: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self.interval = interval
        self._monotonic = monotonic
        self._sleep = sleep
        self._ready_at: float | None = None

    def wait(self) -> None:
        if self._ready_at is None:
            return
        while (delay := self._ready_at - self._monotonic()) > 0:
            self._sleep(delay)

    def done(self) -> None:
        self._ready_at = self._monotonic() + self.interval


class SharedSpacing:
    """Spacing kept in the store (Store.take_turn): every process and host that shares it takes turns, so two
    ingests at once (a daemon and a `digest ingest`, daemons on several hosts) stay `interval` apart at the server."""

    NAME = "arxiv-api"

    def __init__(self, store: TurnStore, interval: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.interval = interval
        self._sleep = sleep

    def wait(self) -> None:
        while (delay := self.store.take_turn(self.NAME, self.interval)) > 0:
            self._sleep(delay)

    def done(self) -> None:
        self.store.finish_request(self.NAME, self.interval)


class TurnStore(Protocol):
    """What shared spacing needs of the store (digest.store.Store)."""

    def take_turn(self, name: str, interval: float) -> float: ...
    def finish_request(self, name: str, interval: float) -> None: ...


def search_phrase(title: str) -> str:
    """The title as a phrase the API's query syntax takes: its normalised words only (no quotes, brackets, colons
    or operators left to choke on), cut at a word past PHRASE_MAX characters. Empty: nothing to search for."""
    phrase = title_key(title)
    if len(phrase) > PHRASE_MAX:
        cut = phrase.rfind(" ", 0, PHRASE_MAX + 1)
        phrase = phrase[:cut] if cut > 0 else phrase[:PHRASE_MAX]
    return phrase


def query_url(api_url: str, phrases: Sequence[str], max_results: int) -> str:
    query = " OR ".join(f'ti:"{phrase}"' for phrase in phrases)
    params = urlencode({"search_query": query, "start": 0, "max_results": max_results})
    return f"{api_url}{'&' if '?' in api_url else '?'}{params}"


@dataclass(frozen=True)
class Answer:
    """One answer of the API: the papers it lists (cleaned like any feed's), and whether it lists every result."""

    papers: list[Paper]
    complete: bool


def parse_answer(data: bytes, max_results: int) -> Answer:
    """An arXiv API answer (Atom with OpenSearch counts); LookupUnavailable when it is not one."""
    parsed = feedparser.parse(data, sanitize_html=True, resolve_relative_uris=False)
    problem = parsed.get("bozo_exception")
    if parsed.get("bozo") and isinstance(problem, xml.sax.SAXException):
        raise LookupUnavailable(f"a malformed answer ({one_line(problem.getMessage(), 120)})")
    if not str(parsed.get("version") or "").startswith("atom"):
        raise LookupUnavailable("the answer is not an Atom feed; check [enrich] api_url")
    entries = list(parsed.entries)
    for entry in entries:
        # The API reports a query it cannot run as a feed with one entry whose id is under /api/errors.
        if "/api/errors" in str(entry.get("id") or ""):
            raise LookupUnavailable(f"the API refused the query ({one_line(entry.get('summary') or '', 120)})")
    papers: list[Paper] = []
    for entry in entries:
        try:
            paper = entry_to_paper(entry)
        except Exception:  # an entry we cannot read names no paper; the others still count
            continue
        if paper is not None and paper.arxiv_id:
            papers.append(paper)
    try:
        total = int(parsed.feed.get("opensearch_totalresults"))
    except (TypeError, ValueError):
        total = None
    complete = total <= len(entries) if total is not None else len(entries) < max_results
    return Answer(papers, complete)


def settle(keys: Iterable[str], answer: Answer, *, final: bool) -> tuple[dict[str, ArxivMatch | None], list[str]]:
    """What an answer says about each asked title key: the paper whose normalised title is exactly it, or None (not
    on arXiv; also when two arXiv papers share the title, since either could be wrong). A key the answer does not
    contain stays open when the answer was cut short (it is asked again alone), unless this was that last try."""
    found: dict[str, dict[str, Paper]] = {}
    for paper in answer.papers:
        found.setdefault(paper.key, {}).setdefault(paper.arxiv_id or "", paper)
    settled: dict[str, ArxivMatch | None] = {}
    still_open: list[str] = []
    for key in keys:
        papers = list(found.get(key, {}).values())
        if len(papers) == 1:
            settled[key] = _match(papers[0])
        elif papers or answer.complete or final:
            settled[key] = None
        else:
            still_open.append(key)
    return settled, still_open


def _match(paper: Paper) -> ArxivMatch:
    return ArxivMatch(
        arxiv_id=paper.arxiv_id or "",
        version=paper.arxiv_version,
        title=paper.title,
        authors=paper.authors,
        categories=paper.categories,
        published=paper.published,
        doi=paper.doi,
    )


class ArxivClient:
    """Title searches on the arXiv API, spaced as it asks (in this process, or with `spacing` across all that share a
    store); `fetch`, `monotonic` and `sleep` are injectable."""

    def __init__(
        self,
        settings: Enrich,
        *,
        fetch: Fetch | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        spacing: Spacing | SharedSpacing | None = None,
    ) -> None:
        self.settings = settings
        self._fetch = fetch
        self._spacing = spacing or Spacing(settings.min_interval, monotonic, sleep)
        self.requests = 0

    def search(self, titles: Sequence[str]) -> Answer:
        """One request for these titles (each must give a search phrase)."""
        phrases = [search_phrase(title) for title in titles]
        max_results = len(phrases) * RESULTS_PER_TITLE
        url = query_url(self.settings.api_url, phrases, max_results)
        fetch = self._fetch or http_fetch  # looked up at the call, so a test can replace the module's
        self._spacing.wait()
        try:
            self.requests += 1
            data = fetch(url, self.settings.timeout)
        finally:
            self._spacing.done()
        return parse_answer(data, max_results)


class LookupStore(Protocol):
    """What the lookups need of the store (digest.store.Store)."""

    def fill_from_arxiv_lookups(self, now: datetime) -> int: ...
    def unasked_titles(
        self, limit: int, *, retry_before: datetime | None = None, since: datetime | None = None
    ) -> list[tuple[str, str]]: ...
    def count_unasked_titles(self, *, retry_before: datetime | None = None, since: datetime | None = None) -> int: ...
    def record_arxiv_answers(self, answers: dict[str, ArxivMatch | None], now: datetime) -> int: ...


@dataclass
class EnrichReport:
    enriched: int = 0  # papers that got an arXiv id and link
    not_found: int = 0  # titles the API answered are not on arXiv (asked again after [enrich] retry_after)
    looked_up: int = 0  # titles answered in this run
    requests: int = 0
    pending: int = 0  # titles left for the next ingest (max_lookups reached, or the API failed)
    notices: list[str] = field(default_factory=list)


def enrich_papers(store: LookupStore, client: ArxivClient, *, max_lookups: int, clock: Clock = utc_now) -> EnrichReport:
    """Look up the stored papers that have no arXiv id and no link (newest first, at most `max_lookups` titles),
    remember every answer and fill in what was found. A failure of the API ends the lookups with one notice."""
    report = EnrichReport()
    report.enriched += store.fill_from_arxiv_lookups(clock())
    now = clock()
    retry = {
        "retry_before": now - timedelta(seconds=client.settings.retry_after),
        "since": now - timedelta(seconds=client.settings.retry_within),
    }
    titles = store.unasked_titles(max_lookups, **retry) if max_lookups > 0 else []
    blank = {key: None for key, title in titles if not search_phrase(title)}
    if blank:  # a title of punctuation alone: nothing to ask, and the answer would be "no" anyway
        store.record_arxiv_answers(dict(blank), clock())
        report.not_found += len(blank)
        report.looked_up += len(blank)
    asked = [(key, title) for key, title in titles if key not in blank]
    batch = client.settings.batch
    queue: deque[list[tuple[str, str]]] = deque(asked[start : start + batch] for start in range(0, len(asked), batch))
    _announce(len(asked), len(queue), client.settings.min_interval)
    while queue:
        chunk = queue.popleft()
        try:
            answer = client.search([title for _, title in chunk])
        except LookupUnavailable as exc:
            left = sum(len(rest) for rest in queue) + len(chunk)
            report.notices.append(
                f"arXiv lookup stopped: {client.settings.api_url}: {exc}; {left} title(s) are looked up at the next"
                " ingest"
            )
            break
        settled, still_open = settle([key for key, _ in chunk], answer, final=len(chunk) == 1)
        queue.extend([item] for item in chunk if item[0] in still_open)
        report.enriched += store.record_arxiv_answers(settled, clock())
        report.not_found += sum(1 for match in settled.values() if match is None)
        report.looked_up += len(settled)
    report.requests = client.requests
    report.pending = store.count_unasked_titles(**retry)
    return report


def _announce(titles: int, requests: int, interval: float) -> None:
    seconds = max(requests - 1, 0) * interval
    if seconds >= ANNOUNCE_AFTER_SECONDS:
        log.info(
            "arXiv: looking up %d title(s) in %d request(s), %g s apart (at least %.0f s)",
            titles,
            requests,
            interval,
            seconds,
        )
