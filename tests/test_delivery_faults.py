"""The ledger's promises under real faults: a reply lost after DATA, a stalled or dripping server, a 421, no
server at all, a deleted lock file, two senders past the lock, an ingest racing a send, an empty database, a
full disk. Real SMTP servers on 127.0.0.1, real SQLite files, real processes where a process matters."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cli import digest as cli_digest
from conftest import REPO
from delivery_helpers import INGESTED_AT, ingest_demo, write_config, write_subscribers
from delivery_helpers import workspace as delivery_workspace
from fault_smtp import Faults, FaultySmtpServer, refused_port
from smtp_server import Behaviour, SmtpServer

from digest.config import load_config
from digest.errors import LedgerConflictError, StoreError
from digest.paper import make_paper
from digest.service import send
from digest.store import PickRecord, Store

SEND_AT = INGESTED_AT + timedelta(hours=3)


def message_ids(bodies: list[bytes]) -> list[str]:
    ids = []
    for body in bodies:
        for line in body.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                ids.append(line.split(b":", 1)[1].strip().decode())
    return ids


def ledger(config_path: Path) -> dict[str, list[str]]:
    with Store(load_config(config_path).paths.database) as store:
        states: dict[str, list[str]] = {}
        for message in store.history():
            states.setdefault(message.subscriber, []).append(message.state)
        return states


# ---- 1: the answer to DATA is lost: stuck, never resent ----------------------------------------------------


@pytest.mark.parametrize("fault", ["drop_after_dot", "stall_after_dot", "partial_after_dot"])
def test_a_reply_lost_after_data_is_stuck_and_never_resent(tmp_path: Path, fault: str) -> None:
    with FaultySmtpServer(Faults(**{fault: 1})) as server:
        config, ids = delivery_workspace(tmp_path, 3, port=server.port)
        config = config.model_copy(update={"smtp": config.smtp.model_copy(update={"timeout": 1.0})})
        report = send(config, selection="all", clock=lambda: SEND_AT)
        assert [s.subscriber for s in report.stuck] == ["reader000"]
        assert "it may have arrived" in str(report.stuck[0].reason)
        assert sorted(str(s.subscriber) for s in report.sent) == ["reader001", "reader002"]
        again = send(config, selection="all", clock=lambda: SEND_AT + timedelta(hours=1))
        stored = server.stored
    # The server stored the first message once; nothing was ever submitted twice, by the retry or the rerun.
    assert len(stored) == 3 and len(set(message_ids(stored))) == 3
    assert [s.subscriber for s in again.stuck] == ["reader000"] and not again.sent
    assert ledger(tmp_path / "config.toml")["reader000"] == ["sending"]


def test_a_connection_dropped_before_the_body_is_retried_on_a_new_connection(tmp_path: Path) -> None:
    with FaultySmtpServer(Faults(drop_at_data=1)) as server:
        config, _ = delivery_workspace(tmp_path, 2, port=server.port)
        report = send(config, selection="all", clock=lambda: SEND_AT)
        stored = server.stored
        connections = server.recorder.connections
    assert len(report.sent) == 2 and not report.failed and not report.stuck
    assert len(stored) == 2 and len(set(message_ids(stored))) == 2
    assert connections == 2


# ---- 8: deadlines per operation, and no false stuck ----------------------------------------------------------


def test_a_dripping_greeting_hits_the_overall_deadline(tmp_path: Path) -> None:
    with FaultySmtpServer(Faults(drip_banner=0.3)) as server:
        config, _ = delivery_workspace(tmp_path, 1, port=server.port)
        smtp = config.smtp.model_copy(update={"timeout": 1.0, "retries": 1, "retry_backoff": 0.0})
        report = send(config.model_copy(update={"smtp": smtp}), selection="all", clock=lambda: SEND_AT)
    [failure] = report.failed
    assert "no complete greeting within 1s ([smtp] timeout)" in failure.error
    assert ledger(tmp_path / "config.toml") == {"reader000": ["failed"]}, "never handed over: failed, not stuck"


def test_a_sender_killed_before_the_hand_over_leaves_nothing_stuck(tmp_path: Path) -> None:
    with FaultySmtpServer(Faults(drip_banner=1.0)) as slow:
        config_path = write_config(tmp_path, port=slow.port)
        write_subscribers(tmp_path, 2)
        config = load_config(config_path)
        ingest_demo(config)
        process = subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(config_path), "send", "--all"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        try:
            with slow.recorder.lock:
                assert slow.recorder.lock.wait_for(lambda: slow.recorder.connections >= 1, 60)
            with Store(config.paths.database) as store:
                in_flight = [m for m in store.history() if m.state == "sending"]
            assert len(in_flight) == 1 and in_flight[0].handed_over_at is None
        finally:
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=30)
    with SmtpServer() as good:
        (tmp_path / "config.toml").write_text(
            (tmp_path / "config.toml").read_text().replace(f"port = {slow.port}", f"port = {good.port}")
        )
        rerun = cli_digest("--config", config_path, "send", "--all", "--json", cwd=REPO)
        received = good.wait_for(2)
    report = json.loads(rerun.stdout)
    assert rerun.returncode == 0, rerun.stderr
    assert report["stuck"] == [] and len(report["sent"]) == 2
    assert sorted(r.recipients[0] for r in received) == ["reader000@example.org", "reader001@example.org"]


# ---- 11: a 421 to RCPT, and no server at all ------------------------------------------------------------------


def test_a_421_to_rcpt_is_retried_on_a_new_connection(tmp_path: Path) -> None:
    with FaultySmtpServer(Faults(reject_rcpt_421=1)) as server:
        config, _ = delivery_workspace(tmp_path, 1, port=server.port)
        report = send(config, selection="all", clock=lambda: SEND_AT)
        connections = server.recorder.connections
    assert len(report.sent) == 1 and not report.failed
    assert connections == 2, "the closed connection was not reused"


def test_no_server_stops_the_send_at_once_with_one_line(tmp_path: Path) -> None:
    config, _ = delivery_workspace(tmp_path, 5, port=refused_port())
    result = cli_digest("--config", tmp_path / "config.toml", "send", "--all", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert len(report["failed"]) == 1 and len(report["skipped"]) == 4
    assert "check [smtp] host and port" in report["stopped_by"]
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and '[delivery] method = "maildir"' in error_lines[0]
    # Nothing is stuck or reserved: the next run sends everything.
    assert ledger(tmp_path / "config.toml") == {"reader000": ["failed"]}


# ---- 2: a deleted lock file, and two senders past the lock ------------------------------------------------------


def test_deleting_the_lock_file_does_not_let_a_second_sender_in(tmp_path: Path) -> None:
    with SmtpServer(Behaviour(delay=0.2)) as server:
        config, ids = delivery_workspace(tmp_path, 8, port=server.port)
        config_path = tmp_path / "config.toml"
        first = subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(config_path), "send", "--all", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        server.wait_for(1, timeout=60)
        lock_file = config.paths.database.with_name(config.paths.database.name + ".send.lock")
        lock_file.unlink()
        second = cli_digest("--config", config_path, "send", "--all", "--json")
        first.communicate(timeout=120)
        received = server.received
    assert second.returncode == 1 and "another `digest send`" in second.stderr
    counts = Counter(r.recipients[0] for r in received)
    assert len(counts) == 8 and set(counts.values()) == {1}, counts


def test_the_ledger_refuses_a_paper_already_sending_or_sent(store: Store) -> None:
    store.add_papers([make_paper(title="A paper", abstract="About things.")], "test", INGESTED_AT)
    [paper] = store.all_papers()
    picks = [PickRecord(paper.id or "", 0.5, "why")]
    kwargs = {"channel": "email", "subject": "s", "candidates_until": SEND_AT, "now": SEND_AT}
    first = store.begin_message("reader", "<a@x>", picks, **kwargs)  # type: ignore[arg-type]
    with store.reopen() as other, pytest.raises(LedgerConflictError):  # another sender, its own connection
        other.begin_message("reader", "<b@x>", picks, **kwargs)  # type: ignore[arg-type]
    store.finish_message(first, "sent", SEND_AT)
    with pytest.raises(LedgerConflictError):
        store.begin_message("reader", "<c@x>", picks, **kwargs)  # type: ignore[arg-type]
    store.begin_message("someone-else", "<d@x>", picks, **kwargs)  # type: ignore[arg-type]
    assert [m.message_id for m in store.history()] == ["<d@x>", "<a@x>"]


def test_two_senders_without_the_lock_still_send_each_paper_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib

    import digest.service

    monkeypatch.setattr(digest.service, "send_lock", lambda *a, **k: contextlib.nullcontext())
    with SmtpServer() as server:
        config, ids = delivery_workspace(tmp_path, 12, port=server.port)
        barrier = threading.Barrier(2)
        reports = []

        def run() -> None:
            barrier.wait()
            reports.append(send(config, selection="all", clock=lambda: SEND_AT))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        received = server.received
    counts = Counter(r.recipients[0] for r in received)
    assert len(counts) == 12 and set(counts.values()) == {1}, counts
    assert sum(len(r.sent) for r in reports) == 12


# ---- 5 and 6: an ingest racing a send ---------------------------------------------------------------------------


class _HeldIngest(list):  # type: ignore[type-arg]
    """Papers whose iteration pauses inside the ingest's write transaction until released."""

    def __init__(self, items: list[object], inside: threading.Event, release: threading.Event) -> None:
        super().__init__(items)
        self.inside, self.release = inside, release

    def __getitem__(self, index: slice) -> _Paused:  # type: ignore[override]
        return _Paused(list.__getitem__(self, index), self.inside, self.release)


