"""`digest run`: one cycle with --once, SIGTERM that finishes the message in flight, and real digests
arriving day after day without a paper ever repeating."""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import shutil
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import cli
import html5lib
import pytest
from conftest import NOW, shared_digests
from delivery_helpers import DEMO_INBOX, INGESTED_AT, write_config, write_subscribers
from smtp_server import Behaviour, SmtpServer

from digest.config import load_config
from digest.ingest import ingest_sources
from digest.preview import preview_digest
from digest.render import make_environment
from digest.service import send
from digest.store import Store
from digest.subscribers import load_subscribers

REPO = Path(__file__).resolve().parent.parent


SLOT = NOW + timedelta(minutes=5)  # the next */5 slot after the fixed test instant


def digest(config: Path, *args: str) -> cli.Ran:
    """`digest --config CONFIG ARGS` in-process (a SIGTERM test needs a process of its own: it makes one)."""
    return cli.digest("--config", config, *args, cwd=REPO)


def test_run_once_ingests_sends_the_due_and_writes_feeds(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, method="maildir")
    for item in DEMO_INBOX.iterdir():
        shutil.copy(item, tmp_path / "inbox" / item.name)
    write_subscribers(tmp_path, 3, schedule="*/5 * * * *")
    joined = digest(config_path, "run", "--once")  # new subscribers: their first digest waits for their next slot
    assert joined.returncode == 0, joined.stderr
    config = load_config(config_path)
    assert not config.delivery.maildir.exists() or not list(mailbox.Maildir(config.delivery.maildir, create=False))
    first = cli.digest("--config", config_path, "run", "--once", cwd=REPO, env={"DIGEST_NOW": SLOT.isoformat()})
    assert first.returncode == 0, first.stderr
    assert len(list(mailbox.Maildir(config.delivery.maildir, create=False))) == 3
    assert sorted(p.name for p in config.paths.feeds.glob("*.xml")) == [
        "all.xml",
        "reader000.xml",
        "reader001.xml",
        "reader002.xml",
    ]
    second = cli.digest("--config", config_path, "run", "--once", cwd=REPO, env={"DIGEST_NOW": SLOT.isoformat()})
    assert second.returncode == 0, second.stderr
    assert len(list(mailbox.Maildir(config.delivery.maildir, create=False))) == 3, "nothing new, nothing sent"
    assert "Traceback" not in joined.stderr + first.stderr + second.stderr


def test_a_welcome_digest_goes_out_at_once_when_configured(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, method="maildir", welcome_digest=True)
    for item in DEMO_INBOX.iterdir():
        shutil.copy(item, tmp_path / "inbox" / item.name)
    write_subscribers(tmp_path, 2, schedule="0 7 1 1 *")  # once a year: without the welcome, a year's wait
    ran = digest(config_path, "run", "--once")
    assert ran.returncode == 0, ran.stderr
    messages = list(mailbox.Maildir(load_config(config_path).delivery.maildir, create=False))
    assert len(messages) == 2
    assert all("Welcome! This first digest" in m.get_payload()[0].get_payload(decode=True).decode() for m in messages)
    again = digest(config_path, "run", "--once")
    assert again.returncode == 0 and len(list(mailbox.Maildir(load_config(config_path).delivery.maildir))) == 2


def test_sigterm_finishes_the_message_in_flight_and_exits_cleanly(tmp_path: Path) -> None:
    with SmtpServer(Behaviour(delay=0.5)) as server:
        # A welcome digest: new subscribers are due at once, not at the next minute.
        config_path = write_config(tmp_path, port=server.port, welcome_digest=True)
        for item in DEMO_INBOX.iterdir():
            shutil.copy(item, tmp_path / "inbox" / item.name)
        write_subscribers(tmp_path, 8, schedule="* * * * *")
        # A real process on purpose: the test sends it SIGTERM, and `digest run` must exit by itself.
        # The scheduler runs on the real clock (it refuses DIGEST_NOW): its first cycle ingests the inbox and
        # sends at the same real "now", so the test holds on any day.
        environment = {k: v for k, v in os.environ.items() if k != "DIGEST_NOW"}
        process = subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(config_path), "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=environment,
        )
        server.wait_for(1, timeout=60)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        received = server.received  # each message is recorded before its 250, so all are in
    assert process.returncode == 0, err
    assert "Traceback" not in err
    with Store(load_config(config_path).paths.database) as store:
        assert store.stuck_messages() == [], "the message in flight was finished, not abandoned"
        sent = [m for m in store.history() if m.state == "sent"]
    assert len(received) == len(sent) < 8, "stopped early, and every message it started was delivered"


