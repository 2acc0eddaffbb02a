"""A real SMTP server (aiosmtpd) on 127.0.0.1 for the delivery tests, with switchable misbehaviour."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    raw: bytes = b""

    @property
    def papers(self) -> list[str]:
        return str(self.message.get("X-Digest-Papers", "")).split()


@dataclass
class Behaviour:
    """What the server does: answer 451 to the first N messages, refuse some recipients, drop the
    connection in DATA the first N times, or take its time over each message."""

    defer_first: int = 0
    refuse: set[str] = field(default_factory=set)
    drop_first: int = 0
    delay: float = 0.0


class RecordingHandler:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.received: list[Received] = []
        self.attempts = 0
        self.greetings = 0  # EHLOs: one per connection (plus one after STARTTLS)
        self.in_data = 0  # messages being received at this moment
        self.most_in_data = 0  # the most at any one moment: how many connections worked in parallel
        self.lock = threading.Lock()

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.lock:
            self.greetings += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.behaviour.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.attempts += 1
            attempt = self.attempts
        if attempt <= self.behaviour.drop_first:
            server.transport.close()
            return "421 closing"
        if attempt <= self.behaviour.drop_first + self.behaviour.defer_first:
            return "451 4.3.0 try again later"
        if self.behaviour.delay:
            with self.lock:
                self.in_data += 1
                self.most_in_data = max(self.most_in_data, self.in_data)
            try:
                await asyncio.sleep(self.behaviour.delay)
            finally:
                with self.lock:
                    self.in_data -= 1
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), parsed, envelope.original_content)  # type: ignore[arg-type]
            )
        return "250 OK queued"


class Authenticator:
    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode() == self.username and auth_data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False)


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the test's own CA, passed to the client as ca_file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class SmtpServer:
    """Started in a thread on a free port; `received` is what it accepted."""

    def __init__(
        self,
        behaviour: Behaviour | None = None,
        *,
        security: str = "none",
        cert: tuple[Path, Path] | None = None,
        auth: tuple[str, str] | None = None,
        smtputf8: bool = False,
    ) -> None:
        self.handler = RecordingHandler(behaviour or Behaviour())
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        context = None
        if cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        if security == "ssl":
            kwargs["ssl_context"] = context
        elif security == "starttls":
            kwargs["tls_context"] = context
            kwargs["require_starttls"] = True
        if auth:
            kwargs["authenticator"] = Authenticator(*auth)
            kwargs["auth_required"] = True
            # Implicit TLS is invisible to aiosmtpd's session state, so it would hide AUTH: the wire is
            # encrypted anyway, and for STARTTLS we do require TLS before AUTH.
            kwargs["auth_require_tls"] = security == "starttls"
        kwargs["enable_SMTPUTF8"] = smtputf8  # aiosmtpd offers it unless told not to
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= count:
                return self.received
            time.sleep(0.02)
        raise AssertionError(f"expected {count} messages, got {len(self.received)}")
