"""[enrich]: papers stored without a link are looked up on the arXiv API by title, against a real HTTP server on
127.0.0.1 (tests/arxiv_server.py) that answers in the API's shape with text written here."""

from __future__ import annotations

import json
import math
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from arxiv_server import ArxivServer, Entry, closed_port_url, feed
from cli import digest
from conftest import NOW, StoreMaker, shared_digests
from test_ingest import abstract_for, spaced_digest

from digest.clock import fixed
from digest.config import Config, Enrich
from digest.enrich import ArxivClient, LookupUnavailable, SharedSpacing, enrich_papers, http_fetch, search_phrase
from digest.errors import ConfigError
from digest.ingest import IngestReport, parse_document
from digest.paper import AUTHOR_MAX, AUTHORS_MAX, TITLE_MAX, make_paper, title_key
from digest.service import ingest
from digest.store import PickRecord, Store
from digest.store.records import ArxivMatch

CLOCK = fixed(NOW)
FOUND = "Sparse Lattice Routers for Streaming Graph Inference"
ABSENT = "An Unpublished Note on Teapot Thermodynamics"


@pytest.fixture(autouse=True)
def lookups_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """conftest turns the lookups off for every test; these turn them on, against a local server only."""
    monkeypatch.delenv("DIGEST_ENRICH", raising=False)


def settings(server_url: str, **overrides: object) -> Enrich:
    values: dict[str, object] = {"api_url": server_url, "min_interval": 0.0, "timeout": 5.0, **overrides}
    return Enrich.model_validate(values)


def configured(config: Config, server_url: str, **overrides: object) -> Config:
    return config.model_copy(update={"enrich": settings(server_url, **overrides)})


def write_digest(folder: Path, name: str, *titles: str) -> Path:
    path = folder / name
    path.write_text(spaced_digest(*((title, abstract_for(title.lower())) for title in titles)), encoding="utf-8")
    return path


def run(store: Store, config: Config, *paths: Path, client: ArxivClient | None = None) -> IngestReport:
    return ingest(store, config, [str(p) for p in paths], clock=CLOCK, arxiv=client)


def test_a_title_found_on_arxiv_gets_id_links_authors_categories_and_date(
    store: Store, config: Config, tmp_path: Path
) -> None:
    entry = Entry("2403.01234v2", FOUND, published="2024-03-01T18:00:00Z", doi="10.1000/streaming.7")
    with ArxivServer([entry]) as server:
        report = run(store, configured(config, server.url), write_digest(tmp_path, "a.txt", FOUND, ABSENT))
    assert (report.enriched, report.not_on_arxiv, report.lookups_pending, report.notices) == (1, 1, 0, [])
    assert len(server.requests) == 1
    found = store.find_paper(FOUND)
    assert found is not None
    assert (found.arxiv_id, found.arxiv_version, found.url) == ("2403.01234", 2, "https://arxiv.org/abs/2403.01234")
    assert "https://arxiv.org/pdf/2403.01234" in found.links
    assert found.authors == ("Ada Lovelace", "Charles Babbage")
    assert found.categories == ("cs.LG", "stat.ML")
    assert (found.published, found.doi) == ("2024-03-01", "10.1000/streaming.7")
    assert (found.title, found.abstract) == (FOUND, abstract_for(FOUND.lower()))  # the text the reader saw stays
    assert store.find_paper("2403.01234") == found
    absent = store.find_paper(ABSENT)
    assert absent is not None and (absent.arxiv_id, absent.url) == (None, None)
    assert store.arxiv_lookup(title_key(ABSENT)) == (True, None)  # "not on arXiv" is an answer too


def test_a_near_miss_is_another_paper(store: Store, config: Config, tmp_path: Path) -> None:
    """The phrase search finds titles that contain the stored one; only the same normalised title is a match."""
    near = [Entry("2401.00001v1", f"{FOUND}: A Survey"), Entry("2401.00002v1", f"Revisiting {FOUND}")]
    with ArxivServer(near) as server:
        report = run(store, configured(config, server.url), write_digest(tmp_path, "a.txt", FOUND))
    assert (report.enriched, report.not_on_arxiv) == (0, 1)
    paper = store.find_paper(FOUND)
    assert paper is not None and paper.arxiv_id is None and paper.url is None


