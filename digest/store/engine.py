"""The two databases the store runs on, and everything that differs between them.

digest.store.core writes its SQL once, in what both engines accept (`?` placeholders, INSERT ... ON CONFLICT,
RETURNING, named subqueries); what still differs lives here:

| | SQLite (the default: the file of [paths] database) | PostgreSQL ([database] url) |
|---|---|---|
| connection | the sqlite3 connection itself (no layer on the hot path) | psycopg 3, autocommit, `?` -> `%s` |
| a write transaction | BEGIN IMMEDIATE: one writer at a time | BEGIN + the store's advisory lock: the same |
| waiting for a writer | busy timeout | lock_timeout |
| schema version | PRAGMA user_version | the schema_version table |
| two-argument maximum | MAX(a, b) | GREATEST(a, b) |
| index hints | INDEXED BY | none (its planner has statistics) |
| errors | sqlite3's | psycopg's |

Either way a full disk, a database that stays locked, a refused value and a unique violation become the same
StoreError subclasses (digest.errors), so callers never see a driver's exception from a write.
"""

from __future__ import annotations

import json
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol
from urllib.parse import urlsplit, urlunsplit

from digest.errors import StoreConflictError, StoreError, StoreValueError

if TYPE_CHECKING:
    import psycopg

# RETURNING (3.35) is the newest SQL the store uses.
SQLITE_MINIMUM = (3, 35, 0)
# The key of the advisory lock every PostgreSQL write transaction of the store takes (any constant that no other
# program on the same database uses: "digest" in ASCII).
WRITE_LOCK = 0x646967657374
# The session-level advisory lock the one `digest run` that fires scheduled sends holds ("digest.s").
SCHEDULER_LOCK = 0x6469676573742E73