class _Paused:
    def __init__(self, items: list[object], inside: threading.Event, release: threading.Event) -> None:
        self.items, self.inside, self.release = items, inside, release

    def __iter__(self) -> Iterator[object]:
        self.inside.set()
        assert self.release.wait(60)
        return iter(self.items)


def test_papers_committed_after_a_send_planned_are_sent_next_time(tmp_path: Path) -> None:
    config, ids = delivery_workspace(tmp_path, 1, method="maildir")
    keywords = "graph neural networks message passing"
    late = [make_paper(title=f"Graph neural networks for task {n}", abstract=f"{keywords} {n}.") for n in range(5)]
    inside, release = threading.Event(), threading.Event()
    # The ingest stamps its papers *before* the send plans, and commits after.
    stamp = SEND_AT - timedelta(minutes=1)

    def ingest() -> None:
        with Store(config.paths.database) as store:
            store.ingest_file("late", "late.json", _HeldIngest(late, inside, release), stamp)  # type: ignore[arg-type]

    writer = threading.Thread(target=ingest)
    writer.start()
    assert inside.wait(30)
    result: list[object] = []
    sender = threading.Thread(target=lambda: result.append(send(config, selection="all", clock=lambda: SEND_AT)))
    sender.start()
    threading.Timer(1.0, release.set).start()  # the send has planned and waits for the write lock by then
    writer.join(60)
    sender.join(60)
    first = result[0]
    with Store(config.paths.database) as store:
        late_ids = {p.id for p in store.all_papers() if p.title.startswith("Graph neural networks for task")}
    first_papers = set(first.sent[0].papers) if first.sent else set()  # type: ignore[attr-defined]
    second = send(config, selection="all", clock=lambda: SEND_AT + timedelta(days=1))
    second_papers = set(second.sent[0].papers) if second.sent else set()  # type: ignore[arg-type]
    assert late_ids <= first_papers | second_papers, "every late-committed paper reaches the reader"
    assert not first_papers & second_papers


