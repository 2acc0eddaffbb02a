"""The paper store: the only module that speaks SQL (schema in digest.store.schema, records in
digest.store.records, the merge policy for a paper seen again in digest.store.merge).

One Store for both engines (digest.store.engine: SQLite, the default, or PostgreSQL): its SQL is written once, in
what both accept, with `?` placeholders; the engine supplies the connection, the write transaction and the few
spellings that differ. Every write that must be atomic is one transaction. Times are ISO-8601 strings in UTC so
that they sort as text.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from digest import trace
from digest.errors import LedgerConflictError, StoreConflictError, StoreError
from digest.paper import Paper, arxiv_id_from_doi, normalise_doi, parse_arxiv_id, title_key
from digest.store.engine import SCHEDULER_LOCK, Connection, Engine, Row, SQLiteEngine
from digest.store.merge import _merge, _paper_columns
from digest.store.records import (
    ABSENT,
    ArxivMatch,
    Message,
    MessageState,
    Outcome,
    PickRecord,
    ProfileChange,
    ProfileRecord,
    ProfileVersion,
    Signup,
    SignupLimits,
    StoredFile,
    SubscriberState,
    credential_hash,
    parse_iso,
    utc_iso,
)
from digest.store.schema import _MIGRATIONS, SCHEMA_VERSION, _statements

log = logging.getLogger(__name__)
SETTINGS_HASHES_OF = "settings-hashes-of"  # which secret the stored settings hashes were made with (a fingerprint)


def _hash_tokens(db: Connection) -> None:
    """Migration 14's data step: the SHA-256 of every token issued before tokens were hashed."""
    rows = db.execute("SELECT subscriber, token FROM subscriber_state WHERE token IS NOT NULL").fetchall()
    db.executemany(
        "UPDATE subscriber_state SET token_hash = ? WHERE subscriber = ?",
        [(credential_hash(token), subscriber) for subscriber, token in rows],
    )


BACKFILLS: dict[str, Callable[[Connection], None]] = {"hash_tokens": _hash_tokens}
# Papers per transaction in a big ingest: other writers (a send's ledger, an unsubscribe) wait at most about
# this long, and a killed ingest keeps what it committed (the file is read again; those papers are duplicates).
INGEST_CHUNK = 2000