def test_titles_match_whatever_their_case_punctuation_and_markup(store: Store, config: Config, tmp_path: Path) -> None:
    stored = 'GlyphDraw: Rendering Text (with Intricate Structures) in "Images" -- a Study'
    arxiv = "GlyphDraw -- rendering text with intricate structures in images: A study"
    with ArxivServer([Entry("2303.17870v1", arxiv)]) as server:
        report = run(store, configured(config, server.url), write_digest(tmp_path, "a.txt", stored))
    assert report.enriched == 1
    # Only the query syntax reaches the server: the phrase holds words, no quote, bracket or colon of the title.
    assert server.requests[0].phrases == [title_key(stored)]
    assert search_phrase('A "quoted" (title): with AND/OR?') == "a quoted title with and or"
    assert search_phrase("?!") == ""
    assert search_phrase("word " * 100) == ("word " * 40).strip()  # cut at a word, within PHRASE_MAX
    assert search_phrase("x" * 500) == "x" * 200


def test_answers_are_remembered_and_never_asked_again(store: Store, config: Config, tmp_path: Path) -> None:
    first = write_digest(tmp_path, "a.txt", FOUND, ABSENT)
    with ArxivServer([Entry("2403.01234v1", FOUND), Entry("2403.05555v1", "Later Paper on Quiet Kernels")]) as server:
        wired = configured(config, server.url)
        run(store, wired, first)
        assert len(server.requests) == 1
        again = run(store, wired, first)
        assert (len(server.requests), again.enriched, again.not_on_arxiv) == (1, 0, 0)
        # A new file: only its new title is asked, not the ones answered before (found or not).
        run(store, wired, write_digest(tmp_path, "b.txt", ABSENT, "Later Paper on Quiet Kernels"))
        assert [r.phrases for r in server.requests[1:]] == [[title_key("Later Paper on Quiet Kernels")]]


def test_a_title_not_on_arxiv_is_asked_again_after_retry_after_while_its_paper_is_recent(
    store: Store, config: Config, tmp_path: Path
) -> None:
    """A paper may reach arXiv after the digest that listed it: "not found" is asked again a week later."""
    listed = write_digest(tmp_path, "a.txt", FOUND)
    with ArxivServer([]) as not_yet:
        run(store, configured(config, not_yet.url), listed)
    assert store.arxiv_lookup(title_key(FOUND)) == (True, None)
    with ArxivServer([Entry("2403.01234v1", FOUND)]) as server:
        wired = configured(config, server.url)
        six_days = ingest(store, wired, [str(listed)], clock=fixed(NOW + timedelta(days=6)))
        assert (len(server.requests), six_days.lookups_pending) == (0, 0)  # [enrich] retry_after = 7 days
        eight_days = ingest(store, wired, [str(listed)], clock=fixed(NOW + timedelta(days=8)))
        assert (len(server.requests), eight_days.enriched, eight_days.not_on_arxiv) == (1, 1, 0)
        again = ingest(store, wired, [str(listed)], clock=fixed(NOW + timedelta(days=20)))
        assert (len(server.requests), again.enriched) == (1, 0)  # found: never asked again
    paper = store.find_paper(FOUND)
    assert paper is not None and paper.arxiv_id == "2403.01234"
    assert store.arxiv_lookup(title_key(FOUND))[1] is not None


