"""The store's schema: numbered migrations, the same list for SQLite and PostgreSQL, applied in order, each in its
own transaction (SQLite's PRAGMA user_version, PostgreSQL's schema_version table, says how many have run).

A migration whose statements must differ holds both spellings; they make the same tables, columns and indexes
(tests/test_store.py compares them). PostgreSQL's differ in:
- types: SQLite's INTEGER is 64 bits and REAL a double, so they are BIGINT and DOUBLE PRECISION there; an
  INTEGER PRIMARY KEY (SQLite's rowid, numbered by the database) is a BIGINT identity column;
- text compares byte by byte, as in SQLite (ids, times, sources sort the same on both, whatever the database's
  locale): every TEXT column is COLLATE "C";
- WITHOUT ROWID (how SQLite lays out a table) has no equivalent and is left out; random() is a float there.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    sqlite: str
    postgresql: str | None = None  # None: the same statements
    # A data step SQL cannot do on both engines (a SHA-256), run in the migration's transaction after its statements:
    # the name of a function of digest.store.core's BACKFILLS.
    backfill: str | None = None

    def script(self, engine: str) -> str:
        return self.postgresql if engine == "postgresql" and self.postgresql is not None else self.sqlite


_MIGRATIONS: list[Migration] = [
    # 1: papers, where they came from, ingested files, feedback, the send ledger, subscriber state.
    Migration(
        sqlite="""
        CREATE TABLE papers (
            id TEXT PRIMARY KEY,
            arxiv_id TEXT UNIQUE,
            arxiv_version INTEGER,
            doi TEXT UNIQUE,
            title_key TEXT NOT NULL,
            title TEXT NOT NULL,
            abstract TEXT NOT NULL,
            authors TEXT NOT NULL DEFAULT '[]',
            url TEXT,
            links TEXT NOT NULL DEFAULT '[]',
            categories TEXT NOT NULL DEFAULT '[]',
            published TEXT,
            first_seen TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            seq INTEGER NOT NULL
        );
        CREATE INDEX papers_title_key ON papers(title_key);
        CREATE INDEX papers_first_seen ON papers(first_seen, seq);
        CREATE TABLE paper_sources (
            paper_id TEXT NOT NULL REFERENCES papers(id),
            source TEXT NOT NULL,
            PRIMARY KEY (paper_id, source)
        ) WITHOUT ROWID;
        CREATE TABLE ingested_files (
            content_hash TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            entries INTEGER NOT NULL,
            ingested_at TEXT NOT NULL
        );
        CREATE TABLE feedback (
            subscriber TEXT NOT NULL,
            paper_id TEXT NOT NULL,
            rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),
            at TEXT NOT NULL,
            PRIMARY KEY (subscriber, paper_id)
        ) WITHOUT ROWID;
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            subscriber TEXT NOT NULL,
            message_id TEXT NOT NULL UNIQUE,
            channel TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('sending', 'sent', 'failed')),
            subject TEXT NOT NULL DEFAULT '',
            candidates_until TEXT NOT NULL,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            error TEXT
        );
        CREATE INDEX messages_subscriber ON messages(subscriber, created_at);
        CREATE TABLE message_papers (
            message INTEGER NOT NULL REFERENCES messages(id),
            subscriber TEXT NOT NULL,
            paper_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            score REAL NOT NULL,
            why TEXT NOT NULL,
            PRIMARY KEY (message, paper_id)
        ) WITHOUT ROWID;
        CREATE INDEX message_papers_subscriber ON message_papers(subscriber, paper_id);
        CREATE TABLE subscriber_state (
            subscriber TEXT PRIMARY KEY,
            paused INTEGER NOT NULL DEFAULT 0,
            paused_at TEXT,
            token TEXT UNIQUE
        );
        """,
        postgresql="""
        CREATE TABLE papers (
            id TEXT COLLATE "C" PRIMARY KEY,
            arxiv_id TEXT COLLATE "C" UNIQUE,
            arxiv_version BIGINT,
            doi TEXT COLLATE "C" UNIQUE,
            title_key TEXT COLLATE "C" NOT NULL,
            title TEXT COLLATE "C" NOT NULL,
            abstract TEXT COLLATE "C" NOT NULL,
            authors TEXT COLLATE "C" NOT NULL DEFAULT '[]',
            url TEXT COLLATE "C",
            links TEXT COLLATE "C" NOT NULL DEFAULT '[]',
            categories TEXT COLLATE "C" NOT NULL DEFAULT '[]',
            published TEXT COLLATE "C",
            first_seen TEXT COLLATE "C" NOT NULL,
            updated_at TEXT COLLATE "C" NOT NULL,
            seq BIGINT NOT NULL
        );
        CREATE INDEX papers_title_key ON papers(title_key);
        CREATE INDEX papers_first_seen ON papers(first_seen, seq);
        CREATE TABLE paper_sources (
            paper_id TEXT COLLATE "C" NOT NULL REFERENCES papers(id),
            source TEXT COLLATE "C" NOT NULL,
            PRIMARY KEY (paper_id, source)
        );
        CREATE TABLE ingested_files (
            content_hash TEXT COLLATE "C" PRIMARY KEY,
            source TEXT COLLATE "C" NOT NULL,
            entries BIGINT NOT NULL,
            ingested_at TEXT COLLATE "C" NOT NULL
        );
        CREATE TABLE feedback (
            subscriber TEXT COLLATE "C" NOT NULL,
            paper_id TEXT COLLATE "C" NOT NULL,
            rating BIGINT NOT NULL CHECK (rating IN (-1, 1)),
            at TEXT COLLATE "C" NOT NULL,
            PRIMARY KEY (subscriber, paper_id)
        );
        CREATE TABLE messages (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            subscriber TEXT COLLATE "C" NOT NULL,
            message_id TEXT COLLATE "C" NOT NULL UNIQUE,
            channel TEXT COLLATE "C" NOT NULL,
            state TEXT COLLATE "C" NOT NULL CHECK (state IN ('sending', 'sent', 'failed')),
            subject TEXT COLLATE "C" NOT NULL DEFAULT '',
            candidates_until TEXT COLLATE "C" NOT NULL,
            created_at TEXT COLLATE "C" NOT NULL,
            finished_at TEXT COLLATE "C",
            error TEXT COLLATE "C"
        );
        CREATE INDEX messages_subscriber ON messages(subscriber, created_at);
        CREATE TABLE message_papers (
            message BIGINT NOT NULL REFERENCES messages(id),
            subscriber TEXT COLLATE "C" NOT NULL,
            paper_id TEXT COLLATE "C" NOT NULL,
            position BIGINT NOT NULL,
            score DOUBLE PRECISION NOT NULL,
            why TEXT COLLATE "C" NOT NULL,
            PRIMARY KEY (message, paper_id)
        );
        CREATE INDEX message_papers_subscriber ON message_papers(subscriber, paper_id);
        CREATE TABLE subscriber_state (
            subscriber TEXT COLLATE "C" PRIMARY KEY,
            paused BIGINT NOT NULL DEFAULT 0,
            paused_at TEXT COLLATE "C",
            token TEXT COLLATE "C" UNIQUE
        );
        """,
    ),
    # 2: when each subscriber's digest was last attempted (sent, or found to have nothing to send).
    Migration(
        sqlite="""
        ALTER TABLE subscriber_state ADD COLUMN last_attempt_at TEXT;
        """,
        postgresql="""
        ALTER TABLE subscriber_state ADD COLUMN last_attempt_at TEXT COLLATE "C";
        """,
    ),
    # 3: which store this is (a random id: a file deleted and re-created is another store), and a counter
    # bumped by every commit that adds or changes papers (what a fitted model is valid for).
    Migration(
        sqlite="""
        CREATE TABLE store_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO store_meta VALUES ('store_id', abs(random() / 2));
        INSERT INTO store_meta VALUES ('papers_version', 0);
        """,
        postgresql="""
        CREATE TABLE store_meta (key TEXT COLLATE "C" PRIMARY KEY, value BIGINT NOT NULL);
        INSERT INTO store_meta VALUES ('store_id', floor(random() * 4611686018427387904)::BIGINT);
        INSERT INTO store_meta VALUES ('papers_version', 0);
        """,
    ),
    # 4: windows follow commit order (the last paper sequence number a digest's planner could see), and a
    # message is only stuck once its hand-over started (before that its papers go back to the candidates).
    Migration(
        sqlite="""
        ALTER TABLE messages ADD COLUMN candidates_until_seq INTEGER;
        ALTER TABLE messages ADD COLUMN handed_over_at TEXT;
        UPDATE messages SET handed_over_at = created_at;
        UPDATE messages SET candidates_until_seq = COALESCE(
            (SELECT MIN(seq) FROM papers WHERE papers.first_seen > messages.candidates_until) - 1,
            (SELECT COALESCE(MAX(seq), 0) FROM papers)
        );
        CREATE INDEX papers_seq ON papers(seq);
        CREATE INDEX messages_in_flight ON messages(created_at, id) WHERE state = 'sending';
        CREATE INDEX messages_created ON messages(created_at, id);
        """,
        postgresql="""
        ALTER TABLE messages ADD COLUMN candidates_until_seq BIGINT;
        ALTER TABLE messages ADD COLUMN handed_over_at TEXT COLLATE "C";
        UPDATE messages SET handed_over_at = created_at;
        UPDATE messages SET candidates_until_seq = COALESCE(
            (SELECT MIN(seq) FROM papers WHERE papers.first_seen > messages.candidates_until) - 1,
            (SELECT COALESCE(MAX(seq), 0) FROM papers)
        );
        CREATE INDEX papers_seq ON papers(seq);
        CREATE INDEX messages_in_flight ON messages(created_at, id) WHERE state = 'sending';
        CREATE INDEX messages_created ON messages(created_at, id);
        """,
    ),
    # 5: what each local file looked like (inode, size, times) when its content was last read: an unchanged
    # file in the inbox is then skipped on a stat, not read and hashed again on every ingest.
    Migration(
        sqlite="""
        CREATE TABLE file_stats (
            path TEXT PRIMARY KEY,
            signature TEXT NOT NULL,
            content_hash TEXT NOT NULL
        ) WITHOUT ROWID;
        """,
        postgresql="""
        CREATE TABLE file_stats (
            path TEXT COLLATE "C" PRIMARY KEY,
            signature TEXT COLLATE "C" NOT NULL,
            content_hash TEXT COLLATE "C" NOT NULL
        );
        """,
    ),
    # 6: who was sent each paper: planning asks it for the window's new papers only, not for every paper a
    # subscriber was ever sent (a cost that would grow with the history).
    Migration(
        """
        CREATE INDEX message_papers_paper ON message_papers(paper_id);
        """
    ),
    # 7: where the window of a subscriber whose last plan had nothing to send ends: those papers were weighed and
    # found wanting, so the next digest starts after them (else its window, and its cost, grow every day).
    Migration(
        sqlite="""
        ALTER TABLE subscriber_state ADD COLUMN empty_window_seq INTEGER;
        """,
        postgresql="""
        ALTER TABLE subscriber_state ADD COLUMN empty_window_seq BIGINT;
        """,
    ),
    # 8: when the store first saw each subscriber: a new subscriber's first digest waits for their first
    # scheduled slot after that (instead of going out the moment the daemon starts).
    Migration(
        sqlite="""
        ALTER TABLE subscriber_state ADD COLUMN joined_at TEXT;
        """,
        postgresql="""
        ALTER TABLE subscriber_state ADD COLUMN joined_at TEXT COLLATE "C";
        """,
    ),
    # 9: arXiv lookups by title (digest.enrich): every answer, "not on arXiv" (a NULL arxiv_id) included, so that
    # no title is ever asked twice; the ids of records merged into another (a daily-papers record found to be an
    # arXiv paper already stored), so links in emails sent before the merge still find their paper; and an index
    # of the papers still without a link, which each ingest looks for.
    Migration(
        sqlite="""
        CREATE TABLE arxiv_lookups (
            title_key TEXT PRIMARY KEY,
            arxiv_id TEXT,
            answer TEXT,
            asked_at TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE paper_aliases (
            alias TEXT PRIMARY KEY,
            paper_id TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX papers_unlinked ON papers(title_key, seq) WHERE arxiv_id IS NULL AND url IS NULL;
        """,
        postgresql="""
        CREATE TABLE arxiv_lookups (
            title_key TEXT COLLATE "C" PRIMARY KEY,
            arxiv_id TEXT COLLATE "C",
            answer TEXT COLLATE "C",
            asked_at TEXT COLLATE "C" NOT NULL
        );
        CREATE TABLE paper_aliases (
            alias TEXT COLLATE "C" PRIMARY KEY,
            paper_id TEXT COLLATE "C" NOT NULL
        );
        CREATE INDEX papers_unlinked ON papers(title_key, seq) WHERE arxiv_id IS NULL AND url IS NULL;
        """,
    ),
    # 10: sign-ups waiting for (or given) their confirmation (digest.web.signup): the code only as its SHA-256, the
    # requested profile as JSON (emptied once confirmed), the address casefolded and a keyed hash of the client IP
    # (never the IP) for the rate limits. A row without a code is a notice sent to an address already subscribed.
    Migration(
        sqlite="""
        CREATE TABLE signups (
            id INTEGER PRIMARY KEY,
            code_hash TEXT UNIQUE,
            email TEXT NOT NULL,
            client TEXT NOT NULL,
            profile TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            confirmed_at TEXT,
            subscriber TEXT
        );
        CREATE INDEX signups_email ON signups(email, created_at);
        CREATE INDEX signups_client ON signups(client, created_at);
        CREATE INDEX signups_expires ON signups(expires_at);
        """,
        postgresql="""
        CREATE TABLE signups (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            code_hash TEXT COLLATE "C" UNIQUE,
            email TEXT COLLATE "C" NOT NULL,
            client TEXT COLLATE "C" NOT NULL,
            profile TEXT COLLATE "C" NOT NULL,
            created_at TEXT COLLATE "C" NOT NULL,
            expires_at TEXT COLLATE "C" NOT NULL,
            confirmed_at TEXT COLLATE "C",
            subscriber TEXT COLLATE "C"
        );
        CREATE INDEX signups_email ON signups(email, created_at);
        CREATE INDEX signups_client ON signups(client, created_at);
        CREATE INDEX signups_expires ON signups(expires_at);
        """,
    ),
    # 11: several senders on one database (PostgreSQL). `live` marks a message's papers while the message is
    # `sending` or `sent` (NULL once it failed), and a unique index over the live ones is the constraint that
    # refuses a paper already sending or sent to that subscriber, whoever writes it. `send_claims`: which sender
    # holds each subscriber, until when (seconds since the epoch on the database's clock), and when the last
    # holder finished with them (digest.claims).
    Migration(
        sqlite="""
        ALTER TABLE message_papers ADD COLUMN live INTEGER CHECK (live = 1);
        UPDATE message_papers SET live = 1 WHERE message IN (SELECT id FROM messages WHERE state IN ('sending', 'sent'))
            AND NOT EXISTS (SELECT 1 FROM message_papers o JOIN messages m ON m.id = o.message
                WHERE m.state IN ('sending', 'sent') AND o.subscriber = message_papers.subscriber
                AND o.paper_id = message_papers.paper_id AND o.message < message_papers.message);
        CREATE UNIQUE INDEX message_papers_live ON message_papers(subscriber, paper_id) WHERE live = 1;
        CREATE TABLE send_claims (
            subscriber TEXT PRIMARY KEY,
            holder TEXT,
            expires_at REAL,
            finished_at REAL
        ) WITHOUT ROWID;
        """,
        postgresql="""
        ALTER TABLE message_papers ADD COLUMN live BIGINT CHECK (live = 1);
        UPDATE message_papers SET live = 1 WHERE message IN (SELECT id FROM messages WHERE state IN ('sending', 'sent'))
            AND NOT EXISTS (SELECT 1 FROM message_papers o JOIN messages m ON m.id = o.message
                WHERE m.state IN ('sending', 'sent') AND o.subscriber = message_papers.subscriber
                AND o.paper_id = message_papers.paper_id AND o.message < message_papers.message);
        CREATE UNIQUE INDEX message_papers_live ON message_papers(subscriber, paper_id) WHERE live = 1;
        CREATE TABLE send_claims (
            subscriber TEXT COLLATE "C" PRIMARY KEY,
            holder TEXT COLLATE "C",
            expires_at DOUBLE PRECISION,
            finished_at DOUBLE PRECISION
        );
        """,
    ),
    # 12: the server's secrets (the key of form tokens and settings keys), in the store itself: every host that shares
    # the database (several web servers and senders on one PostgreSQL) then makes and checks the same keys.
    Migration(
        sqlite="""
        CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
        """,
        postgresql="""
        CREATE TABLE secrets (name TEXT COLLATE "C" PRIMARY KEY, value TEXT COLLATE "C" NOT NULL);
        """,
    ),
    # 13: subscriber profiles in the store (digest.profile_book), so that senders and web servers on any host read
    # them without a shared folder. `data`: the profile file's bytes; `version`: their hash; `synced`: the version
    # of the subscribers folder's file at the last sync (NULL: never in a folder); `email`: the address in lower
    # case (NULL when the profile does not load), one profile per address; `revision`: raised by every write (a
    # daemon notices changes by it). `profile_history`: the versions a write replaced or removed.
    Migration(
        sqlite="""
        CREATE TABLE profiles (
            subscriber TEXT PRIMARY KEY,
            data BLOB NOT NULL,
            version TEXT NOT NULL,
            synced TEXT,
            email TEXT,
            revision INTEGER NOT NULL,
            updated_at TEXT NOT NULL,
            updated_by TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX profiles_email ON profiles(email);
        CREATE TABLE profile_history (
            id INTEGER PRIMARY KEY,
            subscriber TEXT NOT NULL,
            data BLOB NOT NULL,
            version TEXT NOT NULL,
            replaced_at TEXT NOT NULL,
            replaced_by TEXT NOT NULL
        );
        CREATE INDEX profile_history_subscriber ON profile_history(subscriber, id);
        """,
        postgresql="""
        CREATE TABLE profiles (
            subscriber TEXT COLLATE "C" PRIMARY KEY,
            data BYTEA NOT NULL,
            version TEXT COLLATE "C" NOT NULL,
            synced TEXT COLLATE "C",
            email TEXT COLLATE "C",
            revision BIGINT NOT NULL,
            updated_at TEXT COLLATE "C" NOT NULL,
            updated_by TEXT COLLATE "C" NOT NULL
        );
        CREATE INDEX profiles_email ON profiles(email);
        CREATE TABLE profile_history (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            subscriber TEXT COLLATE "C" NOT NULL,
            data BYTEA NOT NULL,
            version TEXT COLLATE "C" NOT NULL,
            replaced_at TEXT COLLATE "C" NOT NULL,
            replaced_by TEXT COLLATE "C" NOT NULL
        );
        CREATE INDEX profile_history_subscriber ON profile_history(subscriber, id);
        """,
    ),
    # 14: tokens and settings keys found by an index, not by comparing every reader's (a web host's every request
    # would cost a scan of all readers): the SHA-256 of each token (existing ones hashed by the migration itself),
    # and of each settings key (filled by whoever holds the secret the key is made with; a new token empties it).
    # Sign-ups get the client's network (IPv4 /24, IPv6 /48, keyed hash), a limit of its own, and an index on
    # their time for the limit on everyone.
    Migration(
        sqlite="""
        ALTER TABLE subscriber_state ADD COLUMN token_hash TEXT;
        ALTER TABLE subscriber_state ADD COLUMN settings_hash TEXT;
        CREATE UNIQUE INDEX subscriber_state_token_hash ON subscriber_state(token_hash) WHERE token_hash IS NOT NULL;
        CREATE UNIQUE INDEX subscriber_state_settings_hash ON subscriber_state(settings_hash)
            WHERE settings_hash IS NOT NULL;
        CREATE INDEX subscriber_state_settings_unhashed ON subscriber_state(subscriber)
            WHERE token IS NOT NULL AND settings_hash IS NULL;
        ALTER TABLE signups ADD COLUMN network TEXT;
        CREATE INDEX signups_network ON signups(network, created_at);
        CREATE INDEX signups_created ON signups(created_at);
        """,
        postgresql="""
        ALTER TABLE subscriber_state ADD COLUMN token_hash TEXT COLLATE "C";
        ALTER TABLE subscriber_state ADD COLUMN settings_hash TEXT COLLATE "C";
        CREATE UNIQUE INDEX subscriber_state_token_hash ON subscriber_state(token_hash) WHERE token_hash IS NOT NULL;
        CREATE UNIQUE INDEX subscriber_state_settings_hash ON subscriber_state(settings_hash)
            WHERE settings_hash IS NOT NULL;
        CREATE INDEX subscriber_state_settings_unhashed ON subscriber_state(subscriber)
            WHERE token IS NOT NULL AND settings_hash IS NULL;
        ALTER TABLE signups ADD COLUMN network TEXT COLLATE "C";
        CREATE INDEX signups_network ON signups(network, created_at);
        CREATE INDEX signups_created ON signups(created_at);
        """,
        backfill="hash_tokens",
    ),
    # 15: turns for requests to an outside service that asks for spacing (the arXiv API: one request every 3 s),
    # shared by every process and host on the database: when the next request of each kind may start, on the
    # database's clock (seconds since the epoch).
    Migration(
        sqlite="""
        CREATE TABLE request_slots (name TEXT PRIMARY KEY, ready_at REAL NOT NULL) WITHOUT ROWID;
        """,
        postgresql="""
        CREATE TABLE request_slots (name TEXT COLLATE "C" PRIMARY KEY, ready_at DOUBLE PRECISION NOT NULL);
        """,
    ),
]
SCHEMA_VERSION = len(_MIGRATIONS)


def _statements(script: str) -> list[str]:
    """A migration's statements, split where SQLite says a statement is complete (a ';' inside a string literal
    or a trigger body does not end one), so that each runs in the migration's own transaction."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"an incomplete statement at the end of a migration: {current.strip()[:60]!r}")
    return statements
