"""Shared test fixtures. Real parts: a temporary SQLite file, real files on disk, a fixed clock."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.config import Config, load_config
from digest.store import Store

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SHARED_DIGESTS = SHARED / "digests"
SHARED_EVAL = SHARED / "eval" / "papers.jsonl"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEMO_DATA = REPO / "digest" / "demo_data"

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """Every test runs at NOW: commands in-process and in subprocesses (which inherit the environment) read
    DIGEST_NOW, so no test depends on the day it runs. A test that needs another instant sets it itself."""
    monkeypatch.setenv("DIGEST_NOW", NOW.isoformat())
    return NOW


@pytest.fixture(autouse=True)
def embeddings_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sentence embeddings are off unless a test turns them on (tests/test_semantic.py): the other tests' picks and
    golden files must not depend on whether the [semantic] extra is installed, and embedding costs time."""
    monkeypatch.setenv("DIGEST_EMBEDDINGS", "off")


@pytest.fixture(autouse=True)
def enrich_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """No arXiv lookups unless a test turns them on (tests/test_enrich.py, against a local server): no test may
    reach the network, and every ingest would otherwise try to."""
    monkeypatch.setenv("DIGEST_ENRICH", "off")


def shared_digests() -> list[Path]:
    """The five real digest files; skips the calling test when ../shared/ is absent."""
    files = sorted(SHARED_DIGESTS.glob("*.txt")) if SHARED_DIGESTS.is_dir() else []
    if not files:
        pytest.skip(f"real digests not found at {SHARED_DIGESTS} (../shared/ beside the repository)")
    return files


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "digest.db") as opened:
        yield opened


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace with a config.toml, the demo subscribers and an empty inbox."""
    (tmp_path / "inbox").mkdir()
    shutil.copytree(DEMO_DATA / "subscribers", tmp_path / "subscribers")
    (tmp_path / "templates").mkdir()
    (tmp_path / "config.toml").write_text(
        '[paths]\ninbox = "inbox"\nsubscribers = "subscribers"\ntemplates = "templates"\n'
        'database = "var/digest.db"\nfeeds = "var/feeds"\n'
        '[delivery]\nmethod = "maildir"\nmaildir = "var/maildir"\n',
        encoding="utf-8",
    )
    return tmp_path


@pytest.fixture
def config(workspace: Path) -> Config:
    return load_config(workspace / "config.toml")
