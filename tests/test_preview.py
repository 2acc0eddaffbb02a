"""`digest preview`: exactly the next send's email, in every format, writing nothing to the database."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import sqlite3
import webbrowser
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import NOW

from digest.cli import main
from digest.config import Config
from digest.service import ingest, send
from digest.store import Store

DEMO_INBOX = Path(__file__).resolve().parent.parent / "digest" / "demo_data" / "inbox"


def run(config: Config, *args: str) -> Result:
    config_path = config.paths.subscribers.parent / "config.toml"
    return CliRunner().invoke(main, ["--config", str(config_path), "preview", *args], catch_exceptions=False)


def ingest_demo(config: Config) -> None:
    # The command runs at DIGEST_NOW (conftest.NOW): the papers arrive an hour before it.
    ingested_at = NOW - timedelta(hours=1)
    with Store(config.paths.database) as store:
        report = ingest(store, config, [str(DEMO_INBOX)], clock=lambda: ingested_at)
        assert not report.rejected


def snapshot(database: Path) -> tuple[str, list[str]]:
    """The database file's hash and its full SQL dump: a preview must change neither."""
    with sqlite3.connect(database) as db:
        dump = list(db.iterdump())
    return hashlib.sha256(database.read_bytes()).hexdigest(), dump


@pytest.fixture
def demo(config: Config) -> Config:
    ingest_demo(config)
    return config


def test_json_lists_the_same_papers_the_next_send_would_send(demo: Config) -> None:
    result = run(demo, "ada", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["subscriber"] == "ada" and data["subject"].startswith("Papers for ")
    assert data["papers"] and set(data["papers"][0]) == {"id", "title", "url", "score", "why", "link"}
    assert "reason" not in data
    report = send(demo, selection="named", names=["ada"], dry_run=True)
    assert [p["id"] for p in data["papers"]] == list(report.sent[0].papers)


def test_the_default_format_is_the_subscribers_own(demo: Config) -> None:
    html = run(demo, "ada")  # format = "html"
    assert html.exit_code == 0 and html.stdout.startswith("<!DOCTYPE html>")
    markdown = run(demo, "grace")  # format = "markdown"
    assert markdown.exit_code == 0 and markdown.stdout.startswith("# Your papers for ")


def test_markdown_renders_the_markdown_template_even_for_an_html_subscriber(demo: Config) -> None:
    result = run(demo, "ada", "--format", "markdown")
    assert result.exit_code == 0
    assert result.stdout.startswith("# Your papers for ") and "\n## 1. [" in result.stdout


def test_eml_is_the_whole_message_and_its_parts_match_the_other_formats(demo: Config) -> None:
    result = run(demo, "ada", "--format", "eml")
    assert result.exit_code == 0
    message = email.message_from_bytes(result.stdout_bytes, policy=email.policy.default)
    assert message["To"] == "Ada Example <ada@example.org>"
    assert message["Subject"] == json.loads(run(demo, "ada", "--format", "json").stdout)["subject"]
    assert message["List-Unsubscribe"] and message["Message-ID"] and message["X-Digest-Papers"]
    plain, html = [part for part in message.iter_parts()]
    assert plain.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    # The SMTP policy turns every line ending into CRLF; the content is otherwise the same.
    assert plain.get_content().replace("\r\n", "\n") == run(demo, "ada", "--format", "text").stdout
    assert html.get_content().replace("\r\n", "\n") == run(demo, "ada", "--format", "html").stdout


@pytest.mark.parametrize("fmt", ["html", "markdown", "text", "json", "eml"])
def test_a_preview_writes_nothing_to_the_database(demo: Config, fmt: str) -> None:
    before = snapshot(demo.paths.database)
    result = run(demo, "ada", "--format", fmt)
    assert result.exit_code == 0 and result.stdout_bytes
    after = snapshot(demo.paths.database)
    assert after[1] == before[1], "a preview added or changed rows"
    assert after[0] == before[0], "a preview changed the database file"
    assert not send(demo, selection="named", names=["ada"], dry_run=True).skipped  # still due: nothing recorded


def test_output_file_gets_the_output_and_stdout_stays_empty(demo: Config, tmp_path: Path) -> None:
    target = tmp_path / "out" / "ada.eml"
    result = run(demo, "ada", "--format", "eml", "-o", str(target))
    assert result.exit_code == 0 and result.stdout == ""
    assert target.read_bytes().startswith(b"From: ") or b"\r\nSubject: " in target.read_bytes()
    assert [p.name for p in target.parent.iterdir()] == ["ada.eml"]  # no temp file left behind


def test_the_output_file_name_chooses_the_format_unless_one_is_given(demo: Config, tmp_path: Path) -> None:
    """grace reads Markdown: out.html still gets HTML, out.md Markdown; an explicit --format wins."""
    for name, starts in (("grace.html", b"<!"), ("grace.md", b"# "), ("grace.json", b"{")):
        result = run(demo, "grace", "-o", str(tmp_path / name))
        assert result.exit_code == 0, result.output
        assert (tmp_path / name).read_bytes().lstrip().startswith(starts), name
    assert run(demo, "grace", "--format", "markdown", "-o", str(tmp_path / "forced.html")).exit_code == 0
    assert (tmp_path / "forced.html").read_bytes().startswith(b"# ")


def test_nothing_to_send_says_why_on_stderr_and_exits_0(config: Config) -> None:
    result = run(config, "ada")  # nothing ingested
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "nothing to send to ada: no new papers since the last digest" in result.stderr


def test_nothing_to_send_in_json_has_no_papers_and_a_reason(config: Config) -> None:
    result = run(config, "ada", "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "subscriber": "ada",
        "subject": None,
        "papers": [],
        "reason": "no new papers since the last digest",
    }


def test_nothing_above_min_score_is_the_reason_given(demo: Config) -> None:
    profile = demo.paths.subscribers / "ada.toml"
    profile.write_text(
        profile.read_text(encoding="utf-8").replace("min_score = 0.05", "min_score = 1.0"), encoding="utf-8"
    )
    result = run(demo, "ada", "--format", "json")
    assert result.exit_code == 0
    assert "scored above min_score 1" in json.loads(result.stdout)["reason"]
    assert "scored above min_score 1" in result.stderr


def test_open_writes_the_html_to_a_temp_file_and_opens_it(demo: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    result = run(demo, "ada", "--open", "--format", "text")
    assert result.exit_code == 0 and result.stdout == ""
    assert len(opened) == 1 and opened[0].startswith("file://")
    path = Path(opened[0].removeprefix("file://"))
    try:
        data = path.read_bytes()
        assert data.startswith(b"\xef\xbb\xbf<!DOCTYPE html>")
        assert data[3:].decode("utf-8") == run(demo, "ada", "--format", "html").stdout
    finally:
        path.unlink()


def test_an_unknown_subscriber_is_one_line_and_exit_1(demo: Config) -> None:
    result = run(demo, "nobody")
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "no subscriber 'nobody'" in result.stderr


def test_a_broken_user_template_is_one_line_naming_the_file(demo: Config) -> None:
    broken = demo.paths.templates / "email.html.j2"
    broken.write_text("<p>\n{{ papers[0].nope }}\n</p>\n", encoding="utf-8")
    result = run(demo, "ada")
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    assert f"{broken}:2: UndefinedError" in result.stderr
