"""The promise: no paper reaches the same subscriber twice, whatever happens, and nothing is silently lost.

Real processes, a real SMTP server, a real SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from cli import Ran
from cli import digest as cli_digest
from delivery_helpers import workspace
from smtp_server import Behaviour, SmtpServer

from digest.store import Store

REPO = Path(__file__).resolve().parent.parent


def digest_cmd(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "digest", "--config", str(config), *args]


def run_digest(config: Path, *args: str) -> Ran:
    """A rerun after the crash: in-process (only the process that is killed needs to be a real one)."""
    return cli_digest("--config", config, *args, cwd=REPO)


@pytest.mark.parametrize(
    ("count", "workers"),
    [(50, 0), (80, 2)],
    ids=["composed-in-the-sender", "composed-in-2-worker-processes"],
)
def test_sigkill_mid_send_then_rerun_never_duplicates_and_reports_the_one_in_flight(
    tmp_path: Path, count: int, workers: int
) -> None:
    with SmtpServer(Behaviour(delay=0.05)) as server:
        config, ids = workspace(tmp_path, count, port=server.port)
        config_path = tmp_path / "config.toml"
        config_path.write_text(
            config_path.read_text(encoding="utf-8").replace(
                "[delivery]\n", f"[delivery]\ncompose_workers = {workers}\n"
            ),
            encoding="utf-8",
        )
        process = subprocess.Popen(
            digest_cmd(config_path, "-v", "send", "--all", "--json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        try:
            server.wait_for(12, timeout=120)
        finally:
            os.kill(process.pid, signal.SIGKILL)
            # Returns only once every process holding the sender's stderr is gone: its workers leave with it.
            _, log = process.communicate(timeout=30)
        assert ("composing in 2 worker process(es)" in log) == (workers == 2), log[-2000:]
        time.sleep(0.3)  # let the server finish the DATA it was in the middle of
        killed_at = len(server.received)
        assert killed_at < count, "the kill must land mid-run for this test to mean anything"

        rerun = run_digest(config_path, "send", "--all", "--json")
        report = json.loads(rerun.stdout)
        time.sleep(0.3)
        received = server.received

    per_subscriber = Counter(r.recipients[0].split("@")[0] for r in received)
    # No subscriber got a paper twice.
    for sub in ids:
        papers = [p for r in received if r.recipients[0].startswith(sub + "@") for p in r.papers]
        assert len(papers) == len(set(papers)), f"{sub} got a paper twice"
    assert all(count == 1 for count in per_subscriber.values()), per_subscriber
    # Every subscriber but at most the one in flight got their digest; that one is reported as stuck.
    stuck = [item["subscriber"] for item in report["stuck"]]
    assert len(stuck) <= 1
    missing = set(ids) - set(per_subscriber)
    assert missing <= set(stuck)
    assert rerun.returncode == (1 if stuck else 0)
    print(
        f"\nSIGKILL after {killed_at} of {count} messages reached the server; rerun sent {len(report['sent'])}, "
        f"stuck {stuck}; {len(received)} messages in all, {len(per_subscriber)} subscribers served once each"
    )
    with Store(config.paths.database) as store:
        assert [m.subscriber for m in store.stuck_messages()] == stuck
    if stuck:
        # Settling it by hand: `failed` makes its papers candidates again and the next send delivers them.
        settled = run_digest(config_path, "send", "--resolve-stuck", stuck[0], "--as", "sent")
        assert settled.returncode == 0, settled.stderr
        with Store(config.paths.database) as store:
            assert store.stuck_messages() == []


def test_two_senders_started_together_never_send_a_digest_twice(tmp_path: Path) -> None:
    with SmtpServer(Behaviour(delay=0.02)) as server:
        config, ids = workspace(tmp_path, 12, port=server.port)
        config_path = tmp_path / "config.toml"
        first = subprocess.Popen(
            digest_cmd(config_path, "send", "--all", "--json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        second = subprocess.Popen(
            digest_cmd(config_path, "send", "--all", "--json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        out1, err1 = first.communicate(timeout=120)
        out2, err2 = second.communicate(timeout=120)
        received = server.received  # each message is recorded before its 250
    counts = Counter(r.recipients[0] for r in received)
    assert len(counts) == 12 and set(counts.values()) == {1}, counts
    # The loser of the race says so in one line and exits non-zero, or (if it came second) finds nothing new.
    outcomes = sorted([first.returncode, second.returncode])
    assert outcomes[0] == 0
    loser_err = err1 if first.returncode else err2
    if outcomes[1] != 0:
        assert "another `digest send`" in loser_err
        assert "Traceback" not in loser_err


def test_resolve_stuck_as_failed_makes_the_papers_candidates_again(tmp_path: Path) -> None:
    from datetime import timedelta

    from delivery_helpers import INGESTED_AT

    from digest.store import PickRecord

    with SmtpServer() as server:
        config, ids = workspace(tmp_path, 1, port=server.port)
        with Store(config.paths.database) as store:
            paper = store.all_papers()[0]
            crashed = store.begin_message(
                "reader000",
                "<crashed@lab.example>",
                [PickRecord(paper.id or "", 0.5, "why")],
                channel="email",
                subject="s",
                candidates_until=INGESTED_AT + timedelta(hours=1),
                now=INGESTED_AT + timedelta(hours=1),
            )
            # The sender died after the hand-over started: the outcome is unknown, so the message is stuck.
            store.mark_handed_over(crashed, INGESTED_AT + timedelta(hours=1))
        config_path = tmp_path / "config.toml"
        blocked = run_digest(config_path, "send", "reader000", "--json")
        assert blocked.returncode == 1
        assert json.loads(blocked.stdout)["stuck"][0]["message_id"] == "<crashed@lab.example>"
        assert server.received == []
        retry = run_digest(config_path, "send", "reader000", "--retry-stuck", "--json")
        assert retry.returncode == 0, retry.stderr
        received = server.wait_for(1)
    assert len(received) == 1
    with Store(config.paths.database) as store:
        states = sorted(m.state for m in store.history("reader000"))
    assert states == ["failed", "sent"]