class Store:
    """A connection to the paper store. Use as a context manager, or call close().

    `path`: the SQLite file (and, whatever the engine, where the files kept beside the database go: the model
    cache, the web app's secret, the pending unsubscribes, the send lock). `engine`: another database (a
    PostgreSQL server, digest.store.engine); digest.store.open_store picks it from config.toml.

    A new store is created only where no database exists. An existing one that is empty (a 0-byte file) or holds
    some other program's tables is refused: quietly starting over would forget what was sent, and send it again.
    """

    def __init__(self, path: Path | str, *, timeout: float = 30.0, engine: Engine | None = None) -> None:
        self.path = Path(path)
        self._secrets: dict[str, str] = {}
        self.timeout = timeout
        self._engine = engine or SQLiteEngine(self.path)
        self._db: Connection = self._engine.connect(timeout)
        try:
            self._check_ours()
            self._migrate()
        except BaseException as exc:
            self._db.close()
            mapped = self._engine.open_error(exc)
            if mapped is not None:
                raise mapped from None
            raise

    @property
    def engine(self) -> str:
        """The engine: "sqlite" or "postgresql"."""
        return self._engine.name

    @property
    def where(self) -> str:
        """What messages name: the SQLite file, or the PostgreSQL URL (never with a password)."""
        return self._engine.where

    def reopen(self) -> Store:
        """Another connection to the same store (for another thread: a connection is never shared)."""
        return Store(self.path, timeout=self.timeout, engine=self._engine)

    def _check_ours(self) -> None:
        """An existing database must be a store we made (a schema version, our papers table), not another
        program's database or one whose creation never finished."""
        version = self._engine.schema_version(self._db)
        tables = self._engine.tables(self._db)
        if (version == 0 and not tables) or version > SCHEMA_VERSION:
            # Created by a run that stopped before its first migration committed (nothing to lose), or by a
            # newer paper-digest (_migrate says to upgrade).
            return
        if version == 0 or "papers" not in tables or "messages" not in tables:
            setting = "[paths] database" if self.engine == "sqlite" else "[database] url (use an empty database)"
            raise StoreError(
                f"{self.where}: not a paper-digest database (it has tables {sorted(tables)[:5]}); check {setting}"
            )

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def transaction(self, *, exclusive: bool = True) -> AbstractContextManager[Connection]:
        """All or nothing, one writer at a time (SQLite: BEGIN IMMEDIATE; PostgreSQL: the store's advisory lock):
        writers queue (up to the timeout) instead of failing. A write the database cannot take (a full disk, a
        lock held too long, a refused value or row) is a StoreError that says so; nothing of the transaction is
        kept. `exclusive=False` (the send ledger and the send claims): on PostgreSQL without the store-wide lock,
        beside other writers; constraints and row locks keep those writes right."""
        return self._engine.transaction(self._db, exclusive=exclusive)

    def _migrate(self) -> None:
        engine, version = self._engine, self._engine.schema_version(self._db)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.where}: schema version {version} is newer than this paper-digest ({SCHEMA_VERSION}); upgrade"
            )
        for number in range(version, SCHEMA_VERSION):
            with self.transaction() as db:
                # Read again under the write lock: another process may have migrated meanwhile.
                if engine.schema_version(db) > number:
                    continue
                migration = _MIGRATIONS[number]
                for statement in _statements(migration.script(engine.name)):
                    db.execute(statement)
                if migration.backfill:
                    BACKFILLS[migration.backfill](db)
                engine.set_schema_version(db, number + 1)

    @property
    def schema_version(self) -> int:
        return self._engine.schema_version(self._db)

    # ---- papers -------------------------------------------------------------------------------

    def _match(self, paper: Paper) -> Row | None:
        db = self._db
        if paper.arxiv_id:
            row = db.execute("SELECT * FROM papers WHERE arxiv_id = ?", (paper.arxiv_id,)).fetchone()
            if row:
                return row
        if paper.doi:
            row = db.execute("SELECT * FROM papers WHERE doi = ?", (paper.doi,)).fetchone()
            if row:
                return row
        for row in db.execute("SELECT * FROM papers WHERE title_key = ? ORDER BY seq", (paper.key,)):
            # Same title but a different arXiv id or DOI is a different paper.
            if paper.arxiv_id and row["arxiv_id"] and row["arxiv_id"] != paper.arxiv_id:
                continue
            if paper.doi and row["doi"] and row["doi"] != paper.doi:
                continue
            return row
        return None

    def add_papers(self, papers: Iterable[Paper], source: str, now: datetime) -> dict[Outcome, int]:
        """Store papers from one source in one transaction; returns how many were new/updated/duplicate."""
        counts: dict[Outcome, int] = {"new": 0, "updated": 0, "duplicate": 0}
        stamp = utc_iso(now)
        with self.transaction():
            next_seq = self._next_seq()
            for paper in papers:
                counts[self._upsert(paper, source, stamp, next_seq)] += 1
            self._bump_papers_version(counts)
        return counts

    def _bump_papers_version(self, counts: dict[Outcome, int]) -> None:
        if counts["new"] or counts["updated"]:
            self._db.execute("UPDATE store_meta SET value = value + 1 WHERE key = 'papers_version'")

    def papers_version(self) -> tuple[int, int]:
        """(this store's id, a counter that changes whenever a commit added or changed papers): a model fitted at
        one version is valid until the next (cheap to ask, so callers can cache what they derive from papers)."""
        rows = dict(self._db.execute("SELECT key, value FROM store_meta").fetchall())
        return int(rows.get("store_id", 0)), int(rows.get("papers_version", 0))

    def _next_seq(self) -> Iterator[int]:
        """Sequence numbers for the papers of one transaction: read MAX(seq) once, not once per paper."""
        start = int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM papers").fetchone()[0])
        return itertools.count(start + 1)

    def _free_id(self, paper_id: str) -> str:
        """The paper's stable id, or (in the rare case that a different paper holds it, or held it before it was
        merged into another: old emails still name it) the first free suffix."""
        candidate, suffix = paper_id, 1
        while self._db.execute(
            "SELECT 1 FROM papers WHERE id = ? UNION ALL SELECT 1 FROM paper_aliases WHERE alias = ?",
            (candidate, candidate),
        ).fetchone():
            suffix += 1
            candidate = f"{paper_id}-{suffix}"
        return candidate

    def _upsert(self, paper: Paper, source: str, stamp: str, next_seq: Iterator[int]) -> Outcome:
        db = self._db
        row = self._match(paper)
        if row is None:
            paper_id = self._free_id(paper.stable_id())
            seq = next(next_seq)
            db.execute(
                "INSERT INTO papers (id, arxiv_id, arxiv_version, doi, title_key, title, abstract, authors, url,"
                " links, categories, published, first_seen, updated_at, seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (paper_id, *_paper_columns(paper), stamp, stamp, seq),
            )
            db.execute("INSERT INTO paper_sources VALUES (?, ?) ON CONFLICT DO NOTHING", (paper_id, source))
            return "new"
        stored = self._paper(row)
        merged = self._keep_doi_unique(stored, _merge(stored, paper))
        db.execute("INSERT INTO paper_sources VALUES (?, ?) ON CONFLICT DO NOTHING", (stored.id, source))
        if merged == stored:
            return "duplicate"
        self._update_paper(merged, stamp)
        return "updated"

    def _keep_doi_unique(self, stored: Paper, merged: Paper) -> Paper:
        if (
            merged.doi != stored.doi
            and self._db.execute("SELECT 1 FROM papers WHERE doi = ? AND id != ?", (merged.doi, stored.id)).fetchone()
        ):
            return replace(merged, doi=stored.doi)  # that DOI already names another stored paper
        return merged

    def _update_paper(self, merged: Paper, stamp: str) -> None:
        self._db.execute(
            "UPDATE papers SET arxiv_id = ?, arxiv_version = ?, doi = ?, title_key = ?, title = ?, abstract = ?,"
            " authors = ?, url = ?, links = ?, categories = ?, published = ?, updated_at = ? WHERE id = ?",
            (*_paper_columns(merged), stamp, merged.id),
        )

    def _paper(self, row: Row, sources: tuple[str, ...] = ()) -> Paper:
        return Paper(
            id=row["id"],
            title=row["title"],
            abstract=row["abstract"],
            authors=tuple(json.loads(row["authors"])),
            url=row["url"],
            arxiv_id=row["arxiv_id"],
            arxiv_version=row["arxiv_version"],
            doi=row["doi"],
            categories=tuple(json.loads(row["categories"])),
            published=row["published"],
            links=tuple(json.loads(row["links"])),
            first_seen=row["first_seen"],
            sources=sources,
        )

    def _with_sources(self, rows: Sequence[Row]) -> list[Paper]:
        if not rows:
            return []
        sources: dict[str, list[str]] = {}
        ids = [row["id"] for row in rows]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for item in self._db.execute(
                f"SELECT paper_id, source FROM paper_sources WHERE paper_id IN ({marks}) ORDER BY source", chunk
            ):
                sources.setdefault(item["paper_id"], []).append(item["source"])
        return [self._paper(row, tuple(sources.get(row["id"], ()))) for row in rows]

    def list_papers(self, limit: int | None = None) -> list[Paper]:
        """Every stored paper, newest first."""
        sql = "SELECT * FROM papers ORDER BY first_seen DESC, seq DESC"
        rows = self._db.execute(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ()).fetchall()
        return self._with_sources(rows)

    def all_papers(self) -> list[Paper]:
        """Every stored paper in the order it was first seen (what ranking models are fitted on)."""
        return self._with_sources(self._db.execute("SELECT * FROM papers ORDER BY seq").fetchall())

    def recent_papers(self, limit: int, *, max_seq: int) -> list[Paper]:
        """The `limit` most recently committed papers up to sequence number `max_seq`, oldest first (what the
        ranking model is fitted on)."""
        rows = self._db.execute(
            "SELECT * FROM (SELECT * FROM papers WHERE seq <= ? ORDER BY seq DESC LIMIT ?) AS recent ORDER BY seq",
            (max_seq, limit),
        ).fetchall()
        return self._with_sources(rows)

    def count_papers_after_seq(self, low: int, high: int) -> int:
        return int(
            self._db.execute("SELECT COUNT(*) FROM papers WHERE seq > ? AND seq <= ?", (low, high)).fetchone()[0]
        )

    def papers_since(
        self, since: datetime | None, until: datetime | None = None, *, max_seq: int | None = None
    ) -> list[Paper]:
        """Papers first seen after `since` and no later than `until` (open ends when None), committed no later
        than sequence number `max_seq` (when given), oldest first."""
        low = utc_iso(since) if since else ""
        high = utc_iso(until) if until else "9999"
        last = max_seq if max_seq is not None else 2**62
        rows = self._db.execute(
            "SELECT * FROM papers WHERE first_seen > ? AND first_seen <= ? AND seq <= ? ORDER BY seq",
            (low, high, last),
        ).fetchall()
        return self._with_sources(rows)

    def get_paper(self, paper_id: str) -> Paper | None:
        """The paper with this id; also by an id it had before another record was merged into it (so that the
        feedback link of an email sent before the merge still finds it)."""
        row = self._db.execute("SELECT * FROM papers WHERE id = ?", (paper_id,)).fetchone()
        if row is None:
            row = self._db.execute(
                "SELECT p.* FROM paper_aliases a JOIN papers p ON p.id = a.paper_id WHERE a.alias = ?", (paper_id,)
            ).fetchone()
        return self._with_sources([row])[0] if row else None

    def get_papers(self, paper_ids: Sequence[str]) -> list[Paper]:
        """The stored papers with these ids, in the given order (unknown ids are left out)."""
        found: dict[str, Paper] = {}
        for start in range(0, len(paper_ids), 500):
            chunk = list(paper_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT * FROM papers WHERE id IN ({marks})", chunk).fetchall()
            found.update((p.id, p) for p in self._with_sources(rows) if p.id)
        return [found[i] for i in paper_ids if i in found]

    def find_paper(self, reference: str) -> Paper | None:
        """A paper named the way a person would: our id, an arXiv id or URL, a DOI, or its title."""
        reference = reference.strip()
        paper = self.get_paper(reference)
        if paper:
            return paper
        arxiv = arxiv_id_from_doi(reference) or parse_arxiv_id(reference) or parse_arxiv_id(reference, anywhere=True)
        row = None
        if arxiv:
            row = self._db.execute("SELECT * FROM papers WHERE arxiv_id = ?", (arxiv.base,)).fetchone()
        doi = (
            normalise_doi(reference)
            if row is None and reference.lower().startswith(("10.", "doi:", "https://doi"))
            else None
        )
        if doi:
            row = self._db.execute("SELECT * FROM papers WHERE doi = ?", (doi,)).fetchone()
        if row is None:
            row = self._db.execute(
                "SELECT * FROM papers WHERE title_key = ? ORDER BY seq LIMIT 1", (title_key(reference),)
            ).fetchone()
        return self._with_sources([row])[0] if row else None

    def count_papers(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM papers").fetchone()[0])

    # ---- arXiv lookups (digest.enrich) --------------------------------------------------------
    # INDEXED BY papers_unlinked (SQLite's index hint; PostgreSQL takes none): without statistics SQLite prefers
    # the arxiv_id index for "arxiv_id IS NULL", which also holds every paper a journal feed gave with a link; the
    # partial index holds only those without.

    def _unlinked(self) -> str:
        return self._engine.indexed_by("papers_unlinked")

    # A title whose answer stands: found, or "not on arXiv" asked after `retry_before`, or a title first seen before
    # `since` (too old for another try, whatever papers with it came since: an "Editorial" every week is not asked
    # every week). Stamps are ISO text: '' sorts first, so no retry says "stands".
    _ANSWERED = (
        "EXISTS (SELECT 1 FROM arxiv_lookups l WHERE l.title_key = p.title_key"
        " AND (l.answer IS NOT NULL OR l.asked_at > ?"
        " OR (SELECT MIN(q.first_seen) FROM papers q WHERE q.title_key = p.title_key) < ?))"
    )

    @staticmethod
    def _retry(retry_before: datetime | None, since: datetime | None) -> tuple[str, str]:
        if retry_before is None or since is None:
            return ("", "")
        return (utc_iso(retry_before), utc_iso(since))

    def unasked_titles(
        self, limit: int, *, retry_before: datetime | None = None, since: datetime | None = None
    ) -> list[tuple[str, str]]:
        """(title key, title) of the papers with no arXiv id and no URL whose title was never looked up, one per
        title key, newest first (the next digests' candidates before a backlog), at most `limit`. With
        `retry_before` and `since`: also the titles answered "not on arXiv" before `retry_before` whose paper was
        first seen after `since` (a paper may reach arXiv after the digest that listed it)."""
        rows = self._db.execute(
            "SELECT title_key, title FROM (SELECT title_key, title, seq,"
            " ROW_NUMBER() OVER (PARTITION BY title_key ORDER BY seq DESC) AS newest"
            f" FROM papers p {self._unlinked()} WHERE arxiv_id IS NULL AND url IS NULL"
            f" AND NOT {self._ANSWERED}) AS unasked"
            " WHERE newest = 1 ORDER BY seq DESC LIMIT ?",
            (*self._retry(retry_before, since), limit),
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def count_unasked_titles(self, *, retry_before: datetime | None = None, since: datetime | None = None) -> int:
        return int(
            self._db.execute(
                f"SELECT COUNT(DISTINCT title_key) FROM papers p {self._unlinked()}"
                f" WHERE arxiv_id IS NULL AND url IS NULL AND NOT {self._ANSWERED}",
                self._retry(retry_before, since),
            ).fetchone()[0]
        )

    def arxiv_lookup(self, key: str) -> tuple[bool, ArxivMatch | None]:
        """(asked before, the match it found: None when the title is not on arXiv)."""
        row = self._db.execute("SELECT answer FROM arxiv_lookups WHERE title_key = ?", (key,)).fetchone()
        if row is None:
            return False, None
        return True, ArxivMatch.from_json(row[0]) if row[0] else None

    def record_arxiv_answers(self, answers: dict[str, ArxivMatch | None], now: datetime) -> int:
        """Remember what the arXiv API answered for these title keys (None: not on arXiv), and give every paper
        without a link that has one of these titles the paper found, in one transaction. Returns how many papers
        got a link."""
        stamp = utc_iso(now)
        with self.transaction() as db:
            db.executemany(
                # A title asked again (it was not on arXiv then) takes the new answer; a found one never changes.
                "INSERT INTO arxiv_lookups VALUES (?, ?, ?, ?) ON CONFLICT (title_key) DO UPDATE SET"
                " arxiv_id = excluded.arxiv_id, answer = excluded.answer, asked_at = excluded.asked_at"
                " WHERE arxiv_lookups.answer IS NULL",
                [
                    (key, match.arxiv_id if match else None, match.as_json() if match else None, stamp)
                    for key, match in answers.items()
                ],
            )
            filled = sum(self._fill_from_arxiv(key, match, stamp) for key, match in answers.items() if match)
            if filled:
                self._bump_papers_version({"new": 0, "updated": filled, "duplicate": 0})
        return filled

    def fill_from_arxiv_lookups(self, now: datetime) -> int:
        """Papers without a link whose title was already found on arXiv (a record that came after the answer and
        was not merged with the paper found, e.g. another DOI): filled from the stored answer, never asked again."""
        rows = self._db.execute(
            f"SELECT DISTINCT l.title_key, l.answer FROM papers p {self._unlinked()}"
            " JOIN arxiv_lookups l ON l.title_key = p.title_key"
            " WHERE p.arxiv_id IS NULL AND p.url IS NULL AND l.answer IS NOT NULL"
        ).fetchall()
        if not rows:
            return 0
        answers: dict[str, ArxivMatch | None] = {row[0]: ArxivMatch.from_json(row[1]) for row in rows}
        return self.record_arxiv_answers(answers, now)

    def _fill_from_arxiv(self, key: str, match: ArxivMatch, stamp: str) -> int:
        """Give the papers without a link titled `key` what arXiv says about them. When another record already
        holds that arXiv id (the same paper from an arXiv feed, under a title that changed between versions), the
        two become one: see _fold."""
        db = self._db
        filled = 0
        rows = db.execute(
            f"SELECT * FROM papers {self._unlinked()} WHERE title_key = ? AND arxiv_id IS NULL AND url IS NULL"
            " ORDER BY seq",
            (key,),
        ).fetchall()
        for row in rows:
            stored = self._paper(row)
            if _other_publisher_doi(stored.doi, match.doi):
                continue  # the same title, but a journal DOI says another paper: the store keeps them apart
            found = _merge(stored, match.fill(stored))
            holder_row = db.execute("SELECT * FROM papers WHERE arxiv_id = ?", (match.arxiv_id,)).fetchone()
            if holder_row is None:
                self._update_paper(self._keep_doi_unique(stored, found), stamp)
            else:
                holder = self._paper(holder_row)
                if _other_publisher_doi(holder.doi, stored.doi):
                    continue
                self._fold(gone=stored.id or "", into=holder.id or "")
                self._update_paper(self._keep_doi_unique(holder, _merge(holder, found)), stamp)
            filled += 1
        return filled

    def _fold(self, *, gone: str, into: str) -> None:
        """Record `gone` is the paper `into`: its sources, its picks in the send ledger and its readers' ratings
        move to `into` (so a reader sent either is never sent it again), its id becomes an alias of `into` (so
        links in emails already sent still find it), and its row goes. A message that held both keeps one pick;
        a reader who rated both keeps the later rating."""
        db = self._db
        # A reader sent both records keeps one live pick (message_papers_live allows one per reader and paper).
        db.execute(
            "UPDATE message_papers SET live = NULL WHERE paper_id = ? AND live = 1 AND EXISTS (SELECT 1 FROM"
            " message_papers other WHERE other.subscriber = message_papers.subscriber AND other.paper_id = ?"
            " AND other.live = 1)",
            (gone, into),
        )
        for table, key in (("paper_sources", "source"), ("message_papers", "message")):
            # Rows that `into` already has (the same source; the same message) stay behind and go with `gone`.
            db.execute(
                f"UPDATE {table} SET paper_id = ? WHERE paper_id = ? AND NOT EXISTS"
                f" (SELECT 1 FROM {table} other WHERE other.paper_id = ? AND other.{key} = {table}.{key})",
                (into, gone, into),
            )
            db.execute(f"DELETE FROM {table} WHERE paper_id = ?", (gone,))
        db.execute(
            "DELETE FROM feedback WHERE paper_id = ? AND EXISTS (SELECT 1 FROM feedback f"
            " WHERE f.subscriber = feedback.subscriber AND f.paper_id = ? AND f.at >= feedback.at)",
            (gone, into),
        )
        db.execute(
            "DELETE FROM feedback WHERE paper_id = ? AND EXISTS (SELECT 1 FROM feedback f"
            " WHERE f.subscriber = feedback.subscriber AND f.paper_id = ?)",
            (into, gone),
        )
        db.execute("UPDATE feedback SET paper_id = ? WHERE paper_id = ?", (into, gone))
        db.execute("UPDATE paper_aliases SET paper_id = ? WHERE paper_id = ?", (into, gone))
        db.execute(
            "INSERT INTO paper_aliases VALUES (?, ?) ON CONFLICT (alias) DO UPDATE SET paper_id = excluded.paper_id",
            (gone, into),
        )
        db.execute("DELETE FROM papers WHERE id = ?", (gone,))

    # ---- ingested files -----------------------------------------------------------------------

    def file_hash_by_stat(self, path: str, signature: str) -> str | None:
        """The content hash a local file had when it last had this stat signature (None: not known)."""
        row = self._db.execute("SELECT signature, content_hash FROM file_stats WHERE path = ?", (path,)).fetchone()
        return str(row["content_hash"]) if row and row["signature"] == signature else None

    def remember_file_stat(self, path: str, signature: str, content_hash: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO file_stats VALUES (?, ?, ?) ON CONFLICT (path)"
                " DO UPDATE SET signature = excluded.signature, content_hash = excluded.content_hash",
                (path, signature, content_hash),
            )

    def seen_file(self, content_hash: str) -> StoredFile | None:
        row = self._db.execute("SELECT * FROM ingested_files WHERE content_hash = ?", (content_hash,)).fetchone()
        return StoredFile(**dict(row)) if row else None

    def ingest_file(
        self,
        content_hash: str,
        source: str,
        papers: Sequence[Paper],
        now: datetime,
        *,
        remember: bool = True,
        chunk: int = INGEST_CHUNK,
    ) -> dict[Outcome, int]:
        """Store one file's papers, `chunk` per transaction, and remember its content hash with the last one.

        A crash keeps the chunks committed and forgets the file, so the next run reads it again and finds those
        papers already stored: nothing lost, nothing twice. Every chunk takes the next sequence numbers, so a
        planner that ran between two chunks sees the rest as new next time. A file with unreadable entries is
        not remembered, so every run reports them until it is fixed.
        """
        counts: dict[Outcome, int] = {"new": 0, "updated": 0, "duplicate": 0}
        stamp = utc_iso(now)
        start = 0
        while True:
            part = papers[start : start + chunk]
            last = start + chunk >= len(papers)
            with self.transaction() as db:
                next_seq = self._next_seq()
                part_counts: dict[Outcome, int] = {"new": 0, "updated": 0, "duplicate": 0}
                for paper in part:
                    part_counts[self._upsert(paper, source, stamp, next_seq)] += 1
                self._bump_papers_version(part_counts)
                if last and remember:
                    db.execute(
                        "INSERT INTO ingested_files VALUES (?, ?, ?, ?) ON CONFLICT (content_hash) DO UPDATE"
                        " SET source = excluded.source, entries = excluded.entries, ingested_at = excluded.ingested_at",
                        (content_hash, source, len(papers), stamp),
                    )
            for key, value in part_counts.items():
                counts[key] += value
            if last:
                return counts
            start += chunk

    # ---- feedback -----------------------------------------------------------------------------

    def set_feedback(self, subscriber: str, paper_id: str, rating: int, now: datetime) -> None:
        """Record a like (+1) or dislike (-1); the latest rating of a paper wins."""
        if rating not in (-1, 1):
            raise ValueError("rating must be +1 or -1")
        with self.transaction() as db:
            db.execute(
                "INSERT INTO feedback VALUES (?, ?, ?, ?) ON CONFLICT (subscriber, paper_id)"
                " DO UPDATE SET rating = excluded.rating, at = excluded.at",
                (subscriber, paper_id, rating, utc_iso(now)),
            )

    def feedback(self, subscriber: str) -> dict[str, int]:
        rows = self._db.execute("SELECT paper_id, rating FROM feedback WHERE subscriber = ?", (subscriber,))
        return {row["paper_id"]: row["rating"] for row in rows}

    def ratings(self, subscriber: str) -> list[tuple[Paper, int, datetime]]:
        """The subscriber's ratings with their papers, the latest first (what a settings page lists)."""
        rows = self._db.execute(
            "SELECT paper_id, rating, at FROM feedback WHERE subscriber = ? ORDER BY at DESC, paper_id", (subscriber,)
        ).fetchall()
        papers = {p.id: p for p in self.get_papers([row["paper_id"] for row in rows])}
        return [
            (papers[row["paper_id"]], row["rating"], parse_iso(row["at"])) for row in rows if row["paper_id"] in papers
        ]

    def clear_feedback(self, subscriber: str, paper_id: str) -> bool:
        """Undo a rating; False when there was none."""
        with self.transaction() as db:
            cursor = db.execute("DELETE FROM feedback WHERE subscriber = ? AND paper_id = ?", (subscriber, paper_id))
        return cursor.rowcount > 0

    # ---- the send ledger ----------------------------------------------------------------------

    @trace.traced("ledger+delivery")
    def begin_message(
        self,
        subscriber: str,
        message_id: str,
        picks: Sequence[PickRecord],
        *,
        channel: str,
        subject: str,
        candidates_until: datetime,
        now: datetime,
        candidates_until_seq: int | None = None,
        record_attempt: bool = False,
        claim: str | None = None,
    ) -> int:
        """Record a message as `sending`, with its papers, committed before anything leaves the building.

        Refuses (LedgerConflictError, nothing written) when any of the papers is already in a `sending` or `sent`
        message to this subscriber: the unique index message_papers_live refuses a second live pick of a paper for
        a subscriber, whichever sender, host or transaction writes it (the check below only words the refusal),
        so even two senders that both got past the send lock cannot send a paper twice. `claim`: the sender's
        claim id (digest.claims); the message is refused unless that sender still holds the subscriber (and
        the claim cannot change hands until this commits). `candidates_until_seq`: the last paper sequence number
        the plan could see (the next digest's window starts after it). `record_attempt`: also what
        record_attempt does, in the same transaction (one commit less per message)."""
        with self.transaction(exclusive=False) as db:
            if claim is not None:
                row = db.execute(
                    f"SELECT holder FROM send_claims WHERE subscriber = ? {self._engine.for_share}", (subscriber,)
                ).fetchone()
                if row is None or row[0] != claim:
                    raise LedgerConflictError(
                        f"{subscriber}: another sender took this subscriber over (this sender's claim expired); "
                        "not sent from here"
                    )
            ids = [p.paper_id for p in picks]
            taken: list[str] = []
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                taken += [
                    row[0]
                    for row in db.execute(
                        "SELECT mp.paper_id FROM message_papers mp JOIN messages m ON m.id = mp.message"
                        f" WHERE mp.subscriber = ? AND m.state IN ('sending', 'sent') AND mp.paper_id IN ({marks})",
                        (subscriber, *chunk),
                    )
                ]
            if taken:
                raise LedgerConflictError(
                    f"{subscriber}: {len(taken)} of these papers are already sent or being sent (another sender?); "
                    "not sent again"
                )
            if record_attempt:
                self._record_attempt(db, subscriber, now)
            if candidates_until_seq is None:
                candidates_until_seq = self.max_seq()
            ((rowid,),) = db.execute(
                "INSERT INTO messages (subscriber, message_id, channel, state, subject, candidates_until,"
                " created_at, candidates_until_seq) VALUES (?, ?, ?, 'sending', ?, ?, ?, ?) RETURNING id",
                (
                    subscriber,
                    message_id,
                    channel,
                    subject,
                    utc_iso(candidates_until),
                    utc_iso(now),
                    candidates_until_seq,
                ),
            ).fetchall()
            try:
                db.executemany(
                    "INSERT INTO message_papers (message, subscriber, paper_id, position, score, why, live)"
                    " VALUES (?, ?, ?, ?, ?, ?, 1)",
                    [(rowid, subscriber, p.paper_id, i, p.score, p.why) for i, p in enumerate(picks)],
                )
            except StoreConflictError:  # message_papers_live: another writer committed one of these papers first
                raise LedgerConflictError(
                    f"{subscriber}: these papers are already sent or being sent (another sender?); not sent again"
                ) from None
        return rowid

    @trace.traced("ledger+delivery")
    def finish_message(self, rowid: int, state: MessageState, now: datetime, error: str | None = None) -> None:
        """Settle a `sending` message as `sent` or `failed` (failed papers become candidates again)."""
        if state not in ("sent", "failed"):
            raise ValueError("a message finishes as sent or failed")
        with self.transaction(exclusive=False) as db:
            changed = db.execute(
                "UPDATE messages SET state = ?, finished_at = ?, error = ? WHERE id = ? AND state = 'sending'",
                (state, utc_iso(now), error, rowid),
            ).rowcount
            if changed and state == "failed":
                db.execute("UPDATE message_papers SET live = NULL WHERE message = ?", (rowid,))
            if not changed and state == "sent":
                # Settled by someone else meanwhile (by hand, as failed): it did arrive, and the ledger must say
                # so, or its papers would be candidates again.
                db.execute(
                    "UPDATE messages SET state = 'sent', finished_at = ?,"
                    " error = 'delivered after it had been settled as failed' WHERE id = ?",
                    (utc_iso(now), rowid),
                )
                # Its papers are live again, but for those another message carries meanwhile (sent twice, then).
                db.execute(
                    "UPDATE message_papers SET live = 1 WHERE message = ? AND live IS NULL AND NOT EXISTS (SELECT 1"
                    " FROM message_papers other WHERE other.subscriber = message_papers.subscriber"
                    " AND other.paper_id = message_papers.paper_id AND other.live = 1)",
                    (rowid,),
                )
                log.error("message %d was delivered after it had been settled as failed; recorded as sent", rowid)

    def mark_handed_over(self, rowid: int, now: datetime) -> None:
        """The hand-over starts (the message body is about to go out): from here on a crash leaves it stuck.
        Refuses (LedgerConflictError) when the message is no longer `sending`: another sender released it, and
        its papers may be on their way in another message."""
        with self.transaction(exclusive=False) as db:
            changed = db.execute(
                "UPDATE messages SET handed_over_at = ? WHERE id = ? AND state = 'sending'", (utc_iso(now), rowid)
            ).rowcount
        if not changed:
            raise LedgerConflictError(f"message {rowid} was settled by another sender before its hand-over; not sent")

    def release_unhanded(self, now: datetime, subscribers: Sequence[str] | None = None) -> list[str]:
        """`sending` messages whose hand-over never started (their sender died first) become `failed`, so their
        papers are candidates again. Only for a caller that holds the send lock (no other sender is running), or,
        with `subscribers`, the claims on those subscribers (digest.claims: their previous holder's lease ran
        out, so it is gone or no longer allowed to send them). Returns their Message-IDs."""
        note = "the sender stopped before handing it over; its papers are candidates again"
        with self.transaction(exclusive=subscribers is None) as db:
            sql = "SELECT id, message_id FROM messages WHERE state = 'sending' AND handed_over_at IS NULL"
            rows: list[Row] = []
            if subscribers is None:
                rows = db.execute(sql).fetchall()
            for start in range(0, len(subscribers or ()), 500):
                chunk = list(subscribers or ())[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows += db.execute(f"{sql} AND subscriber IN ({marks})", chunk).fetchall()
            released: list[str] = []
            # Only while still unhanded: a sender that lost its claim may have started the hand-over meanwhile.
            for rowid, message_id in ((row[0], row[1]) for row in rows):
                if db.execute(
                    "UPDATE messages SET state = 'failed', finished_at = ?, error = ? WHERE id = ?"
                    " AND state = 'sending' AND handed_over_at IS NULL",
                    (utc_iso(now), note, rowid),
                ).rowcount:
                    db.execute("UPDATE message_papers SET live = NULL WHERE message = ?", (rowid,))
                    released.append(message_id)
        return released

    # ---- send claims (several senders on one PostgreSQL database: digest.claims) --------------------------------
    # A lease is measured on the database server's clock (one clock for every host; DIGEST_NOW, the domain's clock,
    # may be frozen): expires_at and finished_at are seconds since the epoch on it.

    def database_time(self) -> float:
        """Now, in seconds since the epoch, on the database's clock."""
        return float(self._db.execute(f"SELECT {self._engine.epoch_now}").fetchone()[0])

    def take_turn(self, name: str, interval: float) -> float:
        """Start a request of kind `name` now if it is its turn (one every `interval` seconds, across every process
        and host sharing the store): 0, and the next turn is `interval` from now. Else how many seconds until the
        turn comes, to wait and ask again (the turn is taken when the request really starts, so the server sees
        the requests apart by the interval whoever waited how long)."""
        with self.transaction() as db:
            row = db.execute(
                f"SELECT {self._engine.epoch_now}, (SELECT ready_at FROM request_slots WHERE name = ?)", (name,)
            ).fetchone()
            now, ready = float(row[0]), row[1]
            # A turn further ahead than the interval could make is stale (the interval was lowered since, or a
            # clock jumped): it is not waited for.
            if ready is not None and now < float(ready) <= now + interval:
                return float(ready) - now
            db.execute(
                "INSERT INTO request_slots (name, ready_at) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET ready_at = excluded.ready_at",
                (name, now + interval),
            )
        return 0.0

    def finish_request(self, name: str, interval: float) -> None:
        """A request of kind `name` just ended: the next starts `interval` after now at the earliest (a slow answer
        pushes the next turn back, so the server never sees two closer than that)."""
        with self.transaction() as db:
            db.execute(
                f"UPDATE request_slots SET ready_at = {self._engine.greatest}(ready_at, {self._engine.epoch_now} + ?)"
                " WHERE name = ?",
                (interval, name),
            )

    def offer_claims(self, subscribers: Sequence[str]) -> None:
        """Make a claim row (held by nobody) for each of these subscribers that has none yet."""
        ordered = sorted(set(subscribers))  # the same order in every sender: concurrent inserts never deadlock
        members, argument = self._engine.member_of("?")
        with self.transaction(exclusive=False) as db:
            db.execute(
                f"INSERT INTO send_claims (subscriber) SELECT value FROM {members} AS wanted WHERE true ORDER BY value"
                " ON CONFLICT (subscriber) DO NOTHING",
                (argument(ordered),),
            )

    def claim_subscribers(
        self, holder: str, subscribers: Sequence[str], *, limit: int, lease: float, started: float
    ) -> list[str]:
        """Take up to `limit` of these subscribers for `holder` for `lease` seconds: those nobody holds, or whose
        holder's lease ran out, and that no sender finished with since `started` (this sender's start, on the
        database's clock). Rows another claimer is taking at this moment are skipped, not waited for (FOR UPDATE
        SKIP LOCKED), so concurrent senders take disjoint batches. Returns the subscribers taken, in order."""
        members, argument = self._engine.member_of("?")
        now = self._engine.epoch_now
        with self.transaction(exclusive=False) as db:
            rows = db.execute(
                "WITH picked AS (SELECT subscriber FROM send_claims"
                f" WHERE subscriber IN (SELECT value FROM {members} AS wanted)"
                f" AND (holder IS NULL OR expires_at < {now}) AND (finished_at IS NULL OR finished_at < ?)"
                f" ORDER BY subscriber LIMIT ? {self._engine.skip_locked})"
                f" UPDATE send_claims SET holder = ?, expires_at = {now} + ?, finished_at = NULL"
                " WHERE subscriber IN (SELECT subscriber FROM picked) RETURNING subscriber",
                (argument(list(subscribers)), started, limit, holder, lease),
            ).fetchall()
        return sorted(row[0] for row in rows)

    def renew_claims(self, holder: str, lease: float) -> int:
        """Push the lease of every claim `holder` still holds `lease` seconds past now; returns how many."""
        with self.transaction(exclusive=False) as db:
            return db.execute(
                f"UPDATE send_claims SET expires_at = {self._engine.epoch_now} + ? WHERE holder = ?", (lease, holder)
            ).rowcount

    def release_claims(self, holder: str, subscribers: Sequence[str], *, finished: bool) -> None:
        """Let go of these claims of `holder`: `finished` (their digest was handled: no sender that started
        before now takes them again), or not (not attempted: any sender may take them at once)."""
        members, argument = self._engine.member_of("?")
        stamp = self._engine.epoch_now if finished else "NULL"
        with self.transaction(exclusive=False) as db:
            db.execute(
                f"UPDATE send_claims SET holder = NULL, expires_at = NULL, finished_at = {stamp}"
                f" WHERE holder = ? AND subscriber IN (SELECT value FROM {members} AS wanted)",
                (holder, argument(list(subscribers))),
            )

    def claimed_elsewhere(self, holder: str, subscribers: Sequence[str]) -> int:
        """How many of these subscribers another sender holds now (its lease running or run out)."""
        members, argument = self._engine.member_of("?")
        return int(
            self._db.execute(
                "SELECT COUNT(*) FROM send_claims WHERE holder IS NOT NULL AND holder != ?"
                f" AND subscriber IN (SELECT value FROM {members} AS wanted)",
                (holder, argument(list(subscribers))),
            ).fetchone()[0]
        )

    def try_scheduler_lock(self) -> bool:
        """Take the scheduler's lock on this connection, if no other connection holds it (digest.scheduler_lock):
        on PostgreSQL a session-level advisory lock, held until this store is closed or its connection is lost;
        SQLite has one host and the send lock, so it is always taken."""
        if self._engine.name != "postgresql":
            return True
        return bool(self._db.execute(f"SELECT pg_try_advisory_lock({SCHEDULER_LOCK})").fetchone()[0])

    def release_scheduler_lock(self) -> None:
        """Let the scheduler's lock go now (closing the connection does too, once the server notices)."""
        if self._engine.name == "postgresql":
            self._db.execute(f"SELECT pg_advisory_unlock({SCHEDULER_LOCK})").fetchone()

    def ping(self) -> None:
        """A StoreError when the connection is gone (with it, any session-level lock it held)."""
        self._db.execute("SELECT 1").fetchone()

    def max_seq(self) -> int:
        """The newest committed paper's sequence number (sequence numbers follow commit order)."""
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM papers").fetchone()[0])

    def last_window_seq(self, subscriber: str) -> int | None:
        """The last paper sequence number the subscriber's last digest could see, or their last plan that had
        nothing to send (None before the first)."""
        row = self._db.execute(
            "SELECT MAX(seq) FROM (SELECT MAX(candidates_until_seq) AS seq FROM messages"
            " WHERE subscriber = ? AND state IN ('sending', 'sent')"
            " UNION ALL SELECT empty_window_seq FROM subscriber_state WHERE subscriber = ?) AS windows",
            (subscriber, subscriber),
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def papers_after_seq(self, low: int, high: int) -> list[Paper]:
        """Papers committed after sequence number `low`, up to `high`, oldest first."""
        rows = self._db.execute("SELECT * FROM papers WHERE seq > ? AND seq <= ? ORDER BY seq", (low, high)).fetchall()
        return self._with_sources(rows)

    def sent_among(self, paper_ids: Sequence[str], subscriber: str | None = None) -> dict[str, set[str]]:
        """Of these papers, those in a `sending` or `sent` message, by subscriber (or to one subscriber). Cost
        follows the papers asked about, not the ledger's history."""
        found: dict[str, set[str]] = {}
        unique = list(dict.fromkeys(paper_ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT mp.subscriber, mp.paper_id FROM message_papers mp JOIN messages m ON m.id = mp.message"
                f" WHERE mp.paper_id IN ({marks}) AND m.state IN ('sending', 'sent')"
            )
            arguments: list[str] = list(chunk)
            if subscriber is not None:
                sql += " AND mp.subscriber = ?"
                arguments.append(subscriber)
            for row in self._db.execute(sql, arguments):
                found.setdefault(row[0], set()).add(row[1])
        return found

    def sent_paper_ids(self, subscriber: str) -> set[str]:
        """Papers in a `sending` or `sent` message to this subscriber: never candidates again."""
        rows = self._db.execute(
            "SELECT mp.paper_id FROM message_papers mp JOIN messages m ON m.id = mp.message"
            " WHERE mp.subscriber = ? AND m.state IN ('sending', 'sent')",
            (subscriber,),
        )
        return {row[0] for row in rows}

    def last_window_end(self, subscriber: str) -> datetime | None:
        """Where the last digest's candidate window ended (None before the first digest)."""
        row = self._db.execute(
            "SELECT MAX(candidates_until) FROM messages WHERE subscriber = ? AND state IN ('sending', 'sent')",
            (subscriber,),
        ).fetchone()
        return parse_iso(row[0]) if row and row[0] else None

    def _messages(self, where: str, args: tuple[object, ...], limit: int | None = None) -> list[Message]:
        sql = f"SELECT * FROM messages {where} ORDER BY created_at DESC, id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        rows = self._db.execute(sql, args).fetchall()
        result = []
        for row in rows:
            picks = tuple(
                PickRecord(p["paper_id"], p["score"], p["why"])
                for p in self._db.execute(
                    "SELECT * FROM message_papers WHERE message = ? ORDER BY position", (row["id"],)
                )
            )
            result.append(Message(papers=picks, **dict(row)))
        return result

    def history(self, subscriber: str | None = None, limit: int | None = None) -> list[Message]:
        """Messages newest first, with their papers."""
        if subscriber is None:
            return self._messages("", (), limit)
        return self._messages("WHERE subscriber = ?", (subscriber,), limit)

    def recent_digests(self, subscriber: str, count: int) -> list[Message]:
        """The subscriber's last `count` delivered digests (email or feed), newest first."""
        return self._messages("WHERE subscriber = ? AND state = 'sent'", (subscriber,), count)

    def stuck_messages(self, subscriber: str | None = None) -> list[Message]:
        """Messages left `sending` after their hand-over started: the sender died (or the server never answered)
        before the outcome was known."""
        if subscriber is None:
            return self._messages("WHERE state = 'sending' AND handed_over_at IS NOT NULL", ())
        return self._messages(
            "WHERE state = 'sending' AND handed_over_at IS NOT NULL AND subscriber = ?", (subscriber,)
        )

    def last_sent_at(self, subscriber: str) -> str | None:
        row = self._db.execute(
            "SELECT MAX(finished_at) FROM messages WHERE subscriber = ? AND state = 'sent'", (subscriber,)
        ).fetchone()
        return row[0] if row else None

    def count_sent_papers(self, subscriber: str) -> int:
        return len(self.sent_paper_ids(subscriber))

    # ---- subscriber state ---------------------------------------------------------------------

    def subscriber_state(self, subscriber: str) -> SubscriberState:
        row = self._db.execute("SELECT * FROM subscriber_state WHERE subscriber = ?", (subscriber,)).fetchone()
        if row is None:
            return SubscriberState(subscriber, False, None, None)
        return SubscriberState(row["subscriber"], bool(row["paused"]), row["paused_at"], row["token"])

    def set_paused(self, subscriber: str, paused: bool, now: datetime) -> bool:
        """Pause or resume; returns whether anything changed (so a replayed unsubscribe is harmless)."""
        with self.transaction() as db:
            before = self.subscriber_state(subscriber)
            db.execute("INSERT INTO subscriber_state (subscriber) VALUES (?) ON CONFLICT DO NOTHING", (subscriber,))
            db.execute(
                "UPDATE subscriber_state SET paused = ?, paused_at = ? WHERE subscriber = ?",
                (int(paused), utc_iso(now) if paused else None, subscriber),
            )
        return before.paused != paused

    @trace.traced("ledger+delivery")
    def token(self, subscriber: str, *, rotate: bool = False) -> str:
        """The subscriber's secret token for feed, unsubscribe and feedback links (made on first use)."""
        if not rotate:
            # Read first: a send asks for every subscriber's token, and a write transaction each time would cost
            # more than the read; the check is repeated inside the transaction for the first use.
            known = self.subscriber_state(subscriber).token
            if known:
                return known
        with self.transaction() as db:
            state = self.subscriber_state(subscriber)
            if state.token and not rotate:
                return state.token
            token = secrets.token_urlsafe(24)
            db.execute("INSERT INTO subscriber_state (subscriber) VALUES (?) ON CONFLICT DO NOTHING", (subscriber,))
            # The settings key of the old token goes with it: the web app makes the new one's (fill_settings_hashes).
            db.execute(
                "UPDATE subscriber_state SET token = ?, token_hash = ?, settings_hash = NULL WHERE subscriber = ?",
                (token, credential_hash(token), subscriber),
            )
            return token

    def subscriber_with_token(self, presented: str) -> tuple[str, str] | None:
        """(subscriber, token) of the token whose SHA-256 is the presented one's: found by an index, whatever the
        number of readers (the caller compares the token itself again, in constant time)."""
        row = self._db.execute(
            "SELECT subscriber, token FROM subscriber_state WHERE token_hash = ?", (credential_hash(presented),)
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def subscriber_with_settings_key(self, presented: str) -> tuple[str, str] | None:
        """(subscriber, token) of the settings key whose SHA-256 is the presented one's (see fill_settings_hashes)."""
        row = self._db.execute(
            "SELECT subscriber, token FROM subscriber_state WHERE settings_hash = ? AND token IS NOT NULL",
            (credential_hash(presented),),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def fill_settings_hashes(self, settings_key: Callable[[str], str], fingerprint: str) -> int:
        """Store the SHA-256 of the settings key of every token that has none yet (new or rotated tokens), so that
        a settings key is found by an index; `settings_key` derives it from a token (digest.tokens, with the
        deployment's secret, which the store does not use), and `fingerprint` names that secret: hashes made with
        another (the secret was made again) are all made again. A read only when there is nothing to do. Returns
        how many were filled."""
        unhashed = (
            "SELECT subscriber, token FROM subscriber_state"
            f" {self._engine.indexed_by('subscriber_state_settings_unhashed')}"
            " WHERE token IS NOT NULL AND settings_hash IS NULL"
        )
        if self.secret(SETTINGS_HASHES_OF, fresh=True) == fingerprint and not self._db.execute(unhashed).fetchone():
            return 0
        with self.transaction() as db:
            made_with = db.execute("SELECT value FROM secrets WHERE name = ?", (SETTINGS_HASHES_OF,)).fetchone()
            if made_with is not None and made_with[0] != fingerprint:
                db.execute("UPDATE subscriber_state SET settings_hash = NULL WHERE settings_hash IS NOT NULL")
            rows = db.execute(unhashed).fetchall()  # under the lock: another request may have filled them
            db.executemany(  # only while the token is still that one (not rotated meanwhile)
                "UPDATE subscriber_state SET settings_hash = ? WHERE subscriber = ? AND token = ?",
                [(credential_hash(settings_key(token)), subscriber, token) for subscriber, token in rows],
            )
            self._put_secret(db, SETTINGS_HASHES_OF, fingerprint)
        return len(rows)

    @trace.traced("ledger+delivery")
    def record_attempt(self, subscriber: str, now: datetime, *, empty_window_seq: int | None = None) -> None:
        """Remember that this subscriber's slot was handled, so a scheduler does not retry it at once.
        `empty_window_seq`: the plan had nothing to send among the papers up to this sequence number; the next
        digest's candidates start after it."""
        with self.transaction() as db:
            self._record_attempt(db, subscriber, now)
            if empty_window_seq is not None:
                db.execute(
                    f"UPDATE subscriber_state SET empty_window_seq = {self._engine.greatest}"
                    "(COALESCE(empty_window_seq, 0), ?) WHERE subscriber = ?",
                    (empty_window_seq, subscriber),
                )

    @staticmethod
    def _record_attempt(db: Connection, subscriber: str, now: datetime) -> None:
        db.execute("INSERT INTO subscriber_state (subscriber) VALUES (?) ON CONFLICT DO NOTHING", (subscriber,))
        db.execute("UPDATE subscriber_state SET last_attempt_at = ? WHERE subscriber = ?", (utc_iso(now), subscriber))

    def joined_at(self, subscriber: str, now: datetime) -> datetime:
        """When the store first saw this subscriber: recorded as `now` the first time it is asked."""
        row = self._db.execute("SELECT joined_at FROM subscriber_state WHERE subscriber = ?", (subscriber,)).fetchone()
        if row and row[0]:
            return parse_iso(row[0])
        with self.transaction() as db:
            db.execute("INSERT INTO subscriber_state (subscriber) VALUES (?) ON CONFLICT DO NOTHING", (subscriber,))
            db.execute(
                "UPDATE subscriber_state SET joined_at = COALESCE(joined_at, ?) WHERE subscriber = ?",
                (utc_iso(now), subscriber),
            )
            (joined,) = db.execute(
                "SELECT joined_at FROM subscriber_state WHERE subscriber = ?", (subscriber,)
            ).fetchone()
        return parse_iso(joined)

    def last_attempt_at(self, subscriber: str) -> datetime | None:
        row = self._db.execute(
            "SELECT last_attempt_at FROM subscriber_state WHERE subscriber = ?", (subscriber,)
        ).fetchone()
        return parse_iso(row[0]) if row and row[0] else None

    def resolve_stuck(self, subscriber: str, state: MessageState, now: datetime, note: str) -> list[str]:
        """Settle this subscriber's stuck messages by hand; returns their Message-IDs."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT id, message_id FROM messages"
                " WHERE subscriber = ? AND state = 'sending' AND handed_over_at IS NOT NULL",
                (subscriber,),
            ).fetchall()
            for row in rows:
                db.execute(
                    "UPDATE messages SET state = ?, finished_at = ?, error = ? WHERE id = ?",
                    (state, utc_iso(now), note, row["id"]),
                )
                if state == "failed":
                    db.execute("UPDATE message_papers SET live = NULL WHERE message = ?", (row["id"],))
        return [row["message_id"] for row in rows]

    def known_subscribers(self) -> set[str]:
        """Every subscriber id the store holds anything for (state, a token, messages, ratings): an id a new
        subscriber must not be given, or they would inherit someone's history and links."""
        rows = self._db.execute(
            "SELECT subscriber FROM subscriber_state UNION SELECT subscriber FROM messages"
            " UNION SELECT subscriber FROM feedback UNION SELECT subscriber FROM profiles"
            " UNION SELECT subscriber FROM profile_history"
        )
        return {row[0] for row in rows}

    def secret(self, name: str, make: Callable[[], str] | None = None, *, fresh: bool = False) -> str | None:
        """A secret kept in the store; with `make`, made on first use (one value wins however many processes, on
        however many hosts, make it at once). Without `make`, None while there is none (a preview writes nothing).
        A secret never changes once made, so each Store reads it once (a send asks for it once per subscriber);
        `fresh` reads it again, for one that set_secret may replace."""
        if name in self._secrets and not fresh:
            return self._secrets[name]
        row = self._db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
        if row is None and make is not None:
            with self.transaction(exclusive=False) as db:
                db.execute(
                    "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", (name, make())
                )
            row = self._db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        self._secrets[name] = str(row[0])
        return self._secrets[name]

    def set_secret(self, name: str, value: str) -> None:
        """Replace a secret (one that names something, such as the folder profiles are synced with; never the
        key of tokens already handed out)."""
        with self.transaction() as db:
            self._put_secret(db, name, value)

    def _put_secret(self, db: Connection, name: str, value: str) -> None:
        db.execute(
            "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
        self._secrets.pop(name, None)  # read again after the commit (a rolled-back value must not stay cached)

    def subscriber_tokens(self) -> dict[str, str]:
        """Every issued token by subscriber (the web app compares a presented token to each in constant time)."""
        rows = self._db.execute("SELECT subscriber, token FROM subscriber_state WHERE token IS NOT NULL")
        return {row["subscriber"]: row["token"] for row in rows}

    # ---- subscriber profiles (digest.profile_book) ------------------------------------------------------------

    def profile_index(self, subscriber: str | None = None) -> dict[str, tuple[str, str | None]]:
        """Every stored profile's (version, synced), by subscriber (or only this subscriber's): what a sync compares
        the folder with."""
        if subscriber is None:
            rows = self._db.execute("SELECT subscriber, version, synced FROM profiles")
        else:
            rows = self._db.execute(
                "SELECT subscriber, version, synced FROM profiles WHERE subscriber = ?", (subscriber,)
            )
        return {row[0]: (row[1], row[2]) for row in rows}

    def profile_records(self, subscribers: Sequence[str] | None = None) -> list[ProfileRecord]:
        """The stored profiles (all, or these subscribers'), by subscriber id."""
        columns = "SELECT subscriber, data, version, synced FROM profiles"
        if subscribers is None:
            rows = self._db.execute(f"{columns} ORDER BY subscriber").fetchall()
        else:
            members, argument = self._engine.member_of("?")
            rows = self._db.execute(
                f"{columns} WHERE subscriber IN (SELECT value FROM {members} AS wanted) ORDER BY subscriber",
                (argument(list(subscribers)),),
            ).fetchall()
        return [ProfileRecord(row[0], bytes(row[1]), row[2], row[3]) for row in rows]

    def profile_signature(self) -> tuple[int, int, int]:
        """Changes whenever a profile is added, changed or removed (a daemon reschedules when it does)."""
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(MAX(revision), 0), (SELECT COALESCE(MAX(id), 0) FROM profile_history)"
            " FROM profiles"
        ).fetchone()
        return (int(row[0]), int(row[1]), int(row[2]))

    def profile_with_email(self, email: str) -> str | None:
        """The subscriber whose profile has this address (compared in lower case), if any."""
        row = self._db.execute(
            "SELECT subscriber FROM profiles WHERE email = ? ORDER BY subscriber LIMIT 1", (email.lower(),)
        ).fetchone()
        return None if row is None else str(row[0])

    def profile_history(self, subscriber: str) -> list[ProfileVersion]:
        """The versions of a subscriber's profile that writes replaced or removed, newest first."""
        rows = self._db.execute(
            "SELECT version, data, replaced_at, replaced_by FROM profile_history WHERE subscriber = ? ORDER BY id DESC",
            (subscriber,),
        )
        return [ProfileVersion(row[0], bytes(row[1]), parse_iso(row[2]), row[3]) for row in rows]

    def write_profiles(
        self,
        changes: Sequence[ProfileChange],
        now: datetime,
        *,
        keep: int = 20,
        before_commit: Callable[[], None] | None = None,
    ) -> list[str]:
        """Apply the changes in one transaction, each only if the stored profile is still what it expects (and,
        with unique_email, no other profile has its address); returns the subscribers whose change was refused.
        A version replaced or removed goes to the profile history (the last `keep` per subscriber).
        `before_commit` runs once the changes are written, when none was refused; if it raises, nothing is."""
        stamp = utc_iso(now)
        refused: list[str] = []
        with self.transaction() as db:
            # Read once, not once per profile: a first sync of 10,000 files would scan the table 10,000 times.
            revisions = itertools.count(
                int(db.execute("SELECT COALESCE(MAX(revision), 0) FROM profiles").fetchone()[0]) + 1
            )
            for change in changes:
                if not self._write_profile(db, change, stamp, keep, next(revisions)):
                    refused.append(change.subscriber)
            if before_commit is not None and not refused:
                before_commit()
        return refused

    def _write_profile(self, db: Connection, change: ProfileChange, stamp: str, keep: int, revision: int) -> bool:
        row = db.execute(
            "SELECT data, version, synced FROM profiles WHERE subscriber = ?", (change.subscriber,)
        ).fetchone()
        current = ABSENT if row is None else row[1]
        if change.expected is not None and change.expected != current:
            return False
        if change.kind == "synced":
            if row is not None:
                db.execute("UPDATE profiles SET synced = ? WHERE subscriber = ?", (change.synced, change.subscriber))
            return row is not None
        if change.kind == "put" and change.unique_email and change.email is not None:
            other = db.execute(
                "SELECT 1 FROM profiles WHERE email = ? AND subscriber <> ?", (change.email, change.subscriber)
            ).fetchone()
            if other is not None:
                return False
        if row is not None and (change.kind == "delete" or row[1] != change.version):
            db.execute(
                "INSERT INTO profile_history (subscriber, data, version, replaced_at, replaced_by)"
                " VALUES (?, ?, ?, ?, ?)",
                (change.subscriber, bytes(row[0]), row[1], stamp, change.by),
            )
            db.execute(
                "DELETE FROM profile_history WHERE subscriber = ? AND id NOT IN"
                " (SELECT id FROM profile_history WHERE subscriber = ? ORDER BY id DESC LIMIT ?)",
                (change.subscriber, change.subscriber, keep),
            )
        if change.kind == "delete":
            db.execute("DELETE FROM profiles WHERE subscriber = ?", (change.subscriber,))
            return True
        synced = change.synced if change.synced is not None or row is None else row[2]
        db.execute(
            "INSERT INTO profiles (subscriber, data, version, synced, email, revision, updated_at, updated_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (subscriber) DO UPDATE SET data = excluded.data, version = excluded.version,"
            " synced = excluded.synced, email = excluded.email, revision = excluded.revision,"
            " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (change.subscriber, change.data, change.version, synced, change.email, revision, stamp, change.by),
        )
        return True

    # ---- sign-ups -----------------------------------------------------------------------------

    def add_signup(
        self, signup: Signup, client: str, now: datetime, limits: SignupLimits, *, network: str | None = None
    ) -> timedelta | None:
        """Record a sign-up request from `client` (a keyed hash of its IP), unless the address or the client
        reached its limit: None when recorded, else how long until one more would be taken. The check and the
        insert are one transaction, so concurrent requests cannot both slip under a limit. Old requests are
        purged first (cheap: an index on expires_at)."""
        with self.transaction() as db:
            self._purge_signups(now, limits)
            wait = self._source_wait(db, client, network, now, limits)
            wait = wait or self._signup_wait(db, "email", signup.email, limits.per_email, limits.email_window, now)
            if wait is not None:
                return wait
            db.execute(
                "INSERT INTO signups (code_hash, email, client, network, profile, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    signup.code_hash,
                    signup.email,
                    client,
                    network,
                    signup.profile,
                    utc_iso(signup.created_at),
                    utc_iso(signup.expires_at),
                ),
            )
        return None

    def signup_client_wait(
        self, client: str, now: datetime, limits: SignupLimits, *, network: str | None = None
    ) -> timedelta | None:
        """How long until `client` may sign up again (None: now): its own limit, its network's, or everyone's. A
        read only, for turning a flood away early."""
        return self._source_wait(self._db, client, network, now, limits)

    def _source_wait(
        self, db: Connection, client: str, network: str | None, now: datetime, limits: SignupLimits
    ) -> timedelta | None:
        window = limits.client_window
        wait = self._signup_wait(db, "client", client, limits.per_client, window, now)
        if wait is None and network is not None and limits.per_network is not None:
            wait = self._signup_wait(db, "network", network, limits.per_network, window, now)
        if wait is None and limits.total is not None:
            wait = self._signup_wait(db, None, "", limits.total, window, now)
        return wait

    @staticmethod
    def _signup_wait(
        db: Connection,
        column: Literal["client", "network", "email"] | None,
        key: str,
        limit: int,
        window: timedelta,
        now: datetime,
    ) -> timedelta | None:
        """How long until one more request fits under `limit` in `window`: those whose `column` is `key`, or all
        of them (column None)."""
        since = utc_iso(now - window)
        where = f"{column} = ? AND " if column else ""
        query = f"SELECT created_at FROM signups WHERE {where}created_at > ? ORDER BY created_at DESC LIMIT ?"
        # The newest `limit` requests in the window: when there are that many, the oldest of them must leave it.
        rows = db.execute(query, ((key,) if column else ()) + (since, limit)).fetchall()
        if len(rows) < limit:
            return None
        return max(parse_iso(rows[-1]["created_at"]) + window - now, timedelta(seconds=1))

    def _purge_signups(self, now: datetime, limits: SignupLimits) -> None:
        # Unconfirmed rows outlive the rate-limit windows, so a purge never lets a limit forget a request.
        keep = max(limits.keep_unconfirmed, limits.email_window, limits.client_window)
        self._db.execute(
            "DELETE FROM signups WHERE expires_at < ? AND (confirmed_at IS NULL OR expires_at < ?)",
            (utc_iso(now - keep), utc_iso(now - max(keep, limits.keep_confirmed))),
        )

    def signup(self, code_hash: str) -> Signup | None:
        """The sign-up request whose confirmation code has this SHA-256 (the caller compares it again in constant
        time)."""
        row = self._db.execute("SELECT * FROM signups WHERE code_hash = ?", (code_hash,)).fetchone()
        if row is None:
            return None
        return Signup(
            code_hash=row["code_hash"],
            email=row["email"],
            profile=row["profile"],
            created_at=parse_iso(row["created_at"]),
            expires_at=parse_iso(row["expires_at"]),
            confirmed_at=parse_iso(row["confirmed_at"]) if row["confirmed_at"] else None,
            subscriber=row["subscriber"],
        )

    def confirm_signup(self, code_hash: str, subscriber: str, now: datetime) -> bool:
        """Mark a request confirmed, for `subscriber`, and forget the profile it asked for (the file holds it now).
        False when it was confirmed already (a replay, or a second tab)."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE signups SET confirmed_at = ?, subscriber = ?, profile = '{}'"
                " WHERE code_hash = ? AND confirmed_at IS NULL",
                (utc_iso(now), subscriber, code_hash),
            )
        return cursor.rowcount > 0


def _other_publisher_doi(one: str | None, other: str | None) -> bool:
    """Two journal DOIs that differ (an arXiv DOI names the arXiv paper itself, so it never contradicts)."""
    return bool(one and other and one != other and arxiv_id_from_doi(one) is None and arxiv_id_from_doi(other) is None)
