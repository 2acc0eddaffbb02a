"""The paper store (SQLite): papers once each, where they came from, the send ledger, feedback, subscriber state.
digest.store.core is the only module that speaks SQL."""

from __future__ import annotations

from digest.store.core import INGEST_CHUNK, Store
from digest.store.records import (
    Message,
    MessageState,
    Outcome,
    PickRecord,
    StoredFile,
    SubscriberState,
    parse_iso,
    utc_iso,
)
from digest.store.schema import SCHEMA_VERSION

__all__ = [
    "INGEST_CHUNK",
    "SCHEMA_VERSION",
    "Message",
    "MessageState",
    "Outcome",
    "PickRecord",
    "Store",
    "StoredFile",
    "SubscriberState",
    "parse_iso",
    "utc_iso",
]
