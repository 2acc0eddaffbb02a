"""digest/store, the papers and ingested-files part: schema, identity, merging, atomicity. Every test that takes
`store` or `make_store` runs on SQLite and on PostgreSQL (tests/conftest.py); the few that look at SQLite's own
files and query plans say so."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import StoreMaker

from digest.errors import StoreError
from digest.paper import Paper, make_paper
from digest.store import SCHEMA_VERSION, PickRecord, Store

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def paper(
    title: str = "A Study of Invented Things", abstract: str = "We study invented things.", **fields: object
) -> Paper:
    return make_paper(title=title, abstract=abstract, **fields)  # type: ignore[arg-type]


# ---- schema -----------------------------------------------------------------------------------------


def test_a_new_store_runs_every_migration(make_store: StoreMaker) -> None:
    with make_store(migrated=False) as store:
        assert store.schema_version == SCHEMA_VERSION >= 1
        tables = store._engine.tables(store._db)
    assert {"papers", "paper_sources", "ingested_files", "messages", "signups"} <= tables


def test_new_sqlite_store_is_versioned_and_in_wal_mode(tmp_path: Path) -> None:
    with Store(tmp_path / "d.db") as store:
        assert store.schema_version == SCHEMA_VERSION >= 1
    raw = sqlite3.connect(tmp_path / "d.db")
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"papers", "paper_sources", "ingested_files"} <= tables
    raw.close()


def test_reopening_keeps_the_data_and_does_not_migrate_again(make_store: StoreMaker) -> None:
    with make_store(migrated=False) as store:
        store.add_papers([paper()], "a.txt", T0)
    with make_store() as store:
        assert store.schema_version == SCHEMA_VERSION
        assert [p.title for p in store.list_papers()] == ["A Study of Invented Things"]


def test_store_from_a_newer_version_is_refused(make_store: StoreMaker) -> None:
    with make_store() as store, store.transaction() as db:
        store._engine.set_schema_version(db, SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="newer than this paper-digest"):
        make_store()


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d.db").write_bytes(b"this is a text file, not SQLite\n" * 100)
    with pytest.raises(StoreError, match="not a paper-digest database"):
        Store(tmp_path / "d.db")


def test_database_in_an_unwritable_place_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot open the database"):
        Store(tmp_path / "file" / "d.db")


# ---- identity -----------------------------------------------------------------------------------------


def test_outcomes_new_duplicate_updated(store: Store) -> None:
    assert store.add_papers([paper(arxiv="2403.01234v1")], "one", T0) == {"new": 1, "updated": 0, "duplicate": 0}
    assert store.add_papers([paper(arxiv="2403.01234v1")], "two", T0) == {"new": 0, "updated": 0, "duplicate": 1}
    changed = paper(abstract="We study invented things, at length, in version two.", arxiv="2403.01234v2")
    assert store.add_papers([changed], "three", T0) == {"new": 0, "updated": 1, "duplicate": 0}
    [stored] = store.list_papers()
    assert stored.id == "2403.01234"
    assert stored.arxiv_version == 2
    assert stored.abstract == "We study invented things, at length, in version two."
    assert stored.sources == ("one", "three", "two")


def test_a_later_version_updates_the_text_and_an_older_one_does_not_undo_it(store: Store) -> None:
    version_one = paper("Old Title", "A much longer first abstract than the second.", arxiv="2403.01234v1")
    store.add_papers([version_one], "a", T0)
    counts = store.add_papers([paper("New Title", "Short v2.", arxiv="2403.01234v2")], "b", T0)
    assert counts["updated"] == 1 and counts["new"] == 0
    counts = store.add_papers([version_one], "c", T0)
    assert counts == {"new": 0, "updated": 0, "duplicate": 1}
    [stored] = store.list_papers()
    assert (stored.title, stored.abstract, stored.arxiv_version) == ("New Title", "Short v2.", 2)
    assert store.find_paper("Old Title") is None  # the title key follows the stored title
    assert store.find_paper("https://arxiv.org/abs/2403.01234v1") == stored


def test_same_arxiv_id_with_and_without_version_is_one_paper(store: Store) -> None:
    store.add_papers([paper("Title One", arxiv="2403.01234v3")], "a", T0)
    store.add_papers([paper("Title One", url="https://arxiv.org/abs/2403.01234")], "b", T0)
    store.add_papers([paper("Title One", arxiv="hep-th/9901001v1")], "c", T0)
    store.add_papers([paper("Title One", arxiv="HEP-TH/9901001v2")], "d", T0)
    assert sorted(p.id or "" for p in store.list_papers()) == ["2403.01234", "hep-th/9901001"]


def test_doi_matches_when_there_is_no_arxiv_id(store: Store) -> None:
    store.add_papers([paper("Soil Moisture and Yield", doi="10.5555/JIS.1")], "journal", T0)
    store.add_papers([paper("Soil moisture & yield (extended)", doi="https://doi.org/10.5555/jis.1")], "blog", T0)
    [stored] = store.list_papers()
    assert stored.id == "doi:10.5555/jis.1"
    assert stored.sources == ("blog", "journal")


def test_normalised_title_matches_when_there_are_no_ids(store: Store) -> None:
    store.add_papers([paper("Schrödinger Bridges for Generative Modelling")], "a", T0)
    store.add_papers([paper('Schr\\"odinger bridges for generative modelling.')], "b", T0)
    store.add_papers([paper("SCHRODINGER  BRIDGES\nFOR GENERATIVE MODELLING")], "c", T0)
    assert store.count_papers() == 1
    assert store.list_papers()[0].sources == ("a", "b", "c")


def test_title_match_then_learns_the_arxiv_id(store: Store) -> None:
    """A digest gives only the title; a feed later gives the arXiv id: one paper, now findable by its id."""
    store.add_papers([paper("Counting Sheep")], "digest.txt", T0)
    counts = store.add_papers([paper("Counting Sheep", arxiv="2403.01234v1", categories=["cs.LG"])], "feed", T0)
    assert counts == {"new": 0, "updated": 1, "duplicate": 0}
    [stored] = store.list_papers()
    assert stored.arxiv_id == "2403.01234" and stored.categories == ("cs.LG",)
    assert stored.id == paper("Counting Sheep").stable_id()  # the id given at first sight is kept
    assert store.find_paper("2403.01234v5") == stored
    assert store.add_papers([paper("Counting Sheep", arxiv="2403.01234")], "api", T0)["new"] == 0


def test_same_title_with_different_ids_is_two_papers(store: Store) -> None:
    store.add_papers([paper("Introduction", arxiv="2403.00001")], "a", T0)
    store.add_papers([paper("Introduction", arxiv="2403.00002")], "a", T0)
    store.add_papers([paper("Editorial", doi="10.5555/one")], "b", T0)
    store.add_papers([paper("Editorial", doi="10.5555/two")], "b", T0)
    assert store.count_papers() == 4


def test_a_doi_already_held_by_another_paper_is_not_copied_onto_a_second(store: Store) -> None:
    """Row 1 has arXiv id A; row 2 (another title) has DOI D; a record with A and D must not crash the store."""
    store.add_papers([paper("First Title", arxiv="2403.00001")], "a", T0)
    store.add_papers([paper("Quite Another Title", doi="10.5555/d")], "b", T0)
    counts = store.add_papers([paper("First Title", arxiv="2403.00001", doi="10.5555/d")], "c", T0)
    assert counts["new"] == 0
    assert store.get_paper("2403.00001").doi is None  # type: ignore[union-attr]
    assert store.get_paper("doi:10.5555/d") is not None


def test_merge_is_independent_of_arrival_order(make_store: StoreMaker, tmp_path: Path) -> None:
    """Four records of one paper, every order: the same stored paper each time.

    Only the id may differ: it is fixed when the paper is first seen (the arXiv id, or a title hash when the
    first record had no id) and never changes, because feedback and sent digests refer to it.
    """
    records = [
        paper("Counting Sheep", "Short.", authors=["A. One"], published="2024-03-02"),
        paper(
            "Counting Sheep",
            "A longer abstract, from the feed.",
            arxiv="2403.01234v1",
            url="http://arxiv.org/abs/2403.01234v1",
            authors=["A. One", "B. Two"],
            categories=["cs.LG"],
            published="2024-03-01",
        ),
        paper(
            "Counting sheep!",
            "Version two, shorter.",
            arxiv="2403.01234v2",
            categories=["stat.ML", "cs.LG"],
            url="https://example.org/mirror/sheep",
        ),
        paper(
            "COUNTING SHEEP",
            "A different, even longer abstract from an old JSON list.",
            arxiv="2403.01234",
            authors=["C. Three"],
            doi="10.5555/sheep",
            url="https://arxiv.org/abs/2403.01234",
        ),
    ]
    results = set()
    for number, order in enumerate(itertools.permutations(records)):
        with make_store(tmp_path / f"{number}.db") as store:
            for index, record in enumerate(order):
                store.add_papers([record], f"source-{records.index(record)}", T0 + timedelta(seconds=index))
            [stored] = store.list_papers()
            assert stored.id in ("2403.01234", paper("Counting Sheep").stable_id())
            results.add(
                (
                    stored.arxiv_id,
                    stored.title,
                    stored.abstract,
                    stored.authors,
                    stored.categories,
                    stored.url,
                    stored.published,
                    stored.doi,
                    stored.arxiv_version,
                    stored.sources,
                )
            )
    assert len(results) == 1, results
    (result,) = results
    assert result[1:3] == ("Counting sheep!", "Version two, shorter.")  # the latest version's text
    assert result[5] == "https://arxiv.org/abs/2403.01234" and result[6] == "2024-03-01"


# ---- listing ------------------------------------------------------------------------------------------


def test_list_papers_newest_first_and_all_papers_oldest_first(store: Store) -> None:
    store.add_papers([paper("First"), paper("Second")], "a", T0)
    store.add_papers([paper("Third")], "b", T0 + timedelta(hours=1))
    assert [p.title for p in store.list_papers()] == ["Third", "Second", "First"]
    assert [p.title for p in store.list_papers(limit=2)] == ["Third", "Second"]
    assert [p.title for p in store.all_papers()] == ["First", "Second", "Third"]
    assert store.list_papers()[0].first_seen == "2026-11-20T10:00:00.000000+00:00"


def test_first_seen_does_not_move_when_a_paper_is_seen_again(store: Store) -> None:
    store.add_papers([paper(arxiv="2403.01234v1")], "a", T0)
    store.add_papers([paper(abstract="New text for v2.", arxiv="2403.01234v2")], "b", T0 + timedelta(days=3))
    assert store.list_papers()[0].first_seen == "2026-11-20T09:00:00.000000+00:00"


def test_naive_times_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.add_papers([paper()], "a", datetime(2026, 1, 1))


# ---- atomicity ----------------------------------------------------------------------------------------


def _papers_then_failure(count: int) -> Iterator[Paper]:
    for number in range(count):
        yield paper(f"Paper Number {number}", arxiv=f"2403.{number:05d}")
    raise RuntimeError("the reader failed half-way")


def test_add_papers_is_all_or_nothing(store: Store) -> None:
    store.add_papers([paper("Already There")], "before", T0)
    with pytest.raises(RuntimeError):
        store.add_papers(_papers_then_failure(5), "broken", T0)
    assert [p.title for p in store.list_papers()] == ["Already There"]
    assert store._db.execute("SELECT COUNT(*) FROM paper_sources").fetchone()[0] == 1
    # The connection is usable afterwards: no transaction left open.
    assert store.add_papers([paper("After")], "after", T0)["new"] == 1


class _FailingAfter(list[Paper]):
    """A list whose slices fail past `good` items, like a reader crashing mid-file."""

    def __init__(self, items: list[Paper], good: int) -> None:
        super().__init__(items)
        self.good = good

    def __getitem__(self, index: slice) -> list[Paper]:  # type: ignore[override]
        part = list.__getitem__(self, index)
        if index.stop is not None and index.stop > self.good:
            raise OSError("disk went away")
        return part


def test_a_chunk_is_all_or_nothing_and_a_rerun_finishes_the_file(store: Store) -> None:
    papers = [paper(f"Paper {n}", arxiv=f"2403.0000{n}") for n in range(1, 6)]
    with pytest.raises(OSError):
        store.ingest_file("hash-1", "file.xml", _FailingAfter(papers, good=2), T0, chunk=2)
    assert store.count_papers() == 2, "the first chunk was committed, the failing one left nothing"
    assert store.seen_file("hash-1") is None  # not remembered, so the next run reads it again
    counts = store.ingest_file("hash-1", "file.xml", papers, T0, chunk=2)
    assert counts == {"new": 3, "updated": 0, "duplicate": 2}
    assert store.count_papers() == 5 and store.seen_file("hash-1") is not None


def test_ingest_file_remembers_the_hash_only_when_asked(store: Store) -> None:
    counts = store.ingest_file("hash-1", "/inbox/a.xml", [paper("One")], T0)
    assert counts == {"new": 1, "updated": 0, "duplicate": 0}
    seen = store.seen_file("hash-1")
    assert seen is not None and (seen.source, seen.entries) == ("/inbox/a.xml", 1)
    store.ingest_file("hash-2", "/inbox/b.xml", [paper("Two")], T0, remember=False)
    assert store.seen_file("hash-2") is None
    assert store.count_papers() == 2


def test_a_second_connection_sees_only_committed_papers(make_store: StoreMaker) -> None:
    with make_store() as writer, make_store() as reader:
        writer.add_papers([paper("Committed")], "a", T0)
        assert reader.count_papers() == 1
        with pytest.raises(RuntimeError):
            writer.add_papers(_papers_then_failure(3), "b", T0)
        assert reader.count_papers() == 1


def test_an_arxiv_doi_finds_the_arxiv_paper(store: Store) -> None:
    store.add_papers([paper("Found by DOI", arxiv="2403.00042")], "s", T0)
    found = store.find_paper("https://doi.org/10.48550/arXiv.2403.00042")
    assert found is not None and found.arxiv_id == "2403.00042"


def test_ledger_and_window_queries_never_scan_a_growing_table(tmp_path: Path) -> None:
    """A year of 1,000 readers is millions of ledger rows: every query a send or a preview makes on them is
    answered from an index (checked with SQLite's own query plans of the statements the store runs; PostgreSQL
    has the same indexes, and its planner picks by statistics)."""
    store = Store(tmp_path / "d.db")
    store.add_papers([paper("Indexed", arxiv="2403.00077")], "s", T0)
    executed: list[str] = []
    store._db.set_trace_callback(executed.append)
    store.sent_paper_ids("reader")
    store.sent_among(["2403.00077", "2403.00078"])
    store.sent_among(["2403.00077"], "reader")
    store.last_window_seq("reader")
    store.papers_after_seq(0, 10)
    store.count_papers_after_seq(0, 10)  # the model cache: how far behind the fit is
    store.recent_papers(5, max_seq=10)  # the model cache: a refit's corpus
    store.file_hash_by_stat("/inbox/a.json", "1:2:3:4")  # ingest: an unchanged file skipped on its stat
    store.stuck_messages()
    store.stuck_messages("reader")
    store.history("reader", 5)
    store.history(None, 5)
    store.last_attempt_at("reader")
    store.release_unhanded(T0)
    store.begin_message(
        "reader",
        "<q@x>",
        [PickRecord("2403.00077", 0.5, "w")],
        channel="email",
        subject="s",
        candidates_until=T0,
        now=T0,
    )
    store._db.set_trace_callback(None)
    selects = {sql for sql in executed if sql.lstrip().upper().startswith("SELECT") and "sqlite_master" not in sql}
    assert len(selects) >= 8
    for sql in selects:
        plan = " | ".join(row[-1] for row in store._db.execute("EXPLAIN QUERY PLAN " + sql))
        for table in ("messages", "message_papers", "papers", "file_stats"):
            assert f"SCAN {table}" not in plan or "INDEX" in plan.split(f"SCAN {table}")[1].split("|")[0], (sql, plan)
    store.close()


def test_sent_among_names_the_papers_each_subscriber_has_in_flight_or_sent(store: Store) -> None:
    store.add_papers([paper(f"Paper {n}", arxiv=f"2403.0010{n}") for n in range(4)], "s", T0)

    def message(subscriber: str, ids: list[str]) -> int:
        picks = [PickRecord(i, 0.5, "w") for i in ids]
        return store.begin_message(
            subscriber, f"<{subscriber}{ids[0]}@x>", picks, channel="email", subject="s", candidates_until=T0, now=T0
        )

    store.finish_message(message("ada", ["2403.00100", "2403.00101"]), "sent", T0)
    message("ada", ["2403.00102"])  # still sending: not a candidate either
    store.finish_message(message("bob", ["2403.00101"]), "failed", T0)  # failed: a candidate again
    asked = ["2403.00100", "2403.00101", "2403.00102", "2403.00103"]
    assert store.sent_among(asked) == {"ada": {"2403.00100", "2403.00101", "2403.00102"}}
    assert store.sent_among(asked, "bob") == {}
    assert store.sent_among(["2403.00103"]) == {}
    assert store.sent_among(asked[:1], "ada") == {"ada": {"2403.00100"}}


def test_migrations_split_where_sqlite_says_a_statement_ends() -> None:
    from digest.store.schema import _MIGRATIONS, _statements

    script = "INSERT INTO t VALUES ('a;b');\nCREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END;\n"
    assert _statements(script) == [
        "INSERT INTO t VALUES ('a;b');",
        "CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END;",
    ]
    per_migration = [11, 1, 3, 7, 1, 1, 1, 1, 3, 4, 4, 1, 4, 8, 1]
    for engine in ("sqlite", "postgresql"):  # in both spellings
        assert [len(_statements(m.script(engine))) for m in _MIGRATIONS] == per_migration
    with pytest.raises(ValueError, match="incomplete statement"):
        _statements("CREATE TABLE broken (a TEXT")


def test_ratings_are_listed_latest_first_and_can_be_undone(make_store: StoreMaker) -> None:
    from datetime import UTC, datetime, timedelta

    from digest.paper import make_paper

    at = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    with make_store() as store:
        store.add_papers([make_paper(title=f"Paper {n}", abstract="An abstract.") for n in range(3)], "t", at)
        ids = [p.id or "" for p in store.list_papers()]
        store.set_feedback("ada", ids[0], 1, at)
        store.set_feedback("ada", ids[1], -1, at + timedelta(minutes=1))
        store.set_feedback("grace", ids[2], 1, at)
        assert [(p.id, rating) for p, rating, _ in store.ratings("ada")] == [(ids[1], -1), (ids[0], 1)]
        assert store.clear_feedback("ada", ids[1]) and not store.clear_feedback("ada", ids[1])
        assert store.feedback("ada") == {ids[0]: 1} and store.feedback("grace") == {ids[2]: 1}


def test_tokens_and_settings_keys_are_found_by_their_hash(store: Store) -> None:
    """Migration 14: a web request finds a reader by an index on the SHA-256 of what it presents."""
    tokens = {name: store.token(name) for name in ("ada", "grace")}
    assert store.subscriber_with_token(tokens["grace"]) == ("grace", tokens["grace"])
    assert store.subscriber_with_token(tokens["grace"] + "x") is None
    derived: list[str] = []

    def key(token: str) -> str:
        derived.append(token)
        return f"settings-of-{token}"

    assert store.fill_settings_hashes(key, "secret-1") == 2 and sorted(derived) == sorted(tokens.values())
    assert store.fill_settings_hashes(key, "secret-1") == 0 and len(derived) == 2  # made once
    assert store.subscriber_with_settings_key(f"settings-of-{tokens['ada']}") == ("ada", tokens["ada"])
    rotated = store.token("ada", rotate=True)
    assert store.subscriber_with_token(tokens["ada"]) is None
    assert store.subscriber_with_settings_key(f"settings-of-{tokens['ada']}") is None  # went with the old token
    assert store.fill_settings_hashes(key, "secret-1") == 1 and derived[-1] == rotated
    assert store.subscriber_with_settings_key(f"settings-of-{rotated}") == ("ada", rotated)
    assert store.fill_settings_hashes(key, "secret-2") == 2  # another secret: every key made again


def test_migration_14_hashes_the_tokens_already_issued(make_store: StoreMaker, monkeypatch: pytest.MonkeyPatch) -> None:
    import digest.store.core as core

    monkeypatch.setattr(core, "SCHEMA_VERSION", 13)  # a store as the release before left it
    with make_store(migrated=False) as store:
        assert store.schema_version == 13
        with store.transaction() as db:
            db.execute("INSERT INTO subscriber_state (subscriber, token) VALUES ('ada', 'tok-ada'), ('bob', NULL)")
    monkeypatch.undo()
    with make_store() as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.subscriber_with_token("tok-ada") == ("ada", "tok-ada")
        assert store.token("ada") == "tok-ada" and store.subscriber_with_token("tok-bob") is None
