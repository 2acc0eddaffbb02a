"""Composing in worker processes: the same messages as composing in the sender, in order, and nothing lost
when a worker dies or one subscriber's template fails."""

from __future__ import annotations

import email
import email.policy
import os
import signal
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from delivery_helpers import INGESTED_AT, workspace
from sample_digest import SAMPLE_LINKS, SAMPLE_NOW, sample_plan
from smtp_server import SmtpServer

from digest.config import load_config
from digest.errors import DigestError
from digest.mail.composer import MIN_JOBS_FOR_WORKERS, ComposedBytes, ComposeJob, Composer, ComposeSettings
from digest.render import make_environment
from digest.service import send
from digest.store import Store

SETTINGS = ComposeSettings(None, "Paper Digest <digest@lab.example>", "paper-digest")


def jobs(count: int) -> list[ComposeJob]:
    result = []
    for number in range(count):
        plan = sample_plan(1 + number % 10, format="markdown" if number % 7 == 0 else "html")
        profile = plan.subscriber.model_copy(update={"id": f"s{number}", "name": f"Reader {number}"})
        result.append(
            ComposeJob(replace(plan, subscriber=profile), SAMPLE_LINKS, f"<m{number}@lab.example>", SAMPLE_NOW)
        )
    return result


def parsed(result: object) -> email.message.EmailMessage:
    assert isinstance(result, ComposedBytes), result
    return email.message_from_bytes(result.data, policy=email.policy.default)  # type: ignore[return-value]


def same_message(a: object, b: object) -> None:
    """Equal but for the MIME boundary, which is random in each message."""
    first, second = parsed(a), parsed(b)
    assert [(k, v) for k, v in first.items() if k != "Content-Type"] == [
        (k, v) for k, v in second.items() if k != "Content-Type"
    ]
    for kind in ("plain", "html"):
        assert first.get_body((kind,)).get_content() == second.get_body((kind,)).get_content()  # type: ignore[union-attr]


def worker_pids(composer: Composer) -> list[int]:
    assert composer._pool is not None, "the batch was composed in the sender, not in workers"
    return list(composer._pool._processes)  # type: ignore[attr-defined]


def test_workers_compose_exactly_what_the_sender_composes_in_order() -> None:
    env = make_environment(None)
    batch = jobs(MIN_JOBS_FOR_WORKERS + 16)
    with Composer(env, SETTINGS, workers=0) as local, Composer(env, SETTINGS, workers=2) as pool:
        expected = list(local.compose(batch))
        results = list(pool.compose(batch))
        pids = worker_pids(pool)
    assert len(pids) == 2 and os.getpid() not in pids
    assert len(results) == len(batch)
    for job, want, got in zip(batch, expected, results, strict=True):
        assert parsed(got)["Message-ID"] == job.message_id
        assert parsed(got)["To"].addresses[0].display_name == job.plan.subscriber.name
        same_message(want, got)


def test_a_small_batch_is_composed_in_the_sender() -> None:
    with Composer(make_environment(None), SETTINGS, workers=2) as composer:
        results = list(composer.compose(jobs(3)))
        assert composer._pool is None
    assert [parsed(r)["Message-ID"] for r in results] == ["<m0@lab.example>", "<m1@lab.example>", "<m2@lab.example>"]


def test_killed_workers_lose_no_message() -> None:
    batch = jobs(400)
    with Composer(make_environment(None), SETTINGS, workers=2) as composer:
        results = composer.compose(batch)
        first = next(results)
        for pid in worker_pids(composer):
            os.kill(pid, signal.SIGKILL)
        rest = list(results)
        assert composer._broken, "the workers were killed before they finished: the sender composed the rest"
    everything = [first, *rest]
    assert [parsed(r)["Message-ID"] for r in everything] == [job.message_id for job in batch]


def test_a_template_error_fails_only_that_subscriber(tmp_path: Path) -> None:
    (tmp_path / "subject.txt.j2").write_text(
        '{% if subscriber.name == "Reader 5" %}{{ no_such_field }}{% endif %}Papers for {{ subscriber.name }}\n',
        encoding="utf-8",
    )
    settings = replace(SETTINGS, templates=tmp_path)
    batch = jobs(MIN_JOBS_FOR_WORKERS)
    with Composer(make_environment(tmp_path), settings, workers=2) as composer:
        results = list(composer.compose(batch))
        worker_pids(composer)
    failed = [i for i, r in enumerate(results) if isinstance(r, DigestError)]
    assert failed == [5]
    assert "subject.txt.j2" in str(results[5]) and "no_such_field" in str(results[5])
    assert parsed(results[6])["Subject"] == "Papers for Reader 6"


