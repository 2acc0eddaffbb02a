"""Delivery against a real SMTP server (aiosmtpd on 127.0.0.1): plain, STARTTLS, SSL with AUTH, retries,
refusals and dropped connections, all checked in what the server received and in the ledger."""

from __future__ import annotations

import email.utils
from datetime import timedelta
from pathlib import Path

import pytest
from delivery_helpers import INGESTED_AT, workspace
from smtp_server import Behaviour, SmtpServer, make_certificate

from digest.service import send
from digest.store import Store

SEND_AT = INGESTED_AT + timedelta(hours=2)


def clock():  # type: ignore[no-untyped-def]
    return SEND_AT


def test_plain_smtp_delivers_one_proper_multipart_message_per_subscriber(tmp_path: Path) -> None:
    with SmtpServer() as server:
        config, ids = workspace(tmp_path, 3, port=server.port)
        report = send(config, selection="all", clock=clock)
        received = server.wait_for(3)
    assert sorted(item.subscriber for item in report.sent) == ids
    assert not report.failed and not report.stuck
    assert sorted(r.recipients[0] for r in received) == [f"{i}@example.org" for i in ids]
    message = received[0].message
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"], "text first, HTML last"
    assert message["Message-ID"].endswith("@lab.example>")
    assert email.utils.parsedate_to_datetime(message["Date"]) == SEND_AT
    assert message["List-Id"] and message["List-Unsubscribe"].startswith("<mailto:digest@lab.example")
    # The Message-ID the server saw is the one the ledger recorded before sending.
    with Store(config.paths.database) as store:
        recorded = {m.message_id: m for m in store.history()}
    for item in received:
        stored = recorded[item.message["Message-ID"]]
        assert stored.state == "sent"
        assert [p.paper_id for p in stored.papers] == item.papers


def test_a_second_send_finds_nothing_new_and_sends_nothing(tmp_path: Path) -> None:
    with SmtpServer() as server:
        config, ids = workspace(tmp_path, 3, port=server.port)
        send(config, selection="all", clock=clock)
        server.wait_for(3)
        again = send(config, selection="all", clock=lambda: SEND_AT + timedelta(days=1))
    assert len(server.received) == 3
    assert not again.sent
    assert {item.subscriber for item in again.skipped} == set(ids)
    assert all("no new papers" in str(item.reason) for item in again.skipped)


