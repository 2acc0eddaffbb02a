"""One Store, two engines: the ledger, subscriber state and sign-ups behave the same on SQLite and on PostgreSQL
(every test taking `store` or `make_store` runs on both); both schemas have the same tables, columns and
indexes; and what only PostgreSQL has (a URL, a password from the environment, a server that can refuse) is said
in one line, like any other store error."""

from __future__ import annotations

import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli import digest
from conftest import StoreMaker
from postgres_server import PASSWORD_ENV, PostgresServer

from digest.config import load_config
from digest.errors import ConfigError, LedgerConflictError, StoreConflictError, StoreError, StoreValueError
from digest.paper import make_paper
from digest.store import PickRecord, PostgresEngine, SQLiteEngine, Store, open_store
from digest.store.engine import postgres_sql, redact_url
from digest.store.records import Signup, SignupLimits

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def papers(store: Store, count: int = 4) -> list[str]:
    store.add_papers([make_paper(title=f"Paper {n}", abstract="An abstract.") for n in range(count)], "s", T0)
    return [p.id or "" for p in store.all_papers()]


def begin(store: Store, subscriber: str, ids: list[str], message_id: str, **extra: object) -> int:
    return store.begin_message(
        subscriber,
        message_id,
        [PickRecord(i, 0.5, "why") for i in ids],
        channel="email",
        subject="s",
        candidates_until=T0,
        now=T0,
        **extra,  # type: ignore[arg-type]
    )


# ---- the ledger ---------------------------------------------------------------------------------------------


def test_the_ledger_refuses_a_paper_already_sending_or_sent_and_writes_nothing(store: Store) -> None:
    ids = papers(store)
    first = begin(store, "ada", ids[:2], "<1@x>")
    with pytest.raises(LedgerConflictError, match="already sent or being sent"):
        begin(store, "ada", ids[1:3], "<2@x>")
    assert [m.message_id for m in store.history("ada")] == ["<1@x>"]
    begin(store, "bob", ids[1:3], "<3@x>")  # another reader may get them
    store.finish_message(first, "failed", T0, "550 no")
    second = begin(store, "ada", ids[1:3], "<4@x>")  # failed: its papers are candidates again
    assert second > first
    store.finish_message(second, "sent", T0)
    assert store.sent_paper_ids("ada") == set(ids[1:3])
    assert store.last_sent_at("ada") == T0.isoformat(timespec="microseconds")


def test_hand_over_stuck_release_and_resolve(store: Store) -> None:
    ids = papers(store)
    handed = begin(store, "ada", ids[:1], "<h@x>")
    store.mark_handed_over(handed, T0)
    unhanded = begin(store, "bob", ids[:1], "<u@x>", record_attempt=True)
    assert store.last_attempt_at("bob") == T0
    assert [m.message_id for m in store.stuck_messages()] == ["<h@x>"]
    assert store.release_unhanded(T0) == ["<u@x>"]
    with pytest.raises(LedgerConflictError, match="settled by another sender"):
        store.mark_handed_over(unhanded, T0)
    assert store.resolve_stuck("ada", "sent", T0, "by hand") == ["<h@x>"]
    assert store.stuck_messages() == [] and store.sent_paper_ids("ada") == set(ids[:1])
    store.finish_message(unhanded, "sent", T0)  # it arrived after all: the ledger must say so
    assert store.history("bob")[0].state == "sent"


def test_a_message_id_used_twice_is_a_store_error_and_nothing_is_kept(store: Store) -> None:
    ids = papers(store)
    begin(store, "ada", ids[:1], "<same@x>")
    with pytest.raises(StoreConflictError, match="refused a row"):
        begin(store, "bob", ids[1:2], "<same@x>")
    assert store.history("bob") == [] and store.sent_paper_ids("bob") == set()


def test_a_value_the_database_cannot_hold_is_refused_and_nothing_is_kept(store: Store) -> None:
    ids = papers(store)
    # SQLite's driver refuses it before the database sees it; PostgreSQL's BIGINT refuses it.
    with pytest.raises((StoreValueError, OverflowError)):
        begin(store, "ada", ids[:1], "<big@x>", candidates_until_seq=2**70)
    assert store.history("ada") == []
    assert begin(store, "ada", ids[:1], "<ok@x>")  # the connection is usable afterwards


def test_windows_and_the_empty_window_take_the_larger_sequence_number(store: Store) -> None:
    ids = papers(store)
    assert store.last_window_seq("ada") is None
    store.record_attempt("ada", T0, empty_window_seq=3)
    store.record_attempt("ada", T0, empty_window_seq=2)  # never moves back
    assert store.last_window_seq("ada") == 3
    store.finish_message(begin(store, "ada", ids[:1], "<w@x>", candidates_until_seq=4), "sent", T0)
    assert store.last_window_seq("ada") == 4
    assert [p.id for p in store.papers_after_seq(2, 4)] == ids[2:4]


