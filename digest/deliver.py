"""Transports: where a finished message goes. SMTP (one connection reused, retries with backoff, a rate
limit) or a Maildir folder (tmp/ then new/, the Maildir way: atomic, readable by mutt and most clients)."""

from __future__ import annotations

import errno
import itertools
import logging
import os
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from email.message import Message
from email.utils import parseaddr
from pathlib import Path
from typing import Protocol

from digest.config import Config, Smtp
from digest.errors import DeliveryError
from digest.message import wire_address

log = logging.getLogger(__name__)
# A message object, or the finished wire form (CRLF bytes, from digest.message.message_bytes): sending composes
# its messages in worker processes and hands over bytes, so nothing is serialised twice.
Outgoing = Message | bytes
_MAILDIR_COUNTER = itertools.count()  # per process: part of every Maildir file name


class TransientError(DeliveryError):
    """The server said try later (4xx), or the connection dropped: worth retrying."""


class PermanentError(DeliveryError):
    """The server refused the message for good (5xx): recorded, never retried."""


class Transport(Protocol):
    def send(self, message: Outgoing, recipient: str) -> None: ...

    def close(self) -> None: ...


class MaildirTransport:
    """Delivers into a Maildir (tmp/, then linked into new/: a reader never sees half a message).

    Durability is the ledger's: SQLite runs with synchronous=NORMAL, so both survive a crash of the process
    and neither is promised to survive a power cut. An fsync per message would cost more than composing it;
    `[delivery] maildir_fsync = true` buys it for those who want the file on disk before it counts as sent.
    """

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        try:
            for folder in ("tmp", "new", "cur"):
                (path / folder).mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise DeliveryError(
                f"{path}: cannot create the Maildir ({exc.strerror}); check [delivery] maildir"
            ) from None
        self.path = path
        self.fsync = fsync
        # The Maildir convention for unique names: time, microseconds, pid, a counter, the host ('/' and ':'
        # escaped, as the spec asks). The counter is the process's, so two transports never share a name.
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")

    def _unique_name(self) -> str:
        now = time.time()  # not the calendar: only makes the file name unique, as the Maildir spec asks
        return f"{int(now)}.M{int(now % 1 * 1e6):06d}P{os.getpid()}Q{next(_MAILDIR_COUNTER)}.{self._host}"

    def send(self, message: Outgoing, recipient: str) -> None:
        data = message if isinstance(message, bytes) else message.as_bytes()
        data = data.replace(b"\r\n", b"\n")  # Maildir files end lines with LF, as mail clients write them
        try:
            for _ in range(5):
                if self._deliver_once(data):
                    return
            raise OSError(errno.EEXIST, "no unique file name after 5 tries")
        except OSError as exc:
            raise TransientError(f"{self.path}: cannot write the message ({exc.strerror})") from None

    def _deliver_once(self, data: bytes) -> bool:
        """Written in tmp/, then linked into new/: a link, unlike a rename, never replaces a message already
        there (False: that name was taken, try another)."""
        name = self._unique_name()
        temporary = self.path / "tmp" / name
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with open(descriptor, "wb", closefd=True) as handle:
                handle.write(data)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            try:
                os.link(temporary, self.path / "new" / name)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                    raise
                if (self.path / "new" / name).exists():  # a file system without hard links
                    return False
                os.rename(temporary, self.path / "new" / name)
            return True
        finally:
            temporary.unlink(missing_ok=True)

    def close(self) -> None:
        pass