def test_a_paper_older_than_retry_within_is_not_asked_again(store: Store, config: Config, tmp_path: Path) -> None:
    listed = write_digest(tmp_path, "a.txt", ABSENT)
    with ArxivServer([]) as not_yet:
        run(store, configured(config, not_yet.url), listed)
    with ArxivServer([Entry("2403.09999v1", ABSENT)]) as server:
        wired = configured(config, server.url, retry_after="7d", retry_within="30d")
        report = ingest(store, wired, [str(listed)], clock=fixed(NOW + timedelta(days=40)))
    assert (len(server.requests), report.lookups_pending) == (0, 0)  # the answer is final for an old paper
    paper = store.find_paper(ABSENT)
    assert paper is not None and paper.arxiv_id is None


def test_a_remembered_answer_fills_a_paper_that_comes_later_without_asking(
    store: Store, config: Config, tmp_path: Path
) -> None:
    match = ArxivMatch("2403.01234", 3, FOUND, ("Ada Lovelace",), ("cs.LG",), "2024-03-01")
    store.record_arxiv_answers({title_key(FOUND): match}, NOW)
    with ArxivServer([]) as server:
        report = run(store, configured(config, server.url), write_digest(tmp_path, "a.txt", FOUND))
    assert (report.enriched, len(server.requests)) == (1, 0)
    paper = store.find_paper(FOUND)
    assert paper is not None and (paper.arxiv_id, paper.arxiv_version) == ("2403.01234", 3)


@pytest.mark.parametrize(("titles", "batch"), [(23, 10), (10, 10), (7, 3), (1, 10)])
def test_titles_are_asked_in_batches(store: Store, config: Config, tmp_path: Path, titles: int, batch: int) -> None:
    names = [f"Invented Study Number {n} of Batched Lookups" for n in range(titles)]
    entries = [Entry(f"2402.{n:05d}v1", name) for n, name in enumerate(names)]
    with ArxivServer(entries) as server:
        report = run(store, configured(config, server.url, batch=batch), write_digest(tmp_path, "a.txt", *names))
    assert len(server.requests) == math.ceil(titles / batch)
    assert all(len(r.phrases) <= batch and r.max_results >= len(r.phrases) for r in server.requests)
    assert report.enriched == titles
    assert all(p.url for p in store.all_papers())


class FakeTime:
    """A monotonic clock that only sleep moves (and each request, by `request_takes`)."""

    def __init__(self, request_takes: float = 0.0) -> None:
        self.now = 1000.0
        self.request_takes = request_takes
        self.sleeps: list[float] = []
        self.started: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def fetch(self, url: str, timeout: float) -> bytes:
        self.started.append(self.now)
        self.now += self.request_takes
        return http_fetch(url, timeout)


@pytest.mark.parametrize("request_takes", [0.0, 1.5, 7.0])
def test_requests_are_spaced_by_min_interval_without_waiting(
    store: Store, config: Config, tmp_path: Path, request_takes: float
) -> None:
    names = [f"Spaced Request Paper {n}" for n in range(5)]
    fake = FakeTime(request_takes)
    with ArxivServer([Entry(f"2402.{n:05d}v1", name) for n, name in enumerate(names)]) as server:
        wired = configured(config, server.url, min_interval=3.0, batch=1)
        client = ArxivClient(wired.enrich, fetch=fake.fetch, monotonic=fake.monotonic, sleep=fake.sleep)
        started = time.monotonic()
        report = run(store, wired, write_digest(tmp_path, "a.txt", *names), client=client)
    assert time.monotonic() - started < 2.5  # the 3 s intervals were slept on the fake clock only
    assert report.enriched == 5 and len(fake.started) == 5
    # From the end of one request to the start of the next: at least the interval, and no more than needed.
    ends = [start + request_takes for start in fake.started]
    assert [round(b - a, 6) for a, b in zip(ends, fake.started[1:], strict=False)] == [3.0] * 4
    assert fake.sleeps == [3.0] * 4


def test_the_server_sees_requests_min_interval_apart_in_real_time(store: Store, config: Config, tmp_path: Path) -> None:
    names = [f"Real Time Paper {n}" for n in range(4)]
    with ArxivServer([Entry(f"2402.{n:05d}v1", name) for n, name in enumerate(names)]) as server:
        run(store, configured(config, server.url, min_interval=0.15, batch=1), write_digest(tmp_path, "a.txt", *names))
    arrivals = [r.at for r in server.requests]
    assert len(arrivals) == 4
    assert min(b - a for a, b in zip(arrivals, arrivals[1:], strict=False)) >= 0.15