def test_a_second_connection_waits_for_the_writer_and_then_says_the_store_stayed_busy(
    make_store: StoreMaker,
) -> None:
    with make_store() as holder, make_store(timeout=0.5) as other:
        papers(holder, 1)
        with holder.transaction():
            holder.set_feedback  # noqa: B018 (the transaction alone holds the write lock)
            started = datetime.now(UTC)
            with pytest.raises(StoreError, match="stayed busy"):
                other.set_paused("ada", True, T0)
            assert datetime.now(UTC) - started >= timedelta(seconds=0.4)
        assert other.set_paused("ada", True, T0)  # once the writer is done


# ---- subscriber state ---------------------------------------------------------------------------------------


def test_pause_token_and_joined_at(store: Store) -> None:
    assert store.set_paused("ada", True, T0) and not store.set_paused("ada", True, T0)
    state = store.subscriber_state("ada")
    assert state.paused and state.paused_at == T0.isoformat(timespec="microseconds")
    token = store.token("ada")
    assert store.token("ada") == token and store.token("ada", rotate=True) != token
    assert store.joined_at("bob", T0) == T0
    assert store.joined_at("bob", T0 + timedelta(days=1)) == T0  # recorded once
    store.set_feedback("cy", "p", 1, T0)
    assert store.known_subscribers() == {"ada", "bob", "cy"}
    assert set(store.subscriber_tokens()) == {"ada"}
    assert store.set_paused("ada", False, T0) and store.subscriber_state("ada").paused_at is None


# ---- sign-ups -----------------------------------------------------------------------------------------------

LIMITS = SignupLimits(per_email=2, email_window=timedelta(days=1), per_client=3, client_window=timedelta(hours=1))


def signup(code: str, email: str = "ada@example.org", at: datetime = T0) -> Signup:
    return Signup(code_hash=code, email=email, profile="{}", created_at=at, expires_at=at + timedelta(hours=48))


def test_signups_are_limited_per_address_and_per_client_then_confirmed_once(store: Store) -> None:
    assert store.add_signup(signup("c1"), "ip-1", T0, LIMITS) is None
    assert store.add_signup(signup("c2", at=T0 + timedelta(minutes=1)), "ip-2", T0, LIMITS) is None
    wait = store.add_signup(signup("c3"), "ip-3", T0 + timedelta(minutes=2), LIMITS)
    assert wait == timedelta(days=1) - timedelta(minutes=2)  # until the first of the two leaves the window
    for n in range(3):
        store.add_signup(signup(f"d{n}", email=f"x{n}@example.org"), "ip-9", T0, LIMITS)
    assert store.signup_client_wait("ip-9", T0, LIMITS) == timedelta(hours=1)
    assert store.signup("c3") is None
    found = store.signup("c1")
    assert found is not None and found.email == "ada@example.org" and found.expires_at == T0 + timedelta(hours=48)
    assert store.confirm_signup("c1", "ada", T0) and not store.confirm_signup("c1", "ada", T0)
    confirmed = store.signup("c1")
    assert confirmed is not None and confirmed.subscriber == "ada" and confirmed.profile == "{}"
    later = T0 + timedelta(days=4)  # expired a day and more ago: purged with the next sign-up
    assert store.add_signup(signup("e1", email="new@example.org", at=later), "ip-1", later, LIMITS) is None
    assert store.signup("c2") is None and store.signup("c1") is not None  # a confirmed one is kept longer


# ---- the schema ---------------------------------------------------------------------------------------------


def _sqlite_shape(path: Path) -> tuple[dict[str, list[str]], set[str]]:
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        columns = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in tables}
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    return columns, indexes


def test_both_engines_make_the_same_tables_columns_and_indexes(postgres_server: PostgresServer, tmp_path: Path) -> None:
    Store(tmp_path / "d.db").close()
    columns, indexes = _sqlite_shape(tmp_path / "d.db")
    name = postgres_server.new_database(migrated=False)
    try:
        with Store(tmp_path / "p.db", engine=PostgresEngine(postgres_server.url(name), postgres_server.password)):
            pass
        import psycopg

        with psycopg.connect(postgres_server.url(name), password=postgres_server.password) as db:
            rows = db.execute(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
            ).fetchall()
            pg_indexes = {  # those made by CREATE INDEX, not those behind a PRIMARY KEY or UNIQUE constraint
                r[0]
                for r in db.execute(
                    "SELECT indexname FROM pg_indexes i WHERE schemaname = 'public'"
                    " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
                )
            }
    finally:
        postgres_server.drop(name)
    pg_columns: dict[str, list[str]] = {}
    for table, column in rows:
        pg_columns.setdefault(table, []).append(column)
    assert pg_columns.pop("schema_version") == ["version"]  # where PostgreSQL keeps PRAGMA user_version
    assert pg_columns == columns
    assert pg_indexes == indexes


# ---- PostgreSQL: the URL, the password, the server ------------------------------------------------------------