# ---- 4: an empty or foreign database --------------------------------------------------------------------------


def test_an_empty_database_file_is_refused_not_recreated(workspace: Path) -> None:
    database = workspace / "var" / "digest.db"
    database.parent.mkdir(parents=True)
    database.write_bytes(b"")
    for command in (["papers"], ["ingest"], ["send", "--all"]):
        result = cli_digest("--config", workspace / "config.toml", *command)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and "the database file is empty (0 bytes)" in result.stderr
    assert database.stat().st_size == 0, "left as it was for the person to restore"


def test_another_programs_database_is_refused(workspace: Path) -> None:
    import sqlite3

    database = workspace / "var" / "digest.db"
    database.parent.mkdir(parents=True)
    with sqlite3.connect(database) as raw:
        raw.execute("CREATE TABLE customers (id INTEGER)")
    result = cli_digest("--config", workspace / "config.toml", "papers")
    assert result.returncode == 1 and "not a paper-digest database" in result.stderr


# ---- 9: a full disk --------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 32 MB file system (tmpfs) for the database; skips where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_under_the_database_is_reported_and_a_rerun_finishes(tmp_path: Path, small_disk: Path) -> None:
    config_path = write_config(tmp_path, method="maildir")
    text = config_path.read_text().replace('database = "var/digest.db"', f'database = "{small_disk}/digest.db"')
    config_path.write_text(text)
    write_subscribers(tmp_path, 6)
    config = load_config(config_path)
    ingest_demo(config)
    import sqlite3

    with sqlite3.connect(config.paths.database) as raw:  # the log emptied: the next write needs new space
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as handle:  # fill the disk to the last byte
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    result = cli_digest("--config", config_path, "send", "--all", "--json")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    report = json.loads(result.stdout)
    assert "the disk is full" in report["stopped_by"]
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {report['stopped_by']}"
    ]
    filler.unlink()
    rerun = cli_digest("--config", config_path, "send", "--all", "--json")
    assert rerun.returncode in (0, 1), rerun.stderr
    again = json.loads(rerun.stdout)
    with Store(config.paths.database) as store:
        sent = Counter(m.subscriber for m in store.history() if m.state == "sent")
        stuck = {m.subscriber for m in store.stuck_messages()}
    # Everyone got their digest once, or is reported stuck (delivered, but the full disk kept the ledger from
    # saying so): nobody twice, nobody silently left out.
    assert set(sent.values()) <= {1}
    assert set(sent) | stuck == {f"reader{n:03d}" for n in range(6)}
    assert not set(sent) & stuck
    assert {s.subscriber for s in again["stuck"]} == stuck