def test_two_processes_looking_up_at_once_take_turns_through_the_store(make_store: StoreMaker) -> None:
    """Spacing kept in the store: two ingests at once (a daemon and a `digest ingest`, daemons on two hosts) are
    min_interval apart at the server as one would be, on both engines."""
    interval = 0.4
    make_store().close()  # the database made once, before the threads open it
    with ArxivServer([]) as server:
        wired = settings(server.url, min_interval=interval)

        def look_up(prefix: str) -> None:
            with make_store() as store:  # a connection of its own, as another process has
                client = ArxivClient(wired, spacing=SharedSpacing(store, interval))
                for n in range(3):
                    client.search([f"{prefix} title number {n}"])

        threads = [threading.Thread(target=look_up, args=(name,)) for name in ("first", "second")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    arrivals = sorted(request.at for request in server.requests)
    assert len(arrivals) == 6
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) >= interval - 0.05, gaps  # the database's clock and the server's: a few ms apart at most


def test_a_turn_is_taken_when_the_request_starts_and_a_stale_one_is_not_waited_for(store: Store) -> None:
    assert store.take_turn("api", 3600.0) == 0  # an interval of an hour, lowered since
    assert store.take_turn("api", 1.0) == 0  # not an hour's wait
    assert 0.9 < store.take_turn("api", 1.0) <= 1.0  # then turns as usual: ask again after that
    assert 0.9 < store.take_turn("api", 1.0) <= 1.0  # asking does not push the turn back
    store.finish_request("api", 2.0)  # a slow answer: the next turn is the interval after its end
    assert 1.9 < store.take_turn("api", 2.0) <= 2.0


def fifteen_titles(tmp_path: Path) -> tuple[Path, list[Entry]]:
    names = [f"Resilient Lookup Paper {n}" for n in range(15)]
    return write_digest(tmp_path, "a.txt", *names), [Entry(f"2402.{n:05d}v1", name) for n, name in enumerate(names)]


def assert_stopped_then_retried(
    store: Store, config: Config, path: Path, entries: list[Entry], report: IngestReport
) -> None:
    """The ingest went well; one notice; nothing remembered; the next ingest asks again and fills everything."""
    assert report.new == 15 and report.rejected == []
    assert report.enriched == 0 and len(report.notices) == 1
    assert (
        "arXiv lookup stopped" in report.notices[0]
        and "15 title(s) are looked up at the next ingest" in report.notices[0]
    )
    assert "\n" not in report.notices[0]
    assert report.lookups_pending == 15
    assert store.count_unasked_titles() == 15
    with ArxivServer(entries) as server:
        again = run(store, configured(config, server.url, batch=5), path)
    assert (again.enriched, again.notices, len(server.requests)) == (15, [], 3)


def test_an_unreachable_api_is_one_notice_and_the_next_ingest_asks_again(
    store: Store, config: Config, tmp_path: Path
) -> None:
    path, entries = fifteen_titles(tmp_path)
    report = run(store, configured(config, closed_port_url(), batch=5), path)
    assert "cannot connect" in report.notices[0]
    assert_stopped_then_retried(store, config, path, entries, report)


@pytest.mark.parametrize("status", [503, 429, 500])
def test_a_busy_api_is_one_request_and_one_notice(store: Store, config: Config, tmp_path: Path, status: int) -> None:
    path, entries = fifteen_titles(tmp_path)
    with ArxivServer(entries, status=status) as server:
        report = run(store, configured(config, server.url, batch=5), path)
    assert len(server.requests) == 1  # no further request once it said no
    assert f"HTTP {status}" in report.notices[0]
    assert_stopped_then_retried(store, config, path, entries, report)


