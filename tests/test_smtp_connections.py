"""`[smtp] connections = N`: N messages on their way at once, each on its own connection, with every promise of a
single connection kept (each subscriber one message, a message lost after DATA stuck and never resent)."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

from delivery_helpers import INGESTED_AT, workspace
from smtp_server import Behaviour, SmtpServer

from digest.config import Config
from digest.mail.smtp import SmtpTransport
from digest.service import _transports, send
from digest.store import Store

SEND_AT = INGESTED_AT + timedelta(hours=2)


def test_four_connections_deliver_in_parallel_and_each_subscriber_once(tmp_path: Path) -> None:
    # A relay that takes 0.2 s a message: one connection at a time would never have two messages in DATA.
    with SmtpServer(Behaviour(delay=0.2)) as server:
        config, ids = workspace(tmp_path, 24, port=server.port, extra_smtp="connections = 4")
        report = send(config, selection="all", clock=lambda: SEND_AT)
        received = server.wait_for(24)
    assert sorted(item.subscriber for item in report.sent) == ids
    assert not report.failed and not report.stuck and not report.skipped
    assert sorted(r.recipients[0] for r in received) == sorted(f"{i}@example.org" for i in ids)
    assert server.handler.most_in_data == 4, "four messages in DATA at one moment"
    assert server.handler.greetings == 4, "four connections, each reused"
    with Store(config.paths.database) as store:
        history = store.history()
        assert len(history) == 24 and {m.state for m in history} == {"sent"}
        assert len({m.subscriber for m in history}) == 24
    again = send(config, selection="all", clock=lambda: SEND_AT + timedelta(minutes=5))
    assert not again.sent and len(server.received) == 24


def test_a_message_lost_after_data_is_stuck_and_the_other_lanes_go_on(tmp_path: Path) -> None:
    with SmtpServer(Behaviour(drop_first=1, delay=0.05)) as server:
        config, ids = workspace(tmp_path, 12, port=server.port, extra_smtp="connections = 3")
        report = send(config, selection="all", clock=lambda: SEND_AT)
        server.wait_for(11)
    assert len(report.stuck) == 1 and len(report.sent) == 11 and not report.failed
    assert {item.subscriber for item in report.sent} | {report.stuck[0].subscriber} == set(ids)
    rerun = send(config, selection="all", clock=lambda: SEND_AT + timedelta(minutes=5))
    assert [item.subscriber for item in rerun.stuck] == [report.stuck[0].subscriber]  # never resent
    assert len(server.received) == 11


def test_no_server_stops_every_lane_and_reports_everyone(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    config, ids = workspace(tmp_path, 10, port=closed, extra_smtp="connections = 4")
    report = send(config, selection="all", clock=lambda: SEND_AT)
    assert report.stopped_by and "connection refused" in report.stopped_by
    reached = [item.subscriber for items in (report.sent, report.failed, report.skipped) for item in items]
    assert sorted(reached) == ids and not report.sent
    with Store(config.paths.database) as store:
        assert {m.state for m in store.history()} <= {"failed"}
        assert all(not store.sent_paper_ids(name) for name in ids)


def test_the_rate_limit_is_shared_by_the_connections(tmp_path: Path) -> None:
    config, _ = workspace(tmp_path, 1, extra_smtp="connections = 4\nmax_per_minute = 120")
    made: list[Config] = []

    def factory(given: Config) -> SmtpTransport:
        made.append(given)
        return SmtpTransport(given.smtp)

    transports = _transports(config, factory)
    assert len(transports) == 4 and {c.smtp.max_per_minute for c in made} == {30.0}  # 4 x 30 = the limit
    maildir = config.model_copy(update={"delivery": config.delivery.model_copy(update={"method": "maildir"})})
    assert len(_transports(maildir, lambda c: SmtpTransport(c.smtp))) == 1  # a folder takes one