def test_postgres_spelling_of_placeholders_leaves_quoted_text_alone() -> None:
    assert postgres_sql("SELECT * FROM t WHERE a = ? AND b IN (?, ?)") == (
        "SELECT * FROM t WHERE a = %s AND b IN (%s, %s)"
    )
    assert postgres_sql("SELECT '?', 'it''s 100%' FROM t WHERE a LIKE ? || '%'") == (
        "SELECT '?', 'it''s 100%%' FROM t WHERE a LIKE %s || '%%'"
    )
    assert postgres_sql('SELECT "odd?name" FROM t') == 'SELECT "odd?name" FROM t'


def test_a_url_with_a_password_is_refused_and_never_repeated() -> None:
    with pytest.raises(StoreError) as caught:
        PostgresEngine("postgresql://digest:hunter2@db.example.org/digest")
    assert "hunter2" not in str(caught.value) and "password_env" in str(caught.value)
    assert redact_url("postgresql://a:b@h:5/d") == "postgresql://a:***@h:5/d"
    with pytest.raises(StoreError, match="not a postgresql:// URL"):
        PostgresEngine("mysql://digest@db.example.org/digest")


def test_without_psycopg_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now raises ImportError
    with pytest.raises(StoreError, match=r"psycopg is not installed; pip install 'paper-digest\[postgres\]'"):
        Store(tmp_path / "d.db", engine=PostgresEngine("postgresql://digest@127.0.0.1:1/digest"))


def test_without_a_database_url_the_store_is_the_sqlite_file(workspace: Path) -> None:
    config = load_config(workspace / "config.toml")
    with open_store(config) as store:
        assert store.engine == "sqlite" and store.where == str(config.paths.database)
    assert config.paths.database.exists()
    assert isinstance(store._engine, SQLiteEngine)


def test_the_password_comes_from_the_variable_password_env_names_at_use_time(
    postgres_server: PostgresServer, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = postgres_server.new_database()
    try:
        (workspace / "config.toml").open("a").write(
            f'\n[database]\nurl = "{postgres_server.url(name)}"\npassword_env = "{PASSWORD_ENV}"\n'
        )
        config = load_config(workspace / "config.toml")
        monkeypatch.delenv(PASSWORD_ENV, raising=False)
        with pytest.raises(ConfigError, match=f"names \\${PASSWORD_ENV}, which is not set"):
            open_store(config)
        monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
        with pytest.raises(StoreError, match="cannot connect to the database") as caught:
            open_store(config)
        assert "not-the-password" not in str(caught.value) and "check [database] url and password_env" in str(
            caught.value
        )
        monkeypatch.setenv(PASSWORD_ENV, postgres_server.password)
        with open_store(config) as store:
            assert store.engine == "postgresql" and store.where == postgres_server.url(name)
            assert store.count_papers() == 0
        assert not config.paths.database.exists()  # no SQLite file made beside it
    finally:
        postgres_server.drop(name)


def test_a_database_holding_other_tables_is_refused(postgres_server: PostgresServer, tmp_path: Path) -> None:
    name = postgres_server.new_database(migrated=False)
    try:
        import psycopg

        with psycopg.connect(postgres_server.url(name), password=postgres_server.password, autocommit=True) as db:
            db.execute("CREATE TABLE invoices (id INTEGER)")
        engine = PostgresEngine(postgres_server.url(name), postgres_server.password)
        with pytest.raises(StoreError, match=r"not a paper-digest database \(it has tables \['invoices'\]\)"):
            Store(tmp_path / "d.db", engine=engine)
    finally:
        postgres_server.drop(name)


def test_no_server_there_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    engine = PostgresEngine("postgresql://digest@127.0.0.1:1/digest")
    with pytest.raises(StoreError, match=r"^postgresql://digest@127.0.0.1:1/digest: cannot connect to the database"):
        Store(tmp_path / "d.db", engine=engine, timeout=2)


def test_the_commands_run_on_postgresql(make_store: StoreMaker, workspace: Path) -> None:
    """ingest, send and history through config.toml's [database] url: the commands never ask which engine."""
    make_store.configure(workspace / "config.toml", workspace / "var" / "digest.db")
    (workspace / "inbox" / "papers.json").write_text(
        '[{"title": "Graph networks for physical simulation", "abstract": "Graph neural networks simulate physics.",'
        ' "url": "https://arxiv.org/abs/2403.00001"}]',
        encoding="utf-8",
    )
    ingested = digest("ingest", "--json", cwd=workspace)
    assert ingested.returncode == 0, ingested.stderr
    sent = digest("send", "--all", "--json", cwd=workspace)
    assert sent.returncode == 0, sent.stderr
    history = digest("history", "--json", cwd=workspace)
    assert history.returncode == 0 and '"state": "sent"' in history.stdout
    with make_store(workspace / "var" / "digest.db") as store:
        assert store.count_papers() == 1 and store.history()
    assert (workspace / "var" / "digest.db").exists() == (make_store.engine == "sqlite")