def test_a_silent_api_costs_one_timeout_not_one_per_title(store: Store, config: Config, tmp_path: Path) -> None:
    path, entries = fifteen_titles(tmp_path)
    with ArxivServer(entries, hang=True) as server:
        started = time.monotonic()
        report = run(store, configured(config, server.url, batch=5, timeout=0.3), path)
        elapsed = time.monotonic() - started
    assert len(server.requests) == 1 and elapsed < 2.0
    assert "no answer within 0.3 s" in report.notices[0]
    assert_stopped_then_retried(store, config, path, entries, report)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"<?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'><entry><title>cut", "malformed answer"),
        (b"<html><body>Service maintenance</body></html>", "not an Atom feed"),
        (b"", "not an Atom feed"),
        (
            feed(
                [
                    Entry(
                        "x",
                        "Error",
                        xml="<entry><id>http://arxiv.org/api/errors#incorrect_query</id>"
                        "<title>Error</title><summary>malformed query</summary></entry>",
                    )
                ],
                1,
            ),
            "refused the query (malformed query)",
        ),
    ],
)
def test_an_answer_that_is_not_one_is_a_notice(
    store: Store, config: Config, tmp_path: Path, body: bytes, said: str
) -> None:
    path, entries = fifteen_titles(tmp_path)
    with ArxivServer(entries, body=body) as server:
        report = run(store, configured(config, server.url, batch=5), path)
    assert len(server.requests) == 1
    assert said in report.notices[0]
    assert_stopped_then_retried(store, config, path, entries, report)


def test_hostile_answers_are_cleaned_like_any_source(store: Store, config: Config, tmp_path: Path) -> None:
    title = "Careful Parsing of Untrusted Feeds"
    many = "".join(f"<author><name>Author {n}</name></author>" for n in range(AUTHORS_MAX + 50))
    hostile = (
        "<entry><id>http://arxiv.org/abs/2405.00007v1</id><published>2024-05-01T00:00:00Z</published>"
        f"<title type='html'>&lt;b&gt;Careful&lt;/b&gt; Parsing of &lt;script&gt;&lt;/script&gt;Untrusted Feeds</title>"
        f"<summary>{'long ' * 5000}</summary>"
        "<author><name>Eve\r\nBcc: victim@example.org</name></author>"
        "<author><name>&lt;script&gt;alert(1)&lt;/script&gt;Mallory</name></author>"
        f"<author><name>{'x' * 5000}</name></author>{many}"
        "<link href='javascript:alert(1)' rel='alternate'/>"
        f"<category term='{'c' * 5000}'/><category term='cs.CR'/></entry>"
        # An entry whose id is no arXiv id names no paper, whatever its title.
        f"<entry><id>javascript:alert(2)</id><title>{title}</title><summary>s</summary></entry>"
    )
    long_title = "Absurdly " + "Long " * 200  # stored cut to TITLE_MAX; the answer's is cut the same way
    store.add_papers([make_paper(title=long_title, abstract="a")], "json", NOW)
    long_entry = Entry("2405.00008v1", long_title, authors=("A " * 3000,))
    with ArxivServer([Entry("x", title, xml=hostile), long_entry]) as server:
        report = run(store, configured(config, server.url), write_digest(tmp_path, "a.txt", title))
    assert report.enriched == 2
    paper = store.find_paper(title)
    assert paper is not None and paper.arxiv_id == "2405.00007"
    assert paper.url == "https://arxiv.org/abs/2405.00007"  # built from the id, never the answer's link
    assert paper.title == title
    assert len(paper.authors) == AUTHORS_MAX
    assert paper.authors[:2] == ("Eve Bcc: victim@example.org", "Mallory")
    assert all(len(a) <= AUTHOR_MAX and "<" not in a and "\r" not in a and "\n" not in a for a in paper.authors)
    assert paper.categories == ("cs.CR",)
    long_paper = store.find_paper("2405.00008")
    assert long_paper is not None and len(long_paper.title) <= TITLE_MAX
    assert all(len(a) <= AUTHOR_MAX for a in long_paper.authors)


