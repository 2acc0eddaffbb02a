"""One clock: DIGEST_NOW is "now" for every command, in this process and in a child process; bad values are a
one-line error; no module but digest.clock reads the calendar."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from cli import digest
from conftest import REPO
from delivery_helpers import workspace as delivery_workspace

from digest import clock
from digest.store import Store

LATER = datetime(2031, 1, 1, 7, 30, tzinfo=UTC)


def test_digest_now_reaches_a_subprocess_send(tmp_path: Path) -> None:
    config, ids = delivery_workspace(tmp_path, 2, method="maildir", at=LATER - timedelta(hours=2))
    environment = os.environ | {"DIGEST_NOW": LATER.isoformat()}
    done = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(tmp_path / "config.toml"), "send", "--all", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=environment,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(item["subscriber"] for item in json.loads(done.stdout)["sent"]) == ids
    dates = [
        parsedate_to_datetime(str(email.message_from_bytes(m.as_bytes(), policy=email.policy.default)["Date"]))
        for m in mailbox.Maildir(config.delivery.maildir, create=False)
    ]
    assert dates == [LATER, LATER]
    with Store(config.paths.database) as store:
        assert {m.created_at for m in store.history()} == {LATER.isoformat(timespec="microseconds")}
        assert store.last_attempt_at(ids[0]) == LATER


def test_the_window_follows_digest_now(tmp_path: Path) -> None:
    """Papers ingested a week before DIGEST_NOW are past lookback_days (7): nothing to send, said so."""
    delivery_workspace(tmp_path, 1, method="maildir", at=LATER - timedelta(days=7, minutes=1))
    config = str(tmp_path / "config.toml")
    # A dry run: a real send with nothing to send would end the window there (those papers count as weighed).
    early = digest("--config", config, "send", "--all", "--dry-run", "--json", env={"DIGEST_NOW": LATER.isoformat()})
    assert early.returncode == 0, early.stderr
    assert json.loads(early.stdout)["skipped"][0]["reason"] == "no new papers since the last digest"
    on_time = LATER - timedelta(days=6)
    sent = digest("--config", config, "send", "--all", "--json", env={"DIGEST_NOW": on_time.isoformat()})
    assert len(json.loads(sent.stdout)["sent"]) == 1


NOT_ISO = "is not an ISO 8601 timestamp; write it like 2027-03-01T07:00:00+00:00"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("tomorrow", NOT_ISO),
        ("2027-03-01T07:00:00", "has no UTC offset; add one, like 2027-03-01T07:00:00+00:00"),
        ("2027-02-30T07:00:00+00:00", NOT_ISO),
    ],
)
def test_an_invalid_digest_now_is_one_line_and_exit_2(workspace: Path, value: str, problem: str) -> None:
    message = f"error: DIGEST_NOW={value!r} {problem}"
    for command in (["papers"], ["subscribers", "--json"], ["send", "--all", "--dry-run"]):
        result = digest("--config", workspace / "config.toml", *command, env={"DIGEST_NOW": value})
        assert (result.returncode, result.stdout, result.stderr) == (2, "", message + "\n")


def test_the_scheduler_refuses_a_fixed_clock_but_run_once_takes_it(workspace: Path) -> None:
    config = workspace / "config.toml"
    daemon = digest("--config", config, "run")
    assert daemon.returncode == 2
    assert daemon.stderr.startswith("error: DIGEST_NOW fixes the clock") and daemon.stderr.count("\n") == 1
    once = digest("--config", config, "run", "--once")
    assert once.returncode == 0, once.stderr


def test_offsets_are_kept_as_the_same_instant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_NOW", "2027-03-01T08:00:00+01:00")
    assert clock.utc_now() == datetime(2027, 3, 1, 7, 0, tzinfo=UTC)
    assert clock.utc_now().tzinfo is UTC
    monkeypatch.setenv("DIGEST_NOW", "2027-03-01T07:00:00Z")
    assert clock.utc_now() == datetime(2027, 3, 1, 7, 0, tzinfo=UTC)


def test_without_digest_now_it_is_the_system_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGEST_NOW")
    before = datetime.now(UTC)
    assert before <= clock.utc_now() <= datetime.now(UTC)
    monkeypatch.setenv("DIGEST_NOW", "  ")
    assert before <= clock.utc_now()


def test_no_module_but_the_clock_reads_the_calendar() -> None:
    calendar = re.compile(r"datetime\.now\(|date\.today\(|utcnow\(|time\.time\(\)")
    offenders = []
    for path in sorted((REPO / "digest").rglob("*.py")):
        if path.name == "clock.py" and path.parent.name == "digest":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if calendar.search(line) and "not the calendar" not in line:
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []
