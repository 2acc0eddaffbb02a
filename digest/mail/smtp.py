"""The SMTP transport: one connection reused, retries with backoff, a rate limit, and one deadline per message."""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from email.utils import parseaddr

from digest.config import Smtp
from digest.mail.message import message_bytes, wire_address
from digest.mail.transport import (
    HandOver,
    Outgoing,
    PermanentError,
    TransientError,
    UnknownOutcomeError,
    UnreachableError,
)

log = logging.getLogger(__name__)


def _describe(code: int, text: bytes | str) -> str:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {message}".strip()


def _dot_stuffed(data: bytes) -> bytes:
    """The DATA payload: lines starting with "." doubled, CRLF line ends, ending in CRLF "." CRLF (RFC 5321)."""
    data = re.sub(rb"(?:\r\n|\n|\r(?!\n))", b"\r\n", data)
    data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class _Deadline:
    """An overall deadline for one SMTP operation. Socket timeouts bound each read, not the whole: a server
    that drips a byte a second never trips them. When the deadline passes, the socket is shut down, so the
    blocked read fails at once, and `expired` says why. A socket made after the deadline passed (a slow DNS
    answer or connect) is shut down as soon as it appears."""

    def __init__(self, connection: smtplib.SMTP, seconds: float) -> None:
        self._connection = connection
        self._seconds = seconds
        self._done = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="smtp-deadline")
        self.expired = False

    def _watch(self) -> None:
        if self._done.wait(self._seconds):
            return
        self.expired = True
        while not self._done.is_set():
            sock = self._connection.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            self._done.wait(0.05)

    def __enter__(self) -> _Deadline:
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._watcher.join()  # never shuts down a socket after the operation (or the next one) moved on