def test_two_arxiv_papers_with_the_title_fill_nothing(store: Store, config: Config, tmp_path: Path) -> None:
    twins = [Entry("2101.00001v1", FOUND), Entry("2301.00002v1", FOUND)]
    with ArxivServer(twins) as server:
        report = run(store, configured(config, server.url), write_digest(tmp_path, "a.txt", FOUND))
    assert (report.enriched, report.not_on_arxiv) == (0, 1)


def test_a_title_crowded_out_of_a_batch_answer_is_asked_again_alone(
    store: Store, config: Config, tmp_path: Path
) -> None:
    """Short titles containing a common phrase fill the answer (max_results is per title asked); the other title's
    paper, further down, is not in it: that title is asked again on its own, not marked "not on arXiv"."""
    crowd = [Entry(f"2201.{n:05d}v1", f"Deep Nets {n}") for n in range(30)]
    rare = "A Much Longer Title About Rare Things That Ranks Below Short Ones"
    with ArxivServer([*crowd, Entry("2202.00001v1", rare), Entry("2202.00002v1", "Deep Nets")]) as server:
        report = run(store, configured(config, server.url, batch=2), write_digest(tmp_path, "a.txt", "Deep Nets", rare))
    assert [r.phrases for r in server.requests] == [[title_key(rare), "deep nets"], [title_key(rare)]]
    assert (report.enriched, report.not_on_arxiv) == (2, 0)


def test_max_lookups_per_ingest_then_the_rest_next_time(store: Store, config: Config, tmp_path: Path) -> None:
    names = [f"Rationed Lookup Paper {n}" for n in range(25)]
    path = write_digest(tmp_path, "a.txt", *names)
    with ArxivServer([Entry(f"2402.{n:05d}v1", name) for n, name in enumerate(names)]) as server:
        wired = configured(config, server.url, batch=5, max_lookups=12)
        first = run(store, wired, path)
        assert (len(server.requests), first.enriched, first.lookups_pending) == (3, 12, 13)
        # Newest first: the last papers of the file (the highest sequence numbers) went first.
        assert {p.title for p in store.all_papers() if p.url} == set(names[-12:])
        second = run(store, wired, path)
        third = run(store, wired, path)
    assert (second.enriched, second.lookups_pending, third.enriched, third.lookups_pending) == (12, 1, 1, 0)
    assert len(server.requests) == 3 + 3 + 1
    none = run(store, configured(config, closed_port_url(), max_lookups=0), path)
    assert none.notices == []