def test_the_second_real_digest_brings_only_papers_the_reader_never_got(tmp_path: Path) -> None:
    files = shared_digests()
    config_path = write_config(tmp_path, method="maildir")
    (tmp_path / "subscribers" / "broad.toml").write_text(
        'name = "Broad Reader"\nemail = "broad@example.org"\nmax_papers = 10\nmin_score = 0.01\n'
        '[interests]\nkeywords = ["neural networks", "diffusion models", "graph neural networks", '
        '"language models", "reinforcement learning"]\n',
        encoding="utf-8",
    )
    config = load_config(config_path)
    day1, day2 = INGESTED_AT, INGESTED_AT + timedelta(days=1)
    with Store(config.paths.database) as store:
        ingest_sources(store, [str(files[0])], max_bytes=10**7, clock=lambda: day1)
    first = send(config, selection="all", clock=lambda: day1 + timedelta(hours=1))
    with Store(config.paths.database) as store:
        ingest_sources(store, [str(files[2])], max_bytes=10**7, clock=lambda: day2)
        second_day_new = {p.id for p in store.papers_since(day1 + timedelta(hours=1))}
    second = send(config, selection="all", clock=lambda: day2 + timedelta(hours=1))
    assert len(first.sent) == 1 and len(second.sent) == 1
    got_first, got_second = set(first.sent[0].papers), set(second.sent[0].papers)  # type: ignore[arg-type]
    assert len(got_first) == 10 and got_second
    assert not got_first & got_second
    assert got_second <= second_day_new, "only papers first seen after the first digest"
    messages = [
        email.message_from_bytes(m.as_bytes(), policy=email.policy.default)
        for m in mailbox.Maildir(config.delivery.maildir, create=False)
    ]
    carried = [frozenset(str(m["X-Digest-Papers"]).split()) for m in messages]
    assert len(carried) == 2 and set(carried) == {frozenset(got_first), frozenset(got_second)}


def test_every_format_renders_from_the_real_digests(tmp_path: Path) -> None:
    files = shared_digests()
    config_path = write_config(tmp_path, method="maildir")
    write_subscribers(tmp_path, 3)
    for number, fmt in enumerate(("markdown",)):
        path = tmp_path / "subscribers" / f"reader00{number}.toml"
        path.write_text(
            path.read_text(encoding="utf-8").replace("schedule", f'format = "{fmt}"\nschedule'), encoding="utf-8"
        )
    config = load_config(config_path)
    with Store(config.paths.database) as store:
        report = ingest_sources(store, [str(f) for f in files], max_bytes=10**7, clock=lambda: INGESTED_AT)
        assert report.new == 459
        env = make_environment(config.paths.templates)
        now = INGESTED_AT + timedelta(hours=1)
        for profile in load_subscribers(config.paths.subscribers).profiles:
            outputs = {
                fmt: preview_digest(store, config, env, profile, now, fmt)
                for fmt in ("html", "markdown", "text", "json", "eml")
            }
            assert all(o.output for o in outputs.values()), profile.id
            parser = html5lib.HTMLParser(strict=False)
            parser.parse(outputs["html"].output)
            assert not parser.errors, (profile.id, parser.errors[:3])
            assert len(outputs["html"].output or b"") < 100_000
            message = email.message_from_bytes(outputs["eml"].output or b"", policy=email.policy.default)
            assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
            for pick in outputs["html"].composed.plan.picks:
                assert pick.paper.title.split()[0] in (outputs["text"].output or b"").decode()


def test_a_cycle_reports_any_failing_step_and_still_runs_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever one step raises (here a bug of ours, simulated in the ingest step), the cycle reports it on one
    line and the send still runs: the daemon keeps going."""
    import digest.service
    from digest.service import run_cycle

    config_path = write_config(tmp_path, method="maildir")
    write_subscribers(tmp_path, 2, schedule="* * * * *")
    config = load_config(config_path)
    with Store(config.paths.database) as store:
        ingest_sources(store, [str(DEMO_INBOX)], max_bytes=10**7, clock=lambda: INGESTED_AT)
        for name in ("reader000", "reader001"):
            store.joined_at(name, INGESTED_AT)  # subscribed before the papers came: due at the next slot

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(digest.service, "ingest_configured", broken)
    report = run_cycle(config, clock=lambda: INGESTED_AT + timedelta(hours=1))
    assert report.errors == [
        "ingest: internal error: RecursionError: maximum recursion depth exceeded (run with -v for the traceback)"
    ]
    assert report.send is not None and len(report.send.sent) == 2


def test_a_cycle_with_nothing_new_fits_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import digest.model_cache
    import digest.rank.model
    import digest.service
    from digest.service import run_cycle

    config_path = write_config(tmp_path, method="maildir")
    write_subscribers(tmp_path, 2, schedule="* * * * *")
    config = load_config(config_path)
    with Store(config.paths.database) as store:
        ingest_sources(store, [str(DEMO_INBOX)], max_bytes=10**7, clock=lambda: INGESTED_AT)
        for name in ("reader000", "reader001"):
            store.joined_at(name, INGESTED_AT)
    first = run_cycle(config, clock=lambda: INGESTED_AT + timedelta(hours=1))
    assert first.send is not None and len(first.send.sent) == 2

    def no_fit(*_args: object) -> None:
        raise AssertionError("a cycle with nothing new must not touch the model")

    digest.model_cache.forget_loaded_models()  # a new process: nothing loaded
    monkeypatch.setattr(digest.model_cache, "planning_model", no_fit)
    monkeypatch.setattr(digest.service, "refresh_model", no_fit)
    monkeypatch.setattr(digest.rank.model.RankModel, "fit", no_fit)
    later = run_cycle(config, clock=lambda: INGESTED_AT + timedelta(hours=2))
    assert later.errors == [] and later.send is not None
    assert [s.reason for s in later.send.skipped] == ["no new papers since the last digest"] * 2
