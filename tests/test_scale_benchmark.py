"""benchmarks/scale.py keeps working: a tiny run through the real pipeline reports every stage and delivers one
message per subscriber with picks. (Speed is measured by the benchmark itself, never asserted in tests.)"""

from __future__ import annotations

from types import ModuleType

import pytest
from benchmark_module import load_benchmark


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