class Row(Protocol):
    """A result row, readable by position and by column name (sqlite3.Row, or _PostgresRow)."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What digest.store.core asks of a connection: sqlite3.Connection has it, _PostgresConnection too."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...

    def close(self) -> None: ...


class Engine(ABC):
    """One database the store can live in: how to connect, how a write transaction goes, where the schema version
    is kept, the few spellings that differ, and what its errors mean."""

    name: ClassVar[str]
    # MAX(a, b) in SQLite, GREATEST(a, b) in PostgreSQL (whose MAX is only the aggregate).
    greatest: ClassVar[str]

    @property
    @abstractmethod
    def where(self) -> str:
        """What messages name: the file, or the URL without a password."""

    @abstractmethod
    def connect(self, timeout: float) -> Connection:
        """A new connection; `timeout`: how long a write waits for another writer before it gives up."""

    @abstractmethod
    def transaction(self, db: Connection, *, exclusive: bool = True) -> AbstractContextManager[Connection]:
        """All or nothing; errors mapped to StoreError (see the module's docstring). `exclusive`: one writer at a
        time (False: PostgreSQL lets it run beside other writers, for writes that constraints and row locks keep
        right; SQLite has one writer at a time either way)."""

    @abstractmethod
    def schema_version(self, db: Connection) -> int: ...

    @abstractmethod
    def set_schema_version(self, db: Connection, version: int) -> None:
        """Inside a migration's transaction."""

    @abstractmethod
    def tables(self, db: Connection) -> set[str]: ...

    # Now, in seconds since the epoch, on the database's clock; and what makes a locking read skip rows another
    # transaction has locked (PostgreSQL's FOR UPDATE SKIP LOCKED; SQLite has one writer, so nothing to skip).
    epoch_now: ClassVar[str]
    skip_locked: ClassVar[str] = ""
    # A read that keeps the rows it read from changing until the transaction ends (SQLite: its one writer does).
    for_share: ClassVar[str] = ""

    def indexed_by(self, index: str) -> str:
        """An index hint where the engine takes one (after a table name in FROM)."""
        return ""

    @staticmethod
    @abstractmethod
    def member_of(placeholder: str) -> tuple[str, Callable[[list[str]], Any]]:
        """A list of texts passed as one parameter, whatever its length: the table expression to select `value`
        from, and what turns the list into that parameter."""

    def open_error(self, exc: BaseException) -> StoreError | None:
        """What an error while checking and migrating a newly opened database means (None: raise it as it is)."""
        return None


# ---- SQLite ---------------------------------------------------------------------------------------------------


class SQLiteEngine(Engine):
    """The file of [paths] database, in WAL mode. The connection handed to the store is sqlite3's own."""

    name = "sqlite"
    greatest = "MAX"
    epoch_now = "((julianday('now') - 2440587.5) * 86400.0)"

    @staticmethod
    def member_of(placeholder: str) -> tuple[str, Callable[[list[str]], Any]]:
        return f"(SELECT value FROM json_each({placeholder}))", json.dumps

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @property
    def where(self) -> str:
        return str(self.path)

    def connect(self, timeout: float) -> Connection:
        if sqlite3.sqlite_version_info < SQLITE_MINIMUM:
            raise StoreError(
                f"this Python's SQLite is {sqlite3.sqlite_version}; paper-digest needs "
                f"{'.'.join(map(str, SQLITE_MINIMUM))} or newer (a newer Python, or set [database] url)"
            )
        try:
            size = self.path.stat().st_size if self.path.exists() else None
        except OSError as exc:
            raise StoreError(
                f"{self.path}: cannot open the database ({exc.strerror}); check [paths] database"
            ) from None
        if size == 0:
            raise StoreError(
                f"{self.path}: the database file is empty (0 bytes), so the send history is gone; restore it from a "
                "backup, or delete the file to start a new store (papers already sent would be sent again)"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=True)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the database ({exc}); check [paths] database") from None
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreError(f"{self.path}: not a paper-digest database ({exc})") from None
        return db

    @contextmanager
    def transaction(self, db: Connection, *, exclusive: bool = True) -> Iterator[Connection]:
        """BEGIN IMMEDIATE ... COMMIT: writers queue (up to the busy timeout) instead of failing (always one writer
        at a time: `exclusive` changes nothing here)."""
        assert isinstance(db, sqlite3.Connection)
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            yield db
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from None
            raise
        else:
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise self._error(exc) from None

    def _error(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if isinstance(exc, sqlite3.IntegrityError):
            return StoreConflictError(f"{self.path}: the database refused a row ({text})")
        if isinstance(exc, (sqlite3.DataError, sqlite3.InterfaceError)):
            return StoreValueError(f"{self.path}: the database refused a value ({text})")
        return write_error(self.where, text)

    def schema_version(self, db: Connection) -> int:
        return int(db.execute("PRAGMA user_version").fetchone()[0])

    def set_schema_version(self, db: Connection, version: int) -> None:
        db.execute(f"PRAGMA user_version = {int(version)}")

    def tables(self, db: Connection) -> set[str]:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def indexed_by(self, index: str) -> str:
        return f"INDEXED BY {index}"

    def open_error(self, exc: BaseException) -> StoreError | None:
        if isinstance(exc, sqlite3.DatabaseError):
            return StoreError(f"{self.path}: not a paper-digest database ({exc})")
        return None


def write_error(where: str, text: str) -> StoreError:
    """A write the database could not take, said the same way for both engines."""
    lowered = text.lower()
    if "full" in lowered or "no space left" in lowered:
        return StoreError(f"{where}: the disk is full; nothing of this step was recorded; free space and run again")
    if "locked" in lowered or "busy" in lowered or "lock timeout" in lowered:
        return StoreError(f"{where}: the database stayed busy (another process held a long write); run again")
    return StoreError(f"{where}: cannot write to the database ({text})")


# ---- PostgreSQL -----------------------------------------------------------------------------------------------

POSTGRES_SCHEMES = ("postgresql", "postgres")
POSTGRES_EXTRA = "pip install 'paper-digest[postgres]'"


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***: what messages and logs may show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@lru_cache(maxsize=512)
def postgres_sql(sql: str) -> str:
    """A statement of the store in psycopg's spelling: `?` placeholders become `%s`, a literal `%` becomes `%%`
    (neither is touched inside a quoted string or name). Cached: the store runs the same few statements."""
    out: list[str] = []
    for piece in re.split(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")", sql):
        if piece.startswith(("'", '"')):
            out.append(piece.replace("%", "%%"))
        else:
            out.append(piece.replace("%", "%%").replace("?", "%s"))
    return "".join(out)


class _PostgresRow:
    """A row readable by position and by name, like sqlite3.Row (what the store's code reads)."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: dict[str, int], values: Sequence[Any]) -> None:
        self._names = names
        self._values = values

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._names[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, (_PostgresRow, tuple)) else NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._values))

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._names, self._values, strict=True))!r})"

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: Any) -> Any:
    names = {column.name: index for index, column in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> _PostgresRow:
        return _PostgresRow(names, values)

    return make


class _PostgresConnection:
    """A psycopg connection spoken to like sqlite3's: `?` placeholders, execute() on the connection, and every
    driver error raised as a StoreError."""

    def __init__(self, raw: psycopg.Connection[Any], engine: PostgresEngine) -> None:
        self.raw = raw
        self._engine = engine

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        import psycopg

        cursor = self.raw.cursor()
        try:
            if parameters:
                cursor.execute(postgres_sql(sql), parameters)
            else:
                cursor.execute(sql)
        except psycopg.Error as exc:
            raise self._engine.error(exc) from exc
        return cursor

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        import psycopg

        cursor = self.raw.cursor()
        try:
            cursor.executemany(postgres_sql(sql), parameters)
        except psycopg.Error as exc:
            raise self._engine.error(exc) from exc
        return cursor

    def close(self) -> None:
        self.raw.close()


class PostgresEngine(Engine):
    """A PostgreSQL database ([database] url), through psycopg 3. The password, when there is one, comes from the
    environment variable [database] password_env names; it is never part of the URL, a message or a log line."""

    name = "postgresql"
    greatest = "GREATEST"
    epoch_now = "EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION"
    skip_locked = "FOR UPDATE SKIP LOCKED"
    for_share = "FOR SHARE"

    @staticmethod
    def member_of(placeholder: str) -> tuple[str, Callable[[list[str]], Any]]:
        return f"(SELECT unnest({placeholder}::TEXT[]) AS value)", list

    def __init__(self, url: str, password: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in POSTGRES_SCHEMES:
            raise StoreError(f"{redact_url(url)}: not a postgresql:// URL; check [database] url")
        if parts.password is not None:
            raise StoreError(
                f"{redact_url(url)}: the URL holds a password; name an environment variable in [database] "
                "password_env instead"
            )
        self.url = url
        self._password = password

    def __repr__(self) -> str:
        return f"PostgresEngine({self.url!r})"

    @property
    def where(self) -> str:
        return self.url

    def connect(self, timeout: float) -> Connection:
        try:
            import psycopg
        except ImportError:
            raise StoreError(
                f"{self.url}: [database] url names a PostgreSQL server, but psycopg is not installed; {POSTGRES_EXTRA}"
            ) from None
        extra: dict[str, Any] = {"password": self._password} if self._password is not None else {}
        try:
            raw = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(1, round(timeout)),
                row_factory=_row_factory,
                **extra,
            )
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise StoreError(
                f"{self.url}: cannot connect to the database ({reason}); check [database] url and password_env"
            ) from None
        db = _PostgresConnection(raw, self)
        try:
            # Waiting for another writer (the store's lock) or a row lock ends after `timeout`, like SQLite's.
            db.execute(f"SET lock_timeout = {max(1, round(timeout * 1000))}")
        except StoreError:
            raw.close()
            raise
        return db

    @contextmanager
    def transaction(self, db: Connection, *, exclusive: bool = True) -> Iterator[Connection]:
        """BEGIN, then the store's advisory lock: one writer at a time, as with SQLite's BEGIN IMMEDIATE (so a
        check and the write it guards cannot interleave with another writer's). Every statement after the lock
        sees what the writers before committed (READ COMMITTED). `exclusive=False` leaves the lock out: the send
        ledger's writes, which the unique index message_papers_live and row locks keep right (so that senders on
        several hosts do not queue behind each other's every message)."""
        assert isinstance(db, _PostgresConnection)
        try:
            db.execute("BEGIN")
            if exclusive:
                db.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        except BaseException:
            _rollback(db)
            raise
        try:
            yield db
        except BaseException:
            _rollback(db)
            raise
        else:
            try:
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise

    def error(self, exc: psycopg.Error) -> StoreError:
        """What a driver error means, said the way the SQLite side says it."""
        from psycopg import errors

        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, errors.DiskFull):
            return write_error(self.where, "disk full")
        if isinstance(exc, (errors.LockNotAvailable, errors.DeadlockDetected, errors.QueryCanceled)):
            return write_error(self.where, "locked")  # lock_timeout ran out while another writer held the lock
        if isinstance(exc, errors.IntegrityError):  # a unique, foreign key, check or not-null constraint
            return StoreConflictError(f"{self.where}: the database refused a row ({text})")
        if isinstance(exc, errors.DataError):  # a value out of range, a NUL character in a text
            return StoreValueError(f"{self.where}: the database refused a value ({text})")
        if isinstance(exc, errors.OperationalError):  # the connection is lost, the server shuts down
            return StoreError(f"{self.where}: the database cannot be used ({text}); run again")
        return StoreError(f"{self.where}: the database refused a statement ({text})")

    def schema_version(self, db: Connection) -> int:
        if db.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
            return 0
        row = db.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    def set_schema_version(self, db: Connection, version: int) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        db.execute("DELETE FROM schema_version")
        db.execute("INSERT INTO schema_version VALUES (?)", (version,))

    def tables(self, db: Connection) -> set[str]:
        return {row[0] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}


def _rollback(db: _PostgresConnection) -> None:
    """End a failed transaction; a connection that is gone has nothing to roll back."""
    import psycopg

    try:
        if db.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            db.raw.execute("ROLLBACK")
    except psycopg.Error:
        pass


# ---- which one --------------------------------------------------------------------------------------------------


class DatabaseSettings(Protocol):
    """[database] of config.toml (digest.config.Database)."""

    @property
    def url(self) -> str | None: ...

    def password(self) -> str | None: ...


def engine_for(database: DatabaseSettings, path: Path) -> Engine:
    """The PostgreSQL database of [database] url, else the SQLite file `path` ([paths] database)."""
    if database.url is None:
        return SQLiteEngine(path)
    return PostgresEngine(database.url, database.password())
