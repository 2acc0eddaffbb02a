"""The one source of "now" for the calendar: every command, the daemon, ingest, feeds and the web app ask here.

`DIGEST_NOW` (an ISO 8601 timestamp with an offset, e.g. 2027-03-01T07:00:00+00:00) fixes "now" for a whole
command: backfills, replays and reproducible runs see exactly that instant, however long the command takes.
Library code takes a `Clock` (any callable returning an aware datetime) so that tests inject their own; this
module's `utc_now` is the default everywhere. Timeouts and rate limits use monotonic timers, never this clock.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

from digest.errors import ConfigError

Clock = Callable[[], datetime]
ENV_VAR = "DIGEST_NOW"
EXAMPLE = "2027-03-01T07:00:00+00:00"


@lru_cache(maxsize=8)
def parse_instant(text: str) -> datetime:
    """An ISO 8601 timestamp with an offset, as an aware datetime in UTC; ConfigError otherwise."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{ENV_VAR}={text!r} is not an ISO 8601 timestamp; write it like {EXAMPLE}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ConfigError(f"{ENV_VAR}={text!r} has no UTC offset; add one, like {EXAMPLE}")
    return moment.astimezone(UTC)


def fixed_instant() -> datetime | None:
    """The instant DIGEST_NOW fixes, or None when it is unset (or empty)."""
    text = os.environ.get(ENV_VAR, "")
    return parse_instant(text) if text.strip() else None


def utc_now() -> datetime:
    """Now, in UTC: DIGEST_NOW when it is set, else the system clock."""
    return fixed_instant() or datetime.now(UTC)


def fixed(moment: datetime) -> Clock:
    """A clock that always says `moment` (tests, the demo)."""
    if moment.tzinfo is None:
        raise ValueError("a clock gives timezone-aware times")
    return lambda: moment
