"""What a daily-papers text carries wrongly, repaired at ingest: LaTeX leftovers, glued sentences; and the
digest's own date kept as each paper's date."""

from __future__ import annotations

import re
from datetime import date

import pytest
from conftest import shared_digests

from digest.ingest.daily import digest_date, parse_daily
from digest.ingest.text import repair_prose
from digest.paper import URL_RE, find_links


@pytest.mark.parametrize(
    ("raw", "repaired"),
    [
        # \href{url}{url} and \href{url}{text} with the command dropped upstream
        ("Code: https://github.com/lab/SVDD{https://github.com/lab/SVDD}.", "Code: https://github.com/lab/SVDD."),
        (
            "at https://github.com/lab/flan_nas{https://github.com/lab/flan\\_nas}.",
            "at https://github.com/lab/flan_nas.",
        ),
        ("see our https://lab.github.io/draw/{project page}. More", "see our https://lab.github.io/draw/. More"),
        ("in https://x.org/r/README.md{here.} Next", "in https://x.org/r/README.md. Next"),
        ("needs {\\em labeled} data and \\emph{UPop} and \\texttt{Avg-K}", "needs labeled data and UPop and Avg-K"),
        ("a Pok{\\'e}mon set, Schr\\\"odinger", "a Pokémon set, Schrödinger"),
        ("user instructions.Although it", "user instructions. Although it"),
        ("in real-time.Experimental results", "in real-time. Experimental results"),
        # left alone: mathematics, sets, file names, URLs, abbreviations
        ("W_{ij} u + O(d^{k}) and 600k {architecture, accuracy} pairs", None),
        ("see README.md and https://a.org/docs.Index and e.g.Foo and U.S.A.", None),
        ("The end. The next", None),
    ],
)
def test_repair_prose(raw: str, repaired: str | None) -> None:
    assert repair_prose(raw) == (raw if repaired is None else repaired)


def test_a_repaired_code_link_is_a_link() -> None:
    text = repair_prose("Code is available at https://github.com/masa/SVDD{https://github.com/masa/SVDD}.")
    assert find_links(text) == ["https://github.com/masa/SVDD"]
    # Even unrepaired, a brace ends a URL: it is not a character a link can hold.
    assert URL_RE.findall("https://github.com/a/b{x}") == ["https://github.com/a/b"]


@pytest.mark.parametrize(
    ("line", "today", "expected"),
    [
        ("Mar 14", date(2026, 11, 30), date(2026, 3, 14)),
        ("Dec 31", date(2027, 1, 2), date(2026, 12, 31)),  # the latest such day not after today
        ("Jan 2", date(2027, 1, 2), date(2027, 1, 2)),
        ("Feb 29", date(2029, 3, 1), date(2028, 2, 29)),  # a leap day: the last year that had one
        ("March 14, 2024", date(2026, 11, 30), date(2024, 3, 14)),
        ("Feb 30", date(2026, 11, 30), None),
        ("Mar 14", None, None),
    ],
)
def test_digest_date(line: str, today: date | None, expected: date | None) -> None:
    assert digest_date(line, today) == expected


def test_the_daily_header_date_becomes_each_papers_date() -> None:
    text = "new\n\nDaily Papers\n\nMar 14\n\nA Title About Graphs\n\n" + "We study graphs in depth. " * 5 + "\n"
    papers, problems = parse_daily(text, date(2026, 11, 30))
    assert not problems and [p.published for p in papers] == ["2026-03-14"]
    assert parse_daily(text)[0][0].published is None  # no today: no year to give it


def test_the_real_digests_come_out_clean() -> None:
    glued = re.compile(r"(?<![\w./:@])[a-z]{3,}\.[A-Z][a-z]+")
    dated = 0
    for path in shared_digests():
        papers, _ = parse_daily(path.read_text(encoding="utf-8"), date(2026, 11, 30))
        dated += sum(1 for p in papers if p.published)
        for paper in papers:
            words = [w for w in paper.abstract.split() if "://" not in w and "/" not in w]
            assert not any(glued.search(w) for w in words), paper.title
            assert not re.search(r"https?://\S*\{", paper.abstract), paper.title
            assert all("{" not in link and "}" not in link for link in paper.links), paper.links
    assert dated > 0
