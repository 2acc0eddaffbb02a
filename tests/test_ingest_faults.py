"""Faults a hostile test pass found in ingestion, each reproduced with real parts: files on disk, HTTP servers on
127.0.0.1 (http.server in a thread), a SQLite store in tmp_path. No mocks.

1. identifiers: a source's arXiv id and DOI are both kept; an arXiv DOI also names the arXiv id;
2. isolation: one malformed document or entry is one line of rejection, never an exception out of ingest;
3. deadlines: `[sources] timeout` bounds the whole download, not each read;
4. redirects: only to http(s) on the same host and port, at most 5;
5. caps: titles, abstracts and authors have a length, and bidi controls never get through.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cli import digest
from conftest import NOW
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from smtp_server import make_certificate

from digest.config import Config
from digest.errors import IngestError
from digest.ingest import IngestReport, ingest_sources, parse_document
from digest.paper import ABSTRACT_MAX, AUTHORS_MAX, TITLE_MAX, make_paper
from digest.store import Store

# feedparser warns when a date-less entry is asked for published_parsed (the fuzzed feeds have many).
pytestmark = pytest.mark.filterwarnings("ignore:To avoid breaking existing software:DeprecationWarning")
LIMIT = 5_000_000
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def ingest(store: Store, *sources: Path | str, timeout: float = 5.0) -> IngestReport:
    return ingest_sources(store, [str(s) for s in sources], max_bytes=LIMIT, timeout=timeout, clock=lambda: NOW)


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def json_list(*entries: object) -> str:
    return json.dumps(list(entries), ensure_ascii=False)


def rss(*items: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>Invented</title>'
        "<link>https://example.org/</link><description>Invented listing</description>"
        + "".join(items)
        + "</channel></rss>\n"
    )


def atom(*entries: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom"'
        ' xmlns:arxiv="http://arxiv.org/schemas/atom"><title>Invented</title><id>urn:invented</id>'
        "<updated>2024-03-14T00:00:00Z</updated>" + "".join(entries) + "</feed>\n"
    )


def xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---- 1. every identifier a source gives is kept -----------------------------------------------------------------

ARXIV_ID = "2403.01234"
JOURNAL_DOI = "10.1145/3600000.3600001"
ARXIV_TITLE = "Sparse Attention for Very Long Documents"
# The journal version is retitled: only the identifiers can tell that it is the same paper.
JOURNAL_TITLE = "Sparse Attention for Very Long Documents, Revisited for the Journal"
ABSTRACT = "We make attention sparse so that documents of a million tokens fit in memory, and lose nothing."

LISTINGS = {
    "arxiv-rss-new-style": rss(
        f"<item><title>{ARXIV_TITLE}</title><link>https://arxiv.org/abs/{ARXIV_ID}</link>"
        f"<description>arXiv:{ARXIV_ID}v2 Announce Type: replace \nAbstract: {ABSTRACT}</description>"
        "<dc:creator>Ada Example, Alan Example</dc:creator><category>cs.CL</category></item>"
    ),
    "arxiv-rss-old-style": rss(
        f"<item><title>{ARXIV_TITLE}. (arXiv:{ARXIV_ID}v1 [cs.CL])</title>"
        f"<link>http://arxiv.org/abs/{ARXIV_ID}</link><description>&lt;p&gt;{ABSTRACT}&lt;/p&gt;</description></item>"
    ),
    "arxiv-api-atom": atom(
        f"<entry><id>http://arxiv.org/abs/{ARXIV_ID}v2</id><published>2024-03-02T00:00:00Z</published>"
        f"<title>{ARXIV_TITLE}</title><summary>{ABSTRACT}</summary><author><name>Ada Example</name></author>"
        f'<link href="http://arxiv.org/abs/{ARXIV_ID}v2" rel="alternate" type="text/html"/></entry>'
    ),
}


def one_paper(store: Store) -> None:
    papers = store.list_papers()
    assert len(papers) == 1, [(p.id, p.title, p.arxiv_id, p.doi) for p in papers]
    assert papers[0].arxiv_id == ARXIV_ID


@pytest.mark.parametrize("listing", sorted(LISTINGS))
@pytest.mark.parametrize("json_first", [True, False], ids=["json-first", "listing-first"])
def test_json_with_arxiv_id_and_doi_and_the_arxiv_listing_are_one_paper(
    store: Store, tmp_path: Path, listing: str, json_first: bool
) -> None:
    entry = {"id": ARXIV_ID, "doi": JOURNAL_DOI, "title": JOURNAL_TITLE, "abstract": ABSTRACT}
    json_file = write(tmp_path / "list.json", json_list(entry))
    feed_file = write(tmp_path / f"{listing}.xml", LISTINGS[listing])
    for source in [json_file, feed_file] if json_first else [feed_file, json_file]:
        report = ingest(store, source)
        assert report.rejected == [] and report.entries == 1
    one_paper(store)
    [paper] = store.list_papers()
    assert paper.doi == JOURNAL_DOI  # both identifiers kept: a later source with either one matches
    assert store.find_paper(JOURNAL_DOI) == store.find_paper(ARXIV_ID) == paper


@pytest.mark.parametrize(
    "entry",
    [
        {"doi": f"10.48550/arXiv.{ARXIV_ID}"},
        {"doi": f"https://doi.org/10.48550/ARXIV.{ARXIV_ID}"},
        {"id": f"10.48550/arxiv.{ARXIV_ID}"},
        {"id": f"doi:10.48550/ArXiv.{ARXIV_ID}"},
    ],
    ids=["doi", "doi-url-upper", "id", "id-doi-prefix"],
)
@pytest.mark.parametrize("json_first", [True, False], ids=["json-first", "listing-first"])
def test_an_arxiv_doi_alone_names_the_arxiv_paper(
    store: Store, tmp_path: Path, entry: dict[str, str], json_first: bool
) -> None:
    json_file = write(tmp_path / "list.json", json_list({**entry, "title": JOURNAL_TITLE, "abstract": ABSTRACT}))
    feed_file = write(tmp_path / "listing.xml", LISTINGS["arxiv-rss-new-style"])
    [parsed], _ = parse_document(json_file.read_bytes(), "list.json")
    assert (parsed.arxiv_id, parsed.doi) == (ARXIV_ID, f"10.48550/arxiv.{ARXIV_ID}")  # both set
    for source in [json_file, feed_file] if json_first else [feed_file, json_file]:
        assert ingest(store, source).rejected == []
    one_paper(store)


def test_a_feed_entry_with_only_an_arxiv_doi_matches_the_arxiv_id(store: Store, tmp_path: Path) -> None:
    journal_feed = atom(
        f"<entry><id>https://journal.example.org/articles/77</id><title>{JOURNAL_TITLE}</title>"
        f"<summary>{ABSTRACT}</summary><author><name>Ada Example</name></author>"
        f'<link href="https://journal.example.org/articles/77" rel="alternate"/>'
        f'<link title="doi" href="https://doi.org/10.48550/arXiv.{ARXIV_ID}" rel="related"/></entry>'
    )
    feed_file = write(tmp_path / "journal.xml", journal_feed)
    json_file = write(tmp_path / "list.json", json_list({"id": ARXIV_ID, "title": ARXIV_TITLE, "abstract": ABSTRACT}))
    assert ingest(store, feed_file).rejected == []
    assert ingest(store, json_file).rejected == []
    one_paper(store)


def test_make_paper_keeps_every_identifier_and_drops_a_contradicting_arxiv_doi() -> None:
    both = make_paper(title="T", abstract="A", doi=[f"10.48550/ARXIV.{ARXIV_ID}", JOURNAL_DOI])
    assert (both.arxiv_id, both.doi) == (ARXIV_ID, JOURNAL_DOI)  # the publisher's DOI, and the arXiv id
    only = make_paper(title="T", abstract="A", doi=f"10.48550/arXiv.{ARXIV_ID}")
    assert (only.arxiv_id, only.doi, only.url) == (
        ARXIV_ID,
        f"10.48550/arxiv.{ARXIV_ID}",
        f"https://arxiv.org/abs/{ARXIV_ID}",
    )
    versioned = make_paper(
        title="T", abstract="A", doi=f"10.48550/arXiv.{ARXIV_ID}", url=f"https://arxiv.org/abs/{ARXIV_ID}v3"
    )
    assert (versioned.arxiv_id, versioned.arxiv_version) == (ARXIV_ID, 3)
    # An arXiv DOI of another paper than the explicit id would merge two papers: the explicit id wins alone.
    contradiction = make_paper(title="T", abstract="A", arxiv=ARXIV_ID, doi="10.48550/arXiv.2401.00001")
    assert (contradiction.arxiv_id, contradiction.doi) == (ARXIV_ID, None)


# ---- 2. one malformed document or entry is one line, and the rest still goes in ----------------------------------

GOOD = {"id": "2405.00001", "title": "A Paper That Is Fine", "abstract": "It has a title and an abstract."}


def test_malformed_json_is_one_line_per_file_or_entry_and_later_files_still_go_in(store: Store, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    huge = "9" * 5_000
    deep = write(inbox / "a-deep.json", "[" * 100_000 + "]" * 100_000)
    deep_object = write(inbox / "b-deep-object.json", '{"papers": ' + '{"a": ' * 50_000 + "1" + "}" * 50_001)
    big_int = write(
        inbox / "c-big-int.json",
        f'[{{"id": {huge}, "title": "Id Is A Number", "abstract": "x"}},'
        f' {{"title": "Upvotes Are Absurd", "abstract": "Kept: we never read upvotes.", "upvotes": {huge}}}]',
    )
    hugging_face = write(
        inbox / "d-hf.json",
        json_list(
            {"paper": {"id": "2405.00002", "title": "Numeric Date", "summary": "s", "publishedAt": 1710000000}},
            {"paper": {"id": "2405.00003", "title": "String Date", "summary": "s", "publishedAt": "2024-05-01T00:00Z"}},
            {"paper": {"id": "2405.00004", "title": "List Date", "summary": "s", "publishedAt": [2024]}},
        ),
    )
    nested_entry = write(inbox / "e-nested-entry.json", '[{"title": "T", "abstract": "A", "authors": [[[[1]]]]}]')
    write(inbox / "z-good.json", json_list(GOOD))

    report = ingest(store, inbox)

    assert [(r.path, r.error) for r in report.rejected] == [
        (str(deep), f"{deep}: JSON nested too deeply to read"),
        (str(deep_object), f"{deep_object}: JSON nested too deeply to read"),
        (str(big_int), f"{big_int}: entry 1: 'id' must be a string; skipped"),
        (
            str(hugging_face),
            f"{hugging_face}: entry 1: 'publishedAt' must be a date string like 2024-03-14T17:59:01Z; skipped",
        ),
        (
            str(hugging_face),
            f"{hugging_face}: entry 3: 'publishedAt' must be a date string like 2024-03-14T17:59:01Z; skipped",
        ),
        (
            str(nested_entry),
            f"{nested_entry}: entry 1: 'authors' must be a list of strings or {{'name': ...}} objects; skipped",
        ),
    ]
    titles = sorted(p.title for p in store.list_papers())
    assert titles == ["A Paper That Is Fine", "String Date", "Upvotes Are Absurd"]


def test_the_command_reports_each_bad_file_in_one_line_and_ingests_the_rest(config: Config) -> None:
    inbox = config.paths.inbox
    write(inbox / "a-deep.json", "[" * 100_000)
    write(inbox / "b-hf.json", json_list({"paper": {"title": "T", "summary": "s", "publishedAt": 17}}))
    write(inbox / "c-good.json", json_list(GOOD))
    result = digest("--config", config.paths.subscribers.parent / "config.toml", "ingest", "--json")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"rejected: {inbox}") for line in lines), lines
    assert json.loads(result.stdout)["new"] == 1


# Arbitrary documents: parse_document raises IngestError and nothing else; ingest_sources raises nothing.

KEYS = [
    "id", "doi", "title", "abstract", "summary", "url", "authors", "name", "categories", "published",
    "publishedAt", "paper", "papers",
]  # fmt: skip


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


SCALARS = st.one_of(
    st.sampled_from(["null", "true", "false", "NaN", "-Infinity", "1e999", "-0", "0.5e-400", "[]", "{}"]),
    st.integers().map(str),
    st.integers(min_value=4_000, max_value=6_000).map(lambda n: "7" * n),  # beyond int()'s 4,300-digit limit
    st.floats(allow_nan=True, allow_infinity=True).map(json.dumps),
    st.text(max_size=40).map(_json_string),
    st.text(max_size=20).map(lambda t: '"' + t.replace("\\", "").replace('"', "") + '"'),  # raw control chars
    st.sampled_from(
        [
            '"\\ud800"',  # a lone surrogate: valid JSON, not storable text
            '"\\u0000\\u001b[31m\\u202eevil\\u2066"',
            f'"{ARXIV_ID}v99999999999999999999999"',
            f'"10.48550/arXiv.{ARXIV_ID}"',
            '"https://arxiv.org/abs/2403.01234v2"',
            '"2024-03-14"',
            '"' + "word " * 400 + '"',
        ]
    ),
)


def _json_container(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=6))
    return st.one_of(
        st.lists(children, max_size=5).map(lambda items: "[" + ",".join(items) + "]"),
        st.lists(st.tuples(keys, children), max_size=8).map(
            lambda pairs: "{" + ",".join(f"{_json_string(k)}:{v}" for k, v in pairs) + "}"
        ),
    )


JSON_VALUES = st.recursive(SCALARS, _json_container, max_leaves=40)
ENTRY = st.lists(st.tuples(st.sampled_from(KEYS), JSON_VALUES), max_size=8).map(
    lambda pairs: "{" + ",".join(f"{_json_string(k)}:{v}" for k, v in pairs) + "}"
)
HF_ENTRY = ENTRY.map(lambda inner: '{"paper": ' + inner + "}")
JSON_DOCUMENTS = st.one_of(
    JSON_VALUES,
    st.lists(st.one_of(ENTRY, HF_ENTRY, JSON_VALUES), max_size=6).map(lambda items: "[" + ",".join(items) + "]"),
    st.lists(ENTRY, max_size=4).map(lambda items: '{"papers": [' + ",".join(items) + "]}"),
)
FEED_TEXT = st.one_of(
    st.text(max_size=60).map(xml_text),
    st.text(max_size=60),  # unescaped: markup, stray ampersands
    st.sampled_from(["(arXiv:2403.01234v1 [cs.LG])", "arXiv:2403.01234v2 Announce Type: new Abstract: x", BIDI]),
)
FEED_DOCUMENTS = st.lists(
    st.tuples(FEED_TEXT, FEED_TEXT, FEED_TEXT, FEED_TEXT, st.booleans()), min_size=1, max_size=4
).map(
    lambda items: rss(
        *(
            f"<item><title>{title}</title><description>{summary}</description><link>{link}</link>"
            f"<dc:creator>{creator}</dc:creator>"
            + ("<pubDate>Mon, 99 Foo 0000</pubDate>" if odd_date else "")
            + "</item>"
            for title, summary, link, creator, odd_date in items
        )
    )
)


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path]]:
    """One store and one folder for every generated example (built once, not per example)."""
    folder = tmp_path_factory.mktemp("fuzz")
    with Store(folder / "digest.db") as store:
        yield store, folder


def check_document(data: bytes, store: Store, folder: Path) -> None:
    try:
        papers, problems = parse_document(data, "doc")
    except IngestError as exc:
        assert str(exc).startswith("doc: ") and "\n" not in str(exc), str(exc)
    else:
        assert all(p.startswith("doc: ") and "\n" not in p for p in problems), problems
        for paper in papers:
            assert len(paper.title) <= TITLE_MAX and not set(paper.title) & set(BIDI)
    # The same bytes as a file, through the store: whatever it holds, ingest returns a report.
    path = write(folder / "doc", data)
    report = ingest(store, path)
    assert all("\n" not in r.error for r in report.rejected)


SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
)


@SETTINGS
@given(data=st.binary(max_size=3_000))
@example(data=b"\xef\xbb\xbf" + b"[" * 50_000)
@example(data=b"\xff\xfe" + "[{}]".encode("utf-16-le"))
@example(data=b"<" + b"<a>" * 30_000)
@example(data=b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><rss>&e;</rss>')
def test_parse_document_raises_only_ingest_errors_for_any_bytes(fuzz_store: tuple[Store, Path], data: bytes) -> None:
    check_document(data, *fuzz_store)


@SETTINGS
@given(text=JSON_DOCUMENTS)
@example(text="[" * 100_000 + "]" * 100_000)
@example(text='[{"title": "T", "abstract": "A", "n": ' + "9" * 5_000 + "}]")
@example(text='[{"paper": {"id": "2403.01234", "title": "T", "summary": "S", "publishedAt": 17}}]')
@example(text='[{"title": "T\\ud800", "abstract": "A\\udfff", "authors": ["\\ud83d"], "url": "http://x/\\ud800"}]')
@example(text=f'[{{"id": "{ARXIV_ID}v99999999999999999999999", "title": "T", "abstract": "A"}}]')
def test_parse_document_raises_only_ingest_errors_for_any_json(fuzz_store: tuple[Store, Path], text: str) -> None:
    check_document(text.encode("utf-8", errors="surrogatepass"), *fuzz_store)


@SETTINGS
@given(text=FEED_DOCUMENTS)
def test_parse_document_raises_only_ingest_errors_for_any_feed(fuzz_store: tuple[Store, Path], text: str) -> None:
    check_document(text.encode("utf-8", errors="surrogatepass"), *fuzz_store)


# ---- 3 and 4. real HTTP servers: one deadline per download, redirects kept at home ------------------------------

FEED = rss(
    "<item><title>Served Over HTTP</title><link>https://arxiv.org/abs/2404.00042v1</link>"
    "<description>An invented paper served by the test server.</description></item>"
).encode()
Route = Callable[[BaseHTTPRequestHandler], None]


class Site:
    """An HTTP server on 127.0.0.1 in a thread, answering from `routes`; `hits` is every path asked for."""

    def __init__(self, certificate: tuple[Path, Path] | None = None) -> None:
        self.routes: dict[str, Route] = {"/feed.xml": send_body(FEED)}
        self.hits: list[str] = []
        self.stop = threading.Event()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                site.hits.append(self.path)
                site.routes.get(self.path, send_body(b"not here", 404))(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if certificate:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*certificate)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.port = self.httpd.server_address[1]
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def send_body(body: bytes, status: int = 200) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/rss+xml")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return route


def redirect(location: str, status: int = 302) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


def drip(stop: threading.Event, *, in_headers: bool, every: float = 0.2) -> Route:
    """A byte every `every` seconds, for ever (until the client hangs up or the test ends)."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        if in_headers:
            handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        else:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/rss+xml")
            handler.end_headers()
            handler.wfile.write(b'<?xml version="1.0"?>\n<rss version="2.0"><channel>')
        try:
            while not stop.is_set():
                handler.wfile.write(b"a" if in_headers else b" ")
                handler.wfile.flush()
                time.sleep(every)
        except OSError:
            pass  # the client gave up: what the test wants

    return route


