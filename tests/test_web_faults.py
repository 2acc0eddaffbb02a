"""`digest serve` when things go wrong, over real HTTP with a real SQLite store.

Mail scanners fetch every link (a feedback link must not record on GET or HEAD), unexpected errors (the 500
still carries the security headers), odd paths (no token ever reaches the log, whatever the path), and a
database whose write lock an ingest holds (a one-click unsubscribe is never lost).

The real `digest serve` runs in a subprocess where the test needs the real command and its whole log; the
store-timeout tests run the same app under uvicorn in a thread, with a short busy timeout.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from test_feeds import Workspace, build_workspace, hostile_id
from test_web import free_port, start

from digest.links import Links
from digest.store import Store
from digest.unsubscribes import apply_pending_unsubscribes, pending_unsubscribe_journal
from digest.web.app import SECURITY_HEADERS, create_app

ONE_CLICK = {"content": b"List-Unsubscribe=One-Click", "headers": {"content-type": "application/x-www-form-urlencoded"}}


def assert_all_security_headers(response: httpx.Response) -> None:
    for header, value in SECURITY_HEADERS.items():
        assert response.headers.get(header) == value, (response.request.method, response.status_code, header)


def dump(database: Path) -> list[str]:
    """Everything in the store, read through a connection of its own (the WAL included)."""
    with sqlite3.connect(database) as db:
        return list(db.iterdump())


def feedback_rows(database: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT * FROM feedback ORDER BY subscriber, paper_id").fetchall()


@dataclass
class Served:
    ws: Workspace
    url: str
    log: Path
    tokens: dict[str, str]

    @property
    def database(self) -> Path:
        return self.ws.config.paths.database

    def log_text(self, until: str) -> str:
        """The server's log once `until` shows up in it (lines are written just after each response)."""
        deadline = time.monotonic() + 5
        while until not in (text := self.log.read_text(errors="replace")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert until in text, text[-2000:]
        return text


@contextmanager
def digest_serve(root: Path) -> Iterator[Served]:
    """The real `digest serve` in a subprocess, on a fresh workspace, its stdout and stderr in one log file."""
    ws = build_workspace(root)
    with Store(ws.config.paths.database) as store:
        tokens = {sub: store.token(sub) for sub in ("ada", "alan", "grace", "fiona")}
    process, url = start(ws, root / "serve.log")
    try:
        yield Served(ws, url, root / "serve.log", tokens)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def in_thread(app: object) -> Iterator[str]:
    """The app under uvicorn in a thread on 127.0.0.1 (logging left to pytest, so caplog sees it)."""
    port = free_port()
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        proxy_headers=False,  # as `digest serve`: the app reads X-Forwarded-For from [web] trusted_proxies itself
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def write_lock(database: Path) -> Iterator[None]:
    """What a long ingest does: hold the database's write lock from another connection."""
    holder = sqlite3.connect(database, timeout=5, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def paused(database: Path, subscriber: str) -> bool:
    with Store(database) as store:
        return store.subscriber_state(subscriber).paused


def server_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the server logged (the test's own HTTP client logs the URLs it fetches, tokens and all)."""
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))


def journal_entries(ws: Workspace) -> list[dict[str, str]]:
    journal = pending_unsubscribe_journal(ws.config)
    return [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []


# ---- 1. feedback links: GET and HEAD show a page, only POST records --------------------------------------


def test_feedback_links_record_nothing_on_get_or_head_and_the_button_posts(tmp_path: Path) -> None:
    with digest_serve(tmp_path) as served:
        with Store(served.database) as store:
            papers = {p.id: p.title for p in store.list_papers() if p.id}
            bad = hostile_id(store)
        links = Links(served.url, served.tokens["ada"], "ada")
        before = dump(served.database)
        assert feedback_rows(served.database) == []

        # A mail scanner fetches every feedback link of a digest, both ways: nothing may be recorded.
        fetched: list[tuple[str, httpx.Response, httpx.Response]] = []
        for paper_id in papers:
            for rating in ("like", "dislike"):
                url = links.feedback(paper_id, rating)  # type: ignore[arg-type]
                assert url is not None
                fetched.append((rating, httpx.head(url), httpx.get(url)))
        assert feedback_rows(served.database) == [], "GET and HEAD of a feedback link recorded a rating"
        assert dump(served.database) == before, "GET and HEAD of a feedback link wrote to the store"
        for rating, head, page in fetched:
            assert (head.status_code, page.status_code) == (200, 200), page.url
            assert_all_security_headers(head)
            assert_all_security_headers(page)
            # A page naming the paper and the rating, with a button that posts back: no script needed.
            assert '<form method="post">' in page.text and "<script" not in page.text
            assert ("Like it" if rating == "like" else "Dislike it") in page.text
            assert "You liked" not in page.text and "You disliked" not in page.text
            assert page.headers["cache-control"] == "no-store"
        assert len(fetched) == 2 * len(papers)
        assert papers["2611.00104"] in httpx.get(links.feedback("2611.00104", "like") or "").text
        shown = httpx.get(links.feedback(bad, "dislike") or "")
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in shown.text, "the page names the paper, escaped"

        # The button: a POST to the very same URL records it; replayed, it records the same again.
        like = links.feedback("2611.00104", "like") or ""
        for _ in range(2):
            done = httpx.post(like)
            assert done.status_code == 200 and "You liked" in done.text
            assert "Sparse Message Passing for Billion-Edge Graphs" in done.text
            assert_all_security_headers(done)
            assert [row[:3] for row in feedback_rows(served.database)] == [("ada", "2611.00104", 1)]
        assert "You already liked it" in httpx.get(like).text
        # The page's "dislike it instead" link is relative and leads to the dislike page, which records nothing.
        instead = httpx.get(httpx.URL(like).join("dislike"))
        assert instead.status_code == 200 and '<form method="post">' in instead.text
        assert [row[:3] for row in feedback_rows(served.database)] == [("ada", "2611.00104", 1)]
        assert httpx.post(links.feedback("hep-th/9901001", "dislike") or "").status_code == 200
        with Store(served.database) as store:
            assert store.feedback("ada") == {"2611.00104": 1, "hep-th/9901001": -1}

        # Wrong token, unknown paper, unknown rating: 404 on POST as on GET; other methods: 405.
        wrong = Links(served.url, "not-a-token", "ada").feedback("2611.00104", "like") or ""
        assert [httpx.post(wrong).status_code, httpx.get(wrong).status_code, httpx.head(wrong).status_code] == [404] * 3
        assert httpx.post(links.feedback("9999.99999", "like") or "").status_code == 404
        assert httpx.post(like.replace("/like", "/love")).status_code == 404
        assert httpx.delete(like).status_code == 405
        with Store(served.database) as store:
            assert store.feedback("ada") == {"2611.00104": 1, "hep-th/9901001": -1}


# ---- 2. the security headers on every response, a 500 included --------------------------------------------


def test_every_response_carries_the_security_headers_even_a_500_from_a_damaged_store(tmp_path: Path) -> None:
    with digest_serve(tmp_path) as served:
        token = served.tokens["ada"]
        for response in (
            httpx.get(f"{served.url}/healthz"),
            httpx.get(f"{served.url}/no/such/page"),
            httpx.head(f"{served.url}/no/such/page"),
            httpx.delete(f"{served.url}/unsubscribe/{token}"),
            httpx.put(f"{served.url}/healthz"),
        ):
            assert response.status_code in (200, 404, 405)
            assert_all_security_headers(response)

        # A damaged database: it still opens, but a table the web app reads is gone.
        with sqlite3.connect(served.database) as db:
            db.execute("DROP TABLE subscriber_state")
        failed = [
            httpx.get(f"{served.url}/unsubscribe/{token}"),
            httpx.head(f"{served.url}/unsubscribe/{token}"),
            httpx.get(f"{served.url}/feeds/ada.xml", params={"token": token}),
            httpx.get(f"{served.url}/feedback/{token}/2611.00101/like"),
            httpx.post(f"{served.url}/feedback/{token}/2611.00101/like"),
        ]
        for response in failed:
            assert response.status_code == 500, (response.request.method, response.request.url.path)
            assert_all_security_headers(response)
        for response in failed:
            if response.request.method != "HEAD":
                assert "The request could not be handled." in response.text
                assert "Traceback" not in response.text and token not in response.text
        log = served.log_text("POST /feedback/<token>/2611.00101/like 500")
        assert "internal error: OperationalError: no such table: subscriber_state" in log
        assert "GET /unsubscribe/<token> 500" in log
        assert token not in log


# ---- 3. no token in the log, whatever the path ---------------------------------------------------------


def percent_encoded(text: str) -> str:
    return "".join(f"%{ord(c):02X}" for c in text)


def test_no_token_reaches_the_log_whatever_the_path(tmp_path: Path) -> None:
    with digest_serve(tmp_path) as served:
        t = served.tokens["ada"]
        requests = [
            ("GET", f"/UNSUBSCRIBE/{t}"),
            ("GET", f"/Unsubscribe/{t}"),
            ("POST", f"/UNSUBSCRIBE/{t}"),
            ("HEAD", f"/uNsUbScRiBe/{t}"),
            ("GET", f"/unsubscribe/{t}/"),
            ("GET", f"//unsubscribe/{t}"),
            ("GET", f"/digest/unsubscribe/{t}"),
            ("GET", f"/unsubscribe%2F{t}"),
            ("GET", f"/unsubscribe/{percent_encoded(t)}"),
            ("GET", f"/{percent_encoded(t)}"),
            ("GET", f"/x/{quote(percent_encoded(t))}"),  # encoded twice
            ("GET", f"/{t}"),
            ("GET", f"/{t}.xml"),
            ("GET", f"/feeds/{t}.xml"),
            ("GET", f"/feeds/{t}.xml?token={t}"),
            ("GET", f"/FEEDBACK/{t}/2611.00101/like"),
            ("GET", f"/feedback/x/{t}/like"),
            ("GET", f"/feedback/{t}/{t}/like"),
            ("GET", f"/x/abc{t}def"),
            ("GET", f"/x/{t[:16]}.{t[16:]}"),
            ("GET", f"/x/{t}%0Aforged"),
            ("DELETE", f"/unsubscribe/{t}"),
            ("PUT", f"/feedback/{t}/2611.00101/like"),
            ("GET", f"/unsubscribe/{t}"),
            ("GET", "/the-end"),
        ]
        for method, path in requests:
            response = httpx.request(method, served.url + path)
            assert response.status_code < 500, (method, path)
        log = served.log_text("GET /the-end 404")
    for secret in served.tokens.values():
        # Not the token, not its percent-encoded form, and not any 12 characters of it.
        assert secret not in log and percent_encoded(secret) not in log
        assert not [secret[i : i + 12] for i in range(len(secret) - 11) if secret[i : i + 12] in log]
    # Every request is still logged, with what could be a secret replaced.
    assert "GET /UNSUBSCRIBE/<token> 404" in log
    assert "POST /UNSUBSCRIBE/<token> 404" in log
    assert "GET /<token>.xml 404" in log
    assert "DELETE /unsubscribe/<token> 405" in log
    assert "GET /unsubscribe/<token> 200" in log
    assert "\\x0aforged" in log, "a decoded newline cannot forge a log line"


# ---- 4. an unsubscribe while an ingest holds the write lock is never lost --------------------------------


def test_an_unsubscribe_while_the_write_lock_is_held_is_journaled_then_applied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws = build_workspace(tmp_path)
    database = ws.config.paths.database
    with Store(database) as store:
        token = store.token("alan")
    app = create_app(ws.config, store_timeout=0.2, journal_retry=3600)
    with caplog.at_level(logging.INFO), in_thread(app) as url:
        with write_lock(database):
            started = time.monotonic()
            done = httpx.post(f"{url}/unsubscribe/{token}", **ONE_CLICK)  # type: ignore[arg-type]
            assert time.monotonic() - started < 5
            assert done.status_code == 202, done.text
            assert "You are unsubscribed" in done.text and "Alan Example" in done.text and "now stopped" in done.text
            assert_all_security_headers(done)
            # Durable before the answer: one line naming the subscriber (never the token), readable by us only.
            journal = pending_unsubscribe_journal(ws.config)
            assert journal.parent == database.parent
            assert [e["subscriber"] for e in journal_entries(ws)] == ["alan"]
            assert token not in journal.read_text()
            assert stat.S_IMODE(journal.stat().st_mode) == 0o600
            # A replay (the provider retries) is another success and adds nothing.
            replay = httpx.post(f"{url}/unsubscribe/{token}", **ONE_CLICK)  # type: ignore[arg-type]
            assert replay.status_code == 202 and "already stopped" in replay.text
            assert len(journal_entries(ws)) == 1
            # The confirmation page (a read) already knows.
            assert "already stopped" in httpx.get(f"{url}/unsubscribe/{token}").text
            assert not paused(database, "alan"), "the store could not take it yet"
    assert "alan: unsubscribe journaled" in server_log(caplog)
    assert token not in server_log(caplog)

    # The lock is gone: what `digest send` does first applies the journal, and the reader is paused.
    with Store(database) as store:
        assert apply_pending_unsubscribes(store, ws.config) == ["alan"]
        assert store.subscriber_state("alan").paused
        assert apply_pending_unsubscribes(store, ws.config) == []
    assert not journal.exists() and not list(journal.parent.glob(journal.name + "*"))


def test_the_next_post_and_the_running_server_apply_the_journal(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    database = ws.config.paths.database
    with Store(database) as store:
        tokens = {sub: store.token(sub) for sub in ("ada", "alan", "grace")}

    # The next successful write (here: a feedback POST) applies what waits.
    with in_thread(create_app(ws.config, store_timeout=0.2, journal_retry=3600)) as url:
        with write_lock(database):
            assert httpx.post(f"{url}/unsubscribe/{tokens['alan']}", **ONE_CLICK).status_code == 202  # type: ignore[arg-type]
            busy = httpx.post(f"{url}/feedback/{tokens['ada']}/2611.00101/like")
            assert busy.status_code == 503 and busy.headers["retry-after"]
            assert_all_security_headers(busy)
        assert not paused(database, "alan")
        assert httpx.post(f"{url}/feedback/{tokens['ada']}/2611.00101/like").status_code == 200
        assert paused(database, "alan")
        assert journal_entries(ws) == []

    # With no further request at all, the running server retries on its own.
    with in_thread(create_app(ws.config, store_timeout=0.2, journal_retry=0.1)) as url:
        with write_lock(database):
            assert httpx.post(f"{url}/unsubscribe/{tokens['grace']}", **ONE_CLICK).status_code == 202  # type: ignore[arg-type]
            time.sleep(0.5)
            assert not paused(database, "grace")
        deadline = time.monotonic() + 5
        while not paused(database, "grace") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert paused(database, "grace")


def test_an_unsubscribe_while_the_store_cannot_even_be_read_is_kept_without_the_token(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    database = ws.config.paths.database
    with Store(database) as store:
        token = store.token("alan")
    aside = tmp_path / "aside.db"
    shutil.move(database, aside)
    database.write_bytes(b"this is not a database" * 100)
    try:
        with in_thread(create_app(ws.config, store_timeout=0.2, journal_retry=3600)) as url:
            done = httpx.post(f"{url}/unsubscribe/{token}", **ONE_CLICK)  # type: ignore[arg-type]
            assert done.status_code == 202 and "You are unsubscribed" in done.text
            assert_all_security_headers(done)
            # The token cannot be checked now, so a made-up one gets the same answer (and tells nothing).
            made_up = httpx.post(f"{url}/unsubscribe/made-up-token", **ONE_CLICK)  # type: ignore[arg-type]
            assert made_up.status_code == 202
            assert httpx.post(f"{url}/unsubscribe/{'x' * 500}").status_code == 404
    finally:
        shutil.move(aside, database)
    entries = journal_entries(ws)
    assert len(entries) == 2 and all("token_sha256" in e and "subscriber" not in e for e in entries)
    assert token not in pending_unsubscribe_journal(ws.config).read_text()
    with Store(database) as store:
        assert apply_pending_unsubscribes(store, ws.config) == ["alan"]
        assert store.subscriber_state("alan").paused
    assert journal_entries(ws) == []


def test_an_unsubscribe_that_cannot_be_recorded_anywhere_is_a_503_never_a_false_success(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws = build_workspace(tmp_path)
    database = ws.config.paths.database
    with Store(database) as store:
        token = store.token("alan")
    journal = pending_unsubscribe_journal(ws.config)
    journal.mkdir()  # the journal cannot be written either (as on a full disk)
    with caplog.at_level(logging.INFO), in_thread(create_app(ws.config, store_timeout=0.2, journal_retry=3600)) as url:
        with write_lock(database):
            refused = httpx.post(f"{url}/unsubscribe/{token}", **ONE_CLICK)  # type: ignore[arg-type]
            assert refused.status_code == 503 and refused.headers["retry-after"]
            assert "unsubscribed" not in refused.text.lower()
            assert_all_security_headers(refused)
        assert "alan: UNSUBSCRIBE NOT RECORDED" in server_log(caplog)
        assert token not in server_log(caplog)
        assert not paused(database, "alan")
        journal.rmdir()
        # The sender's retry, once the store takes writes again, is recorded at once.
        done = httpx.post(f"{url}/unsubscribe/{token}", **ONE_CLICK)  # type: ignore[arg-type]
        assert done.status_code == 200 and "now stopped" in done.text
        assert paused(database, "alan")


def test_journal_appends_racing_appliers_lose_nothing(tmp_path: Path) -> None:
    """Web requests journal while appliers (the next POST, the server's retry, a send) claim and apply: every
    entry ends up applied, exactly once, and no journal file is left."""
    from digest.unsubscribes import append_pending

    ws = build_workspace(tmp_path)
    database = ws.config.paths.database
    count = 200
    at = "2026-11-20T09:00:00+00:00"

    def append(first: int) -> None:
        for i in range(first, count, 4):
            append_pending(ws.config, {"subscriber": f"reader{i}", "at": at})

    applied: list[str] = []
    done = threading.Event()

    def apply() -> None:
        while not done.is_set():
            with Store(database) as store:
                applied.extend(apply_pending_unsubscribes(store, ws.config))

    appenders = [threading.Thread(target=append, args=(k,)) for k in range(4)]
    appliers = [threading.Thread(target=apply) for _ in range(3)]
    for thread in appliers + appenders:
        thread.start()
    for thread in appenders:
        thread.join()
    done.set()
    for thread in appliers:
        thread.join()
    with Store(database) as store:
        applied.extend(apply_pending_unsubscribes(store, ws.config))
        assert all(store.subscriber_state(f"reader{i}").paused for i in range(count))
    assert sorted(applied) == sorted(f"reader{i}" for i in range(count))
    journal = pending_unsubscribe_journal(ws.config)
    assert not list(journal.parent.glob(journal.name + "*"))
