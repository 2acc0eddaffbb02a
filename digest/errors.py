"""The one exception family the CLI turns into a clean, one-line message."""


class DigestError(Exception):
    """Base class: the message says what is wrong and what to do about it."""

    exit_code = 1


class ConfigError(DigestError):
    """A configuration or subscriber file is invalid (exit status 2)."""

    exit_code = 2


class IngestError(DigestError):
    """One input (file, URL, entry) could not be ingested."""


class StoreError(DigestError):
    """The paper store cannot be opened or is in an unexpected state."""


class StoreConflictError(StoreError):
    """The database refused a row: a unique (or other) constraint says it contradicts one already stored."""


class StoreValueError(StoreError):
    """The database refused a value (a number out of its range, a character it cannot store)."""


class RankError(DigestError):
    """A profile cannot be ranked against (for example: it is empty)."""


class RenderError(DigestError):
    """A template could not be loaded or rendered."""


class DeliveryError(DigestError):
    """A message could not be delivered."""


class LedgerConflictError(DigestError):
    """The ledger refused a message: some of its papers are already sent, or being sent, to that subscriber."""


class LockedError(DigestError):
    """Another sender holds the send lock."""