def in_pieces(body: bytes, pieces: int, every: float) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        size = -(-len(body) // pieces)
        for start in range(0, len(body), size):
            handler.wfile.write(body[start : start + size])
            handler.wfile.flush()
            time.sleep(every)

    return route


@pytest.fixture
def sites() -> Iterator[Callable[..., Site]]:
    started: list[Site] = []

    def start(certificate: tuple[Path, Path] | None = None) -> Site:
        site = Site(certificate)
        started.append(site)
        return site

    yield start
    for site in started:
        site.close()


def ingest_in_thread(database: Path, *sources: str, timeout: float) -> IngestReport:
    """ingest_sources in a thread with its own store connection; the test fails (rather than hangs) after 20 s."""
    result: list[IngestReport] = []

    def run() -> None:
        with Store(database) as store:
            result.append(ingest(store, *sources, timeout=timeout))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "the download is still going after 20 s: [sources] timeout is not a deadline"
    return result[0]


def timed_out(url: str, timeout: float) -> str:
    return (
        f"{url}: timed out: the download did not finish within {timeout:g} s; try again later or raise"
        " [sources] timeout"
    )


@pytest.mark.parametrize("in_headers", [False, True], ids=["body", "headers"])
def test_a_server_dripping_forever_times_out_by_the_deadline(
    tmp_path: Path, sites: Callable[..., Site], in_headers: bool
) -> None:
    site = sites()
    site.routes["/drip"] = drip(site.stop, in_headers=in_headers)
    report = ingest_in_thread(tmp_path / "digest.db", site.url("/drip"), site.url("/feed.xml"), timeout=1)
    assert [r.error for r in report.rejected] == [timed_out(site.url("/drip"), 1)]
    assert report.new == 1  # the next source still went in


def test_a_tls_handshake_dripping_forever_times_out_by_the_deadline(tmp_path: Path) -> None:
    """Before any HTTP: a server that answers the TLS ClientHello with a record header and then one byte at a time."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65_536)
            connection.sendall(b"\x16\x03\x03\x40\x00")  # a 16 KB handshake record is coming...
            try:
                while not stop.is_set():
                    connection.sendall(b"\x00")
                    time.sleep(0.2)
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    url = f"https://127.0.0.1:{listener.getsockname()[1]}/feed.xml"
    try:
        report = ingest_in_thread(tmp_path / "digest.db", url, timeout=1)
    finally:
        stop.set()
        listener.close()
    assert [r.error for r in report.rejected] == [timed_out(url, 1)]


def test_a_slow_but_finite_download_within_the_deadline_is_read(tmp_path: Path, sites: Callable[..., Site]) -> None:
    site = sites()
    site.routes["/slow.xml"] = in_pieces(FEED, pieces=4, every=0.2)
    report = ingest_in_thread(tmp_path / "digest.db", site.url("/slow.xml"), timeout=10)
    assert (report.rejected, report.new) == ([], 1)


def test_https_is_read_through_the_same_deadline(
    tmp_path: Path, sites: Callable[..., Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = make_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # our own CA, trusted like a system one
    site = sites(certificate=(cert, key))
    report = ingest_in_thread(tmp_path / "digest.db", site.url("/feed.xml"), timeout=10)
    assert (report.rejected, report.new) == ([], 1)


def refused(url: str, target: str, port: int) -> str:
    return (
        f"{url}: redirected to {target}, which is not followed: only redirects to http(s) URLs on the same host"
        f" and port (127.0.0.1:{port}) are; use the final URL in [sources] urls if it is trusted"
    )


@pytest.mark.parametrize(
    ("status", "location"),
    [
        (302, "http://127.0.0.1:{other}/feed.xml"),
        (301, "//127.0.0.1:{other}/feed.xml"),
        (307, "https://127.0.0.1:{other}/feed.xml"),
        (308, "http://localhost:{port}/feed.xml"),
        (302, "ftp://127.0.0.1:{other}/feed.xml"),
        (303, "file:///etc/passwd"),
        (302, "gopher://127.0.0.1:{other}/"),
        (302, "http://127.0.0.1:{port}@127.0.0.1:{other}/feed.xml"),  # the host is after the @
    ],
)
def test_redirects_elsewhere_are_refused_naming_the_target(
    store: Store, sites: Callable[..., Site], status: int, location: str
) -> None:
    home, other = sites(), sites()
    target = location.format(port=home.port, other=other.port)
    home.routes["/moved"] = redirect(target, status)
    report = ingest(store, home.url("/moved"))
    shown = f"http:{target}" if target.startswith("//") else target
    assert [r.error for r in report.rejected] == [refused(home.url("/moved"), shown, home.port)]
    assert other.hits == [] and store.count_papers() == 0


def test_redirects_at_home_are_followed_up_to_five(store: Store, sites: Callable[..., Site]) -> None:
    site = sites()
    site.routes["/hop0"] = redirect("/feed.xml", 301)
    for hop in range(1, 7):
        site.routes[f"/hop{hop}"] = redirect(site.url(f"/hop{hop - 1}") if hop % 2 else f"hop{hop - 1}", 302)
    assert ingest(store, site.url("/hop4")).rejected == []  # five redirects: followed
    assert store.count_papers() == 1
    site.hits.clear()
    report = ingest(store, site.url("/hop5"))  # six: refused after the fifth
    assert [r.error for r in report.rejected] == [
        f"{site.url('/hop5')}: more than 5 redirects (the last to {site.url('/feed.xml')}); use the final URL in"
        " [sources] urls"
    ]
    assert site.hits == ["/hop5", "/hop4", "/hop3", "/hop2", "/hop1", "/hop0"]


def test_a_redirect_loop_ends(store: Store, sites: Callable[..., Site]) -> None:
    site = sites()
    site.routes["/loop"] = redirect("/loop", 307)
    [error] = [r.error for r in ingest(store, site.url("/loop")).rejected]
    assert error.startswith(f"{site.url('/loop')}: more than 5 redirects") and len(site.hits) == 6


# ---- 5. caps and bidi controls ---------------------------------------------------------------------------------


def long_title(words: int) -> str:
    return " ".join(f"word{i}" for i in range(words))


@pytest.mark.parametrize("kind", ["json", "rss", "atom"])
def test_a_megabyte_title_is_cut_at_a_word_with_an_ellipsis(store: Store, tmp_path: Path, kind: str) -> None:
    title = long_title(130_000)  # about a megabyte
    assert len(title) > 1_000_000
    documents = {
        "json": json_list({"title": title, "abstract": "Short."}),
        "rss": rss(f"<item><title>{title}</title><description>Short.</description></item>"),
        "atom": atom(f"<entry><id>urn:x</id><title>{title}</title><summary>Short.</summary></entry>"),
    }
    report = ingest(store, write(tmp_path / f"long.{kind}", documents[kind]))
    assert report.rejected == []
    [paper] = store.list_papers()
    assert len(paper.title) <= TITLE_MAX and paper.title.endswith("\u2026")
    kept = paper.title.removesuffix("\u2026")
    assert title.startswith(kept + " ")  # whole words only
    assert len(kept) > TITLE_MAX - 20


def test_a_title_without_spaces_is_cut_too(store: Store, tmp_path: Path) -> None:
    report = ingest(store, write(tmp_path / "long.json", json_list({"title": "x" * 1_000_000, "abstract": "A."})))
    assert report.rejected == []
    [paper] = store.list_papers()
    assert paper.title == "x" * (TITLE_MAX - 1) + "\u2026"


def test_a_crafted_old_style_listing_title_is_read_quickly(tmp_path: Path) -> None:
    """The old-listing title pattern was quadratic: a megabyte of "(arXiv:a [" took minutes."""
    crafted = rss(f"<item><title>{'(arXiv:a [' * 100_000}</title><description>D.</description></item>")
    report = ingest_in_thread(tmp_path / "digest.db", str(write(tmp_path / "crafted.xml", crafted)), timeout=5)
    assert (report.rejected, report.new) == ([], 1)


def test_abstracts_and_author_lists_are_capped(store: Store, tmp_path: Path) -> None:
    entry = {
        "title": "Many Authors",
        "abstract": "A sentence of the abstract. " * 5_000,
        "authors": [f"Author {i}" for i in range(1_000)] + ["Z" * 1_000_000],
    }
    assert ingest(store, write(tmp_path / "many.json", json_list(entry))).rejected == []
    [paper] = store.list_papers()
    assert len(paper.abstract) <= ABSTRACT_MAX and paper.abstract.endswith("\u2026")
    assert paper.authors == tuple(f"Author {i}" for i in range(AUTHORS_MAX))
    one = make_paper(title="T", abstract="A", authors=["Z" * 1_000_000])
    assert len(one.authors[0]) <= 200


BIDI_TITLE = f"{BIDI[0]}Graph{BIDI[1]} neural{BIDI[2:6]} networks{BIDI[6:]} for message passing\u202e"
BIDI_AUTHOR = "\u202eAda\u2067 Example\u200f"


@pytest.mark.parametrize("kind", ["json", "hf-json", "rss", "atom", "daily"])
def test_bidi_controls_never_reach_titles_or_authors(store: Store, tmp_path: Path, kind: str) -> None:
    abstract = "We pass messages between the nodes of large graphs, and our networks learn faster as a result."
    documents = {
        "json": json_list({"title": BIDI_TITLE, "abstract": abstract, "authors": [BIDI_AUTHOR]}),
        "hf-json": json_list({"paper": {"title": BIDI_TITLE, "summary": abstract, "authors": [{"name": BIDI_AUTHOR}]}}),
        "rss": rss(
            f"<item><title>{BIDI_TITLE}</title><description>{abstract}</description>"
            f"<dc:creator>{BIDI_AUTHOR}</dc:creator></item>"
        ),
        "atom": atom(
            f"<entry><id>urn:x</id><title>{BIDI_TITLE}</title><summary>{abstract}</summary>"
            f"<author><name>{BIDI_AUTHOR}</name></author></entry>"
        ),
        "daily": f"Daily Papers\n\n{BIDI_TITLE}\n\n{abstract}\n",
    }
    assert ingest(store, write(tmp_path / f"doc.{kind}", documents[kind])).rejected == []
    [paper] = store.list_papers()
    assert paper.title == "Graph neural networks for message passing"
    assert paper.authors in ((), ("Ada Example",))
    assert not set(paper.title + "".join(paper.authors)) & set(BIDI)


def test_the_email_of_a_hostile_title_is_small_and_its_subject_clean(config: Config, tmp_path: Path) -> None:
    """End to end: what reached the Subject (and made a 4.7 MB email) now stops at ingest."""
    title = BIDI_TITLE + " " + long_title(130_000)
    entry = {
        "id": "2405.09999",
        "title": title,
        "abstract": "Graph neural networks use message passing between nodes; we study message passing. " * 2_000,
        "authors": [BIDI_AUTHOR] * 5_000,
    }
    with Store(config.paths.database) as store:
        report = ingest_sources(
            store, [str(write(tmp_path / "hostile.json", json_list(entry)))], max_bytes=50_000_000,
            clock=lambda: NOW - timedelta(hours=1),
        )  # fmt: skip
        assert report.rejected == [] and report.new == 1
    result = digest("--config", config.paths.subscribers.parent / "config.toml", "preview", "ada", "--format", "eml")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout_bytes) < 200_000
    message = email.message_from_bytes(result.stdout_bytes, policy=email.policy.default)
    subject = str(message["Subject"])
    assert "Graph neural networks for message passing" in subject
    assert not set(subject) & set(BIDI)
