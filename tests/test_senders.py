"""Many senders, each subscriber once (PostgreSQL, digest.claims): real `digest send` processes on one PostgreSQL
server and one SMTP server (aiosmtpd), 2,000 subscribers; and the same with one sender SIGKILLed mid-run.

Skipped, saying why, without a PostgreSQL server; under $DIGEST_REQUIRE_POSTGRES (CI) that fails instead."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from delivery_helpers import DEMO_INBOX, INGESTED_AT, write_config, write_subscribers
from postgres_server import PASSWORD_ENV, PostgresServer
from smtp_server import Behaviour, SmtpServer

from digest.config import Config, load_config
from digest.profile_book import ProfileBook
from digest.service import ingest
from digest.store import open_store

REPO = Path(__file__).resolve().parent.parent
SUBSCRIBERS = 2000


@pytest.fixture
def database(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database of this test's own on the test server (its password in the environment the senders inherit)."""
    monkeypatch.setenv(PASSWORD_ENV, postgres_server.password)
    name = postgres_server.new_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop(name)


def shared_workspace(root: Path, url: str, port: int, *, lease: float = 60, batch: int = 50) -> tuple[Path, Config]:
    """2,000 subscribers, the demo papers, one PostgreSQL database; composed in each sender (no worker processes:
    four senders with workers each would be a dozen processes on two cores)."""
    path = write_config(root, port=port, welcome_digest=True)  # due at once: --due serves them all
    with path.open("a", encoding="utf-8") as out:
        out.write(
            f'\n[database]\nurl = "{url}"\npassword_env = "{PASSWORD_ENV}"\n'
            f"lease_seconds = {lease}\nclaim_batch = {batch}\n"
        )
    path.write_text(path.read_text(encoding="utf-8").replace("[delivery]\n", "[delivery]\ncompose_workers = 0\n"))
    write_subscribers(root, SUBSCRIBERS)
    config = load_config(path)
    with open_store(config) as store:
        report = ingest(store, config, [str(DEMO_INBOX)], clock=lambda: INGESTED_AT)
        # This host has the subscribers folder: its profiles go into the store (digest.profile_book).
        assert len(ProfileBook.of(config, store).load(INGESTED_AT).profiles) == SUBSCRIBERS
    assert report.new and not report.rejected
    return path, config


def other_host(root: Path, config: Path, name: str) -> Path:
    """The same config.toml on a host of its own: no subscribers folder (the profiles come from the store), its own
    var/ (maildir, caches)."""
    host = root / name
    host.mkdir()
    (host / "config.toml").write_text(config.read_text(encoding="utf-8"), encoding="utf-8")
    assert not (host / "subscribers").exists()
    return host / "config.toml"


def start_senders(configs: Path | list[Path], count: int, *args: str) -> list[subprocess.Popen[str]]:
    """`count` senders: all with one config.toml, or one with each of `configs` (one per host)."""
    paths = [configs] * count if isinstance(configs, Path) else configs
    return [
        subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(path), "send", *args, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for path in paths[:count]
    ]


def finish(process: subprocess.Popen[str]) -> dict[str, list[dict[str, object]]]:
    out, err = process.communicate(timeout=120)
    assert "Traceback" not in err, err[-3000:]
    report: dict[str, list[dict[str, object]]] = json.loads(out)
    return report