def test_a_paper_already_stored_from_arxiv_absorbs_the_daily_record(
    store: Store, config: Config, tmp_path: Path
) -> None:
    """The same paper from an arXiv feed (under its first version's title) and from a daily digest (under the
    title it has now): the lookup says they are one, so they become one, and whoever was sent either of them is
    never sent it again; links in emails sent before still find it."""
    old_title, new_title = "Sparse Routers for Graphs", FOUND
    feed_paper = make_paper(title=old_title, abstract=abstract_for("routers"), arxiv="2403.01234v1", authors=["A. One"])
    store.add_papers([feed_paper], "https://export.arxiv.org/rss/cs.LG", NOW - timedelta(days=2))
    daily_file = write_digest(tmp_path, "daily.txt", new_title)
    run(store, config.model_copy(update={"enrich": Enrich(arxiv=False)}), daily_file)
    assert store.count_papers() == 2
    daily = store.find_paper(new_title)
    assert daily is not None and daily.id and daily.id != "2403.01234"
    # ada was sent the daily record; bob the feed's; ada rated both (the later rating wins), bob the daily one.
    for reader, paper_id, message in (("ada", daily.id, "<a@x>"), ("bob", "2403.01234", "<b@x>")):
        rowid = store.begin_message(
            reader, message, [PickRecord(paper_id, 0.5, "why")], channel="email", subject="s",
            candidates_until=NOW, now=NOW,
        )  # fmt: skip
        store.finish_message(rowid, "sent", NOW)
    store.set_feedback("ada", "2403.01234", -1, NOW - timedelta(hours=1))
    store.set_feedback("ada", daily.id, 1, NOW)
    store.set_feedback("bob", daily.id, -1, NOW)

    with ArxivServer([Entry("2403.01234v2", new_title, authors=("A. One", "B. Two"))]) as server:
        report = run(store, configured(config, server.url), daily_file)
    assert report.enriched == 1
    assert store.count_papers() == 1
    [merged] = store.all_papers()
    assert merged.id == "2403.01234" and merged.arxiv_version == 2
    assert merged.authors == ("A. One", "B. Two")
    assert set(merged.sources) == {"https://export.arxiv.org/rss/cs.LG", str(daily_file.resolve())}
    assert store.sent_paper_ids("ada") == {"2403.01234"} == store.sent_paper_ids("bob")
    assert [p.paper_id for m in store.history("ada") for p in m.papers] == ["2403.01234"]
    assert store.feedback("ada") == {"2403.01234": 1} and store.feedback("bob") == {"2403.01234": -1}
    assert store.get_paper(daily.id) == merged  # the feedback link of ada's email
    # The old id is never given to another paper (it would catch those links).
    store.add_papers([make_paper(title=new_title, abstract="other", doi="10.1/other")], "s", NOW)
    assert daily.id not in {p.id for p in store.all_papers()}


def test_a_digest_then_the_arxiv_feed_stays_one_paper(store: Store, config: Config, tmp_path: Path) -> None:
    """The usual order: the daily record is filled first; the arXiv listing of the same paper later merges into it
    by arXiv id, and keeps the id the reader may have been sent."""
    with ArxivServer([Entry("2403.01234v1", FOUND)]) as server:
        run(store, configured(config, server.url), write_digest(tmp_path, "a.txt", FOUND))
    first = store.find_paper(FOUND)
    counts = store.add_papers([make_paper(title=FOUND + " (v2 title)", abstract="x", arxiv="2403.01234v2")], "rss", NOW)
    assert counts["updated"] == 1 and store.count_papers() == 1
    again = store.find_paper("2403.01234")
    assert first is not None and again is not None and again.id == first.id


def test_every_shared_digest_paper_ends_up_with_a_link(store: Store, config: Config) -> None:
    files = shared_digests()
    titles = list({p.key: p.title for f in files for p in parse_document(f.read_bytes(), str(f))[0]}.values())
    entries = [Entry(f"2401.{n:05d}v1", title) for n, title in enumerate(titles)]
    with ArxivServer(entries) as server:
        report = run(store, configured(config, server.url), *files)
    assert report.new == len(titles) and report.rejected == [] and report.notices == []
    assert report.enriched == len(titles) and report.lookups_pending == 0
    assert all(p.url and p.arxiv_id for p in store.all_papers())
    assert len(server.requests) == math.ceil(len(titles) / 10)


