"""A stand-in for the arXiv API on 127.0.0.1: a real http.server in a thread that answers title searches
(`search_query=ti:"..." OR ti:"..."`, `max_results`) with arXiv-API-shaped Atom written here, from a catalogue the
test gives. It records every request (its phrases, `max_results`, and when it arrived on the monotonic clock), and
can be told to fail: an HTTP status, a body of our choosing, or no answer at all.

Relevance is imitated the way a search engine's length norm behaves: of the titles containing a phrase, shorter
ones come first; `opensearch:totalResults` counts every match, so a client can tell an answer cut short.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape, quoteattr

from digest.paper import title_key

_PHRASE = re.compile(r'ti:"([^"]*)"')


@dataclass(frozen=True)
class Entry:
    """One paper the server knows. `xml`: the whole <entry> as written (hostile content), matched by `title`."""

    arxiv_id: str  # with its version, as the API gives it: "2403.01234v2"
    title: str
    authors: tuple[str, ...] = ("Ada Lovelace", "Charles Babbage")
    categories: tuple[str, ...] = ("cs.LG", "stat.ML")
    published: str = "2024-03-01T18:00:00Z"
    abstract: str = "An abstract written for the tests."
    doi: str | None = None
    xml: str | None = None

    def atom(self) -> str:
        if self.xml is not None:
            return self.xml
        url = f"http://arxiv.org/abs/{self.arxiv_id}"
        authors = "".join(f"<author><name>{escape(name)}</name></author>" for name in self.authors)
        categories = "".join(
            f"<category term={quoteattr(c)} scheme='http://arxiv.org/schemas/atom'/>" for c in self.categories
        )
        primary = (
            f"<arxiv:primary_category term={quoteattr(self.categories[0])} scheme='http://arxiv.org/schemas/atom'/>"
            if self.categories
            else ""
        )
        doi = f"<arxiv:doi>{escape(self.doi)}</arxiv:doi>" if self.doi else ""
        return (
            f"<entry><id>{escape(url)}</id><updated>{self.published}</updated><published>{self.published}</published>"
            f"<title>{escape(self.title)}</title><summary>{escape(self.abstract)}</summary>{authors}{doi}"
            f"<link href={quoteattr(url)} rel='alternate' type='text/html'/>"
            f"<link title='pdf' href={quoteattr(url.replace('/abs/', '/pdf/'))} rel='related' type='application/pdf'/>"
            f"{primary}{categories}</entry>"
        )


def feed(entries: Iterable[Entry], total: int, query: str = "") -> bytes:
    body = "".join(entry.atom() for entry in entries)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/"'
        ' xmlns:arxiv="http://arxiv.org/schemas/atom">'
        f"<link href='http://arxiv.org/api/query' rel='self' type='application/atom+xml'/>"
        f"<title type='html'>ArXiv Query: {escape(query[:200])}</title>"
        "<id>http://arxiv.org/api/test</id><updated>2024-03-02T00:00:00-05:00</updated>"
        f"<opensearch:totalResults>{total}</opensearch:totalResults>"
        "<opensearch:startIndex>0</opensearch:startIndex>"
        f"{body}</feed>"
    ).encode()


@dataclass(frozen=True)
class Request:
    phrases: list[str]
    max_results: int
    at: float  # time.monotonic() when it arrived


@dataclass
class ArxivServer:
    """Start with `with ArxivServer(entries) as server:`; `server.url` is the API URL for [enrich] api_url."""

    entries: list[Entry] = field(default_factory=list)
    status: int = 200  # anything else: that status and a short text body
    body: bytes | None = None  # the answer to every search, as is
    hang: bool = False  # accept, read the request, never answer (until the server stops)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._title_words: dict[str, list[str]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        # A short poll: shutdown() waits up to one poll for the loop to notice (the default 0.5 s, per server).
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/api/query"

    def __enter__(self) -> ArxivServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def search(self, phrases: list[str], max_results: int) -> tuple[list[Entry], int]:
        """Entries whose title contains one of the phrases (as whole words), shortest titles first."""
        words = self._words()
        found = [
            entry
            for entry in self.entries
            if any(_contains(words[entry.title], phrase.split()) for phrase in phrases if phrase.split())
        ]
        found.sort(key=lambda entry: len(entry.title))
        return found[:max_results], len(found)

    def _words(self) -> dict[str, list[str]]:
        """Each known title's normalised words, computed once (the shared digests' catalogue is 459 titles)."""
        if len(self._title_words) != len(self.entries):
            self._title_words = {entry.title: title_key(entry.title).split() for entry in self.entries}
        return self._title_words

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        query = parse_qs(urlsplit(handler.path).query)
        search = query.get("search_query", [""])[0]
        max_results = int(query.get("max_results", ["10"])[0])
        with self._lock:
            self.requests.append(Request(_PHRASE.findall(search), max_results, arrived))
        if self.hang:
            self._stop.wait(30)
            return
        if self.status != 200:
            self._send(handler, self.status, b"busy, try again later", "text/plain")
            return
        if self.body is not None:
            self._send(handler, 200, self.body, "application/atom+xml")
            return
        entries, total = self.search(_PHRASE.findall(search), max_results)
        self._send(handler, 200, feed(entries, total, search), "application/atom+xml")

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, kind: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def _contains(words: list[str], phrase: list[str]) -> bool:
    return any(words[i : i + len(phrase)] == phrase for i in range(len(words) - len(phrase) + 1))


def closed_port_url() -> str:
    """An API URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/query"
