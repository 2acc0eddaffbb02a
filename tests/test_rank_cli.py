"""`digest rank`, `digest feedback` and `digest subscribers` through the real CLI, on a real workspace."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from conftest import DEMO_DATA

from digest.cli import main
from digest.store import Store


def run(workspace: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--config", str(workspace / "config.toml"), *args])
    return result.exit_code, result.stdout, result.stderr


def ingested(workspace: Path) -> Path:
    code, _, err = run(workspace, "ingest", str(DEMO_DATA / "inbox"))
    assert code == 0, err
    return workspace


def test_rank_prints_picks_with_why_and_writes_nothing(workspace: Path) -> None:
    ingested(workspace)
    database = workspace / "var" / "digest.db"
    before = database.read_bytes()
    code, out, err = run(workspace, "rank", "ada", "--json")
    assert code == 0, err
    picks = json.loads(out)
    assert picks and set(picks[0]) == {"id", "title", "score", "why"}
    assert all(0 < p["score"] <= 1 and p["why"] for p in picks)
    assert database.read_bytes() == before
    code, out, _ = run(workspace, "rank", "ada")
    assert code == 0 and picks[0]["title"] in out


def test_feedback_changes_the_next_ranking(workspace: Path) -> None:
    ingested(workspace)
    code, out, err = run(workspace, "rank", "grace", "--json")
    assert code == 0, err
    top = json.loads(out)[0]
    code, out, err = run(workspace, "feedback", "grace", top["title"], "--dislike")
    assert code == 0, err
    assert top["id"] in out
    with Store(workspace / "var" / "digest.db") as store:
        assert store.feedback("grace") == {top["id"]: -1}
    code, out, _ = run(workspace, "rank", "grace", "--json")
    assert top["id"] not in [p["id"] for p in json.loads(out)]


def test_unknown_paper_or_subscriber_is_one_line(workspace: Path) -> None:
    ingested(workspace)
    code, _, err = run(workspace, "feedback", "ada", "no such paper", "--like")
    assert code == 1 and err.count("\n") == 1 and "no paper 'no such paper'" in err
    code, _, err = run(workspace, "rank", "nobody")
    assert code == 1 and err.startswith("error: no subscriber 'nobody'") and err.count("\n") == 1
    code, _, err = run(workspace, "feedback", "ada", "x")
    assert code == 2 and "--like" in err


def test_subscribers_lists_state(workspace: Path) -> None:
    (workspace / "subscribers" / "broken.toml").write_text('name = "B"\n', encoding="utf-8")
    code, out, err = run(workspace, "subscribers", "--json")
    assert code == 1 and "broken.toml: email is required" in err
    rows = {row["id"]: row for row in json.loads(out)}
    assert set(rows) == {"ada", "alan", "grace"}
    assert rows["ada"]["paused"] is False and rows["ada"]["papers_sent"] == 0 and rows["ada"]["next_due"]
    code, out, _ = run(workspace, "subscribers")
    assert "ada\tAda Example <ada@example.org>" in out
