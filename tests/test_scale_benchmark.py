"""benchmarks/scale.py keeps working: a tiny run through the real pipeline reports every stage and delivers one
message per subscriber with picks. (Speed is measured by the benchmark itself, never asserted in tests.)"""

from __future__ import annotations

from types import ModuleType

import pytest
from benchmark_module import load_benchmark
from postgres_server import PASSWORD_ENV, PostgresServer


@pytest.fixture(scope="module")
def scale() -> ModuleType:
    return load_benchmark("scale")


@pytest.mark.parametrize("smtp", [False, True], ids=["maildir", "smtp"])
def test_a_small_run_reports_every_stage(scale: ModuleType, smtp: bool) -> None:
    result = scale.run(40, 60, smtp=smtp, seed=1, baseline_sample=2)
    assert set(result["stages"]) == set(scale.STAGES)
    assert result["sent"] + result["skipped"] == 40 and result["sent"] > 30
    assert result["delivered"] == result["sent"]
    assert result["seconds"] > 0 and result["peak_rss_mb"] > 0
    assert result["baseline_seconds_per_subscriber"] > 0
    assert {
        "subscribers",
        "papers",
        "seconds",
        "emails_per_second",
        "peak_rss_mb",
        "stages",
        "baseline_seconds_per_subscriber",
    } <= set(result)


def test_synthetic_papers_are_reproducible(scale: ModuleType) -> None:
    import random

    assert scale.synthetic_papers(5, random.Random(3)) == scale.synthetic_papers(5, random.Random(3))


def test_a_small_run_on_postgresql_with_two_senders_serves_each_subscriber_once(
    scale: ModuleType, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--database with --senders 2: two `digest send --all` processes on one PostgreSQL database (skipped without
    a server, failing instead under $DIGEST_REQUIRE_POSTGRES: the postgres_server fixture)."""
    monkeypatch.setenv(PASSWORD_ENV, postgres_server.password)
    subscribers = 30
    result = scale.run(
        subscribers,
        40,
        smtp=False,
        seed=1,
        baseline_sample=0,
        workers=0,
        database=(postgres_server.url("postgres"), PASSWORD_ENV),
        senders=2,
    )
    assert result["database"] == "postgresql" and result["senders"] == 2
    assert len(result["shares"]) == 2 and sum(result["shares"]) == result["sent"] > 20
    assert sum(result["settled"]) == subscribers, "every subscriber settled by exactly one sender"
    assert result["sent"] + result["skipped"] == subscribers
    assert result["sent_once"] and result["recipients_once"] and result["delivered"] == result["sent"]
    assert postgres_server.admin("SELECT count(*) FROM pg_database WHERE datname LIKE 'digest_scale_%'") == [(0,)]