class SmtpTransport:
    """One SMTP connection reused for many messages; reconnects when the server drops it.

    Every operation (connecting with its greeting, TLS and login; one message's MAIL, RCPT and DATA) has an
    overall deadline of `[smtp] timeout` seconds. Failures before the message body is written are retried with
    backoff; once the final "." is written, a lost or late answer means the outcome is unknown, and the message
    is never resubmitted (UnknownOutcomeError).
    """

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

    @property
    def _where(self) -> str:
        return f"SMTP {self.settings.host}:{self.settings.port}"

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.settings.ca_file) if self.settings.ca_file else None)
        if not self.settings.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        connection: smtplib.SMTP
        if s.security == "ssl":
            connection = smtplib.SMTP_SSL(timeout=s.timeout, context=self._tls_context())
        else:
            connection = smtplib.SMTP(timeout=s.timeout)
        # Created unconnected so that the greeting, too, is read under the deadline; the constructor would have
        # remembered the host for TLS's hostname check, so it is set here as it would be.
        connection._host = s.host  # type: ignore[attr-defined]
        deadline = _Deadline(connection, s.timeout)
        try:
            with deadline:
                code, text = connection.connect(s.host, s.port)
                if code != 220:
                    raise smtplib.SMTPConnectError(code, text)
                connection.ehlo()
                if s.security == "starttls":
                    connection.starttls(context=self._tls_context())
                    connection.ehlo()
                if s.username:
                    connection.login(s.username, self._password or "")
        except (ConnectionRefusedError, socket.gaierror) as exc:
            _close(connection)
            reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else "unknown host"
            raise UnreachableError(
                f"{self._where}: {reason}; check [smtp] host and port, or deliver to a folder with "
                '[delivery] method = "maildir"'
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            _close(connection)
            detail = _describe(exc.smtp_code, exc.smtp_error)
            raise PermanentError(f"{self._where}: login refused for {s.username!r} ({detail})") from None
        except smtplib.SMTPNotSupportedError as exc:
            _close(connection)
            raise PermanentError(f"{self._where}: {exc}; check [smtp] security") from None
        except ssl.SSLError as exc:
            _close(connection)
            raise PermanentError(f"{self._where}: TLS failed ({exc.reason}); check [smtp] security/ca_file") from None
        except smtplib.SMTPResponseException as exc:
            _close(connection)
            # A reply cut short by the deadline (or garbage) is no verdict from the server: try again later.
            error = TransientError if 400 <= exc.smtp_code < 500 or deadline.expired else PermanentError
            raise error(f"{self._where}: {_describe(exc.smtp_code, exc.smtp_error)}") from None
        except (OSError, smtplib.SMTPException) as exc:
            _close(connection)
            if deadline.expired or _timed_out(exc):
                raise TransientError(
                    f"{self._where}: no complete greeting within {s.timeout:g}s ([smtp] timeout)"
                ) from None
            raise TransientError(f"{self._where}: cannot connect ({exc or type(exc).__name__})") from None
        log.debug("connected to %s", self._where)
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

    def _send_once(self, data: bytes, recipient: str, handing_over: HandOver | None) -> None:
        if self._connection is None:
            self._connection = self._connect()
        connection = self._connection
        deadline = _Deadline(connection, self.settings.timeout)
        written = False  # the final "." went out: from here on the outcome is unknown until the server answers
        try:
            with deadline:
                options = self._mail_options(connection, data, recipient)
                self._expect(connection, connection.mail(self._envelope_from, options), (250,), "MAIL FROM")
                code, text = connection.rcpt(recipient)
                if code not in (250, 251):
                    self._refused_recipient(recipient, code, text)
                self._expect(connection, connection.docmd("DATA"), (354,), "DATA")
                payload = _dot_stuffed(data)
                if handing_over is not None:
                    try:
                        handing_over()
                    except BaseException:
                        self._drop()  # mid-DATA: only closing the connection aborts without delivering
                        raise
                connection.send(payload)
                written = True
                code, text = connection.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            late = deadline.expired or _timed_out(exc)
            lost = f"connection lost ({exc or type(exc).__name__})"
            why = f"no answer within {self.settings.timeout:g}s ([smtp] timeout)" if late else lost
            if written:
                raise UnknownOutcomeError(
                    f"{self._where}: the whole message was sent but {why}; it may have arrived"
                ) from None
            raise TransientError(f"{self._where}: {why}") from None
        if deadline.expired or not 200 <= code <= 599:
            # The answer was cut short (the deadline shut the socket mid-line) or is garbage: it may have arrived.
            self._drop()
            raise UnknownOutcomeError(
                f"{self._where}: the whole message was sent but no complete answer came within "
                f"{self.settings.timeout:g}s ([smtp] timeout); it may have arrived"
            )
        if code == 250:
            return
        if code == 421:
            self._drop()  # the transaction is over either way; no RSET is needed after a final reply
        if 400 <= code < 500:
            raise TransientError(f"{self._where}: message deferred: {_describe(code, text)}")
        raise PermanentError(f"{self._where}: message refused: {_describe(code, text)}")

    def _mail_options(self, connection: smtplib.SMTP, data: bytes, recipient: str) -> list[str]:
        """SIZE when offered; a UTF-8 address (RFC 6531/6532) needs a server that says SMTPUTF8."""
        options = [f"SIZE={len(data)}"] if connection.has_extn("size") else []
        if data.isascii() and recipient.isascii() and self._envelope_from.isascii():
            return options
        if not connection.has_extn("smtputf8"):
            raise PermanentError(
                f"recipient {recipient}: a non-ASCII address needs a server with SMTPUTF8, and "
                f"{self.settings.host} does not offer it"
            )
        return [*options, "SMTPUTF8", "BODY=8BITMIME"]

    def _expect(self, connection: smtplib.SMTP, reply: tuple[int, bytes], codes: tuple[int, ...], step: str) -> None:
        code, text = reply
        if code in codes:
            return
        self._after_error_reply(code)
        error = TransientError if 400 <= code < 500 else PermanentError
        raise error(f"{self._where}: {step} answered {_describe(code, text)}")

    def _refused_recipient(self, recipient: str, code: int, text: bytes) -> None:
        self._after_error_reply(code)
        if 400 <= code < 500:
            raise TransientError(f"recipient {recipient} deferred: {_describe(code, text)}")
        raise PermanentError(f"recipient {recipient} refused: {_describe(code, text)}")

    def _after_error_reply(self, code: int) -> None:
        """After an error reply the session may be mid-transaction: RSET, or start over. 421 means the server is
        closing the connection: never reuse it."""
        if code == 421 or code == -1:
            self._drop()
            return
        try:
            if self._connection is not None:
                self._connection.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        if self._connection is not None:
            _close(self._connection)
        self._connection = None

    def send(self, message: Outgoing, recipient: str, handing_over: HandOver | None = None) -> None:
        """Send one message; failures before the hand-over are retried with exponential backoff."""
        data = message if isinstance(message, bytes) else message_bytes(message)
        try:
            recipient = wire_address(recipient)
        except UnicodeError:
            raise PermanentError(f"recipient {recipient}: the address cannot be sent over SMTP") from None
        attempts = self.settings.retries + 1
        for attempt in range(1, attempts + 1):
            self._throttle()
            try:
                self._send_once(data, recipient, handing_over)
                return
            except TransientError as exc:
                if attempt == attempts:
                    raise TransientError(f"{exc} (gave up after {attempts} attempts)") from None
                delay = self.settings.retry_backoff * (2 ** (attempt - 1))
                log.warning("transient failure for %s: %s; retrying in %.1fs", recipient, exc, delay)
                self._sleep(delay)

    def close(self) -> None:
        if self._connection is not None:
            connection = self._connection
            self._connection = None
            deadline = _Deadline(connection, self.settings.timeout)
            with deadline:
                try:
                    connection.quit()
                except (smtplib.SMTPException, OSError):
                    pass
            _close(connection)


def _timed_out(exc: BaseException) -> bool:
    """A read that timed out (smtplib reports it as a disconnection whose text says so)."""
    return isinstance(exc, TimeoutError) or "timed out" in str(exc)


def _close(connection: smtplib.SMTP) -> None:
    try:
        connection.close()
    except OSError:
        pass
