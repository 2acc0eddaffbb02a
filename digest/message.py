"""Composing the MIME message: text/plain first, HTML last, with the headers a good list sender sets.

Header values come from our own validated data; anything with CR/LF is refused rather than folded into a
new header (header injection). The message is built with the stdlib's compat32 classes and every header
value is encoded here, once: the newer header registry re-parses each header and cost more than rendering
the email (this runs 10,000 times per newsletter issue).
"""

from __future__ import annotations

import base64
import re
from io import BytesIO
from dataclasses import dataclass
from datetime import datetime
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import compat32
from email.utils import format_datetime, formataddr, make_msgid, parseaddr

from digest.errors import DeliveryError
from digest.links import Links

# Plain text stays readable in the raw message (quoted-printable); HTML goes as base64, which the stdlib
# encodes in C and which never runs into the 998-character line limit.
_TEXT_CHARSET = Charset("utf-8")
_TEXT_CHARSET.body_encoding = QP


@dataclass(frozen=True)
class RenderedEmail:
    """What the templates produced for one subscriber."""

    subject: str
    text: str  # the text/plain part: plain text, or the Markdown source for Markdown subscribers
    html: str  # the text/html part


def _single_line(value: str, what: str) -> str:
    if re.search(r"[\r\n]", value):
        raise DeliveryError(f"{what} contains a line break; refusing to build a header from it")
    return value


def sender_domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rpartition("@")[2] or "localhost"


def new_message_id(sender: str) -> str:
    """A globally unique Message-ID on the sender's domain, made (and stored) before sending."""
    return make_msgid(idstring="digest", domain=sender_domain(sender))


def _address(display: str, email: str) -> str:
    """'Name <local@domain>', the name RFC 2047-encoded when it is not ASCII."""
    return formataddr((_single_line(display, "name"), _single_line(email, "email")), charset="utf-8")


def _header_text(value: str, name: str, ascii_suffix: str = "") -> str | Header:
    """ASCII as it is; anything else RFC 2047-encoded and folded by the generator, which needs the header's
    name to fit the first line (without it the value starts on an empty line, read back with a space)."""
    if value.isascii():
        return value + ascii_suffix
    header = Header(value, "utf-8", header_name=name)
    if ascii_suffix:
        header.append(ascii_suffix, "us-ascii")
    return header


def _text_part(body: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", "plain")
    part.set_payload(body, charset=_TEXT_CHARSET)
    del part["MIME-Version"]  # belongs on the message, not on each part (set_payload adds it back)
    return part


def _base64_part(body: str, subtype: str) -> MIMENonMultipart:
    """What set_payload with a base64 charset makes, with the encoding done by base64.encodebytes (same 76-column
    lines) instead of email.base64mime's loop over 57-byte pieces."""
    part = MIMENonMultipart("text", subtype, charset="utf-8")
    del part["MIME-Version"]
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(base64.encodebytes(body.encode("utf-8")).decode("ascii"))
    return part


def compose_message(
    rendered: RenderedEmail,
    *,
    to_name: str,
    to_email: str,
    sender: str,
    message_id: str,
    list_id: str,
    now: datetime,
    links: Links,
    paper_ids: tuple[str, ...] = (),
) -> Message:
    """A multipart/alternative message ready for SMTP or a Maildir."""
    subject = re.sub(r"\s+", " ", rendered.subject).strip()
    from_name, from_email = parseaddr(_single_line(sender, "[smtp] from"))
    if "@" not in from_email:
        raise DeliveryError(f"[smtp] from {sender!r} has no email address; use 'Name <address@domain>'")
    message = MIMEMultipart("alternative")
    message["From"] = _address(from_name, from_email)
    message["To"] = _address(to_name, to_email)
    message["Subject"] = _header_text(subject, "Subject")
    message["Date"] = format_datetime(now)
    message["Message-ID"] = _single_line(message_id, "Message-ID")
    domain = sender_domain(sender)
    list_name = _single_line(list_id, "list id")
    list_address = f" <{re.sub(r'[^A-Za-z0-9.-]', '-', list_name)}.{domain}>"
    message["List-Id"] = _header_text(list_name, "List-Id", list_address)
    unsubscribe = [f"<mailto:{from_email}?subject=unsubscribe>"]
    https = links.unsubscribe()
    if https:
        unsubscribe.insert(0, f"<{_single_line(https, 'unsubscribe link')}>")
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["List-Unsubscribe"] = ", ".join(unsubscribe)
    message["Auto-Submitted"] = "auto-generated"
    message["Precedence"] = "list"
    if paper_ids:
        # Lets a mail filter, or a person debugging a complaint, see which papers a digest carried.
        message["X-Digest-Papers"] = " ".join(_single_line(pid, "paper id") for pid in paper_ids)
    for name in ("MIME-Version", "Content-Type"):  # after the headers people read, as mail clients write them
        value = message[name]
        del message[name]
        message[name] = value
    message.attach(_text_part(rendered.text))
    message.attach(_base64_part(rendered.html, "html"))
    return message


_LINE_END = re.compile(r"\r\n|\r|\n")


class _WirePolicy(type(compat32)):  # type: ignore[misc]
    """compat32 with CRLF, and a short plain header written as it is: the stdlib builds a Header object to fold
    every header, even one that fits on its line, and that was a third of the cost of a message."""

    def fold_binary(self, name: str, value: object) -> bytes:
        if (
            isinstance(value, str)
            and len(name) + len(value) + 2 <= self.max_line_length
            and value.isascii()
            and value == value.strip()
            and "  " not in value
            and "\n" not in value
            and "\r" not in value
        ):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return bytes(super().fold_binary(name, value))


_WIRE = _WirePolicy(linesep="\r\n")


class _WireGenerator(BytesGenerator):
    """The stdlib generator, writing each body in one piece instead of line by line (a 40 KB digest has a
    thousand lines). With _WirePolicy, its output is byte for byte the stdlib's; a test compares the two."""

    def _write_lines(self, lines: str) -> None:
        if not lines:
            return
        if "\r" in lines:
            self.write(self._NL.join(_LINE_END.split(lines)))
        else:
            self.write(lines.replace("\n", self._NL))


def message_bytes(message: Message) -> bytes:
    """The message as it goes over the wire (CRLF line ends): what an .eml file holds."""
    buffer = BytesIO()
    _WireGenerator(buffer, mangle_from_=False, policy=_WIRE).flatten(message)
    return buffer.getvalue()