def _describe(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return f"{exc.smtp_code} {text}".strip()


class SmtpTransport:
    """One SMTP connection reused for many messages; reconnects when the server drops it."""

    def __init__(
        self,
        settings: Smtp,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._monotonic = monotonic
        self._connection: smtplib.SMTP | None = None
        self._last_send: float | None = None
        self._password = settings.password()  # read now so a missing variable fails before any send
        self._envelope_from = parseaddr(settings.sender)[1]

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.settings.ca_file) if self.settings.ca_file else None)
        if not self.settings.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        where = f"{s.host}:{s.port}"
        try:
            if s.security == "ssl":
                connection: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, context=self._tls_context()
                )
            else:
                connection = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            connection.ehlo()
            if s.security == "starttls":
                connection.starttls(context=self._tls_context())
                connection.ehlo()
            if s.username:
                connection.login(s.username, self._password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError(f"SMTP {where}: login refused for {s.username!r} ({_describe(exc)})") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"SMTP {where}: {exc}; check [smtp] security") from None
        except ssl.SSLError as exc:
            raise PermanentError(f"SMTP {where}: TLS failed ({exc.reason}); check [smtp] security/ca_file") from None
        except smtplib.SMTPResponseException as exc:
            error = TransientError if 400 <= exc.smtp_code < 500 else PermanentError
            raise error(f"SMTP {where}: {_describe(exc)}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"SMTP {where}: cannot connect ({exc})") from None
        log.debug("connected to %s", where)
        return connection

    def _throttle(self) -> None:
        if not self.settings.max_per_minute:
            return
        interval = 60.0 / self.settings.max_per_minute
        if self._last_send is not None:
            wait = self._last_send + interval - self._monotonic()
            if wait > 0:
                self._sleep(wait)
        self._last_send = self._monotonic()

    def _send_once(self, message: Outgoing, recipient: str) -> None:
        if self._connection is None:
            self._connection = self._connect()
        recipient = wire_address(recipient)
        try:
            if isinstance(message, bytes):
                options = self._utf8_options(message, recipient)
                refused = self._connection.sendmail(self._envelope_from, [recipient], message, mail_options=options)
            else:
                refused = self._connection.send_message(message, to_addrs=[recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            reason = f"{code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}"
            if 400 <= code < 500:
                raise TransientError(f"recipient {recipient} deferred: {reason}") from None
            raise PermanentError(f"recipient {recipient} refused: {reason}") from None
        except smtplib.SMTPResponseException as exc:
            self._reset()
            if 400 <= exc.smtp_code < 500:
                raise TransientError(_describe(exc)) from None
            raise PermanentError(_describe(exc)) from None
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise TransientError(f"connection lost ({exc or type(exc).__name__})") from None
        except UnicodeError:
            self._reset()
            raise PermanentError(f"recipient {recipient}: the address cannot be sent over SMTP") from None
        if refused:
            raise PermanentError(f"recipient {recipient} refused: {refused}")

    def _utf8_options(self, message: bytes, recipient: str) -> list[str]:
        """A UTF-8 address (RFC 6531/6532) needs a server that says SMTPUTF8; plain ASCII needs nothing."""
        if message.isascii() and recipient.isascii() and self._envelope_from.isascii():
            return []
        assert self._connection is not None
        if not self._connection.has_extn("smtputf8"):
            raise PermanentError(
                f"recipient {recipient}: a non-ASCII address needs a server with SMTPUTF8, and "
                f"{self.settings.host} does not offer it"
            )
        return ["SMTPUTF8", "BODY=8BITMIME"]

    def _reset(self) -> None:
        """After an error reply the session may be mid-transaction: RSET, or start over."""
        try:
            if self._connection is not None:
                self._connection.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except OSError:
                pass
        self._connection = None

    def send(self, message: Outgoing, recipient: str) -> None:
        """Send one message; transient failures are retried with exponential backoff."""
        attempts = self.settings.retries + 1
        for attempt in range(1, attempts + 1):
            self._throttle()
            try:
                self._send_once(message, recipient)
                return
            except TransientError as exc:
                if attempt == attempts:
                    raise TransientError(f"{exc} (gave up after {attempts} attempts)") from None
                delay = self.settings.retry_backoff * (2 ** (attempt - 1))
                log.warning("transient failure for %s: %s; retrying in %.1fs", recipient, exc, delay)
                self._sleep(delay)

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.quit()
            except (smtplib.SMTPException, OSError):
                pass
        self._connection = None


def make_transport(config: Config, *, sleep: Callable[[float], None] = time.sleep) -> Transport:
    if config.delivery.method == "maildir":
        return MaildirTransport(config.delivery.maildir, fsync=config.delivery.maildir_fsync)
    return SmtpTransport(config.smtp, sleep=sleep)
