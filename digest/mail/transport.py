"""Transports: where a finished message goes. One interface (Transport), its errors, and the factory; each
transport in a module of its own: SMTP (digest.mail.smtp), a Maildir folder (digest.mail.maildir), and an in-memory
outbox for tests and for code that embeds paper-digest (MemoryTransport)."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.message import Message
from typing import Protocol

from digest.config import Config
from digest.errors import DeliveryError
from digest.mail.message import message_bytes

# A message object, or the finished wire form (CRLF bytes, from digest.mail.message.message_bytes): sending composes
# its messages in worker processes and hands over bytes, so nothing is serialised twice.
Outgoing = Message | bytes


class TransientError(DeliveryError):
    """The server said try later (4xx), or the connection dropped before the message was handed over: worth
    retrying."""


class PermanentError(DeliveryError):
    """The server refused the message for good (5xx): recorded, never retried."""


class UnknownOutcomeError(DeliveryError):
    """The whole message was written (SMTP: the final "." of DATA) but no answer came: the server may have
    stored it. Never resubmitted automatically; the ledger keeps it `sending` (stuck) for a person to settle."""


class UnreachableError(DeliveryError):
    """No server to talk to at all (connection refused, unknown host): every other message would fail the same
    way, so the send stops at once instead of retrying per subscriber."""


# Called by a transport right before the point of no return (SMTP: before the message body is written; Maildir:
# before the file is linked into new/): the sender records that from here on the outcome may be unknown.
HandOver = Callable[[], None]


class Transport(Protocol):
    def send(self, message: Outgoing, recipient: str, handing_over: HandOver | None = None) -> None: ...

    def close(self) -> None: ...


class MemoryTransport:
    """Keeps every message handed to it, in order, as (recipient, wire bytes): Django's locmem backend."""

    def __init__(self) -> None:
        self.outbox: list[tuple[str, bytes]] = []

    def send(self, message: Outgoing, recipient: str, handing_over: HandOver | None = None) -> None:
        if handing_over is not None:
            handing_over()
        self.outbox.append((recipient, message if isinstance(message, bytes) else message_bytes(message)))

    def close(self) -> None:
        pass


def make_transport(config: Config, *, sleep: Callable[[float], None] = time.sleep) -> Transport:
    """The transport `[delivery] method` names (each module is imported only when it is used)."""
    if config.delivery.method == "maildir":
        from digest.mail.maildir import MaildirTransport

        return MaildirTransport(config.delivery.maildir, fsync=config.delivery.maildir_fsync)
    from digest.mail.smtp import SmtpTransport

    return SmtpTransport(config.smtp, sleep=sleep)
