"""One parametrised test runs every feed and JSON fixture: adding a case is adding a file.

Feed fixtures (tests/fixtures/feeds/*) say what they test in a leading XML/HTML comment:

    <!--
    Description: what quirk this file exercises.
    Expect: {JSON object, see below}
    -->

JSON fixtures (tests/fixtures/json/NAME.json) cannot hold comments, so their expectation lives in a
sibling NAME.expect.json with the same keys plus "description".

Expectation keys:
    count        number of papers the parse must yield
    problems     number of per-entry problems, or a list of substrings, one per problem, in order
    papers       list (in file order) of partial papers: only the keys given are compared
    not_in_text  strings that must appear in no title or abstract (e.g. script content)
    error        the file must be refused: list of substrings of the one-line error
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from digest.errors import IngestError
from digest.ingest import ingest_sources, parse_document
from digest.paper import Paper
from digest.store import Store

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FEEDS = FIXTURES / "feeds"
JSONS = FIXTURES / "json"
PAPER_FIELDS = {
    "title",
    "abstract",
    "authors",
    "url",
    "arxiv_id",
    "arxiv_version",
    "doi",
    "categories",
    "published",
    "links",
}
EXPECT_KEYS = {"description", "count", "problems", "papers", "not_in_text", "error"}
_EXPECT_COMMENT = re.compile(rb"<!--\s*Description:(?P<description>.*?)\nExpect:(?P<expect>.*?)-->", re.S)


def _feed_cases() -> list[Path]:
    return sorted(p for p in FEEDS.iterdir() if p.is_file())


def _json_cases() -> list[Path]:
    return sorted(p for p in JSONS.glob("*.json") if not p.name.endswith(".expect.json"))


def _comment_text(raw: bytes) -> str:
    """Comments are UTF-8 (or plain ASCII with JSON \\u escapes, which also suits Latin-1 files)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def load_expectation(path: Path) -> dict[str, Any]:
    """The expectation of one fixture: from its comment (feeds) or its .expect.json sidecar (JSON)."""
    if path.parent == JSONS:
        sidecar = path.with_name(path.name.removesuffix(".json") + ".expect.json")
        assert sidecar.is_file(), f"{path.name} has no {sidecar.name} saying what it tests and expects"
        expect: dict[str, Any] = json.loads(sidecar.read_text(encoding="utf-8"))
    else:
        match = _EXPECT_COMMENT.search(path.read_bytes()[:4000])
        assert match, f"{path.name} must start with a <!-- Description: ... Expect: {{...}} --> comment"
        expect = json.loads(_comment_text(match.group("expect")))
        expect["description"] = _comment_text(match.group("description")).strip()
    assert set(expect) <= EXPECT_KEYS, f"{path.name}: unknown expectation keys {set(expect) - EXPECT_KEYS}"
    assert expect.get("description", "").strip(), f"{path.name}: say what the fixture tests"
    assert ("error" in expect) != ("count" in expect), f"{path.name}: expect either an error or a count"
    return expect


def _check_paper(name: str, index: int, paper: Paper, wanted: dict[str, Any]) -> None:
    unknown = set(wanted) - PAPER_FIELDS
    assert not unknown, f"{name}: paper {index}: unknown fields {unknown}"
    for key, value in wanted.items():
        actual = getattr(paper, key)
        if isinstance(actual, tuple):
            actual = list(actual)
        assert actual == value, f"{name}: paper {index}: {key} is {actual!r}, expected {value!r}"


@pytest.mark.parametrize("path", _feed_cases() + _json_cases(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture(path: Path) -> None:
    expect = load_expectation(path)
    data = path.read_bytes()
    if "error" in expect:
        with pytest.raises(IngestError) as caught:
            parse_document(data, path.name)
        message = str(caught.value)
        assert message.startswith(path.name), f"the error must name the file: {message!r}"
        assert "\n" not in message, "an error is one line"
        for part in expect["error"]:
            assert part in message, f"{path.name}: error {message!r} lacks {part!r}"
        return

    papers, problems = parse_document(data, path.name)
    assert len(papers) == expect["count"], [p.title for p in papers]
    wanted_problems = expect.get("problems", 0)
    if isinstance(wanted_problems, int):
        assert len(problems) == wanted_problems, problems
    else:
        assert len(problems) == len(wanted_problems), problems
        for problem, part in zip(problems, wanted_problems, strict=True):
            assert problem.startswith(path.name), f"a problem must name the file: {problem!r}"
            assert part in problem, f"{problem!r} lacks {part!r}"
    wanted_papers = expect.get("papers", [])
    assert len(wanted_papers) <= len(papers)
    for index, (paper, wanted) in enumerate(zip(papers, wanted_papers, strict=False), start=1):
        _check_paper(path.name, index, paper, wanted)
    for paper in papers:
        for text in (paper.title, paper.abstract):
            assert text == text.strip() and "\n" not in text and "\r" not in text and "  " not in text
            for banned in expect.get("not_in_text", []):
                assert banned not in text, f"{banned!r} survived in {text!r}"


@pytest.mark.parametrize(
    "path",
    [p for p in _feed_cases() + _json_cases() if "error" not in load_expectation(p)],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_fixture_ingests_end_to_end(path: Path, store: Store) -> None:
    """Through ingest_sources: the parsed papers land in the store, problems are the only rejections."""
    expect = load_expectation(path)
    report = ingest_sources(store, [str(path)], max_bytes=10_000_000)
    wanted_problems = expect.get("problems", 0)
    assert len(report.rejected) == (wanted_problems if isinstance(wanted_problems, int) else len(wanted_problems))
    assert all(r.path == str(path) for r in report.rejected)
    assert report.files == 1
    assert report.new == store.count_papers() == expect["count"]
    stored_titles = {p.title for p in store.list_papers()}
    assert {w["title"] for w in expect.get("papers", []) if "title" in w} <= stored_titles


def test_every_fixture_folder_has_cases() -> None:
    """A renamed folder must not silently turn the parametrised tests into zero tests."""
    assert len(_feed_cases()) >= 10
    assert len(_json_cases()) >= 8
    orphans = [
        p.name for p in JSONS.glob("*.expect.json") if not p.with_name(p.name.replace(".expect.json", ".json")).exists()
    ]
    assert not orphans, f"expectations without a fixture: {orphans}"