def test_one_reused_connection_for_many_messages(tmp_path: Path) -> None:
    with SmtpServer() as server:
        config, _ = workspace(tmp_path, 6, port=server.port)
        send(config, selection="all", clock=clock)
        server.wait_for(6)
    assert server.handler.attempts == 6
    assert server.handler.greetings == 1, "six messages over one connection"


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_with_auth_reads_the_password_from_the_environment(
    tmp_path: Path, security: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert = make_certificate(tmp_path)
    monkeypatch.setenv("TEST_SMTP_SECRET", "s3cret-pw")
    extra = f'username = "digest"\npassword_env = "TEST_SMTP_SECRET"\nca_file = "{cert[0]}"'
    with SmtpServer(security=security, cert=cert, auth=("digest", "s3cret-pw")) as server:
        config, ids = workspace(tmp_path, 2, port=server.port, security=security, extra_smtp=extra)
        report = send(config, selection="all", clock=clock)
        server.wait_for(2)
    assert not report.failed, report.failed
    assert len(report.sent) == 2


def test_wrong_password_fails_every_message_without_leaking_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert = make_certificate(tmp_path)
    monkeypatch.setenv("TEST_SMTP_SECRET", "wrong-pw-value")
    extra = f'username = "digest"\npassword_env = "TEST_SMTP_SECRET"\nca_file = "{cert[0]}"'
    with SmtpServer(security="starttls", cert=cert, auth=("digest", "right")) as server:
        config, _ = workspace(tmp_path, 2, port=server.port, security="starttls", extra_smtp=extra)
        report = send(config, selection="all", clock=clock)
    assert len(report.failed) == 2 and not report.sent
    assert all("login refused" in str(f.error) for f in report.failed)
    assert "wrong-pw-value" not in repr(report.as_json())
    assert server.received == []
    with Store(config.paths.database) as store:
        assert {m.state for m in store.history()} == {"failed"}
        assert store.sent_paper_ids("reader000") == set(), "failed papers stay candidates"


def test_a_451_is_retried_and_delivered_once(tmp_path: Path) -> None:
    with SmtpServer(Behaviour(defer_first=2)) as server:
        config, _ = workspace(tmp_path, 1, port=server.port)
        report = send(config, selection="all", clock=clock)
        received = server.wait_for(1)
    assert len(report.sent) == 1 and not report.failed
    assert len(received) == 1
    assert server.handler.attempts == 3


def test_a_550_for_one_recipient_fails_only_that_one(tmp_path: Path) -> None:
    with SmtpServer(Behaviour(refuse={"reader001@example.org"})) as server:
        config, ids = workspace(tmp_path, 3, port=server.port)
        report = send(config, selection="all", clock=clock)
        received = server.wait_for(2)
    assert [f.subscriber for f in report.failed] == ["reader001"]
    assert "550" in str(report.failed[0].error)
    assert sorted(r.recipients[0] for r in received) == ["reader000@example.org", "reader002@example.org"]
    with Store(config.paths.database) as store:
        states = {m.subscriber: m.state for m in store.history()}
    assert states == {"reader000": "sent", "reader001": "failed", "reader002": "sent"}


def test_transient_failures_give_up_after_the_configured_retries(tmp_path: Path) -> None:
    with SmtpServer(Behaviour(defer_first=100)) as server:
        config, _ = workspace(tmp_path, 1, port=server.port)
        report = send(config, selection="all", clock=clock)
    assert len(report.failed) == 1
    assert "gave up after 4 attempts" in str(report.failed[0].error)
    assert server.handler.attempts == 4


def test_server_down_fails_cleanly_and_a_rerun_delivers(tmp_path: Path) -> None:
    with SmtpServer() as server:
        port = server.port
    config, _ = workspace(tmp_path, 2, port=port)
    first = send(config, selection="all", clock=clock)
    # Nobody listens: the send stops at the first subscriber instead of retrying for each, says what to fix, and
    # lists the other as not attempted.
    assert [f.subscriber for f in first.failed] == ["reader000"]
    assert "connection refused; check [smtp] host and port" in str(first.failed[0].error)
    assert first.stopped_by is not None and "[delivery] method" in first.stopped_by
    assert [s.subscriber for s in first.skipped] == ["reader001"]
    assert str(first.skipped[0].reason).startswith("not attempted: the send stopped")
    server = SmtpServer()
    server.port = port
    from aiosmtpd.controller import Controller

    server.controller = Controller(server.handler, hostname="127.0.0.1", port=port)
    with server:
        second = send(config, selection="all", clock=lambda: SEND_AT + timedelta(minutes=5))
        server.wait_for(2)
    assert len(second.sent) == 2


def test_dry_run_composes_but_sends_and_records_nothing(tmp_path: Path) -> None:
    with SmtpServer() as server:
        config, ids = workspace(tmp_path, 3, port=server.port)
        db = config.paths.database
        report = send(config, selection="all", clock=clock, dry_run=True)
    assert len(report.sent) == 3 and report.dry_run
    assert server.received == []
    with Store(db) as store:
        assert store.history() == []
        assert store.subscriber_state("reader000").token is None


def test_maildir_delivery_writes_readable_messages(tmp_path: Path) -> None:
    import mailbox

    config, ids = workspace(tmp_path, 2, method="maildir")
    report = send(config, selection="all", clock=clock)
    assert len(report.sent) == 2
    box = mailbox.Maildir(config.delivery.maildir, create=False)
    messages = list(box)
    assert len(messages) == 2
    assert {m["To"].split("<")[1].rstrip(">") for m in messages} == {f"{i}@example.org" for i in ids}


def test_paused_subscribers_are_skipped(tmp_path: Path) -> None:
    with SmtpServer() as server:
        config, ids = workspace(tmp_path, 2, port=server.port)
        with Store(config.paths.database) as store:
            store.set_paused("reader000", True, SEND_AT)
        report = send(config, selection="all", clock=clock)
        server.wait_for(1)
    assert [s.subscriber for s in report.skipped] == ["reader000"]
    assert "paused" in str(report.skipped[0].reason)


def test_missing_password_variable_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from digest.errors import ConfigError

    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    config, _ = workspace(tmp_path, 1, port=2525, extra_smtp='username = "x"\npassword_env = "NOT_SET_ANYWHERE"')
    with pytest.raises(ConfigError, match=r"\$NOT_SET_ANYWHERE"):
        send(config, selection="all", clock=clock)


def _add_subscriber(root: Path, sub: str, name: str, address: str) -> None:
    (root / "subscribers" / f"{sub}.toml").write_text(
        f'name = "{name}"\nemail = "{address}"\nschedule = "0 7 * * *"\nmin_score = 0.01\nmax_papers = 5\n'
        '[interests]\nkeywords = ["diffusion models"]\n',
        encoding="utf-8",
    )


def test_international_addresses_go_out_with_smtputf8_or_punycode(tmp_path: Path) -> None:
    with SmtpServer(smtputf8=True) as server:
        config, ids = workspace(tmp_path, 1, port=server.port)
        _add_subscriber(tmp_path, "jorg", "Jörg Ünïcode", "jörg@example.org")
        _add_subscriber(tmp_path, "buecher", "Plain, Name", "anna@bücher.de")
        report = send(config, selection="all", clock=clock)
        received = server.wait_for(3)
    assert not report.failed and not report.stuck, report.failed
    by_recipient = {r.recipients[0]: r for r in received}
    assert set(by_recipient) == {"reader000@example.org", "jörg@example.org", "anna@xn--bcher-kva.de"}
    jorg = by_recipient["jörg@example.org"].raw
    assert "<jörg@example.org>".encode() in jorg, "a UTF-8 address stays UTF-8 in the header (RFC 6532)"
    assert b"=?utf-8?b?" in jorg.split(b"\r\n\r\n")[0], "the display name is still RFC 2047-encoded"
    assert by_recipient["anna@xn--bcher-kva.de"].message["To"] == '"Plain, Name" <anna@xn--bcher-kva.de>'


def test_a_utf8_address_without_smtputf8_fails_alone_and_clearly(tmp_path: Path) -> None:
    with SmtpServer() as server:
        config, ids = workspace(tmp_path, 2, port=server.port)
        _add_subscriber(tmp_path, "jorg", "Jörg", "jörg@example.org")
        report = send(config, selection="all", clock=clock)
        received = server.wait_for(2)
    assert sorted(r.recipients[0] for r in received) == ["reader000@example.org", "reader001@example.org"]
    assert [f.subscriber for f in report.failed] == ["jorg"]
    assert "SMTPUTF8" in str(report.failed[0].error)
    assert not report.stuck
    with Store(config.paths.database) as store:
        assert [m.state for m in store.history("jorg")] == ["failed"]


def test_an_unsubscribe_during_a_send_is_honoured_before_that_message(tmp_path: Path) -> None:
    from digest.mail.maildir import MaildirTransport
    from digest.render import make_environment
    from digest.send import send_digests
    from digest.subscribers import load_subscribers

    config, ids = workspace(tmp_path, 3, method="maildir")
    sent_to: list[str] = []

    class UnsubscribingTransport(MaildirTransport):
        def send(self, message: object, recipient: str, handing_over: object = None) -> None:
            super().send(message, recipient)  # type: ignore[arg-type]
            sent_to.append(recipient)
            if recipient == "reader000@example.org":  # reader002 clicks Unsubscribe meanwhile
                with Store(config.paths.database) as other:
                    other.set_paused("reader002", True, SEND_AT)

    profiles = load_subscribers(config.paths.subscribers).profiles
    with Store(config.paths.database) as store:
        report = send_digests(
            store,
            config,
            make_environment(None),
            profiles,
            UnsubscribingTransport(config.delivery.maildir),
            clock=clock,
        )
    assert sent_to == ["reader000@example.org", "reader001@example.org"]
    assert [s.subscriber for s in report.skipped] == ["reader002"]
    assert "paused" in str(report.skipped[0].reason)


def test_two_maildir_transports_at_the_same_instant_never_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import digest.mail.maildir
    from digest.mail.maildir import MaildirTransport

    monkeypatch.setattr(digest.mail.maildir.time, "time", lambda: 1_800_000_000.5)
    first, second = MaildirTransport(tmp_path / "box"), MaildirTransport(tmp_path / "box")
    for number in range(3):
        first.send(f"Subject: a{number}\r\n\r\nbody\r\n".encode(), "x@example.org")
        second.send(f"Subject: b{number}\r\n\r\nbody\r\n".encode(), "x@example.org")
    files = sorted((tmp_path / "box" / "new").iterdir())
    assert len(files) == 6
    assert sorted(f.read_bytes().split(b"\n")[0] for f in files) == [
        b"Subject: a0",
        b"Subject: a1",
        b"Subject: a2",
        b"Subject: b0",
        b"Subject: b1",
        b"Subject: b2",
    ]
    assert list((tmp_path / "box" / "tmp").iterdir()) == []


def test_maildir_fsync_is_off_by_default_and_on_when_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import digest.mail.maildir
    from digest.config import load_config
    from digest.mail.transport import make_transport

    config, _ = workspace(tmp_path, 1, method="maildir")
    synced: list[int] = []
    monkeypatch.setattr(digest.mail.maildir.os, "fsync", lambda fd: synced.append(fd) or os.fstat(fd))
    make_transport(config).send(b"Subject: fast\r\n\r\nbody\r\n", "x@example.org")
    assert synced == []
    path = tmp_path / "config.toml"
    path.write_text(path.read_text(encoding="utf-8").replace("[delivery]\n", "[delivery]\nmaildir_fsync = true\n"))
    make_transport(load_config(path)).send(b"Subject: durable\r\n\r\nbody\r\n", "x@example.org")
    assert len(synced) == 1
    assert len(list(config.delivery.maildir.joinpath("new").iterdir())) == 2


def test_papers_weighed_and_found_wanting_are_not_candidates_again(tmp_path: Path) -> None:
    """A digest with nothing above min_score still moves the window: tomorrow's candidates are tomorrow's papers,
    not every paper since the last email (a window, and a cost, that would grow every day)."""
    config, ids = workspace(tmp_path, 1, method="maildir")
    profile_file = tmp_path / "subscribers" / f"{ids[0]}.toml"
    profile_file.write_text(profile_file.read_text().replace("min_score = 0.01", "min_score = 0.99"))
    first = send(config, selection="all", clock=clock)
    assert not first.sent and "scored above min_score 0.99" in str(first.skipped[0].reason)
    profile_file.write_text(profile_file.read_text().replace("min_score = 0.99", "min_score = 0.01"))
    again = send(config, selection="all", clock=lambda: SEND_AT + timedelta(days=1))
    assert not again.sent
    assert again.skipped[0].reason == "no new papers since the last digest"
    with Store(config.paths.database) as store:
        assert store.last_window_seq(ids[0]) == store.max_seq()


def test_the_in_memory_transport_holds_what_a_send_hands_over(tmp_path: Path) -> None:
    """MemoryTransport (digest.mail.transport): the outbox has each message once, as the wire bytes, after the
    ledger recorded the hand-over."""
    from digest.mail.transport import MemoryTransport

    outbox = MemoryTransport()
    config, ids = workspace(tmp_path, 3, method="maildir")
    report = send(config, selection="all", clock=clock, transport_factory=lambda _config: outbox)
    assert sorted(item.subscriber for item in report.sent) == ids
    assert sorted(recipient for recipient, _ in outbox.outbox) == [f"{i}@example.org" for i in ids]
    sent_ids = {item.message_id for item in report.sent}
    seen = {email.message_from_bytes(data)["Message-ID"] for _, data in outbox.outbox}
    assert seen == sent_ids and all(b"\r\n" in data for _, data in outbox.outbox)
    with Store(config.paths.database) as store:
        assert {m.message_id: m.state for m in store.history()} == dict.fromkeys(sent_ids, "sent")
    assert not list(config.delivery.maildir.rglob("*.eml")) and not (config.delivery.maildir / "new").exists()


def test_send_says_how_many_new_papers_it_left_unsent(tmp_path: Path) -> None:
    """A digest of 5 picked from 19 new papers: the other 14 are not offered again, and send says so."""
    import json

    from cli import digest as cli_digest

    config, ids = workspace(tmp_path, 2, method="maildir", at=INGESTED_AT)
    now = {"DIGEST_NOW": (INGESTED_AT + timedelta(hours=2)).isoformat()}
    dry = cli_digest("--config", tmp_path / "config.toml", "send", ids[0], "--dry-run", "--json", env=now)
    (planned,) = json.loads(dry.stdout)["sent"]
    assert planned["candidates"] > len(planned["papers"]) == 5
    assert planned["left_unsent"] == planned["candidates"] - 5
    text = cli_digest("--config", tmp_path / "config.toml", "send", "--all", env=now)
    assert text.returncode == 0, text.stderr
    for name in ids:
        assert f"sent: {name} (5 of {planned['candidates']} new papers)" in text.stdout
    assert (
        f"note: {2 * planned['left_unsent']} new paper(s) were weighed and not picked for 2 subscriber(s)"
        in text.stderr
    )
    assert "raise max_papers or lower min_score" in text.stderr
