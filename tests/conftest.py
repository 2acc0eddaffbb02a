"""Shared test fixtures. Real parts: a temporary SQLite file or a real PostgreSQL server (tests/postgres_server.py),
real files on disk, a fixed clock."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from postgres_server import PASSWORD_ENV, REQUIRE_ENV, PostgresServer, why_unavailable

from digest.config import Config, load_config
from digest.store import Engine, PostgresEngine, SQLiteEngine, Store
from digest.subscribers import SubscriberSet

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


ENGINES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole run; the postgres variants skip, saying why, when none can be started
    here (and fail instead when $DIGEST_REQUIRE_POSTGRES is set, as in CI)."""
    reason = why_unavailable()
    if reason:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"${REQUIRE_ENV} is set, but {reason}")
        pytest.skip(f"PostgreSQL variant: {reason}")
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


class StoreMaker:
    """Opens stores on one engine for one test. The same path is the same store (for SQLite that file; for
    PostgreSQL a database of the test's own, named after the path), so a test can reopen one or open several."""

    def __init__(self, engine: str, tmp_path: Path, server: PostgresServer | None) -> None:
        self.engine = engine
        self.tmp_path = tmp_path
        self.server = server
        self.databases: dict[Path, str] = {}

    def engine_at(self, path: Path, *, migrated: bool = True) -> Engine:
        if self.server is None:
            return SQLiteEngine(path)
        if path not in self.databases:
            self.databases[path] = self.server.new_database(migrated=migrated)
        return PostgresEngine(self.server.url(self.databases[path]), self.server.password)

    def __call__(self, path: Path | str | None = None, *, timeout: float = 30.0, migrated: bool = True) -> Store:
        """A store at `path` (default: digest.db in the test's folder). `migrated=False`: PostgreSQL starts from an
        empty database (a new SQLite file always does)."""
        where = Path(path) if path is not None else self.tmp_path / "digest.db"
        return Store(where, timeout=timeout, engine=self.engine_at(where, migrated=migrated))

    def url(self, path: Path) -> str | None:
        """The [database] url of the store at `path` (None for SQLite)."""
        if self.server is None:
            return None
        self.engine_at(path)
        return self.server.url(self.databases[path])

    def configure(self, config_file: Path, database: Path) -> None:
        """Point a config.toml at this engine: for PostgreSQL, a [database] section naming this test's database
        for `database` ([paths] database), with the password in $DIGEST_TEST_DB_PASSWORD."""
        url = self.url(database)
        if url is not None:
            with config_file.open("a", encoding="utf-8") as out:
                out.write(f'\n[database]\nurl = "{url}"\npassword_env = "{PASSWORD_ENV}"\n')

    def close(self) -> None:
        if self.server is not None:
            for name in self.databases.values():
                self.server.drop(name)


@pytest.fixture(params=ENGINES)
def make_store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StoreMaker]:
    """Opens stores on SQLite, then (a second run of the test) on PostgreSQL."""
    server: PostgresServer | None = None
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_server")
        monkeypatch.setenv(PASSWORD_ENV, server.password)
    maker = StoreMaker(request.param, tmp_path, server)
    try:
        yield maker
    finally:
        maker.close()


@pytest.fixture
def store(make_store: StoreMaker) -> Iterator[Store]:
    """A new store, on each engine in turn."""
    with make_store() as opened:
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


def profile_watch(folder: Path) -> tuple[Callable[[], object], Callable[[], SubscriberSet]]:
    """A daemon's profile callbacks (profiles_signature, load_profiles) for a one-host deployment: the folder,
    synced with a SQLite store beside it (digest.profile_book), as `digest run` does."""
    from digest.clock import utc_now
    from digest.profile_book import ProfileBook

    database = folder.parent / f"{folder.name}-profiles.db"

    def signature() -> object:
        with Store(database) as store:
            return ProfileBook(store, folder).signature()

    def load() -> SubscriberSet:
        with Store(database) as store:
            return ProfileBook(store, folder).load(utc_now())

    return signature, load
