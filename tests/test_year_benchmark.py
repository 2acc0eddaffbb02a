"""benchmarks/year.py keeps working: a few small days through the real ingest, preview, send and `run --once`, with
the real file's papers running out on day 2 so that recombined papers go through too. (Speed is measured by the
benchmark itself, never asserted in tests.)"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from types import ModuleType

import pytest
from benchmark_module import load_benchmark
from conftest import SHARED

from digest.paper import parse_arxiv_id, title_key

DATA = SHARED / "eval" / "arxiv-2012-2017.jsonl"


@pytest.fixture(scope="module")
def year() -> ModuleType:
    if not DATA.exists():
        pytest.skip(f"real papers not found at {DATA} (../shared/eval/ beside the repository)")
    return load_benchmark("year")


def table_rows(output: str, header: str) -> list[list[str]]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().replace(",", "") for cell in line.strip("|").split("|")])
    return rows


def test_a_small_run_prints_a_row_per_reported_day(
    year: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    workdir = tmp_path / "year"
    year.main(
        ["--days", "3", "--per-day", "40", "--subscribers", "5", "--real-papers", "60", "--big-day", "30"]
        + ["--workdir", str(workdir)]
    )
    output = capsys.readouterr().out
    rows = table_rows(output, "| day |")
    assert [row[0] for row in rows] == ["1", "3"]  # day 1, and the last day
    for row in rows:
        papers, db_mb, ingest, cold, warm, send, sent, run_once, rss, load = map(float, row[1:])
        assert min(db_mb, ingest, cold, warm, send, run_once, rss) > 0 and load >= 0
        assert papers == 40 * int(row[0]) and sent == 5  # every paper stored once; everyone due and served
    (big,) = table_rows(output, "| big day |")
    assert big[:3] == ["4", "30", "150"] and big[6] == "5"
    assert all(float(value) > 0 for value in big[3:-1]) and float(big[-1]) >= 0
    assert "60 real" in output and "90 recombined" in output
    assert re.search(r"total wall time: \d+\.\d s", output)
    assert not workdir.exists()  # cleaned up without --keep


def test_recombined_papers_are_new_papers(year: ModuleType) -> None:
    records = year.read_records(year.DATA, 50)
    papers = year.Papers(records, seed=2)
    made = papers.take(200, date(2027, 1, 1))
    assert papers.real == 50 and papers.recombined == 150 and papers.coinages > 0
    ids = [p["id"] for p in made]
    assert len(set(ids)) == 200 and ids[0] == "2701.00001"
    assert all(parse_arxiv_id(i) is not None for i in ids)
    assert len({title_key(p["title"]) for p in made}) == 200
    originals = {r.abstract for r in records}
    for paper in made[50:]:
        assert paper["title"] and len(paper["abstract"]) > 100 and paper["abstract"] not in originals
        assert paper["categories"] and paper["authors"]


def test_the_stream_is_reproducible(year: ModuleType) -> None:
    records = year.read_records(year.DATA, 30)
    first = year.Papers(records, seed=5).take(60, date(2027, 1, 1))
    second = year.Papers(records, seed=5).take(60, date(2027, 1, 1))
    assert first == second