def test_digest_enrich_off_asks_nothing_and_a_wrong_value_is_an_error(
    store: Store, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_digest(tmp_path, "a.txt", FOUND)
    with ArxivServer([Entry("2403.01234v1", FOUND)]) as server:
        monkeypatch.setenv("DIGEST_ENRICH", "off")
        report = run(store, configured(config, server.url), path)
        assert (report.enriched, len(server.requests)) == (0, 0)
        monkeypatch.setenv("DIGEST_ENRICH", "no")
        with pytest.raises(ConfigError, match="DIGEST_ENRICH='no': only \"off\""):
            run(store, configured(config, server.url), path)
        monkeypatch.delenv("DIGEST_ENRICH")
        off = config.model_copy(update={"enrich": Enrich(arxiv=False, api_url=server.url)})
        assert run(store, off, path).enriched == 0 and len(server.requests) == 0


def test_the_command_says_what_was_enriched(workspace: Path) -> None:
    write_digest(workspace / "inbox", "a.txt", FOUND, ABSENT)
    with ArxivServer([Entry("2403.01234v1", FOUND)]) as server:
        with (workspace / "config.toml").open("a", encoding="utf-8") as out:
            out.write(f'[enrich]\napi_url = "{server.url}"\nmin_interval = 0\n')
        plain = digest("ingest", cwd=workspace)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines()[1] == "arXiv: 1 paper(s) enriched, 1 not on arXiv"
    write_digest(workspace / "inbox", "b.txt", "Another Paper Nobody Wrote")
    with ArxivServer([]) as server:
        text = (workspace / "config.toml").read_text(encoding="utf-8")
        (workspace / "config.toml").write_text(text.rsplit("[enrich]", 1)[0] + f'[enrich]\napi_url = "{server.url}"\n')
        as_json = digest("ingest", "--json", cwd=workspace)
    report = json.loads(as_json.stdout)
    assert {k: report[k] for k in ("new", "enriched", "not_on_arxiv", "lookups_pending", "notices")} == {
        "new": 1, "enriched": 0, "not_on_arxiv": 1, "lookups_pending": 0, "notices": [],
    }  # fmt: skip


def test_the_command_prints_a_notice_and_succeeds_when_arxiv_is_down(workspace: Path) -> None:
    write_digest(workspace / "inbox", "a.txt", FOUND)
    with (workspace / "config.toml").open("a", encoding="utf-8") as out:
        out.write(f'[enrich]\napi_url = "{closed_port_url()}"\n')
    result = digest("ingest", cwd=workspace)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "1 file(s): 1 new, 0 updated, 0 duplicate(s); 1 papers in the store",
        "arXiv: 0 paper(s) enriched, 0 not on arXiv, 1 left for the next ingest",
    ]
    [line] = result.stderr.splitlines()
    assert line.startswith("notice: arXiv lookup stopped: http://127.0.0.1:") and "cannot connect" in line


def test_the_daemon_logs_the_lookups_and_their_notices(
    config: Config, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from digest.service import ingest_configured

    write_digest(workspace / "inbox", "a.txt", FOUND, ABSENT)
    with ArxivServer([Entry("2403.01234v1", FOUND)]) as server, Store(config.paths.database) as store:
        with caplog.at_level("INFO"):
            ingest_configured(store, configured(config, server.url), CLOCK)
            write_digest(workspace / "inbox", "b.txt", "Yet Another Title")
            ingest_configured(store, configured(config, closed_port_url()), CLOCK)
    assert "arXiv: 1 paper(s) enriched, 1 not on arXiv" in caplog.messages
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert warning.getMessage().startswith("arXiv lookup stopped: http://127.0.0.1:")


def test_the_demo_never_touches_the_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from digest.demo import prepare_workspace, run_demo

    def no_network(url: str, timeout: float) -> bytes:
        raise AssertionError(f"the demo asked {url}")

    monkeypatch.setattr("digest.enrich.http_fetch", no_network)
    assert prepare_workspace(tmp_path / "check").enrich.arxiv is False
    result = run_demo(tmp_path / "demo", now=NOW, say=lambda _line: None)
    assert result.papers > 0 and result.ingest.notices == [] and result.ingest.enriched == 0


def test_lookups_can_be_driven_without_any_server(store: Store) -> None:
    """The library on its own: an injected fetch stands in for the network (here: one that fails)."""
    store.add_papers([make_paper(title=FOUND, abstract="a")], "s", NOW)

    def down(url: str, timeout: float) -> bytes:
        raise LookupUnavailable("cannot connect (name or service not known)")

    client = ArxivClient(Enrich(), fetch=down)
    report = enrich_papers(store, client, max_lookups=10, clock=CLOCK)
    assert (report.requests, report.pending, report.enriched) == (1, 1, 0)
    assert report.notices == [
        "arXiv lookup stopped: https://export.arxiv.org/api/query: cannot connect (name or service not known);"
        " 1 title(s) are looked up at the next ingest"
    ]
