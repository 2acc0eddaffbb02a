"""The paper store: papers once each, where they came from, the send ledger, feedback, subscriber state; in the
SQLite file of [paths] database, or in the PostgreSQL database of [database] url (digest.store.engine).
digest.store.core is the only module that speaks SQL; open_store is how everything that has a config opens it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from digest.store.core import INGEST_CHUNK, Store
from digest.store.engine import Engine, PostgresEngine, SQLiteEngine, engine_for
from digest.store.records import (
    ABSENT,
    Message,
    MessageState,
    Outcome,
    PickRecord,
    ProfileChange,
    ProfileRecord,
    ProfileVersion,
    StoredFile,
    SubscriberState,
    parse_iso,
    profile_version,
    utc_iso,
)
from digest.store.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from digest.config import Config


def open_store(config: Config, *, timeout: float = 30.0) -> Store:
    """The store config.toml names: the PostgreSQL database of [database] url (its password read now from the
    variable [database] password_env names), else the SQLite file of [paths] database. `timeout`: how long a
    write waits for another writer."""
    return Store(config.paths.database, timeout=timeout, engine=engine_for(config.database, config.paths.database))


__all__ = [
    "ABSENT",
    "INGEST_CHUNK",
    "SCHEMA_VERSION",
    "Engine",
    "Message",
    "MessageState",
    "Outcome",
    "PickRecord",
    "ProfileChange",
    "ProfileRecord",
    "ProfileVersion",
    "PostgresEngine",
    "SQLiteEngine",
    "Store",
    "StoredFile",
    "SubscriberState",
    "engine_for",
    "open_store",
    "parse_iso",
    "profile_version",
    "utc_iso",
]