def test_a_big_send_with_workers_reaches_everyone_once_over_smtp(tmp_path: Path) -> None:
    count = MIN_JOBS_FOR_WORKERS + 6
    with SmtpServer() as server:
        config, ids = workspace(tmp_path, count, port=server.port)
        config_path = tmp_path / "config.toml"
        config_path.write_text(
            config_path.read_text(encoding="utf-8").replace("[delivery]\n", "[delivery]\ncompose_workers = 2\n"),
            encoding="utf-8",
        )
        config = load_config(config_path)
        assert config.delivery.compose_workers == 2
        report = send(config, selection="all", clock=lambda: INGESTED_AT + timedelta(hours=2))
        received = server.wait_for(count)
    assert not report.failed and not report.stuck
    assert sorted(r.recipients[0] for r in received) == sorted(f"{i}@example.org" for i in ids)
    with Store(config.paths.database) as store:
        history = {m.message_id: m for m in store.history()}
    assert len(history) == count and all(m.state == "sent" for m in history.values())
    for item in received:  # what each reader got is what the ledger says they got
        assert [p.paper_id for p in history[item.message["Message-ID"]].papers] == item.papers
        assert item.message["To"].addresses[0].addr_spec == item.recipients[0]


@pytest.mark.parametrize("workers", [-1, 65])
def test_compose_workers_out_of_range_is_a_config_error(tmp_path: Path, workers: int) -> None:
    from digest.errors import ConfigError

    config, _ = workspace(tmp_path, 1, method="maildir")
    path = tmp_path / "config.toml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("[delivery]\n", f"[delivery]\ncompose_workers = {workers}\n"),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="compose_workers"):
        load_config(path)


def test_an_unexpected_error_fails_only_that_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only our own errors: whatever goes wrong for one subscriber is that subscriber's failure."""
    import digest.mail.composer

    original = digest.mail.composer.render_and_compose

    def flaky(env, plan, links, **kwargs):  # type: ignore[no-untyped-def]
        if plan.subscriber.id == "s2":
            raise ValueError("something nobody foresaw")
        return original(env, plan, links, **kwargs)

    monkeypatch.setattr(digest.mail.composer, "render_and_compose", flaky)
    with Composer(make_environment(None), SETTINGS, workers=0) as composer:
        results = list(composer.compose(jobs(4)))
    assert [type(r).__name__ for r in results] == ["ComposedBytes", "ComposedBytes", "RenderError", "ComposedBytes"]
    assert "ValueError: something nobody foresaw" in str(results[2]) and "test_composer.py" in str(results[2])


def test_a_rate_limited_send_composes_about_a_minute_ahead(tmp_path: Path) -> None:
    from digest.send import PLAN_BATCH, batch_size

    config, _ = workspace(tmp_path, 1, port=2525, extra_smtp="max_per_minute = 120")
    assert batch_size(config) == 120
    (tmp_path / "fast").mkdir()
    unlimited, _ = workspace(tmp_path / "fast", 1, port=2525)
    assert batch_size(unlimited) == PLAN_BATCH
    (tmp_path / "box").mkdir()
    maildir, _ = workspace(tmp_path / "box", 1, method="maildir", extra_smtp="max_per_minute = 120")
    assert batch_size(maildir) == PLAN_BATCH, "the SMTP rate limit does not slow a Maildir"


KILL_AND_EXIT = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from test_composer import SETTINGS, jobs, worker_pids
from digest.mail.composer import Composer
from digest.render import make_environment

for _ in range(6):  # a worker killed in the middle of writing its result is a matter of timing: try a few
    with Composer(make_environment(None), SETTINGS, workers=2) as composer:
        results = composer.compose(jobs(400))
        next(results)
        for pid in worker_pids(composer):
            os.kill(pid, signal.SIGKILL)
        assert len(list(results)) == 399
print("done")
"""


def test_a_sender_whose_workers_were_killed_still_exits() -> None:
    """A worker killed while writing its result used to leave the executor waiting for the rest of that message,
    and the interpreter waiting for the executor at exit: `digest send` finished its work and never ended."""
    import subprocess
    import sys

    tests = str(Path(__file__).resolve().parent)
    ran = subprocess.run(
        [sys.executable, "-c", KILL_AND_EXIT, tests], capture_output=True, text=True, timeout=60, cwd=tests
    )
    assert ran.returncode == 0 and ran.stdout.strip() == "done", ran.stderr[-2000:]