def assert_each_subscriber_once(received: list[object], *, missing_allowed: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    per_subscriber = Counter(r.recipients[0].split("@")[0] for r in received)  # type: ignore[attr-defined]
    twice = {name: n for name, n in per_subscriber.items() if n > 1}
    assert not twice, f"sent more than once: {twice}"
    expected = {f"reader{n:03d}" for n in range(SUBSCRIBERS)}
    assert expected - set(per_subscriber) <= missing_allowed


@pytest.mark.parametrize("senders", [2, 4])
def test_senders_share_the_work_and_each_subscriber_gets_one_message(
    tmp_path: Path, database: str, senders: int
) -> None:
    with SmtpServer(Behaviour()) as server:
        path, _ = shared_workspace(tmp_path, database, server.port)
        # Each sender on a host of its own, without the subscribers folder: the profiles come from the store.
        hosts = [other_host(tmp_path, path, f"host-{n}") for n in range(senders)]
        started = time.monotonic()
        reports = [finish(p) for p in start_senders(hosts, senders, "--due")]
        took = time.monotonic() - started
        received = server.wait_for(SUBSCRIBERS, timeout=30)
        time.sleep(0.2)
        received = server.received
    assert len(received) == SUBSCRIBERS
    assert_each_subscriber_once(received)
    shares = [len(r["sent"]) for r in reports]
    assert sum(shares) == SUBSCRIBERS and all(not r["failed"] and not r["stuck"] for r in reports)
    # Claimed 50 at a time: every sender gets a fair part (on two cores, at least a sixth of an even share).
    assert min(shares) >= SUBSCRIBERS / senders / 6, shares
    print(f"\n{senders} senders, {SUBSCRIBERS} subscribers: {took:.1f} s; messages per sender {shares}")
    again = finish(start_senders(path, 1, "--due")[0])
    assert not again["sent"], "nobody is due any more"


def test_a_killed_sender_s_subscribers_are_taken_over_after_its_lease_and_nothing_is_sent_twice(
    tmp_path: Path, database: str
) -> None:
    # A relay taking 2 ms a message, so that the kill lands while messages are on their way.
    with SmtpServer(Behaviour(delay=0.002)) as server:
        path, config = shared_workspace(tmp_path, database, server.port, lease=2, batch=50)
        started = time.monotonic()
        processes = start_senders(path, 3, "--all")
        victim = processes[0]
        server.wait_for(300, timeout=60)
        os.kill(victim.pid, signal.SIGKILL)
        victim.communicate(timeout=30)
        killed_at = len(server.received)
        reports = [finish(p) for p in processes[1:]]
        took = time.monotonic() - started
        time.sleep(0.3)
        received = server.received
    assert killed_at < SUBSCRIBERS - 100, "the kill must land mid-run for this test to mean anything"
    stuck = {str(item["subscriber"]) for r in reports for item in r["stuck"]}
    assert len(stuck) <= 1, stuck  # one connection per sender: at most one message in its hand-over
    assert_each_subscriber_once(received, missing_allowed=stuck)
    assert all(not r["failed"] for r in reports)
    with open_store(config) as store:
        in_ledger = store.stuck_messages()
        assert {m.subscriber for m in in_ledger} == stuck
        history = store.history()
    states = Counter(m.state for m in history)
    released = [m for m in history if m.state == "failed"]
    assert all("stopped before handing it over" in (m.error or "") for m in released)
    # Every subscriber has exactly one message sent or stuck; a released one was sent again by a survivor.
    assert states["sent"] + len(stuck) == SUBSCRIBERS, states
    shares = [len(r["sent"]) for r in reports]
    print(
        f"\nSIGKILL of 1 of 3 senders after {killed_at} messages; the other two sent {shares} in all, "
        f"{len(released)} released (hand-over never started), stuck {sorted(stuck)}; {took:.1f} s in all"
    )


def test_only_the_daemon_holding_the_scheduler_lock_sends_and_another_takes_over_when_it_dies(
    tmp_path: Path, database: str
) -> None:
    from digest.scheduler_lock import SchedulerLock
    from digest.service import run_cycle

    path = write_config(tmp_path, method="maildir", welcome_digest=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(f'\n[database]\nurl = "{database}"\npassword_env = "{PASSWORD_ENV}"\n')
    write_subscribers(tmp_path, 3)
    config = load_config(path)
    with open_store(config) as store:
        ingest(store, config, [str(DEMO_INBOX)], clock=lambda: INGESTED_AT)
    first, second = SchedulerLock(config), SchedulerLock(config)
    try:
        assert first.held() and first.took_over() and not first.took_over()
        assert not second.held(), "one scheduler at a time"
        # Two daemons' cycles: the one without the lock ingests and leaves the schedule to the other.
        idle = run_cycle(config, scheduler=second.held)
        assert idle.send is None and idle.ingest is not None and "scheduler lock" in idle.notes[0]
        busy = run_cycle(config, scheduler=first.held)
        assert busy.send is not None and len(busy.send.sent) == 3
        # The holder stops (or dies: its connection closes): the next daemon to ask takes over, and knows it did.
        first.close()
        assert second.held() and second.took_over()
        assert not first.held(), "the first daemon, back, finds the lock taken"
    finally:
        first.close()
        second.close()
