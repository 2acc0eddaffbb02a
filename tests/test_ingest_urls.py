"""URLs are fetched from a real HTTP server on 127.0.0.1 (no mocks): success, HTTP errors, silence, size."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cli import digest
from conftest import NOW, REPO

from digest.ingest import ingest_sources
from digest.store import Store

FEED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>Invented</title>'
    b"<link>https://example.org/</link><description>Invented</description>"
    b"<item><title>Served Over HTTP</title><link>https://arxiv.org/abs/2404.00042v1</link>"
    b"<description>An invented paper served by the test server.</description></item>"
    b"</channel></rss>\n"
)
LIMIT = 50_000


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep the test output quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/rss+xml", length: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        if self.path == "/feed.xml":
            self._send(200, FEED)
        elif self.path == "/error-page":
            self._send(200, b"<!DOCTYPE html><html><head><title>Please log in</title></head></html>", "text/html")
        elif self.path == "/big-declared":
            self.send_response(200)
            self.send_header("Content-Length", str(LIMIT * 10))
            self.end_headers()
            self.wfile.write(b"<" * 1000)  # the client must not wait for the rest
        elif self.path == "/big-undeclared":
            self.send_response(200)
            self.end_headers()  # no Content-Length: the size is only known by reading
            try:
                for _ in range(20):
                    self.wfile.write(b" " * 10_000)
            except OSError:
                pass
            self.close_connection = True
        elif self.path == "/server-error":
            self._send(500, b"oops", "text/plain")
        else:
            self._send(404, b"not here", "text/plain")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts connections (the kernel's backlog does) and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/feed.xml"
    sock.close()


def fetch(store: Store, *urls: str, timeout: float = 5.0) -> list[str]:
    report = ingest_sources(store, list(urls), max_bytes=LIMIT, timeout=timeout, clock=lambda: NOW)
    return [r.error for r in report.rejected]


def test_a_feed_url_is_ingested_and_named_by_its_url(store: Store, server: str) -> None:
    assert fetch(store, f"{server}/feed.xml") == []
    [paper] = store.list_papers()
    assert (paper.title, paper.arxiv_id, paper.sources) == ("Served Over HTTP", "2404.00042", (f"{server}/feed.xml",))
    again = ingest_sources(store, [f"{server}/feed.xml"], max_bytes=LIMIT, clock=lambda: NOW)
    assert (again.new, again.unchanged_files) == (0, 1)


def test_http_errors_are_one_line_and_other_sources_still_go_in(store: Store, server: str) -> None:
    errors = fetch(store, f"{server}/missing.xml", f"{server}/server-error", f"{server}/feed.xml")
    assert errors == [
        f"{server}/missing.xml: HTTP 404 Not Found; check the URL in [sources] urls",
        f"{server}/server-error: HTTP 500 Internal Server Error; check the URL in [sources] urls",
    ]
    assert store.count_papers() == 1


def test_an_html_page_at_a_feed_url_is_refused(store: Store, server: str) -> None:
    assert fetch(store, f"{server}/error-page") == [
        f"{server}/error-page: is an HTML page, not a feed (page title 'Please log in'); check the URL or file"
    ]


@pytest.mark.parametrize("path", ["/big-declared", "/big-undeclared"])
def test_too_large_downloads_are_refused(store: Store, server: str, path: str) -> None:
    started = time.monotonic()
    assert fetch(store, f"{server}{path}") == [
        f"{server}{path}: larger than the 0.05 MB limit; raise [ingest] max_file_mb to read it"
    ]
    assert time.monotonic() - started < 4  # refused without waiting for a body that never ends


def test_a_server_that_never_answers_times_out(store: Store, silent_server: str) -> None:
    started = time.monotonic()
    assert fetch(store, silent_server, timeout=0.3) == [
        f"{silent_server}: no answer within 0.3 s; try again later or raise [sources] timeout"
    ]
    assert time.monotonic() - started < 4


def test_a_refused_connection_is_one_line(store: Store) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    [error] = fetch(store, f"http://127.0.0.1:{port}/feed.xml")
    assert error.startswith(f"http://127.0.0.1:{port}/feed.xml: cannot fetch (")
    assert "\n" not in error


def test_cli_uses_config_sources_and_timeout(tmp_path: Path, server: str, silent_server: str) -> None:
    """`digest ingest` with no argument reads the inbox and [sources] urls, with [sources] timeout."""
    (tmp_path / "config.toml").write_text(
        f'[paths]\ndatabase = "db/digest.db"\ninbox = "inbox"\n'
        f'[sources]\nurls = ["{server}/feed.xml", "{silent_server}"]\ntimeout = 0.3\n',
        encoding="utf-8",
    )
    result = digest("--config", tmp_path / "config.toml", "ingest", "--json", cwd=REPO)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"rejected: {silent_server}: no answer within 0.3 s; try again later or raise [sources] timeout"
    )
    report = json.loads(result.stdout)
    assert (report["files"], report["new"]) == (1, 1)
    assert (tmp_path / "inbox").is_dir() and (tmp_path / "db" / "digest.db").is_file()