def test_unrelated_store_errors_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with Store(path) as store, Store(path, timeout=0.05) as other:
        store._db.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="the database stayed busy"):
            other.set_paused("x", True, SEND_AT)
        store._db.execute("ROLLBACK")


def test_a_journaled_unsubscribe_is_applied_before_anyone_is_mailed(tmp_path: Path) -> None:
    """The web app journals an unsubscribe the store could not take; the next send applies it first."""
    from digest.unsubscribes import append_pending, has_pending_unsubscribes

    config, ids = delivery_workspace(tmp_path, 3, method="maildir")
    append_pending(config, {"subscriber": "reader001", "at": SEND_AT.isoformat()})
    report = send(config, selection="all", clock=lambda: SEND_AT)
    assert sorted(str(s.subscriber) for s in report.sent) == ["reader000", "reader002"]
    assert [s.subscriber for s in report.skipped] == ["reader001"]
    assert not has_pending_unsubscribes(config)
    with Store(config.paths.database) as store:
        assert store.subscriber_state("reader001").paused


def test_a_message_released_by_another_sender_is_not_handed_over(store: Store) -> None:
    """Two senders past the lock: B releases A's message while A is still connecting; A must then not hand it
    over (B may be sending those papers), and a delivery confirmed after a settlement by hand is recorded."""
    store.add_papers([make_paper(title="A paper", abstract="About things.")], "test", INGESTED_AT)
    [paper] = store.all_papers()
    picks = [PickRecord(paper.id or "", 0.5, "why")]
    kwargs = {"channel": "email", "subject": "s", "candidates_until": SEND_AT, "now": SEND_AT}
    first = store.begin_message("reader", "<a@x>", picks, **kwargs)  # type: ignore[arg-type]
    with store.reopen() as other:
        assert other.release_unhanded(SEND_AT) == ["<a@x>"]
        other.begin_message("reader", "<b@x>", picks, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(LedgerConflictError):
        store.mark_handed_over(first, SEND_AT)
    second = store.begin_message("bob", "<c@x>", picks, **kwargs)  # type: ignore[arg-type]
    store.mark_handed_over(second, SEND_AT)
    assert store.resolve_stuck("bob", "failed", SEND_AT, "by hand") == ["<c@x>"]
    store.finish_message(second, "sent", SEND_AT)  # the server's 250 came after all
    assert {m.message_id: m.state for m in store.history("bob")} == {"<c@x>": "sent"}


def test_settling_stuck_messages_waits_for_the_send_lock(tmp_path: Path) -> None:
    from digest.send import lock_path, send_lock

    config, _ = delivery_workspace(tmp_path, 1, method="maildir")
    with send_lock(lock_path(config)):
        result = cli_digest(
            "--config", tmp_path / "config.toml", "send", "--resolve-stuck", "reader000", "--as", "failed"
        )
        retry = cli_digest("--config", tmp_path / "config.toml", "send", "reader000", "--retry-stuck")
    assert result.returncode == 1 and "another `digest send`" in result.stderr
    assert retry.returncode == 1 and "another `digest send`" in retry.stderr
